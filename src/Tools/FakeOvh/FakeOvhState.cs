using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace HaMesh.FakeOvh;

/// <summary>Faults injected at start (flags) or at run time (POST /admin/faults).</summary>
public sealed class Faults
{
    public int Http500 { get; set; }

    public int Http429 { get; set; }

    /// <summary>The next N POSTs fail with 500 before being processed (the move did not happen).</summary>
    public int Http500OnPost { get; set; }

    /// <summary>The next N POST /move are processed (the task is created) but answered 500: the unknown-outcome case.</summary>
    public int Http500AfterPost { get; set; }

    public int DelayMs { get; set; }

    public int DropConnections { get; set; }

    public bool StuckTasks { get; set; }

    public string? FailTasks { get; set; }

    public long SkewSeconds { get; set; }

    /// <summary>The next N POST /move are applied (the task is created) and then answered 502 with an HTML body.</summary>
    public int Http502AfterPost { get; set; }

    /// <summary>How a parked IP is shown: "null" (routedTo.serviceName null, default), "empty" ("") or "absent" (routedTo null).</summary>
    public string ParkedAs { get; set; } = "null";
}

public sealed record FakeTask(long Id, string Ip, string To, long CreatedAt, string Function);

/// <summary>
/// The fake OVH account: failover IPs and where they are routed, dedicated servers, move tasks that
/// progress init → todo → doing → done over the configured duration (then routedTo flips), and a
/// hook that runs when a move completes (the netns lab uses it to re-route the IP for real).
/// </summary>
public sealed class FakeOvhState(TimeProvider time, TimeSpan taskDuration, string? onMoveComplete)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, string?> _routes = new(StringComparer.Ordinal);
    private readonly List<string> _servers = [];
    private readonly Dictionary<long, FakeTask> _tasks = [];
    private readonly Dictionary<long, (FakeTask Task, string Status, string? Comment, DateTimeOffset DoneAt)> _finished = [];
    private long _nextTask = 559188894;

    public Faults Faults { get; set; } = new();

    public void Seed(string json)
    {
        var root = JsonNode.Parse(json)!.AsObject();
        lock (_lock)
        {
            foreach (var (ip, to) in root["ips"]!.AsObject())
            {
                _routes[Normalize(ip)!] = to?.GetValue<string>();
            }

            _servers.AddRange(root["servers"]!.AsArray().Select(s => s!.GetValue<string>()));
        }
    }

    public static string? Normalize(string ip) =>
        ip.Contains('/', StringComparison.Ordinal) ? ip : ip + (ip.Contains(':', StringComparison.Ordinal) ? "/128" : "/32");

    public IReadOnlyList<string> Ips
    {
        get
        {
            lock (_lock)
            {
                return [.. _routes.Keys];
            }
        }
    }

    public IReadOnlyList<string> Servers
    {
        get
        {
            lock (_lock)
            {
                return [.. _servers];
            }
        }
    }

    public bool HasIp(string ip)
    {
        lock (_lock)
        {
            return _routes.ContainsKey(ip);
        }
    }

    public string? RoutedTo(string ip)
    {
        Advance();
        lock (_lock)
        {
            return _routes.GetValueOrDefault(ip);
        }
    }

    /// <summary>Starts a move. Null with an error when refused (the fake's documented defaults, spec §4.5).</summary>
    public (FakeTask? Task, int Status, string Error) Move(string ip, string to)
    {
        Advance();
        lock (_lock)
        {
            if (to.Length > 0 && !_servers.Contains(to))
            {
                return (null, 400, $"Invalid destination: {to} is not one of your services");
            }

            if (to.Length > 0 && _routes.GetValueOrDefault(ip) == to)
            {
                return (null, 400, "IP is already routed to this service");
            }

            if (to.Length == 0 && _routes.GetValueOrDefault(ip) is null)
            {
                return (null, 400, "IP is already parked");
            }

            if (_tasks.Values.Any(t => t.Ip == ip))
            {
                return (null, 409, "A move task is already pending for this IP");
            }

            var task = new FakeTask(_nextTask++, ip, to, time.GetTimestamp(), "genericMoveFloatingIp");
            _tasks[task.Id] = task;
            return (task, 200, "");
        }
    }

    public IReadOnlyList<long> TaskIds(string ip, string? status, string? function = null)
    {
        Advance();
        if (function is not null && function != "genericMoveFloatingIp")
        {
            return [];
        }

        lock (_lock)
        {
            return [.. _tasks.Values.Where(t => t.Ip == ip && (status is null || Status(t) == status)).Select(t => t.Id)
                .Concat(_finished.Where(kv => (status is null || kv.Value.Status == status) && kv.Value.Task.Ip == ip).Select(kv => kv.Key))];
        }
    }

    /// <summary>The failover IPs routed to <paramref name="server"/> now.</summary>
    public IReadOnlyList<string> IpsOf(string server)
    {
        Advance();
        lock (_lock)
        {
            return [.. _routes.Where(kv => kv.Value == server).Select(kv => kv.Key)];
        }
    }

    public JsonObject? Task(string ip, long id)
    {
        Advance();
        lock (_lock)
        {
            if (_tasks.TryGetValue(id, out var t) && t.Ip == ip)
            {
                return TaskJson(t, Status(t), null);
            }

            if (_finished.TryGetValue(id, out var done) && done.Task.Ip == ip)
            {
                return TaskJson(done.Task, done.Status, done.Comment, done.DoneAt);
            }

            return null;
        }
    }

    public string Dump()
    {
        Advance();
        lock (_lock)
        {
            var ips = new JsonObject();
            foreach (var (ip, to) in _routes)
            {
                ips[ip] = to;
            }

            var tasks = new JsonArray([.. _tasks.Values.Select(t => (JsonNode)TaskJson(t, Status(t), null))]);
            return new JsonObject { ["ips"] = ips, ["servers"] = new JsonArray([.. _servers.Select(s => (JsonNode)JsonValue.Create(s))]), ["pendingTasks"] = tasks }.ToJsonString();
        }
    }

    /// <summary>Finishes tasks whose time has come: routedTo flips, the hook runs.</summary>
    public void Advance()
    {
        List<FakeTask> completed = [];
        lock (_lock)
        {
            foreach (var t in _tasks.Values.ToList())
            {
                var status = Status(t);
                if (status is "done" or "ovhError")
                {
                    _tasks.Remove(t.Id);
                    var comment = status == "ovhError" ? "An internal error occurred while moving the IP" : "";
                    _finished[t.Id] = (t, status, comment.Length == 0 ? null : comment, time.GetUtcNow());
                    if (status == "done")
                    {
                        _routes[t.Ip] = t.To.Length == 0 ? null : t.To;
                        completed.Add(t);
                    }
                }
            }
        }

        foreach (var t in completed)
        {
            RunHook(t);
        }
    }

    private string Status(FakeTask t)
    {
        var elapsed = time.GetElapsedTime(t.CreatedAt);
        if (Faults.StuckTasks)
        {
            return elapsed < taskDuration * 0.1 ? "init" : "todo";
        }

        if (elapsed >= taskDuration)
        {
            return Faults.FailTasks ?? "done";
        }

        return elapsed < taskDuration * 0.1 ? "init" : elapsed < taskDuration * 0.3 ? "todo" : "doing";
    }

    private JsonObject TaskJson(FakeTask t, string status, string? comment, DateTimeOffset? doneAt = null)
    {
        var started = time.GetUtcNow() - time.GetElapsedTime(t.CreatedAt);
        var last = doneAt ?? time.GetUtcNow();
        return new JsonObject
        {
            ["taskId"] = t.Id,
            ["function"] = t.Function,
            ["status"] = status,
            ["startDate"] = started.ToString("yyyy-MM-ddTHH:mm:sszzz", CultureInfo.InvariantCulture),
            ["lastUpdate"] = last.ToString("yyyy-MM-ddTHH:mm:sszzz", CultureInfo.InvariantCulture),
            ["doneDate"] = status == "done" ? last.ToString("yyyy-MM-ddTHH:mm:sszzz", CultureInfo.InvariantCulture) : null,
            ["comment"] = comment,
            ["destination"] = t.To.Length == 0 ? null : new JsonObject { ["serviceName"] = t.To },
        };
    }

    private void RunHook(FakeTask t)
    {
        if (string.IsNullOrEmpty(onMoveComplete))
        {
            return;
        }

        var psi = new ProcessStartInfo(onMoveComplete) { UseShellExecute = false };
        psi.ArgumentList.Add(t.Ip);
        psi.ArgumentList.Add(t.To);
        using var p = new Process { StartInfo = psi };
        p.Start();
        p.WaitForExit(TimeSpan.FromSeconds(10));
    }

    internal static string Serialize(object value) => JsonSerializer.Serialize(value);
}
