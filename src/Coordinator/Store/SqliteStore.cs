using System.Collections.Immutable;
using System.Globalization;
using System.Text.Json;
using HaMesh.Coordinator.Events;
using HaMesh.Shared.Core;
using HaMesh.Shared.Failover;
using Microsoft.Data.Sqlite;
using CoreOperation = HaMesh.Shared.Core.OperationRecord;

namespace HaMesh.Coordinator.Store;

/// <summary>
/// The coordinator's durable store (SQLite, WAL, synchronous=FULL): generations, outdated marks,
/// maintenance, in-flight operations and the append-only event log. Every write is committed
/// (fsync'd) before the call returns, so "persist generation g+1, then use it" holds across a crash.
/// An existing file that is unreadable, corrupt or not a HaMesh store is refused, never replaced.
/// </summary>
public sealed class SqliteStore : IEventLog, IDisposable
{
    private const int SchemaVersion = 2;
    private readonly Lock _lock = new();
    private readonly SqliteConnection _db;
    private readonly TimeProvider _time;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private SqliteStore(SqliteConnection db, TimeProvider time)
    {
        _db = db;
        _time = time;
    }

    public string Path { get; private init; } = "";

    /// <summary>Opens (or creates) the store at <paramref name="path"/>.</summary>
    /// <exception cref="StoreException">The file exists but cannot be used.</exception>
    public static SqliteStore Open(string path, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(path);
        var existed = File.Exists(path);
        if (existed && new FileInfo(path).Length == 0)
        {
            throw new StoreException($"store '{path}' exists but is empty (0 bytes); refusing to start over it. Restore it from a backup, or delete it deliberately to start a new cluster history.");
        }

        var directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
        if (!existed && directory is not null && !Directory.Exists(directory))
        {
            throw new StoreException($"store directory '{directory}' does not exist");
        }

        var builder = new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = false };
        var db = new SqliteConnection(builder.ToString());
        try
        {
            db.Open();
            Exec(db, "PRAGMA journal_mode=WAL;");
            Exec(db, "PRAGMA synchronous=FULL;");
            Exec(db, "PRAGMA foreign_keys=ON;");
            var check = Scalar(db, "PRAGMA quick_check;") as string;
            if (check != "ok")
            {
                throw new StoreException($"store '{path}' failed its integrity check ({check}); refusing to start. Restore it from a backup.");
            }

            var hasMeta = Scalar(db, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta';") is long n && n > 0;
            if (existed && !hasMeta)
            {
                throw new StoreException($"'{path}' is not a HaMesh coordinator store (no meta table); refusing to use it");
            }

            if (!hasMeta)
            {
                CreateSchema(db);
            }

            var version = Convert.ToInt32(Scalar(db, "SELECT value FROM meta WHERE key='schema_version';"), CultureInfo.InvariantCulture);
            if (version == 1)
            {
                // v1 → v2: outdated marks gain their provenance. Marks from v1 have none, so they never clear
                // automatically (the safe side: the node is not promoted until an operator acts).
                using var tx = db.BeginTransaction();
                Exec(db, """
                    ALTER TABLE outdated ADD COLUMN requester TEXT NOT NULL DEFAULT '';
                    ALTER TABLE outdated ADD COLUMN after_sequence INTEGER NOT NULL DEFAULT 0;
                    UPDATE meta SET value = '2' WHERE key = 'schema_version';
                    """);
                tx.Commit();
                version = 2;
            }

            if (version != SchemaVersion)
            {
                throw new StoreException($"store '{path}' has schema version {version}; this coordinator understands {SchemaVersion}");
            }

            return new SqliteStore(db, time) { Path = path };
        }
        catch (SqliteException ex)
        {
            db.Dispose();
            throw new StoreException($"store '{path}' cannot be opened: {ex.Message}", ex);
        }
        catch
        {
            db.Dispose();
            throw;
        }
    }

    public void Dispose() => _db.Dispose();

    // ---------------- resources and generations ----------------

    public ResourceRecord GetResource(string resource)
    {
        lock (_lock)
        {
            return ReadResource(resource);
        }
    }

    /// <summary>
    /// Atomically moves <paramref name="resource"/> from <paramref name="expected"/> to expected + 1 with
    /// <paramref name="primaryNode"/> as the intended primary, and records the event in the same
    /// transaction. Returns the new generation once it is durable; throws if the generation moved on.
    /// When <c>operation</c> is given, the in-flight operation is recorded in the same transaction (with the
    /// new generation), so a restart always finds it. <paramref name="to"/> (above expected) moves further than + 1:
    /// an adoption under agents that persisted higher generations than this store knows.
    /// </summary>
    public ulong AdvanceGeneration(string resource, ulong expected, string primaryNode, EventRecord record, bool isFailover, OperationRecord? operation = null, ulong? to = null) =>
        AdvanceGenerationWithEvent(resource, expected, primaryNode, record, isFailover, operation, to).Generation;

    /// <summary><see cref="AdvanceGeneration"/>, also returning the stored event (its sequence lets a client follow the operation).</summary>
    public (ulong Generation, StoredEvent Event) AdvanceGenerationWithEvent(string resource, ulong expected, string primaryNode, EventRecord record, bool isFailover, OperationRecord? operation = null, ulong? to = null)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (to is { } target && target <= expected)
        {
            throw new ArgumentOutOfRangeException(nameof(to), target, $"generation of '{resource}' may only go up (from {expected})");
        }

        StoredEvent stored;
        ulong next;
        lock (_lock)
        {
            using var tx = _db.BeginTransaction();
            var current = ReadResource(resource).Generation;
            if (current != expected)
            {
                throw new InvalidOperationException($"generation of '{resource}' is {current}, expected {expected}");
            }

            next = to ?? current + 1;
            var now = _time.GetUtcNow();
            Exec(_db, """
                INSERT INTO resources(name, generation, primary_node, maintenance, last_failover_ms) VALUES ($r, $g, $p, 0, $f)
                ON CONFLICT(name) DO UPDATE SET generation = $g, primary_node = $p, last_failover_ms = COALESCE($f, last_failover_ms);
                """, ("$r", resource), ("$g", (long)next), ("$p", primaryNode), ("$f", isFailover ? now.ToUnixTimeMilliseconds() : null));
            stored = InsertEvent(record with { Generation = next }, now);
            if (operation is not null)
            {
                UpsertOperation(operation with { Generation = next });
            }

            tx.Commit();
        }

        Notify();
        return (next, stored);
    }

    /// <summary>
    /// Names <paramref name="primaryNode"/> the intended primary at the current generation (a switchover, once
    /// the old primary is demoted), with the event, in one transaction. Throws if the generation moved on.
    /// </summary>
    public void SetPrimary(string resource, ulong generation, string primaryNode, EventRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        lock (_lock)
        {
            using var tx = _db.BeginTransaction();
            var current = ReadResource(resource).Generation;
            if (current != generation)
            {
                throw new InvalidOperationException($"generation of '{resource}' is {current}, expected {generation}");
            }

            Exec(_db, "UPDATE resources SET primary_node = $p WHERE name = $r;", ("$r", resource), ("$p", primaryNode));
            InsertEvent(record with { Generation = generation }, _time.GetUtcNow());
            tx.Commit();
        }

        Notify();
    }

    public void SetMaintenance(string resource, bool enabled, EventRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        lock (_lock)
        {
            using var tx = _db.BeginTransaction();
            Exec(_db, """
                INSERT INTO resources(name, generation, primary_node, maintenance) VALUES ($r, 0, '', $m)
                ON CONFLICT(name) DO UPDATE SET maintenance = $m;
                """, ("$r", resource), ("$m", enabled ? 1 : 0));
            InsertEvent(record, _time.GetUtcNow());
            tx.Commit();
        }

        Notify();
    }

    /// <summary>
    /// Records <paramref name="node"/> outdated at <paramref name="generation"/> (DRBD fencing, design §4.1)
    /// on request of <paramref name="requester"/>, whose last report then was <paramref name="afterReportSequence"/>;
    /// durable on return. A later request replaces the provenance (it is the stricter one).
    /// </summary>
    public void MarkOutdated(string resource, string node, ulong generation, EventRecord record, string requester = "", ulong afterReportSequence = 0)
    {
        ArgumentNullException.ThrowIfNull(record);
        lock (_lock)
        {
            using var tx = _db.BeginTransaction();
            Exec(_db, """
                INSERT INTO outdated(resource, node, generation, requester, after_sequence) VALUES ($r, $n, $g, $q, $s)
                ON CONFLICT(resource, node) DO UPDATE SET generation = MAX(generation, $g), requester = $q, after_sequence = MAX(after_sequence, $s);
                """, ("$r", resource), ("$n", node), ("$g", (long)generation), ("$q", requester), ("$s", unchecked((long)afterReportSequence)));
            InsertEvent(record, _time.GetUtcNow());
            tx.Commit();
        }

        Notify();
    }

    public void ClearOutdated(string resource, string node, EventRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        lock (_lock)
        {
            using var tx = _db.BeginTransaction();
            Exec(_db, "DELETE FROM outdated WHERE resource = $r AND node = $n;", ("$r", resource), ("$n", node));
            InsertEvent(record, _time.GetUtcNow());
            tx.Commit();
        }

        Notify();
    }

    // ---------------- operations ----------------

    public void SaveOperation(OperationRecord op)
    {
        ArgumentNullException.ThrowIfNull(op);
        lock (_lock)
        {
            UpsertOperation(op);
        }
    }

    private void UpsertOperation(OperationRecord op) =>
        Exec(_db, """
            INSERT INTO operations(id, resource, kind, target, generation, phase, started_ms, state) VALUES ($i, $r, $k, $t, $g, $p, $s, $j)
            ON CONFLICT(id) DO UPDATE SET phase = $p, state = $j, generation = $g;
            """, ("$i", op.Id), ("$r", op.Resource), ("$k", op.Kind), ("$t", op.TargetNode), ("$g", (long)op.Generation),
            ("$p", op.Phase), ("$s", op.StartedAt.ToUnixTimeMilliseconds()), ("$j", op.StateJson));

    public void CompleteOperation(string id)
    {
        lock (_lock)
        {
            Exec(_db, "DELETE FROM operations WHERE id = $i;", ("$i", id));
        }
    }

    /// <summary>Ends the operation and records its terminal event in one transaction (a restart never sees one without the other).</summary>
    public StoredEvent CompleteOperation(string id, EventRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        StoredEvent stored;
        lock (_lock)
        {
            using var tx = _db.BeginTransaction();
            Exec(_db, "DELETE FROM operations WHERE id = $i;", ("$i", id));
            stored = InsertEvent(record, _time.GetUtcNow());
            tx.Commit();
        }

        Notify();
        return stored;
    }

    public IReadOnlyList<OperationRecord> PendingOperations()
    {
        lock (_lock)
        {
            return ReadOperations();
        }
    }

    private List<OperationRecord> ReadOperations()
    {
        using var cmd = Command(_db, "SELECT id, resource, kind, target, generation, phase, started_ms, state FROM operations ORDER BY started_ms;");
        using var r = cmd.ExecuteReader();
        var list = new List<OperationRecord>();
        while (r.Read())
        {
            list.Add(new OperationRecord(r.GetString(0), r.GetString(1), r.GetString(2), r.GetString(3), (ulong)r.GetInt64(4), r.GetString(5),
                DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(6)), r.GetString(7)));
        }

        return list;
    }

    // ---------------- the coordinator core's records ----------------

    /// <summary>
    /// Persists what a <see cref="CoordinatorCore"/> emitted, in one transaction: each record in order (into the
    /// resources, outdated and operations tables, so every reader above sees it), then the events in order, then
    /// <paramref name="lastCoreId"/> (the highest id the core used; the stored value only goes up).
    /// Durable on return; returns the stored events in order.
    /// </summary>
    public IReadOnlyList<StoredEvent> Commit(IReadOnlyList<CoordinatorRecord> records, IReadOnlyList<EventRecord> events, long lastCoreId)
    {
        ArgumentNullException.ThrowIfNull(records);
        ArgumentNullException.ThrowIfNull(events);
        var stored = new List<StoredEvent>(events.Count);
        lock (_lock)
        {
            using var tx = _db.BeginTransaction();
            var now = _time.GetUtcNow();
            foreach (var record in records)
            {
                WriteRecord(record, now.ToUnixTimeMilliseconds());
            }

            foreach (var e in events)
            {
                stored.Add(InsertEvent(e, now));
            }

            Exec(_db, """
                INSERT INTO meta(key, value) VALUES ('last_core_id', $v)
                ON CONFLICT(key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), $v);
                """, ("$v", lastCoreId));
            tx.Commit();
        }

        Notify();
        return stored;
    }

    /// <summary>
    /// The records of <paramref name="resources"/> for a new <see cref="CoordinatorCore"/> (those the store knows
    /// nothing about are left out) and the highest id used so far. An operation resumes with
    /// <c>DecidedAt = </c><paramref name="now"/>; one left by the previous daemon (hex id, phases started/demoted/promoted)
    /// gets a fresh id and the matching stage.
    /// </summary>
    /// <exception cref="StoreException">An operation row cannot be understood (kind, phase or state); nothing is guessed.</exception>
    public (IReadOnlyList<CoordinatorRecord> Records, long LastCoreId) LoadCore(IReadOnlyList<string> resources, MonoTime now)
    {
        ArgumentNullException.ThrowIfNull(resources);
        lock (_lock)
        {
            var lastId = Convert.ToInt64(Scalar(_db, "SELECT value FROM meta WHERE key = 'last_core_id';"), CultureInfo.InvariantCulture);
            var operations = ReadOperations();
            foreach (var row in operations)
            {
                if (CoreId(row) is { } id)
                {
                    lastId = Math.Max(lastId, id);
                }
            }

            var records = new List<CoordinatorRecord>();
            foreach (var name in resources)
            {
                var rows = operations.Where(o => o.Resource == name).ToList();
                if (rows.Count > 1)
                {
                    throw new StoreException($"resource '{name}' has {rows.Count} operations in the store ({string.Join(", ", rows.Select(o => o.Id))}); at most one can be in flight");
                }

                var stored = ReadResource(name);
                if (rows.Count == 0 && stored.OutdatedNodes.Count == 0 && Scalar(_db, "SELECT count(*) FROM resources WHERE name = $r;", ("$r", name)) is 0L)
                {
                    continue;
                }

                records.Add(new CoordinatorRecord(stored.Resource, stored.Generation, stored.PrimaryNode, stored.OutdatedNodes.ToImmutableDictionary(StringComparer.Ordinal),
                    rows.Count == 0 ? null : ToCore(rows[0], now, ref lastId))
                {
                    OutdatedBy = stored.OutdatedMarks.Where(m => m.Value.Requester.Length > 0)
                        .ToImmutableDictionary(m => m.Key, m => (m.Value.Requester, m.Value.AfterReportSequence), StringComparer.Ordinal),
                    Maintenance = stored.Maintenance,
                });
            }

            return (records, lastId);
        }
    }

    private void WriteRecord(CoordinatorRecord record, long nowMs)
    {
        var op = record.Operation;
        var id = op?.Id.ToString(CultureInfo.InvariantCulture);
        var newFailover = op is { Kind: OperationKind.Failover } && Scalar(_db, "SELECT count(*) FROM operations WHERE id = $i;", ("$i", id)) is 0L;
        Exec(_db, """
            INSERT INTO resources(name, generation, primary_node, maintenance, last_failover_ms) VALUES ($r, $g, $p, $m, $f)
            ON CONFLICT(name) DO UPDATE SET generation = $g, primary_node = $p, maintenance = $m, last_failover_ms = COALESCE($f, last_failover_ms);
            """, ("$r", record.Resource), ("$g", (long)record.Generation), ("$p", record.Primary), ("$m", record.Maintenance ? 1 : 0), ("$f", newFailover ? nowMs : null));

        Exec(_db, "DELETE FROM outdated WHERE resource = $r;", ("$r", record.Resource));
        foreach (var (node, generation) in record.Outdated)
        {
            var (by, after) = record.OutdatedBy.TryGetValue(node, out var mark) ? mark : ("", 0UL);
            Exec(_db, "INSERT INTO outdated(resource, node, generation, requester, after_sequence) VALUES ($r, $n, $g, $q, $s);",
                ("$r", record.Resource), ("$n", node), ("$g", (long)generation), ("$q", by), ("$s", unchecked((long)after)));
        }

        Exec(_db, "DELETE FROM operations WHERE resource = $r AND id IS NOT $i;", ("$r", record.Resource), ("$i", id));
        if (op is not null)
        {
            Exec(_db, """
                INSERT INTO operations(id, resource, kind, target, generation, phase, started_ms, state) VALUES ($i, $r, $k, $t, $g, $p, $s, $j)
                ON CONFLICT(id) DO UPDATE SET resource = $r, kind = $k, target = $t, generation = $g, phase = $p, state = $j;
                """, ("$i", id), ("$r", record.Resource), ("$k", op.KindName), ("$t", op.Target), ("$g", (long)op.Generation), ("$p", StageName(op.Stage)),
                ("$s", nowMs), ("$j", JsonSerializer.Serialize(new CoreState(op.From, op.Reason, op.Force, op.DemoteFirst, op.DecisionId))));
        }
    }

    /// <summary>The row's core id; null for a row of the previous daemon (hex id, or one of its phases), which gets a fresh one.</summary>
    private static long? CoreId(OperationRecord row) =>
        LegacyStage(row.Phase, demoteFirst: false) is null && long.TryParse(row.Id, NumberStyles.None, CultureInfo.InvariantCulture, out var id) ? id : null;

    private static CoreOperation ToCore(OperationRecord row, MonoTime now, ref long lastId)
    {
        var what = $"operation '{row.Id}' of '{row.Resource}'";
        var kind = CoreOperation.KindOf(row.Kind) ?? throw new StoreException($"{what} has an unknown kind '{row.Kind}'; refusing to guess what it was doing");
        CoreState state;
        try
        {
            state = JsonSerializer.Deserialize<CoreState>(row.StateJson) ?? throw new JsonException("the state is null");
        }
        catch (JsonException ex)
        {
            throw new StoreException($"{what} has unreadable state '{row.StateJson}': {ex.Message}", ex);
        }

        var stage = LegacyStage(row.Phase, state.DemoteFirst) ?? ParseStage(row.Phase)
            ?? throw new StoreException($"{what} has an unknown phase '{row.Phase}'; refusing to guess how far it got");
        var kept = CoreId(row);
        var id = kept ?? ++lastId;
        var decisionId = kept is null ? id : state.DecisionId;
        return new CoreOperation(id, kind, row.TargetNode, row.Generation, stage, decisionId, now)
        {
            From = state.From ?? "",
            Reason = state.Reason ?? "",
            Force = state.Force,
            DemoteFirst = state.DemoteFirst,
        };
    }

    private static string StageName(OperationStage stage) => stage switch
    {
        OperationStage.Agreeing => "agreeing",
        OperationStage.Demoting => "demoting",
        OperationStage.Promoting => "promoting",
        OperationStage.Moving => "moving",
        OperationStage.Verifying => "verifying",
        OperationStage.Reasserting => "reasserting",
        OperationStage.RollingBack => "rolling-back",
        _ => throw new ArgumentOutOfRangeException(nameof(stage), stage, "no store name for this operation stage"),
    };

    private static OperationStage? ParseStage(string name) => name switch
    {
        "agreeing" => OperationStage.Agreeing,
        "demoting" => OperationStage.Demoting,
        "promoting" => OperationStage.Promoting,
        "moving" => OperationStage.Moving,
        "verifying" => OperationStage.Verifying,
        "reasserting" => OperationStage.Reasserting,
        "rolling-back" => OperationStage.RollingBack,
        _ => null,
    };

    /// <summary>Where the core picks up an operation the previous daemon left at <paramref name="phase"/> (its OperationPhases).</summary>
    private static OperationStage? LegacyStage(string phase, bool demoteFirst) => phase switch
    {
        "started" => demoteFirst ? OperationStage.Demoting : OperationStage.Promoting,
        "demoted" => OperationStage.Promoting,
        "promoted" => OperationStage.Moving,
        _ => null,
    };

    /// <summary>operations.state of a core operation (the previous daemon wrote the same without DecisionId).</summary>
    private sealed record CoreState(string? From, string? Reason, bool Force, bool DemoteFirst, long DecisionId);

    // ---------------- events ----------------

    public ValueTask<StoredEvent> AppendAsync(EventRecord record, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(record);
        StoredEvent stored;
        lock (_lock)
        {
            stored = InsertEvent(record, _time.GetUtcNow());
        }

        Notify();
        return ValueTask.FromResult(stored);
    }

    public IReadOnlyList<StoredEvent> List(ulong afterSequence, int limit = int.MaxValue)
    {
        lock (_lock)
        {
            using var cmd = Command(_db, "SELECT seq, time_ms, kind, resource, node, generation, severity, message, attributes FROM events WHERE seq > $a ORDER BY seq LIMIT $l;",
                ("$a", (long)afterSequence), ("$l", (long)limit));
            using var r = cmd.ExecuteReader();
            var list = new List<StoredEvent>();
            while (r.Read())
            {
                var attributes = JsonSerializer.Deserialize<Dictionary<string, string>>(r.GetString(8)) ?? [];
                var record = new EventRecord(r.GetString(2), r.GetString(7), r.GetString(3), r.GetString(4), (ulong)r.GetInt64(5), Enum.Parse<EventSeverity>(r.GetString(6)))
                {
                    Attributes = attributes,
                };
                list.Add(new StoredEvent((ulong)r.GetInt64(0), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(1)), record));
            }

            return list;
        }
    }

    public Task WaitForChangeAsync(CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            return _changed.Task.WaitAsync(cancellationToken);
        }
    }

    private StoredEvent InsertEvent(EventRecord record, DateTimeOffset now)
    {
        using var cmd = Command(_db, """
            INSERT INTO events(time_ms, kind, resource, node, generation, severity, message, attributes) VALUES ($t, $k, $r, $n, $g, $s, $m, $a);
            SELECT last_insert_rowid();
            """, ("$t", now.ToUnixTimeMilliseconds()), ("$k", record.Kind), ("$r", record.Resource), ("$n", record.Node), ("$g", (long)record.Generation),
            ("$s", record.Severity.ToString()), ("$m", record.Message), ("$a", JsonSerializer.Serialize(record.Attributes)));
        var seq = (long)cmd.ExecuteScalar()!;
        return new StoredEvent((ulong)seq, DateTimeOffset.FromUnixTimeMilliseconds(now.ToUnixTimeMilliseconds()), record);
    }

    private void Notify()
    {
        TaskCompletionSource changed;
        lock (_lock)
        {
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        changed.TrySetResult();
    }

    private ResourceRecord ReadResource(string resource)
    {
        ulong generation = 0;
        var primary = "";
        var maintenance = false;
        DateTimeOffset? lastFailover = null;
        using (var cmd = Command(_db, "SELECT generation, primary_node, maintenance, last_failover_ms FROM resources WHERE name = $r;", ("$r", resource)))
        using (var r = cmd.ExecuteReader())
        {
            if (r.Read())
            {
                generation = (ulong)r.GetInt64(0);
                primary = r.GetString(1);
                maintenance = r.GetInt64(2) != 0;
                lastFailover = r.IsDBNull(3) ? null : DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(3));
            }
        }

        var outdated = new Dictionary<string, ulong>(StringComparer.Ordinal);
        var marks = new Dictionary<string, Shared.Failover.OutdatedMark>(StringComparer.Ordinal);
        using (var cmd = Command(_db, "SELECT node, generation, requester, after_sequence FROM outdated WHERE resource = $r;", ("$r", resource)))
        using (var r = cmd.ExecuteReader())
        {
            while (r.Read())
            {
                outdated[r.GetString(0)] = (ulong)r.GetInt64(1);
                marks[r.GetString(0)] = new Shared.Failover.OutdatedMark((ulong)r.GetInt64(1), r.GetString(2), unchecked((ulong)r.GetInt64(3)));
            }
        }

        return new ResourceRecord(resource, generation, primary, maintenance, lastFailover, outdated) { OutdatedMarks = marks };
    }

    private static void CreateSchema(SqliteConnection db)
    {
        using var tx = db.BeginTransaction();
        Exec(db, """
            CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE resources(name TEXT PRIMARY KEY, generation INTEGER NOT NULL, primary_node TEXT NOT NULL, maintenance INTEGER NOT NULL, last_failover_ms INTEGER);
            CREATE TABLE outdated(resource TEXT NOT NULL, node TEXT NOT NULL, generation INTEGER NOT NULL, requester TEXT NOT NULL DEFAULT '', after_sequence INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(resource, node));
            CREATE TABLE operations(id TEXT PRIMARY KEY, resource TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL, generation INTEGER NOT NULL, phase TEXT NOT NULL, started_ms INTEGER NOT NULL, state TEXT NOT NULL);
            CREATE TABLE events(seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, kind TEXT NOT NULL, resource TEXT NOT NULL, node TEXT NOT NULL, generation INTEGER NOT NULL, severity TEXT NOT NULL, message TEXT NOT NULL, attributes TEXT NOT NULL);
            """);
        Exec(db, "INSERT INTO meta(key, value) VALUES ('schema_version', $v);", ("$v", SchemaVersion.ToString(CultureInfo.InvariantCulture)));
        tx.Commit();
    }

    private static SqliteCommand Command(SqliteConnection db, string sql, params (string Name, object? Value)[] parameters)
    {
        var cmd = db.CreateCommand();
        cmd.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            cmd.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }

        return cmd;
    }

    private static void Exec(SqliteConnection db, string sql, params (string Name, object? Value)[] parameters)
    {
        using var cmd = Command(db, sql, parameters);
        cmd.ExecuteNonQuery();
    }

    private static object? Scalar(SqliteConnection db, string sql, params (string Name, object? Value)[] parameters)
    {
        using var cmd = Command(db, sql, parameters);
        return cmd.ExecuteScalar();
    }
}
