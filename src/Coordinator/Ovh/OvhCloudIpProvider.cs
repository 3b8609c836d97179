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

    public async Task<MoveOutcome> EnsureRoutedAsync(string ip, string serviceName, CancellationToken cancellationToken)
    {
        var start = time.GetTimestamp();
        using var deadline = new CancellationTokenSource(timeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
        var ct = linked.Token;
        var posts = 0;
        long? taskId = null;
        var last = "not read yet";
        try
        {
            while (true)
            {
                var routing = await ReadAsync(ip, ct);
                last = routing is null ? "route unknown (read failed)" : $"routed to {routing.RoutedToService ?? "nothing (parked)"}, {routing.PendingTasks.Count} pending move(s)";
                if (routing?.RoutedToService == serviceName)
                {
                    var kind = posts == 0 && taskId is null ? MoveOutcomeKind.AlreadyRouted : MoveOutcomeKind.Moved;
                    return await DoneAsync(new MoveOutcome(kind, kind == MoveOutcomeKind.AlreadyRouted ? $"{ip} is already routed to {serviceName}" : $"{ip} is now routed to {serviceName}", taskId, time.GetElapsedTime(start), posts), ip, serviceName, ct);
                }

                if (routing is { PendingTasks.Count: > 0 })
                {
                    taskId = routing.PendingTasks[0].Id;
                }
                else if (routing is not null && taskId is null)
                {
                    if (posts >= MaxPosts)
                    {
                        return await DoneAsync(new MoveOutcome(MoveOutcomeKind.Failed, $"{ip}: {posts} move requests did not take ({last})", taskId, time.GetElapsedTime(start), posts), ip, serviceName, ct);
                    }

                    posts++;
                    try
                    {
                        await events.AppendAsync(new EventRecord("OvhMoveRequested", $"POST /ip/{ip}/move to {serviceName}", Severity: EventSeverity.Warning), ct);
                        taskId = (await client.PostMoveAsync(ip, serviceName, ct)).Id;
                    }
                    catch (OvhException ex) when (ex.IsPermanent)
                    {
                        return await DoneAsync(new MoveOutcome(MoveOutcomeKind.Failed, ex.Message, null, time.GetElapsedTime(start), posts), ip, serviceName, ct);
                    }
                    catch (OvhException ex)
                    {
                        // Unknown outcome: never POST again blindly; the next round reads routedTo and the pending tasks.
                        await events.AppendAsync(new EventRecord("OvhMoveUncertain", $"POST /ip/{ip}/move: {ex.Message}; reading state before anything else", Severity: EventSeverity.Warning), ct);
                    }
                }

                if (taskId is { } id)
                {
                    var task = await TryGetTaskAsync(ip, id, ct);
                    if (task is { Status: "cancelled" or "customerError" or "ovhError" })
                    {
                        var confirm = await ReadAsync(ip, ct);
                        if (confirm?.RoutedToService == serviceName)
                        {
                            continue;
                        }

                        return await DoneAsync(new MoveOutcome(MoveOutcomeKind.Failed, $"OVH task {id} ended {task.Status}: {task.Comment ?? "no comment"}", id, time.GetElapsedTime(start), posts), ip, serviceName, ct);
                    }

                    if (task is { Status: "done" })
                    {
                        taskId = null;
                        posts = Math.Max(posts, 1);
                        continue;
                    }
                }

                await Task.Delay(pollInterval, time, ct);
            }
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return await DoneAsync(new MoveOutcome(MoveOutcomeKind.TimedOut, string.Create(CultureInfo.InvariantCulture, $"{ip} not routed to {serviceName} after {timeout.TotalSeconds:0} s; last seen: {last}"), taskId, time.GetElapsedTime(start), posts), ip, serviceName, cancellationToken);
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

    private async Task<MoveOutcome> DoneAsync(MoveOutcome outcome, string ip, string serviceName, CancellationToken ct)
    {
        await events.AppendAsync(new EventRecord(
            outcome.Kind is MoveOutcomeKind.AlreadyRouted or MoveOutcomeKind.Moved ? "OvhMoveCompleted" : "OvhMoveFailed",
            string.Create(CultureInfo.InvariantCulture, $"{outcome.Message} ({outcome.Posts} POST, {outcome.Elapsed.TotalMilliseconds:0} ms)"),
            Severity: outcome.Kind is MoveOutcomeKind.AlreadyRouted or MoveOutcomeKind.Moved ? EventSeverity.Info : EventSeverity.Critical)
        {
            Attributes = new Dictionary<string, string> { ["ip"] = ip, ["to"] = serviceName, ["outcome"] = outcome.Kind.ToString() },
        }, CancellationToken.None);
        _ = ct;
        return outcome;
    }
}
