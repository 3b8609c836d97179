using HaMesh.Shared.Configuration;

namespace HaMesh.Testing;

/// <summary>A valid two-node, one-resource cluster for tests; each test changes what it needs.</summary>
public static class TestConfig
{
    /// <summary>Placeholder store path: the in-memory coordinator host replaces it with a unique temporary file.</summary>
    public const string SharedStorePath = "/tmp/hamesh-test.db";

    public static HaMeshOptions TwoNodes(string agentNode = "a", string coordinatorAddress = "http://127.0.0.1:1") => new()
    {
        Cluster = new ClusterOptions { Name = "test" },
        Nodes =
        [
            new NodeOptions { Name = "a", AgentAddress = "http://127.0.0.1:7701", ServiceName = "ns1.ip-1-2-3.eu" },
            new NodeOptions { Name = "b", AgentAddress = "http://127.0.0.1:7702", ServiceName = "ns2.ip-1-2-3.eu" },
        ],
        Resources =
        [
            new ResourceOptions
            {
                Name = "db", DrbdResource = "r0", Device = "/dev/drbd0", MountPoint = "/srv/db", FsType = "ext4",
                Services = ["postgresql.service"], FailoverIps = ["203.0.113.10/32"], Interface = "eth0", PreferredNode = "a",
            },
        ],
        Coordinator = new CoordinatorOptions { Listen = "http://127.0.0.1:0", Address = coordinatorAddress, StorePath = SharedStorePath },
        Agent = new AgentOptions { Node = agentNode, Listen = "http://127.0.0.1:0", StateDirectory = "/tmp/hamesh-test" },
        Tls = new TlsOptions { Insecure = true },
    };
}
