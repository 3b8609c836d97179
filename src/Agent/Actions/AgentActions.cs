using System.Collections.Concurrent;
using System.Globalization;
using Grpc.Core;
using HaMesh.Agent.Reporting;
using HaMesh.Agent.State;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Core;
using Microsoft.Extensions.Options;

namespace HaMesh.Agent.Actions;

/// <summary>
/// The agent's state-changing calls. Each carries a generation: the agent persists it before acting and
/// refuses a lower one (FAILED_PRECONDITION "stale generation 7 &lt; 9"). Commands for one resource run
/// one at a time; an identical command arriving while one runs joins it instead of running twice.
/// </summary>
public sealed partial class AgentActions(
    IOptions<HaMeshOptions> options,
    ResourceSteps steps,
    GenerationStore generations,
    AgentLocalState local,
    StatusCollector collector,
    ReportSignal signal,
    IFencingClients fencing,
    ILogger<AgentActions> logger,
    TimeProvider? timeProvider = null) : IAgentActions
{
    private readonly HaMeshOptions _options = options.Value;
    private readonly TimeProvider _time = timeProvider ?? TimeProvider.System;
    private readonly Lock _promiseLock = new();
    // Per resource: until when (timestamp) this node promised, by granting a peer's lease, not to take part in a promotion; and to whom.
    private readonly Dictionary<string, (long Until, string To)> _promises = new(StringComparer.Ordinal);
    // Per resource: the generation of a promotion of this node that is accepted and running (no grants meanwhile).
    private readonly Dictionary<string, ulong> _promoting = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _gates = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, (string Key, Task<ActionResult> Task)> _running = new(StringComparer.Ordinal);

    public Task<ActionResult> PromoteAsync(PromoteRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var resource = _options.FindResource(request.Resource)!;
        return RunAsync(resource, "promote", request.Generation, request.Force, async ct =>
        {
            // From here on this node grants no lease (a promotion of itself is agreed), and it acts only once
            // its last promise (lease + drift margin after its last grant) has run out (design §4).
            lock (_promiseLock)
            {
                _promoting[resource.Name] = request.Generation;
            }

            local.SetPromoting(resource.Name, true);
            try
            {
                if (await WaitOutPromiseAsync(resource.Name, request.Generation, ct) is { } promisedUntil)
                {
                    await WaitForPeerToStepDownAsync(resource, request.Generation, promisedUntil, ct);
                }

                var result = await RunForwardAsync(steps.Activation(resource, request.Force), ct, abandonIfSelfFencing: resource.Name);
                Log.Promoted(logger, resource.Name, request.Generation, result.Success, result.Message);
                if (result.Success)
                {
                    // Known now, not at the next status read: from here on this node grants no lease (it is Primary).
                    collector.NoteRole(resource.Name, DrbdRole.Primary);
                }
                else
                {
                    local.SetPromoting(resource.Name, false);
                }

                return result;
            }
            catch
            {
                local.SetPromoting(resource.Name, false);
                throw;
            }
            finally
            {
                lock (_promiseLock)
                {
                    _promoting.Remove(resource.Name);
                }
            }
        }, cancellationToken);
    }

    public Task<ActionResult> DemoteAsync(DemoteRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var resource = _options.FindResource(request.Resource)!;
        return RunAsync(resource, request.DiscardMyData ? "demote-discard" : request.Reconnect ? "demote-reconnect" : "demote", request.Generation, false, async ct =>
        {
            var sequence = steps.Deactivation(resource).ToList();
            if (request.DiscardMyData)
            {
                sequence.Insert(sequence.Count - 1, steps.Disconnect(resource));
                sequence.Add(steps.Reconnect(resource, discardMyData: true));
            }
            else if (request.Reconnect)
            {
                sequence.Add(steps.Reconnect(resource, discardMyData: false));
            }

            // Demotion never undoes itself: a half-demoted node is safer than a re-promoted one.
            var result = await RunForwardAsync(sequence, ct, undo: false);
            Log.Demoted(logger, resource.Name, request.Generation, result.Success, result.Message);
            if (result.Success)
            {
                collector.NoteRole(resource.Name, DrbdRole.Secondary);
            }

            return result;
        }, cancellationToken);
    }

    public Task<ActionResult> OutdateAsync(OutdateRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var resource = _options.FindResource(request.Resource)!;
        return RunAsync(resource, "outdate", request.Generation, false, ct => RunForwardAsync([steps.Outdate(resource)], ct, undo: false), cancellationToken);
    }

    public Task<RenewLeaseResponse> RenewLeaseAsync(RenewLeaseRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var mine = generations.Get(request.Resource);
        var role = collector.RoleOf(request.Resource);
        local.MarkPeerContact(request.Resource);
        var response = new RenewLeaseResponse { Generation = mine, Sequence = request.Sequence, Grantor = _options.Agent.Node };
        // The grantor's promise (design §4): only while Secondary, never to a requester behind our generation,
        // never while a promotion of this node is agreed; a grant promises no promotion for lease + drift margin.
        lock (_promiseLock)
        {
            var promoting = _promoting.TryGetValue(request.Resource, out var promotion);
            var state = role == DrbdRole.Primary ? GrantorState.Primary : promoting ? GrantorState.Promoting : GrantorState.Secondary;
            if (GrantorRule.Refusal(_options.Agent.Node, state, promoting ? promotion : mine, request.Generation) is { } refusal)
            {
                response.Reason = refusal;
            }
            else
            {
                var t = _options.Cluster.Timings;
                var until = _time.GetTimestamp() + Ticks(t.Lease + t.DriftMargin);
                if (!_promises.TryGetValue(request.Resource, out var p) || until > p.Until)
                {
                    _promises[request.Resource] = (until, request.Requester);
                }

                response.Granted = true;
            }
        }

        return Task.FromResult(response);
    }

    public Task<AgentFencePeerResponse> FencePeerAsync(AgentFencePeerRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var resource = _options.Resources.First(r => r.Name == request.Resource || r.DrbdResource == request.DrbdResource);
        if (request.Unfence)
        {
            return Task.FromResult(new AgentFencePeerResponse { Outcome = FenceOutcome.PeerOutdated, DrbdExitCode = 0, Message = "unfence: nothing to undo" });
        }

        return fencing.FenceAsync(resource.Name, generations.Get(resource.Name), cancellationToken);
    }

    /// <summary>Waits until the last promise for <paramref name="resource"/> ran out; returns its end (timestamp), or null if none was made.</summary>
    private async Task<long?> WaitOutPromiseAsync(string resource, ulong generation, CancellationToken ct)
    {
        while (true)
        {
            (long Until, string To) promise;
            lock (_promiseLock)
            {
                if (!_promises.TryGetValue(resource, out promise))
                {
                    return null;
                }
            }

            var left = promise.Until - _time.GetTimestamp();
            if (left <= 0)
            {
                return promise.Until;
            }

            var wait = TimeSpan.FromSeconds((double)left / _time.TimestampFrequency);
            Log.HoldingPromote(logger, resource, generation, promise.To, wait.TotalMilliseconds);
            await Task.Delay(wait, _time, ct);
        }
    }

    /// <summary>
    /// The peer this node granted leases to has lost its lease when the promise runs out, but it may still be
    /// Primary for up to its self-fence deadline while it stops services, unmounts and demotes (design §4.2, I2).
    /// While DRBD still shows it connected and Primary, wait for it (one status read per heartbeat) instead of
    /// letting DRBD refuse the promotion ("Multiple primaries not allowed"); after the deadline, go on and let
    /// DRBD's refusal name the problem.
    /// </summary>
    private async Task WaitForPeerToStepDownAsync(ResourceOptions resource, ulong generation, long promisedUntil, CancellationToken ct)
    {
        var t = _options.Cluster.Timings;
        var deadline = promisedUntil + Ticks(t.SelfFenceDeadline);
        var logged = false;
        while (_time.GetTimestamp() < deadline && await collector.PeerIsConnectedPrimaryAsync(resource, ct))
        {
            if (!logged)
            {
                Log.WaitingForPeerStepDown(logger, resource.Name, generation, t.SelfFenceDeadline.TotalMilliseconds);
                logged = true;
            }

            await Task.Delay(t.Heartbeat, _time, ct);
        }
    }

    private long Ticks(TimeSpan span) => (long)(span.TotalSeconds * _time.TimestampFrequency);

    private async Task<ActionResult> RunAsync(ResourceOptions resource, string kind, ulong generation, bool force, Func<CancellationToken, Task<ActionResult>> body, CancellationToken cancellationToken)
    {
        var key = string.Create(CultureInfo.InvariantCulture, $"{kind}@{generation}{(force ? "!" : "")}");
        if (_running.TryGetValue(resource.Name, out var current) && current.Key == key)
        {
            var joined = await current.Task.WaitAsync(cancellationToken);
            var copy = joined.Clone();
            copy.Joined = true;
            return copy;
        }

        var gate = _gates.GetOrAdd(resource.Name, _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync(cancellationToken);
        var completion = new TaskCompletionSource<ActionResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        _running[resource.Name] = (key, completion.Task);
        try
        {
            var stored = generations.Get(resource.Name);
            if (generation < stored)
            {
                throw new RpcException(new Status(StatusCode.FailedPrecondition,
                    string.Create(CultureInfo.InvariantCulture, $"generation: stale generation {generation} < {stored} for {resource.Name}; this command is from an older coordinator decision")));
            }

            // Persisted (fsync) before anything is done, so a restarted agent still refuses older commands.
            local.SetGeneration(resource.Name, generations.Raise(resource.Name, generation));
            var result = await body(CancellationToken.None);
            result.Resource = resource.Name;
            result.Generation = generation;
            local.SetLastError(resource.Name, result.Success ? "" : result.Message);
            completion.SetResult(result);
            return result;
        }
        catch (Exception ex)
        {
            completion.TrySetException(ex);
            throw;
        }
        finally
        {
            _running.TryRemove(new KeyValuePair<string, (string, Task<ActionResult>)>(resource.Name, (key, completion.Task)));
            gate.Release();
            signal.Trigger();
        }
    }

    /// <param name="sequence">The steps, in order.</param>
    /// <param name="ct">Stops the agent.</param>
    /// <param name="undo">Whether a failure undoes what this call did.</param>
    /// <param name="abandonIfSelfFencing">For an activation: the resource whose self-fence, running when it would start or
    /// started since, stops it before its next step (nothing is undone: the fence is taking everything down, and an
    /// activation going on would fight it; the coordinator's retry promotes afresh once the fence is done).</param>
    private async Task<ActionResult> RunForwardAsync(IReadOnlyList<ResourceStep> sequence, CancellationToken ct, bool undo = true, string? abandonIfSelfFencing = null)
    {
        var result = new ActionResult { Success = true };
        var done = new List<ResourceStep>();
        foreach (var step in sequence)
        {
            if (abandonIfSelfFencing is { } fencing && local.IsSelfFencing(fencing))
            {
                result.Success = false;
                result.Message = $"{fencing} started self-fencing (its lease ran out) before step {step.Name}: activation abandoned, the fence takes it down; retry";
                return result;
            }

            var outcome = await steps.RunAsync(step, ct);
            result.Steps.Add(outcome);
            if (outcome.Outcome == StepOutcome.Done)
            {
                done.Add(step);
            }
            else if (outcome.Outcome == StepOutcome.Failed)
            {
                result.Success = false;
                result.Message = string.Create(CultureInfo.InvariantCulture, $"step {outcome.Step} failed: '{outcome.Command}' exited {outcome.ExitCode}: {outcome.Stderr}");
                break;
            }
        }

        if (!result.Success && undo)
        {
            // Undo what this call did (not what was already so), newest first.
            foreach (var step in done.AsEnumerable().Reverse().Where(s => s.Undo is not null))
            {
                var reverse = await steps.RunAsync(new ResourceStep(step.Name, _ => Task.FromResult(false), step.Undo!, null), ct);
                result.Steps.Add(new StepResult(reverse) { Outcome = reverse.Outcome == StepOutcome.Done ? StepOutcome.Undone : StepOutcome.Failed });
            }
        }

        if (result.Success)
        {
            result.Message = string.Join(", ", result.Steps.Select(s => $"{s.Step}={s.Outcome}"));
        }

        return result;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1201, Level = LogLevel.Warning, Message = "Promote {Resource} at generation {Generation}: success={Success} ({Detail})")]
        public static partial void Promoted(ILogger logger, string resource, ulong generation, bool success, string detail);

        [LoggerMessage(EventId = 1202, Level = LogLevel.Warning, Message = "Demote {Resource} at generation {Generation}: success={Success} ({Detail})")]
        public static partial void Demoted(ILogger logger, string resource, ulong generation, bool success, string detail);

        [LoggerMessage(EventId = 1203, Level = LogLevel.Warning, Message = "Promote {Resource} at generation {Generation} held: granted a lease to {Grantee} and promised no promotion for {Milliseconds} ms more")]
        public static partial void HoldingPromote(ILogger logger, string resource, ulong generation, string grantee, double milliseconds);

        [LoggerMessage(EventId = 1204, Level = LogLevel.Warning, Message = "Promote {Resource} at generation {Generation} held: the peer is still DRBD Primary and connected after its lease ran out; waiting up to its self-fence deadline ({Milliseconds} ms) for it to demote")]
        public static partial void WaitingForPeerStepDown(ILogger logger, string resource, ulong generation, double milliseconds);
    }
}
