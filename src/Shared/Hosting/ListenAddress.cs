using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace HaMesh.Shared.Hosting;

public static class ListenAddress
{
    /// <summary>The addresses Kestrel actually bound (port 0 resolved), for the start-up line tests and labs read.</summary>
    public static IReadOnlyList<string> Bound(IServer server)
    {
        ArgumentNullException.ThrowIfNull(server);
        return server.Features.Get<IServerAddressesFeature>()?.Addresses.ToList() ?? [];
    }
}
