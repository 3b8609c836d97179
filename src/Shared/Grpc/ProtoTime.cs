using Google.Protobuf.WellKnownTypes;

namespace HaMesh.Shared.Grpc;

/// <summary>
/// Reads protobuf Duration/Timestamp fields from a request without throwing: a peer can send
/// values outside the protobuf ranges (nanos ≥ 1e9, seconds beyond year 9999), which the
/// library's conversions reject with InvalidOperationException (an "Unknown" status to the caller).
/// </summary>
public static class ProtoTime
{
    public static bool TryToTimeSpan(Duration? value, out TimeSpan result)
    {
        result = default;
        if (value is null || value.Nanos is <= -1_000_000_000 or >= 1_000_000_000
            || (value.Seconds > 0 && value.Nanos < 0) || (value.Seconds < 0 && value.Nanos > 0)
            || value.Seconds is > Duration.MaxSeconds or < Duration.MinSeconds)
        {
            return false;
        }

        try
        {
            result = value.ToTimeSpan();
            return true;
        }
        catch (Exception ex) when (ex is InvalidOperationException or OverflowException)
        {
            return false;
        }
    }

    public static bool TryToDateTimeOffset(Timestamp? value, out DateTimeOffset result)
    {
        result = default;
        if (value is null || value.Nanos is < 0 or >= 1_000_000_000)
        {
            return false;
        }

        try
        {
            result = value.ToDateTimeOffset();
            return true;
        }
        catch (Exception ex) when (ex is InvalidOperationException or ArgumentOutOfRangeException)
        {
            return false;
        }
    }
}
