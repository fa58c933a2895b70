namespace Rotor.Lm.Tests;

/// <summary>Where test data lives: fixtures beside the test assembly (Data/), shared data in ../shared/data above the
/// folder holding Rotor.sln.</summary>
internal static class TestPaths
{
    public static readonly string? RepoRoot = FindRepoRoot();

    public static string? SharedData => RepoRoot is null ? null : Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "data"));

    /// <summary>A file of ../shared/data/lm, or null when absent.</summary>
    public static string? SharedLm(string file)
        => SharedData is { } d && File.Exists(Path.Combine(d, "lm", file)) ? Path.Combine(d, "lm", file) : null;

    /// <summary>A fixture under the test assembly's Data folder.</summary>
    public static string Data(params string[] parts) => Path.Combine([AppContext.BaseDirectory, "Data", .. parts]);

    private static string? FindRepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Rotor.sln"))) return d.FullName;
        return null;
    }

    /// <summary>A fresh empty folder under the temp folder, removed by the caller.</summary>
    public static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), "rotor-lm-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }
}

/// <summary>A fact that skips, saying why, when a file of ../shared/data/lm is absent.</summary>
public sealed class SharedLmFactAttribute : FactAttribute
{
    /// <summary>Skips unless every named file exists under ../shared/data/lm.</summary>
    public SharedLmFactAttribute(params string[] files)
    {
        foreach (string f in files)
            if (TestPaths.SharedLm(f) is null) { Skip = $"{f} not found under {TestPaths.SharedData ?? "../shared/data (no Rotor.sln above the test assembly)"}/lm"; return; }
    }
}
