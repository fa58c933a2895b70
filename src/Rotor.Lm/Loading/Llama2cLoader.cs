using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace Rotor.Lm.Loading;

/// <summary>
/// Reads llama2.c checkpoints (<c>run.c</c>'s format): a header of seven int32 (dim, hidden_dim, n_layers, n_heads,
/// n_kv_heads, vocab_size, seq_len; a negative vocab_size means the classifier is stored separately), then float32
/// weights in this order: token embedding (vocab, dim); rms_att (layer, dim); wq (layer, dim, dim); wk (layer, kvDim,
/// dim); wv (layer, kvDim, dim); wo (layer, dim, dim); rms_ffn (layer, dim); w1 (layer, hidden, dim); w2 (layer, dim,
/// hidden); w3 (layer, hidden, dim); rms_final (dim); freq_cis_real and freq_cis_imag (seq_len, head_size / 2 each,
/// unused); the classifier (vocab, dim) when not shared. Llama architecture: SiLU gate, adjacent-pair rotary
/// embedding with theta 10000, RMSNorm epsilon 1e-5.
/// </summary>
public static class Llama2cLoader
{
    private const int HeaderBytes = 7 * 4;

    /// <summary>Whether <paramref name="path"/> looks like a llama2.c checkpoint (by its header and size).</summary>
    public static bool Probe(string path)
    {
        try
        {
            using var fs = File.OpenRead(path);
            if (fs.Length < HeaderBytes) return false;
            Span<byte> h = stackalloc byte[HeaderBytes];
            fs.ReadExactly(h);
            var c = ParseHeader(h, path, throwOnError: false);
            return c is not null && ExpectedBytes(c.Value.Config, c.Value.Shared) == fs.Length;
        }
        catch (IOException) { return false; }
    }

    /// <summary>Loads the checkpoint; dense weights are kept as <paramref name="type"/>.</summary>
    /// <exception cref="RotorException">The header is invalid or the size does not match it.</exception>
    public static (ModelConfig Config, ModelWeights Weights) Load(string path, DenseType type = DenseType.F32)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long length = fs.Length;
        if (length < HeaderBytes) throw new RotorException($"{path}: {length} bytes, too short for a llama2.c header");
        using var mmf = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
        using var view = mmf.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
        unsafe
        {
            byte* basePtr = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePtr);
            try
            {
                basePtr += view.PointerOffset;
                var header = ParseHeader(new ReadOnlySpan<byte>(basePtr, HeaderBytes), path, throwOnError: true)!.Value;
                var c = header.Config;
                long expected = ExpectedBytes(c, header.Shared);
                if (expected != length)
                    throw new RotorException($"{path}: {length} bytes, the header (dim {c.Dim}, {c.Layers} layers, vocab {c.VocabSize}) implies {expected}");
                float* p = (float*)(basePtr + HeaderBytes);
                int d = c.Dim, hd = c.FfnDim, L = c.Layers, kv = c.KvDim, qd = c.QDim, v = c.VocabSize;
                float* Take(long count) { float* r = p; p += count; return r; }
                ReadOnlySpan<float> Span(float* at, long count) => new(at, checked((int)count));
                float* emb = Take((long)v * d);
                float* rmsAtt = Take((long)L * d);
                float* wq = Take((long)L * qd * d);
                float* wk = Take((long)L * kv * d);
                float* wv = Take((long)L * kv * d);
                float* wo = Take((long)L * d * qd);
                float* rmsFfn = Take((long)L * d);
                float* w1 = Take((long)L * hd * d);
                float* w2 = Take((long)L * d * hd);
                float* w3 = Take((long)L * hd * d);
                float* rmsFinal = Take(d);
                Take((long)c.ContextLength * (c.HeadDim / 2) * 2);
                float* cls = header.Shared ? emb : Take((long)v * d);

                LinearWeights Lin(float* at, int layer, int rows, int cols)
                    => new(DenseMatrix.FromFloat(Span(at + (long)layer * rows * cols, (long)rows * cols), rows, cols, type));
                var layers = new LayerWeights[L];
                for (int l = 0; l < L; l++)
                {
                    layers[l] = new LayerWeights
                    {
                        AttnNorm = Span(rmsAtt + (long)l * d, d).ToArray(),
                        Wq = Lin(wq, l, qd, d), Wk = Lin(wk, l, kv, d), Wv = Lin(wv, l, kv, d), Wo = Lin(wo, l, d, qd),
                        FfnNorm = Span(rmsFfn + (long)l * d, d).ToArray(),
                        WGate = Lin(w1, l, hd, d), WDown = Lin(w2, l, d, hd), WUp = Lin(w3, l, hd, d),
                    };
                }
                var embedding = DenseMatrix.FromFloat(Span(emb, (long)v * d), v, d, type);
                var weights = new ModelWeights
                {
                    Embedding = embedding,
                    Layers = layers,
                    FinalNorm = Span(rmsFinal, d).ToArray(),
                    LmHead = header.Shared ? embedding : DenseMatrix.FromFloat(Span(cls, (long)v * d), v, d, type),
                };
                weights.Validate(c, path);
                return (c, weights);
            }
            finally { view.SafeMemoryMappedViewHandle.ReleasePointer(); }
        }
    }

    /// <summary>The configuration and whether the classifier is shared with the embedding, from the 28-byte header (the
    /// file's length is checked against it; no weight is read).</summary>
    /// <exception cref="RotorException">The header is out of range or disagrees with the file's length.</exception>
    public static (ModelConfig Config, bool Shared) ReadHeader(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        if (fs.Length < HeaderBytes) throw new RotorException($"{path}: {fs.Length} bytes, too short for a llama2.c header");
        Span<byte> h = stackalloc byte[HeaderBytes];
        fs.ReadExactly(h);
        var header = ParseHeader(h, path, throwOnError: true)!.Value;
        var c = header.Config;
        long expected = ExpectedBytes(c, header.Shared);
        if (expected != fs.Length)
            throw new RotorException($"{path}: {fs.Length} bytes, the header (dim {c.Dim}, {c.Layers} layers, vocab {c.VocabSize}) implies {expected}");
        return header;
    }

    private static (ModelConfig Config, bool Shared)? ParseHeader(ReadOnlySpan<byte> h, string path, bool throwOnError)
    {
        Span<int> v = stackalloc int[7];
        for (int i = 0; i < 7; i++) v[i] = BinaryPrimitives.ReadInt32LittleEndian(h[(4 * i)..]);
        string[] names = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"];
        for (int i = 0; i < 7; i++)
        {
            int val = i == 5 ? Math.Abs(v[i]) : v[i];
            if (val <= 0 || val > (1 << 24))
            {
                if (throwOnError) throw new RotorException($"{path}: llama2.c header field {names[i]} = {v[i]} is out of range");
                return null;
            }
        }
        if (v[0] % v[3] != 0 || v[3] % v[4] != 0)
        {
            if (throwOnError) throw new RotorException($"{path}: dim {v[0]}, {v[3]} heads and {v[4]} key/value heads do not divide evenly");
            return null;
        }
        int headDim = v[0] / v[3];
        var c = new ModelConfig
        {
            Architecture = "llama", Dim = v[0], FfnDim = v[1], Layers = v[2], Heads = v[3], KvHeads = v[4],
            VocabSize = Math.Abs(v[5]), ContextLength = v[6], HeadDim = headDim,
            RopeTheta = 10000f, NormEps = 1e-5f, Activation = FfnActivation.Silu, Rope = RopeStyle.Interleaved,
            TiedEmbeddings = v[5] > 0,
        };
        try { c.Validate(path); }
        catch (RotorException) when (!throwOnError) { return null; }
        return (c, v[5] > 0);
    }

    private static long ExpectedBytes(ModelConfig c, bool shared)
    {
        long d = c.Dim, L = c.Layers, kv = c.KvDim, hd = c.FfnDim, v = c.VocabSize, qd = c.QDim;
        long floats = v * d + L * d + L * qd * d + 2 * L * kv * d + L * d * qd + L * d + 3 * L * hd * d + d
            + (long)c.ContextLength * (c.HeadDim / 2) * 2 + (shared ? 0 : v * d);
        return HeaderBytes + floats * 4;
    }
}
