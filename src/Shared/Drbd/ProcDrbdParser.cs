using System.Globalization;
using System.Text.RegularExpressions;
using HaMesh.Protocol.V1;

namespace HaMesh.Shared.Drbd;

public sealed record ProcDrbdMinor(
    int Minor,
    ConnectionState Connection,
    ReplicationState Replication,
    DrbdRole Role,
    DrbdRole PeerRole,
    DiskState Disk,
    DiskState PeerDisk,
    ulong OutOfSyncKib,
    double? SyncedPercent,
    bool Suspended);

public sealed record ProcDrbd(string VersionText, DrbdVersionFamily Family, IReadOnlyList<ProcDrbdMinor> Minors);

/// <summary>
/// Parses <c>/proc/drbd</c> (kernel format of drivers/block/drbd/drbd_proc.c, 8.4; DRBD 9 prints only
/// the version lines): version, per-minor cs/ro/ds, the suspended flag, oos and sync progress.
/// </summary>
public static partial class ProcDrbdParser
{
    public static DrbdParse<ProcDrbd> Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return DrbdParse.Fail<ProcDrbd>("/proc/drbd is empty (is the drbd module loaded?)");
        }

        var lines = text.Replace("\r", "", StringComparison.Ordinal).Split('\n');
        var version = VersionLine().Match(lines[0]);
        if (!version.Success)
        {
            return DrbdParse.Fail<ProcDrbd>($"/proc/drbd line 1: expected 'version: X.Y.Z (api:...)', got '{Clip(lines[0])}'");
        }

        var versionText = version.Groups[1].Value;
        var family = versionText.StartsWith("8.", StringComparison.Ordinal) ? DrbdVersionFamily.V84 : DrbdVersionFamily.V9;
        var minors = new List<ProcDrbdMinor>();
        for (var i = 1; i < lines.Length; i++)
        {
            var m = MinorLine().Match(lines[i]);
            if (!m.Success)
            {
                continue;
            }

            var minor = int.Parse(m.Groups["minor"].Value, CultureInfo.InvariantCulture);
            var (connection, replication) = DrbdNames.Split84(m.Groups["cs"].Value);
            if (!m.Groups["ro"].Success)
            {
                if (connection != ConnectionState.Unconfigured)
                {
                    return DrbdParse.Fail<ProcDrbd>($"/proc/drbd line {i + 1}: minor {minor} has no ro:/ds: fields: '{Clip(lines[i])}'");
                }

                minors.Add(new ProcDrbdMinor(minor, connection, replication, DrbdRole.Unknown, DrbdRole.Unknown, DiskState.Unknown, DiskState.Unknown, 0, null, false));
                continue;
            }

            ulong oos = 0;
            double? synced = null;
            var sawStats = false;
            for (var j = i + 1; j < lines.Length && !MinorLine().IsMatch(lines[j]); j++)
            {
                if (Oos().Match(lines[j]) is { Success: true } o)
                {
                    oos = ulong.Parse(o.Groups[1].Value, CultureInfo.InvariantCulture);
                    sawStats = true;
                }

                if (Synced().Match(lines[j]) is { Success: true } s)
                {
                    synced = double.Parse(s.Groups[1].Value, CultureInfo.InvariantCulture);
                }
            }

            if (!sawStats)
            {
                return DrbdParse.Fail<ProcDrbd>($"/proc/drbd: minor {minor} has no statistics line (truncated output?)");
            }

            minors.Add(new ProcDrbdMinor(
                minor, connection, replication,
                DrbdNames.Role(m.Groups["ro"].Value), DrbdNames.Role(m.Groups["pro"].Value),
                DrbdNames.Disk(m.Groups["ds"].Value), DrbdNames.Disk(m.Groups["pds"].Value),
                oos, synced, m.Groups["flags"].Value.StartsWith('s')));
        }

        return DrbdParse.Success(new ProcDrbd(versionText, family, minors));
    }

    private static string Clip(string s) => s.Length <= 80 ? s : s[..80] + "…";

    [GeneratedRegex(@"^version:\s+(\d+\.\d+(?:\.\d+)*)\S*\s")]
    private static partial Regex VersionLine();

    [GeneratedRegex(@"^\s*(?<minor>\d+):\s+cs:(?<cs>\S+)(?:\s+ro:(?<ro>[^/\s]+)/(?<pro>\S+)\s+ds:(?<ds>[^/\s]+)/(?<pds>\S+)\s+(?<proto>[ABC ]?)\s*(?<flags>\S*))?")]
    private static partial Regex MinorLine();

    [GeneratedRegex(@"\boos:(\d+)")]
    private static partial Regex Oos();

    [GeneratedRegex(@"sync'ed:\s*([\d.]+)%")]
    private static partial Regex Synced();
}
