using Grpc.Core;
using HaMesh.Coordinator.Api;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Core;
using HaMesh.Coordinator.Ovh;
using HaMesh.Coordinator.Membership;
using HaMesh.Coordinator.Metrics;
using HaMesh.Coordinator.Operations;
using HaMesh.Coordinator.Store;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;
using HaMesh.Shared.Hosting;
using HaMesh.Shared.Security;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace HaMesh.Coordinator.Hosting;

public static class CoordinatorHostingExtensions
{
    public static WebApplicationBuilder AddHaMeshCoordinator(this WebApplicationBuilder builder, HaMeshOptions options)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(options);
        var services = builder.Services;
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton(Microsoft.Extensions.Options.Options.Create(options));
        services.AddSingleton<NodeRegistry>();
        services.AddSingleton<IpRoutingCache>();
        services.AddSingleton<ClusterStatusBuilder>();
        var storePath = options.Coordinator.StorePath;
        services.AddSingleton(sp => SqliteStore.Open(storePath, sp.GetRequiredService<TimeProvider>()));
        services.TryAddSingleton<IEventLog>(sp => sp.GetRequiredService<SqliteStore>());
        services.TryAddSingleton<IEventSink>(sp => sp.GetRequiredService<IEventLog>());
        services.AddSingleton<IpClaims>();
        services.TryAddSingleton<IAgentCommands, AgentCommandClient>();
        services.AddSingleton<FailoverIpVerifier>();
        services.AddSingleton<CoordinatorCoreHost>();
        services.AddHostedService(sp => sp.GetRequiredService<CoordinatorCoreHost>());
        services.AddSingleton<OperatorCommands>();
        if (!string.IsNullOrEmpty(options.Coordinator.Ovh.CredentialsFile) || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("OVH_APPLICATION_KEY")))
        {
            services.AddOvhCloud();
        }
        services.AddSingleton<FailureDetector>();
        services.AddHostedService(sp => sp.GetRequiredService<FailureDetector>());
        var tls = ClusterTls.From(options.Tls);
        if (tls is not null)
        {
            services.AddSingleton(tls);
            services.AddSingleton(sp => new RoleContext
            {
                LocalNode = "",
                ClientCertificate = c => c.GetHttpContext().Connection.ClientCertificate,
                RemoteAddress = c => c.GetHttpContext().Connection.RemoteIpAddress,
                OnDenied = (method, caller, reason, ct) => sp.GetRequiredService<IEventSink>().AppendAsync(
                    new EventRecord("AccessDenied", $"{method} denied for {caller}: {reason}", Severity: EventSeverity.Warning), ct).AsTask(),
            });
        }

        services.AddGrpc(o =>
        {
            if (tls is not null)
            {
                o.Interceptors.Add<RoleInterceptor>();
            }

            o.Interceptors.Add<ServerDeadlineInterceptor>();
            o.MaxReceiveMessageSize = GrpcChannels.MaxMessageBytes;
            o.MaxSendMessageSize = GrpcChannels.MaxMessageBytes;
        });
        // ClaimIp waits for the OVH move task (at most OvhTimeout); nothing else takes long
        services.AddSingleton(new ServerCallLimit(options.Cluster.Timings.OvhTimeout + TimeSpan.FromMinutes(1), c => c.GetHttpContext()));
        services.AddGrpcReflection();
        services.AddGrpcHealthChecks(o => o.UseHealthChecksCache = false).AddCheck<ClusterViewHealthCheck>("cluster-view");
        services.AddCoordinatorMetrics();
        services.AddHaMeshWatchdog();
        builder.ConfigureHaMeshKestrel(options.Coordinator.Listen, options.Coordinator.MetricsListen, tls);
        return builder;
    }

    /// <summary>Opens the store now, so a corrupt or unreadable store stops the coordinator before it listens.</summary>
    public static string? OpenStore(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        try
        {
            app.Services.GetRequiredService<SqliteStore>();
            return null;
        }
        catch (StoreException ex)
        {
            return ex.Message;
        }
    }

    public static WebApplication MapHaMeshCoordinatorEndpoints(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.MapGrpcService<CoordinatorGrpcService>();
        app.MapGrpcReflectionService();
        app.MapGrpcHealthChecksService();
        app.MapCoordinatorMetrics();
        return app;
    }
}
