namespace HaMesh.Shared.Hosting;

/// <summary>
/// The console log format, from the standard .NET key <c>Logging:Console:FormatterName</c>
/// (environment: <c>Logging__Console__FormatterName</c>): <c>simple</c> (one line, UTC), <c>json</c> (one JSON
/// object per line with the event id, category, message and every template value as a field — for
/// journald too: <c>journalctl -o cat -u hamesh-agent | jq</c>), or <c>systemd</c> (one line with the
/// syslog priority prefix journald understands, the default under systemd).
/// </summary>
public static class LogFormat
{
    public const string Simple = "simple";
    public const string Json = "json";
    public const string Systemd = "systemd";
    public const string ConfigurationKey = "Logging:Console:FormatterName";

    /// <exception cref="ArgumentException">Another formatter name.</exception>
    public static string Choose(string? configured, bool underSystemd)
    {
        if (string.IsNullOrWhiteSpace(configured))
        {
            return underSystemd ? Systemd : Simple;
        }

        var name = configured.Trim().ToLowerInvariant();
        return name is Simple or Json or Systemd
            ? name
            : throw new ArgumentException($"{ConfigurationKey} is '{configured}': use simple, json or systemd", nameof(configured));
    }
}
