using System.Net;
using System.Runtime.InteropServices;

namespace HaMesh.Agent.Host;

/// <summary>One address the kernel has on an interface: the interface (or IPv4 label, e.g. eth0:ha), the address and its prefix length.</summary>
public sealed record InterfaceAddress(string Interface, IPAddress Address, int PrefixLength);

/// <summary>The addresses configured on the host's interfaces, read in-process (what <c>ip addr show</c> prints).</summary>
public interface IInterfaceAddressSource
{
    /// <summary>Every interface name the kernel knows and the addresses on it (an interface without addresses is listed with none).</summary>
    InterfaceAddressTable Read();
}

/// <summary>A snapshot of interfaces and their addresses.</summary>
public sealed class InterfaceAddressTable(IReadOnlyCollection<string> interfaces, IReadOnlyList<InterfaceAddress> addresses)
{
    public IReadOnlyCollection<string> Interfaces { get; } = interfaces;

    public IReadOnlyList<InterfaceAddress> Addresses { get; } = addresses;

    public bool HasInterface(string name) => Interfaces.Contains(name);

    /// <summary>
    /// The addresses of <paramref name="interfaceName"/> as <c>ip addr show dev IFACE</c> lists them: its own and
    /// those carrying a label of it (IPv4 labels are "IFACE:suffix"; iproute2 refuses any other label).
    /// </summary>
    public IEnumerable<InterfaceAddress> Of(string interfaceName) =>
        Addresses.Where(a => a.Interface == interfaceName
            || (a.Interface.Length > interfaceName.Length && a.Interface[interfaceName.Length] == ':' && a.Interface.StartsWith(interfaceName, StringComparison.Ordinal)));
}

/// <summary>
/// getifaddrs(3) through libc: the same netlink dump (RTM_GETLINK + RTM_GETADDR) <c>ip -j addr</c> makes,
/// in the agent's own network namespace, without starting a process.
/// </summary>
public sealed partial class KernelInterfaceAddresses : IInterfaceAddressSource
{
    private const ushort AfInet = 2;
    private const ushort AfInet6 = 10;

    public InterfaceAddressTable Read()
    {
        unsafe
        {
            if (GetIfAddrs(out var list) != 0)
            {
                throw new IOException($"getifaddrs failed: errno {Marshal.GetLastPInvokeError()}");
            }

            try
            {
                var names = new HashSet<string>(StringComparer.Ordinal);
                var addresses = new List<InterfaceAddress>();
                for (var p = (IfAddrs*)list; p != null; p = p->Next)
                {
                    var name = Marshal.PtrToStringUTF8(p->Name) ?? "";
                    // an IPv4 label (eth0:ha) names the address, not the device
                    var colon = name.IndexOf(':', StringComparison.Ordinal);
                    names.Add(colon > 0 ? name[..colon] : name);
                    if (p->Addr == IntPtr.Zero)
                    {
                        continue;
                    }

                    var family = *(ushort*)p->Addr;
                    if (family == AfInet)
                    {
                        addresses.Add(new InterfaceAddress(name, new IPAddress(new ReadOnlySpan<byte>((byte*)p->Addr + 4, 4)), PrefixOf(p->Netmask, 4, 4)));
                    }
                    else if (family == AfInet6)
                    {
                        addresses.Add(new InterfaceAddress(name, new IPAddress(new ReadOnlySpan<byte>((byte*)p->Addr + 8, 16)), PrefixOf(p->Netmask, 8, 16)));
                    }
                }

                return new InterfaceAddressTable(names, addresses);
            }
            finally
            {
                FreeIfAddrs(list);
            }
        }
    }

    private static unsafe int PrefixOf(IntPtr netmask, int offset, int length)
    {
        if (netmask == IntPtr.Zero)
        {
            return length * 8;
        }

        var bits = 0;
        foreach (var b in new ReadOnlySpan<byte>((byte*)netmask + offset, length))
        {
            bits += System.Numerics.BitOperations.PopCount(b);
        }

        return bits;
    }

    [LibraryImport("libc", EntryPoint = "getifaddrs", SetLastError = true)]
    private static partial int GetIfAddrs(out IntPtr ifap);

    [LibraryImport("libc", EntryPoint = "freeifaddrs")]
    private static partial void FreeIfAddrs(IntPtr ifa);

    /// <summary>struct ifaddrs (glibc, musl: same layout).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct IfAddrs
    {
        public IfAddrs* Next;
        public IntPtr Name;
        public uint Flags;
        public IntPtr Addr;
        public IntPtr Netmask;
        public IntPtr BroadOrDst;
        public IntPtr Data;
    }
}
