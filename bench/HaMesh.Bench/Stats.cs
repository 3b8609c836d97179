using System.Globalization;
using System.Text;

namespace HaMesh.Bench;

/// <summary>Percentiles (nearest rank) and the result file every command writes.</summary>
public static class Stats
{
    public static double Percentile(IReadOnlyList<double> values, double p)
    {
        if (values.Count == 0)
        {
            return double.NaN;
        }

        var sorted = values.Order().ToArray();
        var rank = (int)Math.Ceiling(p / 100 * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }

    public static string Row(string name, IReadOnlyList<double> values, string unit = "ms")
    {
        var f = values.Count > 0 && values.Max() < 100 ? "0.0" : "0";
        string V(double v) => v.ToString(f, CultureInfo.InvariantCulture).PadLeft(7);
        return string.Create(CultureInfo.InvariantCulture, $"{name,-44} n={values.Count,3}  p50={V(Percentile(values, 50))}  p95={V(Percentile(values, 95))}  p99={V(Percentile(values, 99))}  max={V(values.Count == 0 ? double.NaN : values.Max())}  {unit}");
    }

    public static string Header(string title) =>
        $"# {title}\n# {TimeProvider.System.GetUtcNow():yyyy-MM-dd HH:mm:ss} UTC, {Environment.ProcessorCount} cores, {Environment.MachineName}\n";

    /// <summary>Prints <paramref name="text"/> and writes it to bench/results/<paramref name="name"/>.txt.</summary>
    public static void Write(string name, string text)
    {
        Console.WriteLine(text);
        var dir = Path.Combine(HaMesh.Testing.TestPaths.RepoRoot, "bench", "results");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, name + ".txt"), text, new UTF8Encoding(false));
    }
}
