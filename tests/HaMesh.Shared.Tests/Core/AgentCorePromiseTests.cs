using HaMesh.Shared.Core;
using HaMesh.Shared.Failover;

namespace HaMesh.Shared.Tests.Core;

/// <summary>
/// A Promote that arrives while this node's promise to another lease holder runs (design §4): like the daemon, the
/// core accepts it (generation persisted, renewals refused) and holds it, asking for no lease before the promise ends.
/// </summary>
public sealed class AgentCorePromiseTests
{
    private static readonly CoreTimings T = CoreTimings.Default;

    private static MonoTime Ms(double ms) => new(TimeSpan.FromMilliseconds(ms));

    [Fact]
    public void PromoteDuringPromise_AcceptedAndHeld_NoLeaseAskedUntilThePromiseEnds_ThenActivates()
    {
        var core = new AgentCore("b", "db", ["a"], T, persistedGeneration: 4, incarnation: 1, drbdIsPrimary: false, now: Ms(0));
        core.Start(Ms(0));
        core.OnPeerLeaseRequest(Ms(100), "a", requesterGeneration: 4, sequence: 7);
        var promiseEnd = Ms(100) + T.Promise;

        var accepted = core.OnCommand(Ms(500), new AgentCommand(1, CoreNames.Coordinator, CommandKind.Promote, 5));

        Assert.Contains(new AgentEffect.PersistGeneration(5), accepted);
        Assert.DoesNotContain(accepted, e => e is AgentEffect.ReplyCommand or AgentEffect.SendLeaseRequest);
        Assert.False(core.OnPeerLeaseRequest(Ms(600), "a", 4, 8).OfType<AgentEffect.SendLeaseReply>().Single().Granted);

        // Every wake before the promise ends (heartbeats included) asks nobody for a lease.
        var now = Ms(500);
        IReadOnlyList<AgentEffect> fx = accepted;
        while (fx.OfType<AgentEffect.ScheduleWake>().Last().At < promiseEnd)
        {
            now = fx.OfType<AgentEffect.ScheduleWake>().Last().At;
            fx = core.OnTimer(now);
            Assert.DoesNotContain(fx, e => e is AgentEffect.SendLeaseRequest);
        }

        var atEnd = core.OnTimer(promiseEnd);
        var asked = atEnd.OfType<AgentEffect.SendLeaseRequest>().ToList();
        Assert.Equal([CoreNames.Coordinator, "a"], asked.Select(r => r.To));
        var activate = core.OnLeaseReply(promiseEnd + TimeSpan.FromMilliseconds(5), CoreNames.Coordinator, asked[0].Sequence, granted: true, grantorGeneration: 5);
        Assert.Contains(activate, e => e is AgentEffect.RunSteps { Kind: StepKind.Activate });
    }

    [Fact]
    public void PromoteDuringPromise_LateGrantForAnOldRequest_DoesNotActivateBeforeThePromiseEnds()
    {
        // b was Primary (its requests are still answered late), stepped down, granted a's renewal, then is asked to promote.
        var core = new AgentCore("b", "db", ["a"], T, persistedGeneration: 4, incarnation: 1, drbdIsPrimary: true, now: Ms(0), knownLeaseUntil: Ms(2000));
        var first = core.Start(Ms(0)).OfType<AgentEffect.SendLeaseRequest>().First();
        core.OnCommand(Ms(10), new AgentCommand(1, CoreNames.Coordinator, CommandKind.Demote, 4));
        core.OnStepsFinished(Ms(50), StepKind.Deactivate, true, "demoted");
        core.OnPeerLeaseRequest(Ms(100), "a", requesterGeneration: 5, sequence: 7);
        core.OnCommand(Ms(200), new AgentCommand(2, CoreNames.Coordinator, CommandKind.Promote, 6));

        var late = core.OnLeaseReply(Ms(300), CoreNames.Coordinator, first.Sequence, granted: true, grantorGeneration: 6);

        Assert.DoesNotContain(late, e => e is AgentEffect.RunSteps);
        Assert.Null(core.LeaseUntil);
    }
}
