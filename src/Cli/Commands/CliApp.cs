using System.CommandLine;
using Grpc.Core;
using HaMesh.Shared.Configuration;

namespace HaMesh.Cli.Commands;

/// <summary>
/// hameshctl. Exit codes (<see cref="ExitCodes"/>, also in --help): 0 success; 1 the daemon could not be reached
/// or refused the caller (PermissionDenied, transport errors); 2 bad usage, invalid configuration, or a request
/// refused for its content (InvalidArgument, NotFound, FailedPrecondition); 3 the operation ran and failed.
/// </summary>
public static class CliApp
{
    public const int Ok = 0;
    public const int Unreachable = 1;
    public const int Usage = 2;
    public const int Failed = 3;

    public const string ExitCodes = "Exit codes: 0 done; 1 coordinator unreachable or the caller refused (PermissionDenied, TLS); "
        + "2 usage, invalid configuration, or the request refused for its content (InvalidArgument, NotFound, FailedPrecondition: stale generation, precondition); "
        + "3 the operation ran and failed or timed out. Errors are one line on stderr.";

    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var coordinator = new Option<string?>("--coordinator") { Description = "Coordinator URL (default: $HAMESH_COORDINATOR, else Coordinator:Address from --config)", Recursive = true };
        var config = new Option<string?>("--config") { Description = $"Cluster file (default: ${ConfigLoader.PathVariable} or {ConfigLoader.DefaultPath})", Recursive = true };
        var timeout = new Option<double>("--timeout") { Description = "Call deadline in seconds", DefaultValueFactory = _ => 5, Recursive = true };
        var root = new RootCommand("hameshctl: operate a HaMesh cluster (status, events, switchover, maintenance, force-promote, ip, certs, configuration). " + ExitCodes);
        root.Options.Add(coordinator);
        root.Options.Add(config);
        root.Options.Add(timeout);

        var tls = TlsFlags.Create();
        root.Options.Add(tls.CaCert);
        root.Options.Add(tls.Cert);
        root.Options.Add(tls.Key);

        var target = new CoordinatorTarget(coordinator, config, timeout, tls);
        root.Subcommands.Add(StatusCommand.Create(target, stdout, stderr));
        root.Subcommands.Add(EventsCommand.Create(target, stdout, stderr));
        root.Subcommands.Add(MaintenanceCommand.Create(target, stdout, stderr));
        root.Subcommands.Add(IpCommand.Create(target, stdout, stderr));
        root.Subcommands.Add(OperationCommands.Switchover(target, stdout, stderr));
        root.Subcommands.Add(OperationCommands.Promote(target, stdout, stderr));
        root.Subcommands.Add(ConfigCommand.Create(stdout, stderr));
        root.Subcommands.Add(CertsCommand.Create(stdout, stderr));

        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors)
            {
                await stderr.WriteLineAsync($"hameshctl: {error.Message}");
            }

            return Usage;
        }

        return await parse.InvokeAsync(new InvocationConfiguration { Output = stdout, Error = stderr });
    }

    /// <summary>One line, actionable: what failed, where, and why.</summary>
    public static int ReportRpcError(TextWriter stderr, string address, RpcException ex)
    {
        ArgumentNullException.ThrowIfNull(stderr);
        ArgumentNullException.ThrowIfNull(ex);
        var reason = string.IsNullOrWhiteSpace(ex.Status.Detail) ? ex.StatusCode.ToString() : ex.Status.Detail;
        if (ex.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded)
        {
            stderr.WriteLine($"hameshctl: cannot reach {address}: {reason} (is the daemon running? check --coordinator / --config)");
            return Unreachable;
        }

        stderr.WriteLine($"hameshctl: {address} refused the call ({ex.StatusCode}): {reason}");
        return ex.StatusCode is StatusCode.InvalidArgument or StatusCode.NotFound or StatusCode.FailedPrecondition ? Usage : Unreachable;
    }
}
