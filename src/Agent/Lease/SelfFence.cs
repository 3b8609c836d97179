using HaMesh.Agent.Actions;
using HaMesh.Agent.Reporting;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Commands;
using HaMesh.Shared.Configuration;
using Microsoft.Extensions.Options;

namespace HaMesh.Agent.Lease;

/// <summary>
/// Self-fencing (design §4): a Primary whose lease ran out stops services, unmounts and demotes within
/// the configured deadline. If that does not finish in time, the last resort runs (DRBD suspend-io, so
/// no write can reach the disk) and is reported; the lease math assumes the deadline holds.
/// </summary>
public sealed partial class SelfFence(
    IOptions<HaMeshOptions> options,
    ResourceSteps steps,
    ICommandRunner runner,
    AgentLocalState local,
    ReportSignal signal,
    TimeProvider time,
    ILogger<SelfFence> logger)
{
    private readonly HaMeshOptions _options = options.Value;

    /// <param name="resourceName">The resource to fence.</param>
    /// <param name="cancellationToken">Stops the agent.</param>
    /// <param name="deadline">The time left to be demoted (default: the configured self-fence deadline; shorter for a Primary found at start).</param>
    /// <returns>True when the node is demoted (or the last resort froze its I/O).</returns>
    /// <param name="record">When given, each step's result is added to it (the answer of a Demote that waited for the fence).</param>
    public async Task<bool> RunAsync(string resourceName, CancellationToken cancellationToken, TimeSpan? deadline = null, List<StepResult>? record = null)
    {
        var resource = _options.FindResource(resourceName)!;
        var limit = deadline ?? _options.Cluster.Timings.SelfFenceDeadline;
        using var expiry = new CancellationTokenSource(limit, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, expiry.Token);
        var failed = "";
        try
        {
            foreach (var step in steps.Deactivation(resource))
            {
                var result = await steps.RunAsync(step, linked.Token);
                record?.Add(result);
                if (result.Outcome == StepOutcome.Failed)
                {
                    failed = $"{result.Step}: {result.Stderr}";
                    break;
                }
            }
        }
        catch (OperationCanceledException) when (expiry.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            failed = $"deadline of {limit.TotalMilliseconds} ms passed";
        }

        signal.Trigger();
        if (failed.Length == 0)
        {
            Log.SelfFenced(logger, resourceName);
            local.SetLastError(resourceName, "self-fenced after lease expiry");
            return true;
        }

        return await LastResortAsync(resource, failed, cancellationToken);
    }

    private async Task<bool> LastResortAsync(ResourceOptions resource, string why, CancellationToken ct)
    {
        if (_options.Agent.SelfFenceLastResort != "suspend-io")
        {
            Log.LastResortUnavailable(logger, resource.Name, why, _options.Agent.SelfFenceLastResort);
            local.SetLastError(resource.Name, $"self-fence incomplete ({why}); last resort '{_options.Agent.SelfFenceLastResort}'");
            return false;
        }

        var spec = new CommandSpec(_options.Agent.Commands.Drbdadm, ["suspend-io", resource.DrbdResource], _options.Agent.CommandTimeout);
        try
        {
            var result = await runner.RunAsync(spec, ct);
            Log.LastResort(logger, resource.Name, why, result.ExitCode);
            local.SetLastError(resource.Name, $"self-fence incomplete ({why}); I/O suspended (drbdadm suspend-io, exit {result.ExitCode})");
            return result.Succeeded;
        }
        catch (CommandFailedException ex)
        {
            var detail = $"{why}; {ex.Message}";
            Log.LastResort(logger, resource.Name, detail, -1);
            return false;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1311, Level = LogLevel.Critical, Message = "Self-fenced {Resource}: services stopped, unmounted, DRBD Secondary")]
        public static partial void SelfFenced(ILogger logger, string resource);

        [LoggerMessage(EventId = 1312, Level = LogLevel.Critical, Message = "Self-fence of {Resource} incomplete ({Why}): last resort drbdadm suspend-io exited {ExitCode}")]
        public static partial void LastResort(ILogger logger, string resource, string why, int exitCode);

        [LoggerMessage(EventId = 1313, Level = LogLevel.Critical, Message = "Self-fence of {Resource} incomplete ({Why}) and last resort is '{LastResort}': operator needed")]
        public static partial void LastResortUnavailable(ILogger logger, string resource, string why, string lastResort);
    }
}
