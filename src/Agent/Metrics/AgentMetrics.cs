using HaMesh.Agent.Reporting;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using Microsoft.Extensions.Options;
using Prometheus;

namespace HaMesh.Agent.Metrics;

/// <summary>
/// The agent's Prometheus metrics, in a registry of its own. DRBD state, generation and lease are read
/// before each scrape from the status the agent reports (the last one if fresh, else collected now);
/// enumerations are state sets (one series per value, 1 for the current one), so an alert is a plain
/// <c>hamesh_agent_drbd_disk_state{state="UpToDate"} == 0</c>. Lease renewals and expiries are counted
/// by the lease loop as they happen.
/// </summary>
public sealed class AgentMetrics
{
    private readonly HaMeshOptions _options;
    private readonly StatusCollector _collector;
    private readonly CoordinatorLink _link;
    private readonly TimeProvider _time;
    private readonly Gauge _role;
    private readonly Gauge _disk;
    private readonly Gauge _connection;
    private readonly Gauge _replication;
    private readonly Gauge _outOfSync;
    private readonly Gauge _present;
    private readonly Gauge _suspended;
    private readonly Gauge _generation;
    private readonly Gauge _lease;
    private readonly Gauge _leaseRemaining;
    private readonly Gauge _connected;
    private readonly Gauge _readErrors;
    private readonly Counter _renewals;
    private readonly Counter _expiries;
    private readonly Counter _selfFences;

    public AgentMetrics(IOptions<HaMeshOptions> options, StatusCollector collector, CoordinatorLink link, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Value;
        _collector = collector;
        _link = link;
        _time = time;
        Registry = Prometheus.Metrics.NewCustomRegistry();
        var f = Prometheus.Metrics.WithCustomRegistry(Registry);
        _role = f.CreateGauge("hamesh_agent_drbd_role", "DRBD role of the resource on this node (state set).", "resource", "role");
        _disk = f.CreateGauge("hamesh_agent_drbd_disk_state", "Local DRBD disk state, lowest over volumes (state set).", "resource", "state");
        _connection = f.CreateGauge("hamesh_agent_drbd_connection_state", "DRBD connection state to each peer (state set).", "resource", "peer", "state");
        _replication = f.CreateGauge("hamesh_agent_drbd_replication_state", "DRBD replication state to each peer (state set).", "resource", "peer", "state");
        _outOfSync = f.CreateGauge("hamesh_agent_drbd_out_of_sync_bytes", "Data DRBD still has to resynchronise with each peer.", "resource", "peer");
        _present = f.CreateGauge("hamesh_agent_drbd_present", "1 when DRBD knows the resource (configured and up).", "resource");
        _suspended = f.CreateGauge("hamesh_agent_drbd_suspended", "1 while DRBD I/O on the resource is suspended.", "resource");
        _generation = f.CreateGauge("hamesh_agent_generation", "Highest generation this agent has persisted for the resource.", "resource");
        _lease = f.CreateGauge("hamesh_agent_lease_state", "Lease of the resource on this node (state set).", "resource", "state");
        _leaseRemaining = f.CreateGauge("hamesh_agent_lease_remaining_seconds", "Remaining lease validity on the agent's monotonic clock (0 when none).", "resource");
        _connected = f.CreateGauge("hamesh_agent_coordinator_connected", "1 while a reporting session with the coordinator is established.");
        _readErrors = f.CreateGauge("hamesh_agent_status_read_errors", "Problems met building the last status (a DRBD or host read that failed).");
        _renewals = f.CreateCounter("hamesh_agent_lease_renewals_total", "Lease renewal answers while Primary, by grantor (coordinator, peer) and result (granted, denied).", "resource", "grantor", "result");
        _expiries = f.CreateCounter("hamesh_agent_lease_expiries_total", "Leases that ran out while Primary (each starts a self-fence).", "resource");
        _selfFences = f.CreateCounter("hamesh_agent_self_fences_total", "Self-fences after a lease expiry, by result (fenced, incomplete).", "resource", "result");
        foreach (var r in _options.Resources)
        {
            foreach (var grantor in new[] { "coordinator", "peer" })
            {
                _renewals.WithLabels(r.Name, grantor, "granted");
                _renewals.WithLabels(r.Name, grantor, "denied");
            }

            _expiries.WithLabels(r.Name);
        }

        Registry.AddBeforeCollectCallback(RefreshAsync);
    }

    public CollectorRegistry Registry { get; }

    public void LeaseRenewal(string resource, string grantor, bool granted) => _renewals.WithLabels(resource, grantor, granted ? "granted" : "denied").Inc();

    public void LeaseExpired(string resource) => _expiries.WithLabels(resource).Inc();

    public void SelfFenced(string resource, bool fenced) => _selfFences.WithLabels(resource, fenced ? "fenced" : "incomplete").Inc();

    /// <summary>Reads the state gauges from a status no older than two heartbeats (runs before every scrape).</summary>
    public async Task RefreshAsync(CancellationToken cancellationToken)
    {
        var status = _collector.Latest;
        var maxAge = _options.Cluster.Timings.Heartbeat * 2;
        if (status is null || status.ObservedAt is null || _time.GetUtcNow() - status.ObservedAt.ToDateTimeOffset() > maxAge)
        {
            status = await _collector.CollectAsync(null, cancellationToken);
        }

        Apply(status);
    }

    internal void Apply(NodeStatus status)
    {
        _connected.Set(_link.IsConnected ? 1 : 0);
        _readErrors.Set(status.ReadErrors.Count);
        foreach (var r in status.Resources)
        {
            var drbd = r.Drbd ?? new DrbdResourceStatus();
            StateSet(_role, drbd.Role, r.Resource);
            StateSet(_disk, drbd.DiskState, r.Resource);
            _present.WithLabels(r.Resource).Set(drbd.Present ? 1 : 0);
            _suspended.WithLabels(r.Resource).Set(drbd.Suspended ? 1 : 0);
            foreach (var peer in drbd.Peers)
            {
                StateSet(_connection, peer.ConnectionState, r.Resource, peer.PeerName);
                StateSet(_replication, peer.ReplicationState, r.Resource, peer.PeerName);
                _outOfSync.WithLabels(r.Resource, peer.PeerName).Set(peer.OutOfSyncKib * 1024.0);
            }

            _generation.WithLabels(r.Resource).Set(r.Generation);
            var lease = r.Lease ?? new LeaseStatus();
            StateSet(_lease, lease.State, r.Resource);
            _leaseRemaining.WithLabels(r.Resource).Set(lease.Remaining?.ToTimeSpan().TotalSeconds ?? 0);
        }
    }

    private static void StateSet<T>(Gauge gauge, T current, params string[] labels)
        where T : struct, Enum
    {
        foreach (var value in Enum.GetValues<T>())
        {
            if (Convert.ToInt32(value, System.Globalization.CultureInfo.InvariantCulture) == 0)
            {
                continue;   // X_UNSPECIFIED
            }

            gauge.WithLabels([.. labels, value.ToString()]).Set(EqualityComparer<T>.Default.Equals(value, current) ? 1 : 0);
        }
    }
}
