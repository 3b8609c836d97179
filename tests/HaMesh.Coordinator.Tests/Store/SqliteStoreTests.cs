using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Store;
using HaMesh.Shared.Core;
using HaMesh.Shared.Failover;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Time.Testing;
using CoreOperation = HaMesh.Shared.Core.OperationRecord;
using OperationRecord = HaMesh.Coordinator.Store.OperationRecord;

namespace HaMesh.Coordinator.Tests.Store;

public sealed class SqliteStoreTests : IDisposable
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-store-").FullName;
    private readonly FakeTimeProvider _time = new(T0);

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_dir, recursive: true);
    }

    private string PathOf(string name = "c.db") => Path.Combine(_dir, name);

    private static EventRecord Event(string kind) => new(kind, kind + " happened", Resource: "db", Node: "b");

    [Fact]
    public void AdvanceGeneration_Reopened_GenerationAndPrimaryAndEventSurvive()
    {
        using (var store = SqliteStore.Open(PathOf(), _time))
        {
            Assert.Equal(1UL, store.AdvanceGeneration("db", 0, "a", Event("Bootstrap"), isFailover: false));
            _time.Advance(TimeSpan.FromMinutes(1));
            Assert.Equal(2UL, store.AdvanceGeneration("db", 1, "b", Event("FailoverStarted"), isFailover: true));
        }

        using var reopened = SqliteStore.Open(PathOf(), _time);
        var r = reopened.GetResource("db");
        Assert.Equal(2UL, r.Generation);
        Assert.Equal("b", r.PrimaryNode);
        Assert.Equal(T0 + TimeSpan.FromMinutes(1), r.LastFailoverAt);
        var events = reopened.List(0);
        Assert.Equal(["Bootstrap", "FailoverStarted"], events.Select(e => e.Record.Kind));
        Assert.Equal(2UL, events[1].Record.Generation);
    }

    [Fact]
    public void AdvanceGeneration_StaleExpectation_RefusedAndNothingWritten()
    {
        using var store = SqliteStore.Open(PathOf(), _time);
        store.AdvanceGeneration("db", 0, "a", Event("Bootstrap"), isFailover: false);
        var ex = Assert.Throws<InvalidOperationException>(() => store.AdvanceGeneration("db", 0, "b", Event("FailoverStarted"), isFailover: true));
        Assert.Contains("is 1, expected 0", ex.Message);
        Assert.Equal(1UL, store.GetResource("db").Generation);
        Assert.Single(store.List(0));
    }

    [Fact]
    public void UnknownResource_GenerationZeroNoPrimary()
    {
        using var store = SqliteStore.Open(PathOf(), _time);
        var r = store.GetResource("web");
        Assert.Equal(0UL, r.Generation);
        Assert.Equal("", r.PrimaryNode);
        Assert.False(r.Maintenance);
        Assert.Empty(r.OutdatedNodes);
    }

    [Fact]
    public async Task Events_SequenceContinuesAfterReopen_AttributesRoundTrip()
    {
        using (var store = SqliteStore.Open(PathOf(), _time))
        {
            await store.AppendAsync(Event("A") with { Attributes = new Dictionary<string, string> { ["task"] = "42" } }, TestContext.Current.CancellationToken);
        }

        using var reopened = SqliteStore.Open(PathOf(), _time);
        var second = await reopened.AppendAsync(Event("B"), TestContext.Current.CancellationToken);
        Assert.Equal(2UL, second.Sequence);
        var all = reopened.List(0);
        Assert.Equal("42", all[0].Record.Attributes["task"]);
        Assert.Equal(["B"], reopened.List(1).Select(e => e.Record.Kind));
        Assert.Single(reopened.List(0, limit: 1));
    }

    [Fact]
    public async Task WaitForChange_CompletesOnAppend()
    {
        using var store = SqliteStore.Open(PathOf(), _time);
        var changed = store.WaitForChangeAsync(TestContext.Current.CancellationToken);
        Assert.False(changed.IsCompleted);
        await store.AppendAsync(Event("A"), TestContext.Current.CancellationToken);
        await changed.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
    }

    [Fact]
    public void OutdatedMarks_PersistKeepHighestGenerationAndClear()
    {
        using (var store = SqliteStore.Open(PathOf(), _time))
        {
            store.MarkOutdated("db", "b", 5, Event("PeerOutdated"));
            store.MarkOutdated("db", "b", 3, Event("PeerOutdated"));
        }

        using var reopened = SqliteStore.Open(PathOf(), _time);
        Assert.Equal(5UL, reopened.GetResource("db").OutdatedNodes["b"]);
        reopened.ClearOutdated("db", "b", Event("OutdatedCleared"));
        Assert.Empty(reopened.GetResource("db").OutdatedNodes);
    }

    [Fact]
    public void OutdatedMarks_KeepWhoAskedAndAfterWhichReport_ALaterFenceRaisesIt()
    {
        using (var store = SqliteStore.Open(PathOf(), _time))
        {
            store.MarkOutdated("db", "b", 5, Event("PeerOutdated"), "a", 1000);
            store.MarkOutdated("db", "b", 5, Event("PeerOutdated"), "a", 2000);
        }

        using var reopened = SqliteStore.Open(PathOf(), _time);
        Assert.Equal(new Shared.Failover.OutdatedMark(5, "a", 2000), reopened.GetResource("db").OutdatedMarks["b"]);
    }

    [Fact]
    public void SchemaVersion1Store_MigratedKeepingItsMarks_WithoutProvenance()
    {
        using (var db = new SqliteConnection($"Data Source={PathOf()}"))
        {
            db.Open();
            using var cmd = db.CreateCommand();
            cmd.CommandText = """
                CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE resources(name TEXT PRIMARY KEY, generation INTEGER NOT NULL, primary_node TEXT NOT NULL, maintenance INTEGER NOT NULL, last_failover_ms INTEGER);
                CREATE TABLE outdated(resource TEXT NOT NULL, node TEXT NOT NULL, generation INTEGER NOT NULL, PRIMARY KEY(resource, node));
                CREATE TABLE operations(id TEXT PRIMARY KEY, resource TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL, generation INTEGER NOT NULL, phase TEXT NOT NULL, started_ms INTEGER NOT NULL, state TEXT NOT NULL);
                CREATE TABLE events(seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, kind TEXT NOT NULL, resource TEXT NOT NULL, node TEXT NOT NULL, generation INTEGER NOT NULL, severity TEXT NOT NULL, message TEXT NOT NULL, attributes TEXT NOT NULL);
                INSERT INTO meta VALUES ('schema_version', '1');
                INSERT INTO resources VALUES ('db', 4, 'a', 0, NULL);
                INSERT INTO outdated VALUES ('db', 'b', 4);
                """;
            cmd.ExecuteNonQuery();
        }

        SqliteConnection.ClearAllPools();
        using var store = SqliteStore.Open(PathOf(), _time);
        var r = store.GetResource("db");
        Assert.Equal((4UL, "a"), (r.Generation, r.PrimaryNode));
        Assert.Equal(4UL, r.OutdatedNodes["b"]);
        Assert.Equal(new Shared.Failover.OutdatedMark(4, "", 0), r.OutdatedMarks["b"]);   // no requester: never cleared automatically
    }

    [Fact]
    public void Maintenance_Persists()
    {
        using (var store = SqliteStore.Open(PathOf(), _time))
        {
            store.SetMaintenance("db", true, Event("MaintenanceOn"));
        }

        using var reopened = SqliteStore.Open(PathOf(), _time);
        Assert.True(reopened.GetResource("db").Maintenance);
    }

    [Fact]
    public void Operations_PendingUntilCompleted_SurviveReopen()
    {
        using (var store = SqliteStore.Open(PathOf(), _time))
        {
            store.SaveOperation(new OperationRecord("op-1", "db", "Failover", "b", 4, "Promote", T0, "{}"));
            store.SaveOperation(new OperationRecord("op-1", "db", "Failover", "b", 4, "MoveIp", T0, "{\"task\":7}"));
        }

        using var reopened = SqliteStore.Open(PathOf(), _time);
        var op = Assert.Single(reopened.PendingOperations());
        Assert.Equal("MoveIp", op.Phase);
        Assert.Equal("{\"task\":7}", op.StateJson);
        reopened.CompleteOperation("op-1");
        Assert.Empty(reopened.PendingOperations());
    }

    [Fact]
    public void AdvanceGeneration_WithOperation_RecordedAtTheNewGenerationInTheSameCommit()
    {
        using (var store = SqliteStore.Open(PathOf(), _time))
        {
            store.AdvanceGeneration("db", 0, "a", Event("Bootstrap"), isFailover: false);
            var (generation, started) = store.AdvanceGenerationWithEvent("db", 1, "a", Event("SwitchoverStarted"), isFailover: false,
                new OperationRecord("op-2", "db", "switchover", "b", 0, "started", T0, "{}"));
            Assert.Equal(2UL, generation);
            Assert.Equal(2UL, started.Record.Generation);
        }

        using var reopened = SqliteStore.Open(PathOf(), _time);
        var op = Assert.Single(reopened.PendingOperations());
        Assert.Equal(("op-2", 2UL), (op.Id, op.Generation));
        Assert.Equal("a", reopened.GetResource("db").PrimaryNode);
        reopened.SetPrimary("db", 2, "b", Event("PrimaryHandedOver"));
        Assert.Throws<InvalidOperationException>(() => reopened.SetPrimary("db", 1, "a", Event("Stale")));
        var end = reopened.CompleteOperation("op-2", Event("SwitchoverCompleted"));
        Assert.Equal("b", reopened.GetResource("db").PrimaryNode);
        Assert.Empty(reopened.PendingOperations());
        Assert.Equal("SwitchoverCompleted", reopened.List(end.Sequence - 1).Single().Record.Kind);
        Assert.DoesNotContain(reopened.List(0), e => e.Record.Kind == "Stale");
    }

    [Fact]
    public void Open_GarbageFile_RefusedWithClearMessageAndFileKept()
    {
        File.WriteAllBytes(PathOf(), [.. Enumerable.Range(0, 4096).Select(i => (byte)(i * 7))]);
        var ex = Assert.Throws<StoreException>(() => SqliteStore.Open(PathOf(), _time));
        Assert.Contains(PathOf(), ex.Message);
        Assert.Equal(4096, new FileInfo(PathOf()).Length);
    }

    [Fact]
    public void Open_EmptyExistingFile_Refused()
    {
        File.WriteAllBytes(PathOf(), []);
        var ex = Assert.Throws<StoreException>(() => SqliteStore.Open(PathOf(), _time));
        Assert.Contains("empty", ex.Message);
    }

    [Fact]
    public void Open_ForeignSqliteDatabase_RefusedNotReused()
    {
        using (var db = new SqliteConnection($"Data Source={PathOf()};Pooling=False"))
        {
            db.Open();
            using var cmd = db.CreateCommand();
            cmd.CommandText = "CREATE TABLE customers(id INTEGER);";
            cmd.ExecuteNonQuery();
        }

        var ex = Assert.Throws<StoreException>(() => SqliteStore.Open(PathOf(), _time));
        Assert.Contains("not a HaMesh coordinator store", ex.Message);
    }

    [Fact]
    public void Open_MissingDirectory_Refused()
    {
        var ex = Assert.Throws<StoreException>(() => SqliteStore.Open(Path.Combine(_dir, "no", "such", "c.db"), _time));
        Assert.Contains("does not exist", ex.Message);
    }

    // ---------------- the coordinator core's records ----------------

    private static readonly MonoTime Now = new(TimeSpan.FromHours(3));

    public static TheoryData<OperationKind, OperationStage> KindsAndStages()
    {
        var data = new TheoryData<OperationKind, OperationStage>();
        foreach (var kind in Enum.GetValues<OperationKind>())
        {
            foreach (var stage in Enum.GetValues<OperationStage>())
            {
                data.Add(kind, stage);
            }
        }

        return data;
    }

    private static CoordinatorRecord Record(string resource = "db", CoreOperation? operation = null, ulong generation = 4) =>
        CoordinatorRecord.Empty(resource) with { Generation = generation, Primary = "a", Operation = operation };

    /// <summary>b outdated on a's request (after a's report 1000), c outdated without a requester; in maintenance.</summary>
    private static CoordinatorRecord WithMarks(CoordinatorRecord record) => record with
    {
        Outdated = record.Outdated.SetItem("b", 3).SetItem("c", 4),
        OutdatedBy = record.OutdatedBy.SetItem("b", ("a", 1000)),
        Maintenance = true,
    };

    private static CoreOperation Operation(long id, OperationKind kind = OperationKind.Failover, OperationStage stage = OperationStage.Promoting) =>
        new(id, kind, "b", 4, stage, DecisionId: id - 1, DecidedAt: new MonoTime(TimeSpan.FromSeconds(5)));

    [Theory]
    [MemberData(nameof(KindsAndStages))]
    public void Commit_LoadCore_RoundTripsEveryKindAndStage_AcrossReopen(OperationKind kind, OperationStage stage)
    {
        var operation = Operation(7, kind, stage) with { From = "a", Reason = "planned", Force = true, DemoteFirst = true };
        var record = WithMarks(Record(operation: operation));
        using (var store = SqliteStore.Open(PathOf(), _time))
        {
            store.Commit([record], [], 7);
        }

        using var reopened = SqliteStore.Open(PathOf(), _time);
        var (records, lastCoreId) = reopened.LoadCore(["db", "web"], Now);
        var loaded = Assert.Single(records);
        Assert.Equal(7, lastCoreId);
        Assert.Equal(("db", 4UL, "a", true), (loaded.Resource, loaded.Generation, loaded.Primary, loaded.Maintenance));
        Assert.Equal(record.Outdated, loaded.Outdated);
        Assert.Equal(record.OutdatedBy, loaded.OutdatedBy);   // c has no requester: not in OutdatedBy
        Assert.Equal(operation with { DecidedAt = Now }, loaded.Operation);
    }

    [Fact]
    public void Commit_OperationNull_DeletesTheOperationRow()
    {
        using var store = SqliteStore.Open(PathOf(), _time);
        store.Commit([Record(operation: Operation(1)), Record("web", Operation(2))], [], 2);
        store.Commit([Record()], [], 2);
        Assert.Equal("web", Assert.Single(store.PendingOperations()).Resource);
        store.Commit([Record("web")], [], 2);
        Assert.Empty(store.PendingOperations());
        Assert.All(store.LoadCore(["db", "web"], Now).Records, r => Assert.Null(r.Operation));
    }

    [Fact]
    public void Commit_ExistingReadersSeeIt_LastFailoverSetOnlyByANewFailover()
    {
        using var store = SqliteStore.Open(PathOf(), _time);
        var record = WithMarks(Record(operation: Operation(5)));
        store.Commit([record], [], 5);
        var r = store.GetResource("db");
        Assert.Equal((4UL, "a", true, T0), (r.Generation, r.PrimaryNode, r.Maintenance, r.LastFailoverAt));
        Assert.Equal(new Dictionary<string, ulong> { ["b"] = 3, ["c"] = 4 }, r.OutdatedNodes);
        Assert.Equal(new Shared.Failover.OutdatedMark(3, "a", 1000), r.OutdatedMarks["b"]);
        Assert.Equal(new Shared.Failover.OutdatedMark(4, "", 0), r.OutdatedMarks["c"]);
        var op = Assert.Single(store.PendingOperations());
        Assert.Equal(("5", "db", "failover", "b", 4UL, "promoting", T0), (op.Id, op.Resource, op.Kind, op.TargetNode, op.Generation, op.Phase, op.StartedAt));

        _time.Advance(TimeSpan.FromMinutes(1));
        store.Commit([record with { Operation = Operation(5, stage: OperationStage.Moving), Outdated = record.Outdated.Remove("c") }], [], 5);
        Assert.Equal(["b"], store.GetResource("db").OutdatedNodes.Keys);
        store.Commit([record with { Operation = Operation(6, OperationKind.Switchover), Maintenance = false }], [], 6);
        r = store.GetResource("db");
        Assert.Equal((T0, false), (r.LastFailoverAt, r.Maintenance));
        op = Assert.Single(store.PendingOperations());
        Assert.Equal(("6", "switchover", "promoting", T0 + TimeSpan.FromMinutes(1)), (op.Id, op.Kind, op.Phase, op.StartedAt));

        store.Commit([record with { Operation = Operation(6, OperationKind.Switchover, OperationStage.Verifying) }], [], 6);
        Assert.Equal(T0 + TimeSpan.FromMinutes(1), Assert.Single(store.PendingOperations()).StartedAt);   // kept on later upserts
        store.Commit([record with { Operation = Operation(8) }], [], 8);
        Assert.Equal(T0 + TimeSpan.FromMinutes(1), store.GetResource("db").LastFailoverAt);
    }

    [Fact]
    public async Task Commit_EventsStoredInOrderWithTheReturnedSequences_AndNotified()
    {
        using var store = SqliteStore.Open(PathOf(), _time);
        await store.AppendAsync(Event("Before"), TestContext.Current.CancellationToken);
        var changed = store.WaitForChangeAsync(TestContext.Current.CancellationToken);
        var stored = store.Commit([Record()], [Event("A"), Event("B") with { Generation = 4 }, Event("C")], 0);
        await changed.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        Assert.Equal([2UL, 3UL, 4UL], stored.Select(e => e.Sequence));
        var listed = store.List(1);
        Assert.Equal(stored.Select(e => (e.Sequence, e.Record.Kind, e.Record.Generation)), listed.Select(e => (e.Sequence, e.Record.Kind, e.Record.Generation)));
        Assert.Equal(["A", "B", "C"], listed.Select(e => e.Record.Kind));
        Assert.All(listed, e => Assert.Equal(T0, e.Time));
    }

    [Fact]
    public void LastCoreId_SurvivesReopen_IsTheMaxOfTheStoredIdAndTheOperationIds()
    {
        using (var store = SqliteStore.Open(PathOf(), _time))
        {
            Assert.Equal(0, store.LoadCore(["db"], Now).LastCoreId);
            Assert.Empty(store.LoadCore(["db"], Now).Records);
            store.Commit([], [], 10);
            store.Commit([], [], 7);
        }

        using (var reopened = SqliteStore.Open(PathOf(), _time))
        {
            Assert.Equal(10, reopened.LoadCore([], Now).LastCoreId);
            reopened.Commit([Record("other", Operation(15))], [], 9);
        }

        using var again = SqliteStore.Open(PathOf(), _time);
        Assert.Equal(15, again.LoadCore(["db"], Now).LastCoreId);   // counts operations of every resource, named or not
    }

    [Theory]
    [InlineData("started", false, OperationStage.Promoting)]
    [InlineData("started", true, OperationStage.Demoting)]
    [InlineData("demoted", true, OperationStage.Promoting)]
    [InlineData("promoted", true, OperationStage.Moving)]
    public void LegacyOperation_LoadsWithAFreshIdAndTheMatchingStage(string phase, bool demoteFirst, OperationStage expected)
    {
        using (var store = SqliteStore.Open(PathOf(), _time))
        {
            store.Commit([Record(), Record("web")], [], 41);
            store.SaveOperation(new OperationPlan("a1b2c3d4e5f6", OperationKinds.Switchover, "db", "a", "b", 4, "planned", Force: false, demoteFirst).ToRecord(phase, T0));
            store.SaveOperation(new OperationPlan("123456789012", OperationKinds.ForcePromote, "web", "a", "b", 4, "forced", Force: true, demoteFirst).ToRecord(phase, T0));
        }

        using var reopened = SqliteStore.Open(PathOf(), _time);
        var (records, lastCoreId) = reopened.LoadCore(["db", "web"], Now);
        Assert.Equal(43, lastCoreId);   // the all-digit hex id is not taken for a core id
        Assert.Equal(new CoreOperation(42, OperationKind.Switchover, "b", 4, expected, 42, Now) { From = "a", Reason = "planned", DemoteFirst = demoteFirst }, records[0].Operation);
        Assert.Equal(new CoreOperation(43, OperationKind.ForcePromote, "b", 4, expected, 43, Now) { From = "a", Reason = "forced", Force = true, DemoteFirst = demoteFirst }, records[1].Operation);
    }

    [Theory]
    [InlineData("failover", "resyncing", "{}", "unknown phase 'resyncing'")]
    [InlineData("evacuate", "moving", "{}", "unknown kind 'evacuate'")]
    [InlineData("failover", "moving", "{\"From\":", "unreadable state")]
    [InlineData("failover", "moving", "null", "unreadable state")]
    public void UnreadableOperation_RefusedNamingItAndWhatIsWrong(string kind, string phase, string state, string expected)
    {
        using var store = SqliteStore.Open(PathOf(), _time);
        store.SaveOperation(new OperationRecord("9", "db", kind, "b", 4, phase, T0, state));
        var ex = Assert.Throws<StoreException>(() => store.LoadCore(["db"], Now));
        Assert.Contains("operation '9' of 'db'", ex.Message);
        Assert.Contains(expected, ex.Message);
    }
}
