using System.Diagnostics;

namespace HaMesh.Packaging.Tests;

/// <summary>deploy/rpm/build.sh builds the three RPMs; their file lists, config files and modes are as documented.</summary>
public sealed class RpmBuildTests : IDisposable
{
    private static readonly string Root = FindRoot();
    private readonly string _out = Directory.CreateTempSubdirectory("hamesh-rpm-test-").FullName;

    public void Dispose() => Directory.Delete(_out, recursive: true);

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "HaMesh.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("HaMesh.sln not found above the test directory");
    }

    private static string? Which(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    private static async Task<(int Exit, string Output)> RunAsync(string file, IEnumerable<string> args, CancellationToken ct)
    {
        var psi = new ProcessStartInfo(file) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Root };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync(ct);
        var stderr = p.StandardError.ReadToEndAsync(ct);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromMinutes(5));
        try
        {
            await p.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw;
        }

        return (p.ExitCode, await stdout + await stderr);
    }

    private static async Task<string[]> QueryAsync(string rpm, string rpmFile, CancellationToken ct, params string[] args)
    {
        var (exit, output) = await RunAsync(rpm, [.. args, rpmFile], ct);
        Assert.True(exit == 0, output);
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }

    [Fact]
    public async Task BuildScript_ThreePackages_FileListsConfigAndModes()
    {
        var ct = TestContext.Current.CancellationToken;
        if (Which("rpmbuild") is null || Which("rpm") is not { } rpm)
        {
            Assert.Skip("rpmbuild is not installed (Debian: apt-get install rpm; .ci/run installs it)");
            return;
        }

        var (exit, output) = await RunAsync(Path.Combine(Root, "deploy/rpm/build.sh"), ["--no-build", "--version", "9.8.7", "--out", _out], ct);
        Assert.True(exit == 0, output);
        string Package(string name) => Path.Combine(_out, $"hamesh-{name}-9.8.7-1.x86_64.rpm");

        var agent = await QueryAsync(rpm, Package("agent"), ct, "-qlp");
        Assert.Contains("/usr/lib/hamesh/agent/hamesh-agent", agent);
        Assert.Contains("/usr/lib/hamesh/agent/hamesh-agent.dll", agent);
        Assert.Contains("/usr/lib/hamesh/agent/Prometheus.AspNetCore.dll", agent);
        Assert.Contains("/usr/lib/hamesh/fence-peer/hamesh-fence-peer.dll", agent);
        Assert.Contains("/usr/bin/hamesh-fence-peer", agent);
        Assert.Contains("/usr/lib/systemd/system/hamesh-agent.service", agent);
        Assert.Contains("/usr/share/hamesh/drbd/hamesh-handlers.conf", agent);
        Assert.Contains("/var/lib/hamesh", agent);
        Assert.DoesNotContain(agent, f => f.EndsWith(".pdb", StringComparison.Ordinal) || f.Contains("coordinator", StringComparison.Ordinal));

        var coordinator = await QueryAsync(rpm, Package("coordinator"), ct, "-qlp");
        Assert.Contains("/usr/lib/hamesh/coordinator/hamesh-coordinator.dll", coordinator);
        Assert.Contains("/usr/lib/hamesh/coordinator/runtimes/linux-x64/native/libe_sqlite3.so", coordinator);
        Assert.DoesNotContain(coordinator, f => f.Contains("linux-arm", StringComparison.Ordinal) || f.Contains("win-", StringComparison.Ordinal));
        Assert.Contains("/usr/lib/systemd/system/hamesh-coordinator.service", coordinator);
        Assert.DoesNotContain(coordinator, f => f.Contains("/agent", StringComparison.Ordinal));

        var cli = await QueryAsync(rpm, Package("cli"), ct, "-qlp");
        Assert.Contains("/usr/bin/hameshctl", cli);
        Assert.Contains("/usr/lib/hamesh/cli/hameshctl.dll", cli);

        Assert.Equal(["/etc/default/hamesh-agent", "/etc/hamesh/cluster.json"], (await QueryAsync(rpm, Package("agent"), ct, "-qcp")).Order(StringComparer.Ordinal));
        Assert.Equal(["/etc/hamesh/cluster.json", "/etc/hamesh/ovh-credentials.json"], (await QueryAsync(rpm, Package("coordinator"), ct, "-qcp")).Order(StringComparer.Ordinal));
        var modes = await QueryAsync(rpm, Package("coordinator"), ct, "-qp", "--qf", "[%{FILENAMES} %{FILEMODES:perms}\\n]");
        Assert.Contains("/etc/hamesh/ovh-credentials.json -rw-------", modes);
        Assert.Contains("/var/lib/hamesh drwx------", modes);
        var requires = await QueryAsync(rpm, Package("agent"), ct, "-qp", "--requires");
        Assert.Contains(requires, r => r.StartsWith("aspnetcore-runtime-10.0", StringComparison.Ordinal));
    }
}
