using HaMesh.Protocol.V1;

namespace HaMesh.Simulation.Tests.Harness;

/// <summary>
/// One node's DRBD device. <see cref="Data"/>, <see cref="Disk"/> and the generation UUIDs (<see cref="CurrentUuid"/>,
/// <see cref="BitmapUuids"/>, <see cref="HistoryUuids"/>) are on disk (survive a crash); the rest is volatile.
/// </summary>
public sealed class DrbdDevice(string node)
{
    public string Node { get; } = node;

    public bool Up { get; set; } = true;

    public DrbdRole Role { get; set; } = DrbdRole.Secondary;

    public DiskState Disk { get; set; } = DiskState.UpToDate;

    /// <summary>The writes on this disk (ids).</summary>
    public HashSet<long> Data { get; set; } = [];

    /// <summary>DRBD's current UUID: the generation of the data on this disk (meta data, survives a crash).</summary>
    public ulong CurrentUuid { get; set; }

    /// <summary>
    /// DRBD 9's bitmap UUID per peer: the current UUID this disk had when it last was in sync with that peer, set
    /// when this disk moved on to a new current UUID without it (0: no change since). Meta data.
    /// </summary>
    public Dictionary<string, ulong> BitmapUuids { get; } = new(StringComparer.Ordinal);

    /// <summary>Earlier current UUIDs, newest first (DRBD 9 keeps HISTORY_UUIDS = 32). Meta data.</summary>
    public List<ulong> HistoryUuids { get; } = [];

    /// <summary>
    /// DRBD's NEW_CUR_UUID: a Primary lost a peer's copy of the data while its I/O is frozen for fencing; the new current
    /// UUID is made when I/O resumes (volatile: a crash or demote before that drops it).
    /// </summary>
    public bool NewCurrentUuidArmed { get; set; }

    public bool ServiceUp { get; set; }

    /// <summary>Unresolved split-brain: refuses to connect until an operator (or the discard policy) reconnects it.</summary>
    public bool StandAlone { get; set; }

    /// <summary>The next connect syncs this node from its peer, discarding its changes (split-brain victim recovery).</summary>
    public bool DiscardOnConnect { get; set; }

    /// <summary>Peers the fence-peer handler was asked about and has not yet confirmed fenced: I/O is frozen while any is pending.</summary>
    public HashSet<string> PendingFence { get; } = new(StringComparer.Ordinal);

    /// <summary>Peers confirmed fenced (outdated) since the connection to them broke.</summary>
    public HashSet<string> Fenced { get; } = new(StringComparer.Ordinal);

    public bool Frozen => PendingFence.Count > 0;

    /// <summary>Writes on this (Primary) disk not yet complete: each waits for the peers it was sent to (volatile).</summary>
    public List<InFlightWrite> InFlight { get; } = [];

    public bool Writable => Up && Role == DrbdRole.Primary && ServiceUp && !Frozen;
}

/// <summary>A protocol C write on its way: complete once every peer in <see cref="Awaiting"/> has it or is known fenced.</summary>
public sealed class InFlightWrite(long id, Action acknowledge, IEnumerable<string> awaiting)
{
    public long Id { get; } = id;

    public Action Acknowledge { get; } = acknowledge;

    public HashSet<string> Awaiting { get; } = new(awaiting, StringComparer.Ordinal);
}

/// <summary>
/// DRBD protocol C between the nodes as the simulation needs it (specs/drbd.md): a write completes only
/// when on every connected disk; a broken link freezes a Primary's I/O and runs the fence-peer handler
/// (resource-and-stonith) until the peer is fenced; promote needs an UpToDate disk and no connected Primary.
/// Each disk carries DRBD's generation UUIDs (current, a bitmap UUID per peer, history): a Primary that loses a peer
/// makes a new current UUID when its I/O resumes, a node promoted while a peer is away makes one at once (drbd_set_role,
/// whether or not it then writes), and the connected peers take it. A reconnect compares them as drbd_uuid_compare
/// does: the side that moved on while the other did not is the SyncSource, whatever the disk states (only an
/// Inconsistent disk always syncs from the other); when both moved on it is a split-brain (both StandAlone).
/// </summary>
public sealed class DrbdModel
{
    private readonly SimWorld _world;
    private readonly SimNetwork _net;
    private readonly HashSet<(string, string)> _connected = [];
    // A new number per connection: a replication message or ack sent on an earlier connection is never applied.
    private readonly Dictionary<(string, string), long> _connections = [];
    // Replication delays on their own stream, so the other random draws (and so every regression seed's faults) stay as they were.
    private readonly Random _linkDelays;
    private long _connectionIds;
    // UUIDs from a counter, not a random stream: every seed's draws stay as they were. 1 is the cluster's first generation.
    private ulong _uuids = 1;

    public DrbdModel(SimWorld world, SimNetwork net, IEnumerable<string> nodes)
    {
        _world = world;
        _net = net;
        _linkDelays = new Random(world.Seed ^ 0x5EED_D8BD);
        var names = nodes.ToList();
        foreach (var n in names)
        {
            // the initial full sync is done: every disk is at the first generation, in sync with every peer
            var d = new DrbdDevice(n) { CurrentUuid = _uuids };
            foreach (var p in names.Where(p => p != n))
            {
                d.BitmapUuids[p] = 0;
            }

            Devices[n] = d;
        }
    }

    /// <summary>DRBD 9 keeps this many history UUIDs (HISTORY_UUIDS = MAX_PEERS).</summary>
    public const int HistoryUuidSlots = 32;

    public Dictionary<string, DrbdDevice> Devices { get; } = new(StringComparer.Ordinal);

    /// <summary>Raised on a Primary when its link to a peer breaks (the fence-peer handler): (node, peer).</summary>
    public Action<string, string>? FencePeer { get; set; }

    /// <summary>Raised when a node reconnects to a peer: a pending fence of it is moot (node, peer).</summary>
    public Action<string, string>? Reconnected { get; set; }

    public int SplitBrains { get; private set; }

    public bool Connected(string a, string b) => _connected.Contains(Key(a, b));

    /// <summary>Brings connections in line with the network and node states.</summary>
    public void Recompute()
    {
        var names = Devices.Keys.Order(StringComparer.Ordinal).ToList();
        for (var i = 0; i < names.Count; i++)
        {
            for (var j = i + 1; j < names.Count; j++)
            {
                var (a, b) = (Devices[names[i]], Devices[names[j]]);
                var should = a.Up && b.Up && !a.StandAlone && !b.StandAlone && _net.Bidirectional(a.Node, b.Node);
                var key = Key(a.Node, b.Node);
                if (should && !_connected.Contains(key))
                {
                    Connect(a, b);
                }
                else if (!should && _connected.Remove(key))
                {
                    _world.Trace("drbd", $"{a.Node}-{b.Node} disconnected");
                    Disconnected(a, b);
                    Disconnected(b, a);
                }
            }
        }
    }

    /// <summary>
    /// A node became Primary: with a peer away it makes a new current UUID now (drbd_set_role: not connected and no bitmap
    /// UUID yet), written or not; an unknown (disconnected) peer must be fenced first (DRBD 9 calls fence-peer on promote).
    /// </summary>
    public void BecamePrimary(DrbdDevice d)
    {
        NewCurrentUuidIfDiverging(d, "promoted");
        foreach (var peer in Devices.Values.Where(p => p != d && !Connected(d.Node, p.Node)))
        {
            Disconnected(d, peer);
        }
    }

    public void FenceConfirmed(DrbdDevice d, string peer)
    {
        if (d.PendingFence.Remove(peer))
        {
            d.Fenced.Add(peer);
            _world.Trace("drbd", $"{d.Node}: {peer} fenced, I/O resumes" + (d.Frozen ? " (still frozen for others)" : ""));
            ResumedIo(d);
            ResolveAll(d, peer);   // the frozen writes complete without the fenced peer
        }
    }

    /// <summary>
    /// Protocol C write on <paramref name="d"/>: on its own disk at once, sent to every connected peer over the
    /// replication link; <paramref name="acknowledge"/> runs when every one of them has it, or, for a peer whose
    /// link broke meanwhile, once that peer is fenced. A write still in flight when the node crashes or demotes
    /// is never acknowledged (DRBD fails it; a real frozen primary cannot even unmount).
    /// </summary>
    public bool Write(DrbdDevice d, long id, Action acknowledge)
    {
        ArgumentNullException.ThrowIfNull(acknowledge);
        if (!d.Writable)
        {
            return false;
        }

        NewCurrentUuidIfDiverging(d, "wrote");   // normally made already, when the peer was lost or on promote
        d.Data.Add(id);
        var peers = Devices.Values.Where(p => p != d && Connected(d.Node, p.Node)).ToList();
        if (peers.Count == 0)
        {
            acknowledge();   // no connected peer: every disconnected one is fenced (else I/O would be frozen)
            return true;
        }

        var write = new InFlightWrite(id, acknowledge, peers.Select(p => p.Node));
        d.InFlight.Add(write);
        foreach (var p in peers)
        {
            var connection = _connections[Key(d.Node, p.Node)];
            OverLink(d.Node, p.Node, connection, () =>
            {
                p.Data.Add(id);
                OverLink(p.Node, d.Node, connection, () => Resolve(d, write, p.Node));
            });
        }

        return true;
    }

    /// <summary>The node stopped being Primary (demoted): its writes in flight fail, none is acknowledged.</summary>
    public void Demoted(DrbdDevice d)
    {
        d.NewCurrentUuidArmed = false;   // I/O never resumed as Primary: no new current UUID
        if (d.InFlight.Count > 0)
        {
            _world.Trace("drbd", $"{d.Node}: {d.InFlight.Count} writes in flight fail (demoted)");
            d.InFlight.Clear();
        }
    }

    public void Crash(DrbdDevice d)
    {
        d.InFlight.Clear();
        d.NewCurrentUuidArmed = false;
        d.Up = false;
        d.Role = DrbdRole.Secondary;
        d.ServiceUp = false;
        d.PendingFence.Clear();
        d.Fenced.Clear();
        d.StandAlone = false;
        Recompute();
    }

    private void Disconnected(DrbdDevice d, DrbdDevice peer)
    {
        if (d.Fenced.Contains(peer.Node))
        {
            ResolveAll(d, peer.Node);   // known fenced already: its writes complete without it
        }

        if (d.Role != DrbdRole.Primary || d.Fenced.Contains(peer.Node) || d.PendingFence.Contains(peer.Node) || !d.Up)
        {
            return;
        }

        // lost contact to the peer's data as Primary: DRBD arms NEW_CUR_UUID; the UUID is made when I/O resumes
        d.PendingFence.Add(peer.Node);
        d.NewCurrentUuidArmed = true;
        _world.Trace("drbd", $"{d.Node}: I/O frozen, fence-peer {peer.Node}");
        FencePeer?.Invoke(d.Node, peer.Node);
    }

    private void Connect(DrbdDevice a, DrbdDevice b)
    {
        if (a.Role == DrbdRole.Primary && b.Role == DrbdRole.Primary)
        {
            SplitBrain(a, b, "both Primary");
            return;
        }

        var (source, target, why) = Handshake(a, b);
        if (source is null || target is null)
        {
            SplitBrain(a, b, why);
            return;
        }

        _connected.Add(Key(a.Node, b.Node));
        _connections[Key(a.Node, b.Node)] = ++_connectionIds;
        if (!target.Data.SetEquals(source.Data))
        {
            target.Data = [.. source.Data];
        }

        Synced(source, target);

        // writes that were frozen waiting for this peer: the resync brought them to it (DRBD resends its transfer log)
        foreach (var (x, y) in new[] { (a, b), (b, a) })
        {
            foreach (var w in x.InFlight.Where(w => w.Awaiting.Contains(y.Node) && y.Data.Contains(w.Id)).ToList())
            {
                Resolve(x, w, y.Node);
            }
        }

        // the sync target takes the source's disk state (an Outdated source leaves both Outdated)
        target.Disk = source.Role == DrbdRole.Primary ? DiskState.UpToDate : source.Disk;

        foreach (var (x, y) in new[] { (a, b), (b, a) })
        {
            x.Fenced.Remove(y.Node);
            x.PendingFence.Remove(y.Node);
            Reconnected?.Invoke(x.Node, y.Node);
        }

        _world.Trace("drbd", $"{a.Node}-{b.Node} connected; {target.Node} synced from {source.Node} ({source.Data.Count} writes; {why})");
        foreach (var x in new[] { a, b })
        {
            ResumedIo(x);   // the peer is back: I/O frozen for it resumes
        }
    }

    /// <summary>
    /// The connect handshake (drbd_sync_handshake): who is SyncSource, or null and why it is a split-brain. An Inconsistent
    /// disk syncs from a usable one; then the UUIDs decide (<see cref="CompareUuids"/>); at the same generation the data
    /// and disk states do (a write in flight when the link broke; an Outdated disk takes the UpToDate one's state).
    /// A Primary never becomes SyncTarget (rr-conflict disconnect: "I shall become SyncTarget, but I am primary!").
    /// </summary>
    private static (DrbdDevice? Source, DrbdDevice? Target, string Why) Handshake(DrbdDevice a, DrbdDevice b)
    {
        if (a.DiscardOnConnect || b.DiscardOnConnect)
        {
            var (s, t) = a.DiscardOnConnect ? (b, a) : (a, b);
            t.DiscardOnConnect = false;
            return (s, t, $"{t.Node} discards its data");
        }

        string why;
        DrbdDevice? source;
        if (a.Disk == DiskState.Inconsistent && b.Disk >= DiskState.Outdated)
        {
            (source, why) = (b, "sync target due to disk states");
        }
        else if (b.Disk == DiskState.Inconsistent && a.Disk >= DiskState.Outdated)
        {
            (source, why) = (a, "sync target due to disk states");
        }
        else if (CompareUuids(a, b) is { } byUuids)
        {
            if (byUuids.Source is null)
            {
                return (null, null, byUuids.Why);
            }

            (source, why) = byUuids;
        }
        else if (a.Role == DrbdRole.Primary || b.Role == DrbdRole.Primary)
        {
            var (s, t) = a.Role == DrbdRole.Primary ? (a, b) : (b, a);
            if (!t.Data.IsSubsetOf(s.Data))
            {
                return (null, null, $"{t.Node} has {t.Data.Except(s.Data).Count()} writes the Primary {s.Node} lacks");
            }

            (source, why) = (s, "same generation, Primary");
        }
        else if (a.Data.SetEquals(b.Data))
        {
            (source, why) = (a.Disk >= b.Disk ? a : b, "same generation and data");
        }
        else if (a.Data.IsSubsetOf(b.Data) || b.Data.IsSubsetOf(a.Data))
        {
            (source, why) = (a.Data.IsSubsetOf(b.Data) ? b : a, "same generation, writes in flight when the link broke");
        }
        else
        {
            return (null, null, "both changed");
        }

        var target = source == a ? b : a;
        if (target.Role == DrbdRole.Primary)
        {
            return (null, null, $"the Primary {target.Node} would be SyncTarget of {source.Node} ({why}): dropping connection");
        }

        return (source, target, why);
    }

    /// <summary>
    /// drbd_uuid_compare, the rules the model can reach: null at the same current UUID; else the side that moved on from the
    /// other's current UUID (its bitmap UUID for the peer, or a history/bitmap UUID, is the other's current) is the source;
    /// when neither is (both moved on from a common generation, or no common one) a split-brain (Source null).
    /// </summary>
    private static (DrbdDevice? Source, string Why)? CompareUuids(DrbdDevice a, DrbdDevice b)
    {
        if (a.CurrentUuid == b.CurrentUuid)
        {
            return null;
        }

        foreach (var (x, y) in new[] { (a, b), (b, a) })
        {
            if (x.BitmapUuids.GetValueOrDefault(y.Node) == y.CurrentUuid)
            {
                return (x, Fmt($"{x.Node} changed since the last sync (current UUID {x.CurrentUuid:X}, bitmap UUID {y.CurrentUuid:X}), {y.Node} did not"));
            }
        }

        foreach (var (x, y) in new[] { (a, b), (b, a) })
        {
            if (x.HistoryUuids.Contains(y.CurrentUuid) || x.BitmapUuids.ContainsValue(y.CurrentUuid))
            {
                return (x, Fmt($"{y.Node}'s current UUID {y.CurrentUuid:X} is in {x.Node}'s history (full sync)"));
            }
        }

        var common = a.BitmapUuids.GetValueOrDefault(b.Node);
        return (null, common != 0 && common == b.BitmapUuids.GetValueOrDefault(a.Node)
            ? Fmt($"both changed since generation {common:X} (current UUIDs {a.Node} {a.CurrentUuid:X}, {b.Node} {b.CurrentUuid:X})")
            : Fmt($"no common generation (current UUIDs {a.Node} {a.CurrentUuid:X}, {b.Node} {b.CurrentUuid:X})"));
    }

    /// <summary>After the (instant) resync: the target has the source's generation and UUIDs; the two are in sync with each other.</summary>
    private void Synced(DrbdDevice source, DrbdDevice target)
    {
        if (target.CurrentUuid != source.CurrentUuid)
        {
            target.CurrentUuid = source.CurrentUuid;
            target.HistoryUuids.Clear();
            target.HistoryUuids.AddRange(source.HistoryUuids);
            foreach (var n in Devices.Keys.Where(n => n != source.Node && n != target.Node))
            {
                target.BitmapUuids[n] = source.BitmapUuids.GetValueOrDefault(n);
            }
        }

        source.BitmapUuids[target.Node] = 0;
        target.BitmapUuids[source.Node] = 0;
    }

    /// <summary>I/O resumed (fenced or reconnected): an armed NEW_CUR_UUID is made now if a peer is still away.</summary>
    private void ResumedIo(DrbdDevice d)
    {
        if (d.Frozen || !d.NewCurrentUuidArmed)
        {
            return;
        }

        d.NewCurrentUuidArmed = false;
        if (d.Up && d.Role == DrbdRole.Primary)
        {
            NewCurrentUuidIfDiverging(d, "lost a peer");
        }
    }

    /// <summary>
    /// drbd_uuid_new_current when a peer is away and this disk has not moved on from it yet (its bitmap UUID for it is 0):
    /// the old current UUID becomes the bitmap UUID for every absent peer and goes to the history; connected peers at the
    /// same generation take the new one (and record the old one for the peers the Primary cannot reach).
    /// </summary>
    private void NewCurrentUuidIfDiverging(DrbdDevice d, string why)
    {
        var absent = Devices.Values.Where(p => p != d && !Connected(d.Node, p.Node)).ToList();
        if (!absent.Any(p => d.BitmapUuids.GetValueOrDefault(p.Node) == 0))
        {
            return;
        }

        var old = d.CurrentUuid;
        var fresh = ++_uuids;
        foreach (var x in Devices.Values.Where(x => x == d || (Connected(d.Node, x.Node) && x.CurrentUuid == old)))
        {
            foreach (var p in absent.Where(p => p != x && x.BitmapUuids.GetValueOrDefault(p.Node) == 0))
            {
                x.BitmapUuids[p.Node] = old;
            }

            x.HistoryUuids.Insert(0, old);
            if (x.HistoryUuids.Count > HistoryUuidSlots)
            {
                x.HistoryUuids.RemoveAt(x.HistoryUuids.Count - 1);
            }

            x.CurrentUuid = fresh;
        }

        _world.Trace("drbd", Fmt($"{d.Node}: new current UUID {fresh:X} ({why}; {string.Join(",", absent.Select(p => p.Node))} away; was {old:X})"));
    }

    /// <summary>A replication message on one connection: lost with a partition (the link then breaks), never applied on a later connection.</summary>
    private void OverLink(string from, string to, long connection, Action deliver)
    {
        if (_net.Blocked(from, to))
        {
            return;
        }

        _world.After(SimWorld.Ms(0.2 + (_linkDelays.NextDouble() * 2.8)), () =>
        {
            if (!_net.Blocked(from, to) && _connections.GetValueOrDefault(Key(from, to)) == connection && Connected(from, to))
            {
                deliver();
            }
        });
    }

    private static void Resolve(DrbdDevice d, InFlightWrite w, string peer)
    {
        if (w.Awaiting.Remove(peer) && w.Awaiting.Count == 0 && d.InFlight.Remove(w))
        {
            w.Acknowledge();
        }
    }

    private static void ResolveAll(DrbdDevice d, string peer)
    {
        foreach (var w in d.InFlight.Where(w => w.Awaiting.Contains(peer)).ToList())
        {
            Resolve(d, w, peer);
        }
    }

    private void SplitBrain(DrbdDevice a, DrbdDevice b, string why)
    {
        SplitBrains++;
        a.StandAlone = true;
        b.StandAlone = true;
        _world.Trace("drbd", $"SPLIT-BRAIN {a.Node}-{b.Node}: {why}; both StandAlone", key: true);
    }

    private static string Fmt(FormattableString s) => s.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static (string, string) Key(string a, string b) => string.CompareOrdinal(a, b) < 0 ? (a, b) : (b, a);
}
