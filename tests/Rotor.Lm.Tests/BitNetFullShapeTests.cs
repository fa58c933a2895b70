using Rotor.IO;
using Rotor.Lm.Loading;

namespace Rotor.Lm.Tests;

/// <summary>
/// Rotor's decoder at BitNet b1.58 2B4T's real width (hidden 2560, 20/5 heads, FFN 6912, vocabulary 128256; 2 of its
/// 30 layers) against transformers' BitNetForCausalLM. The weights are not stored: both sides make them with the
/// splitmix64 generator of Data/bitnet-tiny/README.md ("The weight generator"), rounded to bf16, and run 16 fixed ids.
/// </summary>
public sealed class BitNetFullShapeTests
{
    private const ulong Seed = 0x0B175EED00002B4B;

    /// <summary>The generator's float32 value of element i of tensor t, rounded to bf16 and widened back.</summary>
    private static float Value(int t, long i, bool norm, double amp)
    {
        ulong x = Seed ^ ((ulong)t << 40) ^ (ulong)i;
        ulong z = unchecked(x + 0x9E3779B97F4A7C15UL);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        z ^= z >> 31;
        double u = (double)(z >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0;
        float v = norm ? (float)(1.0 + 0.5 * u) : (float)(amp * u);
        uint bits = BitConverter.SingleToUInt32Bits(v);
        ushort bf16 = (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
        return BitConverter.UInt32BitsToSingle((uint)bf16 << 16);
    }

    private static float[] Tensor(int t, long n, bool norm, double amp)
    {
        var a = new float[n];
        Parallel.For(0, (int)((n + 65535) / 65536), b =>
        {
            long end = Math.Min(n, (b + 1) * 65536L);
            for (long i = b * 65536L; i < end; i++) a[i] = Value(t, i, norm, amp);
        });
        return a;
    }

    [Fact]
    public void TwoLayersAtTheRealWidthAgreeWithTransformers()
    {
        var (c, _) = HuggingFaceLoader.ReadConfig(TestPaths.Data("bitnet-2b4t-shape"));
        Assert.Equal((2560, 2, 20, 5, 128, 6912, 128256), (c.Dim, c.Layers, c.Heads, c.KvHeads, c.HeadDim, c.FfnDim, c.VocabSize));
        var refFile = SafeTensors.Read(TestPaths.Data("bitnet-2b4t-shape", "reference.safetensors"));
        long[] Longs(string name) => refFile.Tensors[name].Data.Chunk(8).Select(b => BitConverter.ToInt64(b)).ToArray();

        // The generator itself, against the values transformers' side printed.
        float[] probes = refFile.Tensors["generator_probes"].ToFloats();
        Assert.Equal(0.0841693431f, probes[0], 1e-9f);

        var embedding = DenseMatrix.Create(c.VocabSize, c.Dim, DenseType.F32);
        var rows = new float[c.Dim];
        for (int r = 0; r < c.VocabSize; r++)
        {
            for (int j = 0; j < c.Dim; j++) rows[j] = Value(0, (long)r * c.Dim + j, false, 0.1);
            embedding.SetRow(r, rows);
        }
        LinearWeights Linear(int t, int outF, int inF) => new(HuggingFaceLoader.QuantizeOnline(Tensor(t, (long)outF * inF, false, 0.05), outF, inF, $"tensor {t}"));
        var layers = new LayerWeights[c.Layers];
        for (int l = 0; l < c.Layers; l++)
        {
            int b = 1 + 11 * l;
            layers[l] = new LayerWeights
            {
                AttnNorm = Tensor(b, c.Dim, true, 0), Wq = Linear(b + 1, c.QDim, c.Dim), Wk = Linear(b + 2, c.KvDim, c.Dim),
                Wv = Linear(b + 3, c.KvDim, c.Dim), AttnSubNorm = Tensor(b + 4, c.QDim, true, 0), Wo = Linear(b + 5, c.Dim, c.QDim),
                FfnNorm = Tensor(b + 6, c.Dim, true, 0), WGate = Linear(b + 7, c.FfnDim, c.Dim), WUp = Linear(b + 8, c.FfnDim, c.Dim),
                FfnSubNorm = Tensor(b + 9, c.FfnDim, true, 0), WDown = Linear(b + 10, c.Dim, c.FfnDim),
            };
        }
        var w = new ModelWeights { Embedding = embedding, Layers = layers, FinalNorm = Tensor(1 + 11 * c.Layers, c.Dim, true, 0), LmHead = embedding };
        using var m = LanguageModel.FromWeights(c, w, new LanguageModelOptions { Threads = 2 });

        int[] ids = Longs("input_ids").Select(i => (int)i).ToArray();
        int v = c.VocabSize;
        var logits = new float[ids.Length * v];
        m.CreateSession(32).AppendAll(ids, logits);

        // transformers and an independent float32 forward already differ by 1e-2 of the largest logit here (int8
        // rounding flips at this width, Data/bitnet-tiny/README.md "Limits"); argmax and the top 50 are what agree.
        Assert.Equal(Longs("argmax").Select(i => (int)i), Enumerable.Range(0, ids.Length).Select(p => Sampler.ArgMax(logits.AsSpan(p * v, v))));
        long[] top50 = Longs("top50_ids");
        float[] top50Logits = refFile.Tensors["top50_logits"].ToFloats(), maxAbs = refFile.Tensors["max_abs_logit"].ToFloats();
        for (int k = 0; k < 4; k++)
        {
            float[] row = logits.AsSpan((12 + k) * v, v).ToArray();
            var ours = Enumerable.Range(0, v).OrderByDescending(i => row[i]).Take(50).ToHashSet();
            int shared = top50.Skip(50 * k).Take(50).Count(id => ours.Contains((int)id));
            Assert.True(shared >= 45, $"position {12 + k}: {shared} of transformers' top 50 in Rotor's");
            float worst = 0;
            for (int j = 0; j < 50; j++) worst = MathF.Max(worst, MathF.Abs(row[(int)top50[50 * k + j]] - top50Logits[50 * k + j]));
            Console.WriteLine($"position {12 + k}: top-50 shared {shared}, max |difference| {worst / maxAbs[k]:E2} of the largest |logit|");
            Assert.True(worst <= 5e-2f * maxAbs[k], $"position {12 + k}: max |difference| {worst} of {maxAbs[k]}");
        }
    }
}
