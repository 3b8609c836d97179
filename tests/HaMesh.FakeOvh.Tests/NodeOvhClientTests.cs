using System.Diagnostics;
using System.Text.Json;

namespace HaMesh.FakeOvh.Tests;

/// <summary>
/// An independent real client: the official OVH Node.js client (@ovhcloud/node-ovh, installed by
/// <c>npm ci</c> in tests/HaMesh.FakeOvh.Tests/node, which .ci/run does) drives the fake over TLS with a
/// certificate made for this test. node-ovh signs the port-less https URL, so this also proves the fake's
/// node-ovh verification variant. Without node or node_modules the test skips locally and fails on CI.
/// </summary>
public sealed class NodeOvhClientTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task OfficialNodeClient_SignedCallsAccepted_MoveAccepted_WrongSecretRejectedWithOvhError()
    {
        var dir = HarnessDirectory();
        var node = FindOnPath("node");
        var missing = node is null ? "node is not on PATH"
            : !Directory.Exists(Path.Combine(dir, "node_modules", "@ovhcloud", "node-ovh")) ? $"{dir}/node_modules is missing: run npm ci in {dir}"
            : null;
        if (missing is not null)
        {
            Assert.False(string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase), $"on CI the node-ovh cross-test must run: {missing}");
            Assert.Skip($"node-ovh cross-test not run: {missing}");
        }

        await using var fake = await FakeOvhHost.StartAsync(
            seed: """{"ips":{"203.0.113.10/32":"ns-a","198.51.100.16/28":"ns-a"},"servers":["ns-a","ns-b"]}""",
            https: true, secret: "node-secret", applicationKey: "node-ak", consumerKey: "node-ck");
        var pem = Path.Combine(Path.GetTempPath(), $"hamesh-fake-ovh-{Guid.NewGuid():N}.pem");
        await File.WriteAllTextAsync(pem, fake.Certificate!.ExportCertificatePem(), Ct);
        try
        {
            var (exit, stdout, stderr) = await RunAsync(node!, dir, pem, ["script.js", fake.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "node-ak", "node-secret", "node-ck"]);
            Assert.True(exit == 0, $"node exited {exit}: {stderr}");
            using var doc = JsonDocument.Parse(stdout);
            var r = doc.RootElement;

            Assert.True(r.GetProperty("list").GetProperty("ok").GetBoolean(), r.GetProperty("list").ToString());
            Assert.Contains("203.0.113.10/32", r.GetProperty("list").GetProperty("value").EnumerateArray().Select(e => e.GetString()));
            Assert.Equal("ns-a", r.GetProperty("ip").GetProperty("value").GetProperty("routedTo").GetProperty("serviceName").GetString());
            Assert.Equal("ns-b", r.GetProperty("destinations").GetProperty("value").GetProperty("dedicatedServer")[0].GetProperty("service").GetString());
            var move = r.GetProperty("move");
            Assert.True(move.GetProperty("ok").GetBoolean(), move.ToString());
            Assert.Equal("genericMoveFloatingIp", move.GetProperty("value").GetProperty("function").GetString());
            Assert.Equal(move.GetProperty("value").GetProperty("taskId").GetInt64(), r.GetProperty("task").GetProperty("value").GetProperty("taskId").GetInt64());
            Assert.True(r.GetProperty("park").GetProperty("ok").GetBoolean(), r.GetProperty("park").ToString()); // POST without a body: empty BODY signed
            Assert.Equal(2, fake.State.TaskIds("203.0.113.10/32", null).Count + fake.State.TaskIds("198.51.100.16/28", null).Count);

            var wrong = r.GetProperty("wrongSecret");
            Assert.False(wrong.GetProperty("ok").GetBoolean());
            Assert.Equal(400, wrong.GetProperty("error").GetInt32());
            Assert.Equal("Invalid signature", wrong.GetProperty("message").GetString());
            Assert.Equal("INVALID_SIGNATURE", wrong.GetProperty("body").GetProperty("errorCode").GetString());
            Assert.Equal("400 Bad Request", wrong.GetProperty("body").GetProperty("httpCode").GetString());

            // node-ovh's own requests reached the fake over TLS, with the IP encoded by the caller
            Assert.Contains(fake.Api.Requests, q => q == "POST /1.0/ip/203.0.113.10%2F32/move");
            Assert.Contains(fake.Api.Requests, q => q == "GET /1.0/ip?type=failover");
        }
        finally
        {
            File.Delete(pem);
        }
    }

    private static async Task<(int Exit, string Stdout, string Stderr)> RunAsync(string node, string dir, string pem, IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(node)
        {
            WorkingDirectory = dir,
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["NODE_EXTRA_CA_CERTS"] = pem;
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync(Ct);
        var stderr = process.StandardError.ReadToEndAsync(Ct);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }

        return (process.ExitCode, await stdout, await stderr);
    }

    private static string HarnessDirectory()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            var candidate = Path.Combine(d.FullName, "tests", "HaMesh.FakeOvh.Tests", "node");
            if (File.Exists(Path.Combine(candidate, "package.json")))
            {
                return candidate;
            }
        }

        throw new InvalidOperationException($"tests/HaMesh.FakeOvh.Tests/node not found above {AppContext.BaseDirectory}");
    }

    private static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(p => Path.Combine(p, name)).FirstOrDefault(File.Exists);
}
