using System.Globalization;
using HaMesh.Coordinator.Cloud;
using HaMesh.Coordinator.Events;

namespace HaMesh.Coordinator.Ovh;

/// <summary>
/// The move workflow (specs/ovh-api.md §9, the seed's getfailover rule): routedTo is the authority.
/// Read it; already there → done with no POST. A pending move → follow it. Otherwise POST once, poll
/// the task every poll interval; done → confirm routedTo; terminal failure → re-read once, then fail
/// with OVH's comment. After an unknown POST outcome (5xx, timeout) the state is read before anything
/// else; a second POST happens only when the state proves the first did not take.
/// </summary>
public sealed class OvhCloudIpProvider(OvhClient client, IEventSink events, TimeProvider time, TimeSpan pollInterval, TimeSpan timeout) : ICloudIpProvider
{
    private const int MaxPosts = 2;

    public Task<IpRouting> GetRoutingAsync(string ip, CancellationToken cancellationToken) => client.GetRoutingAsync(ip, cancellationToken);

    public async Task<long> RequestMoveAsync(string ip, string serviceName, CancellationToken cancellationToken) =>
        (await client.PostMoveAsync(ip, serviceName, cancellationToken)).Id;

    /// <summary>After this long a move is reported slow (once); the workflow goes on until the timeout.</summary>
    public TimeSpan SlowAfter { get; init; } = TimeSpan.FromSeconds(90);

    public async Task<MoveOutcome> EnsureRoutedAsync(string ip, string serviceName, CancellationToken cancellationToken)
    {
        var start = time.GetTimestamp();
        using var deadline = new CancellationTokenSource(timeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
        var ct = linked.Token;
        var posts = 0;
        long? taskId = null;
        string? refused = null;
        var slowReported = false;
        var last = "not read yet";
        try
        {
            while (true)
            {
                // With a task to follow, only the route is read (GET /ip/{ip}); otherwise the pending moves too.
                var routing = taskId is null ? await ReadAsync(ip, ct) : await ReadRouteAsync(ip, ct);
                last = routing is null ? "route unknown (read failed)" : $"routed to {routing.RoutedToService ?? "nothing (parked)"}"
                    + (taskId is null ? $", {routing.PendingTasks.Count} pending move(s)" : $", following task {taskId}");
                if (SameService(routing?.RoutedToService, serviceName))
                {
                    var kind = posts == 0 && taskId is null ? MoveOutcomeKind.AlreadyRouted : MoveOutcomeKind.Moved;
                    return await DoneAsync(new MoveOutcome(kind, kind == MoveOutcomeKind.AlreadyRouted ? $"{ip} is already routed to {serviceName}" : $"{ip} is now routed to {serviceName}", taskId, time.GetElapsedTime(start), posts), ip, serviceName);
                }

                if (routing is not null && taskId is null)
                {
                    if (routing.PendingTasks.Count > 0)
                    {
                        // Never a second move while one is pending: follow it (ours, or one towards the target first).
                        var follow = routing.PendingTasks.FirstOrDefault(t => SameService(t.Destination, serviceName)) ?? routing.PendingTasks[0];
                        taskId = follow.Id;
                        refused = null;
                        await events.AppendAsync(new EventRecord("OvhMoveFollowing", $"{ip}: following pending task {follow.Id} ({follow.Status}, to {follow.Destination ?? "?"}) instead of posting a move", Severity: EventSeverity.Info), ct);
                    }
                    else if (refused is not null)
                    {
                        // OVH answered the POST with a 4xx and the state shows neither the move nor a pending task: its refusal stands.
                        return await DoneAsync(new MoveOutcome(MoveOutcomeKind.Failed, refused, null, time.GetElapsedTime(start), posts), ip, serviceName);
                    }
                    else if (posts >= MaxPosts)
                    {
                        return await DoneAsync(new MoveOutcome(MoveOutcomeKind.Failed, $"{ip}: {posts} move requests did not take ({last})", taskId, time.GetElapsedTime(start), posts), ip, serviceName);
                    }
                    else
                    {
                        posts++;
                        try
                        {
                            await events.AppendAsync(new EventRecord("OvhMoveRequested", $"POST /ip/{ip}/move to {serviceName}", Severity: EventSeverity.Warning), ct);
                            taskId = (await client.PostMoveAsync(ip, serviceName, ct)).Id;
                            await Task.Delay(pollInterval, time, ct);
                            continue;
                        }
                        catch (OvhException ex) when (ex.IsPermanent)
                        {
                            return await DoneAsync(new MoveOutcome(MoveOutcomeKind.Failed, ex.Message, null, time.GetElapsedTime(start), posts), ip, serviceName);
                        }
                        catch (OvhException ex)
                        {
                            // Unknown outcome, or a refusal that may be a race (already routed by someone else, a move
                            // pending): never POST again blindly; the next round reads routedTo and the pending tasks.
                            refused = ex.Kind is OvhErrorKind.BadRequest or OvhErrorKind.InvalidSignature ? ex.Message : null;
                            await events.AppendAsync(new EventRecord("OvhMoveUncertain", $"POST /ip/{ip}/move: {ex.Message}; reading state before anything else", Severity: EventSeverity.Warning), ct);
                            continue;
                        }
                    }
                }

                if (taskId is { } id)
                {
                    var task = await TryGetTaskAsync(ip, id, ct);
                    if (task is { FailedTerminally: true })
                    {
                        var confirm = await ReadRouteAsync(ip, ct);
                        if (SameService(confirm?.RoutedToService, serviceName))
                        {
                            continue;
                        }

                        return await DoneAsync(new MoveOutcome(MoveOutcomeKind.Failed, $"OVH task {id} ended {task.Status}: {task.Comment ?? "no comment"}", id, time.GetElapsedTime(start), posts), ip, serviceName);
                    }

                    if (task is { Status: "done" })
                    {
                        // Done but the route does not name the target (yet): read everything again next round.
                        taskId = null;
                        posts = Math.Max(posts, 1);
                    }
                }

                if (!slowReported && time.GetElapsedTime(start) >= SlowAfter)
                {
                    slowReported = true;
                    await events.AppendAsync(new EventRecord("OvhMoveSlow", string.Create(CultureInfo.InvariantCulture, $"{ip} → {serviceName}: still not routed after {SlowAfter.TotalSeconds:0} s ({last})"), Severity: EventSeverity.Warning), ct);
                }

                await Task.Delay(pollInterval, time, ct);
            }
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return await DoneAsync(new MoveOutcome(MoveOutcomeKind.TimedOut, string.Create(CultureInfo.InvariantCulture, $"{ip} not routed to {serviceName} after {timeout.TotalSeconds:0} s; last seen: {last}"), taskId, time.GetElapsedTime(start), posts), ip, serviceName);
        }
    }

    /// <summary>OVH service names compare case-insensitively after trimming (spec §7 gotcha 11).</summary>
    public static bool SameService(string? a, string? b) =>
        !string.IsNullOrWhiteSpace(a) && string.Equals(a.Trim(), b?.Trim(), StringComparison.OrdinalIgnoreCase);

    private async Task<IpRouting?> ReadRouteAsync(string ip, CancellationToken ct)
    {
        try
        {
            return new IpRouting(ip, await client.GetRoutedToAsync(ip, ct), []);
        }
        catch (OvhException ex) when (!ex.IsPermanent)
        {
            return null;
        }
    }

    private async Task<IpRouting?> ReadAsync(string ip, CancellationToken ct)
    {
        try
        {
            return await client.GetRoutingAsync(ip, ct);
        }
        catch (OvhException ex) when (!ex.IsPermanent)
        {
            return null;
        }
    }

    private async Task<CloudTask?> TryGetTaskAsync(string ip, long id, CancellationToken ct)
    {
        try
        {
            return await client.GetTaskAsync(ip, id, ct);
        }
        catch (OvhException ex) when (!ex.IsPermanent)
        {
            return null; // a task read error is not a failure: routedTo decides
        }
    }

    private async Task<MoveOutcome> DoneAsync(MoveOutcome outcome, string ip, string serviceName)
    {
        await events.AppendAsync(new EventRecord(
            outcome.Kind is MoveOutcomeKind.AlreadyRouted or MoveOutcomeKind.Moved ? "OvhMoveCompleted" : "OvhMoveFailed",
            string.Create(CultureInfo.InvariantCulture, $"{outcome.Message} ({outcome.Posts} POST, {outcome.Elapsed.TotalMilliseconds:0} ms)"),
            Severity: outcome.Kind is MoveOutcomeKind.AlreadyRouted or MoveOutcomeKind.Moved ? EventSeverity.Info : EventSeverity.Critical)
        {
            Attributes = new Dictionary<string, string> { ["ip"] = ip, ["to"] = serviceName, ["outcome"] = outcome.Kind.ToString() },
        }, CancellationToken.None);
        return outcome;
    }
}
