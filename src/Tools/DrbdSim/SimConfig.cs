using System.Text.Json;
using System.Text.Json.Serialization;

namespace HaMesh.DrbdSim;

/// <summary>Daemon configuration (JSON file given with --config).</summary>
public sealed class SimConfig
{
    /// <summary>This node's name (DRBD host name).</summary>
    public string Node { get; set; } = "a";

    /// <summary>DRBD flavour: 9 or 84.</summary>
    public int DrbdVersion { get; set; } = 9;

    /// <summary>Path of the simulated /proc/drbd file (8.4 mode), refreshed on every state change.</summary>
    public string? ProcDrbdPath { get; set; }

    /// <summary>
    /// Path of a simulated /proc/self/mountinfo listing what the mount stand-in mounted (the agent's
    /// Commands.MountInfo points here). Rewritten on every mount and umount, emptied at start: mounts
    /// do not survive a crash.
    /// </summary>
    public string? MountInfoPath { get; set; }

    /// <summary>Resources of this node.</summary>
    public List<ResourceConfig> Resources { get; set; } = [];

    internal static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        WriteIndented = true,
    };

    public static SimConfig Load(string path)
    {
        var text = File.ReadAllText(path);
        return JsonSerializer.Deserialize<SimConfig>(text, JsonOptions)
            ?? throw new InvalidDataException("empty config");
    }
}

/// <summary>One replicated resource and its single peer.</summary>
public sealed class ResourceConfig
{
    public string Name { get; set; } = "r0";
    public int Minor { get; set; }
    public int NodeId { get; set; }
    public string PeerName { get; set; } = "b";
    public int PeerNodeId { get; set; } = 1;
    public string ListenAddress { get; set; } = "127.0.0.1";
    public int ListenPort { get; set; } = 7789;
    public string PeerAddress { get; set; } = "127.0.0.1";
    public int PeerPort { get; set; } = 7789;

    /// <summary>dont-care | resource-only | resource-and-stonith.</summary>
    public string Fencing { get; set; } = "dont-care";

    /// <summary>Absolute path of the fence-peer handler executable (no shell).</summary>
    public string? FencePeerHandler { get; set; }

    /// <summary>Arguments passed to the handler (ArgumentList).</summary>
    public List<string> FencePeerArgs { get; set; } = [];

    /// <summary>off | majority (two nodes: quorum only while connected or the peer is known Outdated).</summary>
    public string Quorum { get; set; } = "off";

    /// <summary>File holding the device data (default: state-dir/NAME.data).</summary>
    public string? BackingFile { get; set; }

    public long SizeKiB { get; set; } = 65496;

    /// <summary>Resync rate in KiB/s (small values let tests observe SyncSource/SyncTarget).</summary>
    public long ResyncRateKiB { get; set; } = 1_000_000;

    public int PingIntervalMs { get; set; } = 1000;
    public int PingTimeoutMs { get; set; } = 3000;
    public int ConnectRetryMs { get; set; } = 500;

    /// <summary>Bring the resource up when the daemon starts (like the drbd init script on boot).</summary>
    public bool AutoUp { get; set; } = true;

    /// <summary>drbd.conf path given to handlers in DRBD_CONF.</summary>
    public string DrbdConf { get; set; } = "/etc/drbd.conf";

    public bool FencingEnabled => !string.Equals(Fencing, "dont-care", StringComparison.Ordinal);

    public bool FencingStonith => string.Equals(Fencing, "resource-and-stonith", StringComparison.Ordinal);

    public bool QuorumMajority => string.Equals(Quorum, "majority", StringComparison.Ordinal);
}
