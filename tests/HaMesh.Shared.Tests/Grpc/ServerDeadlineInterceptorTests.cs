using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using HaMesh.Shared.Grpc;
using Microsoft.Extensions.Time.Testing;

namespace HaMesh.Shared.Tests.Grpc;

public sealed class ServerDeadlineInterceptorTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Unary_WithoutClientDeadline_IsCancelledAtTheServerLimit_AsDeadlineExceeded()
    {
        var time = new FakeTimeProvider();
        var interceptor = new ServerDeadlineInterceptor(new ServerCallLimit(Limit), time);
        var handler = new TaskCompletionSource<Empty>();
        var call = interceptor.UnaryServerHandler<Empty, Empty>(new Empty(), new FakeContext(CancellationToken.None), (_, _) => handler.Task);

        time.Advance(Limit - TimeSpan.FromMilliseconds(1));
        Assert.False(call.IsCompleted);
        time.Advance(TimeSpan.FromMilliseconds(1));

        var ex = await Assert.ThrowsAsync<RpcException>(() => call);
        Assert.Equal(StatusCode.DeadlineExceeded, ex.StatusCode);
        Assert.Contains("limit of 30 s", ex.Status.Detail, StringComparison.Ordinal);
        handler.SetException(new InvalidOperationException("late failure of an abandoned handler is observed, not unhandled"));
    }

    [Fact]
    public async Task Unary_WithALongerClientDeadline_StillAnswersAtTheServerLimit()
    {
        var time = new FakeTimeProvider();
        var interceptor = new ServerDeadlineInterceptor(new ServerCallLimit(Limit), time);
        var never = new TaskCompletionSource<Empty>();
        var call = interceptor.UnaryServerHandler<Empty, Empty>(new Empty(), new FakeContext(CancellationToken.None, DateTime.MaxValue.AddDays(-1)), (_, _) => never.Task);

        time.Advance(Limit);

        Assert.Equal(StatusCode.DeadlineExceeded, (await Assert.ThrowsAsync<RpcException>(() => call)).StatusCode);
    }

    [Fact]
    public async Task Unary_CallerCancels_IsNotReportedAsTheServerLimit()
    {
        var time = new FakeTimeProvider();
        var interceptor = new ServerDeadlineInterceptor(new ServerCallLimit(Limit), time);
        using var caller = new CancellationTokenSource();
        var call = interceptor.UnaryServerHandler<Empty, Empty>(new Empty(), new FakeContext(caller.Token), async (_, context) =>
        {
            await Task.Delay(Timeout.InfiniteTimeSpan, time, context.CancellationToken);
            return new Empty();
        });

        await caller.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call);
    }

    [Fact]
    public async Task Unary_FastHandler_AnswersNormally()
    {
        var interceptor = new ServerDeadlineInterceptor(new ServerCallLimit(Limit), new FakeTimeProvider());
        var answer = await interceptor.UnaryServerHandler<Empty, StringValue>(new Empty(), new FakeContext(CancellationToken.None),
            (_, context) => Task.FromResult(new StringValue { Value = context.Method }));
        Assert.Equal("/test/Call", answer.Value);
    }

    private sealed class FakeContext(CancellationToken token, DateTime? deadline = null) : ServerCallContext
    {
        protected override string MethodCore => "/test/Call";

        protected override string HostCore => "localhost";

        protected override string PeerCore => "ipv4:127.0.0.1:1";

        protected override DateTime DeadlineCore => deadline ?? DateTime.MaxValue;

        protected override Metadata RequestHeadersCore { get; } = [];

        protected override CancellationToken CancellationTokenCore => token;

        protected override Metadata ResponseTrailersCore { get; } = [];

        protected override Status StatusCore { get; set; }

        protected override WriteOptions? WriteOptionsCore { get; set; }

        protected override AuthContext AuthContextCore => new(null, []);

        protected override ContextPropagationToken CreatePropagationTokenCore(ContextPropagationOptions? options) => throw new NotSupportedException();

        protected override Task WriteResponseHeadersAsyncCore(Metadata responseHeaders) => Task.CompletedTask;
    }
}
