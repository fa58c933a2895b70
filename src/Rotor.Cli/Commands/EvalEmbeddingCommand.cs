using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Rotor.Rag.Corpus;
using Rotor.Rag.Embeddings;

namespace Rotor.Cli.Commands;

/// <summary>
/// <c>rotor eval embedding</c>: sentence-embedding throughput (passages a second, tokens a second) on real texts, for
/// each thread count asked, with where the time goes (tokenize, model, pool); with <c>--device cuda</c> the model on the
/// GPU (ONNX Runtime's CUDA provider) and its embeddings compared with the CPU's.
/// </summary>
internal static class EvalEmbeddingCommand
{
    internal static Command Create()
    {
        var corpus = new Option<FileInfo?>("--corpus") { Description = "Texts from a BEIR corpus (title + text), JSON lines, plain or .gz" };
        var passages = new Option<FileInfo?>("--passages") { Description = "Texts from a passages file of 'rotor ingest passages' (title: section. text)" };
        var count = new Option<int>("--count") { Description = "Texts to embed (the first N)", DefaultValueFactory = _ => 512 }.InRange(1, 10_000_000);
        var threads = new Option<string?>("--threads") { Description = "Comma-separated thread counts to measure (default: ROTOR_THREADS, else every processor)" };
        var batch = new Option<int>("--batch-size") { Description = "Texts a model batch", DefaultValueFactory = _ => 32 }.InRange(1, 100_000);
        var device = Validate.EmbeddingDevice();
        var cmd = new Command("embedding", "Measure all-MiniLM-L6-v2 embedding throughput and where the time goes");
        foreach (var o in new Option[] { corpus, passages, count, threads, batch, device }) cmd.Options.Add(o);
        cmd.SetAction(parseResult =>
        {
            var c = parseResult.GetValue(corpus);
            var p = parseResult.GetValue(passages);
            if ((c is null) == (p is null)) throw new RotorException("give one of --corpus, --passages");
            int n = parseResult.GetValue(count);
            if (n <= 0) throw new RotorException($"--count must be positive, got {n}");
            var texts = (c is not null
                ? BeirReader.ReadCorpus(c.FullName).Select(IndexText.Of)
                : PassageFile.Read(p!.FullName).Select(IndexText.Of)).Take(n).ToList();
            var threadCounts = (parseResult.GetValue(threads) ?? Rotor.Threading.ThreadCount.Default.ToString(CultureInfo.InvariantCulture)).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int t) && t > 0 ? t : throw new RotorException($"--threads: '{s}' is not a positive integer"))
                .ToList();
            var files = ModelFiles.MiniLm();
            var dev = Validate.ToEmbeddingDevice(parseResult.GetValue(device));
            Console.WriteLine($"{texts.Count} texts from {(c ?? p)!.Name}, batch {parseResult.GetValue(batch)}, {Environment.ProcessorCount} processors");
            Console.WriteLine($"{"threads",7} {"texts/s",9} {"tokens/s",9} {"tokens",9} {"padded",9} {"tokenize",9} {"model",9} {"pool",9}  model on");
            foreach (int t in threadCounts)
            {
                using var embedder = SentenceEmbedder.Create(files, new SentenceEmbedderOptions { Threads = t, BatchSize = parseResult.GetValue(batch), Device = dev });
                if (Validate.EmbeddingDeviceLine(embedder, "eval embedding") is { } line) Console.Error.WriteLine(line);
                embedder.Embed(texts.Take(Math.Min(8, texts.Count)).ToList(), new float[Math.Min(8, texts.Count) * embedder.Dimensions]); // warm-up
                var before = embedder.Timings;
                var vectors = new float[texts.Count * embedder.Dimensions];
                var clock = Stopwatch.StartNew();
                embedder.Embed(texts, vectors);
                double secs = clock.Elapsed.TotalSeconds;
                var after = embedder.Timings;
                long tokens = after.Tokens - before.Tokens, padded = after.PaddedTokens - before.PaddedTokens;
                double tok = (after.Tokenize - before.Tokenize).TotalSeconds, model = (after.Model - before.Model).TotalSeconds, pool = (after.Pool - before.Pool).TotalSeconds;
                Console.WriteLine($"{t,7} {texts.Count / secs,9:F1} {tokens / secs,9:F0} {tokens,9} {padded,9} {tok,8:F2}s {model,8:F2}s {pool,8:F2}s  {embedder.ExecutionProvider}");
                if (embedder.ExecutionProvider != "CPU") CompareWithCpu(files, texts, vectors, embedder.Dimensions, t);
            }
            return 0;
        });
        return cmd;
    }

    // The GPU's embeddings of the first texts against the CPU's: the lowest cosine and the largest difference of a
    // component (unit vectors; the two providers sum in other orders and the GPU may use TF32).
    private static void CompareWithCpu(ModelFiles files, List<string> texts, float[] gpu, int dims, int threads)
    {
        int n = Math.Min(texts.Count, 256);
        using var cpu = SentenceEmbedder.Create(files, new SentenceEmbedderOptions { Threads = threads });
        var want = new float[n * dims];
        cpu.Embed(texts.Take(n).ToList(), want);
        double minCos = 1, maxDiff = 0;
        for (int i = 0; i < n; i++)
        {
            var a = want.AsSpan(i * dims, dims);
            var b = gpu.AsSpan(i * dims, dims);
            minCos = Math.Min(minCos, System.Numerics.Tensors.TensorPrimitives.Dot(a, b));
            for (int j = 0; j < dims; j++) maxDiff = Math.Max(maxDiff, Math.Abs(a[j] - b[j]));
        }
        Console.WriteLine($"against the CPU ({n} texts): lowest cosine {minCos:F6}, largest component difference {maxDiff:E2}");
    }
}
