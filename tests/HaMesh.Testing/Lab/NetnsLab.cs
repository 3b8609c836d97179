using System.Diagnostics;
using System.Globalization;

namespace HaMesh.Testing.Lab;

/// <summary>
/// A multi-host lab on one machine: network namespaces A, B, W (witness) and C (client "internet")
/// joined by veth pairs to a bridge in a switch namespace, plus a host port so the test process can
/// reach them. Chaos with nftables inside the namespaces (drop, one-way drop, random loss via
/// <c>numgen random mod 100</c>) and link down/up; <c>tc netem</c> is not used. Everything it
/// creates is removed on dispose, even after a failed test.
/// </summary>
public sealed class NetnsLab : IAsyncDisposable
{
    public static readonly string[] Hosts = ["a", "b", "w", "c"];
    private const string Table = "hamesh_lab";
    private static readonly Dictionary<string, int> Octet = new(StringComparer.Ordinal) { ["a"] = 1, ["b"] = 2, ["w"] = 3, ["c"] = 9 };
    private readonly List<string> _namespaces = [];
    private string? _hostVeth;

    private NetnsLab(string prefix) => Prefix = prefix;

    public string Prefix { get; }

    public const string HostAddress = "10.77.0.254";

    /// <summary>Why the lab cannot run here, or null when it can (root, ip netns, nft).</summary>
    public static string? WhyNot()
    {
        if (geteuid() != 0)
        {
            return "the network-namespace lab needs root (ip netns, veth, nftables)";
        }

        if (!File.Exists("/usr/sbin/ip") && !File.Exists("/sbin/ip"))
        {
            return "iproute2 (ip) is not installed";
        }

        return File.Exists("/usr/sbin/nft") || File.Exists("/sbin/nft") ? null : "nftables (nft) is not installed: apt-get install nftables";
    }

    public static async Task<NetnsLab> CreateAsync(CancellationToken cancellationToken)
    {
        var prefix = "hm" + Random.Shared.Next(0x1000, 0xFFFF).ToString("x4", CultureInfo.InvariantCulture);
        var lab = new NetnsLab(prefix);
        try
        {
            await lab.BuildAsync(cancellationToken);
            return lab;
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    public string Ns(string host) => $"{Prefix}-{host}";

    public static string Address(string host) => $"10.77.0.{Octet[host]}";

    /// <summary>Drops everything between <paramref name="x"/> and <paramref name="y"/>, both directions.</summary>
    public Task PartitionAsync(string x, string y, CancellationToken cancellationToken) =>
        Task.WhenAll(DropFromAsync(x, y, cancellationToken), DropFromAsync(y, x, cancellationToken));

    /// <summary>One-way cut: <paramref name="to"/> stops receiving packets from <paramref name="from"/>.</summary>
    public Task DropFromAsync(string to, string from, CancellationToken cancellationToken) =>
        AddRuleAsync(to, ["input", "ip", "saddr", Address(from), "drop"], cancellationToken);

    /// <summary>Isolates <paramref name="host"/> from everyone (all its traffic dropped, loopback kept).</summary>
    public async Task IsolateAsync(string host, CancellationToken cancellationToken)
    {
        await AddRuleAsync(host, ["input", "iifname", "eth0", "drop"], cancellationToken);
        await AddRuleAsync(host, ["output", "oifname", "eth0", "drop"], cancellationToken);
    }

    /// <summary>Random loss of <paramref name="percent"/> % of packets arriving at <paramref name="host"/>.</summary>
    public Task LossAsync(string host, int percent, CancellationToken cancellationToken) =>
        AddRuleAsync(host, ["input", "iifname", "eth0", "numgen", "random", "mod", "100", "<", percent.ToString(CultureInfo.InvariantCulture), "drop"], cancellationToken);

    /// <summary>Removes every nftables rule in <paramref name="host"/>.</summary>
    public async Task HealAsync(string host, CancellationToken cancellationToken)
    {
        await RunAsync(cancellationToken, "ip", "netns", "exec", Ns(host), "nft", "flush", "table", "inet", Table);
    }

    public async Task HealAllAsync(CancellationToken cancellationToken)
    {
        foreach (var h in Hosts)
        {
            await HealAsync(h, cancellationToken);
        }
    }

    public Task LinkDownAsync(string host, CancellationToken cancellationToken) =>
        RunAsync(cancellationToken, "ip", "-n", Ns(host), "link", "set", "eth0", "down");

    public Task LinkUpAsync(string host, CancellationToken cancellationToken) =>
        RunAsync(cancellationToken, "ip", "-n", Ns(host), "link", "set", "eth0", "up");

    /// <summary>Runs an allow-listed lab tool (ip, nft) with an argument list; throws with stderr on failure.</summary>
    public static async Task<string> RunAsync(CancellationToken cancellationToken, params string[] argv)
    {
        var exe = argv[0] switch
        {
            "ip" => "/usr/sbin/ip",
            "nft" => "/usr/sbin/nft",
            _ => throw new ArgumentException($"lab tool '{argv[0]}' is not allowed", nameof(argv)),
        };
        var psi = new ProcessStartInfo(exe) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in argv.Skip(1))
        {
            psi.ArgumentList.Add(a);
        }

        using var p = new Process { StartInfo = psi };
        p.Start();
        var stdout = p.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = p.StandardError.ReadToEndAsync(cancellationToken);
        await p.WaitForExitAsync(cancellationToken).WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"'{string.Join(' ', argv)}' exited {p.ExitCode}: {(await stderr).Trim()}");
        }

        return await stdout;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var ns in _namespaces.AsEnumerable().Reverse())
        {
            try
            {
                await RunAsync(CancellationToken.None, "ip", "netns", "del", ns);
            }
            catch (InvalidOperationException)
            {
                // already gone
            }
        }

        if (_hostVeth is not null)
        {
            try
            {
                await RunAsync(CancellationToken.None, "ip", "link", "del", _hostVeth);
            }
            catch (InvalidOperationException)
            {
                // removed with its peer's namespace
            }
        }
    }

    private async Task BuildAsync(CancellationToken ct)
    {
        var sw = Ns("sw");
        await AddNamespaceAsync(sw, ct);
        await RunAsync(ct, "ip", "-n", sw, "link", "add", "br0", "type", "bridge");
        await RunAsync(ct, "ip", "-n", sw, "link", "set", "br0", "up");
        foreach (var h in Hosts)
        {
            var ns = Ns(h);
            await AddNamespaceAsync(ns, ct);
            await PlugAsync(ns, $"{Prefix}{h}", Address(h), ct);
            await RunAsync(ct, "ip", "netns", "exec", ns, "nft", "add", "table", "inet", Table);
            await RunAsync(ct, "ip", "netns", "exec", ns, "nft", "add", "chain", "inet", Table, "input", "{ type filter hook input priority 0 ; policy accept ; }");
            await RunAsync(ct, "ip", "netns", "exec", ns, "nft", "add", "chain", "inet", Table, "output", "{ type filter hook output priority 0 ; policy accept ; }");
        }

        // the test process (root namespace) joins the bridge too, to talk to the daemons
        _hostVeth = $"{Prefix}h";
        await RunAsync(ct, "ip", "link", "add", _hostVeth, "type", "veth", "peer", "name", $"{Prefix}hs");
        await RunAsync(ct, "ip", "link", "set", $"{Prefix}hs", "netns", sw);
        await RunAsync(ct, "ip", "-n", sw, "link", "set", $"{Prefix}hs", "master", "br0");
        await RunAsync(ct, "ip", "-n", sw, "link", "set", $"{Prefix}hs", "up");
        await RunAsync(ct, "ip", "addr", "add", $"{HostAddress}/24", "dev", _hostVeth);
        await RunAsync(ct, "ip", "link", "set", _hostVeth, "up");
    }

    private async Task PlugAsync(string ns, string veth, string address, CancellationToken ct)
    {
        var sw = Ns("sw");
        await RunAsync(ct, "ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "s");
        await RunAsync(ct, "ip", "link", "set", veth, "netns", ns);
        await RunAsync(ct, "ip", "link", "set", veth + "s", "netns", sw);
        await RunAsync(ct, "ip", "-n", ns, "link", "set", veth, "name", "eth0");
        await RunAsync(ct, "ip", "-n", ns, "addr", "add", address + "/24", "dev", "eth0");
        await RunAsync(ct, "ip", "-n", ns, "link", "set", "eth0", "up");
        await RunAsync(ct, "ip", "-n", sw, "link", "set", veth + "s", "master", "br0");
        await RunAsync(ct, "ip", "-n", sw, "link", "set", veth + "s", "up");
    }

    private async Task AddNamespaceAsync(string ns, CancellationToken ct)
    {
        await RunAsync(ct, "ip", "netns", "add", ns);
        _namespaces.Add(ns);
        await RunAsync(ct, "ip", "-n", ns, "link", "set", "lo", "up");
    }

    private async Task AddRuleAsync(string host, string[] rule, CancellationToken ct)
    {
        await RunAsync(ct, ["ip", "netns", "exec", Ns(host), "nft", "add", "rule", "inet", Table, .. rule]);
    }

    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern uint geteuid();
}
