using System.Globalization;
using System.Text;

namespace HaMesh.Bench;

/// <summary>HaMesh detection next to keepalived's, as a ratio, once both raw series exist.</summary>
public static class Comparison
{
    public static void Write()
    {
        var dir = FailoverBench.TestPathsResults();
        var decision = Read(Path.Combine(dir, "failover-decision.ms"));
        var promoted = Read(Path.Combine(dir, "failover-promoted.ms"));
        var keepalived = Read(Path.Combine(dir, "keepalived-takeover.ms"));
        if (decision.Count == 0 || keepalived.Count == 0)
        {
            return;
        }

        var sb = new StringBuilder(Stats.Header("HaMesh vs keepalived, same namespaces (ratio < 1: HaMesh faster)"));
        sb.AppendLine(Stats.Row("HaMesh kill → decision", decision));
        sb.AppendLine(Stats.Row("HaMesh kill → candidate promoted", promoted));
        sb.AppendLine(Stats.Row("keepalived kill → VIP on backup", keepalived));
        foreach (var p in new[] { 50.0, 99.0 })
        {
            var k = Stats.Percentile(keepalived, p);
            sb.Append(CultureInfo.InvariantCulture, $"p{p:0}: decision/keepalived = {Stats.Percentile(decision, p) / k:0.00}, promoted/keepalived = {Stats.Percentile(promoted, p) / k:0.00}\n");
        }

        Stats.Write("comparison", sb.ToString());
    }

    private static List<double> Read(string path) =>
        File.Exists(path) ? [.. File.ReadAllLines(path).Where(l => l.Length > 0 && l != "NaN").Select(l => double.Parse(l, CultureInfo.InvariantCulture))] : [];
}
