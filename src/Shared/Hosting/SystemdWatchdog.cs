using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace HaMesh.Shared.Hosting;

/// <summary>
/// Feeds systemd's watchdog (<c>WatchdogSec=</c>): Microsoft.Extensions.Hosting.Systemd sends READY=1 and
/// STOPPING=1 but never WATCHDOG=1. Every WATCHDOG_USEC / 2 this sends <c>WATCHDOG=1</c> to $NOTIFY_SOCKET —
/// only while <see cref="LoopHealth"/> finds every critical loop beating; otherwise it sends a STATUS= line
/// naming the silent loop and withholds the ping, so systemd kills and restarts the hung daemon. Does nothing
/// outside systemd or without a watchdog (no WATCHDOG_USEC, or WATCHDOG_PID naming another process).
/// </summary>
public sealed partial class SystemdWatchdog(LoopHealth health, TimeProvider time, ILogger<SystemdWatchdog> logger, Func<string, string?>? environment = null) : BackgroundService
{
    private readonly Func<string, string?> _env = environment ?? Environment.GetEnvironmentVariable;

    /// <summary>The ping interval (half the watchdog timeout), or null when systemd asked for no watchdog.</summary>
    public static TimeSpan? Interval(Func<string, string?> environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        if (string.IsNullOrEmpty(environment("NOTIFY_SOCKET"))
            || !long.TryParse(environment("WATCHDOG_USEC"), NumberStyles.None, CultureInfo.InvariantCulture, out var usec) || usec <= 0)
        {
            return null;
        }

        var pid = environment("WATCHDOG_PID");
        if (!string.IsNullOrEmpty(pid) && pid != Environment.ProcessId.ToString(CultureInfo.InvariantCulture))
        {
            return null;
        }

        return TimeSpan.FromMicroseconds(usec / 2.0);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (Interval(_env) is not { } interval)
        {
            return;
        }

        using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        var path = _env("NOTIFY_SOCKET")!;
        var endpoint = new UnixDomainSocketEndPoint(path[0] == '@' ? "\0" + path[1..] : path);   // '@' = abstract namespace
        Log.WatchdogEnabled(logger, interval.TotalSeconds);
        string? reported = null;
        while (!stoppingToken.IsCancellationRequested)
        {
            var problem = health.Problem();
            var message = problem is null ? "WATCHDOG=1" : $"STATUS=watchdog withheld: {problem}";
            if (problem != reported)
            {
                if (problem is null)
                {
                    Log.Healthy(logger);
                }
                else
                {
                    Log.Withheld(logger, problem);
                }

                reported = problem;
            }

            // the next round's timer starts before the send, so the interval does not stretch by the send time
            var next = Task.Delay(interval, time, stoppingToken);
            try
            {
                await socket.SendToAsync(Encoding.UTF8.GetBytes(message), SocketFlags.None, endpoint, stoppingToken);
            }
            catch (SocketException ex)
            {
                Log.NotifyFailed(logger, path, ex.Message);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            try
            {
                await next;
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3011, Level = LogLevel.Information, Message = "systemd watchdog on: pinging every {IntervalSeconds} s while the daemon's loops are live")]
        public static partial void WatchdogEnabled(ILogger logger, double intervalSeconds);

        [LoggerMessage(EventId = 3012, Level = LogLevel.Critical, Message = "Withholding the systemd watchdog ping: {Problem}; systemd will restart the daemon")]
        public static partial void Withheld(ILogger logger, string problem);

        [LoggerMessage(EventId = 3013, Level = LogLevel.Information, Message = "Daemon loops live again: watchdog pings resumed")]
        public static partial void Healthy(ILogger logger);

        [LoggerMessage(EventId = 3014, Level = LogLevel.Warning, Message = "Cannot notify systemd at {Socket}: {Reason}")]
        public static partial void NotifyFailed(ILogger logger, string socket, string reason);
    }
}
