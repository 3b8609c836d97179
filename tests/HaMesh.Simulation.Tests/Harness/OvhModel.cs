using HaMesh.Shared.Core;

namespace HaMesh.Simulation.Tests.Harness;

/// <summary>
/// The OVH failover-IP API as specs/ovh-api.md describes it, reduced to what the coordinator uses:
/// routedTo, and POST move creating an asynchronous task that completes seconds later. Faults while
/// <see cref="Faulty"/>: 5xx/429 before any effect, a timeout after the effect (the task exists but
/// the answer is lost), and stuck tasks (they finish only once faults stop).
/// </summary>
public sealed class OvhModel(SimWorld world)
{
    private readonly List<(long Id, string Ip, string To, long DoneAt, bool Stuck)> _tasks = [];
    private long _taskIds;

    public Dictionary<string, string?> RoutedTo { get; } = new(StringComparer.Ordinal);

    public bool Faulty { get; set; }

    public int Moves { get; private set; }

    public int Calls { get; private set; }

    /// <summary>Handles a call; the result is null when the answer is lost (timeout).</summary>
    public OvhReply? Handle(string ip, OvhCall call)
    {
        Calls++;
        Complete();
        if (Faulty && world.Chance(0.15))
        {
            world.FaultEvents++;
            return new OvhReply.Failed(world.Chance(0.5) ? "HTTP 503 Service Unavailable" : "HTTP 429 Too Many Requests");
        }

        OvhReply reply;
        switch (call)
        {
            case OvhCall.ReadState:
                var pending = _tasks.FirstOrDefault(t => t.Ip == ip);
                reply = new OvhReply.State(RoutedTo.GetValueOrDefault(ip), pending.Id == 0 ? null : pending.To);
                break;
            case OvhCall.Move m:
                if (_tasks.Any(t => t.Ip == ip))
                {
                    return new OvhReply.Failed("HTTP 409 a move task is already pending for this IP");
                }

                if (RoutedTo.GetValueOrDefault(ip) == m.To)
                {
                    return new OvhReply.Failed("HTTP 400 the IP is already routed to this server");
                }

                Moves++;
                var id = ++_taskIds;
                var stuck = Faulty && world.Chance(0.1);
                var doneAt = world.Now + SimWorld.Ms(world.Uniform(1000, 8000));
                _tasks.Add((id, ip, m.To, doneAt, stuck));
                world.Trace("ovh", $"move task {id}: {ip} -> {m.To}{(stuck ? " (stuck)" : "")}", key: true);
                world.At(doneAt, Complete);
                reply = new OvhReply.MoveAccepted(id);
                break;
            default:
                throw new InvalidOperationException(call.ToString());
        }

        if (Faulty && world.Chance(0.1))
        {
            world.FaultEvents++;
            return null;  // applied, answer lost
        }

        return reply;
    }

    /// <summary>Faults stop: stuck tasks resume.</summary>
    public void Unstick()
    {
        for (var i = 0; i < _tasks.Count; i++)
        {
            var t = _tasks[i];
            if (t.Stuck)
            {
                var doneAt = world.Now + SimWorld.Ms(1000);
                _tasks[i] = t with { Stuck = false, DoneAt = doneAt };
                world.At(doneAt, Complete);
            }
        }
    }

    private void Complete()
    {
        for (var i = _tasks.Count - 1; i >= 0; i--)
        {
            var t = _tasks[i];
            if (!t.Stuck && t.DoneAt <= world.Now)
            {
                RoutedTo[t.Ip] = t.To;
                _tasks.RemoveAt(i);
                world.Trace("ovh", $"task {t.Id} done: {t.Ip} routed to {t.To}", key: true);
            }
        }
    }
}
