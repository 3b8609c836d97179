namespace HaMesh.Shared.Drbd;

/// <summary>The outcome of parsing a DRBD output: a value, or a precise error; parsers never throw.</summary>
public sealed record DrbdParse<T>(T? Value, string? Error)
    where T : class
{
    public bool Ok => Error is null && Value is not null;
}

public static class DrbdParse
{
    public static DrbdParse<T> Success<T>(T value)
        where T : class => new(value, null);

    public static DrbdParse<T> Fail<T>(string error)
        where T : class => new(null, error);
}
