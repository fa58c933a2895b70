using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Rotor.IO;
using Rotor.Kernels;
using Rotor.Nn;
using Rotor.Training;

namespace Rotor.Cli.Commands;

/// <summary><c>rotor train</c>, <c>rotor eval</c> and <c>rotor predict</c>: ternary image classifiers on MNIST-style data.</summary>
internal static class TrainCommands
{
    internal static Command CreateTrain()
    {
        var cmd = new Command("train", "Train a ternary (BitNet b1.58) classifier on an MNIST-style folder of IDX files; Ctrl-C saves a resumable checkpoint");
        var data = new Option<string>("--data") { Description = "Folder with train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-... (e.g. /usr/share/datasets/fashion-mnist)", Required = true };
        var model = new Option<string>("--model") { Description = "mlp (784-512-512-10) or cnn (LeNet: conv5x5 32, pool, conv5x5 64, pool, fc 1024, fc 10)", DefaultValueFactory = _ => "mlp" }.OneOf("mlp", "cnn");
        var epochs = new Option<int>("--epochs") { Description = "Passes over the training set", DefaultValueFactory = _ => 10 }.InRange(1, 100_000);
        var output = new Option<string?>("--out") { Description = "Deployable ternary model to write (safetensors; default rotor-MODEL.safetensors, or beside the checkpoint of --resume)" }.OutputFile();
        var checkpoint = new Option<string?>("--checkpoint") { Description = "Training state to write at each epoch, at the end and on Ctrl-C (default: OUT with .ckpt.safetensors)" }.OutputFile();
        var resume = new Option<string?>("--resume") { Description = "Continue the run saved in this training checkpoint (its settings are used)" };
        var batch = new Option<int>("--batch") { Description = "Batch size", DefaultValueFactory = _ => 128 }.InRange(1, 65_536);
        var lr = new Option<float?>("--lr") { Description = "Peak learning rate (default 2e-3 mlp, 1e-3 cnn)" }.InRange(1e-9f, 10f);
        var wd = new Option<float>("--weight-decay") { Description = "AdamW weight decay on weights", DefaultValueFactory = _ => 0f }.InRange(0f, 10f);
        var seed = new Option<int>("--seed") { Description = "Seed of initialization, shuffling and dropout", DefaultValueFactory = _ => 1 };
        var hidden = new Option<int>("--hidden") { Description = "MLP hidden width", DefaultValueFactory = _ => 512 }.InRange(1, 65_536);
        var fp = new Option<bool>("--float") { Description = "Train the float twin (float weights and activations) for comparison" };
        var actBits = new Option<int>("--act-bits") { Description = "Activation bits of the ternary layers (8 as BitNet b1.58; 0 = float)", DefaultValueFactory = _ => 8 }.InRange(0, 16);
        var dropout = new Option<float>("--dropout") { Description = "Dropout before the hidden linear layers", DefaultValueFactory = _ => 0f }.InRange(0f, 0.99f);
        var smooth = new Option<float>("--label-smoothing") { Description = "Label smoothing of the cross-entropy target", DefaultValueFactory = _ => 0f }.InRange(0f, 0.99f);
        var norm = new Option<bool>("--norm") { Description = "RMSNorm before each MLP linear layer but the first" };
        var format = new Option<string>("--format") { Description = "Packed weight format of the deployable model: t2 (2 bits) or t1.6 (1.6 bits)", DefaultValueFactory = _ => "t2" }.OneOf("t2", "t1.6");
        var threads = Validate.Threads();
        var teacher = new Option<string?>("--teacher") { Description = "Distil from this training checkpoint (e.g. the float twin's .ckpt.safetensors)" };
        var distillWeight = new Option<float>("--distill-weight") { Description = "Share of the loss from the teacher's soft targets", DefaultValueFactory = _ => 0.5f }.InRange(0f, 1f);
        var distillTemp = new Option<float>("--distill-temperature") { Description = "Softmax temperature of the distillation term", DefaultValueFactory = _ => 2f }.InRange(0.01f, 100f);
        var limit = new Option<int?>("--limit") { Description = "Use only the first N training images (quick runs)" }.Positive();
        foreach (Option o in new Option[] { data, model, epochs, output, checkpoint, resume, batch, lr, wd, seed, hidden, fp, actBits, dropout, norm, smooth, format, threads, limit, teacher, distillWeight, distillTemp })
            cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            string dir = r.GetValue(data)!;
            int t = r.GetValue(threads) ?? CpuBackend.DefaultThreads();
            var (train, test) = ImageDataset.LoadFolder(dir);
            if (r.GetValue(limit) is int n) train = train.Take(n);
            Trainer trainer;
            string? resumePath = r.GetValue(resume);
            if (resumePath is not null)
            {
                trainer = Checkpoint.Load(resumePath, t);
                Console.WriteLine($"resuming {resumePath}: epoch {trainer.Epoch + 1}, batch {trainer.BatchInEpoch}, step {trainer.Optimizer.Step}");
            }
            else
            {
                string m = r.GetValue(model)!;
                bool isFloat = r.GetValue(fp);
                var config = new TrainConfig
                {
                    Model = m, Epochs = r.GetValue(epochs), BatchSize = r.GetValue(batch), Lr = r.GetValue(lr) ?? (m == "cnn" ? 1e-3f : 2e-3f),
                    WeightDecay = r.GetValue(wd), Seed = r.GetValue(seed), Hidden = r.GetValue(hidden), Ternary = !isFloat,
                    ActBits = isFloat ? 0 : r.GetValue(actBits), Dropout = r.GetValue(dropout), Norm = r.GetValue(norm), LabelSmoothing = r.GetValue(smooth),
                    Teacher = r.GetValue(teacher) is string tp ? Path.GetFullPath(tp) : null, DistillWeight = r.GetValue(distillWeight), DistillTemperature = r.GetValue(distillTemp),
                };
                config.Validate();
                trainer = new Trainer(config, train.Rows, train.Cols, 1, train.Classes, t);
            }
            using (trainer)
            {
                // A resumed run writes its model where the run it continues would have: the checkpoint names it.
                string outPath = r.GetValue(output)
                    ?? (resumePath is not null ? ResumedOutput(resumePath) : $"rotor-{trainer.Config.Model}{(trainer.Config.Ternary ? "" : "-float")}.safetensors");
                if (Validate.OutputFileProblem(outPath) is { } why) throw new RotorException(why);
                // Two runs writing one model or one checkpoint would overwrite each other's: the second fails at once.
                using var writer = FileLock.Acquire(outPath, TimeSpan.Zero);
                string ckptPath = r.GetValue(checkpoint) ?? resumePath ?? Path.ChangeExtension(outPath, null) + ".ckpt.safetensors";
                using var ckptWriter = FileLock.LockPathOf(ckptPath) == FileLock.LockPathOf(outPath) ? null : FileLock.Acquire(ckptPath, TimeSpan.Zero);
                TernaryFormat fmt = TernaryFormats.Get(r.GetValue(format)!).Format;
                Console.WriteLine($"data     {dir}: {train.Count} training, {test.Count} test images of {train.Rows}x{train.Cols}");
                Console.WriteLine($"model    {trainer.Config} ({trainer.Network.ParameterCount:N0} parameters), {trainer.Network.Context.Threads} threads");
                using var cts = new CancellationTokenSource();
                ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cts.Cancel(); };
                Console.CancelKeyPress += onCancel;
                bool live = !Console.IsErrorRedirected;
                try
                {
                    trainer.Train(train, test,
                        progress: p =>
                        {
                            if (!live) return;
                            int bar = (int)(20.0 * p.Batch / p.Batches);
                            Console.Error.Write($"\repoch {p.Epoch}/{p.Epochs} [{new string('#', bar)}{new string('.', 20 - bar)}] {p.Batch * 100 / p.Batches,3}%  loss {p.Loss:F4}  acc {p.Accuracy:P2}  {p.SamplesPerSecond,8:N0} samples/s  lr {p.Lr:0.0e0}  ETA {Eta(p.Eta)}   ");
                        },
                        epochDone: e =>
                        {
                            if (live) Console.Error.Write('\r' + new string(' ', 120) + '\r');
                            Console.WriteLine($"epoch {e.Epoch,3}  loss {e.Loss:F4}  train {e.TrainAccuracy:P2}  test {e.TestAccuracy:P2}  {e.SamplesPerSecond:N0} samples/s  {e.Seconds:F1} s");
                            Checkpoint.Save(trainer, ckptPath, outPath);
                        },
                        cancel: cts.Token);
                }
                finally { Console.CancelKeyPress -= onCancel; }
                if (!trainer.Finished)
                {
                    if (live) Console.Error.WriteLine();
                    Checkpoint.Save(trainer, ckptPath, outPath);
                    Console.WriteLine($"interrupted at epoch {trainer.Epoch + 1}, batch {trainer.BatchInEpoch} (step {trainer.Optimizer.Step}); state saved to {ckptPath}");
                    Console.WriteLine($"continue with: rotor train --data {dir} --resume {ckptPath}{(r.GetValue(limit) is int lim ? $" --limit {lim}" : "")}");
                    return 130;
                }
                Checkpoint.Save(trainer, ckptPath, outPath);
                Console.WriteLine($"checkpoint {ckptPath} (training state, {new FileInfo(ckptPath).Length:N0} bytes)");
                if (trainer.Config.Ternary && trainer.Config.ActBits is 0 or 8)
                {
                    DeployedModelWriter.Export(trainer.Network, trainer.ImageShape, outPath, fmt);
                    long floatBytes = trainer.Network.ParameterCount * 4;
                    var deployed = DeployedModel.Load(outPath);
                    var acc = Trainer.Evaluate(deployed.Network, test);
                    Console.WriteLine($"model    {outPath} ({new FileInfo(outPath).Length:N0} bytes, {TernaryFormats.Get(fmt).Name}; float32 parameters: {floatBytes:N0} bytes, {(double)floatBytes / new FileInfo(outPath).Length:F1}x larger)");
                    Console.WriteLine($"test accuracy of the deployed ternary model (Rotor inference layers): {acc.Accuracy:P2}");
                }
                else
                    Console.WriteLine($"no deployable ternary model for this run ({(trainer.Config.Ternary ? $"act_bits {trainer.Config.ActBits} has no inference kernel" : "float twin")}); evaluate the checkpoint: rotor eval model {ckptPath} --data {dir}");
            }
            return 0;
        });
        return cmd;
    }

    // The model path of a resumed run: the one its checkpoint names, else X.safetensors for the default X.ckpt.safetensors.
    private static string ResumedOutput(string checkpoint)
    {
        if (Checkpoint.OutputOf(checkpoint) is { } named) return named;
        const string Suffix = ".ckpt.safetensors";
        if (checkpoint.EndsWith(Suffix, StringComparison.Ordinal)) return checkpoint[..^Suffix.Length] + ".safetensors";
        throw new RotorException($"--resume {checkpoint}: the checkpoint does not name the model file of its run; give --out");
    }

    private static string Eta(TimeSpan t) => t.TotalHours >= 1 ? t.ToString(@"h\:mm\:ss", CultureInfo.InvariantCulture) : t.ToString(@"m\:ss", CultureInfo.InvariantCulture);

    internal static Command CreateEval()
    {
        var cmd = new Command("model", "Evaluate a model (deployable ternary model or training checkpoint) on the test set of a data folder: accuracy and confusion matrix");
        var modelArg = new Argument<string>("MODEL") { Description = "A .safetensors file written by rotor train (deployable model or checkpoint)" };
        var data = new Option<string>("--data") { Description = "Folder with t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]", Required = true };
        var json = new Option<string?>("--json") { Description = "Also write {\"accuracy\": fraction, \"confusion\": [[...]], ...} to this file" }.OutputFile();
        var threads = Validate.Threads();
        cmd.Arguments.Add(modelArg); cmd.Options.Add(data); cmd.Options.Add(json); cmd.Options.Add(threads);
        cmd.SetAction(r =>
        {
            string path = r.GetValue(modelArg)!, dir = r.GetValue(data)!;
            ImageDataset test = ImageDataset.LoadSplit(dir, train: false);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            EvalResult res;
            string kind;
            if (ModelKind(path) == Checkpoint.TrainStateKind)
            {
                using Trainer t = Checkpoint.Load(path, r.GetValue(threads) ?? CpuBackend.DefaultThreads());
                res = t.Evaluate(test);
                kind = $"training checkpoint ({t.Config})";
            }
            else
            {
                DeployedModel m = DeployedModel.Load(path);
                res = Trainer.Evaluate(m.Network, test);
                kind = $"deployable ternary model ({TernaryFormats.Get(m.Format).Name}, {m.Network.Name})";
            }
            double secs = sw.Elapsed.TotalSeconds;
            Console.WriteLine($"model     {path}: {kind}");
            Console.WriteLine($"data      {test.Name}: {res.Count} images");
            Console.WriteLine($"accuracy  {res.Accuracy:P2} ({res.Accuracy * res.Count:F0}/{res.Count}) in {secs:F2} s, {res.Count / secs:N0} images/s");
            Console.WriteLine();
            Console.WriteLine("confusion (rows: true class, columns: predicted)");
            int k = res.Confusion.GetLength(0);
            var sb = new StringBuilder("true\\pred");
            for (int j = 0; j < k; j++) sb.Append($"{j,6}");
            Console.WriteLine(sb.ToString());
            for (int i = 0; i < k; i++)
            {
                sb.Clear().Append($"{i,9}");
                for (int j = 0; j < k; j++) sb.Append($"{res.Confusion[i, j],6}");
                Console.WriteLine(sb.ToString());
            }
            if (r.GetValue(json) is string jsonPath)
            {
                AtomicFile.Write(jsonPath, s =>
                {
                    using var w = new Utf8JsonWriter(s, new JsonWriterOptions { Indented = true });
                    w.WriteStartObject();
                    w.WriteString("model", path); w.WriteString("data", dir); w.WriteNumber("count", res.Count);
                    w.WriteNumber("accuracy", res.Accuracy);
                    w.WriteStartArray("confusion");
                    for (int i = 0; i < k; i++)
                    {
                        w.WriteStartArray();
                        for (int j = 0; j < k; j++) w.WriteNumberValue(res.Confusion[i, j]);
                        w.WriteEndArray();
                    }
                    w.WriteEndArray();
                    w.WriteEndObject();
                });
                Console.WriteLine($"wrote {jsonPath}");
            }
            return 0;
        });
        return cmd;
    }

    private static string? ModelKind(string path)
    {
        SafeTensorFile f = SafeTensors.Read(path);
        return f.Metadata.TryGetValue("rotor.kind", out var k) ? k : null;
    }

    internal static Command CreatePredict()
    {
        var cmd = new Command("predict", "Classify images with a deployable ternary model. IMAGE: a PNG or PGM file (28x28 grey, white on black as MNIST), or IDXFILE:INDEX (an image of an IDX file, from 0)");
        var modelArg = new Argument<string>("MODEL") { Description = "Deployable model written by rotor train" };
        var images = new Argument<string[]>("IMAGE") { Description = "image.png, image.pgm, or t10k-images-idx3-ubyte.gz:17", Arity = ArgumentArity.OneOrMore };
        var top = new Option<int>("--top") { Description = "Classes to show an image", DefaultValueFactory = _ => 3 }.InRange(1, 1_000);
        cmd.Arguments.Add(modelArg); cmd.Arguments.Add(images); cmd.Options.Add(top); cmd.Options.Add(Validate.Threads());
        cmd.SetAction(r =>
        {
            DeployedModel m = DeployedModel.Load(r.GetValue(modelArg)!);
            var (h, w, c) = m.ImageShape;
            var x = new float[h * w * c];
            var y = new float[m.Classes];
            var cache = new Dictionary<string, IdxFile>();
            foreach (string spec in r.GetValue(images)!)
            {
                byte[] px = LoadImage(spec, h, w, cache);
                for (int i = 0; i < px.Length; i++) x[i] = px[i] / 255f;
                m.Network.Forward(x, y, 1);
                var p = new float[y.Length];
                System.Numerics.Tensors.TensorPrimitives.SoftMax(y, p);
                var ranked = Enumerable.Range(0, p.Length).OrderByDescending(i => p[i]).Take(Math.Max(1, r.GetValue(top))).ToArray();
                Console.WriteLine($"{spec}: class {ranked[0]} ({p[ranked[0]]:P1})   top: {string.Join(", ", ranked.Select(i => $"{i} {p[i]:P1}"))}");
            }
            return 0;
        });
        return cmd;
    }

    private static byte[] LoadImage(string spec, int h, int w, Dictionary<string, IdxFile> cache)
    {
        int colon = spec.LastIndexOf(':');
        if (colon > 0 && int.TryParse(spec.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int index))
        {
            string file = spec[..colon];
            if (!cache.TryGetValue(file, out IdxFile? idx)) cache[file] = idx = IdxFile.Read(file);
            if (idx.Dims.Length != 3) throw new RotorException($"{file}: an images file has 3 dimensions, this one has {idx.Dims.Length}");
            if (idx.Dims[1] != h || idx.Dims[2] != w) throw new RotorException($"{file}: images are {idx.Dims[1]}x{idx.Dims[2]}, the model takes {h}x{w}");
            if (index >= idx.Dims[0]) throw new RotorException($"{spec}: index {index} is past the {idx.Dims[0]} images of {file}");
            return idx.Data.AsSpan(index * h * w, h * w).ToArray();
        }
        GrayImage img = GrayImage.Read(spec);
        if (img.Width != w || img.Height != h) throw new RotorException($"{spec}: image is {img.Width}x{img.Height}, the model takes {w}x{h} (no resizing is done)");
        return img.Pixels;
    }
}
