using System.Globalization;
using System.Net.Sockets;
using System.Text;
using HaMesh.Shared.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace HaMesh.Shared.Tests.Hosting;

public sealed class SystemdWatchdogTests : IDisposable
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-notify-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static Func<string, string?> Env(Dictionary<string, string> values) => k => values.GetValueOrDefault(k);

    [Fact]
    public void LoopHealth_SilenceExactlyAtLimit_Healthy_OneTickLater_NamesLoop()
    {
        var time = new FakeTimeProvider(T0);
        var health = new LoopHealth(time);
        health.Register("decision-loop", TimeSpan.FromSeconds(10));
        time.Advance(TimeSpan.FromSeconds(4));
        health.Beat("decision-loop");

        time.Advance(TimeSpan.FromSeconds(10));
        Assert.Null(health.Problem());

        time.Advance(TimeSpan.FromTicks(1));
        Assert.Equal("decision-loop silent for 10.0 s (limit 10.0 s)", health.Problem());
    }

    [Fact]
    public void LoopHealth_NeverBeat_CountsFromRegistration()
    {
        var time = new FakeTimeProvider(T0);
        var health = new LoopHealth(time);
        health.Register("lease-loop", TimeSpan.FromSeconds(2));
        health.Beat("unregistered");   // ignored

        time.Advance(TimeSpan.FromSeconds(3));
        Assert.StartsWith("lease-loop silent for 3.0 s", health.Problem(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("/run/systemd/notify", "10000000", null, 5.0)]
    [InlineData("/run/systemd/notify", "10000000", "self", 5.0)]
    [InlineData("/run/systemd/notify", "10000000", "1", null)]   // another process is the watchdog's
    [InlineData("/run/systemd/notify", null, null, null)]
    [InlineData(null, "10000000", null, null)]
    [InlineData("/run/systemd/notify", "garbage", null, null)]
    public void Interval_FromEnvironment_HalfTheTimeout(string? socket, string? usec, string? pid, double? seconds)
    {
        var env = new Dictionary<string, string>();
        if (socket is not null)
        {
            env["NOTIFY_SOCKET"] = socket;
        }

        if (usec is not null)
        {
            env["WATCHDOG_USEC"] = usec;
        }

        if (pid is not null)
        {
            env["WATCHDOG_PID"] = pid == "self" ? Environment.ProcessId.ToString(CultureInfo.InvariantCulture) : pid;
        }

        Assert.Equal(seconds is { } s ? TimeSpan.FromSeconds(s) : null, SystemdWatchdog.Interval(Env(env)));
    }

    [Fact]
    public async Task Watchdog_PingsWhileLoopsBeat_WithholdsWithStatusWhenSilent_ResumesAfterBeat()
    {
        var ct = TestContext.Current.CancellationToken;
        var path = Path.Combine(_dir, "notify");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        var time = new FakeTimeProvider(T0);
        var health = new LoopHealth(time);
        health.Register("decision-loop", TimeSpan.FromSeconds(5));
        using var watchdog = new SystemdWatchdog(health, time, NullLogger<SystemdWatchdog>.Instance,
            Env(new() { ["NOTIFY_SOCKET"] = path, ["WATCHDOG_USEC"] = "2000000" }));
        var buffer = new byte[512];
        async Task<string> ReceiveAsync()
        {
            var n = await listener.ReceiveAsync(buffer, SocketFlags.None, ct).AsTask().WaitAsync(TimeSpan.FromSeconds(10), ct);
            return Encoding.UTF8.GetString(buffer, 0, n);
        }

        await watchdog.StartAsync(ct);
        Assert.Equal("WATCHDOG=1", await ReceiveAsync());

        time.Advance(TimeSpan.FromSeconds(6));   // one 1 s interval fires; the loop has been silent 6 s
        Assert.Equal("STATUS=watchdog withheld: decision-loop silent for 6.0 s (limit 5.0 s)", await ReceiveAsync());

        health.Beat("decision-loop");
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal("WATCHDOG=1", await ReceiveAsync());
        await watchdog.StopAsync(ct);
    }

    [Fact]
    public async Task Watchdog_NoWatchdogRequested_SendsNothingAndEnds()
    {
        var ct = TestContext.Current.CancellationToken;
        using var watchdog = new SystemdWatchdog(new LoopHealth(TimeProvider.System), TimeProvider.System, NullLogger<SystemdWatchdog>.Instance, Env([]));
        await watchdog.StartAsync(ct);
        await watchdog.ExecuteTask!.WaitAsync(TimeSpan.FromSeconds(10), ct);
        Assert.True(watchdog.ExecuteTask.IsCompletedSuccessfully);
    }
}
