using System.Collections.Concurrent;
using HaMesh.Coordinator.Cloud;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Ovh;
using HaMesh.Shared.Configuration;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace HaMesh.FakeOvh.Tests;

/// <summary>
/// The coordinator's OVH registration (HttpClient factory logging included) against the fake API over
/// real HTTP, with every log record captured at Trace: no secret may appear in a message, a template
/// value, a scope or an exception.
/// </summary>
public sealed class OvhLogSecretsTests : IAsyncLifetime
{
    private const string Ip = "203.0.113.10/32";
    private const string Secret = "APPSECRET-7f3a9c1e5b";
    private const string ConsumerKey = "CONSUMER-2d8e4f6a0c";
    private readonly string _dir = Directory.CreateTempSubdirectory("hamesh-ovhlog-").FullName;
    private readonly FakeOvhState _state = new(TimeProvider.System, TimeSpan.FromMilliseconds(100), null);
    private readonly CaptureProvider _logs = new();
    private WebApplication? _app;

    public async ValueTask InitializeAsync()
    {
        _state.Seed("""{"ips":{"203.0.113.10/32":"ns-a"},"servers":["ns-a","ns-b"]}""");
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        _app = builder.Build();
        new FakeOvhApi(_state, new FakeOvhOptions("APPKEY", Secret, ConsumerKey, [("GET", "/ip/*"), ("POST", "/ip/*")], 10_000, TimeSpan.FromSeconds(120)), TimeProvider.System).Map(_app);
        await _app.StartAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await _app!.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private ServiceProvider Coordinator(string secret)
    {
        var file = Path.Combine(_dir, $"ovh-{Guid.NewGuid():N}.json");
        File.WriteAllText(file, $$"""{"ApplicationKey":"APPKEY","ApplicationSecret":"{{secret}}","ConsumerKey":"{{ConsumerKey}}"}""");
        File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var options = new HaMeshOptions();
        options.Coordinator.Ovh.Endpoint = _app!.Urls.First() + "/1.0";
        options.Coordinator.Ovh.CredentialsFile = file;
        options.Cluster.Timings.OvhPollInterval = TimeSpan.FromMilliseconds(50);
        options.Cluster.Timings.OvhTimeout = TimeSpan.FromSeconds(20);
        var services = new ServiceCollection();
        services.AddLogging(b => b.SetMinimumLevel(LogLevel.Trace).AddProvider(_logs));
        services.AddSingleton(Microsoft.Extensions.Options.Options.Create(options));
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<IEventSink>(new InMemoryEventLog(TimeProvider.System));
        services.AddOvhCloud();
        return services.BuildServiceProvider();
    }

    [Fact]
    public async Task MoveAndRefusedCall_TraceLogs_NeverContainSecretConsumerKeyOrSignature()
    {
        var ct = TestContext.Current.CancellationToken;
        await using (var good = Coordinator(Secret))
        {
            var outcome = await good.GetRequiredService<ICloudIpProvider>().EnsureRoutedAsync(Ip, "ns-b", ct);
            Assert.Equal(MoveOutcomeKind.Moved, outcome.Kind);
        }

        await using (var bad = Coordinator("WRONG-" + Secret))
        {
            await Assert.ThrowsAsync<OvhException>(() => bad.GetRequiredService<OvhClient>().GetRoutingAsync(Ip, ct));
        }

        var text = string.Join('\n', _logs.Records);
        Assert.Contains("System.Net.Http.HttpClient.ovh", text);   // the HttpClient pipeline did log, at Trace
        Assert.Contains("/ip/203.0.113.10%2F32/move", text);
        Assert.DoesNotContain(Secret, text);
        Assert.DoesNotContain(ConsumerKey, text);
        Assert.DoesNotContain("$1$", text);
    }

    private sealed class CaptureProvider : ILoggerProvider
    {
        public ConcurrentQueue<string> Records { get; } = new();

        public ILogger CreateLogger(string categoryName) => new Capture(categoryName, Records);

        public void Dispose()
        {
        }

        private sealed class Capture(string category, ConcurrentQueue<string> records) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull
            {
                records.Enqueue($"{category} scope: {state} {Values(state)}");
                return null;
            }

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                records.Enqueue($"{category} [{eventId.Id}] {logLevel}: {formatter(state, exception)} {Values(state)} {exception}");

            private static string Values(object? state) => state is IEnumerable<KeyValuePair<string, object?>> pairs
                ? string.Join(' ', pairs.Select(p => $"{p.Key}={p.Value}"))
                : "";
        }
    }
}
