using System.Globalization;
using Grpc.Core;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Grpc;
using HaMesh.Testing;
using HaMesh.Testing.Processes;

namespace HaMesh.Lab;

/// <summary>
/// README command one: a coordinator and two agents as real processes on loopback, DRBD read through
/// stand-in executables, hameshctl status, then the primary's agent is SIGKILLed and the coordinator's
/// detection is shown with timestamps.
/// </summary>
public static class Demo
{
    public static async Task<int> RunAsync(TextWriter output, CancellationToken ct)
    {
        var clock = TimeProvider.System;
        var start = clock.GetTimestamp();
        void Say(string text) => output.WriteLine($"[{clock.GetElapsedTime(start).TotalSeconds,7:0.000}s] {text}".ToString(CultureInfo.InvariantCulture));

        var dir = Directory.CreateTempSubdirectory("hamesh-demo-").FullName;
        var processes = new List<DaemonProcess>();
        using var standA = StandIns.Drbd84Node("Primary", "Secondary", aliasPresent: true, "active");
        using var standB = StandIns.Drbd84Node("Secondary", "Primary", aliasPresent: false, "inactive");
        try
        {
            int cport = DaemonProcess.FreePort(), aport = DaemonProcess.FreePort(), bport = DaemonProcess.FreePort();
            var options = TestConfig.TwoNodes(coordinatorAddress: $"http://127.0.0.1:{cport}");
            options.Cluster.Name = "demo";
            options.Coordinator.Listen = $"http://127.0.0.1:{cport}";
            options.Coordinator.StorePath = Path.Combine(dir, "coordinator.db");
            options.Nodes[0].AgentAddress = $"http://127.0.0.1:{aport}";
            options.Nodes[1].AgentAddress = $"http://127.0.0.1:{bport}";
            options.Agent.Node = "";
            options.Agent.DrbdVersion = "drbd84";
            var config = ClusterFiles.Write(dir, options);
            Say($"cluster file {config} (heartbeat {options.Cluster.Timings.Heartbeat.TotalMilliseconds} ms, lease {options.Cluster.Timings.Lease.TotalSeconds} s, drift margin {options.Cluster.Timings.DriftMargin.TotalMilliseconds} ms)");

            var coordinator = DaemonProcess.Start("coordinator", DaemonProcess.Dll("src/Coordinator", "hamesh-coordinator"), ["--config", config]);
            processes.Add(coordinator);
            Say($"coordinator (witness) listening on {await coordinator.WaitForListeningAsync(ct)}");
            using var channel = GrpcChannels.Create($"http://127.0.0.1:{cport}", options.Cluster.Timings);
            var client = new CoordinatorService.CoordinatorServiceClient(channel);
            using var watch = client.WatchEvents(new WatchEventsRequest(), cancellationToken: ct);
            var events = watch.ResponseStream;

            var a = DaemonProcess.Start("agent-a", DaemonProcess.Dll("src/Agent", "hamesh-agent"), ["--config", config], StandIns.AgentEnvironment("a", aport, standA));
            var b = DaemonProcess.Start("agent-b", DaemonProcess.Dll("src/Agent", "hamesh-agent"), ["--config", config], StandIns.AgentEnvironment("b", bport, standB));
            processes.Add(a);
            processes.Add(b);
            Say($"agent a (DRBD Primary) listening on {await a.WaitForListeningAsync(ct)}");
            Say($"agent b (DRBD Secondary) listening on {await b.WaitForListeningAsync(ct)}");
            await WaitForAsync(events, e => e.Kind == "NodeReachable" && e.Node == "a", Say, ct);
            await WaitForAsync(events, e => e.Kind == "NodeReachable" && e.Node == "b", Say, ct);

            Say("hameshctl status:");
            await output.WriteLineAsync(await HameshctlAsync(cport, ct));

            Say("SIGKILL agent a (the primary's agent)");
            var killedAt = clock.GetTimestamp();
            a.Kill();
            var unreachable = await WaitForAsync(events, e => e.Kind == "NodeUnreachable" && e.Node == "a", Say, ct);
            Say($"coordinator marked a unreachable {clock.GetElapsedTime(killedAt).TotalMilliseconds:0} ms after the kill (threshold lease + margin = {options.Cluster.Timings.SilenceThreshold.TotalMilliseconds:0} ms): {unreachable.Message}");
            Say("hameshctl status:");
            await output.WriteLineAsync(await HameshctlAsync(cport, ct));
            Say("failover itself (promote b, move the OVH IP) is carried out by the failover executor; see the README for what this version includes");
            return 0;
        }
        finally
        {
            foreach (var p in processes)
            {
                await p.DisposeAsync();
            }

            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task<ClusterEvent> WaitForAsync(IAsyncStreamReader<ClusterEvent> events, Func<ClusterEvent, bool> match, Action<string> say, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        while (await events.MoveNext(timeout.Token))
        {
            var e = events.Current;
            say($"event #{e.Sequence} {e.Kind} {e.Node} {e.Message}");
            if (match(e))
            {
                return e;
            }
        }

        throw new InvalidOperationException("the coordinator's event stream ended");
    }

    private static async Task<string> HameshctlAsync(int port, CancellationToken ct)
    {
        await using var cli = DaemonProcess.Start("hameshctl", DaemonProcess.Dll("src/Cli", "hameshctl"), ["status", "--coordinator", $"http://127.0.0.1:{port}"]);
        await cli.WaitForExitAsync(TimeSpan.FromSeconds(60), ct);
        return cli.Output;
    }
}
