using HaMesh.Protocol.V1;
using HaMesh.Shared.Commands;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.HostState;
using Microsoft.Extensions.Options;

namespace HaMesh.Agent.Host;

/// <summary>IP aliases via <c>ip -j addr show dev IFACE</c>, services via one <c>systemctl is-active</c>, mounts from mountinfo.</summary>
public sealed class HostStateReader(IOptions<HaMeshOptions> options, ICommandRunner runner, string mountInfoPath = "/proc/self/mountinfo") : IHostStateReader
{
    private readonly HaMeshOptions _options = options.Value;

    public async Task<IReadOnlyList<IpAliasStatus>> ReadIpAliasesAsync(string interfaceName, IReadOnlyList<string> failoverIps, CancellationToken cancellationToken)
    {
        var spec = new CommandSpec(_options.Agent.Commands.Ip, ["-j", "addr", "show", "dev", interfaceName], _options.Agent.CommandTimeout);
        var result = (await runner.RunAsync(spec, cancellationToken)).EnsureSuccess();
        var parsed = HostOutputParser.IpAddresses(result.StandardOutput);
        if (parsed.Value is null)
        {
            throw new CommandFailedException(spec, 0, "", parsed.Error ?? "unexpected output");
        }

        return failoverIps.Select(ip => new IpAliasStatus { Address = ip, Interface = interfaceName, Present = HostOutputParser.HasAddress(parsed.Value, ip) }).ToList();
    }

    public async Task<IReadOnlyList<ServiceStatus>> ReadServicesAsync(IReadOnlyList<string> units, CancellationToken cancellationToken)
    {
        if (units.Count == 0)
        {
            return [];
        }

        // is-active exits 3 when a unit is not active: that is an answer, not an error.
        var spec = new CommandSpec(_options.Agent.Commands.Systemctl, ["is-active", .. units], _options.Agent.CommandTimeout);
        var result = await runner.RunAsync(spec, cancellationToken);
        if (result.ExitCode is not (0 or 3 or 4))
        {
            result.EnsureSuccess();
        }

        return HostOutputParser.ServiceStates(units, result.StandardOutput);
    }

    public async Task<bool> IsMountedAsync(string mountPoint, CancellationToken cancellationToken) =>
        HostOutputParser.IsMounted(await File.ReadAllTextAsync(mountInfoPath, cancellationToken), mountPoint);
}
