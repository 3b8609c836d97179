using System.Globalization;
using System.Text;
using HaMesh.Protocol.V1;

namespace HaMesh.Cli.Commands;

/// <summary>Renders <see cref="ClusterStatus"/> as plain aligned tables (crm_mon / patronictl list style).</summary>
public static class StatusTable
{
    private static readonly string[] NodeHeader = ["NODE", "REACHABILITY", "LAST REPORT", "DRBD", "SERVICE NAME", "ERRORS"];
    private static readonly string[] ResourceHeader = ["RESOURCE", "GENERATION", "PRIMARY", "PREFERRED", "MAINTENANCE", "FAILOVER IP", "ROUTED TO", "OPERATION"];
    private static readonly string[] DetailHeader = ["RESOURCE", "NODE", "ROLE", "DISK", "CONNECTION", "PEER ROLE", "PEER DISK", "REPLICATION", "OUT-OF-SYNC", "GEN", "LEASE", "MOUNTED", "IP ALIAS", "SERVICES"];

    public static string Render(ClusterStatus status)
    {
        ArgumentNullException.ThrowIfNull(status);
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"Cluster {status.Cluster} (view {status.ViewVersion})\n\n");

        var nodes = new List<string[]> { NodeHeader };
        nodes.AddRange(status.Nodes.Select(n => new[]
        {
            n.Node,
            Reach(n.Reachability),
            n.LastReportAge is null ? "never" : Age(n.LastReportAge.ToTimeSpan()),
            n.LastReport?.DrbdVersionText is { Length: > 0 } v ? v : "-",
            n.ServiceName,
            n.LastReport is { ReadErrors.Count: > 0 } r ? string.Join("; ", r.ReadErrors) : "",
        }));
        Table(sb, nodes);

        sb.Append('\n');
        var resources = new List<string[]> { ResourceHeader };
        foreach (var r in status.Resources)
        {
            foreach (var ip in r.FailoverIps.DefaultIfEmpty(new FailoverIpStatus()))
            {
                resources.Add(new[]
                {
                    r.Resource,
                    r.Generation.ToString(CultureInfo.InvariantCulture),
                    Dash(r.PrimaryNode),
                    Dash(r.PreferredNode),
                    r.Maintenance ? "on" : "off",
                    Dash(ip.Ip),
                    Dash(ip.RoutedToNode is { Length: > 0 } node ? node : ip.RoutedToService is { Length: > 0 } svc ? svc : "unknown"),
                    r.Operation is null ? "-" : $"{r.Operation.Kind} → {r.Operation.TargetNode} ({r.Operation.Phase})",
                });
            }
        }

        Table(sb, resources);

        sb.Append('\n');
        var detail = new List<string[]> { DetailHeader };
        foreach (var n in status.Nodes)
        {
            foreach (var r in n.LastReport?.Resources ?? [])
            {
                var peer = r.Drbd?.Peers.FirstOrDefault();
                detail.Add(new[]
                {
                    r.Resource,
                    n.Node + (n.Reachability == Reachability.Reachable ? "" : " (stale)"),
                    r.Drbd is { Present: true } ? Name(r.Drbd.Role) : "down",
                    r.Drbd is null ? "-" : Name(r.Drbd.DiskState),
                    peer is null ? "-" : Name(peer.ConnectionState),
                    peer is null ? "-" : Name(peer.PeerRole),
                    peer is null ? "-" : Name(peer.PeerDiskState),
                    peer is null ? "-" : Name(peer.ReplicationState),
                    peer is null ? "-" : Kib(peer.OutOfSyncKib),
                    r.Generation.ToString(CultureInfo.InvariantCulture),
                    r.Lease is null ? "-" : Name(r.Lease.State),
                    r.Mounted ? "yes" : "no",
                    r.IpAliases.Count == 0 ? "-" : string.Join(",", r.IpAliases.Select(a => a.Present ? a.Address : "no")),
                    r.Services.Count == 0 ? "-" : string.Join(",", r.Services.Select(s => $"{s.Unit}={Name(s.State)}")),
                });
            }
        }

        Table(sb, detail);
        return sb.ToString();
    }

    private static string Reach(Reachability r) => r switch
    {
        Reachability.Reachable => "reachable",
        Reachability.Unreachable => "UNREACHABLE",
        Reachability.NeverSeen => "never seen",
        _ => "unknown",
    };

    private static string Dash(string? s) => string.IsNullOrEmpty(s) ? "-" : s;

    private static string Age(TimeSpan t) => t.TotalSeconds < 100
        ? t.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture) + "s ago"
        : t.ToString(@"d\.hh\:mm\:ss", CultureInfo.InvariantCulture) + " ago";

    private static string Kib(ulong kib) => kib == 0 ? "0" : kib.ToString(CultureInfo.InvariantCulture) + " KiB";

    /// <summary>DRBD's own spelling from the proto enum name: DISK_STATE_UP_TO_DATE → UpToDate.</summary>
    private static string Name<T>(T value)
        where T : struct, Enum => value.ToString() switch
        {
            "UpToDate" => "UpToDate",
            "Dunknown" => "DUnknown",
            "WfConnection" => "WFConnection",
            "WfReportParams" => "WFReportParams",
            "WfBitMapS" => "WFBitMapS",
            "WfBitMapT" => "WFBitMapT",
            "WfSyncUuid" => "WFSyncUUID",
            var s => s,
        };

    private static void Table(StringBuilder sb, List<string[]> rows)
    {
        var widths = new int[rows[0].Length];
        foreach (var row in rows)
        {
            for (var i = 0; i < row.Length; i++)
            {
                widths[i] = Math.Max(widths[i], row[i].Length);
            }
        }

        foreach (var row in rows)
        {
            for (var i = 0; i < row.Length; i++)
            {
                sb.Append(i == row.Length - 1 ? row[i] : row[i].PadRight(widths[i] + 2));
            }

            sb.Append('\n');
        }
    }
}
