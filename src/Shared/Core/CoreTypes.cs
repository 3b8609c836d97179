using HaMesh.Shared.Failover;

namespace HaMesh.Shared.Core;

/// <summary>The timings the sans-I/O cores run on (from the cluster file; see design §3 for the rules between them).</summary>
public sealed record CoreTimings(TimeSpan Heartbeat, TimeSpan Lease, TimeSpan DriftMargin, TimeSpan SelfFenceDeadline)
{
    /// <summary>How long a grantor promises not to take part in promoting another node after a grant: lease + drift margin.</summary>
    public TimeSpan Promise => Lease + DriftMargin;

    /// <summary>The daemons' defaults (design §3): heartbeat 250 ms, lease 2 s, drift margin 500 ms, self-fence deadline 1.5 s.</summary>
    public static CoreTimings Default { get; } = new(TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(2), TimeSpan.FromMilliseconds(500), TimeSpan.FromMilliseconds(1500));
}

/// <summary>The name the agent cores use for the coordinator as a lease grantor and command sender.</summary>
public static class CoreNames
{
    public const string Coordinator = "coordinator";
}

/// <summary>A state-changing command for one resource, generation-fenced (design §4).</summary>
/// <param name="Id">The sender's id for the command; the reply carries it.</param>
/// <param name="From">Who sent it (<see cref="CoreNames.Coordinator"/> or a peer's node name, for a fence-peer outdate).</param>
/// <param name="Kind">What to do.</param>
/// <param name="Generation">The generation it is issued at; lower than the agent's highest is refused.</param>
/// <param name="DiscardMyData">For a demote of a split-brain victim: reconnect discarding this node's changes.</param>
/// <param name="Force">For an operator's force-promote (--i-understand-data-loss): the agent may promote a disk that is not UpToDate.</param>
/// <param name="Reconnect">For a demote of a rejoining old primary: reconnect DRBD afterwards (keeping this node's data).</param>
public sealed record AgentCommand(long Id, string From, CommandKind Kind, ulong Generation, bool DiscardMyData = false, bool Force = false, bool Reconnect = false)
{
    /// <summary>Whether <paramref name="other"/> asks for the same thing (only the id and the sender may differ): it joins this one.</summary>
    public bool SameAs(AgentCommand other) => other is not null && this with { Id = other.Id, From = other.From } == other;
}

public enum CommandKind
{
    /// <summary>Become Primary at the generation: stop granting, obtain a lease, then run the activation steps.</summary>
    Promote,

    /// <summary>Ensure services stopped, unmounted, DRBD Secondary (and reconnected).</summary>
    Demote,

    /// <summary>Mark the local disk Outdated (fence-peer from the Primary, or the coordinator).</summary>
    Outdate,

    /// <summary>A voter that is not the candidate agrees to a promotion at the generation: from now on it grants no lease below it.</summary>
    Agree,
}

/// <summary>What an agent core can ask its host to run (each step idempotent, design §4).</summary>
public enum StepKind
{
    /// <summary>drbdadm primary; mount; start services; add IP alias.</summary>
    Activate,

    /// <summary>Stop services; unmount; drbdadm secondary.</summary>
    Deactivate,

    /// <summary>Deactivate, then reconnect DRBD discarding this node's changes (split-brain victim).</summary>
    DeactivateDiscard,

    /// <summary>drbdadm outdate.</summary>
    Outdate,
}

/// <summary>Where the agent core is in its role cycle.</summary>
public enum AgentPhase
{
    Secondary,

    /// <summary>A Promote was accepted; waiting for a lease (the timer starts when the request is sent) before touching DRBD.</summary>
    AwaitingLease,

    Activating,
    Primary,
    Deactivating,
}

/// <summary>What an agent core asks its host to do. The host runs them in order.</summary>
public abstract record AgentEffect
{
    private AgentEffect()
    {
    }

    /// <summary>Write the generation durably (atomic write + fsync) before anything after it in the same list runs.</summary>
    public sealed record PersistGeneration(ulong Generation) : AgentEffect;

    /// <summary>Ask a grantor (the coordinator or a peer) for a lease renewal.</summary>
    public sealed record SendLeaseRequest(string To, ulong Generation, ulong Sequence) : AgentEffect;

    /// <summary>Answer a peer's renewal request.</summary>
    public sealed record SendLeaseReply(string To, ulong Sequence, bool Granted, ulong Generation, string Reason) : AgentEffect;

    /// <param name="Kind">Which sequence.</param>
    /// <param name="Generation">The generation it runs at.</param>
    /// <param name="Reason">Why (a self-fence's reason starts with "self-fence: ").</param>
    /// <param name="FenceBy">For a self-fence: the instant by which the node must be demoted (null: now + the configured
    /// self-fence deadline). Earlier for a Primary found at start, whose lease ended at its start.</param>
    public sealed record RunSteps(StepKind Kind, ulong Generation, string Reason, MonoTime? FenceBy = null) : AgentEffect
    {
        public const string SelfFencePrefix = "self-fence: ";

        public bool IsSelfFence => Reason.StartsWith(SelfFencePrefix, StringComparison.Ordinal);
    }

    /// <summary>Answer a command (to its <see cref="AgentCommand.From"/>).</summary>
    /// <param name="Command">The command answered.</param>
    /// <param name="Success">Whether it was carried out.</param>
    /// <param name="Message">What happened, or why not.</param>
    /// <param name="Busy">Refused only because another command for the resource is running: a host that serialises
    /// commands hands it in again once that one is answered.</param>
    public sealed record ReplyCommand(AgentCommand Command, bool Success, string Message, bool Busy = false) : AgentEffect;

    /// <summary>Send a status report to the coordinator; the host adds the DRBD facts it reads (read when sending).</summary>
    /// <param name="Generation">The highest generation this node has seen.</param>
    /// <param name="PeerContactAge">This node's vote: time since it last heard from a primary or granted a lease.</param>
    /// <param name="Phase">Where the core is in its role cycle.</param>
    /// <param name="Sequence">Grows with every report, across restarts too: the coordinator orders this node's reports by it.</param>
    public sealed record SendReport(ulong Generation, TimeSpan PeerContactAge, AgentPhase Phase, ulong Sequence) : AgentEffect;

    /// <summary>Call <see cref="AgentCore.OnTimer"/> at (or after) this local monotonic instant.</summary>
    public sealed record ScheduleWake(MonoTime At) : AgentEffect;

    /// <summary>Ask for the peer to be fenced: to the coordinator (record outdated) or to the peer itself (drbdadm outdate).</summary>
    /// <param name="To">The coordinator, or the peer itself.</param>
    /// <param name="Peer">The peer to fence.</param>
    /// <param name="Generation">This node's generation.</param>
    /// <param name="Id">Matches the reply.</param>
    /// <param name="AfterReport">The sequence of the last report this node sent before asking: only a later report may clear the mark.</param>
    public sealed record SendFenceRequest(string To, string Peer, ulong Generation, long Id, ulong AfterReport) : AgentEffect;

    /// <summary>The peer is fenced: the fence-peer handler may return "peer outdated" and DRBD resumes I/O.</summary>
    public sealed record FenceCompleted(string Peer, string By) : AgentEffect;

    /// <summary>A line for the log/trace.</summary>
    public sealed record Note(string Text) : AgentEffect;
}
