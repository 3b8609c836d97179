using System.Text.Json;
using Microsoft.Extensions.Configuration;

namespace HaMesh.Shared.Configuration;

/// <summary>The outcome of loading the cluster file: the options, or every problem found.</summary>
public sealed record ConfigLoadResult(HaMeshOptions? Options, IReadOnlyList<ConfigError> Errors)
{
    public bool IsValid => Options is not null && Errors.Count == 0;
}

/// <summary>
/// Reads the cluster file (JSON) with environment-variable overrides (<c>HaMesh__Agent__Node=a</c>),
/// binds it strictly (unknown keys are errors: a typo must not silently become a default) and validates it.
/// </summary>
public static class ConfigLoader
{
    /// <summary>Environment variable naming the cluster file when --config is not given.</summary>
    public const string PathVariable = "HAMESH_CONFIG";

    public const string DefaultPath = "/etc/hamesh/cluster.json";

    public static ConfigLoadResult Load(string path, ConfigScope scope, IEnumerable<KeyValuePair<string, string?>>? overrides = null, bool environment = true)
    {
        if (!File.Exists(path))
        {
            return Fail(HaMeshOptions.SectionName, $"config file '{path}' does not exist (pass --config PATH or set {PathVariable})");
        }

        var builder = new ConfigurationBuilder();
        try
        {
            builder.AddJsonFile(Path.GetFullPath(path), optional: false, reloadOnChange: false);
            if (environment)
            {
                builder.AddEnvironmentVariables();
            }

            if (overrides is not null)
            {
                builder.AddInMemoryCollection(overrides);
            }

            return Bind(builder.Build(), scope);
        }
        catch (Exception ex) when (ex is InvalidDataException or FormatException or JsonException or IOException)
        {
            return Fail(HaMeshOptions.SectionName, $"config file '{path}' is not valid JSON: {ex.InnerException?.Message ?? ex.Message}");
        }
    }

    /// <summary>Binds and validates an already-built configuration (hosts pass theirs).</summary>
    public static ConfigLoadResult Bind(IConfiguration configuration, ConfigScope scope, IFileProbe? files = null)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var section = configuration.GetSection(HaMeshOptions.SectionName);
        if (!section.Exists())
        {
            return Fail(HaMeshOptions.SectionName, "section is missing from the configuration");
        }

        HaMeshOptions options;
        try
        {
            options = section.Get<HaMeshOptions>(o => o.ErrorOnUnknownConfiguration = true) ?? new HaMeshOptions();
        }
        catch (InvalidOperationException ex)
        {
            return Fail(KeyOf(ex) ?? HaMeshOptions.SectionName, Describe(ex));
        }

        return new ConfigLoadResult(options, ConfigValidator.Validate(options, scope, files));
    }

    private static ConfigLoadResult Fail(string key, string reason) => new(null, [new ConfigError(key, reason)]);

    // The binder says "Failed to convert configuration value at 'HaMesh:Cluster:Timings:Lease' to type 'System.TimeSpan'."
    // or "'X' was not found on 'HaMesh.Shared.Configuration.AgentOptions'"; surface the key when it names one.
    private static string? KeyOf(InvalidOperationException ex)
    {
        var message = ex.Message;
        var at = message.IndexOf(" at '", StringComparison.Ordinal);
        if (at < 0)
        {
            return null;
        }

        var start = at + 5;
        var end = message.IndexOf('\'', start);
        return end > start ? message[start..end] : null;
    }

    private static string Describe(InvalidOperationException ex)
    {
        var message = ex.Message;
        if (message.Contains("Failed to convert", StringComparison.Ordinal))
        {
            var type = message.Contains("TimeSpan", StringComparison.Ordinal)
                ? "a duration such as 00:00:02 or 00:00:00.250"
                : "a value of the right type";
            return $"invalid value: expected {type} ({ex.InnerException?.Message ?? message})";
        }

        return message.Contains("was not found", StringComparison.Ordinal)
            ? $"unknown setting: {message}"
            : message;
    }
}
