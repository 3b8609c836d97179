using System.Globalization;
using Grpc.Core;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;
using Microsoft.Extensions.Options;

namespace HaMesh.Agent.Actions;

/// <summary>Who can confirm the peer is fenced: the coordinator (records it outdated), else the peer agent itself (drbdadm outdate).</summary>
public interface IFencingClients
{
    Task<AgentFencePeerResponse> FenceAsync(string resource, ulong generation, CancellationToken cancellationToken);
}

/// <summary>
/// Design §4.1: ask the coordinator to record the peer outdated at our generation; if the coordinator
/// cannot be reached, ask the peer's agent to outdate itself. Exit code 4 (fenced) only when one of
/// them confirmed; 1 otherwise, so DRBD keeps I/O frozen and the lease decides.
/// </summary>
public sealed class FencingClients(IOptions<HaMeshOptions> options, Reporting.StatusCollector collector) : IFencingClients, IDisposable
{
    private readonly HaMeshOptions _options = options.Value;
    private readonly Lazy<Grpc.Net.Client.GrpcChannel> _coordinator = new(() => GrpcChannels.Create(options.Value.Coordinator.Address, options.Value.Cluster.Timings, options.Value.Tls));
    private readonly Lazy<Grpc.Net.Client.GrpcChannel?> _peer = new(() =>
        options.Value.Nodes.FirstOrDefault(n => n.Name != options.Value.Agent.Node) is { } p ? GrpcChannels.Create(p.AgentAddress, options.Value.Cluster.Timings, options.Value.Tls) : null);

    public async Task<AgentFencePeerResponse> FenceAsync(string resource, ulong generation, CancellationToken cancellationToken)
    {
        var peer = _options.Nodes.FirstOrDefault(n => n.Name != _options.Agent.Node)?.Name ?? "";
        var deadline = _options.Cluster.Timings.Lease;
        string coordinatorProblem;
        try
        {
            var reply = await new CoordinatorService.CoordinatorServiceClient(_coordinator.Value).FencePeerAsync(
                new FencePeerRequest { Resource = resource, Generation = generation, RequestingNode = _options.Agent.Node, PeerNode = peer, AfterReportSequence = collector.CurrentSequence },
                deadline: RpcDeadline.In(deadline), cancellationToken: cancellationToken);
            return reply.Outcome switch
            {
                FenceOutcome.PeerOutdated => Result(FenceOutcome.PeerOutdated, 4, $"coordinator recorded {peer} outdated: {reply.Message}"),
                FenceOutcome.PeerAlreadyOutdated => Result(FenceOutcome.PeerAlreadyOutdated, 3, reply.Message),
                _ => Result(FenceOutcome.Failed, 1, $"coordinator refused: {reply.Message}"),
            };
        }
        catch (RpcException ex) when (ex.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded)
        {
            coordinatorProblem = $"coordinator unreachable ({ex.StatusCode})";
        }

        if (_peer.Value is not { } channel)
        {
            return Result(FenceOutcome.Failed, 1, $"{coordinatorProblem}; no peer configured");
        }

        try
        {
            var outdated = await new AgentService.AgentServiceClient(channel).OutdateAsync(
                new OutdateRequest { Resource = resource, Generation = generation, RequestedBy = _options.Agent.Node },
                deadline: RpcDeadline.In(deadline), cancellationToken: cancellationToken);
            return outdated.Success
                ? Result(FenceOutcome.PeerOutdated, 4, $"{coordinatorProblem}; {peer} outdated itself")
                : Result(FenceOutcome.Failed, 1, $"{coordinatorProblem}; {peer} could not outdate itself: {outdated.Message}");
        }
        catch (RpcException ex)
        {
            return Result(FenceOutcome.Failed, 1, string.Create(CultureInfo.InvariantCulture, $"{coordinatorProblem}; peer {peer} unreachable ({ex.StatusCode}): I/O stays frozen"));
        }
    }

    public void Dispose()
    {
        if (_coordinator.IsValueCreated)
        {
            _coordinator.Value.Dispose();
        }

        if (_peer.IsValueCreated)
        {
            _peer.Value?.Dispose();
        }
    }

    private static AgentFencePeerResponse Result(FenceOutcome outcome, int exit, string message) => new() { Outcome = outcome, DrbdExitCode = exit, Message = message };
}
