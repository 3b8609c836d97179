using HaMesh.Protocol.V1;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace HaMesh.Coordinator.Membership;

/// <summary>grpc.health.v1: the coordinator serves; it is Degraded while no node is reachable (it cannot decide anything then).</summary>
public sealed class ClusterViewHealthCheck(NodeRegistry registry) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var reachable = registry.Current.Nodes.Values.Count(e => registry.ReachabilityOf(e) == Reachability.Reachable);
        return Task.FromResult(reachable > 0
            ? HealthCheckResult.Healthy($"{reachable} node(s) reporting")
            : HealthCheckResult.Degraded("no node is reporting"));
    }
}
