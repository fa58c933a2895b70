using System.Globalization;
using Rotor.IO;
using Rotor.Nn;

namespace Rotor.Training;

/// <summary>Writes the deployable form (<see cref="DeployedModel"/>) of a trained network: each ternary layer's latent
/// weights quantized by absmean and packed in a file format of <see cref="TernaryFormats"/>.</summary>
public static class DeployedModelWriter
{
    /// <summary>Writes the ternary form of <paramref name="network"/> to <paramref name="path"/> (atomically).</summary>
    /// <exception cref="RotorException">A layer is not ternary (the float twin has no ternary form) or the format is
    /// not one for files (t2, t1.6).</exception>
    public static void Export(TrainNetwork network, (int H, int W, int C) image, string path, TernaryFormat format = TernaryFormat.T2)
    {
        TernaryFormatInfo info = TernaryFormats.Get(format);
        if (!info.ForFiles) throw new RotorException($"deployable weights are stored as {TernaryFormats.Names(x => x.ForFiles)}, not {format}");
        var tensors = new List<SafeTensor>();
        var arch = new List<LayerSpec>();
        foreach (TrainLayer l in network.Layers)
        {
            if (l is DropoutLayer) continue;
            int j = arch.Count;
            switch (l)
            {
                case TernaryLinearLayer d:
                    if (!d.Ternary) throw new RotorException($"layer {j} ({d.Name}) has float weights: the float twin has no ternary deployable form (evaluate its checkpoint instead)");
                    AddWeights(tensors, j, d.Weight.Value, d.Out, d.In, d.HasBias ? d.Bias.Value : null, format);
                    break;
                case TernaryConv2dLayer c:
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
            ["rotor.kind"] = DeployedModel.Kind,
            ["rotor.arch"] = LayerSpec.ToJson(arch),
            ["rotor.weight_format"] = info.Name,
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
}
