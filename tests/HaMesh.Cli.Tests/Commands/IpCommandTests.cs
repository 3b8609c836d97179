using HaMesh.Cli.Commands;
using HaMesh.Protocol.V1;

namespace HaMesh.Cli.Tests.Commands;

public sealed class IpCommandTests
{
    private static async Task<(int Exit, string Out, string Err)> RunAsync(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var exit = await CliApp.RunAsync(args, stdout, stderr);
        return (exit, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public async Task Claim_WithoutTo_UsageExit2()
    {
        var (exit, _, err) = await RunAsync("ip", "claim", "203.0.113.10", "--coordinator", "http://127.0.0.1:1");
        Assert.Equal(CliApp.Usage, exit);
        Assert.Contains("--to", err);
    }

    [Fact]
    public async Task Show_CoordinatorDown_Exit1NamesAddress()
    {
        var (exit, _, err) = await RunAsync("ip", "show", "203.0.113.10", "--coordinator", "http://127.0.0.1:1", "--timeout", "2");
        Assert.Equal(CliApp.Unreachable, exit);
        Assert.Contains("cannot reach http://127.0.0.1:1", err);
    }

    [Theory]
    [InlineData("203.0.113.10")]
    [InlineData("203.0.113.10/32")]
    public void FindResource_BareOrCidr_MatchesTheConfiguredBlock(string ip)
    {
        var status = new ClusterStatus { Resources = { new ClusterResource { Resource = "db", Generation = 3, FailoverIps = { new FailoverIpStatus { Ip = "203.0.113.10/32" } } } } };
        Assert.Equal("db", IpCommand.FindResource(status, ip)?.Resource);
        Assert.Null(IpCommand.FindResource(status, "203.0.113.11"));
        Assert.Null(IpCommand.FindResource(status, "garbage"));
    }

    [Fact]
    public void RenderClaim_EachOutcome()
    {
        var elapsed = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(TimeSpan.FromSeconds(2.04));
        Assert.Equal("203.0.113.10/32: moved to a (ns1) in 2.0 s, task 9",
            IpCommand.RenderClaim("203.0.113.10/32", "a", new ClaimIpResponse { Outcome = ClaimIpOutcome.Moved, RoutedToService = "ns1", TaskId = 9, Elapsed = elapsed }));
        Assert.Contains("already routed to a (ns1); no move requested",
            IpCommand.RenderClaim("203.0.113.10/32", "a", new ClaimIpResponse { Outcome = ClaimIpOutcome.AlreadyRouted, RoutedToService = "ns1" }));
        Assert.Contains("the move may still complete: hameshctl ip show",
            IpCommand.RenderClaim("203.0.113.10/32", "a", new ClaimIpResponse { Outcome = ClaimIpOutcome.TimedOut, Message = "stuck", Elapsed = elapsed }));
        Assert.Equal("203.0.113.10/32: claim for a failed: OVH task 9 ended ovhError: boom",
            IpCommand.RenderClaim("203.0.113.10/32", "a", new ClaimIpResponse { Outcome = ClaimIpOutcome.Failed, Message = "OVH task 9 ended ovhError: boom" }));
    }

    [Fact]
    public void RenderShow_RoutedParkedForeignAndPending()
    {
        var routed = IpCommand.RenderShow(new GetIpResponse { Ip = "203.0.113.10/32", RoutedToNode = "a", RoutedToService = "ns1" });
        Assert.Contains("ROUTED TO  a (ns1)", routed);
        Assert.Contains("PENDING    none", routed);
        Assert.Contains("nothing (parked)", IpCommand.RenderShow(new GetIpResponse { Ip = "x", Parked = true }));
        var foreign = IpCommand.RenderShow(new GetIpResponse { Ip = "x", RoutedToService = "ns9", PendingTasks = { new IpTask { TaskId = 5, Function = "genericMoveFloatingIp", Status = "doing" } } });
        Assert.Contains("ns9 (not a node of this cluster)", foreign);
        Assert.Contains("PENDING    task 5 genericMoveFloatingIp doing", foreign);
    }
}
