using FsCheck.Xunit;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Failover;

namespace HaMesh.Shared.Tests.Failover;

/// <summary>
/// Properties of Decide over generated views (FsCheck supplies the seeds and shrinks failures to the
/// smallest seed). Each generated view has 2 or 3 nodes with random freshness, roles, disks, DRBD
/// connections, peer-contact ages, generations and resource flags.
/// </summary>
public sealed class FailoverPolicyProperties
{
    private static readonly HaOptions O = ViewBuilder.Options;
    private static readonly MonoTime Now = ViewBuilder.At(1000);

    private static ClusterView Generate(int seed)
    {
        // Each attribute is "favourable to a failover" most of the time and anything else sometimes,
        // so the generated views cluster around the decision boundary instead of far from it.
        var rng = new Random(seed);
        string[] names = rng.Next(2) == 0 ? ["a", "b"] : ["a", "b", "c"];
        var primary = Mostly(rng, "a", names);
        var nodes = names.Select(n => new NodeFacts(
            n,
            n == primary ? Maybe(rng, ViewBuilder.At(1000 - Mostly(rng, 3 + rng.NextDouble() * 3, rng.NextDouble() * 6))) : Maybe(rng, ViewBuilder.At(1000 - Mostly(rng, rng.NextDouble() * 2, rng.NextDouble() * 6))),
            rng.Next(4) == 0 ? ViewBuilder.At(1000 - rng.NextDouble() * 6) : null,
            new Dictionary<string, NodeResourceFacts>
            {
                ["db"] = new(
                    n == primary ? Mostly(rng, DrbdRole.Primary, DrbdRole.Secondary, DrbdRole.Unknown) : Mostly(rng, DrbdRole.Secondary, DrbdRole.Primary, DrbdRole.Unknown),
                    Mostly(rng, DiskState.UpToDate, DiskState.Outdated, DiskState.Inconsistent, DiskState.Consistent, DiskState.Diskless),
                    Mostly(rng, ConnectionState.Connecting, ConnectionState.Connected, ConnectionState.StandAlone, ConnectionState.WfConnection),
                    Mostly(rng, DrbdRole.Unknown, DrbdRole.Primary, DrbdRole.Secondary),
                    (ulong)rng.Next(0, 6),
                    rng.Next(8) == 0 ? null : TimeSpan.FromSeconds(Mostly(rng, 3 + rng.NextDouble() * 3, rng.NextDouble() * 6)),
                    rng.Next(12) != 0),
            })).ToList();
        var outdated = names.Where(_ => rng.Next(8) == 0).ToDictionary(n => n, _ => (ulong)rng.Next(1, 6));
        var resource = new ResourceFacts(
            "db",
            Mostly(rng, (ulong)rng.Next(1, 6), 0UL),
            Mostly(rng, primary, ""),
            rng.Next(10) == 0,
            rng.Next(4) == 0 ? ViewBuilder.At(1000 - rng.NextDouble() * 600) : null,
            outdated,
            rng.Next(10) == 0,
            Pick(rng, names))
        {
            IpRoutes = new Dictionary<string, string?> { ["203.0.113.10/32"] = rng.Next(3) == 0 ? null : Pick(rng, names) },
        };
        return new ClusterView(1, ViewBuilder.At(rng.Next(6) == 0 ? 998 : 0), nodes, [resource]);
    }

    private static T Mostly<T>(Random rng, T usual, params T[] others) => rng.Next(5) == 0 ? others[rng.Next(others.Length)] : usual;

    private static MonoTime? Maybe(Random rng, MonoTime t) => rng.Next(8) == 0 ? null : t;

    private static T Pick<T>(Random rng, params T[] items) => items[rng.Next(items.Length)];

    private static IEnumerable<Decision.Failover> Failovers(ClusterView v) => FailoverPolicy.Decide(v, O, Now).OfType<Decision.Failover>();

    [Property(MaxTest = 2000)]
    public bool Deterministic(int seed)
    {
        var v = Generate(seed);
        return FailoverPolicy.Decide(v, O, Now).SequenceEqual(FailoverPolicy.Decide(v, O, Now));
    }

    [Property(MaxTest = 2000)]
    public bool AtMostOneFailoverPerResource_AndOnlyToTheNextGeneration(int seed)
    {
        var v = Generate(seed);
        var f = Failovers(v).ToList();
        return f.Count <= 1 && f.All(x => x.NewGeneration == v.Resources[0].Generation + 1 && x.From == v.Resources[0].Primary && x.To != x.From);
    }

    [Property(MaxTest = 2000)]
    public bool NeverPromotesACandidateThatIsNotUpToDateFreshOrThatIsOutdated(int seed)
    {
        var v = Generate(seed);
        return Failovers(v).All(f =>
        {
            var n = v.Node(f.To)!;
            var facts = n.For("db")!;
            return facts.Disk == DiskState.UpToDate && facts.DrbdPresent && FailoverPolicy.IsFresh(n, O, Now)
                && !v.Resources[0].Outdated.ContainsKey(f.To) && facts.PeerConnection != ConnectionState.StandAlone;
        });
    }

    [Property(MaxTest = 2000)]
    public bool NeverFailsOverWhileTheCandidateStillSeesThePrimary(int seed)
    {
        var v = Generate(seed);
        return Failovers(v).All(f =>
        {
            var facts = v.Node(f.To)!.For("db")!;
            return !(facts.PeerConnection == ConnectionState.Connected && facts.PeerRole == DrbdRole.Primary)
                && facts.PeerContactAge is { } age && age >= O.Silence;
        });
    }

    [Property(MaxTest = 2000)]
    public bool NeverFailsOverWhenThePrimaryIsNotSilentForTheCoordinator(int seed)
    {
        var v = Generate(seed);
        return Failovers(v).All(f =>
        {
            var p = v.Node(f.From);
            var last = new[] { p?.LastReportAt, p?.LastGrantAt, v.ObservingSince }.Where(t => t is not null).Max()!.Value;
            return Now - last >= O.Silence;
        });
    }

    [Property(MaxTest = 2000)]
    public bool NeverActsDuringMaintenanceOrInFlightOrAntiFlap(int seed)
    {
        var v = Generate(seed);
        var r = v.Resources[0];
        var blocked = r.Maintenance || r.OperationInFlight || (r.LastFailoverAt is { } t && Now - t < O.MinFailoverInterval);
        return !blocked || !Failovers(v).Any();
    }

    [Property(MaxTest = 2000)]
    public bool AFailoverHasAMajority(int seed)
    {
        var v = Generate(seed);
        return Failovers(v).All(f =>
        {
            var votes = 1 + v.Nodes.Count(n => n.Node != f.From && FailoverPolicy.IsFresh(n, O, Now) && n.For("db") is { } x
                && !(x.PeerConnection == ConnectionState.Connected && x.PeerRole == DrbdRole.Primary) && x.PeerContactAge is { } a && a >= O.Silence);
            return votes * 2 > v.Nodes.Count + 1;
        });
    }

    [Property(MaxTest = 2000)]
    public bool EveryResourceGetsAtLeastOneDecisionWithAReason(int seed)
    {
        var decisions = FailoverPolicy.Decide(Generate(seed), O, Now);
        return decisions.Count >= 1 && decisions.All(d => d.Reason.Length > 0);
    }

    [Fact]
    public void Generator_ProducesFailovers_SoThePropertiesAreNotVacuous()
    {
        var failovers = Enumerable.Range(0, 2000).Count(s => Failovers(Generate(s)).Any());
        Assert.True(failovers > 100, $"only {failovers} of 2000 generated views fail over");
    }
}
