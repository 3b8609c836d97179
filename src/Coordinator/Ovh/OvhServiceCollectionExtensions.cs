using HaMesh.Coordinator.Cloud;
using HaMesh.Coordinator.Events;
using HaMesh.Shared.Configuration;
using Microsoft.Extensions.Options;

namespace HaMesh.Coordinator.Ovh;

public static class OvhServiceCollectionExtensions
{
    /// <summary>Registers the OVH client and move workflow as the <see cref="ICloudIpProvider"/> (credentials loaded lazily at first use).</summary>
    public static IServiceCollection AddOvhCloud(this IServiceCollection services)
    {
        services.AddHttpClient("ovh", h => h.Timeout = TimeSpan.FromSeconds(30));
        services.AddSingleton(sp =>
        {
            var options = sp.GetRequiredService<IOptions<HaMeshOptions>>().Value;
            var credentials = OvhCredentials.Load(options.Coordinator.Ovh.CredentialsFile, Environment.GetEnvironmentVariable);
            return new OvhClient(sp.GetRequiredService<IHttpClientFactory>().CreateClient("ovh"), OvhEndpoints.Resolve(options.Coordinator.Ovh.Endpoint),
                credentials, sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<IEventSink>());
        });
        services.AddSingleton<ICloudIpProvider>(sp =>
        {
            var timings = sp.GetRequiredService<IOptions<HaMeshOptions>>().Value.Cluster.Timings;
            return new OvhCloudIpProvider(sp.GetRequiredService<OvhClient>(), sp.GetRequiredService<IEventSink>(), sp.GetRequiredService<TimeProvider>(), timings.OvhPollInterval, timings.OvhTimeout);
        });
        return services;
    }
}
