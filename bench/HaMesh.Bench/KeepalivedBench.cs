using System.Globalization;
using System.Text;
using HaMesh.Testing.Lab;

namespace HaMesh.Bench;

/// <summary>
/// keepalived (Debian package) in the same namespaces: a VRRP instance in A (MASTER, priority 150) and
/// B (BACKUP, priority 100), advert_int 1 s (the default), VIP 10.77.0.100/32 on eth0. Each run SIGKILLs
/// A's keepalived (the whole tree) and times until B adds the VIP (ip monitor address in B), then puts
/// A back (preemption returns the VIP to A) for the next run.
/// </summary>
public static class KeepalivedBench
{
    private const string Vip = "10.77.0.100";

    public static async Task<int> RunAsync(int runs, CancellationToken ct)
    {
        if (NetnsLab.WhyNot() is { } why || !File.Exists("/usr/sbin/keepalived"))
        {
            Console.Error.WriteLine("keepalived bench: " + (NetnsLab.WhyNot() ?? "keepalived is not installed (apt-get install keepalived)"));
            return 1;
        }

        await using var lab = await NetnsLab.CreateAsync(ct);
        var dir = Directory.CreateTempSubdirectory("hamesh-keepalived-").FullName;
        var takeovers = new List<double>();
        try
        {
            string Conf(string node, string state, int priority)
            {
                var path = Path.Combine(dir, node + ".conf");
                File.WriteAllText(path, $$"""
                    global_defs {
                      router_id lab_{{node}}
                    }
                    vrrp_instance VI_1 {
                      state {{state}}
                      interface eth0
                      virtual_router_id 51
                      priority {{priority}}
                      advert_int 1
                      virtual_ipaddress {
                        {{Vip}}/32 dev eth0
                      }
                    }

                    """);
                return path;
            }

            ExternalProcess Start(string node, string conf) => new(lab.Ns(node), "/usr/sbin/keepalived",
                "--dont-fork", "--log-console", "--vrrp", "--use-file", conf,
                "--pid", Path.Combine(dir, node + ".pid"), "--vrrp_pid", Path.Combine(dir, node + ".vrrp.pid"));

            var confA = Conf("a", "MASTER", 150);
            var confB = Conf("b", "BACKUP", 100);
            using var monitorA = new ExternalProcess(lab.Ns("a"), "/usr/sbin/ip", "monitor", "address");
            using var monitorB = new ExternalProcess(lab.Ns("b"), "/usr/sbin/ip", "monitor", "address");
            var a = Start("a", confA);
            await monitorA.WaitForLineAsync(Vip, "Deleted", TimeSpan.FromSeconds(30), ct);
            using var b = Start("b", confB);
            // let B hear A's adverts and settle as BACKUP (a measurement pause, not a wait for a condition)
            await Task.Delay(TimeSpan.FromSeconds(3), TimeProvider.System, ct);
            for (var run = 1; run <= runs && !ct.IsCancellationRequested; run++)
            {
                await SettledOnAAsync(lab, ct);
                monitorB.Drain();
                // The crash: freeze parent and VRRP child (SIGSTOP), then SIGKILL both. Killed one after the other,
                // the survivor reacts (the child gets the parent-death SIGTERM and leaves gracefully with a
                // priority-0 advert, B then takes over in skew time ~0.6 s; the parent cleans the VIP up).
                var vrrpPid = int.Parse(File.ReadAllText(Path.Combine(dir, "a.vrrp.pid")).Trim(), CultureInfo.InvariantCulture);
                var t0 = TimeProvider.System.GetUtcNow();
                _ = Signal(a.Pid, 19);
                _ = Signal(vrrpPid, 19);
                _ = Signal(vrrpPid, 9);
                a.Kill();
                var t1 = await monitorB.WaitForLineAsync(Vip, "Deleted", TimeSpan.FromSeconds(30), ct);
                takeovers.Add((t1 - t0).TotalMilliseconds);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"run {run,2}: kill → VIP on B {(t1 - t0).TotalMilliseconds:0} ms"));
                a.Dispose();

                // A reboots: no VIP left on it, keepalived starts again and preempts B.
                try
                {
                    await NetnsLab.RunAsync(ct, "ip", "-n", lab.Ns("a"), "addr", "del", Vip + "/32", "dev", "eth0");
                }
                catch (InvalidOperationException ex)
                {
                    Console.WriteLine($"run {run}: the VIP was not left on A ({ex.Message})");
                }

                a = Start("a", confA);
                await monitorB.WaitForLineAsync(Vip, null, TimeSpan.FromSeconds(30), ct); // "Deleted ... 10.77.0.100" on B
                // a random phase of A's 1 s advert cycle at the next kill (HaMesh's kills fall at random points of its heartbeat too)
                await Task.Delay(TimeSpan.FromMilliseconds(1000 + Random.Shared.Next(1000)), TimeProvider.System, ct);
            }

            a.Dispose();
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }

        var sb = new StringBuilder(Stats.Header("keepalived VRRP takeover, same netns lab (A MASTER prio 150, B BACKUP prio 100, advert_int 1 s)"));
        sb.Append(CultureInfo.InvariantCulture, $"# keepalived {KeepalivedVersion()}\n");
        sb.AppendLine(Stats.Row("kill -9 keepalived on A → VIP on B", takeovers));
        Stats.Write("keepalived", sb.ToString());
        await File.WriteAllLinesAsync(Path.Combine(FailoverBench.TestPathsResults(), "keepalived-takeover.ms"), takeovers.Select(v => v.ToString("0", CultureInfo.InvariantCulture)), ct);
        Comparison.Write();
        return 0;
    }

    /// <summary>A holds the VIP and B does not (checked with ip addr, once a second, up to 20 s): the start state of a run.</summary>
    private static async Task SettledOnAAsync(NetnsLab lab, CancellationToken ct)
    {
        for (var i = 0; i < 20; i++)
        {
            var onA = (await NetnsLab.RunAsync(ct, "ip", "-n", lab.Ns("a"), "-o", "addr", "show", "dev", "eth0")).Contains(Vip + "/32", StringComparison.Ordinal);
            var onB = (await NetnsLab.RunAsync(ct, "ip", "-n", lab.Ns("b"), "-o", "addr", "show", "dev", "eth0")).Contains(Vip + "/32", StringComparison.Ordinal);
            if (onA && !onB)
            {
                return;
            }

            await Task.Delay(TimeSpan.FromSeconds(1), TimeProvider.System, ct);
        }

        throw new InvalidOperationException("keepalived did not settle with the VIP on A only");
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int Signal(int pid, int signal);

    private static string KeepalivedVersion()
    {
        // the installed Debian package's version, from dpkg's status database
        var lines = File.Exists("/var/lib/dpkg/status") ? File.ReadAllLines("/var/lib/dpkg/status") : [];
        var at = Array.IndexOf(lines, "Package: keepalived");
        var version = at < 0 ? null : lines.Skip(at).TakeWhile(l => l.Length > 0).FirstOrDefault(l => l.StartsWith("Version: ", StringComparison.Ordinal));
        return version is null ? "(version unknown)" : version["Version: ".Length..] + " (Debian package)";
    }
}
