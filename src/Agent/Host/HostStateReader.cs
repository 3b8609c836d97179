using System.Collections.Concurrent;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Commands;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.HostState;
using Microsoft.Extensions.Options;

namespace HaMesh.Agent.Host;

/// <summary>
/// IP aliases from the kernel (getifaddrs: the netlink dump <c>ip -j addr</c> makes, without a process) when
/// HaMesh:Agent:Commands:Ip is the system's ip, else by running that command (a stand-in that keeps its own
/// state); services via one <c>systemctl is-active</c> (the last observation reused within a caller's max age);
/// mounts from mountinfo.
/// </summary>
public sealed class HostStateReader(IOptions<HaMeshOptions> options, ICommandRunner runner, TimeProvider time, IInterfaceAddressSource kernel) : IHostStateReader
{
    /// <summary>Where distributions install iproute2's ip: with one of these, the kernel is read directly.</summary>
    public static readonly IReadOnlySet<string> SystemIpPaths = new HashSet<string>(["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"], StringComparer.Ordinal);

    private readonly HaMeshOptions _options = options.Value;
    private readonly ConcurrentDictionary<string, (ServiceStatus Status, long At)> _services = new(StringComparer.Ordinal);

    /// <summary>True when IP aliases are read from the kernel rather than by running <c>ip</c>.</summary>
    public bool ReadsKernelAddresses => SystemIpPaths.Contains(_options.Agent.Commands.Ip);

    public async Task<IReadOnlyList<IpAliasStatus>> ReadIpAliasesAsync(string interfaceName, IReadOnlyList<string> failoverIps, CancellationToken cancellationToken)
    {
        IReadOnlyList<IpCidr> addresses;
        if (ReadsKernelAddresses)
        {
            var table = kernel.Read();
            if (!table.HasInterface(interfaceName))
            {
                // what ip -j addr show dev IFACE answers (exit 1) for a missing device
                throw new IOException($"Device \"{interfaceName}\" does not exist.");
            }

            addresses = table.Of(interfaceName).Select(a => new IpCidr(a.Address, a.PrefixLength)).ToList();
        }
        else
        {
            var spec = new CommandSpec(_options.Agent.Commands.Ip, ["-j", "addr", "show", "dev", interfaceName], _options.Agent.CommandTimeout);
            var result = (await runner.RunAsync(spec, cancellationToken)).EnsureSuccess();
            var parsed = HostOutputParser.IpAddresses(result.StandardOutput);
            addresses = parsed.Value ?? throw new CommandFailedException(spec, 0, "", parsed.Error ?? "unexpected output");
        }

        return failoverIps.Select(ip => new IpAliasStatus { Address = ip, Interface = interfaceName, Present = HostOutputParser.HasAddress(addresses, ip) }).ToList();
    }

    public async Task<IReadOnlyList<ServiceStatus>> ReadServicesAsync(IReadOnlyList<string> units, CancellationToken cancellationToken)
    {
        if (units.Count == 0)
        {
            return [];
        }

        var at = time.GetTimestamp();
        // is-active exits 3 when a unit is not active: that is an answer, not an error.
        var spec = new CommandSpec(_options.Agent.Commands.Systemctl, ["is-active", .. units], _options.Agent.CommandTimeout);
        var result = await runner.RunAsync(spec, cancellationToken);
        if (result.ExitCode is not (0 or 3 or 4))
        {
            result.EnsureSuccess();
        }

        var states = HostOutputParser.ServiceStates(units, result.StandardOutput);
        foreach (var s in states)
        {
            // stamped with when the read started: a step that acted meanwhile is followed by its own check, which is newer
            _services.AddOrUpdate(s.Unit, (s, at), (_, old) => old.At > at ? old : (s, at));
        }

        return states;
    }

    public Task<IReadOnlyList<ServiceStatus>> ReadServicesAsync(IReadOnlyList<string> units, TimeSpan maxAge, CancellationToken cancellationToken)
    {
        var cached = new List<ServiceStatus>(units.Count);
        foreach (var unit in units)
        {
            if (!_services.TryGetValue(unit, out var seen) || time.GetElapsedTime(seen.At) >= maxAge)
            {
                return ReadServicesAsync(units, cancellationToken);
            }

            cached.Add(seen.Status.Clone());
        }

        return Task.FromResult<IReadOnlyList<ServiceStatus>>(cached);
    }

    public async Task<bool> IsMountedAsync(string mountPoint, CancellationToken cancellationToken) =>
        HostOutputParser.IsMounted(await File.ReadAllTextAsync(_options.Agent.Commands.MountInfo, cancellationToken), mountPoint);
}
