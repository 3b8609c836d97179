using System.Globalization;
using HaMesh.Bench;

// hamesh-bench: dotnet run -c Release --project bench/HaMesh.Bench -- <command> [--runs N] ...
//   failover   --runs 30 [--task-seconds 1]   HaMesh failover latency in the netns lab (root)
//   keepalived --runs 30                      keepalived VRRP takeover in the same namespaces (root)
//   idle       [--seconds 30] [--agent-env K=V,...]  agent and coordinator CPU/RSS at idle in the netns lab (root)
//   scale      [--agents 1000] [--seconds 60] coordinator with N in-process agents on the real Connect stream
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
    "failover" => await FailoverBench.RunAsync(Int("runs", 30), double.Parse(flags.GetValueOrDefault("task-seconds", "1"), CultureInfo.InvariantCulture), stop.Token),
    "keepalived" => await KeepalivedBench.RunAsync(Int("runs", 30), stop.Token),
    "idle" => await IdleBench.RunAsync(Int("seconds", 30), flags.GetValueOrDefault("agent-env"), stop.Token),
    "scale" => await ScaleBench.RunAsync(Int("agents", 1000), Int("seconds", 60), stop.Token),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: hamesh-bench failover|keepalived|idle|scale [--runs N] [--agents N] [--seconds N]");
    return 2;
}
