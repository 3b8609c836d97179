using HaMesh.Agent.Actions;
using HaMesh.Agent.Drbd;
using HaMesh.Agent.Lease;
using HaMesh.Agent.Reporting;
using HaMesh.Agent.State;
using HaMesh.Agent.Tests.Actions;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Testing;
using HaMesh.Testing.Hosts;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace HaMesh.Agent.Tests.Lease;

/// <summary>
/// Lease holder (PeerLink) and self-fencing (SelfFence) on a fake clock, with a fake peer agent and a fake
/// coordinator link: design §4 "Lease" and "Self-fencing". No sleeps: time moves only when the test says so.
/// </summary>
public sealed class PeerLinkLeaseTests : IDisposable
{
    private static readonly string[] DeactivationOrder = ["ip addr del 203.0.113.10/32 dev eth0", "systemctl stop postgresql.service", "umount /srv/db", "drbdadm secondary r0"];
    private static readonly string[] ActivationVerbs = ["drbdadm primary", "mount ", "systemctl start", "ip addr add", "drbdadm resume-io"];

    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-lease-").FullName;
    private readonly HaMeshOptions _options = TestConfig.TwoNodes();
    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 12, 1, 12, 0, 0, TimeSpan.Zero));
    private readonly TimerSignalingTimeProvider _time;
    private readonly FakeNode _node = new() { Role = "Primary", Mounted = true };
    private readonly HangingRunner _runner;
    private readonly FakeDrbdReader _drbd = new();
    private readonly FakeCoordinator _coordinator = new();
    private readonly FakePeer _peer = new();
    private readonly AgentLocalState _local;
    private readonly ReportSignal _signal = new();
    private StatusCollector? _collector;

    public PeerLinkLeaseTests()
    {
        _time = new TimerSignalingTimeProvider(_clock);
        _options.Agent.StateDirectory = _dir;
        File.WriteAllText(Path.Combine(_dir, "db.generation"), "5\n");
        _node.Active.Add("postgresql.service");
        _node.Ips.Add("203.0.113.10/32");
        _runner = new HangingRunner(_node);
        _local = new AgentLocalState(_time);
    }

    private CancellationToken Ct => TestContext.Current.CancellationToken;

    private TimeSpan Heartbeat => _options.Cluster.Timings.Heartbeat;

    private TimeSpan LeaseLength => _options.Cluster.Timings.Lease;

    public void Dispose()
    {
        _signal.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private async Task<PeerLink> CreateAsync(DrbdRole role = DrbdRole.Primary)
    {
        var o = Options.Create(_options);
        _collector = new StatusCollector(o, _drbd, _node, _local, _time);
        await SetRoleAsync(role);
        var selfFence = new SelfFence(o, new ResourceSteps(_options, _runner, _node, _time), _runner, _local, _signal, _time, NullLogger<SelfFence>.Instance);
        return new PeerLink(o, _local, _collector, _coordinator, new GenerationStore(o), selfFence, _time, NullLogger<PeerLink>.Instance, peerClientFactory: () => _peer);
    }

    private async Task SetRoleAsync(DrbdRole role)
    {
        _drbd.Snapshot = new DrbdSnapshot(DrbdVersionFamily.V84, "8.4.11", new Dictionary<string, DrbdResourceStatus>
        {
            ["r0"] = new() { Name = "r0", Present = true, Role = role, DiskState = DiskState.UpToDate },
        }, []);
        await _collector!.CollectAsync(null, Ct);
    }

    private LeaseStatus Lease => _local.GetLease("db");

    private bool RanAnyActivation => _runner.Log.Any(l => ActivationVerbs.Any(v => l.StartsWith(v, StringComparison.Ordinal)));

    [Fact]
    public async Task Primary_RenewsEveryHeartbeat_GrantRunsFromSentTimeNotReceiveTime()
    {
        var link = await CreateAsync();
        for (var beat = 1; beat <= 3; beat++)
        {
            var tick = link.TickAsync("db", Ct);
            var (request, reply) = await _peer.NextAsync(Ct);
            Assert.Equal(beat, _coordinator.Requests.Count);
            var toCoordinator = _coordinator.Requests.Last();
            Assert.Equal((request.Sequence, 5UL, LeaseLength), (toCoordinator.Sequence, toCoordinator.Generation, toCoordinator.Lease.ToTimeSpan()));
            Assert.Equal(("db", "a", 5UL, LeaseLength), (request.Resource, request.Requester, request.Generation, request.Lease.ToTimeSpan()));

            // The answer takes 300 ms on the (fake) clock: the lease still runs from when the request was sent.
            _clock.Advance(TimeSpan.FromMilliseconds(300));
            reply.SetResult(FakePeer.Grant(request));
            await tick;
            Assert.Equal(LeaseState.Held, Lease.State);
            Assert.Equal("b", Lease.LastGrantor);
            Assert.Equal(LeaseLength - TimeSpan.FromMilliseconds(300), Lease.Remaining.ToTimeSpan());
            _clock.Advance(Heartbeat);
        }

        Assert.Equal(3, _peer.Seen.Count);
        Assert.Equal(3, _peer.Seen.Select(r => r.Sequence).Distinct().Count());
    }

    [Fact]
    public async Task CoordinatorGrant_AnsweredLate_RunsFromSentTime()
    {
        _peer.Down = true;
        var link = await CreateAsync();
        await link.TickAsync("db", Ct);
        var request = Assert.Single(_coordinator.Requests);
        _clock.Advance(TimeSpan.FromMilliseconds(400));
        _coordinator.Grant(request);
        Assert.Equal(LeaseState.Held, Lease.State);
        Assert.Equal("coordinator", Lease.LastGrantor);
        Assert.Equal(LeaseLength - TimeSpan.FromMilliseconds(400), Lease.Remaining.ToTimeSpan());
    }

    [Fact]
    public async Task GrantsFromCoordinatorOnly_KeepTheLease_PeerDown()
    {
        _peer.Down = true;
        var link = await CreateAsync();
        for (var beat = 0; beat < 3 * LeaseLength / Heartbeat; beat++)
        {
            await link.TickAsync("db", Ct);
            _coordinator.Grant(_coordinator.Requests.Last());
            _clock.Advance(Heartbeat);
        }

        Assert.Equal(LeaseState.Held, Lease.State);
        Assert.Equal("coordinator", Lease.LastGrantor);
        Assert.Empty(_runner.Log);
        Assert.Equal("Primary", _node.Role);
    }

    [Fact]
    public async Task GrantsFromPeerOnly_KeepTheLease_CoordinatorSilent()
    {
        _peer.AutoAnswer = FakePeer.Grant;
        var link = await CreateAsync();
        for (var beat = 0; beat < 3 * LeaseLength / Heartbeat; beat++)
        {
            await link.TickAsync("db", Ct);
            _clock.Advance(Heartbeat);
        }

        Assert.Equal(LeaseState.Held, Lease.State);
        Assert.Equal("b", Lease.LastGrantor);
        Assert.Empty(_runner.Log);
        Assert.Equal(3 * LeaseLength / Heartbeat, _coordinator.Requests.Count);
    }

    [Fact]
    public async Task NoGrants_SelfFencesInOrder_BeforeLeasePlusDeadline()
    {
        _peer.Down = true;
        var link = await CreateAsync();
        var start = _clock.GetUtcNow();
        var fencedAt = TimeSpan.MinValue;
        for (var beat = 0; beat < 20 && fencedAt == TimeSpan.MinValue; beat++)
        {
            await link.TickAsync("db", Ct);
            if (_node.Role == "Secondary")
            {
                fencedAt = _clock.GetUtcNow() - start;
            }

            _clock.Advance(Heartbeat);
        }

        Assert.Equal(DeactivationOrder, _runner.Log);
        Assert.Equal(LeaseLength, fencedAt); // the heartbeat at expiry, not one later
        Assert.True(fencedAt < LeaseLength + _options.Cluster.Timings.SelfFenceDeadline);
        Assert.False(_node.Mounted);
        Assert.Empty(_node.Active);
        Assert.Empty(_node.Ips);
        Assert.Equal(LeaseState.SelfFenced, Lease.State);
        Assert.Equal("self-fenced after lease expiry", _local.GetLastError("db"));
    }

    [Fact]
    public async Task StepHangsPastDeadline_LastResortSuspendIo_RunsAndIsReported()
    {
        _peer.Down = true;
        _runner.Hang.Add("systemctl stop postgresql.service");
        var link = await CreateAsync();
        await link.TickAsync("db", Ct);
        _clock.Advance(LeaseLength);
        var tick = link.TickAsync("db", Ct);
        await _time.WaitForTimerAsync(_options.Cluster.Timings.SelfFenceDeadline, Ct);
        Assert.False(tick.IsCompleted);
        _clock.Advance(_options.Cluster.Timings.SelfFenceDeadline);
        await tick;

        Assert.Equal(["ip addr del 203.0.113.10/32 dev eth0", "systemctl stop postgresql.service", "drbdadm suspend-io r0"], _runner.Log);
        Assert.Equal(LeaseState.SelfFenced, Lease.State);
        var error = _local.GetLastError("db");
        Assert.Contains("deadline of 1000 ms passed", error);
        Assert.Contains("I/O suspended (drbdadm suspend-io, exit 0)", error);
    }

    [Fact]
    public async Task StepHangs_NoLastResortConfigured_ReportedOperatorNeeded()
    {
        _options.Agent.SelfFenceLastResort = "none";
        _peer.Down = true;
        _runner.Hang.Add("umount /srv/db");
        var link = await CreateAsync();
        await link.TickAsync("db", Ct);
        _clock.Advance(LeaseLength);
        var tick = link.TickAsync("db", Ct);
        await _time.WaitForTimerAsync(_options.Cluster.Timings.SelfFenceDeadline, Ct);
        _clock.Advance(_options.Cluster.Timings.SelfFenceDeadline);
        await tick;

        Assert.DoesNotContain(_runner.Log, l => l.Contains("suspend-io", StringComparison.Ordinal));
        Assert.Equal(LeaseState.Expired, Lease.State);
        Assert.Equal("self-fence incomplete (deadline of 1000 ms passed); last resort 'none'", _local.GetLastError("db"));
    }

    [Theory]
    [InlineData("b is Primary itself", 5UL)]
    [InlineData("stale generation 5 < 6", 6UL)]
    public async Task RefusedGrants_DoNotExtendTheLease(string reason, ulong peerGeneration)
    {
        _peer.AutoAnswer = r => new RenewLeaseResponse { Granted = false, Reason = reason, Grantor = "b", Generation = peerGeneration, Sequence = r.Sequence };
        var link = await CreateAsync();
        await link.TickAsync("db", Ct);
        for (var beat = 1; beat <= LeaseLength / Heartbeat; beat++)
        {
            Assert.NotEqual(LeaseState.Held, Lease.State);
            _clock.Advance(Heartbeat);
            _coordinator.Grant(_coordinator.Requests.Last(), granted: false);
            await link.TickAsync("db", Ct);
        }

        Assert.Equal(DeactivationOrder, _runner.Log);
        Assert.Equal(LeaseState.SelfFenced, Lease.State);
    }

    [Fact]
    public async Task Secondary_NeverSelfFences_NeverAsksTheCoordinator()
    {
        _node.Role = "Secondary";
        _peer.Down = true;
        var link = await CreateAsync(DrbdRole.Secondary);
        for (var beat = 0; beat < 3 * LeaseLength / Heartbeat; beat++)
        {
            await link.TickAsync("db", Ct);
            _clock.Advance(Heartbeat);
        }

        Assert.Empty(_coordinator.Requests);
        Assert.Empty(_runner.Log);
        Assert.Equal(LeaseState.NotHeld, Lease.State);
        Assert.Equal(3 * LeaseLength / Heartbeat, _peer.Seen.Count); // still asks the peer: contact feeds this node's vote
    }

    [Fact]
    public async Task AfterSelfFence_LateAndNewGrants_ReactivateNothing()
    {
        _peer.Down = true;
        var link = await CreateAsync();
        for (var beat = 0; beat < LeaseLength / Heartbeat; beat++)
        {
            await link.TickAsync("db", Ct);
            _clock.Advance(Heartbeat);
        }

        var lastBeforeFence = _coordinator.Requests.Last();
        await link.TickAsync("db", Ct);
        Assert.Equal(LeaseState.SelfFenced, Lease.State);
        var afterFence = _runner.Log.Count;

        // A grant for a request sent before the fence arrives late: it must not mark the lease held again.
        _coordinator.Grant(lastBeforeFence);
        Assert.Equal(LeaseState.SelfFenced, Lease.State);

        await SetRoleAsync(DrbdRole.Secondary);
        _peer.Down = false;
        _peer.AutoAnswer = FakePeer.Grant;
        var requests = _coordinator.Requests.Count;
        for (var beat = 0; beat < 8; beat++)
        {
            _clock.Advance(Heartbeat);
            await link.TickAsync("db", Ct);
        }

        Assert.Equal(afterFence, _runner.Log.Count);
        Assert.False(RanAnyActivation);
        Assert.Equal("Secondary", _node.Role);
        Assert.Equal(requests, _coordinator.Requests.Count);
        Assert.Equal(LeaseState.NotHeld, Lease.State);
    }

    [Fact]
    public async Task Loop_RenewsOncePerHeartbeat_OnTheFakeClock()
    {
        _peer.AutoAnswer = FakePeer.Grant;
        using var link = await CreateAsync();
        await link.StartAsync(Ct);
        for (var beat = 1; beat <= 4; beat++)
        {
            await _time.WaitForTimerAsync(Heartbeat, Ct);
            Assert.Equal(beat, _coordinator.Requests.Count);
            Assert.Equal(beat, _peer.Seen.Count);
            _clock.Advance(Heartbeat);
        }

        await _time.WaitForTimerAsync(Heartbeat, Ct);
        await link.StopAsync(Ct);
        Assert.Equal(5, _coordinator.Requests.Count);
        Assert.Equal(LeaseState.Held, Lease.State);
    }

    [Fact]
    public async Task CoordinatorGrant_ForAnotherResourcesSequence_IsIgnored()
    {
        _peer.Down = true;
        var link = await CreateAsync();
        await link.TickAsync("db", Ct);
        var request = Assert.Single(_coordinator.Requests);
        _coordinator.Grant(new LeaseRequest { Resource = "web", Sequence = request.Sequence });
        Assert.Equal(LeaseState.NotHeld, _local.GetLease("web").State);
        Assert.NotEqual(LeaseState.Held, Lease.State);
    }
}
