using System.Globalization;
using HaMesh.Shared.Failover;

namespace HaMesh.Shared.Core;

/// <summary>
/// The agent's lease and command protocol for one resource as a sans-I/O state machine (design §4):
/// events in (timer, lease replies, a peer's renewal request, commands, steps finished, fence-peer),
/// effects out (<see cref="AgentEffect"/>). No clock, no I/O: every method takes the host's local
/// monotonic <c>now</c>. The daemon and the simulation run this same code.
/// <list type="bullet">
/// <item>The lease runs from when a granted request was SENT, so it ends before the grantor's promise.</item>
/// <item>As a grantor (Secondary peer) it grants only while Secondary, at a generation ≤ the requester's,
/// and a grant is a promise: no Promote/Agree accepted until lease + drift margin after it.</item>
/// <item>A Primary whose lease runs out self-fences (wake scheduled at the exact expiry).</item>
/// <item>Every command carries a generation: a lower one is refused; a higher one is persisted before acting.</item>
/// <item>When this node's vote (peer-contact age) reaches lease + drift margin, the report goes out at once.</item>
/// </list>
/// </summary>
public sealed class AgentCore
{
    private readonly Dictionary<ulong, MonoTime> _sentAt = [];
    private readonly List<AgentCommand> _waiting = [];
    private readonly MonoTime _startedAt;
    private readonly ulong _sequenceBase;
    private ulong _sequence;
    private MonoTime _nextHeartbeat;
    private MonoTime? _lastPeerContact;
    private MonoTime? _promiseUntil;
    // A Promote accepted while this node's promise ran: no lease is requested (nothing is done) before then.
    private MonoTime? _holdUntil;
    private string _promisedTo = "";
    private bool _fenceAfterActivation;
    // A Primary found at start (a restart under a running resource): demoted by then unless a grant arrives.
    private MonoTime? _fenceBy;
    // A promotion waiting for its lease asks from then on; with no grant by then + AskLimit it gives up (nothing touched).
    private MonoTime _askingFrom;
    private readonly Dictionary<string, (long Id, MonoTime Since, int Attempts)> _fences = new(StringComparer.Ordinal);
    private long _fenceIds;
    private ulong _reportSequence;
    private bool _voteReported;
    private bool _drbdSeenSecondary;
    // Whether the deactivation under way reconnects DRBD at its end (a Demote asked for it); a self-fence or an undo does not.
    private bool _deactivationReconnects;

    /// <param name="node">This node's name.</param>
    /// <param name="resource">The resource this core guards.</param>
    /// <param name="peers">The other nodes' names.</param>
    /// <param name="timings">Heartbeat, lease, drift margin, self-fence deadline.</param>
    /// <param name="persistedGeneration">The highest generation persisted by an earlier run (0 when none).</param>
    /// <param name="incarnation">A number that differs for every start of this agent (persisted counter or boot id):
    /// lease request sequence numbers embed it so a grant for a request of an earlier run never matches a new one.</param>
    /// <param name="drbdIsPrimary">Whether DRBD is Primary at start (the agent restarted under a running resource).</param>
    /// <param name="now">The host's monotonic clock at start.</param>
    /// <param name="knownLeaseUntil">Only for a cluster's bootstrap (and tests): a lease the Primary is known to hold until then.</param>
    public AgentCore(string node, string resource, IReadOnlyList<string> peers, CoreTimings timings, ulong persistedGeneration, ulong incarnation, bool drbdIsPrimary, MonoTime now, MonoTime? knownLeaseUntil = null)
    {
        ArgumentNullException.ThrowIfNull(peers);
        ArgumentNullException.ThrowIfNull(timings);
        Node = node;
        Resource = resource;
        Peers = peers;
        Timings = timings;
        Generation = persistedGeneration;
        _sequenceBase = incarnation << 32;
        _startedAt = now;
        _nextHeartbeat = now;

        Phase = drbdIsPrimary ? AgentPhase.Primary : AgentPhase.Secondary;
        if (!drbdIsPrimary)
        {
            return;
        }

        if (knownLeaseUntil is { } known)
        {
            LeaseUntil = known;
        }
        else if (persistedGeneration == 0)
        {
            // No coordinator ever commanded this node (adopting it persists a generation): a Primary set up by hand
            // before HaMesh took charge, a cluster's bootstrap. Its lease runs from the first request, so the
            // coordinator can adopt it before it fences; unless granted it self-fences at its end.
            LeaseUntil = now + timings.Lease;
        }
        else
        {
            // A restart under a running resource: this node holds NO lease (its last one may have been granted just
            // before the old process stopped, or long ago). It renews at once; unless a grant arrives within the start
            // grace it self-fences, so as to be demoted by start + the self-fence deadline.
            LeaseUntil = now + StartGrace(timings);
            _fenceBy = now + timings.SelfFenceDeadline;
        }
    }

    /// <summary>How long a Primary found at start waits for its first grant: two heartbeats, at most half the self-fence deadline.</summary>
    public static TimeSpan StartGrace(CoreTimings timings)
    {
        ArgumentNullException.ThrowIfNull(timings);
        var two = timings.Heartbeat * 2;
        var half = timings.SelfFenceDeadline / 2;
        return two < half ? two : half;
    }

    public string Node { get; }

    public string Resource { get; }

    public IReadOnlyList<string> Peers { get; }

    public CoreTimings Timings { get; }

    /// <summary>The highest generation seen (and persisted before it was acted on).</summary>
    public ulong Generation { get; private set; }

    public AgentPhase Phase { get; private set; }

    /// <summary>The end of the lease on this node's clock (null: none held).</summary>
    public MonoTime? LeaseUntil { get; private set; }

    /// <summary>Who granted the lease that ends last.</summary>
    public string LeaseGrantor { get; private set; } = "";

    /// <summary>Whether this node holds a lease that has not run out at <paramref name="now"/>.</summary>
    public bool HoldsLease(MonoTime now) => LeaseUntil is { } until && now < until && Phase is AgentPhase.Activating or AgentPhase.Primary;

    /// <summary>How long a promotion asks for a lease before it gives up: two promises (lease + drift margin, twice).</summary>
    public TimeSpan AskLimit => Timings.Promise * 2;

    /// <summary>The command being carried out (others that asked for the same thing joined it), or null.</summary>
    public AgentCommand? Running => _waiting.Count > 0 ? _waiting[0] : null;

    /// <summary>Until when this node has promised (as a grantor) not to take part in promoting another node.</summary>
    public MonoTime? PromiseUntil => _promiseUntil;

    /// <summary>This node's vote (design §4 rule 1): how long since it last heard from a primary or granted a lease, never before its own start.</summary>
    public TimeSpan PeerContactAge(MonoTime now)
    {
        var last = _startedAt;
        if (_lastPeerContact is { } c && c > last)
        {
            last = c;
        }

        return now - last;
    }

    /// <summary>
    /// What DRBD itself last showed for the resource (the host's newest read, or its own finished promote or demote):
    /// a Primary that DRBD shows Secondary was changed outside HaMesh (<c>drbdadm secondary</c> by hand), and a Promote
    /// must activate it again rather than answer "already Primary" over a resource that is down.
    /// </summary>
    public void NoteDrbdRole(Protocol.V1.DrbdRole role) => _drbdSeenSecondary = role == Protocol.V1.DrbdRole.Secondary;

    /// <summary>The agent just started: schedule the first heartbeat.</summary>
    public IReadOnlyList<AgentEffect> Start(MonoTime now) => OnTimer(now);

    /// <summary>A wake-up (heartbeat or lease expiry).</summary>
    public IReadOnlyList<AgentEffect> OnTimer(MonoTime now)
    {
        var fx = new List<AgentEffect>();
        if (_holdUntil is { } hold && now >= hold)
        {
            // The promise ran out: the promotion accepted during it goes on (the heartbeat below may also ask; once is enough).
            _holdUntil = null;
            if (Phase == AgentPhase.AwaitingLease && now < _nextHeartbeat)
            {
                RequestLease(now, fx);
            }
        }

        CheckLease(now, fx);
        if (Phase == AgentPhase.AwaitingLease && !Holding(now) && now - _askingFrom >= AskLimit)
        {
            // Nobody granted (the coordinator does not name this node primary at this generation, and no peer is a
            // Secondary that grants): a promotion that touched nothing ends here instead of waiting for ever.
            Phase = AgentPhase.Secondary;
            ReplyAll(fx, false, Fmt($"no lease granted within {AskLimit.TotalMilliseconds:0} ms (neither the coordinator nor a peer granted one at generation {Generation}): not promoting, nothing touched"));
        }

        if (now >= _nextHeartbeat)
        {
            _nextHeartbeat = now + Timings.Heartbeat;
            if (Phase is AgentPhase.AwaitingLease or AgentPhase.Activating or AgentPhase.Primary && !Holding(now))
            {
                RequestLease(now, fx);
            }

            fx.Add(new AgentEffect.SendReport(Generation, PeerContactAge(now), Phase, _sequenceBase | ++_reportSequence));
            _voteReported = PeerContactAge(now) >= Timings.Promise;
            RetryFence(now, fx);
        }
        else if (!_voteReported && PeerContactAge(now) >= Timings.Promise)
        {
            // This node's vote just reached lease + drift margin: tell the coordinator now, not at the next heartbeat.
            _voteReported = true;
            fx.Add(new AgentEffect.SendReport(Generation, PeerContactAge(now), Phase, _sequenceBase | ++_reportSequence));
        }

        ScheduleNext(fx);
        return fx;
    }

    /// <summary>A grantor answered one of this node's lease requests.</summary>
    public IReadOnlyList<AgentEffect> OnLeaseReply(MonoTime now, string grantor, ulong sequence, bool granted, ulong grantorGeneration)
    {
        var fx = new List<AgentEffect>();
        if (grantor != CoreNames.Coordinator)
        {
            _lastPeerContact = now;
            _voteReported = false;
        }

        if (!granted || !_sentAt.TryGetValue(sequence, out var sentAt))
        {
            if (!granted && grantorGeneration > Generation)
            {
                fx.Add(new AgentEffect.Note(Fmt($"{grantor} is at generation {grantorGeneration} > {Generation}")));
            }

            return fx;
        }

        if (Phase is not (AgentPhase.AwaitingLease or AgentPhase.Activating or AgentPhase.Primary) || Holding(now))
        {
            // While a promotion is held this node still keeps its promise to another holder: no grant, however late, counts.
            return fx;
        }

        var until = sentAt + Timings.Lease;
        if (LeaseUntil is not { } current || until > current)
        {
            LeaseUntil = until;
            LeaseGrantor = grantor;
            _fenceBy = null;   // granted: a lease like any other from here on
        }

        CheckLease(now, fx);
        if (Phase == AgentPhase.AwaitingLease && HoldsLeaseRaw(now))
        {
            Phase = AgentPhase.Activating;
            fx.Add(new AgentEffect.RunSteps(StepKind.Activate, Generation, Fmt($"promote at generation {Generation}, lease from {grantor}")));
        }

        ScheduleNext(fx);
        return fx;
    }

    /// <summary>A peer asks this node for a lease renewal (AgentService.RenewLease).</summary>
    public IReadOnlyList<AgentEffect> OnPeerLeaseRequest(MonoTime now, string requester, ulong requesterGeneration, ulong sequence)
    {
        _lastPeerContact = now;
        _voteReported = false;
        var state = Phase switch
        {
            AgentPhase.Secondary => GrantorState.Secondary,
            AgentPhase.AwaitingLease or AgentPhase.Activating => GrantorState.Promoting,
            AgentPhase.Primary => GrantorState.Primary,
            _ => GrantorState.Deactivating,
        };
        if (GrantorRule.Refusal(Node, state, Generation, requesterGeneration) is { } reason)
        {
            return [new AgentEffect.SendLeaseReply(requester, sequence, false, Generation, reason)];
        }

        var until = now + Timings.Promise;
        if (_promiseUntil is not { } p || until > p)
        {
            _promiseUntil = until;
            _promisedTo = requester;
        }

        return [new AgentEffect.SendLeaseReply(requester, sequence, true, Generation, "")];
    }

    /// <summary>A command arrived (from the coordinator, or from the primary peer for a fence-peer outdate).</summary>
    public IReadOnlyList<AgentEffect> OnCommand(MonoTime now, AgentCommand command)
    {
        ArgumentNullException.ThrowIfNull(command);
        var fx = new List<AgentEffect>();
        if (command.Generation < Generation)
        {
            fx.Add(new AgentEffect.ReplyCommand(command, false, Fmt($"stale generation {command.Generation} < {Generation}")));
            return fx;
        }

        if (command.Kind is CommandKind.Agree && _promiseUntil is { } promise && now < promise && Phase == AgentPhase.Secondary)
        {
            fx.Add(new AgentEffect.ReplyCommand(command, false, Fmt($"{Node} granted a lease to {_promisedTo} and promised not to take part in a promotion for {(promise - now).TotalMilliseconds:0} ms more")));
            return fx;
        }

        if (_waiting.Count > 0)
        {
            var running = _waiting[0];
            if (running.SameAs(command))
            {
                _waiting.Add(command);  // joins the running one
                return fx;
            }

            if (Phase == AgentPhase.AwaitingLease && command.Generation > running.Generation && command.Kind != CommandKind.Agree)
            {
                // A promotion that has touched nothing yet (no lease, no step) gives way to a later decision: the
                // coordinator moved on (a rollback, another candidate) and must not wait behind it.
                Phase = AgentPhase.Secondary;
                _holdUntil = null;
                LeaseUntil = null;
                ReplyAll(fx, false, Fmt($"superseded by {command.Kind} at generation {command.Generation} before it took a lease"));
            }
            else
            {
                fx.Add(new AgentEffect.ReplyCommand(command, false, Fmt($"busy with {running.Kind} at generation {running.Generation}"), Busy: true));
                return fx;
            }
        }

        var raised = command.Generation > Generation;
        if (raised)
        {
            Generation = command.Generation;
            fx.Add(new AgentEffect.PersistGeneration(Generation));
        }

        if (Phase == AgentPhase.Deactivating && command.Kind != CommandKind.Agree)
        {
            // Stepping down without a command (a self-fence, or the undo of a failed activation): a Demote wants what is
            // under way and is answered when it ends (one that also reconnects DRBD, a rejoin, gets that done then);
            // anything else would fight it half-way and is refused.
            if (command.Kind == CommandKind.Demote && !command.DiscardMyData)
            {
                _waiting.Add(command);
            }
            else
            {
                fx.Add(new AgentEffect.ReplyCommand(command, false, Fmt($"{Node} is stepping down (self-fence or undo running): {command.Kind} refused; retry once it is Secondary")));
            }

            ScheduleNext(fx);
            return fx;
        }

        switch (command.Kind)
        {
            case CommandKind.Promote:
                if (Phase == AgentPhase.Primary && HoldsLeaseRaw(now))
                {
                    if (_drbdSeenSecondary)
                    {
                        // Primary for HaMesh, Secondary for DRBD (changed by hand): activate again under the lease it holds;
                        // each step checks first, so what is still up is left alone.
                        _drbdSeenSecondary = false;
                        _waiting.Add(command);
                        Phase = AgentPhase.Activating;
                        fx.Add(new AgentEffect.RunSteps(StepKind.Activate, Generation, Fmt($"activate again at generation {Generation}: DRBD shows Secondary though this node is the primary (changed outside HaMesh?)")));
                    }
                    else
                    {
                        fx.Add(new AgentEffect.ReplyCommand(command, true, "already Primary"));
                    }

                    if (raised)
                    {
                        // Told a new generation (an adoption): renew at it now, the coordinator grants only that one.
                        RequestLease(now, fx);
                    }

                    break;
                }

                if (Phase == AgentPhase.Primary)
                {
                    // Primary without a valid lease: let the self-fence run first; the coordinator retries.
                    fx.Add(new AgentEffect.ReplyCommand(command, false, "Primary without a lease: self-fencing first"));
                    break;
                }

                _waiting.Add(command);
                Phase = AgentPhase.AwaitingLease;
                LeaseUntil = null;
                _askingFrom = _promiseUntil is { } p2 && now < p2 ? p2 : now;
                if (_promiseUntil is { } promised && now < promised)
                {
                    // As the daemon does: accepted (generation persisted, renewals refused from now on), held until the
                    // promise of the last grant runs out, so the old primary's lease has ended before this one starts.
                    _holdUntil = promised;
                    fx.Add(new AgentEffect.Note(Fmt($"promote at generation {Generation} held {(promised - now).TotalMilliseconds:0} ms: {Node} granted a lease to {_promisedTo}")));
                }
                else
                {
                    RequestLease(now, fx);
                }

                break;
            case CommandKind.Demote:
                _waiting.Add(command);
                Phase = AgentPhase.Deactivating;
                _deactivationReconnects = command.Reconnect || command.DiscardMyData;
                LeaseUntil = null;
                fx.Add(new AgentEffect.RunSteps(command.DiscardMyData ? StepKind.DeactivateDiscard : StepKind.Deactivate, Generation, Fmt($"demote at generation {command.Generation}")));
                break;
            case CommandKind.Outdate:
                if (Phase != AgentPhase.Secondary)
                {
                    fx.Add(new AgentEffect.ReplyCommand(command, false, Fmt($"{Node} is {Phase}: not outdating")));
                    break;
                }

                _waiting.Add(command);
                fx.Add(new AgentEffect.RunSteps(StepKind.Outdate, Generation, Fmt($"outdate at generation {command.Generation} for {command.From}")));
                break;
            case CommandKind.Agree:
                fx.Add(new AgentEffect.ReplyCommand(command, Phase == AgentPhase.Secondary, Phase == AgentPhase.Secondary
                    ? Fmt($"agreed: no lease granted below generation {Generation}")
                    : Fmt($"{Node} is {Phase}")));
                break;
        }

        ScheduleNext(fx);
        return fx;
    }

    /// <summary>The host finished a <see cref="AgentEffect.RunSteps"/>.</summary>
    public IReadOnlyList<AgentEffect> OnStepsFinished(MonoTime now, StepKind kind, bool success, string message)
    {
        var fx = new List<AgentEffect>();
        switch (kind)
        {
            case StepKind.Activate when Phase == AgentPhase.Activating:
                if (_fenceAfterActivation || !HoldsLeaseRaw(now))
                {
                    _fenceAfterActivation = false;
                    SelfFence(fx, "lease ran out during activation");
                    ReplyAll(fx, false, "lease ran out during activation: self-fenced");
                }
                else if (success)
                {
                    Phase = AgentPhase.Primary;
                    ReplyAll(fx, true, message);
                }
                else
                {
                    Phase = AgentPhase.Deactivating;
                    _deactivationReconnects = false;
                    fx.Add(new AgentEffect.RunSteps(StepKind.Deactivate, Generation, "undo a failed activation"));
                    ReplyAll(fx, false, message);
                }

                break;
            case StepKind.Deactivate or StepKind.DeactivateDiscard when Phase == AgentPhase.Deactivating
                && success && !_deactivationReconnects && _waiting.FindIndex(c => c.Reconnect) is var r and >= 0:
                // A self-fence (or undo) ended and a rejoin Demote joined it: now the DRBD reconnect it asked for. The steps
                // run again with that command first (the host reads the reconnect from the running command); each finds
                // its work done, then DRBD connects.
                var rejoin = _waiting[r];
                _waiting.RemoveAt(r);
                _waiting.Insert(0, rejoin);
                _deactivationReconnects = true;
                LeaseUntil = null;
                fx.Add(new AgentEffect.RunSteps(StepKind.Deactivate, Generation, Fmt($"reconnect DRBD at generation {rejoin.Generation} after stepping down")));
                break;
            case StepKind.Deactivate or StepKind.DeactivateDiscard when Phase == AgentPhase.Deactivating:
                Phase = AgentPhase.Secondary;
                LeaseUntil = null;
                _fences.Clear();  // a Secondary fences nobody
                ReplyAll(fx, success, message);
                break;
            case StepKind.Outdate:
                ReplyAll(fx, success, message);
                break;
            default:
                fx.Add(new AgentEffect.Note(Fmt($"steps {kind} finished in phase {Phase}: ignored")));
                break;
        }

        ScheduleNext(fx);
        return fx;
    }

    /// <summary>DRBD's fence-peer handler ran on this (Primary) node: I/O is frozen until the peer is fenced (design §4.1).</summary>
    public IReadOnlyList<AgentEffect> OnFencePeerRequested(MonoTime now, string peer)
    {
        var fx = new List<AgentEffect>();
        if (_fences.ContainsKey(peer))
        {
            return fx;
        }

        // One pending fence per peer: with three nodes both peers can be cut at once (the simulation's seed 1153).
        var id = ++_fenceIds;
        _fences[peer] = (id, now, 1);
        fx.Add(new AgentEffect.SendFenceRequest(CoreNames.Coordinator, peer, Generation, id, ReportSequence));
        return fx;
    }

    /// <summary>An answer to a fence request (from the coordinator or the peer).</summary>
    public IReadOnlyList<AgentEffect> OnFenceReply(MonoTime now, long id, string by, bool success, string message)
    {
        var peer = _fences.FirstOrDefault(kv => kv.Value.Id == id).Key;
        if (peer is null)
        {
            return [];
        }

        if (!success)
        {
            return [new AgentEffect.Note(Fmt($"fence of {peer} refused by {by}: {message}"))];
        }

        _fences.Remove(peer);
        return [new AgentEffect.FenceCompleted(peer, by)];
    }

    /// <summary>DRBD reconnected to the peer (or this node is no longer Primary): a pending fence is moot.</summary>
    public void FenceNoLongerNeeded(string peer) => _fences.Remove(peer);

    /// <summary>The sequence number of the last report sent (incarnation in the high bits, so it grows across restarts).</summary>
    public ulong ReportSequence => _sequenceBase | _reportSequence;

    private void RetryFence(MonoTime now, List<AgentEffect> fx)
    {
        foreach (var (peer, f) in _fences.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList())
        {
            if (now - f.Since < Timings.Heartbeat * 2 * f.Attempts)
            {
                continue;
            }

            // Alternate: the coordinator (records the peer outdated), then the peer itself (drbdadm outdate).
            var id = ++_fenceIds;
            _fences[peer] = (id, f.Since, f.Attempts + 1);
            fx.Add(new AgentEffect.SendFenceRequest(f.Attempts % 2 == 1 ? peer : CoreNames.Coordinator, peer, Generation, id, ReportSequence));
        }
    }

    private void RequestLease(MonoTime now, List<AgentEffect> fx)
    {
        var sequence = _sequenceBase | ++_sequence;
        _sentAt[sequence] = now;
        _sentAt.Remove(sequence - 64);
        fx.Add(new AgentEffect.SendLeaseRequest(CoreNames.Coordinator, Generation, sequence));
        foreach (var peer in Peers)
        {
            fx.Add(new AgentEffect.SendLeaseRequest(peer, Generation, sequence));
        }
    }

    private void CheckLease(MonoTime now, List<AgentEffect> fx)
    {
        if (HoldsLeaseRaw(now))
        {
            return;
        }

        if (Phase == AgentPhase.Primary)
        {
            SelfFence(fx, Fmt($"lease ran out at {LeaseUntil?.SinceOrigin.TotalMilliseconds:0} ms (no grant from the coordinator or a peer)"));
        }
        else if (Phase == AgentPhase.Activating)
        {
            _fenceAfterActivation = true;
        }
    }

    private void SelfFence(List<AgentEffect> fx, string why)
    {
        Phase = AgentPhase.Deactivating;
        _deactivationReconnects = false;
        LeaseUntil = null;
        fx.Add(new AgentEffect.RunSteps(StepKind.Deactivate, Generation, AgentEffect.RunSteps.SelfFencePrefix + why, _fenceBy));
        _fenceBy = null;
    }

    private bool HoldsLeaseRaw(MonoTime now) => LeaseUntil is { } until && now < until;

    private bool Holding(MonoTime now) => _holdUntil is { } hold && now < hold;

    private void ReplyAll(List<AgentEffect> fx, bool success, string message)
    {
        foreach (var c in _waiting)
        {
            fx.Add(new AgentEffect.ReplyCommand(c, success, message));
        }

        _waiting.Clear();
    }

    private void ScheduleNext(List<AgentEffect> fx)
    {
        var next = _nextHeartbeat;
        if (_holdUntil is { } hold && hold < next)
        {
            next = hold;
        }

        if (LeaseUntil is { } until && Phase is AgentPhase.Activating or AgentPhase.Primary && until < next)
        {
            next = until;
        }

        if (!_voteReported)
        {
            var last = _lastPeerContact is { } c && c > _startedAt ? c : _startedAt;
            if (last + Timings.Promise < next)
            {
                next = last + Timings.Promise;
            }
        }

        fx.Add(new AgentEffect.ScheduleWake(next));
    }

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
