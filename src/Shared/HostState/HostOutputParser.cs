using System.Net;
using System.Text.Json;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Drbd;

namespace HaMesh.Shared.HostState;

/// <summary>Pure parsers for <c>ip -j addr show dev IFACE</c>, <c>systemctl is-active UNIT...</c> and /proc/self/mountinfo.</summary>
public static class HostOutputParser
{
    /// <summary>The addresses (with prefix length) configured on the interface, from ip's JSON.</summary>
    public static DrbdParse<IReadOnlyList<IpCidr>> IpAddresses(string? json)
    {
        if (string.IsNullOrWhiteSpace(json))
        {
            return DrbdParse.Fail<IReadOnlyList<IpCidr>>("ip -j addr printed nothing");
        }

        try
        {
            using var doc = JsonDocument.Parse(json);
            var list = new List<IpCidr>();
            foreach (var link in doc.RootElement.EnumerateArray())
            {
                if (!link.TryGetProperty("addr_info", out var infos) || infos.ValueKind != JsonValueKind.Array)
                {
                    continue;
                }

                foreach (var info in infos.EnumerateArray())
                {
                    if (info.TryGetProperty("local", out var local) && local.ValueKind == JsonValueKind.String
                        && IPAddress.TryParse(local.GetString(), out var address)
                        && info.TryGetProperty("prefixlen", out var prefix) && prefix.ValueKind == JsonValueKind.Number)
                    {
                        list.Add(new IpCidr(address, prefix.GetInt32()));
                    }
                }
            }

            return DrbdParse.Success<IReadOnlyList<IpCidr>>(list);
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            return DrbdParse.Fail<IReadOnlyList<IpCidr>>($"ip -j addr: unexpected output: {ex.Message}");
        }
    }

    /// <summary>Is <paramref name="failoverIp"/> (CIDR) among the interface's addresses? The address decides; the prefix may differ.</summary>
    public static bool HasAddress(IReadOnlyList<IpCidr> addresses, string failoverIp) =>
        IpCidr.TryParse(failoverIp, out var wanted) && addresses.Any(a => a.Address.Equals(wanted.Address));

    /// <summary>One state per unit, in order (systemctl is-active prints one line per unit and exits 3 when any is not active).</summary>
    public static IReadOnlyList<ServiceStatus> ServiceStates(IReadOnlyList<string> units, string? output)
    {
        ArgumentNullException.ThrowIfNull(units);
        var lines = (output ?? "").Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        return units.Select((u, i) =>
        {
            var raw = i < lines.Length ? lines[i] : "";
            return new ServiceStatus { Unit = u, RawState = raw, State = ServiceState(raw) };
        }).ToList();
    }

    public static ServiceState ServiceState(string raw) => raw switch
    {
        "active" => Protocol.V1.ServiceState.Active,
        "inactive" => Protocol.V1.ServiceState.Inactive,
        "failed" => Protocol.V1.ServiceState.Failed,
        "activating" => Protocol.V1.ServiceState.Activating,
        "deactivating" => Protocol.V1.ServiceState.Deactivating,
        "reloading" => Protocol.V1.ServiceState.Reloading,
        _ => Protocol.V1.ServiceState.Unknown,
    };

    /// <summary>Is <paramref name="mountPoint"/> a mount point in this mountinfo text (field 5, octal escapes decoded)?</summary>
    public static bool IsMounted(string mountinfo, string mountPoint)
    {
        ArgumentNullException.ThrowIfNull(mountinfo);
        foreach (var line in mountinfo.Split('\n'))
        {
            var fields = line.Split(' ');
            if (fields.Length > 4 && Unescape(fields[4]) == mountPoint)
            {
                return true;
            }
        }

        return false;
    }

    private static string Unescape(string s) => s.Contains('\\', StringComparison.Ordinal)
        ? System.Text.RegularExpressions.Regex.Replace(s, @"\\([0-7]{3})", m => ((char)Convert.ToInt32(m.Groups[1].Value, 8)).ToString())
        : s;
}
