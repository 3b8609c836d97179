using HaMesh.Agent.Host;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Commands;

namespace HaMesh.Agent.Tests.Actions;

/// <summary>A node in memory: answers drbdadm/mount/systemctl/ip like the real tools, keeps state, can fail or block on a command.</summary>
public sealed class FakeNode : ICommandRunner, IHostStateReader
{
    private readonly Lock _lock = new();

    public string Role { get; set; } = "Secondary";

    public string Disk { get; set; } = "UpToDate";

    public bool Mounted { get; set; }

    public HashSet<string> Active { get; } = [];

    public HashSet<string> Ips { get; } = [];

    public List<string> Log { get; } = [];

    /// <summary>Command line (argv joined) → (exit code, stderr) to fail with.</summary>
    public Dictionary<string, (int Exit, string Stderr)> Failures { get; } = [];

    /// <summary>Called before each state-changing command (tests observe ordering, e.g. the generation file).</summary>
    public Action<string>? BeforeChange { get; set; }

    public TaskCompletionSource? Gate { get; set; }

    public async Task<CommandResult> RunAsync(CommandSpec spec, CancellationToken cancellationToken)
    {
        var line = string.Join(' ', spec.Arguments.Prepend(Path.GetFileName(spec.FileName)));
        if (line is "drbdadm role r0")
        {
            return new CommandResult(spec, 0, Role + "/Unknown\n", "", TimeSpan.Zero);
        }

        if (line is "drbdadm dstate r0")
        {
            return new CommandResult(spec, 0, Disk + "/DUnknown\n", "", TimeSpan.Zero);
        }

        BeforeChange?.Invoke(line);
        if (Gate is { } gate)
        {
            await gate.Task.WaitAsync(cancellationToken);
        }

        lock (_lock)
        {
            Log.Add(line);
            if (Failures.TryGetValue(line, out var f))
            {
                return new CommandResult(spec, f.Exit, "", f.Stderr, TimeSpan.Zero);
            }

            switch (spec.Arguments)
            {
                case ["primary", ..]: Role = "Primary"; break;
                case ["secondary", _]: Role = "Secondary"; break;
                case ["outdate", _]: Disk = "Outdated"; break;
                case ["-t", _, _, _]: Mounted = true; break;
                case ["start", var u]: Active.Add(u); break;
                case ["stop", var u]: Active.Remove(u); break;
                case ["addr", "add", var ip, ..]: Ips.Add(ip); break;
                case ["addr", "del", var ip, ..]: Ips.Remove(ip); break;
                case [var mp] when Path.GetFileName(spec.FileName) == "umount" && mp.StartsWith('/'): Mounted = false; break;
            }
        }

        return new CommandResult(spec, 0, "", "", TimeSpan.Zero);
    }

    public Task<IReadOnlyList<IpAliasStatus>> ReadIpAliasesAsync(string interfaceName, IReadOnlyList<string> failoverIps, CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<IpAliasStatus>>([.. failoverIps.Select(ip => new IpAliasStatus { Address = ip, Interface = interfaceName, Present = Ips.Contains(ip) })]);

    public Task<IReadOnlyList<ServiceStatus>> ReadServicesAsync(IReadOnlyList<string> units, CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<ServiceStatus>>([.. units.Select(u => new ServiceStatus { Unit = u, State = Active.Contains(u) ? ServiceState.Active : ServiceState.Inactive })]);

    public Task<bool> IsMountedAsync(string mountPoint, CancellationToken cancellationToken) => Task.FromResult(Mounted);
}
