using System.Globalization;
using System.Text;
using HaMesh.Testing;
using HaMesh.Testing.Lab;
using HaMesh.Testing.Processes;

namespace HaMesh.Bench;

/// <summary>
/// CPU (% of one core) and RSS of both agents and the coordinator of a healthy lab cluster at idle: once with
/// the JIT agent (hamesh-agent.dll), once with the Native AOT agent when it has been published
/// (<c>dotnet publish src/Agent -c Release -r linux-x64 -p:HaMeshAot=true -o src/Agent/bin/aot</c>, or --aot PATH).
/// </summary>
public static class IdleBench
{
    public static string DefaultAotAgent => Path.Combine(TestPaths.RepoRoot, "src", "Agent", "bin", "aot", "hamesh-agent");

    public static async Task<int> RunAsync(int seconds, string? agentEnv, string? aot, CancellationToken ct)
    {
        if (NetnsLab.WhyNot() is { } why)
        {
            Console.Error.WriteLine("idle bench: " + why);
            return 1;
        }

        // --agent-env K=V[,K=V]: runtime knobs for the agents (e.g. DOTNET_GCgen0size) to see what trims their RSS
        var env = (agentEnv ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(kv => kv.Split('=', 2)).ToDictionary(kv => kv[0], kv => kv[1], StringComparer.Ordinal);
        var sb = new StringBuilder(Stats.Header($"Idle cost over {seconds} s (heartbeat 250 ms, lease 2 s; reports, lease renewals and peer grants flowing)"));
        sb.Append(env.Count == 0 ? "# agent environment: defaults (workstation non-concurrent GC, as shipped)\n" : $"# agent environment: {string.Join(' ', env.Select(kv => kv.Key + "=" + kv.Value))}\n");
        sb.Append("# CPU is the daemon's own user+system time; the stand-in scripts it runs (children) are not included (at idle it runs one: systemctl is-active every 2 s)\n");
        await MeasureAsync(sb, "JIT agent (dotnet hamesh-agent.dll)", null, seconds, env, ct);
        var aotPath = aot is null or "auto" ? DefaultAotAgent : aot;
        if (aot != "none")
        {
            if (File.Exists(aotPath))
            {
                await MeasureAsync(sb, $"Native AOT agent ({Path.GetRelativePath(TestPaths.RepoRoot, aotPath)}, {new FileInfo(aotPath).Length / 1048576.0:0.0} MiB)", aotPath, seconds, env, ct);
            }
            else
            {
                sb.Append(CultureInfo.InvariantCulture, $"# Native AOT agent: not measured, {aotPath} not published (dotnet publish src/Agent -c Release -r linux-x64 -p:HaMeshAot=true -o src/Agent/bin/aot)\n");
            }
        }

        Stats.Write(env.Count == 0 ? "idle" : "idle-tuned", sb.ToString());
        return 0;
    }

    private static async Task MeasureAsync(StringBuilder sb, string variant, string? agentExecutable, int seconds, IReadOnlyDictionary<string, string> env, CancellationToken ct)
    {
        await using var cluster = await LabCluster.StartAsync(1, ct, agentEnvironment: env, agentExecutable: agentExecutable);
        // warm-up: JIT and first connections done (a measurement pause, not a wait for a condition)
        await Task.Delay(TimeSpan.FromSeconds(10), TimeProvider.System, ct);
        var daemons = new (string Name, DaemonProcess P)[] { ("agent a (primary)", cluster.Agent("a")), ("agent b (secondary)", cluster.Agent("b")), ("coordinator", cluster.CurrentCoordinator) };
        var cpu0 = daemons.Select(d => ProcStat.CpuSeconds(d.P.Pid)).ToArray();
        var start = TimeProvider.System.GetTimestamp();
        await Task.Delay(TimeSpan.FromSeconds(seconds), TimeProvider.System, ct);
        var elapsed = TimeProvider.System.GetElapsedTime(start).TotalSeconds;
        sb.Append("## ").Append(variant).Append('\n');
        for (var i = 0; i < daemons.Length; i++)
        {
            var pid = daemons[i].P.Pid;
            var cpu = (ProcStat.CpuSeconds(pid) - cpu0[i]) / elapsed * 100;
            sb.Append(CultureInfo.InvariantCulture, $"{daemons[i].Name,-22} CPU {cpu,5:0.00} % of one core   RSS {ProcStat.MiB(pid, "VmRSS"),6:0.0} MiB   peak RSS {ProcStat.MiB(pid, "VmHWM"),6:0.0} MiB\n");
        }
    }
}
