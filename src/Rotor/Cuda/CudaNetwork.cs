using Rotor.Nn;

namespace Rotor.Cuda;

/// <summary>
/// The forward pass of a <see cref="Sequential"/> of <see cref="TernaryLinear"/>, <see cref="ReLU"/>, <see cref="Sign"/>
/// and <see cref="Softmax"/> layers, run on the GPU as one CUDA graph per batch size: copy in, per layer quantize + product
/// (an activation that follows a product is fused into its epilogue), copy out. All device buffers are allocated at
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
            _in = new PinnedBuffer((long)maxBatch * InputSize * sizeof(float));
            _out = new PinnedBuffer((long)maxBatch * OutputSize * sizeof(float));
        }
        catch
        {
            foreach (Op op in _ops) if (op is LinearOp l) l.Bias?.Dispose();
            foreach (DeviceMatrix w in _owned) w.Dispose();
            _a?.Dispose(); _b?.Dispose(); _xq?.Dispose(); _scale?.Dispose(); _sum?.Dispose(); _in?.Dispose(); _out?.Dispose();
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
    /// <summary>Kernel launches a forward pass of <see cref="MaxBatch"/> rows makes (see <see cref="KernelCount"/>).</summary>
    public int Kernels => KernelCount(MaxBatch);

    /// <summary>Kernel launches a forward pass of <paramref name="batch"/> rows makes: quantize + product per int8 layer,
    /// one product per float-mode layer, one kernel per unfused activation and per softmax (the same for every batch
    /// size).</summary>
    public int KernelCount(int batch)
    {
        _ = batch;
        int count = 0;
        foreach (Op op in _ops) count += op is LinearOp { Int8: true } ? 2 : 1;
        return count;
    }

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
        if (copies) Native.Check(Native.rotor_cuda_memcpy_h2d(_a.Pointer, _in.Pointer, (nuint)((long)batch * InputSize * sizeof(float)), s), "graph: input copy");
        foreach (Op op in _ops)
        {
            switch (op)
            {
                case LinearOp l:
                {
                    DeviceMatrix w = l.W;
                    if (l.Int8)
                    {
                        int padded = w.Blocks * 256;
                        Native.Check(Native.rotor_cuda_quantize(cur.Pointer, batch, w.Cols, w.Cols, _xq.Pointer, padded, _scale.Pointer, _sum.Pointer, s), "graph: quantize");
                        GemmArgsNative a = CudaBackend.Args(w, _xq.Pointer, padded, _scale.Pointer, _sum.Pointer, batch, l.Bias?.Pointer ?? 0, next.Pointer, w.Rows, l.Act);
                        Native.Check(Native.rotor_cuda_gemm(&a, (int)CudaPath.Auto, s), "graph: product");
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
            _a.Dispose(); _b.Dispose(); _xq.Dispose(); _scale.Dispose(); _sum.Dispose(); _in.Dispose(); _out.Dispose();
        }
    }
}
