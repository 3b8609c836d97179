using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;
using Microsoft.Extensions.Options;

namespace HaMesh.Agent.Core;

/// <summary>The calls the agent core's host makes to the other nodes' agents and to the coordinator (unary gRPC; tests fake them).</summary>
public interface IClusterCalls
{
    /// <summary>AgentService.RenewLease on <paramref name="peer"/>.</summary>
    Task<RenewLeaseResponse> RenewLeaseAsync(string peer, RenewLeaseRequest request, TimeSpan deadline, CancellationToken cancellationToken);

    /// <summary>AgentService.Outdate on <paramref name="peer"/> (fence-peer without the coordinator).</summary>
    Task<ActionResult> OutdateAsync(string peer, OutdateRequest request, TimeSpan deadline, CancellationToken cancellationToken);

    /// <summary>CoordinatorService.FencePeer: record the peer outdated.</summary>
    Task<FencePeerResponse> FencePeerAsync(FencePeerRequest request, TimeSpan deadline, CancellationToken cancellationToken);
}

/// <summary>One gRPC channel per peer agent and one to the coordinator, each created on first use and kept for the agent's life.</summary>
public sealed class GrpcClusterCalls(IOptions<HaMeshOptions> options) : IClusterCalls, IDisposable
{
    private readonly HaMeshOptions _options = options.Value;
    private readonly Dictionary<string, Grpc.Net.Client.GrpcChannel> _channels = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    public async Task<RenewLeaseResponse> RenewLeaseAsync(string peer, RenewLeaseRequest request, TimeSpan deadline, CancellationToken cancellationToken) =>
        await new AgentService.AgentServiceClient(Peer(peer)).RenewLeaseAsync(request, deadline: RpcDeadline.In(deadline), cancellationToken: cancellationToken);

    public async Task<ActionResult> OutdateAsync(string peer, OutdateRequest request, TimeSpan deadline, CancellationToken cancellationToken) =>
        await new AgentService.AgentServiceClient(Peer(peer)).OutdateAsync(request, deadline: RpcDeadline.In(deadline), cancellationToken: cancellationToken);

    public async Task<FencePeerResponse> FencePeerAsync(FencePeerRequest request, TimeSpan deadline, CancellationToken cancellationToken) =>
        await new CoordinatorService.CoordinatorServiceClient(Channel("", _options.Coordinator.Address)).FencePeerAsync(request, deadline: RpcDeadline.In(deadline), cancellationToken: cancellationToken);

    private Grpc.Net.Client.GrpcChannel Peer(string peer)
    {
        var node = _options.FindNode(peer) ?? throw new ArgumentException($"'{peer}' is not a configured node", nameof(peer));
        return Channel(node.Name, node.AgentAddress);
    }

    private Grpc.Net.Client.GrpcChannel Channel(string key, string address)
    {
        lock (_lock)
        {
            if (!_channels.TryGetValue(key, out var channel))
            {
                channel = GrpcChannels.Create(address, _options.Cluster.Timings, _options.Tls);
                _channels[key] = channel;
            }

            return channel;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var c in _channels.Values)
            {
                c.Dispose();
            }

            _channels.Clear();
        }
    }
}
