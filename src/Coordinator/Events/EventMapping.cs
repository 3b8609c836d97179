using Google.Protobuf.WellKnownTypes;
using HaMesh.Protocol.V1;

namespace HaMesh.Coordinator.Events;

public static class EventMapping
{
    public static ClusterEvent ToProto(StoredEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        var proto = new ClusterEvent
        {
            Sequence = e.Sequence,
            Time = Timestamp.FromDateTimeOffset(e.Time),
            Kind = e.Record.Kind,
            Resource = e.Record.Resource,
            Node = e.Record.Node,
            Generation = e.Record.Generation,
            Message = e.Record.Message,
            Severity = e.Record.Severity.ToString().ToLowerInvariant(),
        };
        foreach (var (key, value) in e.Record.Attributes)
        {
            proto.Attributes[key] = value;
        }

        return proto;
    }
}
