using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace HaMesh.Agent.Reporting;

/// <summary>grpc.health.v1: the agent serves even without the coordinator (the peer lease keeps the service up), so a lost link is Degraded, not Unhealthy.</summary>
public sealed class CoordinatorLinkHealthCheck(CoordinatorLink link) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(link.IsConnected
            ? HealthCheckResult.Healthy("connected to the coordinator")
            : HealthCheckResult.Degraded("not connected to the coordinator"));
}
