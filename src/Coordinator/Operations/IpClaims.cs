using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using HaMesh.Coordinator.Cloud;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Membership;
using HaMesh.Coordinator.Ovh;
using HaMesh.Coordinator.Store;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using Microsoft.Extensions.Options;

namespace HaMesh.Coordinator.Operations;

/// <summary>
/// ClaimIp and GetIp (the seed's getfailover): route a failover IP to a node through the cloud's move
/// workflow (already routed → no POST), one claim per IP at a time: a second claim of the same IP to the
/// same node joins the one in flight, to another node it is refused. A claim that would fight the
/// decision loop (IP to a node that is not the primary, outside maintenance) or that would run while an
/// automatic operation is in flight for the resource is refused. Every request and outcome is an event.
/// </summary>
public sealed partial class IpClaims(
    IOptions<HaMeshOptions> options,
    SqliteStore store,
    IEventSink events,
    IpRoutingCache routes,
    IServiceProvider services,
    TimeProvider time,
    ILogger<IpClaims> logger)
{
    private readonly HaMeshOptions _options = options.Value;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, Claim> _inFlight = new(StringComparer.Ordinal);

    private sealed record Claim(string Node, ulong Generation, Task<ClaimIpResponse> Task);

    /// <summary>The configured IP string (as in Resources:N:FailoverIps) matching <paramref name="ip"/> (CIDR or bare), and its resource.</summary>
    public (ResourceOptions Resource, string Ip)? FindIp(string ip)
    {
        if (!IpCidr.TryParse(ip, out var wanted))
        {
            return null;
        }

        foreach (var resource in _options.Resources)
        {
            foreach (var configured in resource.FailoverIps)
            {
                if (IpCidr.TryParse(configured, out var c) && c.ToString() == wanted.ToString())
                {
                    return (resource, configured);
                }
            }
        }

        return null;
    }

    /// <summary>Runs (or joins) the claim. The arguments are already validated; refusals are RpcExceptions.</summary>
    public async Task<ClaimIpResponse> ClaimAsync(string resource, string ip, string node, ulong generation, CancellationToken ct)
    {
        var serviceName = _options.FindNode(node)!.ServiceName;
        Claim? claim = null;
        var joined = false;
        (RpcException Error, string Reason)? refusal = null;
        lock (_lock)
        {
            if (_inFlight.TryGetValue(ip, out var running))
            {
                if (running.Node == node)
                {
                    claim = running;
                    joined = true;
                }
                else
                {
                    refusal = (new RpcException(new Status(StatusCode.Aborted, $"ip: a claim of {ip} to {running.Node} is in flight; wait for it to finish (hameshctl events) and retry")),
                        $"a claim of {ip} to {running.Node} is in flight");
                }
            }
            else if (services.GetService<Core.CoordinatorCoreHost>()?.Busy(resource) == true)
            {
                refusal = (new RpcException(new Status(StatusCode.Aborted, $"resource: an automatic operation (failover, promotion or IP move) is in flight for {resource}; retry when it has finished")),
                    $"an automatic operation is in flight for {resource}");
            }
            else
            {
                var record = store.GetResource(resource);
                if (generation != record.Generation)
                {
                    refusal = (new RpcException(new Status(StatusCode.FailedPrecondition,
                        string.Create(CultureInfo.InvariantCulture, $"generation: {resource} is at generation {record.Generation}, the request was made at {generation}; re-read the status and retry"))),
                        string.Create(CultureInfo.InvariantCulture, $"stale generation {generation} (current {record.Generation})"));
                }
                else if (record.PrimaryNode.Length > 0 && record.PrimaryNode != node && !record.Maintenance)
                {
                    refusal = (new RpcException(new Status(StatusCode.FailedPrecondition,
                        $"node: {node} is not the primary of {resource} ({record.PrimaryNode} is, at generation {record.Generation}); the decision loop would route {ip} back to it: use hameshctl switchover, or set maintenance on first")),
                        $"{node} is not the primary of {resource}");
                }
                else
                {
                    claim = new Claim(node, generation, RunAsync(Cloud(), resource, ip, node, serviceName, generation));
                    _inFlight[ip] = claim;
                }
            }
        }

        if (refusal is { } r)
        {
            await events.AppendAsync(new EventRecord("IpClaimRefused", $"claim of {ip} to {node} refused: {r.Reason}", resource, node, generation, EventSeverity.Warning), CancellationToken.None);
            throw r.Error;
        }

        if (joined)
        {
            await events.AppendAsync(new EventRecord("IpClaimJoined", $"claim of {ip} to {node}: joined the claim already in flight", resource, node, generation), ct);
        }

        var response = await claim!.Task.WaitAsync(ct);
        return joined ? new ClaimIpResponse(response) { Message = response.Message + " (joined the claim already in flight)" } : response;
    }

    /// <summary>Where the cloud routes <paramref name="ip"/> now (a fresh read, which also refreshes the status view).</summary>
    public async Task<GetIpResponse> ShowAsync(string ip, CancellationToken ct)
    {
        var cloud = Cloud();
        IpRouting routing;
        try
        {
            routing = await cloud.GetRoutingAsync(ip, ct);
        }
        catch (OvhException ex)
        {
            throw ToRpc(ex);
        }

        var node = NodeOf(routing.RoutedToService);
        routes.Record(new FailoverIpStatus { Ip = ip, RoutedToNode = node, RoutedToService = routing.RoutedToService ?? "", CheckedAt = Timestamp.FromDateTimeOffset(time.GetUtcNow()) });
        var response = new GetIpResponse { Ip = ip, RoutedToService = routing.RoutedToService ?? "", RoutedToNode = node, Parked = routing.Parked };
        response.PendingTasks.AddRange(routing.PendingTasks.Select(t => new IpTask { TaskId = t.Id, Function = t.Function, Status = t.Status, Comment = t.Comment ?? "" }));
        return response;
    }

    private ICloudIpProvider Cloud()
    {
        try
        {
            return services.GetService<ICloudIpProvider>()
                ?? throw new RpcException(new Status(StatusCode.FailedPrecondition, "no cloud provider configured: set HaMesh:Coordinator:Ovh:CredentialsFile (or OVH_APPLICATION_KEY, OVH_APPLICATION_SECRET, OVH_CONSUMER_KEY)"));
        }
        catch (InvalidOperationException ex)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition, ex.Message));
        }
    }

    private async Task<ClaimIpResponse> RunAsync(ICloudIpProvider cloud, string resource, string ip, string node, string serviceName, ulong generation)
    {
        // The workflow is not tied to the caller: a client that goes away does not stop a move half-way.
        await Task.Yield();
        try
        {
            await events.AppendAsync(new EventRecord("IpClaimRequested", $"claim {ip} for {node} ({serviceName})", resource, node, generation)
            {
                Attributes = new Dictionary<string, string> { ["ip"] = ip, ["to"] = serviceName },
            }, CancellationToken.None);
            Log.Claiming(logger, ip, node);
            MoveOutcome outcome;
            try
            {
                outcome = await cloud.EnsureRoutedAsync(ip, serviceName, CancellationToken.None);
            }
            catch (OvhException ex)
            {
                outcome = new MoveOutcome(MoveOutcomeKind.Failed, ex.Message, null, TimeSpan.Zero, 0);
            }

            var ok = outcome.Kind is MoveOutcomeKind.AlreadyRouted or MoveOutcomeKind.Moved;
            if (ok)
            {
                routes.Record(new FailoverIpStatus { Ip = ip, RoutedToNode = node, RoutedToService = serviceName, CheckedAt = Timestamp.FromDateTimeOffset(time.GetUtcNow()) });
            }

            await events.AppendAsync(new EventRecord(ok ? "IpClaimed" : "IpClaimFailed",
                string.Create(CultureInfo.InvariantCulture, $"{ip} → {node}: {outcome.Kind}: {outcome.Message} ({outcome.Posts} POST, {outcome.Elapsed.TotalMilliseconds:0} ms)"),
                resource, node, generation, ok ? EventSeverity.Info : EventSeverity.Critical)
            {
                Attributes = new Dictionary<string, string>
                {
                    ["ip"] = ip,
                    ["outcome"] = outcome.Kind.ToString(),
                    ["posts"] = outcome.Posts.ToString(CultureInfo.InvariantCulture),
                    ["ms"] = outcome.Elapsed.TotalMilliseconds.ToString("0", CultureInfo.InvariantCulture),
                },
            }, CancellationToken.None);
            var response = new ClaimIpResponse
            {
                Outcome = outcome.Kind switch
                {
                    MoveOutcomeKind.AlreadyRouted => ClaimIpOutcome.AlreadyRouted,
                    MoveOutcomeKind.Moved => ClaimIpOutcome.Moved,
                    MoveOutcomeKind.TimedOut => ClaimIpOutcome.TimedOut,
                    _ => ClaimIpOutcome.Failed,
                },
                Message = outcome.Message,
                RoutedToService = ok ? serviceName : "",
                TaskId = outcome.TaskId ?? 0,
                Elapsed = Duration.FromTimeSpan(outcome.Elapsed),
            };
            return response;
        }
        finally
        {
            lock (_lock)
            {
                _inFlight.Remove(ip);
            }
        }
    }

    private string NodeOf(string? serviceName) =>
        serviceName is null ? "" : _options.Nodes.FirstOrDefault(n => string.Equals(n.ServiceName.Trim(), serviceName.Trim(), StringComparison.OrdinalIgnoreCase))?.Name ?? "";

    private static RpcException ToRpc(OvhException ex) => new(new Status(ex.Kind switch
    {
        OvhErrorKind.NotFound => StatusCode.NotFound,
        OvhErrorKind.InvalidCredentials or OvhErrorKind.NotGranted or OvhErrorKind.InvalidSignature or OvhErrorKind.BadRequest => StatusCode.FailedPrecondition,
        _ => StatusCode.Unavailable,
    }, $"ip: {ex.Message}"));

    private static partial class Log
    {
        [LoggerMessage(EventId = 2301, Level = LogLevel.Warning, Message = "Claiming {Ip} for {Node}")]
        public static partial void Claiming(ILogger logger, string ip, string node);
    }
}
