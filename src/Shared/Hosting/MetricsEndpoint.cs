using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace HaMesh.Shared.Hosting;

/// <summary>
/// The Prometheus listener (HaMesh:*:MetricsListen): its own port, HTTP/1.1, plain text, serving only
/// /metrics. Kestrel fills <see cref="Listen"/> when it binds, so a port-0 listener reports its real port.
/// </summary>
public sealed class MetricsEndpoint(string configured)
{
    public const string Path = "/metrics";

    public string Configured { get; } = configured ?? "";

    public bool Enabled => Configured.Length > 0;

    /// <summary>Set by Kestrel's configuration callback; its end point holds the bound port once the server started.</summary>
    public ListenOptions? Listen { get; internal set; }

    /// <summary>The URL Prometheus scrapes, once bound (null before, or when metrics are off).</summary>
    public string? BoundUrl => Listen?.IPEndPoint is { } ep ? $"http://{ep}{Path}" : null;

    /// <summary>
    /// Which requests may go on: on the metrics port only GET /metrics, and /metrics only there; anywhere
    /// when there is no real listener (in-memory test server).
    /// </summary>
    public bool Allows(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (Listen?.IPEndPoint is not { } ep)
        {
            return true;
        }

        var onMetricsPort = context.Connection.LocalPort == ep.Port;
        return onMetricsPort == context.Request.Path.Equals(Path, StringComparison.Ordinal);
    }
}

public static class MetricsEndpointExtensions
{
    /// <summary>
    /// When HaMesh:*:MetricsListen is set, maps /metrics with <paramref name="mapMetrics"/> and keeps the metrics
    /// port to that one path (anything else there, and /metrics on the other ports, is 404). Both daemons use it.
    /// </summary>
    public static WebApplication MapMetricsPort(this WebApplication app, Action<IEndpointRouteBuilder, string> mapMetrics)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(mapMetrics);
        var endpoint = app.Services.GetRequiredService<MetricsEndpoint>();
        if (!endpoint.Enabled)
        {
            return app;
        }

        app.Use(async (context, next) =>
        {
            if (!endpoint.Allows(context))
            {
                context.Response.StatusCode = StatusCodes.Status404NotFound;
                return;
            }

            await next(context);
        });
        mapMetrics(app, MetricsEndpoint.Path);
        return app;
    }
}
