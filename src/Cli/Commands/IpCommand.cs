using System.CommandLine;
using System.Globalization;
using System.Text;
using Google.Protobuf;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;

namespace HaMesh.Cli.Commands;

/// <summary>
/// hameshctl ip show IP: where OVH routes a failover IP now (a fresh read by the coordinator).
/// hameshctl ip claim IP --to NODE: route it to a node (no move when it is already there).
/// </summary>
public static class IpCommand
{
    private static readonly JsonFormatter Json = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(true).WithIndentation());

    public static Command Create(CoordinatorTarget target, TextWriter stdout, TextWriter stderr)
    {
        var command = new Command("ip", "Failover IP routing at the cloud (OVH)");
        command.Subcommands.Add(Show(target, stdout, stderr));
        command.Subcommands.Add(Claim(target, stdout, stderr));
        return command;
    }

    private static Command Show(CoordinatorTarget target, TextWriter stdout, TextWriter stderr)
    {
        var ip = new Argument<string>("ip") { Description = "Failover IP (203.0.113.10 or 203.0.113.10/32)" };
        var json = new Option<bool>("--json") { Description = "Print the answer as JSON (protobuf JSON mapping)" };
        var command = new Command("show", "Show where OVH routes the IP now and the moves pending for it");
        command.Arguments.Add(ip);
        command.Options.Add(json);
        command.SetAction((parse, ct) => target.CallAsync(parse, stderr, async client =>
        {
            var answer = await client.GetIpAsync(new GetIpRequest { Ip = parse.GetValue(ip)! }, deadline: RpcDeadline.In(target.Timeout(parse)), cancellationToken: ct);
            await stdout.WriteAsync(parse.GetValue(json) ? Json.Format(answer) + Environment.NewLine : RenderShow(answer));
            return CliApp.Ok;
        }));
        return command;
    }

    private static Command Claim(CoordinatorTarget target, TextWriter stdout, TextWriter stderr)
    {
        var ip = new Argument<string>("ip") { Description = "Failover IP (203.0.113.10 or 203.0.113.10/32)" };
        var to = new Option<string>("--to") { Description = "Node to route the IP to", Required = true };
        var wait = new Option<double>("--wait") { Description = "Seconds to wait for OVH to confirm the route (a move usually takes about a minute)", DefaultValueFactory = _ => 660 };
        var command = new Command("claim", "Route the IP to NODE (the seed's getfailover): no move when it is already routed there");
        command.Arguments.Add(ip);
        command.Options.Add(to);
        command.Options.Add(wait);
        command.SetAction((parse, ct) => target.CallAsync(parse, stderr, async client =>
        {
            var address = parse.GetValue(ip)!;
            // the claim acts on the generation the operator's view shows now (a stale view is refused)
            var status = await client.GetClusterStatusAsync(new GetClusterStatusRequest(), deadline: RpcDeadline.In(target.Timeout(parse)), cancellationToken: ct);
            if (FindResource(status, address) is not { } resource)
            {
                await stderr.WriteLineAsync($"hameshctl: '{address}' is not a failover IP of any resource of cluster '{status.Cluster}' (see hameshctl status)");
                return CliApp.Usage;
            }

            var answer = await client.ClaimIpAsync(new ClaimIpRequest
            {
                Resource = resource.Resource,
                Generation = resource.Generation,
                Ip = address,
                Node = parse.GetValue(to)!,
            }, deadline: RpcDeadline.In(TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(wait), 1, 3600))), cancellationToken: ct);
            var line = RenderClaim(address, parse.GetValue(to)!, answer);
            if (answer.Outcome is ClaimIpOutcome.AlreadyRouted or ClaimIpOutcome.Moved)
            {
                await stdout.WriteLineAsync(line);
                return CliApp.Ok;
            }

            await stderr.WriteLineAsync($"hameshctl: {line}");
            return CliApp.Failed;
        }));
        return command;
    }

    /// <summary>The resource whose failover IPs include <paramref name="ip"/> (CIDR or bare), as the status shows it.</summary>
    public static ClusterResource? FindResource(ClusterStatus status, string ip)
    {
        ArgumentNullException.ThrowIfNull(status);
        if (!IpCidr.TryParse(ip, out var wanted))
        {
            return null;
        }

        return status.Resources.FirstOrDefault(r => r.FailoverIps.Any(f => IpCidr.TryParse(f.Ip, out var c) && c.ToString() == wanted.ToString()));
    }

    public static string RenderClaim(string ip, string node, ClaimIpResponse answer)
    {
        ArgumentNullException.ThrowIfNull(answer);
        var seconds = (answer.Elapsed?.ToTimeSpan() ?? TimeSpan.Zero).TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture);
        var task = answer.TaskId != 0 ? string.Create(CultureInfo.InvariantCulture, $", task {answer.TaskId}") : "";
        return answer.Outcome switch
        {
            ClaimIpOutcome.AlreadyRouted => $"{ip}: already routed to {node} ({answer.RoutedToService}); no move requested",
            ClaimIpOutcome.Moved => $"{ip}: moved to {node} ({answer.RoutedToService}) in {seconds} s{task}",
            ClaimIpOutcome.TimedOut => $"{ip}: not confirmed on {node} after {seconds} s{task}: {answer.Message} (the move may still complete: hameshctl ip show {ip})",
            _ => $"{ip}: claim for {node} failed: {answer.Message}",
        };
    }

    public static string RenderShow(GetIpResponse answer)
    {
        ArgumentNullException.ThrowIfNull(answer);
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"IP         {answer.Ip}\n");
        var routed = answer.Parked
            ? "nothing (parked)"
            : answer.RoutedToNode.Length > 0 ? $"{answer.RoutedToNode} ({answer.RoutedToService})" : $"{answer.RoutedToService} (not a node of this cluster)";
        text.Append(CultureInfo.InvariantCulture, $"ROUTED TO  {routed}\n");
        if (answer.PendingTasks.Count == 0)
        {
            text.Append("PENDING    none\n");
        }

        foreach (var t in answer.PendingTasks)
        {
            text.Append(CultureInfo.InvariantCulture, $"PENDING    task {t.TaskId} {t.Function} {t.Status}{(t.Comment.Length > 0 ? ": " + t.Comment : "")}\n");
        }

        return text.ToString();
    }
}
