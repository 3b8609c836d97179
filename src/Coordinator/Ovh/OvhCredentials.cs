using System.Text.Json;
using HaMesh.Shared.Configuration;

namespace HaMesh.Coordinator.Ovh;

/// <summary>OVH API keys. Never logged, never in events or messages: <see cref="ToString"/> redacts.</summary>
public sealed class OvhCredentials(string applicationKey, string applicationSecret, string consumerKey)
{
    public string ApplicationKey { get; } = applicationKey;

    public string ApplicationSecret { get; } = applicationSecret;

    public string ConsumerKey { get; } = consumerKey;

    public override string ToString() => "OvhCredentials(redacted)";

    /// <summary>From the credentials file (mode 0600 or stricter) or, without one, OVH_APPLICATION_KEY / _SECRET / OVH_CONSUMER_KEY.</summary>
    /// <exception cref="InvalidOperationException">With a message that names the file or variable, never a key.</exception>
    public static OvhCredentials Load(string? path, Func<string, string?> environment, IFileProbe? files = null)
    {
        ArgumentNullException.ThrowIfNull(environment);
        if (!string.IsNullOrEmpty(path))
        {
            if ((files ?? FileProbe.System).CheckSecretFile(path) is { } problem)
            {
                throw new InvalidOperationException($"OVH credentials: {problem}");
            }

            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(path));
                string Field(string name) => doc.RootElement.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String && v.GetString() is { Length: > 0 } s
                    ? s
                    : throw new InvalidOperationException($"OVH credentials file '{path}' lacks {name}");
                return new OvhCredentials(Field("ApplicationKey"), Field("ApplicationSecret"), Field("ConsumerKey"));
            }
            catch (JsonException)
            {
                throw new InvalidOperationException($"OVH credentials file '{path}' is not valid JSON");
            }
        }

        string Env(string name) => environment(name) is { Length: > 0 } v ? v : throw new InvalidOperationException($"OVH credentials: no credentials file configured and {name} is not set");
        return new OvhCredentials(Env("OVH_APPLICATION_KEY"), Env("OVH_APPLICATION_SECRET"), Env("OVH_CONSUMER_KEY"));
    }
}
