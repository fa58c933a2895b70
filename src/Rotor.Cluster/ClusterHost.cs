using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using Orleans.Hosting;
using Rotor.Rag.Embeddings;

namespace Rotor.Cluster;

/// <summary>How a silo runs (<c>rotor cluster silo</c>).</summary>
public sealed record SiloOptions
{
    /// <summary>The silo's name: unique in the cluster, stable across restarts (replicas are placed by name).</summary>
    public required string Name { get; init; }
    /// <summary>Folder of its shard replicas.</summary>
    public required string DataFolder { get; init; }
    /// <summary>Npgsql connection string of the cluster's database.</summary>
    public required string Postgres { get; init; }
    /// <summary>Address other silos and clients reach it at.</summary>
    public IPAddress Address { get; init; } = IPAddress.Loopback;
    /// <summary>Silo-to-silo port.</summary>
    public int SiloPort { get; init; } = 11111;
    /// <summary>Client gateway port.</summary>
    public int GatewayPort { get; init; } = 30000;
    /// <summary>Cluster id (several clusters may share a database).</summary>
    public string ClusterId { get; init; } = ClusterNames.DefaultClusterId;
    /// <summary>How long a membership probe may take before it counts as missed.</summary>
    public TimeSpan ProbeTimeout { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>Missed probes before a silo votes another dead.</summary>
    public int MissedProbes { get; init; } = 3;
    /// <summary>How often the silo asks the directory to restore lost replicas.</summary>
    public TimeSpan HealInterval { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>Longest a grain call may take (ingestion batches, replica copies).</summary>
    public TimeSpan ResponseTimeout { get; init; } = TimeSpan.FromMinutes(2);
    /// <summary>Folder of Orleans' PostgreSQL scripts (null: <see cref="PostgresSchema.DefaultFolder"/>).</summary>
    public string? SqlFolder { get; init; }
    /// <summary>Threads of the embedding model (0: all processors).</summary>
    public int EmbedThreads { get; init; }
    /// <summary>Log level of Orleans itself.</summary>
    public LogLevel OrleansLogLevel { get; init; } = LogLevel.Warning;
}

/// <summary>Builds silos and clients of a Rotor cluster: Orleans with ADO.NET membership and grain state in PostgreSQL.</summary>
public static class ClusterHost
{
    /// <summary>Creates the tables if needed and builds a silo host (not started).</summary>
    public static async Task<IHost> BuildSiloAsync(SiloOptions o, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(o);
        if (string.IsNullOrWhiteSpace(o.Name) || o.Name.Contains('@')) throw new RotorException($"--name '{o.Name}': a silo needs a name without '@'");
        await PostgresSchema.EnsureAsync(o.Postgres, o.SqlFolder, cancellationToken).ConfigureAwait(false);
        var builder = Host.CreateApplicationBuilder();
        Logging(builder.Logging, o.OrleansLogLevel);
        builder.Services.AddSingleton(_ => new SiloContext(o.Name, o.DataFolder,
            () => SentenceEmbedder.CreateMiniLm(new SentenceEmbedderOptions { Threads = o.EmbedThreads })));
        builder.Services.AddHostedService<ReplicaKeeper>();
        builder.Services.AddSingleton(o);
        builder.UseOrleans(silo =>
        {
            silo.Configure<ClusterOptions>(c => { c.ClusterId = o.ClusterId; c.ServiceId = o.ClusterId; });
            silo.Configure<Orleans.Configuration.SiloOptions>(s => s.SiloName = o.Name);
            silo.ConfigureEndpoints(o.Address, o.SiloPort, o.GatewayPort, listenOnAnyHostAddress: false);
            silo.UseAdoNetClustering(a => { a.Invariant = "Npgsql"; a.ConnectionString = o.Postgres; });
            silo.AddAdoNetGrainStorage(ClusterNames.Storage, a => { a.Invariant = "Npgsql"; a.ConnectionString = o.Postgres; });
            silo.Configure<ClusterMembershipOptions>(m =>
            {
                m.ProbeTimeout = o.ProbeTimeout;
                m.NumMissedProbesLimit = o.MissedProbes;
                m.TableRefreshTimeout = TimeSpan.FromSeconds(Math.Min(10, Math.Max(1, o.ProbeTimeout.TotalSeconds)));
                m.IAmAliveTablePublishTimeout = TimeSpan.FromSeconds(Math.Min(30, Math.Max(2, o.ProbeTimeout.TotalSeconds * 2)));
            });
            silo.Configure<SiloMessagingOptions>(m => m.ResponseTimeout = o.ResponseTimeout);
            silo.Services.AddPlacementDirector<SiloNamePlacement, SiloNamePlacementDirector>();
        });
        return builder.Build();
    }

    /// <summary>Connects a client (front door, command line) to the cluster whose membership is in <paramref name="postgres"/>.</summary>
    public static async Task<IHost> ConnectAsync(string postgres, string clusterId = ClusterNames.DefaultClusterId, TimeSpan? responseTimeout = null,
        LogLevel orleansLogLevel = LogLevel.Warning, CancellationToken cancellationToken = default)
    {
        var builder = Host.CreateApplicationBuilder();
        Logging(builder.Logging, orleansLogLevel);
        builder.UseOrleansClient(client =>
        {
            client.Configure<ClusterOptions>(c => { c.ClusterId = clusterId; c.ServiceId = clusterId; });
            client.UseAdoNetClustering(a => { a.Invariant = "Npgsql"; a.ConnectionString = postgres; });
            client.Configure<ClientMessagingOptions>(m => m.ResponseTimeout = responseTimeout ?? TimeSpan.FromMinutes(2));
            client.Configure<GatewayOptions>(g => g.GatewayListRefreshPeriod = TimeSpan.FromSeconds(5));
        });
        var host = builder.Build();
        try { await host.StartAsync(cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            host.Dispose();
            throw new RotorException($"cannot connect to the cluster '{clusterId}' (is a silo running, and --postgres right?): {e.Message}", e);
        }
        return host;
    }

    private static void Logging(ILoggingBuilder logging, LogLevel orleans)
    {
        logging.ClearProviders();
        logging.AddSimpleConsole(c => { c.SingleLine = true; c.TimestampFormat = "HH:mm:ss "; });
        logging.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(c => c.LogToStandardErrorThreshold = LogLevel.Trace);
        logging.SetMinimumLevel(orleans);
        logging.AddFilter("Rotor", LogLevel.Information);
        logging.AddFilter("Microsoft.Hosting", LogLevel.Warning);
    }
}

/// <summary>Asks the directory to restore lost replicas every <see cref="SiloOptions.HealInterval"/>.</summary>
internal sealed class ReplicaKeeper(IGrainFactory grains, SiloOptions options, ILogger<ReplicaKeeper> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.HealInterval);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            try { await grains.GetGrain<IClusterDirectoryGrain>(0).Heal().ConfigureAwait(false); }
            catch (Exception e) when (e is not OperationCanceledException) { log.LogDebug("heal: {Message}", e.Message); }
        }
    }
}
