using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using System.Threading.Channels;

namespace HaMesh.DrbdSim;

/// <summary>Outcome of a write through the simulated block device.</summary>
public sealed record WriteOutcome(bool Acknowledged, string? Error);

/// <summary>Persisted per-resource metadata (the "meta-data" of the simulated backing device).</summary>
internal sealed class PersistedMeta
{
    public string Disk { get; set; } = "Inconsistent";
    public ulong Current { get; set; }
    public ulong Bitmap { get; set; }
    public bool FullSync { get; set; } = true;
    public List<string> Dirty { get; set; } = [];
    public bool WantConnect { get; set; } = true;
}

/// <summary>
/// One simulated DRBD resource: role, disk state, the connection to its single peer over a real TCP link,
/// protocol C replication, bitmap-style resync, split-brain detection, fencing and persistence.
/// </summary>
public sealed class SimResource : IAsyncDisposable
{
    private readonly ResourceConfig _cfg;
    private readonly SimConfig _node;
    private readonly string _metaPath;
    private readonly string _dataPath;
    private readonly TimeProvider _time;
    private readonly Action<ResourceSnapshot> _onChanged;
    private readonly TextWriter _log;
    private readonly Lock _gate = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private bool _up;
    private string _role = "Secondary";
    private string _disk;
    private string _conn = "StandAlone";
    private string _repl = "Off";
    private string _peerRole = "Unknown";
    private string _peerDisk = "DUnknown";
    private bool _suspUser;
    private bool _suspFencing;
    private bool _forceIoFailures;
    private bool _open;
    private bool _wantConnect;
    private bool _discardMyData;
    private bool _splitBrain;
    private ulong _current;
    private ulong _bitmap;
    private bool _fullSync;
    // A SyncSource that sent its last data keeps its bitmap (what changed since the target's data) until the target
    // says it has it: a link lost in between must not leave the source believing the target caught up.
    private bool _awaitingSyncAck;
    private readonly HashSet<string> _dirty;
    private readonly Dictionary<string, string> _data;
    private long _oos;
    private long _syncTotal;
    private long _sent;
    private long _received;
    private long _written;
    private long _read;
    private long _version;
    private long _seq;
    private int _lastFenceExit = -1;
    private int _fenceCalls;
    private bool _fenceRunning;
    private Session? _session;
    private CancellationTokenSource? _upCts;
    private TcpListener? _listener;
    private int _actualPort;
    // Writes frozen by resource-and-stonith fencing: done locally, never acknowledged by the peer. They complete
    // only when the peer is known fenced (handler exit 3/4/5/7), are resent when the link comes back while this
    // node is still Primary, or fail with an I/O error when it stops being Primary (demote, down, daemon stop):
    // they must never be acknowledged after the node lost its role, or an acknowledged write could be missing on
    // the new Primary (invariant I3).
    private readonly List<(string Key, TaskCompletionSource Tcs)> _frozenAcks = [];

    public SimResource(SimConfig node, ResourceConfig cfg, string stateDir, TimeProvider time,
        Action<ResourceSnapshot> onChanged, TextWriter log)
    {
        _node = node;
        _cfg = cfg;
        _time = time;
        _onChanged = onChanged;
        _log = log;
        Directory.CreateDirectory(stateDir);
        _metaPath = Path.Combine(stateDir, cfg.Name + ".meta.json");
        _dataPath = cfg.BackingFile ?? Path.Combine(stateDir, cfg.Name + ".data");
        var meta = File.Exists(_metaPath)
            ? JsonSerializer.Deserialize<PersistedMeta>(File.ReadAllText(_metaPath), SimConfig.JsonOptions) ?? new PersistedMeta()
            : new PersistedMeta();
        _data = File.Exists(_dataPath)
            ? JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(_dataPath), SimConfig.JsonOptions) ?? []
            : [];
        _disk = meta.Disk;
        _current = meta.Current;
        _bitmap = meta.Bitmap;
        _fullSync = meta.FullSync;
        _dirty = [.. meta.Dirty];
        _wantConnect = true; // a reboot runs `drbdadm up`, which configures the network again
        _oos = ComputeOos();
        _actualPort = cfg.ListenPort;
    }

    /// <summary>The bound replication port (differs from the config when it says 0).</summary>
    public int ListenPort
    {
        get
        {
            lock (_gate)
            {
                return _actualPort;
            }
        }
    }

    public string Name => _cfg.Name;

    public int Minor => _cfg.Minor;

    public ResourceConfig Config => _cfg;

    private bool Is84 => _node.DrbdVersion == 84;

    private bool IsDialer => string.CompareOrdinal(_node.Node, _cfg.PeerName) < 0;

    // ---------------------------------------------------------------- snapshots and signals

    public ResourceSnapshot Snapshot()
    {
        lock (_gate)
        {
            return SnapshotLocked();
        }
    }

    private ResourceSnapshot SnapshotLocked() => new()
    {
        Name = _cfg.Name,
        Minor = _cfg.Minor,
        NodeId = _cfg.NodeId,
        PeerName = _cfg.PeerName,
        PeerNodeId = _cfg.PeerNodeId,
        Up = _up,
        Role = _role,
        Disk = _disk,
        Connection = _conn,
        Replication = _repl,
        PeerRole = _peerRole,
        PeerDisk = _peerDisk,
        SuspendedUser = _suspUser,
        SuspendedFencing = _suspFencing,
        SuspendedQuorum = false,
        ForceIoFailures = _forceIoFailures,
        Open = _open,
        Quorum = HasQuorumLocked(),
        WantConnect = _wantConnect,
        FencingConfigured = _cfg.FencingEnabled,
        SizeKiB = _cfg.SizeKiB,
        OutOfSyncKiB = _oos,
        SyncTotalKiB = _syncTotal,
        SentKiB = _sent,
        ReceivedKiB = _received,
        WrittenKiB = _written,
        ReadKiB = _read,
        ListenAddress = _cfg.ListenAddress,
        ListenPort = _actualPort,
        PeerAddress = _cfg.PeerAddress,
        PeerPort = _cfg.PeerPort,
        CurrentUuid = _current,
        Version = _version,
        LastFenceExit = _lastFenceExit,
        FenceCalls = _fenceCalls,
        SplitBrain = _splitBrain,
    };

    /// <summary>Waits until <paramref name="predicate"/> holds (state-change signal, no polling).</summary>
    public async Task<ResourceSnapshot> WaitForAsync(Func<ResourceSnapshot, bool> predicate, CancellationToken ct)
    {
        while (true)
        {
            Task signal;
            lock (_gate)
            {
                var s = SnapshotLocked();
                if (predicate(s))
                {
                    return s;
                }

                signal = _changed.Task;
            }

            await signal.WaitAsync(ct);
        }
    }

    private void ChangedLocked()
    {
        _version++;
        _oos = _repl is "SyncSource" or "SyncTarget" ? _oos : ComputeOos();
        PersistLocked();
        _onChanged(SnapshotLocked());
        var old = _changed;
        _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        old.TrySetResult();
    }

    private long ComputeOos() => _fullSync ? _cfg.SizeKiB : Math.Min(_cfg.SizeKiB, _dirty.Count * 4L);

    private void PersistLocked()
    {
        var meta = new PersistedMeta
        {
            Disk = _disk,
            Current = _current,
            Bitmap = _bitmap,
            FullSync = _fullSync,
            Dirty = [.. _dirty],
            WantConnect = _wantConnect,
        };
        AtomicWrite(_metaPath, JsonSerializer.Serialize(meta, SimConfig.JsonOptions));
    }

    private void PersistDataLocked() => AtomicWrite(_dataPath, JsonSerializer.Serialize(_data, SimConfig.JsonOptions));

    private static void AtomicWrite(string path, string text)
    {
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, text);
        File.Move(tmp, path, overwrite: true);
    }

    private bool HasQuorumLocked() =>
        !_cfg.QuorumMajority || _conn == "Connected" || _peerDisk is "Outdated" or "Inconsistent";

    private static ulong NewUuid() => BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8)) | 1UL;

    private void NewCurrentLocked()
    {
        if (_bitmap == 0)
        {
            _bitmap = _current;
        }

        _current = NewUuid();
    }

    private void Log(string message)
    {
        lock (_log)
        {
            _log.WriteLine($"[{_node.Node}/{_cfg.Name}] {message}");
            _log.Flush();
        }
    }

    // ---------------------------------------------------------------- admin commands

    public void Up()
    {
        lock (_gate)
        {
            if (_up)
            {
                return;
            }

            _up = true;
            _role = "Secondary";
            _upCts = new CancellationTokenSource();
            _conn = _wantConnect ? "Connecting" : "StandAlone";
            _listener = new TcpListener(IPAddress.Parse(_cfg.ListenAddress), _cfg.ListenPort);
            _listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            _listener.Start();
            _actualPort = ((IPEndPoint)_listener.LocalEndpoint).Port;
            var ct = _upCts.Token;
            _ = Task.Run(() => AcceptLoopAsync(_listener, ct), ct);
            if (IsDialer)
            {
                _ = Task.Run(() => DialLoopAsync(ct), ct);
            }

            ChangedLocked();
        }
    }

    /// <summary>0 ok, -12 device open.</summary>
    public async Task<int> DownAsync()
    {
        Session? s;
        CancellationTokenSource? cts;
        lock (_gate)
        {
            if (!_up)
            {
                return 0;
            }

            if (_open)
            {
                return -12;
            }

            _up = false;
            _role = "Secondary";
            s = _session;
            _session = null;
            cts = _upCts;
            _upCts = null;
            _listener?.Stop();
            _listener = null;
            _conn = "StandAlone";
            _repl = "Off";
            _peerRole = "Unknown";
            _peerDisk = "DUnknown";
            _suspFencing = false;
            _suspUser = false;
            FailFrozenLocked("I/O error: resource taken down with writes not acknowledged by the peer");
            FailPending(s, "I/O error: resource taken down with writes not acknowledged by the peer");
            ChangedLocked();
        }

        if (cts is not null)
        {
            await cts.CancelAsync();
            cts.Dispose();
        }

        s?.Close();
        return 0;
    }

    /// <summary>0 ok; negative SS_ code; -7 when fencing refused the promotion.</summary>
    public async Task<int> PromoteAsync(bool force, CancellationToken ct)
    {
        bool needFence;
        lock (_gate)
        {
            var rv = CheckPromoteLocked(force, out needFence);
            if (rv != 0 || !needFence)
            {
                return rv;
            }
        }

        var exit = await RunFencePeerAsync(ct);
        lock (_gate)
        {
            if (exit is 3 or 4 or 5 or 7)
            {
                _peerDisk = "Outdated";
                if (_disk == "Consistent")
                {
                    _disk = "UpToDate";
                }

                ChangedLocked();
                var rv = CheckPromoteLocked(force, out _);
                return rv;
            }

            if (exit == 6)
            {
                _disk = "Outdated";
                ChangedLocked();
                return -2;
            }

            return -7;
        }
    }

    private int CheckPromoteLocked(bool force, out bool needFence)
    {
        needFence = false;
        if (_role == "Primary")
        {
            return 0;
        }

        var connected = _conn == "Connected";
        if (connected && _peerRole == "Primary")
        {
            return -1;
        }

        if (!HasQuorumLocked() && !Is84)
        {
            return -25;
        }

        if (force)
        {
            if (_disk == "Diskless")
            {
                return -2;
            }

            var wasUpToDate = _disk == "UpToDate";
            _disk = "UpToDate";
            _role = "Primary";
            if (!connected || !wasUpToDate)
            {
                NewCurrentLocked();
            }

            if (!wasUpToDate)
            {
                _bitmap = 0;
                _dirty.Clear();
            }

            if (connected)
            {
                Send(new LinkMessage { Type = "State", Role = _role, Disk = _disk, Current = _current });
                if (_peerDisk is "Inconsistent" or "Outdated" && _repl == "Established")
                {
                    StartResyncAsSourceLocked(_cfg.SizeKiB);
                }
            }

            ChangedLocked();
            return 0;
        }

        if (_repl == "SyncTarget")
        {
            return -2;
        }

        if (_disk is not ("UpToDate" or "Consistent"))
        {
            return -2;
        }

        if (!connected && _cfg.FencingEnabled && _peerDisk != "Outdated")
        {
            needFence = true;
            return 0;
        }

        if (_disk == "Consistent")
        {
            return -2;
        }

        _role = "Primary";
        if (!connected)
        {
            NewCurrentLocked();
        }
        else
        {
            Send(new LinkMessage { Type = "State", Role = _role, Disk = _disk });
        }

        ChangedLocked();
        return 0;
    }

    /// <summary>0 ok, -12 held open.</summary>
    public int Demote(bool force)
    {
        lock (_gate)
        {
            if (_role == "Secondary")
            {
                return 0;
            }

            if (_open && !force)
            {
                return -12;
            }

            if (_open)
            {
                _forceIoFailures = true;
            }

            _role = "Secondary";
            FailFrozenLocked("I/O error: demoted while I/O was frozen for fencing; the write never reached the peer");
            if (_conn == "Connected")
            {
                Send(new LinkMessage { Type = "State", Role = _role, Disk = _disk });
            }

            ChangedLocked();
            return 0;
        }
    }

    /// <summary>0 ok, -6 connected.</summary>
    public int Outdate()
    {
        lock (_gate)
        {
            if (_conn == "Connected")
            {
                return -6;
            }

            if (_disk is "UpToDate" or "Consistent")
            {
                _disk = "Outdated";
                ChangedLocked();
            }

            return 0;
        }
    }

    public async Task<int> DisconnectAsync()
    {
        Session? s;
        lock (_gate)
        {
            if (!_wantConnect && _conn == "StandAlone")
            {
                return 0;
            }

            _wantConnect = false;
            _discardMyData = false;
            s = _session;
            _session = null;
            if (s is not null)
            {
                LinkLostLocked(s, "StandAlone");
            }
            else
            {
                _conn = "StandAlone";
                ChangedLocked();
            }
        }

        if (s is not null)
        {
            await s.CloseGracefullyAsync();
        }

        return 0;
    }

    /// <summary>0 ok, 123 discard-my-data on primary.</summary>
    public int Connect(bool discardMyData)
    {
        lock (_gate)
        {
            if (discardMyData && _role == "Primary")
            {
                return 123;
            }

            _discardMyData = discardMyData;
            if (_wantConnect && _conn != "StandAlone")
            {
                return 0;
            }

            _wantConnect = true;
            _splitBrain = false;
            _conn = "Connecting";
            ChangedLocked();
            return 0;
        }
    }

    public void Detach()
    {
        lock (_gate)
        {
            _disk = "Diskless";
            if (_conn == "Connected")
            {
                Send(new LinkMessage { Type = "State", Role = _role, Disk = _disk });
            }

            ChangedLocked();
        }
    }

    public void SuspendIo()
    {
        lock (_gate)
        {
            _suspUser = true;
            ChangedLocked();
        }
    }

    public void ResumeIo()
    {
        lock (_gate)
        {
            _suspUser = false;
            _suspFencing = false;
            ReleaseFrozenLocked();
            ChangedLocked();
        }
    }

    public int SetOpen(bool open)
    {
        lock (_gate)
        {
            if (open && _role != "Primary")
            {
                return 32;
            }

            _open = open;
            ChangedLocked();
            return 0;
        }
    }

    private void ReleaseFrozenLocked()
    {
        foreach (var (_, tcs) in _frozenAcks)
        {
            tcs.TrySetResult();
        }

        _frozenAcks.Clear();
    }

    private void FailFrozenLocked(string reason)
    {
        foreach (var (_, tcs) in _frozenAcks)
        {
            tcs.TrySetException(new IOException(reason));
        }

        _frozenAcks.Clear();
    }

    /// <summary>The link is back and this node is still Primary: the frozen writes go to the peer again and complete on its acknowledgement (DRBD resends its transfer log).</summary>
    private void ResendFrozenLocked(Session session)
    {
        foreach (var (key, tcs) in _frozenAcks)
        {
            var seq = ++_seq;
            session.Pending[seq] = (key, tcs);
            _sent += 4;
            Send(new LinkMessage { Type = "Write", Seq = seq, Key = key, Value = _data.GetValueOrDefault(key) ?? "" });
        }

        _frozenAcks.Clear();
    }

    private static void FailPending(Session? session, string reason)
    {
        if (session is null)
        {
            return;
        }

        foreach (var (_, tcs) in session.Pending.Values)
        {
            tcs.TrySetException(new IOException(reason));
        }

        session.Pending.Clear();
    }

    // ---------------------------------------------------------------- block device

    public string? Read(string key)
    {
        lock (_gate)
        {
            _read += 4;
            return _data.GetValueOrDefault(key);
        }
    }

    public IReadOnlyDictionary<string, string> ReadAll()
    {
        lock (_gate)
        {
            return new Dictionary<string, string>(_data);
        }
    }

    /// <summary>Writes one block; completes only when the write is stable on every connected node (protocol C).</summary>
    public async Task<WriteOutcome> WriteAsync(string key, string value, CancellationToken ct)
    {
        while (true)
        {
            Task waitFor;
            lock (_gate)
            {
                if (!_up || _role != "Primary")
                {
                    return new WriteOutcome(false, "not Primary");
                }

                if (!_open)
                {
                    return new WriteOutcome(false, "device not mounted");
                }

                if (_forceIoFailures || _disk != "UpToDate")
                {
                    return new WriteOutcome(false, "I/O error: disk " + _disk);
                }

                if (_suspUser || _suspFencing)
                {
                    waitFor = _changed.Task;
                }
                else
                {
                    _data[key] = value;
                    _written += 4;
                    PersistDataLocked();
                    if (_session is { } s && _conn == "Connected" && !s.Closed)
                    {
                        var seq = ++_seq;
                        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                        s.Pending[seq] = (key, tcs);
                        _sent += 4;
                        Send(new LinkMessage { Type = "Write", Seq = seq, Key = key, Value = value });
                        waitFor = tcs.Task;
                        ChangedLocked();
                        goto Wait;
                    }

                    MarkDirtyLocked(key);
                    ChangedLocked();
                    return new WriteOutcome(true, null);
                }
            }

            await waitFor.WaitAsync(ct);
            continue;
        Wait:
            try
            {
                await waitFor.WaitAsync(ct);
            }
            catch (IOException e)
            {
                return new WriteOutcome(false, e.Message);
            }

            return new WriteOutcome(true, null);
        }
    }

    private void MarkDirtyLocked(string key)
    {
        if (_bitmap == 0 && _current != 0)
        {
            NewCurrentLocked();
        }

        _dirty.Add(key);
    }

    // ---------------------------------------------------------------- replication link

    private sealed class Session
    {
        public required TcpClient Client { get; init; }
        public required NetworkStream Stream { get; init; }
        public Channel<LinkMessage> Outbox { get; } = Channel.CreateUnbounded<LinkMessage>();
        public Dictionary<long, (string Key, TaskCompletionSource Tcs)> Pending { get; } = [];
        public long LastReceived;
        public string? FailReason;
        public bool Closed;

        public void Close()
        {
            Closed = true;
            Outbox.Writer.TryComplete();
            try
            {
                Client.Client?.Close(0);
            }
            catch (ObjectDisposedException)
            {
            }

            Client.Dispose();
        }

        public async Task CloseGracefullyAsync()
        {
            Outbox.Writer.TryComplete();
            Closed = true;
            try
            {
                Client.Client?.Shutdown(SocketShutdown.Both);
            }
            catch (SocketException)
            {
            }
            catch (ObjectDisposedException)
            {
            }

            await Task.Yield();
            Client.Dispose();
        }
    }

    private void Send(LinkMessage m) => _session?.Outbox.Writer.TryWrite(m);

    private async Task AcceptLoopAsync(TcpListener listener, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await listener.AcceptTcpClientAsync(ct);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            _ = Task.Run(() => RunSessionAsync(client, ct), ct);
        }
    }

    private async Task DialLoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            bool attempt;
            lock (_gate)
            {
                attempt = _up && _wantConnect && _session is null && _conn == "Connecting";
            }

            if (attempt)
            {
                var client = new TcpClient();
                try
                {
                    using var timeout = new CancellationTokenSource(TimeSpan.FromMilliseconds(_cfg.PingTimeoutMs), _time);
                    using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, timeout.Token);
                    await client.ConnectAsync(IPAddress.Parse(_cfg.PeerAddress), _cfg.PeerPort, linked.Token);
                    await RunSessionAsync(client, ct);
                }
                catch (Exception e) when (e is SocketException or OperationCanceledException or IOException)
                {
                    client.Dispose();
                }
            }

            try
            {
                Task signal;
                lock (_gate)
                {
                    signal = _changed.Task;
                }

                await Task.WhenAny(signal, Task.Delay(TimeSpan.FromMilliseconds(_cfg.ConnectRetryMs), _time, ct));
                ct.ThrowIfCancellationRequested();
                if (!attempt)
                {
                    continue;
                }

                await Task.Delay(TimeSpan.FromMilliseconds(_cfg.ConnectRetryMs), _time, ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task RunSessionAsync(TcpClient client, CancellationToken ct)
    {
        client.NoDelay = true;
        var session = new Session { Client = client, Stream = client.GetStream(), LastReceived = _time.GetTimestamp() };
        LinkMessage hello;
        lock (_gate)
        {
            if (!_up || !_wantConnect || _session is not null || _conn != "Connecting")
            {
                client.Dispose();
                return;
            }

            _session = session;
            hello = HelloLocked();
        }

        try
        {
            await Wire.WriteFrameAsync(session.Stream, Wire.Encode(hello), ct);
            using var hsTimeout = new CancellationTokenSource(TimeSpan.FromMilliseconds(Math.Max(_cfg.PingTimeoutMs, 2000)), _time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, hsTimeout.Token);
            var frame = await Wire.ReadFrameAsync(session.Stream, linked.Token) ?? throw new IOException("closed in handshake");
            var peerHello = Wire.Decode(frame);
            lock (_gate)
            {
                if (_session != session)
                {
                    session.Close();
                    return;
                }

                if (!HandshakeLocked(session, peerHello))
                {
                    _session = null;
                    session.Close();
                    return;
                }
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException or JsonException or InvalidDataException)
        {
            lock (_gate)
            {
                if (_session == session)
                {
                    _session = null;
                    var conn = _wantConnect && _up ? "Connecting" : "StandAlone";
                    if (conn != _conn)
                    {
                        _conn = conn;
                        ChangedLocked();
                    }
                }
            }

            session.Close();
            return;
        }

        var sender = Task.Run(() => SendLoopAsync(session, ct), ct);
        var pinger = Task.Run(() => PingLoopAsync(session, ct), ct);
        string reason;
        try
        {
            reason = await ReceiveLoopAsync(session, ct);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            reason = "NetworkFailure";
        }
        catch (OperationCanceledException)
        {
            reason = "StandAlone";
        }
        catch (Exception e) when (e is JsonException or InvalidDataException)
        {
            reason = "ProtocolError";
        }

        reason = session.FailReason ?? reason;
        lock (_gate)
        {
            if (_session == session)
            {
                _session = null;
                LinkLostLocked(session, reason);
            }
        }

        session.Close();
        await Task.WhenAll(sender, pinger).WaitAsync(TimeSpan.FromSeconds(5), _time, CancellationToken.None)
            .ContinueWith(_ => { }, TaskScheduler.Default);
    }

    private LinkMessage HelloLocked() => new()
    {
        Type = "Hello",
        Node = _node.Node,
        Role = _role,
        Disk = _disk,
        Current = _current,
        Bitmap = _bitmap,
        DiscardMyData = _discardMyData,
        Dirty = [.. _dirty],
        Total = _fullSync ? 1 : 0,
    };

    private enum SyncDecision
    {
        None,
        Source,
        Target,
        SplitBrain,
    }

    private static SyncDecision Decide(LinkMessage me, LinkMessage peer)
    {
        if (me.Disk == "Diskless" || peer.Disk == "Diskless")
        {
            return SyncDecision.None;
        }

        var meFresh = me.Current == 0;
        var peerFresh = peer.Current == 0;
        if (meFresh && peerFresh)
        {
            return SyncDecision.None;
        }

        if (meFresh)
        {
            return SyncDecision.Target;
        }

        if (peerFresh)
        {
            return SyncDecision.Source;
        }

        // DRBD's drbd_sync_handshake: "Becoming sync target due to disk states." An Inconsistent side (an
        // interrupted resync) always syncs from a side with usable data, whatever the UUIDs say: its own
        // current UUID may be one the source rotated away from while the resync's end was in flight.
        if (me.Disk == "Inconsistent" && peer.Disk is "UpToDate" or "Consistent" or "Outdated")
        {
            return SyncDecision.Target;
        }

        if (peer.Disk == "Inconsistent" && me.Disk is "UpToDate" or "Consistent" or "Outdated")
        {
            return SyncDecision.Source;
        }

        if (me.Current == peer.Current)
        {
            if (me.Disk == "Inconsistent" && peer.Disk != "Inconsistent")
            {
                return SyncDecision.Target;
            }

            return peer.Disk == "Inconsistent" && me.Disk != "Inconsistent" ? SyncDecision.Source : SyncDecision.None;
        }

        if (peer.Bitmap == me.Current && me.Bitmap == 0)
        {
            return SyncDecision.Target;
        }

        if (me.Bitmap == peer.Current && peer.Bitmap == 0)
        {
            return SyncDecision.Source;
        }

        if (me.DiscardMyData && !peer.DiscardMyData)
        {
            return SyncDecision.Target;
        }

        if (peer.DiscardMyData && !me.DiscardMyData)
        {
            return SyncDecision.Source;
        }

        return SyncDecision.SplitBrain;
    }

    private bool HandshakeLocked(Session session, LinkMessage peer)
    {
        var me = HelloLocked();
        var decision = Decide(me, peer);
        if (decision == SyncDecision.SplitBrain || (me.Role == "Primary" && peer.Role == "Primary"))
        {
            Log("Split-Brain detected but unresolved, dropping connection!");
            _splitBrain = true;
            _wantConnect = false;
            _conn = "StandAlone";
            ChangedLocked();
            return false;
        }

        _discardMyData = false;
        _splitBrain = false;
        _conn = "Connected";
        _peerRole = peer.Role ?? "Unknown";
        _peerDisk = peer.Disk ?? "DUnknown";
        _repl = "Established";
        _suspFencing = false;

        switch (decision)
        {
            case SyncDecision.Source:
                var union = new HashSet<string>(_dirty);
                union.UnionWith(peer.Dirty ?? []);
                var full = _fullSync || peer.Total == 1 || peer.Current == 0 || peer.Disk == "Inconsistent";
                StartResyncAsSourceLocked(full ? _cfg.SizeKiB : Math.Max(4, union.Count * 4L));
                break;
            case SyncDecision.Target:
                _repl = "SyncTarget";
                _disk = "Inconsistent";
                break;
            default:
                if (me.Current == peer.Current && _disk is "Outdated" or "Consistent" && peer.Disk == "UpToDate")
                {
                    _disk = "UpToDate";
                }
                else if (me.Current == peer.Current && _disk == "Consistent" && peer.Disk is "Consistent" or "Outdated")
                {
                    _disk = "UpToDate";
                }

                if (me.Current == peer.Current && (!_fullSync || me.Current != 0))
                {
                    // The peer holds our current data generation: it has the data (also when the resync that gave it
                    // that generation ended without its confirmation reaching us), so nothing is out of sync.
                    _bitmap = 0;
                    _dirty.Clear();
                    _fullSync = false;
                }

                break;
        }

        Send(new LinkMessage { Type = "State", Role = _role, Disk = _disk });
        if (_role == "Primary")
        {
            ResendFrozenLocked(session);
        }
        else
        {
            FailFrozenLocked("I/O error: no longer Primary when the link came back");
        }

        ChangedLocked();
        Log($"connected, decision {decision}");
        return true;
    }

    private void StartResyncAsSourceLocked(long total)
    {
        _repl = "SyncSource";
        _peerDisk = "Inconsistent";
        _syncTotal = total;
        _oos = total;
        Send(new LinkMessage { Type = "SyncStart", OutOfSync = total, Total = total });
        var session = _session;
        _ = Task.Run(() => ResyncLoopAsync(session!));
    }

    private async Task ResyncLoopAsync(Session session)
    {
        var tick = TimeSpan.FromMilliseconds(50);
        var step = Math.Max(4, _cfg.ResyncRateKiB / 20);
        while (true)
        {
            try
            {
                await Task.Delay(tick, _time, CancellationToken.None);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            lock (_gate)
            {
                if (_session != session || _repl != "SyncSource")
                {
                    return;
                }

                _oos = Math.Max(0, _oos - step);
                _sent += step;
                if (_oos > 0)
                {
                    Send(new LinkMessage { Type = "SyncProgress", OutOfSync = _oos });
                    ChangedLocked();
                    continue;
                }

                Send(new LinkMessage { Type = "SyncData", Data = new Dictionary<string, string>(_data), Current = _current });
                _repl = "Established";
                _peerDisk = "UpToDate";
                _awaitingSyncAck = true;   // bitmap, dirty set and full-sync flag are cleared when the target confirms
                _syncTotal = 0;
                ChangedLocked();
                Log("resync finished as SyncSource");
                return;
            }
        }
    }

    private static async Task SendLoopAsync(Session session, CancellationToken ct)
    {
        try
        {
            await foreach (var m in session.Outbox.Reader.ReadAllAsync(ct))
            {
                await Wire.WriteFrameAsync(session.Stream, Wire.Encode(m), ct);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
            session.FailReason ??= "BrokenPipe";
            session.Close();
        }
    }

    private async Task PingLoopAsync(Session session, CancellationToken ct)
    {
        var period = TimeSpan.FromMilliseconds(Math.Max(50, Math.Min(_cfg.PingIntervalMs, _cfg.PingTimeoutMs / 3)));
        var sinceLastPing = TimeSpan.Zero;
        while (!session.Closed && !ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(period, _time, ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            sinceLastPing += period;
            if (_time.GetElapsedTime(Interlocked.Read(ref session.LastReceived)).TotalMilliseconds > _cfg.PingTimeoutMs)
            {
                Log("PingAck did not arrive in time.");
                session.FailReason ??= "Timeout";
                session.Close();
                return;
            }

            if (sinceLastPing.TotalMilliseconds >= _cfg.PingIntervalMs)
            {
                sinceLastPing = TimeSpan.Zero;
                session.Outbox.Writer.TryWrite(new LinkMessage { Type = "Ping" });
            }
        }
    }

    private async Task<string> ReceiveLoopAsync(Session session, CancellationToken ct)
    {
        while (true)
        {
            var frame = await Wire.ReadFrameAsync(session.Stream, ct);
            if (frame is null)
            {
                return "BrokenPipe";
            }

            Interlocked.Exchange(ref session.LastReceived, _time.GetTimestamp());
            var m = Wire.Decode(frame);
            lock (_gate)
            {
                if (_session != session)
                {
                    return "StandAlone";
                }

                HandleLocked(session, m);
            }
        }
    }

    private void HandleLocked(Session session, LinkMessage m)
    {
        switch (m.Type)
        {
            case "Ping":
                Send(new LinkMessage { Type = "PingAck" });
                break;
            case "State":
                _peerRole = m.Role ?? "Unknown";
                _peerDisk = _repl == "SyncSource" && m.Disk == "Inconsistent" ? "Inconsistent" : m.Disk ?? "DUnknown";
                if (m.Current != 0 && m.Role == "Primary" && _repl == "Established" && _disk == "Inconsistent" && m.Disk == "UpToDate")
                {
                    _peerDisk = "UpToDate";
                }

                if (_awaitingSyncAck && m.Disk == "UpToDate" && m.Current == _current)
                {
                    // The target has the data of the resync: only now is nothing out of sync.
                    _awaitingSyncAck = false;
                    _bitmap = 0;
                    _dirty.Clear();
                    _fullSync = false;
                }

                ChangedLocked();
                break;
            case "Write":
                if (m.Key is not null)
                {
                    _data[m.Key] = m.Value ?? "";
                    PersistDataLocked();
                }

                _received += 4;
                _written += 4;
                Send(new LinkMessage { Type = "WriteAck", Seq = m.Seq });
                ChangedLocked();
                break;
            case "WriteAck":
                if (session.Pending.Remove(m.Seq, out var p))
                {
                    p.Tcs.TrySetResult();
                }

                break;
            case "SyncStart":
                _repl = "SyncTarget";
                _disk = "Inconsistent";
                _syncTotal = m.Total;
                _oos = m.OutOfSync;
                Send(new LinkMessage { Type = "State", Role = _role, Disk = _disk });
                ChangedLocked();
                break;
            case "SyncProgress":
                _oos = m.OutOfSync;
                _received += 4;
                ChangedLocked();
                break;
            case "SyncData":
                _data.Clear();
                foreach (var kv in m.Data ?? [])
                {
                    _data[kv.Key] = kv.Value;
                }

                PersistDataLocked();
                _current = m.Current;
                _bitmap = 0;
                _dirty.Clear();
                _fullSync = false;
                _disk = "UpToDate";
                _repl = "Established";
                _syncTotal = 0;
                _peerDisk = "UpToDate";
                Send(new LinkMessage { Type = "State", Role = _role, Disk = _disk, Current = _current });   // the source's ack
                ChangedLocked();
                Log("resync finished as SyncTarget");
                break;
            default:
                break;
        }
    }

    private void LinkLostLocked(Session session, string reason)
    {
        _awaitingSyncAck = false;   // the resync's end was not confirmed: the bitmap stays, the next handshake resyncs
        var wasConnected = _conn == "Connected";
        var peerWasOutdated = _peerDisk is "Outdated" or "Inconsistent";
        var peerWasPrimary = _peerRole == "Primary";
        var freeze = _role == "Primary" && wasConnected && _cfg.FencingStonith && !peerWasOutdated;
        foreach (var (key, tcs) in session.Pending.Values)
        {
            MarkDirtyLocked(key);
            if (freeze)
            {
                _frozenAcks.Add((key, tcs));
            }
            else
            {
                tcs.TrySetResult();
            }
        }

        session.Pending.Clear();
        if (_repl == "SyncTarget")
        {
            _disk = "Inconsistent";
        }

        _repl = "Off";
        _peerRole = "Unknown";
        _peerDisk = "DUnknown";
        _syncTotal = 0;
        if (!Is84 && _cfg.FencingEnabled && _role == "Secondary" && peerWasPrimary && _disk == "UpToDate")
        {
            _disk = "Consistent";
        }

        if (freeze)
        {
            _suspFencing = true;
        }

        Log($"connection lost: {reason}");
        if (reason != "StandAlone" && _up)
        {
            // transient state first, then Unconnected, then Connecting (DRBD's order)
            _conn = reason;
            ChangedLocked();
            _conn = "Unconnected";
            ChangedLocked();
        }

        _conn = _up && _wantConnect ? "Connecting" : "StandAlone";
        ChangedLocked();

        if (_role == "Primary" && wasConnected && _cfg.FencingEnabled && !peerWasOutdated && !_fenceRunning)
        {
            _ = Task.Run(() => FenceAfterLinkLossAsync());
        }
    }

    private async Task FenceAfterLinkLossAsync()
    {
        var exit = await RunFencePeerAsync(CancellationToken.None);
        lock (_gate)
        {
            if (_conn == "Connected")
            {
                return;
            }

            if (exit is 3 or 4 or 5 or 7)
            {
                _peerDisk = "Outdated";
                _suspFencing = false;
                ReleaseFrozenLocked();
            }
            else if (exit == 6)
            {
                // "outdate yourself: the peer has better data": the frozen writes are not on it
                _disk = "Outdated";
                _suspFencing = false;
                FailFrozenLocked("I/O error: the fence-peer handler said the peer has better data (exit 6)");
            }

            ChangedLocked();
        }
    }

    /// <summary>Runs the fence-peer handler (no shell) with DRBD's environment; returns its exit code.</summary>
    private async Task<int> RunFencePeerAsync(CancellationToken ct)
    {
        lock (_gate)
        {
            _fenceRunning = true;
            _fenceCalls++;
        }

        var exit = 1;
        try
        {
            if (_cfg.FencePeerHandler is { } handler)
            {
                var psi = new ProcessStartInfo(handler)
                {
                    UseShellExecute = false,
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                };
                foreach (var a in _cfg.FencePeerArgs)
                {
                    psi.ArgumentList.Add(a);
                }

                var id = _cfg.PeerNodeId.ToString(System.Globalization.CultureInfo.InvariantCulture);
                var minor = _cfg.Minor.ToString(System.Globalization.CultureInfo.InvariantCulture);
                psi.Environment["DRBD_RESOURCE"] = _cfg.Name;
                psi.Environment["DRBD_CONF"] = _cfg.DrbdConf;
                psi.Environment["DRBD_MINOR"] = minor;
                psi.Environment["DRBD_VOLUME"] = "0";
                psi.Environment["DRBD_PEER_ADDRESS"] = _cfg.PeerAddress;
                psi.Environment["DRBD_PEER_AF"] = "ipv4";
                psi.Environment["DRBD_PEERS"] = _cfg.PeerName;
                psi.Environment["DRBD_PEER"] = _cfg.PeerName;
                if (!Is84)
                {
                    psi.Environment["DRBD_PEER_NODE_ID"] = id;
                    psi.Environment["DRBD_MY_NODE_ID"] = _cfg.NodeId.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    psi.Environment["DRBD_MINOR_0"] = minor;
                    psi.Environment["DRBD_NODE_ID_" + id] = _cfg.PeerName;
                    psi.Environment["DRBD_MY_ADDRESS"] = _cfg.ListenAddress;
                    psi.Environment["DRBD_MY_AF"] = "ipv4";
                }

                using var p = new Process { StartInfo = psi };
                p.Start();
                _ = p.StandardOutput.ReadToEndAsync(ct);
                var stderr = p.StandardError.ReadToEndAsync(ct);
                await p.WaitForExitAsync(ct);
                exit = p.ExitCode;
                if ((await stderr).Trim() is { Length: > 0 } said)
                {
                    Log("fence-peer handler: " + said.ReplaceLineEndings(" | "));   // what the handler said, like DRBD's kernel log
                }
            }
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            Log("fence-peer handler failed to start: " + e.Message);
        }
        finally
        {
            lock (_gate)
            {
                _fenceRunning = false;
                _lastFenceExit = exit;
            }
        }

        Log($"fence-peer handler exit code {exit}");
        return exit;
    }

    public async ValueTask DisposeAsync()
    {
        Session? s;
        CancellationTokenSource? cts;
        lock (_gate)
        {
            s = _session;
            _session = null;
            cts = _upCts;
            _upCts = null;
            _listener?.Stop();
            _listener = null;
            FailFrozenLocked("I/O error: DRBD stopped with writes not acknowledged by the peer");
            FailPending(s, "I/O error: DRBD stopped with writes not acknowledged by the peer");
        }

        if (cts is not null)
        {
            await cts.CancelAsync();
            cts.Dispose();
        }

        s?.Close();
    }
}
