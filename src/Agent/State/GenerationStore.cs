using System.Globalization;
using System.Runtime.InteropServices;
using HaMesh.Shared.Configuration;
using Microsoft.Extensions.Options;

namespace HaMesh.Agent.State;

/// <summary>
/// The highest generation this agent has seen, per resource, persisted before any action (design §4):
/// written to a temporary file, fsync'd, renamed over the old one, and the directory fsync'd, so a
/// crash leaves either the old or the new number, never a torn one. A corrupt file is an error, never 0.
/// </summary>
public sealed partial class GenerationStore
{
    private readonly string _directory;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, ulong> _cache = new(StringComparer.Ordinal);

    public GenerationStore(IOptions<HaMeshOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _directory = options.Value.Agent.StateDirectory;
    }

    public string PathOf(string resource) => Path.Combine(_directory, resource + ".generation");

    /// <exception cref="InvalidDataException">The state file exists but does not hold a generation.</exception>
    public ulong Get(string resource)
    {
        lock (_lock)
        {
            if (_cache.TryGetValue(resource, out var cached))
            {
                return cached;
            }

            var path = PathOf(resource);
            if (!File.Exists(path))
            {
                return _cache[resource] = 0;
            }

            var text = File.ReadAllText(path).Trim();
            if (!ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value))
            {
                throw new InvalidDataException($"generation file '{path}' is corrupt ('{(text.Length > 32 ? text[..32] : text)}'); refusing to guess. Restore it, or remove it deliberately if this node's state is to be reset");
            }

            return _cache[resource] = value;
        }
    }

    /// <summary>Persists <paramref name="generation"/> if higher than the stored one; durable on return. Returns the stored value.</summary>
    public ulong Raise(string resource, ulong generation)
    {
        lock (_lock)
        {
            var current = Get(resource);
            if (generation <= current)
            {
                return current;
            }

            WriteDurably(PathOf(resource), generation);
            return _cache[resource] = generation;
        }
    }

    public string IncarnationPath => Path.Combine(_directory, "agent.incarnation");

    /// <summary>
    /// Counts this start of the agent: reads the persisted counter, adds one, and writes it durably before
    /// returning it. Lease request sequences embed it (high 32 bits), so they grow across restarts and a
    /// grant for a request of an earlier run never matches a request of this one.
    /// </summary>
    /// <exception cref="InvalidDataException">The counter file exists but does not hold a number.</exception>
    public ulong NextIncarnation()
    {
        lock (_lock)
        {
            var path = IncarnationPath;
            ulong current = 0;
            if (File.Exists(path))
            {
                var text = File.ReadAllText(path).Trim();
                if (!ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out current))
                {
                    throw new InvalidDataException($"incarnation file '{path}' is corrupt ('{(text.Length > 32 ? text[..32] : text)}'); refusing to guess. Remove it deliberately to restart the count");
                }
            }

            var next = (current + 1) & 0xFFFF_FFFF;
            WriteDurably(path, next == 0 ? 1 : next);
            return next == 0 ? 1 : next;
        }
    }

    // Temporary file, fsync, rename over the old one, fsync the directory: a crash leaves the old or the new number.
    private void WriteDurably(string path, ulong value)
    {
        Directory.CreateDirectory(_directory);
        var temp = path + ".tmp";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(System.Text.Encoding.ASCII.GetBytes(value.ToString(CultureInfo.InvariantCulture) + "\n"));
            stream.Flush(flushToDisk: true);
        }

        File.Move(temp, path, overwrite: true);
        FsyncDirectory(_directory);
    }

    private static void FsyncDirectory(string directory)
    {
        var fd = Open(directory, 0x10000 /* O_RDONLY | O_DIRECTORY */);
        if (fd < 0)
        {
            throw new IOException($"cannot open directory '{directory}' to fsync it (errno {Marshal.GetLastPInvokeError()})");
        }

        try
        {
            if (Fsync(fd) != 0)
            {
                throw new IOException($"fsync of directory '{directory}' failed (errno {Marshal.GetLastPInvokeError()})");
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
