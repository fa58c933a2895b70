using System.Numerics.Tensors;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Rotor.Rag.Embeddings;
using Xunit;
using Xunit.Abstractions;

namespace Rotor.Rag.Tests;

/// <summary>One all-MiniLM-L6-v2 session shared by the embedding tests (loading it takes a second or two).</summary>
public sealed class MiniLmFixture : IDisposable
{
    /// <summary>The shared embedder, batch size 4 so small inputs still make several batches.</summary>
    public SentenceEmbedder Embedder { get; } = SentenceEmbedder.CreateMiniLm(new SentenceEmbedderOptions { BatchSize = 4 });

    private readonly Lazy<Rotor.Rag.Search.Retriever> _demo;

    /// <summary>Creates the embedder; the demo retriever is built on first use.</summary>
    public MiniLmFixture() => _demo = new(() => Rotor.Rag.Demo.DemoCorpus.CreateRetrieverAsync(Embedder).GetAwaiter().GetResult());

    /// <summary>A retriever over the bundled demo corpus, built once.</summary>
    public Rotor.Rag.Search.Retriever DemoRetriever => _demo.Value;

    /// <inheritdoc />
    public void Dispose()
    {
        if (_demo.IsValueCreated) _demo.Value.Dispose();
        Embedder.Dispose();
    }
}

/// <summary>The tests that share one <see cref="MiniLmFixture"/>.</summary>
[CollectionDefinition("MiniLM")]
public sealed class MiniLmCollection : ICollectionFixture<MiniLmFixture>;

[Collection("MiniLM")]
public sealed class EmbeddingTests(MiniLmFixture fixture, ITestOutputHelper output)
{
    private readonly SentenceEmbedder _e = fixture.Embedder;

    private sealed record RefSentence(string Text, int[] Ids, float[] Embedding);
    private sealed record RefFile(string Model, int MaxTokens, RefSentence[] Sentences);

    private static RefFile LoadReference()
        => JsonSerializer.Deserialize<RefFile>(File.ReadAllText(TestPaths.Reference("minilm-reference.json")),
               new JsonSerializerOptions { PropertyNameCaseInsensitive = true })!;

    [Fact]
    public void BundledModelIsMiniLm384()
    {
        Assert.Equal(384, _e.Dimensions);
        Assert.Equal("all-MiniLM-L6-v2", _e.ModelId);
        var meta = Assert.IsType<EmbeddingGeneratorMetadata>(_e.GetService(typeof(EmbeddingGeneratorMetadata)));
        Assert.Equal(384, meta.DefaultModelDimensions);
    }

    [Fact]
    public void TokenIdsMatchIndependentWordPiece()
    {
        var reference = LoadReference();
        Assert.Equal(_e.Options.MaxTokens, reference.MaxTokens);
        foreach (var s in reference.Sentences)
            Assert.True(s.Ids.SequenceEqual(_e.Tokenize(s.Text)), $"token ids differ for \"{s.Text[..Math.Min(40, s.Text.Length)]}\": " +
                $"expected {string.Join(" ", s.Ids.Take(20))} got {string.Join(" ", _e.Tokenize(s.Text).Take(20))}");
    }

    [Fact]
    public void EmbeddingsMatchPyTorchReference()
    {
        var reference = LoadReference();
        var texts = reference.Sentences.Select(s => s.Text).ToArray();
        var all = new float[texts.Length * 384];
        _e.Embed(texts, all);
        float worst = 0;
        for (int i = 0; i < texts.Length; i++)
        {
            var row = all.AsSpan(i * 384, 384);
            float maxDiff = 0;
            for (int h = 0; h < 384; h++) maxDiff = MathF.Max(maxDiff, MathF.Abs(row[h] - reference.Sentences[i].Embedding[h]));
            worst = MathF.Max(worst, maxDiff);
            Assert.True(maxDiff < 2e-5f, $"sentence {i} (\"{texts[i][..Math.Min(40, texts[i].Length)]}\"): max |diff| {maxDiff}");
        }
        output.WriteLine($"max |ONNX Runtime - PyTorch float64| over {texts.Length} sentences: {worst:G3}");
    }

    [Fact]
    public void EmbeddingsAreUnitLengthAndDeterministic()
    {
        string[] texts = ["Albedo is the fraction of sunlight reflected.", "", "x", "Aristotle was a Greek philosopher."];
        var a = new float[texts.Length * 384];
        var b = new float[texts.Length * 384];
        _e.Embed(texts, a);
        _e.Embed(texts, b);
        Assert.Equal(a, b);
        for (int i = 0; i < texts.Length; i++)
            Assert.InRange(TensorPrimitives.Norm(a.AsSpan(i * 384, 384)), 0.99999f, 1.00001f);
    }

    [Fact]
    public void BatchedEqualsOneAtATime()
    {
        // Lengths differ so the batch pads; padding must not change any embedding.
        string[] texts = ["A man is eating food.", "The new movie is awesome, everyone who saw it says so and the critics agree.",
            "Cats.", "Stock markets fell sharply on Tuesday.", "The dog plays in the garden with a red ball all afternoon."];
        var batched = new float[texts.Length * 384];
        _e.Embed(texts, batched);
        for (int i = 0; i < texts.Length; i++)
        {
            var single = _e.Embed(texts[i]);
            float maxDiff = 0;
            for (int h = 0; h < 384; h++) maxDiff = MathF.Max(maxDiff, MathF.Abs(single[h] - batched[i * 384 + h]));
            Assert.True(maxDiff < 1e-5f, $"text {i}: batched vs single max |diff| {maxDiff}");
        }
    }

    [Fact]
    public void KnownPairsOrderAsExpected()
    {
        float Cos(string x, string y) => TensorPrimitives.Dot(_e.Embed(x), _e.Embed(y));
        float paraphrase = Cos("The new movie is awesome.", "The new movie is so great.");
        float related = Cos("A man is eating food.", "A man is eating a piece of bread.");
        float unrelated = Cos("A man is eating food.", "The stock market fell sharply on Tuesday.");
        float unrelated2 = Cos("The cat sits outside.", "Photosynthesis converts light energy into chemical energy.");
        output.WriteLine($"paraphrase {paraphrase:F3} related {related:F3} unrelated {unrelated:F3} {unrelated2:F3}");
        Assert.True(paraphrase > 0.85f, $"paraphrase cosine {paraphrase}");
        Assert.True(related > 0.6f, $"related cosine {related}");
        Assert.True(unrelated < 0.2f, $"unrelated cosine {unrelated}");
        Assert.True(unrelated2 < 0.2f, $"unrelated cosine {unrelated2}");
    }

    [Fact]
    public async Task GeneratorInterfaceReturnsTheSameVectors()
    {
        IEmbeddingGenerator<string, Embedding<float>> generator = _e;
        string[] texts = ["The cat sits outside.", "The dog plays in the garden."];
        var result = await generator.GenerateAsync(texts);
        Assert.Equal(2, result.Count);
        for (int i = 0; i < texts.Length; i++)
        {
            Assert.Equal("all-MiniLM-L6-v2", result[i].ModelId);
            Assert.Equal(_e.Embed(texts[i]), result[i].Vector.ToArray());
        }
        await Assert.ThrowsAsync<ArgumentException>(() => generator.GenerateAsync(texts, new EmbeddingGenerationOptions { Dimensions = 768 }));
    }

    [Fact]
    public void TimingsDoNotOverflowOnLongRuns()
    {
        long ticks = 3600L * System.Diagnostics.Stopwatch.Frequency; // an hour in the model
        Assert.Equal(3600.0, SentenceEmbedder.StopwatchTicksToTimeSpan(ticks).TotalSeconds, 6);
        Assert.Equal(0.5, SentenceEmbedder.StopwatchTicksToTimeSpan(System.Diagnostics.Stopwatch.Frequency / 2).TotalSeconds, 6);
    }

    [Fact]
    public void LongTextIsCutToMaxTokens()
    {
        string longText = string.Join(" ", Enumerable.Repeat("retrieval", 600));
        var ids = _e.Tokenize(longText);
        Assert.Equal(256, ids.Length);
        Assert.Equal(101, ids[0]);
        Assert.Equal(102, ids[^1]);
    }

    [Fact]
    public void WrongDestinationLengthThrows()
    {
        var e = Assert.Throws<ArgumentException>(() => _e.Embed(["a", "b"], new float[384]));
        Assert.Contains("length 384, expected texts (2) x dimensions (384)", e.Message);
    }

    [Fact]
    public void MissingOrBadModelFilesAreNamed()
    {
        string dir = TestPaths.TempDir();
        try
        {
            string missing = Path.Combine(dir, "none.dll");
            var e1 = Assert.Throws<RotorException>(() => ModelFiles.MiniLm(missing));
            Assert.Contains(missing, e1.Message);
            string notPe = Path.Combine(dir, "text.dll");
            File.WriteAllText(notPe, "not an assembly");
            var e2 = Assert.Throws<RotorException>(() => ModelFiles.MiniLm(notPe));
            Assert.Contains(notPe, e2.Message);
            string vocab = Path.Combine(dir, "vocab.txt");
            File.WriteAllText(vocab, "a\nb\n");
            var e3 = Assert.Throws<RotorException>(() => ModelFiles.FromFiles(notPe, vocab));
            Assert.Contains("[PAD]", e3.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void CudaDeviceRunsOnTheGpuOrSaysWhyNot()
    {
        // With the CUDA build of ONNX Runtime and a GPU the model runs there and agrees with the CPU within the
        // providers' rounding; otherwise (the CPU build, no GPU) it runs on the CPU, gives the CPU's vectors exactly and
        // says why.
        using var gpu = SentenceEmbedder.CreateMiniLm(new SentenceEmbedderOptions { BatchSize = 4, Device = EmbeddingDevice.Cuda });
        string[] texts = ["The Moon is Earth's only natural satellite.", "Copper conducts electricity.", "tea", ""];
        var want = new float[texts.Length * _e.Dimensions];
        var got = new float[texts.Length * gpu.Dimensions];
        _e.Embed(texts, want);
        gpu.Embed(texts, got);
        output.WriteLine($"provider {gpu.ExecutionProvider}; note: {gpu.DeviceNote ?? "(none)"}");
        if (gpu.ExecutionProvider == "CUDA")
        {
            Assert.Null(gpu.DeviceNote);
            for (int i = 0; i < texts.Length; i++)
                Assert.True(TensorPrimitives.Dot(want.AsSpan(i * 384, 384), got.AsSpan(i * 384, 384)) > 0.999f, texts[i]);
        }
        else
        {
            Assert.Equal("CPU", gpu.ExecutionProvider);
            Assert.False(string.IsNullOrWhiteSpace(gpu.DeviceNote));
            Assert.Contains("CUDA", gpu.DeviceNote);
            Assert.Equal(want, got);
        }
        Assert.Equal("CPU", _e.ExecutionProvider);
        Assert.Null(_e.DeviceNote);
    }
}

public sealed class BertNormalizerTests
{
    [Theory]
    [InlineData("Héllo Wörld! Café naïve", "hello world! cafe naive")]
    [InlineData("ÅNGSTRÖM Ñandú", "angstrom nandu")]
    [InlineData("plain ascii 123", "plain ascii 123")]
    [InlineData("e\u0301", "e")]          // a bare combining acute is removed
    [InlineData("\uD55C", "\u1112\u1161\u11AB")] // Hangul syllable HAN -> jamo
    [InlineData("北京", "北京")]
    public void LowersAndStripsAccents(string input, string expected)
        => Assert.Equal(expected, BertNormalizer.LowerAndStripAccents(input));
}

public sealed class PoolingTests
{
    [Fact]
    public void FastPoolingMatchesReference()
    {
        var r = new Random(7);
        int b = 3, t = 5, h = 37;
        var hidden = new float[b * t * h];
        for (int i = 0; i < hidden.Length; i++) hidden[i] = (float)(r.NextDouble() * 2 - 1);
        long[] mask = [1, 1, 1, 0, 0,   1, 1, 1, 1, 1,   1, 0, 0, 0, 0];
        var fast = new float[b * h];
        var reference = new float[b * h];
        Pooling.MeanPoolNormalize(hidden, mask, fast, b, t, h);
        Pooling.MeanPoolNormalizeReference(hidden, mask, reference, b, t, h);
        for (int i = 0; i < fast.Length; i++) Assert.True(MathF.Abs(fast[i] - reference[i]) < 1e-6f, $"[{i}] {fast[i]} vs {reference[i]}");
        // Row 2 keeps only token 0: its pooled vector is that token normalized.
        float n = TensorPrimitives.Norm(hidden.AsSpan(2 * t * h, h));
        Assert.Equal(hidden[2 * t * h] / n, fast[2 * h], 5);
    }

    [Fact]
    public void PoolingChecksShapes()
    {
        var e = Assert.Throws<ArgumentException>(() => Pooling.MeanPoolNormalize(new float[9], new long[2], new float[5], 1, 2, 5));
        Assert.Contains("hidden", e.Message);
    }

}
