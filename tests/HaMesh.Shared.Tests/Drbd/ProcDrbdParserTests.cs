using HaMesh.Protocol.V1;
using HaMesh.Shared.Drbd;

namespace HaMesh.Shared.Tests.Drbd;

public sealed class ProcDrbdParserTests
{
    [Theory]
    [InlineData("84-proc-drbd-after-up.txt", ConnectionState.WfConnection, DrbdRole.Secondary, DiskState.Inconsistent, 65496UL)]
    [InlineData("84-proc-drbd-primary-standalone.txt", ConnectionState.WfConnection, DrbdRole.Primary, DiskState.UpToDate, 65496UL)]
    [InlineData("84-proc-drbd-wfconnection.txt", ConnectionState.WfConnection, DrbdRole.Secondary, DiskState.Outdated, 65496UL)]
    [InlineData("84-proc-drbd-outdated.txt", ConnectionState.StandAlone, DrbdRole.Secondary, DiskState.Outdated, 65496UL)]
    public void Parse_RealCaptures_RoleDiskConnection(string capture, ConnectionState cs, DrbdRole role, DiskState disk, ulong oos)
    {
        var (output, exit) = Fixtures.Capture(capture);
        Assert.Equal(0, exit);

        var parsed = ProcDrbdParser.Parse(output);

        Assert.True(parsed.Ok, parsed.Error);
        Assert.Equal("8.4.11", parsed.Value!.VersionText);
        Assert.Equal(DrbdVersionFamily.V84, parsed.Value.Family);
        var m = Assert.Single(parsed.Value.Minors);
        Assert.Equal(0, m.Minor);
        Assert.Equal(cs, m.Connection);
        Assert.Equal(ReplicationState.Off, m.Replication);
        Assert.Equal(role, m.Role);
        Assert.Equal(DrbdRole.Unknown, m.PeerRole);
        Assert.Equal(disk, m.Disk);
        Assert.Equal(DiskState.Dunknown, m.PeerDisk);
        Assert.Equal(oos, m.OutOfSyncKib);
        Assert.False(m.Suspended);
    }

    [Fact]
    public void Parse_AfterDown_VersionOnlyNoMinors()
    {
        var parsed = ProcDrbdParser.Parse(Fixtures.Capture("84-proc-drbd-after-down.txt").Output);
        Assert.True(parsed.Ok, parsed.Error);
        Assert.Empty(parsed.Value!.Minors);
    }

    [Fact]
    public void Parse_UserGuideThreeMinors_PeerRolesAndEstablished()
    {
        var parsed = ProcDrbdParser.Parse(Fixtures.Read("spec/proc-drbd-84-three-minors.txt"));
        Assert.True(parsed.Ok, parsed.Error);
        Assert.Equal("8.4.0", parsed.Value!.VersionText);
        Assert.Equal([DrbdRole.Secondary, DrbdRole.Primary, DrbdRole.Secondary], parsed.Value.Minors.Select(m => m.Role));
        Assert.Equal([DrbdRole.Secondary, DrbdRole.Secondary, DrbdRole.Primary], parsed.Value.Minors.Select(m => m.PeerRole));
        Assert.All(parsed.Value.Minors, m => Assert.Equal((ConnectionState.Connected, ReplicationState.Established), (m.Connection, m.Replication)));
    }

    [Fact]
    public void Parse_83SyncSource_SplitsCsAndReadsOos()
    {
        var parsed = ProcDrbdParser.Parse(Fixtures.Read("spec/proc-drbd-83-syncsource.txt"));
        Assert.True(parsed.Ok, parsed.Error);
        var m = Assert.Single(parsed.Value!.Minors);
        Assert.Equal((ConnectionState.Connected, ReplicationState.SyncSource), (m.Connection, m.Replication));
        Assert.Equal(DiskState.Inconsistent, m.PeerDisk);
        Assert.Equal(30172998UL, m.OutOfSyncKib);
    }

    [Fact]
    public void Parse_84SyncTargetWithProgress_ReadsPercent()
    {
        var parsed = ProcDrbdParser.Parse(Fixtures.Read("spec/proc-drbd-84-synctarget.txt"));
        Assert.True(parsed.Ok, parsed.Error);
        var m = Assert.Single(parsed.Value!.Minors);
        Assert.Equal((ConnectionState.Connected, ReplicationState.SyncTarget), (m.Connection, m.Replication));
        Assert.Equal(DiskState.Inconsistent, m.Disk);
        Assert.Equal(DiskState.UpToDate, m.PeerDisk);
        Assert.Equal(37.5, m.SyncedPercent);
        Assert.Equal(24292UL, m.OutOfSyncKib);
    }

    [Fact]
    public void Parse_SuspendedFlagGapAndUnconfiguredMinor()
    {
        var parsed = ProcDrbdParser.Parse(Fixtures.Read("spec/proc-drbd-84-suspended-gap.txt"));
        Assert.True(parsed.Ok, parsed.Error);
        Assert.True(parsed.Value!.Minors[0].Suspended);
        Assert.Equal(2, parsed.Value.Minors[1].Minor);
        Assert.Equal(ConnectionState.Unconfigured, parsed.Value.Minors[1].Connection);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   \n")]
    [InlineData("garbage\x00\x01 not drbd")]
    [InlineData("{\"json\": true}")]
    public void Parse_Garbage_TypedErrorNotException(string text)
    {
        var parsed = ProcDrbdParser.Parse(text);
        Assert.False(parsed.Ok);
        Assert.NotNull(parsed.Error);
    }

    [Fact]
    public void Parse_TruncatedBeforeStatistics_TypedError()
    {
        var full = Fixtures.Capture("84-proc-drbd-after-up.txt").Output;
        var truncated = full[..full.IndexOf("    ns:", StringComparison.Ordinal)];
        var parsed = ProcDrbdParser.Parse(truncated);
        Assert.False(parsed.Ok);
        Assert.Contains("truncated", parsed.Error);
    }

    [Fact]
    public void Parse_EveryPrefixOfACapture_NeverThrows()
    {
        var full = Fixtures.Read("spec/proc-drbd-84-synctarget.txt");
        for (var i = 0; i <= full.Length; i++)
        {
            _ = ProcDrbdParser.Parse(full[..i]);
        }
    }
}
