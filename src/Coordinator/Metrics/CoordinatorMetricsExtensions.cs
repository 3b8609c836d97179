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
        var endpoint = app.Services.GetRequiredService<MetricsEndpoint>();
        if (!endpoint.Enabled)
        {
            return app;
        }

        var metrics = app.Services.GetRequiredService<CoordinatorMetrics>();   // now: it reads the log's end before events arrive
        app.Use(async (context, next) =>
        {
            if (!endpoint.Allows(context))
            {
                context.Response.StatusCode = StatusCodes.Status404NotFound;
                return;
            }

            await next(context);
        });
        app.MapMetrics(MetricsEndpoint.Path, metrics.Registry);
        return app;
    }
}
