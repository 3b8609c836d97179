using System.Globalization;
using System.Text;
using HaMesh.Testing.Lab;
using HaMesh.Testing.Processes;

namespace HaMesh.Bench;

/// <summary>CPU (% of one core) and RSS of both agents and the coordinator of a healthy lab cluster at idle.</summary>
public static class IdleBench
{
    public static async Task<int> RunAsync(int seconds, CancellationToken ct)
    {
        if (NetnsLab.WhyNot() is { } why)
        {
            Console.Error.WriteLine("idle bench: " + why);
            return 1;
        }

        await using var cluster = await LabCluster.StartAsync(1, ct);
        // warm-up: JIT and first connections done (a measurement pause, not a wait for a condition)
        await Task.Delay(TimeSpan.FromSeconds(10), TimeProvider.System, ct);
        var daemons = new (string Name, DaemonProcess P)[] { ("agent a (primary)", cluster.Agent("a")), ("agent b (secondary)", cluster.Agent("b")), ("coordinator", cluster.CurrentCoordinator) };
        var cpu0 = daemons.Select(d => ProcStat.CpuSeconds(d.P.Pid)).ToArray();
        var start = TimeProvider.System.GetTimestamp();
        await Task.Delay(TimeSpan.FromSeconds(seconds), TimeProvider.System, ct);
        var elapsed = TimeProvider.System.GetElapsedTime(start).TotalSeconds;
        var sb = new StringBuilder(Stats.Header($"Idle cost over {seconds} s (heartbeat 250 ms, lease 2 s; reports, lease renewals and peer grants flowing)"));
        for (var i = 0; i < daemons.Length; i++)
        {
            var pid = daemons[i].P.Pid;
            var cpu = (ProcStat.CpuSeconds(pid) - cpu0[i]) / elapsed * 100;
            sb.Append(CultureInfo.InvariantCulture, $"{daemons[i].Name,-22} CPU {cpu,5:0.00} % of one core   RSS {ProcStat.MiB(pid, "VmRSS"),6:0.0} MiB   peak RSS {ProcStat.MiB(pid, "VmHWM"),6:0.0} MiB\n");
        }

        Stats.Write("idle", sb.ToString());
        return 0;
    }
}
