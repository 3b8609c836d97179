using System.Diagnostics.CodeAnalysis;
using Grpc.Core;
using HaMesh.Coordinator.Core;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Membership;
using HaMesh.Coordinator.Operations;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;
using Microsoft.Extensions.Options;

namespace HaMesh.Coordinator.Api;

/// <summary>CoordinatorService: the Connect stream, status and events (R14: thin, validating adapter).</summary>
public sealed partial class CoordinatorGrpcService(
    IOptions<HaMeshOptions> options,
    NodeRegistry registry,
    ClusterStatusBuilder statusBuilder,
    IEventLog eventLog,
    CoordinatorCoreHost core,
    IpClaims claims,
    OperatorCommands operatorCommands,
    ILogger<CoordinatorGrpcService> logger) : CoordinatorService.CoordinatorServiceBase
{
    private const int DefaultEventLimit = 100;
    private const int MaxEventLimit = 1000;
    private readonly HaMeshOptions _options = options.Value;

    public override async Task Connect(IAsyncStreamReader<AgentMessage> requestStream, IServerStreamWriter<CoordinatorMessage> responseStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        if (!await requestStream.MoveNext(ct))
        {
            return;
        }

        var first = requestStream.Current;
        if (first.BodyCase != AgentMessage.BodyOneofCase.Hello)
        {
            ThrowInvalid("hello", "the first message on Connect must be a hello naming the node");
        }

        var node = first.Hello.Node;
        OperatorRequests.RequireName(node, "hello.node");
        if (!registry.IsKnown(node))
        {
            Log.UnknownNode(logger, node, context.Peer);
            await eventLog.AppendAsync(new EventRecord("ConnectRejected", $"unknown node '{Truncate(node)}' from {context.Peer}", Node: "", Severity: EventSeverity.Warning), ct);
            throw new RpcException(new global::Grpc.Core.Status(StatusCode.PermissionDenied, $"node '{Truncate(node)}' is not a member of cluster '{_options.Cluster.Name}'"));
        }

        registry.StreamOpened(node);
        Log.AgentConnected(logger, node, context.Peer);
        var outbox = core.OpenStream(node);
        Task? writer = null;
        try
        {
            var timings = _options.Cluster.Timings;
            await responseStream.WriteAsync(new CoordinatorMessage
            {
                Welcome = new CoordinatorWelcome
                {
                    Cluster = _options.Cluster.Name,
                    ViewVersion = registry.Current.Version,
                    Heartbeat = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(timings.Heartbeat),
                    Lease = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(timings.Lease),
                },
            }, ct);

            // The core's lease grants for this node: one writer on the stream from here on.
            writer = WriteAllAsync(outbox, responseStream, ct);
            while (await requestStream.MoveNext(ct))
            {
                var message = requestStream.Current;
                switch (message.BodyCase)
                {
                    case AgentMessage.BodyOneofCase.Report:
                        if (message.Report.Node != node)
                        {
                            throw new RpcException(new global::Grpc.Core.Status(StatusCode.PermissionDenied, $"report for '{Truncate(message.Report.Node)}' on the stream of '{node}'"));
                        }

                        registry.Accept(node, message.Report);
                        core.Report(node, message.Report);
                        break;
                    case AgentMessage.BodyOneofCase.LeaseRequest:
                        core.LeaseRequest(node, message.LeaseRequest);
                        break;
                    default:
                        ThrowInvalid("body", "expected a report or a lease request after the hello");
                        break;
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // the agent went away
        }
        catch (IOException)
        {
            // the connection broke
        }
        finally
        {
            core.CloseStream(node, outbox);
            if (writer is not null)
            {
                await writer;
            }

            registry.StreamClosed(node);
            Log.AgentDisconnected(logger, node);
        }
    }

    private static async Task WriteAllAsync(System.Threading.Channels.ChannelReader<CoordinatorMessage> outbox, IServerStreamWriter<CoordinatorMessage> stream, CancellationToken ct)
    {
        try
        {
            await foreach (var message in outbox.ReadAllAsync(ct))
            {
                await stream.WriteAsync(message, ct);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or InvalidOperationException)
        {
            // the stream ended
        }
    }

    public override Task<ClusterStatus> GetClusterStatus(GetClusterStatusRequest request, ServerCallContext context) =>
        Task.FromResult(statusBuilder.Build());

    public override Task<ListEventsResponse> ListEvents(ListEventsRequest request, ServerCallContext context)
    {
        if (request.Limit < 0 || request.Limit > MaxEventLimit)
        {
            ThrowInvalid("limit", $"must be between 0 and {MaxEventLimit}");
        }

        RequireFilter(request.Resource);
        DateTimeOffset? since = null;
        if (request.Since is not null)
        {
            since = ProtoTime.TryToDateTimeOffset(request.Since, out var at) ? at : ThrowInvalid<DateTimeOffset>("since", "is not a valid timestamp (seconds 0001-01-01..9999-12-31, nanos 0..999999999)");
        }

        var limit = request.Limit == 0 ? DefaultEventLimit : request.Limit;
        var response = new ListEventsResponse();
        response.Events.AddRange(eventLog.List(request.AfterSequence)
            .Where(e => Matches(e, request.Resource) && (since is null || e.Time >= since))
            .Take(limit)
            .Select(EventMapping.ToProto));
        response.LastSequence = response.Events.Count > 0 ? response.Events[^1].Sequence : request.AfterSequence;
        return Task.FromResult(response);
    }

    public override async Task WatchEvents(WatchEventsRequest request, IServerStreamWriter<ClusterEvent> responseStream, ServerCallContext context)
    {
        RequireFilter(request.Resource);
        var ct = context.CancellationToken;
        var after = request.AfterSequence;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var changed = eventLog.WaitForChangeAsync(ct);
                foreach (var e in eventLog.List(after))
                {
                    after = e.Sequence;
                    if (Matches(e, request.Resource))
                    {
                        await responseStream.WriteAsync(EventMapping.ToProto(e), ct);
                    }
                }

                await changed;
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // the watcher went away
        }
    }

    public override Task<OperationResult> Switchover(SwitchoverRequest request, ServerCallContext context) =>
        Task.FromResult(operatorCommands.Switchover(request));

    public override Task<OperationResult> SetMaintenance(SetMaintenanceRequest request, ServerCallContext context) =>
        Task.FromResult(operatorCommands.SetMaintenance(request));

    public override Task<ClaimIpResponse> ClaimIp(ClaimIpRequest request, ServerCallContext context)
    {
        var resource = OperatorRequests.RequireResource(_options, request.Resource);
        OperatorRequests.RequireNode(_options, request.Node, "node");
        var ip = RequireIp(request.Ip);
        if (ip.Resource.Name != resource.Name)
        {
            throw new RpcException(new global::Grpc.Core.Status(StatusCode.NotFound, $"ip: {ip.Ip} is a failover IP of {ip.Resource.Name}, not of {resource.Name}"));
        }

        return claims.ClaimAsync(resource.Name, ip.Ip, request.Node, request.Generation, context.CancellationToken);
    }

    public override Task<GetIpResponse> GetIp(GetIpRequest request, ServerCallContext context) =>
        claims.ShowAsync(RequireIp(request.Ip).Ip, context.CancellationToken);

    private (ResourceOptions Resource, string Ip) RequireIp(string ip)
    {
        if (string.IsNullOrEmpty(ip))
        {
            ThrowInvalid("ip", "is required");
        }

        if (!IpCidr.TryParse(ip, out _))
        {
            ThrowInvalid("ip", $"'{Truncate(ip)}' is not an IP address or block (e.g. 203.0.113.10/32)");
        }

        return claims.FindIp(ip) ?? throw new RpcException(new global::Grpc.Core.Status(StatusCode.NotFound, $"ip: {Truncate(ip)} is not a configured failover IP (HaMesh:Resources:N:FailoverIps)"));
    }

    public override Task<FencePeerResponse> FencePeer(FencePeerRequest request, ServerCallContext context)
    {
        OperatorRequests.RequireResource(_options, request.Resource);
        OperatorRequests.RequireNode(_options, request.RequestingNode, "requesting_node");
        OperatorRequests.RequireNode(_options, request.PeerNode, "peer_node");
        if (request.PeerNode == request.RequestingNode)
        {
            ThrowInvalid("peer_node", "must differ from requesting_node");
        }

        if (request.Generation == 0)
        {
            ThrowInvalid("generation", "must be at least 1");
        }

        return core.FencePeerAsync(request, context.CancellationToken);
    }

    public override Task<OperationResult> ForcePromote(ForcePromoteRequest request, ServerCallContext context) =>
        Task.FromResult(operatorCommands.ForcePromote(request));

    /// <summary>An event filter names a configured resource or is empty.</summary>
    private void RequireFilter(string resource)
    {
        if (resource.Length > 0)
        {
            OperatorRequests.RequireResource(_options, resource);
        }
    }

    [DoesNotReturn]
    private static T ThrowInvalid<T>(string field, string reason) =>
        throw new RpcException(new global::Grpc.Core.Status(StatusCode.InvalidArgument, $"{field}: {reason}"));

    private static bool Matches(StoredEvent e, string resource) => string.IsNullOrEmpty(resource) || e.Record.Resource == resource;

    private static RpcException NotYet(string call) =>
        new(new global::Grpc.Core.Status(StatusCode.Unimplemented, $"{call} is not available in this coordinator version"));

    private static string Truncate(string value) => value.Length <= 64 ? value : value[..64] + "…";

    [DoesNotReturn]
    private static void ThrowInvalid(string field, string reason) =>
        throw new RpcException(new global::Grpc.Core.Status(StatusCode.InvalidArgument, $"{field}: {reason}"));

    private static partial class Log
    {
        [LoggerMessage(EventId = 2001, Level = LogLevel.Information, Message = "Agent {Node} connected from {Peer}")]
        public static partial void AgentConnected(ILogger logger, string node, string peer);

        [LoggerMessage(EventId = 2002, Level = LogLevel.Information, Message = "Agent {Node} stream closed")]
        public static partial void AgentDisconnected(ILogger logger, string node);

        [LoggerMessage(EventId = 2003, Level = LogLevel.Warning, Message = "Rejected Connect from unknown node {Node} ({Peer})")]
        public static partial void UnknownNode(ILogger logger, string node, string peer);
    }
}
