using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using HaMesh.Agent.Actions;
using HaMesh.Agent.Lease;
using HaMesh.Agent.Metrics;
using HaMesh.Agent.Reporting;
using HaMesh.Agent.State;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Core;
using HaMesh.Shared.Failover;
using HaMesh.Shared.Hosting;
using Microsoft.Extensions.Options;

namespace HaMesh.Agent.Core;

/// <summary>
/// The agent daemon's lease and command logic: a thin host around one sans-I/O <see cref="AgentCore"/> per resource,
/// the very code the deterministic simulation checks (design §8.5). It turns gRPC calls, coordinator grants, peer
/// answers, timer wake-ups and finished steps into the core's events, and carries out the core's effects: persist
/// the generation (fsync) before anything after it, send lease requests (coordinator stream, peer RenewLease), run
/// step sequences (<see cref="ResourceSteps"/>, <see cref="SelfFence"/>), answer commands, ask for a fence, set
/// the one timer. Every call into a core holds that resource's lock; dispatching never waits for I/O (steps and
/// calls run beside it and come back as events), so a core's events are handled one at a time, in order.
/// </summary>
public sealed partial class AgentCoreHost : BackgroundService, IAgentActions
{
    /// <summary>Name under which the lease timers beat for the systemd watchdog.</summary>
    public const string HealthName = "lease-loop";

    private readonly HaMeshOptions _options;
    private readonly ResourceSteps _steps;
    private readonly SelfFence _selfFence;
    private readonly GenerationStore _generations;
    private readonly AgentLocalState _local;
    private readonly StatusCollector _collector;
    private readonly ReportSignal _signal;
    private readonly ILeaseCoordinator _coordinator;
    private readonly IClusterCalls _calls;
    private readonly TimeProvider _time;
    private readonly ILogger<AgentCoreHost> _logger;
    private readonly AgentMetrics? _metrics;
    private readonly LoopHealth? _health;
    private readonly Dictionary<string, Slot> _slots = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private long _commandIds;

    public AgentCoreHost(
        IOptions<HaMeshOptions> options,
        ResourceSteps steps,
        SelfFence selfFence,
        GenerationStore generations,
        AgentLocalState local,
        StatusCollector collector,
        ReportSignal signal,
        ILeaseCoordinator coordinator,
        IClusterCalls calls,
        TimeProvider time,
        ILogger<AgentCoreHost> logger,
        AgentMetrics? metrics = null,
        LoopHealth? health = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Value;
        var t = _options.Cluster.Timings;
        Timings = new CoreTimings(t.Heartbeat, t.Lease, t.DriftMargin, t.SelfFenceDeadline);
        _steps = steps;
        _selfFence = selfFence;
        _generations = generations;
        _local = local;
        _collector = collector;
        _signal = signal;
        _coordinator = coordinator;
        _calls = calls;
        _time = time;
        _logger = logger;
        _metrics = metrics;
        _health = health;
        foreach (var r in _options.Resources)
        {
            _slots[r.Name] = new Slot(r);
        }

        coordinator.MessageReceived += OnCoordinatorMessage;
    }

    /// <summary>The cores' timings, from the cluster file (fixed for the life of the daemon).</summary>
    private CoreTimings Timings { get; }

    private MonoTime Now => MonoTime.FromTimestamp(_time.GetTimestamp(), _time.TimestampFrequency);

    /// <summary>The longest the lease timers may stay silent (they beat every heartbeat): never under 10 s.</summary>
    public static TimeSpan MaxSilence(HaMeshOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        var t = o.Cluster.Timings;
        return TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(10).Ticks, (t.Heartbeat + t.SelfFenceDeadline).Ticks * 3));
    }

    /// <summary>Done once every resource's core runs (the DRBD role at start was read); commands wait for it.</summary>
    public Task Started => Task.WhenAll(_slots.Values.Select(s => s.Started.Task));

    /// <summary>The core of <paramref name="resource"/> (tests and diagnostics; read it under no assumption of stillness).</summary>
    public AgentCore? CoreOf(string resource) => _slots.TryGetValue(resource, out var s) ? s.Core : null;

    /// <summary>Reads each resource's DRBD role once and starts its core (the hosted service does it at start; tests call it).</summary>
    public async Task StartCoresAsync(CancellationToken cancellationToken)
    {
        _health?.Register(HealthName, MaxSilence(_options));
        var incarnation = _generations.NextIncarnation();
        var peers = _options.Nodes.Where(n => n.Name != _options.Agent.Node).Select(n => n.Name).ToList();
        foreach (var slot in _slots.Values)
        {
            if (slot.Started.Task.IsCompleted)
            {
                continue;
            }

            var role = await ReadRoleAtStartAsync(slot.Resource, cancellationToken);
            var generation = _generations.Get(slot.Resource.Name);
            _local.SetGeneration(slot.Resource.Name, generation);
            lock (slot.Gate)
            {
                var now = Now;
                slot.Timer = _time.CreateTimer(_ => OnWake(slot), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
                slot.Core = new AgentCore(_options.Agent.Node, slot.Resource.Name, peers, Timings, generation, incarnation, role != DrbdRole.Secondary, now);
                if (role != DrbdRole.Secondary && generation > 0)
                {
                    Log.PrimaryAtStart(_logger, slot.Resource.Name, role == DrbdRole.Primary ? "is DRBD Primary" : "has a DRBD role that cannot be read");
                }

                Dispatch(slot, slot.Core.Start(now));
            }

            slot.Started.TrySetResult();
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await StartCoresAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// The role decides whether the core starts as a Primary found at start (no lease: renew now, self-fence unless
    /// granted). A resource DRBD does not list is down, so Secondary; a read that fails is retried for a few
    /// heartbeats, then taken as Primary: fencing a Secondary only re-checks what is already stopped, while missing a
    /// Primary would leave it unfenced.
    /// </summary>
    private async Task<DrbdRole> ReadRoleAtStartAsync(ResourceOptions resource, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            var role = await _collector.ReadRoleAsync(resource, ct);
            if (role is DrbdRole.Primary or DrbdRole.Secondary)
            {
                return role.Value;
            }

            if (attempt >= 4)
            {
                Log.RoleUnreadable(_logger, resource.Name, "taking it as Primary (fail safe)");
                return DrbdRole.Unknown;
            }

            Log.RoleUnreadable(_logger, resource.Name, "retrying");
            await Task.Delay(_options.Cluster.Timings.Heartbeat, _time, ct);
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        await base.StopAsync(cancellationToken);
    }

    public override void Dispose()
    {
        _coordinator.MessageReceived -= OnCoordinatorMessage;
        foreach (var s in _slots.Values)
        {
            s.Timer?.Dispose();
        }

        _stopping.Dispose();
        base.Dispose();
    }

    // ------------------------------------------------------------------ commands (AgentService)

    public Task<ActionResult> PromoteAsync(PromoteRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        return CommandAsync(request.Resource, c => c with { Kind = CommandKind.Promote, Generation = request.Generation, Force = request.Force }, cancellationToken);
    }

    public Task<ActionResult> DemoteAsync(DemoteRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        return CommandAsync(request.Resource, c => c with { Kind = CommandKind.Demote, Generation = request.Generation, DiscardMyData = request.DiscardMyData, Reconnect = request.Reconnect && !request.DiscardMyData }, cancellationToken);
    }

    public Task<ActionResult> OutdateAsync(OutdateRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var from = request.RequestedBy.Length > 0 ? request.RequestedBy : CoreNames.Coordinator;
        return CommandAsync(request.Resource, c => c with { Kind = CommandKind.Outdate, Generation = request.Generation, From = from }, cancellationToken);
    }

    public Task<ActionResult> AgreeAsync(AgreeRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        return CommandAsync(request.Resource, c => c with { Kind = CommandKind.Agree, Generation = request.Generation }, cancellationToken);
    }

    /// <summary>
    /// One command: refused with FAILED_PRECONDITION below the highest generation; a higher one is persisted (fsync)
    /// before the core sees it. The core joins a duplicate of the running command to it; any other command waits
    /// until the running one is answered (commands for a resource are serialised), except that a later decision
    /// supersedes a promotion still waiting for its lease (the core answers that one).
    /// </summary>
    private async Task<ActionResult> CommandAsync(string resource, Func<AgentCommand, AgentCommand> shape, CancellationToken cancellationToken)
    {
        var slot = _slots[resource];
        await slot.Started.Task.WaitAsync(cancellationToken);
        while (true)
        {
            Task idle;
            TaskCompletionSource<ActionResult> answer;
            lock (slot.Gate)
            {
                var core = slot.Core!;
                var command = shape(new AgentCommand(Interlocked.Increment(ref _commandIds), CoreNames.Coordinator, CommandKind.Promote, 0));
                if (command.Generation < core.Generation)
                {
                    throw new RpcException(new Status(StatusCode.FailedPrecondition,
                        Fmt($"generation: stale generation {command.Generation} < {core.Generation} for {resource}; this command is from an older coordinator decision")));
                }

                if (command.Generation > core.Generation)
                {
                    // Persisted before the core acts on it; if the core turns it away as busy, a higher generation was
                    // still issued by the coordinator, and refusing older ones from now on is right.
                    Persist(slot, command.Generation);
                }

                var joined = core.Running?.SameAs(command) == true;
                answer = new TaskCompletionSource<ActionResult>(TaskCreationOptions.RunContinuationsAsynchronously);
                slot.Commands[command.Id] = new Pending(answer, joined);
                core.NoteDrbdRole(_collector.RoleOf(resource));
                var fx = core.OnCommand(Now, command);
                if (fx.OfType<AgentEffect.ReplyCommand>().Any(r => r.Command.Id == command.Id && r.Busy))
                {
                    slot.Commands.Remove(command.Id);
                    idle = slot.Idle.Task;
                }
                else
                {
                    Dispatch(slot, fx);
                    idle = Task.CompletedTask;
                }
            }

            if (idle.IsCompleted)
            {
                return await answer.Task.WaitAsync(cancellationToken);
            }

            await idle.WaitAsync(cancellationToken);
        }
    }

    // ------------------------------------------------------------------ the grantor (a peer asks us)

    public Task<RenewLeaseResponse> RenewLeaseAsync(RenewLeaseRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var slot = _slots[request.Resource];
        var response = new RenewLeaseResponse { Sequence = request.Sequence, Grantor = _options.Agent.Node, Generation = _generations.Get(request.Resource) };
        _local.MarkPeerContact(request.Resource);
        if (!slot.Started.Task.IsCompleted)
        {
            response.Reason = Fmt($"{_options.Agent.Node} is starting (its DRBD role is not read yet)");
            return Task.FromResult(response);
        }

        lock (slot.Gate)
        {
            var fx = slot.Core!.OnPeerLeaseRequest(Now, request.Requester, request.Generation, request.Sequence);
            var reply = fx.OfType<AgentEffect.SendLeaseReply>().Single();
            response.Granted = reply.Granted;
            response.Generation = reply.Generation;
            response.Reason = reply.Reason;
            Dispatch(slot, [.. fx.Where(e => e is not AgentEffect.SendLeaseReply)]);
        }

        return Task.FromResult(response);
    }

    // ------------------------------------------------------------------ fence-peer (DRBD's handler asks us)

    /// <summary>
    /// The node DRBD lost its link to. With one other node it is that one. With more, DRBD's name for the peer must be a
    /// configured node: outdating the wrong node would leave the stale one promotable, so a peer it cannot tell apart gets
    /// "failed" (exit 1, I/O stays frozen) and the reason.
    /// </summary>
    private (string? Peer, string Why) FencedPeer(AgentFencePeerRequest request)
    {
        var others = _options.Nodes.Select(n => n.Name).Where(n => n != _options.Agent.Node).ToList();
        if (request.PeerName.Length > 0 && others.Contains(request.PeerName, StringComparer.Ordinal))
        {
            return (request.PeerName, "");
        }

        return others.Count switch
        {
            0 => (null, "no peer configured"),
            1 => (others[0], ""),
            _ => (null, Fmt($"cannot tell which of {string.Join(", ", others)} DRBD lost (DRBD's peer name '{request.PeerName}', node id {request.PeerNodeId}): with more than two nodes the DRBD host names (`on <host>`) must be the HaMesh node names; I/O stays frozen")),
        };
    }

    /// <summary>
    /// DRBD froze I/O and runs the fence-peer handler, which asks here. The core asks the coordinator to record the
    /// peer outdated, then (alternating, every few heartbeats) the peer itself to outdate; the handler's answer is
    /// "peer outdated" (exit 4) only once one of them confirmed, else exit 1 when its call ends: I/O stays frozen.
    /// </summary>
    public async Task<AgentFencePeerResponse> FencePeerAsync(AgentFencePeerRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var resource = _options.Resources.First(r => r.Name == request.Resource || r.DrbdResource == request.DrbdResource);
        if (request.Unfence)
        {
            return new AgentFencePeerResponse { Outcome = FenceOutcome.PeerOutdated, DrbdExitCode = 0, Message = "unfence: nothing to undo" };
        }

        var (peer, why) = FencedPeer(request);
        if (peer is null)
        {
            return new AgentFencePeerResponse { Outcome = FenceOutcome.Failed, DrbdExitCode = 1, Message = why };
        }

        var slot = _slots[resource.Name];
        await slot.Started.Task.WaitAsync(cancellationToken);
        var waiter = new FenceWaiter(peer);
        lock (slot.Gate)
        {
            slot.FenceWaiters.Add(waiter);
            Dispatch(slot, slot.Core!.OnFencePeerRequested(Now, peer));
        }

        try
        {
            var by = await waiter.Done.Task.WaitAsync(cancellationToken);
            if (by is null)
            {
                return new AgentFencePeerResponse
                {
                    Outcome = FenceOutcome.Failed,
                    DrbdExitCode = 1,
                    Message = Fmt($"neither the coordinator nor {peer} confirmed the fence ({waiter.Problems}): I/O stays frozen, the lease decides"),
                };
            }

            return new AgentFencePeerResponse
            {
                Outcome = FenceOutcome.PeerOutdated,
                DrbdExitCode = 4,
                Message = by == CoreNames.Coordinator ? Fmt($"coordinator recorded {peer} outdated") : Fmt($"{peer} outdated itself"),
            };
        }
        catch (OperationCanceledException)
        {
            lock (slot.Gate)
            {
                slot.FenceWaiters.Remove(waiter);
                if (!slot.FenceWaiters.Any(w => w.Peer == peer))
                {
                    slot.Core!.FenceNoLongerNeeded(peer);
                }

                if (waiter.Done.Task.IsCompletedSuccessfully && waiter.Done.Task.Result is { } by)
                {
                    return new AgentFencePeerResponse { Outcome = FenceOutcome.PeerOutdated, DrbdExitCode = 4, Message = Fmt($"{peer} fenced by {by}") };
                }
            }

            return new AgentFencePeerResponse
            {
                Outcome = FenceOutcome.Failed,
                DrbdExitCode = 1,
                Message = Fmt($"neither the coordinator nor {peer} confirmed the fence in time ({waiter.Problems}): I/O stays frozen"),
            };
        }
    }

    // ------------------------------------------------------------------ events from outside

    private void OnWake(Slot slot)
    {
        lock (slot.Gate)
        {
            if (slot.Core is { } core)
            {
                Dispatch(slot, core.OnTimer(Now));
            }
        }

        _health?.Beat(HealthName);
    }

    private void OnCoordinatorMessage(CoordinatorMessage message)
    {
        if (message.BodyCase != CoordinatorMessage.BodyOneofCase.LeaseGrant || !_slots.TryGetValue(message.LeaseGrant.Resource, out var slot) || slot.Core is null)
        {
            return;
        }

        var grant = message.LeaseGrant;
        lock (slot.Gate)
        {
            if (slot.Core.Phase is not AgentPhase.Secondary)
            {
                _metrics?.LeaseRenewal(slot.Resource.Name, CoreNames.Coordinator, grant.Granted);
            }

            Dispatch(slot, slot.Core.OnLeaseReply(Now, CoreNames.Coordinator, grant.Sequence, grant.Granted, grant.Generation));
        }
    }

    private async Task RenewWithPeerAsync(Slot slot, AgentEffect.SendLeaseRequest r)
    {
        var t = _options.Cluster.Timings;
        RenewLeaseResponse reply;
        try
        {
            reply = await _calls.RenewLeaseAsync(r.To,
                new RenewLeaseRequest { Resource = slot.Resource.Name, Generation = Math.Max(r.Generation, 1), Requester = _options.Agent.Node, Lease = Duration.FromTimeSpan(t.Lease), Sequence = r.Sequence },
                t.Heartbeat * 2, _stopping.Token);
        }
        catch (Exception ex) when (ex is RpcException or OperationCanceledException or ObjectDisposedException or HttpRequestException)
        {
            return;   // no answer: no peer contact this round, which is this node's vote
        }

        _local.MarkPeerContact(slot.Resource.Name);
        lock (slot.Gate)
        {
            _metrics?.LeaseRenewal(slot.Resource.Name, "peer", reply.Granted);
            Dispatch(slot, slot.Core!.OnLeaseReply(Now, r.To, r.Sequence, reply.Granted, reply.Generation));
        }
    }

    private async Task FenceAsync(Slot slot, AgentEffect.SendFenceRequest f)
    {
        var deadline = _options.Cluster.Timings.Lease;
        bool success;
        string message;
        try
        {
            if (f.To == CoreNames.Coordinator)
            {
                var reply = await _calls.FencePeerAsync(
                    new FencePeerRequest { Resource = slot.Resource.Name, Generation = f.Generation, RequestingNode = _options.Agent.Node, PeerNode = f.Peer, AfterReportSequence = _collector.CurrentSequence },
                    deadline, _stopping.Token);
                success = reply.Outcome is FenceOutcome.PeerOutdated or FenceOutcome.PeerAlreadyOutdated;
                message = Fmt($"coordinator: {reply.Outcome} {reply.Message}");
            }
            else
            {
                var reply = await _calls.OutdateAsync(f.To, new OutdateRequest { Resource = slot.Resource.Name, Generation = Math.Max(f.Generation, 1), RequestedBy = _options.Agent.Node }, deadline, _stopping.Token);
                success = reply.Success;
                message = Fmt($"{f.To}: {reply.Message}");
            }
        }
        catch (Exception ex) when (ex is RpcException or OperationCanceledException or ObjectDisposedException or HttpRequestException)
        {
            success = false;
            message = Fmt($"{(f.To == CoreNames.Coordinator ? "coordinator" : f.To)} unreachable ({(ex is RpcException rpc ? rpc.StatusCode.ToString() : ex.GetType().Name)})");
        }

        lock (slot.Gate)
        {
            if (!success)
            {
                // Once both the coordinator and the peer itself have failed to confirm, the handler is answered "failed"
                // (DRBD keeps I/O frozen and the lease decides) instead of waiting for its own deadline; the core asks on.
                foreach (var w in slot.FenceWaiters.Where(w => w.Peer == f.Peer).ToList())
                {
                    w.Failed.Add(f.To);
                    w.Problems = w.Problems.Length == 0 ? message : w.Problems + "; " + message;
                    if (w.Failed.Contains(CoreNames.Coordinator) && w.Failed.Contains(f.Peer))
                    {
                        slot.FenceWaiters.Remove(w);
                        w.Done.TrySetResult(null);
                    }
                }
            }

            Dispatch(slot, slot.Core!.OnFenceReply(Now, f.Id, f.To, success, message));
        }
    }

    // ------------------------------------------------------------------ effects

    /// <summary>Carries out the core's effects in order; call with the slot's lock held. Nothing here waits for I/O but the generation's fsync.</summary>
    private void Dispatch(Slot slot, IReadOnlyList<AgentEffect> effects)
    {
        var core = slot.Core!;
        foreach (var effect in effects)
        {
            switch (effect)
            {
                case AgentEffect.PersistGeneration p:
                    Persist(slot, p.Generation);
                    break;
                case AgentEffect.SendLeaseRequest r when r.To == CoreNames.Coordinator:
                    _coordinator.Enqueue(new AgentMessage { LeaseRequest = new LeaseRequest { Resource = slot.Resource.Name, Generation = r.Generation, Sequence = r.Sequence, Lease = Duration.FromTimeSpan(_options.Cluster.Timings.Lease) } });
                    break;
                case AgentEffect.SendLeaseRequest r:
                    Track(slot, Task.Run(() => RenewWithPeerAsync(slot, r)));
                    break;
                case AgentEffect.SendLeaseReply:
                    break;   // answered by RenewLeaseAsync itself
                case AgentEffect.RunSteps s:
                    var running = core.Running;
                    if (s.Kind == StepKind.Activate)
                    {
                        slot.SelfFenced = false;
                    }

                    Track(slot, Task.Run(() => RunStepsAsync(slot, s, running)));
                    break;
                case AgentEffect.ReplyCommand r:
                    Answer(slot, r);
                    break;
                case AgentEffect.SendReport r:
                    // The coordinator link reports every heartbeat by itself; the core's report matters when it has news.
                    if (r.PeerContactAge >= Timings.Promise || r.Phase != slot.ReportedPhase)
                    {
                        slot.ReportedPhase = r.Phase;
                        _signal.Trigger();
                    }

                    break;
                case AgentEffect.ScheduleWake w:
                    var delay = w.At - Now;
                    if (delay > TimeSpan.Zero)
                    {
                        slot.Timer!.Change(delay, Timeout.InfiniteTimeSpan);
                    }
                    else
                    {
                        // Due already: on another thread, never inside this dispatch (a timer due now may fire inside Change).
                        slot.Timer!.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
                        Track(slot, Task.Run(() => OnWake(slot)));
                    }

                    break;
                case AgentEffect.SendFenceRequest f:
                    Track(slot, Task.Run(() => FenceAsync(slot, f)));
                    break;
                case AgentEffect.FenceCompleted f:
                    foreach (var w in slot.FenceWaiters.Where(w => w.Peer == f.Peer).ToList())
                    {
                        slot.FenceWaiters.Remove(w);
                        w.Done.TrySetResult(f.By);
                    }

                    Log.PeerFenced(_logger, slot.Resource.Name, f.Peer, f.By);
                    break;
                case AgentEffect.Note n:
                    Log.CoreNote(_logger, slot.Resource.Name, n.Text);
                    break;
            }
        }

        ShowLease(slot);
    }

    private static void Track(Slot slot, Task task)
    {
        slot.Background.RemoveAll(t => t.IsCompleted);
        slot.Background.Add(task);
    }

    /// <summary>
    /// Completes once nothing the core of <paramref name="resource"/> asked for is still running (steps, peer calls,
    /// fence requests), including what their answers asked for in turn. Tests await it after moving the fake clock.
    /// </summary>
    public async Task WhenSettledAsync(string resource)
    {
        var slot = _slots[resource];
        while (true)
        {
            Task[] pending;
            lock (slot.Gate)
            {
                pending = [.. slot.Background.Where(t => !t.IsCompleted)];
            }

            if (pending.Length == 0)
            {
                return;
            }

            await Task.WhenAll(pending);
        }
    }

    private void Persist(Slot slot, ulong generation)
    {
        // fsync'd (temp file, fsync, rename, fsync directory) before anything after it runs.
        _local.SetGeneration(slot.Resource.Name, _generations.Raise(slot.Resource.Name, generation));
    }

    private void Answer(Slot slot, AgentEffect.ReplyCommand r)
    {
        if (!slot.Commands.Remove(r.Command.Id, out var pending))
        {
            return;
        }

        var result = new ActionResult { Success = r.Success, Message = r.Message, Resource = slot.Resource.Name, Generation = r.Command.Generation, Joined = pending.Joined };
        if (slot.FinishedSteps is { } steps)
        {
            result.Steps.AddRange(steps);
        }

        if (!pending.Joined)
        {
            if (r.Command.Kind == CommandKind.Promote)
            {
                Log.Promoted(_logger, slot.Resource.Name, r.Command.Generation, r.Success, r.Message);
            }
            else if (r.Command.Kind == CommandKind.Demote)
            {
                Log.Demoted(_logger, slot.Resource.Name, r.Command.Generation, r.Success, r.Message);
            }
        }

        _local.SetLastError(slot.Resource.Name, r.Success ? "" : r.Message);
        pending.Answer.TrySetResult(result);
        _signal.Trigger();
        if (slot.Core!.Running is null)
        {
            var idle = slot.Idle;
            slot.Idle = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            idle.TrySetResult();
        }
    }

    /// <summary>The lease as the status report shows it.</summary>
    private void ShowLease(Slot slot)
    {
        var core = slot.Core!;
        var now = Now;
        // Held only with a grant behind it: a Primary found at start (or a bootstrap) runs on a provisional lease
        // until its first grant, and shows NotHeld meanwhile, as it holds nothing anybody promised.
        if (core.HoldsLease(now) && core.LeaseUntil is { } until && core.LeaseGrantor.Length > 0)
        {
            _local.SetLease(slot.Resource.Name, LeaseState.Held, ToTimestamp(until), core.LeaseGrantor);
        }
        else if (slot.SelfFenced && core.Phase == AgentPhase.Secondary)
        {
            _local.SetLease(slot.Resource.Name, LeaseState.SelfFenced, null, "");
        }
        else if (slot.SelfFencing || (core.Phase is AgentPhase.Primary or AgentPhase.Activating && !core.HoldsLease(now)))
        {
            _local.SetLease(slot.Resource.Name, LeaseState.Expired, null, "");
        }
        else
        {
            _local.SetLease(slot.Resource.Name, LeaseState.NotHeld, null, "");
        }
    }

    private long ToTimestamp(MonoTime t) => (long)(t.SinceOrigin.TotalSeconds * _time.TimestampFrequency);

    // ------------------------------------------------------------------ steps

    private async Task RunStepsAsync(Slot slot, AgentEffect.RunSteps s, AgentCommand? running)
    {
        var resource = slot.Resource;
        ActionResult result;
        try
        {
            result = s switch
            {
                { Kind: StepKind.Activate } => await ActivateAsync(slot, running?.Force == true),
                { IsSelfFence: true } => await SelfFenceAsync(slot, s),
                { Kind: StepKind.Deactivate or StepKind.DeactivateDiscard } => await DeactivateAsync(resource, s.Kind == StepKind.DeactivateDiscard, running?.Reconnect == true),
                _ => await RunForwardAsync(slot, [_steps.Outdate(resource)], undo: false, leaseGuard: false),
            };
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !_stopping.IsCancellationRequested)
        {
            result = new ActionResult { Success = false, Message = Fmt($"{s.Kind} of {resource.Name} failed: {ex.Message}") };
        }
        catch (OperationCanceledException)
        {
            return;   // the agent is stopping
        }

        lock (slot.Gate)
        {
            slot.FinishedSteps = result.Steps;
            try
            {
                Dispatch(slot, slot.Core!.OnStepsFinished(Now, s.Kind, result.Success, result.Message));
            }
            finally
            {
                slot.FinishedSteps = null;
            }
        }
    }

    private async Task<ActionResult> ActivateAsync(Slot slot, bool force)
    {
        var resource = slot.Resource;
        MonoTime? promised;
        lock (slot.Gate)
        {
            promised = slot.Core!.PromiseUntil;
        }

        if (promised is { } p)
        {
            await WaitForPeerToStepDownAsync(slot, p);
        }

        var result = await RunForwardAsync(slot, _steps.Activation(resource, force), undo: true, leaseGuard: true);
        if (result.Success)
        {
            // Known now, not at the next status read.
            _collector.NoteRole(resource.Name, DrbdRole.Primary);
        }

        return result;
    }

    /// <summary>
    /// A peer this node granted leases to has lost its lease once the promise ran out (the core waited for that), but it
    /// may still be Primary for up to its self-fence deadline while it stops services, unmounts and demotes (design §4.2,
    /// I2). While DRBD shows it connected and Primary, wait for it (a read per heartbeat) instead of letting DRBD refuse
    /// ("Multiple primaries not allowed"); after the deadline go on and let DRBD's refusal name the problem.
    /// </summary>
    private async Task WaitForPeerToStepDownAsync(Slot slot, MonoTime promisedUntil)
    {
        var t = _options.Cluster.Timings;
        var deadline = promisedUntil + t.SelfFenceDeadline;
        var logged = false;
        while (Now < deadline && await _collector.PeerIsConnectedPrimaryAsync(slot.Resource, _stopping.Token))
        {
            if (!logged)
            {
                Log.WaitingForPeerStepDown(_logger, slot.Resource.Name, t.SelfFenceDeadline.TotalMilliseconds);
                logged = true;
            }

            await Task.Delay(t.Heartbeat, _time, _stopping.Token);
        }
    }

    private async Task<ActionResult> DeactivateAsync(ResourceOptions resource, bool discardMyData, bool reconnect)
    {
        var sequence = _steps.Deactivation(resource).ToList();
        if (discardMyData)
        {
            sequence.Insert(sequence.Count - 1, _steps.Disconnect(resource));
            sequence.Add(_steps.Reconnect(resource, discardMyData: true));
        }
        else if (reconnect)
        {
            sequence.Add(_steps.Reconnect(resource, discardMyData: false));
        }

        // Demotion never undoes itself: a half-demoted node is safer than a re-promoted one.
        var result = await RunForwardAsync(null, sequence, undo: false, leaseGuard: false);
        if (result.Success)
        {
            _collector.NoteRole(resource.Name, DrbdRole.Secondary);
        }

        return result;
    }

    private async Task<ActionResult> SelfFenceAsync(Slot slot, AgentEffect.RunSteps s)
    {
        var name = slot.Resource.Name;
        Log.LeaseExpired(_logger, name, s.Reason[AgentEffect.RunSteps.SelfFencePrefix.Length..]);
        _metrics?.LeaseExpired(name);
        TimeSpan? deadline = s.FenceBy is { } by ? by - Now is var left && left > TimeSpan.Zero ? left : TimeSpan.Zero : null;
        lock (slot.Gate)
        {
            slot.SelfFencing = true;
            ShowLease(slot);
        }

        bool fenced;
        var ran = new List<StepResult>();
        try
        {
            fenced = await _selfFence.RunAsync(name, _stopping.Token, deadline, ran);
        }
        finally
        {
            lock (slot.Gate)
            {
                slot.SelfFencing = false;
            }
        }

        _metrics?.SelfFenced(name, fenced);
        lock (slot.Gate)
        {
            slot.SelfFenced = true;
        }

        if (fenced)
        {
            _collector.NoteRole(name, DrbdRole.Secondary);
        }

        var result = new ActionResult { Success = fenced, Message = fenced ? "self-fenced after lease expiry" : Fmt($"self-fence incomplete: {_local.GetLastError(name)}") };
        result.Steps.AddRange(ran);
        return result;
    }

    /// <param name="slot">With <paramref name="leaseGuard"/>: whose lease is checked before each step.</param>
    /// <param name="sequence">The steps, in order.</param>
    /// <param name="undo">Whether a failure undoes what this call did.</param>
    /// <param name="leaseGuard">For an activation: a lease that ran out stops it before its next step (nothing undone: the
    /// core self-fences next, which takes everything down).</param>
    private async Task<ActionResult> RunForwardAsync(Slot? slot, IReadOnlyList<ResourceStep> sequence, bool undo, bool leaseGuard)
    {
        var result = new ActionResult { Success = true };
        var done = new List<ResourceStep>();
        foreach (var step in sequence)
        {
            if (leaseGuard && slot is not null && !HoldsLease(slot))
            {
                result.Success = false;
                result.Message = Fmt($"the lease of {slot.Resource.Name} ran out before step {step.Name}: activation abandoned, the self-fence takes it down; retry");
                return result;
            }

            var outcome = await _steps.RunAsync(step, CancellationToken.None);
            result.Steps.Add(outcome);
            if (outcome.Outcome == StepOutcome.Done)
            {
                done.Add(step);
            }
            else if (outcome.Outcome == StepOutcome.Failed)
            {
                result.Success = false;
                result.Message = Fmt($"step {outcome.Step} failed: '{outcome.Command}' exited {outcome.ExitCode}: {outcome.Stderr}");
                break;
            }
        }

        if (!result.Success && undo)
        {
            // Undo what this call did (not what was already so), newest first.
            foreach (var step in done.AsEnumerable().Reverse().Where(s => s.Undo is not null))
            {
                var reverse = await _steps.RunAsync(new ResourceStep(step.Name, _ => Task.FromResult(false), step.Undo!, null), CancellationToken.None);
                result.Steps.Add(new StepResult(reverse) { Outcome = reverse.Outcome == StepOutcome.Done ? StepOutcome.Undone : StepOutcome.Failed });
            }
        }

        if (result.Success)
        {
            result.Message = string.Join(", ", result.Steps.Select(s => $"{s.Step}={s.Outcome}"));
        }

        return result;
    }

    private bool HoldsLease(Slot slot)
    {
        lock (slot.Gate)
        {
            return slot.Core!.HoldsLease(Now);
        }
    }

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    private sealed record Pending(TaskCompletionSource<ActionResult> Answer, bool Joined);

    /// <summary>A fence-peer handler waiting: for who confirmed (null: both the coordinator and the peer failed to).</summary>
    private sealed class FenceWaiter(string peer)
    {
        public string Peer { get; } = peer;

        public TaskCompletionSource<string?> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public HashSet<string> Failed { get; } = new(StringComparer.Ordinal);

        public string Problems { get; set; } = "";
    }

    /// <summary>One resource: its core, its lock, its timer, and what waits on it.</summary>
    private sealed class Slot(ResourceOptions resource)
    {
        public ResourceOptions Resource { get; } = resource;

        public Lock Gate { get; } = new();

        public AgentCore? Core { get; set; }

        public ITimer? Timer { get; set; }

        public TaskCompletionSource Started { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Dictionary<long, Pending> Commands { get; } = [];

        /// <summary>Steps and calls started for the core and not yet come back (for <see cref="WhenSettledAsync"/>).</summary>
        public List<Task> Background { get; } = [];

        /// <summary>Completed (and replaced) whenever the last running command is answered: a command turned away as busy waits on it.</summary>
        public TaskCompletionSource Idle { get; set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public List<FenceWaiter> FenceWaiters { get; } = [];

        /// <summary>The steps of the sequence just finished, for the answers the core gives in reply to it.</summary>
        public IReadOnlyList<StepResult>? FinishedSteps { get; set; }

        public bool SelfFencing { get; set; }

        public bool SelfFenced { get; set; }

        public AgentPhase? ReportedPhase { get; set; }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1201, Level = LogLevel.Warning, Message = "Promote {Resource} at generation {Generation}: success={Success} ({Detail})")]
        public static partial void Promoted(ILogger logger, string resource, ulong generation, bool success, string detail);

        [LoggerMessage(EventId = 1202, Level = LogLevel.Warning, Message = "Demote {Resource} at generation {Generation}: success={Success} ({Detail})")]
        public static partial void Demoted(ILogger logger, string resource, ulong generation, bool success, string detail);

        [LoggerMessage(EventId = 1204, Level = LogLevel.Warning, Message = "Promote {Resource} held: the peer is still DRBD Primary and connected after its lease ran out; waiting up to its self-fence deadline ({Milliseconds} ms) for it to demote")]
        public static partial void WaitingForPeerStepDown(ILogger logger, string resource, double milliseconds);

        [LoggerMessage(EventId = 1205, Level = LogLevel.Information, Message = "{Resource}: {Text}")]
        public static partial void CoreNote(ILogger logger, string resource, string text);

        [LoggerMessage(EventId = 1206, Level = LogLevel.Warning, Message = "{Resource}: peer {Peer} fenced (confirmed by {By}): DRBD may resume I/O")]
        public static partial void PeerFenced(ILogger logger, string resource, string peer, string by);

        [LoggerMessage(EventId = 1301, Level = LogLevel.Critical, Message = "Lease of {Resource} expired while Primary ({Why}): self-fencing")]
        public static partial void LeaseExpired(ILogger logger, string resource, string why);

        [LoggerMessage(EventId = 1302, Level = LogLevel.Critical, Message = "{Resource} {What} at agent start: it holds no lease; renewing now, self-fencing unless granted")]
        public static partial void PrimaryAtStart(ILogger logger, string resource, string what);

        [LoggerMessage(EventId = 1303, Level = LogLevel.Warning, Message = "Cannot read the DRBD role of {Resource} at start: {Next}")]
        public static partial void RoleUnreadable(ILogger logger, string resource, string next);
    }
}
