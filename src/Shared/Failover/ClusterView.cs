using HaMesh.Protocol.V1;

namespace HaMesh.Shared.Failover;

/// <summary>A point on the coordinator's monotonic clock (time since an arbitrary origin). Never wall-clock time.</summary>
public readonly record struct MonoTime(TimeSpan SinceOrigin) : IComparable<MonoTime>
{
    public static TimeSpan operator -(MonoTime a, MonoTime b) => a.SinceOrigin - b.SinceOrigin;

    public static MonoTime operator +(MonoTime a, TimeSpan d) => new(a.SinceOrigin + d);

    public static MonoTime operator -(MonoTime a, TimeSpan d) => new(a.SinceOrigin - d);

    public static bool operator <(MonoTime a, MonoTime b) => a.SinceOrigin < b.SinceOrigin;

    public static bool operator >(MonoTime a, MonoTime b) => a.SinceOrigin > b.SinceOrigin;

    public static bool operator <=(MonoTime a, MonoTime b) => a.SinceOrigin <= b.SinceOrigin;

    public static bool operator >=(MonoTime a, MonoTime b) => a.SinceOrigin >= b.SinceOrigin;

    public int CompareTo(MonoTime other) => SinceOrigin.CompareTo(other.SinceOrigin);

    /// <summary>Exact to the tick (no floating point): a wake computed from two timestamps lands on the instant itself.</summary>
    public static MonoTime FromTimestamp(long timestamp, long frequency) =>
        new(TimeSpan.FromTicks(frequency == TimeSpan.TicksPerSecond ? timestamp : (long)((Int128)timestamp * TimeSpan.TicksPerSecond / frequency)));
}

/// <summary>What one node reported about one resource in its last report.</summary>
public sealed record NodeResourceFacts(
    DrbdRole Role,
    DiskState Disk,
    ConnectionState PeerConnection,
    DrbdRole PeerRole,
    ulong Generation,
    TimeSpan? PeerContactAge,
    bool DrbdPresent = true,
    DiskState PeerDisk = DiskState.Unspecified);

// PeerContactAge: the node's own measure, at report time, of how long ago it last heard from its peer
// agent (or since its own start, when never). Null means the node does not say: it then casts no vote.

/// <summary>What the coordinator knows of one node: when it last heard from it, last granted it a lease, and its reported facts per resource.</summary>
public sealed record NodeFacts(string Node, MonoTime? LastReportAt, MonoTime? LastGrantAt, IReadOnlyDictionary<string, NodeResourceFacts> Resources)
{
    public NodeResourceFacts? For(string resource) => Resources.TryGetValue(resource, out var r) ? r : null;
}

/// <summary>
/// A node recorded outdated by DRBD fencing: at which generation, on whose request (the primary whose
/// replication link broke) and after which of the requester's reports. Only a later report of the
/// requester can prove the peer resynced: earlier ones may describe the link before it broke.
/// </summary>
public sealed record OutdatedMark(ulong Generation, string Requester, ulong AfterReportSequence);

/// <summary>The coordinator's persisted facts about one resource, plus what is running for it now.</summary>
public sealed record ResourceFacts(
    string Resource,
    ulong Generation,
    string Primary,
    bool Maintenance,
    MonoTime? LastFailoverAt,
    IReadOnlyDictionary<string, ulong> Outdated,
    bool OperationInFlight,
    string PreferredNode,
    bool DiscardOldPrimaryOnSplitBrain = false)
{
    /// <summary>Per failover IP, the node OVH routes it to as last read or confirmed (null: unknown or elsewhere).</summary>
    public IReadOnlyDictionary<string, string?> IpRoutes { get; init; } = new Dictionary<string, string?>(StringComparer.Ordinal);
}

/// <summary>An immutable snapshot of everything <see cref="FailoverPolicy.Decide"/> looks at (R11).</summary>
/// <param name="Version">The live view's version this snapshot was built from.</param>
/// <param name="ObservingSince">When the coordinator started observing (its start): a node never heard from counts as silent only since then, so a restarted coordinator never fails over before it has watched for lease + drift margin.</param>
/// <param name="Nodes">Every configured node.</param>
/// <param name="Resources">Every configured resource.</param>
public sealed record ClusterView(ulong Version, MonoTime ObservingSince, IReadOnlyList<NodeFacts> Nodes, IReadOnlyList<ResourceFacts> Resources)
{
    public NodeFacts? Node(string name) => Nodes.FirstOrDefault(n => n.Node == name);
}

/// <summary>The timings the decision depends on (from the cluster file).</summary>
public sealed record HaOptions(TimeSpan Lease, TimeSpan DriftMargin, TimeSpan MinFailoverInterval)
{
    /// <summary>Silence after which a voter may count a node as gone: lease + drift margin.</summary>
    public TimeSpan Silence => Lease + DriftMargin;
}
