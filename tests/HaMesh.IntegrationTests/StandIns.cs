namespace HaMesh.IntegrationTests;

/// <summary>
/// A folder of stand-in executables (drbdadm, drbdsetup, ip, systemctl, mount, umount) that print
/// recorded outputs, for running the real agent where no DRBD exists. Recordings are keyed by argv.
/// </summary>
public sealed class StandIns : IDisposable
{
    private static readonly string[] Tools = ["drbdadm", "drbdsetup", "ip", "systemctl", "mount", "umount"];

    public StandIns()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("hamesh-standins-").FullName;
        System.IO.Directory.CreateDirectory(Path.Combine(Directory, "recordings"));
        var script = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "standins", "recorded"));
        foreach (var tool in Tools)
        {
            var path = Path.Combine(Directory, tool);
            File.WriteAllText(path, script);
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        ProcDrbd = Path.Combine(Directory, "proc-drbd");
    }

    public string Directory { get; }

    public string ProcDrbd { get; }

    public string Path_(string tool) => Path.Combine(Directory, tool);

    /// <summary>Records what <c>tool args...</c> prints and returns.</summary>
    public StandIns Record(string tool, string[] args, string stdout, int exitCode = 0, string stderr = "")
    {
        var key = tool + string.Concat(args.Select(a => "_" + a.Replace('/', '%').Replace(' ', '+')));
        var baseName = Path.Combine(Directory, "recordings", key);
        File.WriteAllText(baseName + ".out", stdout);
        if (exitCode != 0)
        {
            File.WriteAllText(baseName + ".rc", exitCode.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        if (stderr.Length > 0)
        {
            File.WriteAllText(baseName + ".err", stderr);
        }

        return this;
    }

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);
}
