using System.Globalization;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Commands;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Drbd;
using Microsoft.Extensions.Options;

namespace HaMesh.Agent.Drbd;

/// <summary>
/// DRBD 8.4: <c>/proc/drbd</c> (one file read per report: role, disk, connection, out-of-sync, frozen
/// I/O per minor) and, for a resource whose minor is not there, <c>drbdadm role|cstate|dstate</c>,
/// whose refusals tell "not configured / down" apart from real errors.
/// </summary>
public sealed class Drbd84Reader(IOptions<HaMeshOptions> options, ICommandRunner runner) : IDrbdReader
{
    private readonly HaMeshOptions _options = options.Value;

    public async Task<DrbdSnapshot> ReadAsync(IReadOnlyCollection<string> drbdResources, CancellationToken cancellationToken)
    {
        var errors = new List<string>();
        var result = new Dictionary<string, DrbdResourceStatus>(StringComparer.Ordinal);
        ProcDrbd? proc = null;
        try
        {
            var parsed = ProcDrbdParser.Parse(await File.ReadAllTextAsync(_options.Agent.Commands.ProcDrbd, cancellationToken));
            proc = parsed.Value;
            if (parsed.Error is not null)
            {
                errors.Add(parsed.Error);
            }
        }
        catch (IOException ex)
        {
            errors.Add($"{_options.Agent.Commands.ProcDrbd}: {ex.Message} (is the drbd module loaded?)");
        }

        foreach (var name in drbdResources)
        {
            var minor = MinorOf(name);
            var fromProc = proc?.Minors.FirstOrDefault(m => m.Minor == minor && m.Connection != ConnectionState.Unconfigured);
            result[name] = fromProc is not null ? FromProc(name, fromProc) : await FromDrbdadmAsync(name, errors, cancellationToken);
        }

        return new DrbdSnapshot(DrbdVersionFamily.V84, proc?.VersionText ?? "", result, errors);
    }

    private int? MinorOf(string drbdResource)
    {
        var device = _options.Resources.FirstOrDefault(r => r.DrbdResource == drbdResource)?.Device ?? "";
        const string prefix = "/dev/drbd";
        return device.StartsWith(prefix, StringComparison.Ordinal) && int.TryParse(device.AsSpan(prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var m) ? m : null;
    }

    private string PeerName() => _options.Nodes.FirstOrDefault(n => n.Name != _options.Agent.Node)?.Name ?? "peer";

    private DrbdResourceStatus FromProc(string name, ProcDrbdMinor m)
    {
        var status = new DrbdResourceStatus
        {
            Name = name, Present = true, Role = m.Role, DiskState = m.Disk, Quorum = QuorumState.NotReported, Suspended = m.Suspended,
        };
        status.Devices.Add(new DeviceStatus { Volume = 0, Minor = m.Minor, DiskState = m.Disk, Quorum = QuorumState.NotReported });
        status.Peers.Add(Peer(m.Connection, m.Replication, m.PeerRole, m.PeerDisk, m.OutOfSyncKib, m.SyncedPercent));
        return status;
    }

    private PeerConnectionStatus Peer(ConnectionState connection, ReplicationState replication, DrbdRole role, DiskState disk, ulong oos, double? synced)
    {
        var peer = new PeerConnectionStatus
        {
            PeerName = PeerName(), PeerNodeId = -1, ConnectionState = connection, PeerRole = role,
            PeerDiskState = disk, ReplicationState = replication, OutOfSyncKib = oos,
        };
        peer.PeerDevices.Add(new PeerDeviceStatus { Volume = 0, ReplicationState = replication, PeerDiskState = disk, OutOfSyncKib = oos, PercentInSync = synced ?? (oos == 0 ? 100 : 0) });
        return peer;
    }

    private async Task<DrbdResourceStatus> FromDrbdadmAsync(string name, List<string> errors, CancellationToken ct)
    {
        var role = await QueryAsync("role", name, errors, ct);
        if (role is null)
        {
            return new DrbdResourceStatus { Name = name, Present = false, Role = DrbdRole.Unknown, DiskState = DiskState.Unknown };
        }

        var cstate = await QueryAsync("cstate", name, errors, ct);
        var dstate = await QueryAsync("dstate", name, errors, ct);
        var roles = DrbdadmOutputParser.Role(role);
        var disks = DrbdadmOutputParser.DiskStates(dstate);
        var conn = DrbdadmOutputParser.ConnectionState84(cstate);
        if (roles is null || disks is null || conn is null)
        {
            errors.Add($"{name}: unexpected drbdadm output (role '{role.Trim()}', cstate '{cstate?.Trim()}', dstate '{dstate?.Trim()}')");
        }

        var status = new DrbdResourceStatus
        {
            Name = name, Present = true, Role = roles?.Local ?? DrbdRole.Unknown, DiskState = disks?.Local ?? DiskState.Unknown, Quorum = QuorumState.NotReported,
        };
        status.Devices.Add(new DeviceStatus { Volume = 0, Minor = MinorOf(name) ?? -1, DiskState = status.DiskState, Quorum = QuorumState.NotReported });
        status.Peers.Add(Peer(conn?.Connection ?? ConnectionState.Unknown, conn?.Replication ?? ReplicationState.Unknown, roles?.Peer ?? DrbdRole.Unknown, disks?.Peer ?? DiskState.Unknown, 0, null));
        return status;
    }

    private async Task<string?> QueryAsync(string what, string name, List<string> errors, CancellationToken ct)
    {
        var spec = new CommandSpec(_options.Agent.Commands.Drbdadm, [what, name], _options.Agent.CommandTimeout);
        try
        {
            var result = await runner.RunAsync(spec, ct);
            if (result.Succeeded)
            {
                return result.StandardOutput;
            }

            errors.Add(DrbdadmOutputParser.IsUnknownResource(result.StandardError)
                ? $"{name}: DRBD does not know the resource (down or not configured): {result.StandardError.Split('\n')[0].Trim()}"
                : $"{name}: '{spec.Display}' failed with exit code {result.ExitCode}: {DrbdadmOutputParser.Error(result.StandardError, result.ExitCode)}");
        }
        catch (CommandFailedException ex)
        {
            errors.Add($"{name}: {ex.Message}");
        }

        return null;
    }
}

/// <summary>DRBD 9: <c>drbdsetup status --json</c> for every resource at once.</summary>
public sealed class Drbd9Reader(IOptions<HaMeshOptions> options, ICommandRunner runner) : IDrbdReader
{
    private readonly HaMeshOptions _options = options.Value;

    public async Task<DrbdSnapshot> ReadAsync(IReadOnlyCollection<string> drbdResources, CancellationToken cancellationToken)
    {
        var errors = new List<string>();
        var result = new Dictionary<string, DrbdResourceStatus>(StringComparer.Ordinal);
        var version = "";
        try
        {
            var proc = ProcDrbdParser.Parse(await File.ReadAllTextAsync(_options.Agent.Commands.ProcDrbd, cancellationToken));
            version = proc.Value?.VersionText ?? "";
        }
        catch (IOException)
        {
            // DRBD 9 does not need /proc/drbd; the version is informational
        }

        var spec = new CommandSpec(_options.Agent.Commands.Drbdsetup, ["status", "--json"], _options.Agent.CommandTimeout);
        IReadOnlyList<DrbdResourceStatus> all = [];
        try
        {
            var run = await runner.RunAsync(spec, cancellationToken);
            if (!run.Succeeded)
            {
                errors.Add($"'{spec.Display}' failed with exit code {run.ExitCode}: {run.StandardError.Trim()}");
            }
            else
            {
                var parsed = DrbdStatusJsonParser.Parse(run.StandardOutput);
                all = parsed.Value ?? [];
                if (parsed.Error is not null)
                {
                    errors.Add(parsed.Error);
                }
            }
        }
        catch (CommandFailedException ex)
        {
            errors.Add(ex.Message);
        }

        foreach (var name in drbdResources)
        {
            var found = all.FirstOrDefault(r => r.Name == name);
            if (found is null && errors.Count == 0)
            {
                errors.Add($"{name}: DRBD does not know the resource (down or not configured)");
            }

            result[name] = found ?? new DrbdResourceStatus { Name = name, Present = false, Role = DrbdRole.Unknown, DiskState = DiskState.Unknown };
        }

        return new DrbdSnapshot(DrbdVersionFamily.V9, version, result, errors);
    }
}

/// <summary>
/// Chooses the reader from <c>HaMesh:Agent:DrbdVersion</c>, or with <c>auto</c> from the host:
/// /proc/drbd's version line (8.x → 8.4 reader, otherwise DRBD 9).
/// </summary>
public sealed class DrbdReaderSelector(IOptions<HaMeshOptions> options, Drbd84Reader v84, Drbd9Reader v9) : IDrbdReader
{
    private IDrbdReader? _chosen;

    public Task<DrbdSnapshot> ReadAsync(IReadOnlyCollection<string> drbdResources, CancellationToken cancellationToken) =>
        (_chosen ??= Choose()).ReadAsync(drbdResources, cancellationToken);

    private IDrbdReader Choose()
    {
        var agent = options.Value.Agent;
        switch (agent.DrbdVersion)
        {
            case "drbd84":
                return v84;
            case "drbd9":
                return v9;
        }

        try
        {
            var parsed = ProcDrbdParser.Parse(File.ReadAllText(agent.Commands.ProcDrbd));
            return parsed.Value?.Family == DrbdVersionFamily.V84 ? v84 : v9;
        }
        catch (IOException)
        {
            return v9;
        }
    }
}
