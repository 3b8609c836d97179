using HaMesh.Agent.Actions;
using HaMesh.Agent.Core;
using HaMesh.Agent.Drbd;
using HaMesh.Agent.Lease;
using HaMesh.Agent.Reporting;
using HaMesh.Agent.State;
using HaMesh.Agent.Tests.Actions;
using HaMesh.Agent.Tests.Lease;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Testing;
using HaMesh.Testing.Hosts;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace HaMesh.Agent.Tests.Core;

/// <summary>
/// The agent daemon's <see cref="AgentCoreHost"/> on a fake clock, with a node in memory (<see cref="FakeNode"/>), a fake
/// coordinator link and fake peer calls. Time moves only when a test says so; a test waits for what the host started
/// (steps, calls) with <see cref="AgentCoreHost.WhenSettledAsync"/>, never with a sleep.
/// </summary>
public abstract class AgentCoreHostFixture : IAsyncDisposable
{
    protected static readonly string[] ActivationVerbs = ["drbdadm primary", "mount ", "systemctl start", "ip addr add", "drbdadm resume-io"];

    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-core-host-").FullName;
    private AgentCoreHost? _host;

    protected AgentCoreHostFixture()
    {
        Time = new TimerSignalingTimeProvider(Clock);
        Options.Agent.StateDirectory = _dir;
        Options.Resources[0].Services = ["postgresql.service"];
        Runner = new HangingRunner(Node);
        Local = new AgentLocalState(Time);
        Generations = new GenerationStore(Microsoft.Extensions.Options.Options.Create(Options));
    }

    protected HaMeshOptions Options { get; } = TestConfig.TwoNodes();

    protected FakeTimeProvider Clock { get; } = new(new DateTimeOffset(2026, 12, 1, 12, 0, 0, TimeSpan.Zero));

    protected TimerSignalingTimeProvider Time { get; }

    protected FakeNode Node { get; } = new();

    protected HangingRunner Runner { get; }

    protected FakeDrbdReader Drbd { get; } = new();

    protected FakeCoordinator Coordinator { get; } = new();

    protected FakeClusterCalls Calls { get; } = new();

    protected AgentLocalState Local { get; }

    protected ReportSignal Signal { get; } = new();

    protected GenerationStore Generations { get; }

    protected StatusCollector? Collector { get; private set; }

    protected AgentCoreHost Host => _host ?? throw new InvalidOperationException("StartAsync first");

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    protected TimeSpan Heartbeat => Options.Cluster.Timings.Heartbeat;

    protected TimeSpan LeaseLength => Options.Cluster.Timings.Lease;

    protected TimeSpan Promise => Options.Cluster.Timings.Lease + Options.Cluster.Timings.DriftMargin;

    protected TimeSpan Deadline => Options.Cluster.Timings.SelfFenceDeadline;

    protected LeaseStatus Lease => Local.GetLease("db");

    protected bool RanAnyActivation => Runner.Log.Any(l => ActivationVerbs.Any(v => l.StartsWith(v, StringComparison.Ordinal)));

    /// <summary>Starts the host as an agent finding DRBD in <paramref name="role"/> with <paramref name="generation"/> persisted (0: none).</summary>
    protected async Task<AgentCoreHost> StartAsync(DrbdRole role = DrbdRole.Secondary, ulong generation = 0)
    {
        if (generation > 0)
        {
            Generations.Raise("db", generation);
        }

        if (role == DrbdRole.Primary)
        {
            Node.Role = "Primary";
            Node.Mounted = true;
            Node.Active.Add("postgresql.service");
            Node.Ips.Add("203.0.113.10/32");
        }

        SetDrbd(role);
        var o = Microsoft.Extensions.Options.Options.Create(Options);
        Collector = new StatusCollector(o, Drbd, Node, Local, Time);
        var steps = new ResourceSteps(Options, Runner, Node, Time);
        var selfFence = new SelfFence(o, steps, Runner, Local, Signal, Time, NullLogger<SelfFence>.Instance);
        _host = new AgentCoreHost(o, steps, selfFence, Generations, Local, Collector, Signal, Coordinator, Calls, Time, NullLogger<AgentCoreHost>.Instance);
        await _host.StartCoresAsync(Ct);
        await _host.WhenSettledAsync("db");
        return _host;
    }

    /// <summary>What the DRBD reader shows: this node's role, and optionally a connected peer in <paramref name="peerRole"/>.</summary>
    protected void SetDrbd(DrbdRole role, DrbdRole? peerRole = null)
    {
        var status = new DrbdResourceStatus { Name = "r0", Present = true, Role = role, DiskState = DiskState.UpToDate };
        if (peerRole is { } p)
        {
            status.Peers.Add(new PeerConnectionStatus { ConnectionState = ConnectionState.Connected, PeerRole = p, PeerDiskState = DiskState.UpToDate });
        }

        Drbd.Snapshot = new DrbdSnapshot(DrbdVersionFamily.V84, "8.4.11", new Dictionary<string, DrbdResourceStatus> { ["r0"] = status }, []);
    }

    /// <summary>Moves the clock (timers due fire on this thread), then waits for what they started.</summary>
    protected async Task AdvanceAsync(TimeSpan by)
    {
        Clock.Advance(by);
        await Host.WhenSettledAsync("db");
    }

    protected Task<ActionResult> Promote(ulong generation) => Host.PromoteAsync(new PromoteRequest { Resource = "db", Generation = generation }, Ct);

    protected Task<ActionResult> Demote(ulong generation, bool reconnect = false, bool discard = false) =>
        Host.DemoteAsync(new DemoteRequest { Resource = "db", Generation = generation, Reconnect = reconnect, DiscardMyData = discard }, Ct);

    protected Task<RenewLeaseResponse> Renew(ulong generation, ulong sequence = 1) =>
        Host.RenewLeaseAsync(new RenewLeaseRequest { Resource = "db", Generation = generation, Requester = "b", Sequence = sequence }, Ct);

    public async ValueTask DisposeAsync()
    {
        if (_host is not null)
        {
            await _host.StopAsync(CancellationToken.None);
            _host.Dispose();
        }

        Signal.Dispose();
        Directory.Delete(_dir, recursive: true);
        GC.SuppressFinalize(this);
    }
}
