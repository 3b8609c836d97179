using System.Globalization;
using HaMesh.Coordinator.Events;
using HaMesh.Coordinator.Store;
using HaMesh.Protocol.V1;

namespace HaMesh.Coordinator.Operations;

/// <summary>
/// DRBD fencing on the coordinator (design §4.1): when the primary's replication link breaks, its
/// fence-peer handler asks (through its agent) to record the peer outdated at the current
/// generation. The mark is persisted before the answer, so the peer is never promoted automatically
/// while it may lack acknowledged writes. A stale or wrong requester is refused: its I/O stays frozen.
/// </summary>
public sealed class FencingRecorder(SqliteStore store)
{
    public async Task<FencePeerResponse> RecordAsync(FencePeerRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var record = store.GetResource(request.Resource);
        if (request.Generation < record.Generation)
        {
            return await RefuseAsync(record, string.Create(CultureInfo.InvariantCulture,
                $"stale generation {request.Generation} < {record.Generation}: {request.RequestingNode} is not the current primary of {request.Resource}"), cancellationToken);
        }

        if (record.PrimaryNode.Length > 0 && record.PrimaryNode != request.RequestingNode)
        {
            return await RefuseAsync(record, $"{request.RequestingNode} is not the primary of {request.Resource} (the coordinator made {record.PrimaryNode} primary)", cancellationToken);
        }

        if (record.OutdatedNodes.TryGetValue(request.PeerNode, out var at) && at >= request.Generation)
        {
            // The link broke again: only reports after this request may prove the peer resynced.
            store.MarkOutdated(request.Resource, request.PeerNode, at, new EventRecord(
                "PeerOutdated", $"{request.PeerNode} is still recorded outdated at generation {at}; {request.RequestingNode} fenced it again (DRBD replication link lost)",
                request.Resource, request.PeerNode, at, EventSeverity.Warning), request.RequestingNode, request.AfterReportSequence);
            return new FencePeerResponse { Outcome = FenceOutcome.PeerAlreadyOutdated, Generation = record.Generation, Message = $"{request.PeerNode} already recorded outdated at generation {at}" };
        }

        store.MarkOutdated(request.Resource, request.PeerNode, request.Generation, new EventRecord(
            "PeerOutdated",
            $"{request.PeerNode} recorded outdated at generation {request.Generation} on request of {request.RequestingNode} (DRBD replication link lost); it will not be promoted automatically until it is UpToDate again",
            request.Resource, request.PeerNode, request.Generation, EventSeverity.Warning), request.RequestingNode, request.AfterReportSequence);
        return new FencePeerResponse { Outcome = FenceOutcome.PeerOutdated, Generation = Math.Max(record.Generation, request.Generation), Message = $"{request.PeerNode} recorded outdated" };
    }

    private async Task<FencePeerResponse> RefuseAsync(ResourceRecord record, string reason, CancellationToken cancellationToken)
    {
        await store.AppendAsync(new EventRecord("FencePeerRefused", reason, record.Resource, Severity: EventSeverity.Critical), cancellationToken);
        return new FencePeerResponse { Outcome = FenceOutcome.Failed, Generation = record.Generation, Message = reason };
    }
}
