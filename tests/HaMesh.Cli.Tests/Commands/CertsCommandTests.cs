using HaMesh.Cli.Commands;
using HaMesh.Shared.Security;

namespace HaMesh.Cli.Tests.Commands;

public sealed class CertsCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-certs-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static async Task<(int Exit, string Out, string Err)> RunAsync(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var exit = await CliApp.RunAsync(args, stdout, stderr);
        return (exit, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public async Task InitThenIssue_WritesPemFiles_KeysOwnerOnly_RolesAndSansInTheCertificate_ChainToTheCa()
    {
        Assert.Equal(0, (await RunAsync("certs", "init", "--dir", _dir, "--cluster", "prod")).Exit);
        var agent = await RunAsync("certs", "issue", "--dir", _dir, "--role", "agent", "--node", "a", "--dns", "node-a", "--ip", "10.0.0.1");
        Assert.True(agent.Exit == 0, agent.Err);
        Assert.Contains("hamesh://role/agent/a", agent.Out);
        Assert.Matches("serial [0-9A-F]{32}, SHA-256 fingerprint [0-9A-F]{64}", agent.Out);
        Assert.Equal(0, (await RunAsync("certs", "issue", "--dir", _dir, "--role", "operator")).Exit);

        foreach (var key in new[] { "ca-key.pem", "agent-a-key.pem", "operator-key.pem" })
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(_dir, key)));
        }

        using var tls = ClusterTls.Load(Path.Combine(_dir, "ca.pem"), Path.Combine(_dir, "agent-a.pem"), Path.Combine(_dir, "agent-a-key.pem"));
        Assert.Equal(new ClusterIdentity(ClusterRole.Agent, "a"), ClusterRoles.From(tls.Certificate));
        Assert.True(tls.IsTrusted(tls.Certificate));
        var san = tls.Certificate.Extensions.OfType<System.Security.Cryptography.X509Certificates.X509SubjectAlternativeNameExtension>().Single();
        Assert.Contains("node-a", san.EnumerateDnsNames());
        Assert.Contains(System.Net.IPAddress.Parse("10.0.0.1"), san.EnumerateIPAddresses());
        Assert.True(tls.Ca.NotAfter - tls.Ca.NotBefore > TimeSpan.FromDays(3649));
        Assert.Contains("CN=HaMesh CA prod", tls.Ca.Subject, StringComparison.Ordinal);
        using var op = ClusterTls.Load(Path.Combine(_dir, "ca.pem"), Path.Combine(_dir, "operator.pem"), Path.Combine(_dir, "operator-key.pem"));
        Assert.Equal(new ClusterIdentity(ClusterRole.Operator, null), ClusterRoles.From(op.Certificate));
    }

    [Fact]
    public async Task Init_Twice_RefusesToOverwriteTheCa()
    {
        Assert.Equal(0, (await RunAsync("certs", "init", "--dir", _dir, "--cluster", "prod")).Exit);
        var before = await File.ReadAllTextAsync(Path.Combine(_dir, "ca.pem"), TestContext.Current.CancellationToken);
        var again = await RunAsync("certs", "init", "--dir", _dir, "--cluster", "prod");
        Assert.Equal(CliApp.Usage, again.Exit);
        Assert.Contains("refusing to overwrite", again.Err);
        Assert.Equal(before, await File.ReadAllTextAsync(Path.Combine(_dir, "ca.pem"), TestContext.Current.CancellationToken));
    }

    [Theory]
    [InlineData("agent", null, "--node is required")]
    [InlineData("viewer", "a", "--node is only for")]
    public async Task Issue_NodeMustMatchTheRole(string role, string? node, string message)
    {
        Assert.Equal(0, (await RunAsync("certs", "init", "--dir", _dir, "--cluster", "prod")).Exit);
        string[] args = node is null ? ["certs", "issue", "--dir", _dir, "--role", role] : ["certs", "issue", "--dir", _dir, "--role", role, "--node", node];
        var r = await RunAsync(args);
        Assert.Equal(CliApp.Usage, r.Exit);
        Assert.Contains(message, r.Err);
    }

    [Fact]
    public async Task Issue_WithoutCa_SaysToRunInit()
    {
        var r = await RunAsync("certs", "issue", "--dir", _dir, "--role", "viewer");
        Assert.Equal(CliApp.Usage, r.Exit);
        Assert.Contains("certs init", r.Err);
    }

    [Fact]
    public async Task Status_HttpsWithoutClientCertificate_OneLineUsageError()
    {
        var r = await RunAsync("status", "--coordinator", "https://127.0.0.1:1", "--config", Path.Combine(_dir, "absent.json"));
        Assert.Equal(CliApp.Usage, r.Exit);
        Assert.Contains("--cacert", r.Err);
    }
}
