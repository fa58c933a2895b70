using System.Buffers.Binary;
using Rotor.IO;
using Rotor.Nn;
using Rotor.Training;

namespace Rotor.Tests.Training;

public class SafeTensorsTests
{
    [Fact]
    public void RoundTripIsBitExactAndReadsHalfAndBFloat16()
    {
        float[] v = [1.5f, -2.25f, 3.1415927f, 0f, -0f, 1e-30f];
        var f16 = new byte[6 * 2]; var bf16 = new byte[6 * 2];
        for (int i = 0; i < 6; i++)
        {
            BinaryPrimitives.WriteHalfLittleEndian(f16.AsSpan(2 * i), (Half)v[i]);
            BinaryPrimitives.WriteUInt16LittleEndian(bf16.AsSpan(2 * i), (ushort)(BitConverter.SingleToInt32Bits(v[i]) >> 16));
        }
        string path = TrainingData.TempFile("t.safetensors");
        try
        {
            SafeTensors.Write(path, [SafeTensor.FromFloats("a", v, 2, 3), new SafeTensor("h", SafeDType.F16, [6], f16), new SafeTensor("b", SafeDType.BF16, [3, 2], bf16),
                new SafeTensor("u", SafeDType.U8, [3], [7, 8, 9])], new Dictionary<string, string> { ["k"] = "v" });
            SafeTensorFile f = SafeTensors.Read(path);
            Assert.Equal(v.Select(BitConverter.SingleToInt32Bits), f.Get("a").ToFloats().Select(BitConverter.SingleToInt32Bits));
            Assert.Equal(new long[] { 2, 3 }, f.Get("a").Shape);
            Assert.Equal(v.Select(x => (float)(Half)x), f.Get("h").ToFloats());
            float[] b = f.Get("b").ToFloats();
            for (int i = 0; i < 6; i++) Assert.Equal(BitConverter.SingleToInt32Bits(v[i]) & unchecked((int)0xFFFF0000), BitConverter.SingleToInt32Bits(b[i]));
            Assert.Equal("v", f.Metadata["k"]);
            Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(File.ReadAllBytes(path)) % 8);   // header padded: data 8-byte aligned
            Assert.Contains("U8", Assert.Throws<RotorException>(() => f.Get("u").ToFloats()).Message);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void RejectsTruncatedCorruptAndMalformedFiles()
    {
        byte[] good = SafeTensors.ToBytes([SafeTensor.FromFloats("w", TestData.Floats(10, 1), 10)]);
        void Bad(byte[] bytes, string expect)
        {
            var e = Assert.Throws<RotorException>(() => SafeTensors.Parse(bytes, "m.safetensors"));
            Assert.Contains("m.safetensors", e.Message);
            Assert.Contains(expect, e.Message);
        }
        Bad(good[..5], "truncated");
        Bad(good[..(good.Length - 4)], "truncated");
        var flipped = (byte[])good.Clone(); flipped[^3] ^= 0x40;
        Bad(flipped, "SHA-256");
        var huge = (byte[])good.Clone(); BinaryPrimitives.WriteUInt64LittleEndian(huge, 1UL << 40);
        Bad(huge, "header length");
        byte[] Raw(string json, int data)
        {
            byte[] h = System.Text.Encoding.UTF8.GetBytes(json);
            var b = new byte[8 + h.Length + data];
            BinaryPrimitives.WriteUInt64LittleEndian(b, (ulong)h.Length); h.CopyTo(b, 8);
            return b;
        }
        Bad(Raw("{\"w\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8), "expected 12");
        Bad(Raw("{\"w\": {\"dtype\": \"Q4\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8), "dtype Q4");
        Bad(Raw("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, \"v\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12), "overlap");
        Bad(Raw("{not json", 0), "JSON");
        // A file of another tool: no hash, tensors must cover the data exactly.
        SafeTensorFile ok = SafeTensors.Parse(Raw("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8), "other.safetensors");
        Assert.Equal(new float[2], ok.Get("w").ToFloats());
    }
}

public class CheckpointTests
{
    private static TrainConfig Small(int epochs = 2) => new()
    {
        Model = "mlp", Hidden = 48, Epochs = epochs, BatchSize = 50, Lr = 3e-3f, Seed = 7, Dropout = 0.1f, Norm = true, WeightDecay = 0.01f,
    };

    private static float[][] Weights(Trainer t) => t.Network.Parameters.Select(p => (float[])p.Value.Clone()).ToArray();

    [Fact]
    public void SameSeedGivesIdenticalRunsAndResumeIsBitExact()
    {
        var (train, _) = ImageDataset.LoadFolder(TrainingData.MnistNpm);
        train = train.Take(600);
        float[][] straight;
        using (var a = new Trainer(Small(), 28, 28, 1, 10, threads: 2)) { a.Train(train); straight = Weights(a); }
        using (var b = new Trainer(Small(), 28, 28, 1, 10, threads: 2))
        {
            b.Train(train);
            Assert.Equal(straight, Weights(b));   // identical, bit for bit
        }
        // Stop mid-epoch (step 17 of 24), save, load into a fresh trainer (1 thread: products are deterministic
        // whatever the thread count) and finish: same weights as the straight run.
        string path = TrainingData.TempFile("ckpt.safetensors");
        try
        {
            using (var c = new Trainer(Small(), 28, 28, 1, 10, threads: 2))
            {
                c.Train(train, stopAtStep: 17);
                Assert.False(c.Finished);
                Assert.Equal(17, c.Optimizer.Step);
                Checkpoint.Save(c, path);
            }
            using Trainer d = Checkpoint.Load(path, threads: 2);
            Assert.Equal(1, d.Epoch);
            Assert.Equal(5, d.BatchInEpoch);
            d.Train(train);
            Assert.True(d.Finished);
            Assert.Equal(straight, Weights(d));
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void DistilledRunUsesItsTeacherAndResumesBitExactly()
    {
        var (train, _) = ImageDataset.LoadFolder(TrainingData.MnistNpm);
        train = train.Take(300);
        string teacherPath = TrainingData.TempFile("teacher.safetensors"), path = TrainingData.TempFile("student.safetensors");
        try
        {
            using (var teacher = new Trainer(Small(1) with { Ternary = false, ActBits = 0, Dropout = 0 }, 28, 28, 1, 10, threads: 1))
            {
                teacher.Train(train);
                Checkpoint.Save(teacher, teacherPath);
            }
            TrainConfig config = Small() with { Teacher = teacherPath, DistillWeight = 0.6f, DistillTemperature = 3f };
            float[][] straight, plain;
            using (var a = new Trainer(config, 28, 28, 1, 10, threads: 2)) { Assert.NotNull(a.Teacher); a.Train(train); straight = Weights(a); }
            using (var p = new Trainer(Small(), 28, 28, 1, 10, threads: 2)) { p.Train(train); plain = Weights(p); }
            Assert.NotEqual(plain, straight);   // the teacher changes the run
            using (var c = new Trainer(config, 28, 28, 1, 10, threads: 2))
            {
                c.Train(train, stopAtStep: 5);
                Checkpoint.Save(c, path);
            }
            using Trainer d = Checkpoint.Load(path, threads: 1);
            Assert.Equal(config, d.Config);
            Assert.NotNull(d.Teacher);
            d.Train(train);
            Assert.Equal(straight, Weights(d));
            // A teacher of another shape is refused, naming the file.
            using (var wide = new Trainer(new TrainConfig { Hidden = 8, Ternary = false, ActBits = 0 }, 14, 14, 1, 10, threads: 1))
                Checkpoint.Save(wide, teacherPath);
            Assert.Contains(teacherPath, Assert.Throws<RotorException>(() => new Trainer(config, 28, 28, 1, 10, threads: 1)).Message);
        }
        finally { File.Delete(teacherPath); File.Delete(path); }
    }

    [Fact]
    public void CheckpointRoundTripIsBitExactAndChecksTheData()
    {
        var (train, _) = ImageDataset.LoadFolder(TrainingData.MnistNpm);
        string path = TrainingData.TempFile("ckpt.safetensors");
        try
        {
            using var t = new Trainer(Small(1) with { Model = "cnn", Dropout = 0 }, 28, 28, 1, 10, threads: 2);
            t.Train(train.Take(100));
            Checkpoint.Save(t, path);
            using Trainer u = Checkpoint.Load(path, 1);
            Assert.Equal(t.Config, u.Config);
            Assert.Equal(t.Network.Specs.Select(s => s.Type), u.Network.Specs.Select(s => s.Type));
            for (int i = 0; i < t.Network.Parameters.Count; i++)
            {
                Assert.Equal(t.Network.Parameters[i].Value, u.Network.Parameters[i].Value);
                Assert.Equal(t.Optimizer.M[i], u.Optimizer.M[i]);
                Assert.Equal(t.Optimizer.V[i], u.Optimizer.V[i]);
            }
            Assert.Equal(t.Optimizer.Step, u.Optimizer.Step);
            Assert.Contains("100 training images", Assert.Throws<RotorException>(() => u.Train(train.Take(200))).Message);
            // Truncation and corruption are caught on load.
            byte[] bytes = File.ReadAllBytes(path);
            File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
            Assert.Contains("truncated", Assert.Throws<RotorException>(() => Checkpoint.Load(path, 1)).Message);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void DeployedModelLoadsIntoRotorLayersAndMatchesTraining()
    {
        var (train, test) = ImageDataset.LoadFolder(TrainingData.MnistNpm);
        test = test.Take(300);
        foreach (var (config, format) in new[] { (Small(1) with { Dropout = 0.2f }, TernaryFormat.T2), (Small(1) with { Model = "cnn", Dropout = 0 }, TernaryFormat.T1_6) })
        {
            string path = TrainingData.TempFile("model.safetensors");
            try
            {
                using var t = new Trainer(config, 28, 28, 1, 10, threads: 2);
                t.Train(train.Take(config.Model == "cnn" ? 300 : 2000));
                DeployedModelWriter.Export(t.Network, t.ImageShape, path, format);
                DeployedModel m = DeployedModel.Load(path);
                Assert.Equal(format, m.Format);
                Assert.IsType<Rotor.Nn.TernaryLinear>(m.Network.Layers[^1]);
                // Same trits and scales as the training quantizer.
                var last = (TernaryLinearLayer)t.Network.Layers[^1];
                var deployedLast = (Rotor.Nn.TernaryLinear)m.Network.Layers[^1];
                var wq = new float[last.Weight.Value.Length];
                float s = FakeQuant.TernaryAbsMean(last.Weight.Value, wq);
                Assert.Equal(s, deployedLast.Weights.Scales[0]);
                Assert.Equal(wq, deployedLast.Weights.ToFloat());
                // Predictions of the inference layers (int8 x ternary kernels) agree with the training network's.
                EvalResult a = t.Evaluate(test), b = Trainer.Evaluate(m.Network, test);
                Assert.True(Math.Abs(a.Accuracy - b.Accuracy) <= 0.01, $"{config.Model}: training {a.Accuracy:P2}, deployed {b.Accuracy:P2}");
                byte[] bytes = File.ReadAllBytes(path);
                bytes[^1] ^= 1;
                File.WriteAllBytes(path, bytes);
                Assert.Contains("SHA-256", Assert.Throws<RotorException>(() => DeployedModel.Load(path)).Message);
            }
            finally { File.Delete(path); }
        }
    }

    [Fact]
    public void DeployedMlpIsUnderATwelfthOfItsFloat32Size()
    {
        string path = TrainingData.TempFile("mlp.safetensors");
        try
        {
            using var t = new Trainer(new TrainConfig { Epochs = 1 }, 28, 28, 1, 10, threads: 1);
            DeployedModelWriter.Export(t.Network, t.ImageShape, path, TernaryFormat.T2);
            long f32 = t.Network.ParameterCount * 4;
            Assert.True(new FileInfo(path).Length * 12 < f32, $"{new FileInfo(path).Length} bytes vs float32 {f32}");
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void FloatTwinHasNoTernaryForm()
    {
        using var t = new Trainer(new TrainConfig { Hidden = 8, Ternary = false, ActBits = 0 }, 28, 28, 1, 10, 1);
        Assert.Contains("float twin", Assert.Throws<RotorException>(() => DeployedModelWriter.Export(t.Network, t.ImageShape, TrainingData.TempFile("x"))).Message);
    }
}

public class EndToEndTests
{
    [Theory]
    [InlineData("mlp")]
    [InlineData("cnn")]
    public void ATrainingStepAllocatesNothingOnceBuffersExist(string model)
    {
        var config = new TrainConfig { Model = model, Hidden = 64, BatchSize = 16, Dropout = 0.1f, Norm = model == "mlp" };
        using var net = new TrainNetwork(config.BuildLayers(28, 28, 1, 10), 16, new TrainContext(2));
        var opt = new AdamW(net.Parameters, context: net.Context);
        TestData.Floats(16 * 784, 1).CopyTo(net.Input);
        byte[] labels = Enumerable.Range(0, 16).Select(i => (byte)(i % 10)).ToArray();
        void Step(int s)
        {
            net.Forward(16, training: true, stepSeed: (ulong)s);
            net.Loss(labels, 16);
            net.Backward(16);
            opt.Update(1e-3f);
        }
        for (int s = 0; s < 3; s++) Step(s);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int s = 3; s < 8; s++) Step(s);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void TernaryMlpOnCommittedMnistDigitsBeatsChanceByFarAndCnnLearns()
    {
        // 8,000 real MNIST digits, 2 epochs: chance is 10 %; a working ternary MLP reaches about 93 %.
        // The bar is 85 %: 75 points above chance, a few below what it reaches.
        var (train, test) = ImageDataset.LoadFolder(TrainingData.MnistNpm);
        using var t = new Trainer(new TrainConfig { Hidden = 256, Epochs = 2, Seed = 3 }, 28, 28, 1, 10, threads: 2);
        var epochs = t.Train(train, test);
        Assert.True(epochs[^1].TestAccuracy >= 0.85, $"test accuracy {epochs[^1].TestAccuracy:P2}");
        Assert.True(epochs[1].Loss < epochs[0].Loss);
    }
}
