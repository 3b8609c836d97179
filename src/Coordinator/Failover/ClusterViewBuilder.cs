using HaMesh.Coordinator.Membership;
using HaMesh.Coordinator.Store;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Failover;
using Microsoft.Extensions.Options;

namespace HaMesh.Coordinator.Failover;

/// <summary>Builds the pure <see cref="ClusterView"/> from the live registry, the durable store and what is running now.</summary>
public sealed class ClusterViewBuilder(IOptions<HaMeshOptions> options, NodeRegistry registry, SqliteStore store, IpRoutingCache routes, TimeProvider time)
{
    private readonly HaMeshOptions _options = options.Value;
    private readonly MonoTime _startedAt = MonoTime.FromTimestamp(time.GetTimestamp(), time.TimestampFrequency);

    public MonoTime Now => MonoTime.FromTimestamp(time.GetTimestamp(), time.TimestampFrequency);

    public HaOptions HaOptions => new(_options.Cluster.Timings.Lease, _options.Cluster.Timings.DriftMargin, _options.Cluster.Timings.MinFailoverInterval);

    public ClusterView Build(IReadOnlySet<string> inFlight)
    {
        ArgumentNullException.ThrowIfNull(inFlight);
        var live = registry.Current;
        var nodes = _options.Nodes.Select(n =>
        {
            var entry = live.Nodes[n.Name];
            var facts = new Dictionary<string, NodeResourceFacts>(StringComparer.Ordinal);
            foreach (var r in entry.LastReport?.Resources ?? [])
            {
                var peer = r.Drbd?.Peers.FirstOrDefault();
                facts[r.Resource] = new NodeResourceFacts(
                    r.Drbd?.Role ?? DrbdRole.Unknown,
                    r.Drbd?.DiskState ?? DiskState.Unknown,
                    peer?.ConnectionState ?? ConnectionState.Unknown,
                    peer?.PeerRole ?? DrbdRole.Unknown,
                    r.Generation,
                    r.PeerContactAge?.ToTimeSpan(),
                    r.Drbd?.Present ?? false,
                    peer?.PeerDiskState ?? DiskState.Unknown);
            }

            return new NodeFacts(n.Name, At(entry.LastSeenTimestamp), At(entry.LastGrantTimestamp), facts) { ReportSequence = entry.LastReport?.Sequence ?? 0 };
        }).ToList();
        var resources = _options.Resources.Select(r =>
        {
            var record = store.GetResource(r.Name);
            return new ResourceFacts(r.Name, record.Generation, record.PrimaryNode, record.Maintenance,
                record.LastFailoverAt is { } at ? Now - (time.GetUtcNow() - at) : null,
                record.OutdatedNodes, inFlight.Contains(r.Name), r.PreferredNode, r.SplitBrainPolicy == SplitBrainPolicy.DiscardOldPrimary)
            {
                OutdatedMarks = record.OutdatedMarks,
                IpRoutes = r.FailoverIps.ToDictionary(ip => ip, ip => routes.Get(ip)?.RoutedToNode is { Length: > 0 } node ? node : null, StringComparer.Ordinal),
            };
        }).ToList();
        return new ClusterView(live.Version, _startedAt, nodes, resources);
    }

    private MonoTime? At(long? timestamp) => timestamp is { } t ? MonoTime.FromTimestamp(t, time.TimestampFrequency) : null;
}
