using HaMesh.Testing.Processes;

namespace HaMesh.Testing.Lab;

/// <summary>
/// The lab cluster's CA and certificates, made once per test process the way an operator makes them:
/// <c>hameshctl certs init</c>, then <c>hameshctl certs issue</c> for the coordinator (IP SAN of W),
/// each agent (its namespace address, 127.0.0.1 for DRBD's fence-peer handler and the failover IP the
/// client probe dials), an operator (the test process) and a viewer (the client probe, and the denied
/// paths). Removed when the test process exits.
/// </summary>
public static class LabCertificates
{
    private static readonly SemaphoreSlim Gate = new(1, 1);
    private static string? _directory;

    /// <summary>The certificate directory (ca.pem, coordinator.pem, agent-a.pem, agent-b.pem, operator.pem, viewer.pem and their -key.pem).</summary>
    public static async Task<string> EnsureAsync(CancellationToken ct)
    {
        await Gate.WaitAsync(ct);
        try
        {
            if (_directory is not null)
            {
                return _directory;
            }

            var dir = Directory.CreateTempSubdirectory("hamesh-lab-certs-").FullName;
            AppDomain.CurrentDomain.ProcessExit += (_, _) => Remove(dir);
            try
            {
                await HameshctlAsync(ct, "certs", "init", "--dir", dir, "--cluster", "lab");
                var failoverIp = LabCluster.FailoverIp.Split('/')[0];
                await Task.WhenAll(
                    HameshctlAsync(ct, "certs", "issue", "--dir", dir, "--role", "coordinator", "--ip", NetnsLab.Address("w")),
                    HameshctlAsync(ct, "certs", "issue", "--dir", dir, "--role", "agent", "--node", "a", "--ip", NetnsLab.Address("a"), "--ip", "127.0.0.1", "--ip", failoverIp),
                    HameshctlAsync(ct, "certs", "issue", "--dir", dir, "--role", "agent", "--node", "b", "--ip", NetnsLab.Address("b"), "--ip", "127.0.0.1", "--ip", failoverIp),
                    HameshctlAsync(ct, "certs", "issue", "--dir", dir, "--role", "operator"),
                    HameshctlAsync(ct, "certs", "issue", "--dir", dir, "--role", "viewer"));
            }
            catch
            {
                Remove(dir);
                throw;
            }

            _directory = dir;
            return dir;
        }
        finally
        {
            Gate.Release();
        }
    }

    public static string Certificate(string directory, string name) => Path.Combine(directory, name + ".pem");

    public static string Key(string directory, string name) => Path.Combine(directory, name + "-key.pem");

    private static async Task HameshctlAsync(CancellationToken ct, params string[] args)
    {
        await using var cli = DaemonProcess.Start("hameshctl", DaemonProcess.Dll("src/Cli", "hameshctl"), args);
        var exit = await cli.WaitForExitAsync(TimeSpan.FromSeconds(60), ct);
        if (exit != 0)
        {
            throw new InvalidOperationException($"hameshctl {string.Join(' ', args)} exited {exit}: {cli.Output}");
        }
    }

    private static void Remove(string dir)
    {
        try
        {
            Directory.Delete(dir, recursive: true);
        }
        catch (IOException)
        {
            // best effort: the OS cleans its temporary folder
        }
    }
}
