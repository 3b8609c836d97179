namespace HaMesh.Coordinator.Cloud;

/// <summary>Where a failover IP is routed now, and the moves pending for it.</summary>
public sealed record IpRouting(string Ip, string? RoutedToService, IReadOnlyList<CloudTask> PendingTasks)
{
    public bool Parked => string.IsNullOrEmpty(RoutedToService);
}

public sealed record CloudTask(long Id, string Function, string Status, string? Comment, string? Destination = null)
{
    /// <summary>init, todo, doing: OVH has not finished it.</summary>
    public bool Pending => Status is "init" or "todo" or "doing";

    /// <summary>cancelled, customerError, ovhError: OVH gave up (the route stays where it was, unless re-read says otherwise).</summary>
    public bool FailedTerminally => Status is "cancelled" or "customerError" or "ovhError";
}

public enum MoveOutcomeKind
{
    AlreadyRouted = 0,
    Moved = 1,
    Failed = 2,
    TimedOut = 3,
}

public sealed record MoveOutcome(MoveOutcomeKind Kind, string Message, long? TaskId, TimeSpan Elapsed, int Posts);

/// <summary>The cloud that routes failover IPs (OVH today). The coordinator is its only caller.</summary>
public interface ICloudIpProvider
{
    Task<IpRouting> GetRoutingAsync(string ip, CancellationToken cancellationToken);

    /// <summary>
    /// One POST /ip/{ip}/move to <paramref name="serviceName"/>, returning the task id. The caller reads the route and the
    /// pending tasks first and never repeats it without reading them again (its outcome may be unknown after an error).
    /// </summary>
    Task<long> RequestMoveAsync(string ip, string serviceName, CancellationToken cancellationToken);

    /// <summary>
    /// Routes <paramref name="ip"/> to <paramref name="serviceName"/>: reads the route first (no POST when
    /// already there), follows a pending move instead of posting another, posts at most once per known
    /// state, then waits until the route names the target or the timeout passes.
    /// </summary>
    Task<MoveOutcome> EnsureRoutedAsync(string ip, string serviceName, CancellationToken cancellationToken);
}
