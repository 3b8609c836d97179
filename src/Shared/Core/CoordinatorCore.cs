using System.Globalization;
using HaMesh.Shared.Failover;

namespace HaMesh.Shared.Core;

/// <summary>
/// The coordinator's protocol as a sans-I/O state machine: reports, lease requests, command replies,
/// fence requests and OVH answers in; <see cref="CoordinatorEffect"/>s out. Each heartbeat it builds a
/// <see cref="ClusterView"/>, calls the pure <see cref="FailoverPolicy.Decide"/>, and drives at most one
/// operation per resource through its stages: (failover: persist g+1 and FailoverStarted) → [Agree, N &gt; 2]
/// → Promote → OVH move (read state; POST once; poll) → Ping through the IP naming target and generation
/// → Completed. Every decision and every OVH call is preceded by an <see cref="CoordinatorEffect.AppendEvent"/>.
/// </summary>
public sealed class CoordinatorCore
{
    private readonly CoordinatorConfig _config;
    private readonly Dictionary<string, CoordinatorRecord> _records = new(StringComparer.Ordinal);
    private readonly Dictionary<string, NodeState> _nodes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Dictionary<string, string?>> _routes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, MonoTime> _lastFailover = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Running> _running = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _lastHold = new(StringComparer.Ordinal);
    private readonly HashSet<string> _blocked = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _lastAlert = new(StringComparer.Ordinal);
    private readonly Dictionary<(string Resource, string Node), MonoTime> _demoteSentAt = [];
    private readonly Dictionary<string, LeasePromise> _grantPromise = new(StringComparer.Ordinal);
    // The rule-decided Demote awaited per node (one at a time: a resent one supersedes the last, whose answer is then ignored).
    private readonly Dictionary<(string Resource, string Node), (long Id, ulong Generation, bool Discard)> _rejoins = [];
    private readonly MonoTime _startedAt;
    private ulong _viewVersion;
    private (MonoTime? At, bool Stale) _nextDecision = (null, true);
    private bool _changedSinceDecision = true;
    private long _ids;

    /// <param name="config">Nodes, resources, timings.</param>
    /// <param name="records">The persisted records (empty on a first start).</param>
    /// <param name="lastUsedId">The highest event/call/command id used by an earlier run (from the event log), so ids never repeat.</param>
    /// <param name="now">The host's monotonic clock at start.</param>
    /// <param name="lastFailovers">When each resource last failed over (persisted: the anti-flap interval survives a restart).</param>
    public CoordinatorCore(CoordinatorConfig config, IEnumerable<CoordinatorRecord> records, long lastUsedId, MonoTime now, IReadOnlyDictionary<string, MonoTime>? lastFailovers = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(records);
        _config = config;
        _startedAt = now;
        _ids = lastUsedId;
        foreach (var r in config.Resources)
        {
            _records[r.Name] = CoordinatorRecord.Empty(r.Name);
            _routes[r.Name] = r.Ips.ToDictionary(ip => ip, _ => (string?)null, StringComparer.Ordinal);
        }

        foreach (var rec in records)
        {
            _records[rec.Resource] = rec;

            // A restarted coordinator may have granted the recorded primary a lease just before it stopped: it keeps that promise.
            if (rec.Primary.Length > 0)
            {
                _grantPromise[rec.Resource] = new LeasePromise(rec.Primary, now + config.Policy.Silence);
            }
        }

        foreach (var n in config.Nodes)
        {
            _nodes[n] = new NodeState();
        }

        foreach (var (resource, at) in lastFailovers ?? new Dictionary<string, MonoTime>())
        {
            _lastFailover[resource] = at;
        }
    }

    /// <summary>The persisted record of a resource as the core last wrote it.</summary>
    public CoordinatorRecord Record(string resource) => _records[resource];

    /// <summary>Whether an operation is in flight for the resource.</summary>
    public bool Busy(string resource) => _records[resource].Operation is not null;

    /// <summary>An agent's status report for one resource.</summary>
    /// <param name="now">The coordinator's monotonic clock.</param>
    /// <param name="node">The reporter.</param>
    /// <param name="resource">The resource reported on.</param>
    /// <param name="facts">What the node reports.</param>
    /// <param name="sequence">The report's sequence (<see cref="AgentEffect.SendReport.Sequence"/>).</param>
    /// <param name="upToDatePeers">The peers the reporter is DRBD-connected to whose disk is UpToDate (resynced).</param>
    public IReadOnlyList<CoordinatorEffect> OnReport(MonoTime now, string node, string resource, NodeResourceFacts facts, ulong sequence, IReadOnlyCollection<string> upToDatePeers)
    {
        ArgumentNullException.ThrowIfNull(facts);
        ArgumentNullException.ThrowIfNull(upToDatePeers);
        if (!_nodes.TryGetValue(node, out var n) || !_records.TryGetValue(resource, out var rec))
        {
            return [];
        }

        if (n.LastSequence.TryGetValue(resource, out var last) && sequence <= last)
        {
            return [];  // an older report overtaken by a newer one
        }

        n.LastSequence[resource] = sequence;
        var previous = n.Resources.GetValueOrDefault(resource);
        var wasFresh = n.LastReportAt is { } seen && now - seen < _config.Policy.Silence;
        n.LastReportAt = now;
        n.Resources[resource] = facts;
        var fx = new List<CoordinatorEffect>();

        // An outdated mark clears once the node that asked for it reports, in a report sent after it asked,
        // that the outdated peer is connected and UpToDate again (resynced from it). Neither a report of the
        // outdated node itself (it may be connected to another, stale Secondary: seed 165) nor a report sent
        // before the fence and delivered after it (seed 1779) may clear it.
        foreach (var (peer, mark) in rec.OutdatedBy)
        {
            if (mark.By == node && sequence > mark.AfterReport && facts.Role == Protocol.V1.DrbdRole.Primary && upToDatePeers.Contains(peer))
            {
                rec = rec with { Outdated = rec.Outdated.Remove(peer), OutdatedBy = rec.OutdatedBy.Remove(peer) };
                Save(rec, fx);
                Event(fx, "OutdatedCleared", resource, Fmt($"{node} reports {peer} connected and UpToDate again: outdated mark cleared"), 0, node: peer);
            }
        }

        // The promoted target reports it is not Primary any more while its IP is moved or checked (it lost its lease and
        // fenced itself): ask it again (an idempotent Promote) rather than ping a Secondary until the operation times out.
        // A report built before the promotion may arrive just after its answer: a margin of two heartbeats, and a
        // repeated Promote is harmless.
        if (_running.TryGetValue(resource, out var run) && rec.Operation is { Stage: OperationStage.Moving or OperationStage.Verifying } op
            && node == op.Target && facts.Role != Protocol.V1.DrbdRole.Primary && run.PromotedAt is { } promoted && now - promoted >= _config.Heartbeat * 2)
        {
            Event(fx, "TargetSteppedDown", resource, Fmt($"{node} reports {facts.Role} at generation {facts.Generation} during the {op.Stage} stage of {op.Kind} {op.Id}: promoting it again"), op.Id, node: node);
            run.LastFailure = Fmt($"{node} stepped down ({facts.Role})");
            StartStage(now, resource, run, OperationStage.Promoting, fx);
        }

        // Votes arrive in reports: decide now rather than on the next heartbeat, when the report changes what the rule
        // reads (a node back from silence, a new role, disk or connection, a vote cast or withdrawn), or when a record changed
        // since the last decision (an operation ended). A report that only repeats the last one leaves the decision to the
        // timer (every heartbeat, and at NextDecisionAt): deciding over a 1,000-node view on each of 2,000 reports a second
        // cost the coordinator most of a core.
        if (previous is null || !wasFresh || fx.Count > 0 || _changedSinceDecision || ForTheRule(previous) != ForTheRule(facts))
        {
            Decide(now, fx);
        }

        return fx;
    }

    /// <summary>A lease renewal request from an agent: granted only to the recorded primary at exactly the current generation.</summary>
    public IReadOnlyList<CoordinatorEffect> OnLeaseRequest(MonoTime now, string node, string resource, ulong generation, ulong sequence)
    {
        if (!_nodes.TryGetValue(node, out var n) || !_records.TryGetValue(resource, out var rec))
        {
            return [];
        }

        n.LastReportAt = now;
        var reason = LeaseRule.Refusal(resource, rec.Generation, rec.Primary, node, generation, _grantPromise.TryGetValue(resource, out var promise) ? promise : null, now);
        if (reason is null)
        {
            // The grant is a promise: Decide counts the primary silent only lease + margin after it.
            n.LastGrantAt = now;
            _grantPromise[resource] = new LeasePromise(node, now + _config.Policy.Silence);
            return [new CoordinatorEffect.SendLeaseGrant(node, resource, sequence, true, rec.Generation, "")];
        }

        return [new CoordinatorEffect.SendLeaseGrant(node, resource, sequence, false, rec.Generation, reason)];
    }

    /// <summary>DRBD's fence-peer handler on the primary asks to record its peer outdated (design §4.1); persisted before answering.</summary>
    public IReadOnlyList<CoordinatorEffect> OnFenceRequest(MonoTime now, string node, string resource, string peer, ulong generation, long id, ulong afterReport)
    {
        if (!_records.TryGetValue(resource, out var rec) || !_nodes.ContainsKey(peer))
        {
            return [];
        }

        var fx = new List<CoordinatorEffect>();
        if (node != rec.Primary || generation != rec.Generation)
        {
            var why = generation < rec.Generation
                ? Fmt($"stale generation {generation} < {rec.Generation}: {node} is not the current primary of {resource}")
                : Fmt($"{node} at generation {generation} is not the primary of {resource} at the current generation {rec.Generation}{(rec.Primary.Length > 0 && rec.Primary != node ? $" ({rec.Primary} is)" : "")}");
            Event(fx, "FencePeerRefused", resource, why, id, node: node);
            fx.Add(new CoordinatorEffect.ReplyFence(node, resource, id, false, why));
            return fx;
        }

        if (!rec.OutdatedBy.TryGetValue(peer, out var mark) || mark != (node, afterReport))
        {
            Save(rec with { Outdated = rec.Outdated.SetItem(peer, generation), OutdatedBy = rec.OutdatedBy.SetItem(peer, (node, afterReport)) }, fx);
            Event(fx, "PeerOutdated", resource, Fmt($"{peer} recorded outdated at generation {generation} on request of {node} (DRBD replication link lost); it is not promoted automatically until it is UpToDate again"), id, node: peer);
        }

        fx.Add(new CoordinatorEffect.ReplyFence(node, resource, id, true, Fmt($"{peer} recorded outdated at generation {generation}")));
        return fx;
    }

    /// <summary>An agent answered a command.</summary>
    public IReadOnlyList<CoordinatorEffect> OnCommandReply(MonoTime now, string node, string resource, long commandId, bool success, string message)
    {
        var fx = new List<CoordinatorEffect>();
        if (_rejoins.TryGetValue((resource, node), out var rejoin) && rejoin.Id == commandId)
        {
            _rejoins.Remove((resource, node));
            // A Demote the rule decided (an old primary rejoining, a split-brain victim): its outcome is an event.
            Event(fx, success ? "Rejoined" : "DemoteFailed", resource, success
                ? Fmt($"{node} rejoined as Secondary at generation {rejoin.Generation}{(rejoin.Discard ? ", its divergent changes discarded (split-brain policy DiscardOldPrimary)" : "")}: {message}")
                : Fmt($"demote of {node} at generation {rejoin.Generation} failed: {message}; the rule decides again"), commandId, node: node, generation: rejoin.Generation);
            return fx;
        }

        if (!_running.TryGetValue(resource, out var run) || run.AwaitingId != commandId)
        {
            return fx;
        }

        var op = _records[resource].Operation!;
        if (op.Stage == OperationStage.Agreeing)
        {
            run.AwaitingId = 0;
            if (success)
            {
                run.Agreed.Add(node);
                Event(fx, "Agreed", resource, Fmt($"{node} agreed to promote {op.Target} at generation {op.Generation}"), commandId, node: node);
                NextAgreement(now, resource, run, fx);
            }
            else
            {
                Event(fx, "AgreeRefused", resource, Fmt($"{node} refused to agree: {message}; retrying"), commandId, node: node);
                run.LastFailure = Fmt($"{node} refused to agree: {message}");
                run.StageDeadline = now + _config.ReplyTimeout;
            }

            return fx;
        }

        run.AwaitingId = 0;
        switch (op.Stage)
        {
            case OperationStage.Demoting when success:
                // The old primary is Secondary at g+1 and holds no lease: the coordinator's promise to it is moot.
                Event(fx, "Demoted", resource, Fmt($"{node} is Secondary at generation {op.Generation}: {message}"), commandId, node: node);
                if (_grantPromise.TryGetValue(resource, out var promise) && promise.Node == node)
                {
                    _grantPromise.Remove(resource);
                }

                Save(_records[resource] with { Primary = op.Target }, fx);
                Event(fx, "PrimaryHandedOver", resource, Fmt($"{node} is demoted; {op.Target} is the intended primary at generation {op.Generation}"), op.Id);
                StartStage(now, resource, run, OperationStage.Promoting, fx);
                break;
            case OperationStage.Demoting:
                // The old primary may be half-demoted; the target was not touched. Never promote over it: re-assert it.
                run.LastFailure = message;
                Event(fx, "DemoteFailed", resource, Fmt($"demote of {node} at generation {op.Generation} failed: {message}"), commandId, node: node);
                StartStage(now, resource, run, OperationStage.Reasserting, fx);
                break;
            case OperationStage.Reasserting:
                Finish(resource, "Aborted", Fmt($"demote of {op.From} failed ({run.LastFailure}); {op.Target} was not promoted; ") + (success
                    ? Fmt($"{op.From} stays primary (re-asserted at generation {op.Generation})")
                    : Fmt($"re-asserting {op.From} failed ({message}); deciding afresh")), fx);
                break;
            case OperationStage.RollingBack when success:
                Event(fx, "Promoted", resource, Fmt($"{node} is Primary again at generation {op.Generation}: {message}"), commandId, node: node);
                Finish(resource, "RolledBack", Fmt($"promote of {op.Target} failed ({run.LastFailure}); {op.From} is primary again at generation {op.Generation}"), fx);
                break;
            case OperationStage.RollingBack:
                Event(fx, "PromoteFailed", resource, Fmt($"promote of {node} (rolling back) at generation {op.Generation} failed: {message}; retrying"), commandId, node: node);
                run.LastFailure = Fmt($"promote of {node} failed: {message}");
                run.StageDeadline = now + _config.ReplyTimeout;
                break;
            case OperationStage.Promoting when success:
                Event(fx, "Promoted", resource, Fmt($"{node}{(op.Force ? " (forced)" : "")} is Primary at generation {op.Generation}: {message}"), commandId, node: node);
                run.PromotedAt = now;
                StartStage(now, resource, run, OperationStage.Moving, fx);
                break;
            case OperationStage.Promoting when op.Kind is OperationKind.Switchover or OperationKind.ForcePromote && now - (run.PromotingSince ?? now) >= _config.PromoteRetryWindow:
                run.LastFailure = message;
                Event(fx, "PromoteFailed", resource, Fmt($"promote of {node} at generation {op.Generation} failed: {message}"), commandId, node: node);
                if (op.DemoteFirst)
                {
                    // The old primary was demoted but the target did not come up: make the old one primary again, at a new generation.
                    Event(fx, op.Prefix + "RollingBack", resource, Fmt($"{op.Target} did not come up: making {op.From} primary again at generation {op.Generation + 1}"), op.Id, node: op.From, generation: op.Generation + 1, attributes: Attributes(op));
                    var back = op with { Generation = op.Generation + 1, Stage = OperationStage.RollingBack };
                    Save(_records[resource] with { Generation = back.Generation, Primary = op.From, Operation = back }, fx);
                    StartStage(now, resource, run, OperationStage.RollingBack, fx);
                }
                else if (op.From.Length > 0)
                {
                    // Nothing was demoted (the old primary was unreachable): give the resource back to the automatic rule with
                    // the old primary recorded, rather than leave it on a target that cannot come up.
                    Save(_records[resource] with { Primary = op.From }, fx);
                    Finish(resource, "Failed", Fmt($"promote of {op.Target} failed: {message}; {op.From} is the recorded primary again at generation {op.Generation} (automatic decisions resume)"), fx);
                }
                else
                {
                    Finish(resource, "Failed", Fmt($"promote of {op.Target} failed: {message}"), fx);
                }

                break;
            case OperationStage.Promoting:
                // Retried: a Promote is idempotent, and a target may refuse for a while (it promised the old primary a lease).
                Event(fx, "PromoteFailed", resource, Fmt($"promote of {node} at generation {op.Generation} failed: {message}; retrying"), commandId, node: node);
                run.LastFailure = Fmt($"promote of {node} failed: {message}");
                run.StageDeadline = now + _config.ReplyTimeout;
                break;
        }

        return fx;
    }

    /// <summary>
    /// Operator switchover (design §4, planned, zero data loss): refused unless the target is connected and UpToDate, not
    /// recorded outdated, the primary reachable, the resource not in maintenance and nothing in flight
    /// (<see cref="OperatorChecks.SwitchoverRefusal"/>); then g+1 with SwitchoverStarted → Demote(old) → Promote(target) → move → verify.
    /// </summary>
    /// <param name="now">The coordinator's monotonic clock.</param>
    /// <param name="resource">The resource.</param>
    /// <param name="target">The node to make primary.</param>
    /// <param name="generation">The generation the operator saw (a stale picture is refused).</param>
    /// <param name="reason">The operator's reason (in the events).</param>
    public OperatorOutcome OnSwitchover(MonoTime now, string resource, string target, ulong generation, string reason) =>
        StartOperator(now, resource, target, generation, reason, force: false);

    /// <summary>
    /// Operator force-promote (--i-understand-data-loss): the data checks are bypassed, the target must still answer; the old
    /// primary is demoted first when it is reachable; otherwise (3+ nodes) the other voters agree first, as in a failover. The
    /// coordinator still keeps its lease promise: the target gets no grant before the old primary's last one has run out.
    /// </summary>
    public OperatorOutcome OnForcePromote(MonoTime now, string resource, string target, ulong generation, string reason) =>
        StartOperator(now, resource, target, generation, reason, force: true);

    /// <summary>Maintenance on/off: automatic decisions suspended (reports continue); persisted with its event.</summary>
    public IReadOnlyList<CoordinatorEffect> OnSetMaintenance(MonoTime now, string resource, bool enabled, string reason)
    {
        var fx = new List<CoordinatorEffect>();
        if (!_records.TryGetValue(resource, out var rec) || rec.Maintenance == enabled)
        {
            return fx;
        }

        var why = string.IsNullOrWhiteSpace(reason) ? "" : ": " + reason;
        Event(fx, enabled ? "MaintenanceOn" : "MaintenanceOff", resource,
            $"maintenance {(enabled ? "on" : "off")} for {resource}{why} (automatic decisions {(enabled ? "suspended" : "resumed")}; reports continue)", 0);
        Save(rec with { Maintenance = enabled }, fx);
        if (!enabled)
        {
            Decide(now, fx);
        }

        return fx;
    }

    /// <summary>
    /// When the host should call <see cref="OnTimer"/> next: the earliest of the next heartbeat, a stage deadline, an
    /// operation's timeout and the instant <see cref="FailoverPolicy.NextDecisionAt"/> names (a failover becomes possible
    /// exactly then, not a heartbeat later). Always after <paramref name="now"/>.
    /// </summary>
    public MonoTime NextWake(MonoTime now)
    {
        var next = now + _config.Heartbeat;
        void Consider(MonoTime t)
        {
            if (t > now && t < next)
            {
                next = t;
            }
        }

        foreach (var run in _running.Values)
        {
            Consider(run.StageDeadline);
            Consider(run.StartedAt + _config.OperationTimeout);
        }

        // From the view of the last decision, unless a record changed since: what changed without a decision (a repeated
        // report, a grant) only moves the instant later, so waking at the cached one is early, never late.
        if (_nextDecision.Stale)
        {
            _nextDecision = (FailoverPolicy.NextDecisionAt(BuildView(), _config.Policy), false);
        }

        if (_nextDecision.At is { } decision)
        {
            Consider(decision);
        }

        return next;
    }

    private OperatorOutcome StartOperator(MonoTime now, string resource, string target, ulong generation, string reason, bool force)
    {
        var fx = new List<CoordinatorEffect>();
        if (!_records.TryGetValue(resource, out var rec))
        {
            return Refused($"resource: no configured resource named '{resource}'");
        }

        if (!_nodes.ContainsKey(target))
        {
            return Refused($"target_node: no configured node named '{target}'");
        }

        if (rec.Operation is { } running)
        {
            return Refused($"{resource}: {running.Prefix.ToLowerInvariant()} {running.Id} is already in flight; wait for its terminal event (hameshctl events --follow)");
        }

        if (generation != rec.Generation)
        {
            return Refused(Fmt($"generation: {resource} is at generation {rec.Generation}, the request was made at {generation}; re-read the status and retry"));
        }

        var view = BuildView();
        var refusal = force
            ? OperatorChecks.ForcePromoteRefusal(view, _config.Policy, now, resource, target)
            : OperatorChecks.SwitchoverRefusal(view, _config.Policy, now, resource, target);
        if (refusal is not null)
        {
            return Refused($"{resource}: {refusal}");
        }

        var from = rec.Primary;
        var demoteFirst = from.Length > 0 && from != target && (!force || OperatorChecks.PrimaryReachable(view, _config.Policy, now, resource));
        var kind = force ? OperationKind.ForcePromote : OperationKind.Switchover;
        var g = rec.Generation + 1;
        var id = ++_ids;
        var route = from.Length == 0 ? $"(no primary recorded) → {target}" : $"{from} → {target}";
        var text = force
            ? Fmt($"FORCED promotion {route} at generation {g} by an operator who acknowledged possible data loss (UpToDate and outdated checks bypassed){(demoteFirst ? "" : $"; old primary {(from.Length == 0 ? "none" : from)} not reachable, not demoted")}: {reason}")
            : Fmt($"{route} at generation {g}: {reason}");
        var stage = demoteFirst ? OperationStage.Demoting : NeedsAgreement(target) ? OperationStage.Agreeing : OperationStage.Promoting;
        var op = new OperationRecord(id, kind, target, g, stage, id, now) { From = from, Force = force, DemoteFirst = demoteFirst, Reason = reason };
        Event(fx, op.Prefix + "Started", resource, text, id, node: target, generation: g, attributes: Attributes(op));
        // The old primary stays the recorded primary at g+1 until it is demoted.
        Save(rec with { Generation = g, Primary = demoteFirst ? from : target, Operation = op }, fx);
        Begin(now, resource, op, fx);
        return new OperatorOutcome(null, id, g, fx);

        static OperatorOutcome Refused(string why) => new(why, 0, 0, []);
    }

    /// <summary>OVH answered a <see cref="CoordinatorEffect.CallOvh"/>.</summary>
    public IReadOnlyList<CoordinatorEffect> OnOvhReply(MonoTime now, string resource, long callId, OvhReply reply)
    {
        ArgumentNullException.ThrowIfNull(reply);
        var fx = new List<CoordinatorEffect>();
        if (!_running.TryGetValue(resource, out var run) || run.AwaitingId != callId)
        {
            return fx;
        }

        var op = _records[resource].Operation!;
        var ip = CurrentIp(resource, run);
        run.AwaitingId = 0;
        var wasMove = run.MoveInFlight;
        run.MoveInFlight = false;
        switch (reply)
        {
            case OvhReply.State s:
                _routes[resource][ip] = s.RoutedTo;
                run.LastSeen = Fmt($"routed to {s.RoutedTo ?? "elsewhere"}{(s.PendingMoveTo is { } p ? $", a move to {p} pending" : "")}");
                // Routed to the target counts only with no move elsewhere pending: a stuck task of an abandoned operation
                // completes later and takes the IP away (simulation seed 3, 3 nodes, with operator switchovers).
                if (s.RoutedTo == op.Target && (s.PendingMoveTo is null || s.PendingMoveTo == op.Target))
                {
                    run.RoutedAt ??= now;
                    Event(fx, "OvhMoveCompleted", resource, Fmt($"OVH routes {ip} to {op.Target} ({run.Posts} POST, {(now - (run.MovingSince ?? now)).TotalMilliseconds:0} ms)"), callId, node: op.Target, attributes: new Dictionary<string, string>(StringComparer.Ordinal) { ["ip"] = ip, ["to"] = op.Target });
                    StartStage(now, resource, run, OperationStage.Verifying, fx);
                }
                else if (s.PendingMoveTo is not null)
                {
                    run.StageDeadline = now + _config.OvhPoll;  // a task runs: poll again
                }
                else
                {
                    // State read: not routed and no task pending. Only now may a move be POSTed.
                    var id = ++_ids;
                    run.AwaitingId = id;
                    run.StageDeadline = now + OvhReplyTimeout;
                    run.MoveRequestedAt ??= now;
                    run.Posts++;
                    run.MoveInFlight = true;
                    Event(fx, "OvhMoveRequested", resource, Fmt($"POST /ip/{ip}/move to {op.Target} (routed to {s.RoutedTo ?? "elsewhere"})"), id);
                    fx.Add(new CoordinatorEffect.CallOvh(id, resource, ip, new OvhCall.Move(op.Target)));
                }

                break;
            case OvhReply.MoveAccepted m:
                Event(fx, "OvhMoveAccepted", resource, Fmt($"move task {m.TaskId} for {ip} to {op.Target} accepted"), callId);
                run.StageDeadline = now + _config.OvhPoll;
                break;
            case OvhReply.Failed f:
                // A failed POST may have taken effect all the same: its outcome is unknown until the state is read.
                Event(fx, wasMove ? "OvhMoveUncertain" : "OvhCallFailed", resource, Fmt($"{(wasMove ? $"POST /ip/{ip}/move" : $"OVH call for {ip}")} failed: {f.Message}; state is read again before anything else"), callId, node: op.Target);
                run.LastFailure = Fmt($"OVH: {f.Message}");
                run.StageDeadline = now + _config.OvhPoll;
                break;
        }

        return fx;
    }

    /// <summary>An answer to <see cref="CoordinatorEffect.PingViaIp"/>: who answered through the IP, at which generation.</summary>
    /// <param name="now">The coordinator's monotonic clock.</param>
    /// <param name="resource">The resource.</param>
    /// <param name="callId">The ping's id.</param>
    /// <param name="node">Who answered.</param>
    /// <param name="generation">The generation it answered at (0: not Primary).</param>
    /// <param name="detail">How it was reached (the address), for the event.</param>
    public IReadOnlyList<CoordinatorEffect> OnPingReply(MonoTime now, string resource, long callId, string node, ulong generation, string detail = "")
    {
        var fx = new List<CoordinatorEffect>();
        if (!_running.TryGetValue(resource, out var run) || run.AwaitingId != callId)
        {
            return fx;
        }

        var op = _records[resource].Operation!;
        run.AwaitingId = 0;
        if (node != op.Target || generation != op.Generation)
        {
            Event(fx, "IpAnsweredByWrongNode", resource, Fmt($"ping through {CurrentIp(resource, run)} answered by {node} at generation {generation}, expected {op.Target} at {op.Generation}; retrying"), callId, node: op.Target);
            run.LastFailure = Fmt($"{CurrentIp(resource, run)} answered by {node} at generation {generation}");
            run.StageDeadline = now + _config.ReplyTimeout;
            return fx;
        }

        Event(fx, "IpVerified", resource, detail.Length > 0 ? detail : Fmt($"{op.Target} answered Ping through {CurrentIp(resource, run)}, Primary at generation {op.Generation}"), callId, node: op.Target);
        run.IpIndex++;
        run.MovingSince = null;
        run.Posts = 0;
        if (run.IpIndex < _config.Resources.First(r => r.Name == resource).Ips.Count)
        {
            StartStage(now, resource, run, OperationStage.Moving, fx);
            return fx;
        }

        Complete(now, resource, run, fx);
        return fx;
    }

    /// <summary>A heartbeat: retry what timed out, then decide.</summary>
    public IReadOnlyList<CoordinatorEffect> OnTimer(MonoTime now)
    {
        var fx = new List<CoordinatorEffect>();
        foreach (var r in _config.Resources)
        {
            var rec = _records[r.Name];
            if (rec.Operation is { } op)
            {
                if (!_running.TryGetValue(r.Name, out var run))
                {
                    // Restarted with an operation in flight: resume at its stage, re-reading state first.
                    run = new Running { StartedAt = now, LastFailure = "unknown (the coordinator restarted since)" };
                    _running[r.Name] = run;
                    // Past the promotion, the target is asked again first (an idempotent Promote): while no coordinator granted
                    // its lease it may have fenced itself (lab: the witness killed mid-failover, b self-fenced meanwhile).
                    var stage = op.Stage is OperationStage.Moving or OperationStage.Verifying ? OperationStage.Promoting : op.Stage;
                    Event(fx, op.Prefix + "Resumed", r.Name, Fmt($"after a coordinator restart: resuming {op.Kind} to {op.Target} at generation {op.Generation} at stage {op.Stage}{(stage != op.Stage ? $" from {stage}" : "")}, re-reading state first (idempotent steps only)"), op.Id, node: op.Target, attributes: Attributes(op));
                    StartStage(now, r.Name, run, stage, fx);
                }
                else if (now - run.StartedAt >= _config.OperationTimeout)
                {
                    Event(fx, op.Prefix + "Abandoned", r.Name, Fmt($"{op.Kind} to {op.Target} at generation {op.Generation} did not finish within {_config.OperationTimeout.TotalSeconds:0} s (stage {op.Stage}, last failure: {run.LastFailure}); deciding afresh"), op.Id, node: op.Target, attributes: Terminal(op, "abandoned"));
                    _running.Remove(r.Name);
                    // A force-promote that never got its target promoted gives the resource back to the old primary: an
                    // EnsurePrimary of the target would skip the agreement it never got (simulation seed 1331, 3 nodes).
                    var unconfirmed = op is { Kind: OperationKind.ForcePromote, DemoteFirst: false, From.Length: > 0, Stage: OperationStage.Agreeing or OperationStage.Promoting };
                    Save(rec with { Operation = null, Primary = unconfirmed ? op.From : rec.Primary }, fx);
                }
                else if (op.Stage == OperationStage.Moving && run.MovingSince is { } since && now - since >= MoveTimeout)
                {
                    // The move did not take within the OVH timeout (a stuck task is followed, never posted over): fail with what was seen.
                    var ip = CurrentIp(r.Name, run);
                    Event(fx, "OvhMoveFailed", r.Name, Fmt($"{ip} not routed to {op.Target} after {MoveTimeout.TotalSeconds:0} s ({run.Posts} POST); last seen: {run.LastSeen}"), op.Id, node: op.Target);
                    run.LastFailure = Fmt($"{ip} not routed to {op.Target}");
                    Finish(r.Name, "Failed", Fmt($"{op.Target} is Primary at generation {op.Generation} but {ip} is not routed to it after {MoveTimeout.TotalSeconds:0} s: {run.LastSeen}"), fx);
                }
                else if (now >= run.StageDeadline)
                {
                    StartStage(now, r.Name, run, op.Stage, fx);
                }
            }
        }

        Decide(now, fx);
        return fx;
    }

    private void Decide(MonoTime now, List<CoordinatorEffect> fx)
    {
        var view = BuildView();
        _nextDecision = (FailoverPolicy.NextDecisionAt(view, _config.Policy), false);
        _changedSinceDecision = false;
        foreach (var d in FailoverPolicy.Decide(view, _config.Policy, now))
        {
            Act(now, d, fx);
        }
    }

    /// <summary>The view handed to <see cref="FailoverPolicy.Decide"/> (exposed for tests and status).</summary>
    public ClusterView BuildView()
    {
        var nodes = _config.Nodes.Select(n => new NodeFacts(n, _nodes[n].LastReportAt, _nodes[n].LastGrantAt, new Dictionary<string, NodeResourceFacts>(_nodes[n].Resources, StringComparer.Ordinal))).ToList();
        var resources = _config.Resources.Select(r =>
        {
            var rec = _records[r.Name];
            return new ResourceFacts(r.Name, rec.Generation, rec.Primary, rec.Maintenance, _lastFailover.TryGetValue(r.Name, out var lf) ? lf : null, rec.Outdated, rec.Operation is not null, r.PreferredNode, r.DiscardOldPrimaryOnSplitBrain)
            {
                IpRoutes = new Dictionary<string, string?>(_routes[r.Name], StringComparer.Ordinal),
            };
        }).ToList();
        return new ClusterView(++_viewVersion, _startedAt, nodes, resources);
    }

    private void Act(MonoTime now, Decision d, List<CoordinatorEffect> fx)
    {
        var rec = _records[d.Resource];
        switch (d)
        {
            case Decision.Hold h:
                if (!_lastHold.TryGetValue(h.Resource, out var previous) || previous != h.Reason)
                {
                    _lastHold[h.Resource] = h.Reason;
                    fx.Add(new CoordinatorEffect.Holding(h.Resource, h.Reason));
                }

                // The one hold an operator must hear of (every decision has its event): the primary is gone and
                // nobody may take over. Once per outage; the silence in the reason grows every heartbeat.
                if (!h.FailoverBlocked)
                {
                    _blocked.Remove(h.Resource);
                }
                else if (_blocked.Add(h.Resource))
                {
                    Event(fx, "FailoverBlocked", h.Resource, h.Reason, ++_ids);
                }

                return;
            case Decision.Adopt a:
            {
                // Adopt, then tell the node its generation with an idempotent Promote (it is Primary already) and check the IP.
                var decisionId = ++_ids;
                Event(fx, "Adopted", a.Resource, a.Reason, decisionId, node: a.Node, generation: a.Generation);
                var op = new OperationRecord(decisionId, OperationKind.EnsurePrimary, a.Node, a.Generation, OperationStage.Promoting, decisionId, now);
                Save(rec with { Generation = a.Generation, Primary = a.Node, Operation = op }, fx);
                Begin(now, a.Resource, op, fx);
                break;
            }

            case Decision.Failover f:
            {
                var decisionId = ++_ids;
                var op = new OperationRecord(decisionId, OperationKind.Failover, f.To, f.NewGeneration, NeedsAgreement(f.To) ? OperationStage.Agreeing : OperationStage.Promoting, decisionId, now) { From = f.From, Reason = f.Reason };
                Event(fx, "FailoverStarted", f.Resource, Fmt($"{f.From} → {f.To} at generation {f.NewGeneration}: {f.Reason}"), decisionId, node: f.To, generation: f.NewGeneration, attributes: Attributes(op));
                _lastFailover[f.Resource] = now;
                Save(rec with { Generation = f.NewGeneration, Primary = f.To, Operation = op }, fx);
                Begin(now, f.Resource, op, fx);
                break;
            }

            case Decision.EnsurePrimary e:
            {
                var decisionId = ++_ids;
                Event(fx, "EnsurePrimary", e.Resource, e.Reason, decisionId, node: e.Node);
                var op = new OperationRecord(decisionId, OperationKind.EnsurePrimary, e.Node, e.Generation, OperationStage.Promoting, decisionId, now);
                Save(rec with { Operation = op }, fx);
                Begin(now, e.Resource, op, fx);
                break;
            }

            case Decision.MoveIp m:
            {
                var decisionId = ++_ids;
                Event(fx, "MoveIp", m.Resource, m.Reason, decisionId, node: m.Node);
                var op = new OperationRecord(decisionId, OperationKind.MoveIp, m.Node, m.Generation, OperationStage.Moving, decisionId, now);
                Save(rec with { Operation = op }, fx);
                Begin(now, m.Resource, op, fx);
                break;
            }

            case Decision.Demote dm:
                if (_demoteSentAt.TryGetValue((dm.Resource, dm.Node), out var sent) && now - sent < _config.ReplyTimeout * 2)
                {
                    return;
                }

                _demoteSentAt[(dm.Resource, dm.Node)] = now;
                var id = ++_ids;
                Event(fx, "Demote", dm.Resource, dm.Reason, id, node: dm.Node, generation: dm.Generation);
                _rejoins[(dm.Resource, dm.Node)] = (id, dm.Generation, dm.DiscardMyData);

                // Design §4 (rejoin): stopped, unmounted, Secondary, and DRBD reconnected, keeping its data unless the
                // split-brain policy discards it (that demote reconnects with --discard-my-data).
                fx.Add(new CoordinatorEffect.SendCommand(dm.Node, dm.Resource, new AgentCommand(id, CoreNames.Coordinator, CommandKind.Demote, dm.Generation, dm.DiscardMyData, Reconnect: !dm.DiscardMyData)));
                break;
            case Decision.SplitBrainAlert or Decision.Halt:
                if (!_lastAlert.TryGetValue(d.Resource, out var last) || last != d.Reason)
                {
                    _lastAlert[d.Resource] = d.Reason;
                    if (d is Decision.SplitBrainAlert sb)
                    {
                        // The policy names the DRBD resource RES; the event gives the exact commands to run.
                        var drbd = _config.Resources.First(r => r.Name == d.Resource) is { DrbdResource.Length: > 0 } cr ? cr.DrbdResource : d.Resource;
                        var commands = System.Text.RegularExpressions.Regex.Replace(sb.RecoveryCommands, @"\bRES\b", drbd);
                        Event(fx, "SplitBrain", d.Resource, Fmt($"{sb.Reason}. Recovery: {commands}"), ++_ids, node: sb.Victim);
                    }
                    else
                    {
                        Event(fx, "Halted", d.Resource, d.Reason, ++_ids);
                    }
                }

                break;
        }
    }

    /// <summary>The facts as <see cref="FailoverPolicy"/> reads them: the peer-contact age only as a vote (none, heard recently, lost).</summary>
    private NodeResourceFacts ForTheRule(NodeResourceFacts f) => f with
    {
        PeerContactAge = f.PeerContactAge is not { } age ? null : age < _config.Policy.Silence ? TimeSpan.Zero : _config.Policy.Silence,
    };

    private TimeSpan OvhReplyTimeout => _config.OvhReplyTimeout ?? _config.ReplyTimeout;

    private TimeSpan MoveTimeout => _config.MoveTimeout ?? _config.OperationTimeout;

    private bool NeedsAgreement(string target) => _config.Nodes.Count > 2 && _config.Nodes.Any(n => n != target);

    private void Begin(MonoTime now, string resource, OperationRecord op, List<CoordinatorEffect> fx)
    {
        var run = new Running { StartedAt = now };
        _running[resource] = run;
        StartStage(now, resource, run, op.Stage, fx);
    }

    private void StartStage(MonoTime now, string resource, Running run, OperationStage stage, List<CoordinatorEffect> fx)
    {
        var rec = _records[resource];
        var op = rec.Operation!;
        if (op.Stage != stage)
        {
            op = op with { Stage = stage };
            Save(rec with { Operation = op }, fx);
        }

        if (stage == OperationStage.Agreeing)
        {
            NextAgreement(now, resource, run, fx);
            return;
        }

        var id = ++_ids;
        run.AwaitingId = id;
        run.StageDeadline = now + (stage == OperationStage.Moving ? OvhReplyTimeout : _config.ReplyTimeout);
        var ip = CurrentIp(resource, run);
        switch (stage)
        {
            case OperationStage.Demoting:
                Event(fx, "Demote", resource, Fmt($"{op.Kind} {op.Id} to {op.Target}: demote {op.From} at generation {op.Generation} first"), id, node: op.From);
                fx.Add(new CoordinatorEffect.SendCommand(op.From, resource, new AgentCommand(id, CoreNames.Coordinator, CommandKind.Demote, op.Generation)));
                break;
            case OperationStage.Promoting:
                run.PromotingSince ??= now;
                fx.Add(new CoordinatorEffect.SendCommand(op.Target, resource, new AgentCommand(id, CoreNames.Coordinator, CommandKind.Promote, op.Generation, Force: op.Force)));
                break;
            case OperationStage.Reasserting or OperationStage.RollingBack:
                fx.Add(new CoordinatorEffect.SendCommand(op.From, resource, new AgentCommand(id, CoreNames.Coordinator, CommandKind.Promote, op.Generation)));
                break;
            case OperationStage.Moving:
                run.MovingSince ??= now;
                Event(fx, "OvhReadState", resource, Fmt($"GET routedTo and pending tasks of {ip}"), id, node: op.Target);
                fx.Add(new CoordinatorEffect.CallOvh(id, resource, ip, new OvhCall.ReadState()));
                break;
            case OperationStage.Verifying:
                fx.Add(new CoordinatorEffect.PingViaIp(id, resource, ip));
                if (run.PingsSent > 0)
                {
                    run.LastFailure = Fmt($"no answer from {op.Target} through {ip} ({run.PingsSent} pings)");
                }
                if (run.PingsSent++ == _config.PingsBeforeUnreachable)
                {
                    Event(fx, "IpRoutedButUnreachable", resource, Fmt($"{ip} is routed to {op.Target} but {run.PingsSent - 1} pings through it got no answer from {op.Target} at generation {op.Generation}; retrying"), id);
                }

                break;
        }
    }

    private void NextAgreement(MonoTime now, string resource, Running run, List<CoordinatorEffect> fx)
    {
        var op = _records[resource].Operation!;
        // The old primary is not asked: its agreement means nothing, and an Agree raises its generation (simulation seed 53,
        // 3 nodes: a force-promote asked the reachable old Primary, which then sat at the new generation, never demoted).
        // A force-promote has no quorum behind it: every other node must agree, reachable or not (it may be granting the
        // old primary a lease: simulation seed 1331, 3 nodes, where a voter cut off from W was skipped and two held leases).
        var voters = _config.Nodes.Where(n => n != op.Target && n != op.From && !run.Agreed.Contains(n) && (op.Kind == OperationKind.ForcePromote || IsFreshVoter(n, now))).ToList();
        if (voters.Count == 0)
        {
            StartStage(now, resource, run, OperationStage.Promoting, fx);
            return;
        }

        var id = ++_ids;
        run.AwaitingId = id;
        run.StageDeadline = now + _config.ReplyTimeout;
        fx.Add(new CoordinatorEffect.SendCommand(voters[0], resource, new AgentCommand(id, CoreNames.Coordinator, CommandKind.Agree, op.Generation)));
    }

    private bool IsFreshVoter(string node, MonoTime now) => _nodes[node].LastReportAt is { } t && now - t < _config.Policy.Silence;

    private void Complete(MonoTime now, string resource, Running run, List<CoordinatorEffect> fx)
    {
        var rec = _records[resource];
        var op = rec.Operation!;
        foreach (var ip in _config.Resources.First(r => r.Name == resource).Ips)
        {
            _routes[resource][ip] = op.Target;
        }

        string At(MonoTime? t) => t is { } v ? Fmt($"+{(v - op.DecidedAt).TotalMilliseconds:0}ms") : "-";
        var timings = new Dictionary<string, string>(StringComparer.Ordinal) { ["decided_ms"] = "0" };
        foreach (var (name, t) in new[] { ("promoted_ms", run.PromotedAt), ("move_requested_ms", run.MoveRequestedAt), ("routed_ms", run.RoutedAt), ("verified_ms", (MonoTime?)now) })
        {
            if (t is { } v)
            {
                timings[name] = Fmt($"{(v - op.DecidedAt).TotalMilliseconds:0}");
            }
        }

        Finish(resource, "Completed",
            Fmt($"{op.Target} is primary of {resource} at generation {op.Generation}, verified through every failover IP ({op.Kind}); timings after the decision: promoted-at {At(run.PromotedAt)}, move-requested-at {At(run.MoveRequestedAt)}, routed-at {At(run.RoutedAt)}, verified-at {At(now)}"), fx, timings);
    }

    /// <summary>The operation's terminal event (Prefix + outcome), then the record without it.</summary>
    private void Finish(string resource, string outcome, string text, List<CoordinatorEffect> fx, IReadOnlyDictionary<string, string>? timings = null)
    {
        var rec = _records[resource];
        var op = rec.Operation!;
        Event(fx, op.Prefix + outcome, resource, text, op.Id, node: op.Target, generation: op.Generation, attributes: Terminal(op, outcome.ToLowerInvariant(), timings));
        _running.Remove(resource);
        Save(rec with { Operation = null }, fx);
    }

    private string CurrentIp(string resource, Running run)
    {
        var ips = _config.Resources.First(r => r.Name == resource).Ips;
        return ips.Count == 0 ? "" : ips[Math.Min(run.IpIndex, ips.Count - 1)];
    }

    private void Save(CoordinatorRecord record, List<CoordinatorEffect> fx)
    {
        _records[record.Resource] = record;
        _nextDecision = (null, true);
        _changedSinceDecision = true;
        fx.Add(new CoordinatorEffect.PersistRecord(record));
    }

    /// <summary>Appends an event; <c>node</c> names the node it is about, <c>generation</c> (null: the resource's current one) the generation.</summary>
    private void Event(List<CoordinatorEffect> fx, string kind, string resource, string text, long refId, string node = "", ulong? generation = null, IReadOnlyDictionary<string, string>? attributes = null) =>
        fx.Add(new CoordinatorEffect.AppendEvent(new CoreEvent(++_ids, kind, resource, text, refId)
        {
            Node = node,
            Generation = generation ?? (_records.TryGetValue(resource, out var rec) ? rec.Generation : 0),
            Severity = CoreEvent.SeverityOf(kind),
            Attributes = attributes ?? CoreEvent.NoAttributes,
        }));

    /// <summary>What every event of an operation carries: its id, kind and route (clients follow an operation by id).</summary>
    private static Dictionary<string, string> Attributes(OperationRecord op) => new(StringComparer.Ordinal)
    {
        ["operation"] = op.Id.ToString(CultureInfo.InvariantCulture),
        ["kind"] = op.KindName,
        ["from"] = op.From,
        ["to"] = op.Target,
    };

    /// <summary>The terminal event's attributes: the operation's, its outcome, and the timings when it completed.</summary>
    private static Dictionary<string, string> Terminal(OperationRecord op, string outcome, IReadOnlyDictionary<string, string>? timings = null)
    {
        var a = Attributes(op);
        a["outcome"] = outcome;
        a["terminal"] = "true";
        foreach (var (k, v) in timings ?? CoreEvent.NoAttributes)
        {
            a[k] = v;
        }

        return a;
    }

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    private sealed class NodeState
    {
        public MonoTime? LastReportAt { get; set; }

        public MonoTime? LastGrantAt { get; set; }

        public Dictionary<string, NodeResourceFacts> Resources { get; } = new(StringComparer.Ordinal);

        public Dictionary<string, ulong> LastSequence { get; } = new(StringComparer.Ordinal);
    }

    private sealed class Running
    {
        public MonoTime StartedAt { get; init; }

        public MonoTime StageDeadline { get; set; }

        public long AwaitingId { get; set; }

        public int IpIndex { get; set; }

        public int PingsSent { get; set; }

        public HashSet<string> Agreed { get; } = new(StringComparer.Ordinal);

        public MonoTime? PromotedAt { get; set; }

        public MonoTime? MoveRequestedAt { get; set; }

        public MonoTime? RoutedAt { get; set; }

        /// <summary>When the move of the current IP began (its first state read), and the POSTs made for it.</summary>
        public MonoTime? MovingSince { get; set; }

        public int Posts { get; set; }

        /// <summary>When the first Promote of the target was sent (switchover/force-promote retry a refused Promote this long).</summary>
        public MonoTime? PromotingSince { get; set; }

        /// <summary>The last failure the operation met (for its abort, roll-back or abandon event).</summary>
        public string LastFailure { get; set; } = "none";

        /// <summary>A POST is in flight: a failure answer leaves its outcome unknown.</summary>
        public bool MoveInFlight { get; set; }

        /// <summary>What the last OVH state read showed.</summary>
        public string LastSeen { get; set; } = "not read yet";
    }
}
