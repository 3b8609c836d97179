using HaMesh.Coordinator.Membership;
using HaMesh.Coordinator.Store;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using Microsoft.Extensions.Options;
using Prometheus;

namespace HaMesh.Coordinator.Metrics;

/// <summary>
/// The coordinator's Prometheus metrics, in a registry of its own (one per host, so in-process tests
/// never mix two coordinators). Everything the event log records (failovers, switchovers, OVH calls)
/// is counted from the log itself: before each scrape the new events are read and folded in
/// (<see cref="EventLogMetrics"/>), so a metric can never disagree with <c>hameshctl events</c> and the
/// code that appends events needs no metrics hook. Gauges (report age, reachability, generation,
/// maintenance) are read from the live view and the store at scrape time.
/// </summary>
public sealed class CoordinatorMetrics
{
    private readonly HaMeshOptions _options;
    private readonly NodeRegistry _registry;
    private readonly SqliteStore _store;
    private readonly EventLogMetrics _events;
    private readonly Gauge _reportAge;
    private readonly Gauge _reachable;
    private readonly Gauge _generation;
    private readonly Gauge _maintenance;
    private readonly Gauge _primary;
    private readonly Counter _leaseRenewals;
    private readonly Histogram _decisionTick;

    public CoordinatorMetrics(IOptions<HaMeshOptions> options, NodeRegistry registry, SqliteStore store)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Value;
        _registry = registry;
        _store = store;
        Registry = Prometheus.Metrics.NewCustomRegistry();
        var factory = Prometheus.Metrics.WithCustomRegistry(Registry);
        _events = new EventLogMetrics(factory, store);
        _reportAge = factory.CreateGauge("hamesh_coordinator_report_age_seconds", "Age of the last report from each node, on the coordinator's monotonic clock (absent until the node reported once).", "node");
        _reachable = factory.CreateGauge("hamesh_coordinator_node_reachable", "1 while the node reports within lease + drift margin, else 0.", "node");
        _generation = factory.CreateGauge("hamesh_coordinator_generation", "Current (persisted) generation of each resource.", "resource");
        _maintenance = factory.CreateGauge("hamesh_coordinator_maintenance", "1 while the resource is in maintenance (no automatic action).", "resource");
        _primary = factory.CreateGauge("hamesh_coordinator_primary", "1 for the node the coordinator made primary of the resource.", "resource", "node");
        _leaseRenewals = factory.CreateCounter("hamesh_coordinator_lease_renewals_total", "Lease renewal requests from primaries, by result (granted, denied).", "node", "result");
        _decisionTick = factory.CreateHistogram("hamesh_coordinator_decision_tick_seconds", "Duration of one decision round (build the view, decide, start operations).",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.0005, 2, 14) });
        foreach (var node in _options.Nodes)
        {
            _leaseRenewals.WithLabels(node.Name, "granted");
            _leaseRenewals.WithLabels(node.Name, "denied");
        }

        Registry.AddBeforeCollectCallback(Refresh);
    }

    public CollectorRegistry Registry { get; }

    /// <summary>Counts one lease renewal decision (called by the lease grantor).</summary>
    public void LeaseDecided(string node, bool granted) => _leaseRenewals.WithLabels(node, granted ? "granted" : "denied").Inc();

    /// <summary>Observes one decision round's duration.</summary>
    public void DecisionTick(TimeSpan elapsed) => _decisionTick.Observe(elapsed.TotalSeconds);

    /// <summary>Folds new events in and reads the gauges (runs before every scrape).</summary>
    public void Refresh()
    {
        _events.CatchUp();
        var view = _registry.Current;
        foreach (var entry in view.Nodes.Values)
        {
            _reachable.WithLabels(entry.Node).Set(_registry.ReachabilityOf(entry) == Reachability.Reachable ? 1 : 0);
            if (_registry.AgeOf(entry) is { } age)
            {
                _reportAge.WithLabels(entry.Node).Set(age.TotalSeconds);
            }
        }

        foreach (var resource in _options.Resources)
        {
            var record = _store.GetResource(resource.Name);
            _generation.WithLabels(resource.Name).Set(record.Generation);
            _maintenance.WithLabels(resource.Name).Set(record.Maintenance ? 1 : 0);
            foreach (var node in _options.Nodes)
            {
                _primary.WithLabels(resource.Name, node.Name).Set(record.Generation > 0 && record.PrimaryNode == node.Name ? 1 : 0);
            }
        }
    }
}
