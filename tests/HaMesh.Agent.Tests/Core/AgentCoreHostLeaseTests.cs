using HaMesh.Agent.State;
using HaMesh.Agent.Tests.Lease;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;

namespace HaMesh.Agent.Tests.Core;

/// <summary>
/// The lease holder and self-fencing in the daemon (design §4 "Lease" and "Self-fencing"), on a fake clock: the host's
/// one timer per resource wakes the core at each heartbeat and at the exact end of a lease.
/// </summary>
public sealed class AgentCoreHostLeaseTests : AgentCoreHostFixture
{
    private static readonly string[] DeactivationOrder = ["ip addr del 203.0.113.10/32 dev eth0", "systemctl stop postgresql.service", "umount /srv/db", "drbdadm secondary r0"];

    /// <summary>A node promoted in this process at generation 5, holding a lease from a grant for a request sent at the start instant.</summary>
    private async Task<DateTimeOffset> PromotedAsync()
    {
        await StartAsync();
        var start = Clock.GetUtcNow();
        Assert.True((await Promote(5)).Success);
        Runner.Log.Clear();
        return start;
    }

    [Fact]
    public async Task Primary_RenewsEveryHeartbeat_WithCoordinatorAndPeer_GrantRunsFromSentTimeNotReceiveTime()
    {
        var start = await PromotedAsync();
        Assert.Equal(LeaseState.Held, Lease.State);
        Calls.Manual = true;
        Clock.Advance(Heartbeat);
        var (request, reply) = await Calls.NextAsync(Ct);
        Assert.Equal(5UL, request.Generation);
        Assert.Equal(2, Coordinator.Requests.Count);   // the Promote's request and this heartbeat's

        // Answered 200 ms later: the lease still runs from when the request was sent.
        Clock.Advance(TimeSpan.FromMilliseconds(200));
        reply.SetResult(FakeClusterCalls.Grant(request));
        await Host.WhenSettledAsync("db");
        var end = Clock.GetUtcNow() + Lease.Remaining.ToTimeSpan();
        Assert.InRange(end - (start + Heartbeat + LeaseLength), TimeSpan.FromMilliseconds(-1), TimeSpan.FromMilliseconds(1));
    }

    [Fact]
    public async Task GrantsFromCoordinatorOnly_KeepTheLease_PeerDown()
    {
        await PromotedAsync();
        Calls.Down = true;
        for (var beat = 0; beat < 3 * LeaseLength / Heartbeat; beat++)
        {
            Coordinator.Grant(Coordinator.Requests.Last());
            await AdvanceAsync(Heartbeat);
        }

        Assert.Equal(LeaseState.Held, Lease.State);
        Assert.Empty(Runner.Log);
    }

    [Fact]
    public async Task GrantsFromPeerOnly_KeepTheLease_CoordinatorSilent()
    {
        await PromotedAsync();
        for (var beat = 0; beat < 3 * LeaseLength / Heartbeat; beat++)
        {
            await AdvanceAsync(Heartbeat);
        }

        Assert.Equal(LeaseState.Held, Lease.State);
        Assert.Empty(Runner.Log);
    }

    [Fact]
    public async Task NoGrants_SelfFencesInOrder_AtTheExactLeaseEnd()
    {
        var start = await PromotedAsync();
        Calls.Down = true;
        var fencedAt = TimeSpan.MinValue;
        Runner.FirstCommand = (Clock, new TaskCompletionSource<DateTimeOffset>());
        for (var beat = 0; beat < 20 && Node.Role != "Secondary"; beat++)
        {
            await AdvanceAsync(Heartbeat);
        }

        fencedAt = await Runner.FirstCommand.Value.At.Task - start;
        Assert.Equal(DeactivationOrder, Runner.Log);
        Assert.Equal(LeaseLength, fencedAt);   // the lease of the Promote's request, sent at start
        Assert.False(Node.Mounted);
        Assert.Empty(Node.Active);
        Assert.Empty(Node.Ips);
        Assert.Equal(LeaseState.SelfFenced, Lease.State);
        Assert.Equal("self-fenced after lease expiry", Local.GetLastError("db"));
    }

    /// <summary>Promoted, then no grants: the lease runs out and the self-fence starts, and hangs at <paramref name="command"/>.</summary>
    private async Task SelfFenceHangsAtAsync(string command)
    {
        await PromotedAsync();
        Calls.Down = true;
        Runner.Hang.Add(command);
        var waitForFence = Time.WaitForTimerAsync(Deadline, Ct);
        Clock.Advance(LeaseLength);
        await waitForFence;
    }

    [Fact]
    public async Task SelfFence_StepHangsPastDeadline_LastResortSuspendIo_RunsAndIsReported()
    {
        await SelfFenceHangsAtAsync("systemctl stop postgresql.service");
        Assert.Equal(LeaseState.Expired, Lease.State);
        await AdvanceAsync(Deadline);

        Assert.Equal(["ip addr del 203.0.113.10/32 dev eth0", "systemctl stop postgresql.service", "drbdadm suspend-io r0"], Runner.Log);
        Assert.Equal(LeaseState.SelfFenced, Lease.State);
        var error = Local.GetLastError("db");
        Assert.Contains($"deadline of {Deadline.TotalMilliseconds} ms passed", error);
        Assert.Contains("I/O suspended (drbdadm suspend-io, exit 0)", error);
    }

    [Fact]
    public async Task SelfFence_StepHangs_NoLastResortConfigured_ReportedOperatorNeeded()
    {
        Options.Agent.SelfFenceLastResort = "none";
        await SelfFenceHangsAtAsync("umount /srv/db");
        await AdvanceAsync(Deadline);

        Assert.DoesNotContain(Runner.Log, l => l.Contains("suspend-io", StringComparison.Ordinal));
        Assert.Contains($"self-fence incomplete (deadline of {Deadline.TotalMilliseconds} ms passed); last resort 'none'", Local.GetLastError("db"));
    }

    [Fact]
    public async Task SelfFenceRunning_PromoteRefused_NothingActivated_DemoteAnsweredWhenTheFenceEnds()
    {
        // A Promote that arrives while a self-fence runs would start activating beside it (services, mount) half-way.
        await SelfFenceHangsAtAsync("umount /srv/db");

        var promote = await Promote(6).WaitAsync(TimeSpan.FromSeconds(30), Ct);
        var demote = Demote(6);

        Assert.False(promote.Success);
        Assert.Contains("stepping down", promote.Message);
        Assert.False(demote.IsCompleted);
        await AdvanceAsync(Deadline);
        Assert.False(RanAnyActivation, string.Join(" | ", Runner.Log));
        var demoted = await demote.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        Assert.True(demoted.Success, demoted.Message);
        Assert.Equal(["ip-alias:203.0.113.10/32-stop", "service:postgresql.service-stop"], demoted.Steps.Select(s => s.Step));   // the fence's steps (umount hung; then the last resort)
        Assert.Equal("6\n", File.ReadAllText(Generations.PathOf("db")));
    }

    [Theory]
    [InlineData("b is Primary itself", 5UL)]
    [InlineData("stale generation 5 < 6", 6UL)]
    public async Task RefusedGrants_DoNotExtendTheLease(string reason, ulong peerGeneration)
    {
        await PromotedAsync();
        Calls.AutoAnswer = r => new RenewLeaseResponse { Granted = false, Reason = reason, Grantor = "b", Generation = peerGeneration, Sequence = r.Sequence };
        for (var beat = 1; beat <= LeaseLength / Heartbeat; beat++)
        {
            Assert.Empty(Runner.Log);
            Coordinator.Grant(Coordinator.Requests.Last(), granted: false);
            await AdvanceAsync(Heartbeat);
        }

        Assert.Equal(DeactivationOrder, Runner.Log);
        Assert.Equal(LeaseState.SelfFenced, Lease.State);
    }

    [Fact]
    public async Task Secondary_NeverSelfFences_AsksNobodyForALease()
    {
        await StartAsync();
        Calls.Down = true;
        for (var beat = 0; beat < 3 * LeaseLength / Heartbeat; beat++)
        {
            await AdvanceAsync(Heartbeat);
        }

        Assert.Empty(Coordinator.Requests);
        Assert.Empty(Calls.Seen);
        Assert.Empty(Runner.Log);
        Assert.Equal(LeaseState.NotHeld, Lease.State);
    }

    [Fact]
    public async Task AfterSelfFence_LateAndNewGrants_ReactivateNothing()
    {
        await PromotedAsync();
        Calls.Down = true;
        for (var beat = 0; beat < LeaseLength / Heartbeat; beat++)
        {
            await AdvanceAsync(Heartbeat);
        }

        Assert.Equal(LeaseState.SelfFenced, Lease.State);
        Runner.Log.Clear();
        foreach (var request in Coordinator.Requests)
        {
            Coordinator.Grant(request);   // late grants for requests sent before the fence
        }

        Calls.Down = false;
        for (var beat = 0; beat < 3; beat++)
        {
            await AdvanceAsync(Heartbeat);
        }

        Assert.False(RanAnyActivation, string.Join(" | ", Runner.Log));
        Assert.Equal(LeaseState.SelfFenced, Lease.State);
        Assert.Equal("Secondary", Node.Role);
    }

    [Fact]
    public async Task PrimaryAtStart_HoldsNoLease_RenewsAtOnce_SelfFencesAfterTheStartGrace_DemotedWithinTheDeadline()
    {
        Calls.Down = true;
        Runner.FirstCommand = (Clock, new TaskCompletionSource<DateTimeOffset>());
        await StartAsync(DrbdRole.Primary, generation: 4);
        var start = Clock.GetUtcNow();
        Assert.Equal(LeaseState.NotHeld, Lease.State);   // nothing granted yet: the start grace is not a lease
        var first = Assert.Single(Coordinator.Requests);   // renewing at once, at its generation
        Assert.Equal(4UL, first.Generation);
        Assert.Single(Calls.Seen);

        var grace = Shared.Core.AgentCore.StartGrace(new(Heartbeat, LeaseLength, Options.Cluster.Timings.DriftMargin, Deadline));
        await AdvanceAsync(grace);

        Assert.Equal(grace, await Runner.FirstCommand.Value.At.Task - start);
        Assert.Equal(DeactivationOrder, Runner.Log);
        Assert.True(Clock.GetUtcNow() - start < Deadline);
        Assert.Equal(LeaseState.SelfFenced, Lease.State);
    }

    [Fact]
    public async Task PrimaryAtStart_StepHangs_LastResortByStartPlusTheDeadline()
    {
        Calls.Down = true;
        Runner.Hang.Add("umount /srv/db");
        await StartAsync(DrbdRole.Primary, generation: 4);
        var start = Clock.GetUtcNow();
        var grace = Shared.Core.AgentCore.StartGrace(new(Heartbeat, LeaseLength, Options.Cluster.Timings.DriftMargin, Deadline));
        var waitForFence = Time.WaitForTimerAsync(Deadline - grace, Ct);
        Clock.Advance(grace);
        await waitForFence;   // the self-fence gets only what is left of start + deadline
        await AdvanceAsync(Deadline - grace);

        Assert.Equal(Deadline, Clock.GetUtcNow() - start);
        Assert.Contains("drbdadm suspend-io r0", Runner.Log);
    }

    [Fact]
    public async Task PrimaryAtStart_GrantForTheRequestSentAtStart_KeepsItPrimary()
    {
        Calls.Down = true;
        await StartAsync(DrbdRole.Primary, generation: 4);
        Coordinator.Grant(Coordinator.Requests.Single());
        for (var beat = 0; beat < LeaseLength / Heartbeat - 1; beat++)
        {
            await AdvanceAsync(Heartbeat);
        }

        Assert.Empty(Runner.Log);
        Assert.Equal(LeaseState.Held, Lease.State);
        Assert.Equal("Primary", Node.Role);
    }

    [Fact]
    public async Task PrimaryAtStartAtGenerationZero_ABootstrap_LeaseRunsFromStart_NoFenceBeforeItsEnd_AdoptionKeepsIt()
    {
        // Set up by hand before HaMesh took charge: the coordinator adopts it (a Promote at its generation, every step already done).
        Calls.Down = true;
        await StartAsync(DrbdRole.Primary, generation: 0);
        for (var beat = 0; beat < LeaseLength / Heartbeat - 1; beat++)
        {
            await AdvanceAsync(Heartbeat);
        }

        Assert.Empty(Runner.Log);
        var adopted = await Promote(1);
        Assert.True(adopted.Success, adopted.Message);
        Assert.Equal("already Primary", adopted.Message);
        var atOne = Coordinator.Requests.Last();
        Assert.Equal(1UL, atOne.Generation);   // renewing at the adopted generation at once
        Coordinator.Grant(atOne);
        await AdvanceAsync(Heartbeat);
        Assert.Empty(Runner.Log);
        Assert.Equal(LeaseState.Held, Lease.State);
    }

    [Fact]
    public async Task RoleUnreadableAtStart_RetriedThenTakenAsPrimary_FailSafe_FencesUnlessGranted()
    {
        Calls.Down = true;
        var started = StartAsync(DrbdRole.Unknown, generation: 3);   // DRBD answers, but with no role
        for (var attempt = 0; attempt < 3; attempt++)
        {
            await Time.WaitForTimerAsync(Heartbeat, Ct);
            Assert.False(started.IsCompleted);
            Clock.Advance(Heartbeat);
        }

        await started;
        Assert.NotEmpty(Coordinator.Requests);   // a Primary found at start: it asks for a lease at once
        await AdvanceAsync(LeaseLength);
        Assert.Equal(LeaseState.SelfFenced, Lease.State);
    }

    [Fact]
    public async Task Restart_SequencesGrowAcrossIncarnations()
    {
        await StartAsync(DrbdRole.Primary, generation: 4);
        var first = Coordinator.Requests.Single().Sequence;
        await Host.StopAsync(Ct);
        var second = new GenerationStore(Microsoft.Extensions.Options.Options.Create(Options)).NextIncarnation();
        Assert.True(second << 32 > first, $"{second << 32} > {first}");
    }

    [Fact]
    public async Task VoteCrossesLeasePlusMargin_ReportSignalledAtOnce_NotAtTheNextHeartbeat()
    {
        await StartAsync();
        var start = Clock.GetUtcNow();
        Assert.True((await Renew(1)).Granted);   // peer contact at start
        // Without a token the semaphore's own task is returned, completed by the trigger itself (no continuation to wait for).
        var reported = Signal.WaitAsync(CancellationToken.None);
        Assert.True(reported.IsCompleted);   // the start's report (phase news)
        reported = Signal.WaitAsync(CancellationToken.None);
        var crossing = Promise;
        for (var t = TimeSpan.Zero; t + Heartbeat < crossing; t += Heartbeat)
        {
            await AdvanceAsync(Heartbeat);
            Assert.False(reported.IsCompleted);
        }

        await AdvanceAsync(crossing - (Clock.GetUtcNow() - start));
        Assert.True(reported.IsCompleted);
        Assert.Equal(Promise, Clock.GetUtcNow() - start);
        Assert.True(Local.GetPeerContactAge("db") >= Promise);
    }

    [Fact]
    public async Task FencePeer_CoordinatorRecordsThePeerOutdated_Exit4()
    {
        await PromotedAsync();
        var response = await Host.FencePeerAsync(new AgentFencePeerRequest { DrbdResource = "r0", PeerNodeId = -1 }, Ct);
        Assert.Equal((FenceOutcome.PeerOutdated, 4), (response.Outcome, response.DrbdExitCode));
        var fence = Assert.Single(Calls.Fences);
        Assert.Equal(("db", "a", "b", 5UL), (fence.Resource, fence.RequestingNode, fence.PeerNode, fence.Generation));
        Assert.Empty(Calls.Outdates);
    }

    /// <summary>As <see cref="PromotedAsync"/>, in a cluster with a third node c.</summary>
    private async Task ThreeNodesPromotedAsync()
    {
        Options.Nodes.Add(new NodeOptions { Name = "c", AgentAddress = "http://127.0.0.1:7703", ServiceName = "ns3.ip-1-2-3.eu" });
        await PromotedAsync();
    }

    [Fact]
    public async Task FencePeer_ThreeNodes_TheCoordinatorRecordsThePeerDrbdNamed_NotTheFirstOtherNode()
    {
        await ThreeNodesPromotedAsync();

        // DRBD 9 on a lost its link to c (node id 2): outdating b instead would leave the stale c promotable
        var response = await Host.FencePeerAsync(new AgentFencePeerRequest { DrbdResource = "r0", PeerNodeId = 2, PeerName = "c" }, Ct);

        Assert.Equal((FenceOutcome.PeerOutdated, 4), (response.Outcome, response.DrbdExitCode));
        Assert.Equal("c", Assert.Single(Calls.Fences).PeerNode);
    }

    [Fact]
    public async Task FencePeer_ThreeNodes_PeerNameNotANode_FailedExit1_NothingRecorded()
    {
        await ThreeNodesPromotedAsync();

        var response = await Host.FencePeerAsync(new AgentFencePeerRequest { DrbdResource = "r0", PeerNodeId = 2, PeerName = "db3.example.net" }, Ct);

        Assert.Equal((FenceOutcome.Failed, 1), (response.Outcome, response.DrbdExitCode));
        Assert.Contains("cannot tell which of b, c", response.Message);
        Assert.Contains("'db3.example.net'", response.Message);
        Assert.Empty(Calls.Fences);
        Assert.Empty(Calls.Outdates);
    }

    [Fact]
    public async Task FencePeer_CoordinatorDown_ThePeerOutdatesItself_Exit4()
    {
        await PromotedAsync();
        Calls.CoordinatorDown = true;
        var fenced = Host.FencePeerAsync(new AgentFencePeerRequest { DrbdResource = "r0", PeerNodeId = -1 }, Ct);
        await Host.WhenSettledAsync("db");
        Assert.False(fenced.IsCompleted);
        for (var beat = 0; beat < 2 && !fenced.IsCompleted; beat++)
        {
            Coordinator.Grant(Coordinator.Requests.Last());
            await AdvanceAsync(Heartbeat);
        }

        var response = await fenced;
        Assert.Equal((FenceOutcome.PeerOutdated, 4), (response.Outcome, response.DrbdExitCode));
        Assert.Contains("b outdated itself", response.Message);
        Assert.Equal(5UL, Assert.Single(Calls.Outdates).Generation);
    }

    [Fact]
    public async Task FencePeer_BothDown_AnsweredFailedOnceBothWereTried_Exit1_IoStaysFrozen()
    {
        await PromotedAsync();
        Calls.CoordinatorDown = true;
        Calls.Down = true;
        var fenced = Host.FencePeerAsync(new AgentFencePeerRequest { DrbdResource = "r0", PeerNodeId = -1 }, Ct);
        await Host.WhenSettledAsync("db");
        Assert.False(fenced.IsCompleted);   // the coordinator failed; the peer is asked at the retry
        for (var beat = 0; beat < 2; beat++)
        {
            Coordinator.Grant(Coordinator.Requests.Last());
            await AdvanceAsync(Heartbeat);
        }

        var response = await fenced.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        Assert.Equal((FenceOutcome.Failed, 1), (response.Outcome, response.DrbdExitCode));
        Assert.Contains("I/O stays frozen", response.Message);
        Assert.Contains("coordinator unreachable", response.Message);
        Assert.Contains("b unreachable", response.Message);
        Assert.Single(Calls.Outdates);
        Assert.Single(Calls.Fences);
    }
}
