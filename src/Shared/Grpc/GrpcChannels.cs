using Grpc.Net.Client;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Security;

namespace HaMesh.Shared.Grpc;

/// <summary>
/// gRPC channels between HaMesh components. HTTP/2 keep-alive pings detect a silently dead peer
/// (a cut link drops packets without a reset) within about a lease, so streams fail and reconnect
/// instead of hanging; connects time out after a lease.
/// </summary>
public static class GrpcChannels
{
    /// <summary>Largest message HaMesh components accept or send (status reports are a few KiB).</summary>
    public const int MaxMessageBytes = 4 * 1024 * 1024;

    /// <summary>A channel; with <paramref name="tls"/> not insecure it presents this component's certificate and accepts only a server the cluster CA signed.</summary>
    public static GrpcChannel Create(string address, TimingOptions timings, TlsOptions? tls = null) =>
        Create(address, timings, tls is null ? null : ClusterTls.From(tls));

    public static GrpcChannel Create(string address, TimingOptions timings, ClusterTls? tls)
    {
        ArgumentNullException.ThrowIfNull(timings);
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = timings.Lease,
            KeepAlivePingDelay = TimeSpan.FromTicks(Math.Max(timings.Heartbeat.Ticks * 4, TimeSpan.FromSeconds(1).Ticks)),
            KeepAlivePingTimeout = timings.Lease,
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always,
            EnableMultipleHttp2Connections = true,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
        };
        if (tls is not null)
        {
            handler.SslOptions = tls.ClientOptions();
        }

        return GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            HttpHandler = handler,
            MaxReceiveMessageSize = MaxMessageBytes,
            MaxSendMessageSize = MaxMessageBytes,
            DisposeHttpClient = true,
        });
    }
}
