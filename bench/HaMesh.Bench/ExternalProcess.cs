using System.Diagnostics;
using System.Threading.Channels;

namespace HaMesh.Bench;

/// <summary>A non-.NET process started inside a namespace through /usr/sbin/ip netns exec (argument list, no shell), lines streamed.</summary>
public sealed class ExternalProcess : IDisposable
{
    private static readonly string[] Allowed = ["/usr/sbin/keepalived", "/usr/sbin/ip"];
    private readonly Process _process;
    private readonly Channel<(string Line, DateTimeOffset At)> _lines = Channel.CreateUnbounded<(string, DateTimeOffset)>();

    public ExternalProcess(string netns, string exe, params string[] args)
    {
        if (!Allowed.Contains(exe, StringComparer.Ordinal))
        {
            throw new ArgumentException($"{exe} is not allowed", nameof(exe));
        }

        var psi = new ProcessStartInfo("/usr/sbin/ip") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "netns", "exec", netns, exe }.Concat(args))
        {
            psi.ArgumentList.Add(a);
        }

        _process = new Process { StartInfo = psi };
        _process.OutputDataReceived += (_, e) => OnLine(e.Data);
        _process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public int Pid => _process.Id;

    /// <summary>The next line containing <paramref name="text"/> (and not <paramref name="unless"/>), with the time it was read.</summary>
    public async Task<DateTimeOffset> WaitForLineAsync(string text, string? unless, TimeSpan timeout, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        await foreach (var (line, at) in _lines.Reader.ReadAllAsync(cts.Token))
        {
            if (line.Contains(text, StringComparison.Ordinal) && (unless is null || !line.Contains(unless, StringComparison.Ordinal)))
            {
                return at;
            }
        }

        throw new InvalidOperationException("process ended before printing " + text);
    }

    /// <summary>Forgets the lines printed so far (so the next wait only sees what happens from now on).</summary>
    public void Drain()
    {
        while (_lines.Reader.TryRead(out _))
        {
        }
    }

    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(TimeSpan.FromSeconds(10));
        }
    }

    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }

    private void OnLine(string? line)
    {
        if (line is not null)
        {
            _lines.Writer.TryWrite((line, TimeProvider.System.GetUtcNow()));
        }
    }
}
