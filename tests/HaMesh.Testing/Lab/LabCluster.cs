using System.Globalization;
using System.Text;
using Grpc.Net.Client;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;
using HaMesh.Shared.Security;
using HaMesh.Testing.Processes;

namespace HaMesh.Testing.Lab;

/// <summary>
/// A whole HaMesh cluster as real processes in the network-namespace lab: the fake OVH API and the
/// coordinator in W; in A and B an agent and a DRBD simulator daemon (<see cref="SimHost"/>: drbdadm,
/// drbdsetup, mount and umount stand-ins talking to it, the real fence-peer handler wired) whose
/// replication link runs between the namespaces over the lab's links, so nftables cuts and link-downs
/// disconnect DRBD for real; the failover IP alias added for real with /usr/sbin/ip in the node's
/// namespace. The failover IP
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

    /// <summary>The DRBD simulator's replication port on each node's namespace address.</summary>
    public const int DrbdPort = 7789;
    public static readonly string[] Nodes = ["a", "b"];

    private readonly List<DaemonProcess> _processes = [];
    private readonly List<DaemonProcess> _coordinators = [];
    private readonly Dictionary<string, DaemonProcess> _agents = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SimHost> _drbd = new(StringComparer.Ordinal);
    private readonly List<TestService> _writers = [];
    private readonly Dictionary<string, GrpcChannel> _agentChannels = new(StringComparer.Ordinal);
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(10) };
    private readonly List<IDisposable> _disposables = [];
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

    /// <summary>Every gRPC link in the lab runs mutual TLS: https:// everywhere.</summary>
    private const string Scheme = "https";

    /// <summary>The cluster CA and certificates (<see cref="LabCertificates"/>): ca, coordinator, agent-a, agent-b, operator, viewer.</summary>
    public string Certificates { get; private init; } = "";

    /// <summary>DRBD's fence-peer handler reaches its agent with the agent's own certificate (as in deploy/).</summary>
    private string[] FencePeerTlsArgs(string node) =>
        ["--cacert", LabCertificates.Certificate(Certificates, "ca"), "--cert", LabCertificates.Certificate(Certificates, "agent-" + node), "--key", LabCertificates.Key(Certificates, "agent-" + node)];

    /// <summary>The TLS material of one identity (ca, coordinator, agent-a, agent-b, operator, viewer).</summary>
    public ClusterTls Identity(string name)
    {
        var tls = ClusterTls.Load(LabCertificates.Certificate(Certificates, "ca"), LabCertificates.Certificate(Certificates, name), LabCertificates.Key(Certificates, name));
        _disposables.Add(tls);
        return tls;
    }

    /// <summary>A gRPC channel from the test process presenting <paramref name="identity"/>'s certificate (disposed with the cluster).</summary>
    public GrpcChannel Channel(string address, string identity, bool sendLimit = true)
    {
        GrpcChannel channel;
        if (sendLimit)
        {
            channel = GrpcChannels.Create(address, Timings, Identity(identity));
        }
        else
        {
            // what a hostile client does: no client-side cap on what it sends (the daemon's limit must hold)
            var handler = new SocketsHttpHandler { ConnectTimeout = Timings.Lease, SslOptions = Identity(identity).ClientOptions() };
            channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions { HttpHandler = handler, MaxSendMessageSize = null, DisposeHttpClient = true });
        }

        _disposables.Add(channel);
        return channel;
    }

    /// <summary>A TLS channel that checks the server against the cluster CA but presents no client certificate.</summary>
    public GrpcChannel ChannelWithoutCertificate(string address)
    {
        var ca = ClusterTls.LoadCertificate(LabCertificates.Certificate(Certificates, "ca"));
        _disposables.Add(ca);
        var handler = new SocketsHttpHandler { ConnectTimeout = Timings.Lease };
        handler.SslOptions.RemoteCertificateValidationCallback = (_, cert, _, _) => ClusterTls.IsTrusted(cert as System.Security.Cryptography.X509Certificates.X509Certificate2, ca);
        var channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
        _disposables.Add(channel);
        return channel;
    }

    public static string CoordinatorAddress => $"{Scheme}://{NetnsLab.Address("w")}:{CoordinatorPort}";

    public static string AgentAddress(string node) => $"{Scheme}://{NetnsLab.Address(node)}:{AgentPort}";

    /// <summary>A CoordinatorService client with <paramref name="identity"/>'s certificate.</summary>
    public CoordinatorService.CoordinatorServiceClient CoordinatorAs(string identity) => new(Channel(CoordinatorAddress, identity));

    public static string ServiceName(string node) => node == "a" ? "ns1.ip-1-2-3.eu" : "ns2.ip-1-2-3.eu";

    /// <summary>
    /// Builds the namespaces and starts OVH, coordinator and both agents; returns once both nodes reported and the IP was verified on a.
    /// The agent is the built hamesh-agent.dll, or <paramref name="agentExecutable"/> (a native executable: the Native AOT publish).
    /// </summary>
    public static async Task<LabCluster> StartAsync(double ovhTaskSeconds, CancellationToken ct, Action<HaMeshOptions>? configure = null, IReadOnlyDictionary<string, string>? agentEnvironment = null, string? agentExecutable = null)
    {
        var certificates = await LabCertificates.EnsureAsync(ct);
        var lab = await NetnsLab.CreateAsync(ct);
        var dir = System.IO.Directory.CreateTempSubdirectory("hamesh-lab-").FullName;
        var options = TestConfig.TwoNodes(coordinatorAddress: CoordinatorAddress);
        options.Tls = new TlsOptions
        {
            Insecure = false,
            CaFile = LabCertificates.Certificate(certificates, "ca"),
            CertificateFile = LabCertificates.Certificate(certificates, "coordinator"),
            KeyFile = LabCertificates.Key(certificates, "coordinator"),
        };
        options.Cluster.Name = "lab";
        options.Cluster.Timings.OvhPollInterval = TimeSpan.FromMilliseconds(250);
        options.Coordinator.Listen = $"{Scheme}://0.0.0.0:{CoordinatorPort}";
        options.Coordinator.StorePath = Path.Combine(dir, "coordinator.db");
        options.Coordinator.Ovh.Endpoint = $"http://127.0.0.1:{OvhPort}/1.0";
        options.Coordinator.Ovh.CredentialsFile = Path.Combine(dir, "ovh-credentials.json");
        foreach (var (n, i) in Nodes.Select((n, i) => (n, i)))
        {
            options.Nodes[i].AgentAddress = AgentAddress(n);
            options.Nodes[i].ServiceName = ServiceName(n);
        }

        options.Resources[0].FailoverIps = [FailoverIp];
        options.Resources[0].Interface = "eth0";
        options.Agent.Node = "";
        options.Agent.DrbdVersion = "drbd84";
        options.Resources[0].DrbdResource = SimHost.Resource;
        configure?.Invoke(options);
        var config = ClusterFiles.Write(dir, options);
        var cluster = new LabCluster(lab, dir, options, config) { _agentEnvironment = agentEnvironment ?? new Dictionary<string, string>(), _agentExecutable = agentExecutable ?? DaemonProcess.Dll("src/Agent", "hamesh-agent"), Certificates = certificates };
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
        // DRBD: one simulator daemon per node namespace, replicating between 10.77.0.1 and 10.77.0.2,
        // brought UpToDate/UpToDate, then a activated by hand (Primary, mounted, service running) as an
        // operator would have before HaMesh ran.
        var sims = Nodes.Select(n => SimHost.StartAsync(new SimHostOptions
        {
            Node = n,
            Peer = Peer(n),
            Root = Directory,
            DrbdVersion = 84,
            ListenAddress = NetnsLab.Address(n),
            ListenPort = DrbdPort,
            PeerAddress = NetnsLab.Address(Peer(n)),
            PeerPort = DrbdPort,
            FencePeerAgent = $"{Scheme}://127.0.0.1:{AgentPort}",
            FencePeerArgs = FencePeerTlsArgs(n),
            Netns = Lab.Ns(n),
        }, ct)).ToList();
        try
        {
            await Task.WhenAll(sims);
        }
        finally
        {
            foreach (var sim in sims.Where(t => t.IsCompletedSuccessfully))
            {
                _drbd[sim.Result.Node] = sim.Result;   // disposed with the cluster even when the other failed
            }
        }

        await SimHost.InitialSyncAsync(_drbd["a"], _drbd["b"], ct);
        var resource = Options.Resources[0];
        await _drbd["a"].ActivateByHandAsync(resource.Device, resource.MountPoint, resource.FsType, resource.Services, [], ct);

        await ovh.WaitForListeningAsync(ct);
        await StartCoordinatorAsync(ct);
        Coordinator = CoordinatorAs("operator");
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

    /// <summary>The node's DRBD simulator (its daemon, stand-ins, data).</summary>
    public SimHost Drbd(string node) => _drbd[node];

    public static string Peer(string node) => node == "a" ? "b" : "a";

    public DaemonProcess StartAgent(string node)
    {
        var env = _drbd[node].AgentEnvironment($"{Scheme}://0.0.0.0:{AgentPort}");
        env["HaMesh__Agent__Commands__Ip"] = "/usr/sbin/ip";   // the failover IP alias for real, in the node's namespace
        env["HaMesh__Tls__CertificateFile"] = LabCertificates.Certificate(Certificates, "agent-" + node);
        env["HaMesh__Tls__KeyFile"] = LabCertificates.Key(Certificates, "agent-" + node);
        foreach (var (k, v) in _agentEnvironment)
        {
            env[k] = v;
        }

        var agent = Track(DaemonProcess.StartIn(Lab.Ns(node), "agent-" + node, _agentExecutable, ["--config", ConfigPath], Quiet(env)));
        _agents[node] = agent;
        return agent;
    }

    /// <summary>The primary's host dies: SIGKILL of its agent and of its DRBD simulator (the peer's DRBD sees the link drop).</summary>
    public void CrashNode(string node)
    {
        _agents[node].Kill();
        _drbd[node].Crash();
    }

    /// <summary>
    /// The host stays up but loses every link (eth0 down): its agent keeps running and must self-fence;
    /// its DRBD loses the replication link to the peer for real.
    /// </summary>
    public Task HostLinksDownAsync(string node, CancellationToken ct) => Lab.LinkDownAsync(node, ct);

    public Task HostLinksUpAsync(string node, CancellationToken ct) => Lab.LinkUpAsync(node, ct);

    /// <summary>
    /// The crashed host boots again: its DRBD simulator restarts Secondary from its on-disk state (nothing
    /// mounted, no service running, as after a reboot) and reconnects to the peer; its agent starts.
    /// </summary>
    public async Task<DaemonProcess> RebootNodeAsync(string node, CancellationToken ct)
    {
        await _drbd[node].RebootAsync(ct);
        return StartAgent(node);
    }

    /// <summary>The test service: writes through whichever node's DRBD is Primary every 20 ms and remembers what DRBD acknowledged.</summary>
    public TestService StartWriter()
    {
        var writer = new TestService(_drbd["a"], _drbd["b"], TimeProvider.System);
        _writers.Add(writer);
        writer.Start();
        return writer;
    }

    /// <summary>Invariant I3: stops the writer and returns how many of its acknowledged writes <paramref name="node"/>'s DRBD does not hold.</summary>
    public async Task<(int Acknowledged, int Missing, string Detail)> LostWritesAsync(TestService writer, string node, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(writer);
        await writer.StopAsync();
        var missing = await writer.MissingWritesOnAsync(_drbd[node], ct);
        var detail = string.Join(", ", missing.Take(20).Select(m => string.Create(CultureInfo.InvariantCulture, $"#{m.Seq} acknowledged by {m.AcknowledgedBy}")));
        return (writer.Acknowledged.Count, missing.Count, detail);
    }

    /// <summary>
    /// The client in namespace C (hamesh-lab probe): pings through the failover IP every 20 ms and prints
    /// "ok NODE UNIXMS" / "fail UNIXMS REASON" whenever the answer changes.
    /// </summary>
    public DaemonProcess StartClientProbe() =>
        Track(DaemonProcess.StartIn(Lab.Ns("c"), "client-probe", DaemonProcess.Dll("src/Tools/Lab", "hamesh-lab"), ProbeArguments()));

    /// <summary>hamesh-lab's arguments for the client probe through the failover IP.</summary>
    public IReadOnlyList<string> ProbeArguments() =>
    [
        "probe", "--target", $"{FailoverIp.Split('/')[0]}:{AgentPort}",
        "--cacert", LabCertificates.Certificate(Certificates, "ca"), "--cert", LabCertificates.Certificate(Certificates, "viewer"), "--key", LabCertificates.Key(Certificates, "viewer"),
    ];

    /// <summary>The time stamp of a probe line ("ok b 1764620000123").</summary>
    public static DateTimeOffset ProbeTime(string line) =>
        DateTimeOffset.FromUnixTimeMilliseconds(long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[line.StartsWith("ok", StringComparison.Ordinal) ? 2 : 1], CultureInfo.InvariantCulture));

    /// <summary>An AgentService client from the test process (through the host port on the bridge) with <paramref name="identity"/>'s certificate.</summary>
    public AgentService.AgentServiceClient AgentClient(string node, string identity = "operator")
    {
        var key = node + "/" + identity;
        if (!_agentChannels.TryGetValue(key, out var ch))
        {
            ch = Channel(AgentAddress(node), identity);
            _agentChannels[key] = ch;
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

    public async Task WithinAsync(Task step, string what, CancellationToken ct, TimeSpan? timeout = null)
    {
        var limit = timeout ?? TimeSpan.FromSeconds(60);
        try
        {
            await step.WaitAsync(limit, ct);
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
        foreach (var d in _processes.Concat(_drbd.Values.Select(s => s.Daemon)))
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

        foreach (var w in _writers)
        {
            await w.DisposeAsync();
        }

        foreach (var p in _processes.AsEnumerable().Reverse())
        {
            await p.DisposeAsync();
        }

        foreach (var d in _drbd.Values)
        {
            await d.DisposeAsync();
        }

        foreach (var d in _disposables)
        {
            d.Dispose();
        }
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
