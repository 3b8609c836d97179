namespace HaMesh.DrbdSim;

/// <summary>Immutable view of one resource's state (DRBD 9 names; 8.4 names are derived when printing).</summary>
public sealed record ResourceSnapshot
{
    public required string Name { get; init; }
    public required int Minor { get; init; }
    public required int NodeId { get; init; }
    public required string PeerName { get; init; }
    public required int PeerNodeId { get; init; }
    public required bool Up { get; init; }
    public required string Role { get; init; }
    public required string Disk { get; init; }
    public required string Connection { get; init; }
    public required string Replication { get; init; }
    public required string PeerRole { get; init; }
    public required string PeerDisk { get; init; }
    public required bool SuspendedUser { get; init; }
    public required bool SuspendedFencing { get; init; }
    public required bool SuspendedQuorum { get; init; }
    public required bool ForceIoFailures { get; init; }
    public required bool Open { get; init; }
    public required bool Quorum { get; init; }
    public required bool WantConnect { get; init; }
    public required bool FencingConfigured { get; init; }
    public required long SizeKiB { get; init; }
    public required long OutOfSyncKiB { get; init; }
    public required long SyncTotalKiB { get; init; }
    public required long SentKiB { get; init; }
    public required long ReceivedKiB { get; init; }
    public required long WrittenKiB { get; init; }
    public required long ReadKiB { get; init; }
    public required string ListenAddress { get; init; }
    public required int ListenPort { get; init; }
    public required string PeerAddress { get; init; }
    public required int PeerPort { get; init; }
    public required ulong CurrentUuid { get; init; }
    public required long Version { get; init; }
    public required int LastFenceExit { get; init; }
    public required int FenceCalls { get; init; }
    public required bool SplitBrain { get; init; }

    public bool Suspended => SuspendedUser || SuspendedFencing || SuspendedQuorum;

    public bool Connected => Connection == "Connected";

    public bool Syncing => Replication is "SyncSource" or "SyncTarget";

    public bool MayPromote =>
        Up && Role == "Secondary" && !(Connected && PeerRole == "Primary") && Quorum
        && (Disk == "UpToDate" || (Connected && PeerDisk == "UpToDate" && Disk is not "Diskless"));

    /// <summary>8.4 cs: value (connection and replication merged).</summary>
    public string Cs84 => Connection switch
    {
        "Connected" => Replication is "Off" or "Established" ? "Connected" : Replication,
        "Connecting" => "WFConnection",
        _ => Connection,
    };

    public double PercentInSync =>
        SizeKiB <= 0 ? 100.0 : Math.Round(100.0 * (SizeKiB - Math.Min(OutOfSyncKiB, SizeKiB)) / SizeKiB, 2);

    public double PercentDone =>
        SyncTotalKiB <= 0 ? 100.0 : Math.Round(100.0 * (SyncTotalKiB - Math.Min(OutOfSyncKiB, SyncTotalKiB)) / SyncTotalKiB, 2);
}
