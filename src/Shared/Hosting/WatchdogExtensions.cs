using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace HaMesh.Shared.Hosting;

public static class WatchdogExtensions
{
    /// <summary>The loop-health registry and the systemd watchdog feeder (inert outside systemd).</summary>
    public static IServiceCollection AddHaMeshWatchdog(this IServiceCollection services)
    {
        services.TryAddSingleton(sp => new LoopHealth(sp.GetRequiredService<TimeProvider>()));
        services.AddHostedService(sp => new SystemdWatchdog(
            sp.GetRequiredService<LoopHealth>(), sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<Microsoft.Extensions.Logging.ILogger<SystemdWatchdog>>()));
        return services;
    }
}
