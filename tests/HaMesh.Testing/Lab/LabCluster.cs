using System.Globalization;
using System.Text;
using Grpc.Net.Client;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;
using HaMesh.Testing.Processes;

namespace HaMesh.Testing.Lab;

/// <summary>
/// A whole HaMesh cluster as real processes in the network-namespace lab: the fake OVH API and the
/// coordinator in W, agents in A and B (DRBD, mount and systemctl through the stateful stand-ins; the
/// failover IP alias added for real with /usr/sbin/ip in the node's namespace), the failover IP
/// routed in W and C to A at start and re-routed by the fake OVH's move-complete hook. An
/// <see cref="EventRecorder"/> follows the coordinator's event stream (across coordinator restarts)
/// and an <see cref="InvariantMonitor"/> samples the cluster status. Dispose removes everything.
/// </summary>
public sealed class LabCluster : IAsyncDisposable
{
    public const string FailoverIp = "203.0.113.10/32";
    public const int AgentPort = 7700;
    public const int CoordinatorPort = 7800;
    public const int OvhPort = 7900;
    public static readonly string[] Nodes = ["a", "b"];

    private readonly List<DaemonProcess> _processes = [];
    private readonly List<DaemonProcess> _coordinators = [];
    private readonly Dictionary<string, DaemonProcess> _agents = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DrbdStandIns> _drbd = new(StringComparer.Ordinal);
    private readonly Dictionary<string, GrpcChannel> _agentChannels = new(StringComparer.Ordinal);
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(10) };
    private GrpcChannel? _channel;
    private IReadOnlyDictionary<string, string> _agentEnvironment = new Dictionary<string, string>();
    private string _agentExecutable = "";

    private LabCluster(NetnsLab lab, string dir, HaMeshOptions options, string config)
    {
        Lab = lab;
        Directory = dir;
        Options = options;
        ConfigPath = config;
    }

    public NetnsLab Lab { get; }

    public string Directory { get; }

    public HaMeshOptions Options { get; }

    public string ConfigPath { get; }

    public EventRecorder Events { get; private set; } = null!;

    public InvariantMonitor Invariants { get; private set; } = null!;

    public CoordinatorService.CoordinatorServiceClient Coordinator { get; private set; } = null!;

    public TimingOptions Timings => Options.Cluster.Timings;

    public static string ServiceName(string node) => node == "a" ? "ns1.ip-1-2-3.eu" : "ns2.ip-1-2-3.eu";

    /// <summary>
    /// Builds the namespaces and starts OVH, coordinator and both agents; returns once both nodes reported and the IP was verified on a.
    /// The agent is the built hamesh-agent.dll, or <paramref name="agentExecutable"/> (a native executable: the Native AOT publish).
    /// </summary>
    public static async Task<LabCluster> StartAsync(double ovhTaskSeconds, CancellationToken ct, Action<HaMeshOptions>? configure = null, IReadOnlyDictionary<string, string>? agentEnvironment = null, string? agentExecutable = null)
    {
        var lab = await NetnsLab.CreateAsync(ct);
        var dir = System.IO.Directory.CreateTempSubdirectory("hamesh-lab-").FullName;
        var options = TestConfig.TwoNodes(coordinatorAddress: $"http://{NetnsLab.Address("w")}:{CoordinatorPort}");
        options.Cluster.Name = "lab";
        options.Cluster.Timings.OvhPollInterval = TimeSpan.FromMilliseconds(250);
        options.Coordinator.Listen = $"http://0.0.0.0:{CoordinatorPort}";
        options.Coordinator.StorePath = Path.Combine(dir, "coordinator.db");
        options.Coordinator.Ovh.Endpoint = $"http://127.0.0.1:{OvhPort}/1.0";
        options.Coordinator.Ovh.CredentialsFile = Path.Combine(dir, "ovh-credentials.json");
        foreach (var (n, i) in Nodes.Select((n, i) => (n, i)))
        {
            options.Nodes[i].AgentAddress = $"http://{NetnsLab.Address(n)}:{AgentPort}";
            options.Nodes[i].ServiceName = ServiceName(n);
        }

        options.Resources[0].FailoverIps = [FailoverIp];
        options.Resources[0].Interface = "eth0";
        options.Agent.Node = "";
        options.Agent.DrbdVersion = "drbd84";
        configure?.Invoke(options);
        var config = ClusterFiles.Write(dir, options);
        var cluster = new LabCluster(lab, dir, options, config) { _agentEnvironment = agentEnvironment ?? new Dictionary<string, string>(), _agentExecutable = agentExecutable ?? DaemonProcess.Dll("src/Agent", "hamesh-agent") };
        try
        {
            await cluster.StartAllAsync(ovhTaskSeconds, ct);
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    private async Task StartAllAsync(double ovhTaskSeconds, CancellationToken ct)
    {
        await File.WriteAllTextAsync(Options.Coordinator.Ovh.CredentialsFile, """{"ApplicationKey":"fake-app-key","ApplicationSecret":"fake-app-secret","ConsumerKey":"fake-consumer-key"}""", ct);
        File.SetUnixFileMode(Options.Coordinator.Ovh.CredentialsFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var seed = Path.Combine(Directory, "ovh-state.json");
        await File.WriteAllTextAsync(seed, $$"""{"ips":{"{{FailoverIp}}":"{{ServiceName("a")}}"},"servers":["{{ServiceName("a")}}","{{ServiceName("b")}}"]}""", ct);
        var hook = WriteMoveHook();

        // The failover IP: alias on a, routed to a from W (coordinator's end-to-end check) and C (the client).
        await NetnsLab.RunAsync(ct, "ip", "-n", Lab.Ns("a"), "addr", "add", FailoverIp, "dev", "eth0");
        foreach (var h in new[] { "w", "c" })
        {
            await NetnsLab.RunAsync(ct, "ip", "-n", Lab.Ns(h), "route", "add", FailoverIp, "via", NetnsLab.Address("a"));
        }

        var ovh = Track(DaemonProcess.StartIn(Lab.Ns("w"), "fake-ovh", DaemonProcess.Dll("src/Tools/FakeOvh", "hamesh-fake-ovh"),
            ["--urls", $"http://0.0.0.0:{OvhPort}", "--task-seconds", ovhTaskSeconds.ToString(CultureInfo.InvariantCulture), "--rate-limit", "100000", "--state", seed, "--on-move-complete", hook]));
        foreach (var n in Nodes)
        {
            var s = new DrbdStandIns(n, n == "a" ? "b" : "a", Directory, primary: n == "a");
            _drbd[n] = s;
        }

        foreach (var s in _drbd.Values)
        {
            s.Refresh();
        }

        await ovh.WaitForListeningAsync(ct);
        await StartCoordinatorAsync(ct);
        _channel = GrpcChannels.Create($"http://{NetnsLab.Address("w")}:{CoordinatorPort}", Timings);
        Coordinator = new CoordinatorService.CoordinatorServiceClient(_channel);
        Events = new EventRecorder(Coordinator);
        foreach (var n in Nodes)
        {
            StartAgent(n);
        }

        await Task.WhenAll(_agents.Values.Select(a => a.WaitForListeningAsync(ct)));
        await WithinAsync(Events.WaitForAllAsync("NodeReachable", Nodes, 0, ct), "NodeReachable from a and b", ct);
        await WithinAsync(Events.WaitForAsync(e => e.Kind == "IpVerified" && e.Node == "a", 0, ct), "IpVerified on a (the cluster adopted a)", ct);
        Invariants = new InvariantMonitor(Coordinator, TimeSpan.FromMilliseconds(500));
    }

    private string WriteMoveHook()
    {
        // Runs in W (the fake OVH's namespace): re-route the failover IP in W and in the client namespace C.
        var path = Path.Combine(Directory, "on-move-complete");
        File.WriteAllText(path, $"""
            #!/bin/sh
            case "$2" in
              {ServiceName("a")}) via={NetnsLab.Address("a")};;
              {ServiceName("b")}) via={NetnsLab.Address("b")};;
              *) echo "unknown service $2" >&2; exit 1;;
            esac
            /usr/sbin/ip route replace "$1" via "$via"
            /usr/sbin/ip -n {Lab.Ns("c")} route replace "$1" via "$via"
            echo "$(date +%s.%N) $1 $2" >> {Path.Combine(Directory, "moves.log")}

            """);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    /// <summary>Per-request ASP.NET Core logs would drown the HaMesh lines in failure reports.</summary>
    private static Dictionary<string, string> Quiet(Dictionary<string, string>? env = null)
    {
        env ??= [];
        env["Logging__LogLevel__Microsoft.AspNetCore"] = "Warning";
        return env;
    }

    private DaemonProcess Track(DaemonProcess p)
    {
        _processes.Add(p);
        return p;
    }

    /// <summary>Starts (or restarts) the coordinator in W on the same store.</summary>
    public async Task StartCoordinatorAsync(CancellationToken ct)
    {
        var c = Track(DaemonProcess.StartIn(Lab.Ns("w"), "coordinator#" + (_coordinators.Count + 1).ToString(CultureInfo.InvariantCulture),
            DaemonProcess.Dll("src/Coordinator", "hamesh-coordinator"), ["--config", ConfigPath], Quiet()));
        _coordinators.Add(c);
        await c.WaitForListeningAsync(ct);
    }

    public DaemonProcess CurrentCoordinator => _coordinators[^1];

    public DaemonProcess Agent(string node) => _agents[node];

    public DrbdStandIns Drbd(string node) => _drbd[node];

    public DaemonProcess StartAgent(string node)
    {
        var env = _drbd[node].AgentEnvironment(node, AgentPort);
        env["HaMesh__Agent__Listen"] = $"http://0.0.0.0:{AgentPort}";
        env["HaMesh__Agent__Commands__Ip"] = "/usr/sbin/ip";
        foreach (var (k, v) in _agentEnvironment)
        {
            env[k] = v;
        }

        var agent = Track(DaemonProcess.StartIn(Lab.Ns(node), "agent-" + node, _agentExecutable, ["--config", ConfigPath], Quiet(env)));
        _agents[node] = agent;
        return agent;
    }

    /// <summary>The primary's host dies: SIGKILL of its agent, and its DRBD stops answering the peer.</summary>
    public void CrashNode(string node)
    {
        _agents[node].Kill();
        _drbd[node].HostDown();
        foreach (var (n, s) in _drbd)
        {
            if (n != node)
            {
                s.Refresh(); // the survivor's DRBD notices the lost peer (its /proc/drbd shows WFConnection)
            }
        }
    }

    /// <summary>
    /// The host stays up but loses every link (eth0 down): its agent keeps running and must self-fence;
    /// its DRBD no longer reaches the peer (the stand-ins model the replication link by the host's up file).
    /// </summary>
    public async Task HostLinksDownAsync(string node, CancellationToken ct)
    {
        await Lab.LinkDownAsync(node, ct);
        _drbd[node].HostDown();
        foreach (var (n, s) in _drbd)
        {
            if (n != node)
            {
                s.Refresh();
            }
        }
    }

    public async Task HostLinksUpAsync(string node, CancellationToken ct)
    {
        _drbd[node].HostUp();
        await Lab.LinkUpAsync(node, ct);
        foreach (var s in _drbd.Values)
        {
            s.Refresh();
        }
    }

    /// <summary>
    /// The crashed host boots again: DRBD comes up Secondary with nothing mounted and no service
    /// running (as after a reboot), its peer sees it again, and its agent starts.
    /// </summary>
    public DaemonProcess RebootNode(string node)
    {
        var s = _drbd[node];
        File.WriteAllText(Path.Combine(s.State, "role"), "Secondary\n");
        File.WriteAllText(Path.Combine(s.State, "mountinfo"), "");
        File.WriteAllText(Path.Combine(s.State, "services"), "");
        s.HostUp();
        foreach (var d in _drbd.Values)
        {
            d.Refresh();
        }

        return StartAgent(node);
    }

    /// <summary>
    /// The client in namespace C (hamesh-lab probe): pings through the failover IP every 20 ms and prints
    /// "ok NODE UNIXMS" / "fail UNIXMS REASON" whenever the answer changes.
    /// </summary>
    public DaemonProcess StartClientProbe() =>
        Track(DaemonProcess.StartIn(Lab.Ns("c"), "client-probe", DaemonProcess.Dll("src/Tools/Lab", "hamesh-lab"),
            ["probe", "--target", $"{FailoverIp.Split('/')[0]}:{AgentPort}"]));

    /// <summary>The time stamp of a probe line ("ok b 1764620000123").</summary>
    public static DateTimeOffset ProbeTime(string line) =>
        DateTimeOffset.FromUnixTimeMilliseconds(long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[line.StartsWith("ok", StringComparison.Ordinal) ? 2 : 1], CultureInfo.InvariantCulture));

    /// <summary>An AgentService client from the test process (through the host port on the bridge).</summary>
    public AgentService.AgentServiceClient AgentClient(string node)
    {
        if (!_agentChannels.TryGetValue(node, out var ch))
        {
            ch = GrpcChannels.Create($"http://{NetnsLab.Address(node)}:{AgentPort}", Timings);
            _agentChannels[node] = ch;
        }

        return new AgentService.AgentServiceClient(ch);
    }

    public async Task<ClusterResource> ResourceAsync(CancellationToken ct) =>
        (await Coordinator.GetClusterStatusAsync(new GetClusterStatusRequest(), deadline: Deadline(), cancellationToken: ct)).Resources.Single();

    /// <summary>Replaces the fake OVH API's faults (POST /admin/faults), e.g. {"http500AfterPost":1}.</summary>
    public async Task SetOvhFaultsAsync(string json, CancellationToken ct)
    {
        using var content = new StringContent(json, Encoding.UTF8, "application/json");
        using var response = await _http.PostAsync(new Uri($"http://{NetnsLab.Address("w")}:{OvhPort}/admin/faults"), content, ct);
        response.EnsureSuccessStatusCode();
    }

    /// <summary>Every request the fake OVH API received, "METHOD /1.0/..." one per element.</summary>
    public async Task<IReadOnlyList<string>> OvhRequestsAsync(CancellationToken ct) =>
        (await _http.GetStringAsync(new Uri($"http://{NetnsLab.Address("w")}:{OvhPort}/admin/requests"), ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries);

    public Task<string> OvhStateAsync(CancellationToken ct) =>
        _http.GetStringAsync(new Uri($"http://{NetnsLab.Address("w")}:{OvhPort}/admin/state"), ct);

    /// <summary>The next hop of the failover IP in namespace <paramref name="host"/> (ip route get), e.g. 10.77.0.2.</summary>
    public async Task<string> RouteViaAsync(string host, CancellationToken ct)
    {
        var line = await NetnsLab.RunAsync(ct, "ip", "-n", Lab.Ns(host), "route", "show", FailoverIp.Split('/')[0]);
        var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var i = Array.IndexOf(parts, "via");
        return i >= 0 && i + 1 < parts.Length ? parts[i + 1] : "";
    }

    public async Task<bool> HasAliasAsync(string node, CancellationToken ct) =>
        (await NetnsLab.RunAsync(ct, "ip", "-n", Lab.Ns(node), "-o", "addr", "show", "dev", "eth0")).Contains(" " + FailoverIp + " ", StringComparison.Ordinal);

    /// <summary>How many times the coordinators logged "decided Failover" (the audit line behind every FailoverStarted event).</summary>
    public int DecidedFailovers => _coordinators.Sum(c => c.Output.Split('\n').Count(l => l.Contains(": decided Failover:", StringComparison.Ordinal)));

    /// <summary>Waits for <paramref name="step"/>; on timeout fails with what every daemon printed, so a CI failure explains itself.</summary>
    public async Task<T> WithinAsync<T>(Task<T> step, string what, CancellationToken ct, TimeSpan? timeout = null)
    {
        var limit = timeout ?? TimeSpan.FromSeconds(60);
        try
        {
            return await step.WaitAsync(limit, ct);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"{what}: not within {limit.TotalSeconds:0} s.\n{Report()}");
        }
    }

    /// <summary>The tail of every daemon's output and the events seen, for failure messages.</summary>
    public string Report()
    {
        var sb = new StringBuilder();
        foreach (var d in _processes)
        {
            sb.Append(CultureInfo.InvariantCulture, $"----- {d.Name} (exited: {d.HasExited}) -----\n{Tail(d.Output, 60)}\n");
        }

        if (Events is not null)
        {
            sb.Append("----- events -----\n");
            foreach (var e in Events.All.TakeLast(60))
            {
                sb.Append(CultureInfo.InvariantCulture, $"#{e.Sequence} {e.Kind} {e.Node} g{e.Generation} {e.Message}\n");
            }
        }

        return sb.ToString();
    }

    private static string Tail(string text, int lines) => string.Join('\n', text.Split('\n').TakeLast(lines));

    private static DateTime Deadline() =>
#pragma warning disable RS0030 // gRPC deadlines are evaluated on the library's wall clock (style R15)
        DateTime.UtcNow.AddSeconds(10);
#pragma warning restore RS0030

    public async ValueTask DisposeAsync()
    {
        if (Invariants is not null)
        {
            await Invariants.DisposeAsync();
        }

        if (Events is not null)
        {
            await Events.DisposeAsync();
        }

        foreach (var p in _processes.AsEnumerable().Reverse())
        {
            await p.DisposeAsync();
        }

        foreach (var ch in _agentChannels.Values)
        {
            ch.Dispose();
        }

        _channel?.Dispose();
        _http.Dispose();
        await Lab.DisposeAsync();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // a daemon still writing; the temp folder is cleaned by the OS
        }
    }
}
