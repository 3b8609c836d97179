using HaMesh.Shared.Core;
using HaMesh.Shared.Failover;

namespace HaMesh.Shared.Tests.Core;

/// <summary>
/// The rules the agent core took over from the daemon when the daemon began running it: how a Primary found at start
/// is treated, a promotion nobody grants, a later decision superseding a lease-less promotion, and busy commands.
/// </summary>
public sealed class AgentCoreStartAndCommandTests
{
    private static readonly CoreTimings T = CoreTimings.Default;

    private static MonoTime Ms(double ms) => new(TimeSpan.FromMilliseconds(ms));

    private static AgentCommand Cmd(long id, CommandKind kind, ulong generation, bool reconnect = false) => new(id, CoreNames.Coordinator, kind, generation, Reconnect: reconnect);

    /// <summary>Wakes the core at every instant it asks for until <paramref name="until"/>; returns all effects.</summary>
    private static List<AgentEffect> RunUntil(AgentCore core, IReadOnlyList<AgentEffect> first, MonoTime until)
    {
        var all = new List<AgentEffect>(first);
        var fx = first;
        while (fx.OfType<AgentEffect.ScheduleWake>().LastOrDefault() is { } wake && wake.At <= until)
        {
            fx = core.OnTimer(wake.At);
            all.AddRange(fx);
        }

        return all;
    }

    [Fact]
    public void PrimaryFoundAtStart_RenewsAtOnce_SelfFencesAfterTheStartGrace_ByStartPlusTheDeadline()
    {
        var core = new AgentCore("a", "db", ["b"], T, persistedGeneration: 4, incarnation: 2, drbdIsPrimary: true, now: Ms(0));
        var start = core.Start(Ms(0));
        Assert.Equal([CoreNames.Coordinator, "b"], start.OfType<AgentEffect.SendLeaseRequest>().Select(r => r.To));

        var all = RunUntil(core, start, Ms(5000));

        var fence = Assert.Single(all.OfType<AgentEffect.RunSteps>());
        Assert.True(fence.IsSelfFence);
        Assert.Equal(Ms(0) + T.SelfFenceDeadline, fence.FenceBy);
        Assert.Equal(AgentCore.StartGrace(T), TimeSpan.FromMilliseconds(500));
        Assert.Equal(AgentPhase.Deactivating, core.Phase);
    }

    [Fact]
    public void PrimaryFoundAtStart_GrantForTheRequestSentAtStart_IsALeaseLikeAnyOther()
    {
        var core = new AgentCore("a", "db", ["b"], T, persistedGeneration: 4, incarnation: 2, drbdIsPrimary: true, now: Ms(0));
        var request = core.Start(Ms(0)).OfType<AgentEffect.SendLeaseRequest>().First();
        core.OnLeaseReply(Ms(20), CoreNames.Coordinator, request.Sequence, granted: true, grantorGeneration: 4);
        Assert.Equal(Ms(0) + T.Lease, core.LeaseUntil);

        // No further grants: it self-fences at the lease end, with the ordinary deadline (no fence-by instant).
        var fence = RunUntil(core, [new AgentEffect.ScheduleWake(Ms(250))], Ms(5000)).OfType<AgentEffect.RunSteps>().Single();
        Assert.Null(fence.FenceBy);
    }

    [Fact]
    public void PrimaryAtStartAtGenerationZero_Bootstrap_LeaseRunsFromStart_AdoptionRenewsAtTheNewGeneration()
    {
        var core = new AgentCore("a", "db", ["b"], T, persistedGeneration: 0, incarnation: 1, drbdIsPrimary: true, now: Ms(0));
        var all = RunUntil(core, core.Start(Ms(0)), Ms(1900));
        Assert.DoesNotContain(all, e => e is AgentEffect.RunSteps);

        var adopted = core.OnCommand(Ms(1900), Cmd(1, CommandKind.Promote, 3));

        Assert.Contains(new AgentEffect.PersistGeneration(3), adopted);
        Assert.Contains(adopted, e => e is AgentEffect.ReplyCommand { Success: true, Message: "already Primary" });
        Assert.Contains(adopted, e => e is AgentEffect.SendLeaseRequest { To: CoreNames.Coordinator, Generation: 3 });
    }

    [Fact]
    public void PromoteOfAPrimaryDrbdShowsSecondary_ActivatesAgainUnderItsLease_ThenAlreadyPrimary()
    {
        var core = new AgentCore("a", "db", ["b"], T, persistedGeneration: 0, incarnation: 1, drbdIsPrimary: true, now: Ms(0));
        core.Start(Ms(0));
        core.NoteDrbdRole(Protocol.V1.DrbdRole.Secondary);   // drbdadm secondary by hand

        var again = core.OnCommand(Ms(100), Cmd(1, CommandKind.Promote, 3));

        var steps = Assert.Single(again.OfType<AgentEffect.RunSteps>());
        Assert.Equal((StepKind.Activate, 3UL), (steps.Kind, steps.Generation));
        Assert.DoesNotContain(again, e => e is AgentEffect.ReplyCommand);
        Assert.Equal(AgentPhase.Activating, core.Phase);
        Assert.Contains(core.OnStepsFinished(Ms(150), StepKind.Activate, true, "activated"), e => e is AgentEffect.ReplyCommand { Success: true, Message: "activated" });
        Assert.Equal(AgentPhase.Primary, core.Phase);

        core.NoteDrbdRole(Protocol.V1.DrbdRole.Primary);
        Assert.Contains(core.OnCommand(Ms(200), Cmd(2, CommandKind.Promote, 3)), e => e is AgentEffect.ReplyCommand { Success: true, Message: "already Primary" });
    }

    [Fact]
    public void PromoteNobodyGrants_GivesUpAfterTheAskLimit_NothingTouched()
    {
        var core = new AgentCore("b", "db", ["a"], T, persistedGeneration: 4, incarnation: 1, drbdIsPrimary: false, now: Ms(0));
        core.Start(Ms(0));
        var accepted = core.OnCommand(Ms(100), Cmd(1, CommandKind.Promote, 5));

        var all = RunUntil(core, accepted, Ms(100) + core.AskLimit + T.Heartbeat);

        var reply = Assert.Single(all.OfType<AgentEffect.ReplyCommand>());
        Assert.False(reply.Success);
        Assert.Contains("no lease granted within 5000 ms", reply.Message);
        Assert.DoesNotContain(all, e => e is AgentEffect.RunSteps);
        Assert.Equal(AgentPhase.Secondary, core.Phase);
        Assert.Null(core.Running);
    }

    [Fact]
    public void HigherGeneration_SupersedesALeaselessPromotion_ButNotOneThatActivates()
    {
        var core = new AgentCore("b", "db", ["a"], T, persistedGeneration: 4, incarnation: 1, drbdIsPrimary: false, now: Ms(0));
        core.Start(Ms(0));
        core.OnCommand(Ms(100), Cmd(1, CommandKind.Promote, 5));

        var demote = core.OnCommand(Ms(200), Cmd(2, CommandKind.Demote, 6));

        Assert.Contains(demote, e => e is AgentEffect.ReplyCommand { Command.Id: 1, Success: false } r && r.Message.Contains("superseded by Demote at generation 6", StringComparison.Ordinal));
        Assert.Contains(demote, e => e is AgentEffect.RunSteps { Kind: StepKind.Deactivate });
        Assert.Equal(2, core.Running?.Id);

        // Once activating, a later command waits: it is answered busy (the daemon hands it in again afterwards).
        var other = new AgentCore("c", "db", ["a"], T, persistedGeneration: 4, incarnation: 1, drbdIsPrimary: false, now: Ms(0));
        other.Start(Ms(0));
        var ask = other.OnCommand(Ms(100), Cmd(1, CommandKind.Promote, 5)).OfType<AgentEffect.SendLeaseRequest>().First();
        other.OnLeaseReply(Ms(110), CoreNames.Coordinator, ask.Sequence, granted: true, grantorGeneration: 5);
        var busy = other.OnCommand(Ms(120), Cmd(2, CommandKind.Demote, 6));
        Assert.Equal([true], busy.OfType<AgentEffect.ReplyCommand>().Select(r => r.Busy));
        Assert.Equal(AgentPhase.Activating, other.Phase);
    }

    [Fact]
    public void DemoteWithReconnect_DoesNotJoinAPlainDemote()
    {
        var core = new AgentCore("a", "db", ["b"], T, persistedGeneration: 4, incarnation: 1, drbdIsPrimary: false, now: Ms(0));
        core.Start(Ms(0));
        core.OnCommand(Ms(10), Cmd(1, CommandKind.Demote, 4));
        var joined = core.OnCommand(Ms(20), Cmd(2, CommandKind.Demote, 4));
        var reconnect = core.OnCommand(Ms(30), Cmd(3, CommandKind.Demote, 4, reconnect: true));

        Assert.Empty(joined);
        Assert.True(reconnect.OfType<AgentEffect.ReplyCommand>().Single().Busy);
        var done = core.OnStepsFinished(Ms(40), StepKind.Deactivate, true, "demoted");
        Assert.Equal([1L, 2L], done.OfType<AgentEffect.ReplyCommand>().Select(r => r.Command.Id));
    }

    [Fact]
    public void DuringASelfFence_PromoteAndOutdateRefused_APlainDemoteAnsweredWhenItEnds()
    {
        var core = new AgentCore("a", "db", ["b"], T, persistedGeneration: 4, incarnation: 1, drbdIsPrimary: true, now: Ms(0), knownLeaseUntil: Ms(2000));
        var all = RunUntil(core, core.Start(Ms(0)), Ms(2000));
        Assert.True(all.OfType<AgentEffect.RunSteps>().Single().IsSelfFence);

        var promote = core.OnCommand(Ms(2100), Cmd(1, CommandKind.Promote, 5));
        var outdate = core.OnCommand(Ms(2110), Cmd(2, CommandKind.Outdate, 5));
        var demote = core.OnCommand(Ms(2120), Cmd(3, CommandKind.Demote, 5));

        Assert.Contains(promote, e => e is AgentEffect.ReplyCommand { Success: false } r && r.Message.Contains("stepping down", StringComparison.Ordinal));
        Assert.Contains(outdate, e => e is AgentEffect.ReplyCommand { Success: false });
        Assert.DoesNotContain(promote.Concat(outdate).Concat(demote), e => e is AgentEffect.RunSteps or AgentEffect.SendLeaseRequest);
        Assert.DoesNotContain(demote, e => e is AgentEffect.ReplyCommand);
        var done = core.OnStepsFinished(Ms(2300), StepKind.Deactivate, true, "self-fenced");
        Assert.Equal([3L], done.OfType<AgentEffect.ReplyCommand>().Select(r => r.Command.Id));
        Assert.Equal(AgentPhase.Secondary, core.Phase);
    }

    [Fact]
    public void DuringASelfFence_ARejoinDemoteJoins_ItsDrbdReconnectRunsOnceTheSelfFenceEnds()
    {
        var core = new AgentCore("a", "db", ["b"], T, persistedGeneration: 4, incarnation: 1, drbdIsPrimary: true, now: Ms(0), knownLeaseUntil: Ms(2000));
        RunUntil(core, core.Start(Ms(0)), Ms(2000));

        // the coordinator's rejoin Demote (reconnect DRBD) arrives while the old primary fences itself
        var rejoin = core.OnCommand(Ms(2100), Cmd(1, CommandKind.Demote, 5, reconnect: true));
        Assert.DoesNotContain(rejoin, e => e is AgentEffect.ReplyCommand or AgentEffect.RunSteps);

        // the self-fence did not reconnect: the steps run again for the rejoin (each finds its work done, then DRBD connects)
        var fenced = core.OnStepsFinished(Ms(2300), StepKind.Deactivate, true, "self-fenced");
        Assert.Equal(StepKind.Deactivate, Assert.Single(fenced.OfType<AgentEffect.RunSteps>()).Kind);
        Assert.DoesNotContain(fenced, e => e is AgentEffect.ReplyCommand);
        Assert.True(core.Running is { Id: 1, Reconnect: true });
        Assert.Equal(AgentPhase.Deactivating, core.Phase);

        var done = core.OnStepsFinished(Ms(2400), StepKind.Deactivate, true, "stopped, unmounted, secondary, connected");
        Assert.Equal([(1L, true)], done.OfType<AgentEffect.ReplyCommand>().Select(r => (r.Command.Id, r.Success)));
        Assert.DoesNotContain(done, e => e is AgentEffect.RunSteps);
        Assert.Equal(AgentPhase.Secondary, core.Phase);
    }
}
