using System.CommandLine;
using Google.Protobuf;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Grpc;

namespace HaMesh.Cli.Commands;

public static class StatusCommand
{
    private static readonly JsonFormatter Json = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(true).WithIndentation());

    public static Command Create(CoordinatorTarget target, TextWriter stdout, TextWriter stderr)
    {
        var json = new Option<bool>("--json") { Description = "Print the cluster status as JSON (protobuf JSON mapping)" };
        var watch = new Option<bool>("--watch") { Description = "Redraw the status every --interval seconds until interrupted (like crm_mon)" };
        var interval = new Option<double>("--interval") { Description = "Seconds between two redraws with --watch", DefaultValueFactory = _ => 2 };
        var count = new Option<int>("--count") { Description = "With --watch: stop after this many redraws (0: until interrupted)", DefaultValueFactory = _ => 0 };
        var command = new Command("status", "Show nodes, reachability, DRBD state, generations and where the failover IP is routed");
        command.Options.Add(json);
        command.Options.Add(watch);
        command.Options.Add(interval);
        command.Options.Add(count);
        command.Validators.Add(r =>
        {
            // only what was given: defaults are not materialised for validators
            if (r.GetResult(interval) is not null && r.GetValue(interval) is <= 0 or > 3600)
            {
                r.AddError("--interval must be between 0 and 3600 seconds");
            }

            if (r.GetResult(count) is not null && r.GetValue(count) < 0)
            {
                r.AddError("--count must not be negative");
            }
        });
        command.SetAction((parse, ct) => target.CallAsync(parse, stderr, async client =>
        {
            var watching = parse.GetValue(watch);
            var remaining = parse.GetValue(count);
            using var timer = watching ? new PeriodicTimer(TimeSpan.FromSeconds(parse.GetValue(interval)), TimeProvider.System) : null;
            do
            {
                var status = await client.GetClusterStatusAsync(new GetClusterStatusRequest(), deadline: RpcDeadline.In(target.Timeout(parse)), cancellationToken: ct);
                var text = parse.GetValue(json) ? Json.Format(status) + Environment.NewLine : StatusTable.Render(status);
                // --watch redraws in place on a terminal (home + clear), one frame after the other otherwise
                await stdout.WriteAsync(watching && !Console.IsOutputRedirected ? "\u001b[H\u001b[2J" + text : text);
                await stdout.FlushAsync(ct);
            }
            while (watching && --remaining != 0 && await timer!.WaitForNextTickAsync(ct));

            return CliApp.Ok;
        }));
        return command;
    }
}
