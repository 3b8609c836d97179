using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Failover;
using HaMesh.Shared.Grpc;
using HaMesh.Testing;
using HaMesh.Testing.Processes;

namespace HaMesh.Bench;

/// <summary>
/// One real coordinator process (loopback) with N configured nodes and N lightweight in-process agents,
/// each a real Connect stream (hello, then a NodeStatus report every 500 ms = 2 reports/s; every tenth
/// agent also sends a LeaseRequest with each report and times the LeaseGrant). Measures the
/// coordinator's CPU (% of one core) and RSS over the window and the lease round-trip p99; then the
/// pure decision function on an N-node view where the primary is gone (Decide p99, in process).
/// </summary>
public static class ScaleBench
{
    public static async Task<int> RunAsync(int agents, int seconds, CancellationToken ct)
    {
        var dir = Directory.CreateTempSubdirectory("hamesh-scale-").FullName;
        var port = DaemonProcess.FreePort();
        var options = TestConfig.TwoNodes(coordinatorAddress: $"http://127.0.0.1:{port}");
        options.Cluster.Name = "scale";
        options.Nodes = [.. Enumerable.Range(0, agents).Select(i => new NodeOptions { Name = Node(i), AgentAddress = $"http://127.0.0.1:{20000 + i}", ServiceName = $"ns{i}.ip-1-2-3.eu" })];
        options.Resources[0].PreferredNode = Node(0);
        options.Coordinator.Listen = $"http://127.0.0.1:{port}";
        options.Coordinator.StorePath = Path.Combine(dir, "coordinator.db");
        options.Coordinator.Ovh.Endpoint = "http://127.0.0.1:1/1.0";
        options.Coordinator.Ovh.CredentialsFile = Path.Combine(dir, "ovh-credentials.json");
        await File.WriteAllTextAsync(options.Coordinator.Ovh.CredentialsFile, """{"ApplicationKey":"k","ApplicationSecret":"s","ConsumerKey":"c"}""", ct);
        File.SetUnixFileMode(options.Coordinator.Ovh.CredentialsFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var config = ClusterFiles.Write(dir, options);
        await using var coordinator = DaemonProcess.Start("coordinator", DaemonProcess.Dll("src/Coordinator", "hamesh-coordinator"), ["--config", config],
            new Dictionary<string, string> { ["Logging__LogLevel__Default"] = "Warning" });
        await coordinator.WaitForListeningAsync(ct);

        var channels = Enumerable.Range(0, Math.Max(1, agents / 100)).Select(_ => GrpcChannels.Create($"http://127.0.0.1:{port}", options.Cluster.Timings)).ToArray();
        var latencies = new ConcurrentBag<double>();
        var reports = 0L;
        var errors = new ConcurrentBag<string>();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var measuring = 0;
        var tasks = Enumerable.Range(0, agents).Select(i => Task.Run(() => AgentAsync(i, channels[i % channels.Length], i % 10 == 0, () => Volatile.Read(ref measuring) == 1, latencies, () => Interlocked.Increment(ref reports), errors, stop.Token))).ToArray();

        var client = new CoordinatorService.CoordinatorServiceClient(channels[0]);
        await Task.Delay(TimeSpan.FromSeconds(10), TimeProvider.System, ct); // warm-up (measurement pause)
        var cpu0 = ProcStat.CpuSeconds(coordinator.Pid);
        var self0 = ProcStat.CpuSeconds(Environment.ProcessId);
        var reports0 = Interlocked.Read(ref reports);
        var start = TimeProvider.System.GetTimestamp();
        Volatile.Write(ref measuring, 1);
        await Task.Delay(TimeSpan.FromSeconds(seconds), TimeProvider.System, ct);
        Volatile.Write(ref measuring, 0);
        var elapsed = TimeProvider.System.GetElapsedTime(start).TotalSeconds;
        var cpu = (ProcStat.CpuSeconds(coordinator.Pid) - cpu0) / elapsed * 100;
        var self = (ProcStat.CpuSeconds(Environment.ProcessId) - self0) / elapsed * 100;
        var rate = (Interlocked.Read(ref reports) - reports0) / elapsed;
        var status = await client.GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: ct);
        var reachable = status.Nodes.Count(n => n.Reachability == Reachability.Reachable);
        var rss = ProcStat.MiB(coordinator.Pid, "VmRSS");
        var hwm = ProcStat.MiB(coordinator.Pid, "VmHWM");
        await stop.CancelAsync();
        await Task.WhenAll(tasks).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        foreach (var c in channels)
        {
            c.Dispose();
        }

        var decide = DecideLatencies(agents);
        var sb = new StringBuilder(Stats.Header($"Coordinator scale: {agents} in-process agents on the real Connect stream, 2 reports/s each, {seconds} s window"));
        sb.Append(CultureInfo.InvariantCulture, $"reports accepted: {rate:0} /s; nodes Reachable at the end: {reachable}/{agents}; stream errors: {errors.Count}{(errors.IsEmpty ? "" : " (first: " + errors.First() + ")")}\n");
        sb.Append(CultureInfo.InvariantCulture, $"coordinator CPU: {cpu:0.0} % of one core; RSS {rss:0.0} MiB (peak {hwm:0.0} MiB)\n");
        sb.Append(CultureInfo.InvariantCulture, $"(load generator in the bench process: {self:0.0} % of one core, same 2-core machine)\n");
        sb.AppendLine(Stats.Row($"lease request → grant round trip ({agents / 10} agents)", [.. latencies]));
        sb.AppendLine(Stats.Row($"FailoverPolicy.Decide, {agents}-node view, primary gone", decide, "μs"));
        sb.Append("# no failover here (the simulated agents serve no AgentService): `scale --failovers N` runs failovers of two real agents under the same load\n");
        Stats.Write("scale", sb.ToString());
        Directory.Delete(dir, recursive: true);
        return 0;
    }

    private static string Node(int i) => "n" + i.ToString(CultureInfo.InvariantCulture);

    private static async Task AgentAsync(int i, Grpc.Net.Client.GrpcChannel channel, bool leases, Func<bool> measuring, ConcurrentBag<double> latencies, Action reported, ConcurrentBag<string> errors, CancellationToken ct)
    {
        var time = TimeProvider.System;
        var pending = new ConcurrentDictionary<ulong, long>();
        try
        {
            using var call = new CoordinatorService.CoordinatorServiceClient(channel).Connect(cancellationToken: ct);
            await call.RequestStream.WriteAsync(new AgentMessage { Hello = new AgentHello { Node = Node(i), AgentVersion = "bench" } }, ct);
            var reader = Task.Run(async () =>
            {
                while (await call.ResponseStream.MoveNext(ct))
                {
                    if (call.ResponseStream.Current.LeaseGrant is { } g && pending.TryRemove(g.Sequence, out var sent) && measuring())
                    {
                        latencies.Add(time.GetElapsedTime(sent).TotalMilliseconds);
                    }
                }
            }, ct);
            await Task.Delay(TimeSpan.FromMilliseconds(Random.Shared.Next(500)), time, ct); // agents do not start in lockstep
            using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(500), time);
            ulong sequence = 0;
            while (await timer.WaitForNextTickAsync(ct))
            {
                sequence++;
                await call.RequestStream.WriteAsync(new AgentMessage { Report = Report(i, sequence) }, ct);
                reported();
                if (leases)
                {
                    pending[sequence] = time.GetTimestamp();
                    await call.RequestStream.WriteAsync(new AgentMessage { LeaseRequest = new LeaseRequest { Resource = "db", Generation = 0, Sequence = sequence, Lease = Duration.FromTimeSpan(TimeSpan.FromSeconds(2)) } }, ct);
                }
            }

            await reader;
        }
        catch (Exception ex) when (ex is RpcException or OperationCanceledException)
        {
            if (!ct.IsCancellationRequested)
            {
                errors.Add($"{Node(i)}: {ex.Message}");
            }
        }
    }

    private static NodeStatus Report(int i, ulong sequence) => new()
    {
        Node = Node(i),
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
                Drbd = new DrbdResourceStatus
                {
                    Name = "r0", Role = DrbdRole.Secondary, DiskState = DiskState.UpToDate, Present = true,
                    Peers = { new PeerConnectionStatus { PeerName = "peer", PeerNodeId = -1, ConnectionState = ConnectionState.Connected, PeerRole = DrbdRole.Secondary, PeerDiskState = DiskState.UpToDate } },
                },
                Lease = new LeaseStatus { State = LeaseState.NotHeld },
                PeerContactAge = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(100)),
                MountPoint = "/srv/db",
            },
        },
    };

    /// <summary>Decide on an N-node view whose primary n0 went silent and every other node agrees: microseconds per call.</summary>
    private static List<double> DecideLatencies(int agents)
    {
        var now = new MonoTime(TimeSpan.FromMinutes(10));
        var nodes = Enumerable.Range(0, agents).Select(i => new NodeFacts(Node(i), i == 0 ? now - TimeSpan.FromSeconds(5) : now - TimeSpan.FromMilliseconds(100), null,
            new Dictionary<string, NodeResourceFacts>(StringComparer.Ordinal)
            {
                ["db"] = new(i == 0 ? DrbdRole.Primary : DrbdRole.Secondary, DiskState.UpToDate, i == 0 ? ConnectionState.Connected : ConnectionState.WfConnection, i == 0 ? DrbdRole.Secondary : DrbdRole.Unknown, 3, TimeSpan.FromSeconds(5)),
            })).ToList();
        var view = new ClusterView(1, new MonoTime(TimeSpan.Zero), nodes,
            [new ResourceFacts("db", 3, Node(0), false, null, new Dictionary<string, ulong>(StringComparer.Ordinal), false, Node(0))]);
        var ha = new HaOptions(TimeSpan.FromSeconds(2), TimeSpan.FromMilliseconds(500), TimeSpan.FromMinutes(5));
        var result = new List<double>();
        var kinds = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < 2000; i++)
        {
            var t = TimeProvider.System.GetTimestamp();
            var decisions = FailoverPolicy.Decide(view, ha, now);
            result.Add(TimeProvider.System.GetElapsedTime(t).TotalMilliseconds * 1000);
            kinds.UnionWith(decisions.Select(d => d.GetType().Name));
        }

        Console.WriteLine("Decide returned: " + string.Join(", ", kinds));
        return result.Skip(200).ToList();
    }
}
