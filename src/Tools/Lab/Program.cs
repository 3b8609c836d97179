using HaMesh.Lab;

return args switch
{
    ["demo"] => await Demo.RunAsync(Console.Out, CancellationToken.None),
    ["demo", "--insecure"] => await Demo.RunAsync(Console.Out, CancellationToken.None, insecure: true),
    ["probe", "--target", var target] => await Probe.RunAsync(target, CancellationToken.None),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: hamesh-lab demo [--insecure] | hamesh-lab probe --target HOST:PORT");
    return 2;
}
