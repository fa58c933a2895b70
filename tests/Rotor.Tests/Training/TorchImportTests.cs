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
        var stack = TorchImport.ReadLinearStack(File);
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
}
