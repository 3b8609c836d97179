using System.Text.RegularExpressions;
using Grpc.Core;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Grpc;
using HaMesh.Testing;
using HaMesh.Testing.Processes;

namespace HaMesh.IntegrationTests;

/// <summary>Prometheus scrapes of the real daemons over real HTTP/1.1 on their metrics ports.</summary>
public sealed partial class MetricsScrapeTests : IAsyncDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-metrics-").FullName;
    private readonly List<IAsyncDisposable> _processes = [];
    private readonly List<IDisposable> _standIns = [];

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

    private DaemonProcess Start(string name, string project, string assembly, IEnumerable<string> args, Dictionary<string, string>? env = null)
    {
        var p = DaemonProcess.Start(name, DaemonProcess.Dll(project, assembly), args, env);
        _processes.Add(p);
        return p;
    }

    private static async Task<Uri> MetricsUrlAsync(DaemonProcess p, CancellationToken ct)
    {
        var line = await p.WaitForLineAsync(" metrics on ", TimeSpan.FromSeconds(60), ct);
        return new Uri(line[(line.IndexOf(" metrics on ", StringComparison.Ordinal) + " metrics on ".Length)..].Trim());
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

    [GeneratedRegex(@"^hamesh_coordinator_report_age_seconds\{node=""a""\} ([0-9.eE+-]+)$", RegexOptions.Multiline)]
    private static partial Regex ReportAgeA();

    [Fact]
    public async Task Scrape_RunningCluster_CoordinatorAndAgentMetricsOverHttp()
    {
        var ct = TestContext.Current.CancellationToken;
        int cport = DaemonProcess.FreePort(), aport = DaemonProcess.FreePort(), bport = DaemonProcess.FreePort();
        var options = TestConfig.TwoNodes(coordinatorAddress: $"http://127.0.0.1:{cport}");
        options.Cluster.Timings.Lease = TimeSpan.FromSeconds(4);
        options.Cluster.Timings.DriftMargin = TimeSpan.FromSeconds(1);
        options.Coordinator.Listen = $"http://127.0.0.1:{cport}";
        options.Coordinator.MetricsListen = "http://127.0.0.1:0";
        options.Coordinator.StorePath = Path.Combine(_dir, "coordinator.db");
        options.Nodes[0].AgentAddress = $"http://127.0.0.1:{aport}";
        options.Nodes[1].AgentAddress = $"http://127.0.0.1:{bport}";
        options.Agent.Node = "";
        options.Agent.DrbdVersion = "drbd84";
        var config = ClusterFiles.Write(_dir, options);

        var coordinator = Start("coordinator", "src/Coordinator", "hamesh-coordinator", ["--config", config]);
        var coordinatorMetrics = await MetricsUrlAsync(coordinator, ct);
        using var channel = GrpcChannels.Create($"http://127.0.0.1:{cport}", options.Cluster.Timings);
        var client = new CoordinatorService.CoordinatorServiceClient(channel);
        var aUp = WaitForEventAsync(client, "NodeReachable", "a", ct);
        var bUp = WaitForEventAsync(client, "NodeReachable", "b", ct);
        var adopted = WaitForEventAsync(client, "Adopted", "a", ct);

        var standInsA = StandIns.Drbd84Node("Primary", "Secondary", aliasPresent: true, "active");
        var standInsB = StandIns.Drbd84Node("Secondary", "Primary", aliasPresent: false, "inactive");
        _standIns.Add(standInsA);
        _standIns.Add(standInsB);
        var envA = StandIns.AgentEnvironment("a", aport, standInsA);
        envA["HaMesh__Agent__MetricsListen"] = "http://127.0.0.1:0";
        var a = Start("agent-a", "src/Agent", "hamesh-agent", ["--config", config], envA);
        Start("agent-b", "src/Agent", "hamesh-agent", ["--config", config], StandIns.AgentEnvironment("b", bport, standInsB));
        var agentMetrics = await MetricsUrlAsync(a, ct);
        try
        {
            await Task.WhenAll(aUp, bUp, adopted).WaitAsync(TimeSpan.FromSeconds(60), ct);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"no NodeReachable a/b or Adopted a within 60 s\n{string.Join("\n", _processes.OfType<DaemonProcess>().Select(p => $"--- {p.Name}:\n{p.Output}"))}");
        }

        using var http = new HttpClient();
        var text = await http.GetStringAsync(coordinatorMetrics, ct);
        Assert.Contains("hamesh_coordinator_node_reachable{node=\"a\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_node_reachable{node=\"b\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_generation{resource=\"db\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_primary{resource=\"db\",node=\"a\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_events_total{kind=\"Adopted\",severity=\"info\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_events_total{kind=\"NodeReachable\",severity=\"info\"} 2\n", text);
        Assert.Contains("# TYPE hamesh_coordinator_lease_renewals_total counter", text);
        Assert.Contains("# TYPE hamesh_coordinator_decision_tick_seconds histogram", text);
        var age = double.Parse(ReportAgeA().Match(text).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(age, 0, options.Cluster.Timings.SilenceThreshold.TotalSeconds);

        var agent = await http.GetStringAsync(agentMetrics, ct);
        Assert.Contains("hamesh_agent_drbd_role{resource=\"db\",role=\"Primary\"} 1\n", agent);
        Assert.Contains("hamesh_agent_drbd_disk_state{resource=\"db\",state=\"UpToDate\"} 1\n", agent);
        Assert.Matches(@"hamesh_agent_drbd_connection_state\{resource=""db"",peer=""[^""]*"",state=""Connected""\} 1\n", agent);
        Assert.Matches(@"hamesh_agent_drbd_out_of_sync_bytes\{resource=""db"",peer=""[^""]*""\} 0\n", agent);
        Assert.Contains("hamesh_agent_drbd_present{resource=\"db\"} 1\n", agent);

        // the metrics port serves /metrics only, and the gRPC port (HTTP/2 only) does not serve it to HTTP/1.1
        using var other = await http.GetAsync(new Uri(coordinatorMetrics, "/grpc.health.v1.Health/Check"), ct);
        Assert.Equal(System.Net.HttpStatusCode.NotFound, other.StatusCode);
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => http.GetStringAsync(new Uri($"http://127.0.0.1:{cport}/metrics"), ct));
    }
}
