using System.Collections.Concurrent;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Membership;
using HaMesh.Coordinator.Metrics;
using HaMesh.Coordinator.Store;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Failover;
using HaMesh.Shared.Hosting;
using Microsoft.Extensions.Options;

namespace HaMesh.Coordinator.Failover;

/// <summary>
/// Builds the view, calls the pure <see cref="FailoverPolicy.Decide"/>, and hands what it returns to the
/// <see cref="OperationExecutor"/>, one operation per resource at a time (the executor's slots are shared
/// with operator switchovers). It decides whenever the live view changes (a report carries the votes), at
/// the exact instant <see cref="FailoverPolicy.NextDecisionAt"/> names (the silent primary crosses lease +
/// drift margin), and at least every heartbeat. On start, operations a previous run left in flight are
/// resumed or abandoned first. A failed operation backs off before the decision is retried.
/// </summary>
public sealed partial class DecisionLoop(
    IOptions<HaMeshOptions> options,
    ClusterViewBuilder views,
    NodeRegistry registry,
    SqliteStore store,
    OperationExecutor executor,
    TimeProvider time,
    ILogger<DecisionLoop> logger,
    LoopHealth? health = null,
    CoordinatorMetrics? metrics = null) : BackgroundService
{
    private readonly HaMeshOptions _options = options.Value;
    private readonly ConcurrentDictionary<string, (int Failures, long Until)> _backoff = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _lastHold = new(StringComparer.Ordinal);
    private readonly Lock _tick = new();
    private readonly HashSet<string> _blocked = new(StringComparer.Ordinal);

    /// <summary>Decisions made so far (tests and metrics).</summary>
    public int Decisions => _decisions;

    private int _decisions;

    // The clock reading the last round decided at: a decision that fell due while that round ran is not put off a heartbeat.
    private MonoTime _lastRoundAt;

    /// <summary>Whether an operation is running for <paramref name="resource"/> (operator calls wait for it).</summary>
    public bool IsBusy(string resource) => executor.Busy.Contains(resource);

    /// <summary>Name under which the loop beats for the systemd watchdog.</summary>
    public const string HealthName = "decision-loop";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        health?.Register(HealthName, TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(10).Ticks, _options.Cluster.Timings.Heartbeat.Ticks * 20)));
        executor.ResumePending();
        while (!stoppingToken.IsCancellationRequested)
        {
            // Armed before the round, so a report that arrives during it wakes the next one.
            using var wake = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
            var changed = registry.WaitForChangeAsync(wake.Token);
            await TickAsync(stoppingToken);
            await Task.WhenAny(changed, Task.Delay(NextDelay(), time, wake.Token));
            await wake.CancelAsync();
        }

        await executor.WhenIdleAsync();
    }

    /// <summary>
    /// Until the next decision round: a heartbeat, or less when a failover becomes possible sooner, or none when
    /// it became possible after the last round decided (the clock moved while that round ran).
    /// </summary>
    public TimeSpan NextDelay()
    {
        var delay = _options.Cluster.Timings.Heartbeat;
        if (FailoverPolicy.NextDecisionAt(views.Build(executor.Busy), views.HaOptions) is { } at)
        {
            var until = at - views.Now;
            if (until <= TimeSpan.Zero && at > _lastRoundAt)
            {
                return TimeSpan.Zero;
            }

            if (until > TimeSpan.Zero && until < delay)
            {
                delay = until;
            }
        }

        return delay;
    }

    /// <summary>One decision round (tests drive it directly; the loop runs them one at a time). Returns the operations it started.</summary>
    public Task<IReadOnlyList<Task<bool>>> TickAsync(CancellationToken ct)
    {
        _ = ct;
        lock (_tick)
        {
            return Task.FromResult<IReadOnlyList<Task<bool>>>(Tick());
        }
    }

    private List<Task<bool>> Tick()
    {
        var detectedAt = time.GetTimestamp();
        var view = views.Build(executor.Busy);
        var started = new List<Task<bool>>();
        var now = views.Now;
        _lastRoundAt = now;
        foreach (var decision in FailoverPolicy.Decide(view, views.HaOptions, now))
        {
            if (decision is Decision.Hold hold)
            {
                if (!_lastHold.TryGetValue(hold.Resource, out var previous) || previous != hold.Reason)
                {
                    _lastHold[hold.Resource] = hold.Reason;
                    Log.Holding(logger, hold.Resource, hold.Reason);
                }

                // The hold an operator must hear of (every decision has its event): the primary is gone and no node
                // may take over. Once per outage (the silence in the reason grows every round).
                if (!hold.FailoverBlocked)
                {
                    _blocked.Remove(hold.Resource);
                }
                else if (_blocked.Add(hold.Resource))
                {
                    _ = store.AppendAsync(new EventRecord("FailoverBlocked", hold.Reason, hold.Resource, "", Severity: EventSeverity.Critical), CancellationToken.None).AsTask();
                }

                continue;
            }

            _lastHold.Remove(decision.Resource);
            if (_backoff.TryGetValue(decision.Resource, out var b) && time.GetTimestamp() < b.Until)
            {
                continue;
            }

            if (executor.TryReserve(decision.Resource, decision is Decision.Failover ? OperationKinds.Failover : decision.GetType().Name) is not { } slot)
            {
                continue;
            }

            Interlocked.Increment(ref _decisions);
            var task = executor.Launch(slot, c => RunAsync(slot, decision, detectedAt, c));
            started.Add(task);
            _ = TrackAsync(decision.Resource, task);
        }

        health?.Beat(HealthName);
        metrics?.DecisionTick(time.GetElapsedTime(detectedAt));
        return started;
    }

    private async Task TrackAsync(string resource, Task<bool> operation)
    {
        if (await operation)
        {
            _backoff.TryRemove(resource, out _);
            return;
        }

        var failures = _backoff.TryGetValue(resource, out var b) ? b.Failures + 1 : 1;
        var delay = TimeSpan.FromSeconds(Math.Min(60, Math.Pow(2, failures - 1)));
        _backoff[resource] = (failures, time.GetTimestamp() + (long)(delay.TotalSeconds * time.TimestampFrequency));
    }

    private async Task<bool> RunAsync(OperationSlot slot, Decision decision, long detectedAt, CancellationToken ct) => decision switch
    {
        Decision.Adopt a => Adopt(a) && (await executor.PromoteStepAsync(a.Resource, a.Node, a.Generation, "adopted: tell the agent its generation (every step is already done)", false, slot.Id, ct)).Ok,
        Decision.Failover f => await FailoverAsync(slot, f, detectedAt, ct),
        Decision.EnsurePrimary e => (await executor.PromoteStepAsync(e.Resource, e.Node, e.Generation, e.Reason, false, slot.Id, ct)).Ok,
        Decision.MoveIp m => (await executor.MoveAndVerifyAsync(m.Resource, m.Node, m.Generation, m.Ip, null, ct)).Kind == MoveResultKind.Verified,
        Decision.Demote d => await RejoinAsync(slot, d, ct),
        Decision.ClearOutdated c => ClearOutdated(c),
        Decision.SplitBrainAlert s => await AlertOnceAsync(s.Resource, "SplitBrain", $"{s.Reason}. Recovery: {ExactCommands(s.Resource, s.RecoveryCommands)}", s.Victim),
        Decision.Halt h => await AlertOnceAsync(h.Resource, "Halted", h.Reason, ""),
        _ => true,
    };

    private bool Adopt(Decision.Adopt a)
    {
        var generation = store.AdvanceGeneration(a.Resource, 0, a.Node, new EventRecord("Adopted", a.Reason, a.Resource, a.Node), isFailover: false, to: a.Generation);
        Log.Decided(logger, a.Resource, "Adopt", a.Reason);
        return generation == a.Generation;
    }

    private Task<bool> FailoverAsync(OperationSlot slot, Decision.Failover f, long detectedAt, CancellationToken ct)
    {
        var decidedAt = time.GetTimestamp();
        Log.Decided(logger, f.Resource, "Failover", f.Reason);
        // Persisted (fsync, WAL synchronous=FULL) with the in-flight record before it is used: a restarted coordinator never reuses it.
        var plan = executor.BeginFailover(slot, f);
        return executor.RunAsync(plan, detectedAt, decidedAt, ct);
    }

    private bool ClearOutdated(Decision.ClearOutdated c)
    {
        Log.Decided(logger, c.Resource, "ClearOutdated", c.Reason);
        store.ClearOutdated(c.Resource, c.Node, new EventRecord("OutdatedCleared", c.Reason, c.Resource, c.Node, c.OutdatedAt));
        return true;
    }

    private async Task<bool> RejoinAsync(OperationSlot slot, Decision.Demote d, CancellationToken ct)
    {
        Log.Decided(logger, d.Resource, "Demote", d.Reason);
        var result = await executor.DemoteStepAsync(d.Resource, d.Node, d.Generation, reconnect: true, d.DiscardMyData, d.Reason, slot.Id, ct);
        if (result.Ok)
        {
            await store.AppendAsync(new EventRecord("Rejoined", $"{d.Node} rejoined as Secondary at generation {d.Generation}{(d.DiscardMyData ? ", its divergent changes discarded (split-brain policy DiscardOldPrimary)" : "")}", d.Resource, d.Node, d.Generation, EventSeverity.Warning), CancellationToken.None);
        }

        return result.Ok;
    }

    /// <summary>The policy's recovery commands name the DRBD resource as RES; the event gives the exact ones.</summary>
    private string ExactCommands(string resource, string commands) =>
        _options.FindResource(resource) is { } r ? System.Text.RegularExpressions.Regex.Replace(commands, @"\bRES\b", r.DrbdResource) : commands;

    private readonly ConcurrentDictionary<string, string> _alerted = new(StringComparer.Ordinal);

    private async Task<bool> AlertOnceAsync(string resource, string kind, string message, string node)
    {
        if (_alerted.TryGetValue(resource + kind, out var last) && last == message)
        {
            return true;
        }

        _alerted[resource + kind] = message;
        await store.AppendAsync(new EventRecord(kind, message, resource, node, Severity: EventSeverity.Critical), CancellationToken.None);
        return true;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 2201, Level = LogLevel.Information, Message = "{Resource}: holding: {Reason}")]
        public static partial void Holding(ILogger logger, string resource, string reason);

        [LoggerMessage(EventId = 2202, Level = LogLevel.Warning, Message = "{Resource}: decided {Decision}: {Reason}")]
        public static partial void Decided(ILogger logger, string resource, string decision, string reason);
    }
}
