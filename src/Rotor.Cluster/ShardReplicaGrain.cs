using System.Globalization;
using Microsoft.Extensions.Logging;

namespace Rotor.Cluster;

/// <summary>The replica grain: a <see cref="ShardStore"/> in the silo's data folder. Searches are read-only and run
/// on the thread pool, several at once; appends, commits and copies run one at a time.</summary>
[SiloNamePlacement]
internal sealed class ShardReplicaGrain(SiloContext silo, ILogger<ShardReplicaGrain> log) : Grain, IShardReplicaGrain
{
    private ShardStore? _store;
    private int _shard = -1;

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        string key = this.GetPrimaryKeyString();
        int at = key.LastIndexOf('@');
        if (at <= 0 || !int.TryParse(key.AsSpan(0, at), NumberStyles.None, CultureInfo.InvariantCulture, out _shard))
            throw new RotorException($"replica grain key '{key}' is not SHARD@SILO");
        string name = SiloNamePlacement.SiloOf(key);
        if (name != silo.Name) throw new RotorException($"replica {key} was placed on silo '{silo.Name}'; it belongs on '{name}'");
        return Task.CompletedTask;
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _store?.Dispose();
        _store = null;
        return Task.CompletedTask;
    }

    private ShardStore Store()
    {
        if (_store is not null) return _store;
        string folder = silo.ShardFolder(_shard);
        var settings = ShardStore.ReadSettings(folder) ?? throw new RotorException($"silo '{silo.Name}' holds no replica of shard {_shard} ({folder})");
        return _store = ShardStore.OpenOrCreate(folder, _shard, settings);
    }

    public Task Open(ShardSettings settings, bool fresh)
    {
        if (!fresh && _store is not null && _store.Settings == settings) return Task.CompletedTask;
        _store?.Dispose();
        _store = null;
        string folder = silo.ShardFolder(_shard);
        // A new index starts empty; a replica left by an earlier index with other settings is replaced.
        if (Directory.Exists(folder) && (fresh || ShardStore.ReadSettings(folder) is { } old && old != settings)) Directory.Delete(folder, recursive: true);
        _store = ShardStore.OpenOrCreate(folder, _shard, settings);
        return Task.CompletedTask;
    }

    public Task<long> Append(ShardBatch batch) { var s = Store(); s.Append(batch); return Task.FromResult((long)s.Count); }

    public Task Commit() { Store().Commit(); return Task.CompletedTask; }

    public async Task Seal()
    {
        var s = Store();
        await Task.Run(s.Seal).ConfigureAwait(true);
    }

    public Task<ReplicaInfo> Info()
    {
        var s = Store();
        return Task.FromResult(new ReplicaInfo(_shard, silo.Name, s.Count, s.Sealed, s.Bytes));
    }

    public Task<WireBm25Statistics> Statistics(string text) { var s = Store(); return Task.Run(() => s.Statistics(text)); }

    public Task<ShardHits> Search(ShardQuery query) { var s = Store(); return Task.Run(() => s.Search(query)); }

    public Task<ClusterPassage[]> Fetch(long[] ordinals) => Task.FromResult(Store().Fetch(ordinals));

    public Task<(ShardFile[] Files, byte[] State)> Manifest()
    {
        var s = Store();
        var files = s.Files.ToArray();
        return Task.FromResult((files, File.ReadAllBytes(Path.Combine(s.Folder, ShardStore.StateFile))));
    }

    public Task<byte[]> ReadChunk(string path, long offset, int count) { var s = Store(); return Task.Run(() => s.ReadChunk(path, offset, count)); }

    public async Task CopyFrom(ShardSettings settings, string sourceSilo)
    {
        var source = GrainFactory.GetGrain<IShardReplicaGrain>(ReplicaKey(_shard, sourceSilo));
        var (files, state) = await source.Manifest().ConfigureAwait(true);
        _store?.Dispose();
        _store = null;
        log.LogInformation("copying shard {Shard} from silo {Source}: {Files} files, {Bytes} bytes", _shard, sourceSilo, files.Length, files.Sum(f => f.Bytes));
        _store = await ShardStore.InstallCopyAsync(silo.ShardFolder(_shard), _shard, settings, files, state, source.ReadChunk).ConfigureAwait(true);
        if (!_store.Sealed) throw new RotorException($"the copy of shard {_shard} from '{sourceSilo}' is not sealed");
    }

    public Task Drop()
    {
        _store?.Dispose();
        _store = null;
        string folder = silo.ShardFolder(_shard);
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        DeactivateOnIdle();
        return Task.CompletedTask;
    }

    /// <summary>The grain key of shard <paramref name="shard"/>'s replica on <paramref name="silo"/>.</summary>
    public static string ReplicaKey(int shard, string silo) => string.Create(CultureInfo.InvariantCulture, $"{shard}@{silo}");
}

/// <summary>The embedder grain: the silo's model.</summary>
[SiloNamePlacement]
internal sealed class EmbedderGrain(SiloContext silo) : Grain, IEmbedderGrain
{
    public Task<float[]> Embed(string[] texts) => Task.Run(() =>
    {
        var e = silo.Embedder;
        var buf = new float[texts.Length * e.Dimensions];
        e.Embed(texts, buf);
        return buf;
    });

    public Task<(string Sha256, int Dimensions)> Model() => Task.Run(() => (silo.Embedder.ModelSha256, silo.Embedder.Dimensions));
}
