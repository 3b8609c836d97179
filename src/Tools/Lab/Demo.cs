using System.Globalization;
using Grpc.Core;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Grpc;
using HaMesh.Testing;
using HaMesh.Testing.Processes;

namespace HaMesh.Lab;

/// <summary>
/// README command one. Real processes on loopback: the fake OVH API, a coordinator, two agents whose
/// DRBD/mount/systemctl/ip are stateful stand-ins. Agent a is primary; the demo SIGKILLs it (and takes
/// its host's DRBD down), then shows detection, decision, promotion, the OVH move task, the end-to-end
/// check through the failover IP, and a's rejoin as Secondary, with timestamps.
/// </summary>
public static class Demo
{
    private const string Ip = "127.0.0.10/32";

    public static async Task<int> RunAsync(TextWriter output, CancellationToken ct)
    {
        var clock = TimeProvider.System;
        var start = clock.GetTimestamp();
        void Say(string text) => output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[{clock.GetElapsedTime(start).TotalSeconds,7:0.000}s] {text}"));

        var dir = Directory.CreateTempSubdirectory("hamesh-demo-").FullName;
        var processes = new List<DaemonProcess>();
        try
        {
            var standA = new DrbdStandIns("a", "b", dir, primary: true);
            var standB = new DrbdStandIns("b", "a", dir, primary: false);
            standA.Refresh();
            standB.Refresh();

            var seed = Path.Combine(dir, "ovh-state.json");
            await File.WriteAllTextAsync(seed, $$"""{"ips":{"{{Ip}}":"ns1.ip-1-2-3.eu"},"servers":["ns1.ip-1-2-3.eu","ns2.ip-1-2-3.eu"]}""", ct);
            var ovh = DaemonProcess.Start("fake-ovh", DaemonProcess.Dll("src/Tools/FakeOvh", "hamesh-fake-ovh"), ["--task-seconds", "2", "--rate-limit", "100000", "--state", seed]);
            processes.Add(ovh);
            var ovhUrl = await ovh.WaitForListeningAsync(ct);
            Say($"fake OVH API listening on {ovhUrl} (move tasks take 2 s)");
            var credentials = Path.Combine(dir, "ovh-credentials.json");
            await File.WriteAllTextAsync(credentials, """{"ApplicationKey":"fake-app-key","ApplicationSecret":"fake-app-secret","ConsumerKey":"fake-consumer-key"}""", ct);
            File.SetUnixFileMode(credentials, UnixFileMode.UserRead | UnixFileMode.UserWrite);

            int cport = DaemonProcess.FreePort(), aport = DaemonProcess.FreePort(), bport = DaemonProcess.FreePort();
            var options = TestConfig.TwoNodes(coordinatorAddress: $"http://127.0.0.1:{cport}");
            options.Cluster.Name = "demo";
            options.Cluster.Timings.OvhPollInterval = TimeSpan.FromMilliseconds(250);
            options.Coordinator.Listen = $"http://127.0.0.1:{cport}";
            options.Coordinator.StorePath = Path.Combine(dir, "coordinator.db");
            options.Coordinator.Ovh.Endpoint = ovhUrl + "/1.0";
            options.Coordinator.Ovh.CredentialsFile = credentials;
            options.Nodes[0].AgentAddress = $"http://127.0.0.1:{aport}";
            options.Nodes[1].AgentAddress = $"http://127.0.0.1:{bport}";
            options.Resources[0].FailoverIps = [Ip];
            options.Resources[0].Interface = "lo";
            options.Agent.Node = "";
            options.Agent.DrbdVersion = "drbd84";
            var config = ClusterFiles.Write(dir, options);
            Say($"cluster file {config}: heartbeat 250 ms, lease 2 s, drift margin 500 ms; failover IP {Ip}");

            var coordinator = DaemonProcess.Start("coordinator", DaemonProcess.Dll("src/Coordinator", "hamesh-coordinator"), ["--config", config]);
            processes.Add(coordinator);
            Say($"coordinator (witness) listening on {await coordinator.WaitForListeningAsync(ct)}");
            using var channel = GrpcChannels.Create($"http://127.0.0.1:{cport}", options.Cluster.Timings);
            var client = new CoordinatorService.CoordinatorServiceClient(channel);
            using var watch = client.WatchEvents(new WatchEventsRequest(), cancellationToken: ct);
            var events = watch.ResponseStream;

            var a = StartAgent("a", aport, standA, config, processes);
            var b = StartAgent("b", bport, standB, config, processes);
            Say($"agent a (DRBD Primary, service up, IP alias) listening on {await a.WaitForListeningAsync(ct)}");
            Say($"agent b (DRBD Secondary) listening on {await b.WaitForListeningAsync(ct)}");
            await WaitForAsync(events, e => e.Kind == "IpVerified", Say, ct);
            Say("cluster ready; hameshctl status:");
            await output.WriteLineAsync(await HameshctlAsync(cport, ct));

            Say("=== SIGKILL agent a and take its host's DRBD down (the primary dies) ===");
            var killedAt = clock.GetTimestamp();
            a.Kill();
            standA.HostDown();
            var completed = await WaitForAsync(events, e => (e.Kind.StartsWith("Failover", StringComparison.Ordinal) && e.Attributes.GetValueOrDefault("terminal") == "true") || e.Kind == "OperationFailed", Say, ct);
            Say(string.Create(CultureInfo.InvariantCulture, $"=== failover done {clock.GetElapsedTime(killedAt).TotalMilliseconds:0} ms after the kill: {completed.Message}"));
            await output.WriteLineAsync(await HameshctlAsync(cport, ct));

            Say("=== host a comes back (DRBD still thinks it is Primary at the old generation) ===");
            standA.HostUp();
            var again = StartAgent("a", aport, standA, config, processes);
            await again.WaitForListeningAsync(ct);
            await WaitForAsync(events, e => e.Kind is "Rejoined" or "DemoteFailed", Say, ct);
            await output.WriteLineAsync(await HameshctlAsync(cport, ct));
            Say("demo complete: exactly one primary at every step, generations only went up, every decision and OVH call is in the event log (hameshctl events)");
            return completed.Kind == "FailoverCompleted" ? 0 : 1;
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

    private static DaemonProcess StartAgent(string node, int port, DrbdStandIns stand, string config, List<DaemonProcess> processes)
    {
        var agent = DaemonProcess.Start("agent-" + node, DaemonProcess.Dll("src/Agent", "hamesh-agent"), ["--config", config], stand.AgentEnvironment(node, port));
        processes.Add(agent);
        return agent;
    }

    private static async Task<ClusterEvent> WaitForAsync(IAsyncStreamReader<ClusterEvent> events, Func<ClusterEvent, bool> match, Action<string> say, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(90));
        while (await events.MoveNext(timeout.Token))
        {
            var e = events.Current;
            if (e.Kind != "OvhCall")
            {
                say($"event #{e.Sequence} {e.Severity,-8} {e.Kind} {e.Node} {e.Message}");
            }

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
