using System.CommandLine;
using System.Text.Json;

namespace Rotor.Cli.Tests;

/// <summary>
/// One thread rule for every command that computes (<see cref="Validate.Threads"/>, <see cref="Rotor.Threading.ThreadCount"/>):
/// <c>--threads N</c>, else <c>ROTOR_THREADS</c>, else every processor. Checked in the command tree (every computing
/// command declares the one option) and in real processes, by what the parts that compute report about themselves
/// (the language model's worker pool, the embedder's ONNX threads, the index scan), not by timings.
/// </summary>
public class ThreadsTests
{
    private static string Repo(params string[] parts) => Path.Combine([TrainEvalEndToEndTests.Repo(), .. parts]);
    private static readonly string Stories = Repo("src", "Rotor.Cli", "Resources", "lm", "stories260K.bin");

    // Commands that compute on the CPU. Each declares Validate.Threads; bench-lm and eval embedding take a list of counts
    // to measure under the same name (and default to ROTOR_THREADS, else every processor).
    private static readonly string[] Computing =
    [
        "demo", "bench", "selftest", "bench-cuda", "index add", "index search", "index compact", "index bench",
        "ingest wiki", "ingest docs", "ingest jsonl", "ingest passages", "search", "eval model", "eval retrieval",
        "eval quality", "eval latency", "train", "predict", "generate", "chat", "logits", "perplexity", "convert",
        "ask", "eval confidence", "serve", "cluster silo",
    ];
    private static readonly string[] MeasureLists = ["bench-lm", "eval embedding"];

    private static IEnumerable<(string Path, Command Command)> Walk(Command c, string path)
    {
        yield return (path, c);
        foreach (var s in c.Subcommands)
            foreach (var x in Walk(s, path.Length == 0 ? s.Name : $"{path} {s.Name}")) yield return x;
    }

    [Fact]
    public void EveryCommandThatComputesDeclaresTheOneThreadsOption()
    {
        var commands = Walk(Program.BuildRoot(), "").ToDictionary(c => c.Path, c => c.Command);
        foreach (string name in Computing)
        {
            Assert.True(commands.TryGetValue(name, out var cmd), $"no command '{name}'");
            var threads = cmd.Options.Where(o => o.Name == "--threads").ToList();
            Assert.True(threads.Count == 1 && Validate.IsThreads(threads[0]), $"rotor {name}: --threads is not Validate.Threads()");
            Assert.Contains("-t", threads[0].Aliases);
            Assert.Equal("in 1..1024", Validate.RuleOf(threads[0]));
        }
        // No other --threads with another meaning hides anywhere.
        foreach (var (path, cmd) in commands)
            foreach (var o in cmd.Options.Where(o => o.Name == "--threads" && !Validate.IsThreads(o)))
                Assert.Contains(path, MeasureLists);
    }

    [Fact]
    public void ARunningCommandTakesTheCountFromTheOptionElseTheEnvironment()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"rotor-threads-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            // The language model's worker pool: generate reports it (JSON "threads").
            int Pool(IReadOnlyDictionary<string, string>? env, params string[] extra)
            {
                string json = Path.Combine(dir, $"{Guid.NewGuid():N}.json");
                var r = HardeningTests.Run(null, env, ["generate", Stories, "--ids", "1,403", "-n", "2", "--temp", "0", "--json", json, .. extra]);
                Assert.True(r.Code == 0, r.ToString());
                return JsonDocument.Parse(File.ReadAllText(json)).RootElement.GetProperty("threads").GetInt32();
            }
            Assert.Equal(3, Pool(null, "--threads", "3"));                                               // ROTOR_THREADS=2 is set too
            Assert.Equal(2, Pool(null));                                                                 // the test harness's ROTOR_THREADS
            Assert.Equal(1, Pool(new Dictionary<string, string> { ["ROTOR_THREADS"] = "1" }));
            Assert.Equal(Environment.ProcessorCount, Pool(new Dictionary<string, string> { ["ROTOR_THREADS"] = "" }));
            Assert.Equal(5, Pool(null, "-t", "5"));

            // The index scan, and the count in force with --verbose.
            string idx = Path.Combine(dir, "v.rix");
            Assert.Equal(0, HardeningTests.Run(null, null, "index", "create", idx, "--dim", "4").Code);
            var s = HardeningTests.Run(null, null, "index", "search", idx, "--query", "[1,0,0,0]", "--threads", "3", "--verbose");
            Assert.True(s.Code == 0, s.ToString());
            Assert.Contains("rotor: threads 3 (from --threads)", s.Err);
            Assert.Contains("at most 3, from --threads", s.Err);
            s = HardeningTests.Run(null, new Dictionary<string, string> { ["ROTOR_THREADS"] = "4" }, "index", "search", idx, "--query", "[1,0,0,0]");
            Assert.True(s.Code == 0, s.ToString());
            Assert.Contains("at most 4, from ROTOR_THREADS", s.Err);

            // A bad ROTOR_THREADS is bad input before any work, for every command that computes; --threads out of range too.
            var bad = HardeningTests.Run(null, new Dictionary<string, string> { ["ROTOR_THREADS"] = "zero" }, "index", "search", idx, "--query", "[1,0,0,0]");
            Assert.Equal(2, bad.Code);
            Assert.Contains("rotor: ROTOR_THREADS=zero is not a number of threads in 1..1024", bad.Err);
            var range = HardeningTests.Run(null, null, "index", "search", idx, "--query", "[1,0,0,0]", "--threads", "0");
            Assert.Equal(2, range.Code);
            Assert.Contains("--threads is 0, must be in 1..1024", range.Err);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
