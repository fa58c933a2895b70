using System.Text.Json;

namespace Rotor.Cli.Tests;

/// <summary>A fact that skips, saying why, when stories260K and its tokenizer are absent from the shared data.</summary>
public sealed class StoriesFactAttribute : FactAttribute
{
    /// <summary>Skips unless lm/stories260K.bin and lm/tok512.bin exist.</summary>
    public StoriesFactAttribute()
    {
        if (AskSurfaceTests.SharedLm("stories260K.bin") is null || AskSurfaceTests.SharedLm("tok512.bin") is null)
            Skip = $"stories260K.bin / tok512.bin not found under {AskSurfaceTests.SharedData ?? "../shared/data"}/lm (or set ROTOR_SHARED_DATA)";
    }
}

/// <summary>
/// <c>rotor ask</c> end to end, each run a process of its own, on a small index made by <c>rotor ingest docs</c> with
/// the real stories260K model: the decision, the prompt's sources, the answer, the sources printed with their passage
/// ids, <c>--json</c>'s record, the no-source case, and bad input as one line with exit code 2.
/// </summary>
public class AskSurfaceTests
{
    private static (int Code, string Out) Rotor(params string[] args) => TrainEvalEndToEndTests.Rotor(args);

    internal static string? SharedData
    {
        get
        {
            if (Environment.GetEnvironmentVariable("ROTOR_SHARED_DATA") is { Length: > 0 } named) return Path.GetFullPath(named);
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "Rotor.sln"))) return Path.GetFullPath(Path.Combine(d.FullName, "..", "shared", "data"));
            return null;
        }
    }

    internal static string? SharedLm(string file) => SharedData is { } d && File.Exists(Path.Combine(d, "lm", file)) ? Path.Combine(d, "lm", file) : null;

    private static readonly (string Name, string Text)[] Docs =
    [
        ("moon.md", "# Moon\n\nThe Moon is Earth's only natural satellite.\n\n## Landings\n\nApollo 11 landed the first astronauts on the Moon in July 1969. Neil Armstrong stepped onto the surface first."),
        ("bees.txt", "Honey bees make honey from the nectar of flowers. A colony stores it in wax combs to eat through the winter."),
        ("copper.txt", "Copper is a soft metal that conducts electricity very well, so it is used for electrical wiring in houses."),
        ("tea.txt", "Tea is brewed by pouring hot water over the cured leaves of the tea plant, a shrub native to East Asia."),
    ];

    private static string MakeIndex(string dir)
    {
        Directory.CreateDirectory(Path.Combine(dir, "docs"));
        foreach (var (name, text) in Docs) File.WriteAllText(Path.Combine(dir, "docs", name), text);
        string idx = Path.Combine(dir, "idx");
        var ingest = Rotor("ingest", "docs", Path.Combine(dir, "docs"), "--out", idx);
        Assert.True(ingest.Code == 0, ingest.Out);
        return idx;
    }

    private static string TempDir() => Path.Combine(Path.GetTempPath(), $"rotor-cli-ask-{Environment.ProcessId}-{Guid.NewGuid():N}");

    [StoriesFact]
    public void AskAnswersFromTheIndexAndPrintsTheSources()
    {
        string dir = TempDir();
        try
        {
            string idx = MakeIndex(dir), model = SharedLm("stories260K.bin")!;
            var passageIds = File.ReadLines(Path.Combine(idx, "passages.jsonl")).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("id").GetString()!).ToHashSet();
            const string Question = "When did astronauts first land on the Moon?";

            var ask = Rotor("ask", idx, "--model", model, Question, "--max-tokens", "16", "--show-prompt");
            Assert.True(ask.Code == 0, ask.Out);
            Assert.Contains("retrieval (score): retrieve ", ask.Out);
            Assert.Contains("Sources:\n[1] moon > Landings\nApollo 11 landed", ask.Out);
            Assert.Contains("Question: " + Question + "\nAnswer:", ask.Out);
            var sourceLines = ask.Out.Split('\n').SkipWhile(l => l != "sources:").Skip(1).TakeWhile(l => l.StartsWith('[')).ToList();
            Assert.NotEmpty(sourceLines);
            Assert.StartsWith("[1] moon > Landings  [moon.md#", sourceLines[0]);
            foreach (string line in sourceLines)
                Assert.Contains(line[(line.IndexOf("  [", StringComparison.Ordinal) + 3)..line.IndexOf("]  score", StringComparison.Ordinal)], passageIds);
            Assert.Contains("\ncited: ", ask.Out);

            // --json: the whole record; its sources are the index's passages, its prompt within the context.
            var json = Rotor("ask", idx, "--model", model, Question, "--max-tokens", "16", "--json", "--top", "2", "--mode", "dense");
            Assert.True(json.Code == 0, json.Out);
            var root = JsonDocument.Parse(json.Out[json.Out.IndexOf('{')..(json.Out.LastIndexOf('}') + 1)]).RootElement;   // stderr follows stdout
            var rec = root.GetProperty("record");
            Assert.Equal(Question, rec.GetProperty("question").GetString());
            Assert.True(rec.GetProperty("decision").GetProperty("retrieve").GetBoolean());
            Assert.StartsWith("retrieve ", rec.GetProperty("decision").GetProperty("reason").GetString());
            var sources = rec.GetProperty("sources").EnumerateArray().ToList();
            Assert.InRange(sources.Count, 1, 2);
            Assert.All(sources, s => Assert.Contains(s.GetProperty("passage_id").GetString()!, passageIds));
            Assert.StartsWith("moon.md#", sources[0].GetProperty("passage_id").GetString());
            Assert.True(rec.GetProperty("prompt_tokens").GetInt32() + rec.GetProperty("answer_tokens_reserved").GetInt32() <= rec.GetProperty("context_length").GetInt32());
            Assert.Equal(16, rec.GetProperty("answer_tokens_reserved").GetInt32());
            Assert.True(rec.GetProperty("timings_ms").GetProperty("total").GetDouble() > 0);

            // Nothing relevant: the model is told so and the output says no source was used.
            var none = Rotor("ask", idx, "--model", model, "What is the best recipe for sourdough pizza?", "--max-tokens", "8");
            Assert.True(none.Code == 0, none.Out);
            Assert.Contains("retrieval (score): no retrieval: top score", none.Out);
            Assert.Contains("no source was used: nothing relevant was found", none.Out);

            // The model rule: a threshold of 0 makes any model confident (no retrieval), 1 makes it unsure.
            var sure = Rotor("ask", idx, "--model", model, Question, "--max-tokens", "8", "--adaptive", "model", "--confidence-threshold", "0");
            Assert.True(sure.Code == 0, sure.Out);
            Assert.Contains("retrieval (model): no retrieval: model confident, confidence ", sure.Out);
            Assert.Contains("no source was used: retrieval was not needed", sure.Out);
            var unsure = Rotor("ask", idx, "--model", model, Question, "--max-tokens", "8", "--adaptive", "model", "--confidence-threshold", "1");
            Assert.True(unsure.Code == 0, unsure.Out);
            Assert.Contains("retrieval (model): model unsure, confidence ", unsure.Out);
            Assert.Contains("[1] moon > Landings  [moon.md#", unsure.Out);

            // The confidence distribution for calibration.
            string qs = Path.Combine(dir, "questions.txt");
            File.WriteAllLines(qs, [Question, "What is copper used for?", "{\"text\":\"How do bees make honey?\"}"]);
            var cal = Rotor("eval", "confidence", "--model", model, "--questions", qs, "--percentile", "50");
            Assert.True(cal.Code == 0, cal.Out);
            Assert.Contains("3 questions, 8 closed-book tokens each", cal.Out);
            Assert.Contains("threshold at p50: ", cal.Out);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
    }

    [StoriesFact]
    public void BadInputIsOneLineAndExitCode2()
    {
        string dir = TempDir();
        try
        {
            string idx = MakeIndex(dir), model = SharedLm("stories260K.bin")!;
            // A model file with no tokenizer beside it.
            string bare = Path.Combine(dir, "bare", "model.bin");
            Directory.CreateDirectory(Path.GetDirectoryName(bare)!);
            File.Copy(model, bare);
            foreach (var (args, expected) in new (string[], string)[]
            {
                (["ask", Path.Combine(dir, "missing"), "--model", model, "q?"], "no such index directory"),
                (["ask", idx, "--model", bare, "q?"], "carries no tokenizer; name one with --tokenizer"),
                (["ask", idx, "--model", model, "  "], "QUESTION is empty"),
                (["ask", idx, "--model", Path.Combine(dir, "nothing.bin"), "q?"], "no such file or folder"),
                (["ask", idx, "--model", model, "q?", "--top", "0"], "--top 0 must be positive"),
                (["ask", idx, "--model", model, "q?", "--ctx", "40", "--max-tokens", "30"], "do not fit the context of 40"),
            })
            {
                var r = Rotor(args);
                Assert.True(r.Code == 2, $"rotor {string.Join(' ', args)}: exit {r.Code}\n{r.Out}");
                var lines = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("rotor: ", StringComparison.Ordinal)).ToList();
                Assert.True(lines.Count == 1, r.Out);
                Assert.Contains(expected, lines[0]);
                Assert.DoesNotContain("   at ", r.Out);
            }
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
    }
}
