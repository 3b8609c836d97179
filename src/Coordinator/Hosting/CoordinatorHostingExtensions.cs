using HaMesh.Coordinator.Api;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Membership;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;
using HaMesh.Shared.Hosting;
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
        services.AddSingleton(sp => new InMemoryEventLog(sp.GetRequiredService<TimeProvider>()));
        services.TryAddSingleton<IEventSink>(sp => sp.GetRequiredService<InMemoryEventLog>());
        services.AddSingleton<FailureDetector>();
        services.AddHostedService(sp => sp.GetRequiredService<FailureDetector>());
        services.AddGrpc(o =>
        {
            o.MaxReceiveMessageSize = GrpcChannels.MaxMessageBytes;
            o.MaxSendMessageSize = GrpcChannels.MaxMessageBytes;
        });
        services.AddGrpcReflection();
        services.AddGrpcHealthChecks(o => o.UseHealthChecksCache = false).AddCheck<ClusterViewHealthCheck>("cluster-view");
        builder.ConfigureHaMeshKestrel(options.Coordinator.Listen);
        return builder;
    }

    public static WebApplication MapHaMeshCoordinatorEndpoints(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.MapGrpcService<CoordinatorGrpcService>();
        app.MapGrpcReflectionService();
        app.MapGrpcHealthChecksService();
        return app;
    }
}
