using Grpc.Core;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;
using HaMesh.Testing;
using HaMesh.Testing.Lab;
using HaMesh.Testing.Processes;

namespace HaMesh.Lab.Tests;

/// <summary>
/// Failure detection across real namespaces: the coordinator in W, agents in A and B (DRBD read
/// through stand-ins), nftables cuts between hosts. Skips with the reason when not root.
/// </summary>
[Collection("netns")]
public sealed class DetectionScenarioTests : IAsyncLifetime
{
    private readonly List<IAsyncDisposable> _owned = [];
    private readonly List<IDisposable> _standIns = [];
    private NetnsLab? _lab;

    public async ValueTask InitializeAsync()
    {
        if (NetnsLab.WhyNot() is null)
        {
            _lab = await NetnsLab.CreateAsync(TestContext.Current.CancellationToken);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var o in _owned.AsEnumerable().Reverse())
        {
            await o.DisposeAsync();
        }

        if (_lab is not null)
        {
            await _lab.DisposeAsync();
        }

        foreach (var s in _standIns)
        {
            s.Dispose();
        }
    }

    private NetnsLab Lab => _lab ?? throw new InvalidOperationException("lab not created");

    private async Task<(HaMeshOptions Options, CoordinatorService.CoordinatorServiceClient Client)> StartClusterAsync(CancellationToken ct)
    {
        Assert.SkipWhen(NetnsLab.WhyNot() is { } why, NetnsLab.WhyNot() ?? "");
        var dir = Directory.CreateTempSubdirectory("hamesh-lab-").FullName;
        var options = TestConfig.TwoNodes(coordinatorAddress: $"http://{NetnsLab.Address("w")}:7800");
        options.Coordinator.Listen = "http://0.0.0.0:7800";
        options.Coordinator.StorePath = Path.Combine(dir, "coordinator.db");
        options.Nodes[0].AgentAddress = $"http://{NetnsLab.Address("a")}:7700";
        options.Nodes[1].AgentAddress = $"http://{NetnsLab.Address("b")}:7700";
        options.Agent.Node = "";
        options.Agent.DrbdVersion = "drbd84";
        var config = ClusterFiles.Write(dir, options);

        var coordinator = DaemonProcess.StartIn(Lab.Ns("w"), "coordinator", DaemonProcess.Dll("src/Coordinator", "hamesh-coordinator"), ["--config", config]);
        _owned.Add(coordinator);
        await coordinator.WaitForListeningAsync(ct);
        foreach (var (node, role, peer) in new[] { ("a", "Primary", "Secondary"), ("b", "Secondary", "Primary") })
        {
            var s = StandIns.Drbd84Node(role, peer, aliasPresent: node == "a", node == "a" ? "active" : "inactive");
            _standIns.Add(s);
            var env = StandIns.AgentEnvironment(node, 7700, s);
            env["HaMesh__Agent__Listen"] = "http://0.0.0.0:7700";
            var agent = DaemonProcess.StartIn(Lab.Ns(node), "agent-" + node, DaemonProcess.Dll("src/Agent", "hamesh-agent"), ["--config", config], env);
            _owned.Add(agent);
            await agent.WaitForListeningAsync(ct);
        }

        var channel = GrpcChannels.Create(options.Coordinator.Address, options.Cluster.Timings);
        _owned.Add(new ChannelOwner(channel));
        return (options, new CoordinatorService.CoordinatorServiceClient(channel));
    }

    /// <summary>Waits for <paramref name="step"/>; on timeout fails with what every daemon printed, so a CI failure explains itself.</summary>
    private async Task<T> WithinAsync<T>(Task<T> step, string what, CancellationToken ct)
    {
        try
        {
            return await step.WaitAsync(TimeSpan.FromSeconds(60), ct);
        }
        catch (TimeoutException)
        {
            var outputs = string.Join("\n", _owned.OfType<DaemonProcess>().Select(d => $"----- {d.Name} (exited: {d.HasExited}) -----\n{Tail(d.Output, 80)}"));
            throw new TimeoutException($"{what}: not within 60 s.\n{outputs}");
        }
    }

    private static string Tail(string text, int lines) => string.Join('\n', text.Split('\n').TakeLast(lines));

    /// <summary>Waits until every node in <paramref name="nodes"/> had a <paramref name="kind"/> event, in whatever order they come.</summary>
    private static async Task<bool> AllAsync(IAsyncStreamReader<ClusterEvent> events, string kind, string[] nodes, CancellationToken ct)
    {
        var missing = new HashSet<string>(nodes, StringComparer.Ordinal);
        while (missing.Count > 0 && await events.MoveNext(ct))
        {
            if (events.Current.Kind == kind)
            {
                missing.Remove(events.Current.Node);
            }
        }

        return missing.Count == 0 ? true : throw new InvalidOperationException("event stream ended");
    }

    private static async Task<ClusterEvent> NextAsync(IAsyncStreamReader<ClusterEvent> events, string kind, string node, CancellationToken ct)
    {
        while (await events.MoveNext(ct))
        {
            if (events.Current.Kind == kind && events.Current.Node == node)
            {
                return events.Current;
            }
        }

        throw new InvalidOperationException("event stream ended");
    }

    [Fact]
    public async Task WitnessPrimaryCut_PrimaryUnreachableForWitnessOnly_ThenBackAfterHeal()
    {
        var ct = TestContext.Current.CancellationToken;
        var (_, client) = await StartClusterAsync(ct);
        using var watch = client.WatchEvents(new WatchEventsRequest(), cancellationToken: ct);
        await WithinAsync(AllAsync(watch.ResponseStream, "NodeReachable", ["a", "b"], ct), "NodeReachable a and b", ct);

        await Lab.PartitionAsync("w", "a", ct);
        await WithinAsync(NextAsync(watch.ResponseStream, "NodeUnreachable", "a", ct), "NodeUnreachable a", ct);
        var status = await client.GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: ct);
        Assert.Equal(Reachability.Unreachable, status.Nodes.Single(n => n.Node == "a").Reachability);
        Assert.Equal(Reachability.Reachable, status.Nodes.Single(n => n.Node == "b").Reachability);

        await Lab.HealAllAsync(ct);
        await WithinAsync(NextAsync(watch.ResponseStream, "NodeReachable", "a", ct), "NodeReachable a", ct);
    }

    [Fact]
    public async Task LossTenPercentEverywhere_NoNodeEverUnreachable()
    {
        var ct = TestContext.Current.CancellationToken;
        var (options, client) = await StartClusterAsync(ct);
        using var watch = client.WatchEvents(new WatchEventsRequest(), cancellationToken: ct);
        await WithinAsync(AllAsync(watch.ResponseStream, "NodeReachable", ["a", "b"], ct), "NodeReachable a and b", ct);
        foreach (var h in new[] { "a", "b", "w" })
        {
            await Lab.LossAsync(h, 10, ct);
        }

        // 20 lease periods under loss; any NodeUnreachable would be a false suspicion.
        using var window = CancellationTokenSource.CreateLinkedTokenSource(ct);
        window.CancelAfter(options.Cluster.Timings.Lease * 20);
        var suspicion = await NextOrNoneAsync(watch.ResponseStream, "NodeUnreachable", window.Token);
        Assert.Null(suspicion);
    }

    private static async Task<ClusterEvent?> NextOrNoneAsync(IAsyncStreamReader<ClusterEvent> events, string kind, CancellationToken window)
    {
        try
        {
            while (await events.MoveNext(window))
            {
                if (events.Current.Kind == kind)
                {
                    return events.Current;
                }
            }
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.Cancelled && window.IsCancellationRequested)
        {
        }
        catch (OperationCanceledException) when (window.IsCancellationRequested)
        {
        }

        return null;
    }

    private sealed class ChannelOwner(Grpc.Net.Client.GrpcChannel channel) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            channel.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
