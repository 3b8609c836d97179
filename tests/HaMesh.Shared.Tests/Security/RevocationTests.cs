using System.Net;
using System.Security.Cryptography.X509Certificates;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Security;
using HaMesh.Shared.Tests.Configuration;

namespace HaMesh.Shared.Tests.Security;

public sealed class RevocationTests : IDisposable
{
    private static readonly DateTimeOffset Now = new(2026, 12, 1, 12, 0, 0, TimeSpan.Zero);
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-revoke-").FullName;
    private readonly PemPair _ca = ClusterCertificates.CreateCa("c1", Now);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private (string Ca, string Cert, string Key) Files(string name, ClusterRole role, string? node = null)
    {
        var (ca, _) = ClusterCertificates.Write(_dir, "ca", _ca);
        var (cert, key) = ClusterCertificates.Write(_dir, name, ClusterCertificates.Issue(_ca, role, node, ["localhost"], [IPAddress.Loopback], Now));
        return (ca, cert, key);
    }

    [Fact]
    public void RevokedBySerial_OrByOpensslStyleFingerprint_IsNotTrusted_OthersStillAre()
    {
        var agent = Files("agent-a", ClusterRole.Agent, "a");
        var op = Files("operator", ClusterRole.Operator);
        using var agentCert = X509Certificate2.CreateFromPem(File.ReadAllText(agent.Cert));
        using var opCert = X509Certificate2.CreateFromPem(File.ReadAllText(op.Cert));
        var (serial, sha) = ClusterTls.Ids(agentCert);
        var opensslFingerprint = "sha256 Fingerprint=" + string.Join(':', ClusterTls.Ids(opCert).Sha256.Chunk(2).Select(c => new string(c)));

        using var bySerial = ClusterTls.Load(agent.Ca, op.Cert, op.Key, [serial.ToLowerInvariant()]);
        using var byFingerprint = ClusterTls.Load(agent.Ca, agent.Cert, agent.Key, [opensslFingerprint]);
        using var none = ClusterTls.Load(agent.Ca, agent.Cert, agent.Key);

        Assert.False(bySerial.IsTrusted(agentCert));
        Assert.True(bySerial.IsTrusted(opCert));
        Assert.False(byFingerprint.IsTrusted(opCert));
        Assert.True(byFingerprint.IsTrusted(agentCert));
        Assert.True(none.IsTrusted(agentCert) && none.IsTrusted(opCert));
        Assert.Equal(64, sha.Length);
    }

    [Fact]
    public void FromOptions_UsesTheConfiguredList()
    {
        var agent = Files("agent-a", ClusterRole.Agent, "a");
        using var cert = X509Certificate2.CreateFromPem(File.ReadAllText(agent.Cert));
        using var tls = ClusterTls.From(new TlsOptions { CaFile = agent.Ca, CertificateFile = agent.Cert, KeyFile = agent.Key, RevokedCertificates = [ClusterTls.Ids(cert).Sha256] })!;
        Assert.False(tls.IsTrusted(cert));
    }

    [Fact]
    public void Validate_RevokedEntryThatIsNotHex_NamesTheEntry()
    {
        var o = ConfigValidatorTests.Valid();
        o.Tls.RevokedCertificates = ["0A:1B:2C", "agent-a.pem", "ABC"];
        var errors = ConfigValidator.Validate(o, ConfigScope.Agent | ConfigScope.Coordinator, new NoSecretProblems());
        Assert.DoesNotContain(errors, e => e.Key == "HaMesh:Tls:RevokedCertificates:0");
        Assert.Contains(errors, e => e.Key == "HaMesh:Tls:RevokedCertificates:1" && e.Reason.Contains("serial", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Key == "HaMesh:Tls:RevokedCertificates:2");
    }

    private sealed class NoSecretProblems : IFileProbe
    {
        public string? CheckSecretFile(string path) => null;
    }
}
