using System.Net;
using HaMesh.Shared.Grpc;
using HaMesh.Shared.Security;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace HaMesh.Shared.Hosting;

public static class KestrelSetup
{
    /// <summary>
    /// Plain-text HTTP/2 (h2c) on the configured URL(s), so grpcurl -plaintext works; keep-alive pings find dead peers.
    /// With <paramref name="metricsListen"/> set, a second, HTTP/1.1-only listener serves Prometheus' /metrics
    /// (Prometheus does not speak h2c); both are then bound explicitly and the bound metrics endpoint is
    /// available from the <see cref="MetricsEndpoint"/> service.
    /// </summary>
    /// <remarks>
    /// With <paramref name="tls"/> the gRPC listeners are HTTPS with a required client certificate that must chain to the
    /// cluster CA alone (<see cref="ClusterTls.IsTrusted(System.Security.Cryptography.X509Certificates.X509Certificate2?)"/>);
    /// the metrics listener stays plain HTTP/1.1.
    /// </remarks>
    public static WebApplicationBuilder ConfigureHaMeshKestrel(this WebApplicationBuilder builder, string listen, string metricsListen = "", ClusterTls? tls = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var metrics = new MetricsEndpoint(metricsListen);
        builder.Services.AddSingleton(metrics);
        if (!metrics.Enabled && !string.IsNullOrEmpty(listen))
        {
            builder.WebHost.UseUrls(listen);
        }

        builder.WebHost.ConfigureKestrel(k =>
        {
            k.ConfigureEndpointDefaults(e => e.Protocols = HttpProtocols.Http2);
            k.Limits.Http2.KeepAlivePingDelay = TimeSpan.FromSeconds(1);
            k.Limits.Http2.KeepAlivePingTimeout = TimeSpan.FromSeconds(3);
            k.Limits.MaxRequestBodySize = GrpcChannels.MaxMessageBytes;
            if (tls is not null)
            {
                k.ConfigureHttpsDefaults(h =>
                {
                    h.ServerCertificate = tls.Certificate;
                    h.ClientCertificateMode = ClientCertificateMode.RequireCertificate;
                    h.CheckCertificateRevocation = false;
                    h.SslProtocols = System.Security.Authentication.SslProtocols.Tls12 | System.Security.Authentication.SslProtocols.Tls13;
                    h.ClientCertificateValidation = (certificate, _, _) => tls.IsTrusted(certificate);
                });
            }

            if (metrics.Enabled)
            {
                foreach (var url in listen.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                {
                    var uri = new Uri(url);
                    k.Listen(Address(uri), uri.Port, l =>
                    {
                        l.Protocols = HttpProtocols.Http2;
                        if (uri.Scheme == "https")
                        {
                            l.UseHttps();
                        }
                    });
                }

                var m = new Uri(metrics.Configured);
                k.Listen(Address(m), m.Port, l =>
                {
                    l.Protocols = HttpProtocols.Http1;
                    metrics.Listen = l;
                });
            }
        });
        return builder;
    }

    /// <summary>The IP address a listen URL names: 0.0.0.0/*/+ = any IPv4, [::] = any, localhost = 127.0.0.1.</summary>
    internal static IPAddress Address(Uri uri)
    {
        var host = uri.Host;
        if (host is "*" or "+" or "0.0.0.0")
        {
            return IPAddress.Any;
        }

        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase))
        {
            return IPAddress.Loopback;
        }

        return IPAddress.TryParse(uri.IdnHost.Trim('[', ']'), out var ip)
            ? ip
            : throw new FormatException($"listen URL '{uri}' must name an IP address, 0.0.0.0, [::] or localhost");
    }
}
