using HaMesh.Shared.Configuration;
using HaMesh.Testing;

namespace HaMesh.Shared.Tests.Configuration;

public sealed class ConfigLoaderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-config-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string json)
    {
        var path = Path.Combine(_dir, "cluster.json");
        File.WriteAllText(path, json);
        return path;
    }

    private static string Example => File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "deploy", "examples", "cluster.json"));

    [Fact]
    public void Load_DeployExample_ValidForEveryComponentGivenANodeAndCredentials()
    {
        var creds = Path.Combine(_dir, "ovh.json");
        File.WriteAllText(creds, "{}");
        File.SetUnixFileMode(creds, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        // the example runs mutual TLS with files under /etc/hamesh/tls; here they are made in a temporary folder
        Assert.Contains("\"CaFile\": \"/etc/hamesh/tls/ca.pem\"", Example, StringComparison.Ordinal);
        var now = new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero);
        var ca = HaMesh.Shared.Security.ClusterCertificates.CreateCa("prod", now);
        var (caFile, _) = HaMesh.Shared.Security.ClusterCertificates.Write(_dir, "ca", ca);
        var (cert, key) = HaMesh.Shared.Security.ClusterCertificates.Write(_dir, "agent-b", HaMesh.Shared.Security.ClusterCertificates.Issue(ca, HaMesh.Shared.Security.ClusterRole.Agent, "b", [], [], now));
        var result = ConfigLoader.Load(Write(Example), ConfigScope.Agent | ConfigScope.Coordinator,
            [new("HaMesh:Agent:Node", "b"), new("HaMesh:Coordinator:Ovh:CredentialsFile", creds),
             new("HaMesh:Tls:CaFile", caFile), new("HaMesh:Tls:CertificateFile", cert), new("HaMesh:Tls:KeyFile", key)], environment: false);
        Assert.Empty(result.Errors);
        Assert.False(result.Options!.Tls.Insecure);
        Assert.Equal("b", result.Options!.Agent.Node);
        Assert.Equal(TimeSpan.FromMilliseconds(250), result.Options.Cluster.Timings.Heartbeat);
    }

    [Fact]
    public void Load_MissingFile_SaysWhereItLooked()
    {
        var result = ConfigLoader.Load(Path.Combine(_dir, "nope.json"), ConfigScope.Cluster, environment: false);
        Assert.False(result.IsValid);
        Assert.Contains("does not exist", result.Errors[0].Reason);
    }

    [Fact]
    public void Load_InvalidJson_ClearError()
    {
        var result = ConfigLoader.Load(Write("{ \"HaMesh\": { "), ConfigScope.Cluster, environment: false);
        Assert.False(result.IsValid);
        Assert.Contains("not valid JSON", result.Errors[0].Reason);
    }

    [Fact]
    public void Load_UnknownKey_NamedNotIgnored()
    {
        var result = ConfigLoader.Load(Write(Example.Replace("\"Heartbeat\"", "\"Hartbeat\"", StringComparison.Ordinal)), ConfigScope.Cluster, environment: false);
        Assert.False(result.IsValid);
        Assert.Contains("Hartbeat", result.Errors[0].Reason);
    }

    [Fact]
    public void Load_BadDuration_NamesKey()
    {
        var result = ConfigLoader.Load(Write(Example.Replace("\"00:00:02\"", "\"two seconds\"", StringComparison.Ordinal)), ConfigScope.Cluster, environment: false);
        Assert.False(result.IsValid);
        Assert.Equal("HaMesh:Cluster:Timings:Lease", result.Errors[0].Key);
        Assert.Contains("duration", result.Errors[0].Reason);
    }

    [Fact]
    public void Load_OverrideViolatesTimingRule_RuleReported()
    {
        var result = ConfigLoader.Load(Write(Example), ConfigScope.Cluster, [new("HaMesh:Cluster:Timings:Heartbeat", "00:00:01")], environment: false);
        Assert.Contains(result.Errors, e => e.Key == "HaMesh:Cluster:Timings:Heartbeat" && e.Reason.Contains("heartbeat < lease/4", StringComparison.Ordinal));
    }

    [Fact]
    public void FileProbe_GroupReadableSecret_RefusedWithMode()
    {
        var creds = Path.Combine(_dir, "ovh.json");
        File.WriteAllText(creds, "{}");
        File.SetUnixFileMode(creds, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
        var problem = FileProbe.System.CheckSecretFile(creds);
        Assert.NotNull(problem);
        Assert.Contains("640", problem);
        Assert.Contains("0600", problem);
    }

    [Fact]
    public void FileProbe_OwnerOnlySecret_Accepted()
    {
        var creds = Path.Combine(_dir, "ovh.json");
        File.WriteAllText(creds, "{}");
        File.SetUnixFileMode(creds, UnixFileMode.UserRead);
        Assert.Null(FileProbe.System.CheckSecretFile(creds));
    }
}
