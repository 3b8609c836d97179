using System.Collections.Concurrent;
using Google.Protobuf.WellKnownTypes;
using HaMesh.Protocol.V1;

namespace HaMesh.Agent.Reporting;

/// <summary>
/// In-process holder of the agent's own per-resource facts, updated by the components that own
/// them (generation store, lease core, action executor) and read by the status collector.
/// </summary>
public sealed class AgentLocalState(TimeProvider time, Func<string, ulong>? persistedGeneration = null) : IAgentLocalState
{
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly long _startedAt = time.GetTimestamp();

    /// <summary>The persisted generation (the agent's state file) when available, so a restarted agent reports what it last accepted.</summary>
    public ulong GetGeneration(string resource) => Math.Max(Get(resource).Generation, persistedGeneration?.Invoke(resource) ?? 0);

    public LeaseStatus GetLease(string resource)
    {
        var e = Get(resource);
        var status = new LeaseStatus { State = e.Lease, LastGrantor = e.LastGrantor };
        if (e.LeaseExpiresAt is { } expires)
        {
            var remaining = expires - time.GetTimestamp();
            status.Remaining = Duration.FromTimeSpan(remaining > 0 ? TimeSpan.FromSeconds((double)remaining / time.TimestampFrequency) : TimeSpan.Zero);
        }

        return status;
    }

    /// <summary>Time since the last contact with the peer agent; never heard since this agent started → time since start (never null, never shorter than the truth).</summary>
    public TimeSpan? GetPeerContactAge(string resource) => time.GetElapsedTime(Get(resource).PeerContactAt ?? _startedAt);

    public string GetLastError(string resource) => Get(resource).LastError;

    public void SetGeneration(string resource, ulong generation) =>
        _entries.AddOrUpdate(resource, _ => new Entry { Generation = generation }, (_, e) => e with { Generation = Math.Max(e.Generation, generation) });

    public void SetLease(string resource, LeaseState state, long? expiresAtTimestamp, string grantor) =>
        _entries.AddOrUpdate(resource, _ => new Entry { Lease = state, LeaseExpiresAt = expiresAtTimestamp, LastGrantor = grantor },
            (_, e) => e with { Lease = state, LeaseExpiresAt = expiresAtTimestamp, LastGrantor = grantor });

    public void MarkPeerContact(string resource) =>
        _entries.AddOrUpdate(resource, _ => new Entry { PeerContactAt = time.GetTimestamp() }, (_, e) => e with { PeerContactAt = time.GetTimestamp() });

    public void SetLastError(string resource, string error) =>
        _entries.AddOrUpdate(resource, _ => new Entry { LastError = error }, (_, e) => e with { LastError = error });

    private Entry Get(string resource) => _entries.TryGetValue(resource, out var e) ? e : Entry.Empty;

    private sealed record Entry
    {
        public static readonly Entry Empty = new();

        public ulong Generation { get; init; }

        public LeaseState Lease { get; init; } = LeaseState.NotHeld;

        public long? LeaseExpiresAt { get; init; }

        public string LastGrantor { get; init; } = "";

        public long? PeerContactAt { get; init; }

        public string LastError { get; init; } = "";
    }
}
