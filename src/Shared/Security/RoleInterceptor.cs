using System.Net;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Core.Interceptors;
using HaMesh.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace HaMesh.Shared.Security;

/// <summary>How the interceptor learns the caller (the daemons read it from the HTTP connection) and reports a denial.</summary>
public sealed class RoleContext
{
    public required string LocalNode { get; init; }

    public required Func<ServerCallContext, X509Certificate2?> ClientCertificate { get; init; }

    public required Func<ServerCallContext, IPAddress?> RemoteAddress { get; init; }

    /// <summary>Called after each denial (the coordinator appends an AccessDenied audit event).</summary>
    public Func<string, string, string, CancellationToken, Task>? OnDenied { get; init; }
}

/// <summary>Enforces <see cref="AccessPolicy"/> on the HaMesh services (mutual-TLS mode only): denied calls get PermissionDenied.</summary>
public sealed partial class RoleInterceptor(RoleContext context, ILogger<RoleInterceptor> logger) : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        ArgumentNullException.ThrowIfNull(continuation);
        await AuthorizeAsync(context, request);
        return await continuation(request, context);
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        ArgumentNullException.ThrowIfNull(continuation);
        await AuthorizeAsync(context, request);
        await continuation(request, responseStream, context);
    }

    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        ArgumentNullException.ThrowIfNull(continuation);
        await AuthorizeAsync(context, null);
        return await continuation(requestStream, context);
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        ArgumentNullException.ThrowIfNull(continuation);
        var caller = await AuthorizeAsync(context, null);
        if (caller is not null && requestStream is IAsyncStreamReader<AgentMessage> agentStream)
        {
            var checkedStream = new CheckedAgentStream(agentStream, caller, this, context);
            await continuation((IAsyncStreamReader<TRequest>)(object)checkedStream, responseStream, context);
            return;
        }

        await continuation(requestStream, responseStream, context);
    }

    /// <summary>Returns the caller for governed methods (null for health/reflection); throws PermissionDenied when denied.</summary>
    private async Task<ClusterIdentity?> AuthorizeAsync(ServerCallContext call, object? request)
    {
        if (!AccessPolicy.Governs(call.Method))
        {
            return null;
        }

        var caller = ClusterRoles.From(context.ClientCertificate(call));
        var remote = context.RemoteAddress(call);
        var reason = AccessPolicy.Check(call.Method, caller, context.LocalNode, request, remote is not null && IPAddress.IsLoopback(remote));
        if (reason is not null)
        {
            await DenyAsync(call, caller, reason);
        }

        return caller;
    }

    private async Task DenyAsync(ServerCallContext call, ClusterIdentity? caller, string reason)
    {
        var who = caller?.ToString() ?? "(no role)";
        Log.Denied(logger, call.Method, who, call.Peer, reason);
        if (context.OnDenied is { } onDenied)
        {
            await onDenied(call.Method, who, reason, call.CancellationToken);
        }

        throw new RpcException(new Status(StatusCode.PermissionDenied, $"{call.Method.TrimStart('/')} denied for {who}: {reason}"));
    }

    private sealed class CheckedAgentStream(IAsyncStreamReader<AgentMessage> inner, ClusterIdentity caller, RoleInterceptor owner, ServerCallContext call) : IAsyncStreamReader<AgentMessage>
    {
        public AgentMessage Current => inner.Current;

        public async Task<bool> MoveNext(CancellationToken cancellationToken)
        {
            if (!await inner.MoveNext(cancellationToken))
            {
                return false;
            }

            if (AccessPolicy.CheckAgentMessage(caller, inner.Current) is { } reason)
            {
                await owner.DenyAsync(call, caller, reason);
            }

            return true;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3101, Level = LogLevel.Warning, Message = "access denied: {Method} for {Caller} from {Peer}: {Reason}")]
        public static partial void Denied(ILogger logger, string method, string caller, string peer, string reason);
    }
}
