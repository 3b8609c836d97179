using System.Collections.Concurrent;
using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using HaMesh.Agent.Drbd;
using HaMesh.Agent.Host;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using Microsoft.Extensions.Options;

namespace HaMesh.Agent.Reporting;

/// <summary>
/// Builds this node's <see cref="NodeStatus"/>: DRBD, IP aliases, services, mounts, generation, lease. Runs every
/// heartbeat, so it starts no process where an in-process read is as faithful: /proc/drbd (8.4), the kernel's
/// addresses, mountinfo; services are read at most every HaMesh:Agent:ServicePollInterval (they change only by
/// our own steps, which re-check at once, or by a crash).
/// </summary>
public sealed class StatusCollector(
    IOptions<HaMeshOptions> options,
    IDrbdReader drbd,
    IHostStateReader host,
    IAgentLocalState local,
    TimeProvider time)
{
    private readonly HaMeshOptions _options = options.Value;
    // Starts from the wall clock in microseconds so a restarted agent's reports still sort after the ones it
    // sent before (the coordinator compares them with a fence request's after_report_sequence).
    private long _sequence = time.GetUtcNow().ToUnixTimeMilliseconds() * 1000;
    // Per resource, the DRBD role this agent knows last: from the newest status built (full or one resource, by
    // whoever asked) or from its own finished promote/demote, whichever came later (by sequence).
    private readonly ConcurrentDictionary<string, (DrbdRole Role, ulong Sequence)> _roles = new(StringComparer.Ordinal);

    /// <summary>The sequence of the last report built (or being built); the next one is larger.</summary>
    public ulong CurrentSequence => (ulong)Interlocked.Read(ref _sequence);

    /// <summary>The last status built (null before the first); Ping answers from it.</summary>
    public NodeStatus? Latest { get; private set; }

    public static string AgentVersion { get; } = typeof(StatusCollector).Assembly.GetName().Version?.ToString() ?? "0.0.0";

    public async Task<NodeStatus> CollectAsync(string? onlyResource, CancellationToken cancellationToken)
    {
        var resources = _options.Resources.Where(r => string.IsNullOrEmpty(onlyResource) || r.Name == onlyResource).ToList();
        var snapshot = await drbd.ReadAsync(resources.Select(r => r.DrbdResource).ToList(), cancellationToken);
        var status = new NodeStatus
        {
            Node = _options.Agent.Node,
            DrbdVersion = snapshot.Family,
            DrbdVersionText = snapshot.VersionText,
            ObservedAt = Timestamp.FromDateTimeOffset(time.GetUtcNow()),
            Sequence = (ulong)Interlocked.Increment(ref _sequence),
            AgentVersion = AgentVersion,
        };
        status.ReadErrors.AddRange(snapshot.Errors);
        foreach (var resource in resources)
        {
            status.Resources.Add(await CollectResourceAsync(resource, snapshot, status, cancellationToken));
        }

        foreach (var r in status.Resources)
        {
            NoteRole(r.Resource, r.Drbd?.Role ?? DrbdRole.Unknown, status.Sequence);
        }

        if (string.IsNullOrEmpty(onlyResource))
        {
            Latest = status;
        }

        return status;
    }

    /// <summary>
    /// The DRBD role of <paramref name="resource"/> as this agent last learnt it: from the newest read, or from its own
    /// promote or demote finishing after that read. The lease loop and the grantor use it; a report may be older.
    /// </summary>
    public DrbdRole RoleOf(string resource) => _roles.TryGetValue(resource, out var r) ? r.Role : DrbdRole.Unknown;

    /// <summary>This agent's own action made <paramref name="resource"/> <paramref name="role"/> (a read started before it does not override it).</summary>
    public void NoteRole(string resource, DrbdRole role) => NoteRole(resource, role, (ulong)Interlocked.Increment(ref _sequence));

    private void NoteRole(string resource, DrbdRole role, ulong sequence) =>
        _roles.AddOrUpdate(resource, (role, sequence), (_, old) => sequence > old.Sequence ? (role, sequence) : old);

    /// <summary>
    /// The DRBD role of <paramref name="resource"/> read now: Secondary also when DRBD does not list it (the resource
    /// is down); null when the read itself failed.
    /// </summary>
    public async Task<DrbdRole?> ReadRoleAsync(ResourceOptions resource, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(resource);
        var snapshot = await drbd.ReadAsync([resource.DrbdResource], cancellationToken);
        if (snapshot.Resources.TryGetValue(resource.DrbdResource, out var status) && status.Role is DrbdRole.Primary or DrbdRole.Secondary)
        {
            NoteRole(resource.Name, status.Role);
            return status.Role;
        }

        return snapshot.Errors.Count == 0 && !snapshot.Resources.ContainsKey(resource.DrbdResource) ? DrbdRole.Secondary : null;
    }

    /// <summary>True when DRBD on this node shows a peer of <paramref name="resource"/> connected and Primary (read now, not from the last report).</summary>
    public async Task<bool> PeerIsConnectedPrimaryAsync(ResourceOptions resource, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(resource);
        var snapshot = await drbd.ReadAsync([resource.DrbdResource], cancellationToken);
        return snapshot.Resources.TryGetValue(resource.DrbdResource, out var status)
            && status.Peers.Any(p => p.ConnectionState == ConnectionState.Connected && p.PeerRole == DrbdRole.Primary);
    }

    private async Task<ResourceStatus> CollectResourceAsync(ResourceOptions resource, DrbdSnapshot snapshot, NodeStatus status, CancellationToken cancellationToken)
    {
        var drbdStatus = snapshot.Resources.TryGetValue(resource.DrbdResource, out var found)
            ? found
            : new DrbdResourceStatus { Name = resource.DrbdResource, Present = false, Role = DrbdRole.Unknown, DiskState = DiskState.Unknown };
        var result = new ResourceStatus
        {
            Resource = resource.Name,
            Generation = local.GetGeneration(resource.Name),
            Drbd = drbdStatus,
            Lease = local.GetLease(resource.Name),
            MountPoint = resource.MountPoint,
            LastError = local.GetLastError(resource.Name),
        };
        if (local.GetPeerContactAge(resource.Name) is { } age)
        {
            result.PeerContactAge = Duration.FromTimeSpan(age);
        }

        try
        {
            result.IpAliases.AddRange(await host.ReadIpAliasesAsync(resource.Interface, resource.FailoverIps, cancellationToken));
            result.Services.AddRange(await host.ReadServicesAsync(resource.Services, _options.Agent.ServicePollInterval, cancellationToken));
            result.Mounted = await host.IsMountedAsync(resource.MountPoint, cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            status.ReadErrors.Add(string.Create(CultureInfo.InvariantCulture, $"{resource.Name}: {ex.Message}"));
        }

        return result;
    }
}
