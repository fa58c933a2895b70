using Rotor.IO;
using Rotor.Nn;
using Rotor.Training;

namespace Rotor.Tests.Training;

public class TorchImportTests
{
    private static string File => Path.Combine(TrainingData.Dir("pytorch"), "mlp_784_64_10.safetensors");

    [Fact]
    public void PyTorchStateDictRebuildsTheSameFunctionAndTernarizes()
    {
        // Written by scripts/export_pytorch_mlp.py with PyTorch 1.13: F32, BF16 and F16 tensors plus PyTorch's own logits.
        var stack = TorchImport.ReadLinearStack(File, ignore: ["test.input", "test.logits"]);
        Assert.Equal([(64, 784), (10, 64)], stack.Select(l => (l.Out, l.In)));
        SafeTensorFile f = SafeTensors.Read(File);
        float[] x = f.Floats("test.input", 4 * 784), expected = f.Floats("test.logits", 40);
        using var net = new TrainNetwork(TorchImport.ToTrainLayers(stack, ternary: false, actBits: 0), 4, new TrainContext(1));
        ReadOnlySpan<float> logits = net.Forward(x, 4, training: false);
        double err = Finite.MaxRelError(logits, expected);
        Assert.True(err < 1e-4, $"max relative difference to PyTorch's logits {err:G3}");

        // Ternarized on Rotor's inference layers it still classifies the digits far above chance.
        var (_, test) = ImageDataset.LoadFolder(TrainingData.MnistNpm);
        double floatAcc = Trainer.Evaluate(net, test).Accuracy;
        double ternAcc = Trainer.Evaluate(TorchImport.ToTernarySequential(stack), test).Accuracy;
        Assert.True(floatAcc > 0.88, $"float accuracy {floatAcc:P2}");
        Assert.True(ternAcc > 0.5, $"ternarized accuracy {ternAcc:P2}");
    }

    [Fact]
    public void RejectsStacksThatDoNotChain()
    {
        string path = TrainingData.TempFile("bad.safetensors");
        try
        {
            SafeTensors.Write(path, [SafeTensor.FromFloats("0.weight", new float[6], 2, 3), SafeTensor.FromFloats("2.weight", new float[8], 2, 4)]);
            Assert.Contains("takes 4 inputs", Assert.Throws<RotorException>(() => TorchImport.ReadLinearStack(path)).Message);
        }
        finally { System.IO.File.Delete(path); }
    }

    // Anything that is not a linear layer's weight or bias would be left out of the network built: refused, named.
    // conv: a 3-D weight among the layers; modules: layers of two modules; buffer: a BatchNorm buffer; bias: a bias
    // without its weight; extra: test tensors the caller did not name as ignored.
    [Theory]
    [InlineData("conv")]
    [InlineData("modules")]
    [InlineData("buffer")]
    [InlineData("bias")]
    [InlineData("extra")]
    public void RefusesFilesThatHoldMoreThanALinearStack(string kind)
    {
        string path = TrainingData.TempFile($"more-{kind}.safetensors");
        var l0 = SafeTensor.FromFloats("net.0.weight", new float[6], 2, 3);
        var l2 = SafeTensor.FromFloats("net.2.weight", new float[4], 2, 2);
        SafeTensor[] extra = kind switch
        {
            "conv" => [SafeTensor.FromFloats("net.1.weight", new float[2 * 3 * 3], 2, 3, 3)],
            "modules" => [SafeTensor.FromFloats("head.5.weight", new float[4], 2, 2)],
            "buffer" => [SafeTensor.FromFloats("net.1.running_mean", new float[2], 2)],
            "bias" => [SafeTensor.FromFloats("net.4.bias", new float[2], 2)],
            _ => [SafeTensor.FromFloats("test.input", new float[3], 1, 3)],
        };
        try
        {
            SafeTensors.Write(path, [l0, l2, .. extra]);
            var e = Assert.Throws<RotorException>(() => TorchImport.ReadLinearStack(path));
            Assert.Contains(extra[0].Name, e.Message);
            Assert.Contains(path, e.Message);
            // Without the extra tensor the same layers import: the refusal is for it alone.
            SafeTensors.Write(path, [l0, l2]);
            Assert.Equal(2, TorchImport.ReadLinearStack(path).Count);
            if (kind == "extra") { SafeTensors.Write(path, [l0, l2, .. extra]); Assert.Equal(2, TorchImport.ReadLinearStack(path, ignore: ["test.input"]).Count); }
        }
        finally { System.IO.File.Delete(path); }
    }
}
