using System.Net;
using System.Net.Sockets;

namespace HaMesh.Testing.Processes;

/// <summary>
/// Hands out TCP ports for daemons a test starts as child processes: each port is written into a
/// config before the daemon binds it, so it must stay free in between.
/// <para>
/// Binding port 0 and closing it (the usual trick) returns a port from the kernel's ephemeral range,
/// the range every outgoing connection takes its local port from: while the test starts the
/// coordinator and the other agent, one of their connections can take the port (CI: agent-a failed
/// "address already in use" on a port picked that way). This allocator picks from below the
/// ephemeral range, where the kernel never assigns ports by itself, and reserves each port it hands
/// out with an exclusive lock on a file named after it, held for the life of the test process, so
/// that test assemblies running side by side never get the same port.
/// </para>
/// </summary>
public sealed class TestPorts
{
    private readonly string _lockDirectory;
    private readonly int _low;
    private readonly int _high;
    private readonly List<FileStream> _held = [];
    private readonly Lock _lock = new();
    private int _next;

    /// <param name="lockDirectory">Where the per-port lock files live (shared by every test process on the machine).</param>
    /// <param name="low">First port of the range (inclusive).</param>
    /// <param name="high">End of the range (exclusive).</param>
    public TestPorts(string lockDirectory, int low, int high)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(low, 1024);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(high, low);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(high, 65536);
        _lockDirectory = lockDirectory;
        _low = low;
        _high = high;
        _next = low + Random.Shared.Next(high - low);
        Directory.CreateDirectory(lockDirectory);
    }

    /// <summary>The allocator every test process shares: ports 20000 up to the ephemeral range, locks under the temp folder.</summary>
    public static TestPorts Shared { get; } = new(
        Path.Combine(Path.GetTempPath(), "hamesh-test-ports"),
        20000,
        Math.Max(20000 + 1000, EphemeralRangeStart()));

    /// <summary>The first port of the kernel's ephemeral range (net.ipv4.ip_local_port_range), 32768 if it cannot be read.</summary>
    public static int EphemeralRangeStart()
    {
        try
        {
            var first = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split(['\t', ' ', '\n'], StringSplitOptions.RemoveEmptyEntries)[0];
            return int.TryParse(first, System.Globalization.CultureInfo.InvariantCulture, out var port) ? port : 32768;
        }
        catch (IOException)
        {
            return 32768;
        }
        catch (UnauthorizedAccessException)
        {
            return 32768;
        }
    }

    /// <summary>A port no other test process holds and nothing listens on right now; it stays reserved for this process.</summary>
    public int Next()
    {
        lock (_lock)
        {
            var size = _high - _low;
            for (var tried = 0; tried < size; tried++)
            {
                var port = _low + ((_next - _low + tried) % size);
                if (TryReserve(port))
                {
                    _next = port + 1 >= _high ? _low : port + 1;
                    return port;
                }
            }

            throw new InvalidOperationException($"no free test port in [{_low}, {_high}): every one is locked under {_lockDirectory} or in use");
        }
    }

    private bool TryReserve(int port)
    {
        FileStream reservation;
        try
        {
            // FileShare.None takes an exclusive flock on Unix: another process (or another allocator) opening it fails.
            reservation = new FileStream(Path.Combine(_lockDirectory, port.ToString(System.Globalization.CultureInfo.InvariantCulture)), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException)
        {
            return false;
        }

        if (!IsFree(port))
        {
            reservation.Dispose();
            return false;
        }

        _held.Add(reservation);
        return true;
    }

    private static bool IsFree(int port)
    {
        try
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(IPAddress.Loopback, port));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
