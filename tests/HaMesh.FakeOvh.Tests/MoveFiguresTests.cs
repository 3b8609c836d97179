using System.Globalization;
using HaMesh.Coordinator.Cloud;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Ovh;

namespace HaMesh.FakeOvh.Tests;

/// <summary>
/// The closing figures of the OVH issue (printed, not asserted as timings): calls per successful move and
/// the time from the POST to the confirmed routedTo, with a 2 s fake task, at the default 5 s poll and at 1 s.
/// </summary>
public sealed class MoveFiguresTests
{
    [Theory]
    [InlineData(5)]
    [InlineData(1)]
    public async Task MoveWithTwoSecondTask_CallsAndPostToConfirmedTime(int pollSeconds)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var fake = await FakeOvhHost.StartAsync(taskDuration: TimeSpan.FromSeconds(2));
        using var http = new HttpClient();
        var events = new InMemoryEventLog(TimeProvider.System);
        var client = new OvhClient(http, fake.BaseUrl, new OvhCredentials("ak", "as", "ck"), TimeProvider.System, events);
        var provider = new OvhCloudIpProvider(client, events, TimeProvider.System, TimeSpan.FromSeconds(pollSeconds), TimeSpan.FromMinutes(1));

        var outcome = await provider.EnsureRoutedAsync("203.0.113.10/32", "ns-b", ct);

        Assert.Equal(MoveOutcomeKind.Moved, outcome.Kind);
        Assert.Equal(1, fake.Posts);
        var calls = events.List(0).Where(e => e.Record.Kind == "OvhCall").ToList();
        var post = calls.Single(e => e.Record.Attributes["method"] == "POST");
        var confirmed = events.List(0).Single(e => e.Record.Kind == "OvhMoveCompleted");
        TestContext.Current.TestOutputHelper?.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"poll {pollSeconds} s, 2 s task: {calls.Count(e => e.Record.Attributes["method"] == "GET")} GET (incl. /auth/time) + 1 POST; POST → confirmed routedTo {(confirmed.Time - post.Time).TotalMilliseconds:0} ms; whole move {outcome.Elapsed.TotalMilliseconds:0} ms"));
    }
}
