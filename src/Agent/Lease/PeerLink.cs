using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using HaMesh.Agent.Metrics;
using HaMesh.Agent.Reporting;
using HaMesh.Agent.State;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
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
    Func<AgentService.AgentServiceClient?>? peerClientFactory = null) : BackgroundService
{
    private readonly HaMeshOptions _options = options.Value;
    private readonly Dictionary<ulong, (string Resource, long SentAt)> _sentAt = [];
    private readonly Lock _lock = new();
    private readonly Dictionary<string, long> _leaseUntil = new(StringComparer.Ordinal);
    private ulong _sequence;
    private AgentService.AgentServiceClient? _peer;
    private int _subscribed;

    /// <summary>Name under which the lease loop beats for the systemd watchdog.</summary>
    public const string HealthName = "lease-loop";

    /// <summary>
    /// The longest a healthy round may take: per resource a peer call (deadline 2 heartbeats), a self-fence
    /// (its deadline) and the last resort (one command timeout); half as much again, and never under 10 s.
    /// </summary>
    public static TimeSpan MaxRoundSilence(HaMeshOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        var t = o.Cluster.Timings;
        var round = t.Heartbeat + (o.Resources.Count * ((2 * t.Heartbeat) + t.SelfFenceDeadline + o.Agent.CommandTimeout));
        return TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(10).Ticks, round.Ticks * 3 / 2));
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        health?.Register(HealthName, MaxRoundSilence(_options));
        var peer = _options.Nodes.FirstOrDefault(n => n.Name != _options.Agent.Node);
        using var channel = peer is null || peerClientFactory is not null ? null : GrpcChannels.Create(peer.AgentAddress, _options.Cluster.Timings, _options.Tls);
        _peer = peerClientFactory is not null ? peerClientFactory() : channel is null ? null : new AgentService.AgentServiceClient(channel);
        Subscribe();
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                foreach (var resource in _options.Resources)
                {
                    await TickAsync(resource.Name, stoppingToken);
                }

                health?.Beat(HealthName);

                await Task.Delay(_options.Cluster.Timings.Heartbeat, time, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>One heartbeat for <paramref name="resource"/>: request renewals, then enforce the lease (the loop calls it; tests drive it on a fake clock).</summary>
    public async Task TickAsync(string resource, CancellationToken ct)
    {
        Subscribe();
        var peer = _peer ??= peerClientFactory?.Invoke();
        var role = collector.Latest?.Resources.FirstOrDefault(r => r.Resource == resource)?.Drbd?.Role ?? DrbdRole.Unknown;
        var generation = generations.Get(resource);
        var lease = _options.Cluster.Timings.Lease;
        var sequence = Interlocked.Increment(ref _sequence);
        var sentAt = time.GetTimestamp();
        if (role == DrbdRole.Primary)
        {
            lock (_lock)
            {
                _sentAt[sequence] = (resource, sentAt);
                foreach (var old in _sentAt.Keys.Where(k => k + 64 < sequence).ToList())
                {
                    _sentAt.Remove(old);
                }
            }

            coordinator.Enqueue(new AgentMessage { LeaseRequest = new LeaseRequest { Resource = resource, Generation = generation, Sequence = sequence, Lease = Duration.FromTimeSpan(lease) } });
        }

        if (peer is not null)
        {
            try
            {
                var reply = await peer.RenewLeaseAsync(
                    new RenewLeaseRequest { Resource = resource, Generation = Math.Max(generation, 1), Requester = _options.Agent.Node, Lease = Duration.FromTimeSpan(lease), Sequence = sequence },
                    deadline: RpcDeadline.In(_options.Cluster.Timings.Heartbeat * 2), cancellationToken: ct);
                local.MarkPeerContact(resource);
                if (role == DrbdRole.Primary)
                {
                    metrics?.LeaseRenewal(resource, "peer", reply.Granted);
                }

                if (reply.Granted && role == DrbdRole.Primary)
                {
                    Extend(resource, sentAt, reply.Grantor);
                }
            }
            catch (RpcException)
            {
                // no peer contact this round: the contact age grows, which is this node's vote
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
        if (!message.LeaseGrant.Granted)
        {
            return;
        }

        (string Resource, long SentAt) sent;
        lock (_lock)
        {
            if (!_sentAt.TryGetValue(message.LeaseGrant.Sequence, out sent) || sent.Resource != message.LeaseGrant.Resource)
            {
                return;
            }
        }

        Extend(sent.Resource, sent.SentAt, "coordinator");
    }

    private void Extend(string resource, long sentAt, string grantor)
    {
        var until = sentAt + (long)(_options.Cluster.Timings.Lease.TotalSeconds * time.TimestampFrequency);
        lock (_lock)
        {
            // ">=": a grant for the first request of a fresh Primary ends exactly where the provisional
            // lease clock does, and must still mark the lease held.
            if (!_leaseUntil.TryGetValue(resource, out var current) || until >= current)
            {
                _leaseUntil[resource] = until;
                local.SetLease(resource, LeaseState.Held, until, grantor);
            }
        }
    }

    private async Task EnforceAsync(string resource, CancellationToken ct)
    {
        long until;
        lock (_lock)
        {
            if (!_leaseUntil.TryGetValue(resource, out until))
            {
                // Primary without any lease yet (agent just started): the lease clock starts now.
                until = time.GetTimestamp() + (long)(_options.Cluster.Timings.Lease.TotalSeconds * time.TimestampFrequency);
                _leaseUntil[resource] = until;
            }
        }

        if (time.GetTimestamp() < until)
        {
            return;
        }

        local.SetLease(resource, LeaseState.Expired, until, "");
        Log.LeaseExpired(logger, resource);
        metrics?.LeaseExpired(resource);
        var fenced = await selfFence.RunAsync(resource, ct);
        metrics?.SelfFenced(resource, fenced);
        local.SetLease(resource, fenced ? LeaseState.SelfFenced : LeaseState.Expired, null, "");
        ForgetRequests(resource);
    }

    /// <summary>A late grant for a request sent before a self-fence (or while not Primary) must not mark the lease held again.</summary>
    private void ForgetRequests(string resource)
    {
        lock (_lock)
        {
            _leaseUntil.Remove(resource);
            foreach (var sequence in _sentAt.Where(kv => kv.Value.Resource == resource).Select(kv => kv.Key).ToList())
            {
                _sentAt.Remove(sequence);
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1301, Level = LogLevel.Critical, Message = "Lease of {Resource} expired while Primary (no grant from coordinator or peer): self-fencing")]
        public static partial void LeaseExpired(ILogger logger, string resource);
    }
}
