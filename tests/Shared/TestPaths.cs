using Xunit;

namespace Rotor.Testing;

/// <summary>Where test data lives: the repository root is the folder holding Rotor.sln above the test assembly;
/// shared data is ../shared/data from there, or the folder named by ROTOR_SHARED_DATA (a checkout elsewhere).
/// Linked into each test project that reads the shared data.</summary>
internal static class TestPaths
{
    public static readonly string? RepoRoot = FindRepoRoot();

    public static string? SharedData => Environment.GetEnvironmentVariable("ROTOR_SHARED_DATA") is { Length: > 0 } named ? Path.GetFullPath(named)
        : RepoRoot is null ? null : Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "data"));

    public const string WikiFile = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2";

    public static string? WikiSample => Existing(SharedData, WikiFile);

    public static string? SciFact => SharedData is { } d && Directory.Exists(Path.Combine(d, "beir-scifact")) ? Path.Combine(d, "beir-scifact") : null;

    /// <summary>A file of the shared data's lm/ folder (language models and tokenizers), or null when absent.</summary>
    public static string? SharedLm(string file) => Existing(SharedData is { } d ? Path.Combine(d, "lm") : null, file);

    public static string Reference(string name) => Path.Combine(AppContext.BaseDirectory, "Reference", name);

    private static string? Existing(string? dir, string file)
        => dir is not null && File.Exists(Path.Combine(dir, file)) ? Path.Combine(dir, file) : null;

    private static string? FindRepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Rotor.sln"))) return d.FullName;
        return null;
    }

    /// <summary>A fresh empty folder under the temp folder, named after the test assembly, removed by the caller.</summary>
    public static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"{typeof(TestPaths).Assembly.GetName().Name}-{Guid.NewGuid():N}");
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

/// <summary>A fact that skips, saying why, when BEIR SciFact is absent.</summary>
public sealed class SciFactFactAttribute : FactAttribute
{
    /// <summary>Sets Skip when the data set is missing.</summary>
    public SciFactFactAttribute()
    {
        if (TestPaths.SciFact is null)
            Skip = $"BEIR SciFact not found under {TestPaths.SharedData ?? "../shared/data (no Rotor.sln above the test assembly)"}/beir-scifact";
    }
}

/// <summary>A fact that skips, saying why, when a file of the shared data's lm/ folder is absent.</summary>
public sealed class SharedLmFactAttribute : FactAttribute
{
    /// <summary>Skips unless every named file exists under the shared data's lm/ folder.</summary>
    public SharedLmFactAttribute(params string[] files)
    {
        foreach (string f in files)
            if (TestPaths.SharedLm(f) is null) { Skip = $"{f} not found under {TestPaths.SharedData ?? "../shared/data (no Rotor.sln above the test assembly)"}/lm (or set ROTOR_SHARED_DATA)"; return; }
    }
}
