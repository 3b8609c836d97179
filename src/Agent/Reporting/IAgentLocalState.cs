using HaMesh.Protocol.V1;

namespace HaMesh.Agent.Reporting;

/// <summary>The agent's own per-resource facts that DRBD does not know: generation, lease, peer contact.</summary>
public interface IAgentLocalState
{
    ulong GetGeneration(string resource);

    LeaseStatus GetLease(string resource);

    /// <summary>Time since the last contact with the peer agent, or null when never heard.</summary>
    TimeSpan? GetPeerContactAge(string resource);

    string GetLastError(string resource);
}
