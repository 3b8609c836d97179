using System.Collections.Concurrent;
using HaMesh.Coordinator.Membership;
using HaMesh.Coordinator.Metrics;
using HaMesh.Coordinator.Store;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Core;
using HaMesh.Shared.Failover;
using Microsoft.Extensions.Options;

namespace HaMesh.Coordinator.Operations;

/// <summary>
/// The coordinator's side of the lease (design §4), by the shared <see cref="LeaseRule"/>: it grants a renewal only to the
/// node it made primary, at exactly the current generation, and not while its promise to another node still runs. Each
/// grant is a promise not to take part in promoting another node until lease + drift margin after it; the registry
/// records the grant time so the failover rule can require that much silence after the last grant too. At start it
/// assumes it granted the recorded primary just before the previous run stopped.
/// </summary>
public sealed class LeaseGrantor
{
    private readonly SqliteStore _store;
    private readonly NodeRegistry _registry;
    private readonly TimeProvider _time;
    private readonly TimeSpan _silence;
    private readonly CoordinatorMetrics? _metrics;
    private readonly ConcurrentDictionary<string, LeasePromise> _promises = new(StringComparer.Ordinal);

    public LeaseGrantor(IOptions<HaMeshOptions> options, SqliteStore store, NodeRegistry registry, TimeProvider time, CoordinatorMetrics? metrics = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(store);
        _store = store;
        _registry = registry;
        _time = time;
        _silence = options.Value.Cluster.Timings.SilenceThreshold;
        _metrics = metrics;
        foreach (var r in options.Value.Resources)
        {
            if (store.GetResource(r.Name) is { PrimaryNode.Length: > 0 } record)
            {
                _promises[r.Name] = new LeasePromise(record.PrimaryNode, Now + _silence);
            }
        }
    }

    private MonoTime Now => MonoTime.FromTimestamp(_time.GetTimestamp(), _time.TimestampFrequency);

    public LeaseGrant Decide(string node, LeaseRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var grant = new LeaseGrant { Resource = request.Resource, Generation = request.Generation, Sequence = request.Sequence };
        var record = _store.GetResource(request.Resource);
        var now = Now;
        var refusal = LeaseRule.Refusal(request.Resource, record.Generation, record.PrimaryNode, node, request.Generation, _promises.TryGetValue(request.Resource, out var p) ? p : null, now);
        if (refusal is null)
        {
            _promises[request.Resource] = new LeasePromise(node, now + _silence);
            _registry.RecordGrant(node);
            grant.Granted = true;
        }
        else
        {
            grant.Reason = refusal;
        }

        _metrics?.LeaseDecided(node, grant.Granted);
        return grant;
    }

    /// <summary>The node was demoted (it holds no lease any more): the promise to it is moot.</summary>
    public void Release(string resource, string node)
    {
        if (_promises.TryGetValue(resource, out var p) && p.Node == node)
        {
            _promises.TryRemove(new KeyValuePair<string, LeasePromise>(resource, p));
        }
    }
}
