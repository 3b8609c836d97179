using System.Globalization;
using Grpc.Core;
using HaMesh.Protocol.V1;

namespace HaMesh.Testing.Lab;

/// <summary>
/// Samples the coordinator's cluster status every <c>period</c> while a scenario runs and records any
/// violation of the invariants it can observe (design §4.2): at most one reachable node reports DRBD
/// Primary (I1/I2 as far as reports show), the generation the coordinator holds and the generation each
/// agent reports never decrease (I4). <see cref="EventViolations"/> checks I5 on the event log: every
/// "decided Failover" audit line has its FailoverStarted event, and every FailoverStarted has an outcome.
/// </summary>
public sealed class InvariantMonitor : IAsyncDisposable
{
    private readonly CoordinatorService.CoordinatorServiceClient _client;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private readonly Lock _lock = new();
    private readonly List<string> _violations = [];
    private readonly Dictionary<string, ulong> _highest = new(StringComparer.Ordinal);
    private int _samples;

    public InvariantMonitor(CoordinatorService.CoordinatorServiceClient client, TimeSpan period)
    {
        _client = client;
        _loop = Task.Run(() => RunAsync(period));
    }

    public int Samples => Volatile.Read(ref _samples);

    public IReadOnlyList<string> Violations
    {
        get
        {
            lock (_lock)
            {
                return [.. _violations];
            }
        }
    }

    /// <summary>An event that tells how a failover went: its terminal event (FailoverCompleted/Failed/Abandoned…), or a failure an operator must see first.</summary>
    public static bool IsFailoverOutcome(ClusterEvent e) =>
        e.Kind is "OvhMoveFailed" or "IpRoutedButUnreachable"
        || (e.Kind.StartsWith("Failover", StringComparison.Ordinal) && e.Attributes.GetValueOrDefault("terminal") == "true");

    /// <summary>I5 on the recorded events: each decided failover has a FailoverStarted event and each FailoverStarted an outcome event after it.</summary>
    public static IReadOnlyList<string> EventViolations(IReadOnlyList<ClusterEvent> events, int decidedFailovers, bool allowInFlight = false)
    {
        var problems = new List<string>();
        var started = events.Where(e => e.Kind == "FailoverStarted").ToList();
        if (started.Count != decidedFailovers)
        {
            problems.Add($"{decidedFailovers} 'decided Failover' log lines but {started.Count} FailoverStarted events");
        }

        foreach (var s in started)
        {
            var outcome = events.FirstOrDefault(e => e.Sequence > s.Sequence && IsFailoverOutcome(e));
            if (outcome is null && !allowInFlight)
            {
                problems.Add($"FailoverStarted #{s.Sequence} (generation {s.Generation}) has no outcome event");
            }
        }

        ulong last = 0;
        foreach (var e in events.Where(e => e.Kind is "FailoverStarted" or "Promoted" or "FailoverCompleted" && e.Generation > 0))
        {
            if (e.Generation < last)
            {
                problems.Add($"event #{e.Sequence} {e.Kind} at generation {e.Generation} after generation {last}");
            }

            last = Math.Max(last, e.Generation);
        }

        return problems;
    }

    private async Task RunAsync(TimeSpan period)
    {
        using var timer = new PeriodicTimer(period, TimeProvider.System);
        try
        {
            do
            {
                try
                {
                    var status = await _client.GetClusterStatusAsync(new GetClusterStatusRequest(), deadline: Deadline(), cancellationToken: _stop.Token);
                    Check(status);
                    Interlocked.Increment(ref _samples);
                }
                catch (RpcException) when (!_stop.IsCancellationRequested)
                {
                    // coordinator down (witness scenarios): nothing to sample
                }
            }
            while (await timer.WaitForNextTickAsync(_stop.Token));
        }
        catch (Exception ex) when (ex is OperationCanceledException or RpcException)
        {
        }
    }

    private void Check(ClusterStatus status)
    {
        lock (_lock)
        {
            foreach (var r in status.Resources)
            {
                Monotonic($"coordinator generation of {r.Resource}", r.Generation);
                var primaries = status.Nodes
                    .Where(n => n.Reachability == Reachability.Reachable && n.LastReport is not null)
                    .Where(n => n.LastReport.Resources.Any(x => x.Resource == r.Resource && x.Drbd?.Role == DrbdRole.Primary))
                    .Select(n => n.Node).ToList();
                if (primaries.Count > 1)
                {
                    _violations.Add($"{Now()}: {primaries.Count} reachable nodes report Primary for {r.Resource}: {string.Join(", ", primaries)}");
                }
            }

            foreach (var n in status.Nodes.Where(n => n.LastReport is not null))
            {
                foreach (var x in n.LastReport.Resources)
                {
                    Monotonic($"generation reported by {n.Node} for {x.Resource}", x.Generation);
                }
            }
        }
    }

    private void Monotonic(string what, ulong value)
    {
        if (_highest.TryGetValue(what, out var previous) && value < previous)
        {
            _violations.Add($"{Now()}: {what} went down from {previous} to {value}");
        }

        _highest[what] = Math.Max(previous, value);
    }

    private static string Now() => TimeProvider.System.GetUtcNow().ToString("HH:mm:ss.fff", CultureInfo.InvariantCulture);

    private static DateTime Deadline() =>
#pragma warning disable RS0030 // gRPC deadlines are evaluated on the library's wall clock (style R15)
        DateTime.UtcNow.AddSeconds(5);
#pragma warning restore RS0030

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
    }
}
