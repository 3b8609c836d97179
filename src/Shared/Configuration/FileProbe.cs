namespace HaMesh.Shared.Configuration;

/// <summary>The file checks validation needs, behind an interface so tests need no real files.</summary>
public interface IFileProbe
{
    /// <summary>Null when the file exists, is readable and is not readable by group/others; else why not.</summary>
    string? CheckSecretFile(string path);
}

public sealed class FileProbe : IFileProbe
{
    public static readonly FileProbe System = new();

    public string? CheckSecretFile(string path)
    {
        if (!File.Exists(path))
        {
            return $"'{path}' does not exist or is not readable";
        }

        if (!OperatingSystem.IsWindows())
        {
            var mode = File.GetUnixFileMode(path);
            const UnixFileMode forbidden = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
                | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;
            if ((mode & forbidden) != 0)
            {
                return $"'{path}' has mode {Convert.ToString((int)mode, 8)}; it holds secrets and must be 0600 or stricter (chmod 600 {path})";
            }
        }

        try
        {
            using var stream = File.OpenRead(path);
        }
        catch (Exception ex) when (ex is UnauthorizedAccessException or IOException)
        {
            return $"'{path}' is not readable: {ex.Message}";
        }

        return null;
    }
}
