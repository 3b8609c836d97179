using System.Diagnostics.CodeAnalysis;
using Grpc.Core;
using HaMesh.Shared.Configuration;

namespace HaMesh.Coordinator.Api;

/// <summary>Field validation shared by the coordinator's RPCs: INVALID_ARGUMENT naming the field, NOT_FOUND for unknown names.</summary>
public static class OperatorRequests
{
    public static ResourceOptions RequireResource(HaMeshOptions options, string value, string field = "resource")
    {
        ArgumentNullException.ThrowIfNull(options);
        RequireName(value, field);
        return options.FindResource(value) ?? throw NotFound(field, $"no configured resource named '{value}'");
    }

    public static NodeOptions RequireNode(HaMeshOptions options, string value, string field)
    {
        ArgumentNullException.ThrowIfNull(options);
        RequireName(value, field);
        return options.FindNode(value) ?? throw NotFound(field, $"no configured node named '{value}'");
    }

    public static void RequireName(string value, string field)
    {
        if (string.IsNullOrEmpty(value))
        {
            ThrowInvalid(field, "is required");
        }

        if (!Names.IsValidName(value))
        {
            ThrowInvalid(field, $"'{Truncate(value)}' {Names.NameRule}");
        }
    }

    /// <summary>Operator commands carry the generation they saw; a stale picture is refused.</summary>
    public static void RequireCurrentGeneration(ulong requested, ulong current, string resource)
    {
        if (requested != current)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"generation: {resource} is at generation {current}, the request was made at {requested}; re-read the status and retry"));
        }
    }

    public static string Truncate(string value) => value.Length <= 64 ? value : value[..64] + "…";

    [DoesNotReturn]
    public static void ThrowInvalid(string field, string reason) =>
        throw new RpcException(new Status(StatusCode.InvalidArgument, $"{field}: {reason}"));

    private static RpcException NotFound(string field, string reason) =>
        new(new Status(StatusCode.NotFound, $"{field}: {reason}"));
}
