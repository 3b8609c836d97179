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
        var endpoint = app.Services.GetRequiredService<MetricsEndpoint>();
        if (!endpoint.Enabled)
        {
            return app;
        }

        var metrics = app.Services.GetRequiredService<AgentMetrics>();
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
