using System.Collections.Concurrent;
using System.Threading.Channels;
using Grpc.Core;
using HaMesh.Agent.Core;
using HaMesh.Agent.Reporting;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Commands;

namespace HaMesh.Agent.Tests.Lease;

/// <summary>The coordinator side of the lease: records lease requests, delivers grants when the test says so.</summary>
public sealed class FakeCoordinator : ILeaseCoordinator
{
    public event Action<CoordinatorMessage>? MessageReceived;

    public ConcurrentQueue<LeaseRequest> Requests { get; } = new();

    public bool Enqueue(AgentMessage message)
    {
        if (message.BodyCase == AgentMessage.BodyOneofCase.LeaseRequest)
        {
            Requests.Enqueue(message.LeaseRequest);
        }

        return true;
    }

    public void Grant(LeaseRequest request, bool granted = true) =>
        MessageReceived?.Invoke(new CoordinatorMessage { LeaseGrant = new LeaseGrant { Resource = request.Resource, Sequence = request.Sequence, Granted = granted, Generation = request.Generation } });
}

/// <summary>
/// The other nodes' agents and the coordinator's FencePeer: RenewLease on the peer answers at once (by default a
/// Secondary's grant), waits for the test (<see cref="Manual"/>), or fails (<see cref="Down"/>).
/// </summary>
public sealed class FakeClusterCalls : IClusterCalls
{
    private readonly Channel<(RenewLeaseRequest Request, TaskCompletionSource<RenewLeaseResponse> Reply)> _pending = Channel.CreateUnbounded<(RenewLeaseRequest, TaskCompletionSource<RenewLeaseResponse>)>();

    public bool Down { get; set; }

    /// <summary>RenewLease waits for the test's answer (<see cref="NextAsync"/>).</summary>
    public bool Manual { get; set; }

    public Func<RenewLeaseRequest, RenewLeaseResponse> AutoAnswer { get; set; } = Grant;

    public ConcurrentQueue<RenewLeaseRequest> Seen { get; } = new();

    public bool CoordinatorDown { get; set; }

    public ConcurrentQueue<FencePeerRequest> Fences { get; } = new();

    public ConcurrentQueue<OutdateRequest> Outdates { get; } = new();

    public Task<RenewLeaseResponse> RenewLeaseAsync(string peer, RenewLeaseRequest request, TimeSpan deadline, CancellationToken cancellationToken)
    {
        Seen.Enqueue(request);
        if (Down)
        {
            return Task.FromException<RenewLeaseResponse>(new RpcException(new Status(StatusCode.Unavailable, "peer down")));
        }

        if (!Manual)
        {
            return Task.FromResult(AutoAnswer(request));
        }

        var reply = new TaskCompletionSource<RenewLeaseResponse>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending.Writer.TryWrite((request, reply));
        return reply.Task.WaitAsync(cancellationToken);
    }

    public Task<ActionResult> OutdateAsync(string peer, OutdateRequest request, TimeSpan deadline, CancellationToken cancellationToken)
    {
        Outdates.Enqueue(request);
        return Down
            ? Task.FromException<ActionResult>(new RpcException(new Status(StatusCode.Unavailable, "peer down")))
            : Task.FromResult(new ActionResult { Success = true, Message = "outdated" });
    }

    public Task<FencePeerResponse> FencePeerAsync(FencePeerRequest request, TimeSpan deadline, CancellationToken cancellationToken)
    {
        Fences.Enqueue(request);
        return CoordinatorDown
            ? Task.FromException<FencePeerResponse>(new RpcException(new Status(StatusCode.Unavailable, "coordinator down")))
            : Task.FromResult(new FencePeerResponse { Outcome = FenceOutcome.PeerOutdated, Message = "recorded" });
    }

    /// <summary>Waits until the holder has sent a renewal, returning it and the handle to answer it.</summary>
    public async Task<(RenewLeaseRequest Request, TaskCompletionSource<RenewLeaseResponse> Reply)> NextAsync(CancellationToken ct)
    {
        using var guard = CancellationTokenSource.CreateLinkedTokenSource(ct);
        guard.CancelAfter(TimeSpan.FromSeconds(30));
        return await _pending.Reader.ReadAsync(guard.Token);
    }

    public static RenewLeaseResponse Grant(RenewLeaseRequest r) => new() { Granted = true, Grantor = "b", Generation = r.Generation, Sequence = r.Sequence };
}

/// <summary>Runs commands on a <see cref="Actions.FakeNode"/>, except the ones told to hang (until cancelled).</summary>
public sealed class HangingRunner(ICommandRunner inner) : ICommandRunner
{
    public HashSet<string> Hang { get; } = [];

    public List<string> Log { get; } = [];

    /// <summary>When set, completes with the clock's time when the first state-changing command runs.</summary>
    public (TimeProvider Clock, TaskCompletionSource<DateTimeOffset> At)? FirstCommand { get; set; }

    public async Task<CommandResult> RunAsync(CommandSpec spec, CancellationToken cancellationToken)
    {
        var line = string.Join(' ', spec.Arguments.Prepend(Path.GetFileName(spec.FileName)));
        if (spec.Arguments is not ["role" or "dstate", _])
        {
            lock (Log)
            {
                Log.Add(line);
            }

            if (FirstCommand is { } first)
            {
                first.At.TrySetResult(first.Clock.GetUtcNow());
            }
        }

        if (Hang.Contains(line))
        {
            await new TaskCompletionSource().Task.WaitAsync(cancellationToken);
        }

        return await inner.RunAsync(spec, cancellationToken);
    }
}
