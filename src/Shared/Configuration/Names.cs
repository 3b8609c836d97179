using System.Text.RegularExpressions;

namespace HaMesh.Shared.Configuration;

/// <summary>
/// Strict patterns for every name that may reach a command line. A name that does not match
/// is rejected at load, so no value from the file (or from an RPC) can become an option
/// (leading '-') or smuggle characters into an argument.
/// </summary>
public static partial class Names
{
    /// <summary>HaMesh node and resource names: lower-case, digits, '-', '_', '.'; 1-63 chars.</summary>
    public static bool IsValidName(string? value) => value is not null && NamePattern().IsMatch(value);

    /// <summary>DRBD resource names as drbdadm accepts them, never starting with '-'.</summary>
    public static bool IsValidDrbdResource(string? value) => value is not null && DrbdPattern().IsMatch(value);

    /// <summary>Linux interface names (IFNAMSIZ 16 → at most 15 chars).</summary>
    public static bool IsValidInterface(string? value) => value is not null && InterfacePattern().IsMatch(value);

    /// <summary>systemd unit names with an explicit suffix.</summary>
    public static bool IsValidUnit(string? value) => value is not null && UnitPattern().IsMatch(value);

    /// <summary>Absolute path without whitespace, '..' segments or control characters.</summary>
    public static bool IsValidAbsolutePath(string? value) =>
        value is not null && PathPattern().IsMatch(value) && !value.Split('/').Contains("..");

    public static bool IsValidFsType(string? value) => value is not null && FsTypePattern().IsMatch(value);

    public const string NameRule = "must match ^[a-z0-9][a-z0-9_.-]{0,62}$";

    [GeneratedRegex("^[a-z0-9][a-z0-9_.-]{0,62}$", RegexOptions.CultureInvariant)]
    private static partial Regex NamePattern();

    [GeneratedRegex("^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}$", RegexOptions.CultureInvariant)]
    private static partial Regex DrbdPattern();

    [GeneratedRegex("^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,14}$", RegexOptions.CultureInvariant)]
    private static partial Regex InterfacePattern();

    [GeneratedRegex(@"^[A-Za-z0-9_][A-Za-z0-9_.:@\\-]{0,200}\.(service|target|mount|socket|timer|path)$", RegexOptions.CultureInvariant)]
    private static partial Regex UnitPattern();

    [GeneratedRegex("^/[A-Za-z0-9_./+@:-]{0,4095}$", RegexOptions.CultureInvariant)]
    private static partial Regex PathPattern();

    [GeneratedRegex("^[a-z0-9]{1,16}$", RegexOptions.CultureInvariant)]
    private static partial Regex FsTypePattern();
}
