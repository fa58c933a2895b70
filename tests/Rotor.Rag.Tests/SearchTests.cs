using System.Numerics.Tensors;
using Rotor.Rag.Corpus;
using Rotor.Rag.Evaluation;
using Rotor.Rag.Search;
using Xunit;
using Xunit.Abstractions;

namespace Rotor.Rag.Tests;

public sealed class DenseSearchTests
{
    private static float[] UnitRows(int n, int d, int seed)
    {
        var r = new Random(seed);
        var v = new float[n * d];
        for (int i = 0; i < v.Length; i++) v[i] = (float)(r.NextDouble() * 2 - 1);
        for (int i = 0; i < n; i++)
        {
            var row = v.AsSpan(i * d, d);
            TensorPrimitives.Divide(row, TensorPrimitives.Norm(row), row);
        }
        return v;
    }

    [Fact]
    public void ExactSearchMatchesReference()
    {
        const int n = 2000, d = 48;
        var searcher = new ExactDenseSearcher(UnitRows(n, d, 1), d);
        var queries = UnitRows(20, d, 2);
        for (int q = 0; q < 20; q++)
        {
            var fast = searcher.Search(queries.AsSpan(q * d, d), 10);
            var slow = searcher.SearchReference(queries.AsSpan(q * d, d), 10);
            Assert.Equal(slow.Select(h => h.Ordinal), fast.Select(h => h.Ordinal));
            for (int i = 0; i < 10; i++) Assert.Equal(slow[i].Score, fast[i].Score, 4);
        }
    }

    [Fact]
    public void FindsItselfFirstAndHandlesKAboveCount()
    {
        var v = UnitRows(5, 8, 3);
        var s = new ExactDenseSearcher(v, 8);
        var hits = s.Search(v.AsSpan(3 * 8, 8), 50);
        Assert.Equal(5, hits.Count);
        Assert.Equal(3, hits[0].Ordinal);
        Assert.Equal(1f, hits[0].Score, 5);
        Assert.True(hits.Zip(hits.Skip(1)).All(p => p.First.Score >= p.Second.Score));
    }

    [Fact]
    public void RejectsBadInput()
    {
        Assert.Throws<ArgumentException>(() => new ExactDenseSearcher(new float[10], 3));
        Assert.Throws<RotorException>(() => new ExactDenseSearcher([1, float.NaN], 2));
        var s = new ExactDenseSearcher(new float[6], 3);
        Assert.Throws<ArgumentException>(() => s.Search(new float[2], 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Search(new float[3], 0));
    }
}

public sealed class FusionTests
{
    [Fact]
    public void RrfSumsReciprocalRanks()
    {
        ScoredOrdinal[] a = [new(1, 9), new(2, 8), new(3, 7)];
        ScoredOrdinal[] b = [new(3, 5), new(4, 4), new(1, 3)];
        var fused = ReciprocalRankFusion.Fuse([a, b], 10, k: 60);
        // 1: 1/61 + 1/63; 3: 1/63 + 1/61 (tie, broken by best rank 1 then index); 2: 1/62; 4: 1/62
        Assert.Equal([1, 3, 2, 4], fused.Select(h => h.Ordinal));
        Assert.Equal(1.0 / 61 + 1.0 / 63, fused[0].Score, 6);
        Assert.Equal(1.0 / 62, fused[2].Score, 6);
        Assert.Equal(2, ReciprocalRankFusion.Fuse([a, b], 2).Count);
    }

    [Fact]
    public void RrfIgnoresEmptyRankingsAndDuplicates()
    {
        ScoredOrdinal[] a = [new(5, 1), new(5, 1), new(6, 1)];
        var fused = ReciprocalRankFusion.Fuse([a, []], 10);
        Assert.Equal([5, 6], fused.Select(h => h.Ordinal));
        Assert.Equal(1.0 / 61, fused[0].Score, 6);
    }
}

public sealed class Bm25Tests(ITestOutputHelper output)
{
    private static readonly string[] s_docs =
    [
        "The aardvark digs burrows and eats ants and termites at night.",
        "Running shoes help runners who run marathons.",
        "Apollo 11 landed the first humans on the Moon in 1969.",
        "The Moon orbits the Earth once every 27 days.",
        "Termites build large mounds in the African savanna.",
    ];

    [Fact]
    public void RanksByTermsWithStemmingAndStopWords()
    {
        using var index = Bm25Index.BuildInMemory(s_docs);
        Assert.Equal(5, index.Count);
        Assert.Equal(["run", "marathon"], index.Analyze("the running of the marathons"));
        Assert.Equal(1, index.Search("who runs a marathon", 3)[0].Ordinal);     // stems: runs ~ running ~ run
        var moon = index.Search("first landing on the moon", 5);
        Assert.Equal(2, moon[0].Ordinal);                                      // first + moon beats moon alone
        Assert.Equal(3, moon[1].Ordinal);
        Assert.Equal(2, moon.Count);
        var termites = index.Search("termites", 5).Select(h => h.Ordinal).ToList();
        Assert.Equal([0, 4], termites.Order());
        Assert.Empty(index.Search("the of and", 5));                         // only stop words
        Assert.Empty(index.Search("zebra", 5));
    }

    [Fact]
    public void BuildsOnDiskAtomicallyAndReopens()
    {
        string dir = TestPaths.TempDir();
        try
        {
            string folder = Path.Combine(dir, "bm25");
            using (var built = Bm25Index.Build(folder, s_docs)) Assert.Equal(5, built.Count);
            Assert.Single(Directory.GetFileSystemEntries(dir)); // no temporary folder left
            // A build killed before its rename leaves BM25.PID.GUID.rotor.tmp; the next build deletes it.
            using var exited = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("true") { UseShellExecute = false })!;
            exited.WaitForExit();
            string leftover = $"{folder}.{exited.Id}.{Guid.NewGuid():N}.rotor.tmp";
            Directory.CreateDirectory(leftover);
            File.WriteAllText(Path.Combine(leftover, "_0.cfs"), "half a segment");
            using (var again = Bm25Index.Build(folder, s_docs)) Assert.Equal(5, again.Count);
            Assert.False(Directory.Exists(leftover));
            using (var reopened = Bm25Index.Open(folder))
                Assert.Equal(2, reopened.Search("moon landing", 1)[0].Ordinal);
            using (var rebuilt = Bm25Index.Build(folder, s_docs.Take(2))) Assert.Equal(2, rebuilt.Count); // replaces

            string junk = Path.Combine(dir, "junk");
            Directory.CreateDirectory(junk);
            File.WriteAllText(Path.Combine(junk, "segments_1"), "garbage");
            var e = Assert.Throws<RotorException>(() => Bm25Index.Open(junk));
            Assert.Contains(junk, e.Message);
            Assert.Throws<RotorException>(() => Bm25Index.Open(Path.Combine(dir, "absent")));
        }
        finally { Directory.Delete(dir, true); }
    }

    [SciFactFact]
    public void Bm25OnSciFactIsNearThePublishedScore()
    {
        var docs = BeirReader.ReadCorpus(Path.Combine(TestPaths.SciFact!, "corpus.jsonl.gz")).ToList();
        var queries = BeirReader.ReadQueries(Path.Combine(TestPaths.SciFact!, "queries_test.jsonl")).ToList();
        var qrels = BeirReader.ReadQrels(Path.Combine(TestPaths.SciFact!, "qrels", "test.tsv"));
        using var index = Bm25Index.BuildInMemory(docs.Select(IndexText.Of));
        var rankings = queries.ToDictionary(q => q.Id, q => (IReadOnlyList<string>)index.Search(q.Text, 100).Select(h => docs[h.Ordinal].Id).ToList());
        var scores = MethodScores.Compute("bm25", rankings, qrels, 0);
        output.WriteLine($"SciFact BM25: nDCG@10 {scores.Ndcg10:F4}, R@100 {scores.Recall100:F4}, MRR@10 {scores.Mrr10:F4} over {scores.Queries} queries");
        Assert.Equal(300, scores.Queries);
        Assert.InRange(scores.Ndcg10, 0.62, 0.72);   // published 0.665 (BEIR, Elasticsearch) to 0.679 (Anserini flat)
        Assert.InRange(scores.Recall100, 0.85, 0.97);
    }
}

public sealed class MetricsTests
{
    private static readonly Dictionary<string, int> s_grades = new() { ["a"] = 1, ["b"] = 2, ["z"] = 0 };

    [Fact]
    public void NdcgMatchesHandComputation()
    {
        string[] ranked = ["x", "a", "y", "b"];
        double dcg = 1 / Math.Log2(3) + 2 / Math.Log2(5);
        double idcg = 2 / Math.Log2(2) + 1 / Math.Log2(3);
        Assert.Equal(dcg / idcg, RetrievalMetrics.Ndcg(ranked, s_grades, 10), 12);
        Assert.Equal(0, RetrievalMetrics.Ndcg(ranked, s_grades, 1));
        Assert.Equal(1, RetrievalMetrics.Ndcg(["b", "a"], s_grades, 10), 12);
        Assert.Equal(0, RetrievalMetrics.Ndcg(ranked, new Dictionary<string, int> { ["z"] = 0 }, 10));
    }

    [Fact]
    public void RecallAndMrr()
    {
        string[] ranked = ["x", "z", "a", "y", "b"];
        Assert.Equal(0.5, RetrievalMetrics.Recall(ranked, s_grades, 3));
        Assert.Equal(1.0, RetrievalMetrics.Recall(ranked, s_grades, 5));
        Assert.Equal(1.0 / 3, RetrievalMetrics.ReciprocalRank(ranked, s_grades, 10), 12);  // z has grade 0: not relevant
        Assert.Equal(0, RetrievalMetrics.ReciprocalRank(ranked, s_grades, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => RetrievalMetrics.Recall(ranked, s_grades, 0));
    }

    [Fact]
    public void MeansSkipUnjudgedQueries()
    {
        var rankings = new Dictionary<string, IReadOnlyList<string>> { ["q1"] = ["a"], ["q2"] = ["x"], ["unjudged"] = ["a"] };
        var qrels = new Dictionary<string, Dictionary<string, int>> { ["q1"] = new() { ["a"] = 1 }, ["q2"] = new() { ["b"] = 1 } };
        var m = MethodScores.Compute("t", rankings, qrels, 1);
        Assert.Equal(2, m.Queries);
        Assert.Equal(0.5, m.Ndcg10, 12);
        Assert.Equal(0.5, m.Mrr10, 12);
    }
}
