using System.Collections.Concurrent;
using System.Threading.Channels;
using Grpc.Core;
using HaMesh.Agent.Reporting;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Commands;

namespace HaMesh.Agent.Tests.Lease;

/// <summary>The coordinator side of the lease: records lease requests, delivers grants when the test says so.</summary>
internal sealed class FakeCoordinator : ILeaseCoordinator
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
        MessageReceived?.Invoke(new CoordinatorMessage { LeaseGrant = new LeaseGrant { Resource = request.Resource, Sequence = request.Sequence, Granted = granted } });
}

/// <summary>The peer agent's RenewLease: each request waits for the test's answer (or fails with Unavailable when the peer is down).</summary>
internal sealed class FakePeer : AgentService.AgentServiceClient
{
    private readonly Channel<(RenewLeaseRequest Request, TaskCompletionSource<RenewLeaseResponse> Reply)> _pending = Channel.CreateUnbounded<(RenewLeaseRequest, TaskCompletionSource<RenewLeaseResponse>)>();

    public bool Down { get; set; }

    /// <summary>When set, answers at once with this function instead of waiting for the test.</summary>
    public Func<RenewLeaseRequest, RenewLeaseResponse>? AutoAnswer { get; set; }

    public List<RenewLeaseRequest> Seen { get; } = [];

    /// <summary>When set, never answers: each call fails with DeadlineExceeded once this long has passed on the clock given.</summary>
    public (TimeProvider Clock, TimeSpan After)? Silent { get; set; }

    public override AsyncUnaryCall<RenewLeaseResponse> RenewLeaseAsync(RenewLeaseRequest request, Metadata? headers = null, DateTime? deadline = null, CancellationToken cancellationToken = default)
    {
        lock (Seen)
        {
            Seen.Add(request);
        }

        Task<RenewLeaseResponse> task;
        if (Down)
        {
            task = Task.FromException<RenewLeaseResponse>(new RpcException(new Status(StatusCode.Unavailable, "peer down")));
        }
        else if (Silent is { } silent)
        {
            task = SilentAsync(silent.Clock, silent.After, cancellationToken);
        }
        else if (AutoAnswer is { } answer)
        {
            task = Task.FromResult(answer(request));
        }
        else
        {
            var reply = new TaskCompletionSource<RenewLeaseResponse>(TaskCreationOptions.RunContinuationsAsynchronously);
            _pending.Writer.TryWrite((request, reply));
            task = reply.Task.WaitAsync(cancellationToken);
        }

        return new AsyncUnaryCall<RenewLeaseResponse>(task, Task.FromResult(new Metadata()), () => Status.DefaultSuccess, () => [], () => { });
    }

    /// <summary>Waits until the holder has sent a renewal, returning it and the handle to answer it.</summary>
    public async Task<(RenewLeaseRequest Request, TaskCompletionSource<RenewLeaseResponse> Reply)> NextAsync(CancellationToken ct)
    {
        using var guard = CancellationTokenSource.CreateLinkedTokenSource(ct);
        guard.CancelAfter(TimeSpan.FromSeconds(30));
        return await _pending.Reader.ReadAsync(guard.Token);
    }

    private static async Task<RenewLeaseResponse> SilentAsync(TimeProvider clock, TimeSpan after, CancellationToken ct)
    {
        await Task.Delay(after, clock, ct);
        throw new RpcException(new Status(StatusCode.DeadlineExceeded, "peer silent"));
    }

    public static RenewLeaseResponse Grant(RenewLeaseRequest r) => new() { Granted = true, Grantor = "b", Generation = r.Generation, Sequence = r.Sequence };
}

/// <summary>Runs commands on a <see cref="Actions.FakeNode"/>, except the ones told to hang (until cancelled).</summary>
internal sealed class HangingRunner(ICommandRunner inner) : ICommandRunner
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
