using System.Collections.Concurrent;
using System.Net;
using Grpc.Core;
using HaMesh.Cli.Commands;
using HaMesh.Protocol.V1;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace HaMesh.Cli.Tests.Commands;

/// <summary>hameshctl switchover / promote --force against a fake coordinator on loopback (real gRPC over HTTP/2).</summary>
public sealed class OperationCommandsTests : IAsyncLifetime
{
    private readonly FakeCoordinator _fake = new();
    private WebApplication? _app;

    private string Address => _app!.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();

    public async ValueTask InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, o => o.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(_fake);
        _app = builder.Build();
        _app.MapGrpcService<FakeCoordinator>();
        await _app.StartAsync(TestContext.Current.CancellationToken);
    }

    public async ValueTask DisposeAsync() => await _app!.DisposeAsync();

    private async Task<(int Exit, string Out, string Err)> RunAsync(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var exit = await CliApp.RunAsync([.. args, "--coordinator", Address], stdout, stderr);
        return (exit, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public async Task Switchover_Completed_SendsCurrentGenerationAndTargetFollowsToTerminalExit0()
    {
        _fake.Outcome = "completed";
        var (exit, output, _) = await RunAsync("switchover", "db", "--to", "b", "--reason", "kernel update");

        Assert.Equal(0, exit);
        var request = Assert.IsType<SwitchoverRequest>(Assert.Single(_fake.Requests));
        Assert.Equal(("db", 4UL, "b", "kernel update"), (request.Resource, request.Generation, request.TargetNode, request.Reason));
        Assert.Equal(41UL, _fake.WatchedAfter);
        Assert.Contains("switchover op1: a → b started at generation 5", output);
        Assert.Contains("SwitchoverCompleted", output);
        Assert.DoesNotContain("SomeoneElse", output.Split('\n').Last(l => l.Length > 0));
    }

    [Fact]
    public async Task Switchover_Aborted_Exit3()
    {
        _fake.Outcome = "aborted";
        var (exit, output, err) = await RunAsync("switchover", "db", "--to", "b");
        Assert.True(exit == 3, err);
        Assert.Contains("SwitchoverAborted", output);
    }

    [Fact]
    public async Task Switchover_RefusedByCoordinator_Exit2WithReason()
    {
        _fake.Refuse = "db: b's disk is Inconsistent, not UpToDate";
        var (exit, _, err) = await RunAsync("switchover", "db", "--to", "b");
        Assert.Equal(2, exit);
        Assert.Contains("FailedPrecondition", err);
        Assert.Contains("not UpToDate", err);
    }

    [Fact]
    public async Task Switchover_WithoutTo_UsageExit2NoCall()
    {
        var (exit, _, err) = await RunAsync("switchover", "db");
        Assert.Equal(2, exit);
        Assert.Contains("--to", err);
        Assert.Empty(_fake.Requests);
    }

    [Theory]
    [InlineData("--force")]
    [InlineData("--i-understand-data-loss")]
    public async Task Promote_MissingForceOrAcknowledgement_RefusedLocallyExit2NoCall(string onlyFlag)
    {
        var (exit, _, err) = await RunAsync("promote", onlyFlag, "db", "--to", "b");
        Assert.Equal(2, exit);
        Assert.StartsWith("hameshctl: ", err, StringComparison.Ordinal);
        Assert.Empty(_fake.Requests);
    }

    [Fact]
    public async Task Promote_ForceAndAcknowledged_SendsFlagAndGenerationExit0()
    {
        _fake.Outcome = "completed";
        var (exit, output, _) = await RunAsync("promote", "--force", "db", "--to", "b", "--i-understand-data-loss", "--no-wait");

        Assert.Equal(0, exit);
        var request = Assert.IsType<ForcePromoteRequest>(Assert.Single(_fake.Requests));
        Assert.True(request.IUnderstandDataLoss);
        Assert.Equal(("db", 4UL, "b"), (request.Resource, request.Generation, request.Node));
        Assert.Contains("started at generation 5", output);
    }

    [Fact]
    public async Task StatusWatch_RedrawsUntilCount_ThenExit0()
    {
        var (exit, output, _) = await RunAsync("status", "--watch", "--interval", "0.05", "--count", "3");

        Assert.Equal(0, exit);
        Assert.Equal(3, output.Split("Cluster test").Length - 1);
        Assert.Equal(3, _fake.StatusCalls);
    }

    [Fact]
    public async Task StatusWatch_BadInterval_UsageExit2()
    {
        var (exit, _, err) = await RunAsync("status", "--watch", "--interval", "0");
        Assert.Equal(CliApp.Usage, exit);
        Assert.Contains("--interval", err);
    }

    private sealed class FakeCoordinator : CoordinatorService.CoordinatorServiceBase
    {
        private static readonly Google.Protobuf.WellKnownTypes.Timestamp At = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));

        public ConcurrentQueue<object> Requests { get; } = new();

        public string Outcome { get; set; } = "completed";

        public string? Refuse { get; set; }

        public ulong WatchedAfter { get; private set; }

        private int _statusCalls;

        public int StatusCalls => Volatile.Read(ref _statusCalls);

        public override Task<ClusterStatus> GetClusterStatus(GetClusterStatusRequest request, ServerCallContext context)
        {
            Interlocked.Increment(ref _statusCalls);
            return Task.FromResult(new ClusterStatus { Cluster = "test", Resources = { new ClusterResource { Resource = "db", Generation = 4, PrimaryNode = "a" } } });
        }

        public override Task<OperationResult> Switchover(SwitchoverRequest request, ServerCallContext context)
        {
            Requests.Enqueue(request);
            return Accept("switchover", request.Resource);
        }

        public override Task<OperationResult> ForcePromote(ForcePromoteRequest request, ServerCallContext context)
        {
            Requests.Enqueue(request);
            return Accept("force-promote", request.Resource);
        }

        public override async Task WatchEvents(WatchEventsRequest request, IServerStreamWriter<ClusterEvent> responseStream, ServerCallContext context)
        {
            WatchedAfter = request.AfterSequence;
            await responseStream.WriteAsync(new ClusterEvent { Time = At, Sequence = 42, Kind = "SwitchoverStarted", Resource = "db", Attributes = { ["operation"] = "op1" } });
            await responseStream.WriteAsync(new ClusterEvent { Time = At, Sequence = 43, Kind = "SomeoneElseCompleted", Resource = "db", Attributes = { ["operation"] = "op0", ["terminal"] = "true", ["outcome"] = "completed" } });
            var kind = "Switchover" + char.ToUpperInvariant(Outcome[0]) + Outcome[1..];
            await responseStream.WriteAsync(new ClusterEvent { Time = At, Sequence = 44, Kind = kind, Resource = "db", Attributes = { ["operation"] = "op1", ["terminal"] = "true", ["outcome"] = Outcome } });
            await Task.Delay(Timeout.InfiniteTimeSpan, TimeProvider.System, context.CancellationToken);
        }

        private Task<OperationResult> Accept(string kind, string resource) => Refuse is { } why
            ? throw new RpcException(new Status(StatusCode.FailedPrecondition, why))
            : Task.FromResult(new OperationResult { OperationId = "op1", Resource = resource, Generation = 5, Accepted = true, EventSequence = 42, Message = $"{kind} op1: a → b started at generation 5" });
    }
}
