using System.Globalization;
using HaMesh.Testing.Processes;

namespace HaMesh.Testing.Lab;

/// <summary>
/// The demo's "database": every 20 ms it writes the next sequence number through whichever server is
/// DRBD Primary with the device mounted (a client reconnecting to the service address), and remembers
/// each write DRBD acknowledged (protocol C: on both disks). <see cref="MissingOnAsync"/> is invariant I3.
/// </summary>
public sealed class TestService(SimHost a, SimHost b, TimeProvider time) : IAsyncDisposable
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(20);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<long> _acknowledged = [];
    private readonly Dictionary<long, string> _acknowledgedBy = [];
    private readonly Lock _lock = new();
    private Task _loop = Task.CompletedTask;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long? _lastAckTimestamp;
    private TimeSpan _longestGap;

    /// <summary>The node the last acknowledged write went to, or null while no write succeeds.</summary>
    public string? WritingTo { get; private set; }

    public IReadOnlyList<long> Acknowledged
    {
        get
        {
            lock (_lock)
            {
                return [.. _acknowledged];
            }
        }
    }

    /// <summary>The longest time between two acknowledged writes (the service's downtime).</summary>
    public TimeSpan LongestGap
    {
        get
        {
            lock (_lock)
            {
                return _longestGap;
            }
        }
    }

    public void Start() => _loop = RunAsync(_stop.Token);

    public async Task WaitForAcknowledgedAsync(int count, CancellationToken ct)
    {
        while (true)
        {
            Task changed;
            lock (_lock)
            {
                if (_acknowledged.Count >= count)
                {
                    return;
                }

                changed = _changed.Task;
            }

            await changed.WaitAsync(ct);
        }
    }

    public async Task WaitForNodeAsync(string node, CancellationToken ct)
    {
        while (true)
        {
            Task changed;
            lock (_lock)
            {
                if (WritingTo == node)
                {
                    return;
                }

                changed = _changed.Task;
            }

            await changed.WaitAsync(TimeSpan.FromSeconds(60), time, ct);
        }
    }

    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        await _loop;
    }

    /// <summary>How many acknowledged writes <paramref name="host"/> does not hold.</summary>
    public async Task<int> MissingOnAsync(SimHost host, CancellationToken ct) => (await MissingWritesOnAsync(host, ct)).Count;

    /// <summary>The acknowledged writes <paramref name="host"/> does not hold, each with the node that acknowledged it.</summary>
    public async Task<IReadOnlyList<(long Seq, string AcknowledgedBy)>> MissingWritesOnAsync(SimHost host, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(host);
        var dump = await host.RunAsync(ct, "sim", "dump", SimHost.Resource);
        var present = dump.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
        lock (_lock)
        {
            return [.. _acknowledged.Where(seq => !present.Contains(string.Create(CultureInfo.InvariantCulture, $"demo-{seq}={seq}"))).Select(seq => (seq, _acknowledgedBy[seq]))];
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _stop.Dispose();
    }

    private async Task RunAsync(CancellationToken ct)
    {
        var target = a;
        try
        {
            for (long seq = 1; !ct.IsCancellationRequested; seq++)
            {
                var text = seq.ToString(CultureInfo.InvariantCulture);
                var acknowledged = false;
                foreach (var host in target == a ? new[] { a, b } : [b, a])
                {
                    if (await TryWriteAsync(host, "demo-" + text, text, ct))
                    {
                        target = host;
                        Acknowledge(seq, host.Node);
                        acknowledged = true;
                        break;
                    }
                }

                if (!acknowledged)
                {
                    WritingTo = null;
                }

                await Task.Delay(Interval, time, ct);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    private static async Task<bool> TryWriteAsync(SimHost host, string key, string value, CancellationToken ct)
    {
        try
        {
            using var attempt = CancellationTokenSource.CreateLinkedTokenSource(ct);
            attempt.CancelAfter(TimeSpan.FromSeconds(1));   // a frozen device: try the other server
            return (await host.WriteAsync(key, value, attempt.Token)).ExitCode == 0;
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException || (e is OperationCanceledException && !ct.IsCancellationRequested))
        {
            return false;   // the server is down: not acknowledged
        }
    }

    private void Acknowledge(long seq, string node)
    {
        TaskCompletionSource changed;
        lock (_lock)
        {
            _acknowledged.Add(seq);
            _acknowledgedBy[seq] = node;
            var now = time.GetTimestamp();
            if (_lastAckTimestamp is { } last && time.GetElapsedTime(last, now) > _longestGap)
            {
                _longestGap = time.GetElapsedTime(last, now);
            }

            _lastAckTimestamp = now;
            WritingTo = node;
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        changed.TrySetResult();
    }
}
