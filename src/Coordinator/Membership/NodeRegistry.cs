using System.Collections.Immutable;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using Microsoft.Extensions.Options;

namespace HaMesh.Coordinator.Membership;

/// <summary>What the coordinator knows of one node: its last report and when it arrived (monotonic timestamp).</summary>
public sealed record NodeEntry(string Node, NodeStatus? LastReport, long? LastSeenTimestamp, int Connections)
{
    /// <summary>When the coordinator last granted this node a lease (monotonic timestamp), if ever.</summary>
    public long? LastGrantTimestamp { get; init; }
}

/// <summary>An immutable, versioned snapshot of the live view (R11).</summary>
public sealed record LiveView(ulong Version, ImmutableDictionary<string, NodeEntry> Nodes);

/// <summary>
/// The coordinator's live view of the nodes. Reports replace the node's entry and bump the version;
/// reachability is derived from the report age against lease + drift margin on the coordinator's
/// own monotonic clock (<see cref="TimeProvider.GetTimestamp"/>).
/// </summary>
public sealed class NodeRegistry
{
    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private readonly TimeSpan _silenceThreshold;
    private LiveView _view;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public NodeRegistry(IOptions<HaMeshOptions> options, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        _time = time;
        _silenceThreshold = options.Value.Cluster.Timings.SilenceThreshold;
        _view = new LiveView(0, options.Value.Nodes.ToImmutableDictionary(n => n.Name, n => new NodeEntry(n.Name, null, null, 0), StringComparer.Ordinal));
    }

    public LiveView Current => Volatile.Read(ref _view);

    /// <summary>Completes at the next change of the view (a report, a stream opening or closing).</summary>
    public Task WaitForChangeAsync(CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            return _changed.Task.WaitAsync(cancellationToken);
        }
    }

    public bool IsKnown(string node) => Current.Nodes.ContainsKey(node);

    /// <summary>Records a report from <paramref name="node"/> (the stream's authenticated node).</summary>
    public void Accept(string node, NodeStatus report) =>
        Update(node, e => e with { LastReport = report, LastSeenTimestamp = _time.GetTimestamp() });

    /// <summary>Records a lease grant to <paramref name="node"/> now.</summary>
    public void RecordGrant(string node) => Update(node, e => e with { LastGrantTimestamp = _time.GetTimestamp() });

    public void StreamOpened(string node) => Update(node, e => e with { Connections = e.Connections + 1 });

    public void StreamClosed(string node) => Update(node, e => e with { Connections = Math.Max(0, e.Connections - 1) });

    /// <summary>Reachability at the current instant: unreachable once no report arrived for lease + drift margin.</summary>
    public Reachability ReachabilityOf(NodeEntry entry) => entry.LastSeenTimestamp switch
    {
        null => Reachability.NeverSeen,
        { } seen when _time.GetElapsedTime(seen) >= _silenceThreshold => Reachability.Unreachable,
        _ => Reachability.Reachable,
    };

    public TimeSpan? AgeOf(NodeEntry entry) => entry.LastSeenTimestamp is { } seen ? _time.GetElapsedTime(seen) : null;

    private void Update(string node, Func<NodeEntry, NodeEntry> change)
    {
        TaskCompletionSource changed;
        lock (_lock)
        {
            if (!_view.Nodes.TryGetValue(node, out var entry))
            {
                throw new ArgumentException($"unknown node '{node}'", nameof(node));
            }

            Volatile.Write(ref _view, new LiveView(_view.Version + 1, _view.Nodes.SetItem(node, change(entry))));
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        changed.TrySetResult();
    }
}
