using HaMesh.FencePeer;

return await FencePeerHandler.RunAsync(args, Environment.GetEnvironmentVariable, Console.Error, CancellationToken.None).ConfigureAwait(false);
