using System.Collections.Concurrent;
using System.Globalization;
using Grpc.Core;
using HaMesh.Coordinator.Cloud;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Membership;
using HaMesh.Coordinator.Operations;
using HaMesh.Coordinator.Store;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Failover;
using Microsoft.Extensions.Options;

namespace HaMesh.Coordinator.Failover;

/// <summary>A reserved per-resource operation slot: at most one failover/switchover/force-promote/repair per resource at a time.</summary>
public sealed record OperationSlot(string Id, string Resource, string Kind);

public enum MoveResultKind
{
    /// <summary>OVH routes the IP to the node and the node answered Ping through it at the generation.</summary>
    Verified = 0,

    /// <summary>The move workflow did not get the IP routed to the node.</summary>
    NotRouted = 1,

    /// <summary>Routed per OVH, but the end-to-end check through the IP failed on every attempt (routed-but-unreachable).</summary>
    Unverified = 2,
}

public sealed record MoveResult(MoveResultKind Kind, string Detail);

/// <summary>
/// Carries out the coordinator's operations, for the decision loop (failover, promote, IP moves, rejoin)
/// and for operators (switchover, force-promote), with one sequence (design §4):
/// persist generation g+1 with the Started event and the in-flight record (one transaction, fsync) →
/// [demote the old primary at g+1, then record the target as primary] → Promote(target, g+1) → OVH move
/// workflow (reads routedTo first; never a blind second POST) → Ping through the failover IP naming the
/// target and g+1 → Completed with timings. Every step's outcome is an event; the in-flight record moves
/// phase after each step so that a restarted coordinator can resume (or safely abandon) the operation
/// after re-reading the agents and OVH (<see cref="ResumePending"/>).
/// </summary>
public sealed partial class OperationExecutor(
    IOptions<HaMeshOptions> options,
    SqliteStore store,
    IAgentCommands agents,
    IServiceProvider services,
    FailoverIpVerifier verifier,
    IpRoutingCache routes,
    LeaseGrantor leases,
    IHostApplicationLifetime lifetime,
    TimeProvider time,
    ILogger<OperationExecutor> logger)
{
    /// <summary>End-to-end checks through the failover IP before the outcome is "routed but unreachable".</summary>
    public const int VerifyAttempts = 5;

    private readonly HaMeshOptions _options = options.Value;
    private readonly ConcurrentDictionary<string, (OperationSlot Slot, Task<bool> Task)> _inFlight = new(StringComparer.Ordinal);

    /// <summary>Resources with an operation running now.</summary>
    public IReadOnlySet<string> Busy => _inFlight.Keys.ToHashSet(StringComparer.Ordinal);

    public OperationSlot? Running(string resource) => _inFlight.TryGetValue(resource, out var e) ? e.Slot : null;

    /// <summary>Reserves the resource's slot, or returns null when an operation already holds it.</summary>
    public OperationSlot? TryReserve(string resource, string kind, string? id = null)
    {
        var slot = new OperationSlot(id ?? Guid.NewGuid().ToString("N")[..12], resource, kind);
        return _inFlight.TryAdd(resource, (slot, Task.FromResult(true))) ? slot : null;
    }

    public void Release(OperationSlot slot)
    {
        ArgumentNullException.ThrowIfNull(slot);
        if (_inFlight.TryGetValue(slot.Resource, out var entry) && ReferenceEquals(entry.Slot, slot))
        {
            _inFlight.TryRemove(new KeyValuePair<string, (OperationSlot, Task<bool>)>(slot.Resource, entry));
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/> in the background in the reserved slot and releases it at the end. The
    /// token is the host's stopping token: a stopping coordinator leaves the in-flight record for its next start.
    /// </summary>
    public Task<bool> Launch(OperationSlot slot, Func<CancellationToken, Task<bool>> body)
    {
        ArgumentNullException.ThrowIfNull(slot);
        ArgumentNullException.ThrowIfNull(body);
        var reserved = _inFlight.TryGetValue(slot.Resource, out var entry) && ReferenceEquals(entry.Slot, slot) ? entry : throw new InvalidOperationException($"slot {slot.Id} for {slot.Resource} is not reserved");
        var task = Task.Run(async () =>
        {
            var ct = lifetime.ApplicationStopping;
            try
            {
                return await body(ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                await EventAsync(new EventRecord("OperationInterrupted", $"{slot.Kind} {slot.Id} for {slot.Resource} interrupted: the coordinator is stopping; it resumes or abandons it at its next start", slot.Resource, Severity: EventSeverity.Warning));
                return false;
            }
            catch (Exception ex) when (ex is RpcException or OperationCanceledException or InvalidOperationException or HttpRequestException or Ovh.OvhException)
            {
                // An unexpected failure ends the operation (and its in-flight record, if it has one) with the reason.
                store.CompleteOperation(slot.Id, new EventRecord("OperationFailed", $"{slot.Kind} {slot.Id} for {slot.Resource}: {ex.Message}", slot.Resource, Severity: EventSeverity.Critical)
                {
                    Attributes = new Dictionary<string, string>(StringComparer.Ordinal) { ["operation"] = slot.Id, ["kind"] = slot.Kind, ["outcome"] = "failed", ["terminal"] = "true" },
                });
                return false;
            }
            finally
            {
                Release(slot);
            }
        }, CancellationToken.None);
        _inFlight.TryUpdate(slot.Resource, (slot, task), reserved);
        return task;
    }

    /// <summary>Completes when every running operation has ended.</summary>
    public Task WhenIdleAsync() => Task.WhenAll(_inFlight.Values.Select(v => v.Task));

    // ---------------- starting operations (generation g+1 is durable before this returns) ----------------

    public OperationPlan BeginFailover(OperationSlot slot, Decision.Failover f)
    {
        ArgumentNullException.ThrowIfNull(slot);
        ArgumentNullException.ThrowIfNull(f);
        var plan = new OperationPlan(slot.Id, OperationKinds.Failover, f.Resource, f.From, f.To, f.NewGeneration, f.Reason, Force: false, DemoteFirst: false);
        return Persist(plan, f.NewGeneration - 1, $"{f.From} → {f.To}: {f.Reason}", isFailover: true);
    }

    /// <summary>Switchover (and force-promote): the old primary stays the recorded primary at g+1 until it is demoted.</summary>
    public OperationPlan BeginOperatorMove(OperationSlot slot, ResourceRecord record, string target, string reason, bool force, bool demoteOld)
    {
        ArgumentNullException.ThrowIfNull(slot);
        ArgumentNullException.ThrowIfNull(record);
        var from = record.PrimaryNode;
        var plan = new OperationPlan(slot.Id, slot.Kind, record.Resource, from, target, record.Generation + 1, reason, force, demoteOld && from.Length > 0 && from != target);
        var route = from.Length == 0 ? $"(no primary recorded) → {target}" : $"{from} → {target}";
        var message = force
            ? $"FORCED promotion {route} by an operator who acknowledged possible data loss (UpToDate and outdated checks bypassed){(plan.DemoteFirst ? "" : $"; old primary {(from.Length == 0 ? "none" : from)} not reachable, not demoted")}: {reason}"
            : $"{route}: {reason}";
        if (force)
        {
            Log.ForcePromote(logger, record.Resource, target, record.Generation + 1, reason);
        }

        return Persist(plan, record.Generation, message, isFailover: false);
    }

    private OperationPlan Persist(OperationPlan plan, ulong expected, string message, bool isFailover)
    {
        var intendedPrimary = plan.DemoteFirst ? plan.From : plan.To;
        var (generation, started) = store.AdvanceGenerationWithEvent(plan.Resource, expected, intendedPrimary,
            new EventRecord(plan.Prefix + "Started", message, plan.Resource, plan.To, Severity: EventSeverity.Critical) { Attributes = Attributes(plan) },
            isFailover, plan.ToRecord(OperationPhases.Started, time.GetUtcNow()));
        Log.Started(logger, plan.Resource, plan.Kind, plan.Id, generation, message);
        return plan with { Generation = generation, StartedEventSequence = started.Sequence };
    }

    // ---------------- the sequence ----------------

    /// <summary>Runs a persisted plan from its start. <paramref name="detectedAt"/> and <paramref name="decidedAt"/> are monotonic timestamps.</summary>
    public Task<bool> RunAsync(OperationPlan plan, long detectedAt, long decidedAt, CancellationToken ct)
    {
        var clock = new Timings(time, detectedAt);
        clock.Mark("decided", decidedAt);
        return RunFromAsync(plan, OperationPhases.Started, clock, ct);
    }

    private async Task<bool> RunFromAsync(OperationPlan plan, string phase, Timings clock, CancellationToken ct)
    {
        if (plan.DemoteFirst && phase == OperationPhases.Started)
        {
            var demoted = await DemoteStepAsync(plan.Resource, plan.From, plan.Generation, reconnect: false, discard: false, $"{plan.Kind} to {plan.To}: {plan.Reason}", plan.Id, ct);
            if (!demoted.Ok)
            {
                // The old primary may be half-demoted; the target was not touched. Never promote over it.
                var reasserted = await ReassertAsync(plan, ct);
                return await FinishAsync(plan, "Aborted", $"demote of {plan.From} failed ({demoted.Detail}); {plan.To} was not promoted; {reasserted}", EventSeverity.Critical, clock, ok: false);
            }

            leases.Release(plan.Resource, plan.From);
            store.SetPrimary(plan.Resource, plan.Generation, plan.To, new EventRecord("PrimaryHandedOver", $"{plan.From} is demoted; {plan.To} is the intended primary at generation {plan.Generation}", plan.Resource, plan.To));
            store.SaveOperation(plan.ToRecord(OperationPhases.Demoted, time.GetUtcNow()));
            clock.Mark("demoted");
        }

        if (phase != OperationPhases.Promoted)
        {
            var promoted = await PromoteStepAsync(plan.Resource, plan.To, plan.Generation, plan.Reason, plan.Force, plan.Id, ct);
            if (!promoted.Ok)
            {
                if (plan.DemoteFirst)
                {
                    var back = await RollBackAsync(plan, ct);
                    return await FinishAsync(plan, "RolledBack", $"promote of {plan.To} failed ({promoted.Detail}); {back}", EventSeverity.Critical, clock, ok: false);
                }

                return await FinishAsync(plan, "Failed", $"promote of {plan.To} failed: {promoted.Detail}", EventSeverity.Critical, clock, ok: false);
            }

            store.SaveOperation(plan.ToRecord(OperationPhases.Promoted, time.GetUtcNow()));
            clock.Mark("promoted");
        }

        var summaries = new List<string>();
        foreach (var ip in _options.FindResource(plan.Resource)?.FailoverIps ?? [])
        {
            var moved = await MoveAndVerifyAsync(plan.Resource, plan.To, plan.Generation, ip, clock, ct);
            switch (moved.Kind)
            {
                case MoveResultKind.NotRouted:
                    return await FinishAsync(plan, "Failed", $"{plan.To} is Primary at generation {plan.Generation} but {ip} is not routed to it: {moved.Detail}", EventSeverity.Critical, clock, ok: false);
                case MoveResultKind.Unverified:
                    return await FinishAsync(plan, "RoutedUnverified", $"{plan.To} is Primary at generation {plan.Generation} and OVH routes {ip} to it, but the end-to-end check failed: {moved.Detail}", EventSeverity.Critical, clock, ok: false);
                default:
                    summaries.Add(moved.Detail);
                    break;
            }
        }

        return await FinishAsync(plan, "Completed", $"{plan.To} is primary of {plan.Resource} at generation {plan.Generation}; {string.Join("; ", summaries)}; {clock.Summary()}", EventSeverity.Warning, clock, ok: true);
    }

    /// <summary>The switchover's abort: the old primary is still the recorded primary; tell it the generation (idempotent Promote) so it keeps its lease.</summary>
    private async Task<string> ReassertAsync(OperationPlan plan, CancellationToken ct)
    {
        if (plan.From.Length == 0 || store.GetResource(plan.Resource) is not { } record || record.PrimaryNode != plan.From || record.Generation != plan.Generation)
        {
            return "nothing to re-assert";
        }

        var again = await PromoteStepAsync(plan.Resource, plan.From, plan.Generation, $"{plan.Kind} {plan.Id} aborted: stay primary", force: false, plan.Id, ct);
        return again.Ok
            ? $"{plan.From} stays primary (re-asserted at generation {plan.Generation})"
            : $"re-asserting {plan.From} failed ({again.Detail}); the decision loop retries";
    }

    /// <summary>The old primary was demoted but the target did not come up: make the old one primary again, at a new generation (a change of primary).</summary>
    private async Task<string> RollBackAsync(OperationPlan plan, CancellationToken ct)
    {
        var back = store.AdvanceGeneration(plan.Resource, plan.Generation, plan.From,
            new EventRecord(plan.Prefix + "RollingBack", $"{plan.To} did not come up: making {plan.From} primary again", plan.Resource, plan.From, Severity: EventSeverity.Critical) { Attributes = Attributes(plan) }, isFailover: false);
        var again = await PromoteStepAsync(plan.Resource, plan.From, back, $"{plan.Kind} {plan.Id} rolled back", force: false, plan.Id, ct);
        return again.Ok
            ? $"{plan.From} is primary again at generation {back}"
            : $"{plan.From} recorded primary at generation {back}, but its Promote failed ({again.Detail}); the decision loop retries";
    }

    private Task<bool> FinishAsync(OperationPlan plan, string outcome, string message, EventSeverity severity, Timings clock, bool ok)
    {
        var attributes = Attributes(plan);
        attributes["outcome"] = outcome.ToLowerInvariant();
        attributes["terminal"] = "true";
        foreach (var (k, v) in clock.Attributes())
        {
            attributes[k] = v;
        }

        store.CompleteOperation(plan.Id, new EventRecord(plan.Prefix + outcome, message, plan.Resource, plan.To, plan.Generation, severity) { Attributes = attributes });
        Log.Finished(logger, plan.Resource, plan.Kind, plan.Id, outcome, message);
        return Task.FromResult(ok);
    }

    // ---------------- restart ----------------

    /// <summary>
    /// On start: every operation still recorded in flight is resumed or abandoned, after re-reading the
    /// target agent (GetStatus) and OVH (routedTo). Steps are re-run only where they are idempotent
    /// (Promote/Demote check before acting; the move workflow reads routedTo and follows a pending task
    /// before it would POST), so a crash never causes a second blind move.
    /// </summary>
    /// <returns>The resumed operations (each ends with a terminal event).</returns>
    public IReadOnlyList<Task<bool>> ResumePending()
    {
        var resumed = new List<Task<bool>>();
        foreach (var record in store.PendingOperations())
        {
            var plan = OperationPlan.FromRecord(record);
            if (TryReserve(plan.Resource, plan.Kind, plan.Id) is { } slot)
            {
                resumed.Add(Launch(slot, ct => ResumeAsync(plan, record.Phase, ct)));
            }
        }

        return resumed;
    }

    private async Task<bool> ResumeAsync(OperationPlan plan, string phase, CancellationToken ct)
    {
        var clock = new Timings(time, time.GetTimestamp());
        var record = store.GetResource(plan.Resource);
        if (record.Generation != plan.Generation)
        {
            return await FinishAsync(plan, "Abandoned", $"after a coordinator restart: the resource is at generation {record.Generation}, the operation was at {plan.Generation}; nothing re-run", EventSeverity.Warning, clock, ok: false);
        }

        ResourceStatus? target;
        try
        {
            var status = await agents.GetStatusAsync(plan.To, plan.Resource, ct);
            target = status.Resources.FirstOrDefault(r => r.Resource == plan.Resource);
        }
        catch (RpcException ex)
        {
            var reasserted = phase == OperationPhases.Started ? await ReassertAsync(plan, ct) : "the decision loop re-decides from fresh reports";
            return await FinishAsync(plan, "Abandoned", $"after a coordinator restart: {plan.To} cannot be read ({ex.StatusCode} {ex.Status.Detail}); {reasserted}", EventSeverity.Critical, clock, ok: false);
        }

        var role = target?.Drbd?.Role ?? DrbdRole.Unknown;
        var disk = target?.Drbd?.DiskState ?? DiskState.Unknown;
        var generation = target?.Generation ?? 0;
        var seen = string.Create(CultureInfo.InvariantCulture, $"{plan.To} reports {role} at generation {generation}, disk {disk}");
        var cloud = services.GetService<ICloudIpProvider>();
        var ips = new List<string>();
        foreach (var ip in _options.FindResource(plan.Resource)?.FailoverIps ?? [])
        {
            ips.Add(await DescribeRoutingAsync(cloud, ip, ct));
        }

        var promoted = role == DrbdRole.Primary && generation >= plan.Generation;
        var peerPrimary = target?.Drbd?.Peers.FirstOrDefault(p => p.ConnectionState == ConnectionState.Connected && p.PeerRole == DrbdRole.Primary);
        if (!promoted && !plan.DemoteFirst && peerPrimary is not null)
        {
            return await FinishAsync(plan, "Abandoned", $"after a coordinator restart: {seen}, and it is connected to a Primary peer ({peerPrimary.PeerName}): the old primary is back; not promoting over it. The decision loop re-decides from fresh reports", EventSeverity.Critical, clock, ok: false);
        }

        if (!promoted && !plan.Force && disk != DiskState.UpToDate)
        {
            var reasserted = phase == OperationPhases.Started ? await ReassertAsync(plan, ct) : "the decision loop re-decides from fresh reports";
            return await FinishAsync(plan, "Abandoned", $"after a coordinator restart: {seen}, not UpToDate: not promoting it; {reasserted}", EventSeverity.Critical, clock, ok: false);
        }

        var from = promoted ? OperationPhases.Promoted : phase == OperationPhases.Promoted ? OperationPhases.Demoted : phase;
        await EventAsync(new EventRecord(plan.Prefix + "Resumed",
            $"after a coordinator restart at phase '{phase}': {seen}; {string.Join("; ", ips)}; continuing from '{from}' (idempotent steps only)",
            plan.Resource, plan.To, plan.Generation, EventSeverity.Warning) { Attributes = Attributes(plan) });
        return await RunFromAsync(plan, from, clock, ct);
    }

    private static async Task<string> DescribeRoutingAsync(ICloudIpProvider? cloud, string ip, CancellationToken ct)
    {
        if (cloud is null)
        {
            return $"{ip}: no cloud provider configured";
        }

        try
        {
            var routing = await cloud.GetRoutingAsync(ip, ct);
            return $"{ip} routed to {routing.RoutedToService ?? "nothing (parked)"} with {routing.PendingTasks.Count} pending move(s)";
        }
        catch (Ovh.OvhException ex)
        {
            return $"{ip}: routing unknown ({ex.Message})";
        }
    }

    // ---------------- steps (each an event; shared with the decision loop) ----------------

    public sealed record StepResult(bool Ok, string Detail);

    public async Task<StepResult> PromoteStepAsync(string resource, string node, ulong generation, string reason, bool force, string operationId, CancellationToken ct)
    {
        ActionResult result;
        try
        {
            result = await agents.PromoteAsync(node, new PromoteRequest { Resource = resource, Generation = generation, Reason = reason, Force = force, OperationId = operationId }, ct);
        }
        catch (RpcException ex) when (!ct.IsCancellationRequested)
        {
            result = new ActionResult { Success = false, Message = $"{ex.StatusCode}: {ex.Status.Detail}" };
        }

        await EventAsync(new EventRecord(result.Success ? "Promoted" : "PromoteFailed", $"{node}{(force ? " (forced)" : "")}: {result.Message}{StepTimes(result)}", resource, node, generation, result.Success ? EventSeverity.Info : EventSeverity.Critical));
        return new StepResult(result.Success, result.Message);
    }

    /// <summary>How long each step the agent ran took (" [drbd-primary 412 ms, mount 35 ms]"), so a slow promotion names its slow step.</summary>
    private static string StepTimes(ActionResult result) =>
        result.Steps.Any(s => s.Elapsed is not null)
            ? " [" + string.Join(", ", result.Steps.Where(s => s.Elapsed is not null).Select(s => string.Create(CultureInfo.InvariantCulture, $"{s.Step} {s.Elapsed.ToTimeSpan().TotalMilliseconds:0} ms"))) + "]"
            : "";

    public async Task<StepResult> DemoteStepAsync(string resource, string node, ulong generation, bool reconnect, bool discard, string reason, string operationId, CancellationToken ct)
    {
        ActionResult result;
        try
        {
            result = await agents.DemoteAsync(node, new DemoteRequest { Resource = resource, Generation = generation, Reconnect = reconnect, DiscardMyData = discard, Reason = reason, OperationId = operationId }, ct);
        }
        catch (RpcException ex) when (!ct.IsCancellationRequested)
        {
            result = new ActionResult { Success = false, Message = $"{ex.StatusCode}: {ex.Status.Detail}" };
        }

        await EventAsync(new EventRecord(result.Success ? "Demoted" : "DemoteFailed", $"{node}: {reason}; {result.Message}", resource, node, generation, result.Success ? EventSeverity.Warning : EventSeverity.Critical));
        return new StepResult(result.Success, result.Message);
    }

    /// <summary>The OVH move workflow for one IP, then the end-to-end proof through it (retried; routed-but-unreachable is its own outcome).</summary>
    public async Task<MoveResult> MoveAndVerifyAsync(string resource, string node, ulong generation, string ip, Timings? clock, CancellationToken ct)
    {
        var cloud = services.GetService<ICloudIpProvider>();
        var serviceName = _options.FindNode(node)?.ServiceName ?? "";
        if (cloud is null)
        {
            await EventAsync(new EventRecord("OvhMoveFailed", $"{ip}: no cloud provider configured", resource, node, generation, EventSeverity.Critical));
            return new MoveResult(MoveResultKind.NotRouted, "no cloud provider configured");
        }

        var start = time.GetTimestamp();
        clock?.Mark("move_requested", start);
        MoveOutcome outcome;
        try
        {
            outcome = await cloud.EnsureRoutedAsync(ip, serviceName, ct);
        }
        catch (Exception ex) when (ex is InvalidOperationException or HttpRequestException or Ovh.OvhException)
        {
            await EventAsync(new EventRecord("OvhMoveFailed", $"{ip}: {ex.Message}", resource, node, generation, EventSeverity.Critical));
            return new MoveResult(MoveResultKind.NotRouted, ex.Message);
        }

        if (outcome.Kind is not (MoveOutcomeKind.AlreadyRouted or MoveOutcomeKind.Moved))
        {
            return new MoveResult(MoveResultKind.NotRouted, $"{outcome.Kind}: {outcome.Message}");
        }

        var routedAt = time.GetTimestamp();
        clock?.Mark("routed", routedAt, last: true);
        routes.Record(new FailoverIpStatus { Ip = ip, RoutedToNode = node, RoutedToService = serviceName, CheckedAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(time.GetUtcNow()) });
        var moved = string.Create(CultureInfo.InvariantCulture, $"{ip}: {outcome.Kind} with {outcome.Posts} POST in {time.GetElapsedTime(start, routedAt).TotalMilliseconds:0} ms");
        VerifyResult verified = new(VerifyOutcome.Unreachable, "not checked");
        for (var attempt = 1; attempt <= VerifyAttempts; attempt++)
        {
            verified = await verifier.VerifyAsync(resource, ip, node, generation, ct);
            if (verified.Outcome == VerifyOutcome.Verified)
            {
                clock?.Mark("verified", last: true);
                await EventAsync(new EventRecord("IpVerified", string.Create(CultureInfo.InvariantCulture, $"{verified.Detail} (attempt {attempt})"), resource, node, generation));
                return new MoveResult(MoveResultKind.Verified, $"{moved}, end-to-end check passed");
            }

            if (attempt < VerifyAttempts)
            {
                await Task.Delay(_options.Cluster.Timings.Heartbeat * 4, time, ct);
            }
        }

        var kind = verified.Outcome == VerifyOutcome.Unreachable ? "IpRoutedButUnreachable" : "IpAnsweredByWrongNode";
        await EventAsync(new EventRecord(kind, string.Create(CultureInfo.InvariantCulture, $"{moved}; {VerifyAttempts} end-to-end checks failed, last: {verified.Detail}"), resource, node, generation, EventSeverity.Critical));
        return new MoveResult(MoveResultKind.Unverified, $"{moved}; {verified.Detail}");
    }

    private static Dictionary<string, string> Attributes(OperationPlan plan) => new(StringComparer.Ordinal)
    {
        ["operation"] = plan.Id,
        ["kind"] = plan.Kind,
        ["from"] = plan.From,
        ["to"] = plan.To,
    };

    private Task<StoredEvent> EventAsync(EventRecord record) => store.AppendAsync(record, CancellationToken.None).AsTask();

    /// <summary>Monotonic milestones of one operation, reported in ms after detection (or the operator's request).</summary>
    public sealed class Timings(TimeProvider time, long detectedAt)
    {
        private readonly Dictionary<string, long> _marks = new(StringComparer.Ordinal);
        private readonly DateTimeOffset _detectedWall = time.GetUtcNow();

        public void Mark(string name, long? at = null, bool last = false)
        {
            var t = at ?? time.GetTimestamp();
            if (last || !_marks.ContainsKey(name))
            {
                _marks[name] = t;
            }
        }

        public IEnumerable<KeyValuePair<string, string>> Attributes()
        {
            yield return new("detected_at", _detectedWall.ToString("O", CultureInfo.InvariantCulture));
            foreach (var (name, t) in _marks.OrderBy(m => m.Value))
            {
                yield return new($"{name}_ms", Ms(t));
            }
        }

        public string Summary() => _marks.Count == 0 ? "no timings" : "timings after detection: " + string.Join(", ", _marks.OrderBy(m => m.Value).Select(m => $"{m.Key} +{Ms(m.Value)} ms"));

        private string Ms(long t) => time.GetElapsedTime(detectedAt, t).TotalMilliseconds.ToString("0", CultureInfo.InvariantCulture);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 2210, Level = LogLevel.Warning, Message = "{Resource}: {Kind} {Operation} started at generation {Generation}: {Detail}")]
        public static partial void Started(ILogger logger, string resource, string kind, string operation, ulong generation, string detail);

        [LoggerMessage(EventId = 2211, Level = LogLevel.Warning, Message = "{Resource}: {Kind} {Operation} {Outcome}: {Detail}")]
        public static partial void Finished(ILogger logger, string resource, string kind, string operation, string outcome, string detail);

        [LoggerMessage(EventId = 2212, Level = LogLevel.Critical, Message = "FORCE-PROMOTE of {Node} for {Resource} at generation {Generation} requested by an operator who acknowledged data loss: {Reason}")]
        public static partial void ForcePromote(ILogger logger, string resource, string node, ulong generation, string reason);
    }
}
