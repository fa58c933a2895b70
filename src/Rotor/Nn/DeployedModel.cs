using Rotor.IO;
using Rotor.Kernels;

namespace Rotor.Nn;

/// <summary>
/// The deployable form of a trained ternary network, in safetensors: for each layer j with weights,
/// <c>layers.{j}.weight</c> (U8, the trits row-major (Out, In) or (O, k*k*C) packed in <c>rotor.weight_format</c>,
/// a format of <see cref="TernaryFormats"/> marked <see cref="TernaryFormatInfo.ForFiles"/>: t2 = 4 trits a byte,
/// t1.6 = 5 trits a byte in base 3), <c>layers.{j}.scale</c> (F32 [1], the absmean scale) and <c>layers.{j}.bias</c>
/// (F32); RMSNorm layers have <c>layers.{j}.gain</c>. <c>__metadata__</c>: <c>rotor.kind</c> = ternary-model,
/// <c>rotor.arch</c> (layers as JSON; dropout left out), <c>rotor.weight_format</c>, <c>rotor.image</c> (HxWxC),
/// <c>rotor.classes</c>, <c>rotor.sha256</c>. It loads into a <see cref="Sequential"/> of the layers in
/// <see cref="LayerTypes"/>; <c>Training.DeployedModelWriter</c> writes it.
/// </summary>
public sealed class DeployedModel
{
    /// <summary>The value of <c>__metadata__</c> <c>rotor.kind</c> of a deployable model.</summary>
    public const string Kind = "ternary-model";

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

    /// <summary>What a layer loader reads from: the layer's architecture, its index j (tensors are
    /// <c>layers.{j}.*</c>), the file, its weight format, the backend, and <see cref="Where"/> for messages.</summary>
    private sealed record LayerSource(LayerSpec Spec, int J, SafeTensorFile File, TernaryFormat Format, ITernaryBackend? Backend, string Where)
    {
        public void RequireTernary()
        {
            if (Spec.Int("ternary") == 0) throw new RotorException($"{Where}: float weights are not deployable");
        }

        public TernaryMatrix Weights(int rows, int cols)
        {
            SafeTensor w = File.Get($"layers.{J}.weight");
            if (w.DType != SafeDType.U8) throw new RotorException($"{Where}: layers.{J}.weight is {w.DType}, expected U8 (packed trits)");
            float[] scale = File.Floats($"layers.{J}.scale", 1);
            return TernaryMatrix.Decode(Format, w.Data, rows, cols, scale, $"{File.Path}: layers.{J}.weight");
        }

        public float[] Floats(string name, int count) => File.Floats($"layers.{J}.{name}", count);
    }

    // The layer types a deployable model may hold: one row a type (null: nothing at inference).
    private static readonly Dictionary<string, Func<LayerSource, ILayer?>> s_layers = new()
    {
        ["linear"] = s =>
        {
            int inF = s.Spec.Int("in"), outF = s.Spec.Int("out"), bits = s.Spec.Int("act_bits");
            s.RequireTernary();
            var mode = bits switch
            {
                8 => ActivationMode.Int8,
                0 => ActivationMode.Float,
                _ => throw new RotorException($"{s.Where}: act_bits {bits} has no inference kernel (0 or 8)"),
            };
            TernaryMatrix m = s.Weights(outF, inF);
            return new TernaryLinear(m, s.Spec.Int("bias") != 0 ? s.Floats("bias", outF) : [], mode, s.Backend);
        },
        ["conv2d"] = s =>
        {
            int c = s.Spec.Int("c"), k = s.Spec.Int("k"), o = s.Spec.Int("o");
            s.RequireTernary();
            TernaryMatrix m = s.Weights(o, k * k * c);
            return new TernaryConv2d(m, s.Floats("bias", o), c, s.Spec.Int("h"), s.Spec.Int("w"), k, s.Spec.Int("pad"), s.Spec.Int("act_bits"), s.Backend);
        },
        ["relu"] = s => new ReLU(s.Spec.Int("size")),
        ["maxpool2d"] = s => new MaxPool2d(s.Spec.Int("c"), s.Spec.Int("h"), s.Spec.Int("w"), s.Spec.Int("k")),
        ["rmsnorm"] = s => new RmsNorm(s.Floats("gain", s.Spec.Int("size")), (float)s.Spec.Real("eps")),
        ["dropout"] = _ => null,
    };

    /// <summary>The layer types a deployable model may hold (<see cref="LayerSpec.Type"/>).</summary>
    public static IReadOnlyCollection<string> LayerTypes => s_layers.Keys;

    /// <summary>Loads a deployable model into Rotor's inference layers.</summary>
    /// <exception cref="RotorException">Not a deployable model, an unknown layer type or format, or tensors that do not
    /// fit the architecture; the message names the file, layer and tensor.</exception>
    public static DeployedModel Load(string path, ITernaryBackend? backend = null)
    {
        SafeTensorFile f = SafeTensors.Read(path);
        if (!f.Metadata.TryGetValue("rotor.kind", out string? kind) || kind != Kind)
            throw new RotorException($"{path}: not a Rotor deployable model (__metadata__ rotor.kind is '{kind ?? "absent"}', expected '{Kind}')");
        TernaryFormatInfo format = TernaryFormats.Get(f.Meta("rotor.weight_format"));
        if (!format.ForFiles) throw new RotorException($"{path}: weight format {format.Name} is not {TernaryFormats.Names(x => x.ForFiles)}");
        var image = ParseImage(f.Meta("rotor.image"), path);
        List<LayerSpec> arch = LayerSpec.ParseJson(f.Meta("rotor.arch"), path);
        var layers = new List<ILayer>();
        for (int j = 0; j < arch.Count; j++)
        {
            LayerSpec s = arch[j];
            string where = $"{path}: layer {j} ({s.Type})";
            if (!s_layers.TryGetValue(s.Type, out var load))
                throw new RotorException($"{where}: unknown layer type '{s.Type}' (known: {string.Join(", ", s_layers.Keys)})");
            try
            {
                if (load(new LayerSource(s, j, f, format.Format, backend, where)) is { } layer) layers.Add(layer);
            }
            catch (ArgumentException e) { throw new RotorException($"{where}: {e.Message}", e); }
        }
        Sequential net;
        try { net = new Sequential(layers.ToArray()); }
        catch (ArgumentException e) { throw new RotorException($"{path}: layers do not chain: {e.Message}", e); }
        if (net.InputSize != image.H * image.W * image.C) throw new RotorException($"{path}: the first layer takes {net.InputSize} values, rotor.image {image.H}x{image.W}x{image.C} gives {image.H * image.W * image.C}");
        return new DeployedModel(net, arch, image, format.Format, path);
    }

    /// <summary>Parses <c>rotor.image</c> (HxWxC); <paramref name="where"/> names the file in errors.</summary>
    internal static (int H, int W, int C) ParseImage(string v, string where)
    {
        string[] p = v.Split('x');
        if (p.Length != 3 || !int.TryParse(p[0], out int h) || !int.TryParse(p[1], out int w) || !int.TryParse(p[2], out int c) || h <= 0 || w <= 0 || c <= 0)
            throw new RotorException($"{where}: __metadata__ rotor.image = '{v}', expected HxWxC such as 28x28x1");
        return (h, w, c);
    }
}
