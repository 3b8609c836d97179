using System.Buffers.Binary;
using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace HaMesh.DrbdSim;

/// <summary>One simulated DRBD node: its resources, the /proc/drbd file and the control socket for the stand-ins.</summary>
public sealed class SimDaemon : IAsyncDisposable
{
    private readonly SimConfig _config;
    private readonly TimeProvider _time;
    private readonly Dictionary<string, SimResource> _resources = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ResourceSnapshot> _latest = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _mounts = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _fsTypes = new(StringComparer.Ordinal);
    private readonly Lock _procGate = new();
    private readonly CancellationTokenSource _cts = new();
    private Socket? _control;
    private bool _started;
    private bool _disposed;

    public SimDaemon(SimConfig config, string stateDir, TimeProvider time, TextWriter log)
    {
        _config = config;
        _time = time;
        foreach (var rc in config.Resources)
        {
            _resources[rc.Name] = new SimResource(config, rc, stateDir, time, OnResourceChanged, log);
        }

        foreach (var r in _resources.Values)
        {
            _latest[r.Name] = r.Snapshot();
        }

        WriteProc();
    }

    public SimConfig Config => _config;

    public bool Is84 => _config.DrbdVersion == 84;

    public SimResource Resource(string name) => _resources[name];

    public IEnumerable<SimResource> Resources => _resources.Values;

    public void Start()
    {
        _started = true;
        lock (_mounts)
        {
            WriteMountInfoLocked();
        }

        foreach (var r in _resources.Values.Where(r => r.Config.AutoUp))
        {
            r.Up();
        }
    }

    /// <summary>Listens for stand-in requests on a unix socket.</summary>
    public void ListenControl(string socketPath)
    {
        if (File.Exists(socketPath))
        {
            File.Delete(socketPath);
        }

        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Bind(new UnixDomainSocketEndPoint(socketPath));
        s.Listen(64);
        _control = s;
        _ = Task.Run(() => ControlLoopAsync(s, _cts.Token));
    }

    private void OnResourceChanged(ResourceSnapshot s)
    {
        lock (_procGate)
        {
            _latest[s.Name] = s;
            WriteProcLocked();
        }
    }

    private void WriteProc()
    {
        lock (_procGate)
        {
            WriteProcLocked();
        }
    }

    private void WriteProcLocked()
    {
        if (_config.ProcDrbdPath is not { } path)
        {
            return;
        }

        var tmp = path + ".tmp";
        File.WriteAllText(tmp, Output.ProcDrbd(_latest.Values, Is84));
        File.Move(tmp, path, overwrite: true);
    }

    private async Task ControlLoopAsync(Socket listener, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(ct);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            _ = Task.Run(() => ServeAsync(client, ct), ct);
        }
    }

    private async Task ServeAsync(Socket client, CancellationToken ct)
    {
        using (client)
        {
            try
            {
                await using var stream = new NetworkStream(client, ownsSocket: false);
                var argv = await ReadArgvAsync(stream, ct);
                var result = await ExecuteAsync(argv, ct);
                var o = Encoding.UTF8.GetBytes(result.Stdout);
                var e = Encoding.UTF8.GetBytes(result.Stderr);
                var buf = new byte[12 + o.Length + e.Length];
                BinaryPrimitives.WriteInt32LittleEndian(buf, result.ExitCode);
                BinaryPrimitives.WriteInt32LittleEndian(buf.AsSpan(4), o.Length);
                o.CopyTo(buf, 8);
                BinaryPrimitives.WriteInt32LittleEndian(buf.AsSpan(8 + o.Length), e.Length);
                e.CopyTo(buf, 12 + o.Length);
                await stream.WriteAsync(buf, ct);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or InvalidDataException)
            {
                // client went away
            }
        }
    }

    private static async Task<string[]> ReadArgvAsync(Stream s, CancellationToken ct)
    {
        var head = new byte[4];
        await s.ReadExactlyAsync(head, ct);
        var argc = BinaryPrimitives.ReadInt32LittleEndian(head);
        if (argc is < 1 or > 256)
        {
            throw new InvalidDataException("bad argc");
        }

        var argv = new string[argc];
        for (var i = 0; i < argc; i++)
        {
            await s.ReadExactlyAsync(head, ct);
            var len = BinaryPrimitives.ReadInt32LittleEndian(head);
            if (len is < 0 or > 65536)
            {
                throw new InvalidDataException("bad arg");
            }

            var b = new byte[len];
            await s.ReadExactlyAsync(b, ct);
            argv[i] = Encoding.UTF8.GetString(b);
        }

        return argv;
    }

    /// <summary>Runs one stand-in command: argv[0] is the tool name (drbdadm, drbdsetup, mount, umount, sim).</summary>
    public Task<CommandResult> ExecuteAsync(IReadOnlyList<string> argv, CancellationToken ct)
    {
        var tool = Path.GetFileName(argv[0]);
        var args = argv.Skip(1).ToList();
        return tool switch
        {
            "drbdadm" => new Commands(this).DrbdadmAsync(args, ct),
            "drbdsetup" => new Commands(this).DrbdsetupAsync(args, ct),
            "mount" => Task.FromResult(Mount(args)),
            "umount" => Task.FromResult(Umount(args)),
            "sim" => new Commands(this).SimAsync(args, ct),
            _ => Task.FromResult(new CommandResult(20, "", tool + ": unknown stand-in\n")),
        };
    }

    internal SimResource? FindByDevice(string dev)
    {
        if (dev.StartsWith("/dev/drbd/by-res/", StringComparison.Ordinal))
        {
            var name = dev["/dev/drbd/by-res/".Length..].Split('/')[0];
            return _resources.GetValueOrDefault(name);
        }

        if (dev.StartsWith("/dev/drbd", StringComparison.Ordinal)
            && int.TryParse(dev.AsSpan("/dev/drbd".Length), NumberStyles.None, CultureInfo.InvariantCulture, out var minor))
        {
            return _resources.Values.FirstOrDefault(r => r.Minor == minor);
        }

        return null;
    }

    private CommandResult Mount(List<string> args)
    {
        var positional = new List<string>();
        var fsType = "ext4";
        for (var i = 0; i < args.Count; i++)
        {
            if (args[i] is "-t" && i + 1 < args.Count)
            {
                fsType = args[++i];
            }
            else if (args[i] is "-o" or "-t")
            {
                i++;
            }
            else if (!args[i].StartsWith('-'))
            {
                positional.Add(args[i]);
            }
        }

        if (positional.Count != 2 || FindByDevice(positional[0]) is not { } r)
        {
            return new CommandResult(32, "", "mount: bad usage or unknown device\n");
        }

        lock (_mounts)
        {
            if (_mounts.ContainsKey(positional[1]))
            {
                return new CommandResult(32, "", $"mount: {positional[1]}: {positional[0]} already mounted on {positional[1]}.\n");
            }

            if (r.SetOpen(true) != 0)
            {
                return new CommandResult(32, "", $"mount: {positional[1]}: wrong medium type.\n");
            }

            _mounts[positional[1]] = r.Minor;
            _fsTypes[positional[1]] = fsType;
            WriteMountInfoLocked();
        }

        return CommandResult.Ok;
    }

    private CommandResult Umount(List<string> args)
    {
        var target = args.LastOrDefault(a => !a.StartsWith('-'));
        if (target is null)
        {
            return new CommandResult(1, "", "umount: bad usage\n");
        }

        lock (_mounts)
        {
            var mp = _mounts.ContainsKey(target) ? target : null;
            if (mp is null && FindByDevice(target) is { } byDev)
            {
                mp = _mounts.FirstOrDefault(kv => kv.Value == byDev.Minor).Key;
            }

            if (mp is null)
            {
                return new CommandResult(32, "", $"umount: {target}: not mounted.\n");
            }

            var minor = _mounts[mp];
            _mounts.Remove(mp);
            _fsTypes.Remove(mp);
            _resources.Values.First(r => r.Minor == minor).SetOpen(false);
            WriteMountInfoLocked();
        }

        return CommandResult.Ok;
    }

    /// <summary>The mounts in /proc/self/mountinfo format (fields: id parent major:minor root mount-point options - fstype source options).</summary>
    private void WriteMountInfoLocked()
    {
        if (_config.MountInfoPath is not { } path)
        {
            return;
        }

        var text = new StringBuilder();
        var id = 95;
        foreach (var (mountPoint, minor) in _mounts)
        {
            text.Append(CultureInfo.InvariantCulture, $"{id++} 22 147:{minor} / {mountPoint.Replace(" ", "\\040", StringComparison.Ordinal)} rw,relatime - {_fsTypes[mountPoint]} /dev/drbd{minor} rw\n");
        }

        var tmp = path + ".tmp";
        File.WriteAllText(tmp, text.ToString());
        File.Move(tmp, path, overwrite: true);
    }

    internal TimeProvider Time => _time;

    public bool Started => _started;

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        await _cts.CancelAsync();
        _control?.Dispose();
        foreach (var r in _resources.Values)
        {
            await r.DisposeAsync();
        }

        _cts.Dispose();
    }
}
