using System.Globalization;
using HaMesh.Simulation.Tests.Harness;

namespace HaMesh.Simulation.Tests;

/// <summary>
/// The CI budget of the deterministic simulation: fixed seeds, two- and three-node clusters. A failure
/// prints the seed and a readable trace; `dotnet run -c Release --project tests/HaMesh.Simulation.Runner -- --seed N --nodes 2`
/// replays it exactly.
/// </summary>
public sealed class SimulationTests(ITestOutputHelper output)
{
    [Fact]
    public void FixedSeeds_TwoNodes_InvariantsAndLivenessHold() => RunSeeds(1, 400, new SimOptions { Nodes = 2 });

    [Fact]
    public void FixedSeeds_ThreeNodes_InvariantsAndLivenessHold() => RunSeeds(1, 250, new SimOptions { Nodes = 3 });

    [Fact]
    public void FixedSeeds_TwoNodes_DriftAtTheMarginBound_InvariantsHold() =>
        RunSeeds(5000, 100, new SimOptions { Nodes = 2, MaxDrift = 0.1 });

    [Fact]
    public void SameSeed_ReproducesTheTraceExactly()
    {
        var first = ClusterSimulation.Run(42, new SimOptions { Nodes = 3 });
        var second = ClusterSimulation.Run(42, new SimOptions { Nodes = 3 });
        var other = ClusterSimulation.Run(43, new SimOptions { Nodes = 3 });

        Assert.Equal(first.TraceHash, second.TraceHash);
        Assert.Equal(first.Events, second.Events);
        Assert.Equal(first.AckedWrites, second.AckedWrites);
        Assert.NotEqual(first.TraceHash, other.TraceHash);
    }

    [Fact]
    public void NoFaults_TheAdoptedPrimaryServesThroughoutWithoutFailover()
    {
        var r = ClusterSimulation.Run(7, new SimOptions { Nodes = 2, FaultPhase = TimeSpan.Zero, LivenessBound = TimeSpan.FromSeconds(30) });

        Assert.Null(r.Violation);
        Assert.Equal(0, r.Failovers);
        Assert.Equal(0, r.FaultEvents);
        Assert.True(r.AckedWrites >= 295, $"only {r.AckedWrites} of ~300 writes acknowledged without faults");
    }

    [Fact]
    public void Faults_ProduceFailovers_SoTheRunsAreNotVacuous()
    {
        var results = Enumerable.Range(1, 40).Select(s => ClusterSimulation.Run(s, new SimOptions { Nodes = 2 })).ToList();

        Assert.True(results.Sum(r => r.Failovers) >= 40, $"{results.Sum(r => r.Failovers)} promotions in 40 runs");
        Assert.True(results.All(r => r.FaultEvents > 5));
        Assert.Contains(results, r => r.RecoveredAfter > TimeSpan.Zero);
    }

    private void RunSeeds(int start, int count, SimOptions options)
    {
        var failures = new List<SimResult>();
        long events = 0;
        for (var seed = start; seed < start + count; seed++)
        {
            var r = ClusterSimulation.Run(seed, options);
            events += r.Events;
            if (r.Violation is not null)
            {
                failures.Add(r);
            }
        }

        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{count} seeds from {start}, {options.Nodes} nodes: {events} simulated events, {failures.Count} violations"));
        if (failures.Count > 0)
        {
            Assert.Fail($"{failures.Count} seed(s) violate: {string.Join(", ", failures.Select(f => f.Seed))}\n\n{failures[0].Report}");
        }
    }
}
