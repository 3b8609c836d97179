using HaMesh.Protocol.V1;

namespace HaMesh.Agent.Host;

/// <summary>IP aliases (ip -j addr show dev IFACE), service states (systemctl is-active UNIT), mounts.</summary>
public interface IHostStateReader
{
    Task<IReadOnlyList<IpAliasStatus>> ReadIpAliasesAsync(string interfaceName, IReadOnlyList<string> failoverIps, CancellationToken cancellationToken);

    Task<IReadOnlyList<ServiceStatus>> ReadServicesAsync(IReadOnlyList<string> units, CancellationToken cancellationToken);

    Task<bool> IsMountedAsync(string mountPoint, CancellationToken cancellationToken);
}
