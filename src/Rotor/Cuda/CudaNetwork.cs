using Rotor.Nn;

namespace Rotor.Cuda;

/// <summary>
/// The forward pass of a <see cref="Sequential"/> of <see cref="TernaryLinear"/>, <see cref="ReLU"/>, <see cref="Sign"/>
/// and <see cref="Softmax"/> layers, run on the GPU as one CUDA graph per batch size: copy in, per layer quantize + product
/// (an activation that follows a product is fused into its epilogue), copy out. (Two internal options remove the
/// quantize kernels between products, both slower on H100 than the quantize kernel + product with programmatic
/// dependent launch: <c>Fuse</c> and <c>QuantizeInProduct</c>.) All device buffers are allocated at
/// construction for <see cref="MaxBatch"/> rows, so replays allocate nothing. Results equal the CPU's bit for bit except
/// after a Softmax or a float-mode layer (float sums in another order).
/// </summary>
public sealed unsafe class CudaNetwork : IDisposable
{
    private abstract record Op;
    private sealed record LinearOp(DeviceMatrix W, DeviceBuffer? Bias, bool Int8, CudaActivation Act) : Op;
    private sealed record ActOp(CudaActivation Act, int Size) : Op;
    private sealed record SoftmaxOp(int Size) : Op;

    private readonly CudaBackend _backend;  // its lock serializes the use of its stream
    private readonly List<Op> _ops = [];
    private readonly List<DeviceMatrix> _owned = [];
    private readonly DeviceBuffer _a, _b;            // (MaxBatch, widest) float ping-pong
    private readonly DeviceBuffer _xq, _scale, _sum; // (MaxBatch, widest padded) int8, (MaxBatch), (MaxBatch)
    private readonly DeviceBuffer _amax;             // (products + 1, MaxBatch) row absmax as float bits (fused chains)
    private readonly DeviceBuffer _work;             // the fused products' workspace (partial tiles, counters; zeroed once)
    private readonly DeviceBuffer _barrier;          // rotor_cuda_gemm_q's grid barrier (two counters, zeroed once)
    private readonly PinnedBuffer _in, _out;         // (MaxBatch, InputSize), (MaxBatch, OutputSize) float
    private readonly Dictionary<(int Batch, bool Copies), CudaGraph> _graphs = [];
    private bool _disposed;

    /// <summary>Prepares <paramref name="net"/> for batches of up to <paramref name="maxBatch"/> rows on
    /// <paramref name="backend"/>'s device; its weights are uploaded now.</summary>
    /// <exception cref="NotSupportedException">A layer that has no GPU form (its name is given).</exception>
    public CudaNetwork(Sequential net, CudaBackend backend, int maxBatch)
    {
        ArgumentNullException.ThrowIfNull(net); ArgumentNullException.ThrowIfNull(backend);
        Check.Positive(maxBatch, nameof(maxBatch));
        _backend = backend;
        MaxBatch = maxBatch;
        InputSize = net.InputSize; OutputSize = net.OutputSize;
        try
        {
            var layers = new List<ILayer>();
            Flatten(net, layers);
            int widest = net.InputSize, widestPadded = 256;
            for (int i = 0; i < layers.Count; i++)
            {
                ILayer l = layers[i];
                widest = Math.Max(widest, l.OutputSize);
                switch (l)
                {
                    case TernaryLinear tl:
                    {
                        CudaActivation act = i + 1 < layers.Count ? ActivationOf(layers[i + 1]) : CudaActivation.None;
                        if (act != CudaActivation.None) i++;
                        DeviceMatrix w = new(tl.Weights, backend.Stream);
                        _owned.Add(w);
                        DeviceBuffer? bias = null;
                        if (!tl.Bias.IsEmpty) { bias = new DeviceBuffer(tl.Bias.Length * sizeof(float)); bias.Upload(tl.Bias, backend.Stream); }
                        _ops.Add(new LinearOp(w, bias, tl.Mode == ActivationMode.Int8, act));
                        widestPadded = Math.Max(widestPadded, tl.Weights.PaddedCols);
                        break;
                    }
                    case ReLU or Sign:
                        _ops.Add(new ActOp(ActivationOf(l), l.InputSize));
                        break;
                    case Softmax:
                        _ops.Add(new SoftmaxOp(l.InputSize));
                        break;
                    default:
                        throw new NotSupportedException($"layer {i} ({l.Name}, {l.GetType().Name}) has no CUDA form; supported: TernaryLinear, ReLU, Sign, Softmax");
                }
            }
            _a = new DeviceBuffer((long)maxBatch * widest * sizeof(float));
            _b = new DeviceBuffer((long)maxBatch * widest * sizeof(float));
            _xq = new DeviceBuffer((long)maxBatch * widestPadded);
            _scale = new DeviceBuffer(maxBatch * sizeof(float));
            _sum = new DeviceBuffer(maxBatch * sizeof(int));
            _amax = new DeviceBuffer((long)(_ops.Count(o => o is LinearOp) + 1) * maxBatch * sizeof(uint));
            nuint work = 16;
            foreach (Op o in _ops)
            {
                nuint bytes = 0;
                if (o is LinearOp { Int8: true } l && l.W.Blocks <= 32 && Native.rotor_cuda_fq_work_bytes(l.W.Rows, Math.Min(maxBatch, 64), l.W.Blocks, &bytes) == 0)
                    work = Math.Max(work, bytes);
            }
            _work = new DeviceBuffer((long)work);
            _barrier = new DeviceBuffer(16);
            Native.Check(Native.rotor_cuda_memset(_barrier.Pointer, 0, 16, backend.Stream.Pointer), "network: barrier");
            Native.Check(Native.rotor_cuda_memset(_work.Pointer, 0, work, backend.Stream.Pointer), "network: workspace");
            _in = new PinnedBuffer((long)maxBatch * InputSize * sizeof(float));
            _out = new PinnedBuffer((long)maxBatch * OutputSize * sizeof(float));
        }
        catch
        {
            foreach (Op op in _ops) if (op is LinearOp l) l.Bias?.Dispose();
            foreach (DeviceMatrix w in _owned) w.Dispose();
            _a?.Dispose(); _b?.Dispose(); _xq?.Dispose(); _scale?.Dispose(); _sum?.Dispose(); _amax?.Dispose(); _work?.Dispose(); _barrier?.Dispose(); _in?.Dispose(); _out?.Dispose();
            throw;
        }
        backend.Stream.Synchronize();
    }

    /// <summary>Largest batch.</summary>
    public int MaxBatch { get; }
    /// <summary>Features a row in.</summary>
    public int InputSize { get; }
    /// <summary>Features a row out.</summary>
    public int OutputSize { get; }
    /// <summary>Whether chains of int8 products may quantize their input themselves (rotor_cuda_gemm_fq). Off by
    /// default: on H100 the fused graph of the 4 x 2048 network ran at 37 us against 29 us for quantize kernel +
    /// product (docs/BENCHMARKS-cuda.md, runs 30-34); kept for comparisons and tested. Set before the first pass.</summary>
    internal bool Fuse { get; init; }

    /// <summary>Whether an int8 product followed by another quantizes its output for it after a grid barrier
    /// (rotor_cuda_gemm_q), where the grid fits the GPU at once. Off by default (ROTOR_CUDA_GEMM_Q=1 turns it on): on
    /// H100 the 4 x 2048 network ran at 35 us so against 29 us (docs/BENCHMARKS-cuda.md, run 34). Set before the first
    /// pass.</summary>
    internal bool QuantizeInProduct { get; init; } = Environment.GetEnvironmentVariable("ROTOR_CUDA_GEMM_Q") == "1";

    /// <summary>Kernel launches a forward pass of <see cref="MaxBatch"/> rows makes (see <see cref="KernelCount"/>).</summary>
    public int Kernels => KernelCount(MaxBatch);

    /// <summary>Kernel launches a forward pass of <paramref name="batch"/> rows makes: quantize + product per int8 layer,
    /// or one product per layer of a fused chain plus one row-absmax kernel a chain; unfused activations, softmax.</summary>
    public int KernelCount(int batch)
    {
        int count = 0;
        for (int k = 0; k < _ops.Count; k++)
        {
            if (Fused(k, batch)) count += k > 0 && Fused(k - 1, batch) ? 1 : 2;
            else count += _ops[k] is LinearOp { Int8: true } && !QuantizedBefore(k, batch) ? 2 : 1;
        }
        return count;
    }

    // Op k is an int8 product (not fused) whose input the product before it quantized (rotor_cuda_gemm_q).
    private bool QuantizedBefore(int k, int batch) => QuantizesNext(k - 1, batch);

    // Op k is an int8 product (not fused) followed by another, and quantizes its output for it (rotor_cuda_gemm_q).
    private bool QuantizesNext(int k, int batch) =>
        QuantizeInProduct && k >= 0 && k + 1 < _ops.Count && _ops[k] is LinearOp { Int8: true } l && _ops[k + 1] is LinearOp { Int8: true }
        && !Fused(k, batch) && !Fused(k + 1, batch) && Native.rotor_cuda_gemm_q_fits(l.W.Rows, batch) == 1;

    // Op k is an int8 product that quantizes its float input itself (rotor_cuda_gemm_fq) at this batch size.
    private bool Fused(int k, int batch) =>
        Fuse && k < _ops.Count && _ops[k] is LinearOp { Int8: true } l && l.W.Cols % 4 == 0 && Native.rotor_cuda_fq_fits(batch, l.W.Blocks) == 1;

    private static void Flatten(Sequential s, List<ILayer> into)
    {
        foreach (ILayer l in s.Layers)
            if (l is Sequential inner) Flatten(inner, into); else into.Add(l);
    }

    private static CudaActivation ActivationOf(ILayer l) => l switch
    {
        ReLU => CudaActivation.ReLU,
        Sign => CudaActivation.Sign,
        _ => CudaActivation.None,
    };

    /// <summary>y (batch, OutputSize) = net(x (batch, InputSize)), by one graph replay.</summary>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, int batch)
    {
        if (batch <= 0 || batch > MaxBatch) throw new ArgumentOutOfRangeException(nameof(batch), batch, $"batch must be in [1, {MaxBatch}]");
        Check.Length(x.Length, (long)batch * InputSize, nameof(x));
        Check.AtLeast(y.Length, (long)batch * OutputSize, nameof(y));
        Check.Finite(x, nameof(x));
        lock (_backend.Gate)
        {
            CudaGraph g = Graph(batch, copies: true);
            x.CopyTo(_in.AsSpan<float>(batch * InputSize));
            g.Launch(_backend.Stream);
            _backend.Stream.Synchronize();
            _out.AsSpan<float>(batch * OutputSize).CopyTo(y);
        }
    }

    /// <summary>Median microseconds of one replay, timed by CUDA events around each replay: with the host copies
    /// (<paramref name="copies"/>) or on device-resident data only.</summary>
    internal double TimeReplayUs(int batch, bool copies, int reps)
    {
        lock (_backend.Gate)
        {
            CudaGraph g = Graph(batch, copies);
            using var timer = new CudaTimer();
            var t = new double[reps];
            g.Launch(_backend.Stream);
            _backend.Stream.Synchronize();
            for (int r = 0; r < reps; r++)
            {
                timer.Start(_backend.Stream);
                g.Launch(_backend.Stream);
                t[r] = timer.StopMs(_backend.Stream) * 1000.0;
            }
            Array.Sort(t);
            return t[reps / 2];
        }
    }

    /// <summary>Median microseconds of <see cref="Forward"/> on the host's clock (copy to pinned memory, replay, wait,
    /// copy back).</summary>
    internal double TimeForwardUs(int batch, int reps)
    {
        var x = new float[batch * InputSize];
        var y = new float[batch * OutputSize];
        for (int i = 0; i < x.Length; i++) x[i] = (i % 17 - 8) * 0.125f;
        Forward(x, y, batch);
        var t = new double[reps];
        for (int r = 0; r < reps; r++)
        {
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            Forward(x, y, batch);
            t[r] = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
        }
        Array.Sort(t);
        return t[reps / 2];
    }

    private CudaGraph Graph(int batch, bool copies)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_graphs.TryGetValue((batch, copies), out CudaGraph? g)) return g;
        g = CudaGraph.Capture(_backend.Stream, () => Record(batch, copies));
        _graphs[(batch, copies)] = g;
        return g;
    }

    // Queues one forward pass on the stream (inside a capture). Activations ping-pong between _a and _b.
    private void Record(int batch, bool copies)
    {
        nint s = _backend.Stream.Pointer;
        DeviceBuffer cur = _a, next = _b;
        int width = InputSize;
        int slot = -1;  // the _amax slot that holds cur's row absmax, or -1
        nint Amax(int k) => _amax.Pointer + (nint)k * MaxBatch * sizeof(uint);
        if (copies) Native.Check(Native.rotor_cuda_memcpy_h2d(_a.Pointer, _in.Pointer, (nuint)((long)batch * InputSize * sizeof(float)), s), "graph: input copy");
        for (int k = 0; k < _ops.Count; k++)
        {
            Op op = _ops[k];
            if (Fused(k, batch))
            {
                var l = (LinearOp)op;
                DeviceMatrix w = l.W;
                if (slot < 0)
                {
                    // A chain starts: its input's absmax into slot 0, the slots of the chain's later inputs zeroed.
                    int chain = 1;
                    while (Fused(k + chain, batch)) chain++;
                    slot = 0;
                    Native.Check(Native.rotor_cuda_row_absmax(cur.Pointer, batch, w.Cols, w.Cols, Amax(0), Amax(1), (chain - 1) * MaxBatch, s), "graph: row absmax");
                }
                bool more = Fused(k + 1, batch);
                GemmArgsNative a = CudaBackend.Args(w, 0, 0, 0, 0, batch, l.Bias?.Pointer ?? 0, next.Pointer, w.Rows, l.Act);
                Native.Check(Native.rotor_cuda_gemm_fq(&a, cur.Pointer, w.Cols, w.Cols, Amax(slot), more ? Amax(slot + 1) : 0,
                    _work.Pointer, (nuint)_work.Bytes, s), "graph: fused product");
                slot = more ? slot + 1 : -1;
                (cur, next) = (next, cur);
                width = w.Rows;
                continue;
            }
            slot = -1;
            switch (op)
            {
                case LinearOp l:
                {
                    DeviceMatrix w = l.W;
                    if (l.Int8)
                    {
                        int padded = w.Blocks * 256;
                        if (!QuantizedBefore(k, batch))
                            Native.Check(Native.rotor_cuda_quantize(cur.Pointer, batch, w.Cols, w.Cols, _xq.Pointer, padded, _scale.Pointer, _sum.Pointer, s), "graph: quantize");
                        GemmArgsNative a = CudaBackend.Args(w, _xq.Pointer, padded, _scale.Pointer, _sum.Pointer, batch, l.Bias?.Pointer ?? 0, next.Pointer, w.Rows, l.Act);
                        if (QuantizesNext(k, batch))
                        {
                            // The product quantizes y in place of x for the next layer (after a grid barrier).
                            int nextPadded = ((LinearOp)_ops[k + 1]).W.Blocks * 256;
                            Native.Check(Native.rotor_cuda_gemm_q(&a, _xq.Pointer, nextPadded, _scale.Pointer, _sum.Pointer, _barrier.Pointer, s), "graph: product + quantize");
                        }
                        else Native.Check(Native.rotor_cuda_gemm(&a, (int)CudaPath.Auto, s), "graph: product");
                    }
                    else
                    {
                        Native.Check(Native.rotor_cuda_gemm_f32(w.Data.Pointer, w.RowBytes, w.Blocks, w.Rows, cur.Pointer, w.Cols, w.Cols, batch,
                            w.Scales.Pointer, w.ScaleStride, l.Bias?.Pointer ?? 0, next.Pointer, w.Rows, (int)l.Act, s), "graph: float product");
                    }
                    (cur, next) = (next, cur);
                    width = w.Rows;
                    break;
                }
                case ActOp act:
                    Native.Check(Native.rotor_cuda_activation(cur.Pointer, cur.Pointer, (long)batch * act.Size, (int)act.Act, s), "graph: activation");
                    break;
                case SoftmaxOp sm:
                    Native.Check(Native.rotor_cuda_softmax(cur.Pointer, next.Pointer, batch, sm.Size, s), "graph: softmax");
                    (cur, next) = (next, cur);
                    break;
            }
        }
        if (copies) Native.Check(Native.rotor_cuda_memcpy_d2h(_out.Pointer, cur.Pointer, (nuint)((long)batch * width * sizeof(float)), s), "graph: output copy");
    }

    /// <summary>Frees the graphs and device buffers.</summary>
    public void Dispose()
    {
        lock (_backend.Gate)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (CudaGraph g in _graphs.Values) g.Dispose();
            _graphs.Clear();
            foreach (Op op in _ops) if (op is LinearOp l) l.Bias?.Dispose();
            foreach (DeviceMatrix w in _owned) w.Dispose();
            _a.Dispose(); _b.Dispose(); _xq.Dispose(); _scale.Dispose(); _sum.Dispose(); _amax.Dispose(); _work.Dispose(); _barrier.Dispose(); _in.Dispose(); _out.Dispose();
        }
    }
}
