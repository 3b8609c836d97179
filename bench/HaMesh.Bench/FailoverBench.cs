using System.Globalization;
using System.Text;
using HaMesh.Protocol.V1;
using HaMesh.Testing.Lab;
using HaMesh.Testing.Processes;

namespace HaMesh.Bench;

/// <summary>
/// HaMesh failover latency in the netns lab, over N kills: SIGKILL of the primary's agent (and its
/// DRBD gone) → FailoverStarted (decision) → Promoted on the survivor → OVH move POST answered (move
/// accepted) → OvhMoveCompleted (routedTo names the survivor) → FailoverCompleted (end-to-end Ping
/// through the IP) → the client in namespace C answered by the survivor through the failover IP
/// (traffic restored). Between runs the crashed node reboots (DRBD Secondary) and rejoins, and the
/// next run kills the other side. Default timings (heartbeat 250 ms, lease 2 s, drift margin 0.5 s);
/// OVH poll 250 ms; fake OVH task duration as given; min failover interval 1 s (anti-flap off for the bench).
/// </summary>
public static class FailoverBench
{
    /// <param name="runs">Kills, alternating a and b.</param>
    /// <param name="taskSeconds">How long the fake OVH's move task takes.</param>
    /// <param name="fencePeer">The fence-peer handler DRBD runs (null: the build output, framework-dependent JIT), e.g. a
    /// Native AOT publish: <c>dotnet publish src/FencePeer -c Release -r linux-x64 -p:HaMeshAot=true -o src/FencePeer/bin/aot</c>.</param>
    /// <param name="ct">Stops the runs.</param>
    public static async Task<int> RunAsync(int runs, double taskSeconds, string? fencePeer, CancellationToken ct)
    {
        if (NetnsLab.WhyNot() is { } why)
        {
            Console.Error.WriteLine("failover bench: " + why);
            return 1;
        }

        if (fencePeer is not null)
        {
            if (!File.Exists(fencePeer))
            {
                Console.Error.WriteLine($"failover bench: --fence-peer {fencePeer}: no such file");
                return 2;
            }

            Environment.SetEnvironmentVariable("HAMESH_LAB_FENCE_PEER", Path.GetFullPath(fencePeer));
        }

        var series = new Dictionary<string, List<double>>(StringComparer.Ordinal);
        string[] names = ["kill → decision (FailoverStarted)", "kill → candidate promoted (Promoted)", "kill → OVH move accepted (POST 200)", "kill → OVH routedTo = survivor", "kill → FailoverCompleted (verified via IP)", "kill → client traffic restored via IP (ns C)"];
        foreach (var n in names)
        {
            series[n] = [];
        }

        var failures = new List<string>();
        var rss = new List<double>();
        var agentCpu = new List<double>();
        await using var cluster = await LabCluster.StartAsync(taskSeconds, ct, o => o.Cluster.Timings.MinFailoverInterval = TimeSpan.FromSeconds(1));
        await using var probe = DaemonProcess.StartIn(cluster.Lab.Ns("c"), "probe", DaemonProcess.Dll("src/Tools/Lab", "hamesh-lab"), cluster.ProbeArguments());
        await probe.WaitForLineAsync("ok a ", TimeSpan.FromSeconds(60), ct);
        var (primary, standby) = ("a", "b");
        for (var run = 1; run <= runs && !ct.IsCancellationRequested; run++)
        {
            var g = (await cluster.ResourceAsync(ct)).Generation;
            var from = cluster.Events.Count;
            var t0 = TimeProvider.System.GetUtcNow();
            var survivor = cluster.Agent(standby);
            var survivorCpu0 = ProcStat.CpuSeconds(survivor.Pid);
            var w0 = TimeProvider.System.GetTimestamp();
            cluster.CrashNode(primary);
            var outcome = await cluster.WithinAsync(cluster.Events.WaitForAsync(InvariantMonitor.IsFailoverOutcome, from, ct), $"run {run}: failover outcome", ct);
            agentCpu.Add((ProcStat.CpuSeconds(survivor.Pid) - survivorCpu0) / TimeProvider.System.GetElapsedTime(w0).TotalSeconds * 100);
            var restoredLine = await probe.WaitForLineAsync($"ok {standby} ", TimeSpan.FromSeconds(60), ct);
            if (outcome.Kind != "FailoverCompleted")
            {
                failures.Add($"run {run}: {outcome.Kind} {outcome.Message}");
            }
            else
            {
                var evs = cluster.Events.Since(from, _ => true);
                double Ms(Func<ClusterEvent, bool> match) => evs.FirstOrDefault(match) is { } e ? (e.Time.ToDateTimeOffset() - t0).TotalMilliseconds : double.NaN;
                var values = new[]
                {
                    Ms(e => e.Kind == "FailoverStarted"),
                    Ms(e => e.Kind == "Promoted" && e.Node == standby && e.Generation == g + 1),
                    Ms(e => e.Kind == "OvhCall" && e.Message.StartsWith("POST ", StringComparison.Ordinal) && e.Message.Contains("→ 200", StringComparison.Ordinal)),
                    Ms(e => e.Kind == "OvhMoveCompleted"),
                    Ms(e => e.Kind == "FailoverCompleted"),
                    DateTimeOffset.FromUnixTimeMilliseconds(long.Parse(restoredLine.Split(' ')[2], CultureInfo.InvariantCulture)).Subtract(t0).TotalMilliseconds,
                };
                for (var i = 0; i < names.Length; i++)
                {
                    series[names[i]].Add(values[i]);
                }

                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"run {run,2} {primary}→{standby} g{g + 1}: ") + string.Join("  ", values.Select(v => v.ToString("0", CultureInfo.InvariantCulture).PadLeft(6))));
                if (evs.FirstOrDefault(e => e.Kind == "Promoted" && e.Node == standby) is { } promoted && promoted.Message.LastIndexOf('[') is var at and >= 0)
                {
                    Console.WriteLine("        promotion steps " + promoted.Message[at..]);
                }
            }

            rss.Add(ProcStat.MiB(cluster.Agent(standby).Pid, "VmRSS"));
            var rejoinFrom = cluster.Events.Count;
            await cluster.RebootNodeAsync(primary, ct);
            // Rebooted Secondary: it reports again (a node that came back Primary would get a Demote: Rejoined).
            var rejoin = await cluster.WithinAsync(cluster.Events.WaitForAsync(e => e.Node == primary && e.Kind is "NodeReachable" or "DemoteFailed", rejoinFrom, ct), $"run {run}: {primary} reports again", ct);
            await cluster.WithinAsync(WaitForPeerContactAsync(cluster, primary, ct), $"run {run}: {primary} in contact with its peer", ct);
            if (rejoin.Kind != "NodeReachable")
            {
                failures.Add($"run {run}: rejoin of {primary}: {rejoin.Kind} {rejoin.Message}");
                break;
            }

            (primary, standby) = (standby, primary);
        }

        var sb = new StringBuilder(Stats.Header("HaMesh failover latency, netns lab (coordinator + fake OVH in W, agents in A/B, client in C)"));
        sb.Append(CultureInfo.InvariantCulture, $"# timings: heartbeat {cluster.Timings.Heartbeat.TotalMilliseconds} ms, lease {cluster.Timings.Lease.TotalMilliseconds} ms, drift margin {cluster.Timings.DriftMargin.TotalMilliseconds} ms, OVH poll {cluster.Timings.OvhPollInterval.TotalMilliseconds} ms; fake OVH task {taskSeconds} s\n");
        sb.Append(CultureInfo.InvariantCulture, $"# fence-peer handler: {(fencePeer is null ? "build output (framework-dependent, JIT)" : Path.GetRelativePath(HaMesh.Testing.TestPaths.RepoRoot, Path.GetFullPath(fencePeer)))}\n");
        sb.Append("# kill = SIGKILL of the primary's agent and its DRBD simulator daemon; DRBD is the simulator (real A↔B replication link, fencing with the real hamesh-fence-peer handler), mount/systemctl its stand-ins; the IP alias and routes are real; every gRPC link mutual TLS\n");
        foreach (var n in names)
        {
            sb.AppendLine(Stats.Row(n, series[n]));
        }

        sb.Append(CultureInfo.InvariantCulture, $"new primary agent RSS after failover: max {rss.DefaultIfEmpty(double.NaN).Max():0.0} MiB\n");
        sb.AppendLine(Stats.Row("new primary agent CPU, kill → outcome", agentCpu, "% of one core"));
        sb.Append(CultureInfo.InvariantCulture, $"failed runs: {failures.Count}\n");
        foreach (var f in failures)
        {
            sb.AppendLine("  " + f);
        }

        Stats.Write("failover", sb.ToString());
        await File.WriteAllLinesAsync(Path.Combine(TestPathsResults(), "failover-decision.ms"), series[names[0]].Select(v => v.ToString("0", CultureInfo.InvariantCulture)), ct);
        await File.WriteAllLinesAsync(Path.Combine(TestPathsResults(), "failover-promoted.ms"), series[names[1]].Select(v => v.ToString("0", CultureInfo.InvariantCulture)), ct);
        Comparison.Write();
        return failures.Count == 0 ? 0 : 1;
    }

    /// <summary>The rebooted node is a real standby again: its report shows recent contact with the primary's agent (polled: no event says so).</summary>
    internal static async Task<bool> WaitForPeerContactAsync(LabCluster cluster, string node, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(cluster.Timings.Heartbeat, TimeProvider.System);
        while (await timer.WaitForNextTickAsync(ct))
        {
            var status = await cluster.Coordinator.GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: ct);
            var r = status.Nodes.Single(n => n.Node == node).LastReport?.Resources.SingleOrDefault();
            if (r?.PeerContactAge is { } age && age.ToTimeSpan() < TimeSpan.FromSeconds(1) && r.Drbd?.Role == DrbdRole.Secondary)
            {
                return true;
            }
        }

        return false;
    }

    internal static string TestPathsResults() => Path.Combine(HaMesh.Testing.TestPaths.RepoRoot, "bench", "results");
}
