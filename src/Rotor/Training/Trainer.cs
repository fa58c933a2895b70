using System.Diagnostics;
using Rotor.IO;

using Rotor.Nn;

namespace Rotor.Training;

/// <summary>Where a run stands, reported to the progress callback.</summary>
/// <param name="Epoch">Current epoch, from 1.</param>
/// <param name="Epochs">Epochs in the run.</param>
/// <param name="Batch">Batches done in this epoch.</param>
/// <param name="Batches">Batches an epoch.</param>
/// <param name="Loss">Mean loss over the epoch so far.</param>
/// <param name="Accuracy">Training accuracy over the epoch so far.</param>
/// <param name="SamplesPerSecond">Training rate over the epoch so far.</param>
/// <param name="Eta">Estimated time to the end of the run.</param>
/// <param name="Lr">Current learning rate.</param>
public readonly record struct TrainProgress(int Epoch, int Epochs, int Batch, int Batches, double Loss, double Accuracy, double SamplesPerSecond, TimeSpan Eta, float Lr);

/// <summary>The result of one epoch.</summary>
/// <param name="Epoch">The epoch, from 1.</param>
/// <param name="Loss">Mean training loss.</param>
/// <param name="TrainAccuracy">Training accuracy (during the epoch).</param>
/// <param name="TestAccuracy">Accuracy on the test set after the epoch, or NaN without one.</param>
/// <param name="SamplesPerSecond">Training rate.</param>
/// <param name="Seconds">Wall time of the epoch.</param>
public readonly record struct EpochResult(int Epoch, double Loss, double TrainAccuracy, double TestAccuracy, double SamplesPerSecond, double Seconds);

/// <summary>Accuracy and confusion matrix of a model on a labelled set.</summary>
/// <param name="Accuracy">Share of images classified right.</param>
/// <param name="Confusion">Confusion[true, predicted] counts.</param>
/// <param name="Count">Images evaluated.</param>
public sealed record EvalResult(double Accuracy, int[,] Confusion, int Count);

/// <summary>
/// Trains a <see cref="TrainNetwork"/> with AdamW, warm-up and cosine decay on an <see cref="ImageDataset"/>. The
/// order of the images in epoch e is a Fisher-Yates shuffle seeded by (seed, e), dropout masks are seeded by the
/// step, and the products are deterministic, so a run is identical for a seed and a run resumed from a checkpoint
/// continues exactly as if it had not stopped.
/// </summary>
public sealed class Trainer : IDisposable
{
    private readonly byte[] _labels;
    private int[] _order = [];
    private int _orderEpoch = -1;

    /// <summary>A fresh run of <paramref name="config"/> for images of h x w x c and <paramref name="classes"/> classes.</summary>
    public Trainer(TrainConfig config, int h, int w, int c, int classes, int threads)
        : this(config, new TrainNetwork(config.BuildLayers(h, w, c, classes), config.BatchSize, new TrainContext(threads)), ownsContext: true)
    {
        ImageShape = (h, w, c);
    }

    internal Trainer(TrainConfig config, TrainNetwork network, bool ownsContext)
    {
        Config = config;
        Network = network;
        OwnsContext = ownsContext;
        Optimizer = new AdamW(network.Parameters, config.Beta1, config.Beta2, 1e-8f, config.WeightDecay, network.Context);
        _labels = new byte[config.BatchSize];
        if (config.Teacher is not null)
        {
            Teacher = Checkpoint.LoadNetwork(config.Teacher, network.Context, config.BatchSize);
            if (Teacher.InputSize != network.InputSize || Teacher.Classes != network.Classes)
            {
                Teacher.Dispose();
                throw new RotorException($"{config.Teacher}: the teacher takes {Teacher.InputSize} values and gives {Teacher.Classes} classes, the network {network.InputSize} and {network.Classes}");
            }
        }
    }

    /// <summary>The distillation teacher loaded from <see cref="TrainConfig.Teacher"/>, or null.</summary>
    public TrainNetwork? Teacher { get; }

    private bool OwnsContext { get; }
    /// <summary>The run's settings.</summary>
    public TrainConfig Config { get; }
    /// <summary>The network.</summary>
    public TrainNetwork Network { get; }
    /// <summary>The optimizer (its step count is the run's step).</summary>
    public AdamW Optimizer { get; }
    /// <summary>Image height, width and channels.</summary>
    public (int H, int W, int C) ImageShape { get; internal set; }
    /// <summary>Epochs completed.</summary>
    public int Epoch { get; internal set; }
    /// <summary>Batches completed within the current epoch.</summary>
    public int BatchInEpoch { get; internal set; }
    /// <summary>Images in the training set this run was started on (a resumed run must use the same set).</summary>
    public int TrainCount { get; internal set; }
    /// <summary>Whether every epoch is done.</summary>
    public bool Finished => Epoch >= Config.Epochs;

    /// <summary>The learning-rate schedule for a training set of <paramref name="count"/> images.</summary>
    public LrSchedule Schedule(int count)
    {
        long perEpoch = (count + Config.BatchSize - 1) / Config.BatchSize, total = perEpoch * Config.Epochs;
        return new LrSchedule(Config.Lr, Math.Max(1, (long)(total * Config.WarmupFraction)), total, Config.MinLrFactor);
    }

    /// <summary>The order of the images in epoch <paramref name="epoch"/> (from 0).</summary>
    public static int[] Shuffle(int count, int seed, int epoch)
    {
        var order = new int[count];
        for (int i = 0; i < count; i++) order[i] = i;
        var rng = new Random(unchecked(seed * 7919 + epoch * 104729 + 17));
        for (int i = count - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    /// <summary>
    /// Trains from the current position to the end of the run, or until <paramref name="cancel"/> fires (then it
    /// stops after the current step; the position is kept for a checkpoint). Calls <paramref name="progress"/> about
    /// twice a second and <paramref name="epochDone"/> after each epoch (with the test accuracy when a test set is given).
    /// <paramref name="stopAtStep"/> stops the run, resumably, once the optimizer has taken that many steps.
    /// </summary>
    public List<EpochResult> Train(ImageDataset train, ImageDataset? test = null, Action<TrainProgress>? progress = null,
        Action<EpochResult>? epochDone = null, CancellationToken cancel = default, long stopAtStep = long.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(train);
        if (train.ImageSize * ImageShape.C != Network.InputSize && train.ImageSize != Network.InputSize)
            throw new RotorException($"{train.Name}: images of {train.Rows}x{train.Cols} do not fit the network's input of {Network.InputSize} values");
        if (TrainCount == 0) TrainCount = train.Count;
        else if (TrainCount != train.Count)
            throw new RotorException($"{train.Name}: the run was started on {TrainCount} training images, this set has {train.Count}; resume with the same data");
        int batchSize = Config.BatchSize, count = train.Count, batches = (count + batchSize - 1) / batchSize;
        LrSchedule schedule = Schedule(count);
        var results = new List<EpochResult>();
        var runWatch = Stopwatch.StartNew();
        long runSamples = 0;
        long remainingSamples = (long)(Config.Epochs - Epoch) * count - (long)BatchInEpoch * batchSize;
        while (Epoch < Config.Epochs)
        {
            if (_orderEpoch != Epoch) { _order = Shuffle(count, Config.Seed, Epoch); _orderEpoch = Epoch; }
            var epochWatch = Stopwatch.StartNew();
            double lossSum = 0; long correct = 0, seen = 0;
            long lastReport = 0;
            while (BatchInEpoch < batches)
            {
                if (cancel.IsCancellationRequested || Optimizer.Step >= stopAtStep) return results;
                int start = BatchInEpoch * batchSize, b = Math.Min(batchSize, count - start);
                Span<float> input = Network.Input;
                for (int r = 0; r < b; r++)
                {
                    int idx = _order[start + r];
                    train.CopyImage(idx, input.Slice(r * Network.InputSize, Network.InputSize));
                    _labels[r] = train.Labels[idx];
                }
                float lr = schedule.At(Optimizer.Step);
                Network.Forward(b, training: true, stepSeed: (ulong)Optimizer.Step ^ ((ulong)(uint)Config.Seed << 40));
                var (loss, ok) = Teacher is null
                    ? Network.Loss(_labels, b, Config.LabelSmoothing)
                    : Network.Loss(_labels, b, Config.LabelSmoothing, Teacher.Forward(Network.Input[..(b * Network.InputSize)], b, training: false),
                        Config.DistillWeight, Config.DistillTemperature);
                if (!double.IsFinite(loss)) throw new RotorException($"training diverged: loss is {loss} at step {Optimizer.Step} (epoch {Epoch + 1}); lower the learning rate (now {lr})");
                Network.Backward(b);
                Optimizer.Update(lr);
                BatchInEpoch++;
                lossSum += loss * b; correct += ok; seen += b; runSamples += b;
                if (progress is not null && (epochWatch.ElapsedMilliseconds - lastReport >= 500 || BatchInEpoch == batches))
                {
                    lastReport = epochWatch.ElapsedMilliseconds;
                    double rate = runSamples / Math.Max(1e-9, runWatch.Elapsed.TotalSeconds);
                    var eta = TimeSpan.FromSeconds((remainingSamples - runSamples) / Math.Max(1e-9, rate));
                    progress(new TrainProgress(Epoch + 1, Config.Epochs, BatchInEpoch, batches, lossSum / seen, (double)correct / seen, rate, eta, lr));
                }
            }
            double seconds = epochWatch.Elapsed.TotalSeconds;
            double testAcc = test is null ? double.NaN : Evaluate(test).Accuracy;
            var res = new EpochResult(Epoch + 1, seen == 0 ? double.NaN : lossSum / seen, seen == 0 ? double.NaN : (double)correct / seen, testAcc, seen / Math.Max(1e-9, seconds), seconds);
            results.Add(res);
            Epoch++; BatchInEpoch = 0;
            epochDone?.Invoke(res);
        }
        return results;
    }

    /// <summary>Accuracy and confusion matrix of the network (dropout off) on <paramref name="data"/>.</summary>
    public EvalResult Evaluate(ImageDataset data) => Evaluate(Network, data);

    /// <summary>Accuracy and confusion matrix of <paramref name="network"/> on <paramref name="data"/>.</summary>
    public static EvalResult Evaluate(TrainNetwork network, ImageDataset data)
    {
        int classes = network.Classes, n = network.InputSize;
        if (data.ImageSize != n) throw new RotorException($"{data.Name}: images of {data.Rows}x{data.Cols} do not fit the network's input of {n} values");
        var confusion = new int[classes, classes];
        int correct = 0;
        for (int start = 0; start < data.Count; start += network.Capacity)
        {
            int b = Math.Min(network.Capacity, data.Count - start);
            Span<float> input = network.Input;
            for (int r = 0; r < b; r++) data.CopyImage(start + r, input.Slice(r * n, n));
            correct += Tally(network.Forward(b, training: false), b, start, data, confusion);
        }
        return new EvalResult(data.Count == 0 ? 0 : (double)correct / data.Count, confusion, data.Count);
    }

    /// <summary>Accuracy and confusion matrix of an inference network (<see cref="Nn.ILayer"/>) on <paramref name="data"/>.</summary>
    public static EvalResult Evaluate(Nn.ILayer model, ImageDataset data, int batch = 256)
    {
        int classes = model.OutputSize, n = model.InputSize;
        if (data.ImageSize != n) throw new RotorException($"{data.Name}: images of {data.Rows}x{data.Cols} do not fit the model's input of {n} values");
        var confusion = new int[classes, classes];
        var x = new float[batch * n];
        var y = new float[batch * classes];
        int correct = 0;
        for (int start = 0; start < data.Count; start += batch)
        {
            int b = Math.Min(batch, data.Count - start);
            for (int r = 0; r < b; r++) data.CopyImage(start + r, x.AsSpan(r * n, n));
            model.Forward(x.AsSpan(0, b * n), y, b);
            correct += Tally(y, b, start, data, confusion);
        }
        return new EvalResult(data.Count == 0 ? 0 : (double)correct / data.Count, confusion, data.Count);
    }

    /// <summary>Adds the predictions of images start .. start + b - 1 (their logits, b rows) to the confusion matrix;
    /// returns how many were right.</summary>
    private static int Tally(ReadOnlySpan<float> logits, int b, int start, ImageDataset data, int[,] confusion)
    {
        int classes = confusion.GetLength(0), correct = 0;
        for (int r = 0; r < b; r++)
        {
            int p = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(logits.Slice(r * classes, classes));
            int t = data.Labels[start + r];
            if (t >= classes) throw new RotorException($"{data.Name}: label {t} of image {start + r} is not below the model's {classes} classes");
            confusion[t, p]++;
            if (p == t) correct++;
        }
        return correct;
    }

    /// <summary>Stops the worker threads.</summary>
    public void Dispose()
    {
        Teacher?.Dispose();
        if (OwnsContext) Network.Context.Dispose();
    }
}
