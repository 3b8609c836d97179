using HaMesh.Protocol.V1;
using HaMesh.Simulation.Tests.Harness;

namespace HaMesh.Simulation.Tests;

/// <summary>
/// The simulation's DRBD model for writes in flight when the replication link breaks (the class of the DRBD
/// simulator's lab bug: a frozen write acknowledged after its node was demoted), and its connect handshake on the
/// generation UUIDs (drbd_uuid_compare: the side that moved on is the SyncSource; both moved on is a split-brain).
/// Driven directly, no cores.
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

    private void Cut()
    {
        _net.Block("a", "b");
        _net.Block("b", "a");
        _drbd.Recompute();
    }

    private void Heal()
    {
        _net.HealAll();
        _drbd.Recompute();
    }

    /// <summary>drbdadm primary as the agent's Activate step does it, with every absent peer then fenced.</summary>
    private static void Promote(DrbdModel drbd, DrbdDevice d)
    {
        d.Role = DrbdRole.Primary;
        d.ServiceUp = true;
        drbd.BecamePrimary(d);
        foreach (var peer in d.PendingFence.ToList())
        {
            drbd.FenceConfirmed(d, peer);
        }
    }

    /// <summary>Stop, unmount, drbdadm secondary, as the agent's Deactivate step does it.</summary>
    private static void Demote(DrbdModel drbd, DrbdDevice d)
    {
        d.ServiceUp = false;
        d.Role = DrbdRole.Secondary;
        drbd.Demoted(d);
        d.PendingFence.Clear();
        d.Fenced.Clear();
    }

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

    /// <summary>
    /// Seed 867 (2 nodes): the Primary a lost b, fenced it and wrote on; an operator force-promoted b while disconnected (it
    /// wrote nothing, its data a subset of a's) and b stepped down again. Both made a new current UUID while apart (a when
    /// its I/O resumed after the fence, b on promote), so the reconnect is a split-brain, as in DRBD: b is not resynced
    /// from a (which had left both Outdated and no node promotable).
    /// </summary>
    [Fact]
    public void BothMovedOn_ThePeerPromotedWhileApartWithoutWriting_SplitBrain_NotAResync()
    {
        Assert.True(_drbd.Write(A, 1, () => _acked.Add(1)));
        Run(10);
        Cut();
        _drbd.FenceConfirmed(A, "b");
        Assert.True(_drbd.Write(A, 2, () => _acked.Add(2)));
        Assert.Equal([1L, 2L], _acked);
        Demote(_drbd, A);
        Promote(_drbd, B);
        Demote(_drbd, B);
        A.Disk = DiskState.Outdated;   // b's fence-peer had a outdate itself
        Assert.Equal([1L], B.Data);

        Heal();

        Assert.Equal(1, _drbd.SplitBrains);
        Assert.True(A.StandAlone && B.StandAlone);
        Assert.False(_drbd.Connected("a", "b"));
        Assert.Equal([1L], B.Data);
        Assert.Equal([1L, 2L], A.Data.Order());
        Assert.Equal(DiskState.UpToDate, B.Disk);
    }

    /// <summary>
    /// The old Primary a was cut off with a write in flight and demoted before its fence (so it never moved on); b was
    /// promoted and wrote. b moved on, a did not: b is the SyncSource, a's never-acknowledged write is discarded. (The data
    /// sets alone, each with a write the other lacks, had called it a split-brain.)
    /// </summary>
    [Fact]
    public void OnlyThePromotedSideMovedOn_ItIsTheSyncSource_TheOldPrimarysUnacknowledgedWriteDiscarded()
    {
        WriteThenCut();
        Demote(_drbd, A);
        Promote(_drbd, B);
        Assert.True(_drbd.Write(B, 8, () => _acked.Add(8)));

        Heal();

        Assert.Equal(0, _drbd.SplitBrains);
        Assert.True(_drbd.Connected("a", "b"));
        Assert.Equal([8L], A.Data);
        Assert.Equal([8L], B.Data);
        Assert.Equal([8L], _acked);
        Assert.Equal(B.CurrentUuid, A.CurrentUuid);
    }

    /// <summary>
    /// As above, but b stepped down again without writing and the old Primary a holds more data (its write in flight):
    /// the UUIDs decide, not the data or the disk states: b moved on (promoted while apart), so b is the SyncSource.
    /// </summary>
    [Fact]
    public void OnlyOneSideMovedOn_ItIsTheSyncSource_EvenWithLessData()
    {
        WriteThenCut();
        Demote(_drbd, A);
        Promote(_drbd, B);
        Demote(_drbd, B);
        Assert.True(B.Data.IsProperSubsetOf(A.Data));

        Heal();

        Assert.Equal(0, _drbd.SplitBrains);
        Assert.True(_drbd.Connected("a", "b"));
        Assert.Empty(A.Data);
        Assert.Equal(B.CurrentUuid, A.CurrentUuid);
    }

    /// <summary>
    /// 3 nodes, the generation carried on: c isolated, a (Primary) moves on and b (connected) takes the new UUID; a crashes;
    /// b, promoted, continues from that generation and moves on from a. c and then a come back: each syncs from b, no split-brain.
    /// </summary>
    [Fact]
    public void ThreeNodes_TheConnectedPeerTakesTheNewUuid_TheReturningNodesSyncFromIt()
    {
        var world = new SimWorld(1, 50);
        var net = new SimNetwork(world);
        var drbd = new DrbdModel(world, net, ["a", "b", "c"]);
        drbd.Recompute();
        var (a, b, c) = (drbd.Devices["a"], drbd.Devices["b"], drbd.Devices["c"]);
        Promote(drbd, a);
        foreach (var x in new[] { "a", "b" })
        {
            net.Block(x, "c");
            net.Block("c", x);
        }

        drbd.Recompute();
        drbd.FenceConfirmed(a, "c");
        Assert.Equal(a.CurrentUuid, b.CurrentUuid);
        Assert.NotEqual(a.CurrentUuid, c.CurrentUuid);
        Assert.True(drbd.Write(a, 1, () => { }));
        world.RunUntil(world.Now + SimWorld.Ms(10), () => true);
        drbd.Crash(a);
        Promote(drbd, b);
        Assert.True(drbd.Write(b, 2, () => { }));

        net.HealAll();
        drbd.Recompute();
        a.Up = true;
        drbd.Recompute();

        Assert.Equal(0, drbd.SplitBrains);
        Assert.True(drbd.Connected("b", "c") && drbd.Connected("a", "b"));
        foreach (var x in new[] { a, b, c })
        {
            Assert.Equal([1L, 2L], x.Data.Order());
            Assert.Equal(b.CurrentUuid, x.CurrentUuid);
        }
    }
}
