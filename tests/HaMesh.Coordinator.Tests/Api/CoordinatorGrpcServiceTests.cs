using Grpc.Core;
using HaMesh.Coordinator.Membership;
using HaMesh.Coordinator.Store;
using HaMesh.Protocol.V1;
using HaMesh.Testing;
using HaMesh.Testing.Hosts;

namespace HaMesh.Coordinator.Tests.Api;

public sealed class CoordinatorGrpcServiceTests
{
    private static NodeStatus Report(string node, DrbdRole role, ulong generation = 3) => new()
    {
        Node = node,
        DrbdVersion = DrbdVersionFamily.V84,
        DrbdVersionText = "8.4.11",
        Resources =
        {
            new ResourceStatus
            {
                Resource = "db",
                Generation = generation,
                Drbd = new DrbdResourceStatus { Name = "r0", Present = true, Role = role, DiskState = DiskState.UpToDate },
            },
        },
    };

    private static async Task<AsyncDuplexStreamingCall<AgentMessage, CoordinatorMessage>> ConnectAsync(CoordinatorTestHost host, string node, CancellationToken ct)
    {
        var call = host.Client.Connect(cancellationToken: ct);
        await call.RequestStream.WriteAsync(new AgentMessage { Hello = new AgentHello { Node = node } }, ct);
        Assert.True(await call.ResponseStream.MoveNext(ct));
        Assert.Equal(CoordinatorMessage.BodyOneofCase.Welcome, call.ResponseStream.Current.BodyCase);
        return call;
    }

    [Fact]
    public async Task GetClusterStatus_BeforeAnyReport_NodesNeverSeen()
    {
        await using var host = await CoordinatorTestHost.StartAsync(TestConfig.TwoNodes());
        var status = await host.Client.GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal("test", status.Cluster);
        Assert.All(status.Nodes, n => Assert.Equal(Reachability.NeverSeen, n.Reachability));
        Assert.Equal(["a", "b"], status.Nodes.Select(n => n.Node));
        Assert.Equal("203.0.113.10/32", status.Resources.Single().FailoverIps.Single().Ip);
    }

    [Fact]
    public async Task Connect_ReportsFromBothNodes_StatusShowsRolesAndGeneration()
    {
        var ct = TestContext.Current.CancellationToken;
        // maintenance: the core (which decides on every report) adopts nothing, so the status shows what the reports say
        await using var host = await CoordinatorTestHost.StartAsync(TestConfig.TwoNodes(), seed: s => s.SetMaintenance("db", true, new HaMesh.Coordinator.Events.EventRecord("MaintenanceOn", "test", "db")));
        using var a = await ConnectAsync(host, "a", ct);
        using var b = await ConnectAsync(host, "b", ct);
        await a.RequestStream.WriteAsync(new AgentMessage { Report = Report("a", DrbdRole.Primary) }, ct);
        await b.RequestStream.WriteAsync(new AgentMessage { Report = Report("b", DrbdRole.Secondary) }, ct);
        await host.WaitForReportAsync("a", ct).WaitAsync(TimeSpan.FromSeconds(10), ct);
        await host.WaitForReportAsync("b", ct).WaitAsync(TimeSpan.FromSeconds(10), ct);

        var status = await host.Client.GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: ct);

        Assert.All(status.Nodes, n => Assert.Equal(Reachability.Reachable, n.Reachability));
        Assert.Equal(DrbdRole.Primary, status.Nodes.Single(n => n.Node == "a").LastReport.Resources[0].Drbd.Role);
        var resource = status.Resources.Single();
        Assert.Equal("a", resource.PrimaryNode);
        Assert.Equal(3UL, resource.Generation);
    }

    [Fact]
    public async Task Connect_UnknownNode_PermissionDenied()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await CoordinatorTestHost.StartAsync(TestConfig.TwoNodes());
        using var call = host.Client.Connect(cancellationToken: ct);
        await call.RequestStream.WriteAsync(new AgentMessage { Hello = new AgentHello { Node = "mallory" } }, ct);
        var ex = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(ct));
        Assert.Equal(StatusCode.PermissionDenied, ex.StatusCode);
        Assert.Contains("mallory", ex.Status.Detail);
    }

    [Fact]
    public async Task Connect_FirstMessageNotHello_InvalidArgument()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await CoordinatorTestHost.StartAsync(TestConfig.TwoNodes());
        using var call = host.Client.Connect(cancellationToken: ct);
        await call.RequestStream.WriteAsync(new AgentMessage { Report = Report("a", DrbdRole.Primary) }, ct);
        var ex = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(ct));
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.StartsWith("hello:", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Connect_ReportForAnotherNode_PermissionDenied()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await CoordinatorTestHost.StartAsync(TestConfig.TwoNodes());
        using var call = await ConnectAsync(host, "a", ct);
        await call.RequestStream.WriteAsync(new AgentMessage { Report = Report("b", DrbdRole.Primary) }, ct);
        var ex = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(ct));
        Assert.Equal(StatusCode.PermissionDenied, ex.StatusCode);
        Assert.Null(host.Get<NodeRegistry>().Current.Nodes["b"].LastReport);
    }

    [Fact]
    public async Task Reachability_SilentForLeasePlusMargin_UnreachableExactlyAtThreshold()
    {
        var ct = TestContext.Current.CancellationToken;
        var options = TestConfig.TwoNodes();
        await using var host = await CoordinatorTestHost.StartAsync(options);
        using var a = await ConnectAsync(host, "a", ct);
        await a.RequestStream.WriteAsync(new AgentMessage { Report = Report("a", DrbdRole.Primary) }, ct);
        await host.WaitForReportAsync("a", ct).WaitAsync(TimeSpan.FromSeconds(10), ct);
        // the decision loop adopts the reported Primary on its own round after the report: wait for it
        await host.WaitForEventAsync("Adopted", ct).WaitAsync(TimeSpan.FromSeconds(10), ct);
        var threshold = options.Cluster.Timings.Lease + options.Cluster.Timings.DriftMargin;

        host.Time.Advance(threshold - TimeSpan.FromTicks(1));
        var before = await host.Client.GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: ct);
        host.Time.Advance(TimeSpan.FromTicks(1));
        var after = await host.Client.GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: ct);

        Assert.Equal(Reachability.Reachable, before.Nodes.Single(n => n.Node == "a").Reachability);
        Assert.Equal(Reachability.Unreachable, after.Nodes.Single(n => n.Node == "a").Reachability);
        Assert.Equal(threshold, after.Nodes.Single(n => n.Node == "a").LastReportAge.ToTimeSpan());
        Assert.Equal("a", after.Resources.Single().PrimaryNode); // the recorded primary (adopted), reachable or not
    }

    [Fact]
    public async Task Adopt_NewStore_AgentReportsGeneration7_RecordedAt8()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await CoordinatorTestHost.StartAsync(TestConfig.TwoNodes());
        using var a = await ConnectAsync(host, "a", ct);
        await a.RequestStream.WriteAsync(new AgentMessage { Report = Report("a", DrbdRole.Primary, generation: 7) }, ct);

        await host.WaitForEventAsync("Adopted", ct).WaitAsync(TimeSpan.FromSeconds(10), ct);

        var record = host.Get<SqliteStore>().GetResource("db");
        Assert.Equal((8UL, "a"), (record.Generation, record.PrimaryNode));
    }

    [Fact]
    public async Task FailureDetector_NodeGoesSilent_RecordsUnreachableEvent()
    {
        var ct = TestContext.Current.CancellationToken;
        var options = TestConfig.TwoNodes();
        await using var host = await CoordinatorTestHost.StartAsync(options);
        var detector = host.Get<FailureDetector>();
        using var a = await ConnectAsync(host, "a", ct);
        await a.RequestStream.WriteAsync(new AgentMessage { Report = Report("a", DrbdRole.Primary) }, ct);
        await host.WaitForReportAsync("a", ct).WaitAsync(TimeSpan.FromSeconds(10), ct);
        await detector.CheckOnceAsync(ct);
        host.Time.Advance(options.Cluster.Timings.SilenceThreshold);
        await detector.CheckOnceAsync(ct);

        var events = await host.Client.ListEventsAsync(new ListEventsRequest(), cancellationToken: ct);

        Assert.Equal(["NodeReachable", "NodeUnreachable"], events.Events.Where(e => e.Node == "a" && e.Kind.StartsWith("Node", StringComparison.Ordinal)).Select(e => e.Kind));
        Assert.Equal("warning", events.Events.Last(e => e.Kind == "NodeUnreachable").Severity);
    }

    [Fact]
    public async Task ListEvents_LimitOutOfRange_InvalidArgumentNamesField()
    {
        await using var host = await CoordinatorTestHost.StartAsync(TestConfig.TwoNodes());
        var ex = await Assert.ThrowsAsync<RpcException>(() => host.Client.ListEventsAsync(new ListEventsRequest { Limit = 5000 }, cancellationToken: TestContext.Current.CancellationToken).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.StartsWith("limit:", ex.Status.Detail, StringComparison.Ordinal);
    }
}
