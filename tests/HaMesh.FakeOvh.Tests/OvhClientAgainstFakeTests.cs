using HaMesh.Coordinator.Cloud;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Ovh;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Logging;

namespace HaMesh.FakeOvh.Tests;

/// <summary>The coordinator's OVH client against the fake OVH API over real HTTP on loopback.</summary>
public sealed class OvhClientAgainstFakeTests : IAsyncLifetime
{
    private const string Ip = "203.0.113.10/32";
    private readonly FakeOvhState _state = new(TimeProvider.System, TimeSpan.FromMilliseconds(300), null);
    private readonly InMemoryEventLog _events = new(TimeProvider.System);
    private WebApplication? _app;
    private FakeOvhApi? _api;
    private HttpClient? _http;

    public async ValueTask InitializeAsync()
    {
        _state.Seed("""{"ips":{"203.0.113.10/32":"ns-a"},"servers":["ns-a","ns-b"]}""");
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        _app = builder.Build();
        _api = new FakeOvhApi(_state, new FakeOvhOptions("ak", "as", "ck", [("GET", "/ip/*"), ("POST", "/ip/*")], 10_000, TimeSpan.FromSeconds(120)), TimeProvider.System);
        _api.Map(_app);
        await _app.StartAsync();
        _http = new HttpClient();
    }

    public async ValueTask DisposeAsync()
    {
        _http?.Dispose();
        await _app!.DisposeAsync();
    }

    private Uri Base => new(_app!.Urls.First() + "/1.0");

    private OvhClient Client(string secret = "as", string ck = "ck") => new(_http!, Base, new OvhCredentials("ak", secret, ck), TimeProvider.System, _events, () => 0.5);

    private OvhCloudIpProvider Provider(OvhClient client, TimeSpan? timeout = null) =>
        new(client, _events, TimeProvider.System, TimeSpan.FromMilliseconds(50), timeout ?? TimeSpan.FromSeconds(20));

    private int Posts => _api!.Requests.Count(r => r.StartsWith("POST ", StringComparison.Ordinal));

    [Fact]
    public async Task GetRouting_ReadsRoutedToAndNoPendingTasks()
    {
        var routing = await Client().GetRoutingAsync(Ip, TestContext.Current.CancellationToken);
        Assert.Equal("ns-a", routing.RoutedToService);
        Assert.Empty(routing.PendingTasks);
        Assert.Contains(_api!.Requests, r => r == "GET /1.0/ip/203.0.113.10%2F32");
    }

    [Fact]
    public async Task GetRouting_NoMovePending_ReadsTheRouteAgainAfterTheTasks_AMoveFinishingMeanwhileShowsInIt()
    {
        // Route, then tasks, and nothing else: a move that finished in between was in neither read, and the coordinator
        // POSTed it again (lab Ovh500AfterTheMoveWasAccepted: two POSTs under CI load). The route read after the tasks closes that gap.
        await Client().GetRoutingAsync(Ip, TestContext.Current.CancellationToken);

        var reads = _api!.Requests.Where(r => r.StartsWith("GET ", StringComparison.Ordinal)).ToList();
        Assert.Equal(["GET /1.0/ip/203.0.113.10%2F32", "GET /1.0/ip/203.0.113.10%2F32/task?function=genericMoveFloatingIp&status=init", "GET /1.0/ip/203.0.113.10%2F32/task?function=genericMoveFloatingIp&status=todo",
            "GET /1.0/ip/203.0.113.10%2F32/task?function=genericMoveFloatingIp&status=doing", "GET /1.0/ip/203.0.113.10%2F32"], reads.TakeLast(5));
    }

    [Fact]
    public async Task EnsureRouted_AlreadyThere_NoPost()
    {
        var outcome = await Provider(Client()).EnsureRoutedAsync(Ip, "ns-a", TestContext.Current.CancellationToken);
        Assert.Equal(MoveOutcomeKind.AlreadyRouted, outcome.Kind);
        Assert.Equal(0, Posts);
    }

    [Fact]
    public async Task EnsureRouted_Moves_OnePost_RoutedToConfirmed()
    {
        var client = Client();
        var outcome = await Provider(client).EnsureRoutedAsync(Ip, "ns-b", TestContext.Current.CancellationToken);
        Assert.Equal(MoveOutcomeKind.Moved, outcome.Kind);
        Assert.Equal(1, Posts);
        Assert.Equal(1, outcome.Posts);
        Assert.Equal("ns-b", _state.RoutedTo(Ip));
        Assert.Contains(_events.List(0), e => e.Record.Kind == "OvhMoveCompleted");
    }

    [Fact]
    public async Task EnsureRouted_PostAnswers500_StateReadFirst_NoSecondPostWhileTheFirstIsPending()
    {
        // The 500 comes after the move was accepted: a proxy error on the answer. The task exists.
        var client = Client();
        var first = await client.PostMoveAsync(Ip, "ns-b", TestContext.Current.CancellationToken);
        _state.Faults = new Faults { Http500 = 1 };
        var outcome = await Provider(client).EnsureRoutedAsync(Ip, "ns-b", TestContext.Current.CancellationToken);
        Assert.True(outcome.Kind is MoveOutcomeKind.Moved or MoveOutcomeKind.AlreadyRouted, outcome.Message);
        Assert.Equal(1, Posts);
        Assert.Equal(0, outcome.Posts);
        Assert.Equal("ns-b", _state.RoutedTo(Ip));
        Assert.True(first.Id > 0);
    }

    [Fact]
    public async Task EnsureRouted_MoveProcessedButAnswered500_FollowsThePendingTask_ExactlyOnePost()
    {
        _state.Faults = new Faults { Http500AfterPost = 1 };
        var outcome = await Provider(Client()).EnsureRoutedAsync(Ip, "ns-b", TestContext.Current.CancellationToken);
        Assert.Equal(MoveOutcomeKind.Moved, outcome.Kind);
        Assert.Equal(1, Posts);
        Assert.Equal("ns-b", _state.RoutedTo(Ip));
    }

    [Fact]
    public async Task EnsureRouted_PostFailsWith500_StateShowsNothingHappened_OneMorePost()
    {
        _state.Faults = new Faults { Http500OnPost = 1 };
        var outcome = await Provider(Client()).EnsureRoutedAsync(Ip, "ns-b", TestContext.Current.CancellationToken);
        Assert.Equal(MoveOutcomeKind.Moved, outcome.Kind);
        Assert.Equal(2, outcome.Posts);
        Assert.Contains(_events.List(0), e => e.Record.Kind == "OvhMoveUncertain");
        var uncertain = _events.List(0).First(e => e.Record.Kind == "OvhMoveUncertain").Sequence;
        Assert.Contains(_events.List(uncertain), e => e.Record.Kind == "OvhCall" && e.Record.Attributes["path"] == "/ip/203.0.113.10%2F32");
    }

    [Fact]
    public async Task EnsureRouted_EveryPostFails_GivesUpAfterTwoPostsWithoutLooping()
    {
        _state.Faults = new Faults { Http500OnPost = 10 };
        var outcome = await Provider(Client()).EnsureRoutedAsync(Ip, "ns-b", TestContext.Current.CancellationToken);
        Assert.Equal(MoveOutcomeKind.Failed, outcome.Kind);
        Assert.Equal(2, Posts);
    }

    [Fact]
    public async Task EnsureRouted_TaskEndsOvhError_FailedWithOvhComment()
    {
        _state.Faults = new Faults { FailTasks = "ovhError" };
        var outcome = await Provider(Client()).EnsureRoutedAsync(Ip, "ns-b", TestContext.Current.CancellationToken);
        Assert.Equal(MoveOutcomeKind.Failed, outcome.Kind);
        Assert.Contains("ovhError", outcome.Message);
        Assert.Equal("ns-a", _state.RoutedTo(Ip));
        Assert.Equal(1, Posts);
    }

    [Fact]
    public async Task EnsureRouted_TaskStuck_TimesOutWithLastState()
    {
        _state.Faults = new Faults { StuckTasks = true };
        var outcome = await Provider(Client(), TimeSpan.FromSeconds(1)).EnsureRoutedAsync(Ip, "ns-b", TestContext.Current.CancellationToken);
        Assert.Equal(MoveOutcomeKind.TimedOut, outcome.Kind);
        Assert.Contains("routed to ns-a, following task", outcome.Message);
        Assert.Equal(1, Posts);
    }

    [Fact]
    public async Task WrongSecret_InvalidSignature_OvhError()
    {
        var ex = await Assert.ThrowsAsync<OvhException>(() => Client(secret: "wrong").GetRoutingAsync(Ip, TestContext.Current.CancellationToken));
        Assert.Equal(OvhErrorKind.InvalidSignature, ex.Kind);
        Assert.Contains("Invalid signature", ex.Message);
        Assert.DoesNotContain("wrong", ex.Message);
    }

    [Fact]
    public async Task UnknownConsumerKey_InvalidCredentials_Permanent()
    {
        var ex = await Assert.ThrowsAsync<OvhException>(() => Client(ck: "nope").GetRoutingAsync(Ip, TestContext.Current.CancellationToken));
        Assert.Equal(OvhErrorKind.InvalidCredentials, ex.Kind);
        Assert.True(ex.IsPermanent);
    }

    [Fact]
    public async Task ReadRetriedAfter429_ThenSucceeds()
    {
        _state.Faults = new Faults { Http429 = 1 };
        var routing = await Client().GetRoutingAsync(Ip, TestContext.Current.CancellationToken);
        Assert.Equal("ns-a", routing.RoutedToService);
    }

    [Fact]
    public async Task Events_NeverContainSecrets()
    {
        await Provider(Client()).EnsureRoutedAsync(Ip, "ns-b", TestContext.Current.CancellationToken);
        var all = string.Join('\n', _events.List(0).Select(e => e.Record.Message + string.Join(',', e.Record.Attributes.Values)));
        Assert.DoesNotContain("as", all.Split(' ', '\n', ',', '/', '?', '&', '='));
        Assert.DoesNotContain("$1$", all);
        Assert.DoesNotContain("ck", all.Split(' ', '\n', ',', '/', '?', '&', '='));
    }
}
