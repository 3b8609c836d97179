namespace HaMesh.Shared.Failover;

/// <summary>What the coordinator should do for a resource, and why. Produced by <see cref="FailoverPolicy.Decide"/>; carried out by the executor.</summary>
public abstract record Decision(string Resource, string Reason)
{
    /// <summary>Nothing to do; the reason is logged (the audit trail for "why did it not fail over").</summary>
    /// <summary>Nothing to do now, and why. <c>FailoverBlocked</c>: the primary is gone but no node may take over (outdated, not UpToDate, StandAlone...), an operator must act.</summary>
    public sealed record Hold(string Resource, string Reason, bool FailoverBlocked = false) : Decision(Resource, Reason);

    /// <summary>
    /// Record the node that is already Primary as the resource's primary (a cluster's first start, or a coordinator whose
    /// store was lost) at <see cref="Generation"/>: 1 on a new cluster, otherwise one above every generation the nodes
    /// report, so the agents (which refuse a generation below the one they persisted) accept it and every command of an
    /// earlier coordinator is stale.
    /// </summary>
    public sealed record Adopt(string Resource, string Node, ulong Generation, string Reason) : Decision(Resource, Reason);

    /// <summary>Quorum agrees the primary is gone: persist generation <see cref="NewGeneration"/> with <see cref="To"/> as primary, then promote it and move the IP.</summary>
    public sealed record Failover(string Resource, string From, string To, ulong NewGeneration, string Reason) : Decision(Resource, Reason);

    /// <summary>The recorded primary is reachable but not (yet) DRBD Primary: (re)issue the idempotent Promote at the current generation.</summary>
    public sealed record EnsurePrimary(string Resource, string Node, ulong Generation, string Reason) : Decision(Resource, Reason);

    /// <summary>The primary is DRBD Primary but a failover IP is not (known to be) routed to it: run the move workflow (reads routedTo first; no POST when already routed).</summary>
    public sealed record MoveIp(string Resource, string Node, ulong Generation, string Ip, string Reason) : Decision(Resource, Reason);

    /// <summary>A node that is not the recorded primary reports Primary at an older generation (an old primary rejoining): demote it.</summary>
    public sealed record Demote(string Resource, string Node, ulong Generation, bool DiscardMyData, string Reason) : Decision(Resource, Reason);

    /// <summary>DRBD split-brain detected; policy says stop and tell the operator how to recover.</summary>
    public sealed record SplitBrainAlert(string Resource, string Victim, string RecoveryCommands, string Reason) : Decision(Resource, Reason);

    /// <summary>An impossible state (two Primaries at the current generation): stop acting and alert (R13).</summary>
    public sealed record Halt(string Resource, string Reason) : Decision(Resource, Reason);
}
