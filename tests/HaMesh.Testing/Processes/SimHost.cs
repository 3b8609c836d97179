using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using HaMesh.DrbdSim;

namespace HaMesh.Testing.Processes;

/// <summary>What one simulated server runs: its name, its peer, the DRBD flavour and the replication link.</summary>
public sealed record SimHostOptions
{
    public required string Node { get; init; }

    public required string Peer { get; init; }

    /// <summary>Folder under which the host keeps everything (one sub-folder per node).</summary>
    public required string Root { get; init; }

    /// <summary>9 (drbdsetup status --json) or 84 (/proc/drbd and drbdadm).</summary>
    public int DrbdVersion { get; init; } = 9;

    public string ListenAddress { get; init; } = "127.0.0.1";

    public required int ListenPort { get; init; }

    public string PeerAddress { get; init; } = "127.0.0.1";

    public required int PeerPort { get; init; }

    /// <summary>dont-care | resource-only | resource-and-stonith (design §4.1 runs resource-and-stonith).</summary>
    public string Fencing { get; init; } = "resource-and-stonith";

    /// <summary>The local agent the fence-peer handler asks (hamesh-fence-peer --agent URL).</summary>
    public string? FencePeerAgent { get; init; }

    /// <summary>More arguments for the fence-peer handler (e.g. --cacert/--cert/--key for an https:// agent).</summary>
    public IReadOnlyList<string> FencePeerArgs { get; init; } = [];

    /// <summary>Network namespace to run the simulator daemon in, or null for the current one.</summary>
    public string? Netns { get; init; }
}

/// <summary>
/// A simulated server for process tests, the lab and the demo: a real <c>hamesh-drbdsim</c> daemon
/// process with its drbdadm/drbdsetup/mount/umount stand-ins (DRBD's real formats, exit codes and
/// refusals; a real TCP replication link to the peer), the real <c>hamesh-fence-peer</c> handler wired
/// as DRBD's fence-peer, and stateful <c>ip</c> and <c>systemctl</c> stand-ins. <see cref="AgentEnvironment"/>
/// points a real agent at all of it: the agent drives it through the same code path as real DRBD.
/// </summary>
public sealed class SimHost : IAsyncDisposable
{
    public const string Resource = "r0";

    // ip and systemctl keep their state in files next to them; everything else is the simulator's.
    private const string HostScript = """
        #!/bin/sh
        st="$(cd "$(dirname "$0")" && pwd)/host"; tool=$(basename "$0")
        case "$tool $1" in
          "systemctl is-active") shift; rc=0; for u in "$@"; do if grep -qx "$u" "$st/services" 2>/dev/null; then echo active; else echo inactive; rc=3; fi; done; exit $rc;;
          "systemctl start") grep -qx "$2" "$st/services" 2>/dev/null || echo "$2" >> "$st/services";;
          "systemctl stop") grep -vx "$2" "$st/services" > "$st/services.new" 2>/dev/null; mv "$st/services.new" "$st/services";;
          "ip -j")
            printf '[{"ifindex":2,"ifname":"%s","flags":["UP","LOWER_UP"],"addr_info":[{"family":"inet","local":"198.51.100.7","prefixlen":24}' "$5"
            while read -r a; do [ -n "$a" ] && printf ',{"family":"inet","local":"%s","prefixlen":%s}' "${a%/*}" "${a#*/}"; done < "$st/ips"
            printf ']}]\n';;
          "ip addr")
            if [ "$2" = add ]; then
              if grep -qx "$3" "$st/ips"; then echo "RTNETLINK answers: File exists" >&2; exit 2; fi
              echo "$3" >> "$st/ips"
            else
              if ! grep -qx "$3" "$st/ips"; then echo "RTNETLINK answers: Cannot assign requested address" >&2; exit 2; fi
              grep -vx "$3" "$st/ips" > "$st/ips.new"; mv "$st/ips.new" "$st/ips"
            fi;;
          *) echo "stand-in: unsupported: $tool $*" >&2; exit 1;;
        esac

        """;

    private readonly SimHostOptions _options;
    private DaemonProcess? _daemon;

    private SimHost(SimHostOptions options)
    {
        _options = options;
        Directory = Path.Combine(options.Root, options.Node);
        System.IO.Directory.CreateDirectory(Path.Combine(Directory, "bin", "host"));
        System.IO.Directory.CreateDirectory(Path.Combine(Directory, "state"));
    }

    public string Node => _options.Node;

    public string Directory { get; }

    public string Bin => Path.Combine(Directory, "bin");

    public string Socket => Path.Combine(Directory, "ctl.sock");

    public string ProcDrbd => Path.Combine(Directory, "proc-drbd");

    public string MountInfo => Path.Combine(Directory, "mountinfo");

    /// <summary>The simulator daemon process (its output, kill -9).</summary>
    public DaemonProcess Daemon => _daemon ?? throw new InvalidOperationException("not started");

    public static string SimDll => DaemonProcess.Dll("src/Tools/DrbdSim", "hamesh-drbdsim");

    /// <summary>The handler DRBD runs: the build output, or the file named by HAMESH_LAB_FENCE_PEER (the failover bench's --fence-peer, e.g. a Native AOT publish).</summary>
    public static string FencePeerHandler =>
        Environment.GetEnvironmentVariable("HAMESH_LAB_FENCE_PEER") is { Length: > 0 } custom
            ? custom
            : Path.Combine(DaemonProcess.BuildOutput("src/FencePeer"), "hamesh-fence-peer");

    /// <summary>Writes the configuration, installs the stand-ins and starts the simulator daemon (ready when this returns).</summary>
    public static async Task<SimHost> StartAsync(SimHostOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        var host = new SimHost(options);
        await host.InstallAsync(cancellationToken);
        await host.StartDaemonAsync(cancellationToken);
        return host;
    }

    /// <summary>
    /// The host boots again after <see cref="Crash"/>: DRBD comes up Secondary from its state directory
    /// (its data survives), nothing is mounted, no service runs and the failover IP alias is gone.
    /// </summary>
    public async Task RebootAsync(CancellationToken cancellationToken)
    {
        if (_daemon is not null)
        {
            await _daemon.DisposeAsync();
        }

        await File.WriteAllTextAsync(Path.Combine(Bin, "host", "services"), "", cancellationToken);
        await File.WriteAllTextAsync(Path.Combine(Bin, "host", "ips"), "", cancellationToken);

        await StartDaemonAsync(cancellationToken);
    }

    /// <summary>kill -9 of the simulator: the host's DRBD is gone, the peer sees the link drop.</summary>
    public void Crash() => Daemon.Kill();

    /// <summary>Runs a stand-in command against this host's daemon (argv[0] is drbdadm, drbdsetup, mount, umount or sim).</summary>
    public Task<CommandResult> RunAsync(CancellationToken cancellationToken, params string[] argv) =>
        ControlClient.CallAsync(Socket, argv, cancellationToken);

    /// <summary>A write through the primary's device; returns once acknowledged (protocol C: the peer has it too).</summary>
    public Task<CommandResult> WriteAsync(string key, string value, CancellationToken cancellationToken) =>
        RunAsync(cancellationToken, "sim", "write", Resource, key, value);

    public Task<CommandResult> ReadAsync(string key, CancellationToken cancellationToken) =>
        RunAsync(cancellationToken, "sim", "read", Resource, key);

    /// <summary>Waits until the resource matches every <c>field=value</c> condition (connection=Connected, disk=UpToDate...).</summary>
    public async Task WaitAsync(TimeSpan timeout, CancellationToken cancellationToken, params string[] conditions)
    {
        var result = await RunAsync(cancellationToken, ["sim", "wait", Resource, "--timeout-ms", ((int)timeout.TotalMilliseconds).ToString(CultureInfo.InvariantCulture), .. conditions]);
        if (result.ExitCode != 0)
        {
            throw new TimeoutException($"{Node}: {string.Join(',', conditions)} not reached within {timeout}: {result.Stderr.Trim()} {result.Stdout.Trim()}\n{Daemon.Output}");
        }
    }

    /// <summary>Brings a freshly created pair to UpToDate/UpToDate with both Secondary (what an operator does once, by hand).</summary>
    public static async Task InitialSyncAsync(SimHost first, SimHost second, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        var timeout = TimeSpan.FromSeconds(30);
        await first.WaitAsync(timeout, cancellationToken, "connection=Connected");
        Check(await first.RunAsync(cancellationToken, "drbdadm", "primary", "--force", Resource), "initial drbdadm primary --force");
        await second.WaitAsync(timeout, cancellationToken, "disk=UpToDate", "replication=Established");
        Check(await first.RunAsync(cancellationToken, "drbdadm", "secondary", Resource), "initial drbdadm secondary");
        await second.WaitAsync(timeout, cancellationToken, "peer-role=Secondary");
    }

    /// <summary>
    /// What an operator did by hand before HaMesh ran: DRBD Primary, mounted, services started, failover
    /// IP alias added (the coordinator then adopts this node as primary at generation 1).
    /// </summary>
    public async Task ActivateByHandAsync(string device, string mountPoint, string fsType, IEnumerable<string> services, IEnumerable<string> ips, CancellationToken cancellationToken)
    {
        Check(await RunAsync(cancellationToken, "drbdadm", "primary", Resource), "drbdadm primary");
        Check(await RunAsync(cancellationToken, "mount", "-t", fsType, device, mountPoint), "mount");
        await File.AppendAllLinesAsync(Path.Combine(Bin, "host", "services"), services, cancellationToken);
        await File.AppendAllLinesAsync(Path.Combine(Bin, "host", "ips"), ips, cancellationToken);
    }

    /// <summary>Environment overrides that point an agent process at this host (listen on <paramref name="listen"/>).</summary>
    public Dictionary<string, string> AgentEnvironment(string listen) => new()
    {
        ["HaMesh__Agent__Node"] = Node,
        ["HaMesh__Agent__Listen"] = listen,
        ["HaMesh__Agent__StateDirectory"] = Path.Combine(Directory, "agent-state"),
        ["HaMesh__Agent__DrbdVersion"] = _options.DrbdVersion == 84 ? "drbd84" : "drbd9",
        ["HaMesh__Agent__Commands__Drbdadm"] = Path.Combine(Bin, "drbdadm"),
        ["HaMesh__Agent__Commands__Drbdsetup"] = Path.Combine(Bin, "drbdsetup"),
        ["HaMesh__Agent__Commands__Mount"] = Path.Combine(Bin, "mount"),
        ["HaMesh__Agent__Commands__Umount"] = Path.Combine(Bin, "umount"),
        ["HaMesh__Agent__Commands__Ip"] = Path.Combine(Bin, "ip"),
        ["HaMesh__Agent__Commands__Systemctl"] = Path.Combine(Bin, "systemctl"),
        ["HaMesh__Agent__Commands__ProcDrbd"] = ProcDrbd,
        ["HaMesh__Agent__Commands__MountInfo"] = MountInfo,
    };

    /// <summary>The services the systemctl stand-in reports active.</summary>
    public IReadOnlyList<string> ActiveServices() => Lines(Path.Combine(Bin, "host", "services"));

    /// <summary>The addresses the ip stand-in has added (CIDR).</summary>
    public IReadOnlyList<string> IpAliases() => Lines(Path.Combine(Bin, "host", "ips"));

    public async ValueTask DisposeAsync()
    {
        if (_daemon is not null)
        {
            await _daemon.DisposeAsync();
        }
    }

    private static string[] Lines(string path) =>
        File.Exists(path) ? File.ReadAllLines(path).Where(l => l.Length > 0).ToArray() : [];

    private static void Check(CommandResult result, string what)
    {
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"{what} exited {result.ExitCode}: {result.Stderr.Trim()}");
        }
    }

    private async Task InstallAsync(CancellationToken cancellationToken)
    {
        // What 'hamesh-drbdsim install-standins' does, without starting a .NET process per host when the
        // simulator's build already holds the compiled client (the lab starts two hosts per scenario).
        var standin = Path.Combine(Path.GetDirectoryName(SimDll)!, "drbdsim-standin");
        if (File.Exists(standin))
        {
            foreach (var name in StandinInstaller.Names)
            {
                var dst = Path.Combine(Bin, name);
                File.Copy(standin, dst, overwrite: true);
                File.SetUnixFileMode(dst, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }

            await File.WriteAllTextAsync(Path.Combine(Bin, "drbdsim.socket"), Socket + "\n", cancellationToken);
        }
        else
        {
            await using var install = DaemonProcess.Start("drbdsim-install-" + Node, SimDll, ["install-standins", "--dir", Bin, "--socket", Socket]);
            var exit = await install.WaitForExitAsync(TimeSpan.FromSeconds(60), cancellationToken);
            if (exit != 0)
            {
                throw new InvalidOperationException($"install-standins exited {exit}: {install.Output}");
            }
        }

        foreach (var tool in new[] { "ip", "systemctl" })
        {
            var path = Path.Combine(Bin, tool);
            await File.WriteAllTextAsync(path, HostScript, cancellationToken);
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        await File.WriteAllTextAsync(Path.Combine(Bin, "host", "services"), "", cancellationToken);
        await File.WriteAllTextAsync(Path.Combine(Bin, "host", "ips"), "", cancellationToken);

        var o = _options;
        var handlerArgs = new JsonArray("fence");
        if (o.FencePeerAgent is { } agent)
        {
            handlerArgs.Add("--agent");
            handlerArgs.Add(agent);
        }

        foreach (var arg in o.FencePeerArgs)
        {
            handlerArgs.Add(arg);
        }

        var config = new JsonObject
        {
            ["node"] = o.Node,
            ["drbdVersion"] = o.DrbdVersion,
            ["procDrbdPath"] = ProcDrbd,
            ["mountInfoPath"] = MountInfo,
            ["resources"] = new JsonArray(new JsonObject
            {
                ["name"] = Resource,
                ["minor"] = 0,
                ["nodeId"] = string.CompareOrdinal(o.Node, o.Peer) < 0 ? 0 : 1,
                ["peerName"] = o.Peer,
                ["peerNodeId"] = string.CompareOrdinal(o.Node, o.Peer) < 0 ? 1 : 0,
                ["listenAddress"] = o.ListenAddress,
                ["listenPort"] = o.ListenPort,
                ["peerAddress"] = o.PeerAddress,
                ["peerPort"] = o.PeerPort,
                ["fencing"] = o.Fencing,
                ["fencePeerHandler"] = FencePeerHandler,
                ["fencePeerArgs"] = handlerArgs,
                ["sizeKiB"] = 4096,
                ["resyncRateKiB"] = 1_000_000,
                ["pingIntervalMs"] = 200,
                ["pingTimeoutMs"] = 1000,
                ["connectRetryMs"] = 100,
            }),
        };
        await File.WriteAllTextAsync(Path.Combine(Directory, "sim.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }), cancellationToken);
    }

    private async Task StartDaemonAsync(CancellationToken cancellationToken)
    {
        _daemon = DaemonProcess.StartIn(_options.Netns, "drbdsim-" + Node, SimDll,
            ["daemon", "--config", Path.Combine(Directory, "sim.json"), "--state-dir", Path.Combine(Directory, "state"), "--control", Socket]);
        await _daemon.WaitForLineAsync(" ready on ", TimeSpan.FromSeconds(60), cancellationToken);
    }
}
