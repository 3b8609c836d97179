using HaMesh.Shared.Core;
using HaMesh.Shared.Failover;

namespace HaMesh.Shared.Tests.Core;

/// <summary>
/// The peer grantor's rule (design §4), which both the agent daemon's RenewLease and the agent core the simulation
/// checks apply: every state and generation combination, and the core answering through it.
/// </summary>
public sealed class GrantorRuleTests
{
    public static TheoryData<GrantorState, ulong, ulong, string?> Cases => new()
    {
        { GrantorState.Secondary, 4, 4, null },
        { GrantorState.Secondary, 4, 9, null },
        { GrantorState.Secondary, 0, 0, null },   // a fresh cluster's bootstrap
        { GrantorState.Secondary, 5, 4, "stale generation 4 < 5" },
        { GrantorState.Primary, 4, 4, "b is Primary itself" },
        { GrantorState.Primary, 4, 9, "b is Primary itself" },
        { GrantorState.Promoting, 5, 5, "b is being promoted itself (generation 5)" },
        { GrantorState.Promoting, 5, 4, "b is being promoted itself (generation 5)" },   // its promotion, not staleness, is the reason
        { GrantorState.Deactivating, 4, 4, "b is stepping down itself" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Refusal_OnlyASecondaryGrants_NeverBehindItsGeneration(GrantorState state, ulong grantor, ulong requested, string? expected) =>
        Assert.Equal(expected, GrantorRule.Refusal("b", state, grantor, requested));

    [Fact]
    public void Core_PromotionAccepted_RefusesRenewalsAsBeingPromoted_GrantedBefore_PromisedFromTheGrant()
    {
        var t = CoreTimings.Default;
        var core = new AgentCore("b", "db", ["a"], t, persistedGeneration: 4, incarnation: 1, drbdIsPrimary: false, now: Ms(0));
        core.Start(Ms(0));

        var granted = core.OnPeerLeaseRequest(Ms(100), "a", requesterGeneration: 4, sequence: 7).OfType<AgentEffect.SendLeaseReply>().Single();
        core.OnCommand(Ms(100) + t.Promise, new AgentCommand(1, CoreNames.Coordinator, CommandKind.Promote, 5));
        var refused = core.OnPeerLeaseRequest(Ms(100) + t.Promise, "a", requesterGeneration: 4, sequence: 8).OfType<AgentEffect.SendLeaseReply>().Single();

        Assert.True(granted.Granted);
        Assert.Equal(Ms(100) + t.Promise, core.PromiseUntil);
        Assert.False(refused.Granted);
        Assert.Equal("b is being promoted itself (generation 5)", refused.Reason);
    }

    private static MonoTime Ms(double ms) => new(TimeSpan.FromMilliseconds(ms));
}
