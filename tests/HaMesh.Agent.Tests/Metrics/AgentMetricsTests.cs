using HaMesh.Agent.Drbd;
using HaMesh.Agent.Metrics;
using HaMesh.Protocol.V1;
using HaMesh.Testing;
using HaMesh.Testing.Hosts;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;

namespace HaMesh.Agent.Tests.Metrics;

public sealed class AgentMetricsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-metrics-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private async Task<AgentTestHost> StartAsync()
    {
        var options = TestConfig.TwoNodes();
        options.Agent.StateDirectory = _dir;
        options.Agent.MetricsListen = "http://127.0.0.1:0";
        await File.WriteAllTextAsync(Path.Combine(_dir, "db.generation"), "7\n", TestContext.Current.CancellationToken);
        return await AgentTestHost.StartAsync(options);
    }

    private static async Task<string> ScrapeAsync(AgentTestHost host, CancellationToken ct)
    {
        using var client = host.App.GetTestClient();
        return await client.GetStringAsync(new Uri("/metrics", UriKind.Relative), ct);
    }

    private static DrbdResourceStatus Syncing() => new()
    {
        Name = "r0",
        Present = true,
        Role = DrbdRole.Primary,
        DiskState = DiskState.UpToDate,
        Peers =
        {
            new PeerConnectionStatus
            {
                PeerName = "b", ConnectionState = ConnectionState.Connected, ReplicationState = ReplicationState.SyncSource,
                PeerDiskState = DiskState.Inconsistent, OutOfSyncKib = 2048,
            },
        },
    };

    [Fact]
    public async Task Scrape_DrbdStateGenerationAndLease_AsStateSets()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await StartAsync();
        host.Drbd.Snapshot = new DrbdSnapshot(DrbdVersionFamily.V84, "8.4.11", new Dictionary<string, DrbdResourceStatus> { ["r0"] = Syncing() }, []);

        var text = await ScrapeAsync(host, ct);

        Assert.Contains("hamesh_agent_drbd_role{resource=\"db\",role=\"Primary\"} 1\n", text);
        Assert.Contains("hamesh_agent_drbd_role{resource=\"db\",role=\"Secondary\"} 0\n", text);
        Assert.DoesNotContain("role=\"Unspecified\"", text);
        Assert.Contains("hamesh_agent_drbd_disk_state{resource=\"db\",state=\"UpToDate\"} 1\n", text);
        Assert.Contains("hamesh_agent_drbd_disk_state{resource=\"db\",state=\"Outdated\"} 0\n", text);
        Assert.Contains("hamesh_agent_drbd_connection_state{resource=\"db\",peer=\"b\",state=\"Connected\"} 1\n", text);
        Assert.Contains("hamesh_agent_drbd_connection_state{resource=\"db\",peer=\"b\",state=\"StandAlone\"} 0\n", text);
        Assert.Contains("hamesh_agent_drbd_replication_state{resource=\"db\",peer=\"b\",state=\"SyncSource\"} 1\n", text);
        Assert.Contains("hamesh_agent_drbd_out_of_sync_bytes{resource=\"db\",peer=\"b\"} 2097152\n", text);
        Assert.Contains("hamesh_agent_drbd_present{resource=\"db\"} 1\n", text);
        Assert.Contains("hamesh_agent_generation{resource=\"db\"} 7\n", text);
        Assert.Contains("hamesh_agent_coordinator_connected 0\n", text);
        Assert.Contains("hamesh_agent_lease_renewals_total{resource=\"db\",grantor=\"coordinator\",result=\"granted\"} 0\n", text);
        Assert.Contains("hamesh_agent_lease_expiries_total{resource=\"db\"} 0\n", text);
    }

    [Fact]
    public async Task Scrape_ResourceUnknownToDrbd_NotPresentRoleUnknown()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await StartAsync();

        var text = await ScrapeAsync(host, ct);

        Assert.Contains("hamesh_agent_drbd_present{resource=\"db\"} 0\n", text);
        Assert.Contains("hamesh_agent_drbd_role{resource=\"db\",role=\"Unknown\"} 1\n", text);
        Assert.Contains("hamesh_agent_drbd_role{resource=\"db\",role=\"Primary\"} 0\n", text);
    }

    [Fact]
    public async Task LeaseCounters_RenewalsExpiriesAndSelfFences_CountedByLabel()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await StartAsync();
        var metrics = host.App.Services.GetRequiredService<AgentMetrics>();
        metrics.LeaseRenewal("db", "peer", granted: true);
        metrics.LeaseRenewal("db", "peer", granted: true);
        metrics.LeaseRenewal("db", "coordinator", granted: false);
        metrics.LeaseExpired("db");
        metrics.SelfFenced("db", fenced: true);

        var text = await ScrapeAsync(host, ct);

        Assert.Contains("hamesh_agent_lease_renewals_total{resource=\"db\",grantor=\"peer\",result=\"granted\"} 2\n", text);
        Assert.Contains("hamesh_agent_lease_renewals_total{resource=\"db\",grantor=\"coordinator\",result=\"denied\"} 1\n", text);
        Assert.Contains("hamesh_agent_lease_expiries_total{resource=\"db\"} 1\n", text);
        Assert.Contains("hamesh_agent_self_fences_total{resource=\"db\",result=\"fenced\"} 1\n", text);
    }
}
