using System.Globalization;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;
using Orleans.Runtime;

namespace Rotor.Cluster;

/// <summary>The directory's durable state (grain storage "rotor", a row in PostgreSQL).</summary>
[GenerateSerializer, Alias("rotor.DirectoryState")]
public sealed class DirectoryState
{
    /// <summary>Raised on every change of the replica sets.</summary>
    [Id(0)] public long Version { get; set; }
    /// <summary>Shard settings; null before an index is created.</summary>
    [Id(1)] public ShardSettings? Settings { get; set; }
    /// <summary>Shard number to the silos holding a replica.</summary>
    [Id(2)] public Dictionary<int, List<string>> Replicas { get; set; } = [];
    /// <summary>Source being ingested.</summary>
    [Id(3)] public string Source { get; set; } = "";
    /// <summary>Documents committed.</summary>
    [Id(4)] public long Documents { get; set; }
    /// <summary>Passages committed.</summary>
    [Id(5)] public long Passages { get; set; }
    /// <summary>Every replica sealed after the last ingestion.</summary>
    [Id(6)] public bool Sealed { get; set; }
}

/// <summary>The directory grain. Reentrant so that <see cref="Layout"/> answers while a copy runs; changes are
/// serialized by one async lock.</summary>
[Reentrant]
internal sealed class ClusterDirectoryGrain(
    [PersistentState("directory", ClusterNames.Storage)] IPersistentState<DirectoryState> state,
    IClusterMembershipService membership,
    ILogger<ClusterDirectoryGrain> log) : Grain, IClusterDirectoryGrain
{
    private readonly SemaphoreSlim _change = new(1, 1);

    private DirectoryState S => state.State;

    public Task<ClusterLayout> Layout() => Task.FromResult(Snapshot());

    private ClusterLayout Snapshot() => new(S.Version, S.Settings,
        S.Replicas.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray()),
        new IngestProgress(S.Source, S.Documents, S.Passages, S.Sealed));

    public Task<SiloInfo[]> Silos() => Task.FromResult(membership.CurrentSnapshot.Members.Values
        .Select(m => new SiloInfo(m.Name, m.SiloAddress.ToString(), m.Status.ToString())).OrderBy(s => s.Name, StringComparer.Ordinal).ToArray());

    private List<string> LiveSilos() => membership.CurrentSnapshot.Members.Values.Where(m => m.Status == SiloStatus.Active)
        .Select(m => m.Name).Distinct().Order(StringComparer.Ordinal).ToList();

    private IShardReplicaGrain Replica(int shard, string silo) => GrainFactory.GetGrain<IShardReplicaGrain>(ShardReplicaGrain.ReplicaKey(shard, silo));

    public async Task<ClusterLayout> Create(ShardSettings settings, bool force)
    {
        settings.Validate();
        await _change.WaitAsync().ConfigureAwait(true);
        try
        {
            if (S.Settings is not null && !force)
            {
                if (S.Settings == settings) return Snapshot();
                throw new RotorException($"the cluster already holds an index ({ShardStore.Describe(S.Settings)}); pass --force to replace it with {ShardStore.Describe(settings)}");
            }
            var live = LiveSilos();
            if (live.Count < settings.Replicas)
                throw new RotorException($"{settings.Replicas} replicas a shard need {settings.Replicas} silos; {live.Count} are active ({string.Join(", ", live)})");
            var replicas = new Dictionary<int, List<string>>();
            for (int s = 0; s < settings.Shards; s++)
                replicas[s] = Enumerable.Range(0, settings.Replicas).Select(j => live[(s + j) % live.Count]).ToList();
            await Task.WhenAll(replicas.SelectMany(kv => kv.Value.Select(silo => Replica(kv.Key, silo).Open(settings, fresh: true)))).ConfigureAwait(true);
            state.State = new DirectoryState { Version = S.Version + 1, Settings = settings, Replicas = replicas };
            await state.WriteStateAsync().ConfigureAwait(true);
            log.LogInformation("created index: {Settings} over {Silos}", ShardStore.Describe(settings), string.Join(", ", live));
            return Snapshot();
        }
        finally { _change.Release(); }
    }

    public async Task<ClusterLayout> CommitIngest(string source, long documents, long passages, bool sealedNow)
    {
        await _change.WaitAsync().ConfigureAwait(true);
        try
        {
            if (S.Settings is null) throw new RotorException("the cluster holds no index: run 'rotor cluster ingest' with --shards and --replicas first");
            if (S.Documents > 0 && S.Source != source)
                throw new RotorException($"the cluster index holds {S.Documents:N0} documents of '{S.Source}'; ingesting '{source}' into it needs --force (a new index)");
            if (documents < S.Documents || passages < S.Passages)
                throw new RotorException($"ingestion progress may not go back (committed {S.Documents:N0} documents, {S.Passages:N0} passages; asked {documents:N0}, {passages:N0})");
            S.Source = source; S.Documents = documents; S.Passages = passages; S.Sealed = sealedNow;
            await state.WriteStateAsync().ConfigureAwait(true);
            return Snapshot();
        }
        finally { _change.Release(); }
    }

    public async Task<ClusterLayout> Heal()
    {
        await _change.WaitAsync().ConfigureAwait(true);
        try { await HealLocked().ConfigureAwait(true); return Snapshot(); }
        finally { _change.Release(); }
    }

    private async Task HealLocked()
    {
        if (S.Settings is not { } settings) return;
        var live = LiveSilos();
        var liveSet = live.ToHashSet(StringComparer.Ordinal);
        bool changed = false;
        foreach (var (shard, reps) in S.Replicas.OrderBy(kv => kv.Key))
        {
            int lost = reps.RemoveAll(r => !liveSet.Contains(r));
            if (lost > 0)
            {
                changed = true;
                log.LogWarning("shard {Shard}: {Lost} replica(s) lost with their silo; {Left} left", shard, lost, reps.Count);
            }
        }
        if (changed) { S.Version++; await state.WriteStateAsync().ConfigureAwait(true); changed = false; }
        // Copies need a sealed index: while ingesting, files are still changing (a lost replica is then restored by
        // the next heal after the ingestion seals).
        if (!S.Sealed) return;
        foreach (var (shard, reps) in S.Replicas.OrderBy(kv => kv.Key))
        {
            if (reps.Count == 0) { log.LogError("shard {Shard}: every replica is lost; restart a silo that held it", shard); continue; }
            while (reps.Count < settings.Replicas)
            {
                var target = live.Where(s => !reps.Contains(s)).OrderBy(s => Load(s)).ThenBy(s => s, StringComparer.Ordinal).FirstOrDefault();
                if (target is null) break;
                var source = reps[0];
                log.LogInformation("shard {Shard}: copying from {Source} to {Target}", shard, source, target);
                await Replica(shard, target).CopyFrom(settings, source).ConfigureAwait(true);
                reps.Add(target);
                S.Version++;
                await state.WriteStateAsync().ConfigureAwait(true);
            }
        }
    }

    private int Load(string silo) => S.Replicas.Values.Count(r => r.Contains(silo));

    public async Task<ClusterLayout> Rebalance()
    {
        await _change.WaitAsync().ConfigureAwait(true);
        try
        {
            await HealLocked().ConfigureAwait(true);
            if (S.Settings is not { } settings || !S.Sealed) return Snapshot();
            var live = LiveSilos();
            while (true)
            {
                var ordered = live.OrderBy(Load).ThenBy(s => s, StringComparer.Ordinal).ToList();
                string least = ordered[0], most = ordered[^1];
                if (Load(most) - Load(least) <= 1) break;
                // A shard on the fullest silo that the emptiest one does not hold.
                var move = S.Replicas.OrderBy(kv => kv.Key).FirstOrDefault(kv => kv.Value.Contains(most) && !kv.Value.Contains(least));
                if (move.Value is null) break;
                log.LogInformation("rebalance: shard {Shard} from {From} to {To}", move.Key, most, least);
                await Replica(move.Key, least).CopyFrom(settings, most).ConfigureAwait(true);
                move.Value[move.Value.IndexOf(most)] = least;
                S.Version++;
                await state.WriteStateAsync().ConfigureAwait(true);
                await Replica(move.Key, most).Drop().ConfigureAwait(true);
            }
            return Snapshot();
        }
        finally { _change.Release(); }
    }
}

/// <summary>Names shared by silos and clients.</summary>
public static class ClusterNames
{
    /// <summary>The grain storage provider of the directory.</summary>
    public const string Storage = "rotor";

    /// <summary>Default cluster and service id.</summary>
    public const string DefaultClusterId = "rotor";

    /// <summary>The text of a layout for people.</summary>
    public static string Describe(ClusterLayout layout) => layout.Settings is null ? "no index" : string.Create(CultureInfo.InvariantCulture,
        $"{ShardStore.Describe(layout.Settings)}; {layout.Ingest.Documents:N0} documents, {layout.Ingest.Passages:N0} passages of '{layout.Ingest.Source}'{(layout.Ingest.Sealed ? "" : " (not sealed)")}; layout version {layout.Version}");
}
