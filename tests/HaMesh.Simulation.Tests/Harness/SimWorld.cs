using System.Globalization;
using System.Text;

namespace HaMesh.Simulation.Tests.Harness;

/// <summary>
/// The simulated world's plumbing: one global clock (ticks of 100 ns), one event queue ordered by
/// (time, insertion), a seeded random source, and a trace. Everything runs on the caller's thread, so a
/// seed fully determines a run.
/// </summary>
public sealed class SimWorld(int seed, int traceTail)
{
    private readonly PriorityQueue<Action, (long At, long Seq)> _queue = new();
    private readonly Queue<string> _tail = new();
    private readonly List<string> _keyLines = [];
    private long _seq;
    private ulong _hash = 14695981039346656037UL;

    public Random Random { get; } = new(seed);

    public int Seed { get; } = seed;

    /// <summary>Global simulated time in ticks.</summary>
    public long Now { get; private set; }

    public long Events { get; private set; }

    public long FaultEvents { get; set; }

    public ulong TraceHash => _hash;

    public IReadOnlyList<string> KeyLines => _keyLines;

    public static long Ms(double ms) => (long)(ms * TimeSpan.TicksPerMillisecond);

    public void At(long at, Action action) => _queue.Enqueue(action, (Math.Max(at, Now), _seq++));

    public void After(long delay, Action action) => At(Now + delay, action);

    /// <summary>Runs events until the queue is empty or the next one is after <paramref name="until"/>; calls <paramref name="check"/> after each and stops when it returns false.</summary>
    public void RunUntil(long until, Func<bool> check)
    {
        while (_queue.TryPeek(out _, out var key) && key.At <= until)
        {
            var action = _queue.Dequeue();
            Now = key.At;
            Events++;
            action();
            if (!check())
            {
                return;
            }
        }

        Now = Math.Max(Now, until);
    }

    public double Uniform(double lo, double hi) => lo + (Random.NextDouble() * (hi - lo));

    public bool Chance(double p) => Random.NextDouble() < p;

    /// <summary>A line for the trace: hashed (for the reproducibility check) and kept in the tail; key lines are kept whole.</summary>
    public void Trace(string who, string text, bool key = false)
    {
        var line = string.Create(CultureInfo.InvariantCulture, $"{Now / (double)TimeSpan.TicksPerSecond,9:0.0000} [{who}] {text}");
        foreach (var c in line)
        {
            _hash = (_hash ^ c) * 1099511628211UL;
        }

        _hash = (_hash ^ '\n') * 1099511628211UL;
        if (key)
        {
            _keyLines.Add(line);
        }

        _tail.Enqueue(line);
        if (_tail.Count > traceTail)
        {
            _tail.Dequeue();
        }
    }

    public string Tail()
    {
        var sb = new StringBuilder();
        foreach (var l in _tail)
        {
            sb.AppendLine(l);
        }

        return sb.ToString();
    }
}

/// <summary>A node's own clock: a fixed offset and a rate within the drift bound (1 ± drift).</summary>
public sealed class SimClock(long offset, double rate)
{
    public double Rate { get; } = rate;

    public HaMesh.Shared.Failover.MonoTime Local(long global) => new(TimeSpan.FromTicks(offset + (long)(global * Rate)));

    /// <summary>The first global instant at which the local clock reads at least <paramref name="local"/>.</summary>
    public long Global(HaMesh.Shared.Failover.MonoTime local)
    {
        var g = (long)Math.Ceiling((local.SinceOrigin.Ticks - offset) / Rate);
        while (Local(g) < local)
        {
            g++;
        }

        return g;
    }
}

/// <summary>Directed links between endpoints with partitions (incl. one-way), loss and delay.</summary>
public sealed class SimNetwork(SimWorld world)
{
    private readonly HashSet<(string From, string To)> _blocked = [];

    public double DropRate { get; set; }

    public long Dropped { get; private set; }

    public bool Blocked(string from, string to) => _blocked.Contains((from, to));

    public bool Bidirectional(string a, string b) => !Blocked(a, b) && !Blocked(b, a);

    public void Block(string from, string to) => _blocked.Add((from, to));

    public void HealAll() => _blocked.Clear();

    public string Describe() => _blocked.Count == 0 ? "none" : string.Join(",", _blocked.Order().Select(b => $"{b.From}->{b.To}"));

    /// <summary>Sends a message: dropped if the link is blocked or by loss; else delivered after a delay.</summary>
    public void Send(string from, string to, Action deliver, double minMs = 0.5, double maxMs = 12)
    {
        if (Blocked(from, to) || (DropRate > 0 && world.Chance(DropRate)))
        {
            Dropped++;
            return;
        }

        world.After(SimWorld.Ms(world.Uniform(minMs, maxMs)), () =>
        {
            // a partition that started while the message was in flight cuts it too
            if (Blocked(from, to))
            {
                Dropped++;
                return;
            }

            deliver();
        });
    }
}
