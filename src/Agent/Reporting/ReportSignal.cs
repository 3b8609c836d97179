namespace HaMesh.Agent.Reporting;

/// <summary>Wakes the reporter so a change (an action finished, a role changed) is reported at once, not at the next heartbeat.</summary>
public sealed class ReportSignal : IDisposable
{
    private readonly SemaphoreSlim _signal = new(0, 1);

    public void Trigger()
    {
        try
        {
            _signal.Release();
        }
        catch (SemaphoreFullException)
        {
            // already signalled: one pending wake-up is enough
        }
    }

    public void Dispose() => _signal.Dispose();

    public Task WaitAsync(CancellationToken cancellationToken) => _signal.WaitAsync(cancellationToken);
}
