using HaMesh.Coordinator.Cloud;
using HaMesh.Coordinator.Core;
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
/// The coordinator's real composition (TestServer, <see cref="CoordinatorCoreHost"/> running the core) with fake agents
/// and the fake OVH API over real HTTP on loopback, all on one <see cref="FakeTimeProvider"/>. The real OVH client runs.
/// Time moves only when a test says so: <see cref="RunUntilAsync"/> lets everything the coordinator started finish
/// (<see cref="CoordinatorCoreHost.WhenSettledAsync"/>), then advances the clock by one <see cref="Step"/>.
/// </summary>
internal sealed class CoreHostHarness : IAsyncDisposable
{
    public const string Ip = "203.0.113.10/32";
    private readonly WebApplication _ovhApp;
    private readonly HttpClient _http = new();
    private readonly string _storePath = Path.Combine(Path.GetTempPath(), $"hamesh-core-{Guid.NewGuid():N}.db");

    private CoreHostHarness(FakeTimeProvider time, FakeOvhState ovh, FakeOvhApi api, WebApplication ovhApp)
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

        // One step of the clock is the heartbeat; the OVH poll is one step and the reply timeout (1 s) four, so every
        // wake of the core falls on a step and each step wakes it at most once (deterministic timings).
        Options.Cluster.Timings.OvhPollInterval = Options.Cluster.Timings.Heartbeat;
        // An operation times out after OvhTimeout + 1 min: keep that short enough to drive to.
        Options.Cluster.Timings.OvhTimeout = TimeSpan.FromSeconds(5);
    }

    public FakeTimeProvider Time { get; }

    public FakeOvhState Ovh { get; }

    public FakeOvhApi Api { get; }

    public FakeAgents Agents { get; } = new();

    public HaMeshOptions Options { get; } = TestConfig.TwoNodes();

    public CoordinatorTestHost? Host { get; private set; }

    public CoordinatorCoreHost Core => Host!.Get<CoordinatorCoreHost>();

    public SqliteStore Store => Host!.Get<SqliteStore>();

    /// <summary>How far <see cref="RunUntilAsync"/> moves the clock per step: the heartbeat.</summary>
    public TimeSpan Step => Options.Cluster.Timings.Heartbeat;

    /// <summary>An operation not finished after this long (from its start or resumption) is abandoned.</summary>
    public TimeSpan OperationTimeout => Core.Config.OperationTimeout;

    public int Posts => Api.Requests.Count(r => r.StartsWith("POST ", StringComparison.Ordinal));

    /// <summary>
    /// Starts the fake OVH API and a coordinator. <paramref name="bootstrap"/> (null: none) is recorded primary at
    /// <paramref name="generation"/> in the store before the coordinator starts (its core loads the store once, at start),
    /// the fake agents and OVH agree with it; <paramref name="seed"/> writes whatever else the store should hold by then, and
    /// <paramref name="agents"/> sets the fake agents up before the coordinator can send them anything.
    /// </summary>
    public static async Task<CoreHostHarness> StartAsync(TimeSpan taskDuration, Action<HaMeshOptions>? configure = null, string? bootstrap = "a", ulong generation = 1, Action<SqliteStore>? seed = null, Action<FakeAgents>? agents = null)
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
        var harness = new CoreHostHarness(time, state, api, app);
        configure?.Invoke(harness.Options);
        await harness.StartCoordinatorAsync(store =>
        {
            if (bootstrap is not null)
            {
                harness.Bootstrap(store, bootstrap, generation);
            }

            seed?.Invoke(store);
            agents?.Invoke(harness.Agents);
        });
        return harness;
    }

    /// <summary>Starts a coordinator on the harness's store (again, after <see cref="CrashCoordinatorAsync"/>); <paramref name="seed"/> writes the store first.</summary>
    public async Task StartCoordinatorAsync(Action<SqliteStore>? seed = null)
    {
        Options.Coordinator.StorePath = _storePath;
        var ovhBase = new Uri(_ovhApp.Urls.First() + "/1.0");
        Host = await CoordinatorTestHost.StartAsync(Options, Time, services =>
        {
            services.AddSingleton<IAgentCommands>(Agents);
            services.AddSingleton<ICloudIpProvider>(sp => new OvhCloudIpProvider(
                new OvhClient(_http, ovhBase, new OvhCredentials("ak", "as", "ck"), Time, sp.GetRequiredService<IEventSink>(), () => 0.5),
                sp.GetRequiredService<IEventSink>(), Time, TimeSpan.Zero, TimeSpan.FromMinutes(10)));
        }, seed);
    }

    /// <summary>Stops the coordinator where it stands (the store keeps the in-flight record; nothing more is carried out).</summary>
    public async Task CrashCoordinatorAsync()
    {
        await Host!.DisposeAsync();
        Host = null;
    }

    /// <summary>Feeds the coordinator a fresh report from each named node, as their Connect streams would.</summary>
    public void Report(params string[] nodes)
    {
        foreach (var node in nodes)
        {
            var report = Agents.Report(node);
            Host!.Get<NodeRegistry>().Accept(node, report);
            Core.Report(node, report);
        }
    }

    /// <summary><see cref="Report"/>, then lets whatever the reports started finish.</summary>
    public async Task ReportAndSettleAsync(params string[] nodes)
    {
        Report(nodes);
        await SettleAsync();
    }

    /// <summary>
    /// <see cref="CoordinatorCoreHost.WhenSettledAsync"/>: nothing the core asked for (commands, OVH calls, pings, and what
    /// their answers asked for in turn) is still running. Guarded, so a command that never answers fails the test instead of hanging it.
    /// </summary>
    public Task SettleAsync() => Core.WhenSettledAsync().WaitAsync(TimeSpan.FromSeconds(30));

    /// <summary>
    /// Lets everything the coordinator started finish, then checks <paramref name="until"/>; while it does not hold, moves
    /// the clock one <see cref="Step"/> (the core's timer fires inside <see cref="FakeTimeProvider.Advance"/>), calls
    /// <paramref name="eachStep"/> and repeats, at most until <paramref name="within"/> has passed. Returns whether it held.
    /// </summary>
    public async Task<bool> RunUntilAsync(Func<bool> until, TimeSpan within, Action? eachStep = null)
    {
        var end = Time.GetUtcNow() + within;
        while (true)
        {
            await SettleAsync();
            if (until())
            {
                return true;
            }

            if (Time.GetUtcNow() >= end)
            {
                return false;
            }

            Time.Advance(Step);
            eachStep?.Invoke();
        }
    }

    /// <summary>Drives the clock (see <see cref="RunUntilAsync"/>) until the operation's terminal event; fails the test when there is none by <paramref name="within"/>.</summary>
    public async Task<StoredEvent> RunUntilTerminalAsync(string operation, TimeSpan within)
    {
        Assert.True(await RunUntilAsync(() => Terminal(operation) is not null, within), $"operation {operation} did not end within {within}: {string.Join(", ", Kinds())}");
        return Terminal(operation)!;
    }

    public Task<StoredEvent> RunUntilTerminalAsync(string operation) => RunUntilTerminalAsync(operation, TimeSpan.FromSeconds(10));

    /// <summary>The operation's terminal event, if it has one yet.</summary>
    public StoredEvent? Terminal(string operation) =>
        Events().FirstOrDefault(e => e.Record.Attributes.GetValueOrDefault("operation") == operation && e.Record.Attributes.GetValueOrDefault("terminal") == "true");

    public IReadOnlyList<StoredEvent> Events() => Host!.Get<IEventLog>().List(0);

    public IReadOnlyList<StoredEvent> Events(string kind) => [.. Events().Where(e => e.Record.Kind == kind)];

    /// <summary>
    /// The event kinds so far, without OVH call records and without the failure detector's NodeReachable /
    /// NodeUnreachable: the detector runs on its own loop and its first pass may land anywhere in an operation.
    /// </summary>
    public IReadOnlyList<string> Kinds() => [.. Events().Select(e => e.Record.Kind).Where(k => k is not ("OvhCall" or "NodeReachable" or "NodeUnreachable"))];

    /// <summary>The kinds from the first <paramref name="first"/> on.</summary>
    public IReadOnlyList<string> KindsFrom(string first) => [.. Kinds().SkipWhile(k => k != first)];

    /// <summary>Records <paramref name="primary"/> as primary at <paramref name="generation"/> and makes the fake agents and OVH agree.</summary>
    private void Bootstrap(SqliteStore store, string primary, ulong generation)
    {
        store.AdvanceGeneration("db", 0, primary, new EventRecord("Adopted", "test bootstrap", "db", primary), isFailover: false, to: generation);
        Ovh.Seed($$"""{"ips":{"{{Ip}}":"{{Options.FindNode(primary)!.ServiceName}}"},"servers":[]}""");
        foreach (var (name, node) in Agents.Nodes)
        {
            node.Generation = generation;
            node.Role = name == primary ? Protocol.V1.DrbdRole.Primary : Protocol.V1.DrbdRole.Secondary;
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in Agents.Nodes.Values)
        {
            node.Hold?.TrySetResult();
        }

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
