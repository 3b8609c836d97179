using Grpc.Core;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Failover;
using HaMesh.Protocol.V1;

namespace HaMesh.Coordinator.Tests.Failover;

public sealed class OperationExecutorTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task<ExecutorHarness> ReadyAsync()
    {
        var h = await ExecutorHarness.StartAsync(TimeSpan.Zero);
        h.Bootstrap("a");
        h.Report("a", "b");
        return h;
    }

    [Fact]
    public async Task Switchover_HealthyTarget_DemoteThenPromoteThenOneMoveThenVerified()
    {
        await using var h = await ReadyAsync();

        var result = await h.Host!.Client.SwitchoverAsync(new SwitchoverRequest { Resource = "db", Generation = 1, TargetNode = "b", Reason = "kernel update on a" }, cancellationToken: Ct);
        var done = await h.WaitForTerminalAsync(result.OperationId, Ct);

        Assert.True(result.Accepted);
        Assert.Equal(2UL, result.Generation);
        Assert.Equal("SwitchoverStarted", h.Host.Get<IEventLog>().List(result.EventSequence - 1, 1).Single().Record.Kind);
        Assert.Equal("SwitchoverCompleted", done.Record.Kind);
        Assert.Equal(["Demote a@2", "Promote b@2"], h.Agents.Calls);
        Assert.Equal(1, h.Posts);
        Assert.Equal("ns2.ip-1-2-3.eu", h.Ovh.RoutedTo(ExecutorHarness.Ip));
        var record = h.Store.GetResource("db");
        Assert.Equal(2UL, record.Generation);
        Assert.Equal("b", record.PrimaryNode);
        Assert.Empty(h.Store.PendingOperations());
        Assert.Equal(["SwitchoverStarted", "Demoted", "PrimaryHandedOver", "Promoted", "OvhMoveRequested", "OvhMoveCompleted", "IpVerified", "SwitchoverCompleted"],
            h.Kinds().SkipWhile(k => k != "SwitchoverStarted"));
        foreach (var timing in new[] { "decided_ms", "demoted_ms", "promoted_ms", "move_requested_ms", "routed_ms", "verified_ms" })
        {
            Assert.True(done.Record.Attributes.ContainsKey(timing), timing);
        }
    }

    [Fact]
    public async Task Switchover_RoutedButNothingAnswersThroughIp_RetriedThenRoutedUnverifiedNotCompleted()
    {
        await using var h = await ReadyAsync();
        h.Agents.RoutedNode = _ => null; // OVH routes the IP, but no agent answers through it
        var pause = h.Options.Cluster.Timings.Heartbeat * 4;

        var result = await h.Host!.Client.SwitchoverAsync(new SwitchoverRequest { Resource = "db", Generation = 1, TargetNode = "b" }, cancellationToken: Ct);
        for (var attempt = 1; attempt < OperationExecutor.VerifyAttempts; attempt++)
        {
            await h.Timers.WaitForTimerAsync(pause, Ct);
            h.Time.Advance(pause);
        }

        var done = await h.WaitForTerminalAsync(result.OperationId, Ct);

        Assert.Equal("SwitchoverRoutedUnverified", done.Record.Kind);
        Assert.Equal(EventSeverity.Critical, done.Record.Severity);
        Assert.Equal("routedunverified", done.Record.Attributes["outcome"]);
        var unreachable = Assert.Single(h.Host.Get<IEventLog>().List(0), e => e.Record.Kind == "IpRoutedButUnreachable");
        Assert.Contains($"{OperationExecutor.VerifyAttempts} end-to-end checks failed", unreachable.Record.Message);
        Assert.DoesNotContain(h.Host.Get<IEventLog>().List(0), e => e.Record.Kind == "SwitchoverCompleted");
        Assert.Equal(1, h.Posts);
    }

    [Fact]
    public async Task Switchover_DemoteOfOldPrimaryFails_AbortedTargetNeverPromotedOldReasserted()
    {
        await using var h = await ReadyAsync();
        h.Agents.Nodes["a"].FailDemote = true;

        var result = await h.Host!.Client.SwitchoverAsync(new SwitchoverRequest { Resource = "db", Generation = 1, TargetNode = "b" }, cancellationToken: Ct);
        var done = await h.WaitForTerminalAsync(result.OperationId, Ct);

        Assert.Equal("SwitchoverAborted", done.Record.Kind);
        Assert.Contains("target is busy", done.Record.Message);
        Assert.Contains("b was not promoted", done.Record.Message);
        Assert.Equal(["Demote a@2", "Promote a@2"], h.Agents.Calls);
        Assert.Equal(0, h.Posts);
        Assert.Equal(DrbdRole.Secondary, h.Agents.Nodes["b"].Role);
        var record = h.Store.GetResource("db");
        Assert.Equal("a", record.PrimaryNode);
        Assert.Equal(2UL, record.Generation);
    }

    [Fact]
    public async Task Switchover_TargetPromoteFails_RolledBackToOldPrimaryAtNewGeneration()
    {
        await using var h = await ReadyAsync();
        h.Agents.Nodes["b"].FailPromote = true;

        var result = await h.Host!.Client.SwitchoverAsync(new SwitchoverRequest { Resource = "db", Generation = 1, TargetNode = "b" }, cancellationToken: Ct);
        var done = await h.WaitForTerminalAsync(result.OperationId, Ct);

        Assert.Equal("SwitchoverRolledBack", done.Record.Kind);
        Assert.Equal(["Demote a@2", "Promote b@2", "Promote a@3"], h.Agents.Calls);
        Assert.Equal(0, h.Posts);
        var record = h.Store.GetResource("db");
        Assert.Equal("a", record.PrimaryNode);
        Assert.Equal(3UL, record.Generation);
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
        await using var h = await ExecutorHarness.StartAsync(TimeSpan.Zero);
        h.Bootstrap("a");
        var target = problem == "primary" ? "a" : "b";
        switch (problem)
        {
            case "disk":
                h.Agents.Nodes["b"].Disk = DiskState.Inconsistent;
                break;
            case "disconnected":
                h.Agents.Nodes["b"].Connection = ConnectionState.Connecting;
                break;
            case "outdated":
                h.Store.MarkOutdated("db", "b", 1, new EventRecord("PeerOutdated", "test", "db", "b"));
                break;
            case "maintenance":
                h.Store.SetMaintenance("db", true, new EventRecord("MaintenanceOn", "test", "db"));
                break;
        }

        h.Report(problem == "unreachable" ? ["a"] : ["a", "b"]);

        var ex = await Assert.ThrowsAsync<RpcException>(() => h.Host!.Client.SwitchoverAsync(new SwitchoverRequest { Resource = "db", Generation = 1, TargetNode = target }, cancellationToken: Ct).ResponseAsync);

        Assert.Equal(StatusCode.FailedPrecondition, ex.StatusCode);
        Assert.Contains(expected, ex.Status.Detail);
        Assert.Equal(1UL, h.Store.GetResource("db").Generation);
        Assert.Empty(h.Agents.Calls);
        Assert.Empty(h.Store.PendingOperations());
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
    }

    [Fact]
    public async Task Switchover_AnotherOperationInFlight_FailedPreconditionNamesIt()
    {
        await using var h = await ReadyAsync();
        var busy = h.Host!.Get<OperationExecutor>().TryReserve("db", OperationKinds.Failover)!;

        var ex = await Assert.ThrowsAsync<RpcException>(() => h.Host!.Client.SwitchoverAsync(new SwitchoverRequest { Resource = "db", Generation = 1, TargetNode = "b" }, cancellationToken: Ct).ResponseAsync);

        Assert.Equal(StatusCode.FailedPrecondition, ex.StatusCode);
        Assert.Contains($"failover {busy.Id} is already in flight", ex.Status.Detail);
        Assert.Equal(1UL, h.Store.GetResource("db").Generation);
    }

    [Fact]
    public async Task ForcePromote_WithoutDataLossAcknowledgement_InvalidArgumentNothingDone()
    {
        await using var h = await ReadyAsync();
        var ex = await Assert.ThrowsAsync<RpcException>(() => h.Host!.Client.ForcePromoteAsync(new ForcePromoteRequest { Resource = "db", Generation = 1, Node = "b" }, cancellationToken: Ct).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.StartsWith("i_understand_data_loss:", ex.Status.Detail, StringComparison.Ordinal);
        Assert.Empty(h.Agents.Calls);
        Assert.Equal(1UL, h.Store.GetResource("db").Generation);
    }

    [Fact]
    public async Task ForcePromote_OutdatedTargetOldPrimaryGone_ForcedPromoteAtNextGenerationIpMovedLoudEvent()
    {
        await using var h = await ExecutorHarness.StartAsync(TimeSpan.Zero);
        h.Bootstrap("a");
        h.Store.MarkOutdated("db", "b", 1, new EventRecord("PeerOutdated", "test", "db", "b"));
        h.Agents.Nodes["a"].Down = true;
        h.Agents.Nodes["b"].Disk = DiskState.Outdated;
        h.Agents.Nodes["b"].Connection = ConnectionState.Connecting;
        h.Report("b");

        var result = await h.Host!.Client.ForcePromoteAsync(new ForcePromoteRequest { Resource = "db", Generation = 1, Node = "b", IUnderstandDataLoss = true, Reason = "a's disks died" }, cancellationToken: Ct);
        var done = await h.WaitForTerminalAsync(result.OperationId, Ct);

        Assert.Equal("ForcePromoteCompleted", done.Record.Kind);
        Assert.Equal(["Promote b@2!"], h.Agents.Calls);
        Assert.Equal(1, h.Posts);
        Assert.Equal("b", h.Store.GetResource("db").PrimaryNode);
        var started = h.Host.Get<IEventLog>().List(0).Single(e => e.Record.Kind == "ForcePromoteStarted");
        Assert.Equal(EventSeverity.Critical, started.Record.Severity);
        Assert.Contains("FORCED", started.Record.Message);
        Assert.Contains("a's disks died", started.Record.Message);
    }

    [Fact]
    public async Task ForcePromote_OldPrimaryReachable_DemotedFirst()
    {
        await using var h = await ReadyAsync();
        var result = await h.Host!.Client.ForcePromoteAsync(new ForcePromoteRequest { Resource = "db", Generation = 1, Node = "b", IUnderstandDataLoss = true }, cancellationToken: Ct);
        var done = await h.WaitForTerminalAsync(result.OperationId, Ct);
        Assert.Equal("ForcePromoteCompleted", done.Record.Kind);
        Assert.Equal(["Demote a@2", "Promote b@2!"], h.Agents.Calls);
    }

    [Fact]
    public async Task Failover_CoordinatorCrashesAfterPromoteWhileMovePending_RestartedCoordinatorFinishesWithoutSecondPost()
    {
        // arrange: a is primary at generation 1, then goes silent; b stays and has lost its peer
        await using var h = await ExecutorHarness.StartAsync(TimeSpan.FromSeconds(30));
        h.Bootstrap("a");
        h.Agents.Nodes["a"].Down = true;
        h.Agents.Nodes["b"].Connection = ConnectionState.Connecting;
        var silence = h.Options.Cluster.Timings.SilenceThreshold;
        h.Time.Advance(silence + TimeSpan.FromMilliseconds(1));
        h.Report("b");

        // act 1: the decision loop fails over; the coordinator dies while OVH's move task is still running
        await h.Host!.Get<DecisionLoop>().TickAsync(Ct);
        var started = await h.WaitForEventAsync(e => e.Record.Kind == "FailoverStarted", Ct);
        var operation = started.Record.Attributes["operation"];
        var post = await h.WaitForEventAsync(e => e.Record.Kind == "OvhCall" && e.Record.Message.StartsWith("POST ", StringComparison.Ordinal), Ct);
        await h.WaitForEventAsync(e => e.Sequence > post.Sequence && e.Record.Kind == "OvhCall" && e.Record.Message.Contains("/task/", StringComparison.Ordinal), Ct);
        await h.CrashCoordinatorAsync();

        // OVH finishes the move while the coordinator is down
        h.Time.Advance(TimeSpan.FromSeconds(31));

        // act 2: a new coordinator on the same store
        await h.StartCoordinatorAsync();
        var done = await h.WaitForTerminalAsync(operation, Ct);

        // assert
        Assert.Equal("FailoverCompleted", done.Record.Kind);
        Assert.Equal(1, h.Posts);
        Assert.Equal(["Promote b@2"], h.Agents.Calls);
        var events = h.Kinds();
        Assert.Contains("OperationInterrupted", events);
        var resumed = Assert.Single(h.Host!.Get<IEventLog>().List(0), e => e.Record.Kind == "FailoverResumed");
        Assert.Contains("b reports Primary at generation 2", resumed.Record.Message);
        Assert.Contains("routed to ns2.ip-1-2-3.eu", resumed.Record.Message);
        Assert.Contains("AlreadyRouted with 0 POST", done.Record.Message);
        Assert.Empty(h.Store.PendingOperations());
        Assert.Equal(2UL, h.Store.GetResource("db").Generation);
    }

    [Fact]
    public async Task Resume_TargetUnreachableAfterRestart_AbandonedWithEventNoPost()
    {
        await using var h = await ExecutorHarness.StartAsync(TimeSpan.FromSeconds(30));
        h.Bootstrap("a");
        h.Agents.Nodes["a"].Down = true;
        h.Agents.Nodes["b"].Connection = ConnectionState.Connecting;
        h.Time.Advance(h.Options.Cluster.Timings.SilenceThreshold + TimeSpan.FromMilliseconds(1));
        h.Agents.Nodes["b"].FailPromote = true; // before the report: the loop decides as soon as it arrives
        h.Report("b");
        await h.Host!.Get<DecisionLoop>().TickAsync(Ct);
        var started = await h.WaitForEventAsync(e => e.Record.Kind == "FailoverStarted", Ct);
        await h.WaitForTerminalAsync(started.Record.Attributes["operation"], Ct);

        // a second, unfinished operation is what a crash leaves behind: write one, then restart with b down
        var record = h.Store.GetResource("db");
        h.Store.SaveOperation(new OperationPlan("crashed0001", OperationKinds.Failover, "db", "a", "b", record.Generation, "test", false, false).ToRecord(OperationPhases.Promoted, CoordinatorTestHostT0));
        await h.CrashCoordinatorAsync();
        h.Agents.Nodes["b"].Down = true;
        await h.StartCoordinatorAsync();
        var done = await h.WaitForTerminalAsync("crashed0001", Ct);

        Assert.Equal("FailoverAbandoned", done.Record.Kind);
        Assert.Contains("b cannot be read", done.Record.Message);
        Assert.Equal(0, h.Posts);
        Assert.Empty(h.Store.PendingOperations());
    }

    [Fact]
    public async Task Resume_FailoverNotPromotedAndOldPrimaryBackOnDrbd_AbandonedWithoutPromoteOrPost()
    {
        await using var h = await ExecutorHarness.StartAsync(TimeSpan.Zero);
        h.Bootstrap("a");
        // a crash right after generation 2 was persisted: b never got the Promote; a is back and connected to b
        h.Store.AdvanceGeneration("db", 1, "b", new EventRecord("FailoverStarted", "test", "db", "b"), isFailover: true,
            new OperationPlan("crashed0002", OperationKinds.Failover, "db", "a", "b", 0, "test", false, false).ToRecord(OperationPhases.Started, CoordinatorTestHostT0));
        await h.CrashCoordinatorAsync();
        await h.StartCoordinatorAsync();
        var done = await h.WaitForTerminalAsync("crashed0002", Ct);

        Assert.Equal("FailoverAbandoned", done.Record.Kind);
        Assert.Contains("the old primary is back", done.Record.Message);
        Assert.Empty(h.Agents.Calls);
        Assert.Equal(0, h.Posts);
        Assert.Empty(h.Store.PendingOperations());
    }

    [Fact]
    public async Task ForcePromote_RecordedPrimaryNotDrbdPrimary_ForcedAtNextGeneration()
    {
        await using var h = await ExecutorHarness.StartAsync(TimeSpan.Zero);
        h.Bootstrap("a");
        h.Agents.Nodes["a"].Role = DrbdRole.Secondary;
        h.Agents.Nodes["a"].Disk = DiskState.Consistent;
        h.Agents.Nodes["b"].Down = true;
        h.Report("a");

        var result = await h.Host!.Client.ForcePromoteAsync(new ForcePromoteRequest { Resource = "db", Generation = 1, Node = "a", IUnderstandDataLoss = true }, cancellationToken: Ct);
        var done = await h.WaitForTerminalAsync(result.OperationId, Ct);

        Assert.Equal("ForcePromoteCompleted", done.Record.Kind);
        Assert.Equal(["Promote a@2!"], h.Agents.Calls);
        Assert.Equal(0, h.Posts);
    }

    [Fact]
    public async Task DecisionLoop_StandAloneSecondary_SplitBrainEventWithExactRecoveryCommands()
    {
        await using var h = await ExecutorHarness.StartAsync(TimeSpan.Zero);
        h.Bootstrap("a");
        h.Agents.Nodes["a"].Connection = ConnectionState.StandAlone;
        h.Agents.Nodes["b"].Connection = ConnectionState.StandAlone;
        h.Report("a", "b");

        await h.Host!.Get<DecisionLoop>().TickAsync(Ct);
        var alert = await h.WaitForEventAsync(e => e.Record.Kind == "SplitBrain", Ct);

        Assert.Equal(EventSeverity.Critical, alert.Record.Severity);
        Assert.Contains("on b: drbdadm disconnect r0; drbdadm secondary r0; drbdadm connect --discard-my-data r0; then on a: drbdadm connect r0", alert.Record.Message);
        Assert.DoesNotContain(h.Agents.Calls, c => c.StartsWith("Demote b", StringComparison.Ordinal));
    }

    [Fact]
    public async Task DecisionLoop_StandAloneSecondaryWithDiscardPolicy_DemotedDiscardingItsChangesAndRejoined()
    {
        await using var h = await ExecutorHarness.StartAsync(TimeSpan.Zero, o => o.Resources[0].SplitBrainPolicy = Shared.Configuration.SplitBrainPolicy.DiscardOldPrimary);
        h.Bootstrap("a");
        h.Agents.Nodes["a"].Connection = ConnectionState.StandAlone;
        h.Agents.Nodes["b"].Connection = ConnectionState.StandAlone;
        h.Report("a", "b");

        await h.Host!.Get<DecisionLoop>().TickAsync(Ct);
        var rejoined = await h.WaitForEventAsync(e => e.Record.Kind == "Rejoined", Ct);

        Assert.NotEmpty(h.Agents.Calls);
        Assert.All(h.Agents.Calls, c => Assert.Equal("Demote b@1 discard", c)); // the victim only; never the primary
        Assert.Contains("divergent changes discarded", rejoined.Record.Message);
        Assert.DoesNotContain(h.Host.Get<IEventLog>().List(0), e => e.Record.Kind == "SplitBrain");
    }

    [Fact]
    public async Task DecisionLoop_PrimarySilent_FailoverStartsAtTheExactThresholdNotOnALaterHeartbeat()
    {
        await using var h = await ExecutorHarness.StartAsync(TimeSpan.Zero);
        h.Bootstrap("a");
        h.Report("a", "b");
        var silence = h.Options.Cluster.Timings.SilenceThreshold;
        var early = silence - TimeSpan.FromMilliseconds(130); // not a multiple of the heartbeat

        // a goes silent; shortly before the threshold b reports that it lost its peer long ago
        h.Agents.Nodes["a"].Down = true;
        h.Agents.Nodes["b"].Connection = ConnectionState.Connecting;
        h.Time.Advance(early);
        h.Report("b");

        // the loop decides on the report (too early: holds) and arms its wake for the exact instant of the threshold
        await h.Timers.WaitForTimerAtAsync(CoordinatorTestHostT0 + silence, Ct);
        Assert.DoesNotContain("FailoverStarted", h.Kinds());
        h.Time.Advance(TimeSpan.FromMilliseconds(130));
        var started = await h.WaitForEventAsync(e => e.Record.Kind == "FailoverStarted", Ct);

        Assert.Equal(CoordinatorTestHostT0 + silence, started.Time);
    }

    private static readonly DateTimeOffset CoordinatorTestHostT0 = Testing.Hosts.CoordinatorTestHost.T0;
}
