using HaMesh.Shared.Hosting;
using Prometheus;

namespace HaMesh.Agent.Metrics;

public static class AgentMetricsExtensions
{
    public static IServiceCollection AddAgentMetrics(this IServiceCollection services)
    {
        services.AddSingleton<AgentMetrics>();
        return services;
    }

    /// <summary>Maps /metrics when HaMesh:Agent:MetricsListen is set; the metrics port serves nothing else.</summary>
    public static WebApplication MapAgentMetrics(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        // mapped (and the registry resolved) only when metrics are on
        return app.MapMetricsPort((routes, path) => routes.MapMetrics(path, app.Services.GetRequiredService<AgentMetrics>().Registry));
    }
}
