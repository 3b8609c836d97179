using System.Net.Sockets;
using Grpc.Core;
using HaMesh.Protocol.V1;
using HaMesh.Testing;
using HaMesh.Testing.Lab;
using HaMesh.Testing.Processes;

namespace HaMesh.Lab.Tests;

/// <summary>
/// Failover scenarios with every daemon a real process in its namespace: the fake OVH API and the
/// coordinator in W, agents in A and B each with its DRBD simulator daemon (replication link A↔B over
/// the lab's links, the real fence-peer handler; the failover IP alias added for real), nftables chaos
/// between hosts, a test service writing through the primary's simulated device. Each scenario asserts its outcome
/// and the invariants it can observe (<see cref="InvariantMonitor"/>). Skips with the reason when not root.
/// </summary>
[Collection("netns")]
public sealed class FailoverScenarioTests : IAsyncLifetime
{
    /// <summary>Fake OVH move task duration in these scenarios.</summary>
    private const double OvhTaskSeconds = 1;

    private LabCluster? _cluster;
    private NetnsLab? _bareLab;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }

        if (_bareLab is not null)
        {
            await _bareLab.DisposeAsync();
        }
    }

    private async Task<LabCluster> StartAsync()
    {
        Assert.SkipWhen(NetnsLab.WhyNot() is not null, NetnsLab.WhyNot() ?? "");
        _cluster = await LabCluster.StartAsync(OvhTaskSeconds, Ct);
        return _cluster;
    }

    /// <summary>Ten lease periods: the "nothing must happen" window of the no-failover scenarios.</summary>
    private static TimeSpan TenLeases(LabCluster c) => c.Timings.Lease * 10;

    private static bool IsFailoverOutcome(ClusterEvent e) => e.Kind is "FailoverCompleted" or "PromoteFailed" or "OvhMoveFailed" or "OperationFailed";

    private static void AssertInvariants(LabCluster c)
    {
        var sampled = c.Invariants.Violations;
        Assert.True(c.Invariants.Samples > 0, "the invariant monitor never sampled the cluster status");
        Assert.True(sampled.Count == 0, "invariants violated:\n" + string.Join('\n', sampled) + "\n" + c.Report());
        var events = InvariantMonitor.EventViolations(c.Events.All, c.DecidedFailovers);
        Assert.True(events.Count == 0, "event invariants violated:\n" + string.Join('\n', events) + "\n" + c.Report());
    }

    /// <summary>Invariant I3: once the writer writes to <paramref name="node"/> again, every write DRBD acknowledged before is on <paramref name="node"/>'s disk.</summary>
    private static async Task AssertNoLostWritesAsync(LabCluster c, TestService writer, string node)
    {
        await c.WithinAsync(writer.WaitForNodeAsync(node, Ct), $"the test service writes through {node}", Ct);
        var (acknowledged, missing) = await c.LostWritesAsync(writer, node, Ct);
        TestContext.Current.TestOutputHelper?.WriteLine($"test service: {acknowledged} acknowledged writes, {missing} missing on {node}, longest gap {writer.LongestGap.TotalMilliseconds:0} ms");
        Assert.True(missing == 0, $"{missing} of {acknowledged} acknowledged writes are not on {node}\n{c.Report()}");
    }

    /// <summary>Starts the test service writing through a's DRBD and waits for its first acknowledged writes.</summary>
    private static async Task<TestService> StartWriterAsync(LabCluster c)
    {
        var writer = c.StartWriter();
        await c.WithinAsync(writer.WaitForAcknowledgedAsync(10, Ct), "the test service's first writes through a", Ct);
        return writer;
    }

    private static async Task AssertPrimaryWithLeaseAsync(LabCluster c, string node, string because)
    {
        var status = await c.AgentClient(node).GetStatusAsync(new GetStatusRequest(), cancellationToken: Ct);
        var r = status.Resources.Single();
        Assert.True(r.Drbd.Role == DrbdRole.Primary && r.Lease.State == LeaseState.Held,
            $"{because}: {node} is {r.Drbd.Role} with lease {r.Lease.State} (grantor '{r.Lease.LastGrantor}')\n{c.Report()}");
    }

    private static async Task AssertNoFailoverAsync(LabCluster c, ulong generation, string window)
    {
        var failover = await c.Events.NoneWithinAsync(e => e.Kind == "FailoverStarted", TenLeases(c), Ct);
        Assert.True(failover is null, $"{window}: unexpected {failover?.Kind} #{failover?.Sequence}: {failover?.Message}\n{c.Report()}");
        var resource = await c.ResourceAsync(Ct);
        Assert.Equal("a", resource.PrimaryNode);
        Assert.Equal(generation, resource.Generation);
    }

    [Fact]
    public async Task KillPrimary_FailsOverToB_AtNextGeneration_IpRoutedToB()
    {
        var c = await StartAsync();
        var g = (await c.ResourceAsync(Ct)).Generation;
        var probe = c.StartClientProbe();
        await c.WithinAsync(probe.WaitForLineAsync("ok a ", TimeSpan.FromSeconds(60), Ct), "the client in C answered by a through the failover IP", Ct);
        var writer = await StartWriterAsync(c);
        var from = c.Events.Count;

        var killedAt = TimeProvider.System.GetUtcNow();
        c.CrashNode("a");
        var outcome = await c.WithinAsync(c.Events.WaitForAsync(IsFailoverOutcome, from, Ct), "failover outcome after killing a", Ct);
        var lost = LabCluster.ProbeTime(await c.WithinAsync(probe.WaitForLineAsync("fail ", TimeSpan.FromSeconds(60), Ct), "the client lost a", Ct));
        var restored = LabCluster.ProbeTime(await c.WithinAsync(probe.WaitForLineAsync("ok b ", TimeSpan.FromSeconds(60), Ct), "the client in C answered by b through the failover IP", Ct));
        TestContext.Current.TestOutputHelper?.WriteLine($"client in C: lost a {(lost - killedAt).TotalMilliseconds:0} ms after the kill, answered by b {(restored - killedAt).TotalMilliseconds:0} ms after the kill");
        Assert.True(restored > lost, "the client was answered by b before it lost a");

        Assert.True(outcome.Kind == "FailoverCompleted", $"{outcome.Kind}: {outcome.Message}\n{c.Report()}");
        Assert.Equal(("b", g + 1), (outcome.Node, outcome.Generation));
        Assert.Contains(c.Events.Since(from, _ => true), e => e.Kind == "IpVerified" && e.Node == "b" && e.Generation == g + 1);
        var resource = await c.ResourceAsync(Ct);
        Assert.Equal(("b", g + 1), (resource.PrimaryNode, resource.Generation));
        Assert.Contains($"\"{LabCluster.FailoverIp}\":\"{LabCluster.ServiceName("b")}\"", await c.OvhStateAsync(Ct), StringComparison.Ordinal);
        Assert.Equal(NetnsLab.Address("b"), await c.RouteViaAsync("c", Ct));
        Assert.Equal(NetnsLab.Address("b"), await c.RouteViaAsync("w", Ct));
        Assert.True(await c.HasAliasAsync("b", Ct), "b has no failover IP alias");
        await AssertPrimaryWithLeaseAsync(c, "b", "after the failover");
        await AssertNoLostWritesAsync(c, writer, "b");
        AssertInvariants(c);
    }

    [Fact]
    public async Task PrimaryHostAllLinksDown_SelfFences_FailsOverToB_ComesBackNotPrimary()
    {
        var c = await StartAsync();
        var g = (await c.ResourceAsync(Ct)).Generation;
        var writer = await StartWriterAsync(c);
        var from = c.Events.Count;

        await c.HostLinksDownAsync("a", Ct);
        var outcome = await c.WithinAsync(c.Events.WaitForAsync(IsFailoverOutcome, from, Ct), "failover outcome after a lost all links", Ct);
        Assert.True(outcome.Kind == "FailoverCompleted", $"{outcome.Kind}: {outcome.Message}\n{c.Report()}");
        Assert.Equal(("b", g + 1), (outcome.Node, outcome.Generation));
        Assert.Equal(NetnsLab.Address("b"), await c.RouteViaAsync("c", Ct));
        // a, cut off from both grantors, lets its lease run out and fences itself (services, mount, DRBD, IP alias)
        await c.WithinAsync(c.Agent("a").WaitForLineAsync("Self-fenced db", TimeSpan.FromSeconds(60), Ct), "a self-fences", Ct);

        from = c.Events.Count;
        await c.HostLinksUpAsync("a", Ct);
        await c.WithinAsync(c.Events.WaitForAsync(e => e.Kind == "NodeReachable" && e.Node == "a", from, Ct), "NodeReachable a after its links came back", Ct);
        var a = (await c.AgentClient("a").GetStatusAsync(new GetStatusRequest(), cancellationToken: Ct)).Resources.Single();
        Assert.True(a.Drbd.Role != DrbdRole.Primary, $"a is still {a.Drbd.Role} (lease {a.Lease.State}) after losing its lease\n{c.Report()}");
        Assert.False(await c.HasAliasAsync("a", Ct), "a kept the failover IP alias after self-fencing");
        await AssertPrimaryWithLeaseAsync(c, "b", "after a came back");
        await AssertNoLostWritesAsync(c, writer, "b");
        AssertInvariants(c);
    }

    [Fact]
    public async Task WitnessPrimaryCut_NoFailoverForTenLeasePeriods_ThenReachableAgain()
    {
        var c = await StartAsync();
        var g = (await c.ResourceAsync(Ct)).Generation;
        var from = c.Events.Count;

        await c.Lab.PartitionAsync("w", "a", Ct);
        await c.WithinAsync(c.Events.WaitForAsync(e => e.Kind == "NodeUnreachable" && e.Node == "a", from, Ct), "NodeUnreachable a", Ct);
        var status = await c.Coordinator.GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: Ct);
        Assert.Equal(Reachability.Unreachable, status.Nodes.Single(n => n.Node == "a").Reachability);
        Assert.Equal(Reachability.Reachable, status.Nodes.Single(n => n.Node == "b").Reachability);
        await AssertNoFailoverAsync(c, g, "witness↔primary cut (b still sees a)");
        await AssertPrimaryWithLeaseAsync(c, "a", "the peer grants the lease while the witness is cut off");

        from = c.Events.Count;
        await c.Lab.HealAllAsync(Ct);
        await c.WithinAsync(c.Events.WaitForAsync(e => e.Kind == "NodeReachable" && e.Node == "a", from, Ct), "NodeReachable a after heal", Ct);
        AssertInvariants(c);
    }

    [Fact]
    public async Task PrimaryPeerCut_NoFailover_PrimaryKeepsCoordinatorLease()
    {
        var c = await StartAsync();
        var g = (await c.ResourceAsync(Ct)).Generation;

        await c.Lab.PartitionAsync("a", "b", Ct);
        await AssertNoFailoverAsync(c, g, "primary↔peer cut (the witness still sees a)");
        await AssertPrimaryWithLeaseAsync(c, "a", "the coordinator grants the lease while the peer is cut off");
        var status = await c.Coordinator.GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: Ct);
        Assert.All(status.Nodes, n => Assert.Equal(Reachability.Reachable, n.Reachability));
        AssertInvariants(c);
    }

    [Fact]
    public async Task WitnessDown_ServiceContinuesOnPeerLease_NoFailover_ThenWitnessBack()
    {
        var c = await StartAsync();
        var g = (await c.ResourceAsync(Ct)).Generation;

        c.CurrentCoordinator.Kill();
        // The service must go on without the witness: sample a's lease every lease period for ten of them.
        using var timer = new PeriodicTimer(c.Timings.Lease, TimeProvider.System);
        for (var i = 0; i < 10; i++)
        {
            await timer.WaitForNextTickAsync(Ct);
            await AssertPrimaryWithLeaseAsync(c, "a", $"witness down, lease period {i + 1}");
        }

        var from = c.Events.Count;
        await c.StartCoordinatorAsync(Ct);
        await c.WithinAsync(c.Events.WaitForAllAsync("NodeReachable", LabCluster.Nodes, from, Ct), "NodeReachable a and b after the witness restart", Ct);
        await AssertNoFailoverAsync(c, g, "after the witness came back");
        AssertInvariants(c);
    }

    [Fact]
    public async Task PeerIsolated_NoFailover_PrimaryKeepsServing()
    {
        var c = await StartAsync();
        var g = (await c.ResourceAsync(Ct)).Generation;
        var from = c.Events.Count;

        await c.Lab.IsolateAsync("b", Ct);
        await c.WithinAsync(c.Events.WaitForAsync(e => e.Kind == "NodeUnreachable" && e.Node == "b", from, Ct), "NodeUnreachable b", Ct);
        await AssertNoFailoverAsync(c, g, "peer isolated");
        await AssertPrimaryWithLeaseAsync(c, "a", "the coordinator grants the lease while the peer is isolated");

        from = c.Events.Count;
        await c.Lab.HealAllAsync(Ct);
        await c.WithinAsync(c.Events.WaitForAsync(e => e.Kind == "NodeReachable" && e.Node == "b", from, Ct), "NodeReachable b after heal", Ct);
        AssertInvariants(c);
    }

    [Fact]
    public async Task LossTenPercentOnAllLinksForAMinute_NoSuspicionNoFailover()
    {
        var c = await StartAsync();
        var g = (await c.ResourceAsync(Ct)).Generation;
        foreach (var h in new[] { "a", "b", "w", "c" })
        {
            await c.Lab.LossAsync(h, 10, Ct);
        }

        var bad = await c.Events.NoneWithinAsync(e => e.Kind is "FailoverStarted" or "NodeUnreachable" or "Halted" or "SplitBrain", TimeSpan.FromSeconds(60), Ct);
        Assert.True(bad is null, $"under 10 % loss: {bad?.Kind} {bad?.Node} #{bad?.Sequence}: {bad?.Message}\n{c.Report()}");
        await c.Lab.HealAllAsync(Ct);
        var resource = await c.ResourceAsync(Ct);
        Assert.Equal(("a", g), (resource.PrimaryNode, resource.Generation));
        AssertInvariants(c);
    }

    [Fact]
    public async Task Ovh500AfterTheMoveWasAccepted_ExactlyOnePost_FailoverCompletes()
    {
        var c = await StartAsync();
        var g = (await c.ResourceAsync(Ct)).Generation;
        await c.SetOvhFaultsAsync("""{"http500AfterPost":1}""", Ct);
        var from = c.Events.Count;

        c.CrashNode("a");
        var outcome = await c.WithinAsync(c.Events.WaitForAsync(IsFailoverOutcome, from, Ct), "failover outcome with OVH answering 500 to the move", Ct);

        var posts = (await c.OvhRequestsAsync(Ct)).Where(r => r.StartsWith("POST ", StringComparison.Ordinal)).ToList();
        Assert.True(posts.Count == 1, $"{posts.Count} POSTs reached OVH: {string.Join("; ", posts)}\n{c.Report()}");
        Assert.Contains(c.Events.Since(from, _ => true), e => e.Kind == "OvhMoveUncertain");
        Assert.True(outcome.Kind == "FailoverCompleted", $"{outcome.Kind}: {outcome.Message}\n{c.Report()}");
        Assert.Equal(("b", g + 1), (outcome.Node, outcome.Generation));
        Assert.Equal(NetnsLab.Address("b"), await c.RouteViaAsync("c", Ct));
        AssertInvariants(c);
    }

    [Fact]
    public async Task StaleGenerationReplay_NewPrimaryRefusesWithFailedPrecondition_AndStaysPrimary()
    {
        var c = await StartAsync();
        var g = (await c.ResourceAsync(Ct)).Generation;
        var from = c.Events.Count;
        c.CrashNode("a");
        var outcome = await c.WithinAsync(c.Events.WaitForAsync(IsFailoverOutcome, from, Ct), "failover before the replay", Ct);
        Assert.True(outcome.Kind == "FailoverCompleted", $"{outcome.Kind}: {outcome.Message}\n{c.Report()}");

        // A command from the coordinator's decision at generation g arrives late at the new primary
        // (with the coordinator's certificate: anyone else is refused before the generation is looked at).
        var agent = c.AgentClient("b", "coordinator");
        var demote = await Assert.ThrowsAsync<RpcException>(async () =>
            await agent.DemoteAsync(new DemoteRequest { Resource = "db", Generation = g, Reason = "replayed", Reconnect = true }, cancellationToken: Ct));
        Assert.Equal(StatusCode.FailedPrecondition, demote.StatusCode);
        Assert.Contains($"stale generation {g} < {g + 1}", demote.Status.Detail, StringComparison.Ordinal);
        var promote = await Assert.ThrowsAsync<RpcException>(async () =>
            await agent.PromoteAsync(new PromoteRequest { Resource = "db", Generation = g, Reason = "replayed" }, cancellationToken: Ct));
        Assert.Equal(StatusCode.FailedPrecondition, promote.StatusCode);

        await AssertPrimaryWithLeaseAsync(c, "b", "after the refused replay");
        Assert.True(await c.HasAliasAsync("b", Ct), "the replayed demote removed b's failover IP alias");
        AssertInvariants(c);
    }

    public static TheoryData<string, string, string> BadConfigs => new()
    {
        { "coordinator", "heartbeat", "Timings:Heartbeat" },
        { "agent", "heartbeat", "Timings:Heartbeat" },
        { "coordinator", "json", "is not valid JSON" },
    };

    [Theory]
    [MemberData(nameof(BadConfigs))]
    public async Task BadConfigFile_ExitsWithCode2_NamesTheProblem_NothingListening(string daemon, string fault, string expected)
    {
        Assert.SkipWhen(NetnsLab.WhyNot() is not null, NetnsLab.WhyNot() ?? "");
        _bareLab = await NetnsLab.CreateAsync(Ct);
        var dir = Directory.CreateTempSubdirectory("hamesh-lab-badconfig-").FullName;
        try
        {
            var options = TestConfig.TwoNodes(coordinatorAddress: $"http://{NetnsLab.Address("w")}:{LabCluster.CoordinatorPort}");
            options.Coordinator.Listen = $"http://0.0.0.0:{LabCluster.CoordinatorPort}";
            options.Coordinator.StorePath = Path.Combine(dir, "coordinator.db");
            options.Agent.Listen = $"http://0.0.0.0:{LabCluster.AgentPort}";
            options.Agent.StateDirectory = Path.Combine(dir, "agent");
            options.Cluster.Timings.Heartbeat = TimeSpan.FromSeconds(1); // lease 2 s: breaks heartbeat < lease/4
            var config = ClusterFiles.Write(dir, options);
            if (fault == "json")
            {
                await File.WriteAllTextAsync(config, """{ "HaMesh": { "Cluster": { "Name": "lab", } """, Ct);
            }

            var (ns, dll, port) = daemon == "coordinator"
                ? (_bareLab.Ns("w"), DaemonProcess.Dll("src/Coordinator", "hamesh-coordinator"), LabCluster.CoordinatorPort)
                : (_bareLab.Ns("a"), DaemonProcess.Dll("src/Agent", "hamesh-agent"), LabCluster.AgentPort);
            var host = daemon == "coordinator" ? "w" : "a";
            await using var process = DaemonProcess.StartIn(ns, daemon, dll, ["--config", config], new Dictionary<string, string> { ["HaMesh__Agent__Node"] = "a" });
            var exit = await process.WaitForExitAsync(TimeSpan.FromSeconds(60), Ct);

            Assert.True(exit == 2, $"exit {exit}:\n{process.Output}");
            Assert.Contains(expected, process.Output, StringComparison.Ordinal);
            Assert.Contains("nothing was started", process.Output, StringComparison.Ordinal);
            Assert.DoesNotContain(" listening on ", process.Output, StringComparison.Ordinal);
            using var probe = new TcpClient();
            var refused = await Assert.ThrowsAsync<SocketException>(async () => await probe.ConnectAsync(NetnsLab.Address(host), port, Ct));
            Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
