using HaMesh.Agent.Reporting;
using HaMesh.Coordinator.Membership;
using HaMesh.Protocol.V1;
using HaMesh.Testing;
using HaMesh.Testing.Hosts;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace HaMesh.Agent.Tests.Reporting;

public sealed class CoordinatorLinkTests
{
    [Fact]
    public async Task Link_CoordinatorRestarts_ReconnectsAndReportsAgain()
    {
        var ct = TestContext.Current.CancellationToken;
        var options = TestConfig.TwoNodes();
        var coordinator = await CoordinatorTestHost.StartAsync(options);
        var current = coordinator;
        var collector = new StatusCollector(Options.Create(options), new FakeDrbdReader(), new FakeHostStateReader(), new AgentLocalState(TimeProvider.System), TimeProvider.System);
        using var signal = new ReportSignal();
        using var link = new CoordinatorLink(Options.Create(options), collector, signal, TimeProvider.System, NullLogger<CoordinatorLink>.Instance,
            () => new CoordinatorService.CoordinatorServiceClient(Volatile.Read(ref current).Channel));
        await link.StartAsync(ct);
        try
        {
            await coordinator.WaitForReportAsync("a", ct).WaitAsync(TimeSpan.FromSeconds(20), ct);
            Assert.Equal(1, link.Sessions);

            // the replacement is up before the old one goes away (a TestServer channel to a disposed
            // server fails differently from a socket: the link only ever meets the real failure mode)
            var restarted = await CoordinatorTestHost.StartAsync(options);
            Volatile.Write(ref current, restarted);
            await coordinator.DisposeAsync();
            await using (restarted)
            {
                await restarted.WaitForReportAsync("a", ct).WaitAsync(TimeSpan.FromSeconds(20), ct);
                Assert.Equal(2, link.Sessions);
                Assert.Equal("a", restarted.Get<NodeRegistry>().Current.Nodes["a"].LastReport!.Node);
            }
        }
        finally
        {
            await link.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task Link_CoordinatorRejectsNode_KeepsRetryingWithoutCrashing()
    {
        var ct = TestContext.Current.CancellationToken;
        var coordinatorOptions = TestConfig.TwoNodes();
        var agentOptions = TestConfig.TwoNodes();
        agentOptions.Agent.Node = "c"; // the coordinator does not know "c": PERMISSION_DENIED on every attempt
        await using var coordinator = await CoordinatorTestHost.StartAsync(coordinatorOptions);
        var collector = new StatusCollector(Options.Create(agentOptions), new FakeDrbdReader(), new FakeHostStateReader(), new AgentLocalState(TimeProvider.System), TimeProvider.System);
        using var signal = new ReportSignal();
        using var link = new CoordinatorLink(Options.Create(agentOptions), collector, signal, TimeProvider.System, NullLogger<CoordinatorLink>.Instance,
            () => new CoordinatorService.CoordinatorServiceClient(coordinator.Channel));
        await link.StartAsync(ct);
        var events = coordinator.Get<HaMesh.Coordinator.Events.IEventLog>();
        while (events.List(0).Count(e => e.Record.Kind == "ConnectRejected") < 2)
        {
            await events.WaitForChangeAsync(ct).WaitAsync(TimeSpan.FromSeconds(20), ct);
        }

        Assert.False(link.IsConnected);
        Assert.Equal(0, link.Sessions);
        Assert.NotNull(link.ExecuteTask);
        Assert.False(link.ExecuteTask!.IsCompleted);
        await link.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task Link_CoordinatorAway_RetriesOnOneChannel()
    {
        var ct = TestContext.Current.CancellationToken;
        var options = TestConfig.TwoNodes(coordinatorAddress: $"http://127.0.0.1:{HaMesh.Testing.Processes.DaemonProcess.FreePort()}");   // nothing listens
        var collector = new StatusCollector(Options.Create(options), new FakeDrbdReader(), new FakeHostStateReader(), new AgentLocalState(TimeProvider.System), TimeProvider.System);
        using var signal = new ReportSignal();
        var logger = new CountingLogger(attempts: 3);
        using var link = new CoordinatorLink(Options.Create(options), collector, signal, TimeProvider.System, logger);
        await link.StartAsync(ct);

        await logger.Reached.WaitAsync(TimeSpan.FromSeconds(30), ct);
        await link.StopAsync(CancellationToken.None);

        Assert.Equal(0, link.Sessions);
        Assert.Equal(1, link.ChannelsCreated);
    }

    /// <summary>Signals once the link logged <c>attempts</c> failed connection attempts (event 1103).</summary>
    private sealed class CountingLogger(int attempts) : Microsoft.Extensions.Logging.ILogger<CoordinatorLink>
    {
        private readonly TaskCompletionSource _reached = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _seen;

        public Task Reached => _reached.Task;

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (eventId.Id == 1103 && Interlocked.Increment(ref _seen) >= attempts)
            {
                _reached.TrySetResult();
            }
        }
    }
}
