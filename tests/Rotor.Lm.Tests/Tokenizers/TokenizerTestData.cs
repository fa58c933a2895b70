using System.Text.Json;
using Rotor.Lm.Tokenizers;

namespace Rotor.Lm.Tests.Tokenizers;

/// <summary>The tokenizer fixtures (Data/tokenizers, see its README) and the shared data they refer to.</summary>
internal static class TokenizerTestData
{
    public static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Data", "tokenizers", name);

    public static readonly string[] Strings = JsonSerializer.Deserialize<string[]>(File.ReadAllText(Fixture("tokenizer_strings.json")))!;

    /// <summary>ids[i] for Strings[i] from a fixture's array property.</summary>
    public static int[][] Ids(string file, string property)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixture(file)));
        var ids = doc.RootElement.GetProperty(property).EnumerateArray().Select(a => a.EnumerateArray().Select(e => e.GetInt32()).ToArray()).ToArray();
        Assert.Equal(Strings.Length, ids.Length);
        return ids;
    }

    private static readonly string? RepoRoot = FindRepoRoot();

    /// <summary>../shared/data/lm beside the repository, or $ROTOR_SHARED_DATA/lm (for checkouts elsewhere).</summary>
    public static string? SharedLm => Environment.GetEnvironmentVariable("ROTOR_SHARED_DATA") is { Length: > 0 } env
        ? Path.Combine(env, "lm")
        : RepoRoot is null ? null : Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "data", "lm"));

    public static string? Llama3Model => Existing("llama3-tokenizer.model");

    public static string? Tok512 => Existing("tok512.bin");

    private static string? Existing(string file) => SharedLm is { } d && File.Exists(Path.Combine(d, file)) ? Path.Combine(d, file) : null;

    private static string? FindRepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Rotor.sln"))) return d.FullName;
        return null;
    }

    private static readonly Lazy<TiktokenLmTokenizer> _llama3 = new(() => TiktokenLmTokenizer.Load(Llama3Model!));

    /// <summary>The Llama 3 tokenizer, loaded once for all tests.</summary>
    public static TiktokenLmTokenizer Llama3 => _llama3.Value;

    /// <summary>A fresh empty folder under the temp folder.</summary>
    public static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), "rotor-tok-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>Where the ids differ, as a readable line (for assertion messages).</summary>
    public static string Diff(string text, IReadOnlyList<int> expected, IReadOnlyList<int> actual)
        => $"{JsonSerializer.Serialize(text)}: expected [{string.Join(",", expected)}], got [{string.Join(",", actual)}]";
}

/// <summary>A fact that skips, saying why, when ../shared/data/lm/llama3-tokenizer.model is absent.</summary>
public sealed class Llama3TokenizerFactAttribute : FactAttribute
{
    /// <summary>Sets Skip when the file is missing.</summary>
    public Llama3TokenizerFactAttribute()
    {
        if (TokenizerTestData.Llama3Model is null)
            Skip = $"llama3-tokenizer.model not found under {TokenizerTestData.SharedLm ?? "../shared/data/lm (no Rotor.sln above the test assembly)"}";
    }
}

/// <summary>A fact that skips, saying why, when ../shared/data/lm/tok512.bin is absent.</summary>
public sealed class Tok512FactAttribute : FactAttribute
{
    /// <summary>Sets Skip when the file is missing.</summary>
    public Tok512FactAttribute()
    {
        if (TokenizerTestData.Tok512 is null)
            Skip = $"tok512.bin not found under {TokenizerTestData.SharedLm ?? "../shared/data/lm (no Rotor.sln above the test assembly)"}";
    }
}
