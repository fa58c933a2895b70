using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Rotor.Cluster.Tests;

/// <summary>
/// A private PostgreSQL for a test: initdb into a temp folder, started with pg_ctl on a free loopback port (Unix socket
/// in the same folder, fsync off), stopped and deleted on dispose. As root, PostgreSQL refuses to run, so the
/// commands run as the 'postgres' user (runuser), which owns the folder.
/// </summary>
internal sealed class PostgresServer : IDisposable
{
    private readonly string _dir, _bin;
    private readonly bool _asPostgres;

    private PostgresServer(string bin, string dir, int port, bool asPostgres)
    {
        _bin = bin; _dir = dir; Port = port; _asPostgres = asPostgres;
    }

    public int Port { get; }

    public string ConnectionString => $"Host=127.0.0.1;Port={Port};Username=rotor;Database=postgres;Pooling=true";

    /// <summary>The folder of initdb and pg_ctl, or null with the reason.</summary>
    public static (string? Bin, string Why) Find()
    {
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable("PATH") is { } path) candidates.AddRange(path.Split(':'));
        if (Directory.Exists("/usr/lib/postgresql"))
            candidates.AddRange(Directory.GetDirectories("/usr/lib/postgresql").OrderDescending().Select(d => Path.Combine(d, "bin")));
        foreach (var c in candidates)
            if (File.Exists(Path.Combine(c, "initdb")) && File.Exists(Path.Combine(c, "pg_ctl"))) 
            {
                if (Environment.UserName == "root" && !File.Exists("/usr/sbin/runuser") && !File.Exists("/sbin/runuser"))
                    return (null, "running as root and runuser is missing: PostgreSQL cannot be started as the postgres user");
                return (c, "");
            }
        return (null, "PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)");
    }

    public static PostgresServer Start()
    {
        var (bin, why) = Find();
        if (bin is null) throw new InvalidOperationException(why);
        string dir = Path.Combine(Path.GetTempPath(), "rotor-pg-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        bool asPostgres = Environment.UserName == "root";
        if (asPostgres) Run("chown", ["postgres", dir], false);
        var pg = new PostgresServer(bin, dir, FreePort(), asPostgres);
        try
        {
            pg.Pg("initdb", ["-D", Path.Combine(dir, "data"), "-U", "rotor", "--auth=trust", "-E", "UTF8", "--no-sync"]);
            pg.Pg("pg_ctl", ["-D", Path.Combine(dir, "data"), "-w", "-t", "60", "-l", Path.Combine(dir, "log"), "-o",
                $"-p {pg.Port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", "start"]);
            return pg;
        }
        catch
        {
            pg.Dispose();
            throw;
        }
    }

    private void Pg(string tool, string[] args)
    {
        string exe = Path.Combine(_bin, tool);
        if (_asPostgres) Run(File.Exists("/usr/sbin/runuser") ? "/usr/sbin/runuser" : "/sbin/runuser", ["-u", "postgres", "--", exe, .. args], true);
        else Run(exe, args, true);
    }

    private static void Run(string exe, string[] args, bool check)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(90_000)) { p.Kill(true); throw new TimeoutException($"{exe} {string.Join(' ', args)} did not finish in 90 s"); }
        if (check && p.ExitCode != 0) throw new InvalidOperationException($"{exe} {string.Join(' ', args)} exited {p.ExitCode}: {err.Result}{output.Result}");
    }

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        try { if (Directory.Exists(Path.Combine(_dir, "data"))) Pg("pg_ctl", ["-D", Path.Combine(_dir, "data"), "-m", "immediate", "-w", "stop"]); }
        catch (Exception) { /* already stopped */ }
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
