using HaMesh.Protocol.V1;

namespace HaMesh.Simulation.Tests.Harness;

/// <summary>One node's DRBD device. <see cref="Data"/> and <see cref="Disk"/> are on disk (survive a crash); the rest is volatile.</summary>
public sealed class DrbdDevice(string node)
{
    public string Node { get; } = node;

    public bool Up { get; set; } = true;

    public DrbdRole Role { get; set; } = DrbdRole.Secondary;

    public DiskState Disk { get; set; } = DiskState.UpToDate;

    /// <summary>The writes on this disk (ids).</summary>
    public HashSet<long> Data { get; set; } = [];

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
/// (resource-and-stonith) until the peer is fenced; a reconnect resyncs the older disk from the newer or,
/// when both changed, is a split-brain (both StandAlone); promote needs an UpToDate disk and no connected Primary.
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

    public DrbdModel(SimWorld world, SimNetwork net, IEnumerable<string> nodes)
    {
        _world = world;
        _net = net;
        _linkDelays = new Random(world.Seed ^ 0x5EED_D8BD);
        foreach (var n in nodes)
        {
            Devices[n] = new DrbdDevice(n);
        }
    }

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

    /// <summary>A node became Primary: an unknown (disconnected) peer must be fenced first (DRBD 9 calls fence-peer on promote).</summary>
    public void BecamePrimary(DrbdDevice d)
    {
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
        if (d.InFlight.Count > 0)
        {
            _world.Trace("drbd", $"{d.Node}: {d.InFlight.Count} writes in flight fail (demoted)");
            d.InFlight.Clear();
        }
    }

    public void Crash(DrbdDevice d)
    {
        d.InFlight.Clear();
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

        d.PendingFence.Add(peer.Node);
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

        DrbdDevice? source = null;
        DrbdDevice? target = null;
        if (a.DiscardOnConnect || b.DiscardOnConnect)
        {
            (source, target) = a.DiscardOnConnect ? (b, a) : (a, b);
            target.DiscardOnConnect = false;
        }
        else if (a.Role == DrbdRole.Primary || b.Role == DrbdRole.Primary)
        {
            (source, target) = a.Role == DrbdRole.Primary ? (a, b) : (b, a);
            if (!target.Data.IsSubsetOf(source.Data))
            {
                SplitBrain(a, b, $"{target.Node} has {target.Data.Except(source.Data).Count()} writes the Primary {source.Node} lacks");
                return;
            }
        }
        else if (a.Data.SetEquals(b.Data))
        {
            (source, target) = a.Disk >= b.Disk ? (a, b) : (b, a);
        }
        else if (a.Data.IsSubsetOf(b.Data))
        {
            (source, target) = (b, a);
        }
        else if (b.Data.IsSubsetOf(a.Data))
        {
            (source, target) = (a, b);
        }
        else
        {
            SplitBrain(a, b, "both changed");
            return;
        }

        _connected.Add(Key(a.Node, b.Node));
        _connections[Key(a.Node, b.Node)] = ++_connectionIds;
        if (!target.Data.SetEquals(source.Data))
        {
            target.Data = [.. source.Data];
        }

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

        _world.Trace("drbd", $"{a.Node}-{b.Node} connected; {target.Node} synced from {source.Node} ({source.Data.Count} writes)");
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

    private static (string, string) Key(string a, string b) => string.CompareOrdinal(a, b) < 0 ? (a, b) : (b, a);
}
