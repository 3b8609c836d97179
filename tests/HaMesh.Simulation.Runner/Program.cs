using System.Globalization;
using HaMesh.Simulation.Tests.Harness;

// Runs many seeded whole-cluster simulations (the same harness as tests/HaMesh.Simulation.Tests) and
// prints simulated events and fault events per second. Usage:
//   dotnet run -c Release --project tests/HaMesh.Simulation.Runner -- [--seeds N] [--start S] [--nodes 2|3|both] [--seed X] [--out FILE]
var seeds = 2000;
var start = 1;
var nodes = "both";
int? single = null;
string? outFile = null;
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--seeds": seeds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--start": start = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--nodes": nodes = args[++i]; break;
        case "--seed": single = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--out": outFile = args[++i]; break;
        default:
            Console.Error.WriteLine($"unknown argument {args[i]}");
            return 2;
    }
}

int[] variants = nodes switch { "2" => [2], "3" => [3], _ => [2, 3] };
if (single is { } s)
{
    foreach (var n in variants)
    {
        var r = ClusterSimulation.Run(s, new SimOptions { Nodes = n });
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"seed {s} nodes {n}: {(r.Violation ?? "ok")} events={r.Events} faults={r.FaultEvents} acked={r.AckedWrites} promotions={r.Failovers} recovered={r.RecoveredAfter?.TotalSeconds:0.0}s hash={r.TraceHash:x16}"));
        if (r.Violation is not null)
        {
            Console.WriteLine(r.Report);
        }
    }

    return 0;
}

var clock = TimeProvider.System;
var started = clock.GetTimestamp();
long events = 0, faults = 0, acked = 0, promotions = 0, runs = 0;
var failures = new List<string>();
var recoveries = new List<double>();
foreach (var n in variants)
{
    for (var seed = start; seed < start + seeds; seed++)
    {
        var r = ClusterSimulation.Run(seed, new SimOptions { Nodes = n });
        runs++;
        events += r.Events;
        faults += r.FaultEvents;
        acked += r.AckedWrites;
        promotions += r.Failovers;
        if (r.RecoveredAfter is { } rec)
        {
            recoveries.Add(rec.TotalSeconds);
        }

        if (r.Violation is not null)
        {
            failures.Add(string.Create(CultureInfo.InvariantCulture, $"seed {seed} nodes {n}: {r.Violation}"));
            Console.WriteLine(failures[^1]);
        }
    }
}

var secs = clock.GetElapsedTime(started).TotalSeconds;
recoveries.Sort();
double P(double q) => recoveries.Count == 0 ? double.NaN : recoveries[Math.Min(recoveries.Count - 1, (int)(q * recoveries.Count))];
var summary = string.Create(CultureInfo.InvariantCulture, $"""
    HaMesh deterministic simulation: {runs} runs (seeds {start}..{start + seeds - 1}, nodes {string.Join("+", variants)}), {secs:0.0} s wall
    simulated events: {events} ({events / secs:0} /s); injected fault events: {faults} ({faults / secs:0.0} /s)
    acknowledged writes checked (I3): {acked}; promotions: {promotions}
    recovery after faults stop: p50 {P(0.5):0.0} s, p99 {P(0.99):0.0} s, max {(recoveries.Count == 0 ? double.NaN : recoveries[^1]):0.0} s (simulated)
    violations: {failures.Count}
    """);
Console.WriteLine(summary);
foreach (var f in failures)
{
    Console.WriteLine("  " + f);
}

if (outFile is not null)
{
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outFile))!);
    File.WriteAllText(outFile, summary + string.Concat(failures.Select(f => "\n  " + f)) + "\n");
}

return failures.Count == 0 ? 0 : 1;
