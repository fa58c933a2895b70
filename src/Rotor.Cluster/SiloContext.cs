using Rotor.Rag.Embeddings;

namespace Rotor.Cluster;

/// <summary>What the grains of one silo share: its name, its data folder (a subfolder a shard replica) and its
/// embedding model, loaded on first use.</summary>
public sealed class SiloContext : IDisposable
{
    private readonly Lazy<SentenceEmbedder> _embedder;

    /// <summary>A silo named <paramref name="name"/> keeping its shards under <paramref name="dataFolder"/>.</summary>
    public SiloContext(string name, string dataFolder, Func<SentenceEmbedder> embedder)
    {
        Name = name; DataFolder = Path.GetFullPath(dataFolder);
        Directory.CreateDirectory(DataFolder);
        _embedder = new Lazy<SentenceEmbedder>(embedder, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>The silo's name (unique in the cluster).</summary>
    public string Name { get; }

    /// <summary>Where its replicas live.</summary>
    public string DataFolder { get; }

    /// <summary>The embedding model.</summary>
    public SentenceEmbedder Embedder => _embedder.Value;

    /// <summary>The folder of shard <paramref name="shard"/>'s replica.</summary>
    public string ShardFolder(int shard) => Path.Combine(DataFolder, $"shard-{shard:D4}");

    /// <summary>Disposes the model if it was loaded.</summary>
    public void Dispose()
    {
        if (_embedder.IsValueCreated) _embedder.Value.Dispose();
    }
}
