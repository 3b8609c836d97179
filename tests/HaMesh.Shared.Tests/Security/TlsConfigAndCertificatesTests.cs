using System.Net;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Security;
using HaMesh.Shared.Tests.Configuration;

namespace HaMesh.Shared.Tests.Security;

public sealed class TlsConfigAndCertificatesTests : IDisposable
{
    private static readonly DateTimeOffset Now = new(2026, 12, 1, 12, 0, 0, TimeSpan.Zero);
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-tlscfg-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private HaMeshOptions TlsConfig()
    {
        var ca = ClusterCertificates.CreateCa("c1", Now);
        var (caPem, _) = ClusterCertificates.Write(_dir, "ca", ca);
        var (cert, key) = ClusterCertificates.Write(_dir, "coordinator", ClusterCertificates.Issue(ca, ClusterRole.Coordinator, null, ["localhost"], [IPAddress.Loopback], Now));
        var o = ConfigValidatorTests.Valid();
        o.Tls = new TlsOptions { Insecure = false, CaFile = caPem, CertificateFile = cert, KeyFile = key };
        o.Coordinator.Listen = "https://127.0.0.1:7800";
        o.Coordinator.Address = "https://127.0.0.1:7800";
        o.Agent.Listen = "";
        foreach (var n in o.Nodes)
        {
            n.AgentAddress = n.AgentAddress.Replace("http://", "https://", StringComparison.Ordinal);
        }

        return o;
    }

    private static IReadOnlyList<ConfigError> Validate(HaMeshOptions o) =>
        ConfigValidator.Validate(o, ConfigScope.Agent | ConfigScope.Coordinator, new NoSecretProblems());

    [Fact]
    public void Validate_TlsWithReadablePemFilesAndHttpsAddresses_NoErrors() => Assert.Empty(Validate(TlsConfig()));

    [Fact]
    public void Validate_TlsMissingKeyFile_NamesTheKey()
    {
        var o = TlsConfig();
        o.Tls.KeyFile = Path.Combine(_dir, "absent-key.pem");
        var e = Assert.Single(Validate(o));
        Assert.Equal("HaMesh:Tls:KeyFile", e.Key);
        Assert.Contains("does not exist", e.Reason);
    }

    [Fact]
    public void Validate_TlsUnparsableCaAndKeyNotMatchingCertificate_NamedPerKey()
    {
        var o = TlsConfig();
        File.WriteAllText(o.Tls.CaFile, "not a certificate");
        var other = ClusterCertificates.Write(_dir, "other", ClusterCertificates.Issue(ClusterCertificates.CreateCa("x", Now), ClusterRole.Viewer, null, [], [], Now));
        o.Tls.KeyFile = other.Key;
        var errors = Validate(o);
        Assert.Contains(errors, e => e.Key == "HaMesh:Tls:CaFile");
        Assert.Contains(errors, e => e.Key == "HaMesh:Tls:CertificateFile");
    }

    [Fact]
    public void Validate_TlsWithHttpAddresses_AndInsecureWithHttps_SchemeMustMatchMode()
    {
        var o = TlsConfig();
        o.Nodes[1].AgentAddress = "http://127.0.0.1:7701";
        o.Coordinator.Listen = "http://127.0.0.1:7800";
        var errors = Validate(o);
        Assert.Contains(errors, e => e.Key == "HaMesh:Nodes:1:AgentAddress" && e.Reason.Contains("https://", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Key == "HaMesh:Coordinator:Listen");

        var insecure = ConfigValidatorTests.Valid();
        insecure.Coordinator.Address = "https://127.0.0.1:7800";
        Assert.Contains(Validate(insecure), e => e.Key == "HaMesh:Coordinator:Address" && e.Reason.Contains("http://", StringComparison.Ordinal));
    }

    [Fact]
    public void Certificates_IssuedRoleParsesBack_ChainsToItsCaOnly_KeyIsOwnerOnly()
    {
        var ca = ClusterCertificates.CreateCa("c1", Now);
        var (caPath, caKeyPath) = ClusterCertificates.Write(_dir, "ca", ca);
        var (cert, key) = ClusterCertificates.Write(_dir, "agent-a", ClusterCertificates.Issue(ca, ClusterRole.Agent, "a", ["node-a"], [IPAddress.Parse("10.0.0.1")], Now));
        using var tls = ClusterTls.Load(caPath, cert, key);

        Assert.Equal(new ClusterIdentity(ClusterRole.Agent, "a"), ClusterRoles.From(tls.Certificate));
        Assert.True(tls.HasPrivateKey());
        Assert.True(tls.IsTrusted(tls.Certificate));
        using var foreign = ClusterTls.LoadCertificate(ClusterCertificates.Write(_dir, "foreign", ClusterCertificates.CreateCa("c1", Now)).Certificate);
        Assert.False(ClusterTls.IsTrusted(tls.Certificate, foreign));
        Assert.True(tls.Ca.NotAfter > Now.AddYears(9).UtcDateTime);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(caKeyPath));
    }

    [Theory]
    [InlineData("hamesh://role/coordinator", ClusterRole.Coordinator, null)]
    [InlineData("hamesh://role/operator", ClusterRole.Operator, null)]
    [InlineData("hamesh://role/viewer", ClusterRole.Viewer, null)]
    [InlineData("hamesh://role/agent/b", ClusterRole.Agent, "b")]
    public void Roles_ParseKnownUris(string uri, ClusterRole role, string? node) =>
        Assert.Equal(new ClusterIdentity(role, node), ClusterRoles.Parse(uri));

    [Theory]
    [InlineData("hamesh://role/admin")]
    [InlineData("hamesh://role/agent")]
    [InlineData("hamesh://role/agent/a/b")]
    [InlineData("https://role/operator")]
    public void Roles_UnknownUris_NoIdentity(string uri) => Assert.Null(ClusterRoles.Parse(uri));

    private sealed class NoSecretProblems : IFileProbe
    {
        public string? CheckSecretFile(string path) => null;
    }
}
