using System.CommandLine;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Grpc;

namespace HaMesh.Cli.Commands;

/// <summary>hameshctl maintenance on|off RESOURCE [--reason TEXT]: suspend or resume automatic decisions.</summary>
public static class MaintenanceCommand
{
    public static Command Create(CoordinatorTarget target, TextWriter stdout, TextWriter stderr)
    {
        var state = new Argument<string>("state") { Description = "on or off" };
        state.AcceptOnlyFromAmong("on", "off");
        var resource = new Argument<string>("resource") { Description = "Resource name" };
        var reason = new Option<string?>("--reason") { Description = "Why (recorded in the event log)" };
        var command = new Command("maintenance", "Suspend (on) or resume (off) automatic failover for a resource; reports continue");
        command.Arguments.Add(state);
        command.Arguments.Add(resource);
        command.Options.Add(reason);
        command.SetAction((parse, ct) => target.CallAsync(parse, stderr, async client =>
        {
            var name = parse.GetValue(resource)!;
            var generation = await target.CurrentGenerationAsync(client, parse, name, ct);
            var result = await client.SetMaintenanceAsync(new SetMaintenanceRequest
            {
                Resource = name,
                Generation = generation,
                Enabled = parse.GetValue(state) == "on",
                Reason = parse.GetValue(reason) ?? "",
            }, deadline: RpcDeadline.In(target.Timeout(parse)), cancellationToken: ct);
            await stdout.WriteLineAsync($"{name}: {result.Message} (generation {result.Generation})");
            return CliApp.Ok;
        }));
        return command;
    }
}
