using Orleans.Concurrency;

namespace Rotor.Cluster;

/// <summary>
/// One replica of one shard, living on the silo whose name ends its key: <c>"{shard}@{silo}"</c> (placed there by
/// <see cref="SiloNamePlacementAttribute"/>; when that silo is gone the call fails and the caller tries another
/// replica). The replica's files are <see cref="ShardStore"/>'s, in the silo's data folder.
/// </summary>
public interface IShardReplicaGrain : IGrainWithStringKey
{
    /// <summary>Opens the replica's shard with <paramref name="settings"/>; with <paramref name="fresh"/> (a new index)
    /// whatever the folder held is deleted first and the shard starts empty.</summary>
    Task Open(ShardSettings settings, bool fresh);

    /// <summary>Takes in a batch (passages already held are skipped); returns the passages held.</summary>
    Task<long> Append(ShardBatch batch);

    /// <summary>Makes the appended passages durable.</summary>
    Task Commit();

    /// <summary>Commits, builds BM25: the replica becomes searchable and copyable.</summary>
    Task Seal();

    /// <summary>What the replica holds.</summary>
    [ReadOnly] Task<ReplicaInfo> Info();

    /// <summary>BM25 statistics for the query terms of <paramref name="text"/>.</summary>
    [ReadOnly] Task<WireBm25Statistics> Statistics(string text);

    /// <summary>Candidates for a query (<see cref="ShardStore.Search"/>).</summary>
    [ReadOnly] Task<ShardHits> Search(ShardQuery query);

    /// <summary>Passages by global ordinal.</summary>
    [ReadOnly] Task<ClusterPassage[]> Fetch(long[] ordinals);

    /// <summary>The files of the sealed replica and its state file's bytes (what a copy needs).</summary>
    [ReadOnly] Task<(ShardFile[] Files, byte[] State)> Manifest();

    /// <summary>Bytes of one of the listed files.</summary>
    [ReadOnly] Task<byte[]> ReadChunk(string path, long offset, int count);

    /// <summary>Makes this replica a copy of the replica of the same shard on silo <paramref name="sourceSilo"/>.</summary>
    Task CopyFrom(ShardSettings settings, string sourceSilo);

    /// <summary>Deletes the replica's files (it was moved to another silo).</summary>
    Task Drop();
}

/// <summary>The embedding model of one silo (key: the silo's name): ingestion sends batches of passage texts to the silos.</summary>
public interface IEmbedderGrain : IGrainWithStringKey
{
    /// <summary>Embeds <paramref name="texts"/> (one call of <c>SentenceEmbedder.Embed</c>, as a single-machine build embeds a batch); (texts, dimensions) row-major.</summary>
    [ReadOnly] Task<float[]> Embed(string[] texts);

    /// <summary>The model's SHA-256 and dimensions.</summary>
    [ReadOnly] Task<(string Sha256, int Dimensions)> Model();
}

/// <summary>
/// The cluster index's directory, one grain (key 0) whose state lives in PostgreSQL: the shard settings, which silos
/// hold each shard, and the committed ingestion progress. It replaces replicas lost with their silo
/// (<see cref="Heal"/>, called every few seconds by every silo) and evens the replicas out over the silos
/// (<see cref="Rebalance"/>).
/// </summary>
public interface IClusterDirectoryGrain : IGrainWithIntegerKey
{
    /// <summary>The current layout.</summary>
    [AlwaysInterleave] Task<ClusterLayout> Layout();

    /// <summary>Silos in the membership table.</summary>
    [AlwaysInterleave] Task<SiloInfo[]> Silos();

    /// <summary>Creates an empty index with <paramref name="settings"/>: replicas are spread over the live silos and
    /// opened. With <paramref name="force"/> an existing index is forgotten (its files stay until overwritten).</summary>
    Task<ClusterLayout> Create(ShardSettings settings, bool force);

    /// <summary>Records that every replica has the passages of the first <paramref name="documents"/> documents of
    /// <paramref name="source"/> (<paramref name="passages"/> passages) on disk.</summary>
    Task<ClusterLayout> CommitIngest(string source, long documents, long passages, bool sealedNow);

    /// <summary>Drops replicas whose silo is dead and copies shards to live silos until every shard has its replica
    /// count again (when the silos allow). Returns the layout after.</summary>
    Task<ClusterLayout> Heal();

    /// <summary><see cref="Heal"/>, then moves replicas from the fullest to the emptiest silos until their counts differ by at most one.</summary>
    Task<ClusterLayout> Rebalance();
}
