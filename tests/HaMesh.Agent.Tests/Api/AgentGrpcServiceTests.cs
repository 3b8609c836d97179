using Grpc.Core;
using HaMesh.Agent.Drbd;
using HaMesh.Protocol.V1;
using HaMesh.Testing;
using HaMesh.Testing.Hosts;

namespace HaMesh.Agent.Tests.Api;

public sealed class AgentGrpcServiceTests
{
    private static DrbdSnapshot Primary84() => new(
        DrbdVersionFamily.V84,
        "8.4.11",
        new Dictionary<string, DrbdResourceStatus>
        {
            ["r0"] = new()
            {
                Name = "r0", Present = true, Role = DrbdRole.Primary, DiskState = DiskState.UpToDate,
                Peers = { new PeerConnectionStatus { PeerName = "b", ConnectionState = ConnectionState.Connected, PeerRole = DrbdRole.Secondary, PeerDiskState = DiskState.UpToDate, ReplicationState = ReplicationState.Established } },
            },
        },
        []);

    [Fact]
    public async Task GetStatus_PrimaryWithServiceAndIp_ReportsEverything()
    {
        await using var host = await AgentTestHost.StartAsync(TestConfig.TwoNodes());
        host.Drbd.Snapshot = Primary84();
        host.Host.PresentIps.Add("203.0.113.10/32");
        host.Host.Services["postgresql.service"] = ServiceState.Active;
        host.Host.Mounted = true;

        var status = await host.Client.GetStatusAsync(new GetStatusRequest(), cancellationToken: TestContext.Current.CancellationToken);

        Assert.Equal("a", status.Node);
        Assert.Equal("8.4.11", status.DrbdVersionText);
        var db = Assert.Single(status.Resources);
        Assert.Equal("db", db.Resource);
        Assert.Equal(DrbdRole.Primary, db.Drbd.Role);
        Assert.Equal(DiskState.UpToDate, db.Drbd.DiskState);
        Assert.Equal(ConnectionState.Connected, db.Drbd.Peers[0].ConnectionState);
        Assert.True(db.IpAliases.Single().Present);
        Assert.Equal(ServiceState.Active, db.Services.Single().State);
        Assert.True(db.Mounted);
        Assert.Equal(LeaseState.NotHeld, db.Lease.State);
        Assert.Empty(status.ReadErrors);
    }

    [Fact]
    public async Task GetStatus_DrbdDoesNotKnowResource_ReportedNotPresentWithError()
    {
        await using var host = await AgentTestHost.StartAsync(TestConfig.TwoNodes());
        host.Drbd.Snapshot = new DrbdSnapshot(DrbdVersionFamily.V84, "8.4.11", new Dictionary<string, DrbdResourceStatus>(), ["r0: 'r0' not defined in your config (for this host)."]);

        var status = await host.Client.GetStatusAsync(new GetStatusRequest { Resource = "db" }, cancellationToken: TestContext.Current.CancellationToken);

        Assert.False(status.Resources.Single().Drbd.Present);
        Assert.Contains("not defined", status.ReadErrors.Single());
    }

    [Fact]
    public async Task GetStatus_UnknownResource_NotFound()
    {
        await using var host = await AgentTestHost.StartAsync(TestConfig.TwoNodes());
        var ex = await Assert.ThrowsAsync<RpcException>(() => host.Client.GetStatusAsync(new GetStatusRequest { Resource = "web" }, cancellationToken: TestContext.Current.CancellationToken).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, ex.StatusCode);
        Assert.StartsWith("resource:", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("-rf")]
    [InlineData("DB")]
    [InlineData("db;reboot")]
    public async Task GetStatus_MalformedResource_InvalidArgumentNamesField(string resource)
    {
        await using var host = await AgentTestHost.StartAsync(TestConfig.TwoNodes());
        var ex = await Assert.ThrowsAsync<RpcException>(() => host.Client.GetStatusAsync(new GetStatusRequest { Resource = resource }, cancellationToken: TestContext.Current.CancellationToken).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.StartsWith("resource:", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Promote_GenerationZero_InvalidArgumentBeforeAnyAction()
    {
        await using var host = await AgentTestHost.StartAsync(TestConfig.TwoNodes());
        var ex = await Assert.ThrowsAsync<RpcException>(() => host.Client.PromoteAsync(new PromoteRequest { Resource = "db", Generation = 0 }, cancellationToken: TestContext.Current.CancellationToken).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.StartsWith("generation:", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RenewLease_FromSelf_InvalidArgumentNamesRequester()
    {
        await using var host = await AgentTestHost.StartAsync(TestConfig.TwoNodes());
        var request = new RenewLeaseRequest { Resource = "db", Generation = 1, Requester = "a", Lease = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(TimeSpan.FromSeconds(2)) };
        var ex = await Assert.ThrowsAsync<RpcException>(() => host.Client.RenewLeaseAsync(request, cancellationToken: TestContext.Current.CancellationToken).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.StartsWith("requester:", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Ping_EchoesNonceAndNamesNode()
    {
        await using var host = await AgentTestHost.StartAsync(TestConfig.TwoNodes(agentNode: "b"));
        host.Drbd.Snapshot = Primary84();
        var pong = await host.Client.PingAsync(new PingRequest { Nonce = "n-42" }, cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal("b", pong.Node);
        Assert.Equal("n-42", pong.Nonce);
        Assert.Equal(DrbdRole.Primary, pong.Resources.Single().Role);
    }
}
