using System.Collections.Immutable;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Core;
using HaMesh.Shared.Failover;

namespace HaMesh.Simulation.Tests;

/// <summary>The coordinator core's operator paths and wake-ups, driven directly (no harness): effects in order.</summary>
public sealed class CoordinatorCoreTests
{
    private const string R = "r0";
    private static readonly HaOptions Policy = new(TimeSpan.FromSeconds(2), TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(10));
    private static readonly MonoTime T0 = new(TimeSpan.FromSeconds(100));
    private ulong _seq;

    private static CoordinatorCore Core(bool maintenance = false, ImmutableDictionary<string, ulong>? outdated = null) =>
        new(new CoordinatorConfig(["a", "b"], [new CoreResource(R, "a", ["203.0.113.10/32"])], Policy, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30)),
            [CoordinatorRecord.Empty(R) with { Generation = 1, Primary = "a", Maintenance = maintenance, Outdated = outdated ?? ImmutableDictionary<string, ulong>.Empty }], 0, T0);

    /// <summary>Both nodes report; the first report already decides (the IP's route is unknown: read, verified) and that is answered.</summary>
    private void Healthy(CoordinatorCore core, MonoTime now, DiskState bDisk = DiskState.UpToDate)
    {
        var fx = new List<CoordinatorEffect>();
        fx.AddRange(core.OnReport(now, "a", R, new NodeResourceFacts(DrbdRole.Primary, DiskState.UpToDate, ConnectionState.Connected, DrbdRole.Secondary, 1, TimeSpan.Zero), ++_seq, ["b"]));
        fx.AddRange(core.OnReport(now, "b", R, new NodeResourceFacts(DrbdRole.Secondary, bDisk, ConnectionState.Connected, DrbdRole.Primary, 1, TimeSpan.Zero), ++_seq, []));
        AnswerIpChecks(core, now, fx);
        Assert.Null(core.Record(R).Operation);
    }

    /// <summary>Answers the OVH reads and pings among <paramref name="fx"/> (and those the answers lead to): the IP routes to the recorded primary.</summary>
    private static void AnswerIpChecks(CoordinatorCore core, MonoTime now, List<CoordinatorEffect> fx)
    {
        for (var i = 0; i < fx.Count; i++)
        {
            var rec = core.Record(R);
            switch (fx[i])
            {
                case CoordinatorEffect.CallOvh { Call: OvhCall.ReadState } c:
                    fx.AddRange(core.OnOvhReply(now, R, c.CallId, new OvhReply.State(rec.Primary, null)));
                    break;
                case CoordinatorEffect.PingViaIp p:
                    fx.AddRange(core.OnPingReply(now, R, p.CallId, rec.Primary, rec.Generation));
                    break;
            }
        }
    }

    private static CoordinatorEffect.SendCommand Command(IEnumerable<CoordinatorEffect> fx) => Assert.Single(fx.OfType<CoordinatorEffect.SendCommand>());

    private static List<string> Events(IEnumerable<CoordinatorEffect> fx) => [.. fx.OfType<CoordinatorEffect.AppendEvent>().Select(e => e.Event.Kind)];

    // ------------------------------------------------------------------ outdated marks (design §4.1)

    private static readonly NodeResourceFacts PrimaryA = new(DrbdRole.Primary, DiskState.UpToDate, ConnectionState.Connected, DrbdRole.Secondary, 1, TimeSpan.Zero);

    /// <summary>A healthy pair where a's fence-peer handler had b recorded outdated after a's report <paramref name="afterReport"/> (0: its latest).</summary>
    private CoordinatorCore FencedB(ulong afterReport = 0)
    {
        var core = Core();
        Healthy(core, T0);
        var fx = core.OnFenceRequest(T0, "a", R, "b", 1, 77, afterReport == 0 ? _seq : afterReport);
        Assert.Contains("PeerOutdated", Events(fx));
        Assert.Equal(1UL, core.Record(R).Outdated["b"]);
        return core;
    }

    [Fact]
    public void OutdatedMark_TheFencingPrimaryReportsThePeerUpToDateAfterTheFence_Cleared()
    {
        var core = FencedB();

        var fx = core.OnReport(T0 + Policy.Lease, "a", R, PrimaryA, ++_seq, ["b"]);

        Assert.Contains("OutdatedCleared", Events(fx));
        Assert.Empty(core.Record(R).Outdated);
        Assert.Empty(core.Record(R).OutdatedBy);
    }

    [Fact]
    public void OutdatedMark_AReportTheFencingPrimaryBuiltBeforeTheFence_KeepsIt()
    {
        // Regression (simulation seed 1779): a report built before the link broke, delivered after the fence, still says
        // "peer Connected, UpToDate"; clearing on it lost acknowledged writes at the next failover.
        var core = FencedB(afterReport: _seq + 5);

        Assert.DoesNotContain("OutdatedCleared", Events(core.OnReport(T0 + Policy.Lease, "a", R, PrimaryA, ++_seq, ["b"])));
        Assert.True(core.Record(R).Outdated.ContainsKey("b"));
    }

    [Fact]
    public void OutdatedMark_PeerNotUpToDateForTheFencingPrimary_KeepsIt()
    {
        var core = FencedB();

        // still syncing (or not connected): a does not list b among its connected UpToDate peers
        Assert.DoesNotContain("OutdatedCleared", Events(core.OnReport(T0 + Policy.Lease, "a", R, PrimaryA with { PeerConnection = ConnectionState.Connecting }, ++_seq, [])));
        Assert.True(core.Record(R).Outdated.ContainsKey("b"));
    }

    [Fact]
    public void OutdatedMark_TheOutdatedNodeItselfReportsUpToDate_KeepsIt()
    {
        // Regression (simulation seed 165): b may be connected to another stale Secondary; only the fencing primary may say
        var core = FencedB();
        var b = new NodeResourceFacts(DrbdRole.Secondary, DiskState.UpToDate, ConnectionState.Connected, DrbdRole.Primary, 1, TimeSpan.Zero);

        Assert.DoesNotContain("OutdatedCleared", Events(core.OnReport(T0 + Policy.Lease, "b", R, b, ++_seq, ["a"])));
        Assert.True(core.Record(R).Outdated.ContainsKey("b"));
    }

    [Fact]
    public void OutdatedMark_TheFencingNodeNoLongerPrimary_KeepsIt()
    {
        var core = FencedB();

        Assert.DoesNotContain("OutdatedCleared", Events(core.OnReport(T0 + Policy.Lease, "a", R, PrimaryA with { Role = DrbdRole.Secondary }, ++_seq, ["b"])));
        Assert.True(core.Record(R).Outdated.ContainsKey("b"));
    }

    [Fact]
    public void Rejoin_OldPrimaryDemotedWithReconnect_ALateAnswerToASupersededDemoteIsIgnored()
    {
        // b took over at generation 2; a comes back still Primary at generation 1
        var core = new CoordinatorCore(
            new CoordinatorConfig(["a", "b"], [new CoreResource(R, "a", ["203.0.113.10/32"])], Policy, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30)),
            [CoordinatorRecord.Empty(R) with { Generation = 2, Primary = "b" }], 0, T0);
        var oldPrimary = new NodeResourceFacts(DrbdRole.Primary, DiskState.UpToDate, ConnectionState.StandAlone, DrbdRole.Unknown, 1, TimeSpan.FromSeconds(30));
        AnswerIpChecks(core, T0, [.. core.OnReport(T0, "b", R, new NodeResourceFacts(DrbdRole.Primary, DiskState.UpToDate, ConnectionState.StandAlone, DrbdRole.Unknown, 2, TimeSpan.FromSeconds(30)), ++_seq, [])]);
        Assert.Null(core.Record(R).Operation);
        var first = Command(core.OnReport(T0, "a", R, oldPrimary, ++_seq, []).Where(e => e is CoordinatorEffect.SendCommand { Command.Kind: CommandKind.Demote }));

        // design §4 rejoin: stopped, unmounted, Secondary, and DRBD reconnected (keeping its data)
        Assert.Equal(("a", 2UL, true, false), (first.Node, first.Command.Generation, first.Command.Reconnect, first.Command.DiscardMyData));

        // no answer: the rule asks again; then the answer to the first Demote arrives late
        var later = T0 + TimeSpan.FromSeconds(3);
        core.OnReport(later, "b", R, new NodeResourceFacts(DrbdRole.Primary, DiskState.UpToDate, ConnectionState.StandAlone, DrbdRole.Unknown, 2, TimeSpan.FromSeconds(33)), ++_seq, []);
        var second = Command(core.OnTimer(later).Concat(core.OnReport(later, "a", R, oldPrimary with { PeerContactAge = TimeSpan.FromSeconds(33) }, ++_seq, []))
            .Where(e => e is CoordinatorEffect.SendCommand { Command.Kind: CommandKind.Demote }));
        Assert.NotEqual(first.Command.Id, second.Command.Id);

        Assert.Empty(Events(core.OnCommandReply(later, "a", R, first.Command.Id, false, "timed out")));
        Assert.Equal(["Rejoined"], Events(core.OnCommandReply(later, "a", R, second.Command.Id, true, "stopped, unmounted, secondary")));
        Assert.Empty(Events(core.OnCommandReply(later, "a", R, second.Command.Id, true, "again")));
    }

    [Fact]
    public void Report_CastingTheVote_StartsTheFailoverAtOnce_ARepeatedReportWaitsForTheTimer()
    {
        var core = Core();
        Healthy(core, T0);
        var silent = T0 + Policy.Silence + TimeSpan.FromMilliseconds(100);   // a is silent for the coordinator
        var stillHears = new NodeResourceFacts(DrbdRole.Secondary, DiskState.UpToDate, ConnectionState.Connecting, DrbdRole.Unknown, 1, TimeSpan.FromSeconds(1));

        // b still heard from a a second ago: no vote, hold (a report that repeats that, with a new age under the
        // silence threshold, changes nothing the rule reads and is not decided on)
        Assert.Empty(core.OnReport(silent, "b", R, stillHears, ++_seq, []).OfType<CoordinatorEffect.SendCommand>());
        Assert.Empty(core.OnReport(silent, "b", R, stillHears with { PeerContactAge = TimeSpan.FromSeconds(1.5) }, ++_seq, []));

        // b's vote is cast in its report: decided on that report, not a heartbeat later
        var fx = core.OnReport(silent, "b", R, stillHears with { PeerContactAge = Policy.Silence }, ++_seq, []);

        Assert.Equal("FailoverStarted", Events(fx)[0]);
        Assert.Equal(("b", CommandKind.Promote, 2UL), (Command(fx).Node, Command(fx).Command.Kind, Command(fx).Command.Generation));
    }

    [Fact]
    public void Switchover_PersistsNextGenerationWithStartedEventThenDemotesTheOldPrimaryFirst()
    {
        var core = Core();
        Healthy(core, T0);

        var outcome = core.OnSwitchover(T0, R, "b", 1, "kernel update");

        Assert.Null(outcome.Refusal);
        Assert.Equal(2UL, outcome.Generation);
        var started = Assert.IsType<CoordinatorEffect.AppendEvent>(outcome.Effects[0]);
        Assert.Equal("SwitchoverStarted", started.Event.Kind);
        var persisted = Assert.IsType<CoordinatorEffect.PersistRecord>(outcome.Effects[1]);
        Assert.Equal((2UL, "a"), (persisted.Record.Generation, persisted.Record.Primary)); // the old primary stays recorded until demoted
        var demote = Command(outcome.Effects);
        Assert.Equal(("a", CommandKind.Demote, 2UL), (demote.Node, demote.Command.Kind, demote.Command.Generation));
    }

    [Fact]
    public void Switchover_TargetStepsDownWhileItsIpIsMoved_PromotedAgain()
    {
        var core = Core();
        Healthy(core, T0);
        var demote = Command(core.OnSwitchover(T0, R, "b", 1, "planned").Effects);
        var promote = Command(core.OnCommandReply(T0, "a", R, demote.Command.Id, true, "secondary"));
        Assert.Single(core.OnCommandReply(T0, "b", R, promote.Command.Id, true, "primary").OfType<CoordinatorEffect.CallOvh>());

        // b lost its lease and fenced itself while the move runs: without this, the core would move the IP to a
        // Secondary and ping it until the operation timed out
        var later = T0 + TimeSpan.FromSeconds(1);
        var fx = core.OnReport(later, "b", R, new NodeResourceFacts(DrbdRole.Secondary, DiskState.UpToDate, ConnectionState.Connected, DrbdRole.Secondary, 2, TimeSpan.Zero), ++_seq, ["a"]);

        Assert.Contains("TargetSteppedDown", Events(fx));
        Assert.Equal(("b", CommandKind.Promote, 2UL), (Command(fx).Node, Command(fx).Command.Kind, Command(fx).Command.Generation));
        Assert.Equal(OperationStage.Promoting, core.Record(R).Operation!.Stage);
    }

    [Fact]
    public void Switchover_DemotedThenPromotedThenMovedAndVerified_Completed()
    {
        var core = Core();
        Healthy(core, T0);
        var demote = Command(core.OnSwitchover(T0, R, "b", 1, "planned").Effects);

        var handed = core.OnCommandReply(T0, "a", R, demote.Command.Id, true, "secondary");
        var promote = Command(handed);
        Assert.Equal(["Demoted", "PrimaryHandedOver"], Events(handed));
        Assert.Equal("b", core.Record(R).Primary);
        Assert.Equal(("b", CommandKind.Promote, 2UL), (promote.Node, promote.Command.Kind, promote.Command.Generation));
        var read = Assert.Single(core.OnCommandReply(T0, "b", R, promote.Command.Id, true, "primary").OfType<CoordinatorEffect.CallOvh>());
        var move = Assert.Single(core.OnOvhReply(T0, R, read.CallId, new OvhReply.State("a", null)).OfType<CoordinatorEffect.CallOvh>());
        Assert.IsType<OvhCall.Move>(move.Call);
        core.OnOvhReply(T0, R, move.CallId, new OvhReply.MoveAccepted(7));
        var poll = Assert.Single(core.OnTimer(T0 + TimeSpan.FromSeconds(1)).OfType<CoordinatorEffect.CallOvh>());
        var ping = Assert.Single(core.OnOvhReply(T0, R, poll.CallId, new OvhReply.State("b", null)).OfType<CoordinatorEffect.PingViaIp>());
        var done = core.OnPingReply(T0, R, ping.CallId, "b", 2);

        Assert.Contains("SwitchoverCompleted", Events(done));
        Assert.Null(core.Record(R).Operation);
        Assert.Equal((2UL, "b"), (core.Record(R).Generation, core.Record(R).Primary));
    }

    [Fact]
    public void Switchover_TargetNeverComesUp_RolledBackToTheOldPrimaryAtGenerationPlusTwo()
    {
        var core = Core();
        Healthy(core, T0);
        var demote = Command(core.OnSwitchover(T0, R, "b", 1, "planned").Effects);
        var promote = Command(core.OnCommandReply(T0, "a", R, demote.Command.Id, true, "secondary"));

        // refused within the retry window (the target may have promised the old primary a lease): retried, no roll-back yet
        var early = core.OnCommandReply(T0, "b", R, promote.Command.Id, false, "b promised a lease");
        Assert.DoesNotContain("SwitchoverRollingBack", Events(early));
        var again = Command(core.OnTimer(T0 + TimeSpan.FromSeconds(1)));
        Assert.Equal(("b", 2UL), (again.Node, again.Command.Generation));

        var late = core.OnCommandReply(T0 + TimeSpan.FromSeconds(3), "b", R, again.Command.Id, false, "drbdadm primary exited 11");
        Assert.Contains("SwitchoverRollingBack", Events(late));
        Assert.Equal((3UL, "a"), (core.Record(R).Generation, core.Record(R).Primary));
        var back = Command(late);
        Assert.Equal(("a", CommandKind.Promote, 3UL), (back.Node, back.Command.Kind, back.Command.Generation));
        var done = core.OnCommandReply(T0 + TimeSpan.FromSeconds(3), "a", R, back.Command.Id, true, "primary");
        Assert.Contains("SwitchoverRolledBack", Events(done));
        Assert.Null(core.Record(R).Operation);
    }

    [Fact]
    public void Switchover_DemoteFails_AbortedAfterReassertingTheOldPrimaryTargetUntouched()
    {
        var core = Core();
        Healthy(core, T0);
        var demote = Command(core.OnSwitchover(T0, R, "b", 1, "planned").Effects);

        var reassert = Command(core.OnCommandReply(T0, "a", R, demote.Command.Id, false, "umount: target is busy"));
        Assert.Equal(("a", CommandKind.Promote, 2UL), (reassert.Node, reassert.Command.Kind, reassert.Command.Generation));
        var done = core.OnCommandReply(T0, "a", R, reassert.Command.Id, true, "already Primary");

        var aborted = Assert.Single(done.OfType<CoordinatorEffect.AppendEvent>(), e => e.Event.Kind == "SwitchoverAborted");
        Assert.Contains("target is busy", aborted.Event.Text);
        Assert.Contains("b was not promoted", aborted.Event.Text);
        Assert.Equal("a", core.Record(R).Primary);
    }

    [Theory]
    [InlineData("maintenance", "maintenance off r0")]
    [InlineData("disk", "not UpToDate")]
    [InlineData("outdated", "recorded outdated at generation 1")]
    [InlineData("generation", "generation: r0 is at generation 1")]
    [InlineData("primary", "already the primary")]
    public void Switchover_PreconditionNotMet_RefusedWithoutEffects(string problem, string expected)
    {
        var core = Core(maintenance: problem == "maintenance", outdated: problem == "outdated" ? ImmutableDictionary<string, ulong>.Empty.Add("b", 1) : null);
        Healthy(core, T0, problem == "disk" ? DiskState.Inconsistent : DiskState.UpToDate);

        var outcome = core.OnSwitchover(T0, R, problem == "primary" ? "a" : "b", problem == "generation" ? 7UL : 1UL, "planned");

        Assert.Contains(expected, outcome.Refusal);
        Assert.Empty(outcome.Effects);
        Assert.Equal(1UL, core.Record(R).Generation);
    }

    [Fact]
    public void ForcePromote_OldPrimaryGone_LoudEventForcedPromoteAndNoGrantBeforeThePromiseToTheOldPrimaryRunsOut()
    {
        var core = Core(outdated: ImmutableDictionary<string, ulong>.Empty.Add("b", 1));
        Healthy(core, T0);
        core.OnLeaseRequest(T0, "a", R, 1, 1); // the coordinator's grant to a: a promise until T0 + lease + margin
        var later = T0 + TimeSpan.FromSeconds(3);
        core.OnReport(later, "b", R, new NodeResourceFacts(DrbdRole.Secondary, DiskState.Outdated, ConnectionState.Connecting, DrbdRole.Unknown, 1, TimeSpan.FromSeconds(3)), ++_seq, []);

        var outcome = core.OnForcePromote(later, R, "b", 1, "a's disks died");

        Assert.Null(outcome.Refusal);
        var started = outcome.Effects.OfType<CoordinatorEffect.AppendEvent>().First().Event;
        Assert.Equal("ForcePromoteStarted", started.Kind);
        Assert.Contains("FORCED", started.Text);
        Assert.Contains("not reachable, not demoted", started.Text);
        var promote = Command(outcome.Effects);
        Assert.Equal(("b", CommandKind.Promote, 2UL, true), (promote.Node, promote.Command.Kind, promote.Command.Generation, promote.Command.Force));
        var grant = Assert.Single(core.OnLeaseRequest(later, "b", R, 2, 9).OfType<CoordinatorEffect.SendLeaseGrant>());
        Assert.True(grant.Granted); // a's promise (T0 + 2.5 s) has run out by T0 + 3 s
    }

    [Fact]
    public void LeaseGrant_AfterARestart_NoGrantToAForcedPrimaryBeforeThePromiseTheOldPrimaryMayHoldRunsOut()
    {
        var core = Core(); // restarted: a may hold a grant the previous run gave it just before stopping
        var t = T0 + TimeSpan.FromSeconds(1);
        core.OnReport(t, "b", R, new NodeResourceFacts(DrbdRole.Secondary, DiskState.UpToDate, ConnectionState.Connecting, DrbdRole.Unknown, 1, TimeSpan.FromSeconds(1)), ++_seq, []);
        var outcome = core.OnForcePromote(t, R, "b", 1, "a is gone");
        Assert.Null(outcome.Refusal);
        Assert.Equal("b", Command(outcome.Effects).Node);

        var early = Assert.Single(core.OnLeaseRequest(t + TimeSpan.FromMilliseconds(200), "b", R, 2, 1).OfType<CoordinatorEffect.SendLeaseGrant>());
        var late = Assert.Single(core.OnLeaseRequest(T0 + Policy.Silence, "b", R, 2, 2).OfType<CoordinatorEffect.SendLeaseGrant>());

        Assert.False(early.Granted);
        Assert.Contains("promised a", early.Reason);
        Assert.True(late.Granted);
    }

    [Fact]
    public void LeaseGrant_AfterTheOldPrimaryIsDemoted_TheNewPrimaryIsGrantedAtOnce()
    {
        var core = Core();
        Healthy(core, T0);
        core.OnLeaseRequest(T0, "a", R, 1, 1);
        var outcome = core.OnForcePromote(T0 + TimeSpan.FromMilliseconds(100), R, "b", 1, "test");
        Assert.Null(outcome.Refusal);
        var demote = Command(outcome.Effects);
        Assert.Equal("a", demote.Node); // a is reachable: demoted first, which ends the promise
        core.OnCommandReply(T0 + TimeSpan.FromMilliseconds(200), "a", R, demote.Command.Id, true, "secondary");

        var grant = Assert.Single(core.OnLeaseRequest(T0 + TimeSpan.FromMilliseconds(300), "b", R, 2, 1).OfType<CoordinatorEffect.SendLeaseGrant>());
        Assert.True(grant.Granted);
    }

    [Fact]
    public void ForcePromote_ThreeNodes_AsksTheThirdNodeEvenWhenItIsUnreachable_AndGivesTheResourceBackOnTimeout()
    {
        var core = new CoordinatorCore(new CoordinatorConfig(["a", "b", "c"], [new CoreResource(R, "a", ["203.0.113.10/32"])], Policy, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30)),
            [CoordinatorRecord.Empty(R) with { Generation = 1, Primary = "a" }], 0, T0);
        var t = T0 + TimeSpan.FromSeconds(5); // a and c were never heard from by this run; b reports
        core.OnReport(t, "b", R, new NodeResourceFacts(DrbdRole.Secondary, DiskState.UpToDate, ConnectionState.Connecting, DrbdRole.Unknown, 1, TimeSpan.FromSeconds(5)), ++_seq, []);

        var outcome = core.OnForcePromote(t, R, "b", 1, "a is gone");

        var agree = Command(outcome.Effects);
        Assert.Equal(("c", CommandKind.Agree, 2UL), (agree.Node, agree.Command.Kind, agree.Command.Generation));
        Assert.DoesNotContain(core.OnTimer(t + TimeSpan.FromSeconds(1)).OfType<CoordinatorEffect.SendCommand>(), c => c.Command.Kind == CommandKind.Promote);
        var abandoned = core.OnTimer(t + TimeSpan.FromSeconds(31));
        Assert.Contains("ForcePromoteAbandoned", Events(abandoned));
        Assert.Equal(("a", 2UL), (core.Record(R).Primary, core.Record(R).Generation));
    }

    [Fact]
    public void Maintenance_SuspendsDecisionsAndSwitchoversAndIsPersisted()
    {
        var core = Core();
        Healthy(core, T0);

        var on = core.OnSetMaintenance(T0, R, true, "disk swap");

        Assert.Equal(["MaintenanceOn"], Events(on));
        Assert.True(Assert.Single(on.OfType<CoordinatorEffect.PersistRecord>()).Record.Maintenance);
        Assert.Empty(core.OnSetMaintenance(T0, R, true, "again"));
        Assert.Contains("maintenance", core.OnSwitchover(T0, R, "b", 1, "x").Refusal);
        Assert.Null(core.OnForcePromote(T0, R, "b", 1, "allowed in maintenance").Refusal);
    }

    [Fact]
    public void NextWake_IsTheExactInstantTheSilentPrimaryCrossesLeasePlusMargin_AndTheReportThenDecides()
    {
        var core = Core();
        Healthy(core, T0);
        core.OnTimer(T0);

        // a goes silent; b keeps reporting that it lost a long ago
        var t = T0 + TimeSpan.FromMilliseconds(2000);
        core.OnReport(t, "b", R, new NodeResourceFacts(DrbdRole.Secondary, DiskState.UpToDate, ConnectionState.Connecting, DrbdRole.Unknown, 1, TimeSpan.FromSeconds(3)), ++_seq, []);
        var exact = T0 + Policy.Silence;
        Assert.Equal(exact, core.NextWake(T0 + TimeSpan.FromMilliseconds(2400)));

        Assert.DoesNotContain("FailoverStarted", Events(core.OnTimer(exact - TimeSpan.FromTicks(1))));
        Assert.Contains("FailoverStarted", Events(core.OnTimer(exact)));
    }

    [Fact]
    public void Report_ArrivingAfterThePrimaryIsSilentLongEnough_DecidesWithoutWaitingForATimer()
    {
        var core = Core();
        Healthy(core, T0);
        var t = T0 + Policy.Silence + TimeSpan.FromMilliseconds(1);

        var fx = core.OnReport(t, "b", R, new NodeResourceFacts(DrbdRole.Secondary, DiskState.UpToDate, ConnectionState.Connecting, DrbdRole.Unknown, 1, Policy.Silence), ++_seq, []);

        Assert.Contains("FailoverStarted", Events(fx));
        Assert.Equal(("b", CommandKind.Promote, 2UL), (Command(fx).Node, Command(fx).Command.Kind, Command(fx).Command.Generation));
    }
}
