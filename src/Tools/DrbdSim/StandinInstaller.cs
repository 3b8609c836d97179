using System.Diagnostics;

namespace HaMesh.DrbdSim;

/// <summary>Installs the C stand-in client as drbdadm, drbdsetup, mount and umount (building it with gcc if needed).</summary>
public static class StandinInstaller
{
    public static readonly string[] Names = ["drbdadm", "drbdsetup", "mount", "umount"];

    /// <summary>Returns the path of the compiled stand-in, compiling native/drbdsim-standin.c with gcc when missing.</summary>
    public static string EnsureBuilt(string baseDir, string outputDir)
    {
        var bin = Path.Combine(baseDir, "drbdsim-standin");
        if (File.Exists(bin))
        {
            return bin;
        }

        var src = Path.Combine(baseDir, "native", "drbdsim-standin.c");
        if (!File.Exists(src))
        {
            throw new FileNotFoundException("stand-in binary and source both missing", bin);
        }

        Directory.CreateDirectory(outputDir);
        bin = Path.Combine(outputDir, "drbdsim-standin");
        var psi = new ProcessStartInfo("gcc") { UseShellExecute = false };
        foreach (var a in new[] { "-O2", "-Wall", "-o", bin, src })
        {
            psi.ArgumentList.Add(a);
        }

        using var p = Process.Start(psi) ?? throw new InvalidOperationException("gcc did not start");
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException("gcc failed with exit code " + p.ExitCode.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        return bin;
    }

    /// <summary>Creates DIR/{drbdadm,drbdsetup,mount,umount} and DIR/drbdsim.socket (the socket path the client reads).</summary>
    public static void Install(string dir, string socket)
    {
        Directory.CreateDirectory(dir);
        var src = EnsureBuilt(AppContext.BaseDirectory, dir);
        foreach (var name in Names)
        {
            var dst = Path.Combine(dir, name);
            File.Copy(src, dst, overwrite: true);
            File.SetUnixFileMode(dst, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
                | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        }

        File.WriteAllText(Path.Combine(dir, "drbdsim.socket"), socket + "\n");
    }
}
