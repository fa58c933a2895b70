using System.Diagnostics;
using Rotor.Index;
using Rotor.Rag.Corpus;
using Rotor.Rag.Demo;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Search;

namespace Rotor.Rag.Pipeline;

/// <summary>
/// The retrieval step of <c>rotor demo</c>: the bundled <see cref="DemoCorpus"/> embedded with the bundled MiniLM,
/// a ternary Rotor.Index (rescored) plus BM25 behind a <see cref="Retriever"/>, two questions answered with their top
/// passages and the adaptive decision. Offline; a few seconds.
/// </summary>
public static class DemoRetrieval
{
    /// <summary>Questions the demo asks: one the corpus answers, one it does not.</summary>
    public static IReadOnlyList<string> Questions { get; } =
    [
        "Who was the first person to walk on the Moon?",
        "How do I reset the password of my wireless router?",
    ];

    /// <summary>
    /// Titles of the passages a quick run embeds: the articles the <see cref="Questions"/> touch (Apollo 11 answers the
    /// first; Apollo 8 is a near miss) and unrelated ones. Embedding costs time in proportion to the tokens, which on an
    /// emulated processor is minutes for the whole corpus.
    /// </summary>
    public static IReadOnlyList<string> QuickTitles { get; } =
        ["Apollo 11", "Apollo 8", "Albert Einstein", "Atlantic Ocean", "Arithmetic mean", "Algorithm", "Aardvark", "ASCII"];

    /// <summary>Runs the step over the whole <see cref="DemoCorpus"/>, writing to <paramref name="o"/>.</summary>
    public static void Run(TextWriter o) => Run(o, quick: false);

    /// <summary>Runs the step, writing to <paramref name="o"/>; <paramref name="quick"/> embeds only the passages
    /// titled in <see cref="QuickTitles"/>.</summary>
    /// <exception cref="RotorException">A title of <see cref="QuickTitles"/> has no passage in the corpus.</exception>
    public static void Run(TextWriter o, bool quick)
    {
        ArgumentNullException.ThrowIfNull(o);
        var clock = Stopwatch.StartNew();
        var passages = quick ? QuickPassages() : DemoCorpus.Passages;
        using var embedder = SentenceEmbedder.CreateMiniLm();
        var vectors = new float[passages.Count * embedder.Dimensions];
        embedder.Embed(passages.Select(IndexText.Of).ToList(), vectors);
        var dense = IndexDenseSearcher.FromVectors(vectors, embedder.Dimensions, CodeKind.Ternary, rescoreFactor: 10);
        using var retriever = new Retriever(passages, embedder, dense, Bm25Index.BuildInMemory(passages.Select(IndexText.Of)), ownsIndexes: true);
        var policy = AdaptivePolicy.Default;
        o.WriteLine($"retrieval: {passages.Count} demo passages embedded with {embedder.ModelId} into a ternary index ({dense.Index.Stats.CodeBytesPerVector} bytes a vector, rescored x10) + BM25, in {clock.Elapsed.TotalSeconds:F1} s");
        foreach (var q in Questions)
        {
            clock.Restart();
            var scores = dense.Search(embedder.Embed(q), 10).Select(h => h.Score).ToList();
            var decision = policy.Decide(scores);
            var hits = retriever.Search(q, new RetrievalOptions { Top = 3 }).Hits;
            o.WriteLine($"  Q: {q}  ({clock.Elapsed.TotalMilliseconds:F0} ms)");
            o.WriteLine($"     adaptive: {decision.Reason}");
            foreach (var h in hits.Take(decision.Retrieve ? Math.Min(3, decision.Count) : 1))
            {
                string text = h.Passage.Text.Length > 110 ? h.Passage.Text[..110] + "..." : h.Passage.Text;
                o.WriteLine($"     {h.Score:F4} (dense #{h.DenseRank?.ToString() ?? "-"}, bm25 #{h.LexicalRank?.ToString() ?? "-"}) {h.Passage.Title}: {text}{(decision.Retrieve ? "" : "  [best candidate, not used]")}");
            }
        }
        o.WriteLine("           more: rotor ingest wiki DUMP --out DIR, then rotor search DIR \"question\" --adaptive (docs/PIPELINE.md)");
    }

    private static List<Passage> QuickPassages()
    {
        var all = DemoCorpus.Passages;
        foreach (string title in QuickTitles)
            if (!all.Any(p => p.Title == title))
                throw new RotorException($"the demo corpus has no passage titled '{title}' for the quick demo");
        return all.Where(p => QuickTitles.Contains(p.Title)).ToList();
    }
}
