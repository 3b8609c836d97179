using System.Threading.Channels;
using Microsoft.Extensions.Time.Testing;

namespace HaMesh.Testing;

/// <summary>A <see cref="FakeTimeProvider"/> that reports every timer created (after creating it), so a test advances time only once the code waits.</summary>
public sealed class TimerSignalingTimeProvider(FakeTimeProvider inner) : TimeProvider
{
    private readonly Channel<(TimeSpan Due, DateTimeOffset At)> _created = Channel.CreateUnbounded<(TimeSpan, DateTimeOffset)>();

    public override DateTimeOffset GetUtcNow() => inner.GetUtcNow();

    public override long GetTimestamp() => inner.GetTimestamp();

    public override long TimestampFrequency => inner.TimestampFrequency;

    public override TimeZoneInfo LocalTimeZone => inner.LocalTimeZone;

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var at = inner.GetUtcNow() + dueTime;
        var timer = inner.CreateTimer(callback, state, dueTime, period);
        _created.Writer.TryWrite((dueTime, at));
        return timer;
    }

    /// <summary>Completes once a timer with <paramref name="dueTime"/> exists (others are skipped).</summary>
    public async Task WaitForTimerAsync(TimeSpan dueTime, CancellationToken ct)
    {
        using var guard = CancellationTokenSource.CreateLinkedTokenSource(ct);
        guard.CancelAfter(TimeSpan.FromSeconds(30));
        while ((await _created.Reader.ReadAsync(guard.Token)).Due != dueTime)
        {
        }
    }

    /// <summary>
    /// Completes once a timer due at the instant <paramref name="at"/> exists (others are skipped). Matching on the
    /// instant rather than the delay cannot be fooled by another timer with the same delay created at another time,
    /// so a test that advances the clock only after it is certain the code waits for exactly that instant.
    /// </summary>
    public async Task WaitForTimerAtAsync(DateTimeOffset at, CancellationToken ct)
    {
        using var guard = CancellationTokenSource.CreateLinkedTokenSource(ct);
        guard.CancelAfter(TimeSpan.FromSeconds(30));
        while ((await _created.Reader.ReadAsync(guard.Token)).At != at)
        {
        }
    }
}
