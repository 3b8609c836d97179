using HaMesh.Shared.Commands;

namespace HaMesh.Shared.Tests.Commands;

public sealed class ProcessCommandRunnerTests
{
    private static readonly string[] Allowed = ["/usr/bin/true", "/usr/bin/false", "/bin/echo", "/usr/bin/timeout", "/usr/bin/env", "/usr/bin/ls"];
    private readonly ProcessCommandRunner _runner = new(Allowed, TimeProvider.System);

    [Fact]
    public async Task Run_NotInAllowList_RefusedWithoutStarting()
    {
        var spec = new CommandSpec("/bin/sh", ["-c", "touch /tmp/hamesh-should-not-exist"], TimeSpan.FromSeconds(5));
        var ex = await Assert.ThrowsAsync<CommandFailedException>(() => _runner.RunAsync(spec, TestContext.Current.CancellationToken));
        Assert.Contains("not in the allow-list", ex.Message);
        Assert.Contains("/bin/sh -c", ex.Message);
        Assert.False(File.Exists("/tmp/hamesh-should-not-exist"));
    }

    [Fact]
    public async Task Run_ArgumentsAreNeverShellParsed()
    {
        var result = await _runner.RunAsync(new CommandSpec("/bin/echo", ["a b", "$(id)", ";", "*"], TimeSpan.FromSeconds(5)), TestContext.Current.CancellationToken);
        Assert.Equal("a b $(id) ; *\n", result.StandardOutput);
    }

    [Fact]
    public async Task Run_NonZeroExit_ResultNotException_EnsureSuccessNamesCommand()
    {
        var result = await _runner.RunAsync(new CommandSpec("/usr/bin/false", [], TimeSpan.FromSeconds(5)), TestContext.Current.CancellationToken);
        Assert.Equal(1, result.ExitCode);
        var ex = Assert.Throws<CommandFailedException>(() => result.EnsureSuccess());
        Assert.Equal(1, ex.ExitCode);
        Assert.Contains("'/usr/bin/false'", ex.Message);
    }

    [Fact]
    public async Task Run_StderrCapturedAndLocaleIsC()
    {
        var result = await _runner.RunAsync(new CommandSpec("/usr/bin/ls", ["/nonexistent-hamesh"], TimeSpan.FromSeconds(5)), TestContext.Current.CancellationToken);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("No such file or directory", result.StandardError);
        var env = await _runner.RunAsync(new CommandSpec("/usr/bin/env", [], TimeSpan.FromSeconds(5)), TestContext.Current.CancellationToken);
        Assert.Contains("LC_ALL=C\n", env.StandardOutput);
    }

    [Fact]
    public async Task Run_Timeout_KillsWholeTree()
    {
        // timeout(1) forks a child "sleep 60"; killing only the parent would leave the child running.
        // The marker travels in the environment, which the child inherits.
        var marker = $"HAMESH_TREE_{Guid.NewGuid():N}";
        var spec = new CommandSpec("/usr/bin/timeout", ["120", "/usr/bin/sleep", "60"], TimeSpan.FromMilliseconds(500))
        {
            Environment = new Dictionary<string, string> { [marker] = "1" },
        };
        var ex = await Assert.ThrowsAsync<CommandFailedException>(() => _runner.RunAsync(spec, TestContext.Current.CancellationToken));
        Assert.Contains("timed out", ex.Message);
        Assert.Null(ex.ExitCode);
        Assert.DoesNotContain(Directory.GetDirectories("/proc").Where(d => int.TryParse(Path.GetFileName(d), out _)), d => ReadEnviron(d).Contains(marker, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Run_MissingExecutable_ClearError()
    {
        var runner = new ProcessCommandRunner(["/usr/sbin/hamesh-no-such-tool"], TimeProvider.System);
        var ex = await Assert.ThrowsAsync<CommandFailedException>(() => runner.RunAsync(new CommandSpec("/usr/sbin/hamesh-no-such-tool", [], TimeSpan.FromSeconds(5)), TestContext.Current.CancellationToken));
        Assert.Contains("could not start", ex.Message);
    }

    private static string ReadEnviron(string procDir)
    {
        try
        {
            return File.ReadAllText(Path.Combine(procDir, "environ"));
        }
        catch (IOException)
        {
            return "";
        }
        catch (UnauthorizedAccessException)
        {
            return "";
        }
    }
}
