using Rotor.Index.Benchmarking;

namespace Rotor.Index.Tests;

internal static class TestData
{
    public static List<IndexRecord> Records(int n, int d, int seed, int clusters = 20)
    {
        float[] data = SyntheticVectors.Clustered(n, d, clusters, seed);
        var list = new List<IndexRecord>(n);
        for (int i = 0; i < n; i++)
            list.Add(new IndexRecord($"k{i}", data.AsMemory(i * d, d), new Dictionary<string, object>
            {
                ["n"] = i, ["parity"] = i % 2 == 0 ? "even" : "odd", ["x"] = i * 0.5, ["flag"] = i % 3 == 0,
            }));
        return list;
    }

    public static float[] Query(int d, int seed) => SyntheticVectors.Clustered(1, d, 20, seed);

    private static readonly string s_root = CreateRoot();

    private static string CreateRoot()
    {
        string root = Path.Combine(Path.GetTempPath(), "rotor-index-tests", $"{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(root);
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { Directory.Delete(root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        };
        return root;
    }

    /// <summary>A fresh directory under this test run's root, which is deleted when the test process exits.</summary>
    public static string TempDir()
    {
        string dir = Path.Combine(s_root, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }
}
