using HaMesh.Lab;
using HaMesh.Shared.Security;

return args switch
{
    ["demo"] => await Demo.RunAsync(Console.Out, CancellationToken.None),
    ["demo", "--insecure"] => await Demo.RunAsync(Console.Out, CancellationToken.None, insecure: true),
    ["probe", "--target", var target] => await Probe.RunAsync(target, null, CancellationToken.None),
    ["probe", "--target", var target, "--cacert", var ca, "--cert", var cert, "--key", var key] => await ProbeWithTlsAsync(target, ca, cert, key),
    _ => Usage(),
};

static async Task<int> ProbeWithTlsAsync(string target, string ca, string cert, string key)
{
    using var tls = ClusterTls.Load(ca, cert, key);
    return await Probe.RunAsync(target, tls, CancellationToken.None);
}

static int Usage()
{
    Console.Error.WriteLine("usage: hamesh-lab demo [--insecure] | hamesh-lab probe --target HOST:PORT [--cacert CA --cert CERT --key KEY]");
    return 2;
}
