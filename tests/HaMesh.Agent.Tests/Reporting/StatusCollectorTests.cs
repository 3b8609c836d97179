using System.Net;
using HaMesh.Agent.Host;
using HaMesh.Agent.Reporting;
using HaMesh.Protocol.V1;
using HaMesh.Testing;
using HaMesh.Testing.Commands;
using HaMesh.Testing.Hosts;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace HaMesh.Agent.Tests.Reporting;

public sealed class StatusCollectorTests
{
    private sealed class KernelWithAlias : IInterfaceAddressSource
    {
        public int Reads { get; private set; }

        public InterfaceAddressTable Read()
        {
            Reads++;
            return new InterfaceAddressTable(["lo", "eth0"], [new InterfaceAddress("eth0", IPAddress.Parse("203.0.113.10"), 32)]);
        }
    }

    [Fact]
    public async Task EveryHeartbeatForTwoSeconds_OneSystemctlNoIp_StateStillReported()
    {
        var options = TestConfig.TwoNodes();
        options.Agent.Commands.Ip = "/usr/sbin/ip";
        var mountinfo = Path.GetTempFileName();
        await File.WriteAllTextAsync(mountinfo, "95 22 147:0 / /srv/db rw,relatime - ext4 /dev/drbd0 rw\n", TestContext.Current.CancellationToken);
        options.Agent.Commands.MountInfo = mountinfo;
        var time = new FakeTimeProvider();
        var runner = new FakeCommandRunner().On("/usr/bin/systemctl is-active postgresql.service", "active\n");
        var kernel = new KernelWithAlias();
        var host = new HostStateReader(Options.Create(options), runner, time, kernel);
        var collector = new StatusCollector(Options.Create(options), new FakeDrbdReader(), host, new AgentLocalState(time), time);
        try
        {
            NodeStatus? status = null;
            for (var i = 0; i < 8; i++)
            {
                status = await collector.CollectAsync(null, TestContext.Current.CancellationToken);
                time.Advance(options.Cluster.Timings.Heartbeat);
            }

            var r = status!.Resources.Single();
            Assert.Empty(status.ReadErrors);
            Assert.True(r.IpAliases.Single().Present);
            Assert.Equal(ServiceState.Active, r.Services.Single().State);
            Assert.True(r.Mounted);
            Assert.Equal(8, kernel.Reads);
            Assert.Equal(["/usr/bin/systemctl is-active postgresql.service"], runner.Calls.Select(c => c.Display));

            // past the poll interval the next report reads the services again
            await collector.CollectAsync(null, TestContext.Current.CancellationToken);
            Assert.Equal(2, runner.Calls.Count);
        }
        finally
        {
            File.Delete(mountinfo);
        }
    }
}
