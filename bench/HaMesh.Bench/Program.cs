using System.Globalization;
using HaMesh.Bench;

// hamesh-bench: dotnet run -c Release --project bench/HaMesh.Bench -- <command> [--runs N] ...
//   failover   --runs 30 [--task-seconds 1]   HaMesh failover latency in the netns lab (root)
//   keepalived --runs 30                      keepalived VRRP takeover in the same namespaces (root)
//   idle       [--seconds 30] [--agent-env K=V,...] [--aot auto|none|PATH]  agent and coordinator CPU/RSS at idle in the netns lab (root),
//              JIT agent and, when published (src/Agent/bin/aot/hamesh-agent), the Native AOT agent
//   scale      [--agents 1000] [--seconds 60] [--failovers 0|N] coordinator with N in-process agents on the real Connect stream;
//              with --failovers N (root) the coordinator and two real agents run in the netns lab and N failovers happen under the load
//   soak       [--loss 10,30] [--minutes 10]  false failovers under random loss on every link of the netns lab (root)
var flags = new Dictionary<string, string>(StringComparer.Ordinal);
for (var i = 1; i + 1 < args.Length; i += 2)
{
    flags[args[i].TrimStart('-')] = args[i + 1];
}

int Int(string name, int fallback) => flags.TryGetValue(name, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    stop.Cancel();
};

return args.FirstOrDefault() switch
{
    "failover" => await FailoverBench.RunAsync(Int("runs", 30), double.Parse(flags.GetValueOrDefault("task-seconds", "1"), CultureInfo.InvariantCulture), flags.GetValueOrDefault("fence-peer"), stop.Token),
    "keepalived" => await KeepalivedBench.RunAsync(Int("runs", 30), stop.Token),
    "idle" => await IdleBench.RunAsync(Int("seconds", 30), flags.GetValueOrDefault("agent-env"), flags.GetValueOrDefault("aot"), stop.Token),
    "scale" => Int("failovers", 0) > 0
        ? await ScaleFailoverBench.RunAsync(Int("agents", 1000), Int("seconds", 60), Int("failovers", 0), stop.Token)
        : await ScaleBench.RunAsync(Int("agents", 1000), Int("seconds", 60), stop.Token),
    "soak" => await SoakBench.RunAsync([.. flags.GetValueOrDefault("loss", "10,30").Split(',').Select(v => int.Parse(v, CultureInfo.InvariantCulture))], TimeSpan.FromMinutes(double.Parse(flags.GetValueOrDefault("minutes", "10"), CultureInfo.InvariantCulture)), stop.Token),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: hamesh-bench failover|keepalived|idle|scale|soak [--runs N] [--fence-peer PATH] [--agents N] [--seconds N] [--failovers N] [--loss 10,30] [--minutes M]");
    return 2;
}
