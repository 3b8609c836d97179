using System.Threading.Channels;
using Grpc.Core;
using HaMesh.Shared.Grpc;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using Microsoft.Extensions.Options;
using Polly;
using Polly.Retry;

namespace HaMesh.Agent.Reporting;

/// <summary>
/// The agent's side of <c>CoordinatorService.Connect</c>: a hello, then a report every heartbeat
/// and at once on any change, plus queued messages (lease requests). Reconnects with capped,
/// jittered exponential backoff (Polly.Core) while the coordinator is away; the backoff starts
/// over after every established session.
/// </summary>
public sealed partial class CoordinatorLink : BackgroundService, ILeaseCoordinator
{
    private readonly HaMeshOptions _options;
    private readonly StatusCollector _collector;
    private readonly ReportSignal _signal;
    private readonly TimeProvider _time;
    private readonly ILogger<CoordinatorLink> _logger;
    private readonly Func<CoordinatorService.CoordinatorServiceClient> _clientFactory;
    private readonly ResiliencePipeline _connectPipeline;
    private readonly Lazy<Grpc.Net.Client.GrpcChannel> _channel;
    private int _channelsCreated;
    private readonly Channel<AgentMessage> _outbox = Channel.CreateBounded<AgentMessage>(
        new BoundedChannelOptions(256) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });

    public CoordinatorLink(
        IOptions<HaMeshOptions> options,
        StatusCollector collector,
        ReportSignal signal,
        TimeProvider time,
        ILogger<CoordinatorLink> logger,
        Func<CoordinatorService.CoordinatorServiceClient>? clientFactory = null)
    {
        _options = options.Value;
        _collector = collector;
        _signal = signal;
        _time = time;
        _logger = logger;
        _channel = new(() =>
        {
            Interlocked.Increment(ref _channelsCreated);
            return GrpcChannels.Create(_options.Coordinator.Address, _options.Cluster.Timings, _options.Tls);
        });
        _clientFactory = clientFactory ?? CreateClient;
        _connectPipeline = BuildConnectPipeline(time, _options.Cluster.Timings.Heartbeat, OnRetry);
    }

    /// <summary>Raised for every coordinator message (welcome, lease grants), on the link's reader task.</summary>
    public event Action<CoordinatorMessage>? MessageReceived;

    /// <summary>True while a session is established (the coordinator answered the hello).</summary>
    public bool IsConnected { get; private set; }

    /// <summary>gRPC channels created so far: one for the link's whole life, however often it reconnects (tests).</summary>
    public int ChannelsCreated => Volatile.Read(ref _channelsCreated);

    /// <summary>Number of sessions established since start (tests and metrics).</summary>
    public int Sessions { get; private set; }

    /// <summary>Queues a message for the coordinator (dropped, oldest first, if the link is down long).</summary>
    public bool Enqueue(AgentMessage message) => _outbox.Writer.TryWrite(message);

    internal static ResiliencePipeline BuildConnectPipeline(TimeProvider time, TimeSpan heartbeat, Func<OnRetryArguments<object>, ValueTask>? onRetry = null) =>
        new ResiliencePipelineBuilder { TimeProvider = time }
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<RpcException>().Handle<IOException>().Handle<HttpRequestException>(),
                MaxRetryAttempts = int.MaxValue,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = heartbeat,
                MaxDelay = TimeSpan.FromSeconds(5),
                OnRetry = onRetry,
            })
            .Build();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                // Retried (with backoff) until a session is established; a session that later breaks
                // starts a fresh retry sequence.
                var session = await _connectPipeline.ExecuteAsync(OpenSessionAsync, stoppingToken);
                await RunSessionAsync(session, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is RpcException or IOException or HttpRequestException)
            {
                Log.SessionEnded(_logger, ex.Message);
            }
            finally
            {
                IsConnected = false;
            }
        }
    }

    private async ValueTask<Session> OpenSessionAsync(CancellationToken cancellationToken)
    {
        var call = _clientFactory().Connect(cancellationToken: cancellationToken);
        try
        {
            var hello = new AgentHello { Node = _options.Agent.Node, AgentVersion = StatusCollector.AgentVersion };
            foreach (var resource in _options.Resources)
            {
                hello.Generations[resource.Name] = (await _collector.CollectAsync(resource.Name, cancellationToken)).Resources.FirstOrDefault()?.Generation ?? 0;
            }

            await call.RequestStream.WriteAsync(new AgentMessage { Hello = hello }, cancellationToken);
            if (!await call.ResponseStream.MoveNext(cancellationToken) || call.ResponseStream.Current.BodyCase != CoordinatorMessage.BodyOneofCase.Welcome)
            {
                throw new RpcException(new Grpc.Core.Status(StatusCode.Unavailable, "coordinator closed the stream without a welcome"));
            }

            MessageReceived?.Invoke(call.ResponseStream.Current);
            return new Session(call);
        }
        catch
        {
            call.Dispose();
            throw;
        }
    }

    private async Task RunSessionAsync(Session session, CancellationToken stoppingToken)
    {
        using var call = session.Call;
        using var sessionCts = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        IsConnected = true;
        Sessions++;
        Log.Connected(_logger, _options.Coordinator.Address);
        var reader = ReadAsync(call, sessionCts);
        var heartbeat = _options.Cluster.Timings.Heartbeat;
        try
        {
            while (!sessionCts.IsCancellationRequested)
            {
                var report = await _collector.CollectAsync(null, sessionCts.Token);
                await call.RequestStream.WriteAsync(new AgentMessage { Report = report }, sessionCts.Token);
                while (_outbox.Reader.TryRead(out var queued))
                {
                    await call.RequestStream.WriteAsync(queued, sessionCts.Token);
                }

                await WaitForNextAsync(heartbeat, sessionCts.Token);
            }
        }
        catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested)
        {
            // the reader saw the stream end: fall through to its error
        }
        finally
        {
            await sessionCts.CancelAsync();
        }

        await reader;
    }

    private async Task WaitForNextAsync(TimeSpan heartbeat, CancellationToken cancellationToken)
    {
        using var wake = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        await Task.WhenAny(
            Task.Delay(heartbeat, _time, wake.Token),
            _signal.WaitAsync(wake.Token),
            _outbox.Reader.WaitToReadAsync(wake.Token).AsTask());
        await wake.CancelAsync();   // the losers end as cancelled, never faulted
        cancellationToken.ThrowIfCancellationRequested();
    }

    private async Task ReadAsync(AsyncDuplexStreamingCall<AgentMessage, CoordinatorMessage> call, CancellationTokenSource session)
    {
        try
        {
            while (await call.ResponseStream.MoveNext(session.Token))
            {
                MessageReceived?.Invoke(call.ResponseStream.Current);
            }

            Log.SessionEnded(_logger, "coordinator closed the stream");
        }
        catch (OperationCanceledException) when (session.IsCancellationRequested)
        {
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.Cancelled && session.IsCancellationRequested)
        {
        }
        catch (Exception ex) when (ex is RpcException or IOException or HttpRequestException)
        {
            Log.SessionEnded(_logger, ex.Message);
        }
        finally
        {
            await session.CancelAsync();
        }
    }

    private ValueTask OnRetry(OnRetryArguments<object> args)
    {
        Log.ConnectFailed(_logger, _options.Coordinator.Address, args.AttemptNumber + 1, args.RetryDelay, args.Outcome.Exception?.Message ?? "no answer");
        return ValueTask.CompletedTask;
    }

    // One channel for the link's life: it reconnects by itself, and a channel per attempt leaked a
    // handler (and its keep-alive timers) on every retry while the coordinator was away.
    private CoordinatorService.CoordinatorServiceClient CreateClient() => new(_channel.Value);

    public override void Dispose()
    {
        if (_channel.IsValueCreated)
        {
            _channel.Value.Dispose();
        }

        base.Dispose();
    }

    private sealed record Session(AsyncDuplexStreamingCall<AgentMessage, CoordinatorMessage> Call);

    private static partial class Log
    {
        [LoggerMessage(EventId = 1101, Level = LogLevel.Information, Message = "Connected to coordinator {Address}")]
        public static partial void Connected(ILogger logger, string address);

        [LoggerMessage(EventId = 1102, Level = LogLevel.Warning, Message = "Coordinator session ended: {Reason}")]
        public static partial void SessionEnded(ILogger logger, string reason);

        [LoggerMessage(EventId = 1103, Level = LogLevel.Warning, Message = "Cannot reach coordinator {Address} (attempt {Attempt}, next in {Delay}): {Reason}")]
        public static partial void ConnectFailed(ILogger logger, string address, int attempt, TimeSpan delay, string reason);
    }
}
