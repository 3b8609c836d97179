using HaMesh.Testing.Processes;

namespace HaMesh.IntegrationTests;

/// <summary>README command one, run as users run it: every process real, on loopback, no root.</summary>
public sealed class DemoTests
{
    [Fact]
    public async Task Demo_KillsThePrimary_FailsOver_OldPrimaryResyncs_NoAcknowledgedWriteLost()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var demo = DaemonProcess.Start("demo", DaemonProcess.Dll("src/Tools/Lab", "hamesh-lab"), ["demo"]);

        var exit = await demo.WaitForExitAsync(TimeSpan.FromMinutes(4), ct);

        Assert.True(exit == 0, demo.Output);
        Assert.Contains("mutual TLS: cluster CA and certificates", demo.Output, StringComparison.Ordinal);   // mTLS by default
        Assert.Contains("coordinator (witness) listening on https://", demo.Output, StringComparison.Ordinal);
        Assert.Contains("IpVerified b https://127.0.0.10:", demo.Output, StringComparison.Ordinal);          // the end-to-end check dials https too
        Assert.Contains("FailoverStarted b a → b", demo.Output, StringComparison.Ordinal);
        Assert.Contains("PeerOutdated a", demo.Output, StringComparison.Ordinal);               // b's fence-peer handler ran on promotion
        Assert.Contains("(1 POST,", demo.Output, StringComparison.Ordinal);                     // exactly one move
        Assert.Contains("answered as b, Primary at generation 2", demo.Output, StringComparison.Ordinal);
        Assert.Contains("OutdatedCleared a", demo.Output, StringComparison.Ordinal);
        Assert.Contains("missing on the new primary b: 0; missing on a after its resync: 0", demo.Output, StringComparison.Ordinal);
    }
}
