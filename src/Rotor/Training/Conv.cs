using System.Numerics.Tensors;

namespace Rotor.Training;

/// <summary>
/// The patches of a stride-1 convolution over NHWC images (B, H, W, C) with zero padding, as a row source for
/// <see cref="Sgemm"/> without ever storing them ("implicit im2col"). Plain: row = output pixel (b, oy, ox), column
/// q = (ky * k + kx) * C + c, value <c>x[b, oy + ky - pad, ox + kx - pad, c]</c> (0 outside). Transposed: the same
/// matrix with rows and columns swapped.
/// </summary>
internal sealed unsafe class Im2ColSource : IRowSource
{
    private float* _x;
    private int _h, _w, _c, _k, _pad, _oh, _ow, _batch;
    private bool _transposed;
    private int[] _qy = [], _qx = [], _qoff = [];  // per column q: ky - pad, kx - pad, offset (ky * W + kx) * C + c

    public int Rows => _transposed ? _k * _k * _c : _batch * _oh * _ow;
    public int K => _transposed ? _batch * _oh * _ow : _k * _k * _c;

    public Im2ColSource Set(float* x, int batch, int h, int w, int c, int k, int pad, bool transposed)
    {
        _x = x; _batch = batch; _transposed = transposed;
        if (_h != h || _w != w || _c != c || _k != k || _pad != pad || _qy.Length == 0)
        {
            _h = h; _w = w; _c = c; _k = k; _pad = pad;
            _oh = h + 2 * pad - k + 1; _ow = w + 2 * pad - k + 1;
            int n = k * k * c;
            _qy = new int[n]; _qx = new int[n]; _qoff = new int[n];
            for (int q = 0; q < n; q++)
            {
                int pos = q / c, ch = q % c, ky = pos / k, kx = pos % k;
                _qy[q] = ky - pad; _qx[q] = kx - pad; _qoff[q] = (ky * w + kx) * c + ch;
            }
        }
        return this;
    }

    public void Pack(float* dst, int r0, int rows, int k0, int kc, int width)
    {
        if (!_transposed) PackPatches(dst, r0, rows, k0, kc, width);
        else PackTransposed(dst, r0, rows, k0, kc, width);
    }

    // dst[(q - k0) * width + i] = patch(r0 + i, q)
    private void PackPatches(float* dst, int r0, int rows, int k0, int kc, int width)
    {
        int plane = _oh * _ow;
        for (int i = 0; i < rows; i++)
        {
            int p = r0 + i, b = p / plane, rem = p % plane, oy = rem / _ow, ox = rem % _ow;
            float* origin = _x + ((long)(b * _h + oy) * _w + ox) * _c - (long)(_pad * _w + _pad) * _c;
            float* d = dst + i;
            bool inside = oy >= _pad && oy + _k - 1 - _pad < _h && ox >= _pad && ox + _k - 1 - _pad < _w;
            if (inside)
                for (int q = 0; q < kc; q++) d[q * width] = origin[_qoff[k0 + q]];
            else
                for (int q = 0; q < kc; q++)
                {
                    int iy = oy + _qy[k0 + q], ix = ox + _qx[k0 + q];
                    d[q * width] = (uint)iy < (uint)_h && (uint)ix < (uint)_w ? origin[_qoff[k0 + q]] : 0f;
                }
        }
        for (int i = rows; i < width; i++)
            for (int q = 0; q < kc; q++) dst[q * width + i] = 0f;
    }

    // dst[kk * width + j] = patch(k0 + kk, r0 + j): columns q = r0.. of the patch matrix for patches k0..
    private void PackTransposed(float* dst, int r0, int rows, int k0, int kc, int width)
    {
        int plane = _oh * _ow;
        bool runs = _c % 16 == 0 && r0 % 16 == 0 && rows == 16;   // 16 columns = 16 channels of one tap
        for (int kk = 0; kk < kc; kk++)
        {
            int p = k0 + kk, b = p / plane, rem = p % plane, oy = rem / _ow, ox = rem % _ow;
            float* origin = _x + ((long)(b * _h + oy) * _w + ox) * _c - (long)(_pad * _w + _pad) * _c;
            float* d = dst + kk * width;
            if (runs)
            {
                int iy = oy + _qy[r0], ix = ox + _qx[r0];
                if ((uint)iy < (uint)_h && (uint)ix < (uint)_w)
                {
                    float* s = origin + _qoff[r0];
                    System.Runtime.Intrinsics.Vector256.Store(System.Runtime.Intrinsics.Vector256.Load(s), d);
                    System.Runtime.Intrinsics.Vector256.Store(System.Runtime.Intrinsics.Vector256.Load(s + 8), d + 8);
                }
                else new Span<float>(d, 16).Clear();
                continue;
            }
            for (int j = 0; j < rows; j++)
            {
                int q = r0 + j, iy = oy + _qy[q], ix = ox + _qx[q];
                d[j] = (uint)iy < (uint)_h && (uint)ix < (uint)_w ? origin[_qoff[q]] : 0f;
            }
            for (int j = rows; j < width; j++) d[j] = 0f;
        }
    }
}

/// <summary>
/// A ternary 2-D convolution, stride 1, zero padding <c>pad</c>, over NHWC images: x (B, H, W, C) -> y (B, OH, OW, O)
/// with OH = H + 2 pad - k + 1, weights W (O, k, k, C) quantized absmean ternary (per tensor) and, when actBits &gt; 0,
/// each image's input quantized per image (absmax). As a product: y = patches(q(x)) · q(W)^T + b.
/// Backward (straight-through): dW = dy^T · patches(q(x)); db = sum dy; dx = the convolution of dy with the flipped,
/// channel-swapped weights W'[c, ky, kx, o] = q(W)[o, k-1-ky, k-1-kx, c] and padding k - 1 - pad.
/// </summary>
public sealed unsafe class TernaryConv2d : TrainLayer
{
    private readonly Parameter _w, _b;
    private readonly float[] _wq, _wflip;            // (O, k, k, C) and (C, k, k, O)
    private float[] _xq = [];                        // (B, H, W, C) quantized input
    private readonly Im2ColSource _patches = new();
    private readonly DenseSource _dense = new(), _dense2 = new();

    /// <summary>A convolution of <paramref name="outChannels"/> k x k filters over C x H x W images.</summary>
    public TernaryConv2d(int channels, int height, int width, int outChannels, int kernel, int pad, bool ternary = true, int actBits = 8)
    {
        Check.Positive(channels, nameof(channels)); Check.Positive(height, nameof(height)); Check.Positive(width, nameof(width));
        Check.Positive(outChannels, nameof(outChannels)); Check.Positive(kernel, nameof(kernel)); Check.NonNegative(pad, nameof(pad));
        if (pad >= kernel) throw new RotorException($"conv2d: pad {pad} must be below the kernel size {kernel}");
        if (height + 2 * pad < kernel || width + 2 * pad < kernel) throw new RotorException($"conv2d: kernel {kernel} larger than the padded image {height}x{width} (pad {pad})");
        if (actBits != 0 && (actBits < 2 || actBits > 16)) throw new RotorException($"conv2d: act_bits = {actBits}, expected 0 or 2..16");
        C = channels; H = height; W = width; O = outChannels; Kernel = kernel; Pad = pad; Ternary = ternary; ActBits = actBits;
        OH = height + 2 * pad - kernel + 1; OW = width + 2 * pad - kernel + 1;
        _w = new Parameter("weight", [O, kernel, kernel, C], decay: true);
        _b = new Parameter("bias", [O], decay: false);
        _wq = new float[_w.Value.Length]; _wflip = new float[_w.Value.Length];
    }

    /// <summary>Input channels.</summary>
    public int C { get; }
    /// <summary>Input height.</summary>
    public int H { get; }
    /// <summary>Input width.</summary>
    public int W { get; }
    /// <summary>Output channels.</summary>
    public int O { get; }
    /// <summary>Kernel size k.</summary>
    public int Kernel { get; }
    /// <summary>Zero padding on each side.</summary>
    public int Pad { get; }
    /// <summary>Output height.</summary>
    public int OH { get; }
    /// <summary>Output width.</summary>
    public int OW { get; }
    /// <summary>Ternary (true) or float (the twin) weights.</summary>
    public bool Ternary { get; }
    /// <summary>Activation bits (0: float).</summary>
    public int ActBits { get; }
    /// <summary>The latent weights (O, k, k, C).</summary>
    public Parameter Weight => _w;
    /// <summary>The bias (O).</summary>
    public Parameter Bias => _b;
    /// <inheritdoc/>
    public override int InputSize => H * W * C;
    /// <inheritdoc/>
    public override int OutputSize => OH * OW * O;
    /// <inheritdoc/>
    public override string Name => $"{(Ternary ? "TernaryConv2d" : "Conv2d")} {C}x{H}x{W} -> {O}x{OH}x{OW} k{Kernel} pad {Pad}";
    /// <inheritdoc/>
    public override IReadOnlyList<Parameter> Parameters => [_w, _b];
    /// <inheritdoc/>
    public override LayerSpec Spec => LayerSpec.Of("conv2d", ("c", C), ("h", H), ("w", W), ("o", O), ("k", Kernel), ("pad", Pad), ("ternary", Ternary ? 1 : 0), ("act_bits", ActBits));

    /// <summary>PyTorch's default: uniform in ±1/sqrt(C k k).</summary>
    public void Initialize(Random rng)
    {
        float bound = 1f / MathF.Sqrt(C * Kernel * Kernel);
        for (int i = 0; i < _w.Value.Length; i++) _w.Value[i] = (float)(rng.NextDouble() * 2 - 1) * bound;
        for (int i = 0; i < O; i++) _b.Value[i] = (float)(rng.NextDouble() * 2 - 1) * bound;
    }

    /// <inheritdoc/>
    protected override void Allocate(int capacity)
    {
        if (ActBits > 0) _xq = new float[(long)capacity * InputSize];
    }

    /// <inheritdoc/>
    public override void Forward(ReadOnlySpan<float> x, Span<float> y, int batch, bool training)
    {
        TrainContext ctx = Ready(batch);
        if (Ternary) FakeQuant.TernaryAbsMean(_w.Value, _wq);
        else _w.Value.CopyTo(_wq, 0);
        if (ActBits > 0) FakeQuant.ActivationsAbsMax(x[..(batch * InputSize)], _xq, InputSize, ActBits);
        ReadOnlySpan<float> xin = ActBits > 0 ? _xq.AsSpan(0, batch * InputSize) : x[..(batch * InputSize)];
        int rows = batch * OH * OW;
        Span<float> yy = y[..(rows * O)];
        for (int r = 0; r < rows; r++) _b.Value.CopyTo(yy.Slice(r * O, O));
        fixed (float* px = xin, pw = _wq, py = yy)
            ctx.Gemm.Multiply(_patches.Set(px, batch, H, W, C, Kernel, Pad, false), _dense.Set(pw, O, Kernel * Kernel * C, Kernel * Kernel * C, false), py, O, accumulate: true);
    }

    /// <inheritdoc/>
    public override void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, int batch)
    {
        TrainContext ctx = Ready(batch);
        ReadOnlySpan<float> xin = ActBits > 0 ? _xq.AsSpan(0, batch * InputSize) : x[..(batch * InputSize)];
        int rows = batch * OH * OW, kkc = Kernel * Kernel * C;
        dy = dy[..(rows * O)];
        fixed (float* pdy = dy, px = xin, pgw = _w.Grad)
        {
            // dW (O, kkC) = dy^T (O, rows) · patches (rows, kkC)
            ctx.Gemm.Multiply(_dense.Set(pdy, O, rows, O, true), _patches.Set(px, batch, H, W, C, Kernel, Pad, true), pgw, kkc, accumulate: false);
        }
        Span<float> gb = _b.Grad;
        gb.Clear();
        for (int r = 0; r < rows; r++) TensorPrimitives.Add(gb, dy.Slice(r * O, O), gb);
        if (dx.IsEmpty) return;
        int k = Kernel;
        for (int o = 0; o < O; o++)
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++)
                    for (int c = 0; c < C; c++)
                        _wflip[((c * k + (k - 1 - ky)) * k + (k - 1 - kx)) * O + o] = _wq[((o * k + ky) * k + kx) * C + c];
        fixed (float* pdy = dy, pwf = _wflip, pdx = dx)
            ctx.Gemm.Multiply(_patches.Set(pdy, batch, OH, OW, O, k, k - 1 - Pad, false), _dense2.Set(pwf, C, k * k * O, k * k * O, false), pdx, C, accumulate: false);
    }
}

/// <summary>Max pooling k x k, stride k, over NHWC images: (B, H, W, C) -> (B, H/k, W/k, C). Backward sends each
/// output's gradient to the input that was the maximum (the first one on ties).</summary>
public sealed class MaxPool2dLayer : TrainLayer
{
    private int[] _arg = [];   // (B, OH, OW, C) index into x of each maximum

    /// <summary>Pooling of C x H x W images by <paramref name="k"/>; H and W must be multiples of k.</summary>
    public MaxPool2dLayer(int channels, int height, int width, int k = 2)
    {
        Check.Positive(channels, nameof(channels)); Check.Positive(height, nameof(height)); Check.Positive(width, nameof(width)); Check.Positive(k, nameof(k));
        if (height % k != 0 || width % k != 0) throw new RotorException($"maxpool2d: image {height}x{width} is not a multiple of the window {k}");
        C = channels; H = height; W = width; K = k;
    }

    /// <summary>Channels.</summary>
    public int C { get; }
    /// <summary>Input height.</summary>
    public int H { get; }
    /// <summary>Input width.</summary>
    public int W { get; }
    /// <summary>Window and stride.</summary>
    public int K { get; }
    /// <inheritdoc/>
    public override int InputSize => H * W * C;
    /// <inheritdoc/>
    public override int OutputSize => H / K * (W / K) * C;
    /// <inheritdoc/>
    public override string Name => $"MaxPool2d {K} ({C}x{H}x{W})";
    /// <inheritdoc/>
    public override LayerSpec Spec => LayerSpec.Of("maxpool2d", ("c", C), ("h", H), ("w", W), ("k", K));

    /// <inheritdoc/>
    protected override void Allocate(int capacity) => _arg = new int[(long)capacity * OutputSize];

    /// <inheritdoc/>
    public override void Forward(ReadOnlySpan<float> x, Span<float> y, int batch, bool training)
    {
        Ready(batch);
        int oh = H / K, ow = W / K, o = 0;
        for (int b = 0; b < batch; b++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                {
                    int first = ((b * H + oy * K) * W + ox * K) * C;
                    for (int c = 0; c < C; c++, o++)
                    {
                        int best = first + c;
                        float m = x[best];
                        for (int dy = 0; dy < K; dy++)
                            for (int dx = 0; dx < K; dx++)
                            {
                                int i = first + (dy * W + dx) * C + c;
                                if (x[i] > m) { m = x[i]; best = i; }
                            }
                        y[o] = m; _arg[o] = best;
                    }
                }
    }

    /// <inheritdoc/>
    public override void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, int batch)
    {
        Ready(batch);
        if (dx.IsEmpty) return;
        dx[..(batch * InputSize)].Clear();
        int n = batch * OutputSize;
        for (int o = 0; o < n; o++) dx[_arg[o]] += dy[o];
    }
}
