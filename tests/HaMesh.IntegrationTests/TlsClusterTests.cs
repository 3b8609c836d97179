using System.Net;
using Grpc.Core;
using Grpc.Health.V1;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;
using HaMesh.Shared.Security;
using HaMesh.Testing;
using HaMesh.Testing.Processes;

namespace HaMesh.IntegrationTests;

/// <summary>
/// The daemons as real processes with mutual TLS on: certificates from the cluster CA, https:// addresses,
/// client certificates required and checked against the cluster CA alone.
/// </summary>
public sealed class TlsClusterTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-tls-").FullName;
    private readonly List<IAsyncDisposable> _owned = [];
    private readonly List<IDisposable> _disposables = [];
    private PemPair _ca = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private string Certs => Path.Combine(_dir, "certs");

    public ValueTask InitializeAsync()
    {
        var now = TimeProvider.System.GetUtcNow();
        _ca = ClusterCertificates.CreateCa("tls-test", now);
        ClusterCertificates.Write(Certs, "ca", _ca);
        Issue("coordinator", ClusterRole.Coordinator, null);
        Issue("agent-a", ClusterRole.Agent, "a");
        Issue("agent-b", ClusterRole.Agent, "b");
        Issue("operator", ClusterRole.Operator, null);
        Issue("viewer", ClusterRole.Viewer, null);
        var foreign = ClusterCertificates.CreateCa("foreign", now);
        ClusterCertificates.Write(Certs, "foreign-operator", ClusterCertificates.Issue(foreign, ClusterRole.Operator, null, ["localhost"], [IPAddress.Loopback], now));
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var o in _owned.AsEnumerable().Reverse())
        {
            await o.DisposeAsync();
        }

        foreach (var d in _disposables)
        {
            d.Dispose();
        }

        Directory.Delete(_dir, recursive: true);
    }

    private void Issue(string name, ClusterRole role, string? node) =>
        ClusterCertificates.Write(Certs, name, ClusterCertificates.Issue(_ca, role, node, ["localhost"], [IPAddress.Loopback], TimeProvider.System.GetUtcNow()));

    private string Pem(string name) => Path.Combine(Certs, name + ".pem");

    private string Key(string name) => Path.Combine(Certs, name + "-key.pem");

    private ClusterTls Material(string name, string ca = "ca")
    {
        var tls = ClusterTls.Load(Pem(ca), Pem(name), Key(name));
        _disposables.Add(tls);
        return tls;
    }

    private sealed record Cluster(HaMeshOptions Options, string CoordinatorAddress, string AgentAddressA, DaemonProcess AgentA);

    private HaMeshOptions Options(int cport, int aport, int bport)
    {
        var o = TestConfig.TwoNodes(coordinatorAddress: $"https://127.0.0.1:{cport}");
        o.Tls = new TlsOptions { Insecure = false, CaFile = Pem("ca"), CertificateFile = Pem("coordinator"), KeyFile = Key("coordinator") };
        o.Cluster.Timings.Lease = TimeSpan.FromSeconds(4);
        o.Cluster.Timings.DriftMargin = TimeSpan.FromSeconds(1);
        o.Coordinator.Listen = $"https://127.0.0.1:{cport}";
        o.Coordinator.StorePath = Path.Combine(_dir, "coordinator.db");
        o.Nodes[0].AgentAddress = $"https://127.0.0.1:{aport}";
        o.Nodes[1].AgentAddress = $"https://127.0.0.1:{bport}";
        o.Agent.Node = "";
        o.Agent.DrbdVersion = "drbd84";
        o.Agent.StateDirectory = _dir;
        return o;
    }

    private T Own<T>(T owned)
        where T : IAsyncDisposable
    {
        _owned.Add(owned);
        return owned;
    }

    private Dictionary<string, string> AgentEnv(string node, int port)
    {
        var standIns = StandIns.Drbd84Node(node == "a" ? "Primary" : "Secondary", node == "a" ? "Secondary" : "Primary", aliasPresent: node == "a", node == "a" ? "active" : "inactive");
        _disposables.Add(standIns);
        var env = StandIns.AgentEnvironment(node, port, standIns);
        env["HaMesh__Agent__Listen"] = $"https://127.0.0.1:{port}";
        env["HaMesh__Tls__CertificateFile"] = Pem("agent-" + node);
        env["HaMesh__Tls__KeyFile"] = Key("agent-" + node);
        return env;
    }

    /// <summary>Coordinator and agents a and b, all with TLS; returns once both agents were seen reachable.</summary>
    private async Task<Cluster> StartAsync()
    {
        int cport = DaemonProcess.FreePort(), aport = DaemonProcess.FreePort(), bport = DaemonProcess.FreePort();
        var options = Options(cport, aport, bport);
        var config = ClusterFiles.Write(_dir, options);
        var coordinator = Own(DaemonProcess.Start("coordinator", DaemonProcess.Dll("src/Coordinator", "hamesh-coordinator"), ["--config", config]));
        await coordinator.WaitForListeningAsync(Ct);
        var address = $"https://127.0.0.1:{cport}";
        var viewer = Coordinator(address, "viewer");
        var aUp = WaitForEventAsync(viewer, "NodeReachable", "a");
        var bUp = WaitForEventAsync(viewer, "NodeReachable", "b");
        var a = Own(DaemonProcess.Start("agent-a", DaemonProcess.Dll("src/Agent", "hamesh-agent"), ["--config", config], AgentEnv("a", aport)));
        var b = Own(DaemonProcess.Start("agent-b", DaemonProcess.Dll("src/Agent", "hamesh-agent"), ["--config", config], AgentEnv("b", bport)));
        await Task.WhenAll(a.WaitForListeningAsync(Ct), b.WaitForListeningAsync(Ct));
        await Task.WhenAll(aUp, bUp).WaitAsync(TimeSpan.FromSeconds(60), Ct);
        return new Cluster(options, address, options.Nodes[0].AgentAddress, a);
    }

    private static async Task WaitForEventAsync(CoordinatorService.CoordinatorServiceClient client, string kind, string node)
    {
        using var watch = client.WatchEvents(new WatchEventsRequest(), cancellationToken: Ct);
        await foreach (var e in watch.ResponseStream.ReadAllAsync(Ct))
        {
            if (e.Kind == kind && e.Node == node)
            {
                return;
            }
        }
    }

    private Grpc.Net.Client.GrpcChannel Channel(string address, ClusterTls? tls)
    {
        // a generous connect timeout: a first TLS handshake on a loaded CI machine can take seconds
        var channel = GrpcChannels.Create(address, new TimingOptions { Lease = TimeSpan.FromSeconds(30) }, tls);
        _disposables.Add(channel);
        return channel;
    }

    private CoordinatorService.CoordinatorServiceClient Coordinator(string address, string cert, string ca = "ca") =>
        new(Channel(address, Material(cert, ca)));

    [Fact]
    public async Task TlsCluster_AgentsConnectAndReport_StatusAndHealthReachableWithValidCertificate()
    {
        var c = await StartAsync();

        var status = await Coordinator(c.CoordinatorAddress, "operator").GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: Ct);
        Assert.All(status.Nodes, n => Assert.Equal(Reachability.Reachable, n.Reachability));
        Assert.Equal(DrbdRole.Primary, status.Nodes.Single(n => n.Node == "a").LastReport.Resources.Single().Drbd.Role);

        var health = new Health.HealthClient(Channel(c.CoordinatorAddress, Material("viewer")));
        var reply = await health.CheckAsync(new HealthCheckRequest(), cancellationToken: Ct);
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, reply.Status);
        var agentHealth = new Health.HealthClient(Channel(c.AgentAddressA, Material("viewer")));
        Assert.NotEqual(HealthCheckResponse.Types.ServingStatus.Unknown, (await agentHealth.CheckAsync(new HealthCheckRequest(), cancellationToken: Ct)).Status);

        // the DRBD fence-peer handler reaches its agent over TLS with the agent's own certificate; without one it refuses to guess
        var drbd = new Dictionary<string, string> { ["DRBD_RESOURCE"] = c.Options.Resources[0].DrbdResource };
        await using (var bare = DaemonProcess.Start("fence-peer", DaemonProcess.Dll("src/FencePeer", "hamesh-fence-peer"), ["fence", "--agent", c.AgentAddressA], drbd))
        {
            Assert.Equal(1, await bare.WaitForExitAsync(TimeSpan.FromSeconds(60), Ct));
            Assert.Contains("pass --cacert", bare.Output);
        }

        await using var fence = DaemonProcess.Start("fence-peer", DaemonProcess.Dll("src/FencePeer", "hamesh-fence-peer"),
            ["fence", "--agent", c.AgentAddressA, "--cacert", Pem("ca"), "--cert", Pem("agent-a"), "--key", Key("agent-a")], drbd);
        await fence.WaitForExitAsync(TimeSpan.FromSeconds(60), Ct);
        Assert.Contains($"hamesh-fence-peer: {c.Options.Resources[0].DrbdResource}: ", fence.Output);
        Assert.DoesNotContain("failed (", fence.Output);
    }

    [Fact]
    public async Task TlsCoordinator_RejectsForeignCaCertificate_ClientWithoutCertificate_AndPlainText()
    {
        int cport = DaemonProcess.FreePort();
        var options = Options(cport, DaemonProcess.FreePort(), DaemonProcess.FreePort());
        var config = ClusterFiles.Write(_dir, options);
        var coordinator = Own(DaemonProcess.Start("coordinator", DaemonProcess.Dll("src/Coordinator", "hamesh-coordinator"), ["--config", config]));
        await coordinator.WaitForListeningAsync(Ct);
        var address = $"https://127.0.0.1:{cport}";
        var request = new GetClusterStatusRequest();

        // the control: a certificate of the cluster CA gets through
        await Coordinator(address, "viewer").GetClusterStatusAsync(request, cancellationToken: Ct);

        // a certificate signed by another CA: the handshake fails
        var foreign = await Assert.ThrowsAsync<RpcException>(() => new CoordinatorService.CoordinatorServiceClient(Channel(address, Material("foreign-operator")))
            .GetClusterStatusAsync(request, cancellationToken: Ct).ResponseAsync);
        AssertRejectedByTransport(foreign);

        // no client certificate at all (the server is still validated against the CA)
        var ca = ClusterTls.LoadCertificate(Pem("ca"));
        _disposables.Add(ca);
        using var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, cert, _, _) => ClusterTls.IsTrusted(cert as System.Security.Cryptography.X509Certificates.X509Certificate2, ca);
        using var bare = Grpc.Net.Client.GrpcChannel.ForAddress(address, new Grpc.Net.Client.GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = false });
        var noCert = await Assert.ThrowsAsync<RpcException>(() => new CoordinatorService.CoordinatorServiceClient(bare)
            .GetClusterStatusAsync(request, cancellationToken: Ct).ResponseAsync);
        AssertRejectedByTransport(noCert);

        // plain-text HTTP/2 to the TLS port
        var plain = await Assert.ThrowsAsync<RpcException>(() => new CoordinatorService.CoordinatorServiceClient(Channel($"http://127.0.0.1:{cport}", null))
            .GetClusterStatusAsync(request, cancellationToken: Ct).ResponseAsync);
        Assert.NotEqual(StatusCode.OK, plain.StatusCode);
    }

    [Fact]
    public async Task TlsCoordinator_RevokedCertificate_RefusedAtTheHandshake_OtherCertificatesOfTheCaStillServed()
    {
        Issue("operator-lost", ClusterRole.Operator, null);
        using var lost = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(File.ReadAllText(Pem("operator-lost")));
        int cport = DaemonProcess.FreePort();
        var options = Options(cport, DaemonProcess.FreePort(), DaemonProcess.FreePort());
        options.Tls.RevokedCertificates = ["serial=" + ClusterTls.Ids(lost).Serial];
        var config = ClusterFiles.Write(_dir, options);
        var coordinator = Own(DaemonProcess.Start("coordinator", DaemonProcess.Dll("src/Coordinator", "hamesh-coordinator"), ["--config", config]));
        await coordinator.WaitForListeningAsync(Ct);
        var address = $"https://127.0.0.1:{cport}";
        var request = new GetClusterStatusRequest();

        await Coordinator(address, "operator").GetClusterStatusAsync(request, cancellationToken: Ct);
        AssertRejectedByTransport(await Assert.ThrowsAsync<RpcException>(() => Coordinator(address, "operator-lost").GetClusterStatusAsync(request, cancellationToken: Ct).ResponseAsync));

        // hameshctl reading the same cluster file refuses a server whose certificate is retired: here the coordinator's own
        var retiredServer = Options(cport, DaemonProcess.FreePort(), DaemonProcess.FreePort());
        using var server = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(File.ReadAllText(Pem("coordinator")));
        retiredServer.Tls.CertificateFile = Pem("operator");
        retiredServer.Tls.KeyFile = Key("operator");
        var control = await HameshctlAsync("status", "--json", "--config", ClusterFiles.Write(_dir, retiredServer, "cli-control.json"), "--coordinator", address);
        Assert.True(control.Exit == 0, control.Output);
        retiredServer.Tls.RevokedCertificates = [ClusterTls.Ids(server).Sha256];
        var cliConfig = ClusterFiles.Write(_dir, retiredServer, "cli.json");
        var cli = await HameshctlAsync("status", "--json", "--config", cliConfig, "--coordinator", address);
        Assert.NotEqual(0, cli.Exit);
        Assert.DoesNotContain("\"nodes\"", cli.Output, StringComparison.Ordinal);
    }

    // With TLS 1.3 the server judges the client certificate after the client considers the handshake
    // done, so the refusal reaches the client as a failed connection (Unavailable) or a reset stream
    // (Internal), depending on timing; never as an answer from the service.
    private static void AssertRejectedByTransport(RpcException ex) =>
        Assert.True(ex.StatusCode is StatusCode.Unavailable or StatusCode.Internal, $"expected a transport refusal, got {ex.StatusCode}: {ex.Status.Detail}");

    [Fact]
    public async Task TlsCluster_RoleRules_DeniedPathsGetPermissionDenied_AndAnAuditEvent()
    {
        var c = await StartAsync();
        var viewer = Coordinator(c.CoordinatorAddress, "viewer");

        // a viewer may read, not switch over
        await viewer.GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: Ct);
        var switchover = await Assert.ThrowsAsync<RpcException>(() => viewer.SwitchoverAsync(new SwitchoverRequest { Resource = "db", Generation = 1, TargetNode = "b", Reason = "t" }, cancellationToken: Ct).ResponseAsync);
        Assert.Equal(StatusCode.PermissionDenied, switchover.StatusCode);
        Assert.Contains("only an operator", switchover.Status.Detail);

        // agent a's certificate speaking for b on the Connect stream
        var asA = Coordinator(c.CoordinatorAddress, "agent-a");
        using (var connect = asA.Connect(cancellationToken: Ct))
        {
            await connect.RequestStream.WriteAsync(new AgentMessage { Hello = new AgentHello { Node = "b", AgentVersion = "test" } }, Ct);
            var impersonation = await Assert.ThrowsAsync<RpcException>(async () =>
            {
                while (await connect.ResponseStream.MoveNext(Ct))
                {
                }
            });
            Assert.Equal(StatusCode.PermissionDenied, impersonation.StatusCode);
            Assert.Contains("own node", impersonation.Status.Detail);
        }

        // an operator (or anyone but the coordinator) may not promote an agent; reading its status is fine
        var agentAsOperator = new AgentService.AgentServiceClient(Channel(c.AgentAddressA, Material("operator")));
        await agentAsOperator.GetStatusAsync(new GetStatusRequest(), cancellationToken: Ct);
        var promote = await Assert.ThrowsAsync<RpcException>(() => agentAsOperator.PromoteAsync(new PromoteRequest { Resource = "db", Generation = 99, Reason = "t" }, cancellationToken: Ct).ResponseAsync);
        Assert.Equal(StatusCode.PermissionDenied, promote.StatusCode);
        Assert.Contains("only the coordinator", promote.Status.Detail);

        // the coordinator audited its denials
        var events = await Coordinator(c.CoordinatorAddress, "operator").ListEventsAsync(new ListEventsRequest { Limit = 1000 }, cancellationToken: Ct);
        var denied = events.Events.Where(e => e.Kind == "AccessDenied").Select(e => e.Message).ToList();
        Assert.Contains(denied, m => m.Contains("Switchover", StringComparison.Ordinal) && m.Contains("viewer", StringComparison.Ordinal));
        Assert.Contains(denied, m => m.Contains("Connect", StringComparison.Ordinal) && m.Contains("agent/a", StringComparison.Ordinal));
    }

    [Fact]
    public async Task TlsCluster_EveryDeniedRoleRule_PermissionDenied_CoordinatorAuditsItsOwn_AgentsLogTheirs()
    {
        var c = await StartAsync();
        WriteRolelessCertificate("roleless");
        var coordinatorAs = (string cert) => Coordinator(c.CoordinatorAddress, cert);
        var agentA = (string cert) => new AgentService.AgentServiceClient(Channel(c.AgentAddressA, Material(cert)));
        var denied = new List<(string Method, string Caller)>();

        async Task Denied<T>(Func<AsyncUnaryCall<T>> call, string reason, string method, string caller, bool audited = true)
        {
            var ex = await Assert.ThrowsAsync<RpcException>(() => call().ResponseAsync);
            Assert.True(ex.StatusCode == StatusCode.PermissionDenied, $"{method} as {caller}: expected PermissionDenied, got {ex.StatusCode}: {ex.Status.Detail}");
            Assert.Contains(reason, ex.Status.Detail, StringComparison.Ordinal);
            if (audited)
            {
                denied.Add((method, caller));
            }
        }

        // only operators: Switchover, SetMaintenance, ClaimIp, ForcePromote (a viewer, an agent, even the coordinator's own certificate are refused)
        var switchover = new SwitchoverRequest { Resource = "db", Generation = 1, TargetNode = "b" };
        await Denied(() => coordinatorAs("viewer").SwitchoverAsync(switchover, cancellationToken: Ct), "only an operator", "Switchover", "viewer");
        await Denied(() => coordinatorAs("agent-a").SwitchoverAsync(switchover, cancellationToken: Ct), "only an operator", "Switchover", "agent/a");
        await Denied(() => coordinatorAs("coordinator").SwitchoverAsync(switchover, cancellationToken: Ct), "only an operator", "Switchover", "coordinator");
        await Denied(() => coordinatorAs("viewer").SetMaintenanceAsync(new SetMaintenanceRequest { Resource = "db", Enabled = true }, cancellationToken: Ct), "only an operator", "SetMaintenance", "viewer");
        await Denied(() => coordinatorAs("agent-b").SetMaintenanceAsync(new SetMaintenanceRequest { Resource = "db", Enabled = true }, cancellationToken: Ct), "only an operator", "SetMaintenance", "agent/b");
        await Denied(() => coordinatorAs("viewer").ClaimIpAsync(new ClaimIpRequest { Resource = "db", Ip = "203.0.113.10", Node = "b" }, cancellationToken: Ct), "only an operator", "ClaimIp", "viewer");
        await Denied(() => coordinatorAs("agent-a").ClaimIpAsync(new ClaimIpRequest { Resource = "db", Ip = "203.0.113.10", Node = "a" }, cancellationToken: Ct), "only an operator", "ClaimIp", "agent/a");
        await Denied(() => coordinatorAs("viewer").ForcePromoteAsync(new ForcePromoteRequest { Resource = "db", Node = "b", IUnderstandDataLoss = true }, cancellationToken: Ct), "only an operator", "ForcePromote", "viewer");
        await Denied(() => coordinatorAs("agent-b").ForcePromoteAsync(new ForcePromoteRequest { Resource = "db", Node = "b", IUnderstandDataLoss = true }, cancellationToken: Ct), "only an operator", "ForcePromote", "agent/b");

        // the event log is for people (viewer, operator), the Connect stream and FencePeer for agents, on their own behalf
        await Denied(() => coordinatorAs("agent-a").ListEventsAsync(new ListEventsRequest(), cancellationToken: Ct), "only a viewer or an operator", "ListEvents", "agent/a");
        await Denied(() => coordinatorAs("agent-a").GetIpAsync(new GetIpRequest { Ip = "203.0.113.10" }, cancellationToken: Ct), "only a viewer or an operator", "GetIp", "agent/a");
        var fence = new FencePeerRequest { Resource = "db", Generation = 1, RequestingNode = "b", PeerNode = "a" };
        await Denied(() => coordinatorAs("agent-a").FencePeerAsync(fence, cancellationToken: Ct), "only fence on its own behalf", "FencePeer", "agent/a");
        await Denied(() => coordinatorAs("operator").FencePeerAsync(fence, cancellationToken: Ct), "only an agent", "FencePeer", "operator");
        await Denied(() => coordinatorAs("roleless").GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: Ct), "carries no HaMesh role", "GetClusterStatus", "(no role)");
        await ConnectDeniedAsync(coordinatorAs("operator"), [new AgentMessage { Hello = new AgentHello { Node = "a" } }], "only an agent");
        denied.Add(("Connect", "operator"));
        await ConnectDeniedAsync(coordinatorAs("agent-a"), [new AgentMessage { Hello = new AgentHello { Node = "a", AgentVersion = "test" } }, new AgentMessage { Report = new NodeStatus { Node = "b" } }], "own node");
        denied.Add(("Connect", "agent/a"));

        // agents: only the coordinator promotes or demotes; Outdate from the coordinator or the peer; leases only from the peer, for itself
        await Denied(() => agentA("operator").PromoteAsync(new PromoteRequest { Resource = "db", Generation = 99 }, cancellationToken: Ct), "only the coordinator", "Promote", "operator", audited: false);
        await Denied(() => agentA("viewer").PromoteAsync(new PromoteRequest { Resource = "db", Generation = 99, Force = true }, cancellationToken: Ct), "only the coordinator", "Promote", "viewer", audited: false);
        await Denied(() => agentA("agent-b").PromoteAsync(new PromoteRequest { Resource = "db", Generation = 99 }, cancellationToken: Ct), "only the coordinator", "Promote", "agent/b", audited: false);
        await Denied(() => agentA("agent-b").DemoteAsync(new DemoteRequest { Resource = "db", Generation = 99 }, cancellationToken: Ct), "only the coordinator", "Demote", "agent/b", audited: false);
        await Denied(() => agentA("operator").DemoteAsync(new DemoteRequest { Resource = "db", Generation = 99 }, cancellationToken: Ct), "only the coordinator", "Demote", "operator", audited: false);
        await Denied(() => agentA("operator").OutdateAsync(new OutdateRequest { Resource = "db", Generation = 99 }, cancellationToken: Ct), "only the coordinator or the peer agent", "Outdate", "operator", audited: false);
        await Denied(() => agentA("agent-a").OutdateAsync(new OutdateRequest { Resource = "db", Generation = 99 }, cancellationToken: Ct), "only the coordinator or the peer agent", "Outdate", "agent/a", audited: false);
        var renew = new RenewLeaseRequest { Resource = "db", Generation = 1, Requester = "b", Lease = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(TimeSpan.FromSeconds(2)) };
        await Denied(() => agentA("coordinator").RenewLeaseAsync(renew, cancellationToken: Ct), "only the peer agent", "RenewLease", "coordinator", audited: false);
        await Denied(() => agentA("agent-a").RenewLeaseAsync(renew, cancellationToken: Ct), "only the peer agent", "RenewLease", "agent/a", audited: false);
        await Denied(() => agentA("agent-b").RenewLeaseAsync(new RenewLeaseRequest(renew) { Requester = "a" }, cancellationToken: Ct), "may only renew for itself", "RenewLease", "agent/b", audited: false);
        await Denied(() => agentA("roleless").GetStatusAsync(new GetStatusRequest(), cancellationToken: Ct), "carries no HaMesh role", "GetStatus", "(no role)", audited: false);

        // the allowed side of the same rules: a viewer reads everything read-only
        await coordinatorAs("viewer").GetClusterStatusAsync(new GetClusterStatusRequest(), cancellationToken: Ct);
        await coordinatorAs("viewer").ListEventsAsync(new ListEventsRequest(), cancellationToken: Ct);
        await agentA("viewer").GetStatusAsync(new GetStatusRequest(), cancellationToken: Ct);
        await agentA("viewer").PingAsync(new PingRequest { Nonce = "v" }, cancellationToken: Ct);

        // every coordinator denial is an AccessDenied event naming the method and the caller
        var events = await coordinatorAs("operator").ListEventsAsync(new ListEventsRequest { Limit = 1000 }, cancellationToken: Ct);
        var audit = events.Events.Where(e => e.Kind == "AccessDenied").Select(e => e.Message).ToList();
        foreach (var (method, caller) in denied)
        {
            Assert.Contains(audit, m => m.Contains("CoordinatorService/" + method + " ", StringComparison.Ordinal) && m.Contains("denied for " + caller + ":", StringComparison.Ordinal));
        }

        // agent denials are audited in the agent's own log (warning, event id 3101)
        var agentLog = c.AgentA.Output;
        foreach (var (method, caller) in new[] { ("Promote", "operator"), ("Demote", "agent/b"), ("Outdate", "operator"), ("RenewLease", "coordinator"), ("GetStatus", "(no role)") })
        {
            Assert.Contains($"access denied: /hamesh.v1.AgentService/{method} for {caller}", agentLog, StringComparison.Ordinal);
        }
    }

    private static async Task ConnectDeniedAsync(CoordinatorService.CoordinatorServiceClient client, AgentMessage[] messages, string reason)
    {
        using var connect = client.Connect(cancellationToken: Ct);
        var ex = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            foreach (var m in messages)
            {
                await connect.RequestStream.WriteAsync(m, Ct);
            }

            while (await connect.ResponseStream.MoveNext(Ct))
            {
            }
        });
        Assert.Equal(StatusCode.PermissionDenied, ex.StatusCode);
        Assert.Contains(reason, ex.Status.Detail, StringComparison.Ordinal);
    }

    /// <summary>A certificate of the cluster CA with no hamesh://role/ SAN URI at all.</summary>
    private void WriteRolelessCertificate(string name)
    {
        var now = TimeProvider.System.GetUtcNow();
        using var ca = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(_ca.CertificatePem, _ca.KeyPem);
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=someone, O=HaMesh", key, System.Security.Cryptography.HashAlgorithmName.SHA256);
        var san = new System.Security.Cryptography.X509Certificates.SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new System.Security.Cryptography.X509Certificates.X509EnhancedKeyUsageExtension([new System.Security.Cryptography.Oid("1.3.6.1.5.5.7.3.2")], false));
        using var cert = request.Create(ca, now.AddMinutes(-5), now.AddDays(1), [0x12, 0x34, 0x56, 0x78]);
        ClusterCertificates.Write(Certs, name, new PemPair(cert.ExportCertificatePem(), key.ExportPkcs8PrivateKeyPem()));
    }

    [Fact]
    public async Task Hameshctl_OverTls_OperatorReadsStatus_ViewerSwitchoverRefused_FromClusterFileOrFlags()
    {
        int cport = DaemonProcess.FreePort();
        var options = Options(cport, DaemonProcess.FreePort(), DaemonProcess.FreePort());
        var config = ClusterFiles.Write(_dir, options);
        var coordinator = Own(DaemonProcess.Start("coordinator", DaemonProcess.Dll("src/Coordinator", "hamesh-coordinator"), ["--config", config]));
        await coordinator.WaitForListeningAsync(Ct);
        var address = $"https://127.0.0.1:{cport}";

        var ok = await HameshctlAsync("status", "--json", "--coordinator", address, "--cacert", Pem("ca"), "--cert", Pem("operator"), "--key", Key("operator"));
        Assert.True(ok.Exit == 0, ok.Output);
        Assert.Contains("\"nodes\"", ok.Output);

        // the cluster file's Tls section (here the coordinator's own certificate) is used when no flags are given
        var fromFile = await HameshctlAsync("status", "--json", "--config", config);
        Assert.True(fromFile.Exit == 0, fromFile.Output);

        var denied = await HameshctlAsync("switchover", "db", "--to", "b", "--no-wait", "--coordinator", address, "--cacert", Pem("ca"), "--cert", Pem("viewer"), "--key", Key("viewer"));
        Assert.Equal(1, denied.Exit);
        Assert.Contains("PermissionDenied", denied.Output);
        Assert.Contains("only an operator", denied.Output);
    }

    private async Task<(int Exit, string Output)> HameshctlAsync(params string[] args)
    {
        await using var cli = DaemonProcess.Start("hameshctl", DaemonProcess.Dll("src/Cli", "hameshctl"), [.. args, "--timeout", "30"]);
        var exit = await cli.WaitForExitAsync(TimeSpan.FromSeconds(60), Ct);
        return (exit, cli.Output);
    }
}
