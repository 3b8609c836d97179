namespace HaMesh.Testing;

/// <summary>Root of the shared test helpers.</summary>
public static class TestPaths
{
    /// <summary>The repository root (the folder holding HaMesh.sln), found from the test binary.</summary>
    public static string RepoRoot { get; } = FindRepoRoot();

    private static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "HaMesh.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("HaMesh.sln not found above " + AppContext.BaseDirectory);
    }
}
