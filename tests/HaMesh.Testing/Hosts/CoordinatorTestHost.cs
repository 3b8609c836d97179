using Grpc.Net.Client;
using HaMesh.Coordinator.Hosting;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace HaMesh.Testing.Hosts;

/// <summary>The coordinator's real composition on an in-memory TestServer (R23), with a fake clock.</summary>
public sealed class CoordinatorTestHost : IAsyncDisposable
{
    public static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private CoordinatorTestHost(WebApplication app, FakeTimeProvider time)
    {
        App = app;
        Time = time;
        Channel = GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions { HttpHandler = app.GetTestServer().CreateHandler() });
        Client = new CoordinatorService.CoordinatorServiceClient(Channel);
    }

    public WebApplication App { get; }

    public FakeTimeProvider Time { get; }

    public GrpcChannel Channel { get; }

    public CoordinatorService.CoordinatorServiceClient Client { get; }

    /// <summary>Starts the coordinator; <c>seed</c> writes the store before it starts (its core loads the store once, at start).</summary>
    public static async Task<CoordinatorTestHost> StartAsync(HaMeshOptions options, FakeTimeProvider? time = null, Action<IServiceCollection>? configure = null, Action<HaMesh.Coordinator.Store.SqliteStore>? seed = null)
    {
        time ??= new FakeTimeProvider(T0);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Coordinator.StorePath == TestConfig.SharedStorePath)
        {
            options.Coordinator.StorePath = Path.Combine(Path.GetTempPath(), $"hamesh-test-{Guid.NewGuid():N}.db");
        }

        if (seed is not null)
        {
            using var store = HaMesh.Coordinator.Store.SqliteStore.Open(options.Coordinator.StorePath, time);
            seed(store);
        }

        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseTestServer();
        builder.Services.AddSingleton<TimeProvider>(time);
        configure?.Invoke(builder.Services);
        builder.AddHaMeshCoordinator(options);
        var app = builder.Build();
        app.MapHaMeshCoordinatorEndpoints();
        await app.StartAsync();
        return new CoordinatorTestHost(app, time);
    }

    /// <summary>Completes once the coordinator holds a report from <paramref name="node"/> (awaits view changes, no polling).</summary>
    public async Task WaitForReportAsync(string node, CancellationToken ct)
    {
        var registry = Get<HaMesh.Coordinator.Membership.NodeRegistry>();
        while (true)
        {
            var changed = registry.WaitForChangeAsync(ct);
            if (registry.Current.Nodes[node].LastReport is not null)
            {
                return;
            }

            await changed;
        }
    }

    /// <summary>Completes once the event log holds an event of <paramref name="kind"/> (awaits log changes, no polling).</summary>
    public async Task WaitForEventAsync(string kind, CancellationToken ct)
    {
        var log = Get<HaMesh.Coordinator.Events.IEventLog>();
        while (true)
        {
            var changed = log.WaitForChangeAsync(ct);
            if (log.List(0).Any(e => e.Record.Kind == kind))
            {
                return;
            }

            await changed;
        }
    }

    public T Get<T>()
        where T : notnull => App.Services.GetRequiredService<T>();

    public async ValueTask DisposeAsync()
    {
        Channel.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}
