using HaMesh.Testing.Processes;

namespace HaMesh.DrbdSim.Tests;

/// <summary>Two simulated nodes a and b (in-process daemons) joined by a real TCP link through a <see cref="LinkProxy"/>.</summary>
internal sealed class SimPair : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private readonly string _root;
    private readonly Action<ResourceConfig>? _tweak;

    public SimDaemon? A { get; private set; }
    public SimDaemon? B { get; private set; }
    public LinkProxy Proxy { get; }
    public int Version { get; }
    private readonly StringWriter _log = new();

    /// <summary>Both daemons log here from their own threads: a synchronized writer (it locks on itself).</summary>
    public TextWriter Log { get; }

    /// <summary>What both daemons logged so far (read under the writer's lock).</summary>
    public string LogText
    {
        get
        {
            lock (Log)
            {
                return _log.ToString();
            }
        }
    }

    private SimPair(int version, Action<ResourceConfig>? tweak)
    {
        Version = version;
        _tweak = tweak;
        Log = TextWriter.Synchronized(_log);
        _root = Path.Combine(Path.GetTempPath(), "drbdsim-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_root);
        Proxy = new LinkProxy(0);
    }

    public string Root => _root;

    public static async Task<SimPair> StartAsync(int version = 9, Action<ResourceConfig>? tweak = null, bool synced = true)
    {
        var p = new SimPair(version, tweak);
        p.A = p.CreateNode("a");
        p.B = p.CreateNode("b");
        p.B.Start();
        p.Proxy.Target = p.B.Resource("r0").ListenPort;
        p.A.Start();
        var ct = TestContext.Current.CancellationToken;
        await p.WaitAAsync(s => s.Connected, ct);
        await p.WaitBAsync(s => s.Connected, ct);
        if (synced)
        {
            Assert.Equal(0, (await p.A.ExecuteAsync(["drbdadm", "primary", "--force", "r0"], ct)).ExitCode);
            await p.WaitBAsync(s => s.Disk == "UpToDate" && s.Replication == "Established", ct);
            await p.WaitAAsync(s => s.PeerDisk == "UpToDate" && s.Replication == "Established", ct);
            Assert.Equal(0, (await p.A.ExecuteAsync(["drbdadm", "secondary", "r0"], ct)).ExitCode);
            await p.WaitBAsync(s => s.PeerRole == "Secondary", ct);
        }

        return p;
    }

    public SimDaemon CreateNode(string node)
    {
        var rc = new ResourceConfig
        {
            Name = "r0",
            Minor = 0,
            NodeId = node == "a" ? 0 : 1,
            PeerNodeId = node == "a" ? 1 : 0,
            PeerName = node == "a" ? "b" : "a",
            ListenAddress = "127.0.0.1",
            ListenPort = 0,
            PeerAddress = "127.0.0.1",
            PeerPort = node == "a" ? Proxy.Port : 1,
            SizeKiB = 4096,
            ResyncRateKiB = 20480,
            PingIntervalMs = 200,
            PingTimeoutMs = 1000,
            ConnectRetryMs = 100,
        };
        _tweak?.Invoke(rc);
        var cfg = new SimConfig
        {
            Node = node,
            DrbdVersion = Version,
            ProcDrbdPath = Path.Combine(_root, node + ".proc-drbd"),
            Resources = [rc],
        };
        return new SimDaemon(cfg, Path.Combine(_root, node), TimeProvider.System, Log);
    }

    /// <summary>Simulates a crash of node a (sockets closed by the "kernel"), then optionally restarts it from its state dir.</summary>
    public async Task KillAAsync()
    {
        await A!.DisposeAsync();
    }

    public async Task KillBAsync()
    {
        await B!.DisposeAsync();
    }

    public void RestartA()
    {
        A = CreateNode("a");
        A.Start();
    }

    public void RestartB()
    {
        B = CreateNode("b");
        B.Start();
        Proxy.Target = B.Resource("r0").ListenPort;
    }

    public Task<ResourceSnapshot> WaitAAsync(Func<ResourceSnapshot, bool> p, CancellationToken ct) =>
        A!.Resource("r0").WaitForAsync(p, ct).WaitAsync(Timeout, ct);

    public Task<ResourceSnapshot> WaitBAsync(Func<ResourceSnapshot, bool> p, CancellationToken ct) =>
        B!.Resource("r0").WaitForAsync(p, ct).WaitAsync(Timeout, ct);

    public static Task<CommandResult> Run(SimDaemon d, params string[] argv) =>
        d.ExecuteAsync(argv, TestContext.Current.CancellationToken);

    public async ValueTask DisposeAsync()
    {
        TestContext.Current.TestOutputHelper?.WriteLine(LogText);
        if (A is not null)
        {
            await A.DisposeAsync();
        }

        if (B is not null)
        {
            await B.DisposeAsync();
        }

        await Proxy.DisposeAsync();
        try
        {
            Directory.Delete(_root, true);
        }
        catch (IOException)
        {
        }
    }
}
