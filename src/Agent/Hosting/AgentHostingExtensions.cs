using Grpc.Core;
using HaMesh.Agent.Actions;
using HaMesh.Agent.Api;
using HaMesh.Agent.Core;
using HaMesh.Agent.Drbd;
using HaMesh.Agent.Lease;
using HaMesh.Agent.Metrics;
using HaMesh.Agent.State;
using HaMesh.Agent.Reporting;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;
using HaMesh.Shared.Hosting;
using HaMesh.Shared.Security;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace HaMesh.Agent.Hosting;

public static class AgentHostingExtensions
{
    /// <summary>Registers the agent: options (already validated), gRPC with reflection and health, collector, coordinator link.</summary>
    public static WebApplicationBuilder AddHaMeshAgent(this WebApplicationBuilder builder, HaMeshOptions options)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(options);
        var services = builder.Services;
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton(Microsoft.Extensions.Options.Options.Create(options));
        services.AddSingleton(sp => new AgentLocalState(sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<GenerationStore>().Get));
        services.TryAddSingleton<IAgentLocalState>(sp => sp.GetRequiredService<AgentLocalState>());
        services.AddAgentReaders();
        services.AddSingleton<ReportSignal>();
        services.AddSingleton<StatusCollector>();
        services.AddSingleton<GenerationStore>();
        services.AddSingleton(sp => new ResourceSteps(options, sp.GetRequiredService<HaMesh.Shared.Commands.ICommandRunner>(), sp.GetRequiredService<HaMesh.Agent.Host.IHostStateReader>(), sp.GetRequiredService<TimeProvider>()));
        services.TryAddSingleton<IClusterCalls, GrpcClusterCalls>();
        services.AddSingleton<SelfFence>();
        services.AddSingleton<AgentCoreHost>();
        services.AddHostedService(sp => sp.GetRequiredService<AgentCoreHost>());
        services.TryAddSingleton<IAgentActions>(sp => sp.GetRequiredService<AgentCoreHost>());
        services.AddSingleton<CoordinatorLink>();
        services.AddHostedService(sp => sp.GetRequiredService<CoordinatorLink>());
        services.AddSingleton<ILeaseCoordinator>(sp => sp.GetRequiredService<CoordinatorLink>());
        var tls = ClusterTls.From(options.Tls);
        if (tls is not null)
        {
            services.AddSingleton(tls);
            services.AddSingleton(sp => new RoleContext
            {
                LocalNode = options.Agent.Node,
                ClientCertificate = c => c.GetHttpContext().Connection.ClientCertificate,
                RemoteAddress = c => c.GetHttpContext().Connection.RemoteIpAddress,
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
        // the longest Promote/Demote the coordinator waits for, twice over, and never under 30 s
        var steps = 4 + options.Resources.Select(r => r.Services.Count + r.FailoverIps.Count).DefaultIfEmpty(0).Max();
        services.AddSingleton(new ServerCallLimit(TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(30).Ticks, options.Agent.CommandTimeout.Ticks * steps * 2)), c => c.GetHttpContext()));
        services.AddGrpcReflection();
        services.AddGrpcHealthChecks(o => o.UseHealthChecksCache = false).AddCheck<CoordinatorLinkHealthCheck>("coordinator-link");
        services.AddAgentMetrics();
        services.AddHaMeshWatchdog();
        builder.ConfigureHaMeshKestrel(options.Agent.Listen, options.Agent.MetricsListen, tls);
        return builder;
    }

    public static WebApplication MapHaMeshAgentEndpoints(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.MapGrpcService<AgentGrpcService>();
        app.MapGrpcReflectionService();
        app.MapGrpcHealthChecksService();
        app.MapAgentMetrics();
        return app;
    }
}
