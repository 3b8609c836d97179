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
    private readonly MonoTime _startedAt;
    private ulong _viewVersion;
    private long _ids;

    /// <param name="config">Nodes, resources, timings.</param>
    /// <param name="records">The persisted records (empty on a first start).</param>
    /// <param name="lastUsedId">The highest event/call/command id used by an earlier run (from the event log), so ids never repeat.</param>
    /// <param name="now">The host's monotonic clock at start.</param>
    public CoordinatorCore(CoordinatorConfig config, IEnumerable<CoordinatorRecord> records, long lastUsedId, MonoTime now)
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
        }

        foreach (var n in config.Nodes)
        {
            _nodes[n] = new NodeState();
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
                Event(fx, "OutdatedCleared", resource, Fmt($"{node} reports {peer} connected and UpToDate again: outdated mark cleared"), 0);
            }
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
        string reason;
        if (rec.Generation == 0 || rec.Primary.Length == 0)
        {
            reason = $"no primary recorded for {resource}";
        }
        else if (rec.Primary != node)
        {
            reason = Fmt($"{node} is not the primary (the coordinator made {rec.Primary} primary at generation {rec.Generation})");
        }
        else if (generation != rec.Generation)
        {
            reason = Fmt($"generation {generation} is not the current generation {rec.Generation}");
        }
        else
        {
            // The grant is a promise: Decide counts the primary silent only lease + margin after it.
            n.LastGrantAt = now;
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
            fx.Add(new CoordinatorEffect.ReplyFence(node, resource, id, false, Fmt($"{node} at generation {generation} is not the primary at the current generation {rec.Generation}")));
            return fx;
        }

        if (!rec.OutdatedBy.TryGetValue(peer, out var mark) || mark != (node, afterReport))
        {
            Save(rec with { Outdated = rec.Outdated.SetItem(peer, generation), OutdatedBy = rec.OutdatedBy.SetItem(peer, (node, afterReport)) }, fx);
            Event(fx, "PeerOutdated", resource, Fmt($"{peer} recorded outdated at generation {generation} (fence-peer from {node})"), id);
        }

        fx.Add(new CoordinatorEffect.ReplyFence(node, resource, id, true, Fmt($"{peer} recorded outdated at generation {generation}")));
        return fx;
    }

    /// <summary>An agent answered a command.</summary>
    public IReadOnlyList<CoordinatorEffect> OnCommandReply(MonoTime now, string node, string resource, long commandId, bool success, string message)
    {
        var fx = new List<CoordinatorEffect>();
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
                Event(fx, "Agreed", resource, Fmt($"{node} agreed to promote {op.Target} at generation {op.Generation}"), commandId);
                NextAgreement(now, resource, run, fx);
            }
            else
            {
                Event(fx, "AgreeRefused", resource, Fmt($"{node} refused to agree: {message}; retrying"), commandId);
                run.StageDeadline = now + _config.ReplyTimeout;
            }

            return fx;
        }

        if (op.Stage != OperationStage.Promoting)
        {
            return fx;
        }

        run.AwaitingId = 0;
        if (success)
        {
            Event(fx, "Promoted", resource, Fmt($"{node} is Primary at generation {op.Generation}: {message}"), commandId);
            run.PromotedAt = now;
            StartStage(now, resource, run, OperationStage.Moving, fx);
        }
        else
        {
            Event(fx, "PromoteFailed", resource, Fmt($"promote of {node} at generation {op.Generation} failed: {message}; retrying"), commandId);
            run.StageDeadline = now + _config.ReplyTimeout;
        }

        return fx;
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
        switch (reply)
        {
            case OvhReply.State s:
                _routes[resource][ip] = s.RoutedTo;
                if (s.RoutedTo == op.Target)
                {
                    run.RoutedAt ??= now;
                    Event(fx, "IpRouted", resource, Fmt($"OVH routes {ip} to {op.Target}"), callId);
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
                    run.StageDeadline = now + _config.ReplyTimeout;
                    run.MoveRequestedAt ??= now;
                    Event(fx, "OvhMoveRequested", resource, Fmt($"POST /ip/{ip}/move to {op.Target} (routed to {s.RoutedTo ?? "elsewhere"})"), id);
                    fx.Add(new CoordinatorEffect.CallOvh(id, resource, ip, new OvhCall.Move(op.Target)));
                }

                break;
            case OvhReply.MoveAccepted m:
                Event(fx, "OvhMoveAccepted", resource, Fmt($"move task {m.TaskId} for {ip} to {op.Target} accepted"), callId);
                run.StageDeadline = now + _config.OvhPoll;
                break;
            case OvhReply.Failed f:
                Event(fx, "OvhCallFailed", resource, Fmt($"OVH call for {ip} failed: {f.Message}; state is read again before anything else"), callId);
                run.StageDeadline = now + _config.OvhPoll;
                break;
        }

        return fx;
    }

    /// <summary>An answer to <see cref="CoordinatorEffect.PingViaIp"/>: who answered through the IP, at which generation.</summary>
    public IReadOnlyList<CoordinatorEffect> OnPingReply(MonoTime now, string resource, long callId, string node, ulong generation)
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
            Event(fx, "VerifyMismatch", resource, Fmt($"ping through {CurrentIp(resource, run)} answered by {node} at generation {generation}, expected {op.Target} at {op.Generation}"), callId);
            run.StageDeadline = now + _config.ReplyTimeout;
            return fx;
        }

        run.IpIndex++;
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
                    run = new Running { StartedAt = now };
                    _running[r.Name] = run;
                    Event(fx, "OperationResumed", r.Name, Fmt($"resuming {op.Kind} to {op.Target} at generation {op.Generation} at stage {op.Stage}"), op.Id);
                    StartStage(now, r.Name, run, op.Stage, fx);
                }
                else if (now - run.StartedAt >= _config.OperationTimeout)
                {
                    Event(fx, "OperationAbandoned", r.Name, Fmt($"{op.Kind} to {op.Target} at generation {op.Generation} did not finish within {_config.OperationTimeout.TotalSeconds:0} s (stage {op.Stage}); deciding afresh"), op.Id);
                    _running.Remove(r.Name);
                    Save(rec with { Operation = null }, fx);
                }
                else if (now >= run.StageDeadline)
                {
                    StartStage(now, r.Name, run, op.Stage, fx);
                }
            }
        }

        var view = BuildView();
        foreach (var d in FailoverPolicy.Decide(view, _config.Policy, now))
        {
            Act(now, d, fx);
        }

        return fx;
    }

    /// <summary>The view handed to <see cref="FailoverPolicy.Decide"/> (exposed for tests and status).</summary>
    public ClusterView BuildView()
    {
        var nodes = _config.Nodes.Select(n => new NodeFacts(n, _nodes[n].LastReportAt, _nodes[n].LastGrantAt, new Dictionary<string, NodeResourceFacts>(_nodes[n].Resources, StringComparer.Ordinal))).ToList();
        var resources = _config.Resources.Select(r =>
        {
            var rec = _records[r.Name];
            return new ResourceFacts(r.Name, rec.Generation, rec.Primary, false, _lastFailover.TryGetValue(r.Name, out var lf) ? lf : null, rec.Outdated, rec.Operation is not null, r.PreferredNode, r.DiscardOldPrimaryOnSplitBrain)
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
                Event(fx, "Adopted", a.Resource, a.Reason, decisionId);
                var op = new OperationRecord(decisionId, OperationKind.EnsurePrimary, a.Node, 1, OperationStage.Promoting, decisionId, now);
                Save(rec with { Generation = 1, Primary = a.Node, Operation = op }, fx);
                Begin(now, a.Resource, op, fx);
                break;
            }

            case Decision.Failover f:
            {
                var decisionId = ++_ids;
                Event(fx, "FailoverStarted", f.Resource, Fmt($"{f.From} → {f.To} at generation {f.NewGeneration}: {f.Reason}"), decisionId);
                _lastFailover[f.Resource] = now;
                var op = new OperationRecord(decisionId, OperationKind.Failover, f.To, f.NewGeneration, NeedsAgreement(f.To) ? OperationStage.Agreeing : OperationStage.Promoting, decisionId, now);
                Save(rec with { Generation = f.NewGeneration, Primary = f.To, Operation = op }, fx);
                Begin(now, f.Resource, op, fx);
                break;
            }

            case Decision.EnsurePrimary e:
            {
                var decisionId = ++_ids;
                Event(fx, "EnsurePrimary", e.Resource, e.Reason, decisionId);
                var op = new OperationRecord(decisionId, OperationKind.EnsurePrimary, e.Node, e.Generation, OperationStage.Promoting, decisionId, now);
                Save(rec with { Operation = op }, fx);
                Begin(now, e.Resource, op, fx);
                break;
            }

            case Decision.MoveIp m:
            {
                var decisionId = ++_ids;
                Event(fx, "MoveIp", m.Resource, m.Reason, decisionId);
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
                Event(fx, "Demote", dm.Resource, dm.Reason, id);
                fx.Add(new CoordinatorEffect.SendCommand(dm.Node, dm.Resource, new AgentCommand(id, CoreNames.Coordinator, CommandKind.Demote, dm.Generation, dm.DiscardMyData)));
                break;
            case Decision.SplitBrainAlert or Decision.Halt:
                if (!_lastAlert.TryGetValue(d.Resource, out var last) || last != d.Reason)
                {
                    _lastAlert[d.Resource] = d.Reason;
                    Event(fx, d is Decision.Halt ? "Halted" : "SplitBrain", d.Resource, d.Reason, ++_ids);
                }

                break;
        }
    }

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
        run.StageDeadline = now + _config.ReplyTimeout;
        var ip = CurrentIp(resource, run);
        switch (stage)
        {
            case OperationStage.Promoting:
                fx.Add(new CoordinatorEffect.SendCommand(op.Target, resource, new AgentCommand(id, CoreNames.Coordinator, CommandKind.Promote, op.Generation)));
                break;
            case OperationStage.Moving:
                Event(fx, "OvhReadState", resource, Fmt($"GET routedTo and pending tasks of {ip}"), id);
                fx.Add(new CoordinatorEffect.CallOvh(id, resource, ip, new OvhCall.ReadState()));
                break;
            case OperationStage.Verifying:
                fx.Add(new CoordinatorEffect.PingViaIp(id, resource, ip));
                if (run.PingsSent++ == _config.PingsBeforeUnreachable)
                {
                    Event(fx, "RoutedButUnreachable", resource, Fmt($"{ip} is routed to {op.Target} but {run.PingsSent - 1} pings through it got no answer from {op.Target} at generation {op.Generation}; retrying"), id);
                }

                break;
        }
    }

    private void NextAgreement(MonoTime now, string resource, Running run, List<CoordinatorEffect> fx)
    {
        var op = _records[resource].Operation!;
        var voters = _config.Nodes.Where(n => n != op.Target && !run.Agreed.Contains(n) && IsFreshVoter(n, now)).ToList();
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
        Event(fx, op.Kind == OperationKind.Failover ? "FailoverCompleted" : "OperationCompleted", resource,
            Fmt($"{op.Kind} to {op.Target} at generation {op.Generation} verified; decided-at 0, promoted-at {At(run.PromotedAt)}, move-requested-at {At(run.MoveRequestedAt)}, routed-at {At(run.RoutedAt)}, verified-at {At(now)}"), op.Id);
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
        fx.Add(new CoordinatorEffect.PersistRecord(record));
    }

    private void Event(List<CoordinatorEffect> fx, string kind, string resource, string text, long refId) =>
        fx.Add(new CoordinatorEffect.AppendEvent(new CoreEvent(++_ids, kind, resource, text, refId)));

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
    }
}
