using System.Globalization;
using System.Runtime.InteropServices;
using HaMesh.DrbdSim;

return await Cli.RunAsync(args);

internal static class Cli
{
    private const string Usage = """
        usage:
          hamesh-drbdsim daemon --config FILE --state-dir DIR --control SOCKET [--node NAME]
          hamesh-drbdsim install-standins --dir DIR --socket SOCKET
          hamesh-drbdsim write --socket SOCKET [--resource R] --key K --value V
          hamesh-drbdsim read --socket SOCKET [--resource R] --key K
          hamesh-drbdsim wait --socket SOCKET [--resource R] --until field=value[,field=value] [--timeout-ms N]
          hamesh-drbdsim writer --socket SOCKET [--resource R] --log FILE [--interval 50ms] [--count N]
        """;

    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Length == 0)
        {
            await Console.Error.WriteLineAsync(Usage);
            return 2;
        }

        var opts = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 1; i + 1 < args.Length; i += 2)
        {
            opts[args[i]] = args[i + 1];
        }

        string Opt(string name) => opts.TryGetValue(name, out var v) ? v : throw new ArgumentException("missing " + name);
        try
        {
            return args[0] switch
            {
                "daemon" => await DaemonAsync(Opt("--config"), Opt("--state-dir"), Opt("--control"), opts.GetValueOrDefault("--node")),
                "install-standins" => InstallStandins(Opt("--dir"), Opt("--socket")),
                "write" => await ForwardAsync(Opt("--socket"), ["sim", "write", opts.GetValueOrDefault("--resource", "r0"), Opt("--key"), Opt("--value")]),
                "wait" => await ForwardAsync(Opt("--socket"), ["sim", "wait", opts.GetValueOrDefault("--resource", "r0"), "--timeout-ms", opts.GetValueOrDefault("--timeout-ms", "30000"), .. Opt("--until").Split(',')]),
                "read" => await ForwardAsync(Opt("--socket"), ["sim", "read", opts.GetValueOrDefault("--resource", "r0"), Opt("--key")]),
                "writer" => await WriterAsync(Opt("--socket"), opts.GetValueOrDefault("--resource", "r0"), Opt("--log"),
                    ParseInterval(opts.GetValueOrDefault("--interval", "50ms")),
                    long.Parse(opts.GetValueOrDefault("--count", "-1"), CultureInfo.InvariantCulture)),
                _ => Fail(),
            };
        }
        catch (ArgumentException e)
        {
            await Console.Error.WriteLineAsync(e.Message + "\n" + Usage);
            return 2;
        }
    }

    private static int Fail()
    {
        Console.Error.WriteLine(Usage);
        return 2;
    }

    internal static TimeSpan ParseInterval(string s) =>
        s.EndsWith("ms", StringComparison.Ordinal)
            ? TimeSpan.FromMilliseconds(double.Parse(s[..^2], CultureInfo.InvariantCulture))
            : s.EndsWith('s')
                ? TimeSpan.FromSeconds(double.Parse(s[..^1], CultureInfo.InvariantCulture))
                : TimeSpan.FromMilliseconds(double.Parse(s, CultureInfo.InvariantCulture));

    private static async Task<int> DaemonAsync(string configPath, string stateDir, string control, string? node)
    {
        var config = SimConfig.Load(configPath);
        if (node is not null)
        {
            config.Node = node;
        }

        var stop = new TaskCompletionSource();
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
        using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
        await using var daemon = new SimDaemon(config, stateDir, TimeProvider.System, Console.Error);
        daemon.ListenControl(control);
        daemon.Start();
        var ports = string.Join(' ', daemon.Resources.Select(r => $"{r.Name}={r.Config.ListenAddress}:{r.ListenPort}"));
        await Console.Error.WriteLineAsync($"hamesh-drbdsim node {config.Node} ready on {control} listening {ports}");
        await stop.Task;
        return 0;
    }

    internal static int InstallStandins(string dir, string socket)
    {
        try
        {
            StandinInstaller.Install(dir, socket);
            return 0;
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine(e.Message);
            return 1;
        }
    }

    private static async Task<int> ForwardAsync(string socket, string[] argv)
    {
        var r = await ControlClient.CallAsync(socket, argv, CancellationToken.None);
        await Console.Out.WriteAsync(r.Stdout);
        await Console.Error.WriteAsync(r.Stderr);
        return r.ExitCode;
    }

    /// <summary>Test service: writes sequence numbers through the primary, logs every acknowledged one.</summary>
    private static async Task<int> WriterAsync(string socket, string resource, string log, TimeSpan interval, long count)
    {
        var stop = new CancellationTokenSource();
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using var intr = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
        await using var writer = new StreamWriter(log, append: true);
        for (long seq = 1; count < 0 || seq <= count; seq++)
        {
            if (stop.IsCancellationRequested)
            {
                break;
            }

            var s = seq.ToString(CultureInfo.InvariantCulture);
            try
            {
                var r = await ControlClient.CallAsync(socket, ["sim", "write", resource, "seq-" + s, s], stop.Token);
                if (r.ExitCode == 0)
                {
                    await writer.WriteLineAsync(s);
                    await writer.FlushAsync(stop.Token);
                }
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
            {
                // daemon down: the write is not acknowledged, try the next sequence number
            }
            catch (OperationCanceledException)
            {
                break;
            }

            try
            {
                await Task.Delay(interval, TimeProvider.System, stop.Token);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        return 0;
    }
}
