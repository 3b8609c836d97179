using HaMesh.Coordinator.Ovh;

namespace HaMesh.Coordinator.Tests.Ovh;

/// <summary>Every worked signature example of specs/ovh-api.md §2.6 and §2.7, byte for byte.</summary>
public sealed class OvhSignatureTests
{
    private const string As1 = "9ufkBmLaTQ9nz5yMUlg79taH0GNnzDjk";
    private const string Ck1 = "5mBuy6SUQcRw2ZUxg0cG68BoDKpED4KY";
    private const string As2 = "EXEgWIz07P0HYwtQDs7cNIqCiQaWSuHF";
    private const string Ck2 = "MtSwSrPpNjqfVSmJhLbPyr2i45lSwPU1";

    [Theory]
    [InlineData("GET", "https://eu.api.ovh.com/1.0/auth", "", "$1$e9556054b6309771395efa467c22e627407461ad")]
    [InlineData("POST", "https://eu.api.ovh.com/1.0/auth", "{\"a\":\"b\",\"c\":\"d\"}", "$1$ec2fb5c7a81f64723c77d2e5b609ae6f58a84fc1")]
    [InlineData("PUT", "https://eu.api.ovh.com/1.0/auth", "{\"a\":\"b\",\"c\":\"d\"}", "$1$8a75a9e7c8e7296c9dbeda6a2a735eb6bd58ec4b")]
    [InlineData("DELETE", "https://eu.api.ovh.com/1.0/auth", "", "$1$a1eecd00b3b02b6cf5708b84b9ff42059a950d85")]
    [InlineData("GET", "https://eu.api.ovh.com/1.0/call", "", "$1$7f2db49253edfc41891023fcd1a54cf61db05fbb")]
    [InlineData("GET", "https://eu.api.ovh.com/v1/call", "", "$1$e6e7906d385eb28adcbfbe6b66c1528a42d741ad")]
    [InlineData("GET", "https://eu.api.ovh.com/v2/call", "", "$1$bb63b132a6f84ad5433d0c534d48d3f7c3804285")]
    public void Sign_OfficialPythonGoVectors(string method, string url, string body, string expected) =>
        Assert.Equal(expected, OvhSignature.Sign(As1, Ck1, method, url, body, 1457018875));

    [Theory]
    [InlineData("GET", "/", "", "$1$c87db4be631d68b610079e088248dfe8881c40a1")]
    [InlineData("GET", "/mails?to=45&from=12", "", "$1$26b79c495a18b45bb1f197bfe3f262ecb5f21016")]
    [InlineData("POST", "/", "{\"data\":\"value\"}", "$1$369d08d098480a4769db04bf3f0ce8e7a266ca7e")]
    [InlineData("GET", "https://eu.api.ovh.com/1.0/me", "", "$1$dfe0b86bf2ab0d9eb3f785dc1ab00de58984d80c")]
    [InlineData("GET", "https://eu.api.ovh.com/1.0/route?filter=value%3a%26%c3%a9%27-&anotherfilter=%3dtest", "", "$1$098b93d342b6db4848ec448063be2b6884e94723")]
    public void Sign_OfficialCsharpVectors(string method, string url, string body, string expected) =>
        Assert.Equal(expected, OvhSignature.Sign("APPLICATION_SECRET", "CONSUMER_KEY", method, url, body, 1566485767));

    [Theory]
    [InlineData("GET", "https://eu.api.ovh.com/1.0/ip/203.0.113.10%2F32", "", "$1$3fc75e06ca0408eb10e0efeee16175db3421caaa")]
    [InlineData("GET", "https://eu.api.ovh.com/1.0/ip?ip=203.0.113.10%2F32&type=failover", "", "$1$c0a6cac81a1e5379f323a0916bd2b554ec72625e")]
    [InlineData("POST", "https://eu.api.ovh.com/1.0/ip/203.0.113.10%2F32/move", "{\"to\":\"ns3012345.ip-51-75-12.eu\"}", "$1$7d58a8e420545d1681f42f7894a5260738f83f0d")]
    [InlineData("POST", "https://eu.api.ovh.com/1.0/ip/203.0.113.10%2F32/move", "{\"to\": \"ns3012345.ip-51-75-12.eu\"}", "$1$3ce2b631edb54eec56a8d08c7dd9cdf6f7d4bdd8")]
    [InlineData("GET", "https://eu.api.ovh.com/1.0/ip/203.0.113.10%2F32/move", "", "$1$21871b0330f15299a4c0ca3dbc68eaa64e8a784c")]
    [InlineData("GET", "https://eu.api.ovh.com/1.0/ip/203.0.113.10%2F32/task/559188894", "", "$1$1f8877a02c904c7a8a77964024c3bd1f1e9fef95")]
    [InlineData("GET", "https://eu.api.ovh.com/1.0/ip/203.0.113.10%2F32/task?function=genericMoveFloatingIp&status=todo", "", "$1$ac86d44b7dd0913009f761e7908008cb1a9687c3")]
    [InlineData("POST", "https://eu.api.ovh.com/1.0/ip/203.0.113.10%2F32/park", "", "$1$b04ce0b9b09a71cee6166254f66d87518db47766")]
    [InlineData("GET", "https://eu.api.ovh.com/1.0/dedicated/server", "", "$1$69c6aad3a1be75805fa7d197bfd98977a2b641a7")]
    [InlineData("GET", "https://eu.api.ovh.com/1.0/dedicated/server/ns3012345.ip-51-75-12.eu/ips", "", "$1$40d92ac7cf8de2c4da1c837026fa4507006f1c28")]
    [InlineData("GET", "https://ca.api.ovh.com/1.0/ip/203.0.113.10%2F32", "", "$1$87ceb85a863dabf90c7c6dbbd8d9832ad066bab6")]
    [InlineData("GET", "https://eu.api.ovh.com/v1/ip/203.0.113.10%2F32", "", "$1$407acce266fb86a67bb09bc2ba77f0ed8287198d")]
    [InlineData("GET", "https://eu.api.ovh.com/1.0/ip/203.0.113.10%2f32", "", "$1$acfab1cdb389f12f52667873345da7db42dfa9c9")]
    [InlineData("GET", "http://127.0.0.1:8443/1.0/ip/203.0.113.10%2F32", "", "$1$fa6dc0d21a6b005c3d1bd8f9c060e7dcaedfbfd2")]
    [InlineData("GET", "https://127.0.0.1/1.0/ip/203.0.113.10%2F32", "", "$1$77b0d838f4bebf77ef035163c7b3090b297fe05b")]
    public void Sign_HaMeshWorkedExamples(string method, string url, string body, string expected) =>
        Assert.Equal(expected, OvhSignature.Sign(As2, Ck2, method, url, body, 1700000000));

    [Fact]
    public void Sign_LiveCapturesFromOfficialClients()
    {
        Assert.Equal("$1$7208c6938c7e96b17a609a00929c644167ff1d63", OvhSignature.Sign(As1, Ck1, "GET", "https://127.0.0.1/1.0/ip/1.2.3.4%2F32", "", 1795557531));
        Assert.Equal("$1$c201f92c4e4f4e9bba424b253762951b7a4584c8", OvhSignature.Sign(As1, Ck1, "POST", "https://127.0.0.1/1.0/ip/1.2.3.4%2F32/move", "{\"to\":\"ns2.example\"}", 1795557531));
        Assert.Equal("$1$ad3b301867f2c47796305db5674bdd25561f9fdb", OvhSignature.Sign(As1, Ck1, "POST", "http://127.0.0.1:18080/1.0/ip/1.2.3.4%2F32/move", "{\"to\":\"ns2.example\"}", 1795557543));
        Assert.Equal("$1$d3c9049977487fe3a14a58842c7a4f5360776d41", OvhSignature.Sign(As1, Ck1, "POST", "http://127.0.0.1:18080/1.0/ip/1.2.3.4%2F32/move", "{\"to\":\"ns2.example\",\"nexthop\":null}", 1795557543));
    }

    [Theory]
    [InlineData("203.0.113.10/32", "203.0.113.10%2F32")]
    [InlineData("203.0.113.10", "203.0.113.10%2F32")]
    [InlineData("2001:db8::1/128", "2001%3Adb8%3A%3A1%2F128")]
    public void EncodeIp_CidrWithEncodedSlash(string ip, string expected) => Assert.Equal(expected, OvhSignature.EncodeIp(ip));

    [Fact]
    public void AbsoluteUri_KeepsEscapes_ToStringDoesNot()
    {
        var uri = new Uri("https://eu.api.ovh.com/1.0/ip/203.0.113.10%2F32/task?d=h%C3%A9llo%20w");
        Assert.Equal("https://eu.api.ovh.com/1.0/ip/203.0.113.10%2F32/task?d=h%C3%A9llo%20w", uri.AbsoluteUri);
    }
}
