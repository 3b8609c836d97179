using Google.Protobuf.Reflection;
using Grpc.Net.Client;
using Grpc.Reflection.V1Alpha;
using HaMesh.Testing;
using HaMesh.Testing.Hosts;

namespace HaMesh.IntegrationTests;

/// <summary>
/// grpcurl-style discovery: a reflection client that knows nothing of HaMesh's generated code lists
/// the services and fetches their descriptors from each daemon.
/// </summary>
public sealed class ReflectionTests
{
    private static async Task<List<string>> ListServicesAsync(GrpcChannel channel, CancellationToken ct)
    {
        var client = new ServerReflection.ServerReflectionClient(channel);
        using var call = client.ServerReflectionInfo(cancellationToken: ct);
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = "" }, ct);
        Assert.True(await call.ResponseStream.MoveNext(ct));
        await call.RequestStream.CompleteAsync();
        return call.ResponseStream.Current.ListServicesResponse.Service.Select(s => s.Name).ToList();
    }

    private static async Task<FileDescriptorProto> DescriptorForSymbolAsync(GrpcChannel channel, string symbol, CancellationToken ct)
    {
        var client = new ServerReflection.ServerReflectionClient(channel);
        using var call = client.ServerReflectionInfo(cancellationToken: ct);
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { FileContainingSymbol = symbol }, ct);
        Assert.True(await call.ResponseStream.MoveNext(ct));
        await call.RequestStream.CompleteAsync();
        var response = call.ResponseStream.Current;
        Assert.Equal(ServerReflectionResponse.MessageResponseOneofCase.FileDescriptorResponse, response.MessageResponseCase);
        var files = response.FileDescriptorResponse.FileDescriptorProto.Select(b => FileDescriptorProto.Parser.ParseFrom(b)).ToList();
        return files.First(f => f.Service.Any(s => $"{f.Package}.{s.Name}" == symbol));
    }

    [Fact]
    public async Task Agent_Reflection_ListsAgentServiceAndHealth_WithDescriptor()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var agent = await AgentTestHost.StartAsync(TestConfig.TwoNodes());

        var services = await ListServicesAsync(agent.Channel, ct);
        var file = await DescriptorForSymbolAsync(agent.Channel, "hamesh.v1.AgentService", ct);

        Assert.Contains("hamesh.v1.AgentService", services);
        Assert.Contains("grpc.health.v1.Health", services);
        Assert.Equal("hamesh/v1/agent.proto", file.Name);
        var methods = file.Service.Single(s => s.Name == "AgentService").Method.Select(m => m.Name).ToList();
        Assert.Equal(["GetStatus", "Promote", "Demote", "Outdate", "Agree", "RenewLease", "Ping", "FencePeer"], methods);
    }

    [Fact]
    public async Task Coordinator_Reflection_ListsCoordinatorServiceAndHealth_WithDescriptor()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var coordinator = await CoordinatorTestHost.StartAsync(TestConfig.TwoNodes());

        var services = await ListServicesAsync(coordinator.Channel, ct);
        var file = await DescriptorForSymbolAsync(coordinator.Channel, "hamesh.v1.CoordinatorService", ct);

        Assert.Contains("hamesh.v1.CoordinatorService", services);
        Assert.Contains("grpc.health.v1.Health", services);
        var service = file.Service.Single(s => s.Name == "CoordinatorService");
        var connect = service.Method.Single(m => m.Name == "Connect");
        Assert.True(connect.ClientStreaming && connect.ServerStreaming);
        Assert.Contains(file.Dependency, d => d == "hamesh/v1/common.proto");
    }

    [Fact]
    public async Task Health_BothDaemons_Serving()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var agent = await AgentTestHost.StartAsync(TestConfig.TwoNodes());
        await using var coordinator = await CoordinatorTestHost.StartAsync(TestConfig.TwoNodes());
        foreach (var channel in new[] { agent.Channel, coordinator.Channel })
        {
            var health = new Grpc.Health.V1.Health.HealthClient(channel);
            var reply = await health.CheckAsync(new Grpc.Health.V1.HealthCheckRequest(), cancellationToken: ct);
            Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, reply.Status);
        }
    }
}
