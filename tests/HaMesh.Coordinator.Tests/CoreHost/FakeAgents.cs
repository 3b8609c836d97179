using System.Collections.Concurrent;
using Grpc.Core;
using HaMesh.Coordinator.Operations;
using HaMesh.Protocol.V1;

namespace HaMesh.Coordinator.Tests.CoreHost;

/// <summary>
/// In-memory agents behind <see cref="IAgentCommands"/>: each node has a DRBD role, disk and generation;
/// Promote/Demote change them (refusing a stale generation like the real agent); Ping through the failover
/// IP is answered by whichever node <see cref="RoutedNode"/> says OVH routes the IP to.
/// </summary>
internal sealed class FakeAgents : IAgentCommands
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, ulong> _sequences = new(StringComparer.Ordinal);
    private int _pings;

    public sealed class Node
    {
        public DrbdRole Role { get; set; } = DrbdRole.Secondary;

        public DiskState Disk { get; set; } = DiskState.UpToDate;

        public ConnectionState Connection { get; set; } = ConnectionState.Connected;

        public ulong Generation { get; set; }

        public bool Down { get; set; }

        public bool FailPromote { get; set; }

        public bool FailDemote { get; set; }

        /// <summary>When set, Promote and Demote of this node wait for it before acting (an operation kept in flight).</summary>
        public TaskCompletionSource? Hold { get; set; }
    }

    public Dictionary<string, Node> Nodes { get; } = new(StringComparer.Ordinal) { ["a"] = new(), ["b"] = new() };

    /// <summary>Every state-changing call in order, e.g. "Demote a@2", "Promote b@2!" (forced).</summary>
    public ConcurrentQueue<string> Calls { get; } = new();

    /// <summary>Which node the failover IP reaches now (null: nothing answers).</summary>
    public Func<string, string?> RoutedNode { get; set; } = _ => null;

    /// <summary>Pings through a failover IP so far (answered or not).</summary>
    public int Pings => Volatile.Read(ref _pings);

    /// <summary>A report of the node's current state; each one carries the next sequence, like a real agent's.</summary>
    public NodeStatus Report(string node)
    {
        lock (_lock)
        {
            var n = Nodes[node];
            var peer = Nodes.First(kv => kv.Key != node);
            _sequences[node] = _sequences.GetValueOrDefault(node) + 1;
            return new NodeStatus
            {
                Node = node,
                Sequence = _sequences[node],
                Resources =
                {
                    new ResourceStatus
                    {
                        Resource = "db",
                        Generation = n.Generation,
                        Drbd = new DrbdResourceStatus
                        {
                            Name = "r0", Present = true, Role = n.Role, DiskState = n.Disk,
                            Peers = { new PeerConnectionStatus { PeerName = peer.Key, ConnectionState = n.Connection, PeerRole = n.Connection == ConnectionState.Connected ? peer.Value.Role : DrbdRole.Unknown } },
                        },
                        PeerContactAge = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(n.Connection == ConnectionState.Connected ? TimeSpan.Zero : TimeSpan.FromMinutes(1)),
                    },
                },
            };
        }
    }

    public Task<NodeStatus> GetStatusAsync(string node, string resource, CancellationToken cancellationToken)
    {
        ThrowIfDown(node);
        return Task.FromResult(Report(node));
    }

    public Task<ActionResult> PromoteAsync(string node, PromoteRequest request, CancellationToken cancellationToken) =>
        Act(node, $"Promote {node}@{request.Generation}{(request.Force ? "!" : "")}", request.Generation, DrbdRole.Primary, n => n.FailPromote,
            "step drbd-primary failed: 'drbdadm primary r0' exited 11: State change failed", "drbd-primary=Done, mount=Done", cancellationToken);

    public Task<ActionResult> DemoteAsync(string node, DemoteRequest request, CancellationToken cancellationToken) =>
        Act(node, $"Demote {node}@{request.Generation}{(request.DiscardMyData ? " discard" : "")}{(request.Reconnect ? " reconnect" : "")}", request.Generation, DrbdRole.Secondary, n => n.FailDemote,
            "step umount failed: 'umount /srv/db' exited 32: target is busy", "service:postgresql.service=Done, umount=Done, drbd-secondary=Done", cancellationToken);

    public Task<ActionResult> AgreeAsync(string node, AgreeRequest request, CancellationToken cancellationToken)
    {
        Calls.Enqueue($"Agree {node}@{request.Generation}");
        ThrowIfDown(node);
        lock (_lock)
        {
            var n = Nodes[node];
            RefuseStale(n, request.Generation);
            n.Generation = request.Generation;
            return Task.FromResult(new ActionResult { Success = n.Role == DrbdRole.Secondary, Message = n.Role == DrbdRole.Secondary ? "agreed" : $"{node} is {n.Role}" });
        }
    }

    /// <summary>Like the real agent: the generation is persisted before acting (even when the action then fails); a lower one is refused.</summary>
    private async Task<ActionResult> Act(string node, string call, ulong generation, DrbdRole role, Func<Node, bool> fails, string failure, string success, CancellationToken cancellationToken)
    {
        Calls.Enqueue(call);
        if (Nodes[node].Hold is { } hold)
        {
            await hold.Task.WaitAsync(cancellationToken);
        }

        ThrowIfDown(node);
        lock (_lock)
        {
            var n = Nodes[node];
            RefuseStale(n, generation);
            n.Generation = generation;
            if (fails(n))
            {
                return new ActionResult { Success = false, Message = failure };
            }

            n.Role = role;
            return new ActionResult { Success = true, Message = success };
        }
    }

    public Task<PingResponse> PingAsync(string address, string nonce, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _pings);
        var host = new Uri(address).Host;
        var node = RoutedNode(host + "/32");
        if (node is null || Nodes[node].Down)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, $"nothing answers on {address}"));
        }

        lock (_lock)
        {
            var n = Nodes[node];
            return Task.FromResult(new PingResponse { Node = node, Nonce = nonce, Resources = { new PingResource { Resource = "db", Generation = n.Generation, Role = n.Role } } });
        }
    }

    private void ThrowIfDown(string node)
    {
        if (Nodes[node].Down)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, $"{node} is down"));
        }
    }

    private static void RefuseStale(Node n, ulong generation)
    {
        if (generation < n.Generation)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition, $"generation: stale generation {generation} < {n.Generation}"));
        }
    }
}
