using HaMesh.Protocol.V1;

namespace HaMesh.Agent.Host;

/// <summary>IP aliases (the kernel's addresses, or ip -j addr show dev IFACE), service states (systemctl is-active UNIT), mounts.</summary>
public interface IHostStateReader
{
    Task<IReadOnlyList<IpAliasStatus>> ReadIpAliasesAsync(string interfaceName, IReadOnlyList<string> failoverIps, CancellationToken cancellationToken);

    /// <summary>The units' states now (always runs systemctl): what a step checks before and after acting.</summary>
    Task<IReadOnlyList<ServiceStatus>> ReadServicesAsync(IReadOnlyList<string> units, CancellationToken cancellationToken);

    /// <summary>
    /// The units' states as observed at most <paramref name="maxAge"/> ago: the last observation when every unit
    /// has one that recent (any read counts, including a step's own check right after its start or stop), else a
    /// fresh read. For the periodic report, whose services change only by our own steps or a crash.
    /// </summary>
    Task<IReadOnlyList<ServiceStatus>> ReadServicesAsync(IReadOnlyList<string> units, TimeSpan maxAge, CancellationToken cancellationToken) =>
        ReadServicesAsync(units, cancellationToken);

    Task<bool> IsMountedAsync(string mountPoint, CancellationToken cancellationToken);
}
