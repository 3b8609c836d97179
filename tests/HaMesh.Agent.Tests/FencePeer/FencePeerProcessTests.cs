using System.Diagnostics;
using System.Net;
using Grpc.Core;
using HaMesh.Protocol.V1;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace HaMesh.Agent.Tests.FencePeer;

/// <summary>
/// Runs the real hamesh-fence-peer executable (built from src/FencePeer) against an in-process fake
/// agent on 127.0.0.1 and asserts the exit code DRBD would see.
/// </summary>
public sealed class FencePeerProcessTests
{
    [Theory]
    [InlineData(FenceOutcome.PeerOutdated, 4)]
    [InlineData(FenceOutcome.PeerAlreadyOutdated, 3)]
    [InlineData(FenceOutcome.OutdateYourself, 6)]
    [InlineData(FenceOutcome.Failed, 1)]
    public async Task Handler_AgentAnswers_ExitsWithDrbdExitCode(FenceOutcome outcome, int exitCode)
    {
        var ct = TestContext.Current.CancellationToken;
        var agent = new FakeAgent(new AgentFencePeerResponse { Outcome = outcome, DrbdExitCode = exitCode, Message = "test" });
        await using var app = await StartAsync(agent, ct);

        var (exit, _) = await RunHandlerAsync(["fence", "--agent", Address(app)], new() { ["DRBD_RESOURCE"] = "r0", ["DRBD_PEER_NODE_ID"] = "1" }, ct);

        Assert.Equal(exitCode, exit);
        var request = Assert.Single(agent.Requests);
        Assert.Equal("r0", request.DrbdResource);
        Assert.Equal(1, request.PeerNodeId);
        Assert.False(request.Unfence);
    }

    [Theory]
    [InlineData("1", "c", "c")]          // DRBD 9: DRBD_NODE_ID_<DRBD_PEER_NODE_ID> names the peer
    [InlineData(null, "b", "b")]         // DRBD 8.4: DRBD_PEER
    [InlineData(null, null, "")]
    public async Task Handler_SendsThePeerNameDrbdPasses(string? nodeId, string? name, string expected)
    {
        var ct = TestContext.Current.CancellationToken;
        var agent = new FakeAgent(new AgentFencePeerResponse { Outcome = FenceOutcome.PeerOutdated, DrbdExitCode = 4 });
        await using var app = await StartAsync(agent, ct);
        var env = new Dictionary<string, string> { ["DRBD_RESOURCE"] = "r0" };
        if (nodeId is not null)
        {
            env["DRBD_PEER_NODE_ID"] = nodeId;
            env["DRBD_NODE_ID_" + nodeId] = name!;
            env["DRBD_NODE_ID_0"] = "a";
        }
        else if (name is not null)
        {
            env["DRBD_PEER"] = name;
        }

        var (exit, _) = await RunHandlerAsync(["fence", "--agent", Address(app)], env, ct);

        Assert.Equal(4, exit);
        Assert.Equal(expected, Assert.Single(agent.Requests).PeerName);
    }

    [Fact]
    public async Task Handler_Unfence_SendsUnfenceAndExits0()
    {
        var ct = TestContext.Current.CancellationToken;
        var agent = new FakeAgent(new AgentFencePeerResponse { DrbdExitCode = 0 });
        await using var app = await StartAsync(agent, ct);

        var (exit, _) = await RunHandlerAsync(["unfence"], new() { ["DRBD_RESOURCE"] = "r0", ["HAMESH_AGENT_ADDRESS"] = Address(app) }, ct);

        Assert.Equal(0, exit);
        Assert.True(Assert.Single(agent.Requests).Unfence);
        Assert.Equal(-1, agent.Requests[0].PeerNodeId);
    }

    [Fact]
    public async Task Handler_AgentUnreachable_Exits1()
    {
        var ct = TestContext.Current.CancellationToken;
        var port = HaMesh.Testing.Processes.DaemonProcess.FreePort();   // reserved for this process, nothing listens on it

        var (exit, stderr) = await RunHandlerAsync(["fence", "--agent", $"http://127.0.0.1:{port}", "--timeout", "5"], new() { ["DRBD_RESOURCE"] = "r0" }, ct);

        Assert.Equal(1, exit);
        Assert.Contains("I/O stays frozen", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Handler_NoDrbdResource_Exits1WithMessage()
    {
        var (exit, stderr) = await RunHandlerAsync(["fence"], [], TestContext.Current.CancellationToken);

        Assert.Equal(1, exit);
        Assert.Contains("DRBD_RESOURCE", stderr, StringComparison.Ordinal);
    }

    private static string Address(WebApplication app) =>
        app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();

    private static async Task<WebApplication> StartAsync(FakeAgent agent, CancellationToken ct)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, o => o.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(agent);
        var app = builder.Build();
        app.MapGrpcService<FakeAgent>();
        await app.StartAsync(ct);
        return app;
    }

    private static async Task<(int Exit, string Stderr)> RunHandlerAsync(string[] args, Dictionary<string, string> env, CancellationToken ct)
    {
        var info = HandlerStartInfo();
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        info.Environment.Remove("DRBD_RESOURCE");
        info.Environment.Remove("DRBD_PEER_NODE_ID");
        info.Environment.Remove("HAMESH_AGENT_ADDRESS");
        foreach (var (k, v) in env)
        {
            info.Environment[k] = v;
        }

        using var process = Process.Start(info)!;
        var stderr = process.StandardError.ReadToEndAsync(ct);
        _ = process.StandardOutput.ReadToEndAsync(ct);
        await process.WaitForExitAsync(ct).WaitAsync(TimeSpan.FromSeconds(60), ct);
        return (process.ExitCode, await stderr);
    }

    private static ProcessStartInfo HandlerStartInfo()
    {
        // tests/HaMesh.Agent.Tests/bin/<Configuration>/net10.0/ -> src/FencePeer/bin/<Configuration>/net10.0/
        var baseDir = new DirectoryInfo(AppContext.BaseDirectory);
        var tfm = baseDir.Name;
        var configuration = baseDir.Parent!.Name;
        var root = baseDir.Parent!.Parent!.Parent!.Parent!.Parent!.FullName;
        var dll = Path.Combine(root, "src", "FencePeer", "bin", configuration, tfm, "hamesh-fence-peer.dll");
        Assert.True(File.Exists(dll), $"build src/FencePeer first: {dll} not found");
        var info = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet")
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(dll);
        return info;
    }

    internal sealed class FakeAgent(AgentFencePeerResponse response) : AgentService.AgentServiceBase
    {
        public List<AgentFencePeerRequest> Requests { get; } = [];

        public override Task<AgentFencePeerResponse> FencePeer(AgentFencePeerRequest request, ServerCallContext context)
        {
            lock (Requests)
            {
                Requests.Add(request);
            }

            return Task.FromResult(response);
        }
    }
}
