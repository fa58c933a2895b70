using System.Globalization;
using Rotor.IO;
using Rotor.Nn;

namespace Rotor.Training;

/// <summary>
/// The deployable form of a trained ternary network, in safetensors: for each layer j with weights,
/// <c>layers.{j}.weight</c> (U8, the trits row-major (Out, In) or (O, k*k*C) packed in <c>rotor.weight_format</c>:
/// t2 = 4 trits a byte, t1.6 = 5 trits a byte in base 3), <c>layers.{j}.scale</c> (F32 [1], the absmean scale) and
/// <c>layers.{j}.bias</c> (F32); RMSNorm layers have <c>layers.{j}.gain</c>. <c>__metadata__</c>: <c>rotor.kind</c> =
/// ternary-model, <c>rotor.arch</c> (layers as JSON; dropout left out), <c>rotor.weight_format</c>, <c>rotor.image</c>
/// (HxWxC), <c>rotor.classes</c>, <c>rotor.sha256</c>. It loads into an <see cref="Nn.Sequential"/> of
/// <see cref="TernaryLinear"/>, <see cref="ReLU"/>, <see cref="TernaryConv2dLayer"/>, <see cref="MaxPoolLayer"/> and
/// <see cref="RmsNormInferenceLayer"/>.
/// </summary>
public sealed class DeployedModel
{
    private DeployedModel(Sequential network, IReadOnlyList<LayerSpec> arch, (int H, int W, int C) image, TernaryFormat format, string path)
    {
        Network = network; Arch = arch; ImageShape = image; Format = format; Path = path;
    }

    /// <summary>The inference network; its output is the logits.</summary>
    public Sequential Network { get; }
    /// <summary>The architecture.</summary>
    public IReadOnlyList<LayerSpec> Arch { get; }
    /// <summary>Image height, width, channels.</summary>
    public (int H, int W, int C) ImageShape { get; }
    /// <summary>Storage form of the trits.</summary>
    public TernaryFormat Format { get; }
    /// <summary>The file.</summary>
    public string Path { get; }
    /// <summary>Classes.</summary>
    public int Classes => Network.OutputSize;

    /// <summary>Writes the ternary form of <paramref name="network"/> to <paramref name="path"/> (atomically).</summary>
    /// <exception cref="RotorException">A layer is not ternary (the float twin has no ternary form) or the format is not t2/t1.6.</exception>
    public static void Export(TrainNetwork network, (int H, int W, int C) image, string path, TernaryFormat format = TernaryFormat.T2)
    {
        if (format is not (TernaryFormat.T2 or TernaryFormat.T1_6)) throw new RotorException($"deployable weights are stored as t2 or t1.6, not {format}");
        var tensors = new List<SafeTensor>();
        var arch = new List<LayerSpec>();
        foreach (TrainLayer l in network.Layers)
        {
            if (l is DropoutLayer) continue;
            int j = arch.Count;
            switch (l)
            {
                case TernaryDense d:
                    if (!d.Ternary) throw new RotorException($"layer {j} ({d.Name}) has float weights: the float twin has no ternary deployable form (evaluate its checkpoint instead)");
                    AddWeights(tensors, j, d.Weight.Value, d.Out, d.In, d.HasBias ? d.Bias.Value : null, format);
                    break;
                case TernaryConv2d c:
                    if (!c.Ternary) throw new RotorException($"layer {j} ({c.Name}) has float weights: the float twin has no ternary deployable form");
                    AddWeights(tensors, j, c.Weight.Value, c.O, c.Kernel * c.Kernel * c.C, c.Bias.Value, format);
                    break;
                case RmsNormLayer n:
                    tensors.Add(SafeTensor.FromFloats($"layers.{j}.gain", n.Gain.Value, n.Size));
                    break;
            }
            arch.Add(l.Spec);
        }
        var meta = new Dictionary<string, string>
        {
            ["rotor.kind"] = Checkpoint.DeployKind,
            ["rotor.arch"] = LayerSpec.ToJson(arch),
            ["rotor.weight_format"] = TernaryFormats.Get(format).Name,
            ["rotor.image"] = $"{image.H}x{image.W}x{image.C}",
            ["rotor.classes"] = network.Classes.ToString(CultureInfo.InvariantCulture),
        };
        SafeTensors.Write(path, tensors, meta);
    }

    private static void AddWeights(List<SafeTensor> tensors, int j, float[] latent, int rows, int cols, float[]? bias, TernaryFormat format)
    {
        TernaryMatrix m = TernaryMatrix.Quantize(latent, rows, cols, QuantizationMethod.AbsMean, ScaleMode.PerTensor);
        byte[] packed = m.Encode(format);
        tensors.Add(new SafeTensor($"layers.{j}.weight", SafeDType.U8, [packed.Length], packed));
        tensors.Add(SafeTensor.FromFloats($"layers.{j}.scale", m.Scales, 1));
        if (bias is not null) tensors.Add(SafeTensor.FromFloats($"layers.{j}.bias", bias, rows));
    }

    /// <summary>Loads a deployable model into Rotor's inference layers.</summary>
    /// <exception cref="RotorException">Not a deployable model, an unknown layer type or format, or tensors that do not
    /// fit the architecture; the message names the file, layer and tensor.</exception>
    public static DeployedModel Load(string path, Kernels.ITernaryBackend? backend = null)
    {
        SafeTensorFile f = SafeTensors.Read(path);
        if (!f.Metadata.TryGetValue("rotor.kind", out string? kind) || kind != Checkpoint.DeployKind)
            throw new RotorException($"{path}: not a Rotor deployable model (__metadata__ rotor.kind is '{kind ?? "absent"}', expected '{Checkpoint.DeployKind}')");
        TernaryFormat format = TernaryFormats.Get(f.Meta("rotor.weight_format")).Format;
        if (format is not (TernaryFormat.T2 or TernaryFormat.T1_6)) throw new RotorException($"{path}: weight format {f.Meta("rotor.weight_format")} is not t2 or t1.6");
        var image = Checkpoint.ParseImage(f.Meta("rotor.image"), path);
        List<LayerSpec> arch = LayerSpec.ParseJson(f.Meta("rotor.arch"), path);
        var layers = new List<ILayer>();
        for (int j = 0; j < arch.Count; j++)
        {
            LayerSpec s = arch[j];
            string where = $"{path}: layer {j} ({s.Type})";
            try
            {
                switch (s.Type)
                {
                    case "linear":
                        {
                            int inF = s.Int("in"), outF = s.Int("out"), bits = s.Int("act_bits");
                            if (s.Int("ternary") == 0) throw new RotorException($"{where}: float weights are not deployable");
                            var mode = bits switch
                            {
                                8 => ActivationMode.Int8,
                                0 => ActivationMode.Float,
                                _ => throw new RotorException($"{where}: act_bits {bits} has no inference kernel (0 or 8)"),
                            };
                            TernaryMatrix m = Weights(f, j, format, outF, inF, where);
                            float[] bias = s.Int("bias") != 0 ? f.Floats($"layers.{j}.bias", outF) : [];
                            layers.Add(new TernaryLinear(m, bias, mode, backend));
                            break;
                        }
                    case "conv2d":
                        {
                            int c = s.Int("c"), k = s.Int("k"), o = s.Int("o");
                            if (s.Int("ternary") == 0) throw new RotorException($"{where}: float weights are not deployable");
                            TernaryMatrix m = Weights(f, j, format, o, k * k * c, where);
                            layers.Add(new TernaryConv2dLayer(m, f.Floats($"layers.{j}.bias", o), c, s.Int("h"), s.Int("w"), k, s.Int("pad"), s.Int("act_bits"), backend));
                            break;
                        }
                    case "relu": layers.Add(new ReLU(s.Int("size"))); break;
                    case "maxpool2d": layers.Add(new MaxPoolLayer(s.Int("c"), s.Int("h"), s.Int("w"), s.Int("k"))); break;
                    case "rmsnorm": layers.Add(new RmsNormInferenceLayer(f.Floats($"layers.{j}.gain", s.Int("size")), (float)s.Real("eps"))); break;
                    case "dropout": break;
                    default: throw new RotorException($"{where}: unknown layer type '{s.Type}' (known: linear, conv2d, relu, maxpool2d, rmsnorm, dropout)");
                }
            }
            catch (ArgumentException e) { throw new RotorException($"{where}: {e.Message}", e); }
        }
        Sequential net;
        try { net = new Sequential(layers.ToArray()); }
        catch (ArgumentException e) { throw new RotorException($"{path}: layers do not chain: {e.Message}", e); }
        if (net.InputSize != image.H * image.W * image.C) throw new RotorException($"{path}: the first layer takes {net.InputSize} values, rotor.image {image.H}x{image.W}x{image.C} gives {image.H * image.W * image.C}");
        return new DeployedModel(net, arch, image, format, path);
    }

    private static TernaryMatrix Weights(SafeTensorFile f, int j, TernaryFormat format, int rows, int cols, string where)
    {
        SafeTensor w = f.Get($"layers.{j}.weight");
        if (w.DType != SafeDType.U8) throw new RotorException($"{where}: layers.{j}.weight is {w.DType}, expected U8 (packed trits)");
        float[] scale = f.Floats($"layers.{j}.scale", 1);
        return TernaryMatrix.Decode(format, w.Data, rows, cols, scale, $"{f.Path}: layers.{j}.weight");
    }
}
