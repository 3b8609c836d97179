namespace HaMesh.Coordinator.Store;

/// <summary>The coordinator's persisted facts about one resource.</summary>
public sealed record ResourceRecord(
    string Resource,
    ulong Generation,
    string PrimaryNode,
    bool Maintenance,
    DateTimeOffset? LastFailoverAt,
    IReadOnlyDictionary<string, ulong> OutdatedNodes)
{
    /// <summary>Per outdated node: the generation, the requester and the requester's report sequence when it asked.</summary>
    public IReadOnlyDictionary<string, Shared.Failover.OutdatedMark> OutdatedMarks { get; init; } = new Dictionary<string, Shared.Failover.OutdatedMark>(StringComparer.Ordinal);
}

/// <summary>An operation (failover, switchover, ...) that was started and not yet finished: resumed or abandoned after a restart.</summary>
public sealed record OperationRecord(
    string Id,
    string Resource,
    string Kind,
    string TargetNode,
    ulong Generation,
    string Phase,
    DateTimeOffset StartedAt,
    string StateJson);
