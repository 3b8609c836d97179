namespace HaMesh.Shared.Configuration;

/// <summary>OVH API base URLs by endpoint name (specs/ovh-api.md §1).</summary>
public static class OvhEndpoints
{
    private static readonly Dictionary<string, string> Map = new(StringComparer.Ordinal)
    {
        ["ovh-eu"] = "https://eu.api.ovh.com/1.0",
        ["ovh-ca"] = "https://ca.api.ovh.com/1.0",
        ["ovh-us"] = "https://api.us.ovhcloud.com/1.0",
        ["soyoustart-eu"] = "https://eu.api.soyoustart.com/1.0",
        ["soyoustart-ca"] = "https://ca.api.soyoustart.com/1.0",
        ["kimsufi-eu"] = "https://eu.api.kimsufi.com/1.0",
        ["kimsufi-ca"] = "https://ca.api.kimsufi.com/1.0",
    };

    public static IEnumerable<string> Names => Map.Keys;

    public static bool IsKnown(string name) => Map.ContainsKey(name);

    /// <summary>The base URL for a name, or the value itself when it is already a URL.</summary>
    public static Uri Resolve(string endpoint) =>
        Map.TryGetValue(endpoint, out var url) ? new Uri(url) : new Uri(endpoint.TrimEnd('/'));
}
