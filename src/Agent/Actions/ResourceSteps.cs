using Google.Protobuf.WellKnownTypes;
using HaMesh.Agent.Host;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Commands;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Drbd;

namespace HaMesh.Agent.Actions;

/// <summary>
/// One idempotent step of a resource: a check (is it already so?), a command to make it so, and the
/// command that undoes it. Promote runs the steps forward, Demote runs the reverse steps backwards.
/// </summary>
public sealed record ResourceStep(
    string Name,
    Func<CancellationToken, Task<bool>> IsDone,
    CommandSpec Do,
    CommandSpec? Undo,
    Func<CommandResult, bool>? AlreadyDone = null);

/// <summary>The ordered steps of a resource (design §4): DRBD primary, mount, services in order, IP aliases.</summary>
public sealed class ResourceSteps(HaMeshOptions options, ICommandRunner runner, IHostStateReader host, TimeProvider time)
{
    private readonly CommandPaths _cmd = options.Agent.Commands;
    private readonly TimeSpan _timeout = options.Agent.CommandTimeout;

    /// <summary>Steps that make this node the active side, in order; each step's Undo reverses it.</summary>
    public IReadOnlyList<ResourceStep> Activation(ResourceOptions r, bool force)
    {
        var steps = new List<ResourceStep>
        {
            new("drbd-primary", ct => IsRoleAsync(r, DrbdRole.Primary, ct),
                Spec(_cmd.Drbdadm, force ? ["primary", "--force", r.DrbdResource] : ["primary", r.DrbdResource]),
                Spec(_cmd.Drbdadm, ["secondary", r.DrbdResource])),
            new("mount", ct => host.IsMountedAsync(r.MountPoint, ct),
                Spec(_cmd.Mount, ["-t", r.FsType, r.Device, r.MountPoint]),
                Spec(_cmd.Umount, [r.MountPoint])),
        };
        steps.AddRange(r.Services.Select(unit => new ResourceStep($"service:{unit}",
            async ct => (await host.ReadServicesAsync([unit], ct))[0].State == ServiceState.Active,
            Spec(_cmd.Systemctl, ["start", unit]),
            Spec(_cmd.Systemctl, ["stop", unit]))));
        steps.AddRange(r.FailoverIps.Select(ip => new ResourceStep($"ip-alias:{ip}",
            async ct => (await host.ReadIpAliasesAsync(r.Interface, [ip], ct))[0].Present,
            Spec(_cmd.Ip, ["addr", "add", Cidr(ip), "dev", r.Interface]),
            Spec(_cmd.Ip, ["addr", "del", Cidr(ip), "dev", r.Interface]))));
        return steps;
    }

    /// <summary>Steps that make this node passive, in order (the activation reversed).</summary>
    public IReadOnlyList<ResourceStep> Deactivation(ResourceOptions r) =>
        [.. Activation(r, force: false).Reverse().Select(s => new ResourceStep(
            s.Name switch { "drbd-primary" => "drbd-secondary", "mount" => "umount", var n => n + "-stop" },
            async ct => !await s.IsDone(ct),
            s.Undo!,
            s.Do))];

    /// <summary>(Re)connect DRBD after a demotion; "already connected" counts as done.</summary>
    public ResourceStep Reconnect(ResourceOptions r, bool discardMyData) => new(
        discardMyData ? "drbd-connect-discard-my-data" : "drbd-connect",
        _ => Task.FromResult(false),
        Spec(_cmd.Drbdadm, discardMyData ? ["connect", "--discard-my-data", r.DrbdResource] : ["connect", r.DrbdResource]),
        null,
        result => result.StandardError.Contains("net-config", StringComparison.Ordinal) || result.StandardError.Contains("already", StringComparison.OrdinalIgnoreCase));

    public ResourceStep Disconnect(ResourceOptions r) => new(
        "drbd-disconnect",
        _ => Task.FromResult(false),
        Spec(_cmd.Drbdadm, ["disconnect", r.DrbdResource]),
        null,
        result => result.StandardError.Contains("StandAlone", StringComparison.Ordinal));

    public ResourceStep Outdate(ResourceOptions r) => new(
        "drbd-outdate",
        async ct => (await QueryAsync(["dstate", r.DrbdResource], ct)) is { } d && DrbdadmOutputParser.DiskStates(d)?.Local is DiskState.Outdated,
        Spec(_cmd.Drbdadm, ["outdate", r.DrbdResource]),
        null);

    /// <summary>Runs one step: check, command, and after a failed command the check again. Never throws for a failing command: the result says what failed.</summary>
    public async Task<StepResult> RunAsync(ResourceStep step, CancellationToken ct)
    {
        var start = time.GetTimestamp();
        var result = new StepResult { Step = step.Name, Command = step.Do.Display };
        try
        {
            if (await step.IsDone(ct))
            {
                result.Outcome = StepOutcome.Already;
                return result;
            }

            var run = await runner.RunAsync(step.Do, ct);
            result.ExitCode = run.ExitCode;
            result.Stderr = run.StandardError.Trim();
            result.Outcome = run.Succeeded || step.AlreadyDone?.Invoke(run) == true ? StepOutcome.Done : StepOutcome.Failed;
            if (result.Outcome == StepOutcome.Failed && await step.IsDone(ct))
            {
                // The command failed but what it is for is so (another hand, e.g. a self-fence, got there between the
                // check and the command): the step is done; exit code and stderr stay in the result as evidence.
                result.Outcome = StepOutcome.Already;
            }

            if (result.Outcome == StepOutcome.Failed && DrbdadmOutputParser.Error(run.StandardError, run.ExitCode) is { StateChangeCode: not null } refusal)
            {
                result.Stderr = $"{refusal}; {result.Stderr}";
            }
        }
        catch (CommandFailedException ex)
        {
            result.Outcome = StepOutcome.Failed;
            result.ExitCode = ex.ExitCode ?? -1;
            result.Stderr = ex.Message;
        }
        finally
        {
            result.Elapsed = Duration.FromTimeSpan(time.GetElapsedTime(start));
        }

        return result;
    }

    private async Task<bool> IsRoleAsync(ResourceOptions r, DrbdRole role, CancellationToken ct) =>
        await QueryAsync(["role", r.DrbdResource], ct) is { } output && DrbdadmOutputParser.Role(output)?.Local == role;

    private async Task<string?> QueryAsync(string[] args, CancellationToken ct)
    {
        try
        {
            var result = await runner.RunAsync(Spec(_cmd.Drbdadm, args), ct);
            return result.Succeeded ? result.StandardOutput : null;
        }
        catch (CommandFailedException)
        {
            return null;
        }
    }

    private CommandSpec Spec(string exe, IReadOnlyList<string> args) => new(exe, args, _timeout);

    private static string Cidr(string ip) => IpCidr.TryParse(ip, out var c) ? c.ToString() : ip;
}
