using HaMesh.Protocol.V1;
using HaMesh.Shared.Drbd;

namespace HaMesh.Shared.Tests.Drbd;

/// <summary>Every string of the spec's enumeration lists (§4) maps to its own value.</summary>
public sealed class DrbdNamesTests
{
    [Theory]
    [InlineData("Diskless", DiskState.Diskless)]
    [InlineData("Attaching", DiskState.Attaching)]
    [InlineData("Detaching", DiskState.Detaching)]
    [InlineData("Failed", DiskState.Failed)]
    [InlineData("Negotiating", DiskState.Negotiating)]
    [InlineData("Inconsistent", DiskState.Inconsistent)]
    [InlineData("Outdated", DiskState.Outdated)]
    [InlineData("DUnknown", DiskState.Dunknown)]
    [InlineData("Consistent", DiskState.Consistent)]
    [InlineData("UpToDate", DiskState.UpToDate)]
    [InlineData("TOO_LARGE", DiskState.Unknown)]
    public void Disk_EveryState(string text, DiskState expected) => Assert.Equal(expected, DrbdNames.Disk(text));

    [Fact]
    public void Disk_OrderMatchesDrbd() =>
        Assert.True(DiskState.Diskless < DiskState.Inconsistent && DiskState.Inconsistent < DiskState.Outdated && DiskState.Outdated < DiskState.Consistent && DiskState.Consistent < DiskState.UpToDate);

    [Theory]
    [InlineData("Primary", DrbdRole.Primary)]
    [InlineData("Secondary", DrbdRole.Secondary)]
    [InlineData("Unknown", DrbdRole.Unknown)]
    [InlineData("primary", DrbdRole.Unknown)]
    public void Role_EveryRole(string text, DrbdRole expected) => Assert.Equal(expected, DrbdNames.Role(text));

    [Theory]
    [InlineData("StandAlone", ConnectionState.StandAlone)]
    [InlineData("Disconnecting", ConnectionState.Disconnecting)]
    [InlineData("Unconnected", ConnectionState.Unconnected)]
    [InlineData("Timeout", ConnectionState.Timeout)]
    [InlineData("BrokenPipe", ConnectionState.BrokenPipe)]
    [InlineData("NetworkFailure", ConnectionState.NetworkFailure)]
    [InlineData("ProtocolError", ConnectionState.ProtocolError)]
    [InlineData("TearDown", ConnectionState.TearDown)]
    [InlineData("Connecting", ConnectionState.Connecting)]
    [InlineData("Connected", ConnectionState.Connected)]
    public void Connection_Drbd9States(string text, ConnectionState expected) => Assert.Equal(expected, DrbdNames.Connection(text));

    [Theory]
    [InlineData("Off", ReplicationState.Off)]
    [InlineData("Established", ReplicationState.Established)]
    [InlineData("StartingSyncS", ReplicationState.StartingSyncS)]
    [InlineData("StartingSyncT", ReplicationState.StartingSyncT)]
    [InlineData("WFBitMapS", ReplicationState.WfBitMapS)]
    [InlineData("WFBitMapT", ReplicationState.WfBitMapT)]
    [InlineData("WFSyncUUID", ReplicationState.WfSyncUuid)]
    [InlineData("SyncSource", ReplicationState.SyncSource)]
    [InlineData("SyncTarget", ReplicationState.SyncTarget)]
    [InlineData("VerifyS", ReplicationState.VerifyS)]
    [InlineData("VerifyT", ReplicationState.VerifyT)]
    [InlineData("PausedSyncS", ReplicationState.PausedSyncS)]
    [InlineData("PausedSyncT", ReplicationState.PausedSyncT)]
    [InlineData("Ahead", ReplicationState.Ahead)]
    [InlineData("Behind", ReplicationState.Behind)]
    public void Replication_Drbd9States(string text, ReplicationState expected) => Assert.Equal(expected, DrbdNames.Replication(text));

    [Theory]
    [InlineData("StandAlone", ConnectionState.StandAlone, ReplicationState.Off)]
    [InlineData("Disconnecting", ConnectionState.Disconnecting, ReplicationState.Off)]
    [InlineData("Unconnected", ConnectionState.Unconnected, ReplicationState.Off)]
    [InlineData("Timeout", ConnectionState.Timeout, ReplicationState.Off)]
    [InlineData("BrokenPipe", ConnectionState.BrokenPipe, ReplicationState.Off)]
    [InlineData("NetworkFailure", ConnectionState.NetworkFailure, ReplicationState.Off)]
    [InlineData("ProtocolError", ConnectionState.ProtocolError, ReplicationState.Off)]
    [InlineData("WFConnection", ConnectionState.WfConnection, ReplicationState.Off)]
    [InlineData("WFReportParams", ConnectionState.WfReportParams, ReplicationState.Off)]
    [InlineData("TearDown", ConnectionState.TearDown, ReplicationState.Off)]
    [InlineData("Connected", ConnectionState.Connected, ReplicationState.Established)]
    [InlineData("StartingSyncS", ConnectionState.Connected, ReplicationState.StartingSyncS)]
    [InlineData("StartingSyncT", ConnectionState.Connected, ReplicationState.StartingSyncT)]
    [InlineData("WFBitMapS", ConnectionState.Connected, ReplicationState.WfBitMapS)]
    [InlineData("WFBitMapT", ConnectionState.Connected, ReplicationState.WfBitMapT)]
    [InlineData("WFSyncUUID", ConnectionState.Connected, ReplicationState.WfSyncUuid)]
    [InlineData("SyncSource", ConnectionState.Connected, ReplicationState.SyncSource)]
    [InlineData("SyncTarget", ConnectionState.Connected, ReplicationState.SyncTarget)]
    [InlineData("PausedSyncS", ConnectionState.Connected, ReplicationState.PausedSyncS)]
    [InlineData("PausedSyncT", ConnectionState.Connected, ReplicationState.PausedSyncT)]
    [InlineData("VerifyS", ConnectionState.Connected, ReplicationState.VerifyS)]
    [InlineData("VerifyT", ConnectionState.Connected, ReplicationState.VerifyT)]
    [InlineData("Ahead", ConnectionState.Connected, ReplicationState.Ahead)]
    [InlineData("Behind", ConnectionState.Connected, ReplicationState.Behind)]
    [InlineData("Unconfigured", ConnectionState.Unconfigured, ReplicationState.Off)]
    [InlineData("Bogus", ConnectionState.Unknown, ReplicationState.Unknown)]
    public void Split84_EveryCsValue(string cs, ConnectionState connection, ReplicationState replication) =>
        Assert.Equal((connection, replication), DrbdNames.Split84(cs));
}
