using HaMesh.Lab;

return args is ["demo", ..]
    ? await Demo.RunAsync(Console.Out, CancellationToken.None)
    : Usage();

static int Usage()
{
    Console.Error.WriteLine("usage: hamesh-lab demo");
    return 2;
}
