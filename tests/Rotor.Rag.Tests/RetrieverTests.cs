using System.Text.Json;
using Rotor.Rag.Corpus;
using Rotor.Rag.Demo;
using Rotor.Rag.Evaluation;
using Rotor.Rag.Search;
using Xunit;
using Xunit.Abstractions;

namespace Rotor.Rag.Tests;

[Collection("MiniLM")]
public sealed class RetrieverTests(MiniLmFixture fixture, ITestOutputHelper output)
{
    [Fact]
    public void DemoCorpusLoads()
    {
        var passages = DemoCorpus.Passages;
        Assert.InRange(passages.Count, 30, 80);
        Assert.Equal(passages.Count, passages.Select(p => p.Id).Distinct().Count());
        Assert.All(passages, p => Assert.InRange(p.Text.Split(' ').Length, 20, 120));
        Assert.Contains(passages, p => p.Title == "Apollo 11");
    }

    [Theory]
    [InlineData("Who was the first person to walk on the Moon?", "apollo-11-1")]
    [InlineData("Which animal eats termites and has a long snout?", "aardvark-1")]
    [InlineData("how much sunlight does snow reflect", "albedo-1")]
    [InlineData("Who issued the Emancipation Proclamation?", "lincoln-2")]
    [InlineData("unit of electric current", "ampere-1")]
    public async Task DemoRetrieverFindsTheAnswerInEveryMode(string question, string expectedId)
    {
        var retriever = fixture.DemoRetriever;
        foreach (var mode in new[] { RetrievalMode.Hybrid, RetrievalMode.Dense, RetrievalMode.Lexical })
        {
            var hits = (await retriever.SearchAsync(question, new RetrievalOptions { Top = 3, Mode = mode })).Hits;
            output.WriteLine($"{mode,-8} {question}: {string.Join(", ", hits.Select(h => $"{h.Passage.Id} {h.Score:F3} (d{h.DenseRank} l{h.LexicalRank})"))}");
            Assert.Contains(expectedId, hits.Take(mode == RetrievalMode.Hybrid ? 1 : 3).Select(h => h.Passage.Id));
        }
        var top = (await retriever.SearchAsync(question, new RetrievalOptions { Top = 1 })).Hits[0];
        Assert.True(top.DenseRank is not null || top.LexicalRank is not null);
    }

    [Fact]
    public async Task HybridRanksComeFromBothLists()
    {
        var retriever = fixture.DemoRetriever;
        var hits = retriever.Search("Greek hero killed by an arrow in the heel", new RetrievalOptions { Top = 5, Mode = RetrievalMode.Hybrid, Candidates = 20 }).Hits;
        Assert.Equal("achilles-2", hits[0].Passage.Id);
        Assert.Equal(1, hits[0].DenseRank);
        Assert.NotNull(hits[0].LexicalRank);
        Assert.True(hits.Zip(hits.Skip(1)).All(p => p.First.Score >= p.Second.Score));
    }

    [Fact]
    public async Task EmptyQueriesAreRefusedInEveryMode()
    {
        var retriever = fixture.DemoRetriever;
        foreach (string q in new[] { "", " ", "\t\n" })
            foreach (var mode in new[] { RetrievalMode.Dense, RetrievalMode.Lexical, RetrievalMode.Hybrid })
            {
                var o = new RetrievalOptions { Mode = mode };
                Assert.Contains("empty", Assert.Throws<RotorException>(() => retriever.Search(q, o)).Message);
                Assert.Contains("empty", (await Assert.ThrowsAsync<RotorException>(() => retriever.SearchAsync(q, o))).Message);
            }
        Assert.Throws<RotorException>(() => retriever.Search(" ", new float[384], new RetrievalOptions { Mode = RetrievalMode.Lexical }));
    }

    [Fact]
    public void QrelsCoverageCountsUnknownQueriesAndAbsentDocuments()
    {
        var qrels = new Dictionary<string, Dictionary<string, int>>
        {
            ["q1"] = new() { ["d1"] = 1, ["d9"] = 2, ["d8"] = 0 }, // d8: grade 0, not relevant, so not counted
            ["q2"] = new() { ["d2"] = 1, ["d9"] = 1 },
            ["q7"] = new() { ["d1"] = 1 },
        };
        var c = QrelsCoverage.Of(qrels, ["q1", "q2", "q3"], ["d1", "d2", "d3"]);
        Assert.Equal(new QrelsCoverage(3, 1, 4, 2, 1, "document 'd9'"), c with { Example = "document 'd9'" });
        Assert.False(c.Complete);
        string w = c.Warning("qrels.tsv")!;
        Assert.StartsWith("qrels.tsv: 1 of 3 judged queries are not in the queries", w);
        Assert.Contains("2 of 4 relevant judgements name 1 documents absent from the corpus", w);
        var full = QrelsCoverage.Of(qrels, ["q1", "q2", "q7"], ["d1", "d2", "d9"]);
        Assert.True(full.Complete);
        Assert.Null(full.Warning("qrels.tsv"));
    }

    [Fact]
    public void SearchWithAGivenVectorMatchesSearchWithTheQuery()
    {
        var retriever = fixture.DemoRetriever;
        const string Question = "Which philosopher taught Alexander the Great?";
        float[] v = fixture.Embedder.Embed(Question);
        foreach (var mode in new[] { RetrievalMode.Hybrid, RetrievalMode.Dense, RetrievalMode.Lexical })
        {
            var options = new RetrievalOptions { Top = 4, Mode = mode, Candidates = 30 };
            var a = retriever.Search(Question, options);
            var b = retriever.Search(Question, v, options);
            Assert.Equal(a.Hits, b.Hits);
            Assert.Equal(a.DenseScores, b.DenseScores);
            Assert.Equal(mode == RetrievalMode.Lexical ? 0 : 30, a.DenseScores.Count);
            Assert.Equal(0, b.EmbedMilliseconds);
        }
        Assert.Equal(3, retriever.Search(Question, default, new RetrievalOptions { Top = 3, Mode = RetrievalMode.Lexical }).Hits.Count);
        Assert.Throws<ArgumentException>(() => retriever.Search(Question, default, new RetrievalOptions { Mode = RetrievalMode.Dense }));
        Assert.Throws<ArgumentOutOfRangeException>(() => retriever.Search(Question, new RetrievalOptions { Top = 0 }));
    }

    [Fact]
    public void IndexTextOfAPassageCarriesItsTitleAndSectionAndOfADocumentFollowsBeir()
    {
        Assert.Equal("T: S. x y", IndexText.Of(new Passage("d#0", "d", "T", "S", "x y")));
        Assert.Equal("T. x y", IndexText.Of(new Passage("d#0", "d", "T", "", "x y")));
        Assert.Equal("x y", IndexText.Of(new Passage("d#0", "d", "", "", "x y")));
        Assert.Equal("T a\n\nb", IndexText.Of(new Document("d", "T", [new DocumentSection("", "a"), new DocumentSection("S", "b")])));
        Assert.Equal("a", IndexText.Of(Document.Plain("d", "", "a")));
    }

    [Fact]
    public void BenchmarkScoresATinyBeirSet()
    {
        var corpus = DemoCorpus.Passages.Select(p => Document.Plain(p.Id, p.Title, p.Text)).ToList();
        Query[] queries =
        [
            new("q1", "first crewed flight to orbit the Moon and see its far side"),
            new("q2", "novel about farm animals that rebel against the farmer"),
            new("q3", "Japanese martial art using throws and joint locks"),
            new("q4", "no judgements for this one"),
        ];
        var qrels = new Dictionary<string, Dictionary<string, int>>
        {
            ["q1"] = new() { ["apollo-8-1"] = 1 },
            ["q2"] = new() { ["animal-farm-1"] = 1 },
            ["q3"] = new() { ["aikido-1"] = 1 },
        };
        var log = new StringWriter();
        var report = RetrievalBenchmark.Run(corpus, queries, qrels, fixture.Embedder, log: log);
        output.WriteLine(report.ToTable());
        Assert.Equal(3, report.Queries);
        Assert.Equal(corpus.Count, report.CorpusDocuments);
        Assert.Equal(["dense-float", "bm25", "hybrid"], report.Methods.Select(m => m.Method));
        Assert.All(report.Methods, m => Assert.True(m.Ndcg10 > 0.8, $"{m.Method} nDCG@10 {m.Ndcg10}"));
        Assert.All(report.Methods, m => Assert.Equal(1.0, m.Recall100));
        Assert.Contains("embedding corpus", log.ToString());
        using var json = JsonDocument.Parse(report.ToJson());
        foreach (var key in new[] { "dense-float.ndcg@10", "bm25.ndcg@10", "hybrid.ndcg@10", "hybrid.recall@100", "bm25.mrr@10", "embedding.passages-per-second" })
            Assert.True(json.RootElement.TryGetProperty(key, out _), $"JSON lacks {key}");
        Assert.Equal(report.Methods[1].Ndcg10, json.RootElement.GetProperty("bm25.ndcg@10").GetDouble(), 4);
        Assert.Throws<RotorException>(() => RetrievalBenchmark.Run(corpus, [new Query("q9", "x")], qrels, fixture.Embedder, log: log));
    }

    [Fact]
    public void BenchmarkScoresDenseVariants()
    {
        var corpus = DemoCorpus.Passages.Select(p => Document.Plain(p.Id, p.Title, p.Text)).ToList();
        Query[] queries = [new("q1", "Greek philosopher who taught Alexander the Great"), new("q2", "the largest US state by area")];
        var qrels = new Dictionary<string, Dictionary<string, int>> { ["q1"] = new() { ["aristotle-1"] = 1 }, ["q2"] = new() { ["alaska-1"] = 1 } };
        DenseVariant[] variants =
        [
            new("dense-copy", (v, d) => new ExactDenseSearcher((float[])v.Clone(), d)),
            new("dense-reversed", (v, d) => new ReversedSearcher(new ExactDenseSearcher(v, d))),   // worst first: must score lower
        ];
        var report = RetrievalBenchmark.Run(corpus, queries, qrels, fixture.Embedder, log: TextWriter.Null, variants: variants);
        var byName = report.Methods.ToDictionary(m => m.Method);
        Assert.Equal(byName["dense-float"].Ndcg10, byName["dense-copy"].Ndcg10, 12);
        Assert.True(byName["dense-reversed"].Ndcg10 < byName["dense-float"].Ndcg10, $"reversed {byName["dense-reversed"].Ndcg10} vs float {byName["dense-float"].Ndcg10}");
        Assert.Contains("\"dense-copy.ndcg@10\"", report.ToJson());
    }

    [Fact]
    public void BenchmarkReusesCachedCorpusEmbeddings()
    {
        var corpus = DemoCorpus.Passages.Take(20).Select(p => Document.Plain(p.Id, p.Title, p.Text)).ToList();
        Query[] queries = [new("q1", "hero of the Trojan War")];
        var qrels = new Dictionary<string, Dictionary<string, int>> { ["q1"] = new() { ["achilles-1"] = 1 } };
        string dir = TestPaths.TempDir();
        try
        {
            string cache = Path.Combine(dir, "scifact.emb");
            var first = RetrievalBenchmark.Run(corpus, queries, qrels, fixture.Embedder, log: TextWriter.Null, embeddingsCache: cache);
            var second = RetrievalBenchmark.Run(corpus, queries, qrels, fixture.Embedder, log: TextWriter.Null, embeddingsCache: cache);
            Assert.False(first.EmbeddingsFromCache);
            Assert.True(second.EmbeddingsFromCache);
            Assert.Equal(first.Methods.Select(m => (m.Method, m.Ndcg10, m.Recall100)), second.Methods.Select(m => (m.Method, m.Ndcg10, m.Recall100)));
            Assert.Contains("\"embedding.from-cache\": true", second.ToJson());
            Assert.DoesNotContain("embedding.passages-per-second", second.ToJson());
        }
        finally { Directory.Delete(dir, true); }
    }

    private sealed class ReversedSearcher(ExactDenseSearcher inner) : IDenseSearcher
    {
        public int Dimensions => inner.Dimensions;
        public int Count => inner.Count;
        public IReadOnlyList<ScoredOrdinal> Search(ReadOnlySpan<float> query, int k)
        {
            var all = inner.Search(query, Count);
            return all.Reverse().Take(k).ToList();
        }
    }
}
