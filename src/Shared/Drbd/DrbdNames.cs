using HaMesh.Protocol.V1;

namespace HaMesh.Shared.Drbd;

/// <summary>DRBD's own state strings (drbd_strings.c) ↔ the hamesh.v1 enums. Unknown strings map to UNKNOWN, never throw.</summary>
public static class DrbdNames
{
    private static readonly Dictionary<string, DrbdRole> Roles = new(StringComparer.Ordinal)
    {
        ["Primary"] = DrbdRole.Primary,
        ["Secondary"] = DrbdRole.Secondary,
        ["Unknown"] = DrbdRole.Unknown,
    };

    private static readonly Dictionary<string, DiskState> Disks = new(StringComparer.Ordinal)
    {
        ["Diskless"] = DiskState.Diskless,
        ["Attaching"] = DiskState.Attaching,
        ["Detaching"] = DiskState.Detaching,
        ["Failed"] = DiskState.Failed,
        ["Negotiating"] = DiskState.Negotiating,
        ["Inconsistent"] = DiskState.Inconsistent,
        ["Outdated"] = DiskState.Outdated,
        ["DUnknown"] = DiskState.Dunknown,
        ["Consistent"] = DiskState.Consistent,
        ["UpToDate"] = DiskState.UpToDate,
    };

    private static readonly Dictionary<string, ConnectionState> Connections = new(StringComparer.Ordinal)
    {
        ["StandAlone"] = ConnectionState.StandAlone,
        ["Disconnecting"] = ConnectionState.Disconnecting,
        ["Unconnected"] = ConnectionState.Unconnected,
        ["Timeout"] = ConnectionState.Timeout,
        ["BrokenPipe"] = ConnectionState.BrokenPipe,
        ["NetworkFailure"] = ConnectionState.NetworkFailure,
        ["ProtocolError"] = ConnectionState.ProtocolError,
        ["TearDown"] = ConnectionState.TearDown,
        ["Connecting"] = ConnectionState.Connecting,
        ["Connected"] = ConnectionState.Connected,
        ["WFConnection"] = ConnectionState.WfConnection,
        ["WFReportParams"] = ConnectionState.WfReportParams,
        ["Unconfigured"] = ConnectionState.Unconfigured,
    };

    private static readonly Dictionary<string, ReplicationState> Replications = new(StringComparer.Ordinal)
    {
        ["Off"] = ReplicationState.Off,
        ["Established"] = ReplicationState.Established,
        ["StartingSyncS"] = ReplicationState.StartingSyncS,
        ["StartingSyncT"] = ReplicationState.StartingSyncT,
        ["WFBitMapS"] = ReplicationState.WfBitMapS,
        ["WFBitMapT"] = ReplicationState.WfBitMapT,
        ["WFSyncUUID"] = ReplicationState.WfSyncUuid,
        ["SyncSource"] = ReplicationState.SyncSource,
        ["SyncTarget"] = ReplicationState.SyncTarget,
        ["VerifyS"] = ReplicationState.VerifyS,
        ["VerifyT"] = ReplicationState.VerifyT,
        ["PausedSyncS"] = ReplicationState.PausedSyncS,
        ["PausedSyncT"] = ReplicationState.PausedSyncT,
        ["Ahead"] = ReplicationState.Ahead,
        ["Behind"] = ReplicationState.Behind,
    };

    public static DrbdRole Role(string? s) => s is not null && Roles.TryGetValue(s.Trim(), out var v) ? v : DrbdRole.Unknown;

    public static DiskState Disk(string? s) => s is not null && Disks.TryGetValue(s.Trim(), out var v) ? v : DiskState.Unknown;

    public static ConnectionState Connection(string? s) => s is not null && Connections.TryGetValue(s.Trim(), out var v) ? v : ConnectionState.Unknown;

    public static ReplicationState Replication(string? s) => s is not null && Replications.TryGetValue(s.Trim(), out var v) ? v : ReplicationState.Unknown;

    /// <summary>
    /// DRBD 8.4 merges connection and replication into one <c>cs:</c> value: a replication state
    /// (SyncSource, VerifyT, Ahead, ...) means Connected plus that replication state; plain
    /// Connected means Established; anything else is a connection state with replication Off.
    /// </summary>
    public static (ConnectionState Connection, ReplicationState Replication) Split84(string? cs)
    {
        var text = cs?.Trim() ?? "";
        if (text == "Connected")
        {
            return (ConnectionState.Connected, ReplicationState.Established);
        }

        if (Replications.TryGetValue(text, out var replication) && replication is not (ReplicationState.Off or ReplicationState.Established))
        {
            return (ConnectionState.Connected, replication);
        }

        var connection = Connection(text);
        return (connection, connection == ConnectionState.Unknown ? ReplicationState.Unknown : ReplicationState.Off);
    }

    /// <summary>DRBD's spelling of a disk state (for messages and tables).</summary>
    public static string Name(DiskState d) => Disks.FirstOrDefault(kv => kv.Value == d).Key ?? d.ToString();
}
