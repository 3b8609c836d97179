using System.Globalization;
using HaMesh.Coordinator.Events;
using Prometheus;

namespace HaMesh.Coordinator.Metrics;

/// <summary>
/// Counts what the event log says, reading it from where it stood when the coordinator started (Prometheus
/// counters are per process). Failovers and switchovers: <c>{Op}Started</c> opens an operation on its
/// resource, <c>{Op}Completed</c> ends it completed; <c>{Op}Failed</c>, or a PromoteFailed / OvhMoveFailed /
/// OperationFailed for that resource while it is open, ends it failed (counted once).
/// </summary>
internal sealed class EventLogMetrics
{
    private const int Batch = 500;
    private static readonly string[] Operations = ["Failover", "Switchover"];
    private static readonly HashSet<string> FailureKinds = new(StringComparer.Ordinal) { "PromoteFailed", "OvhMoveFailed", "IpRoutedButUnreachable" };

    private readonly Lock _lock = new();
    private readonly IEventLog _log;
    private readonly Dictionary<string, string> _open = new(StringComparer.Ordinal);
    private readonly Counter _events;
    private readonly Counter _started;
    private readonly Counter _outcomes;
    private readonly Histogram _failoverPhase;
    private readonly Counter _ovhCalls;
    private readonly Histogram _ovhDuration;
    private readonly Counter _ovhErrors;
    private readonly Counter _ovhMoves;
    private ulong _after;

    public EventLogMetrics(MetricFactory factory, IEventLog log)
    {
        _log = log;
        _events = factory.CreateCounter("hamesh_coordinator_events_total", "Events appended to the event log, by kind and severity.", "kind", "severity");
        _started = factory.CreateCounter("hamesh_coordinator_operations_started_total", "Failovers and switchovers started.", "operation");
        _outcomes = factory.CreateCounter("hamesh_coordinator_operations_total", "Failovers and switchovers finished, by outcome (completed, failed).", "operation", "outcome");
        _failoverPhase = factory.CreateHistogram("hamesh_coordinator_failover_phase_seconds",
            "Time from detecting the failure to each phase of a completed failover: decided (decision latency), promoted, verified (IP moved and proven reachable).",
            new HistogramConfiguration { LabelNames = ["phase"], Buckets = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600] });
        _ovhCalls = factory.CreateCounter("hamesh_coordinator_ovh_calls_total", "OVH API calls, by method, operation (ip, task, move) and HTTP status (none = no answer).", "method", "operation", "status");
        _ovhDuration = factory.CreateHistogram("hamesh_coordinator_ovh_call_duration_seconds", "OVH API call latency.",
            new HistogramConfiguration { LabelNames = ["method", "operation"], Buckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] });
        _ovhErrors = factory.CreateCounter("hamesh_coordinator_ovh_errors_total", "OVH API calls that failed, by HTTP status (none = no answer).", "status");
        _ovhMoves = factory.CreateCounter("hamesh_coordinator_ovh_moves_total", "Failover IP move workflows, by outcome (AlreadyRouted, Moved, Failed, ...).", "outcome");
        foreach (var op in Operations)
        {
            _started.WithLabels(Label(op));
            _outcomes.WithLabels(Label(op), "completed");
            _outcomes.WithLabels(Label(op), "failed");
        }

        // Start at the end of the log: events of earlier runs were counted by earlier processes.
        while (log.List(_after, Batch) is { Count: > 0 } batch)
        {
            _after = batch[^1].Sequence;
        }
    }

    /// <summary>Reads and counts every event appended since the last call.</summary>
    public void CatchUp()
    {
        lock (_lock)
        {
            while (_log.List(_after, Batch) is { Count: > 0 } batch)
            {
                foreach (var e in batch)
                {
                    Count(e.Record);
                    _after = e.Sequence;
                }

                if (batch.Count < Batch)
                {
                    break;
                }
            }
        }
    }

    private void Count(EventRecord e)
    {
        _events.WithLabels(e.Kind, e.Severity.ToString().ToLowerInvariant()).Inc();
        if (e.Kind == "OvhCall")
        {
            CountOvhCall(e);
            return;
        }

        if (e.Kind is "OvhMoveCompleted" or "OvhMoveFailed" && e.Attributes.TryGetValue("outcome", out var moveOutcome))
        {
            _ovhMoves.WithLabels(moveOutcome).Inc();
        }

        // The executor ends every operation with one terminal event carrying its outcome
        // (completed, aborted, rolledback, routedunverified, failed, abandoned).
        if (e.Attributes.GetValueOrDefault("terminal") == "true" && e.Attributes.TryGetValue("outcome", out var terminal)
            && Operations.FirstOrDefault(o => e.Kind.StartsWith(o, StringComparison.Ordinal)) is { } ended)
        {
            _outcomes.WithLabels(Label(ended), terminal).Inc();
            _open.Remove(e.Resource);
            if (ended == "Failover" && terminal == "completed")
            {
                ObservePhases(e);
            }

            return;
        }

        foreach (var op in Operations)
        {
            if (e.Kind == op + "Started")
            {
                _started.WithLabels(Label(op)).Inc();
                _open[e.Resource] = op;
            }
            else if (e.Kind == op + "Completed")
            {
                _outcomes.WithLabels(Label(op), "completed").Inc();
                _open.Remove(e.Resource);
                if (op == "Failover")
                {
                    ObservePhases(e);
                }
            }
            else if (e.Kind == op + "Failed")
            {
                Fail(e.Resource, op);
            }
        }

        if (FailureKinds.Contains(e.Kind) && _open.TryGetValue(e.Resource, out var open))
        {
            Fail(e.Resource, open);
        }
    }

    private void Fail(string resource, string op)
    {
        if (_open.TryGetValue(resource, out var open) && open == op)
        {
            _outcomes.WithLabels(Label(op), "failed").Inc();
            _open.Remove(resource);
        }
    }

    private void ObservePhases(EventRecord e)
    {
        foreach (var (attribute, phase) in new[] { ("decided_ms", "decided"), ("promoted_ms", "promoted"), ("verified_ms", "verified") })
        {
            if (e.Attributes.TryGetValue(attribute, out var text) && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var ms))
            {
                _failoverPhase.WithLabels(phase).Observe(ms / 1000);
            }
        }
    }

    private void CountOvhCall(EventRecord e)
    {
        var method = e.Attributes.GetValueOrDefault("method", "");
        var operation = OvhOperation(e.Attributes.GetValueOrDefault("path", ""));
        var status = e.Attributes.GetValueOrDefault("status", "0");
        var statusLabel = status == "0" ? "none" : status;
        _ovhCalls.WithLabels(method, operation, statusLabel).Inc();
        if (double.TryParse(e.Attributes.GetValueOrDefault("ms", ""), NumberStyles.Float, CultureInfo.InvariantCulture, out var ms))
        {
            _ovhDuration.WithLabels(method, operation).Observe(ms / 1000);
        }

        if (!int.TryParse(status, NumberStyles.Integer, CultureInfo.InvariantCulture, out var code) || code is 0 or >= 400)
        {
            _ovhErrors.WithLabels(statusLabel).Inc();
        }
    }

    /// <summary>The call's kind without the IP or task id (bounded label values).</summary>
    internal static string OvhOperation(string path)
    {
        var p = path.Split('?')[0];
        if (p.EndsWith("/move", StringComparison.Ordinal))
        {
            return "move";
        }

        return p.Contains("/task", StringComparison.Ordinal) ? "task" : p.StartsWith("/ip/", StringComparison.Ordinal) ? "ip" : "other";
    }

    private static string Label(string op) => op.ToLowerInvariant();
}
