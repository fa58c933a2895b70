using System.Globalization;
using Rotor.IO;
using Rotor.Nn;

namespace Rotor.Training;

/// <summary>
/// Training checkpoints in safetensors: every latent parameter (<c>layers.{i}.{name}</c>, F32), AdamW's moments
/// (<c>adam.m.{param}</c>, <c>adam.v.{param}</c>, F32) and, in <c>__metadata__</c>: <c>rotor.kind</c> = train-state,
/// <c>rotor.arch</c> (the layers as JSON), <c>rotor.config</c> (the <see cref="TrainConfig"/> as JSON), <c>rotor.step</c>,
/// <c>rotor.epoch</c>, <c>rotor.batch</c> (position within the epoch), <c>rotor.train_count</c>, <c>rotor.image</c>
/// (HxWxC), optionally <c>rotor.output</c> (the full path of the deployable model the run writes at its end, so that a
/// resumed run writes it there too) and <c>rotor.sha256</c>. Loading one gives a <see cref="Trainer"/> that continues bit-exactly.
/// </summary>
public static class Checkpoint
{
    /// <summary>The value of <c>rotor.kind</c> for training state.</summary>
    public const string TrainStateKind = "train-state";
    /// <summary>The value of <c>rotor.kind</c> for deployable models.</summary>
    public const string DeployKind = DeployedModel.Kind;

    /// <summary>Writes the state of <paramref name="trainer"/> to <paramref name="path"/> (atomically);
    /// <paramref name="output"/> is the deployable model the run will write, kept for <see cref="OutputOf"/>.</summary>
    public static void Save(Trainer trainer, string path, string? output = null)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        var tensors = new List<SafeTensor>();
        var ps = trainer.Network.Parameters;
        for (int i = 0; i < ps.Count; i++)
        {
            long[] shape = ps[i].Shape.Select(d => (long)d).ToArray();
            tensors.Add(SafeTensor.FromFloats(ps[i].Name, ps[i].Value, shape));
            tensors.Add(SafeTensor.FromFloats("adam.m." + ps[i].Name, trainer.Optimizer.M[i], shape));
            tensors.Add(SafeTensor.FromFloats("adam.v." + ps[i].Name, trainer.Optimizer.V[i], shape));
        }
        var (h, w, c) = trainer.ImageShape;
        var meta = new Dictionary<string, string>
        {
            ["rotor.kind"] = TrainStateKind,
            ["rotor.arch"] = LayerSpec.ToJson(trainer.Network.Specs),
            ["rotor.config"] = trainer.Config.ToJson(),
            ["rotor.step"] = trainer.Optimizer.Step.ToString(CultureInfo.InvariantCulture),
            ["rotor.epoch"] = trainer.Epoch.ToString(CultureInfo.InvariantCulture),
            ["rotor.batch"] = trainer.BatchInEpoch.ToString(CultureInfo.InvariantCulture),
            ["rotor.train_count"] = trainer.TrainCount.ToString(CultureInfo.InvariantCulture),
            ["rotor.image"] = $"{h}x{w}x{c}",
        };
        if (output is not null) meta["rotor.output"] = Path.GetFullPath(output);
        SafeTensors.Write(path, tensors, meta);
    }

    /// <summary>The deployable model path that the run of the checkpoint at <paramref name="path"/> writes at its end
    /// (<c>rotor.output</c>), or null when the checkpoint does not name one.</summary>
    /// <exception cref="RotorException">Not a training checkpoint, or corrupt.</exception>
    public static string? OutputOf(string path)
    {
        SafeTensorFile f = SafeTensors.Read(path);
        if (!f.Metadata.TryGetValue("rotor.kind", out string? kind) || kind != TrainStateKind)
            throw new RotorException($"{path}: not a Rotor training checkpoint (__metadata__ rotor.kind is '{kind ?? "absent"}', expected '{TrainStateKind}')");
        return f.Metadata.TryGetValue("rotor.output", out string? o) && o.Length > 0 ? o : null;
    }

    /// <summary>Loads a training checkpoint into a new <see cref="Trainer"/> running on <paramref name="threads"/> threads.</summary>
    /// <exception cref="RotorException">Not a training checkpoint, corrupt, or tensors that do not fit the architecture.</exception>
    public static Trainer Load(string path, int threads)
    {
        SafeTensorFile f = SafeTensors.Read(path);
        if (!f.Metadata.TryGetValue("rotor.kind", out string? kind) || kind != TrainStateKind)
            throw new RotorException($"{path}: not a Rotor training checkpoint (__metadata__ rotor.kind is '{kind ?? "absent"}', expected '{TrainStateKind}')");
        TrainConfig config = TrainConfig.FromJson(f.Meta("rotor.config"), path);
        List<LayerSpec> specs = LayerSpec.ParseJson(f.Meta("rotor.arch"), path);
        var layers = specs.Select(TrainLayer.FromSpec).ToList();
        var (h, w, c) = DeployedModel.ParseImage(f.Meta("rotor.image"), path);
        var net = new TrainNetwork(layers, config.BatchSize, new TrainContext(threads));
        var trainer = new Trainer(config, net, ownsContext: true) { ImageShape = (h, w, c) };
        var ps = net.Parameters;
        for (int i = 0; i < ps.Count; i++)
        {
            Fill(f, ps[i].Name, ps[i], ps[i].Value);
            Fill(f, "adam.m." + ps[i].Name, ps[i], trainer.Optimizer.M[i]);
            Fill(f, "adam.v." + ps[i].Name, ps[i], trainer.Optimizer.V[i]);
        }
        trainer.Optimizer.Step = Long(f, "rotor.step");
        trainer.Epoch = (int)Long(f, "rotor.epoch");
        trainer.BatchInEpoch = (int)Long(f, "rotor.batch");
        trainer.TrainCount = (int)Long(f, "rotor.train_count");
        return trainer;
    }

    /// <summary>The network of a training checkpoint (its latent parameters only, no optimizer state) on
    /// <paramref name="context"/>, for batches of up to <paramref name="capacity"/> rows: a distillation teacher.</summary>
    /// <exception cref="RotorException">Not a training checkpoint, corrupt, or tensors that do not fit the architecture.</exception>
    public static TrainNetwork LoadNetwork(string path, TrainContext context, int capacity)
    {
        ArgumentNullException.ThrowIfNull(context);
        SafeTensorFile f = SafeTensors.Read(path);
        if (!f.Metadata.TryGetValue("rotor.kind", out string? kind) || kind != TrainStateKind)
            throw new RotorException($"{path}: not a Rotor training checkpoint (__metadata__ rotor.kind is '{kind ?? "absent"}', expected '{TrainStateKind}')");
        List<LayerSpec> specs = LayerSpec.ParseJson(f.Meta("rotor.arch"), path);
        var net = new TrainNetwork(specs.Select(TrainLayer.FromSpec).ToList(), capacity, context);
        foreach (Parameter p in net.Parameters) Fill(f, p.Name, p, p.Value);
        return net;
    }

    private static void Fill(SafeTensorFile f, string name, Parameter p, float[] dst)
    {
        SafeTensor t = f.Get(name);
        if (!t.Shape.SequenceEqual(p.Shape.Select(d => (long)d)))
            throw new RotorException($"{f.Path}: tensor {name} has shape [{string.Join(", ", t.Shape)}], the architecture needs [{string.Join(", ", p.Shape)}]");
        t.ToFloats($"{f.Path}: ").CopyTo(dst, 0);
    }

    private static long Long(SafeTensorFile f, string key)
    {
        string v = f.Meta(key);
        if (!long.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out long n)) throw new RotorException($"{f.Path}: __metadata__ {key} = '{v}' is not a non-negative integer");
        return n;
    }
}
