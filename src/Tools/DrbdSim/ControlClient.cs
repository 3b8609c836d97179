using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace HaMesh.DrbdSim;

/// <summary>Client of the daemon's control socket (same protocol as the C stand-in).</summary>
public static class ControlClient
{
    public static async Task<CommandResult> CallAsync(string socketPath, IReadOnlyList<string> argv, CancellationToken ct)
    {
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await s.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct);
        await using var stream = new NetworkStream(s, ownsSocket: false);
        await stream.WriteAsync(Wire.EncodeArgv(argv), ct);
        var head = new byte[4];
        await stream.ReadExactlyAsync(head, ct);
        var exit = BinaryPrimitives.ReadInt32LittleEndian(head);
        var o = await ReadBlobAsync(stream, ct);
        var e = await ReadBlobAsync(stream, ct);
        return new CommandResult(exit, o, e);
    }

    private static async Task<string> ReadBlobAsync(Stream s, CancellationToken ct)
    {
        var head = new byte[4];
        await s.ReadExactlyAsync(head, ct);
        var b = new byte[BinaryPrimitives.ReadInt32LittleEndian(head)];
        await s.ReadExactlyAsync(b, ct);
        return Encoding.UTF8.GetString(b);
    }
}
