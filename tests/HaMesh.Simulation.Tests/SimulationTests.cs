using HaMesh.Simulation.Tests.Harness;

namespace HaMesh.Simulation.Tests;

public sealed class SimulationTests(ITestOutputHelper output)
{
    [Fact]
    public void Smoke()
    {
        var r = ClusterSimulation.Run(1);
        output.WriteLine($"events={r.Events} faults={r.FaultEvents} acked={r.AckedWrites} failovers={r.Failovers} recovered={r.RecoveredAfter}");
        output.WriteLine(r.Report);
        Assert.Null(r.Violation);
    }
}
