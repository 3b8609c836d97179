using System.Globalization;
using System.Text;

namespace HaMesh.DrbdSim;

/// <summary>drbdadm / drbdsetup / sim command dispatch with DRBD's error texts and exit codes.</summary>
internal sealed class Commands(SimDaemon daemon)
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    private bool Is84 => daemon.Is84;

    private static string SsText(int code) => code switch
    {
        -1 => "Multiple primaries not allowed by config",
        -2 => "Need access to UpToDate data",
        -6 => "Refusing to be Outdated while Connected",
        -7 => "Refusing to be Primary while peer is not outdated",
        -9 => "Can not disconnect a StandAlone device",
        -12 => "Device is held open by someone",
        -25 => "No quorum",
        _ => "State change failed",
    };

    private static int SsExit(int code) => code switch
    {
        -2 => 17,
        -4 => 16,
        -16 => 5,
        _ => 11,
    };

    private static (List<string> Positional, HashSet<string> Flags) Parse(List<string> args)
    {
        var pos = new List<string>();
        var flags = new HashSet<string>(StringComparer.Ordinal);
        foreach (var a in args)
        {
            if (a == "--")
            {
                continue;
            }

            if (a.StartsWith('-'))
            {
                flags.Add(a);
            }
            else
            {
                pos.Add(a);
            }
        }

        return (pos, flags);
    }

    /// <summary>The drbdsetup argv drbdadm would run, for the `Command '...' terminated` line.</summary>
    private string SetupArgv(string cmd, SimResource r, string extra)
    {
        var minor = r.Minor.ToString(Inv);
        var peerId = r.Config.PeerNodeId.ToString(Inv);
        string line;
        if (Is84)
        {
            line = cmd switch
            {
                "primary" or "secondary" or "outdate" or "role" or "cstate" or "dstate" or "detach" or "resume-io" or "suspend-io" =>
                    $"drbdsetup-84 {cmd} {minor}",
                "connect" => $"drbdsetup-84 connect {r.Name} ipv4:{r.Config.ListenAddress}:{r.Config.ListenPort} ipv4:{r.Config.PeerAddress}:{r.Config.PeerPort}",
                _ => $"drbdsetup-84 {cmd} {r.Name}",
            };
        }
        else
        {
            line = cmd switch
            {
                "outdate" or "detach" or "resume-io" or "suspend-io" => $"drbdsetup {cmd} {minor}",
                "connect" or "disconnect" => $"drbdsetup {cmd} {r.Name} {peerId}",
                _ => $"drbdsetup {cmd} {r.Name}",
            };
        }

        return line + extra;
    }

    private string ObjName(string cmd, SimResource r) =>
        (Is84 && cmd is "primary" or "secondary" or "outdate" or "role" or "cstate" or "dstate") || (!Is84 && cmd == "outdate")
            ? r.Minor.ToString(Inv)
            : r.Name;

    private CommandResult StateFailed(bool viaAdm, string cmd, SimResource r, int ss, string extra, string? kernelInfo = null)
    {
        var exit = SsExit(ss);
        var sb = new StringBuilder();
        sb.Append(Inv, $"{ObjName(cmd, r)}: State change failed: ({ss}) {SsText(ss)}\n");
        if (kernelInfo is not null)
        {
            sb.Append("additional info from kernel:\n").Append(kernelInfo);
        }

        if (viaAdm)
        {
            sb.Append(Inv, $"Command '{SetupArgv(cmd, r, extra)}' terminated with exit code {exit}\n");
        }

        return new CommandResult(exit, "", sb.ToString());
    }

    private CommandResult Failure(bool viaAdm, string cmd, SimResource r, int code, string text, string extra)
    {
        var sb = new StringBuilder();
        sb.Append(Inv, $"{ObjName(cmd, r)}: Failure: ({code}) {text}\n");
        if (viaAdm)
        {
            sb.Append(Inv, $"Command '{SetupArgv(cmd, r, extra)}' terminated with exit code 10\n");
        }

        return new CommandResult(10, "", sb.ToString());
    }

    private CommandResult NotUp(bool viaAdm, string cmd, SimResource r)
    {
        if (Is84)
        {
            var sb = new StringBuilder();
            sb.Append(Inv, $"{r.Minor}: Failure: (127) Device minor not allocated\nadditional info from kernel:\nunknown minor\n");
            if (viaAdm)
            {
                sb.Append(Inv, $"Command '{SetupArgv(cmd, r, "")}' terminated with exit code 10\n");
            }

            return new CommandResult(10, "", sb.ToString());
        }

        var t = $"{r.Name}: No such resource\n";
        if (viaAdm)
        {
            t += $"Command '{SetupArgv(cmd, r, "")}' terminated with exit code 10\n";
        }

        return new CommandResult(10, "", t);
    }

    private static string OpenersInfo(SimResource r) =>
        string.Create(Inv, $"/dev/drbd{r.Minor} open_ro_cnt:0, open_rw_cnt:1; list of openers follows\ndrbd{r.Minor} opened by mount (pid {Environment.ProcessId})\n");

    public async Task<CommandResult> DrbdadmAsync(List<string> args, CancellationToken ct)
    {
        var (pos, flags) = Parse(args);
        if (pos.Count == 0)
        {
            return new CommandResult(20, "", "USAGE: drbdadm COMMAND [OPTION...] {all|RESOURCE...}\n");
        }

        var cmd = pos[0];
        var names = pos.Skip(1).ToList();
        if (names.Count == 0 || names.Contains("all"))
        {
            names = [.. daemon.Resources.Select(r => r.Name)];
        }

        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        var exit = 0;
        foreach (var name in names)
        {
            if (!daemon.Config.Resources.Any(r => r.Name == name))
            {
                return new CommandResult(1, "", $"'{name}' not defined in your config (for this host).\n");
            }

            var res = await OneAsync(true, cmd, daemon.Resource(name), flags, ct);
            stdout.Append(res.Stdout);
            stderr.Append(res.Stderr);
            if (res.ExitCode != 0)
            {
                exit = res.ExitCode;
                break;
            }
        }

        return new CommandResult(exit, stdout.ToString(), stderr.ToString());
    }

    public async Task<CommandResult> DrbdsetupAsync(List<string> args, CancellationToken ct)
    {
        var (pos, flags) = Parse(args);
        if (pos.Count == 0)
        {
            return new CommandResult(20, "", "USAGE: drbdsetup command {arguments} [options]\n");
        }

        var cmd = pos[0];
        if (cmd is "status" or "events2")
        {
            var list = new List<ResourceSnapshot>();
            if (pos.Count > 1 && pos[1] != "all")
            {
                var r = Lookup(pos[1]);
                if (r is null || !r.Snapshot().Up)
                {
                    return new CommandResult(10, "", $"{pos[1]}: No such resource\n");
                }

                list.Add(r.Snapshot());
            }
            else
            {
                list.AddRange(daemon.Resources.Select(r => r.Snapshot()).Where(s => s.Up));
            }

            if (cmd == "events2")
            {
                return new CommandResult(0, Output.Events2Now(list, flags.Contains("--statistics")), "");
            }

            if (flags.Contains("--json"))
            {
                return new CommandResult(0, Output.StatusJson(list), "");
            }

            if (list.Count == 0)
            {
                return new CommandResult(0, "# No currently configured DRBD found.\n", "");
            }

            return new CommandResult(0, string.Concat(list.Select(s => Output.StatusText(s, Is84))), "");
        }

        if (pos.Count < 2)
        {
            return new CommandResult(20, "", "Missing argument\n");
        }

        var res = Lookup(pos[1]);
        if (res is null)
        {
            return new CommandResult(10, "", $"{pos[1]}: No such resource\n");
        }

        return await OneAsync(false, cmd, res, flags, ct);
    }

    private SimResource? Lookup(string nameOrMinor)
    {
        var r = daemon.Resources.FirstOrDefault(x => x.Name == nameOrMinor);
        if (r is null && int.TryParse(nameOrMinor, NumberStyles.None, Inv, out var minor))
        {
            r = daemon.Resources.FirstOrDefault(x => x.Minor == minor);
        }

        return r;
    }

    private async Task<CommandResult> OneAsync(bool viaAdm, string cmd, SimResource r, HashSet<string> flags, CancellationToken ct)
    {
        var s = r.Snapshot();
        if (!s.Up && cmd is not ("up" or "adjust" or "down" or "attach"))
        {
            return NotUp(viaAdm, cmd, r);
        }

        switch (cmd)
        {
            case "status":
                return new CommandResult(0, Output.StatusText(s, Is84), "");
            case "role":
                return new CommandResult(0, Is84 ? $"{s.Role}/{s.PeerRole}\n" : $"{s.Role}\n", "");
            case "cstate":
                return new CommandResult(0, (Is84 ? s.Cs84 : s.Connection) + "\n", "");
            case "dstate":
                return new CommandResult(0, $"{s.Disk}/{s.PeerDisk}\n", "");
            case "primary":
                {
                    var force = flags.Contains("--force") || flags.Contains("--overwrite-data-of-peer");
                    var rv = await r.PromoteAsync(force, ct);
                    return rv == 0 ? CommandResult.Ok : StateFailed(viaAdm, cmd, r, rv, force ? " --force" : "");
                }

            case "secondary":
                {
                    var rv = r.Demote(flags.Contains("--force"));
                    return rv == 0
                        ? CommandResult.Ok
                        : StateFailed(viaAdm, cmd, r, rv, "", Is84 ? null : OpenersInfo(r));
                }

            case "outdate":
                {
                    var rv = r.Outdate();
                    return rv == 0 ? CommandResult.Ok : StateFailed(viaAdm, cmd, r, rv, "");
                }

            case "disconnect":
                await r.DisconnectAsync();
                return CommandResult.Ok;
            case "connect":
                {
                    var discard = flags.Contains("--discard-my-data");
                    var rv = r.Connect(discard);
                    return rv == 123
                        ? Failure(viaAdm, cmd, r, 123, "--discard-my-data not allowed when primary.", " --discard-my-data")
                        : CommandResult.Ok;
                }

            case "up":
                r.Up();
                return CommandResult.Ok;
            case "adjust":
                r.Up();
                if (!r.Snapshot().WantConnect)
                {
                    r.Connect(false);
                }

                return CommandResult.Ok;
            case "down":
                {
                    var rv = await r.DownAsync();
                    return rv == 0 ? CommandResult.Ok : StateFailed(viaAdm, "secondary", r, rv, "");
                }

            case "detach":
                r.Detach();
                return CommandResult.Ok;
            case "resume-io":
                r.ResumeIo();
                return CommandResult.Ok;
            case "suspend-io":
                r.SuspendIo();
                return CommandResult.Ok;
            default:
                return new CommandResult(20, "", $"'{cmd}' is not a supported command of this simulator\n");
        }
    }

    private static string? Field(ResourceSnapshot s, string name) => name switch
    {
        "role" => s.Role,
        "disk" => s.Disk,
        "connection" => s.Connection,
        "replication" => s.Replication,
        "peer-role" => s.PeerRole,
        "peer-disk" => s.PeerDisk,
        "suspended" => Output.SuspendedList(s),
        "out-of-sync" => s.OutOfSyncKiB.ToString(Inv),
        "split-brain" => Output.Yn(s.SplitBrain),
        _ => null,
    };

    /// <summary>sim wait RES [--timeout-ms N] field=value...: blocks until every condition holds (exit 0) or times out (exit 1).</summary>
    private async Task<CommandResult> WaitAsync(SimResource r, List<string> conds, CancellationToken ct)
    {
        var timeout = TimeSpan.FromSeconds(30);
        var pairs = new List<(string Field, string Value)>();
        for (var i = 0; i < conds.Count; i++)
        {
            if (conds[i] == "--timeout-ms" && i + 1 < conds.Count)
            {
                timeout = TimeSpan.FromMilliseconds(int.Parse(conds[++i], Inv));
                continue;
            }

            var eq = conds[i].IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 || Field(r.Snapshot(), conds[i][..eq]) is null)
            {
                return new CommandResult(2, "", "bad condition " + conds[i] + "\n");
            }

            pairs.Add((conds[i][..eq], conds[i][(eq + 1)..]));
        }

        try
        {
            await r.WaitForAsync(s => pairs.All(p => Field(s, p.Field) == p.Value), ct).WaitAsync(timeout, daemon.Time, ct);
            return CommandResult.Ok;
        }
        catch (TimeoutException)
        {
            return new CommandResult(1, "", "timeout\n");
        }
    }

    /// <summary>sim write RES KEY VALUE | sim read RES KEY | sim dump RES | sim wait RES field=value....</summary>
    public async Task<CommandResult> SimAsync(List<string> args, CancellationToken ct)
    {
        if (args.Count < 2 || daemon.Resources.FirstOrDefault(r => r.Name == args[1]) is not { } r)
        {
            return new CommandResult(2, "", "usage: sim write|read|dump RESOURCE ...\n");
        }

        switch (args[0])
        {
            case "write" when args.Count == 4:
                var w = await r.WriteAsync(args[2], args[3], ct);
                return w.Acknowledged ? CommandResult.Ok : new CommandResult(5, "", w.Error + "\n");
            case "read" when args.Count == 3:
                var v = r.Read(args[2]);
                return v is null ? new CommandResult(1, "", "no such key\n") : new CommandResult(0, v + "\n", "");
            case "wait" when args.Count >= 3:
                return await WaitAsync(r, args.Skip(2).ToList(), ct);
            case "dump":
                var sb = new StringBuilder();
                foreach (var kv in r.ReadAll().OrderBy(k => k.Key, StringComparer.Ordinal))
                {
                    sb.Append(kv.Key).Append('=').Append(kv.Value).Append('\n');
                }

                return new CommandResult(0, sb.ToString(), "");
            default:
                return new CommandResult(2, "", "usage: sim write|read|dump RESOURCE ...\n");
        }
    }
}
