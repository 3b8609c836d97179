using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;

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
