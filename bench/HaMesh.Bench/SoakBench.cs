using System.Globalization;
using System.Text;
using HaMesh.Testing.Lab;
using HaMesh.Testing.Processes;

namespace HaMesh.Bench;

/// <summary>
/// False failovers under packet loss: a healthy netns cluster (primary a), then nftables
/// <c>numgen random mod 100 &lt; N drop</c> on the input of every namespace (A, B, W, C: every link, both
/// directions) for the given duration. Counts FailoverStarted (each one is a false failover: nobody died),
/// and the suspicion events on the way to one (NodeUnreachable, self-fence, split-brain, halts), checks the
/// primary and generation did not change and the sampled invariants held, and measures the agents' CPU and
/// RSS over the soak. Default timings (heartbeat 250 ms, lease 2 s, drift margin 0.5 s).
/// </summary>
public static class SoakBench
{
    private static readonly string[] Watched = ["FailoverStarted", "NodeUnreachable", "Demoted", "Halted", "SplitBrain", "FailoverFailed", "FailoverAbandoned"];

    public static async Task<int> RunAsync(IReadOnlyList<int> losses, TimeSpan duration, CancellationToken ct)
    {
        if (NetnsLab.WhyNot() is { } why)
        {
            Console.Error.WriteLine("soak bench: " + why);
            return 1;
        }

        var failed = 0;
        foreach (var loss in losses)
        {
            failed += await SoakAsync(loss, duration, ct) ? 0 : 1;
        }

        return failed == 0 ? 0 : 1;
    }

    private static async Task<bool> SoakAsync(int loss, TimeSpan duration, CancellationToken ct)
    {
        await using var cluster = await LabCluster.StartAsync(1, ct);
        var before = await cluster.ResourceAsync(ct);
        var from = cluster.Events.Count;
        var daemons = new (string Name, DaemonProcess P)[] { ("agent a (primary)", cluster.Agent("a")), ("agent b (secondary)", cluster.Agent("b")), ("coordinator", cluster.CurrentCoordinator) };
        var cpu0 = daemons.Select(d => ProcStat.CpuSeconds(d.P.Pid)).ToArray();
        // RSS once a minute: growth that levels off is the GC settling on a heap size; growth that does not is a leak
        var rssSeries = daemons.Select(d => new List<double> { ProcStat.MiB(d.P.Pid, "VmRSS") }).ToArray();
        var start = TimeProvider.System.GetTimestamp();
        foreach (var h in NetnsLab.Hosts)
        {
            await cluster.Lab.LossAsync(h, loss, ct);
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"soak: {loss} % loss on every link for {duration.TotalMinutes:0.#} min ..."));
        using (var progress = new PeriodicTimer(TimeSpan.FromMinutes(1), TimeProvider.System))
        {
            var end = start + (long)(duration.TotalSeconds * TimeProvider.System.TimestampFrequency);
            while (TimeProvider.System.GetTimestamp() < end)
            {
                var left = TimeSpan.FromSeconds((end - TimeProvider.System.GetTimestamp()) / (double)TimeProvider.System.TimestampFrequency);
                // a measurement window, not a wait for a condition
                await Task.Delay(left < TimeSpan.FromMinutes(1) ? left : TimeSpan.FromMinutes(1), TimeProvider.System, ct);
                var sofar = cluster.Events.Since(from, e => e.Kind == "FailoverStarted").Count;
                var rss = daemons.Select(d => ProcStat.MiB(d.P.Pid, "VmRSS")).ToArray();
                for (var i = 0; i < daemons.Length; i++)
                {
                    rssSeries[i].Add(rss[i]);
                }

                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {TimeProvider.System.GetElapsedTime(start).TotalMinutes:0.0} min: {sofar} FailoverStarted, {cluster.Events.Count - from} events; RSS MiB {string.Join(" / ", rss.Select(r => r.ToString("0.0", CultureInfo.InvariantCulture)))}"));
            }
        }

        var elapsed = TimeProvider.System.GetElapsedTime(start).TotalSeconds;
        var usage = daemons.Select((d, i) => (d.Name, Cpu: (ProcStat.CpuSeconds(d.P.Pid) - cpu0[i]) / elapsed * 100, Rss: ProcStat.MiB(d.P.Pid, "VmRSS"), Hwm: ProcStat.MiB(d.P.Pid, "VmHWM"))).ToList();
        var events = cluster.Events.Since(from, _ => true);
        await cluster.Lab.HealAllAsync(ct);
        var after = await cluster.ResourceAsync(ct);
        var falseFailovers = events.Count(e => e.Kind == "FailoverStarted");
        var violations = cluster.Invariants.Violations.Concat(InvariantMonitor.EventViolations(cluster.Events.All, cluster.DecidedFailovers)).ToList();

        var sb = new StringBuilder(Stats.Header(string.Create(CultureInfo.InvariantCulture, $"Soak: {loss} % random loss (nftables numgen random mod 100 < {loss} drop, input of A, B, W and C) for {elapsed / 60:0.0} min")));
        sb.Append(CultureInfo.InvariantCulture, $"# timings: heartbeat {cluster.Timings.Heartbeat.TotalMilliseconds} ms, lease {cluster.Timings.Lease.TotalMilliseconds} ms, drift margin {cluster.Timings.DriftMargin.TotalMilliseconds} ms; each packet meets one such rule (its receiver's input), so each direction of each link loses {loss} %\n");
        sb.Append(CultureInfo.InvariantCulture, $"false failovers (FailoverStarted, nobody died): {falseFailovers}\n");
        sb.Append(CultureInfo.InvariantCulture, $"primary before/after: {before.PrimaryNode} g{before.Generation} / {after.PrimaryNode} g{after.Generation}\n");
        foreach (var kind in Watched)
        {
            var n = events.Count(e => e.Kind == kind);
            if (n > 0 || kind is "FailoverStarted" or "NodeUnreachable")
            {
                sb.Append(CultureInfo.InvariantCulture, $"  {kind,-18} {n}\n");
            }
        }

        foreach (var n in LabCluster.Nodes)
        {
            var lines = cluster.Agent(n).Output.Split('\n').Count(l => l.Contains("self-fenc", StringComparison.OrdinalIgnoreCase));
            sb.Append(CultureInfo.InvariantCulture, $"  agent {n} log lines mentioning self-fence: {lines}\n");
        }

        sb.Append("events by kind: ").AppendJoin(", ", events.GroupBy(e => e.Kind).OrderByDescending(g => g.Count()).Select(g => string.Create(CultureInfo.InvariantCulture, $"{g.Key} {g.Count()}"))).Append('\n');
        foreach (var e in events.Where(e => e.Kind is "FailoverStarted" or "NodeUnreachable").Take(10))
        {
            sb.Append(CultureInfo.InvariantCulture, $"  #{e.Sequence} {e.Time.ToDateTimeOffset():HH:mm:ss.fff} {e.Kind} {e.Node} g{e.Generation}: {e.Message}\n");
        }

        foreach (var (name, cpu, rss, hwm) in usage)
        {
            sb.Append(CultureInfo.InvariantCulture, $"{name,-22} CPU {cpu,5:0.00} % of one core   RSS {rss,6:0.0} MiB   peak RSS {hwm,6:0.0} MiB\n");
        }

        sb.Append("RSS (MiB) at the start and then once a minute:\n");
        for (var i = 0; i < daemons.Length; i++)
        {
            sb.Append(CultureInfo.InvariantCulture, $"  {daemons[i].Name,-22} ").AppendJoin(' ', rssSeries[i].Select(r => r.ToString("0", CultureInfo.InvariantCulture))).Append('\n');
        }

        sb.Append(CultureInfo.InvariantCulture, $"invariant samples: {cluster.Invariants.Samples}; violations: {violations.Count}\n");
        foreach (var v in violations.Take(10))
        {
            sb.AppendLine("  " + v);
        }

        Stats.Write(string.Create(CultureInfo.InvariantCulture, $"soak-loss{loss}"), sb.ToString());
        return falseFailovers == 0 && violations.Count == 0 && after.PrimaryNode == before.PrimaryNode;
    }
}
