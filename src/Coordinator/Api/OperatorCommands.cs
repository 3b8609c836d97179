using HaMesh.Coordinator.Core;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using Microsoft.Extensions.Options;

namespace HaMesh.Coordinator.Api;

/// <summary>
/// Switchover and force-promote for the gRPC service: validate every field, then hand the request to the core, which
/// checks the preconditions on its live view and persists g+1 with the Started event before the answer; the rest runs
/// in the background. The answer names the operation; its terminal event (SwitchoverCompleted/Aborted/RolledBack/
/// Failed…) carries the attribute operation=ID.
/// </summary>
public sealed class OperatorCommands(IOptions<HaMeshOptions> options, CoordinatorCoreHost host)
{
    private readonly HaMeshOptions _options = options.Value;

    public OperationResult Switchover(SwitchoverRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        OperatorRequests.RequireResource(_options, request.Resource);
        OperatorRequests.RequireNode(_options, request.TargetNode, "target_node");
        var reason = string.IsNullOrWhiteSpace(request.Reason) ? "operator switchover" : OperatorRequests.Truncate(request.Reason);
        return host.Operator(request.Resource, request.TargetNode, request.Generation, reason, force: false);
    }

    public OperationResult ForcePromote(ForcePromoteRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        OperatorRequests.RequireResource(_options, request.Resource);
        OperatorRequests.RequireNode(_options, request.Node, "node");
        if (!request.IUnderstandDataLoss)
        {
            OperatorRequests.ThrowInvalid("i_understand_data_loss", "must be true: a forced promotion may discard writes the other node acknowledged (hameshctl promote --force ... --i-understand-data-loss)");
        }

        var reason = string.IsNullOrWhiteSpace(request.Reason) ? "operator force-promote" : OperatorRequests.Truncate(request.Reason);
        return host.Operator(request.Resource, request.Node, request.Generation, reason, force: true);
    }

    public OperationResult SetMaintenance(SetMaintenanceRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        OperatorRequests.RequireResource(_options, request.Resource);
        var reason = string.IsNullOrWhiteSpace(request.Reason) ? "" : OperatorRequests.Truncate(request.Reason);
        return host.SetMaintenance(request.Resource, request.Enabled, request.Generation, reason);
    }
}
