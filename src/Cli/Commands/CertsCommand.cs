using System.CommandLine;
using System.Net;
using System.Security.Cryptography;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Security;

namespace HaMesh.Cli.Commands;

/// <summary>
/// hameshctl certs init --dir D --cluster NAME: the cluster CA (ECDSA P-256, 10 years; ca.pem, ca-key.pem mode 0600).
/// hameshctl certs issue --dir D --role agent|coordinator|operator|viewer [--node N] [--dns NAME]... [--ip ADDR]...:
/// a certificate signed by that CA with the role as SAN URI (NAME.pem, NAME-key.pem mode 0600).
/// </summary>
public static class CertsCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var dir = new Option<string>("--dir") { Description = "Directory of the cluster CA (ca.pem, ca-key.pem) and the issued files", Required = true };
        var cluster = new Option<string>("--cluster") { Description = "Cluster name (in the CA's subject)", Required = true };
        var init = new Command("init", "Create the cluster CA");
        init.Options.Add(dir);
        init.Options.Add(cluster);
        init.SetAction(async parse =>
        {
            var d = parse.GetValue(dir)!;
            var name = parse.GetValue(cluster)!;
            if (!Names.IsValidName(name))
            {
                await stderr.WriteLineAsync($"hameshctl: --cluster '{name}' {Names.NameRule}");
                return CliApp.Usage;
            }

            if (File.Exists(Path.Combine(d, "ca.pem")) || File.Exists(Path.Combine(d, "ca-key.pem")))
            {
                await stderr.WriteLineAsync($"hameshctl: {d} already holds a CA (ca.pem); refusing to overwrite it");
                return CliApp.Usage;
            }

            var (cert, key) = ClusterCertificates.Write(d, "ca", ClusterCertificates.CreateCa(name, TimeProvider.System.GetUtcNow()));
            await stdout.WriteLineAsync($"cluster CA written: {cert} (key {key}, mode 0600; keep it offline)");
            return CliApp.Ok;
        });

        var role = new Option<string>("--role") { Description = "agent, coordinator, operator or viewer", Required = true };
        role.AcceptOnlyFromAmong("agent", "coordinator", "operator", "viewer");
        var node = new Option<string?>("--node") { Description = "Node name (agents only)" };
        var dns = new Option<string[]>("--dns") { Description = "DNS name SAN (repeatable; servers: the name clients dial)", AllowMultipleArgumentsPerToken = false };
        var ip = new Option<string[]>("--ip") { Description = "IP address SAN (repeatable; servers: the address clients dial)" };
        var output = new Option<string?>("--name") { Description = "Base name of the files (default: agent-NODE or the role)" };
        var issue = new Command("issue", "Issue a certificate signed by the cluster CA");
        foreach (var o in new Option[] { dir, role, node, dns, ip, output })
        {
            issue.Options.Add(o);
        }

        issue.SetAction(async parse =>
        {
            var d = parse.GetValue(dir)!;
            var r = Enum.Parse<ClusterRole>(parse.GetValue(role)!, ignoreCase: true);
            var n = parse.GetValue(node);
            if ((r == ClusterRole.Agent) != (n is not null))
            {
                await stderr.WriteLineAsync(r == ClusterRole.Agent ? "hameshctl: --node is required for --role agent" : "hameshctl: --node is only for --role agent");
                return CliApp.Usage;
            }

            if (n is not null && !Names.IsValidName(n))
            {
                await stderr.WriteLineAsync($"hameshctl: --node '{n}' {Names.NameRule}");
                return CliApp.Usage;
            }

            var ips = new List<IPAddress>();
            foreach (var text in parse.GetValue(ip) ?? [])
            {
                if (!IPAddress.TryParse(text, out var address))
                {
                    await stderr.WriteLineAsync($"hameshctl: --ip '{text}' is not an IP address");
                    return CliApp.Usage;
                }

                ips.Add(address);
            }

            PemPair ca;
            try
            {
                ca = new PemPair(await File.ReadAllTextAsync(Path.Combine(d, "ca.pem")), await File.ReadAllTextAsync(Path.Combine(d, "ca-key.pem")));
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                await stderr.WriteLineAsync($"hameshctl: cannot read the cluster CA in {d} ({ex.Message}); run 'hameshctl certs init' first");
                return CliApp.Usage;
            }

            var name = parse.GetValue(output) ?? (n is null ? r.ToString().ToLowerInvariant() : $"agent-{n}");
            try
            {
                var pair = ClusterCertificates.Issue(ca, r, n, parse.GetValue(dns) ?? [], ips, TimeProvider.System.GetUtcNow());
                var (cert, key) = ClusterCertificates.Write(d, name, pair);
                await stdout.WriteLineAsync($"{ClusterRoles.Uri(r, n)} certificate written: {cert} (key {key}, mode 0600)");
                using (var issued = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(pair.CertificatePem))
                {
                    var (serial, sha256) = ClusterTls.Ids(issued);
                    await stdout.WriteLineAsync($"serial {serial}, SHA-256 fingerprint {sha256} (to retire it: add either to HaMesh:Tls:RevokedCertificates)");
                }

                return CliApp.Ok;
            }
            catch (CryptographicException ex)
            {
                await stderr.WriteLineAsync($"hameshctl: the CA in {d} does not load ({ex.Message})");
                return CliApp.Usage;
            }
        });

        var command = new Command("certs", "Cluster CA and per-component certificates for mutual TLS");
        command.Subcommands.Add(init);
        command.Subcommands.Add(issue);
        return command;
    }
}
