using System.Globalization;
using System.Text;
using System.Text.Json;

using Rotor.Nn;

namespace Rotor.Training;

/// <summary>Everything that defines a training run; with the same data and config, two runs give identical weights.</summary>
public sealed record TrainConfig
{
    /// <summary>mlp (784-H-H-10) or cnn (LeNet: conv5x5 32, pool, conv5x5 64, pool, fc 1024, fc 10).</summary>
    public string Model { get; init; } = "mlp";
    /// <summary>Hidden width of the MLP.</summary>
    public int Hidden { get; init; } = 512;
    /// <summary>Passes over the training set.</summary>
    public int Epochs { get; init; } = 10;
    /// <summary>Rows a step.</summary>
    public int BatchSize { get; init; } = 128;
    /// <summary>Peak learning rate.</summary>
    public float Lr { get; init; } = 2e-3f;
    /// <summary>Final learning rate as a share of the peak (cosine decay).</summary>
    public float MinLrFactor { get; init; } = 0f;
    /// <summary>Warm-up steps as a share of all steps.</summary>
    public float WarmupFraction { get; init; } = 0.03f;
    /// <summary>AdamW decoupled weight decay (weights only).</summary>
    public float WeightDecay { get; init; } = 0f;
    /// <summary>AdamW beta1.</summary>
    public float Beta1 { get; init; } = 0.9f;
    /// <summary>AdamW beta2.</summary>
    public float Beta2 { get; init; } = 0.999f;
    /// <summary>Seed of the initialization, the shuffles and dropout.</summary>
    public int Seed { get; init; } = 1;
    /// <summary>Ternary weights (false: the float twin).</summary>
    public bool Ternary { get; init; } = true;
    /// <summary>Activation bits of the linear and conv layers (0: float).</summary>
    public int ActBits { get; init; } = 8;
    /// <summary>Dropout before each hidden linear layer (0: none).</summary>
    public float Dropout { get; init; } = 0f;
    /// <summary>RMSNorm before each linear layer but the first (MLP only).</summary>
    public bool Norm { get; init; } = false;
    /// <summary>Label smoothing of the cross-entropy target: (1 - e) one-hot + e / classes.</summary>
    public float LabelSmoothing { get; init; } = 0f;
    /// <summary>Training checkpoint of a teacher network (usually the float twin) to distil from; null: no distillation.</summary>
    public string? Teacher { get; init; }
    /// <summary>Share of the loss that is the distillation term: (1 - a) CE(labels) + a T^2 KL(teacher_T || student_T).</summary>
    public float DistillWeight { get; init; } = 0.5f;
    /// <summary>Softmax temperature T of the distillation term.</summary>
    public float DistillTemperature { get; init; } = 2f;

    /// <summary>Checks the values; throws naming the first bad one.</summary>
    public void Validate()
    {
        if (Model is not ("mlp" or "cnn")) throw new RotorException($"model '{Model}' is unknown (mlp or cnn)");
        if (Hidden <= 0) throw new RotorException($"hidden = {Hidden}, expected a positive width");
        if (Epochs <= 0) throw new RotorException($"epochs = {Epochs}, expected a positive number");
        if (BatchSize <= 0) throw new RotorException($"batch = {BatchSize}, expected a positive number");
        if (!(Lr > 0) || !float.IsFinite(Lr)) throw new RotorException($"lr = {Lr}, expected a positive number");
        if (!(WarmupFraction >= 0 && WarmupFraction < 1)) throw new RotorException($"warmup = {WarmupFraction}, expected a share in [0, 1)");
        if (!(Dropout >= 0 && Dropout < 1)) throw new RotorException($"dropout = {Dropout}, expected [0, 1)");
        if (!(LabelSmoothing >= 0 && LabelSmoothing < 1)) throw new RotorException($"label smoothing = {LabelSmoothing}, expected [0, 1)");
        if (!(DistillWeight >= 0 && DistillWeight <= 1)) throw new RotorException($"distill weight = {DistillWeight}, expected a share in [0, 1]");
        if (!(DistillTemperature > 0) || !float.IsFinite(DistillTemperature)) throw new RotorException($"distill temperature = {DistillTemperature}, expected a positive number");
        if (Teacher is not null && Teacher.Length == 0) throw new RotorException("teacher path is empty");
        if (ActBits != 0 && (ActBits < 2 || ActBits > 16)) throw new RotorException($"act_bits = {ActBits}, expected 0 or 2..16");
    }

    /// <summary>The config as a JSON object.</summary>
    public string ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteString("model", Model); w.WriteNumber("hidden", Hidden); w.WriteNumber("epochs", Epochs);
            w.WriteNumber("batch", BatchSize); w.WriteNumber("lr", Lr); w.WriteNumber("min_lr_factor", MinLrFactor);
            w.WriteNumber("warmup", WarmupFraction); w.WriteNumber("weight_decay", WeightDecay); w.WriteNumber("beta1", Beta1);
            w.WriteNumber("beta2", Beta2); w.WriteNumber("seed", Seed); w.WriteBoolean("ternary", Ternary);
            w.WriteNumber("act_bits", ActBits); w.WriteNumber("dropout", Dropout); w.WriteBoolean("norm", Norm); w.WriteNumber("label_smoothing", LabelSmoothing);
            if (Teacher is not null) { w.WriteString("teacher", Teacher); w.WriteNumber("distill_weight", DistillWeight); w.WriteNumber("distill_temperature", DistillTemperature); }
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    /// <summary>Parses <see cref="ToJson"/>'s output; <paramref name="where"/> names the source in errors.</summary>
    public static TrainConfig FromJson(string json, string where)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            JsonElement r = doc.RootElement;
            float F(string k) => r.GetProperty(k).GetSingle();
            int I(string k) => r.GetProperty(k).GetInt32();
            var c = new TrainConfig
            {
                Model = r.GetProperty("model").GetString() ?? "", Hidden = I("hidden"), Epochs = I("epochs"), BatchSize = I("batch"),
                Lr = F("lr"), MinLrFactor = F("min_lr_factor"), WarmupFraction = F("warmup"), WeightDecay = F("weight_decay"),
                Beta1 = F("beta1"), Beta2 = F("beta2"), Seed = I("seed"), Ternary = r.GetProperty("ternary").GetBoolean(),
                ActBits = I("act_bits"), Dropout = F("dropout"), Norm = r.GetProperty("norm").GetBoolean(),
                LabelSmoothing = r.TryGetProperty("label_smoothing", out JsonElement ls) ? ls.GetSingle() : 0f,
                Teacher = r.TryGetProperty("teacher", out JsonElement te) ? te.GetString() : null,
                DistillWeight = r.TryGetProperty("distill_weight", out JsonElement dw) ? dw.GetSingle() : 0.5f,
                DistillTemperature = r.TryGetProperty("distill_temperature", out JsonElement dt) ? dt.GetSingle() : 2f,
            };
            c.Validate();
            return c;
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new RotorException($"{where}: training config is invalid: {e.Message}", e);
        }
    }

    /// <summary>The layers of <see cref="Model"/> for images of <paramref name="h"/> x <paramref name="w"/> x
    /// <paramref name="c"/> and <paramref name="classes"/> classes, initialized from <see cref="Seed"/>.</summary>
    public List<TrainLayer> BuildLayers(int h, int w, int c, int classes)
    {
        Validate();
        var rng = new Random(Seed);
        var layers = new List<TrainLayer>();
        TernaryLinearLayer Dense(int i, int o)
        {
            var d = new TernaryLinearLayer(i, o, true, Ternary, ActBits);
            d.Initialize(rng);
            return d;
        }
        if (Model == "mlp")
        {
            int width = h * w * c;
            for (int l = 0; l < 2; l++)
            {
                if (Norm && l > 0) layers.Add(new RmsNormLayer(width));
                if (Dropout > 0 && l > 0) layers.Add(new DropoutLayer(width, Dropout));
                layers.Add(Dense(width, Hidden));
                layers.Add(new ReluLayer(Hidden));
                width = Hidden;
            }
            if (Norm) layers.Add(new RmsNormLayer(width));
            if (Dropout > 0) layers.Add(new DropoutLayer(width, Dropout));
            layers.Add(Dense(width, classes));
        }
        else
        {
            var c1 = new TernaryConv2dLayer(c, h, w, 32, 5, 2, Ternary, ActBits); c1.Initialize(rng);
            layers.Add(c1); layers.Add(new ReluLayer(c1.OutputSize)); layers.Add(new MaxPool2dLayer(32, c1.OH, c1.OW, 2));
            var c2 = new TernaryConv2dLayer(32, c1.OH / 2, c1.OW / 2, 64, 5, 2, Ternary, ActBits); c2.Initialize(rng);
            layers.Add(c2); layers.Add(new ReluLayer(c2.OutputSize)); layers.Add(new MaxPool2dLayer(64, c2.OH, c2.OW, 2));
            int flat = c2.OH / 2 * (c2.OW / 2) * 64;
            layers.Add(Dense(flat, 1024)); layers.Add(new ReluLayer(1024));
            if (Dropout > 0) layers.Add(new DropoutLayer(1024, Dropout));
            layers.Add(Dense(1024, classes));
        }
        return layers;
    }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Model}{(Model == "mlp" ? $" hidden {Hidden}" : "")}, {(Ternary ? "ternary" : "float")} weights, {(ActBits > 0 ? $"{ActBits}-bit" : "float")} activations, {Epochs} epochs, batch {BatchSize}, AdamW lr {Lr} wd {WeightDecay}, warm-up {WarmupFraction:P0} + cosine, seed {Seed}{(Dropout > 0 ? $", dropout {Dropout}" : "")}{(Norm ? ", rmsnorm" : "")}{(LabelSmoothing > 0 ? $", label smoothing {LabelSmoothing}" : "")}{(Teacher is not null ? $", distilled from {Path.GetFileName(Teacher)} (weight {DistillWeight}, T {DistillTemperature})" : "")}");
}
