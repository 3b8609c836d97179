using Grpc.Core;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;
using HaMesh.Testing;
using HaMesh.Testing.Processes;

namespace HaMesh.IntegrationTests;

/// <summary>
/// The real agents against the DRBD simulator, everything a real process on loopback: two
/// <c>hamesh-drbdsim</c> daemons replicating over a real TCP link (through a proxy the test can cut),
/// their stand-ins, the real <c>hamesh-fence-peer</c> handler, the agents and, where the scenario
/// needs it, the coordinator. Nothing here knows it is not talking to DRBD 9.
/// </summary>
public sealed class AgentOnSimulatorTests : IAsyncLifetime
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-agentsim-").FullName;
    private readonly List<IAsyncDisposable> _owned = [];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        foreach (var o in _owned.AsEnumerable().Reverse())
        {
            await o.DisposeAsync();
        }

        Directory.Delete(_dir, recursive: true);
    }

    private sealed record Cluster(
        HaMeshOptions Options, string ConfigPath, LinkProxy Link, SimHost SimA, SimHost SimB,
        DaemonProcess AgentA, DaemonProcess AgentB, DaemonProcess? Coordinator,
        AgentService.AgentServiceClient A, AgentService.AgentServiceClient B);

    private async Task<Cluster> StartAsync(bool withCoordinator)
    {
        int agentA = DaemonProcess.FreePort(), agentB = DaemonProcess.FreePort(), drbdA = DaemonProcess.FreePort(), drbdB = DaemonProcess.FreePort(), coordinatorPort = DaemonProcess.FreePort();
        var link = new LinkProxy(drbdB);    // a dials b (names sort), through the proxy
        _owned.Add(link);
        var simA = await SimHost.StartAsync(new SimHostOptions { Node = "a", Peer = "b", Root = _dir, ListenPort = drbdA, PeerPort = link.Port, FencePeerAgent = $"http://127.0.0.1:{agentA}" }, Ct);
        _owned.Add(simA);
        var simB = await SimHost.StartAsync(new SimHostOptions { Node = "b", Peer = "a", Root = _dir, ListenPort = drbdB, PeerPort = drbdA, FencePeerAgent = $"http://127.0.0.1:{agentB}" }, Ct);
        _owned.Add(simB);
        await SimHost.InitialSyncAsync(simA, simB, Ct);

        var options = TestConfig.TwoNodes(coordinatorAddress: $"http://127.0.0.1:{coordinatorPort}");
        // Wide enough for a loaded 2-core CI machine running several of these clusters at once: an old primary
        // has drift margin + self-fence deadline (5 s) after its lease to step down before its peer's promotion
        // gives up waiting for it.
        options.Cluster.Timings.Lease = TimeSpan.FromSeconds(6);
        options.Cluster.Timings.DriftMargin = TimeSpan.FromSeconds(1);
        options.Cluster.Timings.SelfFenceDeadline = TimeSpan.FromSeconds(4);
        options.Coordinator.Listen = $"http://127.0.0.1:{coordinatorPort}";
        options.Coordinator.StorePath = Path.Combine(_dir, "coordinator.db");
        options.Nodes[0].AgentAddress = $"http://127.0.0.1:{agentA}";
        options.Nodes[1].AgentAddress = $"http://127.0.0.1:{agentB}";
        options.Resources[0].DrbdResource = SimHost.Resource;
        options.Agent.Node = "";
        var config = ClusterFiles.Write(_dir, options);

        DaemonProcess? coordinator = null;
        if (withCoordinator)
        {
            coordinator = Own(DaemonProcess.Start("coordinator", DaemonProcess.Dll("src/Coordinator", "hamesh-coordinator"), ["--config", config]));
            await coordinator.WaitForListeningAsync(Ct);
        }

        var a = Own(DaemonProcess.Start("agent-a", DaemonProcess.Dll("src/Agent", "hamesh-agent"), ["--config", config], simA.AgentEnvironment(options.Nodes[0].AgentAddress)));
        var b = Own(DaemonProcess.Start("agent-b", DaemonProcess.Dll("src/Agent", "hamesh-agent"), ["--config", config], simB.AgentEnvironment(options.Nodes[1].AgentAddress)));
        await Task.WhenAll(a.WaitForListeningAsync(Ct), b.WaitForListeningAsync(Ct));
        return new Cluster(options, config, link, simA, simB, a, b, coordinator, AgentClient(options.Nodes[0].AgentAddress, options), AgentClient(options.Nodes[1].AgentAddress, options));
    }

    private T Own<T>(T owned)
        where T : IAsyncDisposable
    {
        _owned.Add(owned);
        return owned;
    }

    private AgentService.AgentServiceClient AgentClient(string address, HaMeshOptions options)
    {
        var channel = GrpcChannels.Create(address, options.Cluster.Timings);
        _owned.Add(new Disposer(channel.Dispose));
        return new AgentService.AgentServiceClient(channel);
    }

    /// <summary>What both agents decided (their own log lines, not the framework's), for a failure message that says why.</summary>
    private static string Decisions(Cluster c) =>
        string.Join(" | ", new[] { c.AgentA, c.AgentB }.SelectMany(d => d.Output.Split('\n')
            .Where(l => l.Contains(": HaMesh.", StringComparison.Ordinal) && !l.Contains("CoordinatorLink", StringComparison.Ordinal))
            .TakeLast(8).Select(l => d.Name + " " + l.Trim())));

    private static PromoteRequest Promote(ulong generation) => new() { Resource = "db", Generation = generation, Reason = "test", OperationId = "op-" + generation };

    [Fact]
    public async Task Promote_DrivesSimulatorToPrimaryMountedServiceAndIp_AndStatusShowsIt()
    {
        var c = await StartAsync(withCoordinator: false);

        var result = await c.A.PromoteAsync(Promote(1), cancellationToken: Ct);

        Assert.True(result.Success, result.ToString());
        Assert.Equal(["drbd-primary", "mount", "service:postgresql.service", "ip-alias:203.0.113.10/32"], result.Steps.Select(s => s.Step));
        await c.SimB.WaitAsync(Wait, Ct, "peer-role=Primary");
        Assert.Equal(["postgresql.service"], c.SimA.ActiveServices());
        Assert.Equal(["203.0.113.10/32"], c.SimA.IpAliases());
        var status = (await c.A.GetStatusAsync(new GetStatusRequest(), cancellationToken: Ct)).Resources.Single();
        Assert.Equal(DrbdRole.Primary, status.Drbd.Role);
        Assert.Equal(DiskState.UpToDate, status.Drbd.DiskState);
        var peer = status.Drbd.Peers.Single();
        Assert.Equal(ConnectionState.Connected, peer.ConnectionState);
        Assert.Equal(DrbdRole.Secondary, peer.PeerRole);
        Assert.Equal(DiskState.UpToDate, peer.PeerDiskState);
        Assert.True(status.Mounted);
        Assert.Equal(1UL, status.Generation);

        // a write through the primary is acknowledged only once the peer has it (protocol C)
        Assert.Equal(0, (await c.SimA.WriteAsync("k1", "v1", Ct)).ExitCode);
        Assert.Equal("v1", (await c.SimB.ReadAsync("k1", Ct)).Stdout.Trim());
    }

    [Fact]
    public async Task Promote_OnPeerWhilePrimaryElsewhere_NobodyGrants_NothingTouched_RefusedWithTheReason()
    {
        var c = await StartAsync(withCoordinator: false);
        Assert.True((await c.A.PromoteAsync(Promote(1), cancellationToken: Ct)).Success);
        // a's agent goes away (DRBD on a stays Primary) and there is no coordinator: nobody can grant b a lease. b waits
        // out the promise of its last grant to a, asks for a lease, and gives up without touching DRBD.
        await c.AgentA.DisposeAsync();

        var result = await c.B.PromoteAsync(Promote(2), cancellationToken: Ct);

        Assert.False(result.Success);
        Assert.Contains("no lease granted", result.Message, StringComparison.Ordinal);
        Assert.Empty(result.Steps);
        Assert.Empty(c.SimB.ActiveServices());
        Assert.Empty(c.SimB.IpAliases());
        Assert.Equal("Secondary", (await c.SimB.RunAsync(Ct, "drbdadm", "role", SimHost.Resource)).Stdout.Split('/')[0].Trim());
        Assert.StartsWith("Primary", (await c.SimA.RunAsync(Ct, "drbdadm", "role", SimHost.Resource)).Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Promote_WithALease_DrbdRefuses_NamesStepExitAndStderr_NothingElseRun()
    {
        var c = await StartAsync(withCoordinator: false);
        // b's disk is Outdated (cut off, then outdated by hand): a, a Secondary, grants b's lease, and DRBD itself refuses.
        await c.SimB.RunAsync(Ct, "drbdadm", "disconnect", SimHost.Resource);
        await c.SimB.RunAsync(Ct, "drbdadm", "outdate", SimHost.Resource);

        var result = await c.B.PromoteAsync(Promote(1), cancellationToken: Ct);

        Assert.False(result.Success);
        var failed = result.Steps.Single(s => s.Outcome == StepOutcome.Failed);
        Assert.Equal("drbd-primary", failed.Step);
        Assert.NotEqual(0, failed.ExitCode);
        Assert.Contains("primary", failed.Command, StringComparison.Ordinal);
        Assert.Contains("UpToDate", failed.Stderr, StringComparison.Ordinal);
        Assert.Contains("drbd-primary", result.Message, StringComparison.Ordinal);
        Assert.Empty(c.SimB.ActiveServices());
        Assert.Empty(c.SimB.IpAliases());
        Assert.Equal("Secondary", (await c.SimB.RunAsync(Ct, "drbdadm", "role", SimHost.Resource)).Stdout.Split('/')[0].Trim());
    }

    [Fact]
    public async Task Promote_OnPeerWhilePrimaryRenewsWithIt_PeerStopsGranting_OldPrimarySelfFences_ThenPeerPromotes()
    {
        var c = await StartAsync(withCoordinator: false);
        Assert.True((await c.A.PromoteAsync(Promote(1), cancellationToken: Ct)).Success);
        // a renews with b every heartbeat from its start; once b has answered one, b's promise runs (the agents may
        // have just started: without this b could take the Promote before any grant, and DRBD would refuse it).
        await c.AgentB.WaitForLineAsync("AgentService/RenewLease - 200", Wait, Ct);

        // b granted a's lease: it holds the Promote until lease + drift margin after its last grant and grants
        // no more meanwhile, so a (no coordinator) loses its lease and self-fences before b touches DRBD.
        var result = await c.B.PromoteAsync(Promote(2), cancellationToken: Ct);

        Assert.True(result.Success, $"{result.Message} | {Decisions(c)}");
        Assert.Empty(c.SimA.ActiveServices());
        Assert.StartsWith("Secondary", (await c.SimA.RunAsync(Ct, "drbdadm", "role", SimHost.Resource)).Stdout, StringComparison.Ordinal);
        Assert.Equal(["postgresql.service"], c.SimB.ActiveServices());
        var a = (await c.A.GetStatusAsync(new GetStatusRequest(), cancellationToken: Ct)).Resources.Single();
        Assert.Equal("self-fenced after lease expiry", a.LastError);
        Assert.NotEqual(LeaseState.Held, a.Lease.State);
    }

    [Fact]
    public async Task Demote_StaleGeneration_FailedPreconditionNamesBoth_PrimaryUntouched_ThenCurrentDemoteWorks()
    {
        var c = await StartAsync(withCoordinator: false);
        Assert.True((await c.A.PromoteAsync(Promote(5), cancellationToken: Ct)).Success);

        var stale = await Assert.ThrowsAsync<RpcException>(() => c.A.DemoteAsync(new DemoteRequest { Resource = "db", Generation = 4, Reason = "replayed" }, cancellationToken: Ct).ResponseAsync);

        Assert.Equal(StatusCode.FailedPrecondition, stale.StatusCode);
        Assert.Contains("4", stale.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("5", stale.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(["postgresql.service"], c.SimA.ActiveServices());
        Assert.StartsWith("Primary", (await c.SimA.RunAsync(Ct, "drbdadm", "role", SimHost.Resource)).Stdout, StringComparison.Ordinal);

        // the agent's highest generation survives a restart of the agent process (persisted before acting)
        await c.AgentA.DisposeAsync();
        var again = Own(DaemonProcess.Start("agent-a2", DaemonProcess.Dll("src/Agent", "hamesh-agent"), ["--config", c.ConfigPath], c.SimA.AgentEnvironment(c.Options.Nodes[0].AgentAddress)));
        await again.WaitForListeningAsync(Ct);
        var staleAfterRestart = await Assert.ThrowsAsync<RpcException>(() => c.A.PromoteAsync(Promote(3), cancellationToken: Ct).ResponseAsync);
        Assert.Equal(StatusCode.FailedPrecondition, staleAfterRestart.StatusCode);

        var demoted = await c.A.DemoteAsync(new DemoteRequest { Resource = "db", Generation = 5, Reason = "planned" }, cancellationToken: Ct);
        Assert.True(demoted.Success, demoted.ToString());
        Assert.Equal(["ip-alias:203.0.113.10/32-stop", "service:postgresql.service-stop", "umount", "drbd-secondary"], demoted.Steps.Select(s => s.Step).Take(4));
        Assert.Empty(c.SimA.ActiveServices());
        await c.SimB.WaitAsync(Wait, Ct, "peer-role=Secondary");
    }

    [Fact]
    public async Task FencePeer_LinkCutWhilePrimary_IoFrozen_HandlerAsksCoordinator_PeerRecordedOutdated_IoResumes()
    {
        var c = await StartAsync(withCoordinator: true);
        var coordinator = new CoordinatorService.CoordinatorServiceClient(GrpcChannels.Create(c.Options.Coordinator.Address, c.Options.Cluster.Timings));
        Assert.True((await c.A.PromoteAsync(Promote(1), cancellationToken: Ct)).Success);
        // The coordinator (new store) adopts a one above the generation a reports, and tells a with an idempotent Promote.
        await c.AgentA.WaitForLineAsync("Promote db at generation 2: success=True", Wait, Ct);
        Assert.Equal(0, (await c.SimA.WriteAsync("before", "1", Ct)).ExitCode);
        var handlerRan = c.SimA.Daemon.WaitForLineAsync("fence-peer handler exit code", Wait, Ct);

        c.Link.Cut();

        Assert.EndsWith("exit code 4", (await handlerRan).Trim(), StringComparison.Ordinal);
        await c.SimA.WaitAsync(Wait, Ct, "peer-disk=Outdated", "suspended=no");
        Assert.Equal(0, (await c.SimA.WriteAsync("after", "2", Ct)).ExitCode);   // I/O resumed
        var events = await coordinator.ListEventsAsync(new ListEventsRequest { Resource = "db" }, cancellationToken: Ct);
        var outdated = Assert.Single(events.Events, e => e.Kind == "PeerOutdated");
        Assert.Equal("b", outdated.Node);
        Assert.Equal(2UL, outdated.Generation);
    }

    [Fact]
    public async Task FencePeer_CoordinatorDown_PeerAgentOutdatesItself_IoResumes()
    {
        var c = await StartAsync(withCoordinator: false);
        Assert.True((await c.A.PromoteAsync(Promote(1), cancellationToken: Ct)).Success);
        var handlerRan = c.SimA.Daemon.WaitForLineAsync("fence-peer handler exit code", Wait, Ct);

        c.Link.Cut();

        Assert.EndsWith("exit code 4", (await handlerRan).Trim(), StringComparison.Ordinal);
        await c.SimB.WaitAsync(Wait, Ct, "disk=Outdated");
        await c.SimA.WaitAsync(Wait, Ct, "peer-disk=Outdated", "suspended=no");
        Assert.Equal(0, (await c.SimA.WriteAsync("after", "2", Ct)).ExitCode);
    }

    [Fact]
    public async Task FencePeer_CoordinatorAndPeerAgentDown_HandlerFails_IoStaysFrozen()
    {
        var c = await StartAsync(withCoordinator: false);
        Assert.True((await c.A.PromoteAsync(Promote(1), cancellationToken: Ct)).Success);
        await c.AgentB.DisposeAsync();
        var handlerRan = c.SimA.Daemon.WaitForLineAsync("fence-peer handler exit code", Wait, Ct);

        c.Link.Cut();

        Assert.EndsWith("exit code 1", (await handlerRan).Trim(), StringComparison.Ordinal);
        await c.SimA.WaitAsync(Wait, Ct, "suspended=fencing");
        Assert.NotEqual("Outdated", (await c.SimB.RunAsync(Ct, "drbdadm", "dstate", SimHost.Resource)).Stdout.Split('/')[0].Trim());
    }

    private sealed class Disposer(Action dispose) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            dispose();
            return ValueTask.CompletedTask;
        }
    }
}
