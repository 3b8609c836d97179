using System.Globalization;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Core;
using HaMesh.Shared.Failover;

namespace HaMesh.Simulation.Tests.Harness;

/// <summary>What a run looks like.</summary>
public sealed record SimOptions
{
    public int Nodes { get; init; } = 2;

    /// <summary>Faults are injected during this much simulated time; then everything heals.</summary>
    public TimeSpan FaultPhase { get; init; } = TimeSpan.FromSeconds(40);

    /// <summary>After faults stop, a healthy primary must serve through the IP within this much simulated time.</summary>
    public TimeSpan LivenessBound { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Clock rate drift bound (1 ± this) for every host.</summary>
    public double MaxDrift { get; init; } = 0.02;

    public CoreTimings Timings { get; init; } = CoreTimings.Default;

    public TimeSpan MinFailoverInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>An operator issues switchovers, force-promotes (--i-understand-data-loss) and maintenance on/off during the fault phase.</summary>
    public bool OperatorActions { get; init; } = true;

    /// <summary>Restart a node with the same lease-request incarnation (the bug the first version had): for the regression test.</summary>
    public bool ReuseIncarnation { get; init; }

    public int TraceTail { get; init; } = 300;
}

/// <summary>The outcome of one seeded run.</summary>
public sealed record SimResult(int Seed, string? Violation, ulong TraceHash, long Events, long FaultEvents, long AckedWrites, int Failovers, TimeSpan? RecoveredAfter, string Report);

/// <summary>
/// A whole HaMesh cluster in one thread: the coordinator core on W, two or three agent cores, the DRBD
/// and OVH models, and a client writing through the failover IP every 100 ms. Faults: partitions
/// (node isolation, pair cuts, one-way links), loss, crashes/restarts (persisted generation, DRBD data,
/// coordinator records and events survive; everything else is lost), clock drift, OVH errors/timeouts/
/// stuck tasks. Invariants I1–I5 (design §4.2) are checked after every event; liveness at the end.
/// </summary>
public sealed class ClusterSimulation
{
    private const string Resource = "r0";
    private const string Ip = "203.0.113.10/32";
    private const string W = "W";
    private const string Ovh = "ovh";
    private const string Client = "client";

    private readonly SimOptions _o;
    private readonly SimWorld _w;
    private readonly SimNetwork _net;
    private readonly DrbdModel _drbd;
    private readonly OvhModel _ovh;
    private readonly Dictionary<string, AgentHost> _agents = new(StringComparer.Ordinal);
    private readonly CoordinatorHost _coord;
    private readonly HashSet<long> _acked = [];
    private readonly HashSet<(string Node, ulong Generation)> _forced = [];
    private readonly Random _operator;
    private readonly List<string> _names;
    private long _writeIds;
    private long _lastServedAt = -1;
    private int _failovers;
    private string? _violation;

    private ClusterSimulation(int seed, SimOptions options)
    {
        _o = options;
        _w = new SimWorld(seed, options.TraceTail);
        // The operator's actions draw from their own stream, so the fault schedule of a seed is the same as without them.
        _operator = new Random(seed ^ 0x5eed);
        _net = new SimNetwork(_w);
        _names = [.. Enumerable.Range(0, options.Nodes).Select(i => ((char)('a' + i)).ToString())];
        _drbd = new DrbdModel(_w, _net, _names) { FencePeer = OnFencePeer, Reconnected = (n, p) => _agents?[n].Core?.FenceNoLongerNeeded(p) };
        _ovh = new OvhModel(_w);
        foreach (var n in _names)
        {
            _agents[n] = new AgentHost(n, Clock());
        }

        _coord = new CoordinatorHost(Clock());
    }

    public static SimResult Run(int seed, SimOptions? options = null)
    {
        var sim = new ClusterSimulation(seed, options ?? new SimOptions());
        return sim.Execute();
    }

    private SimClock Clock() => new(SimWorld.Ms(_w.Uniform(0, 1_000_000)), 1 + _w.Uniform(-_o.MaxDrift, _o.MaxDrift));

    private SimResult Execute()
    {
        // A healthy start: a is DRBD Primary with services up and routed to; the coordinator adopts it.
        var a = _drbd.Devices[_names[0]];
        a.Role = DrbdRole.Primary;
        a.ServiceUp = true;
        _ovh.RoutedTo[Ip] = _names[0];
        _drbd.Recompute();
        foreach (var h in _agents.Values)
        {
            StartAgent(h, drbdPrimary: h.Name == _names[0]);
        }

        StartCoordinator();
        ClientLoop();
        var faultEnd = SimWorld.Ms(_o.FaultPhase.TotalMilliseconds);
        ScheduleFaults(SimWorld.Ms(3000), faultEnd);
        if (_o.OperatorActions)
        {
            ScheduleOperator(SimWorld.Ms(2000), faultEnd);
        }

        _w.At(faultEnd, HealEverything);
        var end = faultEnd + SimWorld.Ms(_o.LivenessBound.TotalMilliseconds);
        TimeSpan? recovered = null;
        _w.RunUntil(end, () =>
        {
            Check();
            if (recovered is null && _w.Now > faultEnd && Healthy())
            {
                recovered = TimeSpan.FromTicks(_w.Now - faultEnd);
            }

            return _violation is null;
        });

        // A forced promotion may leave a DRBD split-brain; with the default policy HaMesh stops and tells the operator how to
        // recover (design §4): liveness is then the operator's, not the system's (seed 3086, 3 nodes).
        var awaitingOperator = _forced.Count > 0 && _coord.Events.Any(e => e.Kind == "SplitBrain");
        if (_violation is null && !Healthy() && !awaitingOperator)
        {
            Violate($"liveness: {_o.LivenessBound.TotalSeconds:0} s after faults stopped there is no healthy primary serving through {Ip} ({Describe()})");
        }

        var report = _violation is null ? "" : Render();
        return new SimResult(_w.Seed, _violation, _w.TraceHash, _w.Events, _w.FaultEvents, _acked.Count, _failovers, recovered, report);
    }

    // ---------------------------------------------------------------- invariants

    private void Check()
    {
        if (_violation is not null)
        {
            return;
        }

        // I1: at most one node holds a valid lease (each by its own clock).
        var holders = _agents.Values.Where(h => h.Core is { } c && c.HoldsLease(h.Clock.Local(_w.Now))).Select(h => h.Name).ToList();
        if (holders.Count > 1)
        {
            Violate($"I1: {string.Join(" and ", holders)} both hold a valid lease");
            return;
        }

        foreach (var h in _agents.Values)
        {
            var d = _drbd.Devices[h.Name];
            var local = h.Clock.Local(_w.Now);

            // I2: DRBD Primary only while holding the lease plus the self-fence (demote) deadline.
            if (d.Up && d.Role == DrbdRole.Primary && (h.LeaseEndSeen is not { } end || local > end + _o.Timings.SelfFenceDeadline))
            {
                Violate($"I2: {h.Name} is DRBD Primary {(h.LeaseEndSeen is { } e ? Fmt($"{(local - e).TotalMilliseconds:0} ms after its lease ended") : "without ever holding a lease")} (deadline {_o.Timings.SelfFenceDeadline.TotalMilliseconds:0} ms)");
                return;
            }

            // I4: the generation an agent has seen never decreases, and it is persisted before it is used.
            if (h.Core is { } core)
            {
                if (core.Generation < h.MaxGenerationSeen)
                {
                    Violate($"I4: {h.Name}'s generation went down from {h.MaxGenerationSeen} to {core.Generation}");
                    return;
                }

                if (core.Generation > h.PersistedGeneration)
                {
                    Violate($"I4: {h.Name} uses generation {core.Generation} but persisted only {h.PersistedGeneration}");
                    return;
                }

                h.MaxGenerationSeen = core.Generation;
            }
        }
    }

    /// <summary>I3, checked whenever a node becomes DRBD Primary.</summary>
    private void CheckPromoted(DrbdDevice d)
    {
        if (_agents[d.Node].Core is { } core && _forced.Contains((d.Node, core.Generation)))
        {
            // The operator forced this promotion acknowledging data loss: writes it lacks are lost by consent (I3 is waived
            // for them only; every later promotion must carry the writes acknowledged from now on).
            var lost = _acked.Count(id => !d.Data.Contains(id));
            _acked.IntersectWith(d.Data);
            _w.Trace("CHECK", $"I3 waived for the forced promotion of {d.Node} at generation {core.Generation}: {lost} acknowledged writes lost by consent", key: true);
            return;
        }

        var missing = _acked.Where(id => !d.Data.Contains(id)).Order().Take(5).ToList();
        if (missing.Count > 0)
        {
            Violate($"I3: {d.Node} was promoted without acknowledged writes {string.Join(",", missing)}{(missing.Count == 5 ? "…" : "")} ({_acked.Count(id => !d.Data.Contains(id))} missing)");
        }
    }

    private bool Healthy()
    {
        var primary = _coord.Core?.Record(Resource).Primary;
        if (primary is null || primary.Length == 0 || !_drbd.Devices.TryGetValue(primary, out var d))
        {
            return false;
        }

        return d.Up && d.Role == DrbdRole.Primary && d.Disk == DiskState.UpToDate && d.Writable && _ovh.RoutedTo.GetValueOrDefault(Ip) == primary
            && _lastServedAt >= _w.Now - SimWorld.Ms(500) && _agents[primary].Core is { } c && c.HoldsLease(_agents[primary].Clock.Local(_w.Now));
    }

    private void Violate(string what)
    {
        if (_violation is null)
        {
            _violation = what;
            _w.Trace("CHECK", "VIOLATION " + what, key: true);
        }
    }

    private string Render() =>
        $"seed {_w.Seed} ({_o.Nodes} nodes): {_violation}\nstate: {Describe()}\n--- key events ---\n{string.Join('\n', _w.KeyLines.TakeLast(150))}\n--- last {_o.TraceTail} trace lines ---\n{_w.Tail()}";

    private string Describe() => string.Join("; ", _drbd.Devices.Values.Select(d =>
        $"{d.Node}: {(d.Up ? "up" : "down")} {d.Role} {d.Disk}{(d.Frozen ? " frozen" : "")}{(d.StandAlone ? " StandAlone" : "")} writes={d.Data.Count} uuid={d.CurrentUuid:X} gen={_agents[d.Node].Core?.Generation} phase={_agents[d.Node].Core?.Phase}"))
        + Fmt($"; coordinator {(_coord.Core is null ? "down" : "up")} primary={_coord.Durable.GetValueOrDefault(Resource)?.Primary} gen={_coord.Durable.GetValueOrDefault(Resource)?.Generation} outdated=[{string.Join(",", _coord.Durable.GetValueOrDefault(Resource)?.Outdated.Keys ?? [])}]; routedTo={_ovh.RoutedTo.GetValueOrDefault(Ip)}; blocked={_net.Describe()}");

    // ---------------------------------------------------------------- faults

    private void ScheduleFaults(long from, long until)
    {
        var t = from;
        while (t < until)
        {
            t += SimWorld.Ms(_w.Uniform(200, 4000));
            if (t < until)
            {
                _w.At(t, InjectFault);
            }
        }
    }

    private void InjectFault()
    {
        _w.FaultEvents++;
        var roll = _w.Random.Next(100);
        var everyone = _names.Append(W).ToList();
        string what;
        if (roll < 14)
        {
            var x = Pick(everyone);
            foreach (var y in everyone.Append(Client).Append(Ovh).Where(y => y != x))
            {
                _net.Block(x, y);
                _net.Block(y, x);
            }

            what = $"isolate {x}";
        }
        else if (roll < 28)
        {
            var (x, y) = Pair(everyone);
            _net.Block(x, y);
            _net.Block(y, x);
            what = $"cut {x}<->{y}";
        }
        else if (roll < 42)
        {
            var (x, y) = Pair(everyone);
            _net.Block(x, y);
            what = $"one-way cut {x}->{y}";
        }
        else if (roll < 56)
        {
            _net.HealAll();
            what = "heal partitions";
        }
        else if (roll < 70)
        {
            var x = Pick(everyone);
            what = $"crash {x}";
            Crash(x);
            _w.After(SimWorld.Ms(_w.Uniform(300, 8000)), () => Restart(x));
        }
        else if (roll < 80)
        {
            _net.DropRate = new[] { 0.0, 0.02, 0.1, 0.3 }[_w.Random.Next(4)];
            what = Fmt($"loss {_net.DropRate:0.00}");
        }
        else if (roll < 90)
        {
            _ovh.Faulty = !_ovh.Faulty;
            what = $"OVH faults {(_ovh.Faulty ? "on" : "off")}";
        }
        else
        {
            var x = Pick(_names);
            _net.Block(Client, x);
            what = $"client cannot reach {x}";
        }

        _w.Trace("FAULT", what, key: true);
        _drbd.Recompute();
    }

    private void HealEverything()
    {
        _w.Trace("FAULT", "faults stop: heal, restart all, no loss, OVH healthy", key: true);
        _net.HealAll();
        _net.DropRate = 0;
        _ovh.Faulty = false;
        _ovh.Unstick();
        foreach (var n in _names.Append(W))
        {
            Restart(n);
        }

        CoordCall((c, now) => c.OnSetMaintenance(now, Resource, false, "faults stop"));
        _drbd.Recompute();
    }

    // ---------------------------------------------------------------- operator

    private void ScheduleOperator(long from, long until)
    {
        var t = from;
        while (true)
        {
            t += SimWorld.Ms(2000 + (_operator.NextDouble() * 7000));
            if (t >= until)
            {
                return;
            }

            _w.At(t, OperatorAction);
        }
    }

    private void OperatorAction()
    {
        if (_coord.Core is not { } core)
        {
            _w.Trace("operator", "coordinator down: command not delivered");
            return;
        }

        var roll = _operator.Next(100);
        var now = _coord.Clock.Local(_w.Now);
        var rec = core.Record(Resource);
        var target = _names[_operator.Next(_names.Count)];
        if (roll < 55 || roll >= 80)
        {
            var force = roll >= 80;
            var outcome = force
                ? core.OnForcePromote(now, Resource, target, rec.Generation, "sim operator")
                : core.OnSwitchover(now, Resource, target, rec.Generation, "sim operator");
            _w.Trace("operator", $"{(force ? "force-promote" : "switchover")} {target} at generation {rec.Generation}: {outcome.Refusal ?? Fmt($"accepted, generation {outcome.Generation}")}", key: true);
            if (force && outcome.Refusal is null)
            {
                _forced.Add((target, outcome.Generation));
            }

            ApplyCoordinator(outcome.Effects);
            AfterCoordinatorCall(core, now);
            return;
        }

        var on = !rec.Maintenance;
        _w.Trace("operator", $"maintenance {(on ? "on" : "off")}", key: true);
        CoordCall((c, t) => c.OnSetMaintenance(t, Resource, on, "sim operator"));
        if (on)
        {
            _w.After(SimWorld.Ms(500 + (_operator.NextDouble() * 5000)), () => CoordCall((c, t) => c.OnSetMaintenance(t, Resource, false, "sim operator: done")));
        }
    }

    private string Pick(List<string> from) => from[_w.Random.Next(from.Count)];

    private (string, string) Pair(List<string> from)
    {
        var x = Pick(from);
        var y = Pick([.. from.Where(n => n != x)]);
        return (x, y);
    }

    private void Crash(string who)
    {
        if (who == W)
        {
            _coord.Core = null;
            _coord.Epoch++;
            return;
        }

        var h = _agents[who];
        h.Core = null;
        h.Epoch++;
        h.LeaseEndSeen = null;
        _drbd.Crash(_drbd.Devices[who]);
    }

    private void Restart(string who)
    {
        if (who == W)
        {
            if (_coord.Core is null)
            {
                _w.Trace(W, "restart", key: true);
                StartCoordinator();
            }

            return;
        }

        var h = _agents[who];
        if (h.Core is null)
        {
            _w.Trace(who, "restart", key: true);
            _drbd.Devices[who].Up = true;
            _drbd.Recompute();
            StartAgent(h, drbdPrimary: false);
        }
    }

    // ---------------------------------------------------------------- client

    private void ClientLoop()
    {
        _w.After(SimWorld.Ms(100), ClientLoop);
        var id = ++_writeIds;
        if (_ovh.RoutedTo.GetValueOrDefault(Ip) is not { } target)
        {
            return;
        }

        _net.Send(Client, target, () =>
        {
            var d = _drbd.Devices[target];
            _drbd.Write(d, id, () =>
            {
                _acked.Add(id);
                _lastServedAt = _w.Now;
            });
        });
    }

    // ---------------------------------------------------------------- agents

    private void StartAgent(AgentHost h, bool drbdPrimary)
    {
        h.Incarnation = _o.ReuseIncarnation ? 1 : h.Incarnation + 1;
        var local = h.Clock.Local(_w.Now);
        // the initial primary starts with a lease granted at setup (the cluster's bootstrap)
        MonoTime? lease = drbdPrimary ? local + _o.Timings.Lease : null;
        h.Core = new AgentCore(h.Name, Resource, [.. _names.Where(n => n != h.Name)], _o.Timings, h.PersistedGeneration, h.Incarnation, drbdPrimary, local, lease);
        h.LeaseEndSeen = lease;

        ApplyAgent(h, h.Core.Start(local));
    }

    private void AgentCall(string node, Func<AgentCore, MonoTime, IReadOnlyList<AgentEffect>> call)
    {
        var h = _agents[node];
        if (h.Core is { } core)
        {
            ApplyAgent(h, call(core, h.Clock.Local(_w.Now)));
        }
    }

    private void ApplyAgent(AgentHost h, IReadOnlyList<AgentEffect> effects)
    {
        var core = h.Core!;
        if (core.LeaseUntil is { } until && (h.LeaseEndSeen is not { } seen || until > seen))
        {
            h.LeaseEndSeen = until;
        }

        var epoch = h.Epoch;
        foreach (var e in effects)
        {
            switch (e)
            {
                case AgentEffect.PersistGeneration p:
                    if (p.Generation < h.PersistedGeneration)
                    {
                        Violate($"I4: {h.Name} persisted generation {p.Generation} below {h.PersistedGeneration}");
                    }

                    h.PersistedGeneration = p.Generation;
                    break;
                case AgentEffect.SendLeaseRequest r when r.To == CoreNames.Coordinator:
                    _net.Send(h.Name, W, () => CoordCall((c, now) => c.OnLeaseRequest(now, h.Name, Resource, r.Generation, r.Sequence)));
                    break;
                case AgentEffect.SendLeaseRequest r:
                    _net.Send(h.Name, r.To, () => AgentCall(r.To, (c, now) => c.OnPeerLeaseRequest(now, h.Name, r.Generation, r.Sequence)));
                    break;
                case AgentEffect.SendLeaseReply r:
                    _net.Send(h.Name, r.To, () => AgentCall(r.To, (c, now) => c.OnLeaseReply(now, h.Name, r.Sequence, r.Granted, r.Generation)));
                    break;
                case AgentEffect.RunSteps s:
                    RunSteps(h, epoch, s);
                    break;
                case AgentEffect.ReplyCommand r when r.Command.From == CoreNames.Coordinator:
                    _w.Trace(h.Name, $"{r.Command.Kind}@{r.Command.Generation} -> {(r.Success ? "ok" : "refused")}: {r.Message}", key: r.Command.Kind != CommandKind.Demote || !r.Success);
                    _net.Send(h.Name, W, () => CoordCall((c, now) => c.OnCommandReply(now, h.Name, Resource, r.Command.Id, r.Success, r.Message)));
                    break;
                case AgentEffect.ReplyCommand r:
                    _net.Send(h.Name, r.Command.From, () => AgentCall(r.Command.From, (c, now) => c.OnFenceReply(now, r.Command.Id, h.Name, r.Success, r.Message)));
                    break;
                case AgentEffect.SendReport r:
                    var facts = Facts(h.Name, r);
                    var upToDate = _drbd.Devices.Values.Where(p => p.Node != h.Name && _drbd.Connected(h.Name, p.Node) && p.Disk == DiskState.UpToDate).Select(p => p.Node).ToList();
                    _net.Send(h.Name, W, () => CoordCall((c, now) => c.OnReport(now, h.Name, Resource, facts, r.Sequence, upToDate)));
                    break;
                case AgentEffect.ScheduleWake wake:
                    if (h.NextWake != wake.At)
                    {
                        h.NextWake = wake.At;
                        var at = wake.At;
                        _w.At(h.Clock.Global(at), () =>
                        {
                            if (h.Epoch == epoch && h.NextWake == at)
                            {
                                h.NextWake = null;
                                AgentCall(h.Name, (c, now) => c.OnTimer(now));
                            }
                        });
                    }

                    break;
                case AgentEffect.SendFenceRequest f when f.To == CoreNames.Coordinator:
                    _net.Send(h.Name, W, () => CoordCall((c, now) => c.OnFenceRequest(now, h.Name, Resource, f.Peer, f.Generation, f.Id, f.AfterReport)));
                    break;
                case AgentEffect.SendFenceRequest f:
                    _net.Send(h.Name, f.To, () => AgentCall(f.To, (c, now) => c.OnCommand(now, new AgentCommand(f.Id, h.Name, CommandKind.Outdate, f.Generation))));
                    break;
                case AgentEffect.FenceCompleted f:
                    _drbd.FenceConfirmed(_drbd.Devices[h.Name], f.Peer);
                    break;
                case AgentEffect.Note n:
                    _w.Trace(h.Name, n.Text);
                    break;
            }
        }
    }

    private NodeResourceFacts Facts(string node, AgentEffect.SendReport r)
    {
        var d = _drbd.Devices[node];
        var peers = _drbd.Devices.Values.Where(p => p != d).ToList();
        var connectedPrimary = peers.FirstOrDefault(p => _drbd.Connected(node, p.Node) && p.Role == DrbdRole.Primary);
        var connection = connectedPrimary is not null ? ConnectionState.Connected
            : d.StandAlone ? ConnectionState.StandAlone
            : peers.Any(p => _drbd.Connected(node, p.Node)) ? ConnectionState.Connected
            : ConnectionState.Connecting;
        return new NodeResourceFacts(d.Role, d.Disk, connection, connectedPrimary is not null ? DrbdRole.Primary : peers.Any(p => _drbd.Connected(node, p.Node)) ? DrbdRole.Secondary : DrbdRole.Unknown,
            r.Generation, r.PeerContactAge);
    }

    private void RunSteps(AgentHost h, ulong epoch, AgentEffect.RunSteps s)
    {
        var d = _drbd.Devices[h.Name];
        _w.Trace(h.Name, $"steps {s.Kind}@{s.Generation}: {s.Reason}", key: s.Kind != StepKind.Deactivate || s.Reason.StartsWith("self-fence", StringComparison.Ordinal) || d.Role == DrbdRole.Primary);
        if (s.Kind is StepKind.Deactivate or StepKind.DeactivateDiscard)
        {
            d.ServiceUp = false;  // services stop first
        }

        var duration = s.Kind == StepKind.Outdate ? 10 : _w.Uniform(20, 300);
        _w.After(SimWorld.Ms(duration), () =>
        {
            if (h.Epoch != epoch)
            {
                return;  // the node crashed meanwhile
            }

            var (ok, message) = Step(d, s.Kind);
            AgentCall(h.Name, (c, now) => c.OnStepsFinished(now, s.Kind, ok, message));
        });
    }

    private (bool, string) Step(DrbdDevice d, StepKind kind)
    {
        switch (kind)
        {
            case StepKind.Activate:
                if (d.Disk != DiskState.UpToDate)
                {
                    return (false, $"drbdadm primary: disk {d.Disk}");
                }

                if (_drbd.Devices.Values.Any(p => p != d && p.Role == DrbdRole.Primary && _drbd.Connected(d.Node, p.Node)))
                {
                    return (false, "drbdadm primary: the peer is Primary");
                }

                if (d.Role != DrbdRole.Primary)
                {
                    CheckPromoted(d);
                    d.Role = DrbdRole.Primary;
                    _failovers++;
                    _w.Trace(d.Node, $"DRBD Primary ({d.Data.Count} writes)", key: true);
                    _drbd.BecamePrimary(d);
                }

                d.ServiceUp = true;
                return (true, "primary, mounted, services started");
            case StepKind.Deactivate or StepKind.DeactivateDiscard:
                if (d.Role == DrbdRole.Primary)
                {
                    _w.Trace(d.Node, "DRBD Secondary", key: true);
                }

                d.Role = DrbdRole.Secondary;
                _drbd.Demoted(d);
                d.PendingFence.Clear();
                d.Fenced.Clear();
                if (kind == StepKind.DeactivateDiscard)
                {
                    d.DiscardOnConnect = true;
                    foreach (var p in _drbd.Devices.Values)
                    {
                        p.StandAlone = false;
                    }

                    _drbd.Recompute();
                }

                return (true, "stopped, unmounted, secondary");
            case StepKind.Outdate:
                if (d.Role == DrbdRole.Primary || _drbd.Devices.Values.Any(p => p != d && _drbd.Connected(d.Node, p.Node)))
                {
                    return (false, "drbdadm outdate: Primary or connected");
                }

                d.Disk = DiskState.Outdated;
                return (true, "outdated");
            default:
                return (false, "unknown");
        }
    }

    private void OnFencePeer(string node, string peer) => AgentCall(node, (c, now) => c.OnFencePeerRequested(now, peer));

    // ---------------------------------------------------------------- coordinator

    private void StartCoordinator()
    {
        var policy = new HaOptions(_o.Timings.Lease, _o.Timings.DriftMargin, _o.MinFailoverInterval);
        var config = new CoordinatorConfig(_names, [new CoreResource(Resource, _names[0], [Ip])], policy, _o.Timings.Heartbeat, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30))
        {
            PromoteRetryWindow = policy.Silence,
        };
        var now = _coord.Clock.Local(_w.Now);
        _coord.Core = new CoordinatorCore(config, _coord.Durable.Values, _coord.Events.Count == 0 ? 0 : _coord.Events.Max(e => Math.Max(e.Id, e.RefId)), now);
        _coord.NextWake = null;
        CoordCall((c, t) => c.OnTimer(t));
    }

    private void CoordCall(Func<CoordinatorCore, MonoTime, IReadOnlyList<CoordinatorEffect>> call)
    {
        if (_coord.Core is { } core)
        {
            var now = _coord.Clock.Local(_w.Now);
            ApplyCoordinator(call(core, now));
            AfterCoordinatorCall(core, now);
        }
    }

    /// <summary>Like the daemon's host: wake the core exactly when it asks (a stage deadline, the next heartbeat, or the instant a failover becomes possible).</summary>
    private void AfterCoordinatorCall(CoordinatorCore core, MonoTime now)
    {
        if (!ReferenceEquals(core, _coord.Core))
        {
            return;
        }

        var wake = core.NextWake(now);
        if (_coord.NextWake is { } pending && pending <= wake)
        {
            return;
        }

        _coord.NextWake = wake;
        var epoch = _coord.Epoch;
        _w.At(_coord.Clock.Global(wake), () =>
        {
            if (_coord.Epoch == epoch && _coord.NextWake == wake)
            {
                _coord.NextWake = null;
                CoordCall((c, t) => c.OnTimer(t));
            }
        });
    }

    private void ApplyCoordinator(IReadOnlyList<CoordinatorEffect> effects)
    {
        foreach (var e in effects)
        {
            switch (e)
            {
                case CoordinatorEffect.PersistRecord p:
                    var before = _coord.Durable.GetValueOrDefault(p.Record.Resource);
                    if (p.Record.Operation is { } op && before?.Operation?.Id != op.Id && !_coord.HasEvent(op.DecisionId))
                    {
                        Violate($"I5: operation {op.Kind} {op.Id} persisted without a durable decision event");
                    }

                    var lastKind = _coord.Events.LastOrDefault()?.Kind ?? "";
                    if (p.Record.Generation != (before?.Generation ?? 0) && !(lastKind == "Adopted" || lastKind.EndsWith("Started", StringComparison.Ordinal) || lastKind.EndsWith("RollingBack", StringComparison.Ordinal)))
                    {
                        Violate($"I5: generation {p.Record.Generation} persisted without a durable event");
                    }

                    _coord.Durable[p.Record.Resource] = p.Record;
                    break;
                case CoordinatorEffect.AppendEvent ev:
                    _coord.Events.Add(ev.Event);
                    _coord.EventRefs.Add(ev.Event.RefId);
                    _w.Trace(W, $"event {ev.Event.Kind}: {ev.Event.Text}", key: ev.Event.Kind is not ("OvhReadState" or "PromoteFailed" or "Demote"));
                    break;
                case CoordinatorEffect.SendLeaseGrant g:
                    _net.Send(W, g.Node, () => AgentCall(g.Node, (c, now) => c.OnLeaseReply(now, CoreNames.Coordinator, g.Sequence, g.Granted, g.Generation)));
                    break;
                case CoordinatorEffect.SendCommand s:
                    if (s.Command.Kind == CommandKind.Demote && !_coord.HasEvent(s.Command.Id))
                    {
                        Violate($"I5: Demote command {s.Command.Id} sent without a durable decision event");
                    }

                    _net.Send(W, s.Node, () => AgentCall(s.Node, (c, now) => c.OnCommand(now, s.Command)));
                    break;
                case CoordinatorEffect.ReplyFence f:
                    _net.Send(W, f.Node, () => AgentCall(f.Node, (c, now) => c.OnFenceReply(now, f.Id, CoreNames.Coordinator, f.Success, f.Message)));
                    break;
                case CoordinatorEffect.CallOvh call:
                    if (!_coord.HasEvent(call.CallId))
                    {
                        Violate($"I5: OVH call {call.CallId} ({call.Call}) made without a durable event");
                    }

                    _net.Send(W, Ovh, () =>
                    {
                        var reply = _ovh.Handle(call.Ip, call.Call);
                        if (reply is not null)
                        {
                            _net.Send(Ovh, W, () => CoordCall((c, now) => c.OnOvhReply(now, call.Resource, call.CallId, reply)), 20, 150);
                        }
                    }, 20, 150);
                    break;
                case CoordinatorEffect.PingViaIp ping:
                    if (_ovh.RoutedTo.GetValueOrDefault(ping.Ip) is { } target)
                    {
                        _net.Send(W, target, () =>
                        {
                            if (_agents[target].Core is { } core)
                            {
                                var gen = core.Generation;
                                _net.Send(target, W, () => CoordCall((c, now) => c.OnPingReply(now, ping.Resource, ping.CallId, target, gen)));
                            }
                        });
                    }

                    break;
            }
        }
    }

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    private sealed class AgentHost(string name, SimClock clock)
    {
        public string Name { get; } = name;

        public SimClock Clock { get; } = clock;

        public AgentCore? Core { get; set; }

        /// <summary>Bumped on every crash: events scheduled for an earlier run of the node are ignored.</summary>
        public ulong Epoch { get; set; }

        public ulong Incarnation { get; set; }

        public ulong PersistedGeneration { get; set; }

        public ulong MaxGenerationSeen { get; set; }

        public MonoTime? LeaseEndSeen { get; set; }

        public MonoTime? NextWake { get; set; }
    }

    private sealed class CoordinatorHost(SimClock clock)
    {
        public SimClock Clock { get; } = clock;

        public CoordinatorCore? Core { get; set; }

        public long Epoch { get; set; }

        public MonoTime? NextWake { get; set; }

        public Dictionary<string, CoordinatorRecord> Durable { get; } = new(StringComparer.Ordinal);

        public List<CoreEvent> Events { get; } = [];

        public HashSet<long> EventRefs { get; } = [];

        public bool HasEvent(long refId) => EventRefs.Contains(refId);
    }
}
