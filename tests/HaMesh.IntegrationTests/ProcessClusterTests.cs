using Google.Protobuf;
using Grpc.Core;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;
using HaMesh.Testing;
using HaMesh.Testing.Processes;

namespace HaMesh.IntegrationTests;

/// <summary>
/// The real daemons as real processes on loopback: a coordinator and two agents whose DRBD is read
/// through stand-in executables printing DRBD 8.4 outputs; hameshctl as a process too.
/// </summary>
public sealed class ProcessClusterTests : IAsyncLifetime
{
    private static readonly JsonParser StatusParser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-proc-").FullName;
    private readonly List<IAsyncDisposable> _processes = [];
    private readonly List<IDisposable> _standIns = [];

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        foreach (var p in _processes)
        {
            await p.DisposeAsync();
        }

        foreach (var s in _standIns)
        {
            s.Dispose();
        }

        Directory.Delete(_dir, recursive: true);
    }

    private StandIns Node84(string role, string peerRole, bool aliasPresent, string serviceState)
    {
        var s = StandIns.Drbd84Node(role, peerRole, aliasPresent, serviceState);
        _standIns.Add(s);
        return s;
    }

    private HaMeshOptions Options(int coordinatorPort, int portA, int portB)
    {
        var o = TestConfig.TwoNodes(coordinatorAddress: $"http://127.0.0.1:{coordinatorPort}");
        o.Cluster.Timings.Lease = TimeSpan.FromSeconds(4);       // threshold lease + margin = 5 s: wide enough for a loaded CI machine
        o.Cluster.Timings.DriftMargin = TimeSpan.FromSeconds(1);
        o.Coordinator.Listen = $"http://127.0.0.1:{coordinatorPort}";
        o.Coordinator.StorePath = Path.Combine(_dir, "coordinator.db");
        o.Nodes[0].AgentAddress = $"http://127.0.0.1:{portA}";
        o.Nodes[1].AgentAddress = $"http://127.0.0.1:{portB}";
        o.Agent.Node = "";
        o.Agent.DrbdVersion = "drbd84";
        o.Agent.StateDirectory = _dir;
        return o;
    }

    private DaemonProcess Start(string name, string project, string assembly, IEnumerable<string> args, Dictionary<string, string>? env = null)
    {
        var p = DaemonProcess.Start(name, DaemonProcess.Dll(project, assembly), args, env);
        _processes.Add(p);
        return p;
    }

    private async Task<(int Exit, string Output)> HameshctlAsync(CancellationToken ct, params string[] args)
    {
        await using var cli = DaemonProcess.Start("hameshctl", DaemonProcess.Dll("src/Cli", "hameshctl"), args);
        var exit = await cli.WaitForExitAsync(TimeSpan.FromSeconds(60), ct);
        return (exit, cli.Output);
    }

    private static async Task WaitForEventAsync(CoordinatorService.CoordinatorServiceClient client, string kind, string node, CancellationToken ct)
    {
        using var watch = client.WatchEvents(new WatchEventsRequest(), cancellationToken: ct);
        await foreach (var e in watch.ResponseStream.ReadAllAsync(ct))
        {
            if (e.Kind == kind && e.Node == node)
            {
                return;
            }
        }
    }

    [Fact]
    public async Task Cluster_TwoAgentsReport_StatusJsonShowsRoles_ThenKilledAgentUnreachableAfterLeasePlusMargin()
    {
        var ct = TestContext.Current.CancellationToken;
        int cport = DaemonProcess.FreePort(), aport = DaemonProcess.FreePort(), bport = DaemonProcess.FreePort();
        var options = Options(cport, aport, bport);
        var config = ClusterFiles.Write(_dir, options);
        var coordinator = Start("coordinator", "src/Coordinator", "hamesh-coordinator", ["--config", config]);
        await coordinator.WaitForListeningAsync(ct);
        using var channel = GrpcChannels.Create($"http://127.0.0.1:{cport}", options.Cluster.Timings);
        var client = new CoordinatorService.CoordinatorServiceClient(channel);
        var aUp = WaitForEventAsync(client, "NodeReachable", "a", ct);
        var bUp = WaitForEventAsync(client, "NodeReachable", "b", ct);

        var a = Start("agent-a", "src/Agent", "hamesh-agent", ["--config", config], StandIns.AgentEnvironment("a", aport, Node84("Primary", "Secondary", aliasPresent: true, "active")));
        var b = Start("agent-b", "src/Agent", "hamesh-agent", ["--config", config], StandIns.AgentEnvironment("b", bport, Node84("Secondary", "Primary", aliasPresent: false, "inactive")));
        await Task.WhenAll(a.WaitForListeningAsync(ct), b.WaitForListeningAsync(ct));
        await Task.WhenAll(aUp, bUp).WaitAsync(TimeSpan.FromSeconds(30), ct);

        var (exit, output) = await HameshctlAsync(ct, "status", "--json", "--coordinator", $"http://127.0.0.1:{cport}");
        Assert.True(exit == 0, output);
        var status = StatusParser.Parse<ClusterStatus>(output);
        Assert.All(status.Nodes, n => Assert.Equal(Reachability.Reachable, n.Reachability));
        var nodeA = status.Nodes.Single(n => n.Node == "a").LastReport.Resources.Single();
        var nodeB = status.Nodes.Single(n => n.Node == "b").LastReport.Resources.Single();
        Assert.Equal(DrbdRole.Primary, nodeA.Drbd.Role);
        Assert.Equal(DrbdRole.Secondary, nodeB.Drbd.Role);
        Assert.Equal(DiskState.UpToDate, nodeB.Drbd.DiskState);
        Assert.True(nodeA.IpAliases.Single().Present);
        Assert.False(nodeB.IpAliases.Single().Present);
        Assert.Equal(ServiceState.Active, nodeA.Services.Single().State);
        Assert.Equal("a", status.Resources.Single().PrimaryNode);

        // SIGKILL agent b: still shown reachable right after (threshold 5 s), unreachable once the threshold passed.
        var bDown = WaitForEventAsync(client, "NodeUnreachable", "b", ct);
        b.Kill();
        var justAfter = await client.GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: ct);
        Assert.Equal(Reachability.Reachable, justAfter.Nodes.Single(n => n.Node == "b").Reachability);

        await bDown.WaitAsync(TimeSpan.FromSeconds(30), ct);
        var after = await client.GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: ct);
        var bAfter = after.Nodes.Single(n => n.Node == "b");
        Assert.Equal(Reachability.Unreachable, bAfter.Reachability);
        Assert.True(bAfter.LastReportAge.ToTimeSpan() >= options.Cluster.Timings.SilenceThreshold);
        Assert.Equal(Reachability.Reachable, after.Nodes.Single(n => n.Node == "a").Reachability);

        var (tableExit, table) = await HameshctlAsync(ct, "status", "--coordinator", $"http://127.0.0.1:{cport}");
        Assert.Equal(0, tableExit);
        Assert.Contains("UNREACHABLE", table);
    }

    [Fact]
    public async Task Hameshctl_CoordinatorDown_OneLineErrorExit1()
    {
        var ct = TestContext.Current.CancellationToken;
        var (exit, output) = await HameshctlAsync(ct, "status", "--coordinator", $"http://127.0.0.1:{DaemonProcess.FreePort()}", "--timeout", "3");
        Assert.Equal(1, exit);
        var line = Assert.Single(output.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("hameshctl: cannot reach http://127.0.0.1:", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Daemons_InvalidConfig_Exit2NamingKeysAndNothingListens()
    {
        var ct = TestContext.Current.CancellationToken;
        var port = DaemonProcess.FreePort();
        var options = Options(port, DaemonProcess.FreePort(), DaemonProcess.FreePort());
        options.Nodes[1].Name = "a";
        options.Cluster.Timings.Heartbeat = TimeSpan.FromSeconds(2);
        var config = ClusterFiles.Write(_dir, options, "bad.json");

        await using var coordinator = DaemonProcess.Start("coordinator", DaemonProcess.Dll("src/Coordinator", "hamesh-coordinator"), ["--config", config]);
        Assert.Equal(2, await coordinator.WaitForExitAsync(TimeSpan.FromSeconds(60), ct));
        Assert.Contains("HaMesh:Nodes:1:Name: duplicate node name 'a'", coordinator.Output);
        Assert.Contains("HaMesh:Cluster:Timings:Heartbeat: rule heartbeat < lease/4 violated", coordinator.Output);
        Assert.DoesNotContain("listening on", coordinator.Output);

        await using var agent = DaemonProcess.Start("agent", DaemonProcess.Dll("src/Agent", "hamesh-agent"), ["--config", config], new Dictionary<string, string> { ["HaMesh__Agent__Node"] = "zz" });
        Assert.Equal(2, await agent.WaitForExitAsync(TimeSpan.FromSeconds(60), ct));
        Assert.Contains("HaMesh:Agent:Node: 'zz' is not one of the configured nodes", agent.Output);
    }
}
