using System.Globalization;
using System.Text;

namespace HaMesh.DrbdSim;

/// <summary>Exit code plus stdout and stderr of one stand-in command.</summary>
public sealed record CommandResult(int ExitCode, string Stdout, string Stderr)
{
    public static readonly CommandResult Ok = new(0, "", "");
}

/// <summary>Renders DRBD 9 and 8.4 outputs from snapshots (formats of specs/drbd.md and the 8.4 captures).</summary>
internal static class Output
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static string Yn(bool b) => b ? "yes" : "no";

    private static string Tf(bool b) => b ? "true" : "false";

    public static string SuspendedList(ResourceSnapshot s)
    {
        var parts = new List<string>();
        if (s.SuspendedUser)
        {
            parts.Add("user");
        }

        if (s.SuspendedFencing)
        {
            parts.Add("fencing");
        }

        if (s.SuspendedQuorum)
        {
            parts.Add("quorum");
        }

        return parts.Count == 0 ? "no" : string.Join(',', parts);
    }

    public static string Pct(double v) => v.ToString("0.00", Inv);

    /// <summary>`drbdsetup status` / `drbdadm status` text (non-verbose).</summary>
    public static string StatusText(ResourceSnapshot s, bool is84)
    {
        var sb = new StringBuilder();
        sb.Append(s.Name).Append(" role:").Append(s.Role);
        if (s.Suspended)
        {
            sb.Append(" suspended:").Append(SuspendedList(s));
        }

        if (s.ForceIoFailures)
        {
            sb.Append(" force-io-failures:yes");
        }

        sb.Append('\n');
        sb.Append("  disk:").Append(s.Disk);
        if (!is84 && !s.Quorum)
        {
            sb.Append(" quorum:no");
        }

        if (!is84)
        {
            sb.Append(" open:").Append(Yn(s.Open));
        }

        sb.Append('\n');
        var conn = is84 ? "peer" : s.PeerName;
        sb.Append("  ").Append(conn);
        if (!s.Connected)
        {
            sb.Append(" connection:").Append(s.Connection).Append('\n');
        }
        else
        {
            sb.Append(" role:").Append(s.PeerRole).Append('\n');
            sb.Append("   ");
            if (s.Replication != "Established")
            {
                sb.Append(" replication:").Append(s.Replication);
            }

            sb.Append(" peer-disk:").Append(s.PeerDisk);
            if (s.Syncing)
            {
                sb.Append(" done:").Append(Pct(s.PercentDone));
            }

            sb.Append('\n');
        }

        sb.Append('\n');
        return sb.ToString();
    }

    /// <summary>`drbdsetup status --json` with the byte-level quirks of spec §1a.</summary>
    public static string StatusJson(IReadOnlyList<ResourceSnapshot> list)
    {
        var sb = new StringBuilder();
        sb.Append("[\n");
        for (var i = 0; i < list.Count; i++)
        {
            var s = list[i];
            var established = s.Connected;
            sb.Append("{\n");
            sb.Append(Inv, $"  \"name\": \"{s.Name}\",\n");
            sb.Append(Inv, $"  \"node-id\": {s.NodeId},\n");
            sb.Append(Inv, $"  \"role\": \"{s.Role}\",\n");
            sb.Append(Inv, $"  \"suspended\": {Tf(s.Suspended)},\n");
            sb.Append(Inv, $"  \"suspended-user\": {Tf(s.SuspendedUser)},\n");
            sb.Append("  \"suspended-no-data\": false,\n");
            sb.Append(Inv, $"  \"suspended-fencing\": {Tf(s.SuspendedFencing)},\n");
            sb.Append(Inv, $"  \"suspended-quorum\": {Tf(s.SuspendedQuorum)},\n");
            sb.Append(Inv, $"  \"force-io-failures\": {Tf(s.ForceIoFailures)},\n");
            sb.Append("  \"write-ordering\": \"flush\",\n");
            sb.Append("  \"devices\": [\n");
            sb.Append("    {\n");
            sb.Append("      \"volume\": 0,\n");
            sb.Append(Inv, $"      \"minor\": {s.Minor},\n");
            sb.Append(Inv, $"      \"disk-state\": \"{s.Disk}\",\n");
            sb.Append(Inv, $"      \"client\": {Tf(s.Disk == "Diskless")},\n");
            sb.Append(Inv, $"      \"open\": {Tf(s.Open)},\n");
            sb.Append(Inv, $"      \"quorum\": {Tf(s.Quorum)},\n");
            sb.Append(Inv, $"      \"size\": {s.SizeKiB},\n");
            sb.Append(Inv, $"      \"read\": {s.ReadKiB},\n");
            sb.Append(Inv, $"      \"written\": {s.WrittenKiB},\n");
            sb.Append("      \"al-writes\": 0,\n");
            sb.Append("      \"bm-writes\": 0,\n");
            sb.Append("      \"upper-pending\": 0,\n");
            sb.Append("      \"lower-pending\": 0\n");
            sb.Append("    } ],\n");
            sb.Append("  \"connections\": [\n");
            sb.Append("    {\n");
            sb.Append(Inv, $"      \"peer-node-id\": {s.PeerNodeId},\n");
            sb.Append(Inv, $"      \"name\": \"{s.PeerName}\",\n");
            sb.Append(Inv, $"      \"connection-state\": \"{s.Connection}\", \n");
            sb.Append("      \"congested\": false,\n");
            sb.Append(Inv, $"      \"peer-role\": \"{s.PeerRole}\",\n");
            sb.Append("      \"tls\": false,\n");
            sb.Append("      \"ap-in-flight\": 0,\n");
            sb.Append("      \"rs-in-flight\": 0,\n");
            sb.Append("      \"paths\": [\n");
            sb.Append("        {\n");
            sb.Append("          \"this_host\": {\n");
            sb.Append(Inv, $"            \"address\": \"{s.ListenAddress}\",\n");
            sb.Append(Inv, $"            \"port\": {s.ListenPort},\n");
            sb.Append("            \"family\": \"ipv4\"\n");
            sb.Append("          },\n");
            sb.Append("          \"remote_host\": {\n");
            sb.Append(Inv, $"            \"address\": \"{s.PeerAddress}\",\n");
            sb.Append(Inv, $"            \"port\": {s.PeerPort},\n");
            sb.Append("            \"family\": \"ipv4\"\n");
            sb.Append("          },\n");
            sb.Append(Inv, $"          \"established\": {Tf(established)}\n");
            sb.Append("        } ],\n");
            sb.Append("      \"peer_devices\": [\n");
            sb.Append("        {\n");
            sb.Append("          \"volume\": 0,\n");
            sb.Append(Inv, $"          \"replication-state\": \"{(s.Connected ? s.Replication : "Off")}\",\n");
            sb.Append(Inv, $"          \"peer-disk-state\": \"{s.PeerDisk}\",\n");
            sb.Append(Inv, $"          \"peer-client\": {Tf(s.PeerDisk == "Diskless")},\n");
            sb.Append("          \"resync-suspended\": \"no\",\n");
            sb.Append(Inv, $"          \"received\": {s.ReceivedKiB},\n");
            sb.Append(Inv, $"          \"sent\": {s.SentKiB},\n");
            sb.Append(Inv, $"          \"out-of-sync\": {s.OutOfSyncKiB},\n");
            sb.Append("          \"pending\": 0,\n");
            sb.Append("          \"unacked\": 0,\n");
            sb.Append("          \"has-sync-details\": false,\n");
            sb.Append("          \"has-online-verify-details\": false,\n");
            sb.Append(Inv, $"          \"percent-in-sync\": {Pct(s.PercentInSync)}\n");
            sb.Append("        } ]\n");
            sb.Append("    } ]\n");
            sb.Append(i == list.Count - 1 ? "}\n" : "},\n");
        }

        sb.Append("]\n");
        return sb.ToString();
    }

    /// <summary>`drbdsetup events2 --now [--statistics]` (exists lines then `exists -`).</summary>
    public static string Events2Now(IReadOnlyList<ResourceSnapshot> list, bool statistics)
    {
        var sb = new StringBuilder();
        foreach (var s in list)
        {
            var score = s.Disk == "UpToDate" ? 10101 : 0;
            sb.Append(Inv, $"exists resource name:{s.Name} role:{s.Role} suspended:{SuspendedList(s)} force-io-failures:{Yn(s.ForceIoFailures)} may_promote:{Yn(s.MayPromote)} promotion_score:{score}");
            if (statistics)
            {
                sb.Append(" write-ordering:flush");
            }

            sb.Append('\n');
            sb.Append(Inv, $"exists device name:{s.Name} volume:0 minor:{s.Minor} backing_dev:{(s.Disk == "Diskless" ? "none" : "/dev/sim" + s.Minor.ToString(Inv))} disk:{s.Disk} client:{Yn(s.Disk == "Diskless")} open:{Yn(s.Open)} quorum:{Yn(s.Quorum)}");
            if (statistics)
            {
                sb.Append(Inv, $" size:{s.SizeKiB} read:{s.ReadKiB} written:{s.WrittenKiB} al-writes:0 bm-writes:0 upper-pending:0 lower-pending:0 al-suspended:no blocked:no");
            }

            sb.Append('\n');
            sb.Append(Inv, $"exists connection name:{s.Name} peer-node-id:{s.PeerNodeId} conn-name:{s.PeerName} connection:{s.Connection} role:{s.PeerRole}");
            if (statistics)
            {
                sb.Append(" congested:no");
            }

            sb.Append('\n');
            sb.Append(Inv, $"exists peer-device name:{s.Name} peer-node-id:{s.PeerNodeId} conn-name:{s.PeerName} volume:0 replication:{(s.Connected ? s.Replication : "Off")} peer-disk:{s.PeerDisk} peer-client:{Yn(s.PeerDisk == "Diskless")} resync-suspended:no");
            if (s.Syncing)
            {
                sb.Append(" done:").Append(Pct(s.PercentDone));
            }

            if (statistics)
            {
                sb.Append(Inv, $" received:{s.ReceivedKiB} sent:{s.SentKiB} out-of-sync:{s.OutOfSyncKiB} pending:0 unacked:0");
            }

            sb.Append('\n');
            sb.Append(Inv, $"exists path name:{s.Name} peer-node-id:{s.PeerNodeId} conn-name:{s.PeerName} local:ipv4:{s.ListenAddress}:{s.ListenPort} peer:ipv4:{s.PeerAddress}:{s.PeerPort} established:{Yn(s.Connected)}\n");
        }

        sb.Append("exists -\n");
        return sb.ToString();
    }

    /// <summary>/proc/drbd (8.4.11 layout of the captures; 9 prints only the version header).</summary>
    public static string ProcDrbd(IEnumerable<ResourceSnapshot> list, bool is84)
    {
        var sb = new StringBuilder();
        if (!is84)
        {
            sb.Append("version: 9.2.12 (api:2/proto:86-122)\n");
            sb.Append("GIT-hash: 0000000000000000000000000000000000000000 build by hamesh-drbdsim\n");
            sb.Append("Transports (api:21): tcp (9.2.12)\n");
            return sb.ToString();
        }

        sb.Append("version: 8.4.11 (api:1/proto:86-101)\n");
        sb.Append("srcversion: F73C670A7EC572DB9CF3E5B \n");
        foreach (var s in list.Where(x => x.Up).OrderBy(x => x.Minor))
        {
            var proto = s.Connection == "StandAlone" ? ' ' : 'C';
            var susp = s.Suspended ? 's' : 'r';
            sb.Append(Inv, $"{s.Minor,2}: cs:{s.Cs84} ro:{s.Role}/{s.PeerRole} ds:{s.Disk}/{s.PeerDisk} {proto} {susp}----s\n");
            sb.Append(Inv, $"    ns:{s.SentKiB} nr:{s.ReceivedKiB} dw:{s.WrittenKiB} dr:{s.ReadKiB} al:8 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:{s.OutOfSyncKiB}\n");
        }

        return sb.ToString();
    }
}
