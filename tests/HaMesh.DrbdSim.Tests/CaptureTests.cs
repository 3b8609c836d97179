using System.Diagnostics;
using System.Text.RegularExpressions;

namespace HaMesh.DrbdSim.Tests;

/// <summary>Runs the real 8.4.11 capture sequence (Fixtures/drbd-captures, see INDEX.md) through the C stand-ins.</summary>
public sealed partial class CaptureTests : IAsyncLifetime
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "drbdsim-cap-" + Guid.NewGuid().ToString("N"));
    private SimDaemon? _daemon;
    private string _bin = "";
    private string _proc = "";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(_root);
        _proc = Path.Combine(_root, "proc-drbd");
        var cfg = new SimConfig
        {
            Node = "nodea",
            DrbdVersion = 84,
            ProcDrbdPath = _proc,
            Resources =
            [
                new ResourceConfig
                {
                    Name = "r0",
                    PeerName = "nodeb",
                    ListenAddress = "127.0.0.1",
                    ListenPort = 0,
                    PeerAddress = "127.0.0.1",
                    PeerPort = 1,
                    SizeKiB = 65496,
                    ConnectRetryMs = 200,
                },
            ],
        };
        _daemon = new SimDaemon(cfg, Path.Combine(_root, "state"), TimeProvider.System, TextWriter.Null);
        var socket = Path.Combine(_root, "ctl.sock");
        _daemon.ListenControl(socket);
        _daemon.Start();
        _bin = Path.Combine(_root, "bin");
        StandinInstaller.Install(_bin, socket);
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        if (_daemon is not null)
        {
            await _daemon.DisposeAsync();
        }

        Directory.Delete(_root, true);
    }

    private static (string Command, int Exit, string Output) Capture(string file)
    {
        var text = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "drbd-captures", file));
        var lines = text.Split('\n', 3);
        return (lines[0]["# command: ".Length..], int.Parse(lines[1]["# exit code: ".Length..], System.Globalization.CultureInfo.InvariantCulture), lines[2]);
    }

    private async Task<(int Exit, string Output)> RunAsync(string command)
    {
        var parts = command.Split(' ');
        if (parts[0] == "cat")
        {
            return (0, await File.ReadAllTextAsync(_proc, Ct));
        }

        var psi = new ProcessStartInfo(Path.Combine(_bin, parts[0]))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.Environment.Remove("HAMESH_DRBDSIM_SOCKET");
        foreach (var a in parts.Skip(1))
        {
            psi.ArgumentList.Add(a);
        }

        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync(Ct);
        var e = p.StandardError.ReadToEndAsync(Ct);
        await p.WaitForExitAsync(Ct);
        return (p.ExitCode, await o + await e);
    }

    private async Task AssertCaptureAsync(string file, bool normalizeCounters = false)
    {
        var (command, exit, expected) = Capture(file);
        var (actualExit, actual) = await RunAsync(command);
        if (normalizeCounters)
        {
            expected = Counters().Replace(expected, "dw:N dr:N");
            actual = Counters().Replace(actual, "dw:N dr:N");
        }

        Assert.Equal(exit, actualExit);
        Assert.Equal(expected, actual);
    }

    [GeneratedRegex(@"dw:\d+ dr:\d+")]
    private static partial Regex Counters();

    [Fact]
    public async Task CaptureSequence84_StandinsReproduceRealOutputsByteForByte()
    {
        await _daemon!.Resource("r0").WaitForAsync(s => s.Connection == "Connecting", Ct).WaitAsync(SimPair.Timeout, Ct);
        await AssertCaptureAsync("84-proc-drbd-after-up.txt");
        await AssertCaptureAsync("84-role-after-up.txt");
        await AssertCaptureAsync("84-cstate-after-up.txt");
        await AssertCaptureAsync("84-dstate-after-up.txt");
        await AssertCaptureAsync("84-status-after-up.txt");
        await AssertCaptureAsync("84-primary-inconsistent.txt");
        await AssertCaptureAsync("84-primary-force.txt");
        await AssertCaptureAsync("84-proc-drbd-primary-standalone.txt");
        await AssertCaptureAsync("84-role-primary.txt");
        await AssertCaptureAsync("84-dstate-primary.txt");
        Assert.Equal((0, ""), await RunAsync("mount /dev/drbd0 /mnt/r0"));
        await AssertCaptureAsync("84-secondary-while-mounted.txt");
        Assert.Equal((0, ""), await RunAsync("umount /mnt/r0"));
        await AssertCaptureAsync("84-secondary.txt");
        await AssertCaptureAsync("84-disconnect.txt");
        await AssertCaptureAsync("84-cstate-disconnected.txt");
        await AssertCaptureAsync("84-outdate.txt");
        await AssertCaptureAsync("84-dstate-outdated.txt");
        await AssertCaptureAsync("84-proc-drbd-outdated.txt", normalizeCounters: true);
        await AssertCaptureAsync("84-primary-outdated.txt");
        await AssertCaptureAsync("84-connect.txt");
        await AssertCaptureAsync("84-proc-drbd-wfconnection.txt", normalizeCounters: true);
        await AssertCaptureAsync("84-unknown-resource.txt");
        await AssertCaptureAsync("84-down.txt");
        await AssertCaptureAsync("84-proc-drbd-after-down.txt");
        await AssertCaptureAsync("84-role-after-down.txt");
    }

    [Fact]
    public async Task Standin_NoDaemonListening_Exit121LikeMissingModule()
    {
        File.WriteAllText(Path.Combine(_bin, "drbdsim.socket"), Path.Combine(_root, "nothing.sock") + "\n");
        var (exit, _) = await RunAsync("drbdsetup status");
        Assert.Equal(121, exit);
    }

    [Fact]
    public async Task Standin_SocketFromEnvironment_Works()
    {
        var other = Path.Combine(_root, "other");
        Directory.CreateDirectory(other);
        var exe = Path.Combine(other, "drbdadm");
        File.Copy(Path.Combine(_bin, "drbdadm"), exe);
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add("role");
        psi.ArgumentList.Add("r0");
        psi.Environment["HAMESH_DRBDSIM_SOCKET"] = Path.Combine(_root, "ctl.sock");
        using var p = Process.Start(psi)!;
        var o = await p.StandardOutput.ReadToEndAsync(Ct);
        await p.WaitForExitAsync(Ct);
        Assert.Equal((0, "Secondary/Unknown\n"), (p.ExitCode, o));
    }
}
