using System.Globalization;
using Microsoft.Extensions.AI;
using Rotor.Index;
using Rotor.Rag.Corpus;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Pipeline;
using Rotor.Rag.Search;
using Xunit.Abstractions;

namespace Rotor.Cluster.Tests;

/// <summary>
/// HNSW shards. An approximate graph over a part of the corpus cannot give the very list one graph over all of it gives;
/// what holds instead: (a) a shard's graph depends only on its passages and their order, so every replica (built on its
/// own silo, in whatever batches, across restarts, or copied) holds the same file and gives the same answers, whatever
/// the silo count or layout; (b) the merged answers of the shards' graphs find the exact ranking at least as well as one
/// graph over the whole corpus at the same candidates and beam width. Shards and the single index hold more than the
/// 2048 vectors below which <see cref="VectorIndex"/> scans exactly, so the graphs are searched.
/// </summary>
public sealed class HnswShardTests(ITestOutputHelper output) : IDisposable
{
    private const int Passages = 4400, Dims = 48;
    private readonly string _dir = TestPaths.TempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>The sample's first <paramref name="count"/> passages (ordinal = position).</summary>
    private static List<Passage> FirstPassages(int count)
    {
        var passages = new PassageSplitter(100).Split(DocumentSource.Wiki(TestPaths.WikiSample!).ReadDocuments(int.MaxValue)).Take(count).ToList();
        Assert.True(passages.Count == count, $"the sample splits into {passages.Count} passages, the test needs {count}");
        return passages;
    }

    /// <summary>A replica of <paramref name="shard"/> fed in batches of <paramref name="batch"/> passages (in ordinal
    /// order, as ingestion sends them), committed after each; reopened after every <paramref name="reopenEvery"/>
    /// batches (0: never), as a silo restarted during ingestion reopens its replica; then sealed.</summary>
    private ShardStore Replica(string name, int shard, ShardSettings s, List<Passage> passages, float[] vectors, int dims, int batch, int reopenEvery)
    {
        string folder = Path.Combine(_dir, name, $"shard-{shard}");
        var store = ShardStore.OpenOrCreate(folder, shard, s);
        var mine = Enumerable.Range(0, passages.Count).Where(i => ShardAssignment.ShardOf(passages[i].Id, s.Shards) == shard).ToList();
        for (int b = 0; b * batch < mine.Count; b++)
        {
            var part = mine.Skip(b * batch).Take(batch).ToList();
            store.Append(new ShardBatch(part.Select(i => ClusterPassage.From(i, passages[i])).ToList(), part.SelectMany(i => vectors.AsSpan(i * dims, dims).ToArray()).ToArray()));
            store.Commit();
            if (reopenEvery > 0 && (b + 1) % reopenEvery == 0) { store.Dispose(); store = ShardStore.OpenOrCreate(folder, shard, s); }
        }
        store.Seal();
        return store;
    }

    private static string Sha(ShardStore store, string file) => store.Files.Single(f => f.Path == file).Sha256;

    [WikiSampleFact]
    public async Task EveryReplicaOfAnHnswShardHoldsTheSameGraphAndGivesTheSameAnswers()
    {
        var passages = FirstPassages(Passages);
        var rng = new Random(3);
        var vectors = new float[passages.Count * Dims];
        for (int i = 0; i < vectors.Length; i++) vectors[i] = (float)(rng.NextDouble() * 2 - 1);
        var s = new ShardSettings(2, 3, Dims, "test", CodeKind.Ternary, 10, IndexStructure.Hnsw);
        // Files other than BM25's (Lucene names each segment with a random id; its scores are tested equal elsewhere).
        // Three replicas of each shard, fed as different silos and runs would feed them: one batch; batches of 64;
        // batches of 100 with the replica closed and reopened after every third.
        var replicas = Enumerable.Range(0, s.Shards).Select(shard => new[]
        {
            Replica("one-batch", shard, s, passages, vectors, Dims, int.MaxValue, 0),
            Replica("batches", shard, s, passages, vectors, Dims, 64, 0),
            Replica("restarted", shard, s, passages, vectors, Dims, 100, 3),
        }).ToList();
        try
        {
            foreach (var r in replicas)
            {
                Assert.True(r[0].Count > 2048, $"shard {r[0].Shard} holds {r[0].Count} passages: its graph would not be searched");
                foreach (var other in r.Skip(1))
                    foreach (var f in r[0].Files.Where(f => !f.Path.StartsWith("bm25/", StringComparison.Ordinal)))
                        Assert.True(f == other.Files.Single(g => g.Path == f.Path), $"shard {r[0].Shard}: {other.Folder}/{f.Path} differs from {r[0].Folder}'s");
            }
            // A copy, as a lost replica is restored on another silo.
            var source = replicas[1][2];
            using var copy = await ShardStore.InstallCopyAsync(Path.Combine(_dir, "copy", "shard-1"), 1, s, source.Files,
                File.ReadAllBytes(Path.Combine(source.Folder, ShardStore.StateFile)), (path, offset, count) => Task.FromResult(source.ReadChunk(path, offset, count)));
            Assert.Equal(Sha(source, "vectors.rix"), Sha(copy, "vectors.rix"));

            // Answers through every combination of replicas are identical (and so whichever replica a query meets).
            var layouts = new[] { (0, 0), (1, 2), (2, 1) }.Select(l => new ClusterRetriever(new LocalShardRouter(s,
                [[replicas[0][l.Item1]], [l.Item2 == 2 ? copy : replicas[1][l.Item2]]]), null)).ToList();
            for (int qi = 0; qi < 20; qi++)
            {
                var v = Enumerable.Range(0, Dims).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
                var options = new RetrievalOptions { Top = 10, Mode = RetrievalMode.Dense, Candidates = 10 };
                var want = await layouts[0].SearchAsync("q", v, options);
                Assert.Equal(10, want.Hits.Count);
                foreach (var other in layouts.Skip(1))
                {
                    var got = await other.SearchAsync("q", v, options);
                    Assert.Equal(want.Hits.Select(h => (h.Passage.Id, h.Score)), got.Hits.Select(h => (h.Passage.Id, h.Score)));
                }
            }
        }
        finally { foreach (var r in replicas) foreach (var st in r) st.Dispose(); }
    }

    /// <summary>Questions about the sample's articles, then its section headings ("Title: Section") as short queries.</summary>
    private static List<string> Queries(List<Passage> passages) =>
    [
        .. ClusterIntegrationTests.Questions,
        .. passages.Where(p => p.Section.Length > 0).Select(p => $"{p.Title}: {p.Section}").Distinct().Where((_, i) => i % 3 == 0).Take(190),
    ];

    [WikiSampleFact]
    public async Task ShardGraphsFindTheExactRankingAtLeastAsWellAsOneGraph()
    {
        var passages = FirstPassages(Passages);
        // Passages embedded cut to 32 tokens: the whole sample at 256 takes minutes on a small machine, and recall
        // measures the graphs over real text embeddings, whatever their length.
        using var embedder = SentenceEmbedder.CreateMiniLm(new SentenceEmbedderOptions { MaxTokens = 32 });
        int d = embedder.Dimensions;
        var vectors = new float[passages.Count * d];
        embedder.Embed(passages.Select(IndexText.Of).ToList(), vectors);
        var queries = Queries(passages);
        var queryVectors = queries.Select(q => embedder.Embed(q)).ToList();
        var ordinals = passages.Select((p, i) => (p.Id, i)).ToDictionary(x => x.Id, x => x.i);

        Retriever Single(IndexStructure structure, int rescore)
        {
            var index = VectorIndex.Create(new VectorIndexOptions { Dimensions = d, Code = CodeKind.Ternary, Metric = Metric.Cosine, Structure = structure, KeepFullPrecision = true });
            index.Add(passages.Select((p, i) => new IndexRecord(p.Id, vectors.AsMemory(i * d, d))));
            var dense = new IndexDenseSearcher(index, ordinals, new SearchOptions { RescoreFactor = rescore, IncludeFields = false }, ownsIndex: true);
            return new Retriever(passages, new NoEmbedder(), dense, Bm25Index.BuildInMemory(passages.Select(IndexText.Of)), ownsIndexes: true);
        }

        foreach (int rescore in new[] { 10, 0 })
        {
            using var exact = Single(IndexStructure.Flat, rescore);
            using var graph = Single(IndexStructure.Hnsw, rescore);
            var s = new ShardSettings(2, 1, d, "test", CodeKind.Ternary, rescore, IndexStructure.Hnsw);
            var stores = Enumerable.Range(0, s.Shards).Select(shard => Replica($"recall-{rescore}", shard, s, passages, vectors, d, 256, 0)).ToList();
            try
            {
                Assert.All(stores, st => Assert.True(st.Count > 2048, $"shard {st.Shard} holds {st.Count} passages: its graph would not be searched"));
                var cluster = new ClusterRetriever(new LocalShardRouter(s, stores.Select(st => (IReadOnlyList<ShardStore>)[st]).ToList()), null);
                foreach (int candidates in new[] { 10, 100 })
                {
                    var options = new RetrievalOptions { Top = 10, Mode = RetrievalMode.Dense, Candidates = candidates };
                    double single = 0, sharded = 0;
                    for (int qi = 0; qi < queries.Count; qi++)
                    {
                        var truth = exact.Search(queries[qi], queryVectors[qi], options).Hits.Select(h => h.Passage.Id).ToHashSet();
                        single += graph.Search(queries[qi], queryVectors[qi], options).Hits.Count(h => truth.Contains(h.Passage.Id)) / (double)truth.Count;
                        sharded += (await cluster.SearchAsync(queries[qi], queryVectors[qi], options)).Hits.Count(h => truth.Contains(h.Passage.Id)) / (double)truth.Count;
                    }
                    single /= queries.Count; sharded /= queries.Count;
                    output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"ternary rescore {rescore}, candidates {candidates}, {queries.Count} queries, {passages.Count} passages: recall@10 one graph {single:F4}, {s.Shards} shard graphs {sharded:F4}"));
                    Assert.True(sharded >= single - RecallTolerance, $"rescore {rescore}, candidates {candidates}: shards' recall@10 {sharded:F4} below one graph's {single:F4} - {RecallTolerance}");
                }
            }
            finally { foreach (var st in stores) st.Dispose(); }
        }
    }

    // Two graphs of half the corpus each, searched with the same beam width, visit about twice the nodes one graph
    // does; their recall is expected at or above one graph's, and the tolerance only absorbs the luck of a few queries.
    private const double RecallTolerance = 0.01;

    private sealed class NoEmbedder : IEmbeddingGenerator<string, Embedding<float>>
    {
        public Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null, CancellationToken cancellationToken = default)
            => throw new InvalidOperationException("the tests pass vectors");
        public object? GetService(Type serviceType, object? serviceKey = null) => null;
        public void Dispose() { }
    }
}
