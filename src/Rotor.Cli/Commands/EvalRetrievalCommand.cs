using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Rotor.Index;
using Rotor.Rag.Corpus;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Evaluation;
using Rotor.Rag.Pipeline;

namespace Rotor.Cli.Commands;

/// <summary>
/// Retrieval measured on a BEIR-format set (corpus, queries, judgements):
/// <c>rotor eval retrieval</c>: nDCG@10, Recall@10/@100 and MRR@10 of dense (float embeddings, exact search), BM25 and
/// hybrid (RRF) retrieval, with the corpus embedding throughput (JSON keys: docs/RAG.md);
/// <c>rotor eval quality</c>: the same for every vector code against float32, and the adaptive-retrieval calibration;
/// <c>rotor eval latency</c>: per-question latency on a large index made of the corpus's embeddings.
/// </summary>
internal static class EvalRetrievalCommand
{
    // --corpus, --queries, --qrels and --embeddings-cache, read the same way by every command of this file.
    private sealed class BeirOptions
    {
        public readonly Option<string> Corpus = new("--corpus") { Description = "BEIR corpus: JSON lines {\"_id\",\"title\",\"text\"}, plain or .gz", Required = true };
        public readonly Option<string> Queries = new("--queries") { Description = "BEIR queries: JSON lines {\"_id\",\"text\"}", Required = true };
        public readonly Option<string> Qrels = new("--qrels") { Description = "BEIR judgements: TSV query-id, corpus-id, score (with header)", Required = true };
        public readonly Option<bool> Strict = new("--strict") { Description = "Refuse judgements that name queries or documents absent from --queries and --corpus (else a warning with counts)" };
        public readonly Option<string?> Cache = new("--embeddings-cache") { Description = "Keep the corpus embeddings in this file between runs (re-embedded when the corpus, model or --max-tokens change)" };

        public void AddTo(Command cmd, bool qrels = true)
        {
            cmd.Options.Add(Corpus); cmd.Options.Add(Queries);
            if (qrels) { cmd.Options.Add(Qrels); cmd.Options.Add(Strict); }
            cmd.Options.Add(Cache);
        }

        public List<Document> ReadCorpus(ParseResult pr)
        {
            string path = pr.GetValue(Corpus)!;
            Console.Error.WriteLine($"reading {path}");
            var docs = BeirReader.ReadCorpus(path).ToList();
            var dup = docs.GroupBy(d => d.Id).FirstOrDefault(g => g.Count() > 1);
            if (dup is not null) throw new RotorException($"{path}: document id '{dup.Key}' appears {dup.Count()} times");
            return docs;
        }

        public List<Query> ReadQueries(ParseResult pr)
        {
            string path = pr.GetValue(Queries)!;
            var qs = BeirReader.ReadQueries(path).ToList();
            var dup = qs.GroupBy(q => q.Id).FirstOrDefault(g => g.Count() > 1);
            if (dup is not null) throw new RotorException($"{path}: query id '{dup.Key}' appears {dup.Count()} times");
            return qs;
        }

        // The judgements, checked against the queries and the corpus they score: a warning with counts, or with
        // --strict an error, when they name queries or documents that are not there.
        public Dictionary<string, Dictionary<string, int>> ReadQrels(ParseResult pr, List<Document> docs, List<Query> queries)
        {
            string path = pr.GetValue(Qrels)!;
            var qrels = BeirReader.ReadQrels(path);
            var coverage = QrelsCoverage.Of(qrels, queries.Select(q => q.Id), docs.Select(d => d.Id));
            if (coverage.Warning(path) is { } w)
            {
                if (pr.GetValue(Strict)) throw new RotorException($"{w} (--strict)");
                Console.Error.WriteLine($"warning: {w}");
            }
            return qrels;
        }

        // The corpus embeddings: from the cache file when one is named, else embedded now.
        public float[] CorpusVectors(ParseResult pr, List<Document> docs, SentenceEmbedder embedder)
        {
            var texts = docs.Select(IndexText.Of).ToList();
            return pr.GetValue(Cache) is { } c ? EmbeddingCache.GetOrCompute(c, texts, embedder, null, Console.Error).Vectors : Embed(embedder, texts);
        }
    }

    internal static Command Retrieval()
    {
        var beir = new BeirOptions();
        var json = new Option<string?>("--json") { Description = "Also write the figures as flat JSON to this file" }.OutputFile();
        var limit = new Option<int>("--limit-queries") { Description = "Run at most this many judged queries (0 = all)", DefaultValueFactory = _ => 0 }.NonNegative();
        var threads = Validate.Threads();
        var batch = new Option<int>("--batch-size") { Description = "Texts a model batch", DefaultValueFactory = _ => 32 }.InRange(1, 100_000);
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens a text is cut to, [CLS] and [SEP] included", DefaultValueFactory = _ => 256 }.InRange(3, 512);
        var model = new Option<FileInfo?>("--model") { Description = "A sentence-transformers ONNX model instead of the bundled all-MiniLM-L6-v2 (needs --vocab)" };
        var vocab = new Option<FileInfo?>("--vocab") { Description = "The WordPiece vocabulary of --model" };
        var index = new Option<string?>("--index")
        {
            Description = "Also score Rotor.Index searchers over the same embeddings, comma-separated: CODE[-hnsw][-rescoreN] with CODE " +
                          "float32, int8, ternary or binary (e.g. ternary,ternary-rescore4,int8-hnsw); each is reported as dense-SPEC",
        };

        var cmd = new Command("retrieval", "Score dense, BM25 and hybrid retrieval on a BEIR-format set (nDCG@10, Recall@10/@100, MRR@10)");
        beir.AddTo(cmd);
        foreach (var o in new Option[] { json, limit, threads, batch, maxTokens, model, vocab, index }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            var modelFile = pr.GetValue(model);
            var vocabFile = pr.GetValue(vocab);
            if ((modelFile is null) != (vocabFile is null)) throw new RotorException("--model and --vocab go together");
            var variants = (pr.GetValue(index) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(IndexVariant).ToList();
            var files = modelFile is null ? ModelFiles.MiniLm() : ModelFiles.FromFiles(modelFile.FullName, vocabFile!.FullName);
            var options = new SentenceEmbedderOptions
            {
                Threads = pr.GetValue(threads) ?? 0,
                BatchSize = pr.GetValue(batch),
                MaxTokens = pr.GetValue(maxTokens),
            };
            var docs = beir.ReadCorpus(pr);
            var qs = beir.ReadQueries(pr);
            var judgements = beir.ReadQrels(pr, docs, qs);

            using var embedder = SentenceEmbedder.Create(files, options);
            Console.Error.WriteLine($"model {embedder.ModelId} ({embedder.Dimensions} dims) from {files.Source}; {embedder.Options.Threads} threads, batch {embedder.Options.BatchSize}, max {embedder.Options.MaxTokens} tokens");
            var report = RetrievalBenchmark.Run(docs, qs, judgements, embedder, pr.GetValue(limit),
                variants: variants, embeddingsCache: pr.GetValue(beir.Cache));
            Console.Write(report.ToTable());
            if (pr.GetValue(json) is { } jsonFile)
            {
                AtomicFile.WriteAllText(jsonFile, report.ToJson() + "\n");
                Console.Error.WriteLine($"wrote {jsonFile}");
            }
            return 0;
        });
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
        return new DenseVariant("dense-" + spec.ToLowerInvariant(), (vectors, dims) => IndexDenseSearcher.FromVectors(vectors, dims, new VectorIndexOptions
        {
            Dimensions = dims,
            Code = code,
            Metric = Metric.Cosine,
            Structure = hnsw ? IndexStructure.Hnsw : IndexStructure.Flat,
            KeepFullPrecision = rescore > 1,
        }, new SearchOptions { RescoreFactor = rescore, IncludeFields = false }));
    }

    internal static Command Quality()
    {
        var beir = new BeirOptions();
        var json = new Option<string?>("--json") { Description = "Write the figures as flat JSON" }.OutputFile();
        var policyOut = new Option<string?>("--policy-out") { Description = "Write the calibrated adaptive policy (put it in an index directory as adaptive.json)" }.OutputFile();
        var limit = new Option<int>("--limit-queries") { Description = "At most this many judged queries (0: all)", DefaultValueFactory = _ => 0 }.NonNegative();
        var rate = new Option<double>("--target-retrieve-rate") { Description = "Adaptive: retrieve for at least this share of answerable dev queries (0: threshold at the best balanced accuracy)", DefaultValueFactory = _ => 0.9 }.InRange(0.0, 1.0);
        var cmd = new Command("quality", "nDCG@10 and Recall@100 of dense search over float32, int8, ternary (+/- rescoring) and binary codes vs float32; adaptive-retrieval calibration (dev half) and test (other half)");
        beir.AddTo(cmd);
        foreach (var o in new Option[] { json, policyOut, limit, rate, Validate.Threads() }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            var docs = beir.ReadCorpus(pr);
            var qs = beir.ReadQueries(pr);
            var judgements = beir.ReadQrels(pr, docs, qs);
            using var embedder = SentenceEmbedder.CreateMiniLm();
            var report = RetrievalBenchmark.Run(docs, qs, judgements, embedder, pr.GetValue(limit), variants: IndexCodeVariants.All(),
                embeddingsCache: pr.GetValue(beir.Cache));
            Console.Write(report.ToTable());
            var o = (JsonObject)JsonNode.Parse(report.ToJson())!;
            var baseline = report.Methods.First(m => m.Method == "dense-float");
            Console.WriteLine($"{"code",-28} {"nDCG@10",8} {"vs float",9} {"R@100",8} {"vs float",9}");
            foreach (var m in report.Methods.Where(m => m.Method.StartsWith("dense", StringComparison.Ordinal)))
            {
                double rn = m.Ndcg10 / baseline.Ndcg10, rr = m.Recall100 / baseline.Recall100;
                Console.WriteLine($"{m.Method,-28} {m.Ndcg10,8:F4} {rn,9:P1} {m.Recall100,8:F4} {rr,9:P1}");
                o[$"{m.Method}.ndcg@10-vs-float"] = Math.Round(rn, 4);
                o[$"{m.Method}.recall@100-vs-float"] = Math.Round(rr, 4);
            }

            // Adaptive retrieval: rankings by the default index (ternary, rescored x10) over the same cached embeddings.
            float[] vectors = beir.CorpusVectors(pr, docs, embedder);
            var judged = qs.Where(q => judgements.ContainsKey(q.Id)).ToList();
            if (pr.GetValue(limit) > 0) judged = judged.Take(pr.GetValue(limit)).ToList();
            var qv = Embed(embedder, judged.Select(q => q.Text).ToList());
            using var searcher = IndexDenseSearcher.FromVectors(vectors, embedder.Dimensions, CodeKind.Ternary, 10);
            var study = PipelineBenchmarks.AdaptiveStudy(searcher, docs.Select(d => d.Id).ToList(), judged, qv, judgements,
                targetRetrieveRate: pr.GetValue(rate) > 0 ? pr.GetValue(rate) : null);
            Console.Write(study.ToTable());
            study.AddTo(o);
            if (pr.GetValue(policyOut) is { } p) { AtomicFile.WriteAllText(p, study.Policy.ToJson()); Console.Error.WriteLine($"wrote {p}"); }
            if (pr.GetValue(json) is { } j) { AtomicFile.WriteAllText(j, o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n"); Console.Error.WriteLine($"wrote {j}"); }
            return 0;
        });
        return cmd;
    }

    private static float[] Embed(SentenceEmbedder embedder, List<string> texts)
    {
        var v = new float[texts.Count * embedder.Dimensions];
        var meter = new Rotor.Rag.ProgressMeter("embedding", texts.Count);
        embedder.Embed(texts, v, done => meter.Report(done));
        return v;
    }

    internal static Command Latency()
    {
        var beir = new BeirOptions();
        beir.Corpus.Description = "BEIR corpus whose embeddings seed the vectors";
        beir.Queries.Description = "BEIR queries: embedded one at a time, then searched";
        var count = new Option<int>("--count") { Description = "Vectors in the index: the corpus, then noisy copies", DefaultValueFactory = _ => 100_000 }.InRange(1, 100_000_000);
        var noise = new Option<float>("--noise") { Description = "Gaussian noise a component of each copy (before renormalizing)", DefaultValueFactory = _ => 0.02f }.InRange(0f, 10f);
        var n = new Option<int>("--limit-queries") { Description = "Queries timed", DefaultValueFactory = _ => 100 }.InRange(1, 1_000_000);
        var threads = Validate.Threads();
        var json = new Option<string?>("--json") { Description = "Write the rows as JSON" }.OutputFile();
        var cmd = new Command("latency", "Per-question latency (embed + search) on a large index made of a corpus's embeddings and noisy copies of them");
        beir.AddTo(cmd, qrels: false);
        foreach (var o in new Option[] { count, noise, n, threads, json }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            var docs = beir.ReadCorpus(pr);
            var qs = beir.ReadQueries(pr).Take(pr.GetValue(n)).Select(q => q.Text).ToList();
            using var embedder = SentenceEmbedder.CreateMiniLm(new SentenceEmbedderOptions { Threads = pr.GetValue(threads) ?? 0 });
            float[] baseVectors = beir.CorpusVectors(pr, docs, embedder);
            var vectors = PipelineBenchmarks.Replicate(baseVectors, embedder.Dimensions, pr.GetValue(count), pr.GetValue(noise));
            var rows = PipelineBenchmarks.Latency(vectors, embedder.Dimensions, qs, embedder,
            [
                ("float32", CodeKind.Float32, 0), ("int8", CodeKind.Int8, 0), ("ternary", CodeKind.Ternary, 0),
                ("ternary-rescored-4", CodeKind.Ternary, 4), ("ternary-rescored-10", CodeKind.Ternary, 10), ("binary-rescored-10", CodeKind.Binary, 10),
            ]);
            Console.WriteLine($"{vectors.Length / embedder.Dimensions:N0} vectors ({docs.Count:N0} corpus embeddings + noisy copies, noise {pr.GetValue(noise)}), {qs.Count} queries, {embedder.Options.Threads} embedding threads; times in ms");
            Console.Write(PipelineBenchmarks.LatencyTable(rows));
            if (pr.GetValue(json) is { } j)
            {
                var arr = new JsonArray();
                foreach (var r in rows)
                    arr.Add((JsonNode)new JsonObject
                    {
                        ["name"] = r.Name, ["vectors"] = r.Count, ["build-seconds"] = Math.Round(r.BuildSeconds, 3),
                        ["search-p50-ms"] = Math.Round(r.SearchP50, 3), ["search-p95-ms"] = Math.Round(r.SearchP95, 3),
                        ["total-p50-ms"] = Math.Round(r.TotalP50, 3), ["total-p95-ms"] = Math.Round(r.TotalP95, 3),
                        ["top10-overlap"] = double.IsNaN(r.Overlap10) ? null : Math.Round(r.Overlap10, 4),
                    });
                AtomicFile.WriteAllText(j, arr.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
            }
            return 0;
        });
        return cmd;
    }
}
