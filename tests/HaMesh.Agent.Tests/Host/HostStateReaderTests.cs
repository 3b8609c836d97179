using System.Net;
using HaMesh.Agent.Host;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Commands;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.HostState;
using HaMesh.Testing;
using HaMesh.Testing.Commands;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace HaMesh.Agent.Tests.Host;

public sealed class HostStateReaderTests
{
    private readonly FakeCommandRunner _runner = new();
    private readonly FakeTimeProvider _time = new();
    private readonly HaMeshOptions _options = TestConfig.TwoNodes();

    private sealed class FixedAddresses(params InterfaceAddress[] addresses) : IInterfaceAddressSource
    {
        public int Reads { get; private set; }

        public HashSet<string> Interfaces { get; } = ["lo", "eth0"];

        public InterfaceAddressTable Read()
        {
            Reads++;
            return new InterfaceAddressTable(Interfaces, addresses);
        }
    }

    private HostStateReader Reader(IInterfaceAddressSource? kernel = null) =>
        new(Options.Create(_options), _runner, _time, kernel ?? new FixedAddresses());

    private static InterfaceAddress A(string iface, string cidr)
    {
        Assert.True(IpCidr.TryParse(cidr, out var c));
        return new InterfaceAddress(iface, c.Address, c.PrefixLength);
    }

    [Fact]
    public async Task SystemIp_AliasesFromTheKernel_NoProcessStarted()
    {
        _options.Agent.Commands.Ip = "/usr/sbin/ip";
        var kernel = new FixedAddresses(A("lo", "127.0.0.1/8"), A("eth0", "198.51.100.7/24"), A("eth0", "203.0.113.10/32"), A("lo", "203.0.113.11/32"));
        var aliases = await Reader(kernel).ReadIpAliasesAsync("eth0", ["203.0.113.10/32", "203.0.113.11/32"], TestContext.Current.CancellationToken);
        Assert.Equal([true, false], aliases.Select(a => a.Present));
        Assert.All(aliases, a => Assert.Equal("eth0", a.Interface));
        Assert.Equal(1, kernel.Reads);
        Assert.Empty(_runner.Calls);
    }

    [Fact]
    public async Task SystemIp_LabelledAliasCountsForItsDevice_OtherDevicesPrefixDoesNot()
    {
        _options.Agent.Commands.Ip = "/sbin/ip";
        var kernel = new FixedAddresses(A("eth0:ha", "203.0.113.10/32"), A("eth01", "203.0.113.11/32"));
        kernel.Interfaces.Add("eth01");
        var aliases = await Reader(kernel).ReadIpAliasesAsync("eth0", ["203.0.113.10/32", "203.0.113.11/32"], TestContext.Current.CancellationToken);
        Assert.Equal([true, false], aliases.Select(a => a.Present));
    }

    [Fact]
    public async Task SystemIp_MissingInterface_FailsLikeIp()
    {
        _options.Agent.Commands.Ip = "/usr/sbin/ip";
        var ex = await Assert.ThrowsAsync<IOException>(() => Reader().ReadIpAliasesAsync("eth9", ["203.0.113.10/32"], TestContext.Current.CancellationToken));
        Assert.Equal("Device \"eth9\" does not exist.", ex.Message);
    }

    [Fact]
    public async Task StandInIp_RunsTheCommand()
    {
        _options.Agent.Commands.Ip = "/opt/stand-ins/ip";
        _runner.On("/opt/stand-ins/ip -j addr show dev eth0", """[{"ifindex":2,"ifname":"eth0","addr_info":[{"family":"inet","local":"203.0.113.10","prefixlen":32}]}]""");
        var kernel = new FixedAddresses();
        var aliases = await Reader(kernel).ReadIpAliasesAsync("eth0", ["203.0.113.10/32"], TestContext.Current.CancellationToken);
        Assert.True(Assert.Single(aliases).Present);
        Assert.Equal(0, kernel.Reads);
        Assert.Single(_runner.Calls);
    }

    [Fact]
    public async Task Kernel_SameAddressesAsIpJson()
    {
        // the real getifaddrs against the real ip of this host: every interface, every address, same prefix
        const string ip = "/usr/sbin/ip";
        Assert.SkipUnless(File.Exists(ip), "no /usr/sbin/ip on this host");
        var runner = new ProcessCommandRunner([ip], TimeProvider.System);
        var json = (await runner.RunAsync(new CommandSpec(ip, ["-j", "addr", "show"], TimeSpan.FromSeconds(10)), TestContext.Current.CancellationToken)).EnsureSuccess().StandardOutput;
        var expected = HostOutputParser.IpAddresses(json).Value!.Select(a => a.ToString()).Order(StringComparer.Ordinal).ToList();
        var table = new KernelInterfaceAddresses().Read();
        Assert.Equal(expected, table.Addresses.Select(a => new IpCidr(a.Address, a.PrefixLength).ToString()).Order(StringComparer.Ordinal).ToList());
        Assert.Contains(table.Of("lo"), a => a.Address.Equals(IPAddress.Loopback) && a.PrefixLength == 8);
        Assert.True(table.HasInterface("lo"));
    }

    [Fact]
    public async Task Services_WithinMaxAge_ReusesTheLastObservation()
    {
        _runner.On("/usr/bin/systemctl is-active postgresql.service", "active\n");
        var reader = Reader();
        var ct = TestContext.Current.CancellationToken;
        Assert.Equal(ServiceState.Active, (await reader.ReadServicesAsync(["postgresql.service"], TimeSpan.FromSeconds(2), ct))[0].State);
        _time.Advance(TimeSpan.FromSeconds(1.9));
        Assert.Equal(ServiceState.Active, (await reader.ReadServicesAsync(["postgresql.service"], TimeSpan.FromSeconds(2), ct))[0].State);
        Assert.Single(_runner.Calls);

        // a crash shows within the max age
        _runner.On("/usr/bin/systemctl is-active postgresql.service", "failed\n", 3);
        _time.Advance(TimeSpan.FromSeconds(0.1));
        Assert.Equal(ServiceState.Failed, (await reader.ReadServicesAsync(["postgresql.service"], TimeSpan.FromSeconds(2), ct))[0].State);
        Assert.Equal(2, _runner.Calls.Count);
    }

    [Fact]
    public async Task Services_AStepsOwnCheck_RefreshesWhatTheReportSees()
    {
        var ct = TestContext.Current.CancellationToken;
        _runner.On("/usr/bin/systemctl is-active postgresql.service", "inactive\n", 3);
        var reader = Reader();
        Assert.Equal(ServiceState.Inactive, (await reader.ReadServicesAsync(["postgresql.service"], TimeSpan.FromSeconds(2), ct))[0].State);

        // systemctl start, then the step's re-check (always a fresh read)
        _runner.On("/usr/bin/systemctl is-active postgresql.service", "active\n");
        _time.Advance(TimeSpan.FromMilliseconds(250));
        Assert.Equal(ServiceState.Active, (await reader.ReadServicesAsync(["postgresql.service"], ct))[0].State);

        // the next report, still within the max age of the first read, shows the step's result without a command
        Assert.Equal(ServiceState.Active, (await reader.ReadServicesAsync(["postgresql.service"], TimeSpan.FromSeconds(2), ct))[0].State);
        Assert.Equal(2, _runner.Calls.Count);
    }

    [Fact]
    public async Task Services_OneUnitNotSeenRecently_ReadsAllAgain()
    {
        var ct = TestContext.Current.CancellationToken;
        _runner.On("/usr/bin/systemctl is-active a.service", "active\n")
            .On("/usr/bin/systemctl is-active a.service b.service", "active\ninactive\n", 3);
        var reader = Reader();
        await reader.ReadServicesAsync(["a.service"], ct);
        var states = await reader.ReadServicesAsync(["a.service", "b.service"], TimeSpan.FromSeconds(2), ct);
        Assert.Equal([ServiceState.Active, ServiceState.Inactive], states.Select(s => s.State));
        Assert.Equal(2, _runner.Calls.Count);
    }

    [Fact]
    public async Task Services_ZeroMaxAge_ReadsEveryTime()
    {
        var ct = TestContext.Current.CancellationToken;
        _runner.On("/usr/bin/systemctl is-active a.service", "active\n");
        var reader = Reader();
        await reader.ReadServicesAsync(["a.service"], TimeSpan.Zero, ct);
        await reader.ReadServicesAsync(["a.service"], TimeSpan.Zero, ct);
        Assert.Equal(2, _runner.Calls.Count);
    }
}
