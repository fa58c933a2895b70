using Npgsql;

namespace Rotor.Cluster;

/// <summary>
/// Orleans' tables in PostgreSQL: membership (clustering) and grain state (persistence), made by the SQL scripts that
/// ship with Orleans' ADO.NET providers. The scripts are looked for in a folder (<c>sql/</c> beside the assembly by
/// default, copied there by the build from <c>src/Rotor.Cluster/sql</c>), run once, in order, under an advisory lock
/// so that silos starting together do not race.
/// </summary>
public static class PostgresSchema
{
    /// <summary>The scripts, in the order they run.</summary>
    public static readonly string[] Scripts = ["PostgreSQL-Main.sql", "PostgreSQL-Clustering.sql", "PostgreSQL-Clustering-3.7.0.sql", "PostgreSQL-Persistence.sql"];

    /// <summary>The default scripts folder: <c>sql</c> beside this assembly.</summary>
    public static string DefaultFolder => Path.Combine(AppContext.BaseDirectory, "sql");

    /// <summary>The folder's missing scripts (empty when all are there).</summary>
    public static IReadOnlyList<string> Missing(string folder) => Scripts.Where(s => !File.Exists(Path.Combine(folder, s))).ToList();

    /// <summary>Creates Orleans' tables unless they exist.</summary>
    /// <exception cref="RotorException">A script is missing or the database refuses it (the script is named).</exception>
    public static async Task EnsureAsync(string connectionString, string? folder = null, CancellationToken cancellationToken = default)
    {
        folder ??= DefaultFolder;
        await using var conn = new NpgsqlConnection(connectionString);
        try { await conn.OpenAsync(cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (e is NpgsqlException or ArgumentException)
        {
            throw new RotorException($"--postgres: cannot connect to PostgreSQL: {e.Message}", e);
        }
        await using (var lockCmd = new NpgsqlCommand("SELECT pg_advisory_lock(7231701)", conn)) await lockCmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await using (var check = new NpgsqlCommand("SELECT to_regclass('orleansquery') IS NOT NULL AND to_regclass('orleansstorage') IS NOT NULL", conn))
                if (await check.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is true) return;
            var missing = Missing(folder);
            if (missing.Count > 0)
                throw new RotorException($"{folder}: Orleans' PostgreSQL scripts missing ({string.Join(", ", missing)}); see docs/CLUSTER.md, 'Database'");
            foreach (var script in Scripts)
            {
                string path = Path.Combine(folder, script);
                await using var cmd = new NpgsqlCommand(await File.ReadAllTextAsync(path, cancellationToken).ConfigureAwait(false), conn);
                try { await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false); }
                catch (PostgresException e) { throw new RotorException($"{path}: PostgreSQL refused it: {e.MessageText}", e); }
            }
        }
        finally
        {
            await using var unlock = new NpgsqlCommand("SELECT pg_advisory_unlock(7231701)", conn);
            await unlock.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }
}
