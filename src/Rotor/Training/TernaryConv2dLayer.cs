using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

using Rotor.Kernels;
using Rotor.Nn;

namespace Rotor.Training;

/// <summary>
/// The patches of a stride-1, unpadded convolution over NHWC images (B, Hp, Wp, C) (padding is done by copying the
/// image into a zero-bordered buffer first), as a row source for <see cref="Sgemm"/> without ever storing them
/// ("implicit im2col"). Plain: row = output pixel (b, oy, ox), column q = (ky * k + kx) * C + c, value
/// <c>x[b, oy + ky, ox + kx, c]</c>. Transposed: the same matrix with rows and columns swapped. K slices are one
/// kernel row ky (k * C values), which lie contiguously in the image, so the kernel reads patches in place.
/// </summary>
internal sealed unsafe class Im2ColSource : IRowSource
{
    private float* _x;
    private int _h, _w, _c, _k, _oh, _ow, _batch;
    private bool _transposed;
    private int[] _qoff = [];  // per column q: offset (ky * Wp + kx) * C + c from the patch origin

    public int Rows => _transposed ? _k * _k * _c : _batch * _oh * _ow;
    public int K => _transposed ? _batch * _oh * _ow : _k * _k * _c;
    // One kernel row a slice, read in place; when a kernel row is short (few channels), the whole K packed at once.
    public int SliceK => _transposed ? Sgemm.KC : _k * _c >= 64 ? _k * _c : Math.Min(K, 512);

    /// <summary>Points at padded images x (B, Hp, Wp, C); kernel k.</summary>
    public Im2ColSource Set(float* x, int batch, int hp, int wp, int c, int k, bool transposed)
    {
        _x = x; _batch = batch; _transposed = transposed;
        if (_h != hp || _w != wp || _c != c || _k != k || _qoff.Length == 0)
        {
            _h = hp; _w = wp; _c = c; _k = k;
            _oh = hp - k + 1; _ow = wp - k + 1;
            int n = k * k * c;
            _qoff = new int[n];
            for (int q = 0; q < n; q++)
            {
                int pos = q / c, ch = q % c, ky = pos / k, kx = pos % k;
                _qoff[q] = (ky * wp + kx) * c + ch;
            }
        }
        return this;
    }

    private float* Origin(int p)
    {
        int plane = _oh * _ow, b = p / plane, rem = p % plane, oy = rem / _ow, ox = rem % _ow;
        return _x + ((long)(b * _h + oy) * _w + ox) * _c;
    }

    public bool TryRows(int r0, int rows, int k0, int kc, float** ptrs)
    {
        int run = _k * _c;
        if (_transposed || run < 64 || kc != run || k0 % run != 0) return false;
        long off = (long)(k0 / run) * _w * _c;
        for (int i = 0; i < rows; i++) ptrs[i] = Origin(r0 + i) + off;
        return true;
    }

    public void Pack(float* dst, int r0, int rows, int k0, int kc, int width)
    {
        if (!_transposed)
        {
            // dst[(q - k0) * width + i] = patch(r0 + i, q)
            for (int i = 0; i < rows; i++)
            {
                float* origin = Origin(r0 + i), d = dst + i;
                for (int q = 0; q < kc; q++) d[q * width] = origin[_qoff[k0 + q]];
            }
            for (int i = rows; i < width; i++)
                for (int q = 0; q < kc; q++) dst[q * width + i] = 0f;
            return;
        }
        // dst[kk * width + j] = patch(k0 + kk, r0 + j)
        bool runs = _c % 16 == 0 && r0 % 16 == 0 && rows == 16 && width == 16;   // 16 channels of one tap
        for (int kk = 0; kk < kc; kk++)
        {
            float* origin = Origin(k0 + kk), d = dst + kk * width;
            if (runs)
            {
                float* s = origin + _qoff[r0];
                Vector256.Store(Vector256.Load(s), d);
                Vector256.Store(Vector256.Load(s + 8), d + 8);
                continue;
            }
            for (int j = 0; j < rows; j++) d[j] = origin[_qoff[r0 + j]];
            for (int j = rows; j < width; j++) d[j] = 0f;
        }
    }

    /// <summary>Copies images (B, H, W, C) into the interior of <paramref name="dst"/> (B, H + 2p, W + 2p, C), whose
    /// border is zero (never written).</summary>
    public static void PadInto(ReadOnlySpan<float> src, Span<float> dst, int batch, int h, int w, int c, int pad)
    {
        int hp = h + 2 * pad, wp = w + 2 * pad, row = w * c;
        for (int b = 0; b < batch; b++)
            for (int y = 0; y < h; y++)
                src.Slice(((b * h) + y) * row, row).CopyTo(dst.Slice(((b * hp + y + pad) * wp + pad) * c, row));
    }
}

/// <summary>
/// A ternary 2-D convolution, stride 1, zero padding <c>pad</c>, over NHWC images: x (B, H, W, C) -> y (B, OH, OW, O)
/// with OH = H + 2 pad - k + 1, weights W (O, k, k, C) quantized absmean ternary (per tensor) and, when actBits &gt; 0,
/// each image's input quantized per image (absmax). As a product: y = patches(q(x)) · q(W)^T + b.
/// Backward (straight-through): dW = dy^T · patches(q(x)); db = sum dy; dx = the convolution of dy with the flipped,
/// channel-swapped weights W'[c, ky, kx, o] = q(W)[o, k-1-ky, k-1-kx, c] and padding k - 1 - pad.
/// </summary>
public sealed unsafe class TernaryConv2dLayer : TrainLayer
{
    private readonly Parameter _w, _b;
    private readonly float[] _wq, _wflip;            // (O, k, k, C) and (C, k, k, O)
    private float[] _xq = [];                        // (B, H, W, C) quantized input
    private float[] _xpad = [];                      // (B, H + 2 pad, W + 2 pad, C) the input of the product
    private float[] _dypad = [];                     // (B, OH + 2 (k-1-pad), OW + 2 (k-1-pad), O)
    private readonly Im2ColSource _patches = new(), _dyPatches = new();
    private readonly DenseSource _dense = new(), _dense2 = new();

    /// <summary>A convolution of <paramref name="outChannels"/> k x k filters over C x H x W images.</summary>
    public TernaryConv2dLayer(int channels, int height, int width, int outChannels, int kernel, int pad, bool ternary = true, int actBits = 8)
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

    private int HP => H + 2 * Pad;
    private int WP => W + 2 * Pad;
    private int BackPad => Kernel - 1 - Pad;

    /// <inheritdoc/>
    protected override void Allocate(int capacity)
    {
        if (ActBits > 0) _xq = new float[(long)capacity * InputSize];
        if (Pad > 0) _xpad = new float[(long)capacity * HP * WP * C];
        _dypad = new float[(long)capacity * (OH + 2 * BackPad) * (OW + 2 * BackPad) * O];
    }

    /// <summary>The images the product reads: q(x), padded; (B, HP, WP, C).</summary>
    private ReadOnlySpan<float> ProductInput(ReadOnlySpan<float> x, int batch)
    {
        ReadOnlySpan<float> xin = ActBits > 0 ? _xq.AsSpan(0, batch * InputSize) : x[..(batch * InputSize)];
        return Pad > 0 ? _xpad.AsSpan(0, batch * HP * WP * C) : xin;
    }

    /// <inheritdoc/>
    public override void Forward(ReadOnlySpan<float> x, Span<float> y, int batch, bool training)
    {
        TrainContext ctx = Ready(batch);
        if (Ternary) FakeQuant.TernaryAbsMean(_w.Value, _wq);
        else _w.Value.CopyTo(_wq, 0);
        if (ActBits > 0) FakeQuant.ActivationsAbsMax(x[..(batch * InputSize)], _xq, InputSize, ActBits);
        ReadOnlySpan<float> xin = ActBits > 0 ? _xq.AsSpan(0, batch * InputSize) : x[..(batch * InputSize)];
        if (Pad > 0) Im2ColSource.PadInto(xin, _xpad, batch, H, W, C, Pad);
        ReadOnlySpan<float> xp = ProductInput(x, batch);
        int rows = batch * OH * OW, kkc = Kernel * Kernel * C;
        Span<float> yy = y[..(rows * O)];
        for (int r = 0; r < rows; r++) _b.Value.CopyTo(yy.Slice(r * O, O));
        fixed (float* px = xp, pw = _wq, py = yy)
            ctx.Gemm.Multiply(_patches.Set(px, batch, HP, WP, C, Kernel, false), _dense.Set(pw, O, kkc, kkc, false), py, O, accumulate: true);
    }

    /// <inheritdoc/>
    public override void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, int batch)
    {
        TrainContext ctx = Ready(batch);
        ReadOnlySpan<float> xp = ProductInput(x, batch);
        int rows = batch * OH * OW, kkc = Kernel * Kernel * C;
        dy = dy[..(rows * O)];
        fixed (float* pdy = dy, px = xp, pgw = _w.Grad)
        {
            // dW (O, kkC) = dy^T (O, rows) · patches (rows, kkC)
            ctx.Gemm.Multiply(_dense.Set(pdy, O, rows, O, true), _patches.Set(px, batch, HP, WP, C, Kernel, true), pgw, kkc, accumulate: false);
        }
        Span<float> gb = _b.Grad;
        gb.Clear();
        for (int r = 0; r < rows; r++) TensorPrimitives.Add(gb, dy.Slice(r * O, O), gb);
        if (dx.IsEmpty) return;
        int k = Kernel, bp = BackPad;
        for (int o = 0; o < O; o++)
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++)
                    for (int c = 0; c < C; c++)
                        _wflip[((c * k + (k - 1 - ky)) * k + (k - 1 - kx)) * O + o] = _wq[((o * k + ky) * k + kx) * C + c];
        Im2ColSource.PadInto(dy, _dypad, batch, OH, OW, O, bp);
        int hp = OH + 2 * bp, wp = OW + 2 * bp;
        fixed (float* pdy = _dypad, pwf = _wflip, pdx = dx)
            ctx.Gemm.Multiply(_dyPatches.Set(pdy, batch, hp, wp, O, k, false), _dense2.Set(pwf, C, k * k * O, k * k * O, false), pdx, C, accumulate: false);
    }
}
