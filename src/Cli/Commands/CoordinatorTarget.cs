using System.CommandLine;
using Grpc.Core;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Configuration;
using HaMesh.Shared.Grpc;
using HaMesh.Shared.Security;

namespace HaMesh.Cli.Commands;

/// <summary>Resolves which coordinator to call and builds the client.</summary>
public sealed class CoordinatorTarget(Option<string?> coordinator, Option<string?> config, Option<double> timeout, TlsFlags? tlsFlags = null)
{
    /// <summary>
    /// The TLS material for an https:// address: --cacert/--cert/--key when given, else the cluster file's Tls section;
    /// null for http://. Returns an error line when an https:// address has no usable material.
    /// </summary>
    public (ClusterTls? Tls, string? Error) ResolveTls(ParseResult parse, string address)
    {
        ArgumentNullException.ThrowIfNull(parse);
        if (!address.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
        {
            return (null, null);
        }

        string? ca = null, cert = null, key = null;
        IEnumerable<string> revoked = [];
        if (tlsFlags is not null)
        {
            (ca, cert, key) = (parse.GetValue(tlsFlags.CaCert), parse.GetValue(tlsFlags.Cert), parse.GetValue(tlsFlags.Key));
        }

        if (ca is null && cert is null && key is null)
        {
            var path = parse.GetValue(config) ?? Environment.GetEnvironmentVariable(ConfigLoader.PathVariable) ?? ConfigLoader.DefaultPath;
            if (ConfigLoader.Load(path, ConfigScope.Cluster).Options is { Tls.Insecure: false } options)
            {
                (ca, cert, key) = (options.Tls.CaFile, options.Tls.CertificateFile, options.Tls.KeyFile);
                revoked = options.Tls.RevokedCertificates;
            }
        }

        if (string.IsNullOrEmpty(ca) || string.IsNullOrEmpty(cert) || string.IsNullOrEmpty(key))
        {
            return (null, $"{address} is https://: pass --cacert, --cert and --key (or a --config whose Tls section names them)");
        }

        try
        {
            return (ClusterTls.Load(ca, cert, key, revoked), null);
        }
        catch (Exception ex) when (ex is System.Security.Cryptography.CryptographicException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            return (null, $"cannot load the client certificate ({cert}, {key}) or the CA ({ca}): {ex.Message}");
        }
    }

    /// <summary>The address, or an error line when none can be determined.</summary>
    public (string? Address, string? Error) Resolve(ParseResult parse)
    {
        ArgumentNullException.ThrowIfNull(parse);
        var explicitAddress = parse.GetValue(coordinator) ?? Environment.GetEnvironmentVariable("HAMESH_COORDINATOR");
        if (!string.IsNullOrWhiteSpace(explicitAddress))
        {
            return Uri.TryCreate(explicitAddress, UriKind.Absolute, out _)
                ? (explicitAddress, null)
                : (null, $"'{explicitAddress}' is not a URL (expected e.g. http://10.0.0.3:7800)");
        }

        var path = parse.GetValue(config) ?? Environment.GetEnvironmentVariable(ConfigLoader.PathVariable) ?? ConfigLoader.DefaultPath;
        var loaded = ConfigLoader.Load(path, ConfigScope.Cluster);
        if (loaded.Options is null)
        {
            return (null, $"no coordinator address: pass --coordinator URL or a valid --config ({loaded.Errors[0]})");
        }

        return string.IsNullOrWhiteSpace(loaded.Options.Coordinator.Address)
            ? (null, $"no coordinator address: {path} has no HaMesh:Coordinator:Address; pass --coordinator URL")
            : (loaded.Options.Coordinator.Address, null);
    }

    /// <summary>The generation the coordinator shows now for <paramref name="resource"/> (0 when it has none): operator commands act on it, and a stale one is refused.</summary>
    public async Task<ulong> CurrentGenerationAsync(CoordinatorService.CoordinatorServiceClient client, ParseResult parse, string resource, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(client);
        var status = await client.GetClusterStatusAsync(new GetClusterStatusRequest(), deadline: RpcDeadline.In(Timeout(parse)), cancellationToken: ct);
        return status.Resources.FirstOrDefault(r => r.Resource == resource)?.Generation ?? 0;
    }

    public TimeSpan Timeout(ParseResult parse) => TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(timeout), 0.1, 600));

    /// <summary>
    /// Resolves the coordinator, calls <paramref name="call"/> with a client, and turns the failures every
    /// command shares into their exit codes: no address → usage (2), an RPC error → one line (1 or 2).
    /// </summary>
    public async Task<int> CallAsync(ParseResult parse, TextWriter stderr, Func<CoordinatorService.CoordinatorServiceClient, Task<int>> call)
    {
        ArgumentNullException.ThrowIfNull(stderr);
        ArgumentNullException.ThrowIfNull(call);
        var (address, error) = Resolve(parse);
        if (address is null)
        {
            await stderr.WriteLineAsync($"hameshctl: {error}");
            return CliApp.Usage;
        }

        var (tls, tlsError) = ResolveTls(parse, address);
        if (tlsError is not null)
        {
            await stderr.WriteLineAsync($"hameshctl: {tlsError}");
            return CliApp.Usage;
        }

        using var material = tls;
        using var channel = GrpcChannels.Create(address, new TimingOptions(), tls);
        try
        {
            return await call(new CoordinatorService.CoordinatorServiceClient(channel));
        }
        catch (RpcException ex)
        {
            return CliApp.ReportRpcError(stderr, address, ex);
        }
    }
}

/// <summary>hameshctl's client-certificate options (recursive on the root command).</summary>
public sealed record TlsFlags(Option<string?> CaCert, Option<string?> Cert, Option<string?> Key)
{
    public static TlsFlags Create() => new(
        new Option<string?>("--cacert") { Description = "Cluster CA (PEM) for https:// (default: Tls:CaFile of --config)", Recursive = true },
        new Option<string?>("--cert") { Description = "Client certificate (PEM) with an operator or viewer role", Recursive = true },
        new Option<string?>("--key") { Description = "Private key (PEM) of --cert", Recursive = true });
}
