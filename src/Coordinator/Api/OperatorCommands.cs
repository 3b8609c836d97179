using Grpc.Core;
using HaMesh.Coordinator.Failover;
using HaMesh.Coordinator.Store;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Failover;
using Microsoft.Extensions.Options;

namespace HaMesh.Coordinator.Api;

/// <summary>
/// Switchover and force-promote for the gRPC service: validate every field, reserve the resource's slot,
/// check the preconditions on the live view, persist g+1 with the Started event (durable before the
/// answer), then run the rest in the background. The answer names the operation; its terminal event
/// (SwitchoverCompleted/Aborted/RolledBack/Failed…) carries the attribute operation=ID.
/// </summary>
public sealed class OperatorCommands(IOptions<HaMeshOptions> options, SqliteStore store, ClusterViewBuilder views, OperationExecutor executor, TimeProvider time)
{
    private readonly HaMeshOptions _options = options.Value;

    public OperationResult Switchover(SwitchoverRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        OperatorRequests.RequireResource(_options, request.Resource);
        OperatorRequests.RequireNode(_options, request.TargetNode, "target_node");
        var reason = string.IsNullOrWhiteSpace(request.Reason) ? "operator switchover" : OperatorRequests.Truncate(request.Reason);
        return Start(request.Resource, request.Generation, request.TargetNode, OperationKinds.Switchover, OperatorChecks.SwitchoverRefusal,
            (slot, record, _) => executor.BeginOperatorMove(slot, record, request.TargetNode, reason, force: false, demoteOld: true));
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
        return Start(request.Resource, request.Generation, request.Node, OperationKinds.ForcePromote, OperatorChecks.ForcePromoteRefusal,
            (slot, record, oldReachable) => executor.BeginOperatorMove(slot, record, request.Node, reason, force: true, demoteOld: oldReachable));
    }

    private OperationResult Start(string resource, ulong generation, string target, string kind,
        Func<Shared.Failover.ClusterView, Shared.Failover.HaOptions, Shared.Failover.MonoTime, string, string, string?> refusal,
        Func<OperationSlot, ResourceRecord, bool, OperationPlan> begin)
    {
        var detectedAt = time.GetTimestamp();
        var slot = executor.TryReserve(resource, kind) ?? throw Refused(executor.Running(resource) is { } running
            ? $"{resource}: {running.Kind} {running.Id} is already in flight; wait for its terminal event (hameshctl events --follow)"
            : $"{resource}: an operation is already in flight");
        OperationPlan plan;
        try
        {
            var record = store.GetResource(resource);
            OperatorRequests.RequireCurrentGeneration(generation, record.Generation, resource);
            var view = views.Build(new HashSet<string>(StringComparer.Ordinal));
            if (refusal(view, views.HaOptions, views.Now, resource, target) is { } why)
            {
                throw Refused($"{resource}: {why}");
            }

            plan = begin(slot, record, OperatorChecks.PrimaryReachable(view, views.HaOptions, views.Now, resource));
        }
        catch
        {
            executor.Release(slot);
            throw;
        }

        var decidedAt = time.GetTimestamp();
        executor.Launch(slot, ct => executor.RunAsync(plan, detectedAt, decidedAt, ct));
        return new OperationResult
        {
            OperationId = plan.Id,
            Resource = resource,
            Generation = plan.Generation,
            Accepted = true,
            EventSequence = plan.StartedEventSequence,
            Message = $"{plan.Kind} {plan.Id}: {(plan.From.Length == 0 ? "" : plan.From + " → ")}{target} started at generation {plan.Generation}",
        };
    }

    private static RpcException Refused(string reason) => new(new Status(StatusCode.FailedPrecondition, reason));
}
