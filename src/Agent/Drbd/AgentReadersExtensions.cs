using HaMesh.Agent.Host;
using HaMesh.Shared.Commands;
using HaMesh.Shared.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace HaMesh.Agent.Drbd;

public static class AgentReadersExtensions
{
    /// <summary>Registers the command runner (allow-list from HaMesh:Agent:Commands), the DRBD reader selector, the kernel address source and the host state reader.</summary>
    public static IServiceCollection AddAgentReaders(this IServiceCollection services)
    {
        services.TryAddSingleton<ICommandRunner>(sp => new ProcessCommandRunner(
            sp.GetRequiredService<IOptions<HaMeshOptions>>().Value.Agent.Commands.Executables().Select(e => e.Path),
            sp.GetRequiredService<TimeProvider>()));
        services.TryAddSingleton<Drbd84Reader>();
        services.TryAddSingleton<Drbd9Reader>();
        services.TryAddSingleton<IDrbdReader, DrbdReaderSelector>();
        services.TryAddSingleton<IInterfaceAddressSource, KernelInterfaceAddresses>();
        services.TryAddSingleton<IHostStateReader>(sp => new HostStateReader(
            sp.GetRequiredService<IOptions<HaMeshOptions>>(), sp.GetRequiredService<ICommandRunner>(), sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<IInterfaceAddressSource>()));
        return services;
    }
}
