using System.Security.Cryptography.X509Certificates;

namespace HaMesh.Shared.Security;

public enum ClusterRole
{
    Agent,
    Coordinator,
    Operator,
    Viewer,
}

/// <summary>The caller's identity from its client certificate: a role and, for agents, the node.</summary>
public sealed record ClusterIdentity(ClusterRole Role, string? Node)
{
    public override string ToString() => Node is null ? Role.ToString().ToLowerInvariant() : $"{Role.ToString().ToLowerInvariant()}/{Node}";
}

/// <summary>Roles as SAN URIs: hamesh://role/agent/NODE, hamesh://role/coordinator, hamesh://role/operator, hamesh://role/viewer.</summary>
public static class ClusterRoles
{
    public const string Prefix = "hamesh://role/";

    public static Uri Uri(ClusterRole role, string? node)
    {
        if (role == ClusterRole.Agent)
        {
            if (!Configuration.Names.IsValidName(node))
            {
                throw new ArgumentException($"an agent certificate needs a valid node name (got '{node}')", nameof(node));
            }

            return new Uri($"{Prefix}agent/{node}");
        }

        if (node is not null)
        {
            throw new ArgumentException($"only agent certificates name a node (role {role})", nameof(node));
        }

        return new Uri(Prefix + role.ToString().ToLowerInvariant());
    }

    /// <summary>Parses one SAN URI; null when it is not a HaMesh role.</summary>
    public static ClusterIdentity? Parse(string uri)
    {
        ArgumentNullException.ThrowIfNull(uri);
        if (!uri.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return null;
        }

        var parts = uri[Prefix.Length..].Split('/');
        return parts switch
        {
            ["agent", var node] when Configuration.Names.IsValidName(node) => new ClusterIdentity(ClusterRole.Agent, node),
            ["coordinator"] => new ClusterIdentity(ClusterRole.Coordinator, null),
            ["operator"] => new ClusterIdentity(ClusterRole.Operator, null),
            ["viewer"] => new ClusterIdentity(ClusterRole.Viewer, null),
            _ => null,
        };
    }

    /// <summary>The identity a certificate carries: exactly one HaMesh role URI in its SAN, else null.</summary>
    public static ClusterIdentity? From(X509Certificate2? certificate)
    {
        if (certificate is null)
        {
            return null;
        }

        var found = new List<ClusterIdentity>();
        foreach (var ext in certificate.Extensions.OfType<X509SubjectAlternativeNameExtension>())
        {
            foreach (var uri in SanUris(ext))
            {
                if (Parse(uri) is { } id)
                {
                    found.Add(id);
                }
            }
        }

        return found.Count == 1 ? found[0] : null;
    }

    // X509SubjectAlternativeNameExtension enumerates DNS names and IPs only; URIs are read from the DER.
    private static List<string> SanUris(X509SubjectAlternativeNameExtension ext)
    {
        var reader = new System.Formats.Asn1.AsnReader(ext.RawData, System.Formats.Asn1.AsnEncodingRules.DER);
        var seq = reader.ReadSequence();
        var uriTag = new System.Formats.Asn1.Asn1Tag(System.Formats.Asn1.TagClass.ContextSpecific, 6);
        var result = new List<string>();
        while (seq.HasData)
        {
            var tag = seq.PeekTag();
            if (tag == uriTag)
            {
                result.Add(seq.ReadCharacterString(System.Formats.Asn1.UniversalTagNumber.IA5String, uriTag));
            }
            else
            {
                seq.ReadEncodedValue();
            }
        }

        return result;
    }
}
