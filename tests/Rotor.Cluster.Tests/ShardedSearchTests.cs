using Microsoft.Extensions.AI;
using Rotor.Index;
using Rotor.Rag.Corpus;
using Rotor.Rag.Pipeline;
using Rotor.Rag.Search;

namespace Rotor.Cluster.Tests;

/// <summary>
/// Shards in one process against one index of the whole corpus: real passages (the Wikipedia sample's first articles),
/// random unit vectors with repeats (so that scores tie exactly and the tie-break is tested), every mode and code.
/// The single index is Rotor.Rag's own <see cref="Retriever"/> over a <see cref="VectorIndex"/> built as `rotor ingest`
/// builds it; the cluster's answer must be identical: same passages, same order, bit-identical scores and ranks.
/// </summary>
public sealed class ShardedSearchTests : IDisposable
{
    private const int Dims = 48;
    private readonly string _dir = TestPaths.TempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (List<Passage> Passages, float[] Vectors) Corpus(int articles, int seed)
    {
        var docs = DocumentSource.Wiki(TestPaths.WikiSample!).ReadDocuments(articles);
        var passages = new PassageSplitter(100).Split(docs).ToList();
        var rng = new Random(seed);
        var vectors = new float[passages.Count * Dims];
        for (int i = 0; i < passages.Count; i++)
        {
            var v = vectors.AsSpan(i * Dims, Dims);
            if (i > 0 && i % 7 == 0) { vectors.AsSpan((i - 5) * Dims, Dims).CopyTo(v); continue; } // exact repeats: ties
            double n = 0;
            for (int d = 0; d < Dims; d++) { v[d] = (float)(rng.NextDouble() * 2 - 1); n += v[d] * v[d]; }
            for (int d = 0; d < Dims; d++) v[d] /= (float)Math.Sqrt(n);
        }
        return (passages, vectors);
    }

    private static Retriever Single(List<Passage> passages, float[] vectors, ShardSettings s)
    {
        var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = Dims, Code = s.Code, Metric = Metric.Cosine, KeepFullPrecision = s.Rescores });
        index.Add(passages.Select((p, i) => new IndexRecord(p.Id, vectors.AsMemory(i * Dims, Dims))));
        var ordinals = passages.Select((p, i) => (p.Id, i)).ToDictionary(x => x.Id, x => x.i);
        var dense = new IndexDenseSearcher(index, ordinals, new SearchOptions { RescoreFactor = s.RescoreFactor, IncludeFields = false }, ownsIndex: true);
        return new Retriever(passages, new NoEmbedder(), dense, Bm25Index.BuildInMemory(passages.Select(IndexText.Of)), ownsIndexes: true);
    }

    private List<ShardStore> Shards(List<Passage> passages, float[] vectors, ShardSettings s, string name)
    {
        var stores = Enumerable.Range(0, s.Shards).Select(i => ShardStore.OpenOrCreate(Path.Combine(_dir, name, $"shard-{i}"), i, s)).ToList();
        // Two batches, the second sent twice (as after a lost reply): the repeat must change nothing.
        int half = passages.Count / 2;
        foreach (var (from, to) in new[] { (0, half), (half, passages.Count), (half, passages.Count) })
            for (int shard = 0; shard < s.Shards; shard++)
            {
                var mine = Enumerable.Range(from, to - from).Where(i => ShardAssignment.ShardOf(passages[i].Id, s.Shards) == shard).ToList();
                var batchVectors = mine.SelectMany(i => vectors.AsSpan(i * Dims, Dims).ToArray()).ToArray();
                stores[shard].Append(new ShardBatch(mine.Select(i => ClusterPassage.From(i, passages[i])).ToList(), batchVectors));
                stores[shard].Commit();
            }
        foreach (var st in stores) st.Seal();
        return stores;
    }

    [WikiSampleFact]
    public async Task ShardsAnswerAsOneIndexInEveryModeAndCode()
    {
        var (passages, vectors) = Corpus(articles: 12, seed: 5);
        Assert.True(passages.Count > 300, $"{passages.Count} passages");
        var rng = new Random(9);
        foreach (var (code, rescore) in new[] { (CodeKind.Ternary, 10), (CodeKind.Ternary, 0), (CodeKind.Float32, 0), (CodeKind.Int8, 4) })
            foreach (int shardCount in new[] { 1, 3, 7 })
            {
                var s = new ShardSettings(shardCount, 1, Dims, "test", code, rescore, IndexStructure.Flat);
                using var single = Single(passages, vectors, s);
                var stores = Shards(passages, vectors, s, $"{code}-{rescore}-{shardCount}");
                try
                {
                    Assert.Equal(passages.Count, stores.Sum(x => x.Count));
                    var cluster = new ClusterRetriever(new LocalShardRouter(s, stores.Select(x => (IReadOnlyList<ShardStore>)[x]).ToList()), null);
                    for (int qi = 0; qi < 8; qi++)
                    {
                        // Queries: a passage's own vector (so ties of repeated vectors come first) or a random one; words of a passage.
                        int p = rng.Next(passages.Count);
                        float[] v = qi % 2 == 0 ? vectors.AsSpan(p * Dims, Dims).ToArray() : Enumerable.Range(0, Dims).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
                        string text = string.Join(' ', passages[p].Text.Split(' ').Skip(3).Take(6));
                        foreach (var mode in new[] { RetrievalMode.Dense, RetrievalMode.Lexical, RetrievalMode.Hybrid })
                            foreach (var (top, cands) in new[] { (1, 1), (5, 20), (10, 100) })
                            {
                                var options = new RetrievalOptions { Top = top, Mode = mode, Candidates = cands };
                                var want = single.Search(text, v, options);
                                var got = await cluster.SearchAsync(text, v, options);
                                string where = $"{code} rescore {rescore}, {shardCount} shards, {mode}, top {top}, query {qi}";
                                Assert.True(want.Hits.Count == got.Hits.Count, $"{where}: {got.Hits.Count} hits, expected {want.Hits.Count}");
                                for (int i = 0; i < want.Hits.Count; i++)
                                {
                                    var (a, b) = (want.Hits[i], got.Hits[i]);
                                    Assert.True(a.Passage == b.Passage, $"{where}: hit {i} is {b.Passage.Id}, expected {a.Passage.Id}");
                                    Assert.True(a.Score == b.Score && a.DenseScore == b.DenseScore && a.DenseRank == b.DenseRank && a.LexicalRank == b.LexicalRank,
                                        $"{where}: hit {i} {a.Passage.Id}: {b} differs from {a}");
                                }
                                Assert.Equal(want.DenseScores, got.DenseScores);
                            }
                    }
                }
                finally { foreach (var st in stores) st.Dispose(); }
            }
    }

    [WikiSampleFact]
    public void SummedBm25StatisticsAreTheWholeIndexs()
    {
        var (passages, _) = Corpus(articles: 6, seed: 1);
        var texts = passages.Select(IndexText.Of).ToList();
        using var whole = Bm25Index.BuildInMemory(texts);
        var parts = Enumerable.Range(0, 3).Select(s => Bm25Index.BuildInMemory(texts.Where((_, i) => i % 3 == s))).ToList();
        string q = "the history of anarchism and political philosophy";
        Assert.Equal(whole.Statistics(q).ToString(), Bm25Statistics.Sum(parts.Select(p => p.Statistics(q)).ToList()).ToString());
        var a = whole.Statistics(q); var b = Bm25Statistics.Sum(parts.Select(p => p.Statistics(q)).ToList());
        Assert.Equal((a.MaxDocuments, a.DocumentCount, a.SumTotalTermFrequency, a.SumDocumentFrequency), (b.MaxDocuments, b.DocumentCount, b.SumTotalTermFrequency, b.SumDocumentFrequency));
        Assert.Equal(a.Terms.OrderBy(t => t.Key), b.Terms.OrderBy(t => t.Key));
        foreach (var p in parts) p.Dispose();
    }

    [WikiSampleFact]
    public void ReopenedShardKeepsWhatWasCommittedAndDropsTheRest()
    {
        var (passages, vectors) = Corpus(articles: 3, seed: 2);
        var s = new ShardSettings(1, 1, Dims, "test", CodeKind.Ternary, 10, IndexStructure.Flat);
        string folder = Path.Combine(_dir, "reopen");
        int half = passages.Count / 2;
        using (var st = ShardStore.OpenOrCreate(folder, 0, s))
        {
            st.Append(new ShardBatch(passages.Take(half).Select((p, i) => ClusterPassage.From(i, p)).ToList(), vectors[..(half * Dims)]));
            st.Commit();
            st.Append(new ShardBatch(passages.Skip(half).Select((p, i) => ClusterPassage.From(half + i, p)).ToList(), vectors[(half * Dims)..]));
            // No commit: as if the silo died here.
        }
        using (var st = ShardStore.OpenOrCreate(folder, 0, s))
        {
            Assert.Equal(half, st.Count);
            Assert.Equal(half - 1, st.LastOrdinal);
            Assert.False(st.Sealed);
            Assert.Throws<RotorException>(() => st.Search(new ShardQuery("anarchism", null, RetrievalMode.Lexical, 5, null)));
            st.Append(new ShardBatch(passages.Select((p, i) => ClusterPassage.From(i, p)).ToList(), vectors));
            st.Seal();
            Assert.Equal(passages.Count, st.Count);
        }
        using (var st = ShardStore.OpenOrCreate(folder, 0, s))
        {
            Assert.True(st.Sealed);
            Assert.Equal(passages.Select(p => p.Id), st.Passages.Select(p => p.Id));
            Assert.Contains(st.Files, f => f.Path == "vectors.rix");
        }
        // Other settings are refused by name.
        var e = Assert.Throws<RotorException>(() => ShardStore.OpenOrCreate(folder, 0, s with { Shards = 2 }));
        Assert.Contains("settings", e.Message);
    }

    [Fact]
    public void ShardOfIsFixedAndSpreads()
    {
        // Fixed values: the assignment may never change, or existing clusters would look for passages in the wrong shard.
        Assert.Equal(ShardAssignment.ShardOf("Anarchism-0", 1000), ShardAssignment.ShardOf("Anarchism-0", 1000));
        var counts = new int[4];
        for (int i = 0; i < 4000; i++) counts[ShardAssignment.ShardOf($"doc-{i}", 4)]++;
        Assert.All(counts, c => Assert.InRange(c, 850, 1150));
        Assert.Equal(0, ShardAssignment.ShardOf("x", 1));
    }

    private sealed class NoEmbedder : IEmbeddingGenerator<string, Embedding<float>>
    {
        public Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null, CancellationToken cancellationToken = default)
            => throw new InvalidOperationException("the tests pass vectors");
        public object? GetService(Type serviceType, object? serviceKey = null) => null;
        public void Dispose() { }
    }
}
