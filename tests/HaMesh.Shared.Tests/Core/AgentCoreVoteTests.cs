using HaMesh.Shared.Core;
using HaMesh.Shared.Failover;

namespace HaMesh.Shared.Tests.Core;

/// <summary>The agent core's vote (design §4 rule 1): the report goes out the instant peer-contact age reaches lease + drift margin.</summary>
public sealed class AgentCoreVoteTests
{
    private static readonly CoreTimings Timings = CoreTimings.Default;

    private static MonoTime Ms(double ms) => new(TimeSpan.FromMilliseconds(ms));

    [Fact]
    public void VoteCrossesBetweenHeartbeats_WakeAtTheCrossing_ReportSentThen()
    {
        var core = new AgentCore("b", "db", ["a"], Timings, persistedGeneration: 3, incarnation: 1, drbdIsPrimary: false, now: Ms(0));
        core.Start(Ms(0));
        core.OnLeaseReply(Ms(100), "a", sequence: 1, granted: false, grantorGeneration: 3);   // last contact with the peer
        var crossing = Ms(100) + Timings.Promise;

        var now = Ms(0);
        var reports = new List<(MonoTime At, AgentEffect.SendReport Report)>();
        var wakes = new List<MonoTime>();
        IReadOnlyList<AgentEffect> fx = core.OnTimer(Ms(250));
        for (var i = 0; i < 40 && reports.All(r => r.Report.PeerContactAge < Timings.Promise); i++)
        {
            var wake = fx.OfType<AgentEffect.ScheduleWake>().Last().At;
            wakes.Add(wake);
            now = wake;
            fx = core.OnTimer(now);
            reports.AddRange(fx.OfType<AgentEffect.SendReport>().Select(r => (now, r)));
        }

        Assert.Contains(crossing, wakes);
        var first = reports.First(r => r.Report.PeerContactAge >= Timings.Promise);
        Assert.Equal(crossing, first.At);     // not at the heartbeat after it (2750 ms)
        Assert.Equal(Timings.Promise, first.Report.PeerContactAge);
    }

    [Fact]
    public void VoteReportedOnce_UntilThePeerIsHeardAgain()
    {
        var core = new AgentCore("b", "db", ["a"], Timings, persistedGeneration: 3, incarnation: 1, drbdIsPrimary: false, now: Ms(0));
        core.Start(Ms(0));
        core.OnLeaseReply(Ms(100), "a", sequence: 1, granted: false, grantorGeneration: 3);
        var crossing = Ms(100) + Timings.Promise;
        Assert.Single(core.OnTimer(crossing).OfType<AgentEffect.SendReport>());
        Assert.Empty(core.OnTimer(crossing + TimeSpan.FromMilliseconds(10)).OfType<AgentEffect.SendReport>());   // not a heartbeat: nothing new

        core.OnPeerLeaseRequest(Ms(3000), "a", 3, 2);   // heard again: the next crossing is reported again
        var wake = core.OnTimer(Ms(3000)).OfType<AgentEffect.ScheduleWake>().Last().At;
        Assert.True(wake <= Ms(3000) + Timings.Promise);
        Assert.Single(core.OnTimer(Ms(3000) + Timings.Promise).OfType<AgentEffect.SendReport>());
    }
}
