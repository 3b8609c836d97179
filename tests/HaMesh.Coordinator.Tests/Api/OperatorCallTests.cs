using Grpc.Core;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Store;
using HaMesh.Protocol.V1;
using HaMesh.Testing;
using HaMesh.Testing.Hosts;

namespace HaMesh.Coordinator.Tests.Api;

public sealed class OperatorCallTests
{
    private static EventRecord Boot => new("Bootstrap", "test bootstrap", "db");

    [Fact]
    public async Task SetMaintenance_CurrentGeneration_PersistedShownAndEvented()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await CoordinatorTestHost.StartAsync(TestConfig.TwoNodes(), seed: s => s.AdvanceGeneration("db", 0, "a", Boot, isFailover: false));

        var result = await host.Client.SetMaintenanceAsync(new SetMaintenanceRequest { Resource = "db", Generation = 1, Enabled = true, Reason = "kernel upgrade" }, cancellationToken: ct);
        var status = await host.Client.GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: ct);

        Assert.True(result.Accepted);
        Assert.True(status.Resources.Single().Maintenance);
        Assert.True(host.Get<SqliteStore>().GetResource("db").Maintenance);
        var e = host.Get<IEventLog>().List(0)[^1];
        Assert.Equal("MaintenanceOn", e.Record.Kind);
        Assert.Contains("kernel upgrade", e.Record.Message);
    }

    [Fact]
    public async Task SetMaintenance_StaleGeneration_FailedPreconditionNamesBoth()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await CoordinatorTestHost.StartAsync(TestConfig.TwoNodes(), seed: s => { s.AdvanceGeneration("db", 0, "a", Boot, isFailover: false); s.AdvanceGeneration("db", 1, "b", Boot, isFailover: true); });
        var store = host.Get<SqliteStore>();

        var ex = await Assert.ThrowsAsync<RpcException>(() => host.Client.SetMaintenanceAsync(new SetMaintenanceRequest { Resource = "db", Generation = 1, Enabled = true }, cancellationToken: ct).ResponseAsync);

        Assert.Equal(StatusCode.FailedPrecondition, ex.StatusCode);
        Assert.Contains("generation 2", ex.Status.Detail);
        Assert.Contains("made at 1", ex.Status.Detail);
        Assert.False(store.GetResource("db").Maintenance);
    }

    [Fact]
    public async Task FencePeer_CurrentPrimary_PeerRecordedOutdatedBeforeAnswer()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await CoordinatorTestHost.StartAsync(TestConfig.TwoNodes(), seed: s => s.AdvanceGeneration("db", 0, "a", Boot, isFailover: false));

        var reply = await host.Client.FencePeerAsync(new FencePeerRequest { Resource = "db", Generation = 1, RequestingNode = "a", PeerNode = "b" }, cancellationToken: ct);
        var again = await host.Client.FencePeerAsync(new FencePeerRequest { Resource = "db", Generation = 1, RequestingNode = "a", PeerNode = "b" }, cancellationToken: ct);

        Assert.Equal(FenceOutcome.PeerOutdated, reply.Outcome);
        Assert.Equal(FenceOutcome.PeerAlreadyOutdated, again.Outcome);
        Assert.Equal(1UL, host.Get<SqliteStore>().GetResource("db").OutdatedNodes["b"]);
        var status = await host.Client.GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: ct);
        Assert.Equal(["b"], status.Resources.Single().OutdatedNodes);
    }

    [Fact]
    public async Task FencePeer_StaleRequester_RefusedAndNothingRecorded()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await CoordinatorTestHost.StartAsync(TestConfig.TwoNodes(), seed: s => { s.AdvanceGeneration("db", 0, "a", Boot, isFailover: false); s.AdvanceGeneration("db", 1, "b", Boot, isFailover: true); });
        var store = host.Get<SqliteStore>();

        // a was primary at generation 1; b took over at 2; a's late fence-peer call must not outdate b
        var reply = await host.Client.FencePeerAsync(new FencePeerRequest { Resource = "db", Generation = 1, RequestingNode = "a", PeerNode = "b" }, cancellationToken: ct);

        Assert.Equal(FenceOutcome.Failed, reply.Outcome);
        Assert.Contains("stale generation 1 < 2", reply.Message);
        Assert.Empty(store.GetResource("db").OutdatedNodes);
        Assert.Equal("FencePeerRefused", host.Get<IEventLog>().List(0)[^1].Record.Kind);
    }

    [Fact]
    public async Task FencePeer_RequesterIsNotPrimary_Refused()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await CoordinatorTestHost.StartAsync(TestConfig.TwoNodes(), seed: s => s.AdvanceGeneration("db", 0, "a", Boot, isFailover: false));

        var reply = await host.Client.FencePeerAsync(new FencePeerRequest { Resource = "db", Generation = 1, RequestingNode = "b", PeerNode = "a" }, cancellationToken: ct);

        Assert.Equal(FenceOutcome.Failed, reply.Outcome);
        Assert.Empty(host.Get<SqliteStore>().GetResource("db").OutdatedNodes);
    }

    [Theory]
    [InlineData("", "a", "b", 1UL, StatusCode.InvalidArgument, "resource:")]
    [InlineData("web", "a", "b", 1UL, StatusCode.NotFound, "resource:")]
    [InlineData("db", "a", "a", 1UL, StatusCode.InvalidArgument, "peer_node:")]
    [InlineData("db", "x", "b", 1UL, StatusCode.NotFound, "requesting_node:")]
    [InlineData("db", "a", "b", 0UL, StatusCode.InvalidArgument, "generation:")]
    public async Task FencePeer_BadArguments_RejectedNamingField(string resource, string requester, string peer, ulong generation, StatusCode code, string prefix)
    {
        await using var host = await CoordinatorTestHost.StartAsync(TestConfig.TwoNodes());
        var ex = await Assert.ThrowsAsync<RpcException>(() => host.Client.FencePeerAsync(new FencePeerRequest { Resource = resource, Generation = generation, RequestingNode = requester, PeerNode = peer }, cancellationToken: TestContext.Current.CancellationToken).ResponseAsync);
        Assert.Equal(code, ex.StatusCode);
        Assert.StartsWith(prefix, ex.Status.Detail, StringComparison.Ordinal);
    }
}
