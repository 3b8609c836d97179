using HaMesh.Shared.Configuration;
using Microsoft.Extensions.Configuration;

namespace HaMesh.Shared.Hosting;

/// <summary>
/// Start-up of both daemons: find the cluster file (--config PATH, else $HAMESH_CONFIG, else
/// /etc/hamesh/cluster.json), layer it under environment variables and the command line, bind and
/// validate. An invalid file stops the daemon before it listens: one line per problem on stderr,
/// exit code 2 (design §3).
/// </summary>
public static class DaemonConfiguration
{
    public const int InvalidConfigExitCode = 2;

    public static string ResolvePath(IConfiguration configuration, IReadOnlyDictionary<string, string?>? environment = null)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var fromArgs = configuration["config"];
        if (!string.IsNullOrWhiteSpace(fromArgs))
        {
            return fromArgs;
        }

        var fromEnv = environment is not null
            ? environment.GetValueOrDefault(ConfigLoader.PathVariable)
            : Environment.GetEnvironmentVariable(ConfigLoader.PathVariable);
        return string.IsNullOrWhiteSpace(fromEnv) ? ConfigLoader.DefaultPath : fromEnv;
    }

    /// <summary>Adds the cluster file to <paramref name="configuration"/> (env and args keep precedence) and validates it.</summary>
    public static ConfigLoadResult Load(IConfigurationManager configuration, string[] args, ConfigScope scope)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var path = ResolvePath(configuration);
        if (!File.Exists(path))
        {
            return new ConfigLoadResult(null, [new ConfigError(HaMeshOptions.SectionName, $"config file '{path}' does not exist (pass --config PATH or set {ConfigLoader.PathVariable})")]);
        }

        try
        {
            configuration.AddJsonFile(Path.GetFullPath(path), optional: false, reloadOnChange: false);
            configuration.AddEnvironmentVariables();
            configuration.AddCommandLine(args);
        }
        catch (Exception ex) when (ex is InvalidDataException or FormatException or IOException or System.Text.Json.JsonException)
        {
            return new ConfigLoadResult(null, [new ConfigError(HaMeshOptions.SectionName, $"config file '{path}' is not valid JSON: {ex.InnerException?.Message ?? ex.Message}")]);
        }

        return ConfigLoader.Bind(configuration, scope);
    }

    /// <summary>Writes the problems the way operators read them: one line each, key first.</summary>
    public static void WriteErrors(TextWriter error, string component, IReadOnlyList<ConfigError> errors)
    {
        ArgumentNullException.ThrowIfNull(error);
        ArgumentNullException.ThrowIfNull(errors);
        error.WriteLine($"{component}: invalid configuration ({errors.Count} problem{(errors.Count == 1 ? "" : "s")}); nothing was started:");
        foreach (var e in errors)
        {
            error.WriteLine($"  {e.Key}: {e.Reason}");
        }
    }
}
