using System.Collections.Concurrent;
using Grpc.Core;
using Grpc.Net.Client;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;
using Microsoft.Extensions.Options;

namespace HaMesh.Coordinator.Operations;

/// <summary>The coordinator's calls to agents (GetStatus, Promote, Demote, Ping), each with a deadline.</summary>
public interface IAgentCommands
{
    /// <summary>Reads the node's state now (a coordinator resuming an operation after a restart re-reads it instead of trusting its record).</summary>
    Task<NodeStatus> GetStatusAsync(string node, string resource, CancellationToken cancellationToken);

    Task<ActionResult> PromoteAsync(string node, PromoteRequest request, CancellationToken cancellationToken);

    Task<ActionResult> DemoteAsync(string node, DemoteRequest request, CancellationToken cancellationToken);

    /// <summary>With three or more nodes: a voter other than the candidate agrees to the promotion at the generation.</summary>
    Task<ActionResult> AgreeAsync(string node, AgreeRequest request, CancellationToken cancellationToken);

    /// <summary>Pings <paramref name="address"/> (a node's agent address, or the agent through the failover IP).</summary>
    Task<PingResponse> PingAsync(string address, string nonce, CancellationToken cancellationToken);
}

/// <summary>
/// gRPC implementation: one channel per address, reused. Actions get a deadline long enough for the
/// agent's whole step sequence (command timeout × steps); pings get a heartbeat-scale deadline.
/// </summary>
public sealed class AgentCommandClient(IOptions<HaMeshOptions> options) : IAgentCommands, IDisposable
{
    private readonly HaMeshOptions _options = options.Value;
    private readonly ConcurrentDictionary<string, GrpcChannel> _channels = new(StringComparer.Ordinal);

    public Task<NodeStatus> GetStatusAsync(string node, string resource, CancellationToken cancellationToken) =>
        Client(AddressOf(node)).GetStatusAsync(new GetStatusRequest { Resource = resource }, deadline: RpcDeadline.In(_options.Cluster.Timings.Lease), cancellationToken: cancellationToken).ResponseAsync;

    public Task<ActionResult> PromoteAsync(string node, PromoteRequest request, CancellationToken cancellationToken) =>
        Client(AddressOf(node)).PromoteAsync(request, deadline: RpcDeadline.In(ActionDeadline), cancellationToken: cancellationToken).ResponseAsync;

    public Task<ActionResult> DemoteAsync(string node, DemoteRequest request, CancellationToken cancellationToken) =>
        Client(AddressOf(node)).DemoteAsync(request, deadline: RpcDeadline.In(ActionDeadline), cancellationToken: cancellationToken).ResponseAsync;

    public Task<ActionResult> AgreeAsync(string node, AgreeRequest request, CancellationToken cancellationToken) =>
        Client(AddressOf(node)).AgreeAsync(request, deadline: RpcDeadline.In(_options.Cluster.Timings.Lease), cancellationToken: cancellationToken).ResponseAsync;

    public Task<PingResponse> PingAsync(string address, string nonce, CancellationToken cancellationToken) =>
        Client(address).PingAsync(new PingRequest { Nonce = nonce }, deadline: RpcDeadline.In(_options.Cluster.Timings.Lease), cancellationToken: cancellationToken).ResponseAsync;

    public void Dispose()
    {
        foreach (var channel in _channels.Values)
        {
            channel.Dispose();
        }
    }

    private TimeSpan ActionDeadline
    {
        get
        {
            var steps = 4 + _options.Resources.Max(r => r.Services.Count + r.FailoverIps.Count);
            return _options.Agent.CommandTimeout * steps;
        }
    }

    private string AddressOf(string node) =>
        _options.FindNode(node)?.AgentAddress ?? throw new RpcException(new Status(StatusCode.InvalidArgument, $"node: '{node}' is not configured"));

    private AgentService.AgentServiceClient Client(string address) =>
        new(_channels.GetOrAdd(address, a => GrpcChannels.Create(a, _options.Cluster.Timings, _options.Tls)));
}
