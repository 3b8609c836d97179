using System.Globalization;
using Grpc.Core;
using Grpc.Net.Client;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;
using HaMesh.Shared.Security;

namespace HaMesh.FencePeer;

/// <summary>
/// DRBD's fence-peer / unfence-peer handler. Usage: <c>hamesh-fence-peer fence|unfence [--agent URL] [--timeout SECONDS] [--cacert CA --cert CERT --key KEY]</c>.
/// With an https:// agent (mutual TLS) it presents the given certificate (the agent's own; HAMESH_TLS_CA/CERT/KEY by default).
/// Reads DRBD_RESOURCE (required) and DRBD_PEER_NODE_ID (optional) from the environment, asks the
/// local agent (AgentService.FencePeer) and exits with the drbd_exit_code it returns. If the agent
/// cannot be reached the exit code is 1: DRBD keeps I/O frozen (drbd.md §6).
/// </summary>
internal static class FencePeerHandler
{
    public const string DefaultAgent = "http://127.0.0.1:7700";
    public const int ExitFailed = 1;
    public const int ExitUsage = 1;
    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(15);

    public static async Task<int> RunAsync(string[] args, Func<string, string?> env, TextWriter stderr, CancellationToken cancellationToken)
    {
        if (!TryParse(args, env, stderr, out var unfence, out var agent, out var timeout, out var tlsFiles))
        {
            return ExitUsage;
        }

        var resource = env("DRBD_RESOURCE");
        if (string.IsNullOrWhiteSpace(resource))
        {
            await stderr.WriteLineAsync("hamesh-fence-peer: DRBD_RESOURCE is not set (this program is meant to be run by DRBD as a handler)").ConfigureAwait(false);
            return ExitUsage;
        }

        var peerText = env("DRBD_PEER_NODE_ID");
        var peerNodeId = -1;
        if (!string.IsNullOrEmpty(peerText) && !int.TryParse(peerText, NumberStyles.None, CultureInfo.InvariantCulture, out peerNodeId))
        {
            await stderr.WriteLineAsync($"hamesh-fence-peer: DRBD_PEER_NODE_ID '{peerText}' is not a node id").ConfigureAwait(false);
            return ExitUsage;
        }

        // Which peer DRBD lost: DRBD 9 passes its node id and each node's host name (DRBD_NODE_ID_<id>), 8.4 the peer's host name.
        var peerName = (peerNodeId >= 0 ? env(string.Create(CultureInfo.InvariantCulture, $"DRBD_NODE_ID_{peerNodeId}")) : null) ?? env("DRBD_PEER") ?? "";

        ClusterTls? tls = null;
        if (agent.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
        {
            if (tlsFiles.Ca is null || tlsFiles.Cert is null || tlsFiles.Key is null)
            {
                await stderr.WriteLineAsync($"hamesh-fence-peer: agent {agent} is https://: pass --cacert, --cert and --key (or HAMESH_TLS_CA, HAMESH_TLS_CERT, HAMESH_TLS_KEY); I/O stays frozen").ConfigureAwait(false);
                return ExitUsage;
            }

            try
            {
                tls = ClusterTls.Load(tlsFiles.Ca, tlsFiles.Cert, tlsFiles.Key);
            }
            catch (Exception ex) when (ex is System.Security.Cryptography.CryptographicException or IOException or UnauthorizedAccessException or ArgumentException)
            {
                await stderr.WriteLineAsync($"hamesh-fence-peer: cannot load the TLS files ({ex.Message}); I/O stays frozen").ConfigureAwait(false);
                return ExitFailed;
            }
        }

        using var material = tls;
        try
        {
            using var channel = tls is null ? GrpcChannel.ForAddress(agent) : GrpcChannels.Create(agent, new TimingOptions { Lease = timeout }, tls);   // connecting (TLS handshake) may use the whole budget, not the 2 s default lease
            var client = new AgentService.AgentServiceClient(channel);
            var response = await client.FencePeerAsync(
                new AgentFencePeerRequest { Resource = resource, DrbdResource = resource, PeerNodeId = peerNodeId, PeerName = peerName.Trim(), Unfence = unfence },
                deadline: RpcDeadline.In(timeout), cancellationToken: cancellationToken).ConfigureAwait(false);
            await stderr.WriteLineAsync($"hamesh-fence-peer: {resource}: {response.Outcome} {response.Message} (exit {response.DrbdExitCode})").ConfigureAwait(false);
            return response.DrbdExitCode;
        }
        catch (RpcException ex)
        {
            await stderr.WriteLineAsync($"hamesh-fence-peer: {resource}: agent {agent} failed ({ex.StatusCode}: {ex.Status.Detail}); I/O stays frozen").ConfigureAwait(false);
            return ExitFailed;
        }
    }

    private static bool TryParse(string[] args, Func<string, string?> env, TextWriter stderr, out bool unfence, out string agent, out TimeSpan timeout, out (string? Ca, string? Cert, string? Key) tls)
    {
        tls = (env("HAMESH_TLS_CA"), env("HAMESH_TLS_CERT"), env("HAMESH_TLS_KEY"));
        unfence = false;
        agent = env("HAMESH_AGENT_ADDRESS") is { Length: > 0 } fromEnv ? fromEnv : DefaultAgent;
        timeout = DefaultTimeout;
        string? mode = null;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--agent" when i + 1 < args.Length:
                    agent = args[++i];
                    break;
                case "--cacert" when i + 1 < args.Length:
                    tls.Ca = args[++i];
                    break;
                case "--cert" when i + 1 < args.Length:
                    tls.Cert = args[++i];
                    break;
                case "--key" when i + 1 < args.Length:
                    tls.Key = args[++i];
                    break;
                case "--timeout" when i + 1 < args.Length:
                    if (!double.TryParse(args[++i], NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) || seconds <= 0)
                    {
                        stderr.WriteLine($"hamesh-fence-peer: --timeout '{args[i]}' must be a positive number of seconds");
                        return false;
                    }

                    timeout = TimeSpan.FromSeconds(seconds);
                    break;
                case "fence" or "fence-peer" or "unfence" or "unfence-peer" when mode is null:
                    mode = args[i];
                    break;
                default:
                    stderr.WriteLine($"hamesh-fence-peer: unexpected argument '{args[i]}'");
                    stderr.WriteLine("usage: hamesh-fence-peer fence|unfence [--agent URL] [--timeout SECONDS] [--cacert CA --cert CERT --key KEY]");
                    return false;
            }
        }

        if (mode is null)
        {
            stderr.WriteLine("usage: hamesh-fence-peer fence|unfence [--agent URL] [--timeout SECONDS] [--cacert CA --cert CERT --key KEY]");
            return false;
        }

        unfence = mode.StartsWith("unfence", StringComparison.Ordinal);
        if (!Uri.TryCreate(agent, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
        {
            stderr.WriteLine($"hamesh-fence-peer: agent address '{agent}' is not an http(s) URL");
            return false;
        }

        return true;
    }
}
