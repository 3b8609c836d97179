using System.Globalization;

namespace HaMesh.Shared.Core;

/// <summary>What a peer is doing when another node asks it for a lease renewal.</summary>
public enum GrantorState
{
    /// <summary>DRBD Secondary, no promotion of itself agreed: the only state that grants.</summary>
    Secondary,

    /// <summary>DRBD Primary itself.</summary>
    Primary,

    /// <summary>A promotion of this node is accepted and running (waiting for its lease, or activating).</summary>
    Promoting,

    /// <summary>Stepping down (demote or self-fence running).</summary>
    Deactivating,
}

/// <summary>
/// The peer grantor's rule (design §4), one implementation for <see cref="AgentCore"/> (which the simulation checks)
/// and the agent daemon's <c>RenewLease</c>: only a Secondary that is not being promoted itself grants, never to a
/// requester behind its own generation, and a grant is a promise to take part in no promotion until
/// lease + drift margin after it (so the holder's lease, which runs from when it sent the request, ends first).
/// </summary>
public static class GrantorRule
{
    /// <summary>Null when the renewal may be granted; otherwise the refusal's reason.</summary>
    /// <param name="node">The grantor's name.</param>
    /// <param name="state">What the grantor is doing.</param>
    /// <param name="grantorGeneration">The grantor's highest generation (for <see cref="GrantorState.Promoting"/>, the promotion's).</param>
    /// <param name="requested">The generation the requester holds.</param>
    public static string? Refusal(string node, GrantorState state, ulong grantorGeneration, ulong requested) => state switch
    {
        GrantorState.Primary => Fmt($"{node} is Primary itself"),
        GrantorState.Promoting => Fmt($"{node} is being promoted itself (generation {grantorGeneration})"),
        GrantorState.Deactivating => Fmt($"{node} is stepping down itself"),
        _ when requested < grantorGeneration => Fmt($"stale generation {requested} < {grantorGeneration}"),
        _ => null,
    };

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
