using System.Collections.Concurrent;
using HaMesh.Shared.Commands;

namespace HaMesh.Testing.Commands;

/// <summary>Scripted command results keyed by "executable arg arg"; records every call (R22). Unscripted calls fail loudly.</summary>
public sealed class FakeCommandRunner : ICommandRunner
{
    private readonly ConcurrentDictionary<string, Func<CommandSpec, CommandResult>> _script = new(StringComparer.Ordinal);

    public ConcurrentQueue<CommandSpec> Calls { get; } = new();

    public FakeCommandRunner On(string commandLine, string stdout, int exitCode = 0, string stderr = "")
    {
        _script[commandLine] = spec => new CommandResult(spec, exitCode, stdout, stderr, TimeSpan.Zero);
        return this;
    }

    public FakeCommandRunner Throws(string commandLine, string reason)
    {
        _script[commandLine] = spec => throw new CommandFailedException(spec, null, "", reason);
        return this;
    }

    public Task<CommandResult> RunAsync(CommandSpec spec, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(spec);
        Calls.Enqueue(spec);
        return _script.TryGetValue(spec.Display, out var respond)
            ? Task.FromResult(respond(spec))
            : Task.FromResult(new CommandResult(spec, 127, "", $"fake: no script for '{spec.Display}'", TimeSpan.Zero));
    }
}
