namespace HaMesh.Shared.Grpc;

/// <summary>
/// gRPC deadlines are absolute wall-clock instants evaluated by grpc-dotnet on its own clock, so this
/// is the one sanctioned wall-clock read (R15); nothing else in HaMesh may read the wall clock.
/// </summary>
public static class RpcDeadline
{
    public static DateTime In(TimeSpan timeout)
    {
#pragma warning disable RS0030 // grpc-dotnet compares deadlines with DateTime.UtcNow internally
        return DateTime.UtcNow + timeout;
#pragma warning restore RS0030
    }
}
