using System.CommandLine;
using HaMesh.Shared.Configuration;

namespace HaMesh.Cli.Commands;

/// <summary>hameshctl config validate FILE [--for agent|coordinator|all]: the daemons' own validation, every problem printed.</summary>
public static class ConfigCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var file = new Argument<string>("file") { Description = "Cluster file to check" };
        var scope = new Option<string>("--for") { Description = "Which daemon's view: cluster, agent, coordinator or all", DefaultValueFactory = _ => "all" };
        scope.AcceptOnlyFromAmong("cluster", "agent", "coordinator", "all");
        var validate = new Command("validate", "Validate a cluster file exactly as the daemons do at start");
        validate.Arguments.Add(file);
        validate.Options.Add(scope);
        validate.SetAction(async parse =>
        {
            var path = parse.GetValue(file)!;
            var configScope = parse.GetValue(scope) switch
            {
                "agent" => ConfigScope.Agent,
                "coordinator" => ConfigScope.Coordinator,
                "cluster" => ConfigScope.Cluster,
                _ => ConfigScope.Agent | ConfigScope.Coordinator,
            };
            var result = ConfigLoader.Load(path, configScope);
            if (result.IsValid)
            {
                await stdout.WriteLineAsync($"{path}: valid ({result.Options!.Nodes.Count} nodes, {result.Options.Resources.Count} resources)");
                return CliApp.Ok;
            }

            foreach (var error in result.Errors)
            {
                await stderr.WriteLineAsync($"{path}: {error.Key}: {error.Reason}");
            }

            return CliApp.Usage;
        });
        var command = new Command("config", "Configuration tools");
        command.Subcommands.Add(validate);
        return command;
    }
}
