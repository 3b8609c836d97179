using Grpc.Core;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Tests.Store;
using HaMesh.Coordinator.Store;
using HaMesh.Protocol.V1;
using HaMesh.Testing.Hosts;

namespace HaMesh.Coordinator.Tests.CoreHost;

/// <summary>
/// The coordinator daemon's operations end to end: <see cref="Core.CoordinatorCoreHost"/> running the core in the real
/// composition, fake agents, the fake OVH API over HTTP, one fake clock (see <see cref="CoreHostHarness"/>).
/// </summary>
public sealed class CoordinatorCoreHostTests
{
    private static readonly DateTimeOffset T0 = CoordinatorTestHost.T0;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// a primary at generation 1, both nodes reporting. The core does not know where the failover IP is routed when it
    /// starts, so the first report of the primary starts a MoveIp check (read OVH: already routed to a, no POST; ping
    /// through the IP: a answers); it is let finish here, before the test's own operation.
    /// </summary>
    private static async Task<CoreHostHarness> ReadyAsync(Action<Shared.Configuration.HaMeshOptions>? configure = null, TimeSpan taskDuration = default)
    {
        var h = await CoreHostHarness.StartAsync(taskDuration, configure);
        await h.ReportAndSettleAsync("a", "b");
        Assert.Equal("OperationCompleted", h.Kinds()[^1]);
        Assert.Equal(0, h.Posts);
        return h;
    }

    private static string OperationOf(StoredEvent e) => e.Record.Attributes["operation"];

    // ------------------------------------------------------------------ switchover

    [Fact]
    public async Task Switchover_HealthyTarget_DemoteThenPromoteThenOneMoveThenVerified()
    {
        await using var h = await ReadyAsync();

        var result = await h.Host!.Client.SwitchoverAsync(new SwitchoverRequest { Resource = "db", Generation = 1, TargetNode = "b", Reason = "kernel update on a" }, cancellationToken: Ct);
        var done = await h.RunUntilTerminalAsync(result.OperationId);

        Assert.True(result.Accepted);
        Assert.Equal(2UL, result.Generation);
        Assert.Equal("SwitchoverStarted", h.Host.Get<IEventLog>().List(result.EventSequence - 1, 1).Single().Record.Kind);
        Assert.Equal("SwitchoverCompleted", done.Record.Kind);
        Assert.Equal(["Demote a@2", "Promote b@2"], h.Agents.Calls);
        Assert.Equal(1, h.Posts);
        Assert.Equal("ns2.ip-1-2-3.eu", h.Ovh.RoutedTo(CoreHostHarness.Ip));
        var record = h.Store.GetResource("db");
        Assert.Equal(2UL, record.Generation);
        Assert.Equal("b", record.PrimaryNode);
        Assert.Empty(h.Store.PendingOperations());
        // The core reads OVH's state before its one POST and again at each poll (one step later the move is done).
        Assert.Equal(["SwitchoverStarted", "Demote", "Demoted", "PrimaryHandedOver", "Promoted", "OvhReadState", "OvhMoveRequested", "OvhMoveAccepted", "OvhReadState", "OvhMoveCompleted", "IpVerified", "SwitchoverCompleted"],
            h.KindsFrom("SwitchoverStarted"));
        var a = done.Record.Attributes;
        Assert.Equal((result.OperationId, "switchover", "a", "b", "completed", "true"), (a["operation"], a["kind"], a["from"], a["to"], a["outcome"], a["terminal"]));
        // The new core's timings have no demoted_ms (the old executor's had); the demote happened before promoted_ms.
        // Commands and the first OVH calls answer without the clock moving; the move is seen done at the first poll.
        var poll = ((long)h.Options.Cluster.Timings.OvhPollInterval.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(("0", "0", "0", poll, poll), (a["decided_ms"], a["promoted_ms"], a["move_requested_ms"], a["routed_ms"], a["verified_ms"]));

        // the new primary's lease renewals are granted at once (the promise to the demoted a is void); a's are refused
        var streamA = h.Core.OpenStream("a");
        var streamB = h.Core.OpenStream("b");
        h.Core.LeaseRequest("b", new LeaseRequest { Resource = "db", Generation = 2, Sequence = 1 });
        h.Core.LeaseRequest("a", new LeaseRequest { Resource = "db", Generation = 1, Sequence = 1 });
        Assert.True(streamB.TryRead(out var forB) && forB.LeaseGrant.Granted, forB?.LeaseGrant.Reason);
        Assert.True(streamA.TryRead(out var forA));
        Assert.False(forA.LeaseGrant.Granted);
        Assert.Contains("made b primary at generation 2", forA.LeaseGrant.Reason);
    }

    [Fact]
    public async Task Switchover_RoutedButNothingAnswersThroughIp_UnreachableReportedRetriedUntilTimeoutNeverCompleted()
    {
        await using var h = await ReadyAsync();
        h.Agents.RoutedNode = _ => null; // OVH routes the IP, but no agent answers through it
        var pingsBefore = h.Agents.Pings;

        var result = await h.Host!.Client.SwitchoverAsync(new SwitchoverRequest { Resource = "db", Generation = 1, TargetNode = "b" }, cancellationToken: Ct);
        Assert.True(await h.RunUntilAsync(() => h.Events("IpRoutedButUnreachable").Count > 0, TimeSpan.FromSeconds(10)));

        // Reported after 4 pings without an answer, once; the operation goes on pinging (every reply timeout).
        var unreachable = Assert.Single(h.Events("IpRoutedButUnreachable"));
        Assert.Equal(EventSeverity.Critical, unreachable.Record.Severity);
        Assert.Contains($"{CoreHostHarness.Ip} is routed to b but 4 pings through it got no answer from b at generation 2", unreachable.Record.Message);
        Assert.Equal(5, h.Agents.Pings - pingsBefore);
        Assert.Null(h.Terminal(result.OperationId));

        // New behaviour: no "RoutedUnverified" outcome any more; it retries until the operation times out (OvhTimeout + 1 min), then abandons.
        var done = await h.RunUntilTerminalAsync(result.OperationId, h.OperationTimeout);

        Assert.Equal("SwitchoverAbandoned", done.Record.Kind);
        Assert.Equal(EventSeverity.Critical, done.Record.Severity);
        Assert.Equal("abandoned", done.Record.Attributes["outcome"]);
        Assert.Contains("stage Verifying", done.Record.Message);
        Assert.Single(h.Events("IpRoutedButUnreachable"));
        Assert.DoesNotContain("SwitchoverCompleted", h.Kinds());
        Assert.True(h.Agents.Pings - pingsBefore > 50, $"{h.Agents.Pings - pingsBefore} pings: the core should keep pinging until the timeout");
        Assert.Equal(1, h.Posts);
        Assert.Empty(h.Store.PendingOperations());
        Assert.Equal(("b", 2UL), (h.Store.GetResource("db").PrimaryNode, h.Store.GetResource("db").Generation));
    }

    [Fact]
    public async Task Switchover_MovePostAppliedButAnswered500_StateReadAgainPendingTaskFollowedNoSecondPost()
    {
        await using var h = await ReadyAsync(taskDuration: TimeSpan.FromSeconds(1));
        h.Ovh.Faults.Http500AfterPost = 1; // OVH creates the task, then answers 500: the outcome is unknown to the coordinator

        var done = await SwitchoverToBAsync(h);

        Assert.Equal("SwitchoverCompleted", done.Record.Kind);
        Assert.Equal(1, h.Posts);
        var kinds = h.KindsFrom("OvhMoveRequested");
        Assert.Equal(["OvhMoveRequested", "OvhMoveUncertain", "OvhReadState"], kinds.Take(3));   // a failed POST's outcome is unknown
        Assert.Single(kinds, k => k == "OvhMoveRequested");
        Assert.True(kinds.Count(k => k == "OvhReadState") > 1, "the pending task is followed by polling the state");
        Assert.Equal("ns2.ip-1-2-3.eu", h.Ovh.RoutedTo(CoreHostHarness.Ip));
    }

    [Fact]
    public async Task Switchover_MovePostRefused500BeforeTakingEffect_SecondPostOnlyAfterStateShowsNoMove()
    {
        await using var h = await ReadyAsync();
        h.Ovh.Faults.Http500OnPost = 1; // the POST fails before OVH processes it

        var done = await SwitchoverToBAsync(h);

        Assert.Equal("SwitchoverCompleted", done.Record.Kind);
        Assert.Equal(2, h.Posts);
        // every POST follows a read of the state that showed the IP neither routed to b nor moving there
        Assert.Equal(["OvhReadState", "OvhMoveRequested", "OvhMoveUncertain", "OvhReadState", "OvhMoveRequested", "OvhMoveAccepted", "OvhReadState", "OvhMoveCompleted", "IpVerified", "SwitchoverCompleted"],
            h.KindsFrom("Promoted").Skip(1));
    }

    /// <summary>An operator's switchover of db to b at generation 1, run to its terminal event.</summary>
    private static async Task<StoredEvent> SwitchoverToBAsync(CoreHostHarness h)
    {
        var result = await h.Host!.Client.SwitchoverAsync(new SwitchoverRequest { Resource = "db", Generation = 1, TargetNode = "b" }, cancellationToken: Ct);
        return await h.RunUntilTerminalAsync(result.OperationId);
    }

    [Fact]
    public async Task Switchover_DemoteOfOldPrimaryFails_AbortedTargetNeverPromotedOldReasserted()
    {
        await using var h = await ReadyAsync();
        h.Agents.Nodes["a"].FailDemote = true;

        var done = await SwitchoverToBAsync(h);

        Assert.Equal("SwitchoverAborted", done.Record.Kind);
        Assert.Equal("aborted", done.Record.Attributes["outcome"]);
        Assert.Contains("target is busy", done.Record.Message);
        Assert.Contains("b was not promoted", done.Record.Message);
        Assert.Contains("a stays primary (re-asserted at generation 2)", done.Record.Message);
        Assert.Equal(["Demote a@2", "Promote a@2"], h.Agents.Calls);
        Assert.Equal(["SwitchoverStarted", "Demote", "DemoteFailed", "SwitchoverAborted"], h.KindsFrom("SwitchoverStarted"));
        Assert.Equal(0, h.Posts);
        Assert.Equal(DrbdRole.Secondary, h.Agents.Nodes["b"].Role);
        var record = h.Store.GetResource("db");
        Assert.Equal("a", record.PrimaryNode);
        Assert.Equal(2UL, record.Generation);
        Assert.Empty(h.Store.PendingOperations());
    }

    [Fact]
    public async Task Switchover_TargetPromoteFails_RetriedThenRolledBackToOldPrimaryAtNewGeneration()
    {
        await using var h = await ReadyAsync();
        h.Agents.Nodes["b"].FailPromote = true;

        var done = await SwitchoverToBAsync(h);

        Assert.Equal("SwitchoverRolledBack", done.Record.Kind);
        Assert.Equal("rolledback", done.Record.Attributes["outcome"]);
        Assert.Contains("State change failed", done.Record.Message);
        // New behaviour: a refused Promote of the target is retried (every reply timeout, 1 s) for lease + drift margin
        // (2.5 s: it may have promised the old primary a lease) — at 0, 1, 2 and 3 s — before rolling back at g+2.
        Assert.Equal(["Demote a@2", "Promote b@2", "Promote b@2", "Promote b@2", "Promote b@2", "Promote a@3"], h.Agents.Calls);
        Assert.Contains("SwitchoverRollingBack", h.Kinds());
        Assert.Equal(0, h.Posts);
        var record = h.Store.GetResource("db");
        Assert.Equal("a", record.PrimaryNode);
        Assert.Equal(3UL, record.Generation);
        Assert.Empty(h.Store.PendingOperations());
        Assert.Equal((DrbdRole.Primary, 3UL), (h.Agents.Nodes["a"].Role, h.Agents.Nodes["a"].Generation));
    }

    [Theory]
    [InlineData("disk", "not UpToDate")]
    [InlineData("disconnected", "not connected to its DRBD peer (Connecting)")]
    [InlineData("outdated", "recorded outdated at generation 1")]
    [InlineData("maintenance", "maintenance off db")]
    [InlineData("primary", "already the primary")]
    [InlineData("unreachable", "b is not reachable")]
    public async Task Switchover_PreconditionNotMet_FailedPreconditionAndNothingPersisted(string problem, string expected)
    {
        Action<SqliteStore>? seed = problem switch
        {
            "outdated" => s => s.MarkOutdated("db", "b", 1, new EventRecord("PeerOutdated", "test", "db", "b")),
            "maintenance" => s => s.SetMaintenance("db", true, new EventRecord("MaintenanceOn", "test", "db")),
            _ => null,
        };
        await using var h = await CoreHostHarness.StartAsync(TimeSpan.Zero, seed: seed);
        var target = problem == "primary" ? "a" : "b";
        switch (problem)
        {
            case "disk":
                h.Agents.Nodes["b"].Disk = DiskState.Inconsistent;
                break;
            case "disconnected":
                h.Agents.Nodes["b"].Connection = ConnectionState.Connecting;
                break;
        }

        await h.ReportAndSettleAsync(problem == "unreachable" ? ["a"] : ["a", "b"]);

        var ex = await Assert.ThrowsAsync<RpcException>(() => h.Host!.Client.SwitchoverAsync(new SwitchoverRequest { Resource = "db", Generation = 1, TargetNode = target }, cancellationToken: Ct).ResponseAsync);

        Assert.Equal(StatusCode.FailedPrecondition, ex.StatusCode);
        Assert.Contains(expected, ex.Status.Detail);
        await h.SettleAsync();
        Assert.Equal(1UL, h.Store.GetResource("db").Generation);
        Assert.Empty(h.Agents.Calls);
        Assert.Empty(h.Store.PendingOperations());
        Assert.DoesNotContain("SwitchoverStarted", h.Kinds());
    }

    [Theory]
    [InlineData("", "b", 1UL, StatusCode.InvalidArgument, "resource:")]
    [InlineData("db", "", 1UL, StatusCode.InvalidArgument, "target_node:")]
    [InlineData("web", "b", 1UL, StatusCode.NotFound, "resource:")]
    [InlineData("db", "zz", 1UL, StatusCode.NotFound, "target_node:")]
    [InlineData("db", "b", 7UL, StatusCode.FailedPrecondition, "generation:")]
    public async Task Switchover_BadRequest_RejectedNamingField(string resource, string target, ulong generation, StatusCode code, string prefix)
    {
        await using var h = await ReadyAsync();
        var ex = await Assert.ThrowsAsync<RpcException>(() => h.Host!.Client.SwitchoverAsync(new SwitchoverRequest { Resource = resource, Generation = generation, TargetNode = target }, cancellationToken: Ct).ResponseAsync);
        Assert.Equal(code, ex.StatusCode);
        Assert.StartsWith(prefix, ex.Status.Detail, StringComparison.Ordinal);
        Assert.Empty(h.Agents.Calls);
        Assert.Equal(1UL, h.Store.GetResource("db").Generation);
        Assert.Empty(h.Store.PendingOperations());
    }

    [Fact]
    public async Task Switchover_AnotherOperationInFlight_FailedPreconditionNamesIt()
    {
        await using var h = await ReadyAsync();
        // a failover in flight: a gone, b lost its peer long ago; b's Promote is held so the failover cannot finish
        h.Agents.Nodes["a"].Down = true;
        h.Agents.Nodes["b"].Connection = ConnectionState.Connecting;
        h.Agents.Nodes["b"].Hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Time.Advance(h.Options.Cluster.Timings.SilenceThreshold);
        h.Report("b");
        var failover = OperationOf(Assert.Single(h.Events("FailoverStarted")));

        var ex = await Assert.ThrowsAsync<RpcException>(() => h.Host!.Client.SwitchoverAsync(new SwitchoverRequest { Resource = "db", Generation = 1, TargetNode = "b" }, cancellationToken: Ct).ResponseAsync);

        Assert.Equal(StatusCode.FailedPrecondition, ex.StatusCode);
        Assert.Contains($"failover {failover} is already in flight", ex.Status.Detail);
        Assert.Equal(2UL, h.Store.GetResource("db").Generation); // the failover's, nothing of the switchover
        Assert.DoesNotContain("SwitchoverStarted", h.Kinds());
        Assert.Equal(["Promote b@2"], h.Agents.Calls);
        h.Agents.Nodes["b"].Hold!.SetResult();
        Assert.Equal("FailoverCompleted", (await h.RunUntilTerminalAsync(failover)).Record.Kind);
    }

    // ------------------------------------------------------------------ force-promote

    [Fact]
    public async Task ForcePromote_WithoutDataLossAcknowledgement_InvalidArgumentNothingDone()
    {
        await using var h = await ReadyAsync();
        var ex = await Assert.ThrowsAsync<RpcException>(() => h.Host!.Client.ForcePromoteAsync(new ForcePromoteRequest { Resource = "db", Generation = 1, Node = "b" }, cancellationToken: Ct).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.StartsWith("i_understand_data_loss:", ex.Status.Detail, StringComparison.Ordinal);
        Assert.Empty(h.Agents.Calls);
        Assert.Equal(1UL, h.Store.GetResource("db").Generation);
        Assert.DoesNotContain("ForcePromoteStarted", h.Kinds());
    }

    [Fact]
    public async Task ForcePromote_OutdatedTargetOldPrimaryGone_ForcedPromoteAtNextGenerationIpMovedLoudEvent()
    {
        await using var h = await CoreHostHarness.StartAsync(TimeSpan.Zero, seed: s => s.MarkOutdated("db", "b", 1, new EventRecord("PeerOutdated", "test", "db", "b")));
        h.Agents.Nodes["a"].Down = true;
        h.Agents.Nodes["b"].Disk = DiskState.Outdated;
        h.Agents.Nodes["b"].Connection = ConnectionState.Connecting;
        await h.ReportAndSettleAsync("b");

        var result = await h.Host!.Client.ForcePromoteAsync(new ForcePromoteRequest { Resource = "db", Generation = 1, Node = "b", IUnderstandDataLoss = true, Reason = "a's disks died" }, cancellationToken: Ct);
        var done = await h.RunUntilTerminalAsync(result.OperationId);

        Assert.Equal("ForcePromoteCompleted", done.Record.Kind);
        Assert.Equal(["Promote b@2!"], h.Agents.Calls);
        Assert.Equal(1, h.Posts);
        Assert.Equal("ns2.ip-1-2-3.eu", h.Ovh.RoutedTo(CoreHostHarness.Ip));
        var record = h.Store.GetResource("db");
        Assert.Equal(("b", 2UL), (record.PrimaryNode, record.Generation));
        var started = Assert.Single(h.Events("ForcePromoteStarted"));
        Assert.Equal(EventSeverity.Critical, started.Record.Severity);
        Assert.Contains("FORCED", started.Record.Message);
        Assert.Contains("old primary a not reachable, not demoted", started.Record.Message);
        Assert.Contains("a's disks died", started.Record.Message);
        Assert.Equal("force-promote", started.Record.Attributes["kind"]);
    }

    [Fact]
    public async Task ForcePromote_OldPrimaryReachable_DemotedFirst()
    {
        await using var h = await ReadyAsync();
        var result = await h.Host!.Client.ForcePromoteAsync(new ForcePromoteRequest { Resource = "db", Generation = 1, Node = "b", IUnderstandDataLoss = true }, cancellationToken: Ct);
        var done = await h.RunUntilTerminalAsync(result.OperationId);
        Assert.Equal("ForcePromoteCompleted", done.Record.Kind);
        Assert.Equal(["Demote a@2", "Promote b@2!"], h.Agents.Calls);
        Assert.Equal(1, h.Posts);
        Assert.Equal("b", h.Store.GetResource("db").PrimaryNode);
    }

    [Fact]
    public async Task ForcePromote_RecordedPrimaryNotDrbdPrimary_ForcedAtNextGeneration()
    {
        await using var h = await CoreHostHarness.StartAsync(TimeSpan.Zero);
        h.Agents.Nodes["a"].Role = DrbdRole.Secondary;
        h.Agents.Nodes["a"].Disk = DiskState.Consistent;
        h.Agents.Nodes["b"].Down = true;
        await h.ReportAndSettleAsync("a");

        var result = await h.Host!.Client.ForcePromoteAsync(new ForcePromoteRequest { Resource = "db", Generation = 1, Node = "a", IUnderstandDataLoss = true }, cancellationToken: Ct);
        var done = await h.RunUntilTerminalAsync(result.OperationId);

        Assert.Equal("ForcePromoteCompleted", done.Record.Kind);
        Assert.Equal(["Promote a@2!"], h.Agents.Calls);
        Assert.Equal(0, h.Posts); // the IP is routed to a already: read, not moved
        Assert.Equal(("a", 2UL), (h.Store.GetResource("db").PrimaryNode, h.Store.GetResource("db").Generation));
    }

    // ------------------------------------------------------------------ failover, crash and resume

    /// <summary>a primary at generation 1 goes silent; b has lost its peer long ago and reports: the core fails over to b.</summary>
    private static string StartFailover(CoreHostHarness h)
    {
        h.Agents.Nodes["a"].Down = true;
        h.Agents.Nodes["b"].Connection = ConnectionState.Connecting;
        h.Time.Advance(h.Options.Cluster.Timings.SilenceThreshold);
        h.Report("b");
        return OperationOf(Assert.Single(h.Events("FailoverStarted")));
    }

    [Fact]
    public async Task Failover_CoordinatorCrashesAfterPromoteWhileMovePending_RestartedCoordinatorFinishesWithoutSecondPost()
    {
        await using var h = await CoreHostHarness.StartAsync(TimeSpan.FromSeconds(30));
        var operation = StartFailover(h);
        await h.SettleAsync(); // Promote b, read OVH, POST the move: accepted, OVH's task runs 30 s
        Assert.Single(h.Events("OvhMoveAccepted"));
        await h.CrashCoordinatorAsync();

        // OVH finishes the move while the coordinator is down; a new coordinator starts on the same store
        h.Time.Advance(TimeSpan.FromSeconds(31));
        await h.StartCoordinatorAsync();
        var done = await h.RunUntilTerminalAsync(operation);

        Assert.Equal("FailoverCompleted", done.Record.Kind);
        Assert.Equal(1, h.Posts);
        Assert.Equal(["Promote b@2", "Promote b@2"], h.Agents.Calls);   // asked again after the restart (idempotent)
        // New behaviour: no OperationInterrupted; the core resumes the persisted stage (Moving) from the idempotent Promote,
        // then re-reads OVH before anything else.
        var resumed = Assert.Single(h.Events("FailoverResumed"));
        Assert.Equal(operation, OperationOf(resumed));
        Assert.Contains("at stage Moving from Promoting, re-reading state first", resumed.Record.Message);
        Assert.Equal(["FailoverResumed", "Promoted", "OvhReadState", "OvhMoveCompleted", "IpVerified", "FailoverCompleted"], h.KindsFrom("FailoverResumed"));
        Assert.Empty(h.Store.PendingOperations());
        Assert.Equal(("b", 2UL), (h.Store.GetResource("db").PrimaryNode, h.Store.GetResource("db").Generation));
    }

    [Fact]
    public async Task Failover_TargetSelfFencedWhileTheCoordinatorWasDown_ResumedFailoverPromotesItAgainThenCompletes()
    {
        await using var h = await CoreHostHarness.StartAsync(TimeSpan.FromSeconds(30));
        var operation = StartFailover(h);
        await h.SettleAsync();
        Assert.Single(h.Events("OvhMoveAccepted"));
        await h.CrashCoordinatorAsync();

        // no coordinator and no peer: b's lease ran out and it fenced itself (Secondary, at generation 2)
        h.Agents.Nodes["b"].Role = DrbdRole.Secondary;
        h.Time.Advance(TimeSpan.FromSeconds(31));
        await h.StartCoordinatorAsync();
        var done = await h.RunUntilTerminalAsync(operation);

        // Before: resumed at Moving, it pinged a Secondary through the IP until the operation timed out.
        Assert.Equal("FailoverCompleted", done.Record.Kind);
        Assert.Equal(DrbdRole.Primary, h.Agents.Nodes["b"].Role);
        Assert.Equal(["Promote b@2", "Promote b@2"], h.Agents.Calls);
        Assert.Equal(1, h.Posts);
    }

    [Fact]
    public async Task Failover_CoordinatorCrashesWhileMoveTaskStillRunning_RestartedCoordinatorFollowsItWithoutSecondPost()
    {
        // a 30 s task inside a 60 s OVH timeout (the move fails only after that: Ovh_TaskStuck_*)
        await using var h = await CoreHostHarness.StartAsync(TimeSpan.FromSeconds(30), o => o.Cluster.Timings.OvhTimeout = TimeSpan.FromSeconds(60));
        var operation = StartFailover(h);
        await h.SettleAsync();
        Assert.Single(h.Events("OvhMoveAccepted"));
        await h.CrashCoordinatorAsync();

        // restarted while OVH's task is still running: the state shows it pending to b, so the core polls instead of posting
        h.Time.Advance(TimeSpan.FromSeconds(10));
        await h.StartCoordinatorAsync();
        var done = await h.RunUntilTerminalAsync(operation, TimeSpan.FromSeconds(30));

        Assert.Equal("FailoverCompleted", done.Record.Kind);
        Assert.Equal(1, h.Posts);
        var afterResume = h.KindsFrom("FailoverResumed");
        Assert.DoesNotContain("OvhMoveRequested", afterResume);
        Assert.True(afterResume.Count(k => k == "OvhReadState") > 1, "the pending task is followed by polling the state");
        Assert.Equal(["OvhMoveCompleted", "IpVerified", "FailoverCompleted"], afterResume.TakeLast(3));
        Assert.Equal(["Promote b@2", "Promote b@2"], h.Agents.Calls);   // asked again after the restart (idempotent)
        Assert.Empty(h.Store.PendingOperations());
    }

    /// <summary>What the previous daemon left behind when it crashed in a failover a → b at generation 2 (its legacy operation row).</summary>
    private static Action<SqliteStore> CrashedFailover(string phase) => s =>
        s.AdvanceGeneration("db", 1, "b", new EventRecord("FailoverStarted", "test", "db", "b"), isFailover: true,
            new OperationPlan("crashed0001", OperationKinds.Failover, "db", "a", "b", 0, "test", false, false).ToRecord(phase, T0));

    private static void BothDown(FakeAgents agents)
    {
        agents.Nodes["a"].Down = true;
        agents.Nodes["b"].Down = true;
    }

    [Fact]
    public async Task Resume_TargetUnreachableAfterRestartBeforeItWasPromoted_PromoteRetriedNoPostThenAbandoned()
    {
        await using var h = await CoreHostHarness.StartAsync(TimeSpan.Zero, seed: CrashedFailover(OperationPhases.Started), agents: BothDown);
        var resumed = Assert.Single(h.Events("FailoverResumed"));
        var operation = OperationOf(resumed);
        Assert.NotEqual("crashed0001", operation); // a legacy row resumes under a fresh core id
        Assert.Contains("at stage Promoting", resumed.Record.Message);

        // New behaviour: the old executor read b first and abandoned at once ("b cannot be read"); the core resumes at
        // the persisted stage, retries the idempotent Promote every reply timeout, and abandons at the operation timeout.
        var done = await h.RunUntilTerminalAsync(operation, h.OperationTimeout);

        Assert.Equal("FailoverAbandoned", done.Record.Kind);
        Assert.Equal("abandoned", done.Record.Attributes["outcome"]);
        Assert.Contains("stage Promoting", done.Record.Message);
        Assert.True(h.Agents.Calls.Count > 1);
        Assert.All(h.Agents.Calls, c => Assert.Equal("Promote b@2", c));
        Assert.Equal(0, h.Posts);
        Assert.DoesNotContain("OvhMoveRequested", h.Kinds());
        Assert.Empty(h.Store.PendingOperations());
        Assert.Equal(2UL, h.Store.GetResource("db").Generation);
    }

    [Fact]
    public async Task Resume_TargetUnreachableAfterRestartAfterItWasPromoted_AskedAgainBeforeAnyMove_NoPostThenAbandoned()
    {
        await using var h = await CoreHostHarness.StartAsync(TimeSpan.Zero, seed: CrashedFailover(OperationPhases.Promoted), agents: agents =>
        {
            BothDown(agents);
            (agents.Nodes["b"].Role, agents.Nodes["b"].Generation) = (DrbdRole.Primary, 2); // promoted before the crash
        });
        var operation = OperationOf(Assert.Single(h.Events("FailoverResumed")));

        // b confirmed its Promote before the crash, but it may have fenced itself while no coordinator granted its lease:
        // the resumed failover asks it again (an idempotent Promote) before anything else, and never moves the IP to a
        // node that does not answer.
        var done = await h.RunUntilTerminalAsync(operation, h.OperationTimeout);

        Assert.Equal("FailoverAbandoned", done.Record.Kind);
        Assert.Contains("stage Promoting", done.Record.Message);
        Assert.DoesNotContain("OvhMoveRequested", h.KindsFrom("FailoverResumed"));
        Assert.Equal(0, h.Posts);
        Assert.NotEmpty(h.Agents.Calls);
        Assert.All(h.Agents.Calls, c => Assert.Equal("Promote b@2", c));
        Assert.Empty(h.Store.PendingOperations());
    }

    [Fact]
    public async Task Resume_FailoverNotPromotedAndOldPrimaryBack_FailoverFinishedAndStaleOldPrimaryDemotedToRejoin()
    {
        // a crash right after generation 2 was persisted: b never got the Promote; a is back, still Primary at generation 1
        await using var h = await CoreHostHarness.StartAsync(TimeSpan.Zero, seed: CrashedFailover(OperationPhases.Started));
        var operation = OperationOf(Assert.Single(h.Events("FailoverResumed")));
        await h.SettleAsync();
        await h.ReportAndSettleAsync("a", "b");

        // New behaviour: the old executor abandoned ("the old primary is back"). The core finishes the decided failover:
        // a at generation 1 gets no lease from it any more (only the recorded primary b at generation 2 does) and the rule
        // then demotes a, the Primary at an old generation, to rejoin as Secondary. Never two primaries at one generation.
        var done = await h.RunUntilTerminalAsync(operation);
        Assert.Equal("FailoverCompleted", done.Record.Kind);
        var streamA = h.Core.OpenStream("a");
        h.Core.LeaseRequest("a", new LeaseRequest { Resource = "db", Generation = 1, Sequence = 1 });
        Assert.True(streamA.TryRead(out var forA));
        Assert.False(forA.LeaseGrant.Granted);
        await h.ReportAndSettleAsync("a", "b");

        var rejoined = Assert.Single(h.Events("Rejoined"));
        Assert.Equal("a", rejoined.Record.Node);
        Assert.Equal(["Promote b@2", "Demote a@2 reconnect"], h.Agents.Calls); // design §4 rejoin: Secondary, and DRBD reconnected
        Assert.Equal(1, h.Posts);
        Assert.DoesNotContain("Halted", h.Kinds());
        Assert.Equal((DrbdRole.Secondary, DrbdRole.Primary), (h.Agents.Nodes["a"].Role, h.Agents.Nodes["b"].Role));
        Assert.Equal(("b", 2UL), (h.Store.GetResource("db").PrimaryNode, h.Store.GetResource("db").Generation));
        Assert.Empty(h.Store.PendingOperations());
    }

    [Fact]
    public async Task Failover_TargetKeepsRefusingPromoteWithoutARestart_AbandonedEventNamesTheFailureNotARestart()
    {
        await using var h = await CoreHostHarness.StartAsync(TimeSpan.Zero);
        h.Agents.Nodes["b"].FailPromote = true;
        var operation = StartFailover(h);

        // A failover retries a refused Promote (every reply timeout) until the operation times out, then abandons.
        var done = await h.RunUntilTerminalAsync(operation, h.OperationTimeout);

        Assert.Equal("FailoverAbandoned", done.Record.Kind);
        Assert.Contains("stage Promoting", done.Record.Message);
        Assert.All(h.Agents.Calls, c => Assert.Equal("Promote b@2", c));
        Assert.Equal(0, h.Posts);
        // This coordinator never restarted and saw every refusal: the terminal event must say why, not blame a restart.
        // FAILS (core bug): CoordinatorCore's Running.LastFailure starts as "unknown (the coordinator restarted since)" and
        // is set only by a failed Demote or a switchover/force-promote's final PromoteFailed; a failover's refused Promotes,
        // failed OVH calls and unanswered pings never set it, so the Abandoned text reads
        // "(stage Promoting, last failure: unknown (the coordinator restarted since))".
        Assert.DoesNotContain("restarted", done.Record.Message);
        Assert.Contains("State change failed", done.Record.Message);
    }

    // ------------------------------------------------------------------ the rule

    [Fact]
    public async Task SplitBrain_StandAloneSecondary_SplitBrainEventWithExactRecoveryCommands()
    {
        await using var h = await CoreHostHarness.StartAsync(TimeSpan.Zero);
        h.Agents.Nodes["a"].Connection = ConnectionState.StandAlone;
        h.Agents.Nodes["b"].Connection = ConnectionState.StandAlone;
        await h.ReportAndSettleAsync("a", "b"); // the start's MoveIp check holds the rule while it runs
        await h.ReportAndSettleAsync("a", "b");

        var alert = Assert.Single(h.Events("SplitBrain"));
        Assert.Equal(EventSeverity.Critical, alert.Record.Severity);
        Assert.DoesNotContain(h.Agents.Calls, c => c.StartsWith("Demote", StringComparison.Ordinal));
        Assert.Contains("b is StandAlone", alert.Record.Message);
        // FAILS (core bug): CoordinatorCore.Act appends SplitBrain with Decision.Reason only ("... stopped; recover by
        // hand"); SplitBrainAlert.RecoveryCommands is dropped, and nothing replaces their RES with the DRBD resource (r0).
        Assert.Contains("on b: drbdadm disconnect r0; drbdadm secondary r0; drbdadm connect --discard-my-data r0; then on a: drbdadm connect r0", alert.Record.Message);
    }

    [Fact]
    public async Task SplitBrain_StandAloneSecondaryWithDiscardPolicy_DemotedDiscardingItsChangesAndRejoined()
    {
        await using var h = await CoreHostHarness.StartAsync(TimeSpan.Zero, o => o.Resources[0].SplitBrainPolicy = Shared.Configuration.SplitBrainPolicy.DiscardOldPrimary);
        h.Agents.Nodes["a"].Connection = ConnectionState.StandAlone;
        h.Agents.Nodes["b"].Connection = ConnectionState.StandAlone;
        await h.ReportAndSettleAsync("a", "b");
        await h.ReportAndSettleAsync("a", "b");

        var rejoined = Assert.Single(h.Events("Rejoined"));
        Assert.Equal(["Demote b@1 discard"], h.Agents.Calls); // the victim only; never the primary
        Assert.Equal("b", rejoined.Record.Node);
        Assert.Contains("divergent changes discarded", rejoined.Record.Message);
        Assert.DoesNotContain("SplitBrain", h.Kinds());
    }

    [Fact]
    public async Task Failover_PrimarySilent_StartsAtTheExactThresholdNotOnALaterHeartbeat()
    {
        await using var h = await ReadyAsync();
        var silence = h.Options.Cluster.Timings.SilenceThreshold;
        var early = silence - TimeSpan.FromMilliseconds(130); // not a multiple of the heartbeat

        // a goes silent; shortly before the threshold b reports that it lost its peer long ago
        h.Agents.Nodes["a"].Down = true;
        h.Agents.Nodes["b"].Connection = ConnectionState.Connecting;
        h.Time.Advance(early);
        h.Report("b");

        // the report re-arms the core's wake: its next heartbeat would be 250 ms after the report, but the threshold comes first
        h.Time.Advance(TimeSpan.FromMilliseconds(129));
        Assert.DoesNotContain("FailoverStarted", h.Kinds());
        h.Time.Advance(TimeSpan.FromMilliseconds(1));
        var started = Assert.Single(h.Events("FailoverStarted"));

        Assert.Equal(T0 + silence, started.Time);
        await h.SettleAsync();
    }

    // ------------------------------------------------------------------ fencing and leases

    [Fact]
    public async Task FencePeer_ThroughGrpc_PeerRecordedOutdatedBeforeTheAnswer_StaleGenerationRefused()
    {
        await using var h = await CoreHostHarness.StartAsync(TimeSpan.Zero, generation: 2);
        await h.ReportAndSettleAsync("a", "b");

        // a late call of a at an older generation must not outdate anything
        var stale = await h.Host!.Client.FencePeerAsync(new FencePeerRequest { Resource = "db", Generation = 1, RequestingNode = "a", PeerNode = "b", AfterReportSequence = 1 }, cancellationToken: Ct);

        Assert.Equal(FenceOutcome.Failed, stale.Outcome);
        Assert.Equal(2UL, stale.Generation);
        Assert.Contains("stale generation 1 < 2: a is not the current primary of db", stale.Message);
        Assert.Empty(h.Store.GetResource("db").OutdatedNodes);
        var refused = Assert.Single(h.Events("FencePeerRefused"));
        Assert.Equal((EventSeverity.Critical, "a"), (refused.Record.Severity, refused.Record.Node));
        Assert.Empty(h.Events("PeerOutdated"));

        // the primary at the current generation: the mark is in the store when the answer arrives
        var reply = await h.Host.Client.FencePeerAsync(new FencePeerRequest { Resource = "db", Generation = 2, RequestingNode = "a", PeerNode = "b", AfterReportSequence = 1 }, cancellationToken: Ct);

        Assert.Equal(FenceOutcome.PeerOutdated, reply.Outcome);
        Assert.Equal(2UL, reply.Generation);
        var record = h.Store.GetResource("db");
        Assert.Equal(2UL, record.OutdatedNodes["b"]);
        Assert.Equal(("a", 1UL), (record.OutdatedMarks["b"].Requester, record.OutdatedMarks["b"].AfterReportSequence));
        Assert.Equal("b", Assert.Single(h.Events("PeerOutdated")).Record.Node);
        // and the core acts on it: b may not be switched to
        var ex = await Assert.ThrowsAsync<RpcException>(() => h.Host.Client.SwitchoverAsync(new SwitchoverRequest { Resource = "db", Generation = 2, TargetNode = "b" }, cancellationToken: Ct).ResponseAsync);
        Assert.Contains("b is recorded outdated at generation 2", ex.Status.Detail);
    }

    [Fact]
    public async Task LeaseRequest_RecordedPrimaryAtCurrentGeneration_GrantedOnItsStream_StaleGenerationRefused()
    {
        await using var h = await CoreHostHarness.StartAsync(TimeSpan.Zero, generation: 2);
        var a = h.Core.OpenStream("a");
        var b = h.Core.OpenStream("b");

        h.Core.LeaseRequest("a", new LeaseRequest { Resource = "db", Generation = 2, Sequence = 7 });

        Assert.True(a.TryRead(out var granted));
        Assert.Equal(CoordinatorMessage.BodyOneofCase.LeaseGrant, granted.BodyCase);
        Assert.Equal(new LeaseGrant { Resource = "db", Generation = 2, Sequence = 7, Granted = true }, granted.LeaseGrant);

        h.Core.LeaseRequest("a", new LeaseRequest { Resource = "db", Generation = 1, Sequence = 8 });

        Assert.True(a.TryRead(out var refused));
        Assert.False(refused.LeaseGrant.Granted);
        Assert.Equal((8UL, 2UL), (refused.LeaseGrant.Sequence, refused.LeaseGrant.Generation));
        Assert.Contains("generation 1 is not the current generation 2", refused.LeaseGrant.Reason);
        Assert.False(a.TryRead(out _));
        Assert.False(b.TryRead(out _)); // answers go to the asking node's stream only
        h.Core.CloseStream("a", a);
        h.Core.CloseStream("b", b);
    }
}
