using System.Collections.Concurrent;
using System.Globalization;
using Grpc.Core;
using HaMesh.Coordinator.Cloud;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Membership;
using HaMesh.Coordinator.Metrics;
using HaMesh.Coordinator.Operations;
using HaMesh.Coordinator.Store;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Failover;
using HaMesh.Shared.Hosting;
using Microsoft.Extensions.Options;

namespace HaMesh.Coordinator.Failover;

/// <summary>
/// Every heartbeat: build the view, call the pure <see cref="FailoverPolicy.Decide"/>, and carry out
/// what it returns, one operation per resource at a time. Failover sequence (design §4): persist
/// generation g+1 and FailoverStarted → Promote(r, g+1) on the candidate → OVH move workflow →
/// Ping through the failover IP naming the new primary and generation → FailoverCompleted with
/// timings. Every failure is an event; a failed operation backs off before the decision is retried.
/// </summary>
public sealed partial class DecisionLoop(
    IOptions<HaMeshOptions> options,
    ClusterViewBuilder views,
    SqliteStore store,
    IAgentCommands agents,
    IServiceProvider services,
    FailoverIpVerifier verifier,
    IpRoutingCache routes,
    TimeProvider time,
    ILogger<DecisionLoop> logger,
    LoopHealth? health = null,
    CoordinatorMetrics? metrics = null) : BackgroundService
{
    private readonly HaMeshOptions _options = options.Value;
    private readonly ConcurrentDictionary<string, Task> _inFlight = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, (int Failures, long Until)> _backoff = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _lastHold = new(StringComparer.Ordinal);

    /// <summary>Decisions made so far (tests and metrics).</summary>
    public int Decisions => _decisions;

    private int _decisions;

    /// <summary>Name under which the loop beats for the systemd watchdog.</summary>
    public const string HealthName = "decision-loop";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        health?.Register(HealthName, TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(10).Ticks, _options.Cluster.Timings.Heartbeat.Ticks * 20)));
        while (!stoppingToken.IsCancellationRequested)
        {
            await TickAsync(stoppingToken);
            try
            {
                await Task.Delay(_options.Cluster.Timings.Heartbeat, time, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        await Task.WhenAll(_inFlight.Values);
    }

    /// <summary>One decision round (tests drive it directly).</summary>
    public async Task TickAsync(CancellationToken ct)
    {
        var detectedAt = time.GetTimestamp();
        var busy = _inFlight.Keys.ToHashSet(StringComparer.Ordinal);
        var view = views.Build(busy);
        foreach (var decision in FailoverPolicy.Decide(view, views.HaOptions, views.Now))
        {
            if (decision is Decision.Hold hold)
            {
                if (!_lastHold.TryGetValue(hold.Resource, out var previous) || previous != hold.Reason)
                {
                    _lastHold[hold.Resource] = hold.Reason;
                    Log.Holding(logger, hold.Resource, hold.Reason);
                }

                continue;
            }

            _lastHold.Remove(decision.Resource);
            if (_backoff.TryGetValue(decision.Resource, out var b) && time.GetTimestamp() < b.Until)
            {
                continue;
            }

            if (!_inFlight.TryAdd(decision.Resource, Task.CompletedTask))
            {
                continue;
            }

            Interlocked.Increment(ref _decisions);
            _inFlight[decision.Resource] = Task.Run(() => RunAsync(decision, detectedAt, ct), CancellationToken.None);
        }

        health?.Beat(HealthName);
        metrics?.DecisionTick(time.GetElapsedTime(detectedAt));
    }

    private async Task RunAsync(Decision decision, long detectedAt, CancellationToken ct)
    {
        bool ok;
        try
        {
            ok = decision switch
            {
                Decision.Adopt a => Adopt(a) && await PromoteAsync(a.Resource, a.Node, 1, "adopted: tell the agent its generation (every step is already done)", ct),
                Decision.Failover f => await FailoverAsync(f, detectedAt, ct),
                Decision.EnsurePrimary e => await PromoteAsync(e.Resource, e.Node, e.Generation, e.Reason, ct),
                Decision.MoveIp m => await MoveIpAsync(m.Resource, m.Node, m.Generation, m.Ip, ct) is not null,
                Decision.Demote d => await DemoteAsync(d, ct),
                Decision.SplitBrainAlert s => await AlertOnceAsync(s.Resource, "SplitBrain", $"{s.Reason}. Recovery: {s.RecoveryCommands}", s.Victim, ct),
                Decision.Halt h => await AlertOnceAsync(h.Resource, "Halted", h.Reason, "", ct),
                _ => true,
            };
        }
        catch (Exception ex) when (ex is RpcException or OperationCanceledException or InvalidOperationException or HttpRequestException)
        {
            ok = false;
            await EventAsync(new EventRecord("OperationFailed", $"{decision.GetType().Name} for {decision.Resource}: {ex.Message}", decision.Resource, Severity: EventSeverity.Critical));
        }
        finally
        {
            _inFlight.TryRemove(decision.Resource, out _);
        }

        if (ok)
        {
            _backoff.TryRemove(decision.Resource, out _);
        }
        else
        {
            var failures = _backoff.TryGetValue(decision.Resource, out var b) ? b.Failures + 1 : 1;
            var delay = TimeSpan.FromSeconds(Math.Min(60, Math.Pow(2, failures - 1)));
            _backoff[decision.Resource] = (failures, time.GetTimestamp() + (long)(delay.TotalSeconds * time.TimestampFrequency));
        }
    }

    private bool Adopt(Decision.Adopt a)
    {
        var generation = store.AdvanceGeneration(a.Resource, 0, a.Node, new EventRecord("Adopted", a.Reason, a.Resource, a.Node), isFailover: false);
        Log.Decided(logger, a.Resource, "Adopt", a.Reason);
        return generation == 1;
    }

    private async Task<bool> FailoverAsync(Decision.Failover f, long detectedAt, CancellationToken ct)
    {
        var decidedAt = time.GetTimestamp();
        Log.Decided(logger, f.Resource, "Failover", f.Reason);
        // Persisted (fsync, WAL synchronous=FULL) before it is used: a restarted coordinator never reuses it.
        var generation = store.AdvanceGeneration(f.Resource, f.NewGeneration - 1, f.To,
            new EventRecord("FailoverStarted", $"{f.From} → {f.To}: {f.Reason}", f.Resource, f.To, Severity: EventSeverity.Critical), isFailover: true);
        if (!await PromoteAsync(f.Resource, f.To, generation, f.Reason, ct))
        {
            return false;
        }

        var promotedAt = time.GetTimestamp();
        var resource = _options.FindResource(f.Resource)!;
        var timings = new List<string>();
        foreach (var ip in resource.FailoverIps)
        {
            if (await MoveIpAsync(f.Resource, f.To, generation, ip, ct) is not { } t)
            {
                return false;
            }

            timings.Add(t);
        }

        string Ms(long at) => time.GetElapsedTime(detectedAt, at).TotalMilliseconds.ToString("0", CultureInfo.InvariantCulture);
        await EventAsync(new EventRecord("FailoverCompleted",
            $"{f.To} is primary of {f.Resource} at generation {generation}; decided +{Ms(decidedAt)} ms, promoted +{Ms(promotedAt)} ms, {string.Join("; ", timings)}",
            f.Resource, f.To, generation, EventSeverity.Warning)
        {
            Attributes = new Dictionary<string, string>
            {
                ["from"] = f.From,
                ["decided_ms"] = Ms(decidedAt),
                ["promoted_ms"] = Ms(promotedAt),
                ["verified_ms"] = Ms(time.GetTimestamp()),
            },
        });
        return true;
    }

    private async Task<bool> PromoteAsync(string resource, string node, ulong generation, string reason, CancellationToken ct)
    {
        var result = await agents.PromoteAsync(node, new PromoteRequest { Resource = resource, Generation = generation, Reason = reason }, ct);
        await EventAsync(new EventRecord(result.Success ? "Promoted" : "PromoteFailed", $"{node}: {result.Message}", resource, node, generation, result.Success ? EventSeverity.Info : EventSeverity.Critical));
        return result.Success;
    }

    /// <returns>A timing summary when the IP is routed to the node and proven reachable through it; null otherwise.</returns>
    private async Task<string?> MoveIpAsync(string resource, string node, ulong generation, string ip, CancellationToken ct)
    {
        var cloud = services.GetService<ICloudIpProvider>();
        var serviceName = _options.FindNode(node)?.ServiceName ?? "";
        if (cloud is null)
        {
            await EventAsync(new EventRecord("OvhMoveFailed", $"{ip}: no cloud provider configured", resource, node, generation, EventSeverity.Critical));
            return null;
        }

        var start = time.GetTimestamp();
        MoveOutcome outcome;
        try
        {
            outcome = await cloud.EnsureRoutedAsync(ip, serviceName, ct);
        }
        catch (Exception ex) when (ex is InvalidOperationException or Ovh.OvhException)
        {
            await EventAsync(new EventRecord("OvhMoveFailed", $"{ip}: {ex.Message}", resource, node, generation, EventSeverity.Critical));
            return null;
        }

        if (outcome.Kind is not (MoveOutcomeKind.AlreadyRouted or MoveOutcomeKind.Moved))
        {
            return null;
        }

        var routedAt = time.GetTimestamp();
        routes.Record(new FailoverIpStatus { Ip = ip, RoutedToNode = node, RoutedToService = serviceName, CheckedAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(time.GetUtcNow()) });
        var verified = await verifier.VerifyAsync(resource, ip, node, generation, ct);
        await EventAsync(new EventRecord(verified.Outcome == VerifyOutcome.Verified ? "IpVerified" : "IpRoutedButUnreachable", verified.Detail, resource, node, generation,
            verified.Outcome == VerifyOutcome.Verified ? EventSeverity.Info : EventSeverity.Warning));
        return string.Create(CultureInfo.InvariantCulture,
            $"{ip}: {outcome.Kind} with {outcome.Posts} POST in {time.GetElapsedTime(start, routedAt).TotalMilliseconds:0} ms, end-to-end check {verified.Outcome}");
    }

    private async Task<bool> DemoteAsync(Decision.Demote d, CancellationToken ct)
    {
        Log.Decided(logger, d.Resource, "Demote", d.Reason);
        var result = await agents.DemoteAsync(d.Node, new DemoteRequest { Resource = d.Resource, Generation = d.Generation, Reconnect = true, DiscardMyData = d.DiscardMyData, Reason = d.Reason }, ct);
        await EventAsync(new EventRecord(result.Success ? "Rejoined" : "DemoteFailed", $"{d.Node}: {d.Reason}; {result.Message}", d.Resource, d.Node, d.Generation, result.Success ? EventSeverity.Warning : EventSeverity.Critical));
        return result.Success;
    }

    private readonly ConcurrentDictionary<string, string> _alerted = new(StringComparer.Ordinal);

    private async Task<bool> AlertOnceAsync(string resource, string kind, string message, string node, CancellationToken ct)
    {
        if (_alerted.TryGetValue(resource + kind, out var last) && last == message)
        {
            return true;
        }

        _alerted[resource + kind] = message;
        await EventAsync(new EventRecord(kind, message, resource, node, Severity: EventSeverity.Critical));
        _ = ct;
        return true;
    }

    private Task<StoredEvent> EventAsync(EventRecord record) => store.AppendAsync(record, CancellationToken.None).AsTask();

    private static partial class Log
    {
        [LoggerMessage(EventId = 2201, Level = LogLevel.Information, Message = "{Resource}: holding: {Reason}")]
        public static partial void Holding(ILogger logger, string resource, string reason);

        [LoggerMessage(EventId = 2202, Level = LogLevel.Warning, Message = "{Resource}: decided {Decision}: {Reason}")]
        public static partial void Decided(ILogger logger, string resource, string decision, string reason);
    }
}
