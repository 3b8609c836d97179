using System.Globalization;
using HaMesh.Protocol.V1;

namespace HaMesh.Shared.Failover;

/// <summary>
/// The failover rule of design §4 as one pure function: no I/O, no clock, no randomness. Same view,
/// options and instant in → same decisions out. Every "no" is a <see cref="Decision.Hold"/> with its reason.
/// </summary>
public static class FailoverPolicy
{
    public static IReadOnlyList<Decision> Decide(ClusterView view, HaOptions options, MonoTime now)
    {
        ArgumentNullException.ThrowIfNull(view);
        ArgumentNullException.ThrowIfNull(options);
        return [.. view.Resources.SelectMany(r => DecideResource(view, r, options, now))];
    }

    /// <summary>
    /// The earliest instant at which <see cref="Decide"/> could start a failover that it cannot start now: for
    /// each resource with a recorded primary, no operation in flight and not in maintenance, the moment the
    /// primary's silence (since its last report, its last grant, or the coordinator's start) reaches lease +
    /// drift margin, or the end of the anti-flap interval if that is later. Null when no such instant exists.
    /// A host wakes the coordinator exactly then (and on every report, since votes arrive in reports) instead
    /// of discovering it on the next heartbeat: the rule is unchanged, only evaluated without delay.
    /// </summary>
    public static MonoTime? NextDecisionAt(ClusterView view, HaOptions options)
    {
        ArgumentNullException.ThrowIfNull(view);
        ArgumentNullException.ThrowIfNull(options);
        MonoTime? next = null;
        foreach (var r in view.Resources)
        {
            if (r.Generation == 0 || r.Primary.Length == 0 || r.OperationInFlight || r.Maintenance)
            {
                continue;
            }

            var primary = view.Node(r.Primary);
            var last = view.ObservingSince;
            foreach (var t in new[] { primary?.LastReportAt, primary?.LastGrantAt })
            {
                if (t is { } v && v > last)
                {
                    last = v;
                }
            }

            var at = last + options.Silence;
            if (r.LastFailoverAt is { } lf && lf + options.MinFailoverInterval > at)
            {
                at = lf + options.MinFailoverInterval;
            }

            if (next is not { } n || at < n)
            {
                next = at;
            }
        }

        return next;
    }

    /// <summary>Is the node's last report younger than lease + drift margin?</summary>
    public static bool IsFresh(NodeFacts node, HaOptions options, MonoTime now) =>
        node.LastReportAt is { } t && now - t < options.Silence;

    private static List<Decision> DecideResource(ClusterView view, ResourceFacts r, HaOptions o, MonoTime now)
    {
        var fresh = view.Nodes.Where(n => IsFresh(n, o, now)).ToList();
        if (fresh.Count == 0)
        {
            // R12: a witness that hears nobody may be the partitioned one; it must not act.
            return [new Decision.Hold(r.Resource, "the coordinator hears no node (it may be the one cut off); deciding nothing")];
        }

        var primaries = fresh.Where(n => n.For(r.Resource)?.Role == DrbdRole.Primary).ToList();
        var atCurrent = primaries.Where(n => r.Generation > 0 && n.For(r.Resource)!.Generation >= r.Generation).ToList();
        if (atCurrent.Count > 1)
        {
            return [new Decision.Halt(r.Resource, $"impossible state: {string.Join(" and ", atCurrent.Select(n => n.Node))} are both Primary at generation {r.Generation}; automatic actions stopped, operator needed")];
        }

        if (r.Maintenance)
        {
            return [new Decision.Hold(r.Resource, "maintenance mode: automatic decisions suspended")];
        }

        if (r.OperationInFlight)
        {
            return [new Decision.Hold(r.Resource, "an operation is already in flight")];
        }

        if (r.Generation == 0 || r.Primary.Length == 0)
        {
            return [Bootstrap(r, primaries, fresh)];
        }

        var decisions = new List<Decision>();
        foreach (var old in primaries.Where(n => n.Node != r.Primary && n.For(r.Resource)!.Generation < r.Generation))
        {
            decisions.Add(new Decision.Demote(r.Resource, old.Node, r.Generation, false,
                Fmt($"{old.Node} reports Primary at old generation {old.For(r.Resource)!.Generation} < {r.Generation}: demote it (rejoin as Secondary)")));
        }

        decisions.AddRange(SplitBrain(r, fresh, decisions));
        var primary = view.Node(r.Primary);
        var silence = SilenceOf(primary, view.ObservingSince, now);
        if (silence < o.Silence)
        {
            decisions.Add(PrimaryAlive(r, primary!, primaries));
            return decisions;
        }

        decisions.Add(PrimaryGone(view, r, o, now, fresh, silence));
        return decisions;
    }

    private static Decision Bootstrap(ResourceFacts r, List<NodeFacts> primaries, List<NodeFacts> fresh)
    {
        if (primaries.Count != 1)
        {
            return new Decision.Hold(r.Resource, primaries.Count == 0
                ? "no primary recorded and no node is DRBD Primary: make one primary (hameshctl switchover / promote --force)"
                : "no primary recorded and several nodes are DRBD Primary: operator needed");
        }

        // A store that starts empty under agents that ran before (a lost or rebuilt witness) must not go back to 1:
        // the agents refuse generations below the ones they persisted.
        var seen = fresh.Max(n => n.For(r.Resource)?.Generation ?? 0);
        var generation = seen + 1;
        return new Decision.Adopt(r.Resource, primaries[0].Node, generation, seen == 0
            ? string.Create(CultureInfo.InvariantCulture, $"no primary recorded yet; {primaries[0].Node} is DRBD Primary: adopting it at generation 1")
            : string.Create(CultureInfo.InvariantCulture, $"no primary recorded (new store); {primaries[0].Node} is DRBD Primary and the nodes report generations up to {seen}: adopting it at generation {generation}"));
    }

    private static IEnumerable<Decision> SplitBrain(ResourceFacts r, List<NodeFacts> fresh, List<Decision> already)
    {
        // DRBD leaves a node StandAlone after an unresolved split-brain. A Secondary that is StandAlone
        // while the primary is StandAlone too (or gone) needs the victim recovery.
        foreach (var n in fresh.Where(n => n.Node != r.Primary && already.All(d => d is not Decision.Demote dm || dm.Node != n.Node)))
        {
            var f = n.For(r.Resource);
            if (f is not { Role: DrbdRole.Secondary, PeerConnection: ConnectionState.StandAlone, DrbdPresent: true })
            {
                continue;
            }

            var commands = $"on {n.Node}: drbdadm disconnect RES; drbdadm secondary RES; drbdadm connect --discard-my-data RES; then on {r.Primary}: drbdadm connect RES";
            yield return r.DiscardOldPrimaryOnSplitBrain
                ? new Decision.Demote(r.Resource, n.Node, r.Generation, true, $"{n.Node} is StandAlone (split-brain suspected); policy DiscardOldPrimary: reconnect it discarding its changes")
                : new Decision.SplitBrainAlert(r.Resource, n.Node, commands, $"{n.Node} is StandAlone (split-brain suspected): stopped; recover by hand");
        }
    }

    private static Decision PrimaryAlive(ResourceFacts r, NodeFacts primary, List<NodeFacts> primaries)
    {
        var facts = primary.For(r.Resource);
        if (facts is { Role: DrbdRole.Primary })
        {
            var unrouted = r.IpRoutes.Where(kv => kv.Value != primary.Node).Select(kv => kv.Key).Order(StringComparer.Ordinal).FirstOrDefault();
            return unrouted is null
                ? new Decision.Hold(r.Resource, $"primary {primary.Node} is reporting")
                : new Decision.MoveIp(r.Resource, primary.Node, r.Generation, unrouted, $"{unrouted} is not known to be routed to the primary {primary.Node}");
        }

        if (primaries.Count > 0)
        {
            return new Decision.Hold(r.Resource, $"{primary.Node} should be primary but {primaries[0].Node} still is: waiting for it to be demoted");
        }

        return facts is { Disk: DiskState.UpToDate, DrbdPresent: true }
            ? new Decision.EnsurePrimary(r.Resource, primary.Node, r.Generation, $"{primary.Node} is the recorded primary at generation {r.Generation} but DRBD {facts.Role}: promote it")
            : new Decision.Hold(r.Resource, $"{primary.Node} is the recorded primary but its disk is {facts?.Disk.ToString() ?? "unknown"}: not promoting");
    }

    private static Decision PrimaryGone(ClusterView view, ResourceFacts r, HaOptions o, MonoTime now, List<NodeFacts> fresh, TimeSpan silence)
    {
        if (r.LastFailoverAt is { } last && now - last < o.MinFailoverInterval)
        {
            return new Decision.Hold(r.Resource, Fmt($"primary {r.Primary} silent, but the last failover was {(now - last).TotalSeconds:0}s ago (< min interval {o.MinFailoverInterval.TotalSeconds:0}s)"));
        }

        var reasons = new List<string>();
        var agreeing = new List<(NodeFacts Node, NodeResourceFacts Facts)>();
        foreach (var n in fresh.Where(n => n.Node != r.Primary))
        {
            var f = n.For(r.Resource);
            if (f is null)
            {
                reasons.Add($"{n.Node}: no report for the resource");
            }
            else if (f.PeerConnection == ConnectionState.Connected && f.PeerRole == DrbdRole.Primary)
            {
                reasons.Add($"{n.Node}: still connected to Primary {r.Primary} over DRBD (asymmetric partition)");
            }
            else if (f.PeerContactAge is not { } age)
            {
                reasons.Add($"{n.Node}: reports no peer-contact age (no vote)");
            }
            else if (age < o.Silence)
            {
                reasons.Add(Fmt($"{n.Node}: heard from {r.Primary} {age.TotalMilliseconds:0} ms ago (asymmetric partition)"));
            }
            else
            {
                agreeing.Add((n, f));
            }
        }

        var voters = view.Nodes.Count + 1;
        var votes = 1 + agreeing.Count;
        var gone = Fmt($"silent for {silence.TotalMilliseconds:0} ms");
        if (votes * 2 <= voters)
        {
            return new Decision.Hold(r.Resource, $"primary {r.Primary} {gone} for the coordinator, but only {votes} of {voters} voters agree it is gone ({string.Join("; ", reasons)})");
        }

        var eligible = new List<(NodeFacts Node, NodeResourceFacts Facts)>();
        foreach (var (n, f) in agreeing)
        {
            var why = f switch
            {
                { DrbdPresent: false } => "DRBD resource not up",
                { Disk: not DiskState.UpToDate } => $"disk {f.Disk}, not UpToDate",
                { PeerConnection: ConnectionState.StandAlone } => "StandAlone (split-brain or disconnected)",
                _ when r.Outdated.TryGetValue(n.Node, out var at) => $"recorded outdated at generation {at} (DRBD fencing): never promoted automatically",
                _ => null,
            };
            if (why is null)
            {
                eligible.Add((n, f));
            }
            else
            {
                reasons.Add($"{n.Node}: {why}");
            }
        }

        if (eligible.Count == 0)
        {
            return new Decision.Hold(r.Resource, $"primary {r.Primary} {gone} and {votes} of {voters} voters agree, but no node may take over ({string.Join("; ", reasons)})", FailoverBlocked: true);
        }

        var chosen = eligible
            .OrderByDescending(c => c.Facts.Generation)
            .ThenByDescending(c => c.Node.Node == r.PreferredNode)
            .ThenBy(c => c.Node.Node, StringComparer.Ordinal)
            .First();
        return new Decision.Failover(r.Resource, r.Primary, chosen.Node.Node, r.Generation + 1,
            $"primary {r.Primary} {gone}; {votes} of {voters} voters agree; {chosen.Node.Node} is UpToDate and not outdated");
    }

    /// <summary>
    /// Time since the coordinator last heard from (or granted a lease to) the node, its grant being a
    /// promise that runs from the grant; never before the coordinator started observing.
    /// </summary>
    private static TimeSpan SilenceOf(NodeFacts? n, MonoTime observingSince, MonoTime now)
    {
        var last = observingSince;
        foreach (var t in new[] { n?.LastReportAt, n?.LastGrantAt })
        {
            if (t is { } v && v > last)
            {
                last = v;
            }
        }

        return now - last;
    }

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
