namespace HaMesh.Coordinator.Events;

public enum EventSeverity
{
    Info = 0,
    Warning = 1,
    Critical = 2,
}

/// <summary>
/// One durable fact: a decision, an OVH call and its outcome, a node becoming unreachable.
/// Never carries secrets (OVH keys, signatures).
/// </summary>
public sealed record EventRecord(
    string Kind,
    string Message,
    string Resource = "",
    string Node = "",
    ulong Generation = 0,
    EventSeverity Severity = EventSeverity.Info)
{
    public IReadOnlyDictionary<string, string> Attributes { get; init; } = new Dictionary<string, string>(StringComparer.Ordinal);
}

/// <summary>A stored event: the record plus its sequence number and time.</summary>
public sealed record StoredEvent(ulong Sequence, DateTimeOffset Time, EventRecord Record);

/// <summary>Append-only event log (design §7). The durable SQLite store implements it too.</summary>
public interface IEventSink
{
    /// <summary>Appends and returns once the event is durable (for the SQLite store: committed with synchronous=FULL).</summary>
    ValueTask<StoredEvent> AppendAsync(EventRecord record, CancellationToken cancellationToken);
}
