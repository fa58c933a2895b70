using Rotor.Cuda;
using Rotor.Kernels;

namespace Rotor.Lm.Cuda;

/// <summary>
/// The language-model kernels of native/cuda/lm.cu against plain CPU references on seeded random data (odd sizes,
/// 1 and tails), and <see cref="CudaDecoder"/> against the CPU <see cref="Decoder"/> on small random models: logits
/// within 1e-3 of the largest |logit|, the same greedy tokens, batched decode equal to one sequence at a time; and
/// stories260K where its file is found. Used by <c>rotor selftest --device cuda</c> and the xunit tests.
/// </summary>
public static unsafe class CudaLmSelfTest
{
    /// <summary>Runs every check; <paramref name="stories"/> is the llama2.c stories260K checkpoint (or null),
    /// <paramref name="fixtures"/> a folder of GGUF model files (the language model's test fixtures, made by llama.cpp's
    /// and bitnet.cpp's tools: tests/Rotor.Lm.Tests/Data/gguf), each run on the GPU against the CPU (or null).</summary>
    public static List<CheckResult> Run(string? stories = null, Action<CheckResult>? progress = null, string? fixtures = null)
    {
        var a = CudaBackend.Availability;
        if (!a.IsAvailable) throw new CudaException(100, $"CUDA is not available: {a.Reason}");
        var results = new List<CheckResult>();
        void Add(CheckResult r) { results.Add(r); progress?.Invoke(r); }
        using var s = new CudaStream();
        foreach (var r in EmbedChecks(s)) Add(r);
        foreach (var r in NormChecks(s)) Add(r);
        foreach (var r in RopeChecks(s)) Add(r);
        foreach (var r in AttentionChecks(s)) Add(r);
        foreach (var r in DenseChecks(s)) Add(r);
        foreach (var r in LinearChecks(s)) Add(r);
        foreach (var r in LinearRopeChecks(s)) Add(r);
        foreach (var r in SampleChecks(s)) Add(r);
        foreach (var r in ModelChecks()) Add(r);
        if (stories is not null && File.Exists(stories)) foreach (var r in StoriesChecks(stories)) Add(r);
        if (fixtures is not null && Directory.Exists(fixtures)) foreach (var r in FixtureChecks(fixtures)) Add(r);
        return results;
    }

    // ---- helpers ----

    private sealed class Dev : IDisposable
    {
        private readonly List<DeviceBuffer> _b = [];
        private readonly CudaStream _s;
        public Dev(CudaStream s) => _s = s;
        public nint Put<T>(ReadOnlySpan<T> v) where T : unmanaged
        {
            var b = new DeviceBuffer(Math.Max((long)v.Length * sizeof(T), 256));
            _b.Add(b);
            b.Upload(v, _s);
            return b.Pointer;
        }
        public nint PutMatrix(DenseMatrix m) => Put(new ReadOnlySpan<byte>(m.DataPointer, checked(m.Rows * m.RowStride)));
        public nint Zeros(long bytes)
        {
            var b = new DeviceBuffer(Math.Max(bytes, 256));
            _b.Add(b);
            Native.Check(Native.rotor_cuda_memset(b.Pointer, 0, (nuint)b.Bytes, _s.Pointer), "memset");
            return b.Pointer;
        }
        public T[] Get<T>(nint p, long count) where T : unmanaged
        {
            var r = new T[count];
            fixed (T* d = r) Native.Check(Native.rotor_cuda_memcpy_d2h((nint)d, p, (nuint)(count * sizeof(T)), _s.Pointer), "download");
            _s.Synchronize();
            return r;
        }
        public void Dispose() { foreach (var b in _b) b.Dispose(); }
    }

    private static float[] Rand(Random r, long n, float scale = 1f)
    {
        var v = new float[n];
        for (long i = 0; i < n; i++) v[i] = ((float)r.NextDouble() * 2 - 1) * scale;
        return v;
    }

    /// <summary>Compares within atol + rtol * |expected|.</summary>
    private static CheckResult Compare(string kernel, string shape, string detail, ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double atol, double rtol)
    {
        long bad = 0; double max = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double d = Math.Abs((double)expected[i] - actual[i]);
            if (double.IsNaN(d)) d = double.PositiveInfinity;
            max = Math.Max(max, d);
            if (!(d <= atol + rtol * Math.Abs(expected[i]))) bad++;
        }
        return new CheckResult(kernel, shape, detail, expected.Length, bad, max, atol == 0 && rtol == 0);
    }

    // ---- kernels ----

    private static IEnumerable<CheckResult> EmbedChecks(CudaStream s)
    {
        var rng = new Random(11);
        foreach (DenseType t in new[] { DenseType.F32, DenseType.F16, DenseType.Int8 })
            foreach (int dim in new[] { 1, 5, 130 })
            {
                using var dv = new Dev(s);
                int vocab = 37, m = 9;
                var table = DenseMatrix.FromFloat(Rand(rng, vocab * dim), vocab, dim, t);
                var ids = new int[m];
                for (int i = 0; i < m; i++) ids[i] = rng.Next(vocab);
                ids[0] = vocab - 1;
                nint w = dv.PutMatrix(table);
                nint sc = t == DenseType.Int8 ? dv.Put(table.Scales) : 0;
                nint x = dv.Zeros(m * dim * 4L);
                Native.Check(Native.rotor_lm_embed(w, (int)t, table.RowStride, sc, vocab, dv.Put<int>(ids), m, dim, x, dim, s.Pointer), "embed");
                var got = dv.Get<float>(x, m * dim);
                var want = new float[m * dim];
                for (int i = 0; i < m; i++) table.GetRow(ids[i], want.AsSpan(i * dim, dim));
                yield return Compare("lm embed", $"vocab={vocab} dim={dim} m={m}", t.ToString(), want, got, 0, 0);
            }
    }

    /// <summary>The CPU reference of rotor_lm_norm: row, optional norm (x * inv, then * weight), int8 as QuantizedActivations.</summary>
    private static IEnumerable<CheckResult> NormChecks(CudaStream s)
    {
        var rng = new Random(12);
        foreach (int cols in new[] { 1, 7, 256, 300, 2560, 6912 })
            foreach (string mode in new[] { "norm", "norm noweight", "add norm", "relu2", "relu2 norm", "silu norm" })
            {
                using var dv = new Dev(s);
                int m = cols > 1000 ? 3 : 5, padded = (cols + 255) / 256 * 256;
                float[] x = Rand(rng, m * cols, 3f), other = Rand(rng, m * cols, 2f), w = Rand(rng, cols);
                bool add = mode.StartsWith("add", StringComparison.Ordinal), glu = mode.StartsWith("relu2", StringComparison.Ordinal) || mode.StartsWith("silu", StringComparison.Ordinal);
                bool norm = mode.Contains("norm", StringComparison.Ordinal), weight = !mode.Contains("noweight", StringComparison.Ordinal);
                int act = mode.StartsWith("relu2", StringComparison.Ordinal) ? 1 : 0;
                // glu: x holds gate | up, 2 cols a row
                float[] xin = glu ? new float[m * 2 * cols] : x;
                if (glu) for (int i = 0; i < m; i++) { x.AsSpan(i * cols, cols).CopyTo(xin.AsSpan(i * 2 * cols)); other.AsSpan(i * cols, cols).CopyTo(xin.AsSpan(i * 2 * cols + cols)); }
                int xs = glu ? 2 * cols : cols;
                nint dx = dv.Put<float>(xin), dadd = add ? dv.Put<float>(other) : 0, dw = weight ? dv.Put<float>(w) : 0;
                nint y = dv.Zeros(m * cols * 4L), q = dv.Zeros(m * padded), qs = dv.Zeros(m * 4L), qsum = dv.Zeros(m * 4L);
                Native.Check(Native.rotor_lm_norm(dx, m, cols, xs, dadd, add ? cols : 0, glu ? dx + cols * 4 : 0, glu ? xs : 0, act, norm ? 1 : 0, dw, 1e-5f,
                    y, cols, q, padded, qs, qsum, s.Pointer), "norm");
                var want = new float[m * cols];
                for (int i = 0; i < m; i++)
                {
                    var row = want.AsSpan(i * cols, cols);
                    for (int j = 0; j < cols; j++)
                    {
                        float v = x[i * cols + j];
                        if (add) v += other[i * cols + j];
                        else if (glu)
                        {
                            float g = act == 1 ? MathF.Max(v, 0) * MathF.Max(v, 0) : v * (1f / (1f + MathF.Exp(-v)));
                            v = g * other[i * cols + j];
                        }
                        row[j] = v;
                    }
                    if (norm)
                    {
                        double ss = 0;
                        foreach (float v in row) ss += (double)v * v;
                        float inv = 1f / MathF.Sqrt((float)(ss / cols) + 1e-5f);
                        for (int j = 0; j < cols; j++) { row[j] *= inv; if (weight) row[j] *= w[j]; }
                    }
                }
                string shape = $"m={m} cols={cols}";
                yield return Compare("lm norm", shape, mode, want, dv.Get<float>(y, m * cols), 1e-6, 2e-5);
                if (add)
                {
                    var xs2 = new float[m * cols];
                    for (int i = 0; i < xs2.Length; i++) xs2[i] = x[i] + other[i];
                    yield return Compare("lm norm residual", shape, mode, xs2, dv.Get<float>(dx, m * cols), 0, 0);
                }
                // int8 of the GPU's own float row must equal the CPU quantization of that row (bit for bit).
                var gy = dv.Get<float>(y, m * cols);
                var qa = new QuantizedActivations(m, cols);
                qa.Quantize(gy);
                var gq = dv.Get<sbyte>(q, m * padded);
                var gs = dv.Get<float>(qs, m);
                var gsum = dv.Get<int>(qsum, m);
                long bad = 0;
                for (int i = 0; i < m * padded; i++) if (gq[i] != qa.Data[i]) bad++;
                for (int i = 0; i < m; i++) { if (gs[i] != qa.Scales[i]) bad++; if (gsum[i] != qa.Sums[i]) bad++; }
                yield return new CheckResult("lm norm quantize", shape, mode, m * (padded + 2L), bad, 0, true);
            }
    }

    private static IEnumerable<CheckResult> RopeChecks(CudaStream s)
    {
        var rng = new Random(13);
        foreach (var (heads, kvHeads, hd) in new[] { (1, 1, 2), (4, 2, 8), (20, 5, 128), (3, 1, 62) })
            foreach (RopeStyle style in new[] { RopeStyle.Half, RopeStyle.Interleaved })
                foreach (bool f16 in new[] { false, true })
                {
                    using var dv = new Dev(s);
                    int m = 3, cap = 40, slots = 2, qd = heads * hd, kvd = kvHeads * hd, width = qd + 2 * kvd;
                    var c = new ModelConfig { Architecture = "t", Dim = qd, Layers = 1, Heads = heads, KvHeads = kvHeads, HeadDim = hd, FfnDim = 1, VocabSize = 1,
                        ContextLength = cap, RopeTheta = 10000f, NormEps = 1e-5f, Activation = FfnActivation.Silu, Rope = style };
                    var (cos, sin) = Decoder.RopeTables(c, cap);
                    float[] qkv = Rand(rng, m * width);
                    int[] pos = [0, 17, cap - 1], slot = [1, 0, 1];
                    long slotStride = 2L * cap * kvd;
                    nint d = dv.Put<float>(qkv), kc = dv.Zeros(slots * slotStride * 4);
                    nint vc = kc + (nint)(cap * kvd * (f16 ? 2L : 4L));
                    Native.Check(Native.rotor_lm_rope_kv(d, m, width, heads, kvHeads, hd, style == RopeStyle.Half ? 1 : 0, dv.Put<float>(cos), dv.Put<float>(sin),
                        dv.Put<int>(pos), dv.Put<int>(slot), kc, vc, f16 ? 1 : 0, slotStride, s.Pointer), "rope_kv");
                    var want = (float[])qkv.Clone();
                    RotateReference(want, m, width, heads + kvHeads, hd, style, cos, sin, pos);
                    string shape = $"heads={heads}/{kvHeads} hd={hd} m={m}", detail = $"{style} {(f16 ? "f16" : "f32")} cache";
                    yield return Compare("lm rope", shape, detail, want, dv.Get<float>(d, m * width), 0, 0);
                    var (wk, gk) = CacheRows(dv, want, width, qd, kvd, kc, f16, cap, slotStride, slot, pos);
                    yield return Compare("lm kv append", shape, detail, wk, gk, 0, f16 ? 1e-3 : 0);
                }
    }

    /// <summary>Rotates the first <paramref name="rotated"/> heads of each of the m rows (width apart) in place as
    /// rope_kv_kernel does, one rounding an operation.</summary>
    private static void RotateReference(float[] rows, int m, int width, int rotated, int hd, RopeStyle style, float[] cos, float[] sin, int[] pos)
    {
        for (int i = 0; i < m; i++)
            for (int h = 0; h < rotated; h++)
            {
                var v = rows.AsSpan(i * width + h * hd, hd);
                for (int j = 0; j < hd / 2; j++)
                {
                    float co = cos[pos[i] * (hd / 2) + j], si = sin[pos[i] * (hd / 2) + j];
                    int ia = style == RopeStyle.Half ? j : 2 * j, ib = style == RopeStyle.Half ? j + hd / 2 : 2 * j + 1;
                    float a = v[ia], b = v[ib];
                    v[ia] = a * co - b * si;
                    v[ib] = style == RopeStyle.Half ? b * co + a * si : a * si + b * co;
                }
            }
    }

    /// <summary>The k and v each of the m rows should have appended (from <paramref name="want"/>'s rows, k at qd)
    /// and what the caches at kc (a slot's keys, then its values cap positions later) hold at (slot, pos).</summary>
    private static (float[] Want, float[] Got) CacheRows(Dev dv, float[] want, int width, int qd, int kvd, nint kc, bool f16, int cap, long slotStride, int[] slot, int[] pos)
    {
        int m = pos.Length;
        var wk = new float[m * 2 * kvd];
        var gk = new float[m * 2 * kvd];
        for (int i = 0; i < m; i++)
        {
            want.AsSpan(i * width + qd, 2 * kvd).CopyTo(wk.AsSpan(i * 2 * kvd));
            long ko = slot[i] * slotStride + (long)pos[i] * kvd, vo = ko + (long)cap * kvd;
            for (int part = 0; part < 2; part++)
            {
                long off = part == 0 ? ko : vo;
                if (f16) { var h = dv.Get<Half>(kc + (nint)(off * 2), kvd); for (int j = 0; j < kvd; j++) gk[i * 2 * kvd + part * kvd + j] = (float)h[j]; }
                else dv.Get<float>(kc + (nint)(off * 4), kvd).CopyTo(gk.AsSpan(i * 2 * kvd + part * kvd));
            }
        }
        return (wk, gk);
    }

    private static IEnumerable<CheckResult> AttentionChecks(CudaStream s)
    {
        var rng = new Random(14);
        foreach (var (heads, kvHeads, hd) in new[] { (1, 1, 8), (4, 1, 64), (20, 5, 128), (8, 4, 8), (16, 2, 32), (12, 1, 80), (2, 2, 256) })
            foreach (int cap in new[] { 1, 70, 1100 })
                foreach (bool f16 in new[] { false, true })
                {
                    using var dv = new Dev(s);
                    int qd = heads * hd, kvd = kvHeads * hd, slots = 3;
                    int[] pos = cap == 1 ? [0, 0] : [0, cap - 1, cap / 2, 63, 64, 65];
                    pos = pos.Where(p => p < cap).ToArray();
                    int m = pos.Length;
                    int[] slot = new int[m];
                    for (int i = 0; i < m; i++) slot[i] = i % slots;
                    float[] q = Rand(rng, m * qd);
                    long slotStride = 2L * cap * kvd;
                    float[] cache = Rand(rng, slots * slotStride);
                    if (f16) for (int i = 0; i < cache.Length; i++) cache[i] = (float)(Half)cache[i];
                    nint kc;
                    if (f16) { var h = new Half[cache.Length]; for (int i = 0; i < h.Length; i++) h[i] = (Half)cache[i]; kc = dv.Put<Half>(h); }
                    else kc = dv.Put<float>(cache);
                    nint vc = kc + (nint)(cap * kvd * (f16 ? 2L : 4L));
                    var (splitLen, splits, ws) = Plan(cap, m, heads, hd);
                    nint y = dv.Zeros(m * qd * 4L);
                    float scale = 1f / MathF.Sqrt(hd);
                    Native.Check(Native.rotor_lm_attention(dv.Put<float>(q), m, qd, heads, kvHeads, hd, kc, vc, f16 ? 1 : 0, slotStride, dv.Put<int>(pos), dv.Put<int>(slot),
                        scale, splitLen, splits, dv.Zeros(ws), 0, 0, 1e-5f, y, qd, 0, 0, 0, 0, s.Pointer), "attention");
                    var want = new float[m * qd];
                    int g = heads / kvHeads;
                    for (int i = 0; i < m; i++)
                        for (int h = 0; h < heads; h++)
                        {
                            int kh = h / g, len = pos[i] + 1;
                            long kb = slot[i] * slotStride + kh * hd, vb = kb + (long)cap * kvd;
                            var sc = new double[len];
                            double mx = double.NegativeInfinity;
                            for (int t = 0; t < len; t++)
                            {
                                double dot = 0;
                                for (int j = 0; j < hd; j++) dot += (double)q[i * qd + h * hd + j] * cache[kb + (long)t * kvd + j];
                                sc[t] = dot * scale; mx = Math.Max(mx, sc[t]);
                            }
                            double sum = 0;
                            for (int t = 0; t < len; t++) { sc[t] = Math.Exp(sc[t] - mx); sum += sc[t]; }
                            for (int j = 0; j < hd; j++)
                            {
                                double o = 0;
                                for (int t = 0; t < len; t++) o += sc[t] / sum * cache[vb + (long)t * kvd + j];
                                want[i * qd + h * hd + j] = (float)o;
                            }
                        }
                    yield return Compare("lm attention", $"heads={heads}/{kvHeads} hd={hd} ctx={cap} m={m}", $"splits={splits}x{splitLen} {(f16 ? "f16" : "f32")}", want, dv.Get<float>(y, m * qd), 2e-5, 2e-4);
                }
    }

    private static (int SplitLen, int Splits, long Workspace) Plan(int cap, int m, int heads, int hd)
    {
        int splitLen, splits; long ws;
        Native.Check(Native.rotor_lm_attention_plan(cap, m, heads, hd, &splitLen, &splits, &ws), "attention plan");
        return (splitLen, splits, ws);
    }

    private static IEnumerable<CheckResult> DenseChecks(CudaStream s)
    {
        var rng = new Random(15);
        using var cpu = new CpuBackend(1);
        foreach (DenseType t in new[] { DenseType.F32, DenseType.F16, DenseType.Int8 })
            foreach (var (n, cols) in new[] { (1, 4), (7, 12), (300, 64), (1000, 2560), (129, 272) })
                foreach (int m in new[] { 1, 3, 8, 9, 33, 64 })
                {
                    using var dv = new Dev(s);
                    var w = DenseMatrix.FromFloat(Rand(rng, (long)n * cols), n, cols, t);
                    float[] x = Rand(rng, (long)m * cols);
                    var want = new float[m * n];
                    cpu.MatMul(w, x, want);
                    int padded = (cols + 255) / 256 * 256;
                    nint dw = dv.PutMatrix(w);
                    nint dx = dv.Put<float>(x), q = dv.Zeros((long)m * padded), qs = dv.Zeros(m * 4L), qsum = dv.Zeros(m * 4L);
                    if (t == DenseType.Int8) Native.Check(Native.rotor_cuda_quantize(dx, m, cols, cols, q, padded, qs, qsum, s.Pointer), "quantize");
                    nint y = dv.Zeros((long)m * n * 4);
                    Native.Check(Native.rotor_lm_dense(dw, (int)t, w.RowStride, t == DenseType.Int8 ? dv.Put(w.Scales) : 0, n, cols, dx, cols, q, padded, qs, m, y, n,
                        dv.Zeros((long)m * cols * 2), s.Pointer), "dense");
                    var got = dv.Get<float>(y, (long)m * n);
                    // f16 with m > 8 multiplies f16-rounded x on tensor cores: bounded by |w| |x| 2^-11 per term.
                    double bound = t == DenseType.Int8 ? 1e-6 : t == DenseType.F16 && m > 8 ? cols * 1e-3 : cols * 1e-6;
                    yield return Compare("lm dense", $"n={n} cols={cols} m={m}", t.ToString() + (t == DenseType.F16 && m > 8 && cols % 16 == 0 ? " mma" : " gemv"), want, got, bound, 1e-5);
                }
    }

    private static IEnumerable<CheckResult> SampleChecks(CudaStream s)
    {
        var rng = new Random(16);
        foreach (int vocab in new[] { 1, 5, 1000, 128256 })
        {
            using var dv = new Dev(s);
            int m = 4;
            float[] l = Rand(rng, (long)m * vocab, 5f);
            if (vocab > 2) { l[3] = 9f; l[vocab - 1] = 9f; }   // a tie for the argmax of row 0: the lower id wins
            var greedy = new LmSamplingNative[m];
            for (int i = 0; i < m; i++) greedy[i] = new LmSamplingNative { Temperature = 0, TopP = 1, TopK = 40, Seed = 1 };
            nint dl = dv.Put<float>(l), dpos = dv.Put<int>(new int[m]), outp = dv.Zeros(m * 4L);
            foreach (bool parts in new[] { false, true })
            {
                Native.Check(Native.rotor_lm_sample(dl, m, vocab, vocab, dv.Put<LmSamplingNative>(greedy), dpos, parts ? dv.Zeros(m * 64L * 8) : 0, outp, s.Pointer), "sample");
                var got = dv.Get<int>(outp, m);
                long bad = 0;
                for (int i = 0; i < m; i++) if (got[i] != Sampler.ArgMax(l.AsSpan(i * vocab, vocab))) bad++;
                yield return new CheckResult("lm sample argmax", $"vocab={vocab} m={m}", parts ? "ties: lowest id; 64 CTAs a row" : "ties: lowest id; one CTA", m, bad, 0, true);
            }

            // Top-k / top-p / min-p: every draw inside the CPU sampler's kept set, and over many seeds each of the
            // set's most likely tokens drawn.
            foreach (var (k, p, minp, temp) in new[] { (40, 0.95f, 0.05f, 0.8f), (1024, 1f, 0f, 1.5f), (3, 0.5f, 0f, 1f), (2, 1f, 0f, 0.3f) })
            {
                int draws = 64;
                var prm = new LmSamplingNative[draws];
                for (int i = 0; i < draws; i++) prm[i] = new LmSamplingNative { Temperature = temp, TopP = p, MinP = minp, TopK = k, Seed = (ulong)(1000 + i) };
                // draws rows of the same logits row 0
                var rows = new float[(long)draws * vocab];
                for (int i = 0; i < draws; i++) l.AsSpan(0, vocab).CopyTo(rows.AsSpan(i * vocab));
                nint dr = dv.Put<float>(rows), o2 = dv.Zeros(draws * 4L);
                Native.Check(Native.rotor_lm_sample(dr, draws, vocab, vocab, dv.Put<LmSamplingNative>(prm), dv.Put<int>(new int[draws]), 0, o2, s.Pointer), "sample");
                var ids = dv.Get<int>(o2, draws);
                var kept = KeptSet(l.AsSpan(0, vocab), k, p, minp, temp);
                long outside = ids.Count(id => !kept.Contains(id));
                yield return new CheckResult("lm sample top-k/p", $"vocab={vocab} draws={draws}", $"k={k} p={p} min-p={minp} T={temp}", draws, outside, 0, true);
            }
        }
    }

    /// <summary>The tokens Sampler.Sample may return for these options (its candidate list after top-k, top-p, min-p).</summary>
    private static HashSet<int> KeptSet(ReadOnlySpan<float> l, int k, float topP, float minP, float temp)
    {
        int n = l.Length;
        var ids = Enumerable.Range(0, n).ToArray();
        var arr = l.ToArray();
        Array.Sort(ids, (a, b) => arr[b].CompareTo(arr[a]) is var c && c != 0 ? c : a.CompareTo(b));
        k = Math.Min(k, n);
        var p = new double[k];
        double sum = 0;
        for (int i = 0; i < k; i++) { p[i] = Math.Exp((arr[ids[i]] - arr[ids[0]]) / temp); sum += p[i]; }
        int keep = k; double c2 = 0;
        if (topP < 1) for (int i = 0; i < k; i++) { c2 += p[i] / sum; if (c2 >= topP - 1e-5) { keep = i + 1; break; } }
        if (minP > 0) { int m = 1; while (m < keep && p[m] / sum >= minP * p[0] / sum * (1 - 1e-5)) m++; keep = m; }
        // One more at the boundary: float sums on the GPU may round the prefix the other way.
        return ids.Take(Math.Min(k, keep + 1)).ToHashSet();
    }

    // ---- whole models ----

    private static IEnumerable<CheckResult> ModelChecks()
    {
        var bitnet = new ModelConfig { Architecture = "bitnet", Dim = 320, Layers = 2, Heads = 5, KvHeads = 1, HeadDim = 64, FfnDim = 864, VocabSize = 1000,
            ContextLength = 256, RopeTheta = 500000f, NormEps = 1e-5f, Activation = FfnActivation.Relu2, Rope = RopeStyle.Half, SubNorms = true, TiedEmbeddings = true };
        var llama = bitnet with { Architecture = "llama", Dim = 128, Heads = 8, KvHeads = 4, HeadDim = 16, FfnDim = 200, Activation = FfnActivation.Silu,
            Rope = RopeStyle.Interleaved, SubNorms = false };
        // Head size 32: the persistent one-row step takes it (interleaved rotary pairs, SiLU, no sub-norms).
        var llama32 = llama with { Heads = 4, KvHeads = 2, HeadDim = 32 };
        foreach (var (name, c, headType) in new[] { ("random bitnet", bitnet, DenseType.F16), ("random bitnet int8 head", bitnet, DenseType.Int8), ("random llama f16", llama, DenseType.F16),
            ("random llama hd32", llama32, DenseType.F16) })
        {
            var w = RandomModel.Create(c, seed: 5, embeddingType: DenseType.F16);
            using var model = LanguageModel.FromWeights(c, w, new LanguageModelOptions { Threads = 1, LmHeadType = headType });
            foreach (var r in CompareModel(name, model, prompt: 13, generate: 16, f16Cache: false)) yield return r;
            // An f16 cache rounds k and v; in BitNet models the int8 quantization after the attention turns that into
            // logit changes of several percent (seen: up to 14% of the largest on this random model), so there only the
            // greedy tokens are compared.
            foreach (var r in CompareModel(name, model, prompt: 13, generate: 4, f16Cache: true, logits: !c.SubNorms)) yield return r;
            foreach (var r in CompareBatch(name, model)) yield return r;
            if (headType == DenseType.F16) foreach (var r in ComparePool(name, c, w)) yield return r;
        }
        {
            // 56 sequences of a model with 1024-wide rows: the batch's products take the 128 x 64 wgmma tile on sm_90a
            // (49..64 rows), split over clusters of two CTAs where K has 4 blocks, inside the decoder's CUDA graph.
            var wide = bitnet with { Dim = 1024, Heads = 8, KvHeads = 2, HeadDim = 128, FfnDim = 2816 };
            var w = RandomModel.Create(wide, seed: 7, embeddingType: DenseType.F16);
            using var model = LanguageModel.FromWeights(wide, w, new LanguageModelOptions { Threads = 1, LmHeadType = DenseType.F16 });
            foreach (var r in CompareBatch("random bitnet 1024", model, seqs: 56)) yield return r;
        }
        {
            // A context longer than 8 positions a warp times the persistent kernel's splits (several positions a warp).
            var w = RandomModel.Create(bitnet, seed: 6, embeddingType: DenseType.F16);
            using var model = LanguageModel.FromWeights(bitnet, w, new LanguageModelOptions { Threads = 1, LmHeadType = DenseType.F16 });
            // Over 1100 positions the attention's float sums, taken in another order on each side, move some rows'
            // int8 quantization of the next product's input by one step, which changes those positions' logits by
            // more than 1e-3 of the largest (a few percent of the positions, not their argmax); so the prompt's logits
            // are compared by their argmax at every position, the decode steps' within the bound.
            foreach (var r in CompareModel("random bitnet long", model, prompt: 1100, generate: 4, f16Cache: false, prefillArgmax: true)) yield return r;
        }
    }

    /// <summary>Every model of the folder (GGUF files of an architecture Rotor runs; a file of tensors only, such as
    /// types.gguf, is passed over): each prompt position's logits and a greedy continuation on the GPU against the CPU
    /// decoder. A model file that does not load is a failed check.</summary>
    private static IEnumerable<CheckResult> FixtureChecks(string folder)
    {
        foreach (string path in Directory.GetFiles(folder, "*.gguf").Order(StringComparer.Ordinal))
        {
            string name = System.IO.Path.GetFileNameWithoutExtension(path);
            LanguageModel? model = null;
            string? error = null;
            try
            {
                using (var f = Rotor.Lm.Gguf.GgufFile.Open(path))
                    if (f.Architecture is not { } arch || Rotor.Lm.Loading.GgufArchitecture.Find(arch) is null) continue;
                model = LanguageModel.Load(path, new LanguageModelOptions { Threads = 1 });
            }
            catch (RotorException e) { error = e.Message; }
            if (model is null)
            {
                yield return new CheckResult($"lm model {name}", "load", error ?? "", 1, 1, 0, true);
                continue;
            }
            using (model)
            {
                var results = CompareModel(name, model, prompt: 9, generate: 16, f16Cache: false).ToList();
                foreach (var r in results) yield return r;
            }
        }
    }

    private static IEnumerable<CheckResult> StoriesChecks(string path)
    {
        using var model = LanguageModel.Load(path, new LanguageModelOptions { Threads = 1 });
        return CompareModel("stories260K", model, prompt: 6, generate: 32, f16Cache: false).ToList();
    }

    /// <summary>Logits of a prompt (every position) and greedy decode steps on the GPU against the CPU decoder.</summary>
    private static IEnumerable<CheckResult> CompareModel(string name, LanguageModel model, int prompt, int generate, bool f16Cache, bool logits = true, bool prefillArgmax = false)
    {
        var c = model.Config;
        var rng = new Random(17);
        var ids = new int[prompt];
        for (int i = 0; i < prompt; i++) ids[i] = rng.Next(c.VocabSize);
        int ctx = prompt + generate + 1;
        var cpu = new Decoder(c, model.Weights, model.Backend, ctx, 8);
        var cache = new KvCache(c, ctx);
        using var gm = new CudaModel(c, model.Weights);
        using var gpu = new CudaDecoder(gm, 1, ctx, 8, f16Cache);
        var want = new float[prompt * c.VocabSize];
        var got = new float[prompt * c.VocabSize];
        cpu.Forward(ids, cache, LogitsMode.All, want);
        gpu.Forward(ids, 0, 0, LogitsMode.All, got);
        string detail = f16Cache ? "f16 cache" : "f32 cache";
        if (logits && prefillArgmax)
        {
            int differ = 0;
            for (int i = 0; i < prompt; i++)
                if (Sampler.ArgMax(want.AsSpan(i * c.VocabSize, c.VocabSize)) != Sampler.ArgMax(got.AsSpan(i * c.VocabSize, c.VocabSize))) differ++;
            yield return new CheckResult($"lm model {name}", $"prompt={prompt} (prefill, argmax)", detail, prompt, differ, 0, true);
        }
        else if (logits) yield return Relative($"lm model {name}", $"prompt={prompt} (prefill, all logits)", detail, want, got, c.VocabSize);
        // Greedy continuation, each side feeding its own choice.
        int a = Sampler.ArgMax(want.AsSpan((prompt - 1) * c.VocabSize, c.VocabSize)), b = Sampler.ArgMax(got.AsSpan((prompt - 1) * c.VocabSize, c.VocabSize));
        int pos = prompt, same = a == b ? 1 : 0;
        var wl = new List<float>(); var gl = new List<float>();
        for (int t = 1; t < generate && a == b; t++)
        {
            var lw = cpu.Forward([a], cache);
            var lg = gpu.Forward([b], 0, pos++);
            wl.AddRange(lw.ToArray()); gl.AddRange(lg);
            a = Sampler.ArgMax(lw); b = Sampler.ArgMax(lg);
            if (a == b) same++;
        }
        if (logits && wl.Count > 0) yield return Relative($"lm model {name}", $"decode {wl.Count / c.VocabSize} steps", $"{detail} (graph; {Path(gpu)})", wl.ToArray(), gl.ToArray());
        yield return new CheckResult($"lm model {name}", $"greedy {generate} tokens", detail, generate, generate - same, 0, true);
    }

    /// <summary>Sequences of different lengths (1 + 7 (i mod 5)) decoded as one batch against each on its own (CPU).</summary>
    private static IEnumerable<CheckResult> CompareBatch(string name, LanguageModel model, int seqs = 5)
    {
        var c = model.Config;
        var rng = new Random(18);
        int ctx = 64;
        var cpu = new Decoder(c, model.Weights, model.Backend, ctx, Math.Max(8, seqs));
        using var gm = new CudaModel(c, model.Weights);
        using var gpu = new CudaDecoder(gm, seqs, ctx, Math.Max(16, seqs));
        var caches = new List<KvCache>();
        var lens = new int[seqs];
        var tokens = new int[seqs];
        var slots = new int[seqs];
        for (int i = 0; i < seqs; i++)
        {
            int len = 1 + 7 * (i % 5);
            var ids = new int[len];
            for (int j = 0; j < len; j++) ids[j] = rng.Next(c.VocabSize);
            var kc = new KvCache(c, ctx);
            cpu.Forward(ids, kc);
            gpu.Forward(ids, i, 0);
            caches.Add(kc); lens[i] = len; tokens[i] = rng.Next(c.VocabSize); slots[i] = i;
        }
        var want = new float[seqs * c.VocabSize];
        var got = new float[seqs * c.VocabSize];
        cpu.ForwardBatch(tokens, caches, want);
        gpu.ForwardBatch(tokens, slots, lens, got);
        yield return BatchRows($"lm model {name}", $"batch of {seqs} sequences", $"lengths 1..{1 + 7 * Math.Min(seqs - 1, 4)}", want, got, c.VocabSize);
        // Twice more (graph replay, the positions moved on).
        for (int i = 0; i < seqs; i++) lens[i]++;
        cpu.ForwardBatch(tokens, caches, want);
        gpu.ForwardBatch(tokens, slots, lens, got);
        yield return BatchRows($"lm model {name}", $"batch of {seqs} sequences", "next step (graph)", want, got, c.VocabSize);
        // Then one sequence alone, a one-row step (the persistent kernel where it runs) on a slot other than 0.
        for (int i = 0; i < seqs; i++) lens[i]++;
        int one = 3, tok = rng.Next(c.VocabSize);
        float[] lw = cpu.Forward([tok], caches[one]).ToArray();
        var lg = gpu.Forward([tok], one, lens[one]);
        yield return Relative($"lm model {name}", $"sequence {one} of {seqs} alone", Path(gpu), lw, lg);
    }

    /// <summary>The server's continuous batching on the GPU (<see cref="SequencePool"/>, the scheduler's view) against the
    /// CPU pool: three slots and steps of at most two rows (a step of three runs in two pieces), prompts in chunks
    /// between steps, a slot reused by a new sequence, logits within the bound; then steps whose tokens the GPU
    /// chooses: greedy equal to the CPU's argmax, top-k/top-p draws inside the CPU sampler's candidate set.</summary>
    private static IEnumerable<CheckResult> ComparePool(string name, ModelConfig c, ModelWeights w)
    {
        using var cpuModel = LanguageModel.FromWeights(c, w, new LanguageModelOptions { Threads = 1, LmHeadType = DenseType.F16 });
        using var gpuModel = LanguageModel.FromWeights(c, w, new LanguageModelOptions { Threads = 1, LmHeadType = DenseType.F16, Device = LmDevice.Cuda });
        if (gpuModel.Cuda is null) { yield return new CheckResult($"lm pool {name}", "on the GPU", gpuModel.DeviceNote, 1, 1, 0, true); yield break; }
        using var cpu = cpuModel.CreateSequencePool(3, 64, maxBatch: 2);
        using var gpu = gpuModel.CreateSequencePool(3, 64, maxBatch: 2);
        int v = c.VocabSize;
        var rng = new Random(19);
        var next = new int[3];
        var live = new bool[3];
        var want = new List<float>(); var got = new List<float>();
        int Start(int slot, int len)
        {
            cpu.Reset(slot); gpu.Reset(slot);
            var ids = Enumerable.Range(0, len).Select(_ => rng.Next(v)).ToArray();
            int half = len / 2 + 1;
            cpu.Prefill(slot, ids.AsSpan(0, half)); gpu.Prefill(slot, ids.AsSpan(0, half));
            var lw = cpu.Prefill(slot, ids.AsSpan(half)).ToArray();
            var lg = gpu.Prefill(slot, ids.AsSpan(half)).ToArray();
            want.AddRange(lw); got.AddRange(lg);
            live[slot] = true;
            return Sampler.ArgMax(lw);
        }
        next[0] = Start(0, 9); next[1] = Start(1, 3);
        var rowsW = new float[3 * v]; var rowsG = new float[3 * v];
        var stepW = new List<float>(); var stepG = new List<float>();
        for (int step = 0; step < 5; step++)
        {
            if (step == 1) next[2] = Start(2, 12);
            if (step == 3) next[1] = Start(1, 5);
            int[] slots = [.. Enumerable.Range(0, 3).Where(i => live[i])];
            int[] tokens = [.. slots.Select(i => next[i])];
            cpu.Step(tokens, slots, rowsW); gpu.Step(tokens, slots, rowsG);
            stepW.AddRange(rowsW.AsSpan(0, slots.Length * v).ToArray()); stepG.AddRange(rowsG.AsSpan(0, slots.Length * v).ToArray());
            for (int b = 0; b < slots.Length; b++) next[slots[b]] = Sampler.ArgMax(rowsW.AsSpan(b * v, v));
        }
        yield return Relative($"lm pool {name}", "3 slots, prompts in chunks", "each prompt's last logits, a slot reused", want.ToArray(), got.ToArray(), v);
        yield return BatchRows($"lm pool {name}", "3 slots, 5 steps of 2-3 rows", "steps in pieces of 2 rows", stepW.ToArray(), stepG.ToArray(), v);
        // Tokens chosen on the GPU: the CPU takes one step with logits, the GPU one with its choice; both then go on
        // with the CPU's argmax, so every step compares the same state.
        int[] all = [0, 1, 2];
        var greedy = new[] { SamplingOptions.Greedy, SamplingOptions.Greedy, SamplingOptions.Greedy };
        var topk = new SamplingOptions { Temperature = 0.8f, TopK = 40, TopP = 0.95f, MinP = 0.05f };
        var sampled = new[] { topk, topk, topk };
        var ids = new int[3];
        long greedyBad = 0, outside = 0;
        for (int step = 0; step < 6; step++)
        {
            bool g = step % 2 == 0;
            int[] tokens = [.. all.Select(i => next[i])];
            cpu.Step(tokens, all, rowsW);
            gpu.StepSample(tokens, all, g ? greedy : sampled, [(ulong)step, 7UL, 99UL], ids);
            for (int b = 0; b < 3; b++)
            {
                var row = rowsW.AsSpan(b * v, v);
                if (g) { if (ids[b] != Sampler.ArgMax(row)) greedyBad++; }
                else if (!KeptSet(row, topk.TopK, topk.TopP, topk.MinP, topk.Temperature).Contains(ids[b])) outside++;
                next[b] = Sampler.ArgMax(row);
            }
        }
        yield return new CheckResult($"lm pool {name}", "3 slots, tokens chosen on the GPU", "greedy steps: the CPU's argmax", 9, greedyBad, 0, true);
        yield return new CheckResult($"lm pool {name}", "3 slots, tokens chosen on the GPU", "top-k 40, p 0.95, min-p 0.05, T 0.8: inside the CPU's candidates", 9, outside, 0, true);

        // Every position's logits of a prompt (the server's echo scores), then the slot truncated to a prefix and run
        // on with other tokens (the prompt cache's reuse).
        cpu.Reset(0); gpu.Reset(0);
        var scored = Enumerable.Range(0, 10).Select(_ => rng.Next(v)).ToArray();
        var allW = new float[scored.Length * v]; var allG = new float[scored.Length * v];
        cpu.Prefill(0, scored, allW); gpu.Prefill(0, scored, allG);
        yield return Relative($"lm pool {name}", "10 prompt positions", "every position's logits (echo's scores)", allW, allG, v);
        cpu.Truncate(0, 4); gpu.Truncate(0, 4);
        var branch = Enumerable.Range(0, 5).Select(_ => rng.Next(v)).ToArray();
        var bw = cpu.Prefill(0, branch).ToArray();
        var bg = gpu.Prefill(0, branch).ToArray();
        yield return Relative($"lm pool {name}", "truncated to 4 of 10 positions, 5 more", "a kept prefix run on (the prompt cache)", bw, bg, v);
        cpu.CopyPrefix(0, 2, 6); gpu.CopyPrefix(0, 2, 6);
        var lent = Enumerable.Range(0, 3).Select(_ => rng.Next(v)).ToArray();
        var cw = cpu.Prefill(2, lent).ToArray();
        var cg = gpu.Prefill(2, lent).ToArray();
        yield return Relative($"lm pool {name}", "6 positions copied to another slot, 3 more", "a prefix lent by a running sequence (device to device)", cw, cg, v);

        // TextGenerator on a GPU session (rotor generate, the chat client): greedy tokens chosen on the GPU equal to
        // the CPU's.
        var prompt = Enumerable.Range(0, 6).Select(_ => rng.Next(v)).ToArray();
        var o = new GenerationOptions { MaxTokens = 16, Sampling = SamplingOptions.Greedy, StopOnEndTokens = false };
        var wantIds = new TextGenerator(cpuModel.CreateSession(64)).Complete(prompt, o).Ids;
        var session = gpuModel.CreateSession(64);
        bool chooses = session.ChoosesOnDevice(o.Sampling);
        var gotIds = new TextGenerator(session).Complete(prompt, o).Ids;
        long differ = Math.Abs(wantIds.Count - gotIds.Count) + wantIds.Zip(gotIds).Count(p => p.First != p.Second);
        yield return new CheckResult($"lm generate {name}", "greedy 16 tokens", chooses ? "TextGenerator, tokens chosen on the GPU" : "TextGenerator: the GPU session does not choose (a failure)",
            16, chooses ? differ : Math.Max(1, differ), 0, true);
    }

    /// <summary>A batch's logits, a row a sequence, within 1e-3 of the largest |expected| at every row of a batch of
    /// up to 7 rows; in larger batches at all but an eighth of the rows, with the argmax equal at all but one row in
    /// 28. The float sums of the norms and the attention are taken in another order on each side, which moves a row's
    /// int8 quantization of some product's input by one step now and then, and that moves the row's logits by a few
    /// percent of the largest (a 56-row batch of a 1024-wide random BitNet on an H100: 4 and 6 rows, the argmax at 1
    /// and 0; the same with every product path, whose integer dots are exact): more rows, more such steps.</summary>
    private static CheckResult BatchRows(string kernel, string shape, string detail, float[] want, float[] got, int vocab)
    {
        int rows = want.Length / vocab, rowsAllowed = rows / 8, argmaxAllowed = rows / 28;
        if (rowsAllowed == 0) return Relative(kernel, shape, detail, want, got, vocab);
        double top = 0;
        foreach (float v in want) top = Math.Max(top, Math.Abs(v));
        int badRows = 0, argmax = 0;
        double max = 0;
        for (int i = 0; i < rows; i++)
        {
            var e = want.AsSpan(i * vocab, vocab);
            var g = got.AsSpan(i * vocab, vocab);
            bool bad = false;
            for (int j = 0; j < vocab; j++)
            {
                double d = Math.Abs((double)e[j] - g[j]);
                if (double.IsNaN(d)) d = double.PositiveInfinity;
                max = Math.Max(max, d);
                bad |= !(d <= 1e-3 * top);
            }
            if (bad) badRows++;
            if (Sampler.ArgMax(e) != Sampler.ArgMax(g)) argmax++;
        }
        bool pass = badRows <= rowsAllowed && argmax <= argmaxAllowed && !double.IsInfinity(max);
        return new CheckResult(kernel, shape, $"{detail}, max|logit| {top:G3}: beyond 1e-3 of it at {badRows} of {rows} rows (at most {rowsAllowed}), argmax differs at {argmax} (at most {argmaxAllowed})",
            rows, pass ? 0 : Math.Max(1, badRows), max, false);
    }

    private static string Path(CudaDecoder d) => d.Persistent ? "one-row step: persistent kernel" : $"one-row step: kernels ({d.PersistentReason})";

    /// <summary>Random trits (n, cols) and their scales (one a row, or one for the matrix).</summary>
    private static (sbyte[] Trits, float[] Scales) RandomTrits(Random rng, int n, int cols, bool perRow)
    {
        var trits = new sbyte[(long)n * cols];
        for (long i = 0; i < trits.Length; i++) trits[i] = (sbyte)(rng.Next(3) - 1);
        return (trits, Rand(rng, perRow ? n : 1, 0.5f));
    }

    /// <summary>The reference input of a fused product: the m rows of x normalized on the CPU (sum of squares in
    /// double, times <paramref name="weight"/> where given) when <paramref name="norm"/>, then quantized as the
    /// device does.</summary>
    private static QuantizedActivations ReferenceInput(float[] x, int m, int cols, bool norm, float[]? weight)
    {
        var rows = (float[])x.Clone();
        if (norm)
            for (int i = 0; i < m; i++)
            {
                var row = rows.AsSpan(i * cols, cols);
                double ss = 0;
                foreach (float v in row) ss += (double)v * v;
                float inv = 1f / MathF.Sqrt((float)(ss / cols) + 1e-5f);
                for (int j = 0; j < cols; j++) { row[j] *= inv; if (weight is not null) row[j] *= weight[j]; }
            }
        var qa = new QuantizedActivations(m, cols);
        qa.Quantize(rows);
        return qa;
    }

    /// <summary>rotor_lm_linear's arguments for the matrix dm (m activation rows into y): the int8 input
    /// <paramref name="given"/>, or else made on the device from the float rows x (normalized when norm, times
    /// <paramref name="weight"/> where given).</summary>
    private static LmLinearNative LinearArgs(Dev dv, DeviceMatrix dm, int m, nint y, int yStride, LmEpilogue epi, QuantizedActivations? given,
        float[] x, int cols, bool norm, float[]? weight) => new()
    {
        G = new GemmArgsNative
        {
            W = dm.Data.Pointer, WScale = dm.Scales.Pointer, Y = y, RowBytes = dm.RowBytes, KBlocks = dm.Blocks, N = dm.Rows, M = m,
            WScaleStride = dm.ScaleStride, YStride = yStride,
            X = given is not null ? dv.Put<sbyte>(given.Data) : 0, XScale = given is not null ? dv.Put<float>(given.Scales) : 0,
            XSum = given is not null ? dv.Put<int>(given.Sums) : 0, XStride = given?.PaddedCols ?? 0,
        },
        Src = given is not null ? 0 : dv.Put<float>(x), NormWeight = weight is not null ? dv.Put<float>(weight) : 0, SrcStride = cols, Cols = cols,
        Norm = norm ? 1 : 0, Eps = 1e-5f, Epilogue = (int)epi,
    };

    /// <summary>Row r of the trits times activation row i of qa: the exact integer dot, then GemmArgs.Store's
    /// roundings (times the row's scale, then the matrix row's).</summary>
    private static float ExactProduct(sbyte[] trits, int cols, float[] wscale, QuantizedActivations qa, int i, int r)
    {
        long dot = 0;
        var q = qa.Data.Slice(i * qa.PaddedCols, cols);
        for (int j = 0; j < cols; j++) dot += trits[(long)r * cols + j] * q[j];
        return (float)dot * qa.Scales[i] * wscale[wscale.Length == 1 ? 0 : r];
    }

    /// <summary>rotor_lm_linear (the fused decode-step product) against a scalar CPU reference: the input made from
    /// float rows (RMSNorm with and without a weight, or quantization alone) or given as int8, and each epilogue (store,
    /// add, gated relu2 / silu), on shapes that take the bulk-copy and the register weights (with and without the
    /// early launch), partial tiles, odd columns and 1..8 rows. With the int8 input given the result is bit for bit the
    /// reference's; with the input made on the device the norm's sum is added in another order (a quantized value may
    /// differ by one), so within 1e-3 of the largest |expected|.</summary>
    private static IEnumerable<CheckResult> LinearChecks(CudaStream s)
    {
        var rng = new Random(19);
        // (n, cols, m, epilogue, input): bulk-copy tiles (few CTAs, K not a multiple of 16 blocks), register tiles
        // (K a multiple of 16, or 4+ CTAs a multiprocessor: early launch), the down projection's 27 blocks.
        var cases = new (int N, int Cols, int M, LmEpilogue Epi, string Input)[]
        {
            (40, 300, 1, LmEpilogue.Store, "norm"), (40, 300, 3, LmEpilogue.Add, "int8"), (40, 300, 8, LmEpilogue.Gated, "norm"),
            (3840, 2560, 1, LmEpilogue.Store, "norm"), (2560, 2560, 1, LmEpilogue.Add, "int8"), (2 * 1000, 2560, 2, LmEpilogue.Gated, "norm"),
            (2560, 6912, 1, LmEpilogue.Add, "norm"), (2560, 6905, 8, LmEpilogue.Add, "norm noweight"), (2 * 700, 6912, 5, LmEpilogue.Gated, "plain"),
            (100, 4096, 4, LmEpilogue.Store, "norm"), (9600, 2560, 1, LmEpilogue.Store, "norm"), (2 * 4300, 700, 3, LmEpilogue.Gated, "norm"),
            (2 * 4300, 512, 1, LmEpilogue.Gated, "int8"), (17, 1, 7, LmEpilogue.Store, "norm"),
        };
        foreach (var (n, cols, m, epi, input) in cases)
            foreach (int act in epi == LmEpilogue.Gated ? new[] { 1, 0 } : new[] { 0 })
            {
                using var dv = new Dev(s);
                var (trits, wscale) = RandomTrits(rng, n, cols, perRow: n % 2 == 0);
                using var dm = new DeviceMatrix(TernaryMatrix.FromTrits(trits, n, cols, wscale), s);
                bool norm = input.StartsWith("norm", StringComparison.Ordinal), weight = input == "norm", given = input == "int8";
                float[] x = Rand(rng, m * cols, 3f), nw = Rand(rng, cols);
                var qa = ReferenceInput(x, m, cols, norm, weight ? nw : null);
                int outCols = epi == LmEpilogue.Gated ? n / 2 : n;
                float[] y0 = Rand(rng, m * outCols, 2f);
                nint dy = dv.Put<float>(epi == LmEpilogue.Add ? y0 : new float[m * outCols]);
                var a = LinearArgs(dv, dm, m, dy, outCols, epi, given ? qa : null, x, cols, norm, weight ? nw : null);
                a.Act = act;
                RunLinear(a, s);
                var got = dv.Get<float>(dy, m * outCols);
                float Product(int i, int r) => ExactProduct(trits, cols, wscale, qa, i, r);
                var want = new float[m * outCols];
                for (int i = 0; i < m; i++)
                    for (int r = 0; r < outCols; r++)
                    {
                        float v = Product(i, r);
                        if (epi == LmEpilogue.Add) v = y0[i * outCols + r] + v;
                        else if (epi == LmEpilogue.Gated)
                        {
                            float g = act == 1 ? MathF.Max(v, 0) * MathF.Max(v, 0) : v * (1f / (1f + MathF.Exp(-v)));
                            v = g * Product(i, outCols + r);
                        }
                        want[i * outCols + r] = v;
                    }
                string shape = $"n={n} cols={cols} m={m}", detail = $"{epi.ToString().ToLowerInvariant()}{(epi == LmEpilogue.Gated ? act == 1 ? " relu2" : " silu" : "")}, input {input}";
                if (given && (epi != LmEpilogue.Gated || act == 1)) yield return Compare("lm linear", shape, detail, want, got, 0, 0);
                else yield return Relative("lm linear", shape, detail, want, got);
            }
    }

    /// <summary>rotor_lm_linear's rotary epilogue (the q/k/v product with rotary embeddings and the cache append)
    /// against a scalar reference: the exact product, then rope_kv's rotation (one rounding an operation) and the rows
    /// of the caches. Both pairings, float and f16 caches, head sizes with pairs of a CTA in two heads, the bulk-copy and
    /// register tiles (and the early launch), 1..8 rows at different positions and slots. With the int8 input given,
    /// y and a float cache are bit for bit the reference's; with the input made on the device, within 1e-3 of the
    /// largest |expected|.</summary>
    private static IEnumerable<CheckResult> LinearRopeChecks(CudaStream s)
    {
        var rng = new Random(23);
        var cases = new (int Heads, int KvHeads, int Hd, int Cols, int M, RopeStyle Style, bool F16, string Input)[]
        {
            (20, 5, 128, 2560, 1, RopeStyle.Half, false, "int8"), (20, 5, 128, 2560, 1, RopeStyle.Half, true, "norm"),
            (4, 2, 8, 300, 3, RopeStyle.Interleaved, true, "norm"), (3, 1, 62, 4096, 8, RopeStyle.Half, false, "int8"),
            (12, 4, 64, 700, 2, RopeStyle.Interleaved, false, "norm noweight"), (64, 8, 128, 256, 1, RopeStyle.Half, false, "int8"),
            (6, 6, 48, 2560, 5, RopeStyle.Interleaved, false, "int8"),
        };
        foreach (var (heads, kvHeads, hd, cols, m, style, f16, input) in cases)
        {
            using var dv = new Dev(s);
            int qd = heads * hd, kvd = kvHeads * hd, n = qd + 2 * kvd, cap = 40, slots = 3;
            var (trits, wscale) = RandomTrits(rng, n, cols, perRow: true);
            using var dm = new DeviceMatrix(TernaryMatrix.FromTrits(trits, n, cols, wscale), s);
            bool norm = input.StartsWith("norm", StringComparison.Ordinal), weight = input == "norm", given = input == "int8";
            float[] x = Rand(rng, m * cols, 3f), nw = Rand(rng, cols);
            var qa = ReferenceInput(x, m, cols, norm, weight ? nw : null);
            var c = new ModelConfig { Architecture = "t", Dim = qd, Layers = 1, Heads = heads, KvHeads = kvHeads, HeadDim = hd, FfnDim = 1, VocabSize = 1,
                ContextLength = cap, RopeTheta = 10000f, NormEps = 1e-5f, Activation = FfnActivation.Silu, Rope = style };
            var (cos, sin) = Decoder.RopeTables(c, cap);
            var pos = new int[m];
            var slot = new int[m];
            for (int i = 0; i < m; i++) { pos[i] = cap - 1 - 3 * i; slot[i] = i % slots; }  // no two rows at one (slot, pos)
            long slotStride = 2L * cap * kvd, elem = f16 ? 2 : 4;
            nint kc = dv.Zeros(slots * slotStride * elem), vc = kc + (nint)(cap * kvd * elem);
            nint dy = dv.Put<float>(new float[m * n]);
            var a = LinearArgs(dv, dm, m, dy, n, LmEpilogue.Rope, given ? qa : null, x, cols, norm, weight ? nw : null) with
            {
                RopeCos = dv.Put<float>(cos), RopeSin = dv.Put<float>(sin), Pos = dv.Put<int>(pos), Slot = dv.Put<int>(slot), KCache = kc, VCache = vc,
                SlotStride = slotStride, Heads = heads, KvHeads = kvHeads, HeadDim = hd, RopeStyle = style == RopeStyle.Half ? 1 : 0, CacheType = f16 ? 1 : 0,
            };
            RunLinear(a, s);
            var want = new float[m * n];
            for (int i = 0; i < m; i++)
                for (int r = 0; r < n; r++) want[i * n + r] = ExactProduct(trits, cols, wscale, qa, i, r);
            RotateReference(want, m, n, heads + kvHeads, hd, style, cos, sin, pos);
            var (wk, gk) = CacheRows(dv, want, n, qd, kvd, kc, f16, cap, slotStride, slot, pos);
            string shape = $"heads={heads}/{kvHeads} hd={hd} cols={cols} m={m}", detail = $"rotary {style}, {(f16 ? "f16" : "f32")} cache, input {input}";
            var got = dv.Get<float>(dy, m * n);
            if (given) yield return Compare("lm linear", shape, detail, want, got, 0, 0);
            else yield return Relative("lm linear", shape, detail, want, got);
            if (given && !f16) yield return Compare("lm linear cache", shape, detail, wk, gk, 0, 0);
            else if (given) yield return Compare("lm linear cache", shape, detail, wk, gk, 0, 1e-3);
            else yield return Relative("lm linear cache", shape, detail, wk, gk);
        }
    }

    private static void RunLinear(LmLinearNative a, CudaStream s) => Native.Check(Native.rotor_lm_linear(&a, s.Pointer), "lm linear");

    /// <summary>Within 1e-3 of the largest |expected| (the issue's tolerance for logits).</summary>
    /// <summary>Compares within 1e-3 of the largest |expected|; with <paramref name="rowLength"/> (logits of several
    /// positions) a failure also says at how many positions and the first, and whether the argmax differs there.</summary>
    private static CheckResult Relative(string kernel, string shape, string detail, ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, int rowLength = 0)
    {
        double top = 0;
        foreach (float v in expected) top = Math.Max(top, Math.Abs(v));
        var r = Compare(kernel, shape, detail, expected, actual, 1e-3 * top, 0);
        string where = "";
        if (r.Mismatches > 0 && rowLength > 0)
        {
            int rows = expected.Length / rowLength, badRows = 0, first = -1, argmax = 0;
            for (int i = 0; i < rows; i++)
            {
                var e = expected.Slice(i * rowLength, rowLength);
                var g = actual.Slice(i * rowLength, rowLength);
                bool bad = false;
                for (int j = 0; j < rowLength && !bad; j++) bad = !(Math.Abs((double)e[j] - g[j]) <= 1e-3 * top);
                if (!bad) continue;
                badRows++;
                if (first < 0) first = i;
                if (Sampler.ArgMax(e) != Sampler.ArgMax(g)) argmax++;
            }
            where = $"; at {badRows} of {rows} positions (first {first}), argmax differs at {argmax}";
        }
        return r with { Detail = $"{detail}, max|logit| {top:G3}{where}" };
    }
}
