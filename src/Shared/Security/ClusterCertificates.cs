using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace HaMesh.Shared.Security;

/// <summary>A certificate and its private key as PEM text.</summary>
public sealed record PemPair(string CertificatePem, string KeyPem);

/// <summary>
/// The cluster CA and the per-component certificates (ECDSA P-256), made with <see cref="CertificateRequest"/>.
/// The role travels as a SAN URI (<see cref="ClusterRoles"/>).
/// </summary>
public static class ClusterCertificates
{
    public static PemPair CreateCa(string cluster, DateTimeOffset now, TimeSpan? validity = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(cluster);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName($"CN=HaMesh CA {cluster}, O=HaMesh"), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        using var ca = request.CreateSelfSigned(now.AddMinutes(-5), now.Add(validity ?? TimeSpan.FromDays(3650)));
        return new PemPair(ca.ExportCertificatePem(), key.ExportPkcs8PrivateKeyPem());
    }

    /// <summary>Issues a certificate for <paramref name="role"/> (node required for agents), usable as TLS server and client.</summary>
    public static PemPair Issue(PemPair ca, ClusterRole role, string? node, IEnumerable<string> dnsNames, IEnumerable<IPAddress> ips, DateTimeOffset now, TimeSpan? validity = null)
    {
        ArgumentNullException.ThrowIfNull(ca);
        ArgumentNullException.ThrowIfNull(dnsNames);
        ArgumentNullException.ThrowIfNull(ips);
        var uri = ClusterRoles.Uri(role, node);
        using var caCert = X509Certificate2.CreateFromPem(ca.CertificatePem, ca.KeyPem);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var cn = role == ClusterRole.Agent ? $"hamesh-agent-{node}" : $"hamesh-{role.ToString().ToLowerInvariant()}";
        var request = new CertificateRequest(new X500DistinguishedName($"CN={cn}, O=HaMesh"), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyAgreement, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(uri);
        foreach (var dns in dnsNames)
        {
            san.AddDnsName(dns);
        }

        foreach (var ip in ips)
        {
            san.AddIpAddress(ip);
        }

        request.CertificateExtensions.Add(san.Build());
        var notAfter = now.Add(validity ?? TimeSpan.FromDays(825));
        if (notAfter > caCert.NotAfter)
        {
            notAfter = caCert.NotAfter;
        }

        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        using var cert = request.Create(caCert, now.AddMinutes(-5), notAfter, serial);
        return new PemPair(cert.ExportCertificatePem(), key.ExportPkcs8PrivateKeyPem());
    }

    /// <summary>Writes <paramref name="pair"/> as NAME.pem and NAME-key.pem (key mode 0600, created so); returns both paths.</summary>
    public static (string Certificate, string Key) Write(string directory, string name, PemPair pair)
    {
        ArgumentNullException.ThrowIfNull(pair);
        Directory.CreateDirectory(directory);
        var certPath = Path.Combine(directory, name + ".pem");
        var keyPath = Path.Combine(directory, name + "-key.pem");
        File.WriteAllText(certPath, pair.CertificatePem);
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        using (var stream = new FileStream(keyPath, options))
        using (var writer = new StreamWriter(stream))
        {
            writer.Write(pair.KeyPem);
        }

        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(keyPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        return (certPath, keyPath);
    }
}
