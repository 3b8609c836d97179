using Grpc.Core;
using HaMesh.Protocol.V1;

namespace HaMesh.Agent.Actions;

/// <summary>Registered only when no action executor is configured (read-only agent): every action answers UNIMPLEMENTED.</summary>
internal sealed class UnavailableAgentActions : IAgentActions
{
    private static RpcException Unimplemented(string call) =>
        new(new Status(StatusCode.Unimplemented, $"{call}: this agent runs without an action executor (read-only mode)"));

    public Task<ActionResult> PromoteAsync(PromoteRequest request, CancellationToken cancellationToken) => throw Unimplemented("Promote");

    public Task<ActionResult> DemoteAsync(DemoteRequest request, CancellationToken cancellationToken) => throw Unimplemented("Demote");

    public Task<ActionResult> OutdateAsync(OutdateRequest request, CancellationToken cancellationToken) => throw Unimplemented("Outdate");

    public Task<RenewLeaseResponse> RenewLeaseAsync(RenewLeaseRequest request, CancellationToken cancellationToken) => throw Unimplemented("RenewLease");

    public Task<AgentFencePeerResponse> FencePeerAsync(AgentFencePeerRequest request, CancellationToken cancellationToken) => throw Unimplemented("FencePeer");
}
