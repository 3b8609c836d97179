using System.Text.Json;
using HaMesh.Shared.Configuration;

namespace HaMesh.Testing;

public static class ClusterFiles
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>Writes the options as a cluster file ({"HaMesh": ...}) and returns its path.</summary>
    public static string Write(string directory, HaMeshOptions options, string name = "cluster.json")
    {
        var path = Path.Combine(directory, name);
        File.WriteAllText(path, JsonSerializer.Serialize(new Dictionary<string, HaMeshOptions> { [HaMeshOptions.SectionName] = options }, Json));
        return path;
    }
}
