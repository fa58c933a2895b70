using System.CommandLine;
using System.Globalization;
using Rotor.Index;
using Rotor.Rag.Corpus;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Evaluation;

namespace Rotor.Cli.Commands;

/// <summary>
/// <c>rotor eval retrieval</c>: nDCG@10, Recall@10/@100 and MRR@10 of dense (float embeddings, exact search), BM25 and
/// hybrid (RRF) retrieval on a BEIR-format set, with the corpus embedding throughput. JSON keys: docs/RAG.md.
/// </summary>
internal static class EvalRetrievalCommand
{
    internal static Command Create()
    {
        var corpus = new Option<FileInfo>("--corpus") { Description = "BEIR corpus: JSON lines {\"_id\",\"title\",\"text\"}, plain or .gz", Required = true };
        var queries = new Option<FileInfo>("--queries") { Description = "BEIR queries: JSON lines {\"_id\",\"text\"}", Required = true };
        var qrels = new Option<FileInfo>("--qrels") { Description = "BEIR judgements: TSV query-id, corpus-id, score (with header)", Required = true };
        var json = new Option<FileInfo?>("--json") { Description = "Also write the figures as flat JSON to this file" };
        var limit = new Option<int>("--limit-queries") { Description = "Run at most this many judged queries (0 = all)", DefaultValueFactory = _ => 0 };
        var threads = new Option<int>("--threads") { Description = "Embedding threads (0 = one a processor)", DefaultValueFactory = _ => 0 };
        var batch = new Option<int>("--batch-size") { Description = "Texts a model batch", DefaultValueFactory = _ => 32 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens a text is cut to, [CLS] and [SEP] included", DefaultValueFactory = _ => 256 };
        var model = new Option<FileInfo?>("--model") { Description = "A sentence-transformers ONNX model instead of the bundled all-MiniLM-L6-v2 (needs --vocab)" };
        var vocab = new Option<FileInfo?>("--vocab") { Description = "The WordPiece vocabulary of --model" };
        var index = new Option<string?>("--index")
        {
            Description = "Also score Rotor.Index searchers over the same embeddings, comma-separated: CODE[-hnsw][-rescoreN] with CODE " +
                          "float32, int8, ternary or binary (e.g. ternary,ternary-rescore4,int8-hnsw); each is reported as dense-SPEC",
        };
        var cache = new Option<FileInfo?>("--embeddings-cache") { Description = "Keep the corpus embeddings in this file between runs (re-embedded when the corpus, model or --max-tokens change)" };

        var cmd = new Command("retrieval", "Score dense, BM25 and hybrid retrieval on a BEIR-format set (nDCG@10, Recall@10/@100, MRR@10)");
        foreach (var o in new Option[] { corpus, queries, qrels, json, limit, threads, batch, maxTokens, model, vocab, index, cache }) cmd.Options.Add(o);
        cmd.SetAction(parseResult => RagCommandErrors.Run(() =>
        {
            var modelFile = parseResult.GetValue(model);
            var vocabFile = parseResult.GetValue(vocab);
            if ((modelFile is null) != (vocabFile is null)) throw new RotorException("--model and --vocab go together");
            var variants = (parseResult.GetValue(index) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(IndexVariant).ToList();
            var files = modelFile is null ? ModelFiles.MiniLm() : ModelFiles.FromFiles(modelFile.FullName, vocabFile!.FullName);
            var options = new SentenceEmbedderOptions
            {
                Threads = parseResult.GetValue(threads),
                BatchSize = parseResult.GetValue(batch),
                MaxTokens = parseResult.GetValue(maxTokens),
            };

            string corpusPath = parseResult.GetValue(corpus)!.FullName;
            Console.Error.WriteLine($"reading {corpusPath}");
            var docs = BeirReader.ReadCorpus(corpusPath).ToList();
            var dupDoc = docs.GroupBy(d => d.Id).FirstOrDefault(g => g.Count() > 1);
            if (dupDoc is not null) throw new RotorException($"{corpusPath}: document id '{dupDoc.Key}' appears {dupDoc.Count()} times");
            string queriesPath = parseResult.GetValue(queries)!.FullName;
            var qs = BeirReader.ReadQueries(queriesPath).ToList();
            var dupQuery = qs.GroupBy(q => q.Id).FirstOrDefault(g => g.Count() > 1);
            if (dupQuery is not null) throw new RotorException($"{queriesPath}: query id '{dupQuery.Key}' appears {dupQuery.Count()} times");
            var judgements = BeirReader.ReadQrels(parseResult.GetValue(qrels)!.FullName);

            using var embedder = SentenceEmbedder.Create(files, options);
            Console.Error.WriteLine($"model {embedder.ModelId} ({embedder.Dimensions} dims) from {files.Source}; {embedder.Options.Threads} threads, batch {embedder.Options.BatchSize}, max {embedder.Options.MaxTokens} tokens");
            var report = RetrievalBenchmark.Run(docs, qs, judgements, embedder, parseResult.GetValue(limit),
                variants: variants, embeddingsCache: parseResult.GetValue(cache)?.FullName);
            Console.Write(report.ToTable());
            if (parseResult.GetValue(json) is { } jsonFile)
            {
                AtomicFile.WriteAllText(jsonFile.FullName, report.ToJson() + "\n");
                Console.Error.WriteLine($"wrote {jsonFile.FullName}");
            }
            return 0;
        }));
        return cmd;
    }

    // "ternary-hnsw-rescore4" -> a VectorIndex with that code, structure and rescoring, named dense-ternary-hnsw-rescore4.
    private static DenseVariant IndexVariant(string spec)
    {
        var parts = spec.ToLowerInvariant().Split('-');
        CodeKind code = parts[0] switch
        {
            "float32" => CodeKind.Float32,
            "int8" => CodeKind.Int8,
            "ternary" => CodeKind.Ternary,
            "binary" => CodeKind.Binary,
            _ => throw new RotorException($"--index: '{spec}': code '{parts[0]}' is not float32, int8, ternary or binary"),
        };
        bool hnsw = false;
        int rescore = 0;
        foreach (var p in parts.Skip(1))
        {
            if (p == "hnsw") hnsw = true;
            else if (p.StartsWith("rescore", StringComparison.Ordinal) && int.TryParse(p.AsSpan(7), NumberStyles.None, CultureInfo.InvariantCulture, out rescore) && rescore > 1) { }
            else throw new RotorException($"--index: '{spec}': '{p}' is neither 'hnsw' nor 'rescoreN' with N > 1");
        }
        return new DenseVariant("dense-" + spec.ToLowerInvariant(), (vectors, dims) => Rotor.Rag.Pipeline.IndexDenseSearcher.FromVectors(vectors, dims, new VectorIndexOptions
        {
            Dimensions = dims,
            Code = code,
            Metric = Metric.Cosine,
            Structure = hnsw ? IndexStructure.Hnsw : IndexStructure.Flat,
            KeepFullPrecision = rescore > 1,
        }, new SearchOptions { RescoreFactor = rescore, IncludeFields = false }));
    }
}
