using System.Diagnostics;
using System.Text;

namespace HaMesh.Shared.Commands;

/// <summary>
/// Runs allow-listed executables (R16): absolute paths only, <see cref="ProcessStartInfo.ArgumentList"/>
/// (never a shell, never one argument string), LC_ALL=C, stdout/stderr captured, and a timeout (or
/// cancellation) that kills the whole process tree.
/// </summary>
public sealed class ProcessCommandRunner : ICommandRunner
{
    private readonly HashSet<string> _allowed;
    private readonly TimeProvider _time;

    public ProcessCommandRunner(IEnumerable<string> allowedExecutables, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(allowedExecutables);
        _allowed = new HashSet<string>(allowedExecutables, StringComparer.Ordinal);
        _time = time;
    }

    public async Task<CommandResult> RunAsync(CommandSpec spec, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (!_allowed.Contains(spec.FileName))
        {
            throw new CommandFailedException(spec, null, "", "was refused: the executable is not in the allow-list (HaMesh:Agent:Commands)");
        }

        var psi = new ProcessStartInfo(spec.FileName)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (var argument in spec.Arguments)
        {
            psi.ArgumentList.Add(argument);
        }

        psi.Environment["LC_ALL"] = "C";
        foreach (var (key, value) in spec.Environment)
        {
            psi.Environment[key] = value;
        }

        var start = _time.GetTimestamp();
        using var process = new Process { StartInfo = psi };
        try
        {
            process.Start();
        }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            throw new CommandFailedException(spec, null, "", $"could not start: {ex.Message}");
        }

        process.StandardInput.Close();
        using var timeout = new CancellationTokenSource(spec.Timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        var stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
        try
        {
            await process.WaitForExitAsync(linked.Token);
        }
        catch (OperationCanceledException)
        {
            KillTree(process);
            if (!timeout.IsCancellationRequested)
            {
                throw;
            }

            throw new CommandFailedException(spec, null, await Drain(stderr), $"timed out after {spec.Timeout.TotalSeconds:0.###} s and was killed (whole process tree)");
        }

        return new CommandResult(spec, process.ExitCode, await stdout, await stderr, _time.GetElapsedTime(start));
    }

    private static void KillTree(Process process)
    {
        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // exited meanwhile
        }
    }

    private static async Task<string> Drain(Task<string> stream)
    {
        var done = await Task.WhenAny(stream, Task.Delay(TimeSpan.FromSeconds(1), TimeProvider.System));
        return done == stream ? await stream : "";
    }
}
