using System.Runtime.Intrinsics;

using Rotor.Nn;

namespace Rotor.Training;

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
    public override unsafe void Forward(ReadOnlySpan<float> x, Span<float> y, int batch, bool training)
    {
        Ready(batch);
        int oh = H / K, ow = W / K;
        if (x.Length < batch * InputSize || y.Length < batch * OutputSize) throw new ArgumentException($"{Name}: buffers too small for batch {batch}");
        fixed (float* px = x, py = y)
        fixed (int* pa = _arg)
        {
            int o = 0;
            Vector256<int> iota = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
            for (int b = 0; b < batch; b++)
                for (int oy = 0; oy < oh; oy++)
                    for (int ox = 0; ox < ow; ox++, o += C)
                    {
                        int first = ((b * H + oy * K) * W + ox * K) * C, c = 0;
                        if (Vector256.IsHardwareAccelerated)
                            for (; c + 8 <= C; c += 8)
                            {
                                Vector256<float> m = Vector256.Load(px + first + c);
                                Vector256<int> idx = Vector256.Create(first + c) + iota;
                                for (int dy = 0; dy < K; dy++)
                                    for (int dx = 0; dx < K; dx++)
                                    {
                                        if (dy == 0 && dx == 0) continue;
                                        int i = first + (dy * W + dx) * C + c;
                                        Vector256<float> v = Vector256.Load(px + i);
                                        Vector256<float> gt = Vector256.GreaterThan(v, m);
                                        m = Vector256.ConditionalSelect(gt, v, m);
                                        idx = Vector256.ConditionalSelect(gt.AsInt32(), Vector256.Create(i) + iota, idx);
                                    }
                                m.Store(py + o + c); idx.Store(pa + o + c);
                            }
                        for (; c < C; c++)
                        {
                            int best = first + c;
                            float m = px[best];
                            for (int dy = 0; dy < K; dy++)
                                for (int dx = 0; dx < K; dx++)
                                {
                                    int i = first + (dy * W + dx) * C + c;
                                    if (px[i] > m) { m = px[i]; best = i; }
                                }
                            py[o + c] = m; pa[o + c] = best;
                        }
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
