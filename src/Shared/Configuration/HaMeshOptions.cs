namespace HaMesh.Shared.Configuration;

/// <summary>
/// The one cluster file (design §3), section <c>HaMesh</c>. Every component reads the whole
/// file and validates the part it needs (<see cref="ConfigValidator"/>).
/// </summary>
public sealed class HaMeshOptions
{
    public const string SectionName = "HaMesh";

    public ClusterOptions Cluster { get; set; } = new();
    public List<NodeOptions> Nodes { get; set; } = [];
    public List<ResourceOptions> Resources { get; set; } = [];
    public CoordinatorOptions Coordinator { get; set; } = new();
    public AgentOptions Agent { get; set; } = new();
    public TlsOptions Tls { get; set; } = new();

    public NodeOptions? FindNode(string name) => Nodes.Find(n => n.Name == name);

    public ResourceOptions? FindResource(string name) => Resources.Find(r => r.Name == name);
}

public sealed class ClusterOptions
{
    public string Name { get; set; } = "";
    public TimingOptions Timings { get; set; } = new();
}

/// <summary>Safety timings. The rules between them are checked at load (design §3).</summary>
public sealed class TimingOptions
{
    public TimeSpan Heartbeat { get; set; } = TimeSpan.FromMilliseconds(250);
    public TimeSpan Lease { get; set; } = TimeSpan.FromSeconds(2);
    public TimeSpan DriftMargin { get; set; } = TimeSpan.FromMilliseconds(500);
    public TimeSpan SelfFenceDeadline { get; set; } = TimeSpan.FromSeconds(1);
    public TimeSpan MinFailoverInterval { get; set; } = TimeSpan.FromMinutes(5);
    public TimeSpan OvhPollInterval { get; set; } = TimeSpan.FromSeconds(5);
    public TimeSpan OvhTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>How long a node may stay silent before it counts as gone: lease + drift margin.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public TimeSpan SilenceThreshold => Lease + DriftMargin;
}

public sealed class NodeOptions
{
    public string Name { get; set; } = "";

    /// <summary>The agent's gRPC address as other components dial it, e.g. http://10.0.0.1:7700.</summary>
    public string AgentAddress { get; set; } = "";

    /// <summary>OVH serviceName of the server, e.g. ns3012345.ip-51-75-12.eu.</summary>
    public string ServiceName { get; set; } = "";
}

public sealed class ResourceOptions
{
    public string Name { get; set; } = "";
    public string DrbdResource { get; set; } = "";
    public string Device { get; set; } = "";
    public string MountPoint { get; set; } = "";
    public string FsType { get; set; } = "ext4";
    public List<string> Services { get; set; } = [];
    public List<string> FailoverIps { get; set; } = [];
    public string Interface { get; set; } = "";
    public string PreferredNode { get; set; } = "";
    public bool AutoFailback { get; set; }
    public SplitBrainPolicy SplitBrainPolicy { get; set; } = SplitBrainPolicy.StopAndAlert;
}

public enum SplitBrainPolicy
{
    StopAndAlert = 0,
    DiscardOldPrimary = 1,
}

public sealed class CoordinatorOptions
{
    /// <summary>Kestrel listen URL, e.g. http://0.0.0.0:7800.</summary>
    public string Listen { get; set; } = "";

    /// <summary>How agents and the CLI dial the coordinator, e.g. http://10.0.0.3:7800.</summary>
    public string Address { get; set; } = "";

    public string StorePath { get; set; } = "/var/lib/hamesh/coordinator.db";

    /// <summary>Prometheus /metrics over plain HTTP/1.1 on its own port, e.g. http://0.0.0.0:9800; empty = off.</summary>
    public string MetricsListen { get; set; } = "";
    public OvhOptions Ovh { get; set; } = new();
}

public sealed class OvhOptions
{
    /// <summary>ovh-eu, ovh-ca, ovh-us, soyoustart-eu, soyoustart-ca, kimsufi-eu, kimsufi-ca, or an https:// base URL.</summary>
    public string Endpoint { get; set; } = "ovh-eu";

    /// <summary>JSON file with ApplicationKey, ApplicationSecret, ConsumerKey; mode 0600 or stricter.</summary>
    public string CredentialsFile { get; set; } = "";
}

public sealed class AgentOptions
{
    /// <summary>This agent's node name (usually set per host: HaMesh__Agent__Node=a).</summary>
    public string Node { get; set; } = "";

    /// <summary>Kestrel listen URLs, e.g. http://0.0.0.0:7700 (the failover IP is covered by 0.0.0.0).</summary>
    public string Listen { get; set; } = "";

    public string StateDirectory { get; set; } = "/var/lib/hamesh";

    /// <summary>Prometheus /metrics over plain HTTP/1.1 on its own port, e.g. http://0.0.0.0:9700; empty = off.</summary>
    public string MetricsListen { get; set; } = "";

    public TimeSpan CommandTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How old the services' states in a report may be (systemctl is-active runs at most this often for
    /// reports; our own start/stop steps re-check at once). 0 = read for every report.
    /// </summary>
    public TimeSpan ServicePollInterval { get; set; } = TimeSpan.FromSeconds(2);
    public CommandPaths Commands { get; set; } = new();

    /// <summary>drbd9, drbd84, or auto (detect from the host).</summary>
    public string DrbdVersion { get; set; } = "auto";

    /// <summary>Last resort when a self-fence step hangs past the deadline: suspend-io, watchdog, or none.</summary>
    public string SelfFenceLastResort { get; set; } = "suspend-io";
}

/// <summary>
/// Absolute paths of every executable the agent may run: the allow-list. Tests and the lab
/// point these at stand-ins; nothing else can be executed.
/// </summary>
public sealed class CommandPaths
{
    public string Drbdadm { get; set; } = "/usr/sbin/drbdadm";
    public string Drbdsetup { get; set; } = "/usr/sbin/drbdsetup";
    public string Ip { get; set; } = "/usr/sbin/ip";
    public string Systemctl { get; set; } = "/usr/bin/systemctl";
    public string Mount { get; set; } = "/usr/bin/mount";
    public string Umount { get; set; } = "/usr/bin/umount";

    /// <summary>The file DRBD 8.4 reports through; read directly, not executed.</summary>
    public string ProcDrbd { get; set; } = "/proc/drbd";

    /// <summary>Where mounts are read from (the mount check of the mount step).</summary>
    public string MountInfo { get; set; } = "/proc/self/mountinfo";

    /// <summary>Extra executables for custom resource steps.</summary>
    public List<string> Extra { get; set; } = [];

    public IEnumerable<(string Key, string Path)> Executables()
    {
        yield return (nameof(Drbdadm), Drbdadm);
        yield return (nameof(Drbdsetup), Drbdsetup);
        yield return (nameof(Ip), Ip);
        yield return (nameof(Systemctl), Systemctl);
        yield return (nameof(Mount), Mount);
        yield return (nameof(Umount), Umount);
        for (var i = 0; i < Extra.Count; i++)
        {
            yield return ($"{nameof(Extra)}:{i}", Extra[i]);
        }
    }
}

public sealed class TlsOptions
{
    /// <summary>Plain-text gRPC. Never the default; every start warns.</summary>
    public bool Insecure { get; set; }

    public string CaFile { get; set; } = "";
    public string CertificateFile { get; set; } = "";
    public string KeyFile { get; set; } = "";

    /// <summary>
    /// Retired certificates: serial numbers or SHA-256 fingerprints (hex, colons and case ignored, as
    /// <c>openssl x509 -noout -serial -fingerprint -sha256</c> prints them). A listed certificate fails
    /// the TLS handshake on every daemon and client that loads this file; read at start.
    /// </summary>
    public List<string> RevokedCertificates { get; set; } = [];
}
