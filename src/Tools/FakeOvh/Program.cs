using System.Globalization;
using HaMesh.FakeOvh;

// hamesh-fake-ovh: the fake OVH API as a real HTTP server for tests, the demo and the lab.
// Flags: --urls URL (default http://127.0.0.1:0), --state FILE (seed JSON), --app-key/--app-secret/--consumer-key,
// --task-seconds N (move duration, default 60), --rate-limit N (per minute, default 60), --on-move-complete EXE,
// --tls-cert PEM --tls-key PEM (serve https:// URLs with that certificate: the official node-ovh client only speaks TLS).
var flags = Flags.Parse(args);
var builder = WebApplication.CreateSlimBuilder();
builder.WebHost.UseUrls(flags.GetValueOrDefault("urls", "http://127.0.0.1:0"));
if (flags.TryGetValue("tls-cert", out var certPath))
{
    var certificate = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPemFile(certPath, flags.GetValueOrDefault("tls-key"));
    builder.WebHost.UseKestrelHttpsConfiguration();
    builder.WebHost.ConfigureKestrel(k => k.ConfigureHttpsDefaults(h => h.ServerCertificate = certificate));
}

builder.Logging.SetMinimumLevel(LogLevel.Warning);
var time = TimeProvider.System;
var state = new FakeOvhState(time, TimeSpan.FromSeconds(double.Parse(flags.GetValueOrDefault("task-seconds", "60"), CultureInfo.InvariantCulture)), flags.GetValueOrDefault("on-move-complete"));
state.Seed(flags.TryGetValue("state", out var seed) ? await File.ReadAllTextAsync(seed) : """{"ips":{"203.0.113.10/32":"ns1.ip-1-2-3.eu"},"servers":["ns1.ip-1-2-3.eu","ns2.ip-1-2-3.eu"]}""");
var options = new FakeOvhOptions(
    flags.GetValueOrDefault("app-key", "fake-app-key"),
    flags.GetValueOrDefault("app-secret", "fake-app-secret"),
    flags.GetValueOrDefault("consumer-key", "fake-consumer-key"),
    [("GET", "/ip"), ("GET", "/ip/*"), ("POST", "/ip/*"), ("GET", "/dedicated/server"), ("GET", "/dedicated/server/*")],
    int.Parse(flags.GetValueOrDefault("rate-limit", "60"), CultureInfo.InvariantCulture),
    TimeSpan.FromSeconds(120));
var app = builder.Build();
new FakeOvhApi(state, options, time).Map(app);
await app.StartAsync();
foreach (var address in app.Urls)
{
    Console.WriteLine($"fake-ovh listening on {address}");
}

await app.WaitForShutdownAsync();

internal static class Flags
{
    public static Dictionary<string, string> Parse(string[] args)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i + 1 < args.Length; i += 2)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal))
            {
                throw new ArgumentException($"unexpected argument '{args[i]}'");
            }

            result[args[i][2..]] = args[i + 1];
        }

        return result;
    }
}
