using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http.Features;

namespace HaMesh.FakeOvh;

public sealed record FakeOvhOptions(string ApplicationKey, string ApplicationSecret, string ConsumerKey, IReadOnlyList<(string Method, string Path)> Rules, int RateLimitPerMinute, TimeSpan TimestampWindow)
{
    /// <summary>Consumer keys created but not validated yet (or expired): 403 INVALID_CREDENTIAL "This credential is not valid".</summary>
    public IReadOnlyList<string> PendingConsumerKeys { get; init; } = [];
}

/// <summary>
/// The fake OVH API v1 over real HTTP (specs/ovh-api.md): verifies every signature against the raw
/// request target (with and without port, the node-ovh variant), the timestamp window, the consumer
/// key's access rules and a per-application rate limit, then serves /ip, /ip/{ip}, move, park, tasks
/// and /dedicated/server with OVH's JSON shapes and error bodies. Faults come from <see cref="FakeOvhState.Faults"/>.
/// </summary>
public sealed class FakeOvhApi(FakeOvhState state, FakeOvhOptions options, TimeProvider time)
{
    private static readonly JsonSerializerOptions CaseInsensitive = new() { PropertyNameCaseInsensitive = true };
    private readonly ConcurrentQueue<long> _recent = new();

    public ConcurrentQueue<string> Requests { get; } = new();

    public void Map(WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.MapGet("/admin/state", () => Results.Text(state.Dump(), "application/json"));
        app.MapGet("/admin/requests", () => Results.Text(string.Join('\n', Requests) + "\n", "text/plain"));
        app.MapPost("/admin/faults", async (HttpRequest request) =>
        {
            state.Faults = await JsonSerializer.DeserializeAsync<Faults>(request.Body, CaseInsensitive) ?? new Faults();
            return Results.Ok();
        });
        app.Map("/1.0/{**rest}", HandleAsync);
    }

    private async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        var raw = context.Features.Get<IHttpRequestFeature>()!.RawTarget;
        var body = await new StreamReader(request.Body, Encoding.UTF8).ReadToEndAsync(context.RequestAborted);
        Requests.Enqueue($"{request.Method} {raw}");
        var faults = state.Faults;
        if (faults.DelayMs > 0)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(faults.DelayMs), time, context.RequestAborted);
        }

        if (faults.DropConnections > 0)
        {
            faults.DropConnections--;
            context.Abort();
            return;
        }

        if (faults.Http500 > 0 || (faults.Http500OnPost > 0 && request.Method == "POST"))
        {
            if (faults.Http500 > 0)
            {
                faults.Http500--;
            }
            else
            {
                faults.Http500OnPost--;
            }

            context.Response.StatusCode = 500;
            context.Response.ContentType = "text/html";
            await context.Response.WriteAsync("<html><body><h1>500 Internal Server Error</h1></body></html>", context.RequestAborted);
            return;
        }

        if (faults.Http429 > 0)
        {
            faults.Http429--;
            await Error(context, 429, "Too many requests", null);
            return;
        }

        var path = raw.Split('?')[0]["/1.0".Length..];
        if (path == "/auth/time" && request.Method == "GET")
        {
            await Json(context, JsonValue.Create(time.GetUtcNow().ToUnixTimeSeconds() + faults.SkewSeconds));
            return;
        }

        if (await RejectAsync(context, raw, body, path))
        {
            return;
        }

        await RouteAsync(context, path, raw, body);
    }

    private async Task<bool> RejectAsync(HttpContext context, string raw, string body, string path)
    {
        var h = context.Request.Headers;
        if (h["X-Ovh-Application"] != options.ApplicationKey)
        {
            return await Error(context, 403, "This application key is invalid", "INVALID_KEY");
        }

        if (!IsWithinRate())
        {
            return await Error(context, 429, "Too many requests", null);
        }

        var ck = h["X-Ovh-Consumer"].ToString();
        if (ck.Length == 0)
        {
            return await Error(context, 401, "You must login first", null);
        }

        if (options.PendingConsumerKeys.Contains(ck))
        {
            return await Error(context, 403, "This credential is not valid", "INVALID_CREDENTIAL");
        }

        if (ck != options.ConsumerKey)
        {
            return await Error(context, 403, "This credential does not exist", "INVALID_CREDENTIAL");
        }

        if (!long.TryParse(h["X-Ovh-Timestamp"], NumberStyles.None, CultureInfo.InvariantCulture, out var ts)
            || Math.Abs(ts - (time.GetUtcNow().ToUnixTimeSeconds() + state.Faults.SkewSeconds)) > options.TimestampWindow.TotalSeconds)
        {
            return await Error(context, 400, "Query out of time", "QUERY_TIME_OUT");
        }

        var host = context.Request.Host;
        var candidates = new[] { $"{context.Request.Scheme}://{host}{raw}", $"https://{host.Host}{raw}" };
        var sent = h["X-Ovh-Signature"].ToString();
        var method = context.Request.Method;
        if (!candidates.Any(url => FixedTimeEquals(Sign(options.ApplicationSecret, ck, method, url, body, ts), sent)))
        {
            return await Error(context, 400, "Invalid signature", "INVALID_SIGNATURE");
        }

        var decoded = Uri.UnescapeDataString(path);
        if (!options.Rules.Any(r => r.Method == method && (r.Path == decoded || (r.Path.EndsWith("/*", StringComparison.Ordinal) && decoded.StartsWith(r.Path[..^1], StringComparison.Ordinal)))))
        {
            return await Error(context, 403, "This call has not been granted", "NOT_GRANTED_CALL");
        }

        return false;
    }

    private async Task RouteAsync(HttpContext context, string path, string raw, string body)
    {
        var segments = path.Trim('/').Split('/').Select(Uri.UnescapeDataString).ToArray();
        var method = context.Request.Method;
        var query = context.Request.Query;
        var faults = state.Faults;
        switch (method, segments)
        {
            case ("GET", ["ip"]):
                var type = query["type"].FirstOrDefault();
                var containing = query["ip"].FirstOrDefault();
                var routedFilter = query["routedTo.serviceName"].FirstOrDefault();
                await Json(context, new JsonArray([.. state.Ips
                    .Where(i => type is null || type == "failover")
                    .Where(i => containing is null || Contains(i, containing))
                    .Where(i => routedFilter is null || state.RoutedTo(i) == routedFilter)
                    .Select(i => (JsonNode)JsonValue.Create(i))]));
                return;
            case ("GET", ["dedicated", "server"]):
                await Json(context, new JsonArray([.. state.Servers.Select(s => (JsonNode)JsonValue.Create(s))]));
                return;
            case ("GET", ["dedicated", "server", var name]) when state.Servers.Contains(name):
                await Json(context, new JsonObject { ["name"] = name, ["state"] = "ok", ["powerState"] = "poweron", ["datacenter"] = "gra1" });
                return;
            case ("GET", ["dedicated", "server", var owner, "ips"]) when state.Servers.Contains(owner):
                await Json(context, new JsonArray([.. state.IpsOf(owner).Select(i => (JsonNode)JsonValue.Create(i))]));
                return;
            case ("GET", ["dedicated", "server", _, ..]):
                await Error(context, 404, "This service does not exist", null);
                return;
        }

        if (segments is not ["ip", var rawIp, ..] || FakeOvhState.Normalize(rawIp) is not { } ip || !state.HasIp(ip))
        {
            await Error(context, 404, segments is ["ip", var x, ..] && x.Length > 0 && !raw.Contains("/ip/" + x + "/", StringComparison.Ordinal) && segments.Length == 2
                ? $"The requested object (ip = {FakeOvhState.Normalize(x)}) does not exist"
                : "Got an invalid (or empty) URL", null);
            return;
        }

        switch (method, segments[2..])
        {
            case ("GET", []):
                var routed = state.RoutedTo(ip);
                await Json(context, new JsonObject
                {
                    ["ip"] = ip,
                    ["type"] = "failover",
                    ["isAdditionalIp"] = true,
                    ["routedTo"] = routed is not null ? new JsonObject { ["serviceName"] = routed }
                        : state.Faults.ParkedAs switch { "absent" => null, "empty" => new JsonObject { ["serviceName"] = "" }, _ => new JsonObject { ["serviceName"] = null } },
                    ["description"] = "hamesh",
                    ["canBeTerminated"] = true,
                    ["country"] = "fr",
                    ["version"] = 4,
                });
                return;
            case ("GET", ["move"]):
                await Json(context, new JsonObject
                {
                    ["dedicatedServer"] = new JsonArray([.. state.Servers.Where(s => s != state.RoutedTo(ip)).Select(s => (JsonNode)new JsonObject { ["service"] = s, ["nexthop"] = null })]),
                    ["vps"] = new JsonArray(),
                    ["cloudProject"] = new JsonArray(),
                });
                return;
            case ("POST", ["move"]):
                string? to = null;
                try
                {
                    to = JsonNode.Parse(body)?["to"]?.GetValue<string>();
                }
                catch (JsonException)
                {
                }

                if (string.IsNullOrEmpty(to))
                {
                    await Error(context, 400, "Invalid parameter: to is required", null);
                    return;
                }

                var (task, status, error) = state.Move(ip, to);
                if (task is null)
                {
                    await Error(context, status, error, null);
                    return;
                }

                if (faults.Http502AfterPost > 0 || faults.Http500AfterPost > 0)
                {
                    // the move was applied (task created) but the answer is an HTML error: the unknown-outcome case
                    var code = faults.Http502AfterPost > 0 ? 502 : 500;
                    if (code == 502)
                    {
                        faults.Http502AfterPost--;
                    }
                    else
                    {
                        faults.Http500AfterPost--;
                    }

                    context.Response.StatusCode = code;
                    context.Response.ContentType = "text/html";
                    await context.Response.WriteAsync(code == 502
                        ? "<html><body><h1>502 Bad Gateway</h1></body></html>"
                        : "<html><body><h1>500 Internal Server Error</h1></body></html>", context.RequestAborted);
                    return;
                }

                await Json(context, state.Task(ip, task.Id)!);
                return;
            case ("POST", ["park"]):
                var (parkTask, parkStatus, parkError) = state.Move(ip, "");
                if (parkTask is null)
                {
                    await Error(context, parkStatus, parkError, null);
                    return;
                }

                await Json(context, state.Task(ip, parkTask.Id)!);
                return;
            case ("GET", ["task"]):
                await Json(context, new JsonArray([.. state.TaskIds(ip, query["status"].FirstOrDefault(), query["function"].FirstOrDefault()).Select(i => (JsonNode)JsonValue.Create(i))]));
                return;
            case ("GET", ["task", var id]) when long.TryParse(id, NumberStyles.None, CultureInfo.InvariantCulture, out var taskId) && state.Task(ip, taskId) is { } t:
                await Json(context, t);
                return;
            default:
                await Error(context, 404, "Got an invalid (or empty) URL", null);
                return;
        }
    }

    /// <summary>Whether the block <paramref name="block"/> equals or contains <paramref name="ip"/> (the ip filter of GET /ip).</summary>
    internal static bool Contains(string block, string ip)
    {
        var wanted = FakeOvhState.Normalize(ip)!;
        if (wanted == block)
        {
            return true;
        }

        var parts = block.Split('/');
        var address = wanted.Split('/')[0];
        if (parts.Length != 2 || !System.Net.IPAddress.TryParse(parts[0], out var net) || !System.Net.IPAddress.TryParse(address, out var a)
            || net.AddressFamily != a.AddressFamily || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var prefix))
        {
            return false;
        }

        var nb = net.GetAddressBytes();
        var ab = a.GetAddressBytes();
        for (var bit = 0; bit < prefix; bit++)
        {
            var mask = (byte)(0x80 >> (bit % 8));
            if ((nb[bit / 8] & mask) != (ab[bit / 8] & mask))
            {
                return false;
            }
        }

        return true;
    }

    private bool IsWithinRate()
    {
        var now = time.GetTimestamp();
        _recent.Enqueue(now);
        while (_recent.TryPeek(out var oldest) && time.GetElapsedTime(oldest) > TimeSpan.FromMinutes(1))
        {
            _recent.TryDequeue(out _);
        }

        return _recent.Count <= options.RateLimitPerMinute;
    }

    public static string Sign(string secret, string ck, string method, string url, string body, long ts)
    {
#pragma warning disable CA5350 // SHA1 is the OVH signature algorithm being emulated
        return "$1$" + Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes(string.Join('+', secret, ck, method, url, body, ts.ToString(CultureInfo.InvariantCulture)))));
#pragma warning restore CA5350
    }

    private static bool FixedTimeEquals(string a, string b) =>
        CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(a), Encoding.ASCII.GetBytes(b));

    private static async Task Json(HttpContext context, JsonNode node)
    {
        context.Response.ContentType = "application/json; charset=utf-8";
        context.Response.Headers["X-Ovh-Queryid"] = "FAKE.ext-1." + Guid.NewGuid().ToString("N");
        await context.Response.WriteAsync(node.ToJsonString(), context.RequestAborted);
    }

    private static async Task<bool> Error(HttpContext context, int status, string message, string? errorCode)
    {
        context.Response.StatusCode = status;
        var body = new JsonObject { ["message"] = message };
        if (errorCode is not null)
        {
            body["errorCode"] = errorCode;
            body["httpCode"] = $"{status} {ReasonPhrase(status)}";
        }
        else
        {
            body["class"] = status switch { 401 => "Client::Unauthorized", 403 => "Client::Forbidden", 404 => "Client::NotFound", 409 => "Client::Conflict", _ => "Client::BadRequest" };
        }

        await Json(context, body);
        return true;
    }

    private static string ReasonPhrase(int status) => status switch { 400 => "Bad Request", 401 => "Unauthorized", 403 => "Forbidden", 429 => "Too Many Requests", _ => "Error" };
}
