using Grpc.Core;
using HaMesh.Protocol.V1;

namespace HaMesh.Testing.Lab;

/// <summary>
/// Follows the coordinator's WatchEvents stream from the first event, keeps every event in order and
/// lets tests wait for events by predicate, from an index, in whatever order they come. Survives a
/// coordinator restart: it re-subscribes after the last sequence it saw (the store is durable).
/// </summary>
public sealed class EventRecorder : IAsyncDisposable
{
    private readonly CoordinatorService.CoordinatorServiceClient _client;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<ClusterEvent> _events = [];
    private readonly Lock _lock = new();
    private readonly Task _loop;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public EventRecorder(CoordinatorService.CoordinatorServiceClient client)
    {
        _client = client;
        _loop = Task.Run(FollowAsync);
    }

    /// <summary>Every event received so far, in sequence order.</summary>
    public IReadOnlyList<ClusterEvent> All
    {
        get
        {
            lock (_lock)
            {
                return [.. _events];
            }
        }
    }

    /// <summary>Number of events received so far (an index to wait from).</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _events.Count;
            }
        }
    }

    /// <summary>Events at index &gt;= <paramref name="from"/> matching <paramref name="match"/>.</summary>
    public IReadOnlyList<ClusterEvent> Since(int from, Func<ClusterEvent, bool> match)
    {
        lock (_lock)
        {
            return [.. _events.Skip(from).Where(match)];
        }
    }

    /// <summary>The first event at index &gt;= <paramref name="from"/> matching <paramref name="match"/>, waiting for it if needed.</summary>
    public async Task<ClusterEvent> WaitForAsync(Func<ClusterEvent, bool> match, int from, CancellationToken ct)
    {
        while (true)
        {
            Task changed;
            lock (_lock)
            {
                var hit = _events.Skip(from).FirstOrDefault(match);
                if (hit is not null)
                {
                    return hit;
                }

                changed = _changed.Task;
            }

            await changed.WaitAsync(ct);
        }
    }

    /// <summary>Waits until every node in <paramref name="nodes"/> had a <paramref name="kind"/> event at index &gt;= from, in any order.</summary>
    public async Task<bool> WaitForAllAsync(string kind, IReadOnlyCollection<string> nodes, int from, CancellationToken ct)
    {
        foreach (var n in nodes)
        {
            await WaitForAsync(e => e.Kind == kind && e.Node == n, from, ct);
        }

        return true;
    }

    /// <summary>Waits <paramref name="window"/> and returns the first event matching <paramref name="forbidden"/> that arrived meanwhile, or null.</summary>
    public async Task<ClusterEvent?> NoneWithinAsync(Func<ClusterEvent, bool> forbidden, TimeSpan window, CancellationToken ct)
    {
        var from = Count;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(window);
        try
        {
            return await WaitForAsync(forbidden, from, cts.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return null;
        }
    }

    private async Task FollowAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            ulong after;
            lock (_lock)
            {
                after = _events.Count == 0 ? 0 : _events[^1].Sequence;
            }

            try
            {
                using var call = _client.WatchEvents(new WatchEventsRequest { AfterSequence = after }, cancellationToken: _stop.Token);
                while (await call.ResponseStream.MoveNext(_stop.Token))
                {
                    Add(call.ResponseStream.Current);
                }
            }
            catch (RpcException) when (!_stop.IsCancellationRequested)
            {
                // coordinator down or restarting: try again after a short pause
                try
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(200), TimeProvider.System, _stop.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or RpcException)
            {
                return;
            }
        }
    }

    private void Add(ClusterEvent e)
    {
        TaskCompletionSource changed;
        lock (_lock)
        {
            if (_events.Count > 0 && e.Sequence <= _events[^1].Sequence)
            {
                return;
            }

            _events.Add(e);
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        changed.TrySetResult();
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
    }
}
