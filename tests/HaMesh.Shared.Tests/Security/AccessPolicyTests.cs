using HaMesh.Protocol.V1;
using HaMesh.Shared.Security;

namespace HaMesh.Shared.Tests.Security;

public sealed class AccessPolicyTests
{
    private const string C = "/hamesh.v1.CoordinatorService/";
    private const string A = "/hamesh.v1.AgentService/";

    private static ClusterIdentity Id(string who) => who switch
    {
        "viewer" => new(ClusterRole.Viewer, null),
        "operator" => new(ClusterRole.Operator, null),
        "coordinator" => new(ClusterRole.Coordinator, null),
        _ => new(ClusterRole.Agent, who.Split('/')[1]),
    };

    [Theory]
    [InlineData(C + "Connect", "agent/a", true)]
    [InlineData(C + "Connect", "operator", false)]
    [InlineData(C + "GetClusterStatus", "viewer", true)]
    [InlineData(C + "GetClusterStatus", "agent/a", true)]
    [InlineData(C + "ListEvents", "viewer", true)]
    [InlineData(C + "WatchEvents", "agent/a", false)]
    [InlineData(C + "GetIp", "operator", true)]
    [InlineData(C + "Switchover", "operator", true)]
    [InlineData(C + "Switchover", "viewer", false)]
    [InlineData(C + "SetMaintenance", "coordinator", false)]
    [InlineData(C + "ClaimIp", "agent/a", false)]
    [InlineData(C + "ForcePromote", "viewer", false)]
    [InlineData(C + "ForcePromote", "operator", true)]
    [InlineData(A + "Promote", "coordinator", true)]
    [InlineData(A + "Promote", "operator", false)]
    [InlineData(A + "Demote", "agent/b", false)]
    [InlineData(A + "Outdate", "agent/b", true)]
    [InlineData(A + "Outdate", "agent/a", false)]
    [InlineData(A + "Outdate", "viewer", false)]
    [InlineData(A + "RenewLease", "coordinator", false)]
    [InlineData(A + "GetStatus", "viewer", true)]
    [InlineData(A + "Ping", "agent/b", true)]
    [InlineData(A + "FencePeer", "agent/a", true)]
    [InlineData(A + "FencePeer", "agent/b", false)]
    [InlineData(A + "FencePeer", "operator", false)]
    [InlineData(A + "Unknown", "operator", false)]
    public void Check_RoleRules(string method, string who, bool allowed) =>
        Assert.Equal(allowed, AccessPolicy.Check(method, Id(who), localNode: "a", request: null, loopback: false) is null);

    [Fact]
    public void Check_RequestFieldsMustNameTheCertificateNode()
    {
        Assert.Null(AccessPolicy.Check(C + "FencePeer", Id("agent/a"), "", new FencePeerRequest { RequestingNode = "a" }, false));
        Assert.Contains("own behalf", AccessPolicy.Check(C + "FencePeer", Id("agent/a"), "", new FencePeerRequest { RequestingNode = "b" }, false));
        Assert.Null(AccessPolicy.Check(A + "RenewLease", Id("agent/b"), "a", new RenewLeaseRequest { Requester = "b" }, false));
        Assert.Contains("renew for itself", AccessPolicy.Check(A + "RenewLease", Id("agent/b"), "a", new RenewLeaseRequest { Requester = "c" }, false));
        Assert.Null(AccessPolicy.CheckAgentMessage(Id("agent/a"), new AgentMessage { Report = new NodeStatus { Node = "a" } }));
        Assert.NotNull(AccessPolicy.CheckAgentMessage(Id("agent/a"), new AgentMessage { Report = new NodeStatus { Node = "b" } }));
    }

    [Fact]
    public void Check_FencePeerFromLoopback_Allowed_NoRole_Denied_HealthNotGoverned()
    {
        Assert.Null(AccessPolicy.Check(A + "FencePeer", Id("viewer"), "a", null, loopback: true));
        Assert.NotNull(AccessPolicy.Check(C + "GetClusterStatus", null, "", null, false));
        Assert.False(AccessPolicy.Governs("/grpc.health.v1.Health/Check"));
        Assert.False(AccessPolicy.Governs("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"));
    }
}
