using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using HaMesh.Shared.Configuration;

namespace HaMesh.Shared.Security;

/// <summary>
/// The cluster's mutual-TLS material: the cluster CA (the only trust anchor) and this component's
/// certificate with its private key, loaded from PEM files.
/// </summary>
public sealed class ClusterTls : IDisposable
{
    private readonly HashSet<string> _revoked;

    private ClusterTls(X509Certificate2 ca, X509Certificate2 certificate, IEnumerable<string> revoked)
    {
        Ca = ca;
        Certificate = certificate;
        _revoked = new HashSet<string>(revoked.Select(NormalizeId), StringComparer.Ordinal);
    }

    public X509Certificate2 Ca { get; }

    /// <summary>This component's certificate, with its private key.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>Null in insecure mode; else the loaded material (throws when a file does not parse).</summary>
    public static ClusterTls? From(TlsOptions tls)
    {
        ArgumentNullException.ThrowIfNull(tls);
        return tls.Insecure ? null : Load(tls.CaFile, tls.CertificateFile, tls.KeyFile, tls.RevokedCertificates);
    }

    public static ClusterTls Load(string caFile, string certificateFile, string keyFile, IEnumerable<string>? revoked = null)
    {
        var ca = LoadCertificate(caFile);
        using var pem = X509Certificate2.CreateFromPemFile(certificateFile, keyFile);
        // an ephemeral PEM key works for SslStream on Linux; exporting to PKCS#12 keeps it portable
        var certificate = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        return new ClusterTls(ca, certificate, revoked ?? []);
    }

    /// <summary>Serial numbers or fingerprints as compared: upper-case hex without separators (and without openssl's serial=/sha256 Fingerprint= prefix).</summary>
    public static string NormalizeId(string id)
    {
        ArgumentNullException.ThrowIfNull(id);
        var hex = new string(id.Where(c => c is not (':' or ' ' or '-')).ToArray()).ToUpperInvariant();
        return hex.StartsWith("SHA256FINGERPRINT=", StringComparison.Ordinal) ? hex["SHA256FINGERPRINT=".Length..]
            : hex.StartsWith("SERIAL=", StringComparison.Ordinal) ? hex["SERIAL=".Length..]
            : hex;
    }

    /// <summary>Null when <paramref name="id"/> is a hex serial (1-20 bytes) or SHA-256 fingerprint (32 bytes); else why not.</summary>
    public static string? CheckId(string id)
    {
        var hex = NormalizeId(id ?? "");
        return hex.Length is >= 2 and <= 64 && hex.Length % 2 == 0 && hex.All(Uri.IsHexDigit)
            ? null
            : $"'{(id is { Length: > 80 } ? id[..80] + "…" : id)}' is not a certificate serial or SHA-256 fingerprint in hex (openssl x509 -noout -serial -fingerprint -sha256)";
    }

    /// <summary>The serial number and SHA-256 fingerprint of <paramref name="certificate"/>, as listed in RevokedCertificates.</summary>
    public static (string Serial, string Sha256) Ids(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        return (certificate.SerialNumber, certificate.GetCertHashString(HashAlgorithmName.SHA256));
    }

    /// <summary>True when the certificate's serial or fingerprint is in RevokedCertificates.</summary>
    public bool IsRevoked(X509Certificate2 certificate)
    {
        var (serial, sha) = Ids(certificate);
        return _revoked.Contains(sha) || _revoked.Contains(serial);
    }

    public bool HasPrivateKey() => Certificate.HasPrivateKey;

    /// <summary>The first certificate of a PEM file (no key).</summary>
    public static X509Certificate2 LoadCertificate(string path)
    {
        var all = new X509Certificate2Collection();
        all.ImportFromPemFile(path);
        if (all.Count == 0)
        {
            throw new CryptographicException("no CERTIFICATE block in the file");
        }

        for (var i = 1; i < all.Count; i++)
        {
            all[i].Dispose();
        }

        return all[0];
    }

    /// <summary>True when <paramref name="certificate"/> chains to the cluster CA alone (no system roots).</summary>
    /// <remarks>A certificate listed in RevokedCertificates is never trusted.</remarks>
    public bool IsTrusted(X509Certificate2? certificate) => certificate is not null && !IsRevoked(certificate) && IsTrusted(certificate, Ca);

    public static bool IsTrusted(X509Certificate2? certificate, X509Certificate2 ca)
    {
        ArgumentNullException.ThrowIfNull(ca);
        if (certificate is null)
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.VerificationFlags = X509VerificationFlags.NoFlag;
        return chain.Build(certificate);
    }

    /// <summary>Client options for a channel: present our certificate, accept only a server the cluster CA signed.</summary>
    public SslClientAuthenticationOptions ClientOptions() => new()
    {
        ClientCertificates = [Certificate],
        EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
        RemoteCertificateValidationCallback = (_, cert, _, errors) =>
            cert is X509Certificate2 c && IsTrusted(c)
            && (errors & ~(SslPolicyErrors.RemoteCertificateChainErrors)) == SslPolicyErrors.None,
    };

    public void Dispose()
    {
        Ca.Dispose();
        Certificate.Dispose();
    }

    /// <summary>The problems of the three PEM files, per key: empty when they parse into a CA and a certificate with its matching key.</summary>
    public static IEnumerable<(string Field, string Problem)> Check(TlsOptions tls)
    {
        ArgumentNullException.ThrowIfNull(tls);
        var ok = true;
        foreach (var (field, path) in new[] { (nameof(tls.CaFile), tls.CaFile), (nameof(tls.CertificateFile), tls.CertificateFile), (nameof(tls.KeyFile), tls.KeyFile) })
        {
            if (string.IsNullOrWhiteSpace(path))
            {
                ok = false;
                yield return (field, "is required when Insecure is false (a PEM file; create them with hameshctl certs init/issue)");
            }
            else if (!File.Exists(path))
            {
                ok = false;
                yield return (field, $"'{path}' does not exist or is not readable");
            }
        }

        if (!ok)
        {
            yield break;
        }

        string? caProblem = null;
        try
        {
            using var ca = LoadCertificate(tls.CaFile);
        }
        catch (Exception ex) when (ex is CryptographicException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            caProblem = $"'{tls.CaFile}' is not a readable PEM certificate: {ex.Message}";
        }

        if (caProblem is not null)
        {
            yield return (nameof(tls.CaFile), caProblem);
        }

        string? pairProblem = null;
        try
        {
            using var pair = X509Certificate2.CreateFromPemFile(tls.CertificateFile, tls.KeyFile);
        }
        catch (Exception ex) when (ex is CryptographicException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            pairProblem = $"'{tls.CertificateFile}' with key '{tls.KeyFile}' does not load as a PEM certificate and its private key: {ex.Message}";
        }

        if (pairProblem is not null)
        {
            yield return (nameof(tls.CertificateFile), pairProblem);
        }
    }
}
