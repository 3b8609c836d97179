using HaMesh.Cli.Commands;
using HaMesh.Protocol.V1;
using HaMesh.Testing;

namespace HaMesh.Cli.Tests.Commands;

public sealed class CliAppTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static async Task<(int Exit, string Out, string Err)> RunAsync(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var exit = await CliApp.RunAsync(args, stdout, stderr);
        return (exit, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public async Task Help_DocumentsTheExitCodes()
    {
        var (exit, output, _) = await RunAsync("--help");
        Assert.Equal(0, exit);
        Assert.Contains("Exit codes: 0 done; 1 coordinator unreachable", output, StringComparison.Ordinal);
        Assert.Contains("3 the operation ran and failed", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ConfigValidate_ValidFile_Exit0()
    {
        var path = ClusterFiles.Write(_dir, TestConfig.TwoNodes());
        var (exit, output, _) = await RunAsync("config", "validate", path, "--for", "agent");
        Assert.Equal(0, exit);
        Assert.Contains("valid (2 nodes, 1 resources)", output);
    }

    [Fact]
    public async Task ConfigValidate_Problems_EachOnItsOwnLineExit2()
    {
        var options = TestConfig.TwoNodes();
        options.Nodes[1].Name = "a";
        options.Resources[0].FailoverIps = ["203.0.113.300/32"];
        var path = ClusterFiles.Write(_dir, options);
        var (exit, _, err) = await RunAsync("config", "validate", path, "--for", "agent");
        Assert.Equal(2, exit);
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.Contains(lines, l => l.Contains("HaMesh:Nodes:1:Name: duplicate node name 'a'", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("HaMesh:Resources:0:FailoverIps:0", StringComparison.Ordinal));
    }

    [Fact]
    public async Task UnknownCommand_UsageExit2()
    {
        var (exit, _, err) = await RunAsync("frobnicate");
        Assert.Equal(2, exit);
        Assert.StartsWith("hameshctl: ", err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_NoAddressAnywhere_Exit2ExplainsHow()
    {
        var (exit, _, err) = await RunAsync("status", "--config", Path.Combine(_dir, "missing.json"));
        Assert.Equal(2, exit);
        Assert.Contains("pass --coordinator URL", err);
    }

    [Theory]
    [InlineData("10m", 600)]
    [InlineData("2h", 7200)]
    [InlineData("1d", 86400)]
    [InlineData("30s", 30)]
    public void TryParseSince_Durations_CountBackFromNow(string text, int seconds)
    {
        var now = new DateTimeOffset(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);
        Assert.True(EventsCommand.TryParseSince(text, now, out var since));
        Assert.Equal(now - TimeSpan.FromSeconds(seconds), since);
    }

    [Fact]
    public void TryParseSince_IsoTime_Parsed()
    {
        Assert.True(EventsCommand.TryParseSince("2026-11-25T10:00:00Z", default, out var since));
        Assert.Equal(new DateTimeOffset(2026, 11, 25, 10, 0, 0, TimeSpan.Zero), since);
    }

    [Theory]
    [InlineData("yesterday")]
    [InlineData("10x")]
    [InlineData("-5m")]
    public void TryParseSince_Garbage_Refused(string text) => Assert.False(EventsCommand.TryParseSince(text, default, out _));

    [Fact]
    public void StatusTable_UnreachableNodeAndDrbdNames_Rendered()
    {
        var status = new ClusterStatus
        {
            Cluster = "prod",
            ViewVersion = 7,
            Nodes =
            {
                new ClusterNode { Node = "a", Reachability = Reachability.Unreachable, ServiceName = "ns1", LastReportAge = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(TimeSpan.FromSeconds(3.2)),
                    LastReport = new NodeStatus { Node = "a", DrbdVersionText = "8.4.11", Resources = { new ResourceStatus { Resource = "db", Generation = 4, Drbd = new DrbdResourceStatus { Present = true, Role = DrbdRole.Primary, DiskState = DiskState.UpToDate, Peers = { new PeerConnectionStatus { ConnectionState = ConnectionState.WfConnection, PeerRole = DrbdRole.Unknown, PeerDiskState = DiskState.Dunknown } } }, Lease = new LeaseStatus { State = LeaseState.Held } } } } },
                new ClusterNode { Node = "b", Reachability = Reachability.NeverSeen, ServiceName = "ns2" },
            },
            Resources = { new ClusterResource { Resource = "db", Generation = 4, PrimaryNode = "a", FailoverIps = { new FailoverIpStatus { Ip = "203.0.113.10/32", RoutedToNode = "a" } } } },
        };

        var table = StatusTable.Render(status);

        Assert.Contains("UNREACHABLE", table);
        Assert.Contains("3.2s ago", table);
        Assert.Contains("never seen", table);
        Assert.Contains("WFConnection", table);
        Assert.Contains("DUnknown", table);
        Assert.Contains("UpToDate", table);
        Assert.Contains("a (stale)", table);
    }
}
