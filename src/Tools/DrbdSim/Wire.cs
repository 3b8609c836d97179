using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace HaMesh.DrbdSim;

/// <summary>Replication link message (length-prefixed JSON on the TCP link).</summary>
internal sealed class LinkMessage
{
    public string Type { get; set; } = "";
    public string? Node { get; set; }
    public string? Role { get; set; }
    public string? Disk { get; set; }
    public ulong Current { get; set; }
    public ulong Bitmap { get; set; }
    public bool DiscardMyData { get; set; }
    public List<string>? Dirty { get; set; }
    public long Seq { get; set; }
    public string? Key { get; set; }
    public string? Value { get; set; }
    public long OutOfSync { get; set; }
    public long Total { get; set; }
    public Dictionary<string, string>? Data { get; set; }
}

internal static class Wire
{
    public static async Task WriteFrameAsync(Stream stream, byte[] payload, CancellationToken ct)
    {
        var header = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(header, payload.Length);
        await stream.WriteAsync(header, ct);
        await stream.WriteAsync(payload, ct);
        await stream.FlushAsync(ct);
    }

    public static async Task<byte[]?> ReadFrameAsync(Stream stream, CancellationToken ct)
    {
        var header = new byte[4];
        if (!await ReadExactAsync(stream, header, ct))
        {
            return null;
        }

        var len = BinaryPrimitives.ReadInt32LittleEndian(header);
        if (len < 0 || len > 64 * 1024 * 1024)
        {
            throw new InvalidDataException("bad frame length");
        }

        var buf = new byte[len];
        return await ReadExactAsync(stream, buf, ct) ? buf : null;
    }

    private static async Task<bool> ReadExactAsync(Stream stream, byte[] buf, CancellationToken ct)
    {
        var off = 0;
        while (off < buf.Length)
        {
            var n = await stream.ReadAsync(buf.AsMemory(off), ct);
            if (n == 0)
            {
                return false;
            }

            off += n;
        }

        return true;
    }

    public static byte[] Encode(LinkMessage m) => JsonSerializer.SerializeToUtf8Bytes(m, SimConfig.JsonOptions);

    public static LinkMessage Decode(byte[] b) =>
        JsonSerializer.Deserialize<LinkMessage>(b, SimConfig.JsonOptions) ?? throw new InvalidDataException("null message");

    /// <summary>Control request: int32 argc, then argc × (int32 len, UTF-8 bytes).</summary>
    public static byte[] EncodeArgv(IReadOnlyList<string> argv)
    {
        using var ms = new MemoryStream();
        var tmp = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(tmp, argv.Count);
        ms.Write(tmp);
        foreach (var a in argv)
        {
            var bytes = Encoding.UTF8.GetBytes(a);
            BinaryPrimitives.WriteInt32LittleEndian(tmp, bytes.Length);
            ms.Write(tmp);
            ms.Write(bytes);
        }

        return ms.ToArray();
    }
}
