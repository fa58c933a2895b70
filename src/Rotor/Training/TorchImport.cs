using System.Globalization;
using Rotor.IO;
using Rotor.Nn;

namespace Rotor.Training;

/// <summary>
/// Imports a PyTorch <c>state_dict</c> saved as safetensors (F32, F16 or BF16) of a stack of linear layers, such as
/// <c>nn.Sequential(nn.Linear, nn.ReLU, nn.Linear, ...)</c>: the tensors <c>{prefix}{i}.weight</c> (Out, In) and
/// <c>{prefix}{i}.bias</c> (Out), taken in the order of the numeric index i, must chain (each In equals the previous
/// Out). The activation between them is not stored by PyTorch and is given by the caller (only ReLU is known).
/// </summary>
public static class TorchImport
{
    /// <summary>One imported linear layer: its name, weights (Out, In) and bias.</summary>
    /// <param name="Name">Tensor name prefix, such as "0".</param>
    /// <param name="Out">Output features.</param>
    /// <param name="In">Input features.</param>
    /// <param name="Weight">Weights, row-major (Out, In).</param>
    /// <param name="Bias">Bias (Out), or null.</param>
    public sealed record LinearWeights(string Name, int Out, int In, float[] Weight, float[]? Bias);

    /// <summary>Reads the linear layers of <paramref name="path"/> in index order. Every tensor of the file must belong to
    /// the stack, and all layers to one module (<c>{module}.{i}</c>): a file with anything else would build a different
    /// network than it holds, so it is refused rather than partly imported.</summary>
    /// <exception cref="RotorException">No linear weights, a tensor that is not a linear layer's weight or bias, layers of
    /// different modules, non-float tensors, or shapes that do not chain (the message names the tensor).</exception>
    /// <param name="path">The safetensors file.</param>
    /// <param name="ignore">Tensors the caller knows are not part of the network (e.g. test inputs stored beside it).</param>
    public static List<LinearWeights> ReadLinearStack(string path, IReadOnlyCollection<string>? ignore = null)
    {
        SafeTensorFile f = SafeTensors.Read(path);
        var layers = new List<(long Key, LinearWeights W)>();
        string? module = null, moduleTensor = null;
        var used = new HashSet<string>(ignore ?? [], StringComparer.Ordinal);
        foreach (string name in f.Names.Order(StringComparer.Ordinal))
        {
            if (ignore?.Contains(name) == true) continue;
            if (!name.EndsWith(".weight", StringComparison.Ordinal)) continue;
            SafeTensor w = f.Get(name);
            if (w.Shape.Length != 2)
                throw new RotorException($"{path}: tensor {name} has shape [{string.Join(", ", w.Shape)}]: not the (Out, In) weight of a linear layer, which is all Rotor imports");
            string prefix = name[..^".weight".Length];
            int dot = prefix.LastIndexOf('.');
            string last = dot >= 0 ? prefix[(dot + 1)..] : prefix, owner = dot >= 0 ? prefix[..dot] : "";
            if (!long.TryParse(last, NumberStyles.None, CultureInfo.InvariantCulture, out long key))
                throw new RotorException($"{path}: tensor {name}: expected names of the form PREFIX.INDEX.weight (nn.Sequential), got '{prefix}'");
            if (module is null) { module = owner; moduleTensor = name; }
            if (owner != module)
                throw new RotorException($"{path}: tensors of two modules, {moduleTensor} of '{module}' and {name} of '{owner}': one nn.Sequential of linear layers was expected");
            int outF = checked((int)w.Shape[0]), inF = checked((int)w.Shape[1]);
            float[]? bias = null;
            if (f.Tensors.TryGetValue(prefix + ".bias", out SafeTensor? b))
            {
                if (b.Shape.Length != 1 || b.Shape[0] != outF) throw new RotorException($"{path}: tensor {prefix}.bias has shape [{string.Join(", ", b.Shape)}], expected [{outF}]");
                bias = b.ToFloats($"{path}: ");
                used.Add(prefix + ".bias");
            }
            float[] wv = w.ToFloats($"{path}: ");
            Check.Finite(wv, $"{path}: {name}");
            used.Add(name);
            layers.Add((key, new LinearWeights(prefix, outF, inF, wv, bias)));
        }
        if (layers.Count == 0) throw new RotorException($"{path}: no 2-D *.weight tensors (a PyTorch state_dict of linear layers was expected)");
        var other = f.Names.Where(n => !used.Contains(n)).Order(StringComparer.Ordinal).ToList();
        if (other.Count > 0)
            throw new RotorException($"{path}: {other.Count} tensor(s) are not the weight or bias of a linear layer (e.g. {other[0]}, shape [{string.Join(", ", f.Get(other[0]).Shape)}]): the file holds more than a stack of linear layers");
        var ordered = layers.OrderBy(l => l.Key).Select(l => l.W).ToList();
        for (int i = 1; i < ordered.Count; i++)
            if (ordered[i].In != ordered[i - 1].Out)
                throw new RotorException($"{path}: layer {ordered[i].Name} takes {ordered[i].In} inputs but layer {ordered[i - 1].Name} gives {ordered[i - 1].Out}");
        return ordered;
    }

    private static void CheckActivation(string activation)
    {
        if (activation != "relu") throw new RotorException($"activation '{activation}' is not known (relu)");
    }

    /// <summary>Training layers holding the imported weights as latent weights: Linear, ReLU, ..., Linear. With
    /// <paramref name="ternary"/> false this is the float network PyTorch ran; true, its ternary (absmean) version,
    /// ready to fine-tune.</summary>
    public static List<TrainLayer> ToTrainLayers(IReadOnlyList<LinearWeights> stack, bool ternary, int actBits, string activation = "relu")
    {
        CheckActivation(activation);
        var layers = new List<TrainLayer>();
        for (int i = 0; i < stack.Count; i++)
        {
            LinearWeights l = stack[i];
            var d = new TernaryLinearLayer(l.In, l.Out, l.Bias is not null, ternary, actBits);
            l.Weight.CopyTo(d.Weight.Value, 0);
            l.Bias?.CopyTo(d.Bias.Value, 0);
            layers.Add(d);
            if (i < stack.Count - 1) layers.Add(new ReluLayer(l.Out));
        }
        return layers;
    }

    /// <summary>The imported network ternarized (absmean, per tensor) on Rotor's inference layers.</summary>
    public static Sequential ToTernarySequential(IReadOnlyList<LinearWeights> stack, ActivationMode mode = ActivationMode.Int8, string activation = "relu")
    {
        CheckActivation(activation);
        var layers = new List<ILayer>();
        for (int i = 0; i < stack.Count; i++)
        {
            LinearWeights l = stack[i];
            layers.Add(TernaryLinear.FromFloat(l.Weight, l.Out, l.In, l.Bias ?? [], QuantizationMethod.AbsMean, ScaleMode.PerTensor, mode));
            if (i < stack.Count - 1) layers.Add(new ReLU(l.Out));
        }
        return new Sequential(layers.ToArray());
    }
}
