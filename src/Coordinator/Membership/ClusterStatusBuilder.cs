using Google.Protobuf.WellKnownTypes;
using HaMesh.Coordinator.Store;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using Microsoft.Extensions.Options;

namespace HaMesh.Coordinator.Membership;

/// <summary>Where the coordinator last saw each failover IP routed (from OVH reads and confirmed moves).</summary>
public sealed class IpRoutingCache
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, FailoverIpStatus> _routes = new(StringComparer.Ordinal);

    public void Record(FailoverIpStatus status)
    {
        ArgumentNullException.ThrowIfNull(status);
        _routes[status.Ip] = status;
    }

    public FailoverIpStatus? Get(string ip) => _routes.TryGetValue(ip, out var s) ? s : null;
}

/// <summary>Renders the live view as <see cref="ClusterStatus"/> for GetClusterStatus and hameshctl.</summary>
public sealed class ClusterStatusBuilder(IOptions<HaMeshOptions> options, NodeRegistry registry, IpRoutingCache routes, SqliteStore store, TimeProvider time)
{
    private readonly HaMeshOptions _options = options.Value;

    public ClusterStatus Build()
    {
        var view = registry.Current;
        var status = new ClusterStatus
        {
            Cluster = _options.Cluster.Name,
            ViewVersion = view.Version,
            GeneratedAt = Timestamp.FromDateTimeOffset(time.GetUtcNow()),
        };
        foreach (var node in _options.Nodes)
        {
            var entry = view.Nodes[node.Name];
            var clusterNode = new ClusterNode
            {
                Node = node.Name,
                Reachability = registry.ReachabilityOf(entry),
                LastReport = entry.LastReport,
                Address = node.AgentAddress,
                ServiceName = node.ServiceName,
            };
            if (registry.AgeOf(entry) is { } age)
            {
                clusterNode.LastReportAge = Duration.FromTimeSpan(age);
            }

            status.Nodes.Add(clusterNode);
        }

        foreach (var resource in _options.Resources)
        {
            status.Resources.Add(BuildResource(resource, view));
        }

        return status;
    }

    private ClusterResource BuildResource(ResourceOptions resource, LiveView view)
    {
        var reports = view.Nodes.Values
            .Where(e => e.LastReport is not null && registry.ReachabilityOf(e) == Reachability.Reachable)
            .Select(e => (e.Node, Status: e.LastReport!.Resources.FirstOrDefault(r => r.Resource == resource.Name)))
            .Where(x => x.Status is not null)
            .ToList();
        var primaries = reports.Where(x => x.Status!.Drbd?.Role == DrbdRole.Primary).Select(x => x.Node).ToList();
        var record = store.GetResource(resource.Name);
        var result = new ClusterResource
        {
            Resource = resource.Name,
            // The coordinator's persisted generation is the truth; before the first one (a new
            // cluster), show what the agents report.
            Generation = record.Generation > 0 ? record.Generation : reports.Count == 0 ? 0 : reports.Max(x => x.Status!.Generation),
            PrimaryNode = record.PrimaryNode.Length > 0 ? record.PrimaryNode : string.Join(",", primaries),
            PreferredNode = resource.PreferredNode,
            Maintenance = record.Maintenance,
        };
        result.OutdatedNodes.AddRange(record.OutdatedNodes.Keys.Order(StringComparer.Ordinal));
        if (store.PendingOperations().FirstOrDefault(o => o.Resource == resource.Name) is { } op)
        {
            result.Operation = new OperationInFlight
            {
                OperationId = op.Id,
                Kind = op.Kind switch
                {
                    "failover" => OperationKind.Failover,
                    "switchover" => OperationKind.Switchover,
                    "force-promote" => OperationKind.ForcePromote,
                    "ensure-primary" => OperationKind.EnsurePrimary,
                    "move-ip" => OperationKind.MoveIp,
                    _ => OperationKind.Unspecified,
                },
                TargetNode = op.TargetNode,
                Generation = op.Generation,
                Phase = op.Phase,
                StartedAt = Timestamp.FromDateTimeOffset(op.StartedAt),
            };
        }
        foreach (var ip in resource.FailoverIps)
        {
            result.FailoverIps.Add(routes.Get(ip) ?? new FailoverIpStatus { Ip = ip });
        }

        return result;
    }
}
