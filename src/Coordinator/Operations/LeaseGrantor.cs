using HaMesh.Coordinator.Membership;
using HaMesh.Coordinator.Metrics;
using HaMesh.Coordinator.Store;
using HaMesh.Protocol.V1;

namespace HaMesh.Coordinator.Operations;

/// <summary>
/// The coordinator's side of the lease (design §4): it grants a renewal only to the node it made
/// primary, at exactly the current generation. Each grant is a promise not to take part in promoting
/// another node until lease + drift margin after it; the registry records the grant time so the
/// failover rule can require that much silence after the last grant too.
/// </summary>
public sealed class LeaseGrantor(SqliteStore store, NodeRegistry registry, CoordinatorMetrics? metrics = null)
{
    public LeaseGrant Decide(string node, LeaseRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var grant = new LeaseGrant { Resource = request.Resource, Generation = request.Generation, Sequence = request.Sequence };
        var record = store.GetResource(request.Resource);
        if (record.Generation == 0 || record.PrimaryNode.Length == 0)
        {
            grant.Reason = $"no primary recorded for '{request.Resource}' yet";
        }
        else if (record.PrimaryNode != node)
        {
            grant.Reason = $"{node} is not the primary of {request.Resource} (the coordinator made {record.PrimaryNode} primary at generation {record.Generation})";
        }
        else if (request.Generation != record.Generation)
        {
            grant.Reason = $"generation {request.Generation} is not the current generation {record.Generation}";
        }
        else
        {
            registry.RecordGrant(node);
            grant.Granted = true;
        }

        metrics?.LeaseDecided(node, grant.Granted);
        return grant;
    }
}
