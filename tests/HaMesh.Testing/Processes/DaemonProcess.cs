using System.Diagnostics;
using System.Text;
using System.Threading.Channels;

namespace HaMesh.Testing.Processes;

/// <summary>
/// A HaMesh executable started as a real process (dotnet path/to/x.dll ...), with its stdout and
/// stderr captured line by line. Disposing kills the whole process tree.
/// </summary>
public sealed class DaemonProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly Channel<string> _lines = Channel.CreateUnbounded<string>();
    private readonly StringBuilder _output = new();
    private readonly Lock _lock = new();

    private DaemonProcess(Process process, string name)
    {
        _process = process;
        Name = name;
    }

    public string Name { get; }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    /// <summary>Everything the process printed so far (stdout and stderr interleaved).</summary>
    public string Output
    {
        get
        {
            lock (_lock)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>The build output folder of a HaMesh project, in the configuration the tests were built with.</summary>
    public static string BuildOutput(string projectDir)
    {
        var configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";
        return Path.Combine(TestPaths.RepoRoot, projectDir, "bin", configuration, "net10.0");
    }

    public static string Dll(string projectDir, string assembly) => Path.Combine(BuildOutput(projectDir), assembly + ".dll");

    public static DaemonProcess Start(string name, string dll, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null, string? workingDirectory = null) =>
        StartIn(null, name, dll, args, environment, workingDirectory);

    /// <summary>
    /// Starts the daemon inside network namespace <paramref name="netns"/> (ip netns exec execs into it, so the PID is the daemon's).
    /// <paramref name="dll"/> is an assembly run with dotnet, or (not ending in .dll) a native executable, e.g. the Native AOT agent.
    /// </summary>
    public static DaemonProcess StartIn(string? netns, string name, string dll, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null, string? workingDirectory = null)
    {
        var native = !dll.EndsWith(".dll", StringComparison.Ordinal);
        var psi = new ProcessStartInfo(netns is not null ? "/usr/sbin/ip" : native ? dll : "dotnet")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            WorkingDirectory = workingDirectory ?? Path.GetDirectoryName(dll)!,
        };
        if (netns is not null)
        {
            foreach (var a in new[] { "netns", "exec", netns, native ? dll : "dotnet" })
            {
                psi.ArgumentList.Add(a);
            }
        }

        if (!native)
        {
            psi.ArgumentList.Add(dll);
        }

        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["Logging__Console__FormatterName"] = "simple";
        foreach (var (k, v) in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[k] = v;
        }

        var process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        var daemon = new DaemonProcess(process, name);
        process.OutputDataReceived += (_, e) => daemon.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => daemon.OnLine(e.Data);
        process.Exited += (_, _) => daemon._lines.Writer.TryComplete();
        if (!process.Start())
        {
            throw new InvalidOperationException($"{name}: could not start {dll}");
        }

        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return daemon;
    }

    /// <summary>Waits for a line containing <paramref name="text"/>; fails with the output if the process exits first.</summary>
    public async Task<string> WaitForLineAsync(string text, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        try
        {
            await foreach (var line in _lines.Reader.ReadAllAsync(cts.Token))
            {
                if (line.Contains(text, StringComparison.Ordinal))
                {
                    return line;
                }
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"{Name}: no line containing '{text}' within {timeout}. Output so far:\n{Output}");
        }

        throw new InvalidOperationException($"{Name} exited (code {(_process.HasExited ? _process.ExitCode : -1)}) before printing '{text}'. Output:\n{Output}");
    }

    /// <summary>The first URL after "listening on".</summary>
    public async Task<string> WaitForListeningAsync(CancellationToken cancellationToken)
    {
        var line = await WaitForLineAsync(" listening on ", TimeSpan.FromSeconds(60), cancellationToken);
        return line[(line.IndexOf(" listening on ", StringComparison.Ordinal) + " listening on ".Length)..].Trim();
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        await _process.WaitForExitAsync(cancellationToken).WaitAsync(timeout, cancellationToken);
        return _process.ExitCode;
    }

    /// <summary>SIGSTOP / SIGCONT: a frozen process (GC pause, swap storm) that holds its sockets open.</summary>
    public void Signal(int signal)
    {
        if (!_process.HasExited && Kill(_process.Id, signal) != 0)
        {
            throw new InvalidOperationException($"{Name}: kill({_process.Id}, {signal}) failed");
        }
    }

    public const int SigStop = 19;
    public const int SigCont = 18;

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    /// <summary>SIGKILL, the whole tree: the crash the HA logic must survive.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            Kill();
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (InvalidOperationException)
        {
            // never started
        }
        catch (TimeoutException)
        {
            // best effort
        }

        _process.Dispose();
    }

    /// <summary>A TCP port on 127.0.0.1 for a daemon to bind later: free now, outside the ephemeral range, reserved for this test process (<see cref="TestPorts"/>).</summary>
    public static int FreePort() => TestPorts.Shared.Next();

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_lock)
        {
            _output.AppendLine(line);
        }

        _lines.Writer.TryWrite(line);
    }
}
