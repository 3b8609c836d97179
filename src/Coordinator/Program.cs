using HaMesh.Coordinator.Hosting;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Hosting;

var builder = WebApplication.CreateBuilder(args);
var config = DaemonConfiguration.Load(builder.Configuration, args, ConfigScope.Coordinator);
if (!config.IsValid)
{
    DaemonConfiguration.WriteErrors(Console.Error, "hamesh-coordinator", config.Errors);
    return DaemonConfiguration.InvalidConfigExitCode;
}

builder.Services.AddSystemd();
builder.AddHaMeshDaemonLogging();
builder.AddHaMeshCoordinator(config.Options!);
var app = builder.Build();
if (app.OpenStore() is { } storeProblem)
{
    await Console.Error.WriteLineAsync($"hamesh-coordinator: {storeProblem}");
    return 3;
}

app.MapHaMeshCoordinatorEndpoints();
return await app.RunHaMeshDaemonAsync("hamesh-coordinator", config.Options!);
