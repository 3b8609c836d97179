using System.Globalization;
using System.Text.RegularExpressions;
using HaMesh.Protocol.V1;

namespace HaMesh.Shared.Drbd;

/// <summary>A refusal or failure printed by drbdadm/drbdsetup (spec §0): the SS_ code and text, or a kernel ERR_ code.</summary>
public sealed record DrbdCommandError(int? StateChangeCode, int? FailureCode, string Text, int? ExitCode)
{
    public override string ToString() =>
        StateChangeCode is { } sc ? string.Create(CultureInfo.InvariantCulture, $"state change failed ({sc}): {Text}")
        : FailureCode is { } fc ? string.Create(CultureInfo.InvariantCulture, $"failure ({fc}): {Text}")
        : Text;
}

/// <summary>Parsers for the one-line drbdadm queries (role, dstate, cstate) in 8.4 and 9 formats, and for error outputs.</summary>
public static partial class DrbdadmOutputParser
{
    /// <summary>8.4 prints "Primary/Secondary" (local/peer); 9 prints the local role only.</summary>
    public static (DrbdRole Local, DrbdRole Peer)? Role(string? output)
    {
        var line = FirstLine(output);
        if (line is null)
        {
            return null;
        }

        var parts = line.Split('/');
        var local = DrbdNames.Role(parts[0]);
        return local == DrbdRole.Unknown && parts[0] != "Unknown" ? null : (local, parts.Length > 1 ? DrbdNames.Role(parts[1]) : DrbdRole.Unknown);
    }

    /// <summary>"UpToDate/DUnknown" (8.4 and 9; 9 may list several peers): local and first peer.</summary>
    public static (DiskState Local, DiskState Peer)? DiskStates(string? output)
    {
        var line = FirstLine(output);
        if (line is null)
        {
            return null;
        }

        var parts = line.Split('/');
        var local = DrbdNames.Disk(parts[0]);
        return local == DiskState.Unknown ? null : (local, parts.Length > 1 ? DrbdNames.Disk(parts[1]) : DiskState.Dunknown);
    }

    /// <summary>8.4 cstate ("Connected", "SyncSource", "WFConnection") split into connection and replication.</summary>
    public static (ConnectionState Connection, ReplicationState Replication)? ConnectionState84(string? output)
    {
        var line = FirstLine(output);
        if (line is null)
        {
            return null;
        }

        var split = DrbdNames.Split84(line);
        return split.Connection == ConnectionState.Unknown ? null : split;
    }

    /// <summary>Reads the first refusal/failure line of a drbdadm/drbdsetup error output, or null when none.</summary>
    public static DrbdCommandError? Error(string? stderr, int? exitCode = null)
    {
        if (string.IsNullOrWhiteSpace(stderr))
        {
            return null;
        }

        foreach (var raw in stderr.Split('\n'))
        {
            var line = raw.Trim();
            if (StateChange().Match(line) is { Success: true } s)
            {
                return new DrbdCommandError(int.Parse(s.Groups[1].Value, CultureInfo.InvariantCulture), null, s.Groups[2].Value.Trim(), exitCode);
            }

            if (Failure().Match(line) is { Success: true } f)
            {
                return new DrbdCommandError(null, int.Parse(f.Groups[1].Value, CultureInfo.InvariantCulture), f.Groups[2].Value.Trim(), exitCode);
            }
        }

        var first = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault() ?? "";
        return new DrbdCommandError(null, null, first, exitCode);
    }

    /// <summary>drbdadm's "not defined in your config", drbdsetup's "No such resource" and 8.4's "Device minor not allocated" all mean DRBD does not know the resource (down).</summary>
    public static bool IsUnknownResource(string? stderr) =>
        stderr is not null && (stderr.Contains("not defined in your config", StringComparison.Ordinal)
            || stderr.Contains("No such resource", StringComparison.Ordinal)
            || stderr.Contains("Unknown resource", StringComparison.Ordinal)
            || stderr.Contains("Device minor not allocated", StringComparison.Ordinal));

    private static string? FirstLine(string? output)
    {
        var line = output?.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0);
        return string.IsNullOrEmpty(line) ? null : line;
    }

    [GeneratedRegex(@"State change failed:\s*\((-?\d+)\)\s*(.*)$")]
    private static partial Regex StateChange();

    [GeneratedRegex(@"Failure:\s*\((\d+)\)\s*(.*)$")]
    private static partial Regex Failure();
}
