namespace Rotor.Lm;

/// <summary>
/// Models with random weights of real shapes, for benchmarks (speed does not depend on the values) and for checks
/// that need no file: ternary layers with uniformly random trits (codes drawn from the 81 valid bytes) and a
/// per-tensor scale, norms near 1, a random embedding.
/// </summary>
public static class RandomModel
{
    /// <summary>microsoft/bitnet-b1.58-2B-4T's configuration: hidden 2560, 30 layers, 20 heads, 5 key/value heads,
    /// FFN 6912, vocabulary 128256, RoPE theta 500000, tied embeddings.</summary>
    public static ModelConfig BitNet2B4T { get; } = new()
    {
        Architecture = "bitnet", Dim = 2560, Layers = 30, Heads = 20, KvHeads = 5, HeadDim = 128, FfnDim = 6912,
        VocabSize = 128256, ContextLength = 4096, RopeTheta = 500000f, NormEps = 1e-5f, Activation = FfnActivation.Relu2,
        Rope = RopeStyle.Half, SubNorms = true, TiedEmbeddings = true,
    };

    /// <summary>A named shape: "2b4t" (<see cref="BitNet2B4T"/>), or "2b4t-Nl" for its first N layers.</summary>
    /// <exception cref="RotorException">The name is unknown.</exception>
    public static ModelConfig Shape(string name)
    {
        if (name == "2b4t") return BitNet2B4T;
        if (name.StartsWith("2b4t-", StringComparison.Ordinal) && name.EndsWith('l') && int.TryParse(name[5..^1], out int l) && l > 0)
            return BitNet2B4T with { Layers = l };
        throw new RotorException($"random model shape '{name}' is unknown (2b4t, or 2b4t-Nl for N layers)");
    }

    /// <summary>Random weights for <paramref name="config"/>: ternary linear layers when it is a BitNet model, else
    /// dense of <paramref name="embeddingType"/>; the embedding (and tied head) of <paramref name="embeddingType"/>.</summary>
    public static ModelWeights Create(ModelConfig config, int seed = 1, DenseType embeddingType = DenseType.F16)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate("random model");
        var rng = new Random(seed);
        byte[] valid = new byte[81];
        for (int i = 0, n = 0; i < 256; i++) if ((i & (i >> 1) & 0x55) == 0) valid[n++] = (byte)i;
        bool ternary = config.SubNorms;
        LinearWeights Linear(int rows, int cols)
        {
            if (!ternary)
            {
                var d = DenseMatrix.CreateUninitialized(rows, cols, embeddingType);   // every row is set below
                var row = new float[cols];
                for (int r = 0; r < rows; r++) { Fill(row, rng, 1f / MathF.Sqrt(cols)); d.SetRow(r, row); }
                return new LinearWeights(d);
            }
            int padded = (cols + 255) / 256 * 256;
            var buf = new byte[padded / 4];
            return new LinearWeights(TernaryMatrix.FromPackedRows(rows, cols, [0.5f + (float)rng.NextDouble()], (r, dst) =>
            {
                rng.NextBytes(buf);
                for (int j = 0; j < dst.Length; j++) dst[j] = valid[buf[j] % 81];
                if (padded != cols) ClearPadding(dst, cols);
            }));
        }
        float[] Norm(int n) { var v = new float[n]; for (int i = 0; i < n; i++) v[i] = 0.5f + (float)rng.NextDouble(); return v; }
        var layers = new LayerWeights[config.Layers];
        for (int l = 0; l < config.Layers; l++)
        {
            layers[l] = new LayerWeights
            {
                AttnNorm = Norm(config.Dim), FfnNorm = Norm(config.Dim),
                Wq = Linear(config.QDim, config.Dim), Wk = Linear(config.KvDim, config.Dim), Wv = Linear(config.KvDim, config.Dim),
                Wo = Linear(config.Dim, config.QDim),
                WGate = Linear(config.FfnDim, config.Dim), WUp = Linear(config.FfnDim, config.Dim), WDown = Linear(config.Dim, config.FfnDim),
                AttnSubNorm = config.SubNorms ? Norm(config.QDim) : null,
                FfnSubNorm = config.SubNorms ? Norm(config.FfnDim) : null,
            };
        }
        var emb = DenseMatrix.Create(config.VocabSize, config.Dim, embeddingType);
        var e = new float[config.Dim];
        for (int r = 0; r < config.VocabSize; r++) { Fill(e, rng, 1f); emb.SetRow(r, e); }
        var w = new ModelWeights { Embedding = emb, Layers = layers, FinalNorm = Norm(config.Dim), LmHead = emb };
        w.Validate(config, "random model");
        return w;
    }

    private static void Fill(float[] v, Random rng, float scale)
    {
        for (int i = 0; i < v.Length; i++) v[i] = ((float)rng.NextDouble() * 2 - 1) * scale;
    }

    /// <summary>Sets the padding columns (cols .. the next multiple of 256) of a packed row to code 1 (w = 0).</summary>
    private static void ClearPadding(Span<byte> row, int cols)
    {
        for (int c = cols; c < row.Length * 4; c++)
        {
            int b = c >> 8, within = c & 255, q = within >> 6, j = within & 63;
            ref byte cell = ref row[b * 64 + j];
            cell = (byte)((cell & ~(3 << (2 * q))) | (1 << (2 * q)));
        }
    }
}
