using System.Globalization;
using HaMesh.Protocol.V1;

namespace HaMesh.Shared.Failover;

/// <summary>
/// The preconditions of the operator's moves, as pure functions of the same <see cref="ClusterView"/> the
/// failover rule reads. Null means "go"; otherwise the reason, phrased for the operator.
/// </summary>
public static class OperatorChecks
{
    /// <summary>
    /// Switchover (planned, zero data loss): the target is reachable, DRBD-connected to its peer, UpToDate and
    /// not recorded outdated; the current primary is reachable (it must demote cleanly); the resource is not in
    /// maintenance (maintenance means "hands off": turn it off first) and nothing else is in flight.
    /// </summary>
    public static string? SwitchoverRefusal(ClusterView view, HaOptions options, MonoTime now, string resource, string target)
    {
        ArgumentNullException.ThrowIfNull(view);
        if (Common(view, options, now, resource, target, force: false, out var r, out var facts) is { } refusal)
        {
            return refusal;
        }

        if (r.Maintenance)
        {
            return $"{resource} is in maintenance (automatic and planned moves are suspended); run 'hameshctl maintenance off {resource}' first";
        }

        if (facts.Disk != DiskState.UpToDate)
        {
            return $"{target}'s disk is {facts.Disk}, not UpToDate: a switchover would lose data (wait for the resync, or use 'hameshctl promote --force')";
        }

        if (facts.PeerConnection != ConnectionState.Connected)
        {
            return $"{target} is not connected to its DRBD peer ({facts.PeerConnection}): it may lack the latest writes";
        }

        if (r.Outdated.TryGetValue(target, out var at))
        {
            return string.Create(CultureInfo.InvariantCulture, $"{target} is recorded outdated at generation {at} (DRBD fencing): it may lack acknowledged writes");
        }

        if (r.Primary.Length == 0)
        {
            var primaries = view.Nodes.Where(n => FailoverPolicy.IsFresh(n, options, now) && n.For(resource)?.Role == DrbdRole.Primary).Select(n => n.Node).ToList();
            return primaries.Count == 0 ? null : $"no primary is recorded yet but {string.Join(", ", primaries)} is DRBD Primary: wait for the coordinator to adopt it";
        }

        return view.Node(r.Primary) is { } old && FailoverPolicy.IsFresh(old, options, now)
            ? null
            : $"the primary {r.Primary} is not reachable: a switchover needs it to demote cleanly (automatic failover handles a dead primary; 'hameshctl promote --force' is the last resort)";
    }

    /// <summary>
    /// Force-promote bypasses the data checks (UpToDate, outdated, DRBD connection) but the target must still
    /// answer (reachable, the DRBD resource up) and no other operation may be in flight. Allowed in maintenance.
    /// </summary>
    public static string? ForcePromoteRefusal(ClusterView view, HaOptions options, MonoTime now, string resource, string target)
    {
        ArgumentNullException.ThrowIfNull(view);
        return Common(view, options, now, resource, target, force: true, out _, out _);
    }

    /// <summary>Whether the recorded primary is reachable now (a force-promote then demotes it first).</summary>
    public static bool PrimaryReachable(ClusterView view, HaOptions options, MonoTime now, string resource)
    {
        ArgumentNullException.ThrowIfNull(view);
        var r = view.Resources.FirstOrDefault(x => x.Resource == resource);
        return r is { Primary.Length: > 0 } && view.Node(r.Primary) is { } n && FailoverPolicy.IsFresh(n, options, now);
    }

    // force: a force-promote may (re)promote the recorded primary when it is not DRBD Primary (e.g. its disk is not UpToDate, so the loop holds).
    private static string? Common(ClusterView view, HaOptions options, MonoTime now, string resource, string target, bool force, out ResourceFacts r, out NodeResourceFacts facts)
    {
        r = view.Resources.First(x => x.Resource == resource);
        facts = new NodeResourceFacts(DrbdRole.Unknown, DiskState.Unknown, ConnectionState.Unknown, DrbdRole.Unknown, 0, null, false);
        if (r.OperationInFlight)
        {
            return $"an operation for {resource} is already in flight";
        }

        if (r.Primary == target && r.Generation > 0 && !(force && view.Node(target)?.For(resource)?.Role is not DrbdRole.Primary))
        {
            return string.Create(CultureInfo.InvariantCulture, $"{target} is already the primary of {resource} at generation {r.Generation}");
        }

        if (view.Node(target) is not { } node || !FailoverPolicy.IsFresh(node, options, now))
        {
            return $"{target} is not reachable (no report from it for lease + drift margin)";
        }

        if (node.For(resource) is not { DrbdPresent: true } f)
        {
            return $"{target} reports no DRBD state for {resource} (resource down or not configured there)";
        }

        facts = f;
        return null;
    }
}
