using System.Globalization;
using System.Text;
using System.Text.Json;
using HaMesh.Coordinator.Cloud;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Ovh;
using Microsoft.Extensions.Time.Testing;

namespace HaMesh.FakeOvh.Tests;

/// <summary>Every client operation against the fake over real HTTP, and every injected fault met with the right typed outcome and number of calls.</summary>
public sealed class OvhOperationsAndFaultsTests : IAsyncLifetime
{
    private const string Ip = "203.0.113.10/32";
    private readonly InMemoryEventLog _events = new(TimeProvider.System);
    private readonly List<FakeOvhHost> _extra = [];
    private FakeOvhHost _fake = null!;
    private HttpClient _http = null!;

    public async ValueTask InitializeAsync()
    {
        _fake = await FakeOvhHost.StartAsync(seed: """{"ips":{"203.0.113.10/32":"ns-a","198.51.100.16/28":"ns-b"},"servers":["ns-a","ns-b","ns-c"]}""");
        _http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        await _fake.DisposeAsync();
        foreach (var f in _extra)
        {
            await f.DisposeAsync();
        }
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private OvhClient Client(FakeOvhHost? fake = null, HttpClient? http = null) =>
        new(http ?? _http, (fake ?? _fake).BaseUrl, new OvhCredentials("ak", "as", "ck"), TimeProvider.System, _events, () => 0.5);

    private OvhCloudIpProvider Provider(OvhClient client, TimeSpan? timeout = null) =>
        new(client, _events, TimeProvider.System, TimeSpan.FromMilliseconds(50), timeout ?? TimeSpan.FromSeconds(20));

    private async Task<FakeOvhHost> ExtraAsync(IReadOnlyList<(string, string)>? rules = null, int rateLimit = 10_000)
    {
        var f = await FakeOvhHost.StartAsync(rules: rules, rateLimit: rateLimit);
        _extra.Add(f);
        return f;
    }

    // ---- operations ----

    [Fact]
    public async Task ListIps_FiltersByTypeContainedAddressAndRoute()
    {
        var client = Client();
        Assert.Equal(["198.51.100.16/28", "203.0.113.10/32"], (await client.ListIpsAsync(Ct)).Order(StringComparer.Ordinal));
        Assert.Equal(2, (await client.ListIpsAsync(Ct, type: "failover")).Count);
        Assert.Empty(await client.ListIpsAsync(Ct, type: "dedicated"));
        Assert.Equal(["198.51.100.16/28"], await client.ListIpsAsync(Ct, containing: "198.51.100.20"));
        Assert.Equal(["203.0.113.10/32"], await client.ListIpsAsync(Ct, containing: "203.0.113.10"));
        Assert.Equal(["203.0.113.10/32"], await client.ListIpsAsync(Ct, routedTo: "ns-a"));
        Assert.Contains(_fake.Api.Requests, r => r == "GET /1.0/ip?ip=203.0.113.10");
    }

    [Fact]
    public async Task GetMoveDestinations_OtherServersOnly_EmptyFamiliesAsEmptyArrays()
    {
        var destinations = await Client().GetMoveDestinationsAsync(Ip, Ct);
        Assert.Equal(["ns-b", "ns-c"], destinations["dedicatedServer"]);
        Assert.Empty(destinations["vps"]);
        Assert.Empty(destinations["cloudProject"]);
    }

    [Fact]
    public async Task PostMove_TaskListedFilteredAndReadable_RouteFlipsOnlyAtDone()
    {
        var client = Client();
        var task = await client.PostMoveAsync(Ip, "ns-b", Ct);
        Assert.Equal("genericMoveFloatingIp", task.Function);
        Assert.True(task.Pending, task.Status);
        Assert.Equal("ns-b", task.Destination);
        Assert.Equal("ns-a", await client.GetRoutedToAsync(Ip, Ct));
        Assert.Contains(task.Id, await client.ListTasksAsync(Ip, Ct));
        Assert.Contains(task.Id, await client.ListTasksAsync(Ip, Ct, function: "genericMoveFloatingIp", status: task.Status));
        Assert.Empty(await client.ListTasksAsync(Ip, Ct, status: "cancelled"));
        Assert.Empty(await client.ListTasksAsync(Ip, Ct, function: "changeRipeOrg"));

        var outcome = await Provider(client).EnsureRoutedAsync(Ip, "ns-b", Ct);

        Assert.Equal(MoveOutcomeKind.Moved, outcome.Kind);
        Assert.Equal(0, outcome.Posts);
        Assert.Equal(1, _fake.Posts);
        var done = await client.GetTaskAsync(Ip, task.Id, Ct);
        Assert.Equal("done", done.Status);
        Assert.Contains(task.Id, await client.ListTasksAsync(Ip, Ct, status: "done"));
    }

    [Fact]
    public async Task Park_EmptyBodySigned_IpBecomesParkedWhenTheTaskIsDone()
    {
        var clock = new FakeTimeProvider(TimeProvider.System.GetUtcNow());
        var fake = await FakeOvhHost.StartAsync(time: clock);
        _extra.Add(fake);
        var client = Client(fake);
        var task = await client.ParkAsync(Ip, Ct);
        Assert.Null(task.Destination);
        Assert.Equal("init", task.Status);
        Assert.Equal("ns-a", await client.GetRoutedToAsync(Ip, Ct));
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Null(await client.GetRoutedToAsync(Ip, Ct));
        Assert.Equal("done", (await client.GetTaskAsync(Ip, task.Id, Ct)).Status);
        Assert.Contains(fake.Api.Requests, r => r == "POST /1.0/ip/203.0.113.10%2F32/park");
    }

    [Theory]
    [InlineData("null")]
    [InlineData("empty")]
    [InlineData("absent")]
    public async Task ParkedIp_EveryShape_ReadAsParked_ThenMovedWithOnePost(string shape)
    {
        _fake.State.Seed("""{"ips":{"192.0.2.7/32":null},"servers":[]}""");
        _fake.State.Faults = new Faults { ParkedAs = shape };
        var client = Client();
        var routing = await client.GetRoutingAsync("192.0.2.7/32", Ct);
        Assert.True(routing.Parked);
        Assert.Null(routing.RoutedToService);

        var outcome = await Provider(client).EnsureRoutedAsync("192.0.2.7/32", "ns-b", Ct);

        Assert.Equal(MoveOutcomeKind.Moved, outcome.Kind);
        Assert.Equal(1, _fake.Posts);
    }

    [Fact]
    public async Task ListServers_AndServerIps_ConsistentWithRoutedToAfterAMove()
    {
        var client = Client();
        Assert.Equal(["ns-a", "ns-b", "ns-c"], await client.ListServersAsync(Ct));
        await Provider(client).EnsureRoutedAsync(Ip, "ns-c", Ct);
        var ips = await RawGetAsync($"/dedicated/server/ns-c/ips");
        Assert.Equal("[\"203.0.113.10/32\"]", ips.Body);
        Assert.Equal("[]", (await RawGetAsync("/dedicated/server/ns-a/ips")).Body);
    }

    [Fact]
    public async Task ServiceNameComparedCaseInsensitively_NoPost()
    {
        var outcome = await Provider(Client()).EnsureRoutedAsync(Ip, " NS-A ", Ct);
        Assert.Equal(MoveOutcomeKind.AlreadyRouted, outcome.Kind);
        Assert.Equal(0, _fake.Posts);
    }

    // ---- typed errors ----

    [Fact]
    public async Task UnknownIp_NotFound_Permanent()
    {
        var ex = await Assert.ThrowsAsync<OvhException>(() => Client().GetRoutingAsync("192.0.2.99/32", Ct));
        Assert.Equal(OvhErrorKind.NotFound, ex.Kind);
        Assert.True(ex.IsPermanent);
        Assert.Contains("The requested object (ip = 192.0.2.99/32) does not exist", ex.Message);
        Assert.Equal(1, _fake.Count("GET /1.0/ip/192.0.2.99"));
    }

    [Fact]
    public async Task KeyGrantedOnlyReads_MoveNotGranted_FailedWithoutRetry()
    {
        var fake = await ExtraAsync(rules: [("GET", "/ip/*")]);
        var client = Client(fake);
        var ex = await Assert.ThrowsAsync<OvhException>(() => client.PostMoveAsync(Ip, "ns-b", Ct));
        Assert.Equal(OvhErrorKind.NotGranted, ex.Kind);
        Assert.Contains("POST /ip/*", ex.Message);

        var outcome = await Provider(client).EnsureRoutedAsync(Ip, "ns-b", Ct);
        Assert.Equal(MoveOutcomeKind.Failed, outcome.Kind);
        Assert.Contains("This call has not been granted", outcome.Message);
        Assert.Equal(2, fake.Posts); // one direct, one by the workflow: never retried
    }

    [Fact]
    public async Task ConsumerKeyPendingValidation_403NotValid_InvalidCredentials_NoPost()
    {
        var fake = await FakeOvhHost.StartAsync(pendingConsumerKeys: ["pending-ck"]);
        _extra.Add(fake);
        var client = new OvhClient(_http, fake.BaseUrl, new OvhCredentials("ak", "as", "pending-ck"), TimeProvider.System, _events, () => 0.5);
        var ex = await Assert.ThrowsAsync<OvhException>(() => client.GetRoutedToAsync(Ip, Ct));
        Assert.Equal(OvhErrorKind.InvalidCredentials, ex.Kind);
        Assert.Contains("This credential is not valid", ex.Message);
        await Assert.ThrowsAsync<OvhException>(() => Provider(client).EnsureRoutedAsync(Ip, "ns-b", Ct));
        Assert.Equal(0, fake.Posts);
    }

    [Fact]
    public async Task InvalidDestination_400_FailedWithOvhMessage_OnePost()
    {
        var outcome = await Provider(Client()).EnsureRoutedAsync(Ip, "ns-unknown", Ct);
        Assert.Equal(MoveOutcomeKind.Failed, outcome.Kind);
        Assert.Contains("Invalid destination", outcome.Message);
        Assert.Equal(1, _fake.Posts);
        Assert.Equal("ns-a", _fake.State.RoutedTo(Ip));
    }

    [Fact]
    public async Task PendingMoveByAnotherCaller_FollowedNotReposted()
    {
        await Client().PostMoveAsync(Ip, "ns-b", Ct);
        var before = _fake.Posts;
        var outcome = await Provider(Client()).EnsureRoutedAsync(Ip, "ns-b", Ct);
        Assert.Equal(MoveOutcomeKind.Moved, outcome.Kind);
        Assert.Equal(0, outcome.Posts);
        Assert.Equal(before, _fake.Posts);
        Assert.Contains(_events.List(0), e => e.Record.Kind == "OvhMoveFollowing");
    }

    [Fact]
    public async Task TwoCoordinatorsMoveAtOnce_OneTaskCreated_BothConverge()
    {
        var results = await Task.WhenAll(Provider(Client()).EnsureRoutedAsync(Ip, "ns-b", Ct), Provider(Client()).EnsureRoutedAsync(Ip, "ns-b", Ct));
        Assert.All(results, r => Assert.True(r.Kind is MoveOutcomeKind.Moved or MoveOutcomeKind.AlreadyRouted, r.Message));
        Assert.Single(_fake.State.TaskIds(Ip, null));
        Assert.Equal("ns-b", _fake.State.RoutedTo(Ip));
    }

    [Fact]
    public async Task TaskEndsCustomerError_FailedWithComment_RouteUnchanged()
    {
        _fake.State.Faults = new Faults { FailTasks = "customerError" };
        var outcome = await Provider(Client()).EnsureRoutedAsync(Ip, "ns-b", Ct);
        Assert.Equal(MoveOutcomeKind.Failed, outcome.Kind);
        Assert.Contains("customerError", outcome.Message);
        Assert.Equal(1, _fake.Posts);
        Assert.Equal("ns-a", _fake.State.RoutedTo(Ip));
    }

    [Fact]
    public async Task Post502AfterTheMoveWasApplied_StateReadFirst_NoSecondPost()
    {
        _fake.State.Faults = new Faults { Http502AfterPost = 1 };
        var outcome = await Provider(Client()).EnsureRoutedAsync(Ip, "ns-b", Ct);
        Assert.Equal(MoveOutcomeKind.Moved, outcome.Kind);
        Assert.Equal(1, _fake.Posts);
        Assert.Equal(1, outcome.Posts);
        Assert.Equal("ns-b", _fake.State.RoutedTo(Ip));
        Assert.Contains(_events.List(0), e => e.Record.Kind == "OvhMoveUncertain");
    }

    [Fact]
    public async Task ReadsFailWith500Html_NeverTakenAsParked_NoPost_TimesOut()
    {
        var client = Client();
        await client.ListServersAsync(Ct); // the time delta is fetched before the fault
        _fake.State.Faults = new Faults { Http500 = 100_000 };
        var outcome = await Provider(client, TimeSpan.FromSeconds(3)).EnsureRoutedAsync(Ip, "ns-b", Ct);
        Assert.Equal(MoveOutcomeKind.TimedOut, outcome.Kind);
        Assert.DoesNotContain("parked", outcome.Message);
        Assert.Equal(0, _fake.Posts);
        Assert.True(_fake.Count("GET /1.0/ip/203.0.113.10%2F32") >= 2);
    }

    [Fact]
    public async Task Read500Html_Retried_ThenSucceeds()
    {
        var client = Client();
        await client.ListServersAsync(Ct);
        _fake.State.Faults = new Faults { Http500 = 2 };
        Assert.Equal("ns-a", await client.GetRoutedToAsync(Ip, Ct));
        Assert.Equal(3, _fake.Count("GET /1.0/ip/203.0.113.10%2F32"));
    }

    [Fact]
    public async Task DroppedConnectionOnRead_Retried_ThenSucceeds()
    {
        var client = Client();
        await client.ListServersAsync(Ct); // the time delta is fetched before the fault
        _fake.State.Faults = new Faults { DropConnections = 1 };
        Assert.Equal("ns-a", await client.GetRoutedToAsync(Ip, Ct));
        Assert.Equal(2, _fake.Count("GET /1.0/ip/203.0.113.10%2F32"));
    }

    [Fact]
    public async Task SlowResponses_ClientTimeout_Transient_RetriedThenGivesUp()
    {
        using var impatient = new HttpClient { Timeout = TimeSpan.FromMilliseconds(300) };
        var client = Client(http: impatient);
        await client.ListServersAsync(Ct);
        _fake.State.Faults = new Faults { DelayMs = 1500 };
        var ex = await Assert.ThrowsAsync<OvhException>(() => client.GetRoutedToAsync(Ip, Ct));
        Assert.Equal(OvhErrorKind.Transient, ex.Kind);
        Assert.Equal(4, _fake.Count("GET /1.0/ip/203.0.113.10%2F32")); // 1 + 3 retries
    }

    [Fact]
    public async Task RateLimited_429_BacksOffThenRateLimitedOutcome()
    {
        var fake = await ExtraAsync(rateLimit: 3);
        var client = Client(fake);
        await client.ListServersAsync(Ct);
        await client.ListServersAsync(Ct);
        await client.ListServersAsync(Ct);
        var ex = await Assert.ThrowsAsync<OvhException>(() => client.GetRoutedToAsync(Ip, Ct));
        Assert.Equal(OvhErrorKind.RateLimited, ex.Kind);
        Assert.Equal(4, fake.Count("GET /1.0/ip/203.0.113.10%2F32"));
        var calls = _events.List(0).Where(e => e.Record.Kind == "OvhCall" && e.Record.Attributes["status"] == "429").ToList();
        Assert.Equal(4, calls.Count);
    }

    [Fact]
    public async Task ServerClockAnHourAhead_DeltaFromAuthTime_CallsSucceed()
    {
        _fake.State.Faults = new Faults { SkewSeconds = 3600 };
        Assert.Equal("ns-a", await Client().GetRoutedToAsync(Ip, Ct));
        Assert.Equal(1, _fake.Count("GET /1.0/auth/time"));
    }

    [Fact]
    public async Task ClockJumpsAfterDeltaCached_QueryTimeOut_DeltaRefreshedOnce_Succeeds()
    {
        var client = Client();
        Assert.Equal("ns-a", await client.GetRoutedToAsync(Ip, Ct));
        _fake.State.Faults = new Faults { SkewSeconds = 600 };
        Assert.Equal("ns-a", await client.GetRoutedToAsync(Ip, Ct));
        Assert.Equal(2, _fake.Count("GET /1.0/auth/time"));
        Assert.Contains(_events.List(0), e => e.Record.Kind == "OvhCall" && e.Record.Message.Contains("Query out of time", StringComparison.Ordinal));
    }

    [Fact]
    public async Task QueryValueWithNonAscii_AbsoluteUriSigned_Accepted()
    {
        // spec §10 case 3: the signature covers ...%C3%A9llo%20w%C3%B6rld%2Fx, the string on the wire
        var ips = await Client().ListIpsAsync(Ct, routedTo: "héllo wörld/x");
        Assert.Empty(ips);
        Assert.Contains(_fake.Api.Requests, r => r == "GET /1.0/ip?routedTo.serviceName=h%C3%A9llo%20w%C3%B6rld%2Fx");
    }

    [Fact]
    public async Task SameDestinationRace_400AlreadyRouted_ReReadShowsTheTarget_Success()
    {
        // Another coordinator's move to the same target completes between our read and our POST (spec §10 case 25).
        var clock = new FakeTimeProvider(TimeProvider.System.GetUtcNow());
        var fake = await FakeOvhHost.StartAsync(time: clock);
        _extra.Add(fake);
        using var racing = new HttpClient(new BeforePost(() =>
        {
            fake.State.Move(Ip, "ns-b");
            clock.Advance(TimeSpan.FromSeconds(1));
            fake.State.Advance();
        }) { InnerHandler = new HttpClientHandler() });
        var outcome = await Provider(Client(fake, racing)).EnsureRoutedAsync(Ip, "ns-b", Ct);
        Assert.Equal(MoveOutcomeKind.Moved, outcome.Kind);
        Assert.Equal(1, fake.Posts);
        Assert.Contains(_events.List(0), e => e.Record.Kind == "OvhCall" && e.Record.Message.Contains("IP is already routed to this service", StringComparison.Ordinal));
    }

    [Fact]
    public async Task RuleOnIpAlone_DoesNotGrantIpObject_403NotGranted()
    {
        var fake = await ExtraAsync(rules: [("GET", "/ip")]);
        var client = Client(fake);
        Assert.Single(await client.ListIpsAsync(Ct));
        var ex = await Assert.ThrowsAsync<OvhException>(() => client.GetRoutedToAsync(Ip, Ct));
        Assert.Equal(OvhErrorKind.NotGranted, ex.Kind);
    }

    [Fact]
    public async Task AdminEndpoint_FaultsAtRunTime_StateDumped()
    {
        using var set = new StringContent("""{"http500":1}""", Encoding.UTF8, "application/json");
        using var posted = await _http.PostAsync(new Uri(_fake.App.Urls.First() + "/admin/faults"), set, Ct);
        Assert.True(posted.IsSuccessStatusCode);
        Assert.Equal(1, _fake.State.Faults.Http500);
        var dump = await _http.GetStringAsync(new Uri(_fake.App.Urls.First() + "/admin/state"), Ct);
        Assert.Equal("ns-a", Field(Field(dump, "ips")!, Ip));
    }

    [Fact]
    public async Task TaskEndsOvhErrorButTheIpMovedAnyway_ReReadDecides_Success()
    {
        // spec §10 case 27: the task we follow fails, yet the route names the target (another task did it).
        _fake.State.Faults = new Faults { FailTasks = "ovhError" };
        var sawFailure = false;
        using var http = new HttpClient(new AfterResponse(async response =>
        {
            if (!sawFailure && response.RequestMessage!.RequestUri!.AbsolutePath.Contains("/task/", StringComparison.Ordinal)
                && (await response.Content.ReadAsStringAsync(Ct)).Contains("\"ovhError\"", StringComparison.Ordinal))
            {
                sawFailure = true;
                _fake.State.Seed("""{"ips":{"203.0.113.10/32":"ns-b"},"servers":[]}""");
            }
        }) { InnerHandler = new HttpClientHandler() });
        var outcome = await Provider(Client(http: http)).EnsureRoutedAsync(Ip, "ns-b", Ct);
        Assert.True(sawFailure);
        Assert.Equal(MoveOutcomeKind.Moved, outcome.Kind);
        Assert.Equal(1, _fake.Posts);
    }

    private sealed class AfterResponse(Func<HttpResponseMessage, Task> inspect) : DelegatingHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var response = await base.SendAsync(request, cancellationToken);
            await response.Content.LoadIntoBufferAsync(cancellationToken);
            await inspect(response);
            return response;
        }
    }

    private sealed class BeforePost(Action action) : DelegatingHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            if (request.Method == HttpMethod.Post)
            {
                action();
            }

            return base.SendAsync(request, cancellationToken);
        }
    }

    // ---- the fake's checks, with hand-made requests ----

    [Fact]
    public async Task AuthTime_NoHeaders_BareInteger()
    {
        var (status, body) = await SendAsync(HttpMethod.Get, "/auth/time", null, sign: false, headers: false);
        Assert.Equal(200, status);
        Assert.True(long.TryParse(body, NumberStyles.None, CultureInfo.InvariantCulture, out _), body);
    }

    [Fact]
    public async Task MissingConsumerKey_401LoginFirst()
    {
        var (status, body) = await SendAsync(HttpMethod.Get, "/ip", null, sign: false);
        Assert.Equal(401, status);
        Assert.Equal("You must login first", Field(body, "message"));
    }

    [Fact]
    public async Task UnknownApplicationKey_403InvalidKey()
    {
        var (status, body) = await SendAsync(HttpMethod.Get, "/ip", null, ak: "other");
        Assert.Equal(403, status);
        Assert.Equal("INVALID_KEY", Field(body, "errorCode"));
        Assert.Equal("This application key is invalid", Field(body, "message"));
    }

    [Fact]
    public async Task WrongSecret_400InvalidSignature()
    {
        var (status, body) = await SendAsync(HttpMethod.Get, "/ip", null, secret: "wrong");
        Assert.Equal(400, status);
        Assert.Equal("INVALID_SIGNATURE", Field(body, "errorCode"));
        Assert.Equal("400 Bad Request", Field(body, "httpCode"));
    }

    [Fact]
    public async Task BodyReserialisedWithSpaces_400InvalidSignature()
    {
        var (status, body) = await SendAsync(HttpMethod.Post, "/ip/203.0.113.10%2F32/move", """{"to": "ns-b"}""", signedBody: """{"to":"ns-b"}""");
        Assert.Equal(400, status);
        Assert.Equal("INVALID_SIGNATURE", Field(body, "errorCode"));
        Assert.Empty(_fake.State.TaskIds(Ip, null));
    }

    [Fact]
    public async Task UpperCaseEscapeSigned_LowerCaseSent_400InvalidSignature()
    {
        var (status, _) = await SendAsync(HttpMethod.Get, "/ip/203.0.113.10%2f32", null, signedPath: "/ip/203.0.113.10%2F32");
        Assert.Equal(400, status);
        var (ok, _) = await SendAsync(HttpMethod.Get, "/ip/203.0.113.10%2f32", null);
        Assert.Equal(200, ok);
    }

    [Fact]
    public async Task IpPathForms_EncodedEitherCaseAndBare_SameObject_UnencodedSlash404()
    {
        var upper = await SendAsync(HttpMethod.Get, "/ip/203.0.113.10%2F32", null);
        var lower = await SendAsync(HttpMethod.Get, "/ip/203.0.113.10%2f32", null);
        var bare = await SendAsync(HttpMethod.Get, "/ip/203.0.113.10", null);
        var slash = await SendAsync(HttpMethod.Get, "/ip/203.0.113.10/32", null);
        Assert.Equal(upper.Body, lower.Body);
        Assert.Equal(upper.Body, bare.Body);
        Assert.Equal("203.0.113.10/32", Field(upper.Body, "ip"));
        Assert.Equal(404, slash.Status);
        Assert.Equal("Got an invalid (or empty) URL", Field(slash.Body, "message"));
    }

    [Fact]
    public async Task MoveBodyWithNullNexthop_AcceptedAsAbsent()
    {
        var (status, body) = await SendAsync(HttpMethod.Post, "/ip/203.0.113.10%2F32/move", """{"to":"ns-b","nexthop":null}""");
        Assert.Equal(200, status);
        Assert.Equal("genericMoveFloatingIp", Field(body, "function"));
    }

    [Fact]
    public async Task SecondMoveWhilePending_409Conflict()
    {
        Assert.Equal(200, (await SendAsync(HttpMethod.Post, "/ip/203.0.113.10%2F32/move", """{"to":"ns-b"}""")).Status);
        var (status, body) = await SendAsync(HttpMethod.Post, "/ip/203.0.113.10%2F32/move", """{"to":"ns-c"}""");
        Assert.Equal(409, status);
        Assert.Equal("Client::Conflict", Field(body, "class"));
    }

    private async Task<(int Status, string Body)> RawGetAsync(string path) => await SendAsync(HttpMethod.Get, path, null);

    private async Task<(int Status, string Body)> SendAsync(HttpMethod method, string path, string? body, bool sign = true, bool headers = true,
        string ak = "ak", string secret = "as", string? signedBody = null, string? signedPath = null)
    {
        var url = _fake.BaseUrl.AbsoluteUri + path;
        using var request = new HttpRequestMessage(method, new Uri(url));
        if (headers)
        {
            request.Headers.Add("X-Ovh-Application", ak);
        }

        if (sign)
        {
            var ts = TimeProvider.System.GetUtcNow().ToUnixTimeSeconds();
            request.Headers.Add("X-Ovh-Consumer", "ck");
            request.Headers.Add("X-Ovh-Timestamp", ts.ToString(CultureInfo.InvariantCulture));
            request.Headers.Add("X-Ovh-Signature", OvhSignature.Sign(secret, "ck", method.Method, _fake.BaseUrl.AbsoluteUri + (signedPath ?? path), signedBody ?? body ?? "", ts));
        }

        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        }

        using var response = await _http.SendAsync(request, Ct);
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync(Ct));
    }

    private static string? Field(string json, string name)
    {
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.TryGetProperty(name, out var v) ? v.ToString() : null;
    }
}
