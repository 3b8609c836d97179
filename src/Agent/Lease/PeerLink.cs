using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using HaMesh.Agent.Metrics;
using HaMesh.Agent.Reporting;
using HaMesh.Agent.State;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Core;
using HaMesh.Shared.Grpc;
using HaMesh.Shared.Hosting;
using Microsoft.Extensions.Options;

namespace HaMesh.Agent.Lease;

/// <summary>
/// Every heartbeat, per resource: asks the peer agent for a lease renewal (a Secondary peer grants; any
/// answer is peer contact, which feeds this node's vote) and, while Primary, asks the coordinator too.
/// The lease runs from when a granted request was SENT (design §4), so it always ends before the
/// grantor's promise. When a Primary's lease runs out it self-fences.
/// </summary>
public sealed partial class PeerLink(
    IOptions<HaMeshOptions> options,
    AgentLocalState local,
    StatusCollector collector,
    ILeaseCoordinator coordinator,
    GenerationStore generations,
    SelfFence selfFence,
    TimeProvider time,
    ILogger<PeerLink> logger,
    AgentMetrics? metrics = null,
    LoopHealth? health = null,
    Func<AgentService.AgentServiceClient?>? peerClientFactory = null,
    ReportSignal? reportSignal = null) : BackgroundService
{
    private readonly HaMeshOptions _options = options.Value;
    private readonly Dictionary<ulong, (string Resource, long SentAt)> _sentAt = [];
    private readonly Lock _lock = new();
    private readonly Dictionary<string, Lease> _leases = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DrbdRole> _lastRole = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Task> _peerCalls = new(StringComparer.Ordinal);
    private readonly HashSet<string> _voteReported = new(StringComparer.Ordinal);
    private ulong? _sequenceBase;
    private ulong _sequence;
    private AgentService.AgentServiceClient? _peer;
    private int _subscribed;

    /// <summary>Name under which the lease loop beats for the systemd watchdog.</summary>
    public const string HealthName = "lease-loop";

    /// <summary>
    /// The longest a healthy round may take: per resource a self-fence (its deadline) and the last resort
    /// (one command timeout); half as much again, and never under 10 s. Peer calls run beside the loop.
    /// </summary>
    public static TimeSpan MaxRoundSilence(HaMeshOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        var t = o.Cluster.Timings;
        var round = t.Heartbeat + (o.Resources.Count * ((2 * t.Heartbeat) + t.SelfFenceDeadline + o.Agent.CommandTimeout));
        return TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(10).Ticks, round.Ticks * 3 / 2));
    }

    /// <summary>The high 32 bits of every lease request sequence: this start's incarnation (persisted counter), so sequences grow across restarts.</summary>
    public ulong SequenceBase => _sequenceBase ??= generations.NextIncarnation() << 32;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        health?.Register(HealthName, MaxRoundSilence(_options));
        var peer = _options.Nodes.FirstOrDefault(n => n.Name != _options.Agent.Node);
        using var channel = peer is null || peerClientFactory is not null ? null : GrpcChannels.Create(peer.AgentAddress, _options.Cluster.Timings, _options.Tls);
        _peer = peerClientFactory is not null ? peerClientFactory() : channel is null ? null : new AgentService.AgentServiceClient(channel);
        Subscribe();
        var heartbeat = Ticks(_options.Cluster.Timings.Heartbeat);
        var nextBeat = time.GetTimestamp();
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                var now = time.GetTimestamp();
                var beat = now >= nextBeat;
                if (beat)
                {
                    nextBeat = now + heartbeat;
                    await RefreshRoleAsync(stoppingToken);
                }

                foreach (var resource in _options.Resources)
                {
                    if (beat)
                    {
                        await TickAsync(resource.Name, stoppingToken);
                    }
                    else
                    {
                        await EnforceAsync(resource.Name, stoppingToken);
                        CheckVote(resource.Name);
                    }
                }

                health?.Beat(HealthName);

                // One timer: the next heartbeat, or earlier the exact end of a lease or the instant this node's
                // vote (peer-contact age) reaches lease + drift margin.
                var wake = _options.Resources.Select(r => NextWake(r.Name)).Where(w => w is not null).Select(w => w!.Value).Append(nextBeat).Min();
                var delay = wake - time.GetTimestamp();
                if (delay > 0)
                {
                    await Task.Delay(TimeSpan.FromSeconds((double)delay / time.TimestampFrequency), time, stoppingToken);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// The roles come from the collector's last status, which the coordinator link refreshes every heartbeat
    /// while connected. Without a session (coordinator away, or not yet reached after a start) the lease loop
    /// reads it itself, so a Primary never goes unnoticed, and unfenced, because nobody else asked.
    /// </summary>
    private async Task RefreshRoleAsync(CancellationToken ct)
    {
        var latest = collector.Latest;
        if (latest is not null && time.GetUtcNow() - latest.ObservedAt.ToDateTimeOffset() < 2 * _options.Cluster.Timings.Heartbeat)
        {
            return;
        }

        foreach (var resource in _options.Resources)
        {
            try
            {
                // One resource at a time: this does not replace the collector's last full status (Ping, metrics).
                // The collector keeps the role of every read (RoleOf), this one's too.
                await collector.CollectAsync(resource.Name, ct);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.RoleUnreadable(logger, ex.Message);
            }
        }
    }

    /// <summary>The DRBD role as the agent last learnt it (the newest read, or its own promote/demote since).</summary>
    private DrbdRole RoleOf(string resource) => collector.RoleOf(resource);

    /// <summary>
    /// One heartbeat for <paramref name="resource"/>: send the renewals (the peer's answer is handled when it
    /// comes, never awaited here), then enforce the lease. The loop calls it; tests drive it on a fake clock.
    /// </summary>
    public async Task TickAsync(string resource, CancellationToken ct)
    {
        Subscribe();
        var peer = _peer ??= peerClientFactory?.Invoke();
        var role = RoleOf(resource);
        var generation = generations.Get(resource);
        var lease = _options.Cluster.Timings.Lease;
        var sequence = SequenceBase | ++_sequence;
        var sentAt = time.GetTimestamp();
        if (role == DrbdRole.Primary)
        {
            lock (_lock)
            {
                if (!_leases.ContainsKey(resource))
                {
                    _leases[resource] = StartLease(resource, sentAt);
                }

                _sentAt[sequence] = (resource, sentAt);
                foreach (var old in _sentAt.Keys.Where(k => k + 64 < sequence).ToList())
                {
                    _sentAt.Remove(old);
                }
            }

            coordinator.Enqueue(new AgentMessage { LeaseRequest = new LeaseRequest { Resource = resource, Generation = generation, Sequence = sequence, Lease = Duration.FromTimeSpan(lease) } });
        }

        if (role != DrbdRole.Unknown)
        {
            _lastRole[resource] = role;
        }

        if (peer is not null)
        {
            var call = RenewWithPeerAsync(peer, resource, generation, sequence, sentAt, role == DrbdRole.Primary, ct);
            lock (_lock)
            {
                _peerCalls[resource] = call;
            }
        }

        if (role == DrbdRole.Primary)
        {
            await EnforceAsync(resource, ct);
        }
        else
        {
            local.SetLease(resource, LeaseState.NotHeld, null, "");
            ForgetRequests(resource);
        }

        CheckVote(resource);
    }

    /// <summary>The peer renewal sent by the last tick for <paramref name="resource"/>, done once its answer (or failure) is handled (tests).</summary>
    public Task PeerReplyHandled(string resource)
    {
        lock (_lock)
        {
            return _peerCalls.TryGetValue(resource, out var call) ? call : Task.CompletedTask;
        }
    }

    /// <summary>Self-fences <paramref name="resource"/> if it is Primary and its lease has run out (the loop calls it at the exact lease end).</summary>
    public async Task EnforceAsync(string resource, CancellationToken ct)
    {
        Lease lease;
        lock (_lock)
        {
            if (!_leases.TryGetValue(resource, out lease) || time.GetTimestamp() < lease.CheckAt)
            {
                return;
            }
        }

        if (RoleOf(resource) is not DrbdRole.Primary and not DrbdRole.Unknown)
        {
            ForgetRequests(resource);   // demoted since the last heartbeat: nothing to fence
            return;
        }

        // From the decision on, no grant (late or new) counts: the requests are forgotten before fencing.
        ForgetRequests(resource);
        local.SetLease(resource, LeaseState.Expired, lease.Until, "");
        Log.LeaseExpired(logger, resource);
        metrics?.LeaseExpired(resource);
        var deadline = lease.FenceDeadline - time.GetTimestamp();
        var fenced = await selfFence.RunAsync(resource, ct, lease.Restarted ? TimeSpan.FromSeconds(Math.Max(0, (double)deadline / time.TimestampFrequency)) : null);
        metrics?.SelfFenced(resource, fenced);
        local.SetLease(resource, fenced ? LeaseState.SelfFenced : LeaseState.Expired, null, "");
    }

    /// <summary>
    /// The lease of a Primary the holder has just seen. After a Promote in this process it runs from the first
    /// request, as a grant for it would. A Primary already there when the agent started (a restart under a
    /// running resource) holds NO lease: its lease ended at start; it renews at once and, unless a grant arrives
    /// within two heartbeats (at most half the self-fence deadline), self-fences so as to be demoted by start +
    /// the self-fence deadline.
    /// </summary>
    private Lease StartLease(string resource, long sentAt)
    {
        var t = _options.Cluster.Timings;
        // Generation 0: no coordinator ever commanded this node (adopting it persists generation 1), so this is a
        // Primary set up by hand before HaMesh took charge (a cluster's bootstrap), not a restart under a running
        // resource: its lease runs from the first request, so the coordinator can adopt it before it fences.
        var fresh = local.TakePromoting(resource) || (_lastRole.TryGetValue(resource, out var before) && before != DrbdRole.Primary) || generations.Get(resource) == 0;
        if (fresh)
        {
            var until = sentAt + Ticks(t.Lease);
            return new Lease(until, until, 0, Restarted: false);
        }

        var grace = Ticks(t.Heartbeat * 2 < t.SelfFenceDeadline / 2 ? t.Heartbeat * 2 : t.SelfFenceDeadline / 2);
        Log.PrimaryAtStart(logger, resource);
        return new Lease(sentAt, sentAt + grace, sentAt + Ticks(t.SelfFenceDeadline), Restarted: true);
    }

    private async Task RenewWithPeerAsync(AgentService.AgentServiceClient peer, string resource, ulong generation, ulong sequence, long sentAt, bool primary, CancellationToken ct)
    {
        var lease = _options.Cluster.Timings.Lease;
        try
        {
            var reply = await peer.RenewLeaseAsync(
                new RenewLeaseRequest { Resource = resource, Generation = Math.Max(generation, 1), Requester = _options.Agent.Node, Lease = Duration.FromTimeSpan(lease), Sequence = sequence },
                deadline: RpcDeadline.In(_options.Cluster.Timings.Heartbeat * 2), cancellationToken: ct);
            local.MarkPeerContact(resource);
            if (primary)
            {
                metrics?.LeaseRenewal(resource, "peer", reply.Granted);
            }

            if (reply.Granted && primary)
            {
                Extend(resource, sequence, reply.Grantor);
            }
        }
        catch (RpcException)
        {
            // no peer contact this round: the contact age grows, which is this node's vote
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        catch (ObjectDisposedException) when (ct.IsCancellationRequested)
        {
        }
    }

    public override void Dispose()
    {
        if (Interlocked.Exchange(ref _subscribed, 0) == 1)
        {
            coordinator.MessageReceived -= OnCoordinatorMessage;
        }

        base.Dispose();
    }

    private void Subscribe()
    {
        if (Interlocked.Exchange(ref _subscribed, 1) == 0)
        {
            coordinator.MessageReceived += OnCoordinatorMessage;
        }
    }

    private void OnCoordinatorMessage(CoordinatorMessage message)
    {
        if (message.BodyCase != CoordinatorMessage.BodyOneofCase.LeaseGrant)
        {
            return;
        }

        metrics?.LeaseRenewal(message.LeaseGrant.Resource, "coordinator", message.LeaseGrant.Granted);
        if (message.LeaseGrant.Granted)
        {
            Extend(message.LeaseGrant.Resource, message.LeaseGrant.Sequence, CoreNames.Coordinator);
        }
    }

    /// <summary>A grant for request <paramref name="sequence"/>: the lease runs lease-length from when that request was SENT.</summary>
    private void Extend(string resource, ulong sequence, string grantor)
    {
        lock (_lock)
        {
            if (!_sentAt.TryGetValue(sequence, out var sent) || sent.Resource != resource || !_leases.TryGetValue(resource, out var current))
            {
                return;
            }

            // ">=": a grant for the first request of a fresh Primary ends exactly where the provisional
            // lease clock does, and must still mark the lease held.
            var until = sent.SentAt + Ticks(_options.Cluster.Timings.Lease);
            if (until >= current.Until)
            {
                _leases[resource] = new Lease(until, until, 0, Restarted: false);
                local.SetLease(resource, LeaseState.Held, until, grantor);
            }
        }
    }

    /// <summary>When this resource next needs the loop: its lease end while Primary, or when its vote reaches lease + drift margin.</summary>
    private long? NextWake(string resource)
    {
        long? wake = null;
        lock (_lock)
        {
            if (_leases.TryGetValue(resource, out var lease))
            {
                wake = lease.CheckAt;
            }

            var t = _options.Cluster.Timings;
            if (reportSignal is not null && local.GetPeerContactAge(resource) is { } age && (age < t.Lease + t.DriftMargin || !_voteReported.Contains(resource)))
            {
                var crossing = time.GetTimestamp() + Ticks(t.Lease + t.DriftMargin - age);
                wake = wake is { } w && w < crossing ? w : crossing;
            }
        }

        return wake;
    }

    /// <summary>
    /// The instant this node's peer-contact age reaches lease + drift margin (its vote for a failover, design §4
    /// rule 1), the report goes to the coordinator at once instead of at the next periodic report.
    /// </summary>
    private void CheckVote(string resource)
    {
        if (reportSignal is null || local.GetPeerContactAge(resource) is not { } age)
        {
            return;
        }

        var t = _options.Cluster.Timings;
        lock (_lock)
        {
            if (age < t.Lease + t.DriftMargin)
            {
                _voteReported.Remove(resource);   // heard from the peer since: the next crossing is reported again
                return;
            }

            if (!_voteReported.Add(resource))
            {
                return;
            }
        }

        reportSignal.Trigger();
    }

    /// <summary>A late grant for a request sent before a self-fence (or while not Primary) must not mark the lease held again.</summary>
    private void ForgetRequests(string resource)
    {
        lock (_lock)
        {
            _leases.Remove(resource);
            foreach (var sequence in _sentAt.Where(kv => kv.Value.Resource == resource).Select(kv => kv.Key).ToList())
            {
                _sentAt.Remove(sequence);
            }
        }
    }

    private long Ticks(TimeSpan span) => (long)(span.TotalSeconds * time.TimestampFrequency);

    /// <summary>A lease on the local monotonic clock: when it ends, when to check it, and for a Primary found at start the end of its self-fence deadline.</summary>
    private readonly record struct Lease(long Until, long CheckAt, long FenceDeadline, bool Restarted);

    private static partial class Log
    {
        [LoggerMessage(EventId = 1301, Level = LogLevel.Critical, Message = "Lease of {Resource} expired while Primary (no grant from coordinator or peer): self-fencing")]
        public static partial void LeaseExpired(ILogger logger, string resource);

        [LoggerMessage(EventId = 1302, Level = LogLevel.Critical, Message = "{Resource} is DRBD Primary at agent start: it holds no lease; renewing now, self-fencing unless granted")]
        public static partial void PrimaryAtStart(ILogger logger, string resource);

        [LoggerMessage(EventId = 1303, Level = LogLevel.Warning, Message = "Lease loop cannot read the local status: {Reason}")]
        public static partial void RoleUnreadable(ILogger logger, string reason);
    }
}
