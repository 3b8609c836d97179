using System.Globalization;
using HaMesh.Coordinator.Events;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using Microsoft.Extensions.Options;

namespace HaMesh.Coordinator.Membership;

/// <summary>
/// Watches reachability every heartbeat and records each transition (NodeReachable / NodeUnreachable)
/// as an event, so "why did the coordinator think B was gone" is answerable afterwards.
/// </summary>
public sealed partial class FailureDetector(
    NodeRegistry registry,
    IEventSink events,
    IOptions<HaMeshOptions> options,
    TimeProvider time,
    ILogger<FailureDetector> logger) : BackgroundService
{
    private readonly Dictionary<string, Reachability> _last = new(StringComparer.Ordinal);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var period = options.Value.Cluster.Timings.Heartbeat;
        while (!stoppingToken.IsCancellationRequested)
        {
            await CheckOnceAsync(stoppingToken);
            try
            {
                await Task.Delay(period, time, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>One pass: compares each node's reachability with the last pass and records changes.</summary>
    public async Task CheckOnceAsync(CancellationToken cancellationToken)
    {
        foreach (var entry in registry.Current.Nodes.Values)
        {
            var now = registry.ReachabilityOf(entry);
            var before = _last.GetValueOrDefault(entry.Node, Reachability.NeverSeen);
            if (now == before)
            {
                continue;
            }

            _last[entry.Node] = now;
            if (now == Reachability.Unreachable)
            {
                var age = registry.AgeOf(entry) ?? TimeSpan.Zero;
                Log.NodeUnreachable(logger, entry.Node, age);
                await events.AppendAsync(new EventRecord("NodeUnreachable", string.Create(CultureInfo.InvariantCulture, $"no report from {entry.Node} for {age.TotalMilliseconds:0} ms (threshold lease + drift margin)"), Node: entry.Node, Severity: EventSeverity.Warning), cancellationToken);
            }
            else if (now == Reachability.Reachable)
            {
                Log.NodeReachable(logger, entry.Node);
                await events.AppendAsync(new EventRecord("NodeReachable", $"{entry.Node} is reporting", Node: entry.Node), cancellationToken);
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 2101, Level = LogLevel.Warning, Message = "Node {Node} unreachable: no report for {Age}")]
        public static partial void NodeUnreachable(ILogger logger, string node, TimeSpan age);

        [LoggerMessage(EventId = 2102, Level = LogLevel.Information, Message = "Node {Node} reachable")]
        public static partial void NodeReachable(ILogger logger, string node);
    }
}
