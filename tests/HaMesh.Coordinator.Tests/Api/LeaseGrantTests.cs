using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Membership;
using HaMesh.Coordinator.Store;
using HaMesh.Protocol.V1;
using HaMesh.Testing;
using HaMesh.Testing.Hosts;

namespace HaMesh.Coordinator.Tests.Api;

public sealed class LeaseGrantTests
{
    private static async Task<LeaseGrant> RequestAsync(CoordinatorTestHost host, string node, ulong generation, CancellationToken ct)
    {
        using var call = host.Client.Connect(cancellationToken: ct);
        await call.RequestStream.WriteAsync(new AgentMessage { Hello = new AgentHello { Node = node } }, ct);
        Assert.True(await call.ResponseStream.MoveNext(ct));
        await call.RequestStream.WriteAsync(new AgentMessage { LeaseRequest = new LeaseRequest { Resource = "db", Generation = generation, Sequence = 17, Lease = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(TimeSpan.FromSeconds(2)) } }, ct);
        Assert.True(await call.ResponseStream.MoveNext(ct));
        var grant = call.ResponseStream.Current.LeaseGrant;
        await call.RequestStream.CompleteAsync();
        return grant;
    }

    [Fact]
    public async Task LeaseRequest_CurrentPrimaryAtCurrentGeneration_GrantedAndRecorded()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await CoordinatorTestHost.StartAsync(TestConfig.TwoNodes(), seed: s => s.AdvanceGeneration("db", 0, "a", new EventRecord("Bootstrap", "t", "db"), isFailover: false));

        var grant = await RequestAsync(host, "a", 1, ct);

        Assert.True(grant.Granted, grant.Reason);
        Assert.Equal(17UL, grant.Sequence);
        Assert.NotNull(host.Get<NodeRegistry>().Current.Nodes["a"].LastGrantTimestamp);
    }

    [Theory]
    [InlineData("b", 1UL, "not the primary")]
    [InlineData("a", 0UL, "not the current generation")]
    public async Task LeaseRequest_WrongNodeOrGeneration_Refused(string node, ulong generation, string reason)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await CoordinatorTestHost.StartAsync(TestConfig.TwoNodes(), seed: s => { s.AdvanceGeneration("db", 0, "a", new EventRecord("Bootstrap", "t", "db"), isFailover: false); });
        var store = host.Get<SqliteStore>();

        var grant = await RequestAsync(host, node, generation, ct);

        Assert.False(grant.Granted);
        Assert.Contains(reason, grant.Reason);
        Assert.Null(host.Get<NodeRegistry>().Current.Nodes[node].LastGrantTimestamp);
    }

    [Fact]
    public async Task LeaseRequest_OldPrimaryAfterFailover_Refused()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await CoordinatorTestHost.StartAsync(TestConfig.TwoNodes(), seed: s => { s.AdvanceGeneration("db", 0, "a", new EventRecord("Bootstrap", "t", "db"), isFailover: false); s.AdvanceGeneration("db", 1, "b", new EventRecord("FailoverStarted", "t", "db"), isFailover: true); });
        var store = host.Get<SqliteStore>();

        var grant = await RequestAsync(host, "a", 1, ct);

        Assert.False(grant.Granted);
        Assert.Contains("made b primary at generation 2", grant.Reason);
    }

    // The promise rule itself (no grant to a new primary before lease + drift margin after the last grant to the old
    // one) is the shared LeaseRule, tested in the core: CoordinatorCoreTests and the simulation.
}
