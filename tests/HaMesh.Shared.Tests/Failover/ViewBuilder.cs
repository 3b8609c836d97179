using HaMesh.Protocol.V1;
using HaMesh.Shared.Failover;

namespace HaMesh.Shared.Tests.Failover;

/// <summary>Builds views for the decision tests: times are seconds on the coordinator's monotonic clock.</summary>
internal sealed class ViewBuilder
{
    public static readonly HaOptions Options = new(TimeSpan.FromSeconds(2), TimeSpan.FromMilliseconds(500), TimeSpan.FromMinutes(5));
    private readonly List<NodeFacts> _nodes = [];

    public ResourceFacts Resource { get; set; } = new("db", 3, "a", false, null, new Dictionary<string, ulong>(), false, "a")
    {
        IpRoutes = new Dictionary<string, string?> { ["203.0.113.10/32"] = "a" },
    };

    public double ObservingSince { get; set; }

    public static MonoTime At(double seconds) => new(TimeSpan.FromSeconds(seconds));

    public ViewBuilder Node(string name, double? lastReport, DrbdRole role = DrbdRole.Secondary, DiskState disk = DiskState.UpToDate,
        ConnectionState peer = ConnectionState.Connecting, DrbdRole peerRole = DrbdRole.Unknown, ulong generation = 3, double? peerContactAge = 10, double? lastGrant = null, bool present = true,
        DiskState peerDisk = DiskState.Unspecified)
    {
        var facts = new NodeResourceFacts(role, disk, peer, peerRole, generation, peerContactAge is { } p ? TimeSpan.FromSeconds(p) : null, present, peerDisk);
        _nodes.Add(new NodeFacts(name, lastReport is { } t ? At(t) : null, lastGrant is { } g ? At(g) : null, new Dictionary<string, NodeResourceFacts> { [Resource.Resource] = facts }));
        return this;
    }

    public ClusterView Build() => new(1, At(ObservingSince), _nodes, [Resource]);

    public IReadOnlyList<Decision> Decide(double now) => FailoverPolicy.Decide(Build(), Options, At(now));

    public Decision Single(double now) => Assert.Single(Decide(now));
}
