namespace HaMesh.Shared.Commands;

/// <summary>
/// One external command: an absolute executable path from configuration (the allow-list) and an
/// argument list. Never a shell, never a single argument string (R16).
/// </summary>
public sealed record CommandSpec(string FileName, IReadOnlyList<string> Arguments, TimeSpan Timeout)
{
    /// <summary>Extra environment; LC_ALL=C is always set so outputs stay parseable.</summary>
    public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>The command as a human reads it (argv joined by spaces); for messages only, never executed.</summary>
    public string Display => Arguments.Count == 0 ? FileName : FileName + " " + string.Join(' ', Arguments);
}

public sealed record CommandResult(CommandSpec Spec, int ExitCode, string StandardOutput, string StandardError, TimeSpan Elapsed)
{
    public bool Succeeded => ExitCode == 0;

    /// <summary>Throws <see cref="CommandFailedException"/> unless the exit code is 0.</summary>
    public CommandResult EnsureSuccess() =>
        Succeeded ? this : throw new CommandFailedException(Spec, ExitCode, StandardError, $"exited with code {ExitCode}");
}

/// <summary>
/// Runs allow-listed executables. Implementations refuse any path not in the allow-list, kill the
/// whole process tree on timeout or cancellation, and capture stdout, stderr and the exit code.
/// </summary>
public interface ICommandRunner
{
    /// <returns>The result, whatever the exit code.</returns>
    /// <exception cref="CommandFailedException">Not allowed, could not start, timed out.</exception>
    Task<CommandResult> RunAsync(CommandSpec spec, CancellationToken cancellationToken);
}

/// <summary>A command that could not run, timed out, or (via EnsureSuccess) exited non-zero.</summary>
public sealed class CommandFailedException : Exception
{
    public CommandFailedException(CommandSpec spec, int? exitCode, string standardError, string reason)
        : base(Format(spec, exitCode, standardError, reason))
    {
        Spec = spec;
        ExitCode = exitCode;
        StandardError = standardError;
        Reason = reason;
    }

    public CommandSpec Spec { get; }

    /// <summary>Null when the process did not exit on its own (not started, timed out, killed).</summary>
    public int? ExitCode { get; }

    public string StandardError { get; }

    public string Reason { get; }

    private static string Format(CommandSpec spec, int? exitCode, string stderr, string reason)
    {
        var code = exitCode is { } c ? $" (exit code {c})" : "";
        var err = string.IsNullOrWhiteSpace(stderr) ? "" : $": {stderr.Trim()}";
        return $"command '{spec.Display}' {reason}{code}{err}";
    }
}
