using HaMesh.Protocol.V1;
using HaMesh.Shared.Drbd;

namespace HaMesh.Shared.Tests.Drbd;

public sealed class DrbdStatusJsonParserTests
{
    [Fact]
    public void Parse_SpecExactBytes_TwoNodePrimary()
    {
        var parsed = DrbdStatusJsonParser.Parse(Fixtures.Read("spec/drbd9-status-2node.json"));
        Assert.True(parsed.Ok, parsed.Error);
        var r = Assert.Single(parsed.Value!);
        Assert.Equal("r0", r.Name);
        Assert.Equal(DrbdRole.Primary, r.Role);
        Assert.Equal(DiskState.UpToDate, r.DiskState);
        Assert.Equal(QuorumState.Present, r.Quorum);
        Assert.True(r.Devices[0].Open);
        var peer = Assert.Single(r.Peers);
        Assert.Equal("bob", peer.PeerName);
        Assert.Equal(1, peer.PeerNodeId);
        Assert.Equal(ConnectionState.Connected, peer.ConnectionState);
        Assert.Equal(DrbdRole.Secondary, peer.PeerRole);
        Assert.Equal(ReplicationState.Established, peer.ReplicationState);
        Assert.Equal(DiskState.UpToDate, peer.PeerDiskState);
        Assert.Equal(0UL, peer.OutOfSyncKib);
        Assert.Equal(100.0, peer.PeerDevices[0].PercentInSync);
    }

    [Fact]
    public void Parse_OlderUtilsWithoutOptionalFields_SecondaryWithPrimaryPeer()
    {
        var parsed = DrbdStatusJsonParser.Parse(Fixtures.Read("spec/drbd9-status-older.json"));
        Assert.True(parsed.Ok, parsed.Error);
        var r = Assert.Single(parsed.Value!);
        Assert.Equal("1-single-0", r.Name);
        Assert.Equal(DrbdRole.Secondary, r.Role);
        Assert.Equal(DrbdRole.Primary, r.Peers[0].PeerRole);
        Assert.False(r.Devices[0].Open);
    }

    [Fact]
    public void Parse_ThreeNodes_EachPeerSeparately()
    {
        var parsed = DrbdStatusJsonParser.Parse(Fixtures.Read("spec/drbd9-status-3node.json"));
        Assert.True(parsed.Ok, parsed.Error);
        var r = Assert.Single(parsed.Value!);
        Assert.Equal(2, r.Peers.Count);
        Assert.Equal((ConnectionState.Connected, ReplicationState.SyncSource, DiskState.Inconsistent, 2500UL), (r.Peers[0].ConnectionState, r.Peers[0].ReplicationState, r.Peers[0].PeerDiskState, r.Peers[0].OutOfSyncKib));
        Assert.Equal((ConnectionState.Connecting, DrbdRole.Unknown, DiskState.Dunknown), (r.Peers[1].ConnectionState, r.Peers[1].PeerRole, r.Peers[1].PeerDiskState));
        Assert.Equal(37.5, r.Peers[0].PeerDevices[0].PercentInSync);
    }

    [Fact]
    public void Parse_QuorumLostOnOneVolume_ResourceQuorumLost()
    {
        var json = """[{"name":"r1","role":"Primary","devices":[{"volume":0,"disk-state":"UpToDate","quorum":true},{"volume":1,"disk-state":"Outdated","quorum":false}],"connections":[]}]""";
        var r = Assert.Single(DrbdStatusJsonParser.Parse(json).Value!);
        Assert.Equal(QuorumState.Lost, r.Quorum);
        Assert.Equal(DiskState.Outdated, r.DiskState);
    }

    [Fact]
    public void Parse_NoResources_EmptyList()
    {
        var parsed = DrbdStatusJsonParser.Parse("[\n]\n");
        Assert.True(parsed.Ok);
        Assert.Empty(parsed.Value!);
    }

    [Theory]
    [InlineData("")]
    [InlineData("# No currently configured DRBD found.")]
    [InlineData("{\"name\":\"r0\"}")]
    [InlineData("[{\"role\":\"Primary\"}]")]
    [InlineData("[{\"name\":\"r0\",\"role\":")]
    public void Parse_GarbageOrTruncated_TypedError(string json)
    {
        var parsed = DrbdStatusJsonParser.Parse(json);
        Assert.False(parsed.Ok);
        Assert.StartsWith("drbdsetup status --json", parsed.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_EveryPrefix_NeverThrows()
    {
        var full = Fixtures.Read("spec/drbd9-status-2node.json");
        for (var i = 0; i <= full.Length; i += 3)
        {
            _ = DrbdStatusJsonParser.Parse(full[..i]);
        }
    }

    [Fact]
    public void Parse_UnknownStateStrings_MapToUnknown()
    {
        var json = """[{"name":"r0","role":"TOO_LARGE","devices":[{"volume":0,"disk-state":"Weird"}],"connections":[{"name":"x","connection-state":"Odd","peer-role":"Strange","peer_devices":[{"volume":0,"replication-state":"Nope","peer-disk-state":"Huh"}]}]}]""";
        var r = Assert.Single(DrbdStatusJsonParser.Parse(json).Value!);
        Assert.Equal(DrbdRole.Unknown, r.Role);
        Assert.Equal(DiskState.Unknown, r.DiskState);
        Assert.Equal(ConnectionState.Unknown, r.Peers[0].ConnectionState);
        Assert.Equal(ReplicationState.Unknown, r.Peers[0].ReplicationState);
        Assert.Equal(DiskState.Unknown, r.Peers[0].PeerDiskState);
    }
}
