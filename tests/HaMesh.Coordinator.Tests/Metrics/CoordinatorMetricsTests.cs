using HaMesh.Coordinator.Core;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Membership;
using HaMesh.Coordinator.Metrics;
using HaMesh.Coordinator.Store;
using HaMesh.Protocol.V1;
using HaMesh.Testing;
using HaMesh.Testing.Hosts;
using Microsoft.AspNetCore.TestHost;

namespace HaMesh.Coordinator.Tests.Metrics;

public sealed class CoordinatorMetricsTests
{
    private static async Task<CoordinatorTestHost> StartAsync()
    {
        var options = TestConfig.TwoNodes();
        options.Coordinator.MetricsListen = "http://127.0.0.1:0";
        return await CoordinatorTestHost.StartAsync(options);
    }

    private static async Task<string> ScrapeAsync(CoordinatorTestHost host, CancellationToken ct)
    {
        using var client = host.App.GetTestClient();
        using var response = await client.GetAsync(new Uri("/metrics", UriKind.Relative), ct);
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType, StringComparison.Ordinal);
        return await response.Content.ReadAsStringAsync(ct);
    }

    private static ValueTask<StoredEvent> AppendAsync(SqliteStore store, string kind, string resource = "db", Dictionary<string, string>? attributes = null) =>
        store.AppendAsync(new EventRecord(kind, "test", resource) { Attributes = attributes ?? [] }, CancellationToken.None);

    private static Dictionary<string, string> OvhCall(string method, string path, string status, string ms) =>
        new() { ["method"] = method, ["path"] = path, ["status"] = status, ["ms"] = ms };

    [Fact]
    public async Task Scrape_FailoversFromEventLog_CountedByOutcomeWithPhaseLatencies()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await StartAsync();
        var store = host.Get<SqliteStore>();

        // completed failover; failover whose promote failed; switchover reported failed by its own event
        await AppendAsync(store, "FailoverStarted");
        await AppendAsync(store, "FailoverCompleted", attributes: new() { ["decided_ms"] = "120", ["promoted_ms"] = "900", ["verified_ms"] = "7000" });
        await AppendAsync(store, "FailoverStarted", "web");
        await AppendAsync(store, "PromoteFailed", "web");
        await AppendAsync(store, "OperationFailed", "web");   // same failure, counted once
        await AppendAsync(store, "SwitchoverStarted");
        await AppendAsync(store, "SwitchoverFailed");
        var text = await ScrapeAsync(host, ct);

        Assert.Contains("hamesh_coordinator_operations_started_total{operation=\"failover\"} 2\n", text);
        Assert.Contains("hamesh_coordinator_operations_total{operation=\"failover\",outcome=\"completed\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_operations_total{operation=\"failover\",outcome=\"failed\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_operations_total{operation=\"switchover\",outcome=\"failed\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_operations_total{operation=\"switchover\",outcome=\"completed\"} 0\n", text);
        Assert.Contains("hamesh_coordinator_failover_phase_seconds_sum{phase=\"decided\"} 0.12\n", text);
        Assert.Contains("hamesh_coordinator_failover_phase_seconds_bucket{phase=\"decided\",le=\"0.1\"} 0\n", text);
        Assert.Contains("hamesh_coordinator_failover_phase_seconds_bucket{phase=\"decided\",le=\"0.25\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_failover_phase_seconds_sum{phase=\"verified\"} 7\n", text);
        Assert.Contains("hamesh_coordinator_events_total{kind=\"PromoteFailed\",severity=\"info\"} 1\n", text);

        // a second scrape counts only what is new
        await AppendAsync(store, "FailoverStarted");
        await AppendAsync(store, "FailoverCompleted");
        var again = await ScrapeAsync(host, ct);
        Assert.Contains("hamesh_coordinator_operations_total{operation=\"failover\",outcome=\"completed\"} 2\n", again);
        Assert.Contains("hamesh_coordinator_operations_started_total{operation=\"failover\"} 3\n", again);
    }

    [Fact]
    public async Task Scrape_ExecutorTerminalEvents_CountedByTheirOutcome()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await StartAsync();
        var store = host.Get<SqliteStore>();

        await AppendAsync(store, "SwitchoverStarted");
        await AppendAsync(store, "SwitchoverRolledBack", attributes: new() { ["terminal"] = "true", ["outcome"] = "rolledback" });
        await AppendAsync(store, "FailoverStarted");
        await AppendAsync(store, "FailoverRoutedUnverified", attributes: new() { ["terminal"] = "true", ["outcome"] = "routedunverified" });
        await AppendAsync(store, "FailoverStarted");
        await AppendAsync(store, "FailoverCompleted", attributes: new() { ["terminal"] = "true", ["outcome"] = "completed", ["decided_ms"] = "100", ["promoted_ms"] = "300", ["verified_ms"] = "2500" });
        var text = await ScrapeAsync(host, ct);

        Assert.Contains("hamesh_coordinator_operations_total{operation=\"switchover\",outcome=\"rolledback\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_operations_total{operation=\"failover\",outcome=\"routedunverified\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_operations_total{operation=\"failover\",outcome=\"completed\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_operations_total{operation=\"failover\",outcome=\"failed\"} 0\n", text);
    }

    [Fact]
    public async Task Scrape_OvhCallEvents_CountLatencyAndErrorsByStatusWithoutIpLabels()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await StartAsync();
        var store = host.Get<SqliteStore>();

        await AppendAsync(store, "OvhCall", "", OvhCall("GET", "/ip/203.0.113.10%2F32", "200", "40"));
        await AppendAsync(store, "OvhCall", "", OvhCall("GET", "/ip/203.0.113.10%2F32/task?function=genericMoveFloatingIp&status=todo", "200", "60"));
        await AppendAsync(store, "OvhCall", "", OvhCall("POST", "/ip/203.0.113.10%2F32/move", "500", "300"));
        await AppendAsync(store, "OvhCall", "", OvhCall("POST", "/ip/203.0.113.10%2F32/move", "0", "30000"));
        await AppendAsync(store, "OvhMoveCompleted", "", new() { ["outcome"] = "Moved" });
        var text = await ScrapeAsync(host, ct);

        Assert.Contains("hamesh_coordinator_ovh_calls_total{method=\"GET\",operation=\"ip\",status=\"200\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_ovh_calls_total{method=\"GET\",operation=\"task\",status=\"200\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_ovh_calls_total{method=\"POST\",operation=\"move\",status=\"500\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_ovh_calls_total{method=\"POST\",operation=\"move\",status=\"none\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_ovh_errors_total{status=\"500\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_ovh_errors_total{status=\"none\"} 1\n", text);
        Assert.DoesNotContain("hamesh_coordinator_ovh_errors_total{status=\"200\"}", text);
        Assert.Contains("hamesh_coordinator_ovh_call_duration_seconds_sum{method=\"POST\",operation=\"move\"} 30.3\n", text);
        Assert.Contains("hamesh_coordinator_ovh_call_duration_seconds_count{method=\"GET\",operation=\"ip\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_ovh_moves_total{outcome=\"Moved\"} 1\n", text);
        Assert.DoesNotContain("203.0.113", text);
    }

    [Fact]
    public async Task Scrape_EventsBeforeStart_NotCounted()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await StartAsync();
        var store = host.Get<SqliteStore>();
        await AppendAsync(store, "FailoverStarted");

        // a second metrics instance over the same store starts at the log's end, as a restarted coordinator does
        var fresh = new CoordinatorMetrics(host.Get<Microsoft.Extensions.Options.IOptions<HaMesh.Shared.Configuration.HaMeshOptions>>(), host.Get<NodeRegistry>(), store);
        await AppendAsync(store, "FailoverStarted");
        using var stream = new MemoryStream();
        await fresh.Registry.CollectAndExportAsTextAsync(stream, ct);
        var text = System.Text.Encoding.UTF8.GetString(stream.ToArray());

        Assert.Contains("hamesh_coordinator_operations_started_total{operation=\"failover\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_operations_started_total{operation=\"failover\"} 2\n", await ScrapeAsync(host, ct));
    }

    [Fact]
    public async Task Scrape_ReportAgeGenerationPrimaryAndLeaseDecisions()
    {
        var ct = TestContext.Current.CancellationToken;
        var options = TestConfig.TwoNodes();
        options.Coordinator.MetricsListen = "http://127.0.0.1:0";
        await using var host = await CoordinatorTestHost.StartAsync(options, seed: store =>
        {
            store.AdvanceGeneration("db", 0, "a", new EventRecord("Bootstrap", "t", "db"), isFailover: false);
            store.AdvanceGeneration("db", 1, "a", new EventRecord("Bootstrap", "t", "db"), isFailover: false);
        });
        host.Get<NodeRegistry>().Accept("a", new NodeStatus { Node = "a" });
        host.Time.Advance(TimeSpan.FromMilliseconds(1500));
        var core = host.Get<CoordinatorCoreHost>();
        core.LeaseRequest("a", new LeaseRequest { Resource = "db", Generation = 2 });
        core.LeaseRequest("a", new LeaseRequest { Resource = "db", Generation = 1 });
        core.LeaseRequest("b", new LeaseRequest { Resource = "db", Generation = 2 });

        var text = await ScrapeAsync(host, ct);

        Assert.Contains("hamesh_coordinator_report_age_seconds{node=\"a\"} 1.5\n", text);
        Assert.DoesNotContain("hamesh_coordinator_report_age_seconds{node=\"b\"}", text);
        Assert.Contains("hamesh_coordinator_node_reachable{node=\"a\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_node_reachable{node=\"b\"} 0\n", text);
        Assert.Contains("hamesh_coordinator_generation{resource=\"db\"} 2\n", text);
        Assert.Contains("hamesh_coordinator_primary{resource=\"db\",node=\"a\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_primary{resource=\"db\",node=\"b\"} 0\n", text);
        Assert.Contains("hamesh_coordinator_maintenance{resource=\"db\"} 0\n", text);
        Assert.Contains("hamesh_coordinator_lease_renewals_total{node=\"a\",result=\"granted\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_lease_renewals_total{node=\"a\",result=\"denied\"} 1\n", text);
        Assert.Contains("hamesh_coordinator_lease_renewals_total{node=\"b\",result=\"denied\"} 1\n", text);
    }

    [Theory]
    [InlineData("/ip/1.2.3.4%2F32", "ip")]
    [InlineData("/ip/1.2.3.4%2F32/move", "move")]
    [InlineData("/ip/1.2.3.4%2F32/task/17", "task")]
    [InlineData("/ip/1.2.3.4%2F32/task?function=genericMoveFloatingIp&status=init", "task")]
    [InlineData("/auth/time", "other")]
    public void OvhOperation_Path_BoundedLabel(string path, string expected) => Assert.Equal(expected, EventLogMetrics.OvhOperation(path));
}
