using System.Diagnostics.CodeAnalysis;
using Grpc.Core;
using HaMesh.Agent.Actions;
using HaMesh.Agent.Reporting;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;
using Microsoft.Extensions.Options;

namespace HaMesh.Agent.Api;

/// <summary>
/// AgentService: a thin adapter (R14). Validates every request field (INVALID_ARGUMENT naming the
/// field, NOT_FOUND for an unknown resource) and delegates to the collector or to <see cref="IAgentActions"/>.
/// </summary>
public sealed class AgentGrpcService(
    IOptions<HaMeshOptions> options,
    StatusCollector collector,
    IAgentActions actions,
    TimeProvider? time = null) : AgentService.AgentServiceBase
{
    private readonly HaMeshOptions _options = options.Value;

    public override Task<NodeStatus> GetStatus(GetStatusRequest request, ServerCallContext context)
    {
        if (!string.IsNullOrEmpty(request.Resource))
        {
            RequireResource(request.Resource, "resource");
        }

        return collector.CollectAsync(request.Resource, context.CancellationToken);
    }

    public override async Task<PingResponse> Ping(PingRequest request, ServerCallContext context)
    {
        if (request.Nonce.Length > 128)
        {
            ThrowInvalid("nonce", "must be at most 128 characters");
        }

        // The last status when it is at most a heartbeat old (the lease loop and the coordinator link refresh it), else a fresh one.
        var latest = collector.Latest;
        var fresh = latest is not null && (time ?? TimeProvider.System).GetUtcNow() - latest.ObservedAt.ToDateTimeOffset() <= _options.Cluster.Timings.Heartbeat;
        var status = fresh ? latest! : await collector.CollectAsync(null, context.CancellationToken);
        var response = new PingResponse { Node = _options.Agent.Node, Nonce = request.Nonce };
        response.Resources.AddRange(status.Resources.Select(r => new PingResource
        {
            Resource = r.Resource,
            Generation = r.Generation,
            Role = r.Drbd?.Role ?? DrbdRole.Unknown,
        }));
        return response;
    }

    public override Task<ActionResult> Promote(PromoteRequest request, ServerCallContext context)
    {
        RequireResource(request.Resource, "resource");
        RequireGeneration(request.Generation);
        RequireText(request.Reason, "reason", MaxReason);
        RequireText(request.OperationId, "operation_id", MaxOperationId);
        return actions.PromoteAsync(request, context.CancellationToken);
    }

    public override Task<ActionResult> Demote(DemoteRequest request, ServerCallContext context)
    {
        RequireResource(request.Resource, "resource");
        RequireGeneration(request.Generation);
        RequireText(request.Reason, "reason", MaxReason);
        RequireText(request.OperationId, "operation_id", MaxOperationId);
        return actions.DemoteAsync(request, context.CancellationToken);
    }

    public override Task<ActionResult> Outdate(OutdateRequest request, ServerCallContext context)
    {
        RequireResource(request.Resource, "resource");
        RequireGeneration(request.Generation);
        RequireText(request.RequestedBy, "requested_by", MaxOperationId);
        return actions.OutdateAsync(request, context.CancellationToken);
    }

    public override Task<ActionResult> Agree(AgreeRequest request, ServerCallContext context)
    {
        RequireResource(request.Resource, "resource");
        RequireGeneration(request.Generation);
        if (_options.FindNode(request.Candidate) is null || request.Candidate == _options.Agent.Node)
        {
            ThrowInvalid("candidate", $"'{Truncate(request.Candidate)}' is not another configured node");
        }

        RequireText(request.OperationId, "operation_id", MaxOperationId);
        return actions.AgreeAsync(request, context.CancellationToken);
    }

    public override Task<RenewLeaseResponse> RenewLease(RenewLeaseRequest request, ServerCallContext context)
    {
        RequireResource(request.Resource, "resource");
        RequireGeneration(request.Generation);
        if (_options.FindNode(request.Requester) is null || request.Requester == _options.Agent.Node)
        {
            ThrowInvalid("requester", $"'{Truncate(request.Requester)}' is not the peer node of '{_options.Agent.Node}'");
        }

        if (!ProtoTime.TryToTimeSpan(request.Lease, out var lease) || lease <= TimeSpan.Zero || lease > TimeSpan.FromMinutes(1))
        {
            ThrowInvalid("lease", "must be a positive duration of at most one minute");
        }

        return actions.RenewLeaseAsync(request, context.CancellationToken);
    }

    public override Task<AgentFencePeerResponse> FencePeer(AgentFencePeerRequest request, ServerCallContext context)
    {
        if (string.IsNullOrEmpty(request.Resource) && string.IsNullOrEmpty(request.DrbdResource))
        {
            ThrowInvalid("resource", "resource or drbd_resource is required");
        }

        if (request.Resource.Length > 0 && !Names.IsValidName(request.Resource))
        {
            ThrowInvalid("resource", $"'{Truncate(request.Resource)}' {Names.NameRule}");
        }

        if (request.DrbdResource.Length > 0 && !Names.IsValidDrbdResource(request.DrbdResource))
        {
            ThrowInvalid("drbd_resource", $"'{Truncate(request.DrbdResource)}' is not a DRBD resource name");
        }

        if (request.PeerName.Length > 255 || request.PeerName.Any(char.IsControl))
        {
            ThrowInvalid("peer_name", "must be a host name (at most 255 characters, no control characters)");
        }

        var known = _options.Resources.Any(r => r.Name == request.Resource || r.DrbdResource == request.DrbdResource);
        if (!known)
        {
            throw new RpcException(new global::Grpc.Core.Status(StatusCode.NotFound, $"resource: no configured resource named '{request.Resource}' or with DRBD resource '{request.DrbdResource}'"));
        }

        return actions.FencePeerAsync(request, context.CancellationToken);
    }

    private const int MaxReason = 1024;
    private const int MaxOperationId = 128;

    /// <summary>Free-text fields are bounded: they end up in logs and results.</summary>
    private static void RequireText(string value, string field, int max)
    {
        if (value.Length > max)
        {
            ThrowInvalid(field, $"must be at most {max} characters (got {value.Length})");
        }
    }

    private void RequireResource(string value, string field)
    {
        if (string.IsNullOrEmpty(value))
        {
            ThrowInvalid(field, "is required");
        }

        if (!Names.IsValidName(value))
        {
            ThrowInvalid(field, $"'{Truncate(value)}' {Names.NameRule}");
        }

        if (_options.FindResource(value) is null)
        {
            throw new RpcException(new global::Grpc.Core.Status(StatusCode.NotFound, $"{field}: no configured resource named '{value}'"));
        }
    }

    private static void RequireGeneration(ulong generation)
    {
        if (generation == 0)
        {
            ThrowInvalid("generation", "must be at least 1 (every state-changing call carries the coordinator's generation)");
        }
    }

    private static string Truncate(string value) => value.Length <= 64 ? value : value[..64] + "…";

    [DoesNotReturn]
    private static void ThrowInvalid(string field, string reason) =>
        throw new RpcException(new global::Grpc.Core.Status(StatusCode.InvalidArgument, $"{field}: {reason}"));
}
