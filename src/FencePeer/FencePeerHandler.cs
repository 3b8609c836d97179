using System.Globalization;
using Grpc.Core;
using Grpc.Net.Client;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Grpc;

namespace HaMesh.FencePeer;

/// <summary>
/// DRBD's fence-peer / unfence-peer handler. Usage: <c>hamesh-fence-peer fence|unfence [--agent URL] [--timeout SECONDS]</c>.
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
        if (!TryParse(args, env, stderr, out var unfence, out var agent, out var timeout))
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

        try
        {
            using var channel = GrpcChannel.ForAddress(agent);
            var client = new AgentService.AgentServiceClient(channel);
            var response = await client.FencePeerAsync(
                new AgentFencePeerRequest { Resource = resource, DrbdResource = resource, PeerNodeId = peerNodeId, Unfence = unfence },
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

    private static bool TryParse(string[] args, Func<string, string?> env, TextWriter stderr, out bool unfence, out string agent, out TimeSpan timeout)
    {
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
                    stderr.WriteLine("usage: hamesh-fence-peer fence|unfence [--agent URL] [--timeout SECONDS]");
                    return false;
            }
        }

        if (mode is null)
        {
            stderr.WriteLine("usage: hamesh-fence-peer fence|unfence [--agent URL] [--timeout SECONDS]");
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
