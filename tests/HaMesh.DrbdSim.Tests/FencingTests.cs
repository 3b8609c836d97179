namespace HaMesh.DrbdSim.Tests;

/// <summary>Scenario 14: fencing resource-and-stonith / resource-only with real handler executables.</summary>
public sealed class FencingTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Handler(string dir, int exit, string envOut)
    {
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, $"fence-{exit}.sh");
        File.WriteAllText(path, $"#!/bin/sh\nenv > '{envOut}'\nexit {exit}\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    private static async Task PrimaryMountedAsync(SimPair p)
    {
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "primary", "r0")).ExitCode);
        Assert.Equal(0, (await SimPair.Run(p.A!, "mount", "/dev/drbd0", "/mnt/data")).ExitCode);
        await p.WaitBAsync(s => s.PeerRole == "Primary", Ct);
    }

    [Theory]
    [InlineData(9, 4)]
    [InlineData(9, 5)]
    [InlineData(9, 7)]
    [InlineData(84, 3)]
    public async Task S14_LinkLossPeerFenced_ResumesWithPeerOutdated(int version, int exit)
    {
        var dir = Path.Combine(Path.GetTempPath(), "drbdsim-h-" + Guid.NewGuid().ToString("N"));
        var envOut = Path.Combine(dir, "env.txt");
        var handler = Handler(dir, exit, envOut);
        await using var p = await SimPair.StartAsync(version, rc =>
        {
            rc.Fencing = "resource-and-stonith";
            rc.FencePeerHandler = handler;
        });
        await PrimaryMountedAsync(p);
        p.Proxy.Cut();
        var a = await p.WaitAAsync(s => s.FenceCalls == 1 && s.LastFenceExit == exit && !s.SuspendedFencing, Ct);
        Assert.Equal("Outdated", a.PeerDisk);
        Assert.Equal("Primary", a.Role);
        var w = await SimPair.Run(p.A!, "sim", "write", "r0", "k", "v");
        Assert.Equal(0, w.ExitCode);
        var env = File.ReadAllText(envOut);
        Assert.Contains("DRBD_RESOURCE=r0\n", env);
        Assert.Contains("DRBD_MINOR=0\n", env);
        Assert.Contains("DRBD_PEER_ADDRESS=127.0.0.1\n", env);
        Assert.Equal(version == 9, env.Contains("DRBD_PEER_NODE_ID=1\n"));
        Directory.Delete(dir, true);
    }

    [Fact]
    public async Task S14_HandlerFails_StaysFrozenWritesBlockUntilResumeIo()
    {
        await using var p = await SimPair.StartAsync(9, rc =>
        {
            rc.Fencing = "resource-and-stonith";
            rc.FencePeerHandler = "/usr/bin/false";
        });
        await PrimaryMountedAsync(p);
        p.Proxy.Cut();
        var a = await p.WaitAAsync(s => s.LastFenceExit == 1, Ct);
        Assert.True(a.SuspendedFencing);
        Assert.Contains("r0 role:Primary suspended:fencing\n", (await SimPair.Run(p.A!, "drbdadm", "status", "r0")).Stdout);
        Assert.Contains("\"suspended-fencing\": true,", (await SimPair.Run(p.A!, "drbdsetup", "status", "--json")).Stdout);
        var write = SimPair.Run(p.A!, "sim", "write", "r0", "frozen", "1");
        Assert.False(write.IsCompleted);
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "resume-io", "r0")).ExitCode);
        Assert.Equal(0, (await write.WaitAsync(SimPair.Timeout, Ct)).ExitCode);
    }

    [Fact]
    public async Task S14_HandlerFails_LinkBackResumesIo()
    {
        await using var p = await SimPair.StartAsync(9, rc =>
        {
            rc.Fencing = "resource-and-stonith";
            rc.FencePeerHandler = "/usr/bin/false";
        });
        await PrimaryMountedAsync(p);
        p.Proxy.Cut();
        await p.WaitAAsync(s => s.LastFenceExit == 1 && s.SuspendedFencing, Ct);
        var write = SimPair.Run(p.A!, "sim", "write", "r0", "frozen", "1");
        p.Proxy.Heal();
        await p.WaitAAsync(s => s.Connected && !s.SuspendedFencing, Ct);
        Assert.Equal(0, (await write.WaitAsync(SimPair.Timeout, Ct)).ExitCode);
        await p.WaitBAsync(s => s.Replication == "Established" && s.Disk == "UpToDate", Ct);
    }

    /// <summary>A write in flight when the link goes silent: done locally, never acknowledged by the peer, frozen by fencing.</summary>
    private static async Task<(SimPair Pair, Task<WriteOutcome> Write)> InFlightFrozenWriteAsync()
    {
        var p = await SimPair.StartAsync(9, rc =>
        {
            rc.Fencing = "resource-and-stonith";
            rc.FencePeerHandler = "/usr/bin/false";
        });
        await PrimaryMountedAsync(p);
        p.Proxy.Blackhole();
        var write = p.A!.Resource("r0").WriteAsync("inflight", "1", Ct);
        await p.WaitAAsync(s => s.LastFenceExit == 1 && s.SuspendedFencing, Ct);
        Assert.False(write.IsCompleted);
        return (p, write);
    }

    [Fact]
    public async Task S14_WriteInFlightAtLinkLoss_PrimaryDemotesWhileFrozen_WriteFailsAndIsNeverAcknowledged()
    {
        // Regression (lab, I3): the frozen write was acknowledged when the demoted node later reconnected,
        // though only the old primary had it; the new primary did not.
        var (p, write) = await InFlightFrozenWriteAsync();
        await using var _ = p;
        Assert.Equal(0, (await SimPair.Run(p.A!, "umount", "/mnt/data")).ExitCode);
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "secondary", "r0")).ExitCode);

        var outcome = await write.WaitAsync(SimPair.Timeout, Ct);

        Assert.False(outcome.Acknowledged);
        Assert.Contains("I/O error", outcome.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task S14_WriteInFlightAtLinkLoss_LinkBackWhilePrimary_ResentAndAcknowledgedOnlyOnceThePeerHasIt()
    {
        var (p, write) = await InFlightFrozenWriteAsync();
        await using var _ = p;
        p.Proxy.Heal();

        var outcome = await write.WaitAsync(SimPair.Timeout, Ct);

        Assert.True(outcome.Acknowledged, outcome.Error);
        Assert.Equal("1", p.B!.Resource("r0").Read("inflight"));
    }

    [Fact]
    public async Task S14_WriteInFlightAtLinkLoss_DownWhileFrozen_WriteFails()
    {
        var (p, write) = await InFlightFrozenWriteAsync();
        await using var _ = p;
        Assert.Equal(0, (await SimPair.Run(p.A!, "umount", "/mnt/data")).ExitCode);
        Assert.Equal(0, (await SimPair.Run(p.A!, "drbdadm", "down", "r0")).ExitCode);

        var outcome = await write.WaitAsync(SimPair.Timeout, Ct);

        Assert.False(outcome.Acknowledged);
    }

    [Fact]
    public async Task S14_HandlerSaysOutdateYourself_PrimaryGoesOutdated()
    {
        var dir = Path.Combine(Path.GetTempPath(), "drbdsim-h-" + Guid.NewGuid().ToString("N"));
        var handler = Handler(dir, 6, Path.Combine(dir, "env.txt"));
        await using var p = await SimPair.StartAsync(9, rc =>
        {
            rc.Fencing = "resource-and-stonith";
            rc.FencePeerHandler = handler;
        });
        await PrimaryMountedAsync(p);
        p.Proxy.Cut();
        var a = await p.WaitAAsync(s => s.LastFenceExit == 6, Ct);
        Assert.Equal("Outdated", a.Disk);
        Assert.False(a.SuspendedFencing);
        Directory.Delete(dir, true);
    }

    [Fact]
    public async Task ResourceOnly_CallsHandlerWithoutFreezing()
    {
        await using var p = await SimPair.StartAsync(9, rc =>
        {
            rc.Fencing = "resource-only";
            rc.FencePeerHandler = "/usr/bin/true";
        });
        await PrimaryMountedAsync(p);
        p.Proxy.Cut();
        var a = await p.WaitAAsync(s => s.LastFenceExit == 0, Ct);
        Assert.False(a.SuspendedFencing);
        Assert.Equal(0, (await SimPair.Run(p.A!, "sim", "write", "r0", "k", "v")).ExitCode);
    }

    [Fact]
    public async Task DontCare_NoHandlerNoFreeze()
    {
        await using var p = await SimPair.StartAsync(9, rc => rc.FencePeerHandler = "/usr/bin/false");
        await PrimaryMountedAsync(p);
        p.Proxy.Cut();
        var a = await p.WaitAAsync(s => s.Connection == "Connecting", Ct);
        Assert.Equal(0, a.FenceCalls);
        Assert.Equal(0, (await SimPair.Run(p.A!, "sim", "write", "r0", "k", "v")).ExitCode);
    }

    [Fact]
    public async Task PromoteDisconnectedWithFencing_HandlerRefuses_MinusSeven()
    {
        await using var p = await SimPair.StartAsync(9, rc =>
        {
            rc.Fencing = "resource-and-stonith";
            rc.FencePeerHandler = "/usr/bin/false";
        });
        p.Proxy.Cut();
        await p.WaitBAsync(s => s.Connection == "Connecting", Ct);
        var r = await SimPair.Run(p.B!, "drbdadm", "primary", "r0");
        Assert.Equal(11, r.ExitCode);
        Assert.StartsWith("r0: State change failed: (-7) Refusing to be Primary while peer is not outdated\n", r.Stderr);
    }
}
