using Grpc.Core;
using HaMesh.Agent.Actions;
using HaMesh.Agent.Reporting;
using HaMesh.Agent.State;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Testing;
using HaMesh.Testing.Hosts;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace HaMesh.Agent.Tests.Actions;

public sealed class AgentActionsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-actions-").FullName;
    private readonly HaMeshOptions _options = TestConfig.TwoNodes();
    private readonly FakeNode _node = new();
    private readonly FakeDrbdReader _drbd = new();
    private readonly GenerationStore _generations;
    private readonly AgentActions _actions;
    private readonly AgentLocalState _local;
    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 12, 1, 12, 0, 0, TimeSpan.Zero));
    private readonly TimerSignalingTimeProvider _time;

    public AgentActionsTests()
    {
        _time = new TimerSignalingTimeProvider(_clock);
        _options.Agent.StateDirectory = _dir;
        _options.Resources[0].Services = ["postgresql.service", "app.service"];
        var o = Options.Create(_options);
        _generations = new GenerationStore(o);
        _local = new AgentLocalState(TimeProvider.System);
        var collector = new StatusCollector(o, _drbd, _node, _local, TimeProvider.System);
        _actions = new AgentActions(o, new ResourceSteps(_options, _node, _node, TimeProvider.System), _generations, _local, collector, new ReportSignal(), new NoFencing(), NullLogger<AgentActions>.Instance, _time);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private sealed class NoFencing : IFencingClients
    {
        public Task<AgentFencePeerResponse> FenceAsync(string resource, ulong generation, CancellationToken cancellationToken) =>
            Task.FromResult(new AgentFencePeerResponse { Outcome = FenceOutcome.Failed, DrbdExitCode = 1 });
    }

    private Task<ActionResult> Promote(ulong generation) => _actions.PromoteAsync(new PromoteRequest { Resource = "db", Generation = generation }, TestContext.Current.CancellationToken);

    private Task<ActionResult> Demote(ulong generation, bool reconnect = false) => _actions.DemoteAsync(new DemoteRequest { Resource = "db", Generation = generation, Reconnect = reconnect }, TestContext.Current.CancellationToken);

    [Fact]
    public async Task Promote_RunsStepsInOrder_AndPersistsGeneration()
    {
        var result = await Promote(5);
        Assert.True(result.Success, result.Message);
        Assert.Equal(["drbdadm primary r0", "mount -t ext4 /dev/drbd0 /srv/db", "systemctl start postgresql.service", "systemctl start app.service", "ip addr add 203.0.113.10/32 dev eth0"], _node.Log);
        Assert.Equal("5\n", File.ReadAllText(_generations.PathOf("db")));
        Assert.All(result.Steps, s => Assert.Equal(StepOutcome.Done, s.Outcome));
    }

    [Fact]
    public async Task Promote_Twice_SecondRunChecksOnlyAndRunsNothing()
    {
        await Promote(5);
        _node.Log.Clear();
        var again = await Promote(5);
        Assert.True(again.Success);
        Assert.Empty(_node.Log);
        Assert.All(again.Steps, s => Assert.Equal(StepOutcome.Already, s.Outcome));
    }

    [Fact]
    public async Task Promote_StaleGeneration_FailedPreconditionNamesBothNumbers_NothingRun()
    {
        await Promote(9);
        _node.Log.Clear();
        var ex = await Assert.ThrowsAsync<RpcException>(() => Promote(7));
        Assert.Equal(StatusCode.FailedPrecondition, ex.StatusCode);
        Assert.Contains("stale generation 7 < 9", ex.Status.Detail);
        Assert.Empty(_node.Log);
    }

    [Fact]
    public async Task Promote_GenerationPersistedBeforeTheFirstCommand()
    {
        string? seen = null;
        _node.BeforeChange = _ => seen ??= File.Exists(_generations.PathOf("db")) ? File.ReadAllText(_generations.PathOf("db")) : "missing";
        await Promote(12);
        Assert.Equal("12\n", seen);
    }

    [Fact]
    public async Task Promote_StepFails_ReportsStepCommandExitAndStderr_AndUndoesWhatItDid()
    {
        _node.Failures["systemctl start app.service"] = (1, "Job for app.service failed because the control process exited with error code.");
        var result = await Promote(3);
        Assert.False(result.Success);
        var failed = result.Steps.Single(s => s.Outcome == StepOutcome.Failed);
        Assert.Equal(("service:app.service", "/usr/bin/systemctl start app.service", 1), (failed.Step, failed.Command, failed.ExitCode));
        Assert.Contains("control process exited", failed.Stderr);
        Assert.Contains("step service:app.service failed", result.Message);
        Assert.Equal(["systemctl stop postgresql.service", "umount /srv/db", "drbdadm secondary r0"], _node.Log.Skip(4));
        Assert.Equal("Secondary", _node.Role);
        Assert.Equal(3, result.Steps.Count(s => s.Outcome == StepOutcome.Undone));
    }

    [Fact]
    public async Task Promote_DrbdRefuses_MessageCarriesDrbdReason()
    {
        _node.Failures["drbdadm primary r0"] = (17, "0: State change failed: (-2) Need access to UpToDate data\nCommand 'drbdsetup-84 primary 0' terminated with exit code 17\n");
        var result = await Promote(2);
        Assert.False(result.Success);
        Assert.Contains("state change failed (-2): Need access to UpToDate data", result.Message);
        Assert.Equal(["drbdadm primary r0"], _node.Log);
    }

    [Fact]
    public async Task Demote_RunsReverseOrder_AndReconnects()
    {
        await Promote(4);
        _node.Log.Clear();
        var result = await Demote(4, reconnect: true);
        Assert.True(result.Success, result.Message);
        Assert.Equal(["ip addr del 203.0.113.10/32 dev eth0", "systemctl stop app.service", "systemctl stop postgresql.service", "umount /srv/db", "drbdadm secondary r0", "drbdadm connect r0"], _node.Log);
    }

    [Fact]
    public async Task Demote_StepUndoneByAnotherHandMeanwhile_CommandFails_RecheckShowsItDone_DemoteGoesOn()
    {
        // A self-fence (or an operator) removes the alias between the step's check and its command: 'ip addr del'
        // then fails with "Cannot assign requested address", but what the step is for is so; the check after the
        // command says it, and the demote goes on instead of stopping half-way with services still running.
        await Promote(4);
        _node.Log.Clear();
        const string del = "ip addr del 203.0.113.10/32 dev eth0";
        _node.BeforeChange = line =>
        {
            if (line == del)
            {
                _node.Ips.Clear();
            }
        };
        _node.Failures[del] = (2, "RTNETLINK answers: Cannot assign requested address");

        var result = await Demote(4);

        Assert.True(result.Success, result.Message);
        var ip = result.Steps[0];
        Assert.Equal((StepOutcome.Already, 2), (ip.Outcome, ip.ExitCode));
        Assert.Contains("Cannot assign requested address", ip.Stderr);
        Assert.Equal([del, "systemctl stop app.service", "systemctl stop postgresql.service", "umount /srv/db", "drbdadm secondary r0"], _node.Log);
        Assert.Equal("Secondary", _node.Role);
    }

    [Fact]
    public async Task Promote_WhileASelfFenceRuns_RefusedNothingRun_AfterItPromotes()
    {
        _local.SetSelfFencing("db", true);
        var refused = await Promote(2);
        Assert.False(refused.Success);
        Assert.Contains("self-fencing", refused.Message);
        Assert.Empty(_node.Log);

        _local.SetSelfFencing("db", false);
        Assert.True((await Promote(2)).Success);
    }

    [Fact]
    public async Task Promote_SelfFenceStartsDuringTheSteps_ActivationAbandonedBeforeItsNextStep_NothingUndoneByIt()
    {
        // The lease ran out while a slow activation ran (no grant came): the fence owns the resource from then on.
        _node.BeforeChange = line =>
        {
            if (line == "systemctl start postgresql.service")
            {
                _local.SetSelfFencing("db", true);
            }
        };

        var result = await Promote(2);

        Assert.False(result.Success);
        Assert.Contains("started self-fencing (its lease ran out) before step service:app.service", result.Message);
        Assert.Equal(["drbdadm primary r0", "mount -t ext4 /dev/drbd0 /srv/db", "systemctl start postgresql.service"], _node.Log);
        Assert.DoesNotContain(result.Steps, s => s.Outcome == StepOutcome.Undone);
    }

    [Fact]
    public async Task Promote_DrbdRefuses_RecheckStillNotPrimary_StepFails()
    {
        _node.Failures["drbdadm primary r0"] = (11, "r0: State change failed: (-1) Multiple primaries not allowed by config");
        var result = await Promote(2);
        Assert.Equal(StepOutcome.Failed, result.Steps.Single().Outcome);
    }

    [Fact]
    public async Task DuplicateConcurrentPromote_JoinsTheRunningOne()
    {
        _node.Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var first = Promote(6);
        var second = Promote(6);
        _node.Gate.SetResult();
        var results = await Task.WhenAll(first, second);
        Assert.Single(_node.Log, l => l == "drbdadm primary r0");
        Assert.False(results[0].Joined);
        Assert.True(results[1].Joined);
        Assert.True(results[1].Success);
    }

    [Fact]
    public async Task DifferentConcurrentCommands_AreSerialised()
    {
        _node.Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var promote = Promote(6);
        var demote = Demote(7);
        _node.Gate.SetResult();
        await Task.WhenAll(promote, demote);
        var lastPromoteStep = _node.Log.IndexOf("ip addr add 203.0.113.10/32 dev eth0");
        var firstDemoteStep = _node.Log.IndexOf("ip addr del 203.0.113.10/32 dev eth0");
        Assert.True(lastPromoteStep < firstDemoteStep, string.Join(" | ", _node.Log));
        Assert.Equal("Secondary", _node.Role);
    }

    [Fact]
    public async Task CorruptGenerationFile_ClearErrorNeverZero()
    {
        File.WriteAllText(_generations.PathOf("db"), "seven\n");
        var ex = await Assert.ThrowsAsync<InvalidDataException>(() => Promote(1));
        Assert.Contains("is corrupt", ex.Message);
        Assert.Empty(_node.Log);
    }

    [Fact]
    public async Task GenerationSurvivesANewStore()
    {
        await Promote(8);
        Assert.Equal(8UL, new GenerationStore(Options.Create(_options)).Get("db"));
    }

    [Fact]
    public async Task RenewLease_GrantedOnlyWhileSecondaryAndNotBehind()
    {
        await Promote(3);
        var ct = TestContext.Current.CancellationToken;
        // Primary now (its own promote said so; no status was read since): it grants nobody.
        var whilePrimary = await _actions.RenewLeaseAsync(new RenewLeaseRequest { Resource = "db", Generation = 3, Requester = "b" }, ct);
        Assert.False(whilePrimary.Granted);
        Assert.Equal("a is Primary itself", whilePrimary.Reason);
        Assert.True((await Demote(3)).Success);

        var stale = await _actions.RenewLeaseAsync(new RenewLeaseRequest { Resource = "db", Generation = 2, Requester = "b" }, ct);
        Assert.False(stale.Granted);
        Assert.Contains("stale generation 2 < 3", stale.Reason);
        var ok = await _actions.RenewLeaseAsync(new RenewLeaseRequest { Resource = "db", Generation = 3, Requester = "b" }, ct);
        Assert.True(ok.Granted);
    }

    private Task<RenewLeaseResponse> Renew(ulong generation) =>
        _actions.RenewLeaseAsync(new RenewLeaseRequest { Resource = "db", Generation = generation, Requester = "b", Sequence = 1 }, TestContext.Current.CancellationToken);

    [Fact]
    public async Task Promote_WhilePromiseFromAGrantRuns_RefusesRenewals_ActsOnlyAfterLeasePlusDriftMargin()
    {
        Assert.True((await Renew(4)).Granted);
        var grantedAt = _clock.GetUtcNow();
        _clock.Advance(TimeSpan.FromMilliseconds(400));

        var promote = Promote(5);

        // A promotion of this node is agreed: no more grants, and nothing runs while the promise holds.
        var refused = await Renew(5);
        Assert.False(refused.Granted);
        Assert.Contains("being promoted itself (generation 5)", refused.Reason);
        var promise = _options.Cluster.Timings.Lease + _options.Cluster.Timings.DriftMargin;
        await _time.WaitForTimerAsync(promise - TimeSpan.FromMilliseconds(400), TestContext.Current.CancellationToken);
        Assert.False(promote.IsCompleted);
        Assert.Empty(_node.Log);
        Assert.Equal("5\n", File.ReadAllText(_generations.PathOf("db")));   // accepted (persisted), held

        _clock.Advance(promise - TimeSpan.FromMilliseconds(400));
        var result = await promote;
        Assert.True(result.Success, result.Message);
        Assert.Equal(promise, _clock.GetUtcNow() - grantedAt);
        Assert.Equal("drbdadm primary r0", _node.Log[0]);
    }

    [Fact]
    public async Task Promote_AfterThePromiseRanOut_RunsAtOnce()
    {
        Assert.True((await Renew(4)).Granted);
        _clock.Advance(_options.Cluster.Timings.Lease + _options.Cluster.Timings.DriftMargin);
        var result = await Promote(5);
        Assert.True(result.Success, result.Message);
        Assert.Equal("drbdadm primary r0", _node.Log[0]);
    }

    private void PeerRole(DrbdRole role)
    {
        var status = new DrbdResourceStatus { Name = "r0", Present = true, Role = DrbdRole.Secondary, DiskState = DiskState.UpToDate };
        status.Peers.Add(new PeerConnectionStatus { ConnectionState = ConnectionState.Connected, PeerRole = role, PeerDiskState = DiskState.UpToDate });
        _drbd.Snapshot = _drbd.Snapshot with { Resources = new Dictionary<string, DrbdResourceStatus> { ["r0"] = status } };
    }

    [Fact]
    public async Task Promote_AfterThePromise_PeerStillConnectedPrimary_WaitsForItToDemote_ThenRuns()
    {
        // The peer lost its lease when the promise ran out and is self-fencing; DRBD would refuse a second Primary.
        PeerRole(DrbdRole.Primary);
        Assert.True((await Renew(4)).Granted);
        var t = _options.Cluster.Timings;
        _clock.Advance(t.Lease + t.DriftMargin);

        var promote = Promote(5);

        await _time.WaitForTimerAsync(t.Heartbeat, TestContext.Current.CancellationToken);
        Assert.False(promote.IsCompleted);
        Assert.Empty(_node.Log);
        PeerRole(DrbdRole.Secondary);
        _clock.Advance(t.Heartbeat);
        var result = await promote;
        Assert.True(result.Success, result.Message);
        Assert.Equal("drbdadm primary r0", _node.Log[0]);
    }

    [Fact]
    public async Task Promote_AfterThePromise_PeerStaysPrimaryPastItsSelfFenceDeadline_GoesOnAndLetsDrbdDecide()
    {
        PeerRole(DrbdRole.Primary);
        Assert.True((await Renew(4)).Granted);
        var t = _options.Cluster.Timings;
        var grantedAt = _clock.GetUtcNow();
        _clock.Advance(t.Lease + t.DriftMargin);

        var promote = Promote(5);
        var beats = (int)(t.SelfFenceDeadline / t.Heartbeat);
        for (var i = 0; i < beats; i++)
        {
            await _time.WaitForTimerAsync(t.Heartbeat, TestContext.Current.CancellationToken);
            Assert.Empty(_node.Log);
            _clock.Advance(t.Heartbeat);
        }

        await promote;
        Assert.Equal("drbdadm primary r0", _node.Log[0]);
        Assert.Equal(t.Lease + t.DriftMargin + t.SelfFenceDeadline, _clock.GetUtcNow() - grantedAt);
    }

    [Fact]
    public async Task Promote_WithoutAPromise_PeerConnectedPrimary_DoesNotWait()
    {
        // No grant, no promise: the peer may hold its lease from the coordinator; DRBD's refusal is the answer.
        PeerRole(DrbdRole.Primary);
        var result = await Promote(5);
        Assert.True(result.Success, result.Message);
        Assert.Equal("drbdadm primary r0", _node.Log[0]);
    }
}
