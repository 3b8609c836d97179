using System.Text.Json;
using HaMesh.Coordinator.Store;

namespace HaMesh.Coordinator.Tests.Store;

/// <summary>The operation rows the previous daemon (its OperationExecutor) wrote: the store must still load them after an upgrade.</summary>
/// <remarks>Kept in the tests only, to write such rows.</remarks>
public static class OperationKinds
{
    public const string Failover = "failover";
    public const string Switchover = "switchover";
    public const string ForcePromote = "force-promote";

    /// <summary>The event-kind prefix: FailoverStarted, SwitchoverCompleted, ForcePromoteAborted…</summary>
    public static string EventPrefix(string kind) => kind switch
    {
        Switchover => "Switchover",
        ForcePromote => "ForcePromote",
        _ => "Failover",
    };
}

/// <summary>How far an operation got (persisted after each step, so a restarted coordinator knows where to look).</summary>
public static class OperationPhases
{
    /// <summary>Generation g+1 persisted with the Started event; nothing done on the nodes yet (as far as the record knows).</summary>
    public const string Started = "started";

    /// <summary>Switchover / force-promote: the old primary was demoted and the target recorded as primary.</summary>
    public const string Demoted = "demoted";

    /// <summary>The target answered Promote with success at the operation's generation.</summary>
    public const string Promoted = "promoted";
}

/// <summary>
/// One failover, switchover or force-promote: from whom to whom at which generation. Persisted as an
/// <see cref="OperationRecord"/> in the same transaction as the generation it uses.
/// </summary>
/// DemoteFirst: demote From before promoting (switchover; force-promote while the old primary is reachable).
public sealed record OperationPlan(string Id, string Kind, string Resource, string From, string To, ulong Generation, string Reason, bool Force, bool DemoteFirst)
{
    /// <summary>The sequence of the Started event (0 when not known, e.g. after a restart).</summary>
    public ulong StartedEventSequence { get; init; }

    public string Prefix => OperationKinds.EventPrefix(Kind);

    public OperationRecord ToRecord(string phase, DateTimeOffset startedAt) =>
        new(Id, Resource, Kind, To, Generation, phase, startedAt, JsonSerializer.Serialize(new State(From, Reason, Force, DemoteFirst)));

    public static OperationPlan FromRecord(OperationRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        var state = JsonSerializer.Deserialize<State>(record.StateJson) ?? new State("", "", false, false);
        return new OperationPlan(record.Id, record.Kind, record.Resource, state.From, record.TargetNode, record.Generation, state.Reason, state.Force, state.DemoteFirst);
    }

    private sealed record State(string From, string Reason, bool Force, bool DemoteFirst);
}
