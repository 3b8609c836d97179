using HaMesh.Shared.Configuration;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace HaMesh.Shared.Hosting;

public static partial class DaemonRunner
{
    /// <summary>Console logging in the format <see cref="LogFormat.Choose"/> picks (journald reads the console under systemd).</summary>
    public static WebApplicationBuilder AddHaMeshDaemonLogging(this WebApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        // systemd sets JOURNAL_STREAM when stdout/stderr go to the journal
        var underJournal = !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("JOURNAL_STREAM"));
        try
        {
            builder.Logging.AddHaMeshConsole(builder.Configuration[LogFormat.ConfigurationKey], underJournal);
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine($"warning: {ex.Message.Split(" (Parameter")[0]}; logging in the default format");
            builder.Logging.AddHaMeshConsole(null, underJournal);
        }

        return builder;
    }

    public static ILoggingBuilder AddHaMeshConsole(this ILoggingBuilder logging, string? configured, bool underSystemd)
    {
        ArgumentNullException.ThrowIfNull(logging);
        switch (LogFormat.Choose(configured, underSystemd))
        {
            case LogFormat.Json:
                logging.AddJsonConsole(o =>
                {
                    o.UseUtcTimestamp = true;
                    o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
                    o.IncludeScopes = false;
                    o.JsonWriterOptions = new System.Text.Json.JsonWriterOptions { Indented = false };
                });
                break;
            case LogFormat.Systemd:
                logging.AddSystemdConsole(o => o.UseUtcTimestamp = true);   // journald adds its own timestamp
                break;
            default:
                logging.AddSimpleConsole(o =>
                {
                    o.SingleLine = true;
                    o.TimestampFormat = "HH:mm:ss.fff ";
                    o.UseUtcTimestamp = true;
                });
                break;
        }

        return logging;
    }

    /// <summary>
    /// Starts the daemon, prints one "listening on" line per bound address on stdout (labs and tests
    /// start daemons on port 0 and read it), warns when TLS is off, and waits for shutdown.
    /// </summary>
    public static async Task<int> RunHaMeshDaemonAsync(this WebApplication app, string component, HaMeshOptions options)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(options);
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger(component);
        if (options.Tls.Insecure)
        {
            Log.InsecureMode(logger, component);
        }

        await app.StartAsync();
        var metrics = app.Services.GetService<MetricsEndpoint>();
        var metricsPort = metrics?.Listen?.IPEndPoint?.Port;
        foreach (var address in ListenAddress.Bound(app.Services.GetRequiredService<IServer>()))
        {
            if (metricsPort is null || !Uri.TryCreate(address, UriKind.Absolute, out var uri) || uri.Port != metricsPort)
            {
                await Console.Out.WriteLineAsync($"{component} listening on {address}");
            }
        }

        if (metrics?.BoundUrl is { } metricsUrl)
        {
            await Console.Out.WriteLineAsync($"{component} metrics on {metricsUrl}");
        }

        await Console.Out.FlushAsync();
        await app.WaitForShutdownAsync();
        return 0;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3001, Level = LogLevel.Warning, Message = "{Component}: TLS is OFF (HaMesh:Tls:Insecure=true): gRPC is plain text and unauthenticated; use only on a private network")]
        public static partial void InsecureMode(ILogger logger, string component);
    }
}
