using HaMesh.Agent.Drbd;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Testing;
using HaMesh.Testing.Commands;
using Microsoft.Extensions.Options;

namespace HaMesh.Agent.Tests.Drbd;

public sealed class DrbdReaderTests : IDisposable
{
    private const string Proc84 = """
        version: 8.4.11 (api:1/proto:86-101)
        srcversion: F73C670A7EC572DB9CF3E5B 
         0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----
            ns:0 nr:0 dw:0 dr:0 al:8 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:1024

        """;

    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-reader-").FullName;
    private readonly FakeCommandRunner _runner = new();
    private readonly HaMeshOptions _options = TestConfig.TwoNodes();

    public DrbdReaderTests() => _options.Agent.Commands.ProcDrbd = Path.Combine(_dir, "drbd");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private void Proc(string text) => File.WriteAllText(_options.Agent.Commands.ProcDrbd, text);

    [Fact]
    public async Task Drbd84_MinorInProcDrbd_NoCommandRun()
    {
        Proc(Proc84);
        var snapshot = await new Drbd84Reader(Options.Create(_options), _runner).ReadAsync(["r0"], TestContext.Current.CancellationToken);
        var r = snapshot.Resources["r0"];
        Assert.Empty(snapshot.Errors);
        Assert.Equal("8.4.11", snapshot.VersionText);
        Assert.Equal((DrbdRole.Primary, DiskState.UpToDate), (r.Role, r.DiskState));
        Assert.Equal((ConnectionState.Connected, ReplicationState.SyncSource, DiskState.Inconsistent, 1024UL, "b"), (r.Peers[0].ConnectionState, r.Peers[0].ReplicationState, r.Peers[0].PeerDiskState, r.Peers[0].OutOfSyncKib, r.Peers[0].PeerName));
        Assert.Empty(_runner.Calls);
    }

    [Fact]
    public async Task Drbd84_ResourceDown_NotPresentWithDrbdadmMessage()
    {
        Proc("version: 8.4.11 (api:1/proto:86-101)\nsrcversion: F73C670A7EC572DB9CF3E5B \n");
        _runner.On("/usr/sbin/drbdadm role r0", "", 10, "0: Failure: (127) Device minor not allocated\nadditional info from kernel:\nunknown minor\nCommand 'drbdsetup-84 role 0' terminated with exit code 10\n");
        var snapshot = await new Drbd84Reader(Options.Create(_options), _runner).ReadAsync(["r0"], TestContext.Current.CancellationToken);
        Assert.False(snapshot.Resources["r0"].Present);
        Assert.Contains("DRBD does not know the resource", Assert.Single(snapshot.Errors));
    }

    [Fact]
    public async Task Drbd84_DeviceNotByMinor_FallsBackToDrbdadmQueries()
    {
        _options.Resources[0].Device = "/dev/drbd/by-res/r0/0";
        Proc(Proc84);
        _runner.On("/usr/sbin/drbdadm role r0", "Secondary/Primary\n").On("/usr/sbin/drbdadm cstate r0", "Connected\n").On("/usr/sbin/drbdadm dstate r0", "UpToDate/UpToDate\n");
        var snapshot = await new Drbd84Reader(Options.Create(_options), _runner).ReadAsync(["r0"], TestContext.Current.CancellationToken);
        var r = snapshot.Resources["r0"];
        Assert.Empty(snapshot.Errors);
        Assert.Equal((DrbdRole.Secondary, DrbdRole.Primary, ReplicationState.Established), (r.Role, r.Peers[0].PeerRole, r.Peers[0].ReplicationState));
        Assert.Equal(3, _runner.Calls.Count);
    }

    [Fact]
    public async Task Drbd84_ProcDrbdMissing_ErrorNotException()
    {
        _runner.On("/usr/sbin/drbdadm role r0", "", 1, "'r0' not defined in your config (for this host).\n");
        var snapshot = await new Drbd84Reader(Options.Create(_options), _runner).ReadAsync(["r0"], TestContext.Current.CancellationToken);
        Assert.Contains(snapshot.Errors, e => e.Contains("drbd module loaded", StringComparison.Ordinal));
        Assert.False(snapshot.Resources["r0"].Present);
    }

    [Fact]
    public async Task Drbd9_StatusJson_ParsedAndMissingResourceNotPresent()
    {
        _options.Resources.Add(new ResourceOptions { Name = "web", DrbdResource = "r1", Device = "/dev/drbd1", MountPoint = "/srv/web", FailoverIps = ["203.0.113.11/32"], Interface = "eth0" });
        _runner.On("/usr/sbin/drbdsetup status --json", """[{"name":"r0","role":"Secondary","devices":[{"volume":0,"disk-state":"UpToDate","quorum":true}],"connections":[{"name":"a","connection-state":"Connected","peer-role":"Primary","peer_devices":[{"volume":0,"replication-state":"Established","peer-disk-state":"UpToDate","out-of-sync":0}]}]}]""");
        var snapshot = await new Drbd9Reader(Options.Create(_options), _runner).ReadAsync(["r0", "r1"], TestContext.Current.CancellationToken);
        Assert.Equal(DrbdVersionFamily.V9, snapshot.Family);
        Assert.Equal(DrbdRole.Primary, snapshot.Resources["r0"].Peers[0].PeerRole);
        Assert.False(snapshot.Resources["r1"].Present);
        Assert.Contains("r1: DRBD does not know the resource", Assert.Single(snapshot.Errors));
    }

    [Fact]
    public async Task Drbd9_ModuleNotLoaded_ErrorNamesCommandAndExitCode()
    {
        _runner.On("/usr/sbin/drbdsetup status --json", "", 121, "Could not connect to 'drbd' generic netlink family\n");
        var snapshot = await new Drbd9Reader(Options.Create(_options), _runner).ReadAsync(["r0"], TestContext.Current.CancellationToken);
        Assert.Contains("exit code 121", Assert.Single(snapshot.Errors));
        Assert.False(snapshot.Resources["r0"].Present);
    }

    [Theory]
    [InlineData("version: 8.4.11 (api:1/proto:86-101)\n", "drbd84", "auto")]
    [InlineData("version: 9.2.12 (api:2/proto:86-122)\n", "drbd9", "auto")]
    [InlineData("version: 8.4.11 (api:1/proto:86-101)\n", "drbd9", "drbd9")]
    public async Task Selector_ChoosesFromConfigOrProcDrbd(string proc, string expected, string configured)
    {
        Proc(proc);
        _options.Agent.DrbdVersion = configured;
        _runner.On("/usr/sbin/drbdsetup status --json", "[]");
        _runner.On("/usr/sbin/drbdadm role r0", "", 1, "'r0' not defined in your config (for this host).\n");
        var o = Options.Create(_options);
        var selector = new DrbdReaderSelector(o, new Drbd84Reader(o, _runner), new Drbd9Reader(o, _runner));
        var snapshot = await selector.ReadAsync(["r0"], TestContext.Current.CancellationToken);
        Assert.Equal(expected == "drbd84" ? DrbdVersionFamily.V84 : DrbdVersionFamily.V9, snapshot.Family);
    }
}
