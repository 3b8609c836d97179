using System.Collections.Concurrent;

namespace HaMesh.Shared.Hosting;

/// <summary>
/// The daemon's own liveness: each critical loop (the coordinator's decision loop, the agent's lease loop)
/// registers with the longest silence it may have and beats every round. The systemd watchdog is fed only
/// while every loop beat recently, so a hung loop gets the daemon restarted instead of silently doing nothing.
/// </summary>
public sealed class LoopHealth(TimeProvider time)
{
    private readonly ConcurrentDictionary<string, Loop> _loops = new(StringComparer.Ordinal);

    /// <summary>Registers <paramref name="name"/>; its silence counts from now until its first beat.</summary>
    public void Register(string name, TimeSpan maxSilence) => _loops[name] = new Loop(maxSilence, time.GetTimestamp());

    /// <summary>Records one completed round of <paramref name="name"/>.</summary>
    public void Beat(string name)
    {
        if (_loops.TryGetValue(name, out var loop))
        {
            Volatile.Write(ref loop.LastBeat, time.GetTimestamp());
        }
    }

    /// <summary>Null when every loop beat within its limit, else which loop is silent and for how long.</summary>
    public string? Problem()
    {
        foreach (var (name, loop) in _loops.OrderBy(l => l.Key, StringComparer.Ordinal))
        {
            var silent = time.GetElapsedTime(Volatile.Read(ref loop.LastBeat));
            if (silent > loop.MaxSilence)
            {
                return $"{name} silent for {silent.TotalSeconds:0.0} s (limit {loop.MaxSilence.TotalSeconds:0.0} s)";
            }
        }

        return null;
    }

    private sealed class Loop(TimeSpan maxSilence, long lastBeat)
    {
        public TimeSpan MaxSilence { get; } = maxSilence;

        public long LastBeat = lastBeat;
    }
}
