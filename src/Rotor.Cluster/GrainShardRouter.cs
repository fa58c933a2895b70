namespace Rotor.Cluster;

/// <summary>
/// The front door's routing over grains: the directory's layout is cached (refreshed every
/// <paramref name="refresh"/>, and at once when every replica of a shard failed); a shard's calls rotate over its
/// replicas, and a failed call (silo gone, not yet declared dead) is tried on the next replica. A call that takes
/// longer than <paramref name="callTimeout"/> (default 30 s) counts as failed: a call in flight when its silo died
/// is otherwise only answered at the messaging response timeout. When the directory itself does not answer (its silo
/// just died) the last layout is used until it does; with no layout yet, a directory call that timed out is repeated
/// (three calls in all) before the query fails.
/// </summary>
public sealed class GrainShardRouter(IGrainFactory grains, TimeSpan refresh, TimeSpan? callTimeout = null) : IShardRouter
{
    private readonly TimeSpan _callTimeout = callTimeout ?? TimeSpan.FromSeconds(30);
    private readonly SemaphoreSlim _refreshing = new(1, 1);
    private volatile Cache? _cache;
    private int _next;
    private const int FirstFetchAttempts = 3;

    private sealed record Cache(ClusterLayout Layout, DateTime At);

    /// <summary>The layout, from the cache when younger than the refresh period.</summary>
    public async Task<ClusterLayout> LayoutAsync(bool force, CancellationToken cancellationToken)
    {
        var c = _cache;
        if (!force && c is not null && DateTime.UtcNow - c.At < refresh) return c.Layout;
        await _refreshing.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            c = _cache;
            if (!force && c is not null && DateTime.UtcNow - c.At < refresh) return c.Layout;
            // With a cached layout a directory that does not answer costs one call timeout and the cache serves. Without
            // one (the first fetch) there is nothing to fall back on, so a call that timed out (the directory being
            // activated on a busy or new silo) is asked again, FirstFetchAttempts calls in all, before the query fails.
            for (int attempt = 1; ; attempt++)
            {
                try
                {
                    var layout = await grains.GetGrain<IClusterDirectoryGrain>(0).Layout().WaitAsync(_callTimeout, cancellationToken).ConfigureAwait(false);
                    _cache = new Cache(layout, DateTime.UtcNow);
                    return layout;
                }
                catch (Exception) when (c is not null && !cancellationToken.IsCancellationRequested) { return c.Layout; }
                catch (TimeoutException e) when (attempt >= FirstFetchAttempts)
                {
                    throw new RotorException($"the cluster directory did not answer within {attempt} x {_callTimeout.TotalSeconds:0.#} s", e);
                }
                catch (TimeoutException) when (!cancellationToken.IsCancellationRequested) { }
            }
        }
        finally { _refreshing.Release(); }
    }

    /// <inheritdoc/>
    public async Task<ShardSettings> SettingsAsync(CancellationToken cancellationToken)
    {
        var layout = await LayoutAsync(false, cancellationToken).ConfigureAwait(false);
        if (layout.Settings is null) throw new RotorException("the cluster holds no index: run 'rotor cluster ingest' first");
        if (!layout.Ingest.Sealed) throw new RotorException("the cluster index is not sealed (an ingestion is running or did not finish): run 'rotor cluster ingest' to completion");
        return layout.Settings;
    }

    /// <inheritdoc/>
    public async Task<T> CallAsync<T>(int shard, Func<IShardReplica, Task<T>> call, CancellationToken cancellationToken)
    {
        Exception? last = null;
        for (int attempt = 0; attempt < 2; attempt++)
        {
            var layout = await LayoutAsync(attempt > 0, cancellationToken).ConfigureAwait(false);
            if (!layout.Replicas.TryGetValue(shard, out var reps) || reps.Length == 0)
                throw new RotorException($"shard {shard} has no replica in the cluster's layout (version {layout.Version})");
            int start = (int)((uint)Interlocked.Increment(ref _next) % (uint)reps.Length);
            for (int i = 0; i < reps.Length; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var grain = grains.GetGrain<IShardReplicaGrain>(ShardReplicaGrain.ReplicaKey(shard, reps[(start + i) % reps.Length]));
                try { return await call(new Replica(grain)).WaitAsync(_callTimeout, cancellationToken).ConfigureAwait(false); }
                catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested) { last = e; }
            }
        }
        throw new RotorException($"shard {shard}: no replica answered: {last?.Message}", last!);
    }

    private sealed class Replica(IShardReplicaGrain grain) : IShardReplica
    {
        public Task<WireBm25Statistics> StatisticsAsync(string text) => grain.Statistics(text);
        public Task<ShardHits> SearchAsync(ShardQuery query) => grain.Search(query);
        public Task<ClusterPassage[]> FetchAsync(long[] ordinals) => grain.Fetch(ordinals);
    }
}
