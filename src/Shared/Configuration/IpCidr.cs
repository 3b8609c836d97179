using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace HaMesh.Shared.Configuration;

/// <summary>An IP block as OVH names failover IPs: <c>203.0.113.10/32</c>.</summary>
public sealed record IpCidr(IPAddress Address, int PrefixLength)
{
    public static bool TryParse(string? text, [NotNullWhen(true)] out IpCidr? cidr)
    {
        cidr = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        var slash = text.IndexOf('/', StringComparison.Ordinal);
        var addressText = slash < 0 ? text : text[..slash];
        if (!IPAddress.TryParse(addressText, out var address) || addressText.Contains('%', StringComparison.Ordinal))
        {
            return false;
        }

        // IPAddress.TryParse accepts legacy short forms ("203.0.113" = 203.0.0.113): require a dotted quad.
        if (address.AddressFamily == AddressFamily.InterNetwork && addressText.Count(c => c == '.') != 3)
        {
            return false;
        }

        var max = address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;
        var prefix = max;
        if (slash >= 0 && !int.TryParse(text.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out prefix))
        {
            return false;
        }

        if (prefix < 0 || prefix > max)
        {
            return false;
        }

        cidr = new IpCidr(address, prefix);
        return true;
    }

    /// <summary>The single host address (what an IP alias and the Ping-through-IP use).</summary>
    public string Host => Address.ToString();

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Address}/{PrefixLength}");
}
