using System.Text.Json;
using HaMesh.Protocol.V1;

namespace HaMesh.Shared.Drbd;

/// <summary>
/// Parses DRBD 9 <c>drbdsetup status --json</c> (spec §1a, with its quirks, and the older §1b shape).
/// Every field but name, role, devices and connections is optional.
/// </summary>
public static class DrbdStatusJsonParser
{
    public static DrbdParse<IReadOnlyList<DrbdResourceStatus>> Parse(string? json)
    {
        if (string.IsNullOrWhiteSpace(json))
        {
            return DrbdParse.Fail<IReadOnlyList<DrbdResourceStatus>>("drbdsetup status --json printed nothing");
        }

        try
        {
            using var doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true });
            if (doc.RootElement.ValueKind != JsonValueKind.Array)
            {
                return DrbdParse.Fail<IReadOnlyList<DrbdResourceStatus>>("drbdsetup status --json: expected a JSON array of resources");
            }

            var list = new List<DrbdResourceStatus>();
            var index = 0;
            foreach (var r in doc.RootElement.EnumerateArray())
            {
                if (r.ValueKind != JsonValueKind.Object || String(r, "name") is not { Length: > 0 } name || String(r, "role") is not { } role)
                {
                    return DrbdParse.Fail<IReadOnlyList<DrbdResourceStatus>>($"drbdsetup status --json: resource #{index} lacks name or role");
                }

                list.Add(Resource(r, name, role));
                index++;
            }

            return DrbdParse.Success<IReadOnlyList<DrbdResourceStatus>>(list);
        }
        catch (JsonException ex)
        {
            return DrbdParse.Fail<IReadOnlyList<DrbdResourceStatus>>($"drbdsetup status --json: invalid JSON at line {ex.LineNumber + 1}: {ex.Message}");
        }
    }

    private static DrbdResourceStatus Resource(JsonElement r, string name, string role)
    {
        var status = new DrbdResourceStatus
        {
            Name = name,
            Role = DrbdNames.Role(role),
            Present = true,
            Suspended = Bool(r, "suspended") ?? false,
            Quorum = QuorumState.NotReported,
        };
        var quorums = new List<bool>();
        foreach (var d in Array(r, "devices"))
        {
            var device = new DeviceStatus
            {
                Volume = Int(d, "volume") ?? 0,
                Minor = Int(d, "minor") ?? -1,
                DiskState = DrbdNames.Disk(String(d, "disk-state")),
                Open = Bool(d, "open") ?? false,
                SizeKib = (ulong)(Long(d, "size") ?? 0),
            };
            if (Bool(d, "quorum") is { } q)
            {
                quorums.Add(q);
                device.Quorum = q ? QuorumState.Present : QuorumState.Lost;
            }
            else
            {
                device.Quorum = QuorumState.NotReported;
            }

            status.Devices.Add(device);
        }

        if (quorums.Count > 0)
        {
            status.Quorum = quorums.All(q => q) ? QuorumState.Present : QuorumState.Lost;
        }

        status.DiskState = status.Devices.Count == 0 ? DiskState.Diskless : status.Devices.Select(d => d.DiskState).Min();
        foreach (var c in Array(r, "connections"))
        {
            var peer = new PeerConnectionStatus
            {
                PeerName = String(c, "name") ?? "",
                PeerNodeId = Int(c, "peer-node-id") ?? -1,
                ConnectionState = DrbdNames.Connection(String(c, "connection-state")),
                PeerRole = DrbdNames.Role(String(c, "peer-role")),
            };
            foreach (var pd in Array(c, "peer_devices"))
            {
                peer.PeerDevices.Add(new PeerDeviceStatus
                {
                    Volume = Int(pd, "volume") ?? 0,
                    ReplicationState = DrbdNames.Replication(String(pd, "replication-state")),
                    PeerDiskState = DrbdNames.Disk(String(pd, "peer-disk-state")),
                    OutOfSyncKib = (ulong)(Long(pd, "out-of-sync") ?? 0),
                    PercentInSync = Double(pd, "percent-in-sync") ?? 100,
                });
            }

            var first = peer.PeerDevices.OrderBy(p => p.Volume).FirstOrDefault();
            peer.PeerDiskState = first?.PeerDiskState ?? DiskState.Dunknown;
            peer.ReplicationState = first?.ReplicationState ?? ReplicationState.Off;
            peer.OutOfSyncKib = (ulong)peer.PeerDevices.Sum(p => (decimal)p.OutOfSyncKib);
            status.Peers.Add(peer);
        }

        return status;
    }

    private static JsonElement[] Array(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Array ? [.. v.EnumerateArray()] : [];

    private static string? String(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()?.Trim() : null;

    private static bool? Bool(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;

    private static int? Int(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) ? i : null;

    private static long? Long(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var i) ? i : null;

    private static double? Double(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;
}
