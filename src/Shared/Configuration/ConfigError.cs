namespace HaMesh.Shared.Configuration;

/// <summary>One problem in the cluster file: the key path (e.g. <c>HaMesh:Nodes:1:Name</c>) and why.</summary>
public sealed record ConfigError(string Key, string Reason)
{
    public override string ToString() => $"{Key}: {Reason}";
}

/// <summary>Which component's part of the file must be complete.</summary>
[Flags]
public enum ConfigScope
{
    Cluster = 0,
    Agent = 1,
    Coordinator = 2,
}
