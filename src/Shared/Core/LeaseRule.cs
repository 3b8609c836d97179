using System.Globalization;
using HaMesh.Shared.Failover;

namespace HaMesh.Shared.Core;

/// <summary>A grantor's promise: it takes part in promoting no other node than <see cref="Node"/> until <see cref="Until"/>.</summary>
public readonly record struct LeasePromise(string Node, MonoTime Until);

/// <summary>
/// The coordinator's lease-grant rule (design §4), one implementation for <see cref="CoordinatorCore"/> and the daemon's
/// grantor: a renewal is granted only to the recorded primary at exactly the current generation, and never while the
/// coordinator's promise to another node (lease + drift margin after its last grant to it) still runs. The promise
/// matters when a new primary is named without the old one being silent that long: a force-promote of an unreachable
/// primary, or a restarted coordinator that may have granted the recorded primary just before it stopped.
/// </summary>
public static class LeaseRule
{
    /// <summary>Null when the grant may be given; otherwise the refusal's reason.</summary>
    public static string? Refusal(string resource, ulong generation, string primary, string node, ulong requested, LeasePromise? promise, MonoTime now)
    {
        if (generation == 0 || primary.Length == 0)
        {
            return $"no primary recorded for '{resource}' yet";
        }

        if (primary != node)
        {
            return Fmt($"{node} is not the primary of {resource} (the coordinator made {primary} primary at generation {generation})");
        }

        if (requested != generation)
        {
            return Fmt($"generation {requested} is not the current generation {generation}");
        }

        return promise is { } p && p.Node != node && now < p.Until
            ? Fmt($"the coordinator promised {p.Node} not to take part in promoting another node for {(p.Until - now).TotalMilliseconds:0} ms more")
            : null;
    }

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
