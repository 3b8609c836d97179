namespace HaMesh.Coordinator.Events;

/// <summary>The readable side of the event log: list and follow (ListEvents, WatchEvents, hameshctl events).</summary>
public interface IEventLog : IEventSink
{
    /// <summary>Events with a sequence greater than <paramref name="afterSequence"/>, oldest first.</summary>
    IReadOnlyList<StoredEvent> List(ulong afterSequence, int limit = int.MaxValue);

    /// <summary>Completes when the next event is appended.</summary>
    Task WaitForChangeAsync(CancellationToken cancellationToken);
}
