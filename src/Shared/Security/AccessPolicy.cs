using HaMesh.Protocol.V1;

namespace HaMesh.Shared.Security;

/// <summary>
/// Who may call what (mutual-TLS mode only). Pure: the interceptor passes the caller's identity, the
/// request and whether the peer is on loopback; null means allowed, else the reason it is denied.
/// Methods outside the HaMesh services (grpc.health.v1, reflection) are not governed here.
/// </summary>
public static class AccessPolicy
{
    private const string Coordinator = "/hamesh.v1.CoordinatorService/";
    private const string Agent = "/hamesh.v1.AgentService/";

    public static bool Governs(string method) =>
        method.StartsWith(Coordinator, StringComparison.Ordinal) || method.StartsWith(Agent, StringComparison.Ordinal);

    /// <param name="method">The full gRPC method, e.g. /hamesh.v1.AgentService/Promote.</param>
    /// <param name="caller">The identity from the client certificate; null when it carries no HaMesh role.</param>
    /// <param name="localNode">The agent's own node name (empty on the coordinator).</param>
    /// <param name="request">The request message for unary calls (null for streams).</param>
    /// <param name="loopback">Whether the peer address is a loopback address.</param>
    public static string? Check(string method, ClusterIdentity? caller, string localNode, object? request, bool loopback)
    {
        ArgumentNullException.ThrowIfNull(method);
        if (caller is null)
        {
            return "the client certificate carries no HaMesh role (SAN URI hamesh://role/...)";
        }

        var role = caller.Role;
        static string? Only(bool ok, string who) => ok ? null : $"only {who} may call it";
        return method switch
        {
            Coordinator + "Connect" => Only(role == ClusterRole.Agent, "an agent"),
            Coordinator + "GetClusterStatus" => null,
            Coordinator + "ListEvents" or Coordinator + "WatchEvents" or Coordinator + "GetIp" =>
                Only(role is ClusterRole.Viewer or ClusterRole.Operator, "a viewer or an operator"),
            Coordinator + "Switchover" or Coordinator + "SetMaintenance" or Coordinator + "ClaimIp" or Coordinator + "ForcePromote" =>
                Only(role == ClusterRole.Operator, "an operator"),
            Coordinator + "FencePeer" => role != ClusterRole.Agent
                ? "only an agent may call it"
                : request is FencePeerRequest f && f.RequestingNode != caller.Node
                    ? $"agent '{caller.Node}' may only fence on its own behalf (requesting_node '{Truncate(f.RequestingNode)}')"
                    : null,
            Agent + "GetStatus" or Agent + "Ping" => null,
            Agent + "Promote" or Agent + "Demote" or Agent + "Agree" => Only(role == ClusterRole.Coordinator, "the coordinator"),
            Agent + "Outdate" => role == ClusterRole.Coordinator || IsPeer(caller, localNode) ? null : "only the coordinator or the peer agent may call it",
            Agent + "RenewLease" => !IsPeer(caller, localNode)
                ? "only the peer agent may call it"
                : request is RenewLeaseRequest r && r.Requester != caller.Node
                    ? $"agent '{caller.Node}' may only renew for itself (requester '{Truncate(r.Requester)}')"
                    : null,
            Agent + "FencePeer" => loopback || (role == ClusterRole.Agent && caller.Node == localNode)
                ? null
                : "only this node's own agent certificate or a loopback caller (the DRBD fence-peer handler) may call it",
            _ => "the method is not in the access policy",
        };
    }

    /// <summary>Null when an agent may send this message on its Connect stream; else why not.</summary>
    public static string? CheckAgentMessage(ClusterIdentity caller, AgentMessage message)
    {
        ArgumentNullException.ThrowIfNull(caller);
        ArgumentNullException.ThrowIfNull(message);
        var node = message.BodyCase switch
        {
            AgentMessage.BodyOneofCase.Hello => message.Hello.Node,
            AgentMessage.BodyOneofCase.Report => message.Report.Node,
            _ => null,
        };
        return node is not null && node != caller.Node
            ? $"agent '{caller.Node}' may only speak for its own node (message names '{Truncate(node)}')"
            : null;
    }

    private static bool IsPeer(ClusterIdentity caller, string localNode) =>
        caller.Role == ClusterRole.Agent && !string.IsNullOrEmpty(localNode) && caller.Node != localNode;

    private static string Truncate(string s) => s.Length <= 64 ? s : s[..64] + "…";
}
