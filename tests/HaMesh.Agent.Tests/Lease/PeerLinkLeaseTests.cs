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

    /// <param name="role">The DRBD role the link finds.</param>
    /// <param name="restarted">False: a Promote in this process made it Primary (the lease runs from the first request).
    /// True: it was Primary already when the agent started, so it holds no lease at start.</param>
    /// <param name="reports">When given, the link wakes the reporter when this node's vote crosses lease + drift margin.</param>
    /// <param name="bootstrap">Primary at start at generation 0: set up by hand, never commanded (a cluster's bootstrap).</param>
    private async Task<PeerLink> CreateAsync(DrbdRole role = DrbdRole.Primary, bool restarted = false, ReportSignal? reports = null, bool bootstrap = false)
    {
        var o = Options.Create(_options);
        _collector = new StatusCollector(o, _drbd, _node, _local, _time);
        await SetRoleAsync(role);
        if (role == DrbdRole.Primary && !restarted && !bootstrap)
        {
            _local.SetPromoting("db", true);
        }

        if (bootstrap)
        {
            File.Delete(Path.Combine(_dir, "db.generation"));
        }

        if (restarted)
        {
            new GenerationStore(o).Raise("db", 1);   // a restart under a resource HaMesh already runs (generation 0 is a bootstrap)
        }

        var selfFence = new SelfFence(o, new ResourceSteps(_options, _runner, _node, _time), _runner, _local, _signal, _time, NullLogger<SelfFence>.Instance);
        return new PeerLink(o, _local, _collector, _coordinator, new GenerationStore(o), selfFence, _time, NullLogger<PeerLink>.Instance, peerClientFactory: () => _peer, reportSignal: reports);
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
            await tick;   // the heartbeat does not wait for the peer's answer
            _clock.Advance(TimeSpan.FromMilliseconds(300));
            reply.SetResult(FakePeer.Grant(request));
            await link.PeerReplyHandled("db");
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

    [Fact]
    public async Task SilentPeer_ExpiryCheckedOnItsOwnTimer_SelfFenceStartsAtTheExactLeaseEnd()
    {
        // Heartbeat 300 ms: the lease end (2 s) falls between heartbeats. The peer never answers (each call
        // fails after its 2-heartbeat deadline): the loop must neither wait for it nor for the next heartbeat.
        _options.Cluster.Timings.Heartbeat = TimeSpan.FromMilliseconds(300);
        _peer.Silent = (_time, Heartbeat * 2);
        var fenceStarted = new TaskCompletionSource<DateTimeOffset>(TaskCreationOptions.RunContinuationsAsynchronously);
        _runner.FirstCommand = (_time, fenceStarted);
        using var link = await CreateAsync();
        var start = _clock.GetUtcNow();
        await link.StartAsync(Ct);
        for (var beat = 0; beat < 6; beat++)
        {
            await _time.WaitForTimerAsync(Heartbeat, Ct);
            _clock.Advance(Heartbeat);
        }

        // 1800 ms: the next wake is the lease end, 200 ms away (not the heartbeat at 2100 ms).
        await _time.WaitForTimerAsync(TimeSpan.FromMilliseconds(200), Ct);
        Assert.False(fenceStarted.Task.IsCompleted);
        _clock.Advance(TimeSpan.FromMilliseconds(200));
        var at = await fenceStarted.Task.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        Assert.Equal(LeaseLength, at - start);
        Assert.Equal("ip addr del 203.0.113.10/32 dev eth0", _runner.Log[0]);
        await link.StopAsync(Ct);
    }

    [Fact]
    public async Task PrimaryAtStart_HoldsNoLease_RenewsAtOnce_SelfFencesWithinTheDeadlineWithoutAGrant()
    {
        _peer.Down = true;
        var link = await CreateAsync(restarted: true);
        var start = _clock.GetUtcNow();
        await link.TickAsync("db", Ct);
        Assert.Single(_coordinator.Requests);   // renews at once
        Assert.NotEqual(LeaseState.Held, Lease.State);
        _clock.Advance(Heartbeat);
        await link.TickAsync("db", Ct);
        Assert.Empty(_runner.Log);              // still waiting for a grant for the request sent at start
        _clock.Advance(Heartbeat);
        await link.TickAsync("db", Ct);

        Assert.Equal(DeactivationOrder, _runner.Log);
        Assert.Equal(2 * Heartbeat, _clock.GetUtcNow() - start);
        Assert.True(_clock.GetUtcNow() - start < _options.Cluster.Timings.SelfFenceDeadline);
        Assert.Equal(LeaseState.SelfFenced, Lease.State);
        Assert.Equal("Secondary", _node.Role);
    }

    [Fact]
    public async Task PrimaryAtStart_StepHangs_LastResortByStartPlusTheDeadline()
    {
        _peer.Down = true;
        _runner.Hang.Add("systemctl stop postgresql.service");
        var link = await CreateAsync(restarted: true);
        var start = _clock.GetUtcNow();
        await link.TickAsync("db", Ct);
        _clock.Advance(2 * Heartbeat);
        var tick = link.TickAsync("db", Ct);
        var left = _options.Cluster.Timings.SelfFenceDeadline - (2 * Heartbeat);
        await _time.WaitForTimerAsync(left, Ct);   // what is left of the deadline counted from start
        Assert.False(tick.IsCompleted);
        _clock.Advance(left);
        await tick;

        Assert.Equal(_options.Cluster.Timings.SelfFenceDeadline, _clock.GetUtcNow() - start);
        Assert.Equal("drbdadm suspend-io r0", _runner.Log[^1]);
        Assert.Contains("deadline of 500 ms passed", _local.GetLastError("db"));
    }

    [Fact]
    public async Task PrimaryAtStartAtGenerationZero_ABootstrapNotARestart_LeaseRunsFromTheFirstRequest_NoFenceBeforeItsEnd()
    {
        // Generation 0: no coordinator ever commanded this node (adoption persists 1): DRBD was made Primary by
        // hand before HaMesh took charge. It must not fence within two heartbeats as a restarted Primary does,
        // or the coordinator could never adopt it; it gets the lease a first request would.
        _peer.Down = true;
        var link = await CreateAsync(bootstrap: true);
        var start = _clock.GetUtcNow();
        await link.TickAsync("db", Ct);
        for (var beat = Heartbeat; beat < LeaseLength; beat += Heartbeat)
        {
            _clock.Advance(Heartbeat);
            await link.TickAsync("db", Ct);
        }

        Assert.Empty(_runner.Log);              // a restarted Primary would have fenced at 2 heartbeats
        Assert.Equal("Primary", _node.Role);
        _coordinator.Grant(_coordinator.Requests.Last());
        Assert.Equal(LeaseState.Held, Lease.State);
        Assert.True(_clock.GetUtcNow() - start < LeaseLength);
    }

    [Fact]
    public async Task PrimaryAtStart_GrantForTheRequestSentAtStart_KeepsItPrimary()
    {
        _peer.Down = true;
        var link = await CreateAsync(restarted: true);
        await link.TickAsync("db", Ct);
        _clock.Advance(TimeSpan.FromMilliseconds(100));
        _coordinator.Grant(_coordinator.Requests.Last());
        Assert.Equal(LeaseState.Held, Lease.State);
        Assert.Equal(LeaseLength - TimeSpan.FromMilliseconds(100), Lease.Remaining.ToTimeSpan());
        for (var beat = 0; beat < 3 * LeaseLength / Heartbeat; beat++)
        {
            _clock.Advance(Heartbeat);
            await link.TickAsync("db", Ct);
            _coordinator.Grant(_coordinator.Requests.Last());
        }

        Assert.Empty(_runner.Log);
        Assert.Equal("Primary", _node.Role);
        Assert.Equal(LeaseState.Held, Lease.State);
    }

    [Fact]
    public async Task Restart_SequencesGrowAcrossIncarnations_AGrantForTheEarlierRunsRequestDoesNotCount()
    {
        _peer.Down = true;
        var first = await CreateAsync();
        await first.TickAsync("db", Ct);
        var before = Assert.Single(_coordinator.Requests);
        first.Dispose();

        // The agent restarts (same state directory): a fresh link, its own coordinator session.
        var o = Options.Create(_options);
        var local = new AgentLocalState(_time);
        local.SetPromoting("db", true);
        var coordinator = new FakeCoordinator();
        var selfFence = new SelfFence(o, new ResourceSteps(_options, _runner, _node, _time), _runner, local, _signal, _time, NullLogger<SelfFence>.Instance);
        using var second = new PeerLink(o, local, _collector!, coordinator, new GenerationStore(o), selfFence, _time, NullLogger<PeerLink>.Instance, peerClientFactory: () => _peer);
        await second.TickAsync("db", Ct);
        var after = Assert.Single(coordinator.Requests);

        Assert.True(after.Sequence > before.Sequence, $"{after.Sequence} <= {before.Sequence}");
        Assert.Equal((before.Sequence >> 32) + 1, after.Sequence >> 32);
        coordinator.Grant(before);   // a late grant for the earlier run's request
        Assert.NotEqual(LeaseState.Held, local.GetLease("db").State);
        coordinator.Grant(after);
        Assert.Equal(LeaseState.Held, local.GetLease("db").State);
    }

    [Fact]
    public void Incarnation_PersistedCounter_GrowsAcrossStores_CorruptIsAnError()
    {
        var o = Options.Create(_options);
        Assert.Equal(1UL, new GenerationStore(o).NextIncarnation());
        Assert.Equal(2UL, new GenerationStore(o).NextIncarnation());
        Assert.Equal("2\n", File.ReadAllText(new GenerationStore(o).IncarnationPath));
        File.WriteAllText(new GenerationStore(o).IncarnationPath, "two\n");
        Assert.Contains("is corrupt", Assert.Throws<InvalidDataException>(() => new GenerationStore(o).NextIncarnation()).Message);
    }

    [Fact]
    public async Task VoteCrossesLeasePlusMargin_ReportSentAtOnce_NotAtTheNextHeartbeat()
    {
        _node.Role = "Secondary";
        using var reports = new ReportSignal();
        using var link = await CreateAsync(DrbdRole.Secondary, reports: reports);
        var start = _clock.GetUtcNow();
        var reported = reports.WaitAsync(Ct);
        await link.StartAsync(Ct);

        // The peer answers the first renewal 100 ms late, then goes away: the vote crosses at 100 ms + lease + margin.
        var (request, reply) = await _peer.NextAsync(Ct);
        _peer.Down = true;
        _clock.Advance(TimeSpan.FromMilliseconds(100));
        reply.SetResult(new RenewLeaseResponse { Granted = false, Reason = "b is Primary itself", Grantor = "b", Sequence = request.Sequence });
        await link.PeerReplyHandled("db");
        var promise = LeaseLength + _options.Cluster.Timings.DriftMargin;
        var crossing = start + TimeSpan.FromMilliseconds(100) + promise;
        // The loop wakes every heartbeat (timers matched on their instant, not their delay, so a timer of another
        // part with the same delay cannot make the test advance before the loop waits) ...
        for (var beat = start + Heartbeat; beat < crossing; beat += Heartbeat)
        {
            await _time.WaitForTimerAtAsync(beat, Ct);
            Assert.False(reported.IsCompleted);
            _clock.Advance(beat - _clock.GetUtcNow());
        }

        // ... and once more at the exact instant the vote crosses, not at the heartbeat after it.
        await _time.WaitForTimerAtAsync(crossing, Ct);
        Assert.False(reported.IsCompleted);
        _clock.Advance(crossing - _clock.GetUtcNow());
        await reported.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        Assert.Equal(TimeSpan.FromMilliseconds(100) + promise, _clock.GetUtcNow() - start);
        Assert.True(_local.GetPeerContactAge("db") >= promise);
        await link.StopAsync(Ct);
    }
}
