using System.Diagnostics;
using System.Text.Json;

namespace HaMesh.DrbdSim.Tests;

/// <summary>Real daemon processes on 127.0.0.1, C stand-ins, the writer test service and a kill -9 of the primary.</summary>
public sealed class ProcessTests : IAsyncLifetime
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "drbdsim-proc-" + Guid.NewGuid().ToString("N"));
    private readonly List<Process> _procs = [];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Dll => Path.Combine(AppContext.BaseDirectory, "hamesh-drbdsim.dll");

    private static string Dotnet => Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet";

    public ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(_root);
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync()
    {
        foreach (var p in _procs)
        {
            if (!p.HasExited)
            {
                p.Kill(entireProcessTree: true);
                p.WaitForExit();
            }

            p.Dispose();
        }

        Directory.Delete(_root, true);
        return ValueTask.CompletedTask;
    }

    private async Task<(Process Proc, string Socket, string Bin, int Port)> StartNodeAsync(string node, int peer)
    {
        var dir = Path.Combine(_root, node);
        Directory.CreateDirectory(dir);
        var cfg = new SimConfig
        {
            Node = node,
            DrbdVersion = 9,
            ProcDrbdPath = Path.Combine(dir, "proc-drbd"),
            Resources =
            [
                new ResourceConfig
                {
                    Name = "r0",
                    NodeId = node == "a" ? 0 : 1,
                    PeerNodeId = node == "a" ? 1 : 0,
                    PeerName = node == "a" ? "b" : "a",
                    ListenPort = 0,
                    PeerPort = peer,
                    SizeKiB = 4096,
                    ResyncRateKiB = 1_000_000,
                    PingIntervalMs = 200,
                    PingTimeoutMs = 1000,
                    ConnectRetryMs = 100,
                },
            ],
        };
        var cfgPath = Path.Combine(dir, "sim.json");
        await File.WriteAllTextAsync(cfgPath, JsonSerializer.Serialize(cfg, SimConfig.JsonOptions), Ct);
        var socket = Path.Combine(dir, "ctl.sock");
        var psi = new ProcessStartInfo(Dotnet) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { Dll, "daemon", "--config", cfgPath, "--state-dir", Path.Combine(dir, "state"), "--control", socket })
        {
            psi.ArgumentList.Add(a);
        }

        var ready = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var p = new Process { StartInfo = psi };
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data?.Contains(" ready on ", StringComparison.Ordinal) == true)
            {
                ready.TrySetResult(int.Parse(e.Data[(e.Data.LastIndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture));
            }
        };
        p.Start();
        _procs.Add(p);
        p.BeginErrorReadLine();
        p.BeginOutputReadLine();
        var port = await ready.Task.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        var bin = Path.Combine(dir, "bin");
        StandinInstaller.Install(bin, socket);
        return (p, socket, bin, port);
    }

    private static async Task<(int Exit, string Out)> RunAsync(string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync(Ct);
        var e = p.StandardError.ReadToEndAsync(Ct);
        await p.WaitForExitAsync(Ct).WaitAsync(TimeSpan.FromSeconds(60), Ct);
        return (p.ExitCode, await o + await e);
    }

    private static async Task WaitUntilAsync(string socket, string until)
    {
        var r = await ControlClient.CallAsync(socket, ["sim", "wait", "r0", "--timeout-ms", "20000", .. until.Split(',')], Ct);
        Assert.True(r.ExitCode == 0, until + ": " + r.Stderr);
    }

    [Fact]
    public async Task KillPrimaryProcess_EveryAcknowledgedWriteIsOnPromotedPeer()
    {
        var b = await StartNodeAsync("b", 1);
        var a = await StartNodeAsync("a", b.Port);
        await WaitUntilAsync(a.Socket, "connection=Connected");
        Assert.Equal((0, ""), await RunAsync(Path.Combine(a.Bin, "drbdadm"), "primary", "--force", "r0"));
        await WaitUntilAsync(b.Socket, "disk=UpToDate,replication=Established,peer-role=Primary");
        Assert.Equal((0, ""), await RunAsync(Path.Combine(a.Bin, "mount"), "/dev/drbd0", "/mnt/a"));

        var log = Path.Combine(_root, "acked.log");
        var w = await RunAsync(Dotnet, Dll, "writer", "--socket", a.Socket, "--log", log, "--interval", "5ms", "--count", "25");
        Assert.Equal(0, w.Exit);
        var acked = await File.ReadAllLinesAsync(log, Ct);
        Assert.Equal(25, acked.Length);

        a.Proc.Kill();
        await a.Proc.WaitForExitAsync(Ct);
        await WaitUntilAsync(b.Socket, "connection=Connecting,peer-disk=DUnknown");
        var (exit, status) = await RunAsync(Path.Combine(b.Bin, "drbdadm"), "status", "r0");
        Assert.Equal(0, exit);
        Assert.Equal("r0 role:Secondary\n  disk:UpToDate open:no\n  a connection:Connecting\n\n", status);
        Assert.Equal((0, ""), await RunAsync(Path.Combine(b.Bin, "drbdadm"), "primary", "r0"));
        foreach (var seq in acked)
        {
            var r = await ControlClient.CallAsync(b.Socket, ["sim", "read", "r0", "seq-" + seq], Ct);
            Assert.Equal(seq + "\n", r.Stdout);
        }

        var (jexit, json) = await RunAsync(Path.Combine(b.Bin, "drbdsetup"), "status", "--json");
        Assert.Equal(0, jexit);
        using var doc = JsonDocument.Parse(json);
        Assert.Equal("Primary", doc.RootElement[0].GetProperty("role").GetString());
    }
}
