using HaMesh.Shared.Hosting;
using Prometheus;

namespace HaMesh.Coordinator.Metrics;

public static class CoordinatorMetricsExtensions
{
    public static IServiceCollection AddCoordinatorMetrics(this IServiceCollection services)
    {
        services.AddSingleton<CoordinatorMetrics>();
        return services;
    }

    /// <summary>Maps /metrics when HaMesh:Coordinator:MetricsListen is set; the metrics port serves nothing else.</summary>
    public static WebApplication MapCoordinatorMetrics(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        // mapped (and the registry resolved) only when metrics are on   // resolved now: it reads the log's end before events arrive
        return app.MapMetricsPort((routes, path) => routes.MapMetrics(path, app.Services.GetRequiredService<CoordinatorMetrics>().Registry));
    }
}
