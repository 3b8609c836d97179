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
        var command = new Command("status", "Show nodes, reachability, DRBD state, generations and where the failover IP is routed");
        command.Options.Add(json);
        command.SetAction((parse, ct) => target.CallAsync(parse, stderr, async client =>
        {
            var status = await client.GetClusterStatusAsync(new GetClusterStatusRequest(), deadline: RpcDeadline.In(target.Timeout(parse)), cancellationToken: ct);
            await stdout.WriteAsync(parse.GetValue(json) ? Json.Format(status) + Environment.NewLine : StatusTable.Render(status));
            return CliApp.Ok;
        }));
        return command;
    }
}
