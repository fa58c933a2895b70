using Rotor.Cuda;

namespace Rotor.Lm.Cuda;

/// <summary>
/// A model's weights on the GPU, uploaded once: ternary layers in Rotor's I2_256 layout byte for byte (q, k and v as
/// one matrix of qDim + 2 kvDim rows, gate and up as one of 2 ffn rows, each row with its own scale, so one product
/// serves the three or the two), dense layers, the embedding and the LM head in their element type (F32, F16, Int8),
/// the norms as float. Shared by every <see cref="CudaDecoder"/> of the model.
/// </summary>
public sealed class CudaModel : IDisposable
{
    private readonly List<DeviceBuffer> _buffers = [];

    /// <summary>The configuration the weights are shaped for.</summary>
    public ModelConfig Config { get; }
    /// <summary>The GPU.</summary>
    public CudaAvailability Device { get; }
    /// <summary>Bytes of device memory the weights take.</summary>
    public long Bytes { get; private set; }
    /// <summary>Bytes one decode step reads from the weights (every layer, the LM head, one embedding row).</summary>
    public long StepWeightBytes { get; }

    internal readonly CudaStream Stream;
    internal readonly DeviceLayer[] Layers;
    internal readonly DeviceDense Embedding, LmHead;
    internal readonly nint FinalNorm;

    /// <summary>Uploads <paramref name="weights"/> (checked against <paramref name="config"/>) to the GPU.</summary>
    /// <exception cref="CudaException">There is no usable GPU (the message says why), or memory ran out.</exception>
    public CudaModel(ModelConfig config, ModelWeights weights)
    {
        ArgumentNullException.ThrowIfNull(config); ArgumentNullException.ThrowIfNull(weights);
        Device = CudaBackend.Availability;
        if (!Device.IsAvailable) throw new CudaException(100, $"CUDA is not available: {Device.Reason}");
        config.Validate("model");
        weights.Validate(config, "model");
        Config = config;
        Stream = new CudaStream();
        try
        {
            Layers = new DeviceLayer[config.Layers];
            for (int l = 0; l < config.Layers; l++)
            {
                LayerWeights w = weights.Layers[l];
                Layers[l] = new DeviceLayer
                {
                    AttnNorm = Floats(w.AttnNorm), FfnNorm = Floats(w.FfnNorm),
                    AttnSubNorm = w.AttnSubNorm is null ? 0 : Floats(w.AttnSubNorm),
                    FfnSubNorm = w.FfnSubNorm is null ? 0 : Floats(w.FfnSubNorm),
                    Qkv = Linear(w.Wq, w.Wk, w.Wv), Wo = Linear(w.Wo), GateUp = Linear(w.WGate, w.WUp), Down = Linear(w.WDown),
                };
            }
            Embedding = Dense(weights.Embedding);
            LmHead = ReferenceEquals(weights.LmHead, weights.Embedding) ? Embedding : Dense(weights.LmHead);
            FinalNorm = Floats(weights.FinalNorm);
            Stream.Synchronize();
        }
        catch
        {
            Dispose();
            throw;
        }
        long step = (long)LmHead.Rows * LmHead.RowStride + (long)Embedding.RowStride;
        foreach (var l in Layers) step += l.Qkv.Bytes + l.Wo.Bytes + l.GateUp.Bytes + l.Down.Bytes;
        StepWeightBytes = step;
    }

    private DeviceBuffer Alloc(long bytes)
    {
        var b = new DeviceBuffer(bytes);
        _buffers.Add(b);
        Bytes += bytes;
        return b;
    }

    private nint Floats(float[] v)
    {
        var b = Alloc((long)v.Length * 4);
        b.Upload<float>(v, Stream);
        return b.Pointer;
    }

    /// <summary>One device matrix from several of the same width stacked by rows (q/k/v, gate/up).</summary>
    private DeviceLinear Linear(params LinearWeights[] parts)
    {
        int cols = parts[0].Cols, rows = parts.Sum(p => p.Rows);
        if (parts.All(p => p.Ternary is not null))
        {
            int rowBytes = parts[0].Ternary!.RowBytes;
            var data = Alloc((long)rows * rowBytes);
            var scales = new float[rows];
            long off = 0; int r0 = 0;
            bool perRow = parts.Length > 1 || parts[0].Ternary!.ScaleMode == ScaleMode.PerRow;
            foreach (var p in parts)
            {
                var t = p.Ternary!;
                Rotor.Cuda.DeviceMatrix.UploadI2_256(t, data, off, Stream);
                off += (long)t.Rows * rowBytes;
                for (int r = 0; r < t.Rows; r++) scales[r0 + r] = t.ScaleOf(r);
                r0 += t.Rows;
            }
            var s = Alloc((long)(perRow ? rows : 1) * 4);
            s.Upload<float>(perRow ? scales : scales.AsSpan(0, 1), Stream);
            GC.KeepAlive(parts);
            return new DeviceLinear { Ternary = true, Weights = data.Pointer, Scales = s.Pointer, ScaleStride = perRow ? 1 : 0, Rows = rows, Cols = cols, RowBytes = rowBytes, KBlocks = parts[0].Ternary!.Blocks };
        }
        if (parts.All(p => p.Dense is not null) && parts.All(p => p.Dense!.Type == parts[0].Dense!.Type))
        {
            // A layer matrix of a type the device kernels do not read (the 4-bit Q4_0 that llama.cpp's quantizer puts
            // where rows are no whole ternary blocks) goes up as f32, which holds its values exactly.
            var dense = parts.Select(p => p.Dense!).ToArray();
            if (dense[0].Type is not (DenseType.F32 or DenseType.F16 or DenseType.Int8)) dense = dense.Select(m => m.ConvertTo(DenseType.F32)).ToArray();
            var d = Dense(dense);
            return new DeviceLinear { Ternary = false, Weights = d.Weights, Scales = d.Scales, Type = d.Type, Rows = rows, Cols = cols, RowBytes = d.RowStride };
        }
        throw new RotorException("a layer mixes ternary and dense (or differently typed) q/k/v or gate/up projections, which the GPU decoder does not run");
    }

    private unsafe DeviceDense Dense(params DenseMatrix[] parts)
    {
        // The device kernels read f32, f16 and int8 rows; a 4-bit head stays on the CPU path (the caller falls back).
        if (parts[0].Type is not (DenseType.F32 or DenseType.F16 or DenseType.Int8))
            throw new RotorException($"the GPU decoder takes an f32, f16 or int8 LM head, not {parts[0].Type.ToString().ToLowerInvariant()}");
        int rows = parts.Sum(p => p.Rows), stride = parts[0].RowStride;
        var data = Alloc((long)rows * stride);
        long off = 0;
        var scales = new List<float>();
        foreach (var p in parts)
        {
            data.Upload(new ReadOnlySpan<byte>(p.DataPointer, checked((int)Math.Min(int.MaxValue, (long)p.Rows * stride))), Stream, off);
            // Matrices over 2 GiB go up in pieces.
            for (long done = int.MaxValue; done < (long)p.Rows * stride; done += int.MaxValue)
            {
                int len = (int)Math.Min(int.MaxValue, (long)p.Rows * stride - done);
                data.Upload(new ReadOnlySpan<byte>(p.DataPointer + done, len), Stream, off + done);
            }
            off += (long)p.Rows * stride;
            scales.AddRange(p.Scales.ToArray());
            GC.KeepAlive(p);
        }
        nint sp = 0;
        if (parts[0].Type == DenseType.Int8)
        {
            var s = Alloc((long)rows * 4);
            s.Upload<float>(scales.ToArray(), Stream);
            sp = s.Pointer;
        }
        return new DeviceDense { Weights = data.Pointer, Scales = sp, Type = (LmType)(int)parts[0].Type, Rows = rows, Cols = parts[0].Cols, RowStride = stride };
    }

    /// <summary>Frees the device memory.</summary>
    public void Dispose()
    {
        foreach (var b in _buffers) b.Dispose();
        _buffers.Clear();
        Stream?.Dispose();
    }
}

/// <summary>A linear layer on the device: ternary (I2_256 rows, scales) or dense.</summary>
internal readonly record struct DeviceLinear
{
    public bool Ternary { get; init; }
    public nint Weights { get; init; }
    public nint Scales { get; init; }
    public int ScaleStride { get; init; }
    public LmType Type { get; init; }
    public int Rows { get; init; }
    public int Cols { get; init; }
    public int RowBytes { get; init; }
    public int KBlocks { get; init; }
    public long Bytes => (long)Rows * RowBytes;
    /// <summary>Whether the layer reads int8 activations (ternary and Int8 dense) rather than float.</summary>
    public bool ReadsInt8 => Ternary || Type == LmType.I8;
}

/// <summary>A dense matrix on the device (embedding, LM head).</summary>
internal readonly record struct DeviceDense
{
    public nint Weights { get; init; }
    public nint Scales { get; init; }
    public LmType Type { get; init; }
    public int Rows { get; init; }
    public int Cols { get; init; }
    public int RowStride { get; init; }
}

/// <summary>One decoder layer on the device.</summary>
internal sealed class DeviceLayer
{
    public nint AttnNorm, FfnNorm, AttnSubNorm, FfnSubNorm;
    public DeviceLinear Qkv, Wo, GateUp, Down;
}
