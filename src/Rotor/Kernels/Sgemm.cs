using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Rotor.Threading;

namespace Rotor.Kernels;

// Legend: C (M, N) = A (M, K) · B (N, K)^T. Every operand is a "row source": a matrix seen as rows of K values,
// which packs MR (for A) or NR (for B) of its rows at a time into the layout the micro-kernel reads.
//   packed A strip: a[k * MR + i] = A[i0 + i, k0 + k]   (MR rows interleaved, K contiguous)
//   packed B strip: b[k * NR + j] = B[j0 + j, k0 + k]
// Rows past the end are packed as zeros, so the kernel always runs full MR x NR tiles.

/// <summary>A matrix seen as rows of K values that can pack a strip of its rows for <see cref="Sgemm"/>.</summary>
internal unsafe interface IRowSource
{
    /// <summary>Rows of the matrix.</summary>
    int Rows { get; }
    /// <summary>Values a row (the shared dimension K of the product).</summary>
    int K { get; }
    /// <summary>Writes <c>dst[k * width + i] = X[r0 + i, k0 + k]</c> for i &lt; rows, k &lt; kc, and zeros for
    /// rows &lt;= i &lt; width.</summary>
    void Pack(float* dst, int r0, int rows, int k0, int kc, int width);
    /// <summary>Length of the K slices the product should use (a slice never spans two runs of contiguous values).</summary>
    int SliceK { get; }
    /// <summary>Where possible, sets <c>ptrs[i]</c> to the contiguous values X[r0 + i, k0 .. k0 + kc) for i &lt; rows
    /// and returns true, so the kernel reads them in place; false: the strip must be packed.</summary>
    bool TryRows(int r0, int rows, int k0, int kc, float** ptrs);
}

/// <summary>A dense row-major buffer seen as a matrix: plain, <c>X[r, k] = p[r * ld + k]</c>, or transposed,
/// <c>X[r, k] = p[k * ld + r]</c>.</summary>
internal sealed unsafe class DenseSource : IRowSource
{
    private float* _p;
    private int _ld;
    private bool _transposed;

    public int Rows { get; private set; }
    public int K { get; private set; }
    // K in equal slices of at most ~256 (784 -> 3 x 262 rather than 3 x 256 + 16).
    public int SliceK => K <= 320 ? Math.Max(1, K) : (K + (K + Sgemm.KC - 1) / Sgemm.KC - 1) / ((K + Sgemm.KC - 1) / Sgemm.KC);

    public bool TryRows(int r0, int rows, int k0, int kc, float** ptrs)
    {
        if (_transposed) return false;
        for (int i = 0; i < rows; i++) ptrs[i] = _p + (long)(r0 + i) * _ld + k0;
        return true;
    }

    /// <summary>Points the source at <paramref name="p"/> (kept for the duration of one product only).</summary>
    public DenseSource Set(float* p, int rows, int k, int ld, bool transposed)
    {
        _p = p; Rows = rows; K = k; _ld = ld; _transposed = transposed;
        return this;
    }

    public void Pack(float* dst, int r0, int rows, int k0, int kc, int width)
    {
        if (!_transposed)
        {
            for (int i = 0; i < rows; i++)
            {
                float* src = _p + (long)(r0 + i) * _ld + k0;
                float* d = dst + i;
                for (int k = 0; k < kc; k++) d[k * width] = src[k];
            }
        }
        else if (rows == width && width % Vector256<float>.Count == 0)
        {
            for (int k = 0; k < kc; k++)
            {
                float* src = _p + (long)(k0 + k) * _ld + r0;
                float* d = dst + k * width;
                for (int j = 0; j < width; j += Vector256<float>.Count) Vector256.Store(Vector256.Load(src + j), d + j);
            }
            return;
        }
        else
        {
            for (int k = 0; k < kc; k++)
            {
                float* src = _p + (long)(k0 + k) * _ld + r0;
                float* d = dst + k * width;
                for (int i = 0; i < rows; i++) d[i] = src[i];
            }
        }
        if (rows < width)
            for (int k = 0; k < kc; k++)
                for (int i = rows; i < width; i++) dst[k * width + i] = 0f;
    }
}

/// <summary>
/// Blocked, packed, multi-threaded single-precision matrix product <c>C (M, N) = A (M, K) · B (N, K)^T</c>
/// (or <c>C += ...</c>), with a 6 x 16 register-tile micro-kernel over <see cref="Vector256{T}"/> FMA.
/// K is cut in slices of A's <see cref="IRowSource.SliceK"/> (256 for dense matrices): the packed B slice stays in L2,
/// a B strip (16 x slice) in L1. A strips are read in place when the source allows (dense rows, convolution patches
/// of a padded image), else packed. Work is split over threads by blocks of M rows; when M x N is small and K large
/// (weight gradients of convolutions), by ranges of K instead, each thread summing into its own C, the partial sums
/// added in a fixed order so results never depend on timing. Buffers are kept and grown: steady-state calls allocate
/// nothing. One product at a time per instance.
/// </summary>
internal sealed unsafe class Sgemm
{
    public const int MR = 6, NR = 16, KC = 256;
    private readonly WorkerPool _pool;
    private readonly TaskBuffers[] _buffers;
    private AlignedArray<float> _packB = new(0);
    private readonly PackBJob _packBJob = new();
    private readonly ComputeJob _computeJob = new();
    private readonly SplitKJob _splitJob = new();

    public Sgemm(WorkerPool pool)
    {
        _pool = pool;
        _buffers = new TaskBuffers[pool.Threads];
        for (int t = 0; t < _buffers.Length; t++) _buffers[t] = new TaskBuffers();
    }

    /// <summary>Threads used, the caller included.</summary>
    public int Threads => _pool.Threads;

    /// <summary>Packing buffers of one task of the K-split path, and its partial C.</summary>
    private sealed class TaskBuffers
    {
        public AlignedArray<float> PackA = new(0), PackB = new(0), C = new(0);
    }

    /// <summary>C (M x N, row stride ldc) = A · B^T, or C += A · B^T when <paramref name="accumulate"/>.</summary>
    public void Multiply(IRowSource a, IRowSource b, float* c, int ldc, bool accumulate)
    {
        int m = a.Rows, n = b.Rows, k = a.K;
        if (b.K != k) throw new ArgumentException($"product shapes disagree: A is {m}x{a.K}, B is {n}x{b.K} (need the same K)");
        if (m == 0 || n == 0) return;
        if (k == 0)
        {
            if (!accumulate) for (int i = 0; i < m; i++) new Span<float>(c + (long)i * ldc, n).Clear();
            return;
        }
        int slice = Math.Max(1, a.SliceK);
        int mStrips = (m + MR - 1) / MR, nStrips = (n + NR - 1) / NR;
        long work = (long)m * n * k;
        int threads = work < (1L << 18) ? 1 : _pool.Threads;
        int slices = (k + slice - 1) / slice;

        if (threads > 1 && (long)m * n <= 1L << 18 && slices >= 8 * threads)
        {
            SplitK(a, b, c, ldc, accumulate, threads, slice);
            return;
        }

        int kcMax = Math.Min(slice, k);
        Grow(ref _buffers[0].PackA, (long)mStrips * MR * kcMax);
        Grow(ref _packB, (long)nStrips * NR * kcMax);
        // Tasks: blocks of whole A strips; at least 2 a thread when M allows, at most ~120 rows a block.
        int blocks = Math.Max(threads == 1 ? 1 : threads * 2, (mStrips + 19) / 20);
        blocks = Math.Min(blocks, mStrips);
        int stripsPerBlock = (mStrips + blocks - 1) / blocks;
        blocks = (mStrips + stripsPerBlock - 1) / stripsPerBlock;

        for (int k0 = 0; k0 < k; k0 += slice)
        {
            int kc = Math.Min(slice, k - k0);
            bool acc = accumulate || k0 > 0;
            var pb = _packBJob;
            pb.Source = b; pb.Dst = _packB.Pointer; pb.K0 = k0; pb.Kc = kc; pb.N = n;
            int pbTasks = threads == 1 ? 1 : Math.Min(nStrips, threads * 4);
            pb.StripsPerTask = (nStrips + pbTasks - 1) / pbTasks;
            Run(pb, (nStrips + pb.StripsPerTask - 1) / pb.StripsPerTask, threads);

            var cj = _computeJob;
            cj.A = a; cj.PackA = _buffers[0].PackA.Pointer; cj.PackB = _packB.Pointer; cj.C = c; cj.Ldc = ldc;
            cj.M = m; cj.N = n; cj.K0 = k0; cj.Kc = kc; cj.Accumulate = acc; cj.StripsPerBlock = stripsPerBlock;
            Run(cj, blocks, threads);
        }
        _packBJob.Source = null; _computeJob.A = null;
    }

    private void SplitK(IRowSource a, IRowSource b, float* c, int ldc, bool accumulate, int threads, int slice)
    {
        int m = a.Rows, n = b.Rows, k = a.K;
        int mStrips = (m + MR - 1) / MR, nStrips = (n + NR - 1) / NR;
        int kcMax = Math.Min(slice, k);
        for (int t = 0; t < threads; t++)
        {
            Grow(ref _buffers[t].PackA, (long)mStrips * MR * kcMax);
            Grow(ref _buffers[t].PackB, (long)nStrips * NR * kcMax);
            Grow(ref _buffers[t].C, (long)m * n);
        }
        var j = _splitJob;
        j.A = a; j.B = b; j.Buffers = _buffers; j.Slice = slice; j.Tasks = threads;
        Run(j, threads, threads);
        j.A = null; j.B = null;
        // Fixed-order reduction: C (+)= partial 0 + partial 1 + ...
        for (int i = 0; i < m; i++)
        {
            var row = new Span<float>(c + (long)i * ldc, n);
            if (!accumulate) row.Clear();
            for (int t = 0; t < threads; t++)
                System.Numerics.Tensors.TensorPrimitives.Add(row, _buffers[t].C.Span.Slice(i * n, n), row);
        }
    }

    private void Run(IParallelWork job, int tasks, int threads)
    {
        if (threads == 1) { for (int t = 0; t < tasks; t++) job.Execute(t); return; }
        _pool.Run(job, tasks);
    }

    private static void Grow(ref AlignedArray<float> buffer, long need)
    {
        if (buffer.Length < need) buffer = new AlignedArray<float>(need);
    }

    private sealed class PackBJob : IParallelWork
    {
        public IRowSource? Source;
        public float* Dst;
        public int K0, Kc, N, StripsPerTask;
        public void Execute(int task)
        {
            int nStrips = (N + NR - 1) / NR;
            int s1 = Math.Min(nStrips, (task + 1) * StripsPerTask);
            for (int s = task * StripsPerTask; s < s1; s++)
            {
                int j0 = s * NR;
                Source!.Pack(Dst + (long)s * NR * Kc, j0, Math.Min(NR, N - j0), K0, Kc, NR);
            }
        }
    }

    /// <summary>One block of A strips against every B strip of one K slice.</summary>
    private static void Block(IRowSource a, float* packA, float* packB, float* c, int ldc, int m, int n, int k0, int kc, bool acc, int s0, int s1)
    {
        int nStrips = (n + NR - 1) / NR;
        float** ptrs = stackalloc float*[MR];
        // Strips readable in place are marked by a null packed pointer; the others are packed now.
        int count = s1 - s0;
        bool* direct = stackalloc bool[Math.Max(1, count)];
        for (int s = s0; s < s1; s++)
        {
            int i0 = s * MR, rows = Math.Min(MR, m - i0);
            direct[s - s0] = a.TryRows(i0, rows, k0, kc, ptrs);
            if (!direct[s - s0]) a.Pack(packA + (long)s * MR * kc, i0, rows, k0, kc, MR);
        }
        // Loop order: a B strip (16 x kc) stays in L1 while the block's A strips stream from L2.
        for (int t = 0; t < nStrips; t++)
        {
            int j0 = t * NR, cols = Math.Min(NR, n - j0);
            float* b = packB + (long)t * NR * kc;
            for (int s = s0; s < s1; s++)
            {
                int i0 = s * MR, rows = Math.Min(MR, m - i0);
                float* ct = c + (long)i0 * ldc + j0;
                if (direct[s - s0])
                {
                    a.TryRows(i0, rows, k0, kc, ptrs);
                    for (int i = rows; i < MR; i++) ptrs[i] = ptrs[0];
                    KernelRows6x16(ptrs, b, kc, ct, ldc, rows, cols, acc);
                }
                else Kernel6x16(packA + (long)s * MR * kc, b, kc, ct, ldc, rows, cols, acc);
            }
        }
    }

    private sealed class ComputeJob : IParallelWork
    {
        public IRowSource? A;
        public float* PackA, PackB, C;
        public int Ldc, M, N, K0, Kc, StripsPerBlock;
        public bool Accumulate;

        public void Execute(int task)
        {
            int mStrips = (M + MR - 1) / MR;
            int s0 = task * StripsPerBlock, s1 = Math.Min(mStrips, s0 + StripsPerBlock);
            if (s0 < s1) Block(A!, PackA, PackB, C, Ldc, M, N, K0, Kc, Accumulate, s0, s1);
        }
    }

    private sealed class SplitKJob : IParallelWork
    {
        public IRowSource? A, B;
        public TaskBuffers[] Buffers = [];
        public int Slice, Tasks;

        public void Execute(int task)
        {
            IRowSource a = A!, b = B!;
            int m = a.Rows, n = b.Rows, k = a.K;
            int slices = (k + Slice - 1) / Slice;
            int first = (int)((long)slices * task / Tasks), last = (int)((long)slices * (task + 1) / Tasks);
            TaskBuffers buf = Buffers[task];
            float* c = buf.C.Pointer;
            new Span<float>(c, m * n).Clear();
            int nStrips = (n + NR - 1) / NR, mStrips = (m + MR - 1) / MR;
            for (int sl = first; sl < last; sl++)
            {
                int k0 = sl * Slice, kc = Math.Min(Slice, k - k0);
                for (int s = 0; s < nStrips; s++)
                {
                    int j0 = s * NR;
                    b.Pack(buf.PackB.Pointer + (long)s * NR * kc, j0, Math.Min(NR, n - j0), k0, kc, NR);
                }
                Block(a, buf.PackA.Pointer, buf.PackB.Pointer, c, n, m, n, k0, kc, true, 0, mStrips);
            }
        }
    }

    /// <summary>The micro-kernel: C[0..rows, 0..cols] (+)= sum_k a[k*6 + i] * b[k*16 + j]. 12 accumulators of 8 floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Kernel6x16(float* a, float* b, int kc, float* c, int ldc, int rows, int cols, bool accumulate)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int k = 0; k < kc; k++)
        {
            Vector256<float> b0 = Vector256.Load(b), b1 = Vector256.Load(b + 8);
            Vector256<float> x = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(x, b0, c00); c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
            x = Vector256.Create(a[1]);
            c10 = Vector256.FusedMultiplyAdd(x, b0, c10); c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
            x = Vector256.Create(a[2]);
            c20 = Vector256.FusedMultiplyAdd(x, b0, c20); c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
            x = Vector256.Create(a[3]);
            c30 = Vector256.FusedMultiplyAdd(x, b0, c30); c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
            x = Vector256.Create(a[4]);
            c40 = Vector256.FusedMultiplyAdd(x, b0, c40); c41 = Vector256.FusedMultiplyAdd(x, b1, c41);
            x = Vector256.Create(a[5]);
            c50 = Vector256.FusedMultiplyAdd(x, b0, c50); c51 = Vector256.FusedMultiplyAdd(x, b1, c51);
            a += MR; b += NR;
        }
        Finish(c, ldc, rows, cols, accumulate, c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51);
    }

    /// <summary>The micro-kernel over six rows read in place: C[i, j] (+)= sum_k rows[i][k] * b[k*16 + j].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void KernelRows6x16(float** rows6, float* b, int kc, float* c, int ldc, int rows, int cols, bool accumulate)
    {
        float* a0 = rows6[0], a1 = rows6[1], a2 = rows6[2], a3 = rows6[3], a4 = rows6[4], a5 = rows6[5];
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int k = 0; k < kc; k++)
        {
            Vector256<float> b0 = Vector256.Load(b), b1 = Vector256.Load(b + 8);
            Vector256<float> x = Vector256.Create(a0[k]);
            c00 = Vector256.FusedMultiplyAdd(x, b0, c00); c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
            x = Vector256.Create(a1[k]);
            c10 = Vector256.FusedMultiplyAdd(x, b0, c10); c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
            x = Vector256.Create(a2[k]);
            c20 = Vector256.FusedMultiplyAdd(x, b0, c20); c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
            x = Vector256.Create(a3[k]);
            c30 = Vector256.FusedMultiplyAdd(x, b0, c30); c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
            x = Vector256.Create(a4[k]);
            c40 = Vector256.FusedMultiplyAdd(x, b0, c40); c41 = Vector256.FusedMultiplyAdd(x, b1, c41);
            x = Vector256.Create(a5[k]);
            c50 = Vector256.FusedMultiplyAdd(x, b0, c50); c51 = Vector256.FusedMultiplyAdd(x, b1, c51);
            b += NR;
        }
        Finish(c, ldc, rows, cols, accumulate, c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Finish(float* c, int ldc, int rows, int cols, bool accumulate,
        Vector256<float> c00, Vector256<float> c01, Vector256<float> c10, Vector256<float> c11, Vector256<float> c20, Vector256<float> c21,
        Vector256<float> c30, Vector256<float> c31, Vector256<float> c40, Vector256<float> c41, Vector256<float> c50, Vector256<float> c51)
    {
        if (rows == MR && cols == NR)
        {
            Store(c, c00, c01, accumulate); Store(c + ldc, c10, c11, accumulate); Store(c + 2 * ldc, c20, c21, accumulate);
            Store(c + 3 * ldc, c30, c31, accumulate); Store(c + 4 * ldc, c40, c41, accumulate); Store(c + 5 * ldc, c50, c51, accumulate);
            return;
        }
        float* tile = stackalloc float[MR * NR];
        c00.Store(tile); c01.Store(tile + 8); c10.Store(tile + 16); c11.Store(tile + 24); c20.Store(tile + 32); c21.Store(tile + 40);
        c30.Store(tile + 48); c31.Store(tile + 56); c40.Store(tile + 64); c41.Store(tile + 72); c50.Store(tile + 80); c51.Store(tile + 88);
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
            {
                float v = tile[i * NR + j];
                c[(long)i * ldc + j] = accumulate ? c[(long)i * ldc + j] + v : v;
            }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, Vector256<float> lo, Vector256<float> hi, bool accumulate)
    {
        if (accumulate) { lo += Vector256.Load(c); hi += Vector256.Load(c + 8); }
        lo.Store(c); hi.Store(c + 8);
    }

    /// <summary>The reference: <c>C[i, j] (+)= sum_k A[i, k] * B[j, k]</c> in double, for tests.</summary>
    internal static void Reference(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int n, int k, bool accumulate)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int q = 0; q < k; q++) s += (double)a[i * k + q] * b[j * k + q];
                c[i * n + j] = (float)(accumulate ? c[i * n + j] + s : s);
            }
    }
}
