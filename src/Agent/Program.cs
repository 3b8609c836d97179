using HaMesh.Agent.Hosting;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Hosting;

var builder = WebApplication.CreateBuilder(args);
var config = DaemonConfiguration.Load(builder.Configuration, args, ConfigScope.Agent);
if (!config.IsValid)
{
    DaemonConfiguration.WriteErrors(Console.Error, "hamesh-agent", config.Errors);
    return DaemonConfiguration.InvalidConfigExitCode;
}

builder.Services.AddSystemd();
builder.AddHaMeshDaemonLogging();
builder.AddHaMeshAgent(config.Options!);
var app = builder.Build();
app.MapHaMeshAgentEndpoints();
return await app.RunHaMeshDaemonAsync("hamesh-agent", config.Options!);
