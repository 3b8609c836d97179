using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Logging;

namespace HaMesh.FakeOvh.Tests;

/// <summary>The fake OVH API in-process on a real loopback socket (http, or https with a self-signed certificate made now).</summary>
public sealed class FakeOvhHost : IAsyncDisposable
{
    public static readonly IReadOnlyList<(string Method, string Path)> AllRules =
        [("GET", "/ip"), ("GET", "/ip/*"), ("POST", "/ip/*"), ("GET", "/dedicated/server"), ("GET", "/dedicated/server/*")];

    private FakeOvhHost(WebApplication app, FakeOvhState state, FakeOvhApi api, X509Certificate2? certificate)
    {
        App = app;
        State = state;
        Api = api;
        Certificate = certificate;
    }

    public WebApplication App { get; }

    public FakeOvhState State { get; }

    public FakeOvhApi Api { get; }

    public X509Certificate2? Certificate { get; }

    public Uri BaseUrl => new(App.Urls.First() + "/1.0");

    public int Port => new Uri(App.Urls.First()).Port;

    public int Count(string methodAndPrefix) => Api.Requests.Count(r => r.StartsWith(methodAndPrefix, StringComparison.Ordinal));

    public int Posts => Count("POST ");

    public static async Task<FakeOvhHost> StartAsync(
        string seed = """{"ips":{"203.0.113.10/32":"ns-a"},"servers":["ns-a","ns-b"]}""",
        TimeSpan? taskDuration = null,
        IReadOnlyList<(string Method, string Path)>? rules = null,
        int rateLimit = 10_000,
        bool https = false,
        string secret = "as",
        string applicationKey = "ak",
        string consumerKey = "ck",
        ILoggerProvider? logs = null,
        TimeProvider? time = null,
        IReadOnlyList<string>? pendingConsumerKeys = null)
    {
        time ??= TimeProvider.System;
        var state = new FakeOvhState(time, taskDuration ?? TimeSpan.FromMilliseconds(300), null);
        state.Seed(seed);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        if (logs is not null)
        {
            builder.Logging.AddProvider(logs);
            builder.Logging.SetMinimumLevel(LogLevel.Trace);
        }

        X509Certificate2? certificate = null;
        if (https)
        {
            certificate = SelfSigned();
            builder.WebHost.UseKestrelHttpsConfiguration();
            builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.UseHttps(certificate)));
        }
        else
        {
            builder.WebHost.UseUrls("http://127.0.0.1:0");
        }

        var app = builder.Build();
        var api = new FakeOvhApi(state, new FakeOvhOptions(applicationKey, secret, consumerKey, rules ?? AllRules, rateLimit, TimeSpan.FromSeconds(120)) { PendingConsumerKeys = pendingConsumerKeys ?? [] }, time);
        api.Map(app);
        await app.StartAsync();
        return new FakeOvhHost(app, state, api, certificate);
    }

    /// <summary>A certificate for 127.0.0.1 (and localhost), valid for a day, self-signed: clients trust it by its PEM.</summary>
    public static X509Certificate2 SelfSigned()
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=127.0.0.1", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        san.AddDnsName("localhost");
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        var now = TimeProvider.System.GetUtcNow(); // certificate validity is wall-clock by nature
        using var cert = request.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(1));
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pkcs12), null);
    }

    public async ValueTask DisposeAsync()
    {
        await App.DisposeAsync();
        Certificate?.Dispose();
    }
}
