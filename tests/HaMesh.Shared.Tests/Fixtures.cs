namespace HaMesh.Shared.Tests;

/// <summary>Reads saved outputs. Capture files carry "# command:" / "# exit code:" headers, which are stripped.</summary>
internal static class Fixtures
{
    public static string Read(string relative) => File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", relative));

    public static (string Output, int ExitCode) Capture(string name)
    {
        var lines = Read(Path.Combine("captures", name)).Split('\n');
        var exit = int.Parse(lines[1]["# exit code: ".Length..], System.Globalization.CultureInfo.InvariantCulture);
        return (string.Join('\n', lines.Skip(2)), exit);
    }
}
