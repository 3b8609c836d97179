using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using HaMesh.Coordinator.Cloud;
using HaMesh.Coordinator.Events;
using Polly;
using Polly.Retry;

namespace HaMesh.Coordinator.Ovh;

public enum OvhErrorKind
{
    InvalidCredentials = 0,
    NotGranted = 1,
    NotFound = 2,
    Conflict = 3,
    RateLimited = 4,
    Transient = 5,
    BadRequest = 6,
    InvalidSignature = 7,
}

/// <summary>A typed OVH failure. The message carries OVH's own message, never a key or signature.</summary>
public sealed class OvhException(OvhErrorKind kind, int status, string message) : Exception(message)
{
    public OvhErrorKind Kind { get; } = kind;

    public int Status { get; } = status;

    public bool IsPermanent => Kind is OvhErrorKind.InvalidCredentials or OvhErrorKind.NotGranted or OvhErrorKind.NotFound;
}

/// <summary>
/// Signed OVH API v1 calls (specs/ovh-api.md §2): the URL is built as a string with every path parameter
/// percent-encoded, and <c>Uri.AbsoluteUri</c> — the exact wire string — is signed together with the exact
/// body bytes and the server-adjusted timestamp. Idempotent reads are retried (Polly, jittered backoff);
/// writes never are.
/// </summary>
public sealed partial class OvhClient
{
    private readonly HttpClient _http;
    private readonly string _base;
    private readonly OvhCredentials _credentials;
    private readonly TimeProvider _time;
    private readonly IEventSink _events;
    private readonly ResiliencePipeline _reads;
    private long? _delta;
    private long _deltaFetchedAt;

    public OvhClient(HttpClient http, Uri baseUrl, OvhCredentials credentials, TimeProvider time, IEventSink events, Func<double>? randomizer = null)
    {
        ArgumentNullException.ThrowIfNull(baseUrl);
        _http = http;
        _base = baseUrl.AbsoluteUri.TrimEnd('/');
        _credentials = credentials;
        _time = time;
        _events = events;
        var retry = new RetryStrategyOptions
        {
            ShouldHandle = new PredicateBuilder().Handle<OvhException>(e => e.Kind is OvhErrorKind.Transient or OvhErrorKind.RateLimited),
            MaxRetryAttempts = 3,
            BackoffType = DelayBackoffType.Exponential,
            UseJitter = true,
            Delay = TimeSpan.FromMilliseconds(500),
            MaxDelay = TimeSpan.FromSeconds(10),
        };
        if (randomizer is not null)
        {
            retry.Randomizer = randomizer;
        }

        _reads = new ResiliencePipelineBuilder { TimeProvider = time }.AddRetry(retry).Build();
    }

    /// <summary>Calls made so far, by "METHOD path" (tests and the closing figures).</summary>
    public int Calls => _calls;

    private int _calls;

    /// <summary>GET /ip/{ip} and the pending moves (init, todo, doing: three filtered lists, then each task).</summary>
    public Task<IpRouting> GetRoutingAsync(string ip, CancellationToken ct) => _reads.ExecuteAsync(async token =>
    {
        // The route, the pending moves, and with none pending the route again: a move that finishes while the tasks are
        // read shows in that second read. Without it, a move done between the two reads is in neither, and the caller POSTs
        // it again (lab: a POST answered 500 after it took effect, then a second POST). The first read names an unknown IP.
        var first = await RoutedToCoreAsync(ip, token);
        var pending = await PendingMovesCoreAsync(ip, token);
        var routed = pending.Count == 0 ? await RoutedToCoreAsync(ip, token) : first;
        return new IpRouting(ip, routed, pending);
    }, ct).AsTask();

    /// <summary>GET /ip/{ip} only: routedTo.serviceName, null when parked (null, "" or routedTo absent).</summary>
    public Task<string?> GetRoutedToAsync(string ip, CancellationToken ct) => _reads.ExecuteAsync(token => new ValueTask<string?>(RoutedToCoreAsync(ip, token)), ct).AsTask();

    /// <summary>GET /ip with optional filters (type, ip contained, routedTo.serviceName).</summary>
    public Task<IReadOnlyList<string>> ListIpsAsync(CancellationToken ct, string? type = null, string? containing = null, string? routedTo = null) => _reads.ExecuteAsync(async token =>
    {
        var query = Query(("ip", containing), ("routedTo.serviceName", routedTo), ("type", type));
        using var doc = await SendAsync(HttpMethod.Get, "/ip" + query, null, token);
        return (IReadOnlyList<string>)[.. doc.RootElement.EnumerateArray().Select(e => e.GetString() ?? "")];
    }, ct).AsTask();

    /// <summary>GET /ip/{ip}/move: the services the IP can be moved to, by family (dedicatedServer, vps, ...).</summary>
    public Task<IReadOnlyDictionary<string, IReadOnlyList<string>>> GetMoveDestinationsAsync(string ip, CancellationToken ct) => _reads.ExecuteAsync(async token =>
    {
        using var doc = await SendAsync(HttpMethod.Get, $"/ip/{OvhSignature.EncodeIp(ip)}/move", null, token);
        var result = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        foreach (var family in doc.RootElement.EnumerateObject())
        {
            result[family.Name] = family.Value.ValueKind == JsonValueKind.Array
                ? [.. family.Value.EnumerateArray().Select(d => d.TryGetProperty("service", out var s) ? s.GetString() ?? "" : "")]
                : [];
        }

        return (IReadOnlyDictionary<string, IReadOnlyList<string>>)result;
    }, ct).AsTask();

    /// <summary>GET /ip/{ip}/task with optional function and status filters: task ids.</summary>
    public Task<IReadOnlyList<long>> ListTasksAsync(string ip, CancellationToken ct, string? function = null, string? status = null) => _reads.ExecuteAsync(async token =>
    {
        using var doc = await SendAsync(HttpMethod.Get, $"/ip/{OvhSignature.EncodeIp(ip)}/task" + Query(("function", function), ("status", status)), null, token);
        return (IReadOnlyList<long>)[.. doc.RootElement.EnumerateArray().Select(e => e.GetInt64())];
    }, ct).AsTask();

    public Task<CloudTask> GetTaskAsync(string ip, long taskId, CancellationToken ct) => _reads.ExecuteAsync(async token =>
    {
        using var doc = await SendAsync(HttpMethod.Get, string.Create(CultureInfo.InvariantCulture, $"/ip/{OvhSignature.EncodeIp(ip)}/task/{taskId}"), null, token);
        return ParseTask(doc.RootElement);
    }, ct).AsTask();

    /// <summary>GET /dedicated/server: the account's dedicated servers (service names).</summary>
    public Task<IReadOnlyList<string>> ListServersAsync(CancellationToken ct) => _reads.ExecuteAsync(async token =>
    {
        using var doc = await SendAsync(HttpMethod.Get, "/dedicated/server", null, token);
        return (IReadOnlyList<string>)[.. doc.RootElement.EnumerateArray().Select(e => e.GetString() ?? "")];
    }, ct).AsTask();

    /// <summary>POST /ip/{ip}/move — exactly once, never retried here.</summary>
    public async Task<CloudTask> PostMoveAsync(string ip, string serviceName, CancellationToken ct)
    {
        var body = JsonSerializer.Serialize(new Dictionary<string, string> { ["to"] = serviceName });
        using var doc = await SendAsync(HttpMethod.Post, $"/ip/{OvhSignature.EncodeIp(ip)}/move", body, ct);
        return ParseTask(doc.RootElement);
    }

    /// <summary>POST /ip/{ip}/park with no body (signed with an empty BODY) — exactly once, never retried here.</summary>
    public async Task<CloudTask> ParkAsync(string ip, CancellationToken ct)
    {
        using var doc = await SendAsync(HttpMethod.Post, $"/ip/{OvhSignature.EncodeIp(ip)}/park", null, ct);
        return ParseTask(doc.RootElement);
    }

    private async Task<string?> RoutedToCoreAsync(string ip, CancellationToken ct)
    {
        using var doc = await SendAsync(HttpMethod.Get, $"/ip/{OvhSignature.EncodeIp(ip)}", null, ct);
        var routed = doc.RootElement.TryGetProperty("routedTo", out var r) && r.ValueKind == JsonValueKind.Object
            && r.TryGetProperty("serviceName", out var s) && s.ValueKind == JsonValueKind.String ? s.GetString()?.Trim() : null;
        return string.IsNullOrEmpty(routed) ? null : routed;
    }

    private static string Query(params (string Key, string? Value)[] parameters)
    {
        var present = parameters.Where(p => p.Value is not null).Select(p => Uri.EscapeDataString(p.Key) + "=" + Uri.EscapeDataString(p.Value!)).ToList();
        return present.Count == 0 ? "" : "?" + string.Join('&', present);
    }

    private async Task<IReadOnlyList<CloudTask>> PendingMovesCoreAsync(string ip, CancellationToken ct)
    {
        var tasks = new List<CloudTask>();
        foreach (var status in new[] { "init", "todo", "doing" })
        {
            using var ids = await SendAsync(HttpMethod.Get, $"/ip/{OvhSignature.EncodeIp(ip)}/task?function=genericMoveFloatingIp&status={status}", null, ct);
            foreach (var id in ids.RootElement.EnumerateArray())
            {
                using var task = await SendAsync(HttpMethod.Get, string.Create(CultureInfo.InvariantCulture, $"/ip/{OvhSignature.EncodeIp(ip)}/task/{id.GetInt64()}"), null, ct);
                tasks.Add(ParseTask(task.RootElement));
            }
        }

        return tasks;
    }

    private static CloudTask ParseTask(JsonElement e) => new(
        e.GetProperty("taskId").GetInt64(),
        e.TryGetProperty("function", out var f) ? f.GetString() ?? "" : "",
        e.TryGetProperty("status", out var s) ? s.GetString() ?? "" : "",
        e.TryGetProperty("comment", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null,
        e.TryGetProperty("destination", out var d) && d.ValueKind == JsonValueKind.Object && d.TryGetProperty("serviceName", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString() : null);

    private async Task<JsonDocument> SendAsync(HttpMethod method, string pathAndQuery, string? body, CancellationToken ct, bool retriedSignature = false)
    {
        var timestamp = await ServerTimeAsync(ct);
        var uri = new Uri(_base + pathAndQuery);
        using var request = new HttpRequestMessage(method, uri);
        request.Headers.Add("X-Ovh-Application", _credentials.ApplicationKey);
        request.Headers.Add("X-Ovh-Consumer", _credentials.ConsumerKey);
        request.Headers.Add("X-Ovh-Timestamp", timestamp.ToString(CultureInfo.InvariantCulture));
        request.Headers.Add("X-Ovh-Signature", OvhSignature.Sign(_credentials.ApplicationSecret, _credentials.ConsumerKey, method.Method, uri.AbsoluteUri, body ?? "", timestamp));
        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        }

        Interlocked.Increment(ref _calls);
        var start = _time.GetTimestamp();
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request, ct);
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
        {
            await RecordAsync(method, pathAndQuery, 0, start, ex.GetType().Name, ct);
            throw new OvhException(OvhErrorKind.Transient, 0, $"OVH API unreachable ({method.Method} {pathAndQuery}): {ex.Message}");
        }

        using (response)
        {
            var text = await response.Content.ReadAsStringAsync(ct);
            var status = (int)response.StatusCode;
            await RecordAsync(method, pathAndQuery, status, start, status >= 400 ? Message(text) : "ok", ct);
            if (response.IsSuccessStatusCode)
            {
                try
                {
                    return JsonDocument.Parse(text.Length == 0 ? "null" : text);
                }
                catch (JsonException)
                {
                    throw new OvhException(OvhErrorKind.Transient, status, $"OVH answered {status} with a body that is not JSON");
                }
            }

            var error = Classify(status, text);
            if (error.Kind == OvhErrorKind.InvalidSignature && !retriedSignature)
            {
                // Once: the clock may have drifted (QUERY_TIME_OUT / INVALID_SIGNATURE): refresh the delta and retry.
                _delta = null;
                return await SendAsync(method, pathAndQuery, body, ct, retriedSignature: true);
            }

            throw error;
        }
    }

    private async Task<long> ServerTimeAsync(CancellationToken ct)
    {
        var local = _time.GetUtcNow().ToUnixTimeSeconds();
        if (_delta is { } d && _time.GetElapsedTime(_deltaFetchedAt) < TimeSpan.FromHours(1))
        {
            return local + d;
        }

        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(_base + "/auth/time"));
        request.Headers.Add("X-Ovh-Application", _credentials.ApplicationKey);
        Interlocked.Increment(ref _calls);
        var start = _time.GetTimestamp();
        try
        {
            using var response = await _http.SendAsync(request, ct);
            var text = await response.Content.ReadAsStringAsync(ct);
            await RecordAsync(HttpMethod.Get, "/auth/time", (int)response.StatusCode, start, response.IsSuccessStatusCode ? "ok" : Message(text), ct);
            if (!response.IsSuccessStatusCode || !long.TryParse(text.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var server))
            {
                throw new OvhException(OvhErrorKind.Transient, (int)response.StatusCode, $"GET /auth/time answered {(int)response.StatusCode}: {Message(text)}");
            }

            var delta = server - local;
            if (Math.Abs(delta) > 86_400)
            {
                throw new OvhException(OvhErrorKind.Transient, 200, $"OVH server time differs from the local clock by {delta} s (more than a day): fix the clock");
            }

            _delta = delta;
            _deltaFetchedAt = _time.GetTimestamp();
            return local + delta;
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
        {
            await RecordAsync(HttpMethod.Get, "/auth/time", 0, start, ex.GetType().Name, ct);
            throw new OvhException(OvhErrorKind.Transient, 0, $"OVH API unreachable (GET /auth/time): {ex.Message}");
        }
    }

    private static OvhException Classify(int status, string text)
    {
        var message = Message(text);
        var code = ErrorCode(text);
        return status switch
        {
            400 when code is "INVALID_SIGNATURE" or "QUERY_TIME_OUT" || message.Contains("Invalid signature", StringComparison.Ordinal) => new OvhException(OvhErrorKind.InvalidSignature, status, $"OVH rejected the request signature or timestamp: {message}"),
            400 => new OvhException(OvhErrorKind.BadRequest, status, $"OVH refused the request: {message}"),
            401 => new OvhException(OvhErrorKind.InvalidCredentials, status, $"OVH: {message} (consumer key missing)"),
            403 when code == "NOT_GRANTED_CALL" || message.Contains("not been granted", StringComparison.Ordinal) => new OvhException(OvhErrorKind.NotGranted, status, $"OVH: {message}: the consumer key needs the rules GET /ip/* and POST /ip/*"),
            403 => new OvhException(OvhErrorKind.InvalidCredentials, status, $"OVH: {message} (check the application key, secret and consumer key, and the endpoint)"),
            404 => new OvhException(OvhErrorKind.NotFound, status, $"OVH: {message}"),
            409 => new OvhException(OvhErrorKind.Conflict, status, $"OVH: {message}"),
            429 => new OvhException(OvhErrorKind.RateLimited, status, "OVH rate limit (429): backing off"),
            _ => new OvhException(OvhErrorKind.Transient, status, $"OVH answered {status}: {message}"),
        };
    }

    private static string Message(string text)
    {
        try
        {
            using var doc = JsonDocument.Parse(text);
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("message", out var m))
            {
                return m.GetString() ?? "";
            }
        }
        catch (JsonException)
        {
            // HTML or plain text: OVH 5xx bodies often are
        }

        var flat = text.ReplaceLineEndings(" ").Trim();
        return flat.Length > 120 ? flat[..120] + "…" : flat;
    }

    private static string? ErrorCode(string text)
    {
        try
        {
            using var doc = JsonDocument.Parse(text);
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("errorCode", out var c) ? c.GetString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private async Task RecordAsync(HttpMethod method, string path, int status, long start, string outcome, CancellationToken ct)
    {
        var elapsed = _time.GetElapsedTime(start);
        await _events.AppendAsync(new EventRecord("OvhCall", string.Create(CultureInfo.InvariantCulture, $"{method.Method} {path} → {(status == 0 ? "no answer" : status.ToString(CultureInfo.InvariantCulture))} in {elapsed.TotalMilliseconds:0} ms: {outcome}"),
            Severity: status is 0 or >= 500 or 429 ? EventSeverity.Warning : EventSeverity.Info)
        {
            Attributes = new Dictionary<string, string>
            {
                ["method"] = method.Method,
                ["path"] = path,
                ["status"] = status.ToString(CultureInfo.InvariantCulture),
                ["ms"] = elapsed.TotalMilliseconds.ToString("0", CultureInfo.InvariantCulture),
            },
        }, ct);
    }

    internal static bool IsSuccess(HttpStatusCode code) => (int)code is >= 200 and < 300;
}
