using System.Text.Json;
using HaMesh.Testing;
using HaMesh.Testing.Processes;

namespace HaMesh.IntegrationTests;

/// <summary>The daemons' console log formats as a process prints them: JSON lines, and journald's priority prefix.</summary>
public sealed class DaemonLoggingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-logs-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Config()
    {
        var options = TestConfig.TwoNodes();
        options.Coordinator.Listen = $"http://127.0.0.1:{DaemonProcess.FreePort()}";
        options.Coordinator.StorePath = Path.Combine(_dir, "coordinator.db");
        return ClusterFiles.Write(_dir, options);
    }

    [Fact]
    public async Task Coordinator_JsonFormat_OneJsonObjectPerLineWithEventIdAndTemplateValues()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var coordinator = DaemonProcess.Start("coordinator", DaemonProcess.Dll("src/Coordinator", "hamesh-coordinator"), ["--config", Config()],
            new Dictionary<string, string> { ["Logging__Console__FormatterName"] = "json" });

        var insecure = JsonDocument.Parse(await coordinator.WaitForLineAsync("\"EventId\":3001", TimeSpan.FromSeconds(60), ct)).RootElement;
        Assert.Equal("Warning", insecure.GetProperty("LogLevel").GetString());
        Assert.Equal("hamesh-coordinator", insecure.GetProperty("Category").GetString());
        Assert.Equal("hamesh-coordinator", insecure.GetProperty("State").GetProperty("Component").GetString());
        Assert.EndsWith("Z", insecure.GetProperty("Timestamp").GetString(), StringComparison.Ordinal);

        var holding = JsonDocument.Parse(await coordinator.WaitForLineAsync("\"EventId\":2201", TimeSpan.FromSeconds(60), ct)).RootElement;
        Assert.Equal("db", holding.GetProperty("State").GetProperty("Resource").GetString());
        Assert.False(string.IsNullOrEmpty(holding.GetProperty("State").GetProperty("Reason").GetString()));
    }

    [Fact]
    public async Task Coordinator_UnderJournal_SystemdFormatWithSyslogPriority()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var coordinator = DaemonProcess.Start("coordinator", DaemonProcess.Dll("src/Coordinator", "hamesh-coordinator"), ["--config", Config()],
            new Dictionary<string, string> { ["JOURNAL_STREAM"] = "8:12345", ["Logging__Console__FormatterName"] = "" });   // DaemonProcess pins "simple"; empty = the default choice

        var line = await coordinator.WaitForLineAsync("[3001]", TimeSpan.FromSeconds(60), ct);
        Assert.StartsWith("<4>hamesh-coordinator[3001] hamesh-coordinator: TLS is OFF", line.Trim(), StringComparison.Ordinal);
    }
}
