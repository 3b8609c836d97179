namespace HaMesh.DrbdSim.Tests;

/// <summary>specs/drbd.md §8 scenarios on two in-process daemons joined by a real TCP link.</summary>
public sealed class ScenarioTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task MountAsync(SimDaemon d)
    {
        var r = await SimPair.Run(d, "mount", "/dev/drbd0", "/mnt/data");
        Assert.Equal(0, r.ExitCode);
    }

    private static async Task WriteAsync(SimDaemon d, string key, string value)
    {
        var r = await SimPair.Run(d, "sim", "write", "r0", key, value);
        Assert.True(r.ExitCode == 0, r.Stderr);
    }

    [Theory]
    [InlineData(9)]
    [InlineData(84)]
    public async Task S01_InitialCreate_PrimaryForceSyncsPeerWithFallingOutOfSync(int version)
    {
        await using var p = await SimPair.StartAsync(version, rc => rc.ResyncRateKiB = 8192, synced: false);
        var a0 = p.A!.Resource("r0").Snapshot();
        Assert.Equal(("Inconsistent", "Inconsistent", "Secondary", "Secondary"), (a0.Disk, a0.PeerDisk, a0.Role, a0.PeerRole));

        var seenOos = new List<long>();
        var watch = p.B!.Resource("r0").WaitForAsync(s =>
        {
            if (s.Replication == "SyncTarget")
            {
                seenOos.Add(s.OutOfSyncKiB);
            }

            return s.Replication == "Established" && s.Disk == "UpToDate";
        }, Ct);
        Assert.Equal(0, (await SimPair.Run(p.A, "drbdadm", "primary", "--force", "r0")).ExitCode);
        var a = await p.WaitAAsync(s => s.Replication == "SyncSource", Ct);
        Assert.Equal("UpToDate", a.Disk);
        Assert.Equal("Inconsistent", a.PeerDisk);
        var text = (await SimPair.Run(p.A, "drbdadm", "status", "r0")).Stdout;
        if (version == 9)
        {
            Assert.Contains("    replication:SyncSource peer-disk:Inconsistent done:", text);
        }
        else
        {
            Assert.Contains("SyncSource", (await SimPair.Run(p.A, "drbdadm", "cstate", "r0")).Stdout);
        }

        await watch.WaitAsync(SimPair.Timeout, Ct);
        Assert.True(seenOos.Count >= 2, "out-of-sync observed " + seenOos.Count + " times");
        Assert.True(seenOos.Zip(seenOos.Skip(1)).All(x => x.Second <= x.First));
        await p.WaitAAsync(s => s.Replication == "Established" && s.PeerDisk == "UpToDate", Ct);
    }

    [Fact]
    public async Task S02_Promote_PeerSeesPrimaryAndMayNotPromote()
    {
        await using var p = await SimPair.StartAsync();
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "primary", "r0")).ExitCode);
        var b = await p.WaitBAsync(s => s.PeerRole == "Primary", Ct);
        Assert.False(b.MayPromote);
        var ev = (await SimPair.Run(p.B!, "drbdsetup", "events2", "--now", "r0")).Stdout;
        Assert.Contains("exists resource name:r0 role:Secondary suspended:no force-io-failures:no may_promote:no", ev);
        Assert.Contains("exists connection name:r0 peer-node-id:0 conn-name:a connection:Connected role:Primary\n", ev);
        Assert.EndsWith("exists -\n", ev);
        Assert.Equal("Primary\n", (await SimPair.Run(p.A!, "drbdadm", "role", "r0")).Stdout);
    }

    [Theory]
    [InlineData(9)]
    [InlineData(84)]
    public async Task S03_S04_Demote_RefusedWhileMounted_OkAfterUmount(int version)
    {
        await using var p = await SimPair.StartAsync(version);
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "primary", "r0")).ExitCode);
        await MountAsync(p.A!);
        var r = await SimPair.Run(p.A!, "drbdadm", "secondary", "r0");
        Assert.Equal(11, r.ExitCode);
        if (version == 84)
        {
            Assert.Equal("0: State change failed: (-12) Device is held open by someone\nCommand 'drbdsetup-84 secondary 0' terminated with exit code 11\n", r.Stderr);
        }
        else
        {
            Assert.StartsWith("r0: State change failed: (-12) Device is held open by someone\nadditional info from kernel:\n/dev/drbd0 open_ro_cnt:0, open_rw_cnt:1; list of openers follows\n", r.Stderr);
            Assert.EndsWith("Command 'drbdsetup secondary r0' terminated with exit code 11\n", r.Stderr);
        }

        Assert.Equal("Primary", p.A!.Resource("r0").Snapshot().Role);
        Assert.Equal(0, (await SimPair.Run(p.A!, "umount", "/mnt/data")).ExitCode);
        Assert.Equal(CommandResult.Ok, await SimPair.Run(p.A!, "drbdadm", "secondary", "r0"));
        await p.WaitBAsync(s => s.PeerRole == "Secondary", Ct);
    }

    [Theory]
    [InlineData(9, "r0: State change failed: (-1) Multiple primaries not allowed by config\nCommand 'drbdsetup primary r0' terminated with exit code 11\n")]
    [InlineData(84, "0: State change failed: (-1) Multiple primaries not allowed by config\nCommand 'drbdsetup-84 primary 0' terminated with exit code 11\n")]
    public async Task S05_PromoteWhilePeerPrimary_RefusedMinusOne(int version, string expected)
    {
        await using var p = await SimPair.StartAsync(version);
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "primary", "r0")).ExitCode);
        await p.WaitBAsync(s => s.PeerRole == "Primary", Ct);
        var r = await SimPair.Run(p.B!, "drbdadm", "primary", "r0");
        Assert.Equal(11, r.ExitCode);
        Assert.Equal(expected, r.Stderr);
        var d = await SimPair.Run(p.B!, "drbdsetup", "primary", "r0");
        Assert.Equal(11, d.ExitCode);
    }

    [Theory]
    [InlineData(9)]
    [InlineData(84)]
    public async Task S06_S10_PeerCrash_PrimaryConnectingThenResyncsRestartedPeer(int version)
    {
        await using var p = await SimPair.StartAsync(version);
        p.A!.Resource("r0").Config.ResyncRateKiB = 80;
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "primary", "r0")).ExitCode);
        await MountAsync(p.A!);
        await WriteAsync(p.A!, "k0", "v0");
        await p.KillBAsync();
        var a = await p.WaitAAsync(s => s.Connection == "Connecting", Ct);
        Assert.Equal(("Primary", "Unknown", "DUnknown"), (a.Role, a.PeerRole, a.PeerDisk));
        Assert.Equal(version == 9 ? "Connecting\n" : "WFConnection\n", (await SimPair.Run(p.A!, "drbdadm", "cstate", "r0")).Stdout);
        for (var i = 1; i <= 5; i++)
        {
            await WriteAsync(p.A!, "k" + i, "v" + i);
        }

        Assert.Equal(20, p.A!.Resource("r0").Snapshot().OutOfSyncKiB);
        var seen = new List<long>();
        p.RestartB();
        var bDone = p.B!.Resource("r0").WaitForAsync(s =>
        {
            if (s.Replication == "SyncTarget")
            {
                seen.Add(s.OutOfSyncKiB);
            }

            return s.Replication == "Established" && s.Disk == "UpToDate";
        }, Ct);
        await p.WaitAAsync(s => s.Replication == "SyncSource", Ct);
        await bDone.WaitAsync(SimPair.Timeout, Ct);
        Assert.Contains(seen, x => x is > 0 and < 20);
        Assert.Equal("v5", p.B!.Resource("r0").Read("k5"));
        Assert.Equal("v0", p.B!.Resource("r0").Read("k0"));
    }

    [Fact]
    public async Task S07_PrimaryCrash_PeerPromotesAndRebootedOldPrimaryBecomesSyncTarget()
    {
        await using var p = await SimPair.StartAsync();
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "primary", "r0")).ExitCode);
        await MountAsync(p.A!);
        await WriteAsync(p.A!, "acked", "1");
        await p.KillAAsync();
        var b = await p.WaitBAsync(s => s.Connection == "Connecting", Ct);
        Assert.Equal("UpToDate", b.Disk);
        Assert.Equal("1", p.B!.Resource("r0").Read("acked"));
        Assert.Equal(0, (await SimPair.Run(p.B!, "drbdadm", "primary", "r0")).ExitCode);
        await MountAsync(p.B!);
        await WriteAsync(p.B!, "afterfailover", "2");
        p.RestartA();
        var a = await p.WaitAAsync(s => s.Connected, Ct);
        Assert.Equal("Secondary", a.Role);
        await p.WaitAAsync(s => s.Replication == "Established" && s.Disk == "UpToDate", Ct);
        Assert.Equal("2", p.A!.Resource("r0").Read("afterfailover"));
    }

    [Fact]
    public async Task S08_S09_PartitionWithoutFencing_SplitBrainThenManualRecovery()
    {
        await using var p = await SimPair.StartAsync();
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "primary", "r0")).ExitCode);
        await MountAsync(p.A!);
        p.Proxy.Blackhole();
        await p.WaitAAsync(s => s.Connection == "Connecting", Ct);
        await p.WaitBAsync(s => s.Connection == "Connecting", Ct);
        Assert.Equal(0, (await SimPair.Run(p.B!, "drbdadm", "primary", "r0")).ExitCode);
        await MountAsync(p.B!);
        await WriteAsync(p.A!, "x", "from-a");
        await WriteAsync(p.B!, "x", "from-b");
        await WriteAsync(p.B!, "y", "from-b");
        p.Proxy.Heal();
        var a = await p.WaitAAsync(s => s.SplitBrain && s.Connection == "StandAlone", Ct);
        Assert.Equal("StandAlone\n", (await SimPair.Run(p.A!, "drbdadm", "cstate", "r0")).Stdout);
        await p.WaitBAsync(s => s.SplitBrain && s.Connection == "StandAlone", Ct);
        Assert.Contains("Split-Brain detected but unresolved, dropping connection!", p.LogText);

        // victim b: disconnect, secondary, connect --discard-my-data; survivor a: disconnect, connect
        Assert.Equal(0, (await SimPair.Run(p.B!, "umount", "/mnt/data")).ExitCode);
        Assert.Equal(0, (await SimPair.Run(p.B!, "drbdadm", "disconnect", "r0")).ExitCode);
        Assert.Equal(0, (await SimPair.Run(p.B!, "drbdadm", "secondary", "r0")).ExitCode);
        Assert.Equal(0, (await SimPair.Run(p.B!, "drbdadm", "connect", "--discard-my-data", "r0")).ExitCode);
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "disconnect", "r0")).ExitCode);
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "connect", "r0")).ExitCode);
        await p.WaitBAsync(s => s.Replication == "Established" && s.Disk == "UpToDate", Ct);
        Assert.Equal("from-a", p.B!.Resource("r0").Read("x"));
        Assert.Null(p.B!.Resource("r0").Read("y"));
        Assert.Equal("Primary", a.Role);
    }

    [Fact]
    public async Task SilentLink_DetectedByPingTimeout()
    {
        await using var p = await SimPair.StartAsync();
        var states = new List<string>();
        var lost = p.A!.Resource("r0").WaitForAsync(s =>
        {
            states.Add(s.Connection);
            return s.Connection == "Connecting";
        }, Ct);
        p.Proxy.Blackhole();
        await lost.WaitAsync(SimPair.Timeout, Ct);
        await p.WaitBAsync(s => s.Connection == "Connecting", Ct);
        Assert.Contains("PingAck did not arrive in time.", p.LogText);
        p.Proxy.Heal();
        await p.WaitAAsync(s => s.Connected && s.Replication == "Established", Ct);
    }

    [Fact]
    public async Task LinkCut_ClosedConnection_BothSidesReconnectAfterHeal()
    {
        await using var p = await SimPair.StartAsync();
        p.Proxy.Cut();
        await p.WaitAAsync(s => !s.Connected, Ct);
        await p.WaitBAsync(s => !s.Connected, Ct);
        var b = await p.WaitBAsync(s => s.Connection == "Connecting", Ct);
        Assert.Equal("DUnknown", b.PeerDisk);
        p.Proxy.Heal();
        await p.WaitAAsync(s => s.Connected, Ct);
        await p.WaitBAsync(s => s.Connected && s.PeerDisk == "UpToDate", Ct);
    }

    [Fact]
    public async Task S11_Detach_PeerSeesDiskless()
    {
        await using var p = await SimPair.StartAsync();
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "detach", "r0")).ExitCode);
        await p.WaitBAsync(s => s.PeerDisk == "Diskless", Ct);
        Assert.Equal("Diskless/UpToDate\n", (await SimPair.Run(p.A!, "drbdadm", "dstate", "r0")).Stdout);
    }

    [Theory]
    [InlineData(9, "r0: State change failed: (-2) Need access to UpToDate data\nCommand 'drbdsetup primary r0' terminated with exit code 17\n")]
    [InlineData(84, "0: State change failed: (-2) Need access to UpToDate data\nCommand 'drbdsetup-84 primary 0' terminated with exit code 17\n")]
    public async Task S12_PromoteOutdated_RefusedMinusTwoExit17(int version, string expected)
    {
        await using var p = await SimPair.StartAsync(version);
        Assert.Equal(0, (await SimPair.Run(p.B!, "drbdadm", "disconnect", "r0")).ExitCode);
        Assert.Equal(0, (await SimPair.Run(p.B!, "drbdadm", "outdate", "r0")).ExitCode);
        var r = await SimPair.Run(p.B!, "drbdadm", "primary", "r0");
        Assert.Equal(17, r.ExitCode);
        Assert.Equal(expected, r.Stderr);
    }

    [Fact]
    public async Task Outdate_WhileConnected_RefusedMinusSix()
    {
        await using var p = await SimPair.StartAsync();
        var r = await SimPair.Run(p.B!, "drbdadm", "outdate", "r0");
        Assert.Equal(11, r.ExitCode);
        Assert.StartsWith("0: State change failed: (-6) Refusing to be Outdated while Connected\n", r.Stderr);
    }

    [Fact]
    public async Task S13_QuorumMajority_IsolatedNodeRefusesPromotionMinus25()
    {
        await using var p = await SimPair.StartAsync(9, rc => rc.Quorum = "majority");
        p.Proxy.Cut();
        var b = await p.WaitBAsync(s => s.Connection == "Connecting", Ct);
        Assert.False(b.Quorum);
        Assert.Contains(" quorum:no", (await SimPair.Run(p.B!, "drbdadm", "status", "r0")).Stdout);
        var r = await SimPair.Run(p.B!, "drbdadm", "primary", "r0");
        Assert.Equal(11, r.ExitCode);
        Assert.Equal("r0: State change failed: (-25) No quorum\nCommand 'drbdsetup primary r0' terminated with exit code 11\n", r.Stderr);
    }

    [Theory]
    [InlineData(9)]
    [InlineData(84)]
    public async Task S15_DisconnectConnect_NoResyncWhenNothingWritten(int version)
    {
        await using var p = await SimPair.StartAsync(version);
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "disconnect", "r0")).ExitCode);
        Assert.Equal("StandAlone\n", (await SimPair.Run(p.A!, "drbdadm", "cstate", "r0")).Stdout);
        await p.WaitBAsync(s => s.Connection == "Connecting", Ct);
        var sawSync = false;
        var done = p.A!.Resource("r0").WaitForAsync(s =>
        {
            sawSync |= s.Syncing;
            return s.Connected;
        }, Ct);
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "connect", "r0")).ExitCode);
        var a = await done.WaitAsync(SimPair.Timeout, Ct);
        Assert.False(sawSync);
        Assert.Equal(("Established", "UpToDate", "UpToDate", 0L), (a.Replication, a.Disk, a.PeerDisk, a.OutOfSyncKiB));
    }

    [Theory]
    [InlineData(9, "r0: Failure: (123) --discard-my-data not allowed when primary.\nCommand 'drbdsetup connect r0 1 --discard-my-data' terminated with exit code 10\n")]
    [InlineData(84, "r0: Failure: (123) --discard-my-data not allowed when primary.\n")]
    public async Task S16_ConnectDiscardMyDataOnPrimary_Failure123Exit10(int version, string expectedStart)
    {
        await using var p = await SimPair.StartAsync(version);
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "primary", "r0")).ExitCode);
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "disconnect", "r0")).ExitCode);
        var r = await SimPair.Run(p.A!, "drbdadm", "connect", "--discard-my-data", "r0");
        Assert.Equal(10, r.ExitCode);
        Assert.StartsWith(expectedStart, r.Stderr);
    }

    [Fact]
    public async Task S17_UnknownResource_DrbdadmAndDrbdsetupTexts()
    {
        await using var p = await SimPair.StartAsync(9, synced: false);
        var adm = await SimPair.Run(p.A!, "drbdadm", "status", "foo");
        Assert.Equal(new CommandResult(1, "", "'foo' not defined in your config (for this host).\n"), adm);
        var setup = await SimPair.Run(p.A!, "drbdsetup", "status", "foo");
        Assert.Equal(new CommandResult(10, "", "foo: No such resource\n"), setup);
    }

    [Fact]
    public async Task S18_AllDown_StatusSaysNoConfiguredDrbd()
    {
        await using var p = await SimPair.StartAsync(9, synced: false);
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "down", "r0")).ExitCode);
        Assert.Equal("# No currently configured DRBD found.\n", (await SimPair.Run(p.A!, "drbdsetup", "status")).Stdout);
        Assert.Equal("[\n]\n", (await SimPair.Run(p.A!, "drbdsetup", "status", "--json")).Stdout);
    }

    [Fact]
    public async Task StatusJson_ConnectedPrimary_HasSpecQuirks()
    {
        await using var p = await SimPair.StartAsync();
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "primary", "r0")).ExitCode);
        await p.WaitBAsync(s => s.PeerRole == "Primary", Ct);
        var json = (await SimPair.Run(p.A!, "drbdsetup", "status", "--json", "r0")).Stdout;
        Assert.StartsWith("[\n{\n  \"name\": \"r0\",\n  \"node-id\": 0,\n  \"role\": \"Primary\",\n", json);
        Assert.Contains("\"connection-state\": \"Connected\", \n", json);
        Assert.Contains("\"percent-in-sync\": 100.00\n        } ]\n    } ]\n}\n]\n", json);
        using var doc = System.Text.Json.JsonDocument.Parse(json);
        Assert.Equal("Secondary", doc.RootElement[0].GetProperty("connections")[0].GetProperty("peer-role").GetString());
        var text = (await SimPair.Run(p.A!, "drbdsetup", "status", "r0")).Stdout;
        Assert.Equal("r0 role:Primary\n  disk:UpToDate open:no\n  b role:Secondary\n    peer-disk:UpToDate\n\n", text);
    }

    [Fact]
    public async Task Restart_DaemonComesBackSecondaryAndReconnects()
    {
        await using var p = await SimPair.StartAsync();
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "primary", "r0")).ExitCode);
        await p.KillAAsync();
        p.RestartA();
        var a = await p.WaitAAsync(s => s.Connected && s.Replication == "Established", Ct);
        Assert.Equal(("Secondary", "UpToDate"), (a.Role, a.Disk));
    }

    [Fact]
    public async Task Write_ProtocolC_AckedWriteIsOnPeerAndRefusedWhenNotMounted()
    {
        await using var p = await SimPair.StartAsync();
        Assert.Equal(5, (await SimPair.Run(p.A!, "sim", "write", "r0", "k", "v")).ExitCode);
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "primary", "r0")).ExitCode);
        Assert.Equal(5, (await SimPair.Run(p.A!, "sim", "write", "r0", "k", "v")).ExitCode);
        Assert.Equal(32, (await SimPair.Run(p.B!, "mount", "/dev/drbd0", "/mnt/b")).ExitCode);
        await MountAsync(p.A!);
        for (var i = 0; i < 20; i++)
        {
            await WriteAsync(p.A!, "k" + i, "v" + i);
            Assert.Equal("v" + i, p.B!.Resource("r0").Read("k" + i));
        }
    }

    [Fact]
    public async Task Events2NowStatistics_Connected_PrintsStatisticsFields()
    {
        await using var p = await SimPair.StartAsync();
        var ev = (await SimPair.Run(p.A!, "drbdsetup", "events2", "--now", "--statistics", "r0")).Stdout;
        Assert.Contains("exists resource name:r0 role:Secondary suspended:no force-io-failures:no may_promote:yes promotion_score:10101 write-ordering:flush\n", ev);
        Assert.Contains("exists peer-device name:r0 peer-node-id:1 conn-name:b volume:0 replication:Established peer-disk:UpToDate peer-client:no resync-suspended:no received:", ev);
        Assert.Contains(" out-of-sync:0 pending:0 unacked:0\n", ev);
        Assert.Contains("established:yes\n", ev);
    }
}
