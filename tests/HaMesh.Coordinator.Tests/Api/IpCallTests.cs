using Grpc.Core;
using HaMesh.Coordinator.Cloud;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Store;
using HaMesh.Protocol.V1;
using HaMesh.Testing;
using HaMesh.Testing.Hosts;
using Microsoft.Extensions.DependencyInjection;

namespace HaMesh.Coordinator.Tests.Api;

/// <summary>ClaimIp and GetIp through the real composition (in-memory gRPC), with a scripted cloud.</summary>
public sealed class IpCallTests
{
    private static EventRecord Boot => new("Bootstrap", "test bootstrap", "db");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A cloud whose moves finish when the test says so; counts the moves it was asked for.</summary>
    private sealed class ScriptedCloud : ICloudIpProvider
    {
        public TaskCompletionSource Release { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Started { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public string? RoutedTo { get; set; } = "ns2.ip-1-2-3.eu";

        public int Moves { get; private set; }

        public Task<IpRouting> GetRoutingAsync(string ip, CancellationToken cancellationToken) =>
            Task.FromResult(new IpRouting(ip, RoutedTo, [new CloudTask(7, "genericMoveFloatingIp", "doing", null, "ns1.ip-1-2-3.eu")]));

        public Task<long> RequestMoveAsync(string ip, string serviceName, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("ClaimIp runs the whole move workflow (EnsureRoutedAsync)");

        public async Task<MoveOutcome> EnsureRoutedAsync(string ip, string serviceName, CancellationToken cancellationToken)
        {
            if (RoutedTo == serviceName)
            {
                return new MoveOutcome(MoveOutcomeKind.AlreadyRouted, "already", null, TimeSpan.Zero, 0);
            }

            Moves++;
            Started.TrySetResult();
            await Release.Task.WaitAsync(cancellationToken);
            RoutedTo = serviceName;
            return new MoveOutcome(MoveOutcomeKind.Moved, "moved", 42, TimeSpan.FromSeconds(2), 1);
        }
    }

    private static Task<CoordinatorTestHost> StartAsync(ScriptedCloud? cloud = null) =>
        CoordinatorTestHost.StartAsync(TestConfig.TwoNodes(), configure: cloud is null ? null : s => s.AddSingleton<ICloudIpProvider>(cloud));

    [Theory]
    [InlineData("", 1UL, "203.0.113.10/32", "a", StatusCode.InvalidArgument, "resource:")]
    [InlineData("web", 1UL, "203.0.113.10/32", "a", StatusCode.NotFound, "resource:")]
    [InlineData("db", 1UL, "", "a", StatusCode.InvalidArgument, "ip: is required")]
    [InlineData("db", 1UL, "203.0.113.300", "a", StatusCode.InvalidArgument, "ip:")]
    [InlineData("db", 1UL, "192.0.2.1", "a", StatusCode.NotFound, "ip:")]
    [InlineData("db", 1UL, "203.0.113.10/32", "", StatusCode.InvalidArgument, "node: is required")]
    [InlineData("db", 1UL, "203.0.113.10/32", "zz", StatusCode.NotFound, "node:")]
    [InlineData("db", 0UL, "203.0.113.10/32", "a", StatusCode.FailedPrecondition, "generation:")]
    [InlineData("db", 1UL, "203.0.113.10/32", "b", StatusCode.FailedPrecondition, "node: b is not the primary of db")]
    public async Task ClaimIp_BadArguments_RejectedNamingField_NoMove(string resource, ulong generation, string ip, string node, StatusCode code, string prefix)
    {
        var cloud = new ScriptedCloud();
        await using var host = await StartAsync(cloud);
        host.Get<SqliteStore>().AdvanceGeneration("db", 0, "a", Boot, isFailover: false);
        var ex = await Assert.ThrowsAsync<RpcException>(() => host.Client.ClaimIpAsync(new ClaimIpRequest { Resource = resource, Generation = generation, Ip = ip, Node = node }, cancellationToken: Ct).ResponseAsync);
        Assert.Equal(code, ex.StatusCode);
        Assert.StartsWith(prefix, ex.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(0, cloud.Moves);
    }

    [Fact]
    public async Task ClaimIp_StaleGeneration_RefusalIsAnEvent()
    {
        await using var host = await StartAsync(new ScriptedCloud());
        host.Get<SqliteStore>().AdvanceGeneration("db", 0, "a", Boot, isFailover: false);
        await Assert.ThrowsAsync<RpcException>(() => host.Client.ClaimIpAsync(new ClaimIpRequest { Resource = "db", Generation = 5, Ip = "203.0.113.10", Node = "a" }, cancellationToken: Ct).ResponseAsync);
        var e = host.Get<IEventLog>().List(0)[^1];
        Assert.Equal("IpClaimRefused", e.Record.Kind);
        Assert.Contains("stale generation 5", e.Record.Message);
    }

    [Fact]
    public async Task ClaimIp_NoCloudConfigured_FailedPreconditionSaysWhatToSet()
    {
        await using var host = await StartAsync();
        var ex = await Assert.ThrowsAsync<RpcException>(() => host.Client.ClaimIpAsync(new ClaimIpRequest { Resource = "db", Generation = 0, Ip = "203.0.113.10/32", Node = "a" }, cancellationToken: Ct).ResponseAsync);
        Assert.Equal(StatusCode.FailedPrecondition, ex.StatusCode);
        Assert.Contains("CredentialsFile", ex.Status.Detail);
    }

    [Fact]
    public async Task ClaimIp_Moves_BareIpAccepted_SecondSameClaimJoins_OtherNodeAborted_OneMove_StatusShowsRoute()
    {
        var cloud = new ScriptedCloud();
        await using var host = await StartAsync(cloud);
        var store = host.Get<SqliteStore>();
        store.AdvanceGeneration("db", 0, "a", Boot, isFailover: false);
        store.SetMaintenance("db", true, new EventRecord("MaintenanceOn", "test", "db"));

        var first = host.Client.ClaimIpAsync(new ClaimIpRequest { Resource = "db", Generation = 1, Ip = "203.0.113.10", Node = "a" }, cancellationToken: Ct).ResponseAsync;
        await cloud.Started.Task.WaitAsync(Ct);
        var second = host.Client.ClaimIpAsync(new ClaimIpRequest { Resource = "db", Generation = 1, Ip = "203.0.113.10/32", Node = "a" }, cancellationToken: Ct).ResponseAsync;
        var other = await Assert.ThrowsAsync<RpcException>(() => host.Client.ClaimIpAsync(new ClaimIpRequest { Resource = "db", Generation = 1, Ip = "203.0.113.10/32", Node = "b" }, cancellationToken: Ct).ResponseAsync);
        await WaitForEventAsync(host, "IpClaimJoined");
        cloud.Release.SetResult();
        var a = await first;
        var b = await second;

        Assert.Equal(StatusCode.Aborted, other.StatusCode);
        Assert.StartsWith("ip: a claim of 203.0.113.10/32 to a is in flight", other.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(ClaimIpOutcome.Moved, a.Outcome);
        Assert.Equal(ClaimIpOutcome.Moved, b.Outcome);
        Assert.Contains("joined", b.Message);
        Assert.Equal(42, a.TaskId);
        Assert.Equal("ns1.ip-1-2-3.eu", a.RoutedToService);
        Assert.Equal(1, cloud.Moves);
        var status = await host.Client.GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: Ct);
        Assert.Equal("a", status.Resources.Single().FailoverIps.Single().RoutedToNode);
        var kinds = host.Get<IEventLog>().List(0).Select(e => e.Record.Kind).ToList();
        Assert.Contains("IpClaimRequested", kinds);
        Assert.Contains("IpClaimRefused", kinds);
        Assert.Contains("IpClaimed", kinds);

        var again = await host.Client.ClaimIpAsync(new ClaimIpRequest { Resource = "db", Generation = 1, Ip = "203.0.113.10/32", Node = "a" }, cancellationToken: Ct);
        Assert.Equal(ClaimIpOutcome.AlreadyRouted, again.Outcome);
        Assert.Equal(1, cloud.Moves);
    }

    [Fact]
    public async Task GetIp_MapsRouteToNodeAndPendingTasks()
    {
        await using var host = await StartAsync(new ScriptedCloud());
        var answer = await host.Client.GetIpAsync(new GetIpRequest { Ip = "203.0.113.10" }, cancellationToken: Ct);
        Assert.Equal("203.0.113.10/32", answer.Ip);
        Assert.Equal("b", answer.RoutedToNode);
        Assert.Equal("ns2.ip-1-2-3.eu", answer.RoutedToService);
        Assert.False(answer.Parked);
        Assert.Equal(7, answer.PendingTasks.Single().TaskId);
        Assert.Equal("doing", answer.PendingTasks.Single().Status);
    }

    [Fact]
    public async Task GetIp_Parked_ShownParked()
    {
        await using var host = await StartAsync(new ScriptedCloud { RoutedTo = null });
        var answer = await host.Client.GetIpAsync(new GetIpRequest { Ip = "203.0.113.10/32" }, cancellationToken: Ct);
        Assert.True(answer.Parked);
        Assert.Equal("", answer.RoutedToNode);
    }

    private static async Task WaitForEventAsync(CoordinatorTestHost host, string kind)
    {
        var log = host.Get<IEventLog>();
        while (true)
        {
            var changed = log.WaitForChangeAsync(Ct);
            if (log.List(0).Any(e => e.Record.Kind == kind))
            {
                return;
            }

            await changed;
        }
    }
}
