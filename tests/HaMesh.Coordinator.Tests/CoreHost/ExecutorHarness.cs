using HaMesh.Coordinator.Cloud;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Membership;
using HaMesh.Coordinator.Operations;
using HaMesh.Coordinator.Ovh;
using HaMesh.Coordinator.Store;
using HaMesh.FakeOvh;
using HaMesh.Shared.Configuration;
using HaMesh.Testing;
using HaMesh.Testing.Hosts;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace HaMesh.Coordinator.Tests.CoreHost;

/// <summary>
/// The coordinator's real composition (TestServer) with fake agents and the fake OVH API over real HTTP
/// on loopback, all on one <see cref="FakeTimeProvider"/>. The real OVH client and move workflow run.
/// </summary>
internal sealed class ExecutorHarness : IAsyncDisposable
{
    public const string Ip = "203.0.113.10/32";
    private readonly WebApplication _ovhApp;
    private readonly HttpClient _http = new();
    private readonly string _storePath = Path.Combine(Path.GetTempPath(), $"hamesh-exec-{Guid.NewGuid():N}.db");

    private ExecutorHarness(FakeTimeProvider time, FakeOvhState ovh, FakeOvhApi api, WebApplication ovhApp)
    {
        Time = time;
        Ovh = ovh;
        Api = api;
        _ovhApp = ovhApp;
        Agents.RoutedNode = ip => Ovh.RoutedTo(ip) switch
        {
            "ns1.ip-1-2-3.eu" => "a",
            "ns2.ip-1-2-3.eu" => "b",
            _ => null,
        };
    }

    public FakeTimeProvider Time { get; }

    public FakeOvhState Ovh { get; }

    public FakeOvhApi Api { get; }

    public FakeAgents Agents { get; } = new();

    /// <summary>The coordinator's clock: <see cref="Time"/>, telling the test each timer it creates.</summary>
    public TimerSignalingTimeProvider Timers => _timers ??= new TimerSignalingTimeProvider(Time);

    private TimerSignalingTimeProvider? _timers;

    public HaMeshOptions Options { get; } = TestConfig.TwoNodes();

    public CoordinatorTestHost? Host { get; private set; }

    public int Posts => Api.Requests.Count(r => r.StartsWith("POST ", StringComparison.Ordinal));

    public static async Task<ExecutorHarness> StartAsync(TimeSpan taskDuration, Action<HaMeshOptions>? configure = null)
    {
        var time = new FakeTimeProvider(CoordinatorTestHost.T0);
        var state = new FakeOvhState(time, taskDuration, null);
        state.Seed("""{"ips":{"203.0.113.10/32":"ns1.ip-1-2-3.eu"},"servers":["ns1.ip-1-2-3.eu","ns2.ip-1-2-3.eu"]}""");
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var api = new FakeOvhApi(state, new FakeOvhOptions("ak", "as", "ck", [("GET", "/ip/*"), ("POST", "/ip/*")], 1_000_000, TimeSpan.FromSeconds(120)), time);
        api.Map(app);
        await app.StartAsync();
        var harness = new ExecutorHarness(time, state, api, app);
        configure?.Invoke(harness.Options);
        await harness.StartCoordinatorAsync();
        return harness;
    }

    /// <summary>Starts a coordinator on the harness's store (again, after <see cref="CrashCoordinatorAsync"/>).</summary>
    public async Task StartCoordinatorAsync()
    {
        Options.Coordinator.StorePath = _storePath;
        var ovhBase = new Uri(_ovhApp.Urls.First() + "/1.0");
        Host = await CoordinatorTestHost.StartAsync(Options, Time, services =>
        {
            services.AddSingleton<TimeProvider>(Timers);
            services.AddSingleton<IAgentCommands>(Agents);
            services.AddSingleton<ICloudIpProvider>(sp => new OvhCloudIpProvider(
                new OvhClient(_http, ovhBase, new OvhCredentials("ak", "as", "ck"), Time, sp.GetRequiredService<IEventSink>(), () => 0.5),
                // poll interval zero: the move workflow re-reads OVH at once instead of waiting on the fake
                // clock, which these tests advance only for the steps they are about
                sp.GetRequiredService<IEventSink>(), Time, TimeSpan.Zero, TimeSpan.FromMinutes(10)));
        });
    }

    /// <summary>Stops the coordinator mid-operation (its operations are cancelled where they stand; the store keeps the in-flight record).</summary>
    public async Task CrashCoordinatorAsync()
    {
        await Host!.DisposeAsync();
        Host = null;
    }

    public SqliteStore Store => Host!.Get<SqliteStore>();

    /// <summary>Feeds the coordinator a fresh report from each named node (as their Connect streams would).</summary>
    public void Report(params string[] nodes)
    {
        foreach (var node in nodes)
        {
            Host!.Get<NodeRegistry>().Accept(node, Agents.Report(node));
        }
    }

    /// <summary>Records <paramref name="primary"/> as primary at generation 1 and makes the fake agents agree.</summary>
    public void Bootstrap(string primary = "a")
    {
        Store.AdvanceGeneration("db", 0, primary, new EventRecord("Adopted", "test bootstrap", "db", primary), isFailover: false);
        // the coordinator knows where the IP is (as after its first read), so the decision loop has nothing to repair
        Host!.Get<IpRoutingCache>().Record(new Protocol.V1.FailoverIpStatus { Ip = Ip, RoutedToNode = primary, RoutedToService = Options.FindNode(primary)!.ServiceName });
        Ovh.Seed($$"""{"ips":{"{{Ip}}":"{{Options.FindNode(primary)!.ServiceName}}"},"servers":[]}""");
        foreach (var (name, node) in Agents.Nodes)
        {
            node.Generation = 1;
            node.Role = name == primary ? Protocol.V1.DrbdRole.Primary : Protocol.V1.DrbdRole.Secondary;
        }
    }

    /// <summary>Waits (on the store's change signal, no polling) for the first event matching <paramref name="match"/>.</summary>
    public async Task<StoredEvent> WaitForEventAsync(Func<StoredEvent, bool> match, CancellationToken ct)
    {
        var log = Host!.Get<IEventLog>();
        using var guard = CancellationTokenSource.CreateLinkedTokenSource(ct);
        guard.CancelAfter(TimeSpan.FromSeconds(30));
        while (true)
        {
            var changed = log.WaitForChangeAsync(guard.Token);
            if (log.List(0).FirstOrDefault(match) is { } hit)
            {
                return hit;
            }

            await changed;
        }
    }

    public Task<StoredEvent> WaitForTerminalAsync(string operation, CancellationToken ct) =>
        WaitForEventAsync(e => e.Record.Attributes.GetValueOrDefault("operation") == operation && e.Record.Attributes.GetValueOrDefault("terminal") == "true", ct);

    /// <summary>
    /// The event kinds so far, without OVH call records and without the failure detector's NodeReachable /
    /// NodeUnreachable: the detector runs on its own loop and its first pass may land anywhere in an operation.
    /// </summary>
    public IReadOnlyList<string> Kinds() => [.. Host!.Get<IEventLog>().List(0).Select(e => e.Record.Kind).Where(k => k is not ("OvhCall" or "NodeReachable" or "NodeUnreachable"))];

    public async ValueTask DisposeAsync()
    {
        if (Host is not null)
        {
            await Host.DisposeAsync();
        }

        await _ovhApp.DisposeAsync();
        _http.Dispose();
        foreach (var suffix in new[] { "", "-wal", "-shm" })
        {
            File.Delete(_storePath + suffix);
        }
    }
}
