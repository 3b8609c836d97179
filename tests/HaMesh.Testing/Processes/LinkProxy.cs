using System.Net;
using System.Net.Sockets;

namespace HaMesh.Testing.Processes;

/// <summary>TCP proxy between the two simulated nodes; can cut the link (close) or black-hole it (silent drop).</summary>
public sealed class LinkProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private volatile int _target;
    private readonly List<TcpClient> _conns = [];
    private readonly CancellationTokenSource _cts = new();
    private volatile bool _blackhole;
    private volatile bool _refuse;

    public LinkProxy(int targetPort)
    {
        _target = targetPort;
        _listener.Start();
        _ = Task.Run(AcceptLoopAsync);
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public int Target
    {
        get => _target;
        set => _target = value;
    }

    /// <summary>Like pulling the cable with RSTs: existing connections are closed, new ones refused.</summary>
    public void Cut()
    {
        _refuse = true;
        CloseAll();
    }

    /// <summary>Like nftables drop: connections stay open but nothing passes.</summary>
    public void Blackhole() => _blackhole = true;

    public void Heal()
    {
        _blackhole = false;
        _refuse = false;
        CloseAll();
    }

    private void CloseAll()
    {
        lock (_conns)
        {
            foreach (var c in _conns)
            {
                c.Client.Close(0);
                c.Dispose();
            }

            _conns.Clear();
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_cts.IsCancellationRequested)
        {
            TcpClient inbound;
            try
            {
                inbound = await _listener.AcceptTcpClientAsync(_cts.Token);
            }
            catch (Exception)
            {
                return;
            }

            if (_refuse)
            {
                inbound.Client.Close(0);
                continue;
            }

            var outbound = new TcpClient();
            try
            {
                await outbound.ConnectAsync(IPAddress.Loopback, _target, _cts.Token);
            }
            catch (Exception)
            {
                inbound.Dispose();
                outbound.Dispose();
                continue;
            }

            lock (_conns)
            {
                _conns.Add(inbound);
                _conns.Add(outbound);
            }

            _ = Task.Run(() => PumpAsync(inbound, outbound));
            _ = Task.Run(() => PumpAsync(outbound, inbound));
        }
    }

    private async Task PumpAsync(TcpClient from, TcpClient to)
    {
        var buf = new byte[65536];
        try
        {
            var src = from.GetStream();
            var dst = to.GetStream();
            while (true)
            {
                var n = await src.ReadAsync(buf, _cts.Token);
                if (n == 0)
                {
                    break;
                }

                if (_blackhole)
                {
                    continue;
                }

                await dst.WriteAsync(buf.AsMemory(0, n), _cts.Token);
            }
        }
        catch (Exception)
        {
        }

        lock (_conns)
        {
            _conns.Remove(from);
            _conns.Remove(to);
        }

        from.Dispose();
        to.Dispose();
    }

    public async ValueTask DisposeAsync()
    {
        await _cts.CancelAsync();
        _listener.Stop();
        CloseAll();
    }
}

