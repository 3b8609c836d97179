using System.CommandLine;
using Grpc.Core;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Grpc;

namespace HaMesh.Cli.Commands;

/// <summary>
/// hameshctl switchover RESOURCE --to NODE and hameshctl promote --force RESOURCE --to NODE --i-understand-data-loss.
/// Both act on the generation the coordinator shows now, print the accepted operation, then follow its
/// events until the terminal one (unless --no-wait): exit 0 when it completed, 3 when it ended otherwise.
/// </summary>
public static class OperationCommands
{
    public static Command Switchover(CoordinatorTarget target, TextWriter stdout, TextWriter stderr)
    {
        var command = new Command("switchover", "Planned move of the primary role (zero data loss): demote the primary, promote the target, move the failover IP");
        var move = new MoveArguments(command, "The node to make primary (connected and UpToDate)");
        command.SetAction((parse, ct) => move.RunAsync(target, parse, stdout, stderr, (client, name, generation, deadline) =>
            client.SwitchoverAsync(new SwitchoverRequest { Resource = name, Generation = generation, TargetNode = parse.GetValue(move.To)!, Reason = parse.GetValue(move.Reason) ?? "" }, deadline: deadline, cancellationToken: ct).ResponseAsync, ct));
        return command;
    }

    public static Command Promote(CoordinatorTarget target, TextWriter stdout, TextWriter stderr)
    {
        var command = new Command("promote", "Force a node to become primary (coordinator-side audit, generation-fenced, moves the failover IP). May lose data.");
        var move = new MoveArguments(command, "The node to make primary, whatever its data");
        var force = new Option<bool>("--force") { Description = "Required: this is the manual, last-resort promotion" };
        var acknowledge = new Option<bool>("--i-understand-data-loss") { Description = "Required: the node may lack writes that clients saw acknowledged" };
        command.Options.Add(force);
        command.Options.Add(acknowledge);
        command.SetAction(async (parse, ct) =>
        {
            if (!parse.GetValue(force))
            {
                await stderr.WriteLineAsync("hameshctl: promote needs --force: automatic promotion is the coordinator's job, and a planned move is 'hameshctl switchover'");
                return CliApp.Usage;
            }

            if (!parse.GetValue(acknowledge))
            {
                await stderr.WriteLineAsync("hameshctl: refusing: a forced promotion can discard writes that clients saw acknowledged. Add --i-understand-data-loss if that is what you want.");
                return CliApp.Usage;
            }

            return await move.RunAsync(target, parse, stdout, stderr, (client, name, generation, deadline) =>
                client.ForcePromoteAsync(new ForcePromoteRequest { Resource = name, Generation = generation, Node = parse.GetValue(move.To)!, IUnderstandDataLoss = true, Reason = parse.GetValue(move.Reason) ?? "" }, deadline: deadline, cancellationToken: ct).ResponseAsync, ct);
        });
        return command;
    }

    /// <summary>The arguments both commands share, and their common run: current generation → call → follow.</summary>
    private sealed class MoveArguments
    {
        private readonly Argument<string> _resource = new("resource") { Description = "Resource name" };
        private readonly Option<bool> _noWait = new("--no-wait") { Description = "Return once the coordinator accepted the operation" };
        private readonly Option<double> _wait = new("--wait-timeout") { Description = "How long to follow the operation, in seconds (the OVH move alone may take minutes)", DefaultValueFactory = _ => 900 };

        public MoveArguments(Command command, string toDescription)
        {
            To = new Option<string>("--to") { Description = toDescription, Required = true };
            command.Arguments.Add(_resource);
            command.Options.Add(To);
            command.Options.Add(Reason);
            command.Options.Add(_noWait);
            command.Options.Add(_wait);
        }

        public Option<string> To { get; }

        public Option<string?> Reason { get; } = new("--reason") { Description = "Why (recorded in the event log)" };

        public Task<int> RunAsync(CoordinatorTarget target, ParseResult parse, TextWriter stdout, TextWriter stderr,
            Func<CoordinatorService.CoordinatorServiceClient, string, ulong, DateTime, Task<OperationResult>> call, CancellationToken ct) =>
            target.CallAsync(parse, stderr, async client =>
            {
                var name = parse.GetValue(_resource)!;
                var generation = await target.CurrentGenerationAsync(client, parse, name, ct);
                var result = await call(client, name, generation, RpcDeadline.In(target.Timeout(parse)));
                return await ReportAsync(client, result, parse.GetValue(_noWait), parse.GetValue(_wait), stdout, ct);
            });
    }

    /// <summary>Prints the accepted operation, then its events until the terminal one.</summary>
    private static async Task<int> ReportAsync(CoordinatorService.CoordinatorServiceClient client, OperationResult result, bool noWait, double waitSeconds, TextWriter stdout, CancellationToken ct)
    {
        await stdout.WriteLineAsync($"{result.Resource}: {result.Message}");
        if (noWait)
        {
            return CliApp.Ok;
        }

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(Math.Clamp(waitSeconds, 1, 86_400)));
        var after = result.EventSequence > 0 ? result.EventSequence - 1 : 0;
        try
        {
            using var watch = client.WatchEvents(new WatchEventsRequest { AfterSequence = after, Resource = result.Resource }, cancellationToken: deadline.Token);
            await foreach (var e in watch.ResponseStream.ReadAllAsync(deadline.Token))
            {
                await stdout.WriteLineAsync(EventsCommand.Format(e));
                if (e.Attributes.TryGetValue("operation", out var id) && id == result.OperationId && e.Attributes.TryGetValue("terminal", out var terminal) && terminal == "true")
                {
                    return e.Attributes.GetValueOrDefault("outcome") == "completed" ? CliApp.Ok : CliApp.Failed;
                }
            }
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.Cancelled && deadline.IsCancellationRequested)
        {
            // fall through: not finished in time
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
        {
            // fall through: not finished in time
        }

        await stdout.WriteLineAsync($"{result.Resource}: operation {result.OperationId} still running; follow it with 'hameshctl events --follow --resource {result.Resource}'");
        return CliApp.Failed;
    }
}
