using System.CommandLine;
using System.Text;

namespace Rotor.Cli.Tests;

/// <summary>
/// <see cref="Validate"/>: each rule refuses what it should at parse time with one message naming the option and value,
/// accepts its bounds, and leaves defaults alone; and docs/OPTIONS.md is generated from the command tree and its rules.
/// </summary>
public class OptionRulesTests
{
    private static IReadOnlyList<string> Errors(Option option, params string[] args)
    {
        var cmd = new RootCommand { option };
        return cmd.Parse(args).Errors.Select(e => e.Message).ToList();
    }

    [Fact]
    public void RangesRefuseOutsideValuesAndAcceptTheirBounds()
    {
        var k = new Option<int>("-k") { DefaultValueFactory = _ => 10 }.InRange(1, 100);
        Assert.Empty(Errors(k));
        Assert.Empty(Errors(k, "-k", "1"));
        Assert.Empty(Errors(k, "-k", "100"));
        Assert.Equal(["-k is 0, must be in 1..100"], Errors(k, "-k", "0"));
        Assert.Equal(["-k is 101, must be in 1..100"], Errors(k, "-k", "101"));
        Assert.Equal("in 1..100", Validate.RuleOf(k));

        var limit = new Option<int?>("--limit").Positive();
        Assert.Empty(Errors(limit));
        Assert.Equal(["--limit is -2, must be positive"], Errors(limit, "--limit", "-2"));
        Assert.Equal("positive", Validate.RuleOf(limit));

        var share = new Option<float>("--share").InRange(0f, 1f);
        Assert.Single(Errors(share, "--share", "NaN"));
        Assert.Single(Errors(share, "--share", "1.5"));
        Assert.Empty(Errors(share, "--share", "0.5"));

        var n = new Option<long>("--n").NonNegative();
        Assert.Equal(["--n is -1, must be 0 or more"], Errors(n, "--n", "-1"));
        // A value that does not parse is one error (the parser's), not two.
        Assert.Single(Errors(n, "--n", "ten"));

        var fmt = new Option<string>("--format").OneOf("t2", "t1.6");
        Assert.Empty(Errors(fmt, "--format", "t1.6"));
        Assert.Equal(["--format: 't3' is not one of t2, t1.6"], Errors(fmt, "--format", "t3"));
    }

    [Fact]
    public void OutputPathsMustBeWritableFilesOrFolders()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"rotor-rules-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string file = Path.Combine(dir, "f");
            File.WriteAllText(file, "x");
            Assert.Null(Validate.OutputFileProblem(Path.Combine(dir, "new.json")));
            Assert.Null(Validate.OutputFileProblem(Path.Combine(dir, "a", "b", "new.json"))); // folders are made
            Assert.Null(Validate.OutputFileProblem(file)); // overwritten atomically
            Assert.Contains("is a folder", Validate.OutputFileProblem(dir));
            Assert.Contains("is a file, not a folder", Validate.OutputFileProblem(Path.Combine(file, "x.json")));
            Assert.Contains("cannot write", Validate.OutputFileProblem("/proc/rotor-test.json"));
            Assert.Null(Validate.OutputFolderProblem(Path.Combine(dir, "idx")));
            Assert.Null(Validate.OutputFolderProblem(dir));
            Assert.Contains("is a file, not a folder", Validate.OutputFolderProblem(file));
            Assert.Empty(Directory.GetFiles(dir, ".rotor-write-probe*")); // the probe is removed

            var json = new Option<string?>("--json").OutputFile();
            Assert.Equal([$"--json: {dir} is a folder, not a file"], Errors(json, "--json", dir));
            Assert.Empty(Errors(json));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    // docs/OPTIONS.md: every command's options with their valid values, from the code. ROTOR_WRITE_DOCS=1 rewrites it.
    [Fact]
    public void OptionsReferenceIsGeneratedFromTheCode()
    {
        string path = Path.Combine(TrainEvalEndToEndTests.Repo(), "docs", "OPTIONS.md");
        string text = OptionsReference.Render(Program.BuildRoot());
        if (Environment.GetEnvironmentVariable("ROTOR_WRITE_DOCS") == "1") File.WriteAllText(path, text);
        Assert.True(File.Exists(path) && File.ReadAllText(path).ReplaceLineEndings("\n") == text,
            $"{path} is not what the code says: run ROTOR_WRITE_DOCS=1 dotnet test tests/Rotor.Cli.Tests --filter OptionsReferenceIsGeneratedFromTheCode");
        Assert.Contains("| `--dim` | int | in 1..65536 |", text);
    }
}

/// <summary>Renders docs/OPTIONS.md from the command tree.</summary>
internal static class OptionsReference
{
    public static string Render(RootCommand root)
    {
        var sb = new StringBuilder();
        sb.Append("# rotor: options and their valid values\n\n");
        sb.Append("Generated from the command tree by `tests/Rotor.Cli.Tests/OptionRulesTests.cs` (run\n");
        sb.Append("`ROTOR_WRITE_DOCS=1 dotnet test tests/Rotor.Cli.Tests --filter OptionsReferenceIsGeneratedFromTheCode` after\n");
        sb.Append("changing an option); do not edit by hand. Valid values are checked by the parser before a command does any work\n");
        sb.Append("(`src/Rotor.Cli/Validate.cs`): a value outside them is one line `rotor: ...` and exit code 2. \"-\" means any value\n");
        sb.Append("of the type. Every command also takes `--verbose` (stack trace of an unexpected error; the thread count in force)\n");
        sb.Append("and `-h`.\n\n");
        sb.Append("Threads, one rule (`Validate.Threads`, `Rotor.Threading.ThreadCount`): every command that computes takes `--threads N`\n");
        sb.Append("(`-t N`), which caps every parallel part of it (kernels, index scans and graph builds, encoding, embedding, model\n");
        sb.Append("loading); without it `ROTOR_THREADS` does, else the processor count. A part may use fewer where more is slower (an\n");
        sb.Append("exact scan of less than 8 MiB of codes, the embedding of one question). `bench-lm` and `eval embedding` take a list\n");
        sb.Append("of counts to measure under the same name.\n");
        Walk(root, "rotor", sb);
        return sb.ToString();
    }

    private static void Walk(Command cmd, string name, StringBuilder sb)
    {
        var options = cmd.Options.Where(o => !o.Hidden && o.Name is not ("--help" or "--version" or "--verbose")).ToList();
        if (options.Count > 0 || cmd.Arguments.Count > 0)
        {
            sb.Append($"\n## {name}\n\n{Cell(cmd.Description)}\n\n| option | type | valid values | description |\n|---|---|---|---|\n");
            foreach (var a in cmd.Arguments)
                sb.Append($"| `<{a.Name}>` | {TypeName(a.ValueType)} | {Values(a, a.ValueType)} | {Cell(a.Description)} |\n");
            foreach (var o in options)
                sb.Append($"| `{o.Name}`{(o.Required ? " (required)" : "")} | {TypeName(o.ValueType)} | {Values(o, o.ValueType)} | {Cell(o.Description)} |\n");
        }
        foreach (var sub in cmd.Subcommands.Where(c => !c.Hidden)) Walk(sub, $"{name} {sub.Name}", sb);
    }

    private static string Values(Symbol s, Type t)
    {
        if (Validate.RuleOf(s) is { } rule) return Cell(rule);
        var inner = Nullable.GetUnderlyingType(t) ?? t;
        if (inner.IsEnum) return string.Join(", ", Enum.GetNames(inner));
        return inner == typeof(bool) ? "flag" : "-";
    }

    private static string TypeName(Type t)
    {
        var inner = Nullable.GetUnderlyingType(t) ?? t;
        return inner == typeof(int) ? "int" : inner == typeof(long) ? "long" : inner == typeof(float) ? "float" : inner == typeof(double) ? "double"
            : inner == typeof(bool) ? "bool" : inner == typeof(string) ? "text" : inner == typeof(FileInfo) ? "file" : inner == typeof(DirectoryInfo) ? "folder"
            : inner.IsEnum ? "name" : inner.IsArray ? "list" : inner.Name;
    }

    private static string Cell(string? s) => (s ?? "").ReplaceLineEndings(" ").Replace("|", "\\|", StringComparison.Ordinal);
}
