using Grpc.Core;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using Microsoft.Extensions.Options;

namespace HaMesh.Coordinator.Operations;

public enum VerifyOutcome
{
    /// <summary>The agent answering through the failover IP is the new primary at the new generation.</summary>
    Verified = 0,

    /// <summary>OVH routes the IP, but nothing answers through it (routed-but-unreachable).</summary>
    Unreachable = 1,

    /// <summary>Something answers through the IP, but not the expected node/generation.</summary>
    WrongAnswer = 2,
}

public sealed record VerifyResult(VerifyOutcome Outcome, string Detail)
{
    /// <summary>The node that answered through the IP (null: nothing answered).</summary>
    public string? AnsweredBy { get; init; }

    /// <summary>The generation it answered with; 0 when it is not Primary of the resource.</summary>
    public ulong AnsweredGeneration { get; init; }
}

/// <summary>
/// The end-to-end proof of a failover (design §4): call AgentService.Ping through the failover IP on
/// the agent's port and require the answer to name the new primary and its generation.
/// </summary>
public sealed class FailoverIpVerifier(IAgentCommands agents, IOptions<HaMeshOptions> options)
{
    private readonly HaMeshOptions _options = options.Value;

    public async Task<VerifyResult> VerifyAsync(string resource, string failoverIp, string expectedNode, ulong generation, CancellationToken cancellationToken)
    {
        if (!IpCidr.TryParse(failoverIp, out var cidr))
        {
            return new VerifyResult(VerifyOutcome.WrongAnswer, $"'{failoverIp}' is not an IP");
        }

        // The agent's port and scheme: with mutual TLS the check speaks TLS too (the agent's certificate must name the failover IP).
        var agent = new Uri(_options.FindNode(expectedNode)?.AgentAddress ?? "http://127.0.0.1:7700");
        var host = cidr.Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{cidr.Host}]" : cidr.Host;
        var address = $"{agent.Scheme}://{host}:{agent.Port}";
        var nonce = Guid.NewGuid().ToString("N");
        try
        {
            var pong = await agents.PingAsync(address, nonce, cancellationToken);
            var r = pong.Resources.FirstOrDefault(x => x.Resource == resource);
            var answered = (pong.Nonce == nonce ? pong.Node : "", r is { Role: DrbdRole.Primary } ? r.Generation : 0UL);
            if (pong.Nonce != nonce || pong.Node != expectedNode || r is null || r.Generation != generation || r.Role != DrbdRole.Primary)
            {
                return new VerifyResult(VerifyOutcome.WrongAnswer,
                    $"{address} answered as node '{pong.Node}' (generation {r?.Generation ?? 0}, role {r?.Role ?? DrbdRole.Unknown}); expected '{expectedNode}' Primary at generation {generation}")
                { AnsweredBy = answered.Item1, AnsweredGeneration = answered.Item2 };
            }

            return new VerifyResult(VerifyOutcome.Verified, $"{address} answered as {expectedNode}, Primary at generation {generation}") { AnsweredBy = answered.Item1, AnsweredGeneration = answered.Item2 };
        }
        catch (RpcException ex)
        {
            return new VerifyResult(VerifyOutcome.Unreachable, $"{address}: {ex.Status.StatusCode} {ex.Status.Detail}");
        }
    }
}
