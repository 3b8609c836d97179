namespace HaMesh.Testing.Processes;

/// <summary>
/// A folder of stand-in executables (drbdadm, drbdsetup, ip, systemctl, mount, umount) that print
/// recorded outputs, for running the real agent where no DRBD exists. Recordings are keyed by argv.
/// </summary>
public sealed class StandIns : IDisposable
{
    // Prints the recorded output for the exact argv (recordings/<name>_<arg>_<arg>.out, exit code in
    // .rc, stderr in .err) and nothing else; an unrecorded call fails loudly.
    private const string Script = """
        #!/bin/sh
        dir=$(dirname "$0")
        key=$(basename "$0")
        for a in "$@"; do key="${key}_$(printf '%s' "$a" | tr '/ ' '%+')"; done
        if [ ! -f "$dir/recordings/$key.out" ]; then
          echo "stand-in: no recording for $key" >&2
          exit 1
        fi
        cat "$dir/recordings/$key.out"
        if [ -f "$dir/recordings/$key.err" ]; then cat "$dir/recordings/$key.err" >&2; fi
        if [ -f "$dir/recordings/$key.rc" ]; then exit "$(cat "$dir/recordings/$key.rc")"; fi
        exit 0

        """;

    private static readonly string[] Tools = ["drbdadm", "drbdsetup", "ip", "systemctl", "mount", "umount"];

    public StandIns()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("hamesh-standins-").FullName;
        System.IO.Directory.CreateDirectory(Path.Combine(Directory, "recordings"));
        foreach (var tool in Tools)
        {
            var path = Path.Combine(Directory, tool);
            File.WriteAllText(path, Script);
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        ProcDrbd = Path.Combine(Directory, "proc-drbd");
    }

    public string Directory { get; }

    public string ProcDrbd { get; }

    public string PathOf(string tool) => Path.Combine(Directory, tool);

    /// <summary>Records what <c>tool args...</c> prints and returns.</summary>
    public StandIns Record(string tool, string[] args, string stdout, int exitCode = 0, string stderr = "")
    {
        var key = tool + string.Concat(args.Select(a => "_" + a.Replace('/', '%').Replace(' ', '+')));
        var baseName = Path.Combine(Directory, "recordings", key);
        File.WriteAllText(baseName + ".out", stdout);
        if (exitCode != 0)
        {
            File.WriteAllText(baseName + ".rc", exitCode.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        if (stderr.Length > 0)
        {
            File.WriteAllText(baseName + ".err", stderr);
        }

        return this;
    }

    /// <summary>A DRBD 8.4 node of a connected pair, as /proc/drbd and drbdadm show it, with its IP alias and one service.</summary>
    public static StandIns Drbd84Node(string role, string peerRole, bool aliasPresent, string serviceState)
    {
        var s = new StandIns();
        File.WriteAllText(s.ProcDrbd, $"""
            version: 8.4.11 (api:1/proto:86-101)
            srcversion: F73C670A7EC572DB9CF3E5B 
             0: cs:Connected ro:{role}/{peerRole} ds:UpToDate/UpToDate C r-----
                ns:0 nr:0 dw:0 dr:0 al:8 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0

            """);
        s.Record("drbdadm", ["role", "r0"], $"{role}/{peerRole}\n")
         .Record("drbdadm", ["cstate", "r0"], "Connected\n")
         .Record("drbdadm", ["dstate", "r0"], "UpToDate/UpToDate\n")
         .Record("ip", ["-j", "addr", "show", "dev", "eth0"], IpJson(aliasPresent))
         .Record("systemctl", ["is-active", "postgresql.service"], serviceState + "\n", serviceState == "active" ? 0 : 3);
        return s;
    }

    private static string IpJson(bool alias) =>
        "[{\"ifindex\":2,\"ifname\":\"eth0\",\"flags\":[\"BROADCAST\",\"MULTICAST\",\"UP\",\"LOWER_UP\"],\"mtu\":1500,\"operstate\":\"UP\",\"addr_info\":[{\"family\":\"inet\",\"local\":\"198.51.100.7\",\"prefixlen\":24,\"scope\":\"global\",\"label\":\"eth0\"}"
        + (alias ? ",{\"family\":\"inet\",\"local\":\"203.0.113.10\",\"prefixlen\":32,\"scope\":\"global\",\"label\":\"eth0\"}" : "")
        + "]}]\n";

    /// <summary>Environment overrides that point an agent process at these stand-ins.</summary>
    public static Dictionary<string, string> AgentEnvironment(string node, int port, StandIns s) => new()
    {
        ["HaMesh__Agent__Node"] = node,
        ["HaMesh__Agent__Listen"] = $"http://127.0.0.1:{port}",
        ["HaMesh__Agent__StateDirectory"] = Path.Combine(s.Directory, "state"),
        ["HaMesh__Agent__Commands__Drbdadm"] = s.PathOf("drbdadm"),
        ["HaMesh__Agent__Commands__Drbdsetup"] = s.PathOf("drbdsetup"),
        ["HaMesh__Agent__Commands__Ip"] = s.PathOf("ip"),
        ["HaMesh__Agent__Commands__Systemctl"] = s.PathOf("systemctl"),
        ["HaMesh__Agent__Commands__Mount"] = s.PathOf("mount"),
        ["HaMesh__Agent__Commands__Umount"] = s.PathOf("umount"),
        ["HaMesh__Agent__Commands__ProcDrbd"] = s.ProcDrbd,
    };

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);
}
