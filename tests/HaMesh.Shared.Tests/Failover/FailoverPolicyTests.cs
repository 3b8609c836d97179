using HaMesh.Protocol.V1;
using HaMesh.Shared.Failover;

namespace HaMesh.Shared.Tests.Failover;

/// <summary>The failover rule as a table: views in, decisions out. Times in seconds; lease 2 s + margin 0.5 s.</summary>
public sealed class FailoverPolicyTests
{
    // a = primary (generation 3), b = candidate; "now" = 100 s
    private static ViewBuilder TwoNodes(double aLastReport, double bPeerContactAge = 10, ConnectionState bPeer = ConnectionState.Connecting, DrbdRole bPeerRole = DrbdRole.Unknown, DiskState bDisk = DiskState.UpToDate) =>
        new ViewBuilder()
            .Node("a", aLastReport, DrbdRole.Primary, peer: ConnectionState.Connecting)
            .Node("b", 99.9, DrbdRole.Secondary, bDisk, bPeer, bPeerRole, peerContactAge: bPeerContactAge);

    [Fact]
    public void Decide_PrimaryReporting_Holds()
    {
        var d = Assert.IsType<Decision.Hold>(TwoNodes(aLastReport: 99.8).Single(100));
        Assert.Contains("primary a is reporting", d.Reason);
    }

    [Fact]
    public void Decide_PrimarySilentOneTickLessThanLeasePlusMargin_Holds()
    {
        var v = TwoNodes(aLastReport: 97.5);
        Assert.IsType<Decision.Hold>(Assert.Single(FailoverPolicy.Decide(v.Build(), ViewBuilder.Options, ViewBuilder.At(100) - TimeSpan.FromTicks(1))));
    }

    [Fact]
    public void Decide_PrimarySilentExactlyLeasePlusMarginAndCandidateAgrees_FailsOverToCandidateAtNextGeneration()
    {
        var d = Assert.IsType<Decision.Failover>(TwoNodes(aLastReport: 97.5).Single(100));
        Assert.Equal(("a", "b", 4UL), (d.From, d.To, d.NewGeneration));
        Assert.Contains("2 of 3 voters agree", d.Reason);
    }

    [Fact]
    public void Decide_AsymmetricPartition_CandidateStillConnectedToPrimaryOverDrbd_NoFailover()
    {
        var d = Assert.IsType<Decision.Hold>(TwoNodes(aLastReport: 90, bPeer: ConnectionState.Connected, bPeerRole: DrbdRole.Primary).Single(100));
        Assert.Contains("asymmetric partition", d.Reason);
        Assert.Contains("only 1 of 3 voters", d.Reason);
    }

    [Fact]
    public void Decide_AsymmetricPartition_CandidateHeardFromPrimaryRecently_NoFailover()
    {
        var d = Assert.IsType<Decision.Hold>(TwoNodes(aLastReport: 90, bPeerContactAge: 0.3).Single(100));
        Assert.Contains("heard from a 300 ms ago", d.Reason);
    }

    [Fact]
    public void Decide_CandidateReportsNoPeerContactAge_NoVote()
    {
        var v = new ViewBuilder().Node("a", 90, DrbdRole.Primary).Node("b", 99.9, peerContactAge: null);
        Assert.Contains("no vote", Assert.IsType<Decision.Hold>(v.Single(100)).Reason);
    }

    [Fact]
    public void Decide_CandidatePeerContactExactlyAtThreshold_Votes()
    {
        Assert.IsType<Decision.Failover>(TwoNodes(aLastReport: 90, bPeerContactAge: 2.5).Single(100));
        Assert.IsType<Decision.Hold>(TwoNodes(aLastReport: 90, bPeerContactAge: 2.4999).Single(100));
    }

    [Theory]
    [InlineData(DiskState.Outdated)]
    [InlineData(DiskState.Inconsistent)]
    [InlineData(DiskState.Consistent)]
    [InlineData(DiskState.Diskless)]
    [InlineData(DiskState.Unknown)]
    public void Decide_CandidateNotUpToDate_NoFailover(DiskState disk)
    {
        var d = Assert.IsType<Decision.Hold>(TwoNodes(aLastReport: 90, bDisk: disk).Single(100));
        Assert.Contains("not UpToDate", d.Reason);
    }

    [Fact]
    public void Decide_CandidateRecordedOutdated_NeverPromotedAutomatically()
    {
        var v = TwoNodes(aLastReport: 90);
        v.Resource = v.Resource with { Outdated = new Dictionary<string, ulong> { ["b"] = 3 } };
        Assert.Contains("recorded outdated at generation 3", Assert.IsType<Decision.Hold>(v.Single(100)).Reason);
    }

    [Fact]
    public void Decide_CandidateStandAlone_NoFailover()
    {
        var decisions = TwoNodes(aLastReport: 90, bPeer: ConnectionState.StandAlone).Decide(100);
        Assert.DoesNotContain(decisions, d => d is Decision.Failover);
        Assert.Contains("StandAlone (split-brain or disconnected)", Assert.IsType<Decision.Hold>(decisions[^1]).Reason);
    }

    [Fact]
    public void Decide_Maintenance_Holds()
    {
        var v = TwoNodes(aLastReport: 90);
        v.Resource = v.Resource with { Maintenance = true };
        Assert.Contains("maintenance", Assert.IsType<Decision.Hold>(v.Single(100)).Reason);
    }

    [Fact]
    public void Decide_OperationInFlight_Holds()
    {
        var v = TwoNodes(aLastReport: 90);
        v.Resource = v.Resource with { OperationInFlight = true };
        Assert.Contains("in flight", Assert.IsType<Decision.Hold>(v.Single(100)).Reason);
    }

    [Fact]
    public void Decide_LastFailoverWithinMinInterval_Holds_AndExactlyAtIntervalFailsOver()
    {
        var v = TwoNodes(aLastReport: 90);
        v.Resource = v.Resource with { LastFailoverAt = ViewBuilder.At(100 - 299.999) };
        Assert.Contains("min interval", Assert.IsType<Decision.Hold>(v.Single(100)).Reason);
        v.Resource = v.Resource with { LastFailoverAt = ViewBuilder.At(100 - 300) };
        Assert.IsType<Decision.Failover>(v.Single(100));
    }

    [Fact]
    public void Decide_CoordinatorHearsNobody_HoldsEvenIfPrimarySilent()
    {
        var v = new ViewBuilder().Node("a", 50, DrbdRole.Primary).Node("b", 50);
        Assert.Contains("hears no node", Assert.IsType<Decision.Hold>(v.Single(100)).Reason);
    }

    [Fact]
    public void Decide_CoordinatorJustRestarted_NeverSeenPrimaryIsNotSilentYet()
    {
        var v = new ViewBuilder { ObservingSince = 99 }.Node("a", null, DrbdRole.Primary).Node("b", 99.9);
        Assert.IsType<Decision.Hold>(v.Single(100));
        Assert.IsType<Decision.Failover>(v.Single(101.5));
    }

    [Fact]
    public void Decide_RecentLeaseGrantKeepsPrimaryAliveEvenWithoutReports()
    {
        var v = new ViewBuilder().Node("a", 90, DrbdRole.Primary, lastGrant: 99).Node("b", 99.9);
        Assert.IsType<Decision.Hold>(v.Single(100));
    }

    [Fact]
    public void Decide_ThreeNodes_OneAgreeingIsNotAMajority()
    {
        var v = new ViewBuilder().Node("a", 90, DrbdRole.Primary).Node("b", 99.9).Node("c", 99.9, peer: ConnectionState.Connected, peerRole: DrbdRole.Primary);
        Assert.Contains("only 2 of 4 voters", Assert.IsType<Decision.Hold>(v.Single(100)).Reason);
    }

    [Fact]
    public void Decide_ThreeNodes_MostUpToDateWins_ThenPreferred_ThenName()
    {
        var newest = new ViewBuilder().Node("a", 90, DrbdRole.Primary).Node("c", 99.9, generation: 3).Node("b", 99.9, generation: 2);
        Assert.Equal("c", Assert.IsType<Decision.Failover>(newest.Single(100)).To);

        var preferred = new ViewBuilder().Node("a", 90, DrbdRole.Primary).Node("b", 99.9).Node("c", 99.9);
        preferred.Resource = preferred.Resource with { PreferredNode = "c" };
        Assert.Equal("c", Assert.IsType<Decision.Failover>(preferred.Single(100)).To);

        var byName = new ViewBuilder().Node("a", 90, DrbdRole.Primary).Node("c", 99.9).Node("b", 99.9);
        Assert.Equal("b", Assert.IsType<Decision.Failover>(byName.Single(100)).To);
    }

    [Fact]
    public void Decide_OldPrimaryRejoinsAsPrimaryAtOldGeneration_Demoted()
    {
        var v = new ViewBuilder().Node("a", 99.9, DrbdRole.Primary, generation: 3).Node("b", 99.9, DrbdRole.Primary, generation: 4);
        v.Resource = v.Resource with { Generation = 4, Primary = "b", IpRoutes = new Dictionary<string, string?> { ["203.0.113.10/32"] = "b" } };
        var decisions = v.Decide(100);
        var demote = Assert.IsType<Decision.Demote>(decisions[0]);
        Assert.Equal(("a", 4UL, false), (demote.Node, demote.Generation, demote.DiscardMyData));
        Assert.IsType<Decision.Hold>(decisions[1]);
    }

    [Fact]
    public void Decide_TwoPrimariesAtCurrentGeneration_Halts()
    {
        var v = new ViewBuilder().Node("a", 99.9, DrbdRole.Primary, generation: 3).Node("b", 99.9, DrbdRole.Primary, generation: 3);
        Assert.Contains("impossible state", Assert.IsType<Decision.Halt>(v.Single(100)).Reason);
    }

    [Fact]
    public void Decide_NewCluster_AdoptsTheOnePrimary()
    {
        var v = new ViewBuilder().Node("a", 99.9, DrbdRole.Primary, generation: 0).Node("b", 99.9, generation: 0);
        v.Resource = v.Resource with { Generation = 0, Primary = "" };
        var adopt = Assert.IsType<Decision.Adopt>(v.Single(100));
        Assert.Equal(("a", 1UL), (adopt.Node, adopt.Generation));
    }

    [Fact]
    public void Decide_NewStoreUnderAgentsThatRanBefore_AdoptsAboveEveryReportedGeneration()
    {
        // The witness was rebuilt (store lost): the agents persisted 7 and 9 and refuse anything lower, so adopting at 1
        // would leave the cluster with a primary no command could reach. One above the highest: every command of the
        // old coordinator is stale from now on.
        var v = new ViewBuilder().Node("a", 99.9, DrbdRole.Primary, generation: 7).Node("b", 99.9, generation: 9);
        v.Resource = v.Resource with { Generation = 0, Primary = "" };
        var adopt = Assert.IsType<Decision.Adopt>(v.Single(100));
        Assert.Equal(("a", 10UL), (adopt.Node, adopt.Generation));
        Assert.Contains("generations up to 9", adopt.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Decide_NewClusterWithoutPrimary_HoldsAndSaysWhatToDo()
    {
        var v = new ViewBuilder().Node("a", 99.9, generation: 0).Node("b", 99.9, generation: 0);
        v.Resource = v.Resource with { Generation = 0, Primary = "" };
        Assert.Contains("switchover", Assert.IsType<Decision.Hold>(v.Single(100)).Reason);
    }

    [Fact]
    public void Decide_RecordedPrimaryReachableButSecondary_EnsurePrimary()
    {
        var v = new ViewBuilder().Node("a", 99.9, DrbdRole.Secondary).Node("b", 99.9);
        var d = Assert.IsType<Decision.EnsurePrimary>(v.Single(100));
        Assert.Equal(("a", 3UL), (d.Node, d.Generation));
    }

    [Fact]
    public void Decide_PrimaryUpButIpRoutedElsewhere_MoveIp()
    {
        var v = new ViewBuilder().Node("a", 99.9, DrbdRole.Primary).Node("b", 99.9);
        v.Resource = v.Resource with { IpRoutes = new Dictionary<string, string?> { ["203.0.113.10/32"] = "b" } };
        var d = Assert.IsType<Decision.MoveIp>(v.Single(100));
        Assert.Equal(("a", "203.0.113.10/32"), (d.Node, d.Ip));
    }

    [Fact]
    public void Decide_SecondaryStandAlone_SplitBrainAlertWithRecoveryCommands_OrDiscardByPolicy()
    {
        var v = new ViewBuilder().Node("a", 99.9, DrbdRole.Primary, peer: ConnectionState.StandAlone).Node("b", 99.9, peer: ConnectionState.StandAlone);
        var alert = Assert.IsType<Decision.SplitBrainAlert>(v.Decide(100)[0]);
        Assert.Equal("b", alert.Victim);
        Assert.Contains("connect --discard-my-data", alert.RecoveryCommands);

        v.Resource = v.Resource with { DiscardOldPrimaryOnSplitBrain = true };
        var demote = Assert.IsType<Decision.Demote>(v.Decide(100)[0]);
        Assert.True(demote.DiscardMyData);
    }

    [Fact]
    public void Decide_OutdatedNodeUpToDateButPrimarySilent_RefusesFailoverToIt()
    {
        var v = new ViewBuilder()
            .Node("a", 90, DrbdRole.Primary)
            .Node("b", 99.9, peer: ConnectionState.Connected, peerRole: DrbdRole.Primary, peerContactAge: 10);
        v.Resource = v.Resource with { Outdated = new Dictionary<string, ulong> { ["b"] = 2 } };

        Assert.DoesNotContain(v.Decide(100), d => d is Decision.Failover);
    }
}
