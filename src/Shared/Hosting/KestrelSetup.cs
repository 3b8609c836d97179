using HaMesh.Shared.Grpc;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace HaMesh.Shared.Hosting;

public static class KestrelSetup
{
    /// <summary>Plain-text HTTP/2 (h2c) on the configured URL, so grpcurl -plaintext works; keep-alive pings find dead peers.</summary>
    public static WebApplicationBuilder ConfigureHaMeshKestrel(this WebApplicationBuilder builder, string listen)
    {
        ArgumentNullException.ThrowIfNull(builder);
        if (!string.IsNullOrEmpty(listen))
        {
            builder.WebHost.UseUrls(listen);
        }

        builder.WebHost.ConfigureKestrel(k =>
        {
            k.ConfigureEndpointDefaults(e => e.Protocols = HttpProtocols.Http2);
            k.Limits.Http2.KeepAlivePingDelay = TimeSpan.FromSeconds(1);
            k.Limits.Http2.KeepAlivePingTimeout = TimeSpan.FromSeconds(3);
            k.Limits.MaxRequestBodySize = GrpcChannels.MaxMessageBytes;
        });
        return builder;
    }
}
