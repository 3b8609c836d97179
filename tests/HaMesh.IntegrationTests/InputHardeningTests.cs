using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Grpc.Reflection.V1Alpha;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Grpc;
using HaMesh.Testing;
using HaMesh.Testing.Processes;

namespace HaMesh.IntegrationTests;

/// <summary>
/// Malformed and oversized input to every RPC of both daemons, as real processes over real sockets:
/// each gets a clean gRPC status naming the field (or RESOURCE_EXHAUSTED for size), never an
/// Unknown/handler crash, and the daemon answers a Ping/GetClusterStatus right after. Raw HTTP/2
/// frames (h2c prior knowledge) cover what a generated client cannot send.
/// </summary>
public sealed class InputHardeningTests : IAsyncLifetime
{
    private static readonly string Long = new('x', 100_000);
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-input-").FullName;
    private readonly List<IAsyncDisposable> _owned = [];
    private readonly List<IDisposable> _disposables = [];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        foreach (var o in _owned.AsEnumerable().Reverse())
        {
            await o.DisposeAsync();
        }

        foreach (var d in _disposables)
        {
            d.Dispose();
        }

        Directory.Delete(_dir, recursive: true);
    }

    private sealed record Daemons(string Coordinator, string Agent, DaemonProcess CoordinatorProcess, DaemonProcess AgentProcess);

    /// <summary>A coordinator and agent a (plain h2c, so raw HTTP/2 frames can be hand-built); agent b never runs.</summary>
    private async Task<Daemons> StartAsync()
    {
        int cport = DaemonProcess.FreePort(), aport = DaemonProcess.FreePort(), bport = DaemonProcess.FreePort();
        var o = TestConfig.TwoNodes(coordinatorAddress: $"http://127.0.0.1:{cport}");
        o.Cluster.Timings.Lease = TimeSpan.FromSeconds(4);
        o.Cluster.Timings.DriftMargin = TimeSpan.FromSeconds(1);
        o.Coordinator.Listen = $"http://127.0.0.1:{cport}";
        o.Coordinator.StorePath = Path.Combine(_dir, "coordinator.db");
        o.Nodes[0].AgentAddress = $"http://127.0.0.1:{aport}";
        o.Nodes[1].AgentAddress = $"http://127.0.0.1:{bport}";
        o.Agent.Node = "";
        o.Agent.DrbdVersion = "drbd84";
        o.Agent.StateDirectory = _dir;
        var config = ClusterFiles.Write(_dir, o);
        var coordinator = DaemonProcess.Start("coordinator", DaemonProcess.Dll("src/Coordinator", "hamesh-coordinator"), ["--config", config]);
        _owned.Add(coordinator);
        var standIns = StandIns.Drbd84Node("Primary", "Secondary", aliasPresent: true, "active");
        _disposables.Add(standIns);
        var agent = DaemonProcess.Start("agent-a", DaemonProcess.Dll("src/Agent", "hamesh-agent"), ["--config", config], StandIns.AgentEnvironment("a", aport, standIns));
        _owned.Add(agent);
        await Task.WhenAll(coordinator.WaitForListeningAsync(Ct), agent.WaitForListeningAsync(Ct));
        return new Daemons($"http://127.0.0.1:{cport}", $"http://127.0.0.1:{aport}", coordinator, agent);
    }

    /// <summary>A channel without the client-side size limits, so oversized messages reach the server.</summary>
    private GrpcChannel Channel(string address)
    {
        var channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions { MaxSendMessageSize = null, MaxReceiveMessageSize = null });
        _disposables.Add(channel);
        return channel;
    }

    private static async Task Refused(Func<Task> call, StatusCode code, string detail)
    {
        var ex = await Assert.ThrowsAsync<RpcException>(call);
        Assert.True(ex.StatusCode == code, $"expected {code} '{detail}', got {ex.StatusCode}: {ex.Status.Detail}");
        Assert.Contains(detail, ex.Status.Detail, StringComparison.Ordinal);
        Assert.True(ex.Status.Detail.Length < 400, $"the error echoes the over-long input ({ex.Status.Detail.Length} chars)");
    }

    private static Task Refused<T>(AsyncUnaryCall<T> call, StatusCode code, string detail) => Refused(() => call.ResponseAsync, code, detail);

    /// <summary>
    /// A state-changing operator call with a stale generation: FailedPrecondition naming the generation, or, while the
    /// coordinator still adopts the cluster it has just met (it decides as soon as the first reports arrive),
    /// FailedPrecondition naming the operation in flight. Either is a clean refusal that changes nothing.
    /// </summary>
    private static async Task RefusedStale<T>(AsyncUnaryCall<T> call)
    {
        var ex = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync);
        Assert.True(ex.StatusCode == StatusCode.FailedPrecondition, $"expected FailedPrecondition, got {ex.StatusCode}: {ex.Status.Detail}");
        Assert.True(ex.Status.Detail.Contains("generation:", StringComparison.Ordinal) || ex.Status.Detail.Contains("already in flight", StringComparison.Ordinal), ex.Status.Detail);
        Assert.True(ex.Status.Detail.Length < 400, $"the error echoes the over-long input ({ex.Status.Detail.Length} chars)");
    }

    [Fact]
    public async Task AgentService_EveryRpc_MalformedAndOversized_CleanStatus_AndKeepsServing()
    {
        var d = await StartAsync();
        var agent = new AgentService.AgentServiceClient(Channel(d.Agent));
        var ct = Ct;

        // GetStatus
        await Refused(agent.GetStatusAsync(new GetStatusRequest { Resource = "../etc" }, cancellationToken: ct), StatusCode.InvalidArgument, "resource:");
        await Refused(agent.GetStatusAsync(new GetStatusRequest { Resource = Long }, cancellationToken: ct), StatusCode.InvalidArgument, "resource:");
        await Refused(agent.GetStatusAsync(new GetStatusRequest { Resource = "nope" }, cancellationToken: ct), StatusCode.NotFound, "resource:");

        // Ping
        await Refused(agent.PingAsync(new PingRequest { Nonce = Long }, cancellationToken: ct), StatusCode.InvalidArgument, "nonce:");

        // Promote / Demote / Outdate: name, unknown resource, generation 0, over-long free text
        await Refused(agent.PromoteAsync(new PromoteRequest { Generation = 5 }, cancellationToken: ct), StatusCode.InvalidArgument, "resource: is required");
        await Refused(agent.PromoteAsync(new PromoteRequest { Resource = "-rf", Generation = 5 }, cancellationToken: ct), StatusCode.InvalidArgument, "resource:");
        await Refused(agent.PromoteAsync(new PromoteRequest { Resource = "nope", Generation = 5 }, cancellationToken: ct), StatusCode.NotFound, "resource:");
        await Refused(agent.PromoteAsync(new PromoteRequest { Resource = "db", Generation = 0 }, cancellationToken: ct), StatusCode.InvalidArgument, "generation:");
        await Refused(agent.PromoteAsync(new PromoteRequest { Resource = "db", Generation = 5, Reason = Long }, cancellationToken: ct), StatusCode.InvalidArgument, "reason:");
        await Refused(agent.PromoteAsync(new PromoteRequest { Resource = "db", Generation = 5, OperationId = Long }, cancellationToken: ct), StatusCode.InvalidArgument, "operation_id:");
        await Refused(agent.DemoteAsync(new DemoteRequest { Resource = Long, Generation = 5 }, cancellationToken: ct), StatusCode.InvalidArgument, "resource:");
        await Refused(agent.DemoteAsync(new DemoteRequest { Resource = "db", Generation = 0 }, cancellationToken: ct), StatusCode.InvalidArgument, "generation:");
        await Refused(agent.DemoteAsync(new DemoteRequest { Resource = "db", Generation = 5, Reason = Long }, cancellationToken: ct), StatusCode.InvalidArgument, "reason:");
        await Refused(agent.OutdateAsync(new OutdateRequest { Resource = "nope", Generation = 5 }, cancellationToken: ct), StatusCode.NotFound, "resource:");
        await Refused(agent.OutdateAsync(new OutdateRequest { Resource = "db", Generation = 0 }, cancellationToken: ct), StatusCode.InvalidArgument, "generation:");
        await Refused(agent.OutdateAsync(new OutdateRequest { Resource = "db", Generation = 5, RequestedBy = Long }, cancellationToken: ct), StatusCode.InvalidArgument, "requested_by:");

        // RenewLease: self as requester, missing lease, a Duration outside protobuf's range (was an Unknown crash)
        var renew = new RenewLeaseRequest { Resource = "db", Generation = 5, Requester = "b", Lease = Duration.FromTimeSpan(TimeSpan.FromSeconds(2)) };
        await Refused(agent.RenewLeaseAsync(new RenewLeaseRequest(renew) { Requester = "a" }, cancellationToken: ct), StatusCode.InvalidArgument, "requester:");
        await Refused(agent.RenewLeaseAsync(new RenewLeaseRequest(renew) { Requester = Long }, cancellationToken: ct), StatusCode.InvalidArgument, "requester:");
        await Refused(agent.RenewLeaseAsync(new RenewLeaseRequest(renew) { Lease = null }, cancellationToken: ct), StatusCode.InvalidArgument, "lease:");
        await Refused(agent.RenewLeaseAsync(new RenewLeaseRequest(renew) { Lease = new Duration { Seconds = 1, Nanos = 2_000_000_000 } }, cancellationToken: ct), StatusCode.InvalidArgument, "lease:");
        await Refused(agent.RenewLeaseAsync(new RenewLeaseRequest(renew) { Lease = new Duration { Seconds = long.MaxValue } }, cancellationToken: ct), StatusCode.InvalidArgument, "lease:");
        await Refused(agent.RenewLeaseAsync(new RenewLeaseRequest(renew) { Lease = Duration.FromTimeSpan(TimeSpan.FromHours(1)) }, cancellationToken: ct), StatusCode.InvalidArgument, "lease:");
        await Refused(agent.RenewLeaseAsync(new RenewLeaseRequest(renew) { Generation = 0 }, cancellationToken: ct), StatusCode.InvalidArgument, "generation:");

        // FencePeer (local handler path)
        await Refused(agent.FencePeerAsync(new AgentFencePeerRequest(), cancellationToken: ct), StatusCode.InvalidArgument, "resource:");
        await Refused(agent.FencePeerAsync(new AgentFencePeerRequest { DrbdResource = "-" + Long }, cancellationToken: ct), StatusCode.InvalidArgument, "drbd_resource:");
        await Refused(agent.FencePeerAsync(new AgentFencePeerRequest { Resource = Long }, cancellationToken: ct), StatusCode.InvalidArgument, "resource:");
        await Refused(agent.FencePeerAsync(new AgentFencePeerRequest { DrbdResource = "r9" }, cancellationToken: ct), StatusCode.NotFound, "resource:");
        await Refused(agent.FencePeerAsync(new AgentFencePeerRequest { DrbdResource = "r0", PeerName = "b\nforged log line" }, cancellationToken: ct), StatusCode.InvalidArgument, "peer_name:");

        // a message over the 4 MiB receive limit
        await Refused(agent.GetStatusAsync(new GetStatusRequest { Resource = new string('y', GrpcChannels.MaxMessageBytes + 10) }, cancellationToken: ct), StatusCode.ResourceExhausted, "");

        // health and reflection: unknown names answer cleanly
        var health = new Health.HealthClient(Channel(d.Agent));
        await Refused(health.CheckAsync(new HealthCheckRequest { Service = Long }, cancellationToken: ct), StatusCode.NotFound, "");
        await AssertReflectionNotFoundAsync(Channel(d.Agent), ct);

        await RawFramesAsync(d.Agent, "/hamesh.v1.AgentService/Ping", ct);

        var pong = await agent.PingAsync(new PingRequest { Nonce = "still-serving" }, cancellationToken: ct);
        Assert.Equal("still-serving", pong.Nonce);
        Assert.False(d.AgentProcess.HasExited);
        Assert.DoesNotContain("Unhandled exception", d.AgentProcess.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CoordinatorService_EveryRpc_MalformedAndOversized_CleanStatus_AndKeepsServing()
    {
        var d = await StartAsync();
        var coordinator = new CoordinatorService.CoordinatorServiceClient(Channel(d.Coordinator));
        var ct = Ct;

        // Connect: the first message must be a hello with a valid, configured node
        await ConnectRefusedAsync(coordinator, [new AgentMessage { Report = new NodeStatus { Node = "b" } }], StatusCode.InvalidArgument, "hello:", ct);
        await ConnectRefusedAsync(coordinator, [new AgentMessage { Hello = new AgentHello() }], StatusCode.InvalidArgument, "hello.node: is required", ct);
        await ConnectRefusedAsync(coordinator, [new AgentMessage { Hello = new AgentHello { Node = Long } }], StatusCode.InvalidArgument, "hello.node:", ct);
        await ConnectRefusedAsync(coordinator, [new AgentMessage { Hello = new AgentHello { Node = "zed" } }], StatusCode.PermissionDenied, "not a member", ct);
        await ConnectRefusedAsync(coordinator, [new AgentMessage { Hello = new AgentHello { Node = "b" } }, new AgentMessage { Report = new NodeStatus { Node = "a" } }], StatusCode.PermissionDenied, "on the stream of 'b'", ct);
        await ConnectRefusedAsync(coordinator, [new AgentMessage { Hello = new AgentHello { Node = "b" } }, new AgentMessage()], StatusCode.InvalidArgument, "body:", ct);

        // GetClusterStatus has no fields; ListEvents / WatchEvents
        await Refused(coordinator.ListEventsAsync(new ListEventsRequest { Limit = -1 }, cancellationToken: ct), StatusCode.InvalidArgument, "limit:");
        await Refused(coordinator.ListEventsAsync(new ListEventsRequest { Limit = 100_000 }, cancellationToken: ct), StatusCode.InvalidArgument, "limit:");
        await Refused(coordinator.ListEventsAsync(new ListEventsRequest { Since = new Timestamp { Seconds = long.MaxValue } }, cancellationToken: ct), StatusCode.InvalidArgument, "since:");
        await Refused(coordinator.ListEventsAsync(new ListEventsRequest { Since = new Timestamp { Seconds = 1, Nanos = -5 } }, cancellationToken: ct), StatusCode.InvalidArgument, "since:");
        await Refused(coordinator.ListEventsAsync(new ListEventsRequest { Resource = Long }, cancellationToken: ct), StatusCode.InvalidArgument, "resource:");
        await Refused(coordinator.ListEventsAsync(new ListEventsRequest { Resource = "nope" }, cancellationToken: ct), StatusCode.NotFound, "resource:");
        await Refused(async () =>
        {
            using var watch = coordinator.WatchEvents(new WatchEventsRequest { Resource = "Bad Name" }, cancellationToken: ct);
            await watch.ResponseStream.MoveNext(ct);
        }, StatusCode.InvalidArgument, "resource:");

        // operator commands: names, unknown names, the generation seen, acknowledgements
        await Refused(coordinator.SwitchoverAsync(new SwitchoverRequest { Resource = "", TargetNode = "b", Generation = 1 }, cancellationToken: ct), StatusCode.InvalidArgument, "resource: is required");
        await Refused(coordinator.SwitchoverAsync(new SwitchoverRequest { Resource = "db", TargetNode = Long, Generation = 1 }, cancellationToken: ct), StatusCode.InvalidArgument, "target_node:");
        await Refused(coordinator.SwitchoverAsync(new SwitchoverRequest { Resource = "db", TargetNode = "zed", Generation = 1 }, cancellationToken: ct), StatusCode.NotFound, "target_node:");
        await RefusedStale(coordinator.SwitchoverAsync(new SwitchoverRequest { Resource = "db", TargetNode = "b", Generation = 999, Reason = Long }, cancellationToken: ct));
        await Refused(coordinator.SetMaintenanceAsync(new SetMaintenanceRequest { Resource = "DB", Enabled = true }, cancellationToken: ct), StatusCode.InvalidArgument, "resource:");
        await RefusedStale(coordinator.SetMaintenanceAsync(new SetMaintenanceRequest { Resource = "db", Generation = 999, Enabled = true }, cancellationToken: ct));
        await Refused(coordinator.ClaimIpAsync(new ClaimIpRequest { Resource = "db", Node = "b", Ip = "not-an-ip" }, cancellationToken: ct), StatusCode.InvalidArgument, "ip:");
        await Refused(coordinator.ClaimIpAsync(new ClaimIpRequest { Resource = "db", Node = "b", Ip = "198.51.100.7" }, cancellationToken: ct), StatusCode.NotFound, "ip:");
        await Refused(coordinator.ClaimIpAsync(new ClaimIpRequest { Resource = "db", Node = "", Ip = "203.0.113.10" }, cancellationToken: ct), StatusCode.InvalidArgument, "node: is required");
        await Refused(coordinator.GetIpAsync(new GetIpRequest { Ip = "" }, cancellationToken: ct), StatusCode.InvalidArgument, "ip: is required");
        await Refused(coordinator.GetIpAsync(new GetIpRequest { Ip = Long }, cancellationToken: ct), StatusCode.InvalidArgument, "ip:");
        await Refused(coordinator.ForcePromoteAsync(new ForcePromoteRequest { Resource = "db", Node = "b", Generation = 1 }, cancellationToken: ct), StatusCode.InvalidArgument, "i_understand_data_loss:");
        await Refused(coordinator.ForcePromoteAsync(new ForcePromoteRequest { Resource = "db", Node = Long, IUnderstandDataLoss = true }, cancellationToken: ct), StatusCode.InvalidArgument, "node:");

        // FencePeer
        var fence = new FencePeerRequest { Resource = "db", Generation = 1, RequestingNode = "a", PeerNode = "b" };
        await Refused(coordinator.FencePeerAsync(new FencePeerRequest(fence) { Generation = 0 }, cancellationToken: ct), StatusCode.InvalidArgument, "generation:");
        await Refused(coordinator.FencePeerAsync(new FencePeerRequest(fence) { PeerNode = "a" }, cancellationToken: ct), StatusCode.InvalidArgument, "peer_node:");
        await Refused(coordinator.FencePeerAsync(new FencePeerRequest(fence) { RequestingNode = Long }, cancellationToken: ct), StatusCode.InvalidArgument, "requesting_node:");
        await Refused(coordinator.FencePeerAsync(new FencePeerRequest(fence) { Resource = "nope" }, cancellationToken: ct), StatusCode.NotFound, "resource:");

        // over the receive limit, unary and on the stream
        await Refused(coordinator.GetIpAsync(new GetIpRequest { Ip = new string('1', GrpcChannels.MaxMessageBytes + 10) }, cancellationToken: ct), StatusCode.ResourceExhausted, "");
        // on a stream the server's RESOURCE_EXHAUSTED races with the client still writing the message: the client sees one
        // of the two as the stream is reset
        var oversized = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            using var connect = coordinator.Connect(cancellationToken: ct);
            await connect.RequestStream.WriteAsync(new AgentMessage { Hello = new AgentHello { Node = "b", AgentVersion = new string('v', GrpcChannels.MaxMessageBytes + 10) } }, ct);
            while (await connect.ResponseStream.MoveNext(ct))
            {
            }
        });
        Assert.True(oversized.StatusCode is StatusCode.ResourceExhausted or StatusCode.Cancelled, $"oversized hello: {oversized.StatusCode} {oversized.Status.Detail}");

        // health and reflection
        var health = new Health.HealthClient(Channel(d.Coordinator));
        await Refused(health.CheckAsync(new HealthCheckRequest { Service = Long }, cancellationToken: ct), StatusCode.NotFound, "");
        await AssertReflectionNotFoundAsync(Channel(d.Coordinator), ct);

        await RawFramesAsync(d.Coordinator, "/hamesh.v1.CoordinatorService/GetIp", ct);

        var status = await coordinator.GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: ct);
        Assert.Equal(2, status.Nodes.Count);
        Assert.False(d.CoordinatorProcess.HasExited);
        Assert.DoesNotContain("Unhandled exception", d.CoordinatorProcess.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Coordinator_ConnectStream_CarriesMoreThanTheMessageLimitInTotal()
    {
        // the size limit is per message: a long-lived Connect stream sends many MiB over its life
        var d = await StartAsync();
        var coordinator = new CoordinatorService.CoordinatorServiceClient(Channel(d.Coordinator));
        using var connect = coordinator.Connect(cancellationToken: Ct);
        await connect.RequestStream.WriteAsync(new AgentMessage { Hello = new AgentHello { Node = "b", AgentVersion = "t" } }, Ct);
        Assert.True(await connect.ResponseStream.MoveNext(Ct));
        var report = new NodeStatus { Node = "b", AgentVersion = "t" };
        report.ReadErrors.Add(new string('e', 256 * 1024));
        for (var i = 1; i <= 24; i++)
        {
            report.Sequence = (ulong)i;
            await connect.RequestStream.WriteAsync(new AgentMessage { Report = report }, Ct);
        }

        // a lease request on the same stream is still answered after 6 MiB
        await connect.RequestStream.WriteAsync(new AgentMessage { LeaseRequest = new LeaseRequest { Resource = "db", Generation = 1, Sequence = 7 } }, Ct);
        Assert.True(await connect.ResponseStream.MoveNext(Ct));
        Assert.Equal(7UL, connect.ResponseStream.Current.LeaseGrant.Sequence);
        await connect.RequestStream.CompleteAsync();
    }

    private static async Task ConnectRefusedAsync(CoordinatorService.CoordinatorServiceClient client, AgentMessage[] messages, StatusCode code, string detail, CancellationToken ct) =>
        await Refused(async () =>
        {
            using var connect = client.Connect(cancellationToken: ct);
            foreach (var m in messages)
            {
                await connect.RequestStream.WriteAsync(m, ct);
            }

            while (await connect.ResponseStream.MoveNext(ct))
            {
            }
        }, code, detail);

    private static async Task AssertReflectionNotFoundAsync(GrpcChannel channel, CancellationToken ct)
    {
        var client = new ServerReflection.ServerReflectionClient(channel);
        using var call = client.ServerReflectionInfo(cancellationToken: ct);
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { FileContainingSymbol = Long }, ct);
        Assert.True(await call.ResponseStream.MoveNext(ct));
        Assert.Equal((int)StatusCode.NotFound, call.ResponseStream.Current.ErrorResponse.ErrorCode);
        await call.RequestStream.CompleteAsync();
    }

    /// <summary>Hand-built gRPC frames over HTTP/2 (h2c prior knowledge) to <paramref name="method"/>.</summary>
    private static async Task RawFramesAsync(string address, string method, CancellationToken ct)
    {
        using var http = new HttpClient(new SocketsHttpHandler()) { BaseAddress = new Uri(address) };

        // grpc-dotnet reads the request before any HaMesh code runs: an unreadable payload ends the call with
        // Internal (framing) or Unknown (the protobuf parser's exception), never a dead daemon
        static void Unreadable(StatusCode code) => Assert.True(code is StatusCode.Internal or StatusCode.Unknown, $"expected Internal or Unknown, got {code}");

        // a frame whose payload is not a protobuf message (field 1, wire type 7 does not exist)
        Unreadable(await SendAsync(http, method, Frame(0, [0x0f, 0xff, 0xff, 0xff]), ct));
        // a length prefix just beyond the 4 MiB limit, with no payload behind it: refused on the prefix alone
        Assert.Equal(StatusCode.ResourceExhausted, await SendAsync(http, method, Header(0, GrpcChannels.MaxMessageBytes + 1), ct));
        // a length prefix of 4 GiB (beyond what a message length can be)
        var huge = await SendAsync(http, method, Header(0, uint.MaxValue), ct);
        Assert.True(huge is StatusCode.ResourceExhausted or StatusCode.Unknown or StatusCode.Internal, $"4 GiB prefix: {huge}");
        // a length prefix promising more than the stream carries
        Unreadable(await SendAsync(http, method, [.. Header(0, 100), 1, 2, 3], ct));
        // the compressed flag with no grpc-encoding
        Assert.NotEqual(StatusCode.OK, await SendAsync(http, method, Frame(1, [0x0a, 0x01, 0x41]), ct));
        // three bytes: not even a frame header
        Unreadable(await SendAsync(http, method, [0, 0, 0], ct));
        // a method that does not exist
        Assert.Equal(StatusCode.Unimplemented, await SendAsync(http, "/hamesh.v1.AgentService/Format", Frame(0, []), ct));

        // not gRPC at all: a plain HTTP/2 request gets an HTTP error, not a crash
        using var plain = new HttpRequestMessage(HttpMethod.Post, method) { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact, Content = new StringContent("hello") };
        using var answer = await http.SendAsync(plain, ct);
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, answer.StatusCode);
    }

    private static byte[] Header(byte compressed, uint length)
    {
        var header = new byte[5];
        header[0] = compressed;
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(1), length);
        return header;
    }

    private static byte[] Frame(byte compressed, byte[] payload) => [.. Header(compressed, (uint)payload.Length), .. payload];

    private static async Task<StatusCode> SendAsync(HttpClient http, string method, byte[] body, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, method)
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(body),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/grpc");
        request.Headers.TryAddWithoutValidation("te", "trailers");
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await response.Content.ReadAsByteArrayAsync(ct);
        var status = response.Headers.TryGetValues("grpc-status", out var h) ? h.Single()
            : response.TrailingHeaders.TryGetValues("grpc-status", out var t) ? t.Single()
            : throw new Xunit.Sdk.XunitException($"{method}: no grpc-status in headers or trailers");
        return (StatusCode)int.Parse(status, System.Globalization.CultureInfo.InvariantCulture);
    }
}
