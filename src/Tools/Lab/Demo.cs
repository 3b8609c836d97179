using System.Globalization;
using Grpc.Core;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;
using HaMesh.Shared.Security;
using HaMesh.Testing;
using HaMesh.Testing.Lab;
using HaMesh.Testing.Processes;

namespace HaMesh.Lab;

/// <summary>
/// README command one. Real processes on loopback: the fake OVH API, a coordinator, and two servers,
/// each a DRBD simulator daemon (real TCP replication link, DRBD 8.4 formats) with its agent. A small
/// test service writes through the primary and remembers every acknowledged write. The demo SIGKILLs
/// the primary's agent and simulator (the host dies), shows detection, decision, promotion, the OVH
/// move task, the end-to-end check through the failover IP, then the old primary rebooting and
/// rejoining as Secondary, and finally checks that no acknowledged write was lost.
/// </summary>
public static class Demo
{
    private const string Ip = "127.0.0.10/32";

    /// <param name="output">Where the narration goes.</param>
    /// <param name="ct">Stops the demo.</param>
    /// <param name="insecure">Plain-text gRPC (HaMesh:Tls:Insecure); by default every link is mutual TLS with certificates from <c>hameshctl certs</c>.</param>
    public static async Task<int> RunAsync(TextWriter output, CancellationToken ct, bool insecure = false)
    {
        var clock = TimeProvider.System;
        var start = clock.GetTimestamp();
        void Say(string text)
        {
            lock (output)
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[{clock.GetElapsedTime(start).TotalSeconds,7:0.000}s] {text}"));
            }
        }

        var dir = Directory.CreateTempSubdirectory("hamesh-demo-").FullName;
        var owned = new List<IAsyncDisposable>();
        try
        {
            int cport = DaemonProcess.FreePort(), aport = DaemonProcess.FreePort(), bport = DaemonProcess.FreePort(), drbdA = DaemonProcess.FreePort(), drbdB = DaemonProcess.FreePort();
            var certs = Path.Combine(dir, "tls");
            var scheme = insecure ? "http" : "https";
            if (!insecure)
            {
                await CreateCertificatesAsync(certs, ct);
                Say($"mutual TLS: cluster CA and certificates (coordinator, agent-a, agent-b, operator) made with hameshctl certs in {certs}");
            }

            string[] FenceTls(string node) => insecure ? [] : ["--cacert", Path.Combine(certs, "ca.pem"), "--cert", Path.Combine(certs, $"agent-{node}.pem"), "--key", Path.Combine(certs, $"agent-{node}-key.pem")];
            var simA = await SimHost.StartAsync(new SimHostOptions { Node = "a", Peer = "b", Root = dir, DrbdVersion = 84, ListenPort = drbdA, PeerPort = drbdB, FencePeerAgent = $"{scheme}://127.0.0.1:{aport}", FencePeerArgs = FenceTls("a") }, ct);
            owned.Add(simA);
            var simB = await SimHost.StartAsync(new SimHostOptions { Node = "b", Peer = "a", Root = dir, DrbdVersion = 84, ListenPort = drbdB, PeerPort = drbdA, FencePeerAgent = $"{scheme}://127.0.0.1:{bport}", FencePeerArgs = FenceTls("b") }, ct);
            owned.Add(simB);
            await SimHost.InitialSyncAsync(simA, simB, ct);
            Say($"DRBD simulator: a and b replicate r0 over 127.0.0.1:{drbdA} <-> :{drbdB} (protocol C, fencing resource-and-stonith, hamesh-fence-peer), UpToDate/UpToDate");

            var seed = Path.Combine(dir, "ovh-state.json");
            await File.WriteAllTextAsync(seed, $$"""{"ips":{"{{Ip}}":"ns1.ip-1-2-3.eu"},"servers":["ns1.ip-1-2-3.eu","ns2.ip-1-2-3.eu"]}""", ct);
            var ovh = Own(owned, DaemonProcess.Start("fake-ovh", DaemonProcess.Dll("src/Tools/FakeOvh", "hamesh-fake-ovh"), ["--task-seconds", "2", "--rate-limit", "100000", "--state", seed]));
            var ovhUrl = await ovh.WaitForListeningAsync(ct);
            Say($"fake OVH API listening on {ovhUrl} (move tasks take 2 s)");
            var credentials = Path.Combine(dir, "ovh-credentials.json");
            await File.WriteAllTextAsync(credentials, """{"ApplicationKey":"fake-app-key","ApplicationSecret":"fake-app-secret","ConsumerKey":"fake-consumer-key"}""", ct);
            File.SetUnixFileMode(credentials, UnixFileMode.UserRead | UnixFileMode.UserWrite);

            var options = TestConfig.TwoNodes(coordinatorAddress: $"{scheme}://127.0.0.1:{cport}");
            options.Tls = insecure
                ? new TlsOptions { Insecure = true }
                : new TlsOptions { CaFile = Path.Combine(certs, "ca.pem"), CertificateFile = Path.Combine(certs, "coordinator.pem"), KeyFile = Path.Combine(certs, "coordinator-key.pem") };
            options.Cluster.Name = "demo";
            options.Cluster.Timings.OvhPollInterval = TimeSpan.FromMilliseconds(250);
            options.Coordinator.Listen = $"{scheme}://127.0.0.1:{cport}";
            options.Coordinator.StorePath = Path.Combine(dir, "coordinator.db");
            options.Coordinator.Ovh.Endpoint = ovhUrl + "/1.0";
            options.Coordinator.Ovh.CredentialsFile = credentials;
            options.Nodes[0].AgentAddress = $"{scheme}://127.0.0.1:{aport}";
            options.Nodes[1].AgentAddress = $"{scheme}://127.0.0.1:{bport}";
            var resource = options.Resources[0];
            resource.DrbdResource = SimHost.Resource;
            resource.FailoverIps = [Ip];
            resource.Interface = "lo";
            options.Agent.Node = "";
            var config = ClusterFiles.Write(dir, options);
            Say($"cluster file {config}: heartbeat 250 ms, lease 2 s, drift margin 500 ms; failover IP {Ip}");

            await simA.ActivateByHandAsync(resource.Device, resource.MountPoint, resource.FsType, resource.Services, [Ip], ct);
            Say($"server a set up by hand as before HaMesh: DRBD Primary, {resource.Device} on {resource.MountPoint}, {string.Join(", ", resource.Services)} running, {Ip} on lo");

            var coordinator = Own(owned, DaemonProcess.Start("coordinator", DaemonProcess.Dll("src/Coordinator", "hamesh-coordinator"), ["--config", config]));
            Say($"coordinator (witness) listening on {await coordinator.WaitForListeningAsync(ct)}");
            using var operatorTls = insecure ? null : ClusterTls.Load(Path.Combine(certs, "ca.pem"), Path.Combine(certs, "operator.pem"), Path.Combine(certs, "operator-key.pem"));
            // the narrator's own channel: a first TLS handshake on a busy machine can take longer than the 2 s lease
            using var channel = GrpcChannels.Create($"{scheme}://127.0.0.1:{cport}", new TimingOptions { Heartbeat = options.Cluster.Timings.Heartbeat, Lease = TimeSpan.FromSeconds(30) }, operatorTls);
            string[] cli = insecure
                ? ["--coordinator", $"http://127.0.0.1:{cport}"]
                : ["--coordinator", $"https://127.0.0.1:{cport}", "--cacert", Path.Combine(certs, "ca.pem"), "--cert", Path.Combine(certs, "operator.pem"), "--key", Path.Combine(certs, "operator-key.pem")];
            var client = new CoordinatorService.CoordinatorServiceClient(channel);
            using var watch = client.WatchEvents(new WatchEventsRequest(), cancellationToken: ct);
            var events = watch.ResponseStream;

            var a = StartAgent(simA, aport, config, scheme, certs, owned);
            var b = StartAgent(simB, bport, config, scheme, certs, owned);
            Say($"agent a listening on {await a.WaitForListeningAsync(ct)}");
            Say($"agent b listening on {await b.WaitForListeningAsync(ct)}");
            await WaitForAsync(events, e => e.Kind == "IpVerified", Say, null, ct);
            Say("cluster ready; hameshctl status:");
            await output.WriteLineAsync(await HameshctlAsync(cli, ct));

            await using var service = new TestService(simA, simB, clock);
            service.Start();
            await service.WaitForAcknowledgedAsync(20, ct);
            Say($"test service writing through the primary every 20 ms: {service.Acknowledged.Count} writes acknowledged so far");

            Say("=== SIGKILL agent a and its DRBD (server a dies) ===");
            var killedAt = clock.GetTimestamp();
            a.Kill();
            simA.Crash();
            string Progress() => string.Create(CultureInfo.InvariantCulture, $"{clock.GetElapsedTime(killedAt).TotalSeconds:0.0} s since the kill, {service.Acknowledged.Count} writes acknowledged, service {(service.WritingTo is { } n ? "writing to " + n : "down")}");
            var completed = await WaitForAsync(events, e => (e.Kind.StartsWith("Failover", StringComparison.Ordinal) && e.Attributes.GetValueOrDefault("terminal") == "true") || e.Kind == "OvhMoveFailed", Say, Progress, ct);
            Say(string.Create(CultureInfo.InvariantCulture, $"=== failover done {clock.GetElapsedTime(killedAt).TotalMilliseconds:0} ms after the kill: {completed.Message}"));
            await output.WriteLineAsync(await HameshctlAsync(cli, ct));
            await service.WaitForNodeAsync("b", ct);
            Say(string.Create(CultureInfo.InvariantCulture, $"test service writing to b again; it saw no acknowledgement for {service.LongestGap.TotalMilliseconds:0} ms"));

            Say("=== server a boots again (DRBD Secondary, data from before the crash) ===");
            await simA.RebootAsync(ct);
            var again = StartAgent(simA, aport, config, scheme, certs, owned);
            await again.WaitForListeningAsync(ct);
            // a resyncs from b (SyncTarget) while Secondary; once DRBD says UpToDate and connected, the
            // coordinator clears the outdated mark b's fence-peer handler had it record.
            var rejoined = await WaitForAsync(events, e => (e.Kind is "OutdatedCleared" && e.Node == "a") || e.Kind is "SplitBrain" or "DemoteFailed", Say, Progress, ct);
            await simA.WaitAsync(TimeSpan.FromSeconds(60), ct, "connection=Connected", "disk=UpToDate", "role=Secondary");
            await service.StopAsync();
            await output.WriteLineAsync(await HameshctlAsync(cli, ct));

            var lost = await service.MissingOnAsync(simB, ct);
            var lostOnA = await service.MissingOnAsync(simA, ct);
            Say($"acknowledged writes: {service.Acknowledged.Count}; missing on the new primary b: {lost}; missing on a after its resync: {lostOnA}");
            Say("demo complete: exactly one primary at every step, generations only went up, every decision and OVH call is in the event log (hameshctl events)");
            return completed.Kind == "FailoverCompleted" && rejoined.Kind == "OutdatedCleared" && lost == 0 && lostOnA == 0 ? 0 : 1;
        }
        finally
        {
            foreach (var o in owned.AsEnumerable().Reverse())
            {
                await o.DisposeAsync();
            }

            Directory.Delete(dir, recursive: true);
        }
    }

    private static T Own<T>(List<IAsyncDisposable> owned, T item)
        where T : IAsyncDisposable
    {
        owned.Add(item);
        return item;
    }

    private static DaemonProcess StartAgent(SimHost host, int port, string config, string scheme, string certs, List<IAsyncDisposable> owned)
    {
        var env = host.AgentEnvironment($"{scheme}://127.0.0.1:{port};{scheme}://127.0.0.10:{port}");
        if (scheme == "https")
        {
            // the one cluster file names the coordinator's certificate; each agent overrides it with its own (as /etc/default/hamesh-agent does)
            env["HaMesh__Tls__CertificateFile"] = Path.Combine(certs, $"agent-{host.Node}.pem");
            env["HaMesh__Tls__KeyFile"] = Path.Combine(certs, $"agent-{host.Node}-key.pem");
        }

        return Own(owned, DaemonProcess.Start("agent-" + host.Node, DaemonProcess.Dll("src/Agent", "hamesh-agent"), ["--config", config], env));
    }

    /// <summary>The cluster CA and the four certificates, with hameshctl certs as an operator would make them.</summary>
    private static async Task CreateCertificatesAsync(string certs, CancellationToken ct)
    {
        await HameshctlCheckedAsync(["certs", "init", "--dir", certs, "--cluster", "demo"], ct);
        string[] local = ["--dns", "localhost", "--ip", "127.0.0.1"];
        await Task.WhenAll(
            HameshctlCheckedAsync(["certs", "issue", "--dir", certs, "--role", "coordinator", .. local], ct),
            // agents also answer on the failover IP (the coordinator's end-to-end check dials it)
            HameshctlCheckedAsync(["certs", "issue", "--dir", certs, "--role", "agent", "--node", "a", .. local, "--ip", Ip.Split('/')[0]], ct),
            HameshctlCheckedAsync(["certs", "issue", "--dir", certs, "--role", "agent", "--node", "b", .. local, "--ip", Ip.Split('/')[0]], ct),
            HameshctlCheckedAsync(["certs", "issue", "--dir", certs, "--role", "operator"], ct));
    }

    private static async Task HameshctlCheckedAsync(string[] args, CancellationToken ct)
    {
        await using var cli = DaemonProcess.Start("hameshctl", DaemonProcess.Dll("src/Cli", "hameshctl"), args);
        if (await cli.WaitForExitAsync(TimeSpan.FromSeconds(60), ct) != 0)
        {
            throw new InvalidOperationException($"hameshctl {string.Join(' ', args)} failed: {cli.Output}");
        }
    }

    private static async Task<ClusterEvent> WaitForAsync(IAsyncStreamReader<ClusterEvent> events, Func<ClusterEvent, bool> match, Action<string> say, Func<string>? progress, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(90));
        using var ticker = progress is null ? null : new PeriodicTimer(TimeSpan.FromSeconds(1));
        var ticking = ticker is null ? Task.CompletedTask : TickAsync(ticker, () => say("  ... " + progress!()), timeout.Token);
        try
        {
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
        }
        finally
        {
            ticker?.Dispose();
            await ticking;
        }

        throw new InvalidOperationException("the coordinator's event stream ended");
    }

    private static async Task TickAsync(PeriodicTimer timer, Action tick, CancellationToken ct)
    {
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                tick();
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static async Task<string> HameshctlAsync(string[] target, CancellationToken ct)
    {
        await using var cli = DaemonProcess.Start("hameshctl", DaemonProcess.Dll("src/Cli", "hameshctl"), ["status", .. target]);
        await cli.WaitForExitAsync(TimeSpan.FromSeconds(60), ct);
        return cli.Output;
    }
}
