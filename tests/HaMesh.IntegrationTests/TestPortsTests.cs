using System.Net;
using System.Net.Sockets;
using HaMesh.Testing.Processes;

namespace HaMesh.IntegrationTests;

/// <summary>
/// The ports the process tests write into configs before the daemons bind them. CI once failed with
/// agent-a "address already in use" on a port picked by binding port 0: such a port is in the
/// kernel's ephemeral range, which outgoing connections take local ports from.
/// </summary>
public sealed class TestPortsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-ports-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void FreePort_IsBelowTheEphemeralRange_SoNoOutgoingConnectionCanTakeIt()
    {
        var ephemeral = TestPorts.EphemeralRangeStart();
        for (var i = 0; i < 50; i++)
        {
            Assert.InRange(DaemonProcess.FreePort(), 1024, ephemeral - 1);
        }
    }

    [Fact]
    public void Next_PortReservedByAnotherProcess_IsNeverHandedOut()
    {
        // Two allocators over one lock folder behave like two test processes: the flock is per open file.
        var first = new TestPorts(_dir, 21000, 21010);
        var second = new TestPorts(_dir, 21000, 21010);
        var taken = Enumerable.Range(0, 5).Select(_ => first.Next()).Concat(Enumerable.Range(0, 5).Select(_ => second.Next())).ToList();

        Assert.Equal(10, taken.Distinct().Count());
        Assert.Throws<InvalidOperationException>(() => second.Next());
    }

    [Fact]
    public void Next_PortSomethingListensOn_IsSkipped()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var busy = ((IPEndPoint)listener.LocalEndpoint).Port;
        var ports = new TestPorts(_dir, busy, busy + 1);

        var error = Assert.Throws<InvalidOperationException>(() => ports.Next());
        Assert.Contains("no free test port", error.Message);
    }
}
