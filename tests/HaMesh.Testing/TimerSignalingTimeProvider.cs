using System.Threading.Channels;
using Microsoft.Extensions.Time.Testing;

namespace HaMesh.Testing;

/// <summary>A <see cref="FakeTimeProvider"/> that reports every timer created (after creating it), so a test advances time only once the code waits.</summary>
public sealed class TimerSignalingTimeProvider(FakeTimeProvider inner) : TimeProvider
{
    private readonly Channel<TimeSpan> _created = Channel.CreateUnbounded<TimeSpan>();

    public override DateTimeOffset GetUtcNow() => inner.GetUtcNow();

    public override long GetTimestamp() => inner.GetTimestamp();

    public override long TimestampFrequency => inner.TimestampFrequency;

    public override TimeZoneInfo LocalTimeZone => inner.LocalTimeZone;

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = inner.CreateTimer(callback, state, dueTime, period);
        _created.Writer.TryWrite(dueTime);
        return timer;
    }

    /// <summary>Completes once a timer with <paramref name="dueTime"/> exists (others are skipped).</summary>
    public async Task WaitForTimerAsync(TimeSpan dueTime, CancellationToken ct)
    {
        using var guard = CancellationTokenSource.CreateLinkedTokenSource(ct);
        guard.CancelAfter(TimeSpan.FromSeconds(30));
        while (await _created.Reader.ReadAsync(guard.Token) != dueTime)
        {
        }
    }
}
