using HaMesh.Lab;

return args switch
{
    ["demo", ..] => await Demo.RunAsync(Console.Out, CancellationToken.None),
    ["probe", "--target", var target] => await Probe.RunAsync(target, CancellationToken.None),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: hamesh-lab demo | hamesh-lab probe --target HOST:PORT");
    return 2;
}
