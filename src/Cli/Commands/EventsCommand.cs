using System.CommandLine;
using System.Globalization;
using Grpc.Core;
using HaMesh.Protocol.V1;
using HaMesh.Shared.Grpc;

namespace HaMesh.Cli.Commands;

/// <summary>hameshctl events [--follow] [--since DURATION|TIME] [--resource R] [--limit N]</summary>
public static class EventsCommand
{
    public static Command Create(CoordinatorTarget target, TextWriter stdout, TextWriter stderr)
    {
        var follow = new Option<bool>("--follow", "-f") { Description = "Keep printing new events as they happen" };
        var since = new Option<string?>("--since") { Description = "Only events newer than this: an ISO time (2026-11-25T10:00:00Z) or a duration ago (10m, 2h, 1d)" };
        var resource = new Option<string?>("--resource") { Description = "Only events of this resource" };
        var limit = new Option<int>("--limit") { Description = "At most this many past events (1-1000)", DefaultValueFactory = _ => 100 };
        var command = new Command("events", "Show the coordinator's durable event log (decisions, OVH calls, reachability)");
        command.Options.Add(follow);
        command.Options.Add(since);
        command.Options.Add(resource);
        command.Options.Add(limit);
        command.SetAction((parse, ct) => target.CallAsync(parse, stderr, async client =>
        {
            var request = new ListEventsRequest { Limit = parse.GetValue(limit), Resource = parse.GetValue(resource) ?? "" };
            if (parse.GetValue(since) is { } s)
            {
                if (!TryParseSince(s, TimeProvider.System.GetUtcNow(), out var from))
                {
                    await stderr.WriteLineAsync($"hameshctl: --since '{s}' is neither an ISO time nor a duration like 10m, 2h, 1d");
                    return CliApp.Usage;
                }

                request.Since = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(from);
            }

            try
            {
                var page = await client.ListEventsAsync(request, deadline: RpcDeadline.In(target.Timeout(parse)), cancellationToken: ct);
                foreach (var e in page.Events)
                {
                    await stdout.WriteLineAsync(Format(e));
                }

                if (!parse.GetValue(follow))
                {
                    return CliApp.Ok;
                }

                using var watch = client.WatchEvents(new WatchEventsRequest { AfterSequence = page.LastSequence, Resource = request.Resource }, cancellationToken: ct);
                await foreach (var e in watch.ResponseStream.ReadAllAsync(ct))
                {
                    await stdout.WriteLineAsync(Format(e));
                    await stdout.FlushAsync(ct);
                }

                return CliApp.Ok;
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Cancelled && ct.IsCancellationRequested)
            {
                return CliApp.Ok; // Ctrl-C while following
            }
        }));
        return command;
    }

    public static string Format(ClusterEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        var where = string.Join(' ', new[] { e.Resource, e.Node }.Where(x => x.Length > 0));
        var gen = e.Generation > 0 ? $" g{e.Generation}" : "";
        return string.Create(CultureInfo.InvariantCulture, $"{e.Time.ToDateTimeOffset():yyyy-MM-ddTHH:mm:ss.fffZ} #{e.Sequence} {e.Severity,-8} {e.Kind} {where}{gen}: {e.Message}");
    }

    public static bool TryParseSince(string text, DateTimeOffset now, out DateTimeOffset since)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out since))
        {
            return true;
        }

        if (text.Length >= 2 && double.TryParse(text.AsSpan(0, text.Length - 1), NumberStyles.Float, CultureInfo.InvariantCulture, out var n) && n >= 0)
        {
            TimeSpan? ago = text[^1] switch
            {
                's' => TimeSpan.FromSeconds(n),
                'm' => TimeSpan.FromMinutes(n),
                'h' => TimeSpan.FromHours(n),
                'd' => TimeSpan.FromDays(n),
                _ => null,
            };
            if (ago is { } a)
            {
                since = now - a;
                return true;
            }
        }

        since = default;
        return false;
    }
}
