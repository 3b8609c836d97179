using HaMesh.Protocol.V1;

namespace HaMesh.Agent.Drbd;

/// <summary>What one read of DRBD found: per DRBD resource name, its status; plus problems met.</summary>
public sealed record DrbdSnapshot(
    DrbdVersionFamily Family,
    string VersionText,
    IReadOnlyDictionary<string, DrbdResourceStatus> Resources,
    IReadOnlyList<string> Errors);

/// <summary>
/// Reads DRBD state. Two implementations: DRBD 9 (drbdsetup status --json) and DRBD 8.4
/// (/proc/drbd + drbdadm role|cstate|dstate), chosen from what the host has. Never throws for
/// bad output: parse problems land in <see cref="DrbdSnapshot.Errors"/> and the resource is
/// reported with <c>present=false</c> or UNKNOWN states.
/// </summary>
public interface IDrbdReader
{
    Task<DrbdSnapshot> ReadAsync(IReadOnlyCollection<string> drbdResources, CancellationToken cancellationToken);
}
