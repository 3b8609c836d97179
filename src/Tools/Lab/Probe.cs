using System.Globalization;
using Grpc.Core;
using Grpc.Net.Client;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Security;

namespace HaMesh.Lab;

/// <summary>
/// The client in namespace C: AgentService.Ping through the failover IP every 20 ms (250 ms deadline,
/// a fresh connection after any failure). Prints a line when the answer changes:
/// "ok NODE UNIXMS" (answered by NODE) or "fail UNIXMS REASON". With <c>tls</c> (a cluster certificate,
/// e.g. a viewer's) it speaks mutual TLS to the agent, as any client of a TLS cluster must.
/// </summary>
public static class Probe
{
    public static async Task<int> RunAsync(string target, ClusterTls? tls, CancellationToken ct)
    {
        var time = TimeProvider.System;
        string? last = null;
        GrpcChannel? channel = null;
        Console.Out.Flush();
        while (!ct.IsCancellationRequested)
        {
            if (channel is null)
            {
                var handler = new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromMilliseconds(200) };
                if (tls is not null)
                {
                    handler.SslOptions = tls.ClientOptions();
                }

                channel = GrpcChannel.ForAddress($"{(tls is null ? "http" : "https")}://{target}", new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
            }

            string now;
            try
            {
                var pong = await new AgentService.AgentServiceClient(channel).PingAsync(new PingRequest { Nonce = "probe" }, deadline: Deadline(250), cancellationToken: ct);
                now = "ok " + pong.Node;
            }
            catch (RpcException ex)
            {
                now = "fail";
                channel.Dispose();
                channel = null;
                if (last != now)
                {
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"fail {time.GetUtcNow().ToUnixTimeMilliseconds()} {ex.StatusCode}"));
                }
            }

            if (now != last && now != "fail")
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{now} {time.GetUtcNow().ToUnixTimeMilliseconds()}"));
            }

            last = now;
            await Task.Delay(TimeSpan.FromMilliseconds(20), time, ct);
        }

        channel?.Dispose();
        return 0;
    }

    private static DateTime Deadline(int ms) =>
#pragma warning disable RS0030 // gRPC deadlines are evaluated on the library's wall clock (style R15)
        DateTime.UtcNow.AddMilliseconds(ms);
#pragma warning restore RS0030
}
