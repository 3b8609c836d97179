using HaMesh.Protocol.V1;
using HaMesh.Simulation.Tests.Harness;

namespace HaMesh.Simulation.Tests;

/// <summary>
/// The simulation's DRBD model for writes in flight when the replication link breaks (the class of the DRBD
/// simulator's lab bug: a frozen write acknowledged after its node was demoted). Driven directly, no cores.
/// </summary>
public sealed class DrbdModelTests
{
    private readonly SimWorld _world = new(1, 50);
    private readonly SimNetwork _net;
    private readonly DrbdModel _drbd;
    private readonly List<(string Node, string Peer)> _fenceRequests = [];
    private readonly List<long> _acked = [];

    public DrbdModelTests()
    {
        _net = new SimNetwork(_world);
        _drbd = new DrbdModel(_world, _net, ["a", "b"]) { FencePeer = (n, p) => _fenceRequests.Add((n, p)) };
        _drbd.Recompute();
        var a = _drbd.Devices["a"];
        a.Role = DrbdRole.Primary;
        a.ServiceUp = true;
    }

    private DrbdDevice A => _drbd.Devices["a"];

    private DrbdDevice B => _drbd.Devices["b"];

    private void Run(double ms) => _world.RunUntil(_world.Now + SimWorld.Ms(ms), () => true);

    /// <summary>Writes one block on a and cuts the link before the replication message arrives.</summary>
    private void WriteThenCut()
    {
        Assert.True(_drbd.Write(A, 7, () => _acked.Add(7)));
        _net.Block("a", "b");
        _net.Block("b", "a");
        _drbd.Recompute();
        Run(10);
        Assert.DoesNotContain(7L, B.Data);
        Assert.Empty(_acked);
        Assert.Equal([("a", "b")], _fenceRequests);
    }

    [Fact]
    public void Connected_WriteAcknowledgedOnlyOnceThePeerHasIt()
    {
        Assert.True(_drbd.Write(A, 1, () => _acked.Add(1)));
        Assert.Empty(_acked);
        Run(10);
        Assert.Equal([1L], _acked);
        Assert.Contains(1L, B.Data);
    }

    [Fact]
    public void InFlightAtLinkLoss_AcknowledgedWhenThePeerIsFenced()
    {
        WriteThenCut();
        _drbd.FenceConfirmed(A, "b");
        Assert.Equal([7L], _acked);
    }

    [Fact]
    public void InFlightAtLinkLoss_PrimaryDemotedBeforeTheFence_NeverAcknowledged()
    {
        WriteThenCut();
        A.Role = DrbdRole.Secondary;
        _drbd.Demoted(A);
        _net.HealAll();
        _drbd.Recompute();
        Run(10);
        Assert.Empty(_acked);
    }

    [Fact]
    public void InFlightAtLinkLoss_LinkBackWhilePrimary_TheResyncBringsIt_Acknowledged()
    {
        WriteThenCut();
        _net.HealAll();
        _drbd.Recompute();
        Assert.Contains(7L, B.Data);
        Assert.Equal([7L], _acked);
    }

    [Fact]
    public void InFlightAtLinkLoss_PrimaryCrashes_NeverAcknowledged()
    {
        WriteThenCut();
        _drbd.Crash(A);
        _drbd.FenceConfirmed(A, "b");
        Assert.Empty(_acked);
    }
}
