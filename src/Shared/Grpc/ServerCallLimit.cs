using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.AspNetCore.Http;

namespace HaMesh.Shared.Grpc;

/// <summary>
/// The longest a unary call may run on this daemon, whatever deadline (or none) the caller sent;
/// <paramref name="HttpContext"/> reads the call's HttpContext (the daemons pass GetHttpContext).
/// </summary>
public sealed record ServerCallLimit(TimeSpan MaxUnary, Func<ServerCallContext, HttpContext>? HttpContext = null);

/// <summary>
/// Server-side deadline: a unary call answers DEADLINE_EXCEEDED after <see cref="ServerCallLimit.MaxUnary"/>
/// at the latest, whatever deadline (or none) the caller sent. When the caller sent none, the handler's
/// cancellation token (HttpContext.RequestAborted, which grpc-dotnet hands out without a deadline) fires at
/// the limit too, so its work stops; with a caller deadline grpc-dotnet's own deadline token applies.
/// Streams (Connect, WatchEvents) live as long as their connection and are not limited here.
/// </summary>
public sealed class ServerDeadlineInterceptor(ServerCallLimit limit, TimeProvider time) : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(continuation);
        using var timeout = new CancellationTokenSource(limit.MaxUnary, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, timeout.Token);
        var http = context.Deadline == DateTime.MaxValue && limit.HttpContext is { } httpContext ? httpContext(context) : null;
        var aborted = http?.RequestAborted ?? CancellationToken.None;
        if (http is not null)
        {
            http.RequestAborted = linked.Token;
        }

        Task<TResponse>? handler = null;
        try
        {
            handler = continuation(request, context);
            // a handler that ignores its token still answers DEADLINE_EXCEEDED at the limit
            return await handler.WaitAsync(linked.Token);
        }
        catch (Exception ex) when (timeout.IsCancellationRequested && ex is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled })
        {
            _ = handler?.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            throw new RpcException(new Status(StatusCode.DeadlineExceeded,
                $"{context.Method.TrimStart('/')} ran longer than this server's limit of {limit.MaxUnary.TotalSeconds:0.###} s"));
        }
        finally
        {
            if (http is not null)
            {
                http.RequestAborted = aborted;   // the linked source is disposed on return
            }
        }
    }
}
