using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;
using HaMesh.Testing.Lab;

namespace HaMesh.Bench;

/// <summary>
/// The coordinator at scale while failovers really happen: the netns lab (fake OVH and coordinator in W,
/// two real agents in A and B with their DRBD stand-ins, the client in C) with N - 2 more configured nodes,
/// simulated in this process on the real Connect stream (hello, a NodeStatus every 500 ms = 2 reports/s,
/// every tenth also a LeaseRequest timed to its grant). The simulated nodes serve no AgentService, so they
/// report the resource without DRBD (never a candidate) and no contact with the primary (they vote that it
/// is gone once it is). Then F kills of the primary's agent (alternating a/b, the crashed node rebooting and
/// rejoining between runs). Measures the coordinator's CPU and RSS over the whole loaded window and over the
/// failovers, kill → decision / promoted / completed, the decision delay past the silence threshold, the
/// lease round trip while failing over, and the real agents' CPU and RSS during the failovers.
/// </summary>
public static class ScaleFailoverBench
{
    public static async Task<int> RunAsync(int agents, int seconds, int failovers, CancellationToken ct)
    {
        if (NetnsLab.WhyNot() is { } why)
        {
            Console.Error.WriteLine("scale bench with failovers: " + why);
            return 1;
        }

        var simulated = Math.Max(0, agents - 2);
        var url = $"http://{NetnsLab.Address("w")}:{LabCluster.CoordinatorPort}";
        var timings = new TimingOptions();
        var channels = Enumerable.Range(0, Math.Max(1, simulated / 100)).Select(_ => GrpcChannels.Create(url, timings)).ToArray();
        var latencies = new ConcurrentBag<(long At, double Ms)>();
        var reports = 0L;
        var errors = new ConcurrentBag<(long At, string Message)>();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        // started before the cluster: each retries until the coordinator listens
        var load = Enumerable.Range(0, simulated).Select(i => Task.Run(() => SimulatedAsync(Node(i), channels[i % channels.Length], i % 10 == 0, latencies, () => Interlocked.Increment(ref reports), errors, stop.Token))).ToArray();
        try
        {
            await using var cluster = await LabCluster.StartAsync(1, ct, o =>
            {
                o.Cluster.Timings.MinFailoverInterval = TimeSpan.FromSeconds(1);
                o.Nodes.AddRange(Enumerable.Range(0, simulated).Select(i => new NodeOptions { Name = Node(i), AgentAddress = $"http://127.0.0.1:{20000 + i}", ServiceName = $"ns{i}.sim-1-2-3.eu" }));
            });
            var coordinator = cluster.CurrentCoordinator;
            await Task.Delay(TimeSpan.FromSeconds(20), TimeProvider.System, ct); // warm-up (measurement pause)
            var status0 = await cluster.Coordinator.GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: ct);
            var reachable0 = status0.Nodes.Count(n => n.Reachability == Reachability.Reachable);

            // steady load first
            var cpu0 = ProcStat.CpuSeconds(coordinator.Pid);
            var reports0 = Interlocked.Read(ref reports);
            var t0 = TimeProvider.System.GetTimestamp();
            await Task.Delay(TimeSpan.FromSeconds(seconds), TimeProvider.System, ct);
            var steadyElapsed = TimeProvider.System.GetElapsedTime(t0).TotalSeconds;
            var steadyCpu = (ProcStat.CpuSeconds(coordinator.Pid) - cpu0) / steadyElapsed * 100;
            var rate = (Interlocked.Read(ref reports) - reports0) / steadyElapsed;
            var steadyRss = ProcStat.MiB(coordinator.Pid, "VmRSS");
            var steadyLatencies = latencies.Select(l => l.Ms).ToList();

            // failovers under the load
            var decision = new List<double>();
            var promoted = new List<double>();
            var completed = new List<double>();
            var failWindows = new List<(long From, long To)>();
            var failCpu = 0.0;
            var failSeconds = 0.0;
            var agentCpu = new List<double>();
            var agentRss = new List<double>();
            var failures = new List<string>();
            var (primary, standby) = ("a", "b");
            var threshold = cluster.Timings.Lease + cluster.Timings.DriftMargin;
            for (var run = 1; run <= failovers && !ct.IsCancellationRequested; run++)
            {
                var g = (await cluster.ResourceAsync(ct)).Generation;
                var from = cluster.Events.Count;
                var survivor = cluster.Agent(standby);
                var c0 = ProcStat.CpuSeconds(coordinator.Pid);
                var s0 = ProcStat.CpuSeconds(survivor.Pid);
                var w0 = TimeProvider.System.GetTimestamp();
                var killedAt = TimeProvider.System.GetUtcNow();
                cluster.CrashNode(primary);
                var outcome = await cluster.WithinAsync(cluster.Events.WaitForAsync(InvariantMonitor.IsFailoverOutcome, from, ct), $"run {run}: failover outcome", ct);
                var w1 = TimeProvider.System.GetTimestamp();
                var window = TimeProvider.System.GetElapsedTime(w0, w1).TotalSeconds;
                failCpu += ProcStat.CpuSeconds(coordinator.Pid) - c0;
                failSeconds += window;
                agentCpu.Add((ProcStat.CpuSeconds(survivor.Pid) - s0) / window * 100);
                agentRss.Add(ProcStat.MiB(survivor.Pid, "VmHWM"));
                failWindows.Add((w0, w1));
                if (outcome.Kind != "FailoverCompleted")
                {
                    failures.Add($"run {run}: {outcome.Kind} {outcome.Message}");
                }
                else
                {
                    var evs = cluster.Events.Since(from, _ => true);
                    double Ms(Func<ClusterEvent, bool> match) => evs.FirstOrDefault(match) is { } e ? (e.Time.ToDateTimeOffset() - killedAt).TotalMilliseconds : double.NaN;
                    decision.Add(Ms(e => e.Kind == "FailoverStarted"));
                    promoted.Add(Ms(e => e.Kind == "Promoted" && e.Node == standby && e.Generation == g + 1));
                    completed.Add(Ms(e => e.Kind == "FailoverCompleted"));
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"run {run} {primary}→{standby}: decision {decision[^1]:0} ms, promoted {promoted[^1]:0} ms, completed {completed[^1]:0} ms"));
                }

                var rejoinFrom = cluster.Events.Count;
                await cluster.RebootNodeAsync(primary, ct);
                var rejoin = await cluster.WithinAsync(cluster.Events.WaitForAsync(e => e.Node == primary && e.Kind is "NodeReachable" or "DemoteFailed", rejoinFrom, ct), $"run {run}: {primary} reports again", ct);
                await cluster.WithinAsync(FailoverBench.WaitForPeerContactAsync(cluster, primary, ct), $"run {run}: {primary} in contact with its peer", ct);
                if (rejoin.Kind != "NodeReachable")
                {
                    failures.Add($"run {run}: rejoin of {primary}: {rejoin.Kind} {rejoin.Message}");
                    break;
                }

                (primary, standby) = (standby, primary);
            }

            var status1 = await cluster.Coordinator.GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: ct);
            var during = latencies.Where(l => failWindows.Any(w => l.At >= w.From && l.At <= w.To)).Select(l => l.Ms).ToList();
            var streamErrors = errors.Where(e => e.At >= t0).Select(e => e.Message).ToList();
            var sb = new StringBuilder(Stats.Header($"Coordinator scale with failovers: {agents} agents ({simulated} simulated in-process on the real Connect stream at 2 reports/s + 2 real agents in the netns lab), {failovers} failovers"));
            sb.Append(CultureInfo.InvariantCulture, $"# timings: heartbeat {cluster.Timings.Heartbeat.TotalMilliseconds} ms, lease {cluster.Timings.Lease.TotalMilliseconds} ms, drift margin {cluster.Timings.DriftMargin.TotalMilliseconds} ms (silence threshold {threshold.TotalMilliseconds} ms); fake OVH task 1 s\n");
            sb.Append("# the lab's invariant monitor also polls GetClusterStatus (all nodes) every 500 ms: included in the coordinator's CPU; lease round trips are timed in\n");
            sb.Append("# this process, which also runs the load generator, the event recorder and the monitor on the same 2 cores (client-side delays included)\n");
            sb.Append("# decision delay past the threshold: FailoverStarted - kill - (lease + margin); the primary's last report left up to one heartbeat before\n");
            sb.Append("# the kill, so the coordinator's own delay is this figure plus 0..250 ms; its failure detector ticks every heartbeat\n");
            sb.Append(CultureInfo.InvariantCulture, $"nodes Reachable after warm-up: {reachable0}/{agents}; at the end: {status1.Nodes.Count(n => n.Reachability == Reachability.Reachable)}/{agents}; simulated stream errors once loaded: {streamErrors.Count}{(streamErrors.Count == 0 ? "" : " (first: " + streamErrors[0] + ")")}\n");
            sb.Append(CultureInfo.InvariantCulture, $"steady load ({seconds} s): reports accepted {rate:0} /s; coordinator CPU {steadyCpu:0.0} % of one core; RSS {steadyRss:0.0} MiB\n");
            sb.Append(CultureInfo.InvariantCulture, $"during the failovers ({failSeconds:0.0} s, kill → FailoverCompleted): coordinator CPU {(failSeconds > 0 ? failCpu / failSeconds * 100 : double.NaN):0.0} % of one core; RSS {ProcStat.MiB(coordinator.Pid, "VmRSS"):0.0} MiB (peak {ProcStat.MiB(coordinator.Pid, "VmHWM"):0.0} MiB)\n");
            sb.AppendLine(Stats.Row("kill → decision (FailoverStarted)", decision));
            sb.AppendLine(Stats.Row("decision delay past the silence threshold", decision.Select(d => d - threshold.TotalMilliseconds).ToList()));
            sb.AppendLine(Stats.Row("kill → candidate promoted (Promoted)", promoted));
            sb.AppendLine(Stats.Row("kill → FailoverCompleted (verified via IP)", completed));
            sb.AppendLine(Stats.Row($"lease round trip, steady ({simulated / 10} agents)", steadyLatencies));
            sb.AppendLine(Stats.Row("lease round trip, during the failovers", during));
            sb.AppendLine(Stats.Row("surviving agent CPU % during its failover", agentCpu, "%"));
            sb.AppendLine(Stats.Row("surviving agent peak RSS after its failover", agentRss, "MiB"));
            sb.Append(CultureInfo.InvariantCulture, $"failed runs: {failures.Count}\n");
            foreach (var f in failures)
            {
                sb.AppendLine("  " + f);
            }

            Stats.Write("scale-failover", sb.ToString());
            return failures.Count == 0 ? 0 : 1;
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(load).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            foreach (var c in channels)
            {
                c.Dispose();
            }
        }
    }

    private static string Node(int i) => "s" + i.ToString(CultureInfo.InvariantCulture);

    /// <summary>One simulated node: Connect, hello, a report every 500 ms (and a timed lease request); reconnects after a failure.</summary>
    private static async Task SimulatedAsync(string node, Grpc.Net.Client.GrpcChannel channel, bool leases, ConcurrentBag<(long, double)> latencies, Action reported, ConcurrentBag<(long, string)> errors, CancellationToken ct)
    {
        var time = TimeProvider.System;
        ulong sequence = 0;
        while (!ct.IsCancellationRequested)
        {
            var pending = new ConcurrentDictionary<ulong, long>();
            try
            {
                using var call = new CoordinatorService.CoordinatorServiceClient(channel).Connect(cancellationToken: ct);
                await call.RequestStream.WriteAsync(new AgentMessage { Hello = new AgentHello { Node = node, AgentVersion = "bench" } }, ct);
                var reader = Task.Run(async () =>
                {
                    while (await call.ResponseStream.MoveNext(ct))
                    {
                        if (call.ResponseStream.Current.LeaseGrant is { } g && pending.TryRemove(g.Sequence, out var sent))
                        {
                            latencies.Add((time.GetTimestamp(), time.GetElapsedTime(sent).TotalMilliseconds));
                        }
                    }
                }, ct);
                await Task.Delay(TimeSpan.FromMilliseconds(Random.Shared.Next(500)), time, ct); // nodes do not report in lockstep
                using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(500), time);
                while (await timer.WaitForNextTickAsync(ct) && !reader.IsCompleted)
                {
                    sequence++;
                    await call.RequestStream.WriteAsync(new AgentMessage { Report = Report(node, sequence) }, ct);
                    reported();
                    if (leases)
                    {
                        pending[sequence] = time.GetTimestamp();
                        await call.RequestStream.WriteAsync(new AgentMessage { LeaseRequest = new LeaseRequest { Resource = "db", Generation = 0, Sequence = sequence, Lease = Duration.FromTimeSpan(TimeSpan.FromSeconds(2)) } }, ct);
                    }
                }

                await reader;
            }
            catch (Exception ex) when (ex is RpcException or IOException or OperationCanceledException)
            {
                if (ct.IsCancellationRequested)
                {
                    return;
                }

                errors.Add((time.GetTimestamp(), $"{node}: {ex.Message}"));

                await Task.Delay(TimeSpan.FromMilliseconds(500), time, ct).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    /// <summary>The resource without DRBD (never a candidate), no contact with the primary for a minute (a vote that it is gone once it is).</summary>
    private static NodeStatus Report(string node, ulong sequence) => new()
    {
        Node = node,
        DrbdVersion = DrbdVersionFamily.V84,
        DrbdVersionText = "8.4.11",
        Sequence = sequence,
        AgentVersion = "bench",
        ObservedAt = Timestamp.FromDateTimeOffset(TimeProvider.System.GetUtcNow()),
        Resources =
        {
            new ResourceStatus
            {
                Resource = "db",
                Generation = 0,
                Drbd = new DrbdResourceStatus { Name = "r0", Role = DrbdRole.Secondary, DiskState = DiskState.Diskless, Present = false },
                Lease = new LeaseStatus { State = LeaseState.NotHeld },
                PeerContactAge = Duration.FromTimeSpan(TimeSpan.FromMinutes(1)),
                MountPoint = "/srv/db",
            },
        },
    };
}
