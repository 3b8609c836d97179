using System.Globalization;

namespace HaMesh.Shared.Configuration;

/// <summary>
/// Pure validation of the cluster file: returns every problem, each naming its key path.
/// Hosts refuse to start (exit code 2) when the list is not empty; <c>hameshctl config validate</c>
/// prints the same list.
/// </summary>
public static class ConfigValidator
{
    private const string Root = HaMeshOptions.SectionName;

    public static IReadOnlyList<ConfigError> Validate(HaMeshOptions options, ConfigScope scope, IFileProbe? files = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        files ??= FileProbe.System;
        var errors = new List<ConfigError>();
        ValidateCluster(options.Cluster, errors);
        ValidateNodes(options.Nodes, errors);
        ValidateResources(options, errors);
        ValidateTls(options, scope, errors);
        if (scope.HasFlag(ConfigScope.Agent))
        {
            ValidateAgent(options, errors);
        }

        if (scope.HasFlag(ConfigScope.Coordinator))
        {
            ValidateCoordinator(options.Coordinator, files, errors);
        }

        return errors;
    }

    private static void ValidateCluster(ClusterOptions cluster, List<ConfigError> errors)
    {
        const string key = $"{Root}:Cluster";
        if (!Names.IsValidName(cluster.Name))
        {
            errors.Add(new($"{key}:Name", $"'{cluster.Name}' {Names.NameRule}"));
        }

        var t = cluster.Timings;
        const string tk = $"{key}:Timings";
        Positive(t.Heartbeat, $"{tk}:Heartbeat", errors);
        Positive(t.Lease, $"{tk}:Lease", errors);
        Positive(t.DriftMargin, $"{tk}:DriftMargin", errors);
        Positive(t.SelfFenceDeadline, $"{tk}:SelfFenceDeadline", errors);
        Positive(t.OvhPollInterval, $"{tk}:OvhPollInterval", errors);
        Positive(t.OvhTimeout, $"{tk}:OvhTimeout", errors);
        if (t.MinFailoverInterval < TimeSpan.Zero)
        {
            errors.Add(new($"{tk}:MinFailoverInterval", "must not be negative"));
        }

        if (t.Lease <= TimeSpan.Zero)
        {
            return;
        }

        // The lease math of design §4 only holds with these margins.
        if (t.Heartbeat >= t.Lease / 4)
        {
            errors.Add(new($"{tk}:Heartbeat", $"rule heartbeat < lease/4 violated: heartbeat {Fmt(t.Heartbeat)} >= {Fmt(t.Lease / 4)} (lease {Fmt(t.Lease)}); at least four renewals must fit in a lease"));
        }

        if (t.DriftMargin >= t.Lease / 2)
        {
            errors.Add(new($"{tk}:DriftMargin", $"rule drift margin < lease/2 violated: drift margin {Fmt(t.DriftMargin)} >= {Fmt(t.Lease / 2)} (lease {Fmt(t.Lease)})"));
        }

        if (t.SelfFenceDeadline >= t.Lease)
        {
            errors.Add(new($"{tk}:SelfFenceDeadline", $"rule self-fence deadline < lease violated: deadline {Fmt(t.SelfFenceDeadline)} >= lease {Fmt(t.Lease)}"));
        }

        if (t.OvhPollInterval > TimeSpan.Zero && t.OvhTimeout > TimeSpan.Zero && t.OvhPollInterval >= t.OvhTimeout)
        {
            errors.Add(new($"{tk}:OvhPollInterval", $"must be shorter than OvhTimeout ({Fmt(t.OvhTimeout)})"));
        }
    }

    private static void ValidateNodes(List<NodeOptions> nodes, List<ConfigError> errors)
    {
        const string key = $"{Root}:Nodes";
        if (nodes.Count < 2)
        {
            errors.Add(new(key, $"at least two nodes are required (found {nodes.Count})"));
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < nodes.Count; i++)
        {
            var n = nodes[i];
            var nk = $"{key}:{i}";
            if (!Names.IsValidName(n.Name))
            {
                errors.Add(new($"{nk}:Name", $"'{n.Name}' {Names.NameRule}"));
            }
            else if (!seen.Add(n.Name))
            {
                errors.Add(new($"{nk}:Name", $"duplicate node name '{n.Name}'"));
            }

            if (!IsHttpUrl(n.AgentAddress))
            {
                errors.Add(new($"{nk}:AgentAddress", $"'{n.AgentAddress}' must be an absolute http:// or https:// URL with a port, e.g. http://10.0.0.1:7700"));
            }

            if (string.IsNullOrWhiteSpace(n.ServiceName) || n.ServiceName.Any(c => char.IsWhiteSpace(c) || c == '/'))
            {
                errors.Add(new($"{nk}:ServiceName", $"'{n.ServiceName}' must be the OVH serviceName of the server (e.g. ns3012345.ip-51-75-12.eu)"));
            }
        }

        var services = nodes.Where(n => !string.IsNullOrWhiteSpace(n.ServiceName)).GroupBy(n => n.ServiceName, StringComparer.Ordinal);
        foreach (var group in services.Where(g => g.Count() > 1))
        {
            errors.Add(new($"{key}", $"ServiceName '{group.Key}' is used by more than one node ({string.Join(", ", group.Select(n => n.Name))})"));
        }
    }

    private static void ValidateResources(HaMeshOptions options, List<ConfigError> errors)
    {
        const string key = $"{Root}:Resources";
        if (options.Resources.Count == 0)
        {
            errors.Add(new(key, "at least one resource is required"));
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        var drbdNames = new HashSet<string>(StringComparer.Ordinal);
        var ips = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < options.Resources.Count; i++)
        {
            var r = options.Resources[i];
            var rk = $"{key}:{i}";
            if (!Names.IsValidName(r.Name))
            {
                errors.Add(new($"{rk}:Name", $"'{r.Name}' {Names.NameRule}"));
            }
            else if (!names.Add(r.Name))
            {
                errors.Add(new($"{rk}:Name", $"duplicate resource name '{r.Name}'"));
            }

            if (!Names.IsValidDrbdResource(r.DrbdResource))
            {
                errors.Add(new($"{rk}:DrbdResource", $"'{r.DrbdResource}' is not a valid DRBD resource name: must match ^[A-Za-z0-9_][A-Za-z0-9_.+-]{{0,63}}$"));
            }
            else if (!drbdNames.Add(r.DrbdResource))
            {
                errors.Add(new($"{rk}:DrbdResource", $"DRBD resource '{r.DrbdResource}' is used by more than one resource"));
            }

            if (!Names.IsValidAbsolutePath(r.Device))
            {
                errors.Add(new($"{rk}:Device", $"'{r.Device}' must be an absolute device path such as /dev/drbd0"));
            }

            if (!Names.IsValidAbsolutePath(r.MountPoint) || r.MountPoint == "/")
            {
                errors.Add(new($"{rk}:MountPoint", $"'{r.MountPoint}' must be an absolute path other than /"));
            }

            if (!Names.IsValidFsType(r.FsType))
            {
                errors.Add(new($"{rk}:FsType", $"'{r.FsType}' must be a file system type such as ext4 or xfs"));
            }

            for (var s = 0; s < r.Services.Count; s++)
            {
                if (!Names.IsValidUnit(r.Services[s]))
                {
                    errors.Add(new($"{rk}:Services:{s}", $"'{r.Services[s]}' must be a systemd unit name with its suffix, e.g. postgresql.service"));
                }
            }

            if (r.FailoverIps.Count == 0)
            {
                errors.Add(new($"{rk}:FailoverIps", "at least one failover IP (CIDR, e.g. 203.0.113.10/32) is required"));
            }

            for (var f = 0; f < r.FailoverIps.Count; f++)
            {
                if (!IpCidr.TryParse(r.FailoverIps[f], out var cidr))
                {
                    errors.Add(new($"{rk}:FailoverIps:{f}", $"'{r.FailoverIps[f]}' is not a valid CIDR block (e.g. 203.0.113.10/32)"));
                }
                else if (!ips.Add(cidr.ToString()))
                {
                    errors.Add(new($"{rk}:FailoverIps:{f}", $"failover IP {cidr} is listed more than once"));
                }
            }

            if (!Names.IsValidInterface(r.Interface))
            {
                errors.Add(new($"{rk}:Interface", $"'{r.Interface}' is not a valid network interface name"));
            }

            if (!string.IsNullOrEmpty(r.PreferredNode) && options.FindNode(r.PreferredNode) is null)
            {
                errors.Add(new($"{rk}:PreferredNode", $"'{r.PreferredNode}' is not one of the configured nodes"));
            }

            if (!Enum.IsDefined(r.SplitBrainPolicy))
            {
                errors.Add(new($"{rk}:SplitBrainPolicy", "must be StopAndAlert or DiscardOldPrimary"));
            }
        }
    }

    private static void ValidateTls(HaMeshOptions options, ConfigScope scope, List<ConfigError> errors)
    {
        const string key = $"{Root}:Tls";
        var tls = options.Tls;
        if (!tls.Insecure)
        {
            if (string.IsNullOrWhiteSpace(tls.CaFile) && string.IsNullOrWhiteSpace(tls.CertificateFile) && string.IsNullOrWhiteSpace(tls.KeyFile))
            {
                errors.Add(new($"{key}:Insecure", "mutual TLS is on (Insecure is false) but CaFile, CertificateFile and KeyFile are not set: create them with 'hameshctl certs init' and 'hameshctl certs issue', or set Insecure to true explicitly (plain-text gRPC, keep it on a private network)"));
                return;
            }

            foreach (var (field, problem) in Security.ClusterTls.Check(tls))
            {
                errors.Add(new($"{key}:{field}", problem));
            }
        }

        for (var i = 0; i < tls.RevokedCertificates.Count; i++)
        {
            if (Security.ClusterTls.CheckId(tls.RevokedCertificates[i]) is { } problem)
            {
                errors.Add(new($"{key}:RevokedCertificates:{i}", problem));
            }
        }

        // the scheme of every address follows the mode: https:// with TLS, http:// in insecure mode
        var scheme = tls.Insecure ? "http" : "https";
        var mode = tls.Insecure ? "Tls:Insecure is true" : "mutual TLS is on";
        void Scheme(string value, string field)
        {
            foreach (var url in value.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (Uri.TryCreate(url, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && uri.Scheme != scheme)
                {
                    errors.Add(new(field, $"'{url}' must use {scheme}:// because {mode}"));
                    return;
                }
            }
        }

        for (var i = 0; i < options.Nodes.Count; i++)
        {
            Scheme(options.Nodes[i].AgentAddress, $"{Root}:Nodes:{i}:AgentAddress");
        }

        if (scope.HasFlag(ConfigScope.Agent))
        {
            Scheme(options.Coordinator.Address, $"{Root}:Coordinator:Address");
            Scheme(options.Agent.Listen, $"{Root}:Agent:Listen");
        }

        if (scope.HasFlag(ConfigScope.Coordinator))
        {
            Scheme(options.Coordinator.Listen, $"{Root}:Coordinator:Listen");
        }
    }

    private static void ValidateAgent(HaMeshOptions options, List<ConfigError> errors)
    {
        const string key = $"{Root}:Agent";
        var a = options.Agent;
        if (string.IsNullOrEmpty(a.Node))
        {
            errors.Add(new($"{key}:Node", "is required (this host's node name; e.g. set HaMesh__Agent__Node=a)"));
        }
        else if (options.FindNode(a.Node) is null)
        {
            errors.Add(new($"{key}:Node", $"'{a.Node}' is not one of the configured nodes ({string.Join(", ", options.Nodes.Select(n => n.Name))})"));
        }

        if (!IsHttpUrl(options.Coordinator.Address))
        {
            errors.Add(new($"{Root}:Coordinator:Address", $"'{options.Coordinator.Address}' must be the coordinator's http:// or https:// URL with a port (agents dial it), e.g. http://10.0.0.3:7800"));
        }

        if (!string.IsNullOrEmpty(a.Listen) && !a.Listen.Split(';').All(IsHttpUrl))
        {
            errors.Add(new($"{key}:Listen", $"'{a.Listen}' must be http:// or https:// URLs with a port, separated by ';'"));
        }

        ValidateMetricsListen(a.MetricsListen, a.Listen, key, errors);

        if (!Names.IsValidAbsolutePath(a.StateDirectory))
        {
            errors.Add(new($"{key}:StateDirectory", $"'{a.StateDirectory}' must be an absolute path"));
        }

        if (a.CommandTimeout <= TimeSpan.Zero || a.CommandTimeout > TimeSpan.FromMinutes(10))
        {
            errors.Add(new($"{key}:CommandTimeout", $"{Fmt(a.CommandTimeout)} must be between 0 and 10 minutes"));
        }

        if (a.ServicePollInterval < TimeSpan.Zero || a.ServicePollInterval > TimeSpan.FromMinutes(1))
        {
            errors.Add(new($"{key}:ServicePollInterval", $"{Fmt(a.ServicePollInterval)} must be between 0 and 1 minute"));
        }

        if (a.DrbdVersion is not ("auto" or "drbd9" or "drbd84"))
        {
            errors.Add(new($"{key}:DrbdVersion", $"'{a.DrbdVersion}' must be auto, drbd9 or drbd84"));
        }

        if (a.SelfFenceLastResort is not ("suspend-io" or "watchdog" or "none"))
        {
            errors.Add(new($"{key}:SelfFenceLastResort", $"'{a.SelfFenceLastResort}' must be suspend-io, watchdog or none"));
        }

        foreach (var (name, path) in a.Commands.Executables())
        {
            if (!Names.IsValidAbsolutePath(path))
            {
                errors.Add(new($"{key}:Commands:{name}", $"'{path}' must be an absolute path to an executable"));
            }
        }

        if (!Names.IsValidAbsolutePath(a.Commands.ProcDrbd))
        {
            errors.Add(new($"{key}:Commands:ProcDrbd", $"'{a.Commands.ProcDrbd}' must be an absolute path"));
        }
    }

    private static void ValidateCoordinator(CoordinatorOptions c, IFileProbe files, List<ConfigError> errors)
    {
        const string key = $"{Root}:Coordinator";
        if (!IsHttpUrl(c.Listen))
        {
            errors.Add(new($"{key}:Listen", $"'{c.Listen}' must be an http:// or https:// URL with a port, e.g. http://0.0.0.0:7800"));
        }

        ValidateMetricsListen(c.MetricsListen, c.Listen, key, errors);

        if (!Names.IsValidAbsolutePath(c.StorePath))
        {
            errors.Add(new($"{key}:StorePath", $"'{c.StorePath}' must be an absolute path"));
        }

        var endpoint = c.Ovh.Endpoint;
        if (!OvhEndpoints.IsKnown(endpoint) && !(Uri.TryCreate(endpoint, UriKind.Absolute, out var u) && u.Scheme is "https" or "http"))
        {
            errors.Add(new($"{key}:Ovh:Endpoint", $"'{endpoint}' must be one of {string.Join(", ", OvhEndpoints.Names)} or an https:// base URL"));
        }

        if (!string.IsNullOrEmpty(c.Ovh.CredentialsFile))
        {
            var problem = files.CheckSecretFile(c.Ovh.CredentialsFile);
            if (problem is not null)
            {
                errors.Add(new($"{key}:Ovh:CredentialsFile", problem));
            }
        }
    }

    private static void Positive(TimeSpan value, string key, List<ConfigError> errors)
    {
        if (value <= TimeSpan.Zero)
        {
            errors.Add(new(key, $"must be positive (got {Fmt(value)})"));
        }
    }

    private static void ValidateMetricsListen(string metrics, string listen, string key, List<ConfigError> errors)
    {
        if (string.IsNullOrEmpty(metrics))
        {
            return;
        }

        if (!(Uri.TryCreate(metrics, UriKind.Absolute, out var uri) && uri.Scheme == "http" && !uri.IsDefaultPort && uri.AbsolutePath == "/"))
        {
            errors.Add(new($"{key}:MetricsListen", $"'{metrics}' must be a plain http:// URL with a port and no path, e.g. http://0.0.0.0:9700 (Prometheus scrapes /metrics on it)"));
        }
        else if (string.IsNullOrEmpty(listen))
        {
            errors.Add(new($"{key}:Listen", "must be set when MetricsListen is set (the gRPC and the metrics listeners are bound explicitly)"));
        }
        else if (uri.Port != 0 && listen.Split(';').Any(l => Uri.TryCreate(l, UriKind.Absolute, out var u) && u.Port == uri.Port))
        {
            errors.Add(new($"{key}:MetricsListen", $"port {uri.Port} is already the gRPC Listen port: metrics need a port of their own (HTTP/1.1, gRPC is HTTP/2 only)"));
        }
    }

    internal static bool IsHttpUrl(string? value) =>
        Uri.TryCreate(value, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && !uri.IsDefaultPort;

    private static string Fmt(TimeSpan t) => t.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture) + "s";
}
