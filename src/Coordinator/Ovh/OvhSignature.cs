using System.Security.Cryptography;
using System.Text;

namespace HaMesh.Coordinator.Ovh;

/// <summary>OVH request signing (specs/ovh-api.md §2.2): "$1$" + sha1hex(AS+CK+METHOD+FULL_URL+BODY+TS), '+'-joined.</summary>
public static class OvhSignature
{
    public static string Sign(string applicationSecret, string consumerKey, string method, string fullUrl, string body, long timestamp)
    {
        var pre = string.Join('+', applicationSecret, consumerKey, method.ToUpperInvariant(), fullUrl, body, timestamp.ToString(System.Globalization.CultureInfo.InvariantCulture));
#pragma warning disable CA5350 // SHA1 is what the OVH API mandates for request signatures
        var hash = SHA1.HashData(Encoding.UTF8.GetBytes(pre));
#pragma warning restore CA5350
        return "$1$" + Convert.ToHexStringLower(hash);
    }

    /// <summary>The {ip} path parameter: CIDR with the slash percent-encoded (203.0.113.10%2F32).</summary>
    public static string EncodeIp(string ip)
    {
        ArgumentNullException.ThrowIfNull(ip);
        var cidr = ip.Contains('/', StringComparison.Ordinal) ? ip : ip + (ip.Contains(':', StringComparison.Ordinal) ? "/128" : "/32");
        return Uri.EscapeDataString(cidr);
    }
}
