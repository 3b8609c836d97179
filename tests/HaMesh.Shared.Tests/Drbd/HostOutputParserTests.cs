using HaMesh.Protocol.V1;
using HaMesh.Shared.HostState;

namespace HaMesh.Shared.Tests.Drbd;

public sealed class HostOutputParserTests
{
    private const string IpJson = """[{"ifindex":2,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"qdisc":"fq_codel","operstate":"UP","group":"default","txqlen":1000,"link_type":"ether","address":"52:54:00:12:34:56","broadcast":"ff:ff:ff:ff:ff:ff","addr_info":[{"family":"inet","local":"51.75.12.34","prefixlen":24,"broadcast":"51.75.12.255","scope":"global","label":"eth0","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet","local":"203.0.113.10","prefixlen":32,"scope":"global","label":"eth0","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"fe80::5054:ff:fe12:3456","prefixlen":64,"scope":"link","valid_life_time":4294967295,"preferred_life_time":4294967295}]}]""";

    [Fact]
    public void IpAddresses_AliasPresent()
    {
        var parsed = HostOutputParser.IpAddresses(IpJson);
        Assert.True(parsed.Ok, parsed.Error);
        Assert.Equal(3, parsed.Value!.Count);
        Assert.True(HostOutputParser.HasAddress(parsed.Value, "203.0.113.10/32"));
        Assert.True(HostOutputParser.HasAddress(parsed.Value, "203.0.113.10"));
        Assert.False(HostOutputParser.HasAddress(parsed.Value, "203.0.113.11/32"));
    }

    [Theory]
    [InlineData("")]
    [InlineData("Device \"eth9\" does not exist.")]
    [InlineData("{}")]
    public void IpAddresses_Garbage_TypedError(string text) => Assert.False(HostOutputParser.IpAddresses(text).Ok);

    [Fact]
    public void ServiceStates_OneLinePerUnit()
    {
        var states = HostOutputParser.ServiceStates(["a.service", "b.service", "c.service"], "active\ninactive\nfailed\n");
        Assert.Equal([ServiceState.Active, ServiceState.Inactive, ServiceState.Failed], states.Select(s => s.State));
        Assert.Equal("inactive", states[1].RawState);
    }

    [Theory]
    [InlineData("activating", ServiceState.Activating)]
    [InlineData("deactivating", ServiceState.Deactivating)]
    [InlineData("reloading", ServiceState.Reloading)]
    [InlineData("unknown", ServiceState.Unknown)]
    [InlineData("", ServiceState.Unknown)]
    public void ServiceState_EveryValue(string raw, ServiceState expected) => Assert.Equal(expected, HostOutputParser.ServiceState(raw));

    [Fact]
    public void IsMounted_MountinfoWithEscapedSpace()
    {
        const string info = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n95 22 147:0 / /srv/db rw,relatime shared:50 - ext4 /dev/drbd0 rw\n96 22 147:1 / /srv/my\\040data rw - ext4 /dev/drbd1 rw\n";
        Assert.True(HostOutputParser.IsMounted(info, "/srv/db"));
        Assert.True(HostOutputParser.IsMounted(info, "/srv/my data"));
        Assert.False(HostOutputParser.IsMounted(info, "/srv"));
    }
}
