using System.Net.Sockets;
using System.Text;
using HaMesh.Testing;
using HaMesh.Testing.Processes;

namespace HaMesh.IntegrationTests;

/// <summary>The real daemons feed a systemd-style notify socket: WATCHDOG=1 at half of WATCHDOG_USEC.</summary>
public sealed class DaemonWatchdogTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-wd-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Coordinator_WatchdogRequested_PingsNotifySocketRepeatedly()
    {
        var ct = TestContext.Current.CancellationToken;
        var options = TestConfig.TwoNodes();
        options.Coordinator.Listen = $"http://127.0.0.1:{DaemonProcess.FreePort()}";
        options.Coordinator.StorePath = Path.Combine(_dir, "coordinator.db");
        var config = ClusterFiles.Write(_dir, options);
        var socketPath = Path.Combine(_dir, "notify");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath));

        await using var coordinator = DaemonProcess.Start("coordinator", DaemonProcess.Dll("src/Coordinator", "hamesh-coordinator"), ["--config", config],
            new Dictionary<string, string> { ["NOTIFY_SOCKET"] = socketPath, ["WATCHDOG_USEC"] = "400000" });

        var buffer = new byte[512];
        var pings = 0;
        while (pings < 3)
        {
            var n = await listener.ReceiveAsync(buffer, SocketFlags.None, ct).AsTask().WaitAsync(TimeSpan.FromSeconds(60), ct);
            var message = Encoding.UTF8.GetString(buffer, 0, n);
            Assert.True(message == "WATCHDOG=1", $"{message}\n{coordinator.Output}");
            pings++;
        }
    }
}
