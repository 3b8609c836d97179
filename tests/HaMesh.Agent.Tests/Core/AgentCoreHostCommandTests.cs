using Grpc.Core;
using HaMesh.Agent.State;
using HaMesh.Protocol.V1;
using HaMesh.Agent.Tests.Lease;

namespace HaMesh.Agent.Tests.Core;

/// <summary>Promote / Demote / Outdate / RenewLease through the daemon's core host: generations, steps, joins, promises.</summary>
public sealed class AgentCoreHostCommandTests : AgentCoreHostFixture
{
    public AgentCoreHostCommandTests()
    {
        Options.Resources[0].Services = ["postgresql.service", "app.service"];
    }

    [Fact]
    public async Task Promote_TouchesNothingBeforeAGrant_ThenRunsStepsInOrder_AndPersistsGeneration()
    {
        await StartAsync();
        Calls.Manual = true;
        var promote = Promote(5);
        var (request, reply) = await Calls.NextAsync(Ct);

        // Accepted and persisted, asking for a lease at the new generation; no step before a grant.
        Assert.Equal("5\n", File.ReadAllText(Generations.PathOf("db")));
        Assert.Equal(5UL, request.Generation);
        Assert.Equal(5UL, Coordinator.Requests.Single().Generation);
        Assert.Empty(Node.Log);
        Assert.False(promote.IsCompleted);

        reply.SetResult(FakeClusterCalls.Grant(request));
        var result = await promote;
        Assert.True(result.Success, result.Message);
        Assert.Equal(["drbdadm primary r0", "mount -t ext4 /dev/drbd0 /srv/db", "systemctl start postgresql.service", "systemctl start app.service", "ip addr add 203.0.113.10/32 dev eth0"], Node.Log);
        Assert.All(result.Steps, s => Assert.Equal(StepOutcome.Done, s.Outcome));
        Assert.Equal((5UL, "db"), (result.Generation, result.Resource));
        Assert.Equal(LeaseState.Held, Lease.State);
    }

    [Fact]
    public async Task Promote_Twice_SecondAnsweredAlreadyPrimary_RunsNothing()
    {
        await StartAsync();
        await Promote(5);
        Node.Log.Clear();
        var again = await Promote(5);
        Assert.True(again.Success);
        Assert.Equal("already Primary", again.Message);
        Assert.Empty(Node.Log);
    }

    [Fact]
    public async Task Promote_PrimaryDemotedByHand_ActivatedAgainNotAnsweredAlreadyPrimary()
    {
        await StartAsync();
        await Promote(5);

        // an operator stops the service, unmounts and runs drbdadm secondary; the next report reads it
        Node.Active.Clear();
        Node.Mounted = false;
        Node.Role = "Secondary";
        SetDrbd(DrbdRole.Secondary);
        await Collector!.CollectAsync(null, Ct);
        Node.Log.Clear();

        // the coordinator sees its primary Secondary and asks again: the resource comes back up
        var again = await Promote(5);
        Assert.True(again.Success, again.Message);
        Assert.NotEqual("already Primary", again.Message);
        Assert.Equal(["drbdadm primary r0", "mount -t ext4 /dev/drbd0 /srv/db", "systemctl start postgresql.service", "systemctl start app.service"], Node.Log);   // the IP alias is still there
        Assert.Equal(LeaseState.Held, Lease.State);

        // once activated, a repeated Promote changes nothing
        Node.Log.Clear();
        Assert.Equal("already Primary", (await Promote(5)).Message);
        Assert.Empty(Node.Log);
    }

    [Fact]
    public async Task Promote_StaleGeneration_FailedPreconditionNamesBothNumbers_NothingRun()
    {
        await StartAsync();
        await Promote(9);
        Node.Log.Clear();
        var ex = await Assert.ThrowsAsync<RpcException>(() => Promote(7));
        Assert.Equal(StatusCode.FailedPrecondition, ex.StatusCode);
        Assert.Contains("stale generation 7 < 9", ex.Status.Detail);
        Assert.Empty(Node.Log);
    }

    [Fact]
    public async Task StaleGeneration_RefusedAfterARestart_TooFromThePersistedFile()
    {
        await StartAsync(generation: 9);
        var ex = await Assert.ThrowsAsync<RpcException>(() => Demote(8));
        Assert.Contains("stale generation 8 < 9", ex.Status.Detail);
    }

    [Fact]
    public async Task Promote_GenerationPersistedBeforeTheFirstCommand()
    {
        await StartAsync();
        string? seen = null;
        Node.BeforeChange = _ => seen ??= File.Exists(Generations.PathOf("db")) ? File.ReadAllText(Generations.PathOf("db")) : "missing";
        await Promote(12);
        Assert.Equal("12\n", seen);
    }

    [Fact]
    public async Task Promote_StepFails_ReportsStepCommandExitAndStderr_AndUndoesWhatItDid()
    {
        await StartAsync();
        Node.Failures["systemctl start app.service"] = (1, "Job for app.service failed because the control process exited with error code.");
        var result = await Promote(3);
        await Host.WhenSettledAsync("db");

        Assert.False(result.Success);
        var failed = result.Steps.Single(s => s.Outcome == StepOutcome.Failed);
        Assert.Equal(("service:app.service", "/usr/bin/systemctl start app.service", 1), (failed.Step, failed.Command, failed.ExitCode));
        Assert.Contains("control process exited", failed.Stderr);
        Assert.Contains("step service:app.service failed", result.Message);
        Assert.Equal(3, result.Steps.Count(s => s.Outcome == StepOutcome.Undone));
        // The undo, then the core's own deactivation finds everything already down and runs nothing more.
        Assert.Equal(["systemctl stop postgresql.service", "umount /srv/db", "drbdadm secondary r0"], Node.Log.Skip(4));
        Assert.Equal("Secondary", Node.Role);
        Assert.Equal(LeaseState.NotHeld, Lease.State);
    }

    [Fact]
    public async Task Promote_DrbdRefuses_MessageCarriesDrbdReason()
    {
        await StartAsync();
        Node.Failures["drbdadm primary r0"] = (17, "0: State change failed: (-2) Need access to UpToDate data\nCommand 'drbdsetup-84 primary 0' terminated with exit code 17\n");
        var result = await Promote(2);
        await Host.WhenSettledAsync("db");
        Assert.False(result.Success);
        Assert.Contains("state change failed (-2): Need access to UpToDate data", result.Message);
        Assert.Equal(StepOutcome.Failed, result.Steps.Single().Outcome);
        Assert.Equal(["drbdadm primary r0"], Node.Log);
    }

    [Fact]
    public async Task Demote_RunsReverseOrder_AndReconnects()
    {
        await StartAsync();
        await Promote(4);
        Node.Log.Clear();
        var result = await Demote(4, reconnect: true);
        Assert.True(result.Success, result.Message);
        Assert.Equal(["ip addr del 203.0.113.10/32 dev eth0", "systemctl stop app.service", "systemctl stop postgresql.service", "umount /srv/db", "drbdadm secondary r0", "drbdadm connect r0"], Node.Log);
        Assert.Equal(LeaseState.NotHeld, Lease.State);
    }

    [Fact]
    public async Task Demote_StepUndoneByAnotherHandMeanwhile_CommandFails_RecheckShowsItDone_DemoteGoesOn()
    {
        // Someone removes the alias between the step's check and its command: 'ip addr del' then fails with "Cannot
        // assign requested address", but the step's goal is reached; the check after the command says so.
        await StartAsync();
        await Promote(4);
        Node.Log.Clear();
        const string del = "ip addr del 203.0.113.10/32 dev eth0";
        Node.BeforeChange = line =>
        {
            if (line == del)
            {
                Node.Ips.Clear();
            }
        };
        Node.Failures[del] = (2, "RTNETLINK answers: Cannot assign requested address");

        var result = await Demote(4);

        Assert.True(result.Success, result.Message);
        var ip = result.Steps[0];
        Assert.Equal((StepOutcome.Already, 2), (ip.Outcome, ip.ExitCode));
        Assert.Contains("Cannot assign requested address", ip.Stderr);
        Assert.Equal([del, "systemctl stop app.service", "systemctl stop postgresql.service", "umount /srv/db", "drbdadm secondary r0"], Node.Log);
    }

    [Fact]
    public async Task DuplicateConcurrentPromote_JoinsTheRunningOne()
    {
        await StartAsync();
        Node.Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var first = Promote(6);
        var second = Promote(6);
        Node.Gate.SetResult();
        var results = await Task.WhenAll(first, second);
        Assert.Single(Node.Log, l => l == "drbdadm primary r0");
        Assert.False(results[0].Joined);
        Assert.True(results[1].Joined);
        Assert.True(results[1].Success);
        Assert.Equal(results[0].Steps.Count, results[1].Steps.Count);
    }

    [Fact]
    public async Task DifferentConcurrentCommands_AreSerialised()
    {
        await StartAsync();
        Node.Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Calls.Manual = true;
        var promote = Promote(6);
        var (request, reply) = await Calls.NextAsync(Ct);
        reply.SetResult(FakeClusterCalls.Grant(request));   // activating (held at the gate)
        var demote = Demote(6);
        Assert.False(demote.IsCompleted);
        Node.Gate.SetResult();
        await Task.WhenAll(promote, demote);
        var lastPromoteStep = Node.Log.IndexOf("ip addr add 203.0.113.10/32 dev eth0");
        var firstDemoteStep = Node.Log.IndexOf("ip addr del 203.0.113.10/32 dev eth0");
        Assert.True(lastPromoteStep >= 0 && lastPromoteStep < firstDemoteStep, string.Join(" | ", Node.Log));
        Assert.True((await demote).Success);
        Assert.Equal("Secondary", Node.Role);
    }

    [Fact]
    public async Task LaterDecision_SupersedesAPromoteStillWaitingForItsLease()
    {
        // The coordinator gave up on a promotion that never got a lease (no grant came) and rolls back at g+1: the
        // demote must not queue behind it forever; the promotion, which touched nothing, is answered as superseded.
        await StartAsync();
        Calls.Down = true;
        var promote = Promote(6);
        await Host.WhenSettledAsync("db");
        Assert.False(promote.IsCompleted);

        var demote = await Demote(7);
        var superseded = await promote;

        Assert.False(superseded.Success);
        Assert.Contains("superseded by Demote at generation 7", superseded.Message);
        Assert.True(demote.Success, demote.Message);
        Assert.DoesNotContain(Node.Log, l => l.StartsWith("drbdadm primary", StringComparison.Ordinal));
        Assert.Equal("7\n", File.ReadAllText(Generations.PathOf("db")));
    }

    [Fact]
    public async Task CorruptGenerationFile_AgentRefusesToStart_ClearError()
    {
        Directory.CreateDirectory(Options.Agent.StateDirectory);
        File.WriteAllText(Generations.PathOf("db"), "seven\n");
        var ex = await Assert.ThrowsAsync<InvalidDataException>(() => StartAsync());
        Assert.Contains("is corrupt", ex.Message);
        Assert.Empty(Node.Log);
    }

    [Fact]
    public async Task GenerationSurvivesANewStore()
    {
        await StartAsync();
        await Promote(8);
        Assert.Equal(8UL, new GenerationStore(Microsoft.Extensions.Options.Options.Create(Options)).Get("db"));
    }

    [Fact]
    public async Task Outdate_FromThePeer_RunsDrbdadmOutdate_RefusedWhilePrimary()
    {
        await StartAsync();
        var outdated = await Host.OutdateAsync(new OutdateRequest { Resource = "db", Generation = 2, RequestedBy = "b" }, Ct);
        Assert.True(outdated.Success, outdated.Message);
        Assert.Equal(["drbdadm outdate r0"], Node.Log);

        await Promote(3);
        var refused = await Host.OutdateAsync(new OutdateRequest { Resource = "db", Generation = 3, RequestedBy = "b" }, Ct);
        Assert.False(refused.Success);
        Assert.Contains("a is Primary: not outdating", refused.Message);
    }

    [Fact]
    public async Task RenewLease_GrantedOnlyWhileSecondaryAndNotBehind()
    {
        await StartAsync();
        await Promote(3);
        var whilePrimary = await Renew(3);
        Assert.False(whilePrimary.Granted);
        Assert.Equal("a is Primary itself", whilePrimary.Reason);
        Assert.True((await Demote(3)).Success);

        var stale = await Renew(2);
        Assert.False(stale.Granted);
        Assert.Contains("stale generation 2 < 3", stale.Reason);
        var ok = await Renew(3);
        Assert.True(ok.Granted);
        Assert.Equal(("a", 3UL), (ok.Grantor, ok.Generation));
    }

    [Fact]
    public async Task Promote_WhilePromiseFromAGrantRuns_RefusesRenewals_ActsOnlyAfterLeasePlusDriftMargin()
    {
        await StartAsync();
        Assert.True((await Renew(4)).Granted);
        var grantedAt = Clock.GetUtcNow();
        await AdvanceAsync(TimeSpan.FromMilliseconds(400));

        var promote = Promote(5);
        await Host.WhenSettledAsync("db");

        // A promotion of this node is accepted: no more grants, and nothing runs (no lease asked) while the promise holds.
        var refused = await Renew(5, sequence: 2);
        Assert.False(refused.Granted);
        Assert.Contains("being promoted itself (generation 5)", refused.Reason);
        Assert.False(promote.IsCompleted);
        Assert.Empty(Node.Log);
        Assert.Empty(Coordinator.Requests);
        Assert.Equal("5\n", File.ReadAllText(Generations.PathOf("db")));

        // The peer that held the lease refuses from now on (it is Primary); the coordinator grants.
        Calls.AutoAnswer = r => new RenewLeaseResponse { Granted = false, Reason = "b is Primary itself", Grantor = "b", Generation = 4, Sequence = r.Sequence };
        for (var t = Clock.GetUtcNow() - grantedAt; t < Promise; t += Heartbeat)
        {
            Assert.Empty(Coordinator.Requests);
            await AdvanceAsync(Promise - t < Heartbeat ? Promise - t : Heartbeat);
        }

        var request = Assert.Single(Coordinator.Requests);
        Assert.Equal(Promise, Clock.GetUtcNow() - grantedAt);
        Coordinator.Grant(request);
        var result = await promote;
        Assert.True(result.Success, result.Message);
        Assert.Equal("drbdadm primary r0", Node.Log[0]);
    }

    [Fact]
    public async Task Promote_AfterThePromiseRanOut_AsksForALeaseAtOnce()
    {
        await StartAsync();
        Assert.True((await Renew(4)).Granted);
        await AdvanceAsync(Promise);
        var result = await Promote(5);
        Assert.True(result.Success, result.Message);
        Assert.Equal("drbdadm primary r0", Node.Log[0]);
    }

    [Fact]
    public async Task Promote_AfterThePromise_PeerStillConnectedPrimary_WaitsForItToDemote_ThenRuns()
    {
        // The peer lost its lease when the promise ran out and is self-fencing; DRBD would refuse a second Primary.
        await StartAsync();
        SetDrbd(DrbdRole.Secondary, peerRole: DrbdRole.Primary);
        Assert.True((await Renew(4)).Granted);
        await AdvanceAsync(Promise);

        var promote = Promote(5);
        await Time.WaitForTimerAsync(Heartbeat, Ct);
        Assert.False(promote.IsCompleted);
        Assert.Empty(Node.Log);
        SetDrbd(DrbdRole.Secondary, peerRole: DrbdRole.Secondary);
        Clock.Advance(Heartbeat);
        var result = await promote;
        Assert.True(result.Success, result.Message);
        Assert.Equal("drbdadm primary r0", Node.Log[0]);
    }

    [Fact]
    public async Task Promote_WithoutAPromise_PeerConnectedPrimary_DoesNotWait()
    {
        // No grant, no promise: DRBD's refusal (or success) is the answer; the agent does not wait.
        await StartAsync();
        SetDrbd(DrbdRole.Secondary, peerRole: DrbdRole.Primary);
        var result = await Promote(5);
        Assert.True(result.Success, result.Message);
        Assert.Equal("drbdadm primary r0", Node.Log[0]);
    }
}
