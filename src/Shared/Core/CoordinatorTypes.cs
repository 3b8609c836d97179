using System.Collections.Immutable;
using HaMesh.Shared.Failover;

namespace HaMesh.Shared.Core;

/// <summary>One resource as the coordinator core sees it in configuration.</summary>
public sealed record CoreResource(string Name, string PreferredNode, IReadOnlyList<string> Ips, bool DiscardOldPrimaryOnSplitBrain = false)
{
    /// <summary>The DRBD resource's name (in the exact recovery commands of a split-brain alert); the resource's name when not set.</summary>
    public string DrbdResource { get; init; } = "";
}

/// <summary>Configuration of the coordinator core.</summary>
/// <param name="Nodes">Every configured node.</param>
/// <param name="Resources">Every configured resource.</param>
/// <param name="Policy">What <see cref="FailoverPolicy.Decide"/> needs.</param>
/// <param name="Heartbeat">How often the host calls <see cref="CoordinatorCore.OnTimer"/>.</param>
/// <param name="OvhPoll">How often a move task and routedTo are polled.</param>
/// <param name="OperationTimeout">After this long an operation is abandoned (an event says so) and decided afresh.</param>
public sealed record CoordinatorConfig(IReadOnlyList<string> Nodes, IReadOnlyList<CoreResource> Resources, HaOptions Policy, TimeSpan Heartbeat, TimeSpan OvhPoll, TimeSpan OperationTimeout)
{
    /// <summary>How long to wait for a command reply or an OVH answer before retrying (idempotent calls only).</summary>
    public TimeSpan ReplyTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How long a switchover or force-promote retries a refused Promote of the target (it may have promised the old
    /// primary a lease: at most lease + drift margin) before rolling back (or failing, when nothing was demoted).</summary>
    public TimeSpan PromoteRetryWindow { get; init; } = TimeSpan.FromMilliseconds(2500);

    /// <summary>How long to wait for an OVH answer before reading the state again (null: <see cref="ReplyTimeout"/>). The real API
    /// may take seconds per call, and a read is several calls: it must exceed them, or every answer arrives too late.</summary>
    public TimeSpan? OvhReplyTimeout { get; init; }

    /// <summary>How long the move of one IP may take (from its first state read) before the operation fails with
    /// OvhMoveFailed (null: <see cref="OperationTimeout"/>). A stuck OVH task is followed, never posted over.</summary>
    public TimeSpan? MoveTimeout { get; init; }

    /// <summary>Pings through the failover IP that may fail before a "routed but unreachable" event.</summary>
    public int PingsBeforeUnreachable { get; init; } = 4;
}

public enum OperationKind
{
    /// <summary>g+1 → Promote(candidate) → move → verify.</summary>
    Failover,

    /// <summary>Promote the recorded primary at the current generation → move → verify.</summary>
    EnsurePrimary,

    /// <summary>Move a failover IP to the primary → verify.</summary>
    MoveIp,

    /// <summary>Operator, planned: g+1 → Demote(old) → record the target primary → Promote(target) → move → verify;
    /// a failed promote rolls back to the old primary at g+2, a failed demote aborts (the old primary is re-asserted).</summary>
    Switchover,

    /// <summary>Operator, --i-understand-data-loss: like a switchover (demote first when the old primary is reachable) but
    /// the UpToDate/outdated checks are bypassed and the Promote is forced; loudly logged.</summary>
    ForcePromote,
}

public enum OperationStage
{
    /// <summary>Asking the voters other than the candidate to agree (N &gt; 2 nodes): they then grant no lease below the new generation.</summary>
    Agreeing,

    /// <summary>Switchover / force-promote: demoting the old primary at the operation's generation.</summary>
    Demoting,
    Promoting,
    Moving,
    Verifying,

    /// <summary>The demote of the old primary failed: re-asserting it (idempotent Promote at the operation's generation), then aborted.</summary>
    Reasserting,

    /// <summary>The target did not come up after the old primary was demoted: promoting the old primary again at g+2.</summary>
    RollingBack,
}

/// <summary>An in-flight operation, persisted so a restarted coordinator resumes it (re-reading state first).</summary>
public sealed record OperationRecord(long Id, OperationKind Kind, string Target, ulong Generation, OperationStage Stage, long DecisionId, MonoTime DecidedAt)
{
    /// <summary>Switchover / force-promote: the primary before the operation (demoted first when <see cref="DemoteFirst"/>).</summary>
    public string From { get; init; } = "";

    /// <summary>Force-promote: the Promote is forced (data checks bypassed by the operator).</summary>
    public bool Force { get; init; }

    /// <summary>Switchover / force-promote with a reachable old primary: demote it before promoting the target.</summary>
    public bool DemoteFirst { get; init; }

    /// <summary>Why (the decision's or the operator's reason).</summary>
    public string Reason { get; init; } = "";

    /// <summary>The kind as the store and the events name it: failover, switchover, force-promote, ensure-primary, move-ip.</summary>
    public string KindName => NameOf(Kind);

    /// <summary>The name of an operation kind in the store and the events (<see cref="KindOf"/> reads it back).</summary>
    public static string NameOf(OperationKind kind) => kind switch
    {
        OperationKind.Failover => "failover",
        OperationKind.Switchover => "switchover",
        OperationKind.ForcePromote => "force-promote",
        OperationKind.EnsurePrimary => "ensure-primary",
        OperationKind.MoveIp => "move-ip",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "no name for this operation kind"),
    };

    /// <summary>The kind <see cref="NameOf"/> names; null for any other name.</summary>
    public static OperationKind? KindOf(string name) => Enum.GetValues<OperationKind>().Cast<OperationKind?>().FirstOrDefault(k => NameOf(k!.Value) == name);

    /// <summary>The event-kind prefix: FailoverStarted, SwitchoverCompleted, ForcePromoteRolledBack…</summary>
    public string Prefix => Kind switch
    {
        OperationKind.Switchover => "Switchover",
        OperationKind.ForcePromote => "ForcePromote",
        OperationKind.Failover => "Failover",
        _ => "Operation",
    };
}

/// <summary>The coordinator's durable facts about one resource (SQLite in the daemon, a dictionary in the simulation).</summary>
public sealed record CoordinatorRecord(string Resource, ulong Generation, string Primary, ImmutableDictionary<string, ulong> Outdated, OperationRecord? Operation)
{
    /// <summary>Per outdated node: which node asked to fence it, and the last report that node had sent before asking.
    /// Only a later report from that node, showing the outdated one connected and UpToDate, clears the mark.</summary>
    public ImmutableDictionary<string, (string By, ulong AfterReport)> OutdatedBy { get; init; } = ImmutableDictionary<string, (string By, ulong AfterReport)>.Empty.WithComparers(StringComparer.Ordinal);

    /// <summary>Maintenance (design §4): automatic decisions suspended, reports continue; switchovers refused.</summary>
    public bool Maintenance { get; init; }

    public static CoordinatorRecord Empty(string resource) => new(resource, 0, "", ImmutableDictionary<string, ulong>.Empty.WithComparers(StringComparer.Ordinal), null);
}

/// <summary>The answer to an operator's switchover or force-promote.</summary>
/// <param name="Refusal">Null when accepted; otherwise why not (the host answers FailedPrecondition with it).</param>
/// <param name="OperationId">The operation's id (its events carry it as <see cref="CoreEvent.RefId"/>).</param>
/// <param name="Generation">The generation the operation runs at.</param>
/// <param name="Effects">What to run (the Started event and the record first).</param>
public sealed record OperatorOutcome(string? Refusal, long OperationId, ulong Generation, IReadOnlyList<CoordinatorEffect> Effects);

public enum CoreSeverity
{
    Info,
    Warning,

    /// <summary>An operator must hear of it: a decision, a failure, a split brain.</summary>
    Critical,
}

/// <summary>A durable event (design §7). <see cref="RefId"/> names the OVH call, command or decision it records.</summary>
public sealed record CoreEvent(long Id, string Kind, string Resource, string Text, long RefId)
{
    public static readonly IReadOnlyDictionary<string, string> NoAttributes = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>The node the event is about (empty: none in particular).</summary>
    public string Node { get; init; } = "";

    /// <summary>The generation it is about.</summary>
    public ulong Generation { get; init; }

    public CoreSeverity Severity { get; init; }

    /// <summary>Structured facts: operation id, kind, from, to; on a terminal event outcome, terminal=true and the timings (*_ms).</summary>
    public IReadOnlyDictionary<string, string> Attributes { get; init; } = NoAttributes;

    /// <summary>How loud an event of this kind is.</summary>
    public static CoreSeverity SeverityOf(string kind) => kind switch
    {
        "FailoverBlocked" or "SplitBrain" or "Halted" or "FencePeerRefused" or "PromoteFailed" or "DemoteFailed" or "IpRoutedButUnreachable" or "IpAnsweredByWrongNode" => CoreSeverity.Critical,
        _ when kind.EndsWith("Started", StringComparison.Ordinal) || kind.EndsWith("Failed", StringComparison.Ordinal) || kind.EndsWith("Aborted", StringComparison.Ordinal)
            || kind.EndsWith("RolledBack", StringComparison.Ordinal) || kind.EndsWith("RollingBack", StringComparison.Ordinal) || kind.EndsWith("Abandoned", StringComparison.Ordinal) => CoreSeverity.Critical,
        "PeerOutdated" or "OutdatedCleared" or "Demote" or "Demoted" or "Rejoined" or "MaintenanceOn" or "MaintenanceOff" or "PrimaryHandedOver" or "OvhCallFailed" or "OvhMoveUncertain" or "AgreeRefused" => CoreSeverity.Warning,
        _ when kind.EndsWith("Completed", StringComparison.Ordinal) && kind != "OvhMoveCompleted" || kind.EndsWith("Resumed", StringComparison.Ordinal) => CoreSeverity.Warning,
        _ => CoreSeverity.Info,
    };
}

/// <summary>A call the coordinator asks its OVH client to make.</summary>
public abstract record OvhCall
{
    private OvhCall()
    {
    }

    /// <summary>GET routedTo and the pending move tasks of the IP.</summary>
    public sealed record ReadState : OvhCall;

    /// <summary>POST /ip/{ip}/move {to}: never repeated without a <see cref="ReadState"/> first.</summary>
    public sealed record Move(string To) : OvhCall;
}

/// <summary>What OVH answered.</summary>
public abstract record OvhReply
{
    private OvhReply()
    {
    }

    /// <param name="RoutedTo">The node the IP is routed to (null: elsewhere or unknown).</param>
    /// <param name="PendingMoveTo">The target of a pending (todo/doing) move task, if any.</param>
    public sealed record State(string? RoutedTo, string? PendingMoveTo) : OvhReply;

    public sealed record MoveAccepted(long TaskId) : OvhReply;

    /// <summary>An error or a timeout: the call may or may not have had an effect.</summary>
    public sealed record Failed(string Message) : OvhReply;
}

/// <summary>What a coordinator core asks its host to do, in order.</summary>
public abstract record CoordinatorEffect
{
    private CoordinatorEffect()
    {
    }

    /// <summary>Write the record durably (fsync) before anything after it in the same list runs.</summary>
    public sealed record PersistRecord(CoordinatorRecord Record) : CoordinatorEffect;

    /// <summary>Append a durable event (fsync) before anything after it in the same list runs.</summary>
    public sealed record AppendEvent(CoreEvent Event) : CoordinatorEffect;

    public sealed record SendLeaseGrant(string Node, string Resource, ulong Sequence, bool Granted, ulong Generation, string Reason) : CoordinatorEffect;

    public sealed record SendCommand(string Node, string Resource, AgentCommand Command) : CoordinatorEffect;

    public sealed record ReplyFence(string Node, string Resource, long Id, bool Success, string Message) : CoordinatorEffect;

    public sealed record CallOvh(long CallId, string Resource, string Ip, OvhCall Call) : CoordinatorEffect;

    /// <summary>AgentService.Ping through the failover IP (end-to-end proof).</summary>
    public sealed record PingViaIp(long CallId, string Resource, string Ip) : CoordinatorEffect;

    /// <summary>Why the rule holds (does nothing) for the resource, when the reason changed: for the log ("why no failover?").</summary>
    public sealed record Holding(string Resource, string Reason) : CoordinatorEffect;
}
