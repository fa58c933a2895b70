using System.Diagnostics;
using Microsoft.Extensions.AI;
using Rotor.Rag.Search;

namespace Rotor.Cluster;

/// <summary>What the front door needs of one replica of a shard (a grain, or a <see cref="ShardStore"/> in tests).</summary>
public interface IShardReplica
{
    /// <summary>The replica's BM25 statistics for the terms of <paramref name="text"/>.</summary>
    Task<WireBm25Statistics> StatisticsAsync(string text);

    /// <summary>The replica's candidates (<see cref="ShardStore.Search"/>).</summary>
    Task<ShardHits> SearchAsync(ShardQuery query);

    /// <summary>Passages by global ordinal.</summary>
    Task<ClusterPassage[]> FetchAsync(long[] ordinals);
}

/// <summary>Calls a shard on one of its replicas, trying the next replica when one fails.</summary>
public interface IShardRouter
{
    /// <summary>The settings of the cluster index.</summary>
    Task<ShardSettings> SettingsAsync(CancellationToken cancellationToken);

    /// <summary>Runs <paramref name="call"/> on a replica of <paramref name="shard"/>; on failure, on the next one.</summary>
    Task<T> CallAsync<T>(int shard, Func<IShardReplica, Task<T>> call, CancellationToken cancellationToken);
}

/// <summary>
/// The cluster's search: a query goes to one replica of every shard and the answers are merged into the ranking that
/// one <see cref="Retriever"/> over the whole corpus gives (same index settings, same vectors):
/// <list type="bullet">
/// <item>lexical: each shard's BM25 statistics for the query terms are added up first, and every shard scores with
/// the sums (<see cref="Bm25Index.Search(string, int, Bm25Statistics?)"/>), so a document's score is the one a single
/// index gives it;</item>
/// <item>dense: the shards' candidates by code are merged by (code score, global ordinal) and cut to what one index
/// scans for (<c>candidates x rescore factor</c>), then ranked by their float32 cosine, ties to the lower ordinal, as
/// <see cref="Rotor.Index.VectorIndex"/> breaks them by slot;</item>
/// <item>hybrid: the two merged lists are fused by <see cref="ReciprocalRankFusion"/> over global ordinals.</item>
/// </list>
/// Exact (flat) shards give exactly the single index's results. With HNSW each shard walks its own graph, so results
/// are those of S smaller graphs merged, not of one graph; a shard's graph is built one vector after another in ordinal
/// order (<see cref="ShardStore"/>), so it is the same on every replica and the results do not depend on the number of
/// silos, the layout or which replica answers.
/// </summary>
public sealed class ClusterRetriever(IShardRouter router, IEmbeddingGenerator<string, Embedding<float>>? embedder) : IPassageRetriever
{
    /// <summary>Embeds the query (unless lexical) and searches the cluster.</summary>
    /// <exception cref="RotorException">The query is empty, or a shard has no replica that answers.</exception>
    public async Task<RetrievalResult> SearchAsync(string query, RetrievalOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        if (string.IsNullOrWhiteSpace(query)) throw new RotorException("the query is empty: nothing to search for");
        options ??= RetrievalOptions.Default;
        float[]? vector = null;
        var clock = Stopwatch.StartNew();
        if (options.Mode != RetrievalMode.Lexical)
        {
            var e = embedder ?? throw new RotorException($"{options.Mode} search needs an embedding model on this node");
            vector = (await e.GenerateAsync([query], null, cancellationToken).ConfigureAwait(false))[0].Vector.ToArray();
        }
        double embedMs = clock.Elapsed.TotalMilliseconds;
        return await SearchAsync(query, vector, options, cancellationToken).ConfigureAwait(false) with { EmbedMilliseconds = embedMs };
    }

    /// <summary>Searches with a query embedding computed elsewhere (null only in lexical mode).</summary>
    public async Task<RetrievalResult> SearchAsync(string query, float[]? vector, RetrievalOptions? options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        if (string.IsNullOrWhiteSpace(query)) throw new RotorException("the query is empty: nothing to search for");
        options ??= RetrievalOptions.Default;
        if (options.Top <= 0) throw new ArgumentOutOfRangeException(nameof(options), options.Top, "Top must be positive");
        var mode = options.Mode;
        if (mode != RetrievalMode.Lexical && (vector is null || vector.Length == 0)) throw new ArgumentException($"{mode} search needs the query vector", nameof(vector));
        var clock = Stopwatch.StartNew();
        var settings = await router.SettingsAsync(cancellationToken).ConfigureAwait(false);
        int k = options.Top, candidates = Math.Max(options.Candidates, k), shards = settings.Shards;

        WireBm25Statistics? global = null;
        if (mode != RetrievalMode.Dense)
        {
            var parts = await Task.WhenAll(Enumerable.Range(0, shards).Select(s => router.CallAsync(s, r => r.StatisticsAsync(query), cancellationToken))).ConfigureAwait(false);
            global = WireBm25Statistics.From(Bm25Statistics.Sum(parts.Select(p => p.ToStatistics()).ToList()));
        }
        var q = new ShardQuery(query, vector, mode, candidates, global);
        var answers = await Task.WhenAll(Enumerable.Range(0, shards).Select(s => router.CallAsync(s, r => r.SearchAsync(q), cancellationToken))).ConfigureAwait(false);

        var shardOf = new Dictionary<long, int>();
        for (int s = 0; s < shards; s++)
        {
            foreach (var c in answers[s].Dense) shardOf[c.Ordinal] = s;
            foreach (var c in answers[s].Lexical) shardOf[c.Ordinal] = s;
        }
        var dense = MergeDense(answers.Select(a => a.Dense), candidates, settings.Rescores ? settings.RescoreFactor : 0);
        var lexical = MergeLexical(answers.Select(a => a.Lexical), candidates);
        var ranked = mode switch
        {
            RetrievalMode.Dense => dense.Take(k).ToList(),
            RetrievalMode.Lexical => lexical.Take(k).ToList(),
            _ => ReciprocalRankFusion.Fuse([dense, lexical], k),
        };

        // Fetch the passages of the final hits from their shards.
        var byShard = ranked.GroupBy(h => shardOf[h.Ordinal]).ToList();
        var fetched = await Task.WhenAll(byShard.Select(g => router.CallAsync(g.Key, r => r.FetchAsync(g.Select(h => (long)h.Ordinal).ToArray()), cancellationToken))).ConfigureAwait(false);
        var passageAt = fetched.SelectMany(f => f).ToDictionary(p => p.Ordinal);
        double searchMs = clock.Elapsed.TotalMilliseconds;

        var denseAt = new Dictionary<int, (int Rank, float Score)>();
        for (int i = 0; i < dense.Count; i++) denseAt.TryAdd(dense[i].Ordinal, (i + 1, dense[i].Score));
        var lexicalAt = new Dictionary<int, int>();
        for (int i = 0; i < lexical.Count; i++) lexicalAt.TryAdd(lexical[i].Ordinal, i + 1);
        var hits = ranked.Select(h =>
        {
            bool d = denseAt.TryGetValue(h.Ordinal, out var ds);
            return new RetrievedPassage(passageAt[h.Ordinal].ToPassage(), h.Score, d ? ds.Score : null, d ? ds.Rank : null, lexicalAt.TryGetValue(h.Ordinal, out int l) ? l : null);
        }).ToList();
        return new RetrievalResult(hits, dense.Select(h => h.Score).ToList(), 0, searchMs);
    }

    /// <summary>
    /// The dense ranking one index of the whole corpus gives, from the shards' candidates: by code score (ties to the
    /// lower ordinal) cut to <c>candidates x rescoreFactor</c>, then by float32 score (same tie-break) cut to
    /// <paramref name="candidates"/>; without rescoring (factor 0) the code ranking cut to <paramref name="candidates"/>.
    /// </summary>
    public static IReadOnlyList<ScoredOrdinal> MergeDense(IEnumerable<IReadOnlyList<DenseCandidate>> shards, int candidates, int rescoreFactor)
    {
        var all = shards.SelectMany(s => s).ToList();
        all.Sort((a, b) => a.CodeScore != b.CodeScore ? b.CodeScore.CompareTo(a.CodeScore) : a.Ordinal.CompareTo(b.Ordinal));
        if (rescoreFactor > 1)
        {
            if (all.Count > candidates * rescoreFactor) all.RemoveRange(candidates * rescoreFactor, all.Count - candidates * rescoreFactor);
            all.Sort((a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Ordinal.CompareTo(b.Ordinal));
        }
        return all.Take(candidates).Select(c => new ScoredOrdinal(Narrow(c.Ordinal), c.Score)).ToList();
    }

    /// <summary>The BM25 ranking of the whole corpus from the shards' hits: by score, ties to the lower ordinal.</summary>
    public static IReadOnlyList<ScoredOrdinal> MergeLexical(IEnumerable<IReadOnlyList<LexicalCandidate>> shards, int candidates)
    {
        var all = shards.SelectMany(s => s).ToList();
        all.Sort((a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Ordinal.CompareTo(b.Ordinal));
        return all.Take(candidates).Select(c => new ScoredOrdinal(Narrow(c.Ordinal), c.Score)).ToList();
    }

    // Rankings address passages by int ordinal (Rotor.Rag); a cluster index holds at most int.MaxValue passages.
    private static int Narrow(long ordinal) => ordinal <= int.MaxValue ? (int)ordinal
        : throw new RotorException($"passage ordinal {ordinal} is past the {int.MaxValue} passages a cluster index may hold");
}

/// <summary>Replicas in this process (tests, tools): every shard answered by its <see cref="ShardStore"/>s, in order.</summary>
public sealed class LocalShardRouter(ShardSettings settings, IReadOnlyList<IReadOnlyList<ShardStore>> replicas) : IShardRouter
{
    /// <inheritdoc/>
    public Task<ShardSettings> SettingsAsync(CancellationToken cancellationToken) => Task.FromResult(settings);

    /// <inheritdoc/>
    public async Task<T> CallAsync<T>(int shard, Func<IShardReplica, Task<T>> call, CancellationToken cancellationToken)
    {
        Exception? last = null;
        foreach (var store in replicas[shard])
        {
            try { return await call(new Local(store)).ConfigureAwait(false); }
            catch (Exception e) when (e is not ArgumentException) { last = e; }
        }
        throw last is null ? new RotorException($"shard {shard} has no replica") : new RotorException($"shard {shard}: no replica answered ({last.Message})", last);
    }

    private sealed class Local(ShardStore store) : IShardReplica
    {
        public Task<WireBm25Statistics> StatisticsAsync(string text) => Task.FromResult(store.Statistics(text));
        public Task<ShardHits> SearchAsync(ShardQuery query) => Task.FromResult(store.Search(query));
        public Task<ClusterPassage[]> FetchAsync(long[] ordinals) => Task.FromResult(store.Fetch(ordinals));
    }
}
