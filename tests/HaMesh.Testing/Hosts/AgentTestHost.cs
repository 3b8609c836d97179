using Grpc.Net.Client;
using HaMesh.Agent.Drbd;
using HaMesh.Agent.Host;
using HaMesh.Agent.Hosting;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace HaMesh.Testing.Hosts;

public sealed class FakeDrbdReader : IDrbdReader
{
    public DrbdSnapshot Snapshot { get; set; } = new(DrbdVersionFamily.V84, "8.4.11", new Dictionary<string, DrbdResourceStatus>(), []);

    public int Reads { get; private set; }

    public Task<DrbdSnapshot> ReadAsync(IReadOnlyCollection<string> drbdResources, CancellationToken cancellationToken)
    {
        Reads++;
        return Task.FromResult(Snapshot);
    }
}

public sealed class FakeHostStateReader : IHostStateReader
{
    public HashSet<string> PresentIps { get; } = [];

    public Dictionary<string, ServiceState> Services { get; } = [];

    public bool Mounted { get; set; }

    public Task<IReadOnlyList<IpAliasStatus>> ReadIpAliasesAsync(string interfaceName, IReadOnlyList<string> failoverIps, CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<IpAliasStatus>>(failoverIps.Select(ip => new IpAliasStatus { Address = ip, Interface = interfaceName, Present = PresentIps.Contains(ip) }).ToList());

    public Task<IReadOnlyList<ServiceStatus>> ReadServicesAsync(IReadOnlyList<string> units, CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<ServiceStatus>>(units.Select(u => new ServiceStatus { Unit = u, State = Services.GetValueOrDefault(u, ServiceState.Inactive) }).ToList());

    public Task<bool> IsMountedAsync(string mountPoint, CancellationToken cancellationToken) => Task.FromResult(Mounted);
}

/// <summary>The agent's real composition on an in-memory TestServer with fake readers.</summary>
public sealed class AgentTestHost : IAsyncDisposable
{
    private AgentTestHost(WebApplication app, FakeDrbdReader drbd, FakeHostStateReader host)
    {
        App = app;
        Drbd = drbd;
        Host = host;
        Channel = GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions { HttpHandler = app.GetTestServer().CreateHandler() });
        Client = new AgentService.AgentServiceClient(Channel);
    }

    public WebApplication App { get; }

    public GrpcChannel Channel { get; }

    public AgentService.AgentServiceClient Client { get; }

    public FakeDrbdReader Drbd { get; }

    public FakeHostStateReader Host { get; }

    public static async Task<AgentTestHost> StartAsync(HaMeshOptions options)
    {
        var drbd = new FakeDrbdReader();
        var hostState = new FakeHostStateReader();
        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseTestServer();
        builder.Services.AddSingleton<TimeProvider>(new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero)));
        builder.Services.AddSingleton<IDrbdReader>(drbd);
        builder.Services.AddSingleton<IHostStateReader>(hostState);
        builder.AddHaMeshAgent(options);
        var app = builder.Build();
        app.MapHaMeshAgentEndpoints();
        await app.StartAsync();
        return new AgentTestHost(app, drbd, hostState);
    }

    public async ValueTask DisposeAsync()
    {
        Channel.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}
