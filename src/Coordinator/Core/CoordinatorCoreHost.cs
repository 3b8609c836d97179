using System.Globalization;
using System.Threading.Channels;
using Grpc.Core;
using HaMesh.Coordinator.Cloud;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Membership;
using HaMesh.Coordinator.Metrics;
using HaMesh.Coordinator.Operations;
using HaMesh.Coordinator.Ovh;
using HaMesh.Coordinator.Store;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Core;
using HaMesh.Shared.Failover;
using HaMesh.Shared.Hosting;
using Microsoft.Extensions.Options;

namespace HaMesh.Coordinator.Core;

/// <summary>
/// Runs the sans-I/O <see cref="CoordinatorCore"/> (the code the deterministic simulation checks) in the daemon. Reports
/// and lease requests from the Connect streams, fence requests, operator calls, agent and OVH answers and one timer
/// become core events, under one lock; the effects are carried out in order: records and events are committed to SQLite
/// (WAL, synchronous=FULL: fsync) before anything after them runs, consecutive ones in one transaction; lease grants go
/// to the node's stream; commands, OVH calls and pings through the failover IP run beside the core and come back as
/// events. A dispatch never waits for the network. A commit that fails stops the coordinator: its next start reloads
/// the store and resumes from what is durable.
/// </summary>
public sealed partial class CoordinatorCoreHost : IHostedService, IDisposable
{
    /// <summary>Name under which the core's timer beats for the systemd watchdog.</summary>
    public const string HealthName = "decision-loop";

    private readonly HaMeshOptions _options;
    private readonly SqliteStore _store;
    private readonly IAgentCommands _agents;
    private readonly FailoverIpVerifier _verifier;
    private readonly IpRoutingCache _routes;
    private readonly NodeRegistry? _registry;
    private readonly HashSet<string> _nodeNames;
    private readonly IServiceProvider _services;
    private readonly TimeProvider _time;
    private readonly ILogger<CoordinatorCoreHost> _logger;
    private readonly IHostApplicationLifetime? _lifetime;
    private readonly LoopHealth? _health;
    private readonly CoordinatorMetrics? _metrics;
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly Dictionary<string, Channel<CoordinatorMessage>> _streams = new(StringComparer.Ordinal);
    private readonly Dictionary<long, (TaskCompletionSource<FencePeerResponse> Answer, bool Already)> _fences = [];
    private readonly List<Task> _background = [];
    private CoordinatorCore? _core;
    private ITimer? _timer;
    private long _maxId;
    private long _fenceIds;
    private bool _broken;

    public CoordinatorCoreHost(
        IOptions<HaMeshOptions> options,
        SqliteStore store,
        IAgentCommands agents,
        FailoverIpVerifier verifier,
        IpRoutingCache routes,
        IServiceProvider services,
        TimeProvider time,
        ILogger<CoordinatorCoreHost> logger,
        IHostApplicationLifetime? lifetime = null,
        NodeRegistry? registry = null,
        LoopHealth? health = null,
        CoordinatorMetrics? metrics = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Value;
        _store = store;
        _agents = agents;
        _verifier = verifier;
        _routes = routes;
        _services = services;
        _time = time;
        _logger = logger;
        _lifetime = lifetime;
        _registry = registry;
        _health = health;
        _metrics = metrics;
        Config = ConfigFrom(_options);
        _nodeNames = _options.Nodes.Select(n => n.Name).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>The core's configuration, from the cluster file.</summary>
    public CoordinatorConfig Config { get; }

    private MonoTime Now => MonoTime.FromTimestamp(_time.GetTimestamp(), _time.TimestampFrequency);

    private CoordinatorCore Core => _core ?? throw new RpcException(new Status(StatusCode.Unavailable, "the coordinator is starting"));

    /// <summary>The core's configuration from the options: the daemon's timings (design §3).</summary>
    public static CoordinatorConfig ConfigFrom(HaMeshOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        var t = o.Cluster.Timings;
        var policy = new HaOptions(t.Lease, t.DriftMargin, t.MinFailoverInterval);
        var resources = o.Resources.Select(r => new CoreResource(r.Name, r.PreferredNode, r.FailoverIps, r.SplitBrainPolicy == SplitBrainPolicy.DiscardOldPrimary) { DrbdResource = r.DrbdResource }).ToList();
        return new CoordinatorConfig(o.Nodes.Select(n => n.Name).ToList(), resources, policy, t.Heartbeat, t.OvhPollInterval, t.OvhTimeout + TimeSpan.FromMinutes(1))
        {
            ReplyTimeout = TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(1).Ticks, t.Heartbeat.Ticks * 4)),
            PromoteRetryWindow = policy.Silence,
            // An OVH read is several calls, each retried by the client: wait for it rather than overtake it.
            OvhReplyTimeout = TimeSpan.FromTicks(Math.Min(t.OvhTimeout.Ticks, TimeSpan.FromMinutes(2).Ticks)),
            MoveTimeout = t.OvhTimeout,
        };
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _health?.Register(HealthName, TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(10).Ticks, _options.Cluster.Timings.Heartbeat.Ticks * 20)));
        lock (_gate)
        {
            var now = Now;
            var (records, lastId) = _store.LoadCore(Config.Resources.Select(r => r.Name).ToList(), now);
            var lastFailovers = new Dictionary<string, MonoTime>(StringComparer.Ordinal);
            foreach (var r in Config.Resources)
            {
                if (_store.GetResource(r.Name).LastFailoverAt is { } at)
                {
                    lastFailovers[r.Name] = now - (_time.GetUtcNow() - at);
                }
            }

            _maxId = lastId;
            _core = new CoordinatorCore(Config, records, lastId, now, lastFailovers);
            _timer = _time.CreateTimer(_ => OnTimer(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            foreach (var rec in records.Where(r => r.Operation is not null))
            {
                Log.Resuming(_logger, rec.Resource, rec.Operation!.Kind.ToString(), rec.Operation.Target, rec.Operation.Generation, rec.Operation.Stage.ToString());
            }

            Apply(_core.OnTimer(now));
        }

        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        Task[] pending;
        lock (_gate)
        {
            _broken = true;   // nothing more is carried out: an operation in flight stays recorded for the next start
            _timer?.Dispose();
            pending = [.. _background];
        }

        await _stopping.CancelAsync();
        try
        {
            await Task.WhenAll(pending).WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // the host gave up waiting
        }
    }

    public void Dispose()
    {
        _timer?.Dispose();
        _stopping.Dispose();
    }

    // ------------------------------------------------------------------ inputs

    /// <summary>The Connect stream of <paramref name="node"/> opened: lease grants for it are written to the returned channel.</summary>
    public ChannelReader<CoordinatorMessage> OpenStream(string node)
    {
        var channel = Channel.CreateBounded<CoordinatorMessage>(new BoundedChannelOptions(64) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
        lock (_gate)
        {
            if (_streams.Remove(node, out var old))
            {
                old.Writer.TryComplete();   // a newer stream of the same node replaces it
            }

            _streams[node] = channel;
        }

        return channel.Reader;
    }

    public void CloseStream(string node, ChannelReader<CoordinatorMessage> reader)
    {
        lock (_gate)
        {
            if (_streams.TryGetValue(node, out var c) && c.Reader == reader)
            {
                _streams.Remove(node);
                c.Writer.TryComplete();
            }
        }
    }

    /// <summary>An agent's status report (already checked to come from <paramref name="node"/>'s stream).</summary>
    public void Report(string node, NodeStatus report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var reported = report.Resources.Select(r => (r.Resource, Facts(r), UpToDatePeers(node, r))).ToList();   // read before the gate
        lock (_gate)
        {
            if (_core is not { } core)
            {
                return;
            }

            var now = Now;
            foreach (var (resource, facts, peers) in reported)
            {
                Apply(core.OnReport(now, node, resource, facts, report.Sequence, peers));   // the core ignores unknown resources
            }
        }
    }

    public void LeaseRequest(string node, LeaseRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        lock (_gate)
        {
            if (_core is { } core)
            {
                Apply(core.OnLeaseRequest(Now, node, request.Resource, request.Generation, request.Sequence));   // the core ignores unknown resources
            }
        }
    }

    /// <summary>FencePeer (design §4.1): the peer is recorded outdated (persisted) before the answer.</summary>
    public Task<FencePeerResponse> FencePeerAsync(FencePeerRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var answer = new TaskCompletionSource<FencePeerResponse>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            var id = ++_fenceIds;
            var already = Config.Resources.Any(r => r.Name == request.Resource) && Core.Record(request.Resource).Outdated.TryGetValue(request.PeerNode, out var at) && at >= request.Generation;
            _fences[id] = (answer, already);
            Apply(Core.OnFenceRequest(Now, request.RequestingNode, request.Resource, request.PeerNode, request.Generation, id, request.AfterReportSequence));
            if (_fences.Remove(id))
            {
                answer.TrySetResult(new FencePeerResponse { Outcome = FenceOutcome.Failed, Generation = Core.Record(request.Resource).Generation, Message = "the coordinator did not answer the fence request" });
            }
        }

        return answer.Task.WaitAsync(cancellationToken);
    }

    /// <summary>An operator's switchover or force-promote; refusals are FAILED_PRECONDITION with the reason.</summary>
    public OperationResult Operator(string resource, string target, ulong generation, string reason, bool force)
    {
        lock (_gate)
        {
            var outcome = force ? Core.OnForcePromote(Now, resource, target, generation, reason) : Core.OnSwitchover(Now, resource, target, generation, reason);
            if (outcome.Refusal is { } why)
            {
                throw new RpcException(new Status(StatusCode.FailedPrecondition, why));
            }

            if (force)
            {
                Log.ForcePromote(_logger, resource, target, outcome.Generation, reason);
            }

            var stored = Apply(outcome.Effects);
            var op = Core.Record(resource).Operation;
            var kind = force ? "force-promote" : "switchover";
            var from = op?.From is { Length: > 0 } f && f != target ? f + " → " : "";
            return new OperationResult
            {
                OperationId = outcome.OperationId.ToString(CultureInfo.InvariantCulture),
                Resource = resource,
                Generation = outcome.Generation,
                Accepted = true,
                EventSequence = stored.FirstOrDefault()?.Sequence ?? 0,
                Message = Fmt($"{kind} {outcome.OperationId}: {from}{target} started at generation {outcome.Generation}"),
            };
        }
    }

    /// <summary>Maintenance on or off at the operator's generation (a stale picture is refused).</summary>
    public OperationResult SetMaintenance(string resource, bool enabled, ulong generation, string reason)
    {
        lock (_gate)
        {
            var rec = Core.Record(resource);
            Api.OperatorRequests.RequireCurrentGeneration(generation, rec.Generation, resource);
            if (rec.Maintenance != enabled)
            {
                Apply(Core.OnSetMaintenance(Now, resource, enabled, reason));
                Log.Maintenance(_logger, resource, enabled ? "on" : "off");
            }

            return new OperationResult { Resource = resource, Generation = rec.Generation, Accepted = true, Message = $"maintenance {(enabled ? "on" : "off")}" };
        }
    }

    /// <summary>Whether an operation is in flight for the resource (ClaimIp refuses to run beside one).</summary>
    public bool Busy(string resource)
    {
        lock (_gate)
        {
            return _core?.Busy(resource) ?? false;
        }
    }

    /// <summary>The view the core last decided on (tests, status).</summary>
    public ClusterView View()
    {
        lock (_gate)
        {
            return Core.BuildView();
        }
    }

    /// <summary>Completes once nothing the core asked for is still running, including what the answers asked for in turn (tests).</summary>
    public async Task WhenSettledAsync()
    {
        while (true)
        {
            Task[] pending;
            lock (_gate)
            {
                pending = [.. _background.Where(t => !t.IsCompleted)];
            }

            if (pending.Length == 0)
            {
                return;
            }

            await Task.WhenAll(pending);
        }
    }

    private void OnTimer()
    {
        var started = _time.GetTimestamp();
        lock (_gate)
        {
            if (_core is { } core && !_broken)
            {
                Apply(core.OnTimer(Now));
            }
        }

        _health?.Beat(HealthName);
        _metrics?.DecisionTick(_time.GetElapsedTime(started));
    }

    // ------------------------------------------------------------------ effects

    /// <summary>Carries out <paramref name="effects"/> in order (under the gate); returns the events it stored.</summary>
    private List<StoredEvent> Apply(IReadOnlyList<CoordinatorEffect> effects)
    {
        var stored = new List<StoredEvent>();
        var records = new List<CoordinatorRecord>();
        var events = new List<CoreEvent>();
        foreach (var effect in effects)
        {
            if (_broken)
            {
                return stored;
            }

            switch (effect)
            {
                case CoordinatorEffect.PersistRecord p:
                    records.Add(p.Record);
                    continue;
                case CoordinatorEffect.AppendEvent e:
                    events.Add(e.Event);
                    _maxId = Math.Max(_maxId, Math.Max(e.Event.Id, e.Event.RefId));
                    continue;
                case CoordinatorEffect.Holding h:
                    Log.Holding(_logger, h.Resource, h.Reason);
                    continue;
            }

            // Everything durable before this effect is committed first (one transaction, fsync).
            Commit(records, events, stored);
            if (_broken)
            {
                return stored;
            }

            switch (effect)
            {
                case CoordinatorEffect.SendLeaseGrant g:
                    Grant(g);
                    break;
                case CoordinatorEffect.SendCommand c:
                    _maxId = Math.Max(_maxId, c.Command.Id);
                    var candidate = _core!.Record(c.Resource).Operation?.Target ?? "";
                    Track(SendCommandAsync(c, candidate));
                    break;
                case CoordinatorEffect.ReplyFence f:
                    if (_fences.Remove(f.Id, out var fence))
                    {
                        var rec = _core!.Record(f.Resource);
                        fence.Answer.TrySetResult(new FencePeerResponse
                        {
                            Outcome = !f.Success ? FenceOutcome.Failed : fence.Already ? FenceOutcome.PeerAlreadyOutdated : FenceOutcome.PeerOutdated,
                            Generation = rec.Generation,
                            Message = f.Message,
                        });
                    }

                    break;
                case CoordinatorEffect.CallOvh o:
                    _maxId = Math.Max(_maxId, o.CallId);
                    Track(CallOvhAsync(o));
                    break;
                case CoordinatorEffect.PingViaIp p:
                    _maxId = Math.Max(_maxId, p.CallId);
                    var op = _core!.Record(p.Resource).Operation;
                    Track(PingAsync(p, op?.Target ?? "", op?.Generation ?? 0));
                    break;
            }
        }

        Commit(records, events, stored);
        if (_core is { } core && !_broken && _timer is { } timer)
        {
            var now = Now;
            timer.Change(core.NextWake(now) - now, Timeout.InfiniteTimeSpan);
        }

        return stored;
    }

    private void Commit(List<CoordinatorRecord> records, List<CoreEvent> events, List<StoredEvent> stored)
    {
        if (records.Count == 0 && events.Count == 0)
        {
            return;
        }

        try
        {
            stored.AddRange(_store.Commit(records, events.Select(ToRecord).ToList(), _maxId));
            foreach (var e in events.Where(e => e.Severity == CoreSeverity.Critical))
            {
                if (e.Kind.EndsWith("Started", StringComparison.Ordinal))
                {
                    Log.Decided(_logger, e.Resource, e.Kind[..^"Started".Length], e.Text);   // the audit line behind every Started event
                }
                else
                {
                    Log.Critical(_logger, e.Resource, e.Kind, e.Text);
                }
            }
        }
        catch (Exception ex) when (ex is StoreException or Microsoft.Data.Sqlite.SqliteException or IOException)
        {
            // The core moved on in memory but not on disk: nothing more may be carried out. Stop; the next start reloads.
            _broken = true;
            Log.CommitFailed(_logger, ex.Message);
            _lifetime?.StopApplication();
        }

        records.Clear();
        events.Clear();
    }

    private static EventRecord ToRecord(CoreEvent e) => new(e.Kind, e.Text, e.Resource, e.Node, e.Generation, e.Severity switch
    {
        CoreSeverity.Critical => EventSeverity.Critical,
        CoreSeverity.Warning => EventSeverity.Warning,
        _ => EventSeverity.Info,
    })
    {
        Attributes = e.Attributes,
    };

    private void Grant(CoordinatorEffect.SendLeaseGrant g)
    {
        _metrics?.LeaseDecided(g.Node, g.Granted);
        if (g.Granted)
        {
            _registry?.RecordGrant(g.Node);
        }

        if (_streams.TryGetValue(g.Node, out var stream))
        {
            // A full outbox drops the oldest answer: the agent asks again every heartbeat.
            stream.Writer.TryWrite(new CoordinatorMessage
            {
                LeaseGrant = new LeaseGrant { Resource = g.Resource, Generation = g.Generation, Sequence = g.Sequence, Granted = g.Granted, Reason = g.Reason },
            });
        }
    }

    private void Track(Task task)
    {
        _background.RemoveAll(t => t.IsCompleted);
        _background.Add(task);
    }

    /// <summary>Feeds an answer back into the core (nothing once the coordinator is stopping).</summary>
    private void Back(Func<CoordinatorCore, MonoTime, IReadOnlyList<CoordinatorEffect>> input)
    {
        lock (_gate)
        {
            if (_core is { } core && !_broken)
            {
                Apply(input(core, Now));
            }
        }
    }

    private async Task SendCommandAsync(CoordinatorEffect.SendCommand c, string candidate)
    {
        await Task.Yield();
        var cmd = c.Command;
        var operation = cmd.Id.ToString(CultureInfo.InvariantCulture);
        ActionResult result;
        try
        {
            var ct = _stopping.Token;
            result = cmd.Kind switch
            {
                CommandKind.Promote => await _agents.PromoteAsync(c.Node, new PromoteRequest { Resource = c.Resource, Generation = cmd.Generation, Force = cmd.Force, Reason = "coordinator decision", OperationId = operation }, ct),
                CommandKind.Demote => await _agents.DemoteAsync(c.Node, new DemoteRequest { Resource = c.Resource, Generation = cmd.Generation, DiscardMyData = cmd.DiscardMyData, Reconnect = cmd.Reconnect, Reason = "coordinator decision", OperationId = operation }, ct),
                CommandKind.Agree => await _agents.AgreeAsync(c.Node, new AgreeRequest { Resource = c.Resource, Generation = cmd.Generation, Candidate = candidate, OperationId = operation }, ct),
                _ => new ActionResult { Success = false, Message = $"the coordinator does not send {cmd.Kind}" },
            };
        }
        catch (Exception ex) when (_stopping.IsCancellationRequested && ex is RpcException or OperationCanceledException)
        {
            return;   // stopping: the operation stays recorded for the next start
        }
        catch (RpcException ex)
        {
            result = new ActionResult { Success = false, Message = $"{ex.StatusCode}: {ex.Status.Detail}" };
        }

        var message = result.Message + StepTimes(result);
        Back((core, now) => core.OnCommandReply(now, c.Node, c.Resource, cmd.Id, result.Success, message));
    }

    /// <summary>How long each step the agent ran took (" [drbd-primary 412 ms, mount 35 ms]"), so a slow promotion names its slow step.</summary>
    private static string StepTimes(ActionResult result) =>
        result.Steps.Any(s => s.Elapsed is not null)
            ? " [" + string.Join(", ", result.Steps.Where(s => s.Elapsed is not null).Select(s => Fmt($"{s.Step} {s.Elapsed.ToTimeSpan().TotalMilliseconds:0} ms"))) + "]"
            : "";

    private async Task CallOvhAsync(CoordinatorEffect.CallOvh o)
    {
        await Task.Yield();
        OvhReply reply;
        if (_services.GetService<ICloudIpProvider>() is not { } cloud)
        {
            reply = new OvhReply.Failed("no cloud provider configured (HaMesh:Coordinator:Ovh:CredentialsFile)");
        }
        else
        {
            try
            {
                using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
                deadline.CancelAfter(Config.OvhReplyTimeout ?? Config.ReplyTimeout);
                reply = o.Call switch
                {
                    OvhCall.ReadState => State(o.Ip, await cloud.GetRoutingAsync(o.Ip, deadline.Token)),
                    OvhCall.Move m => new OvhReply.MoveAccepted(await cloud.RequestMoveAsync(o.Ip, _options.FindNode(m.To)?.ServiceName ?? m.To, deadline.Token)),
                    _ => new OvhReply.Failed($"unknown call {o.Call}"),
                };
            }
            catch (Exception ex) when (ex is OvhException or HttpRequestException or InvalidOperationException or TimeoutException
                or OperationCanceledException && !_stopping.IsCancellationRequested)
            {
                reply = new OvhReply.Failed(ex.Message);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }

        Back((core, now) => core.OnOvhReply(now, o.Resource, o.CallId, reply));
    }

    /// <summary>What OVH says, in node names: routedTo, and the target of a pending move (a task to an unknown service still counts as pending).</summary>
    private OvhReply.State State(string ip, IpRouting routing)
    {
        var routedTo = NodeOf(routing.RoutedToService);
        _routes.Record(new FailoverIpStatus
        {
            Ip = ip,
            RoutedToService = routing.RoutedToService ?? "",
            RoutedToNode = routedTo ?? "",
            CheckedAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(_time.GetUtcNow()),
        });
        var pending = routing.PendingTasks.FirstOrDefault(t => t.Pending);
        return new OvhReply.State(routedTo, pending is null ? null : NodeOf(pending.Destination) ?? pending.Destination ?? "?");
    }

    private string? NodeOf(string? service) =>
        _options.Nodes.FirstOrDefault(n => OvhCloudIpProvider.SameService(n.ServiceName, service))?.Name;

    private async Task PingAsync(CoordinatorEffect.PingViaIp p, string target, ulong generation)
    {
        await Task.Yield();
        VerifyResult result;
        try
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
            deadline.CancelAfter(Config.ReplyTimeout);
            result = await _verifier.VerifyAsync(p.Resource, p.Ip, target, generation, deadline.Token);
        }
        catch (OperationCanceledException)
        {
            return;   // no answer: the core pings again at its deadline
        }

        if (result.AnsweredBy is { Length: > 0 } node)
        {
            Back((core, now) => core.OnPingReply(now, p.Resource, p.CallId, node, result.AnsweredGeneration, result.Outcome == VerifyOutcome.Verified ? result.Detail : ""));
        }
    }

    // ------------------------------------------------------------------ reports → facts

    private static NodeResourceFacts Facts(ResourceStatus r)
    {
        var peer = r.Drbd?.Peers.FirstOrDefault();
        return new NodeResourceFacts(
            r.Drbd?.Role ?? DrbdRole.Unknown,
            r.Drbd?.DiskState ?? DiskState.Unknown,
            peer?.ConnectionState ?? ConnectionState.Unknown,
            peer?.PeerRole ?? DrbdRole.Unknown,
            r.Generation,
            r.PeerContactAge?.ToTimeSpan(),
            r.Drbd?.Present ?? false,
            peer?.PeerDiskState ?? DiskState.Unknown);
    }

    /// <summary>The nodes the reporter is DRBD-connected to whose disk is UpToDate. DRBD names a peer by its host name (8.4:
    /// not at all); a name that is no configured node is the other node of a two-node cluster.</summary>
    private List<string> UpToDatePeers(string node, ResourceStatus r) =>
        (r.Drbd?.Peers ?? [])
            .Where(p => p.ConnectionState == ConnectionState.Connected && p.PeerDiskState == DiskState.UpToDate)
            .Select(p => p.PeerName != node && _nodeNames.Contains(p.PeerName) ? p.PeerName : _nodeNames.Count == 2 ? _nodeNames.FirstOrDefault(n => n != node) : null)
            .OfType<string>()
            .Distinct(StringComparer.Ordinal)
            .ToList();

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    private static partial class Log
    {
        [LoggerMessage(EventId = 2210, Level = LogLevel.Warning, Message = "{Resource}: {Kind}: {Text}")]
        public static partial void Critical(ILogger logger, string resource, string kind, string text);

        [LoggerMessage(EventId = 2212, Level = LogLevel.Critical, Message = "FORCE-PROMOTE of {Node} for {Resource} at generation {Generation} requested by an operator who acknowledged data loss: {Reason}")]
        public static partial void ForcePromote(ILogger logger, string resource, string node, ulong generation, string reason);

        [LoggerMessage(EventId = 2213, Level = LogLevel.Warning, Message = "{Resource}: resuming {Kind} to {Target} at generation {Generation} from stage {Stage} after a restart")]
        public static partial void Resuming(ILogger logger, string resource, string kind, string target, ulong generation, string stage);

        [LoggerMessage(EventId = 2214, Level = LogLevel.Critical, Message = "The coordinator's store cannot be written ({Reason}); stopping: the next start resumes from what is durable")]
        public static partial void CommitFailed(ILogger logger, string reason);

        [LoggerMessage(EventId = 2202, Level = LogLevel.Warning, Message = "{Resource}: decided {Decision}: {Reason}")]
        public static partial void Decided(ILogger logger, string resource, string decision, string reason);

        [LoggerMessage(EventId = 2201, Level = LogLevel.Information, Message = "{Resource}: holding: {Reason}")]
        public static partial void Holding(ILogger logger, string resource, string reason);

        [LoggerMessage(EventId = 2004, Level = LogLevel.Warning, Message = "Maintenance {State} for {Resource}")]
        public static partial void Maintenance(ILogger logger, string resource, string state);
    }
}
