namespace HaMesh.Coordinator.Events;

/// <summary>
/// In-memory event log: used until the durable store is configured, and by tests. Keeps the
/// most recent events and lets readers list and follow them.
/// </summary>
public sealed class InMemoryEventLog(TimeProvider time, int capacity = 10_000) : IEventLog
{
    private readonly Lock _lock = new();
    private readonly LinkedList<StoredEvent> _events = new();
    private ulong _sequence;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public ValueTask<StoredEvent> AppendAsync(EventRecord record, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(record);
        StoredEvent stored;
        TaskCompletionSource changed;
        lock (_lock)
        {
            stored = new StoredEvent(++_sequence, time.GetUtcNow(), record);
            _events.AddLast(stored);
            while (_events.Count > capacity)
            {
                _events.RemoveFirst();
            }

            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        changed.TrySetResult();
        return ValueTask.FromResult(stored);
    }

    /// <summary>Events with a sequence greater than <paramref name="afterSequence"/>, oldest first.</summary>
    public IReadOnlyList<StoredEvent> List(ulong afterSequence, int limit = int.MaxValue)
    {
        lock (_lock)
        {
            return _events.Where(e => e.Sequence > afterSequence).Take(limit).ToList();
        }
    }

    /// <summary>Completes when the next event is appended.</summary>
    public Task WaitForChangeAsync(CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            return _changed.Task.WaitAsync(cancellationToken);
        }
    }
}
