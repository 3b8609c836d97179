namespace HaMesh.Testing.Processes;

/// <summary>
/// Stateful stand-ins for a two-node DRBD 8.4 pair on loopback (demo and process tests): drbdadm,
/// mount, umount, systemctl and ip keep per-node state in files and print the real output formats and
/// refusals (multiple primaries -1, no UpToDate data -2, held open -12) and regenerate the node's
/// /proc/drbd and mountinfo. A node's peer is "there" while its <c>up</c> file exists: removing it is
/// what a dead host looks like to DRBD (the survivor sees WFConnection, peer Unknown/DUnknown).
/// </summary>
public sealed class DrbdStandIns : IDisposable
{
    private static readonly string[] Tools = ["drbdadm", "drbdsetup", "mount", "umount", "systemctl", "ip"];

    private const string Script = """
        #!/bin/sh
        # HaMesh loopback stand-in: one script, dispatched on its name. State lives next to it.
        me=$(cd "$(dirname "$0")" && pwd); st="$me/state"; peer="$me/../$(cat "$me/peer")/state"
        tool=$(basename "$0")
        get() { cat "$1" 2>/dev/null || echo "$2"; }
        peer_up() { [ -f "$peer/up" ] && [ -f "$st/up" ] && [ "$(get "$st/link" up)" = up ]; }
        cs() { if [ "$(get "$st/link" up)" = standalone ]; then echo StandAlone; elif peer_up; then echo Connected; else echo WFConnection; fi; }
        prole() { if peer_up; then get "$peer/role" Secondary; else echo Unknown; fi; }
        pdisk() { if peer_up; then get "$peer/disk" UpToDate; else echo DUnknown; fi; }
        proc() {
          printf 'version: 8.4.11 (api:1/proto:86-101)\nsrcversion: F73C670A7EC572DB9CF3E5B \n 0: cs:%s ro:%s/%s ds:%s/%s C r-----\n    ns:0 nr:0 dw:0 dr:0 al:8 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n' \
            "$(cs)" "$(get "$st/role" Secondary)" "$(prole)" "$(get "$st/disk" UpToDate)" "$(pdisk)" > "$st/proc-drbd"
        }
        case "$tool $1" in
          "drbdadm role") echo "$(get "$st/role" Secondary)/$(prole)";;
          "drbdadm cstate") cs;;
          "drbdadm dstate") echo "$(get "$st/disk" UpToDate)/$(pdisk)";;
          "drbdadm primary")
            if [ "$(prole)" = Primary ]; then echo "0: State change failed: (-1) Multiple primaries not allowed by config" >&2; echo "Command 'drbdsetup-84 primary 0' terminated with exit code 11" >&2; exit 11; fi
            if [ "$(get "$st/disk" UpToDate)" != UpToDate ] && [ "$2" != "--force" ]; then echo "0: State change failed: (-2) Need access to UpToDate data" >&2; echo "Command 'drbdsetup-84 primary 0' terminated with exit code 17" >&2; exit 17; fi
            echo Primary > "$st/role";;
          "drbdadm secondary")
            if [ -s "$st/mountinfo" ]; then echo "0: State change failed: (-12) Device is held open by someone" >&2; echo "Command 'drbdsetup-84 secondary 0' terminated with exit code 11" >&2; exit 11; fi
            echo Secondary > "$st/role";;
          "drbdadm connect")
            if [ "$(get "$st/link" up)" = up ]; then echo "0: Failure: (125) Device has a net-config (use disconnect first)" >&2; exit 10; fi
            echo up > "$st/link";;
          "drbdadm disconnect") echo standalone > "$st/link";;
          "drbdadm outdate") echo Outdated > "$st/disk";;
          "drbdadm suspend-io") ;;
          "mount -t") printf '95 22 147:0 / %s rw,relatime - %s %s rw\n' "$4" "$2" "$3" > "$st/mountinfo";;
          "umount "*) : > "$st/mountinfo";;
          "systemctl is-active") shift; rc=0; for u in "$@"; do if grep -qx "$u" "$st/services" 2>/dev/null; then echo active; else echo inactive; rc=3; fi; done; exit $rc;;
          "systemctl start") grep -qx "$2" "$st/services" 2>/dev/null || echo "$2" >> "$st/services";;
          "systemctl stop") grep -vx "$2" "$st/services" > "$st/services.new" 2>/dev/null; mv "$st/services.new" "$st/services";;
          "ip -j")
            printf '[{"ifindex":1,"ifname":"%s","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}' "$6"
            while read -r a; do [ -n "$a" ] && printf ',{"family":"inet","local":"%s","prefixlen":%s}' "${a%/*}" "${a#*/}"; done < "$st/ips"
            printf ']}]\n';;
          "ip addr") if [ "$2" = add ]; then echo "$3" >> "$st/ips"; else grep -vx "$3" "$st/ips" > "$st/ips.new"; mv "$st/ips.new" "$st/ips"; fi;;
          *) echo "stand-in: unsupported: $tool $*" >&2; exit 1;;
        esac
        proc
        """;

    public DrbdStandIns(string node, string peer, string root, bool primary)
    {
        Directory = Path.Combine(root, node);
        State = Path.Combine(Directory, "state");
        System.IO.Directory.CreateDirectory(State);
        File.WriteAllText(Path.Combine(Directory, "peer"), peer);
        foreach (var tool in Tools)
        {
            var path = Path.Combine(Directory, tool);
            File.WriteAllText(path, Script);
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        File.WriteAllText(Path.Combine(State, "role"), primary ? "Primary\n" : "Secondary\n");
        File.WriteAllText(Path.Combine(State, "disk"), "UpToDate\n");
        File.WriteAllText(Path.Combine(State, "services"), primary ? "postgresql.service\n" : "");
        File.WriteAllText(Path.Combine(State, "ips"), primary ? "127.0.0.10/32\n" : "");
        File.WriteAllText(Path.Combine(State, "mountinfo"), primary ? "95 22 147:0 / /srv/db rw,relatime - ext4 /dev/drbd0 rw\n" : "");
        File.WriteAllText(Path.Combine(State, "up"), "");
    }

    public string Directory { get; }

    public string State { get; }

    public string ProcDrbd => Path.Combine(State, "proc-drbd");

    /// <summary>The host is gone (its DRBD with it): the peer's DRBD stops seeing it.</summary>
    public void HostDown() => File.Delete(Path.Combine(State, "up"));

    public void HostUp() => File.WriteAllText(Path.Combine(State, "up"), "");

    /// <summary>Refreshes /proc/drbd (done by every stand-in call; call once after creating both nodes).</summary>
    public void Refresh()
    {
        var psi = new System.Diagnostics.ProcessStartInfo(Path.Combine(Directory, "drbdadm")) { UseShellExecute = false, RedirectStandardOutput = true };
        psi.ArgumentList.Add("role");
        psi.ArgumentList.Add("r0");
        using var p = System.Diagnostics.Process.Start(psi)!;
        p.WaitForExit();
    }

    public Dictionary<string, string> AgentEnvironment(string node, int port) => new()
    {
        ["HaMesh__Agent__Node"] = node,
        ["HaMesh__Agent__Listen"] = $"http://127.0.0.1:{port};http://127.0.0.10:{port}",
        ["HaMesh__Agent__StateDirectory"] = Path.Combine(Directory, "agent-state"),
        ["HaMesh__Agent__Commands__Drbdadm"] = Path.Combine(Directory, "drbdadm"),
        ["HaMesh__Agent__Commands__Drbdsetup"] = Path.Combine(Directory, "drbdsetup"),
        ["HaMesh__Agent__Commands__Ip"] = Path.Combine(Directory, "ip"),
        ["HaMesh__Agent__Commands__Systemctl"] = Path.Combine(Directory, "systemctl"),
        ["HaMesh__Agent__Commands__Mount"] = Path.Combine(Directory, "mount"),
        ["HaMesh__Agent__Commands__Umount"] = Path.Combine(Directory, "umount"),
        ["HaMesh__Agent__Commands__ProcDrbd"] = ProcDrbd,
        ["HaMesh__Agent__Commands__MountInfo"] = Path.Combine(State, "mountinfo"),
    };

    public void Dispose()
    {
    }
}
