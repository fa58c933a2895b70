namespace Rotor.Cli.Tests;

/// <summary>
/// <c>rotor demo --quick</c> (the run CI makes of the Arm64 binary under qemu) keeps every step of the demo and what each
/// shows: the smaller training run still learns, and the smaller retrieval corpus still answers the first question with
/// Apollo 11 and declines the second.
/// </summary>
public class DemoQuickTests
{
    [Fact]
    public void TheQuickDemoRunsEveryStepOnItsSmallerData()
    {
        var (code, output) = TrainEvalEndToEndTests.Rotor("demo", "--quick", "--threads", "2");
        Assert.True(code == 0, output);
        string[] lines = output.Split('\n');
        string Line(string start) => lines.Single(l => l.TrimStart().StartsWith(start, StringComparison.Ordinal));

        Assert.Contains("steady state:", output);
        Assert.Contains("benchmark: matrix-vector 2048x2048", output);
        Assert.Contains("on 2,000 real MNIST digits, 1 epoch", Line("training:"));
        // Ten classes: a network that learned nothing scores about 10 % on the held-out digits.
        string epoch = Line("epoch 1:");
        Assert.Contains("on 500 held-out digits", epoch);
        double accuracy = double.Parse(epoch.Split("test accuracy ")[1].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(accuracy > 40, epoch);

        Assert.StartsWith($"retrieval: {Rotor.Rag.Pipeline.DemoRetrieval.QuickTitles.Count} demo passages", Line("retrieval:"));
        int moon = Array.FindIndex(lines, l => l.Contains("Q: Who was the first person to walk on the Moon?"));
        Assert.StartsWith("adaptive: retrieve", lines[moon + 1].Trim());
        Assert.Contains("Apollo 11:", lines[moon + 2]);
        int router = Array.FindIndex(lines, l => l.Contains("Q: How do I reset the password of my wireless router?"));
        Assert.StartsWith("adaptive: no retrieval", lines[router + 1].Trim());

        Assert.Contains("Once upon a time, there was a little girl named Lily.", output);
    }
}
