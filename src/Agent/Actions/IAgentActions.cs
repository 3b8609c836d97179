using HaMesh.Protocol.V1;

namespace HaMesh.Agent.Actions;

/// <summary>
/// The agent's hands: the state-changing AgentService calls. The gRPC service validates the
/// request fields and delegates here; implementations enforce generations (persist first,
/// refuse stale with FAILED_PRECONDITION), serialise per resource and join duplicates.
/// </summary>
public interface IAgentActions
{
    Task<ActionResult> PromoteAsync(PromoteRequest request, CancellationToken cancellationToken);

    Task<ActionResult> DemoteAsync(DemoteRequest request, CancellationToken cancellationToken);

    Task<ActionResult> OutdateAsync(OutdateRequest request, CancellationToken cancellationToken);

    /// <summary>A voter agrees to a promotion at the generation (three or more nodes): no lease below it from now on.</summary>
    Task<ActionResult> AgreeAsync(AgreeRequest request, CancellationToken cancellationToken);

    Task<RenewLeaseResponse> RenewLeaseAsync(RenewLeaseRequest request, CancellationToken cancellationToken);

    Task<AgentFencePeerResponse> FencePeerAsync(AgentFencePeerRequest request, CancellationToken cancellationToken);
}
