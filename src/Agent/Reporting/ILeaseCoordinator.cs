using HaMesh.Protocol.V1;

namespace HaMesh.Agent.Reporting;

/// <summary>The part of the coordinator link the lease holder uses: queue a lease request, hear the grants.</summary>
public interface ILeaseCoordinator
{
    /// <summary>Raised for every coordinator message (welcome, lease grants).</summary>
    event Action<CoordinatorMessage>? MessageReceived;

    /// <summary>Queues a message for the coordinator.</summary>
    bool Enqueue(AgentMessage message);
}
