using HaMesh.Shared.Configuration;
using HaMesh.Testing;

namespace HaMesh.Shared.Tests.Configuration;

public sealed class ConfigValidatorTests
{
    private sealed class Files(string? problem = null) : IFileProbe
    {
        public string? CheckSecretFile(string path) => problem;
    }

    internal static HaMeshOptions Valid()
    {
        var o = TestConfig.TwoNodes();
        o.Coordinator.Listen = "http://127.0.0.1:7800";
        o.Coordinator.Address = "http://127.0.0.1:7800";
        o.Coordinator.StorePath = "/var/lib/hamesh/c.db";
        o.Coordinator.Ovh.CredentialsFile = "/etc/hamesh/ovh.json";
        o.Agent.Listen = "http://127.0.0.1:7701";
        return o;
    }

    private static IReadOnlyList<ConfigError> Validate(HaMeshOptions o, ConfigScope scope = ConfigScope.Agent | ConfigScope.Coordinator, string? fileProblem = null) =>
        ConfigValidator.Validate(o, scope, new Files(fileProblem));

    private static ConfigError Single(IReadOnlyList<ConfigError> errors, string key)
    {
        Assert.Contains(errors, e => e.Key == key);
        return errors.First(e => e.Key == key);
    }

    [Fact]
    public void Validate_CompleteConfig_NoErrors() => Assert.Empty(Validate(Valid()));

    [Fact]
    public void Validate_MetricsListenOnOwnPorts_NoErrors()
    {
        var o = Valid();
        o.Agent.MetricsListen = "http://0.0.0.0:9700";
        o.Coordinator.MetricsListen = "http://127.0.0.1:0";
        Assert.Empty(Validate(o));
    }

    [Theory]
    [InlineData("https://0.0.0.0:9700", "plain http://")]
    [InlineData("http://0.0.0.0", "plain http://")]
    [InlineData("http://0.0.0.0:9700/metrics", "no path")]
    [InlineData("http://0.0.0.0:7701", "already the gRPC Listen port")]
    public void Validate_AgentMetricsListenInvalid_NamesKey(string metrics, string reason)
    {
        var o = Valid();
        o.Agent.MetricsListen = metrics;
        Assert.Contains(reason, Single(Validate(o, ConfigScope.Agent), "HaMesh:Agent:MetricsListen").Reason);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(61)]
    public void Validate_AgentServicePollIntervalOutOfRange_NamesKey(int seconds)
    {
        var o = Valid();
        o.Agent.ServicePollInterval = TimeSpan.FromSeconds(seconds);
        Assert.Contains("between 0 and 1 minute", Single(Validate(o), "HaMesh:Agent:ServicePollInterval").Reason);
    }

    [Fact]
    public void Validate_AgentServicePollIntervalZero_MeansEveryReport_NoErrors()
    {
        var o = Valid();
        o.Agent.ServicePollInterval = TimeSpan.Zero;
        Assert.Empty(Validate(o));
    }

    [Fact]
    public void Validate_CoordinatorMetricsOnGrpcPort_NamesKey()
    {
        var o = Valid();
        o.Coordinator.MetricsListen = "http://0.0.0.0:7800";
        Assert.Contains("own", Single(Validate(o, ConfigScope.Coordinator), "HaMesh:Coordinator:MetricsListen").Reason);
    }

    [Fact]
    public void Validate_AgentNodeNotConfigured_NamesAgentNode()
    {
        var o = Valid();
        o.Agent.Node = "c";
        var e = Single(Validate(o), "HaMesh:Agent:Node");
        Assert.Contains("'c' is not one of the configured nodes", e.Reason);
    }

    [Fact]
    public void Validate_AgentNodeMissing_NamesAgentNode()
    {
        var o = Valid();
        o.Agent.Node = "";
        Assert.Contains("required", Single(Validate(o, ConfigScope.Agent), "HaMesh:Agent:Node").Reason);
    }

    [Fact]
    public void Validate_AgentScopeOff_AgentNodeNotRequired()
    {
        var o = Valid();
        o.Agent.Node = "";
        Assert.Empty(Validate(o, ConfigScope.Coordinator));
    }

    [Fact]
    public void Validate_OneNode_Refused()
    {
        var o = Valid();
        o.Nodes.RemoveAt(1);
        o.Resources[0].PreferredNode = "a";
        Assert.Contains("at least two nodes", Single(Validate(o, ConfigScope.Cluster), "HaMesh:Nodes").Reason);
    }

    [Fact]
    public void Validate_DuplicateNodeName_NamesSecondEntry()
    {
        var o = Valid();
        o.Nodes[1].Name = "a";
        Assert.Contains("duplicate node name 'a'", Single(Validate(o, ConfigScope.Cluster), "HaMesh:Nodes:1:Name").Reason);
    }

    [Fact]
    public void Validate_DuplicateResourceName_NamesSecondEntry()
    {
        var o = Valid();
        o.Resources.Add(new ResourceOptions { Name = "db", DrbdResource = "r1", Device = "/dev/drbd1", MountPoint = "/srv/x", FailoverIps = ["203.0.113.11/32"], Interface = "eth0" });
        Assert.Contains("duplicate resource name", Single(Validate(o, ConfigScope.Cluster), "HaMesh:Resources:1:Name").Reason);
    }

    [Theory]
    [InlineData("203.0.113.10/33")]
    [InlineData("203.0.113/32")]
    [InlineData("not-an-ip")]
    [InlineData("203.0.113.10/")]
    [InlineData("2001:db8::1/129")]
    public void Validate_BadCidr_NamesTheIpEntry(string cidr)
    {
        var o = Valid();
        o.Resources[0].FailoverIps = [cidr];
        Assert.Contains("not a valid CIDR", Single(Validate(o, ConfigScope.Cluster), "HaMesh:Resources:0:FailoverIps:0").Reason);
    }

    [Theory]
    [InlineData("203.0.113.10/32")]
    [InlineData("203.0.113.10")]
    [InlineData("2001:db8::10/128")]
    public void Validate_GoodCidr_Accepted(string cidr)
    {
        var o = Valid();
        o.Resources[0].FailoverIps = [cidr];
        Assert.Empty(Validate(o));
    }

    [Fact]
    public void Validate_HeartbeatNotBelowQuarterLease_NamesRule()
    {
        var o = Valid();
        o.Cluster.Timings.Heartbeat = TimeSpan.FromMilliseconds(500); // lease 2 s → lease/4 = 500 ms
        var e = Single(Validate(o), "HaMesh:Cluster:Timings:Heartbeat");
        Assert.Contains("heartbeat < lease/4", e.Reason);
    }

    [Fact]
    public void Validate_HeartbeatJustBelowQuarterLease_Accepted()
    {
        var o = Valid();
        o.Cluster.Timings.Heartbeat = TimeSpan.FromMilliseconds(500) - TimeSpan.FromTicks(1);
        Assert.Empty(Validate(o));
    }

    [Fact]
    public void Validate_DriftMarginNotBelowHalfLease_NamesRule()
    {
        var o = Valid();
        o.Cluster.Timings.DriftMargin = TimeSpan.FromSeconds(1);
        Assert.Contains("drift margin < lease/2", Single(Validate(o), "HaMesh:Cluster:Timings:DriftMargin").Reason);
    }

    [Fact]
    public void Validate_SelfFenceDeadlineNotBelowLease_NamesRule()
    {
        var o = Valid();
        o.Cluster.Timings.SelfFenceDeadline = TimeSpan.FromSeconds(2);
        Assert.Contains("self-fence deadline < lease", Single(Validate(o), "HaMesh:Cluster:Timings:SelfFenceDeadline").Reason);
    }

    [Fact]
    public void Validate_ZeroLease_ReportsPositiveRule()
    {
        var o = Valid();
        o.Cluster.Timings.Lease = TimeSpan.Zero;
        Assert.Contains("must be positive", Single(Validate(o), "HaMesh:Cluster:Timings:Lease").Reason);
    }

    [Theory]
    [InlineData("-r0")]
    [InlineData("r0; rm -rf /")]
    [InlineData("r 0")]
    [InlineData("r0$(id)")]
    [InlineData("")]
    public void Validate_DrbdResourceWithBadCharacters_Refused(string name)
    {
        var o = Valid();
        o.Resources[0].DrbdResource = name;
        Assert.Contains("not a valid DRBD resource name", Single(Validate(o, ConfigScope.Cluster), "HaMesh:Resources:0:DrbdResource").Reason);
    }

    [Theory]
    [InlineData("A")]
    [InlineData("-a")]
    [InlineData("a b")]
    [InlineData("a/b")]
    public void Validate_BadNodeName_Refused(string name)
    {
        var o = Valid();
        o.Nodes[1].Name = name;
        Assert.Contains(Names.NameRule, Single(Validate(o, ConfigScope.Cluster), "HaMesh:Nodes:1:Name").Reason);
    }

    [Theory]
    [InlineData("-eth0")]
    [InlineData("eth0 up")]
    [InlineData("averyveryverylongname")]
    public void Validate_BadInterface_Refused(string iface)
    {
        var o = Valid();
        o.Resources[0].Interface = iface;
        Single(Validate(o, ConfigScope.Cluster), "HaMesh:Resources:0:Interface");
    }

    [Theory]
    [InlineData("postgresql")]
    [InlineData("--now.service")]
    [InlineData("a b.service")]
    public void Validate_BadUnit_Refused(string unit)
    {
        var o = Valid();
        o.Resources[0].Services = [unit];
        Single(Validate(o, ConfigScope.Cluster), "HaMesh:Resources:0:Services:0");
    }

    [Fact]
    public void Validate_UnreadableCredentialsFile_NamesKey()
    {
        var e = Single(Validate(Valid(), ConfigScope.Coordinator, "'/etc/hamesh/ovh.json' does not exist or is not readable"), "HaMesh:Coordinator:Ovh:CredentialsFile");
        Assert.Contains("not readable", e.Reason);
    }

    [Fact]
    public void Validate_CredentialsOnlyCheckedForCoordinator()
    {
        Assert.Empty(ConfigValidator.Validate(Valid(), ConfigScope.Agent, new Files("would fail")));
    }

    [Fact]
    public void Validate_UnknownPreferredNode_Refused()
    {
        var o = Valid();
        o.Resources[0].PreferredNode = "zz";
        Single(Validate(o, ConfigScope.Cluster), "HaMesh:Resources:0:PreferredNode");
    }

    [Fact]
    public void Validate_BadAgentAddress_Refused()
    {
        var o = Valid();
        o.Nodes[0].AgentAddress = "10.0.0.1:7700";
        Single(Validate(o, ConfigScope.Cluster), "HaMesh:Nodes:0:AgentAddress");
    }

    [Fact]
    public void Validate_RelativeCommandPath_Refused()
    {
        var o = Valid();
        o.Agent.Commands.Drbdadm = "drbdadm";
        Single(Validate(o, ConfigScope.Agent), "HaMesh:Agent:Commands:Drbdadm");
    }

    [Fact]
    public void Validate_TlsNotInsecure_ExplainsTheSetting()
    {
        var o = Valid();
        o.Tls.Insecure = false;
        Single(Validate(o, ConfigScope.Cluster), "HaMesh:Tls:Insecure");
    }

    [Fact]
    public void Validate_SeveralProblems_ReportsEveryOne()
    {
        var o = Valid();
        o.Nodes[1].Name = "a";
        o.Resources[0].FailoverIps = ["x"];
        o.Cluster.Timings.DriftMargin = TimeSpan.FromSeconds(5);
        var errors = Validate(o, ConfigScope.Cluster);
        Assert.Equal(3, errors.Count);
    }
}
