namespace Rotor.Cluster.Tests;

/// <summary>Where test data lives: the repository root is the folder holding Rotor.sln above the test assembly;
/// shared data is ../shared/data from there, or the folder named by ROTOR_SHARED_DATA (a checkout elsewhere).</summary>
internal static class TestPaths
{
    public static readonly string? RepoRoot = FindRepoRoot();

    public static string? SharedData => Environment.GetEnvironmentVariable("ROTOR_SHARED_DATA") is { Length: > 0 } named ? Path.GetFullPath(named)
        : RepoRoot is null ? null : Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "data"));

    public static string? WikiSample => SharedData is { } d && File.Exists(Path.Combine(d, WikiFile)) ? Path.Combine(d, WikiFile) : null;

    public const string WikiFile = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2";

    private static string? FindRepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Rotor.sln"))) return d.FullName;
        return null;
    }

    /// <summary>A fresh empty folder under the temp folder, removed by the caller.</summary>
    public static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), "rotor-cluster-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }
}

/// <summary>A fact that skips, saying why, when the Wikipedia dump sample is absent.</summary>
public sealed class WikiSampleFactAttribute : FactAttribute
{
    /// <summary>Sets Skip when the sample is missing.</summary>
    public WikiSampleFactAttribute()
    {
        if (TestPaths.WikiSample is null)
            Skip = $"Wikipedia dump sample not found under {TestPaths.SharedData ?? "../shared/data (no Rotor.sln above the test assembly)"}";
    }
}
