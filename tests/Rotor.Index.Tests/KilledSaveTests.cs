using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Rotor.Index.Benchmarking;
using Xunit;
using Xunit.Abstractions;

namespace Rotor.Index.Tests;

/// <summary>
/// The child of <see cref="KilledSaveTests"/>: saves an index of about 9 MB over and over, one generation after another,
/// until it is killed. Generation 0 is <see cref="Base"/>; generation g applies <see cref="Changes"/>(g) to g - 1 and
/// stores g in the field "g" of the record "generation". It prints, flushed, one line per event:
/// <code>
/// writing G          the temporary file of generation G was created, nothing written yet
/// committed G MS     generation G is renamed into place; the save took MS milliseconds
/// </code>
/// With an existing file it continues from the generation stored there.
/// </summary>
internal static class SaveLoop
{
    public const string Command = "save-loop";
    public const int Records = 8000, Dimensions = 256, Upserts = 150;

    public static VectorIndexOptions Options => new()
    {
        Dimensions = Dimensions, Code = CodeKind.Ternary, Metric = Metric.Dot, KeepFullPrecision = true,
    };

    public static int Run(string path)
    {
        try
        {
            var sw = new Stopwatch();
            int g;
            VectorIndex index;
            if (File.Exists(path))
            {
                index = VectorIndex.Open(path);
                g = GenerationOf(index);
            }
            else
            {
                index = VectorIndex.Create(Options);
                index.Add(Base());
                g = 0;
                Save(index, path, g, sw);
            }
            using (index)
                for (int round = 0; round < 10_000; round++) // the parent kills it long before
                {
                    g++;
                    var (upserts, delete) = Changes(g);
                    index.Upsert(upserts);
                    index.Delete(delete);
                    Save(index, path, g, sw);
                }
            return 0;
        }
        catch (Exception e)
        {
            Console.Out.WriteLine($"error {e.GetType().Name}: {e.Message}");
            Console.Out.Flush();
            return 1;
        }
    }

    private static void Save(VectorIndex index, string path, int g, Stopwatch sw)
    {
        IndexFile.TempCreated = _ => { Console.Out.WriteLine($"writing {g}"); Console.Out.Flush(); };
        sw.Restart();
        index.Save(path);
        Console.Out.WriteLine($"committed {g} {sw.Elapsed.TotalMilliseconds.ToString("F1", CultureInfo.InvariantCulture)}");
        Console.Out.Flush();
    }

    public static int GenerationOf(VectorIndex index)
        => (int)(long)(index.Get("generation") ?? throw new InvalidDataException("no 'generation' record")).Fields!["g"];

    private static float[] Vector(Random rng)
    {
        var v = new float[Dimensions];
        for (int j = 0; j < v.Length; j++) v[j] = SyntheticVectors.Gaussian(rng);
        return v;
    }

    private static Dictionary<string, object> Gen(long g) => new() { ["g"] = g };

    public static List<IndexRecord> Base()
    {
        var rng = new Random(12345);
        var list = new List<IndexRecord>(Records + 1);
        for (int i = 0; i < Records; i++) list.Add(new IndexRecord($"r{i}", Vector(rng), Gen(0)));
        list.Add(new IndexRecord("generation", Vector(rng), Gen(0)));
        return list;
    }

    /// <summary>Generation g: upserts (existing keys replaced, one new key, the generation record), then one delete.</summary>
    public static (List<IndexRecord> Upserts, string Delete) Changes(int g)
    {
        var rng = new Random(g);
        var list = new List<IndexRecord>(Upserts + 2);
        for (int i = 0; i < Upserts; i++) list.Add(new IndexRecord($"r{(g * 7919 + 31 * i) % Records}", Vector(rng), Gen(g)));
        list.Add(new IndexRecord($"n{g}", Vector(rng), Gen(g)));
        list.Add(new IndexRecord("generation", Vector(rng), Gen(g)));
        return (list, $"r{g * 104729 % Records}");
    }

    /// <summary>What generation g holds: key to (vector, generation that wrote it).</summary>
    public static Dictionary<string, (float[] Vector, long G)> State(int g)
    {
        var state = new Dictionary<string, (float[], long)>(StringComparer.Ordinal);
        foreach (var r in Base()) state[r.Key] = (r.Vector.ToArray(), 0);
        for (int i = 1; i <= g; i++)
        {
            var (upserts, delete) = Changes(i);
            foreach (var r in upserts) state[r.Key] = (r.Vector.ToArray(), i);
            state.Remove(delete);
        }
        return state;
    }
}

/// <summary>
/// Persistence under a real kill: a child process (this assembly run as a program, <see cref="SaveLoop"/>) saves
/// generation after generation of an index; the test kills it with <see cref="Process.Kill()"/>, sometimes right after
/// it announces the write of a temporary file (at a random point of the write), sometimes at a random moment after a
/// save, and checks each time that the file on disk opens, passes its checksums and holds exactly the last committed
/// generation or the one being saved. Stale temporary files are never read and are deleted by the next save.
/// </summary>
public class KilledSaveTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Silence = TimeSpan.FromSeconds(60);

    [Fact]
    public void KillingASaveAtAnyMomentLeavesACommittedGeneration()
    {
        string dir = TestData.TempDir(), path = Path.Combine(dir, "killed.rix");
        var rng = new Random(7);
        int committed = -1, midWrite = 0, rounds = 0;
        double saveMs = 20;
        var sw = Stopwatch.StartNew();
        // At least 8 kills and at least 3 that land inside the write of a temporary file (at most 30 kills).
        while ((rounds < 8 || midWrite < 3) && rounds < 30)
        {
            bool atWrite = rounds % 2 == 1 || rounds >= 8;
            int target = rng.Next(1, 4); // the save of this child around which it dies
            var (writing, last, landed, childPid) = KillOnce(path, atWrite, target, rng, ref saveMs, committed);
            rounds++;
            committed = last;
            var temps = Directory.GetFiles(dir, ".*.tmp");
            bool partial = temps.Any(t => Path.GetFileName(t).StartsWith($".killed.rix.{childPid}.", StringComparison.Ordinal));
            if (partial) midWrite++;
            Assert.True(temps.Length <= 1, $"round {rounds}: {temps.Length} temporary files; a save deletes those of dead processes");
            int onDisk = Verify(path, committed, writing);
            output.WriteLine($"round {rounds}: kill {(atWrite ? "inside a write" : "after a save")} ({landed}), " +
                             $"committed {committed}, writing {writing}, on disk {onDisk}, partial temp {partial}");
            committed = onDisk; // the generation the next child continues from
        }
        output.WriteLine($"{rounds} kills, {midWrite} inside the write of a temporary file, {sw.Elapsed.TotalSeconds:F1} s; a save takes about {saveMs:F0} ms");
        Assert.True(midWrite >= 3, $"only {midWrite} of {rounds} kills landed inside a write; the test did not exercise what it should");

        // The stale temporary file is ignored by readers and removed by the next save.
        using (var index = VectorIndex.Open(path)) index.Save(path);
        Assert.Equal(["killed.rix"], Directory.GetFiles(dir).Select(f => Path.GetFileName(f)));
    }

    /// <summary>Runs one child until the kill; returns the generation it was writing (-1: none after the last
    /// commit), the last committed generation, when the kill landed, and the child's process id.</summary>
    private static (int Writing, int Committed, string Landed, int Pid) KillOnce(string path, bool atWrite, int target, Random rng, ref double saveMs, int committed)
    {
        string dll = typeof(SaveLoop).Assembly.Location;
        string host = Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet";
        var psi = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("exec"); psi.ArgumentList.Add(dll); psi.ArgumentList.Add(SaveLoop.Command); psi.ArgumentList.Add(path);
        var lines = new BlockingCollection<string>();
        var errors = new ConcurrentQueue<string>();
        using var child = new Process { StartInfo = psi };
        child.OutputDataReceived += (_, e) => { if (e.Data is not null) lines.Add(e.Data); };
        child.ErrorDataReceived += (_, e) => { if (e.Data is not null) errors.Enqueue(e.Data); };
        child.Start();
        int pid = child.Id;
        child.BeginOutputReadLine();
        child.BeginErrorReadLine();
        int writing = -1, saves = 0;
        string landed = "";
        try
        {
            while (true)
            {
                string? line = null;
                var silent = Stopwatch.StartNew();
                while (!lines.TryTake(out line, TimeSpan.FromMilliseconds(200)))
                {
                    if (child.HasExited && lines.Count == 0)
                    {
                        child.WaitForExit(); // flush the rest of its output
                        if (lines.TryTake(out line)) break;
                        throw new InvalidOperationException($"the child exited with code {child.ExitCode} before it was killed; stderr: {string.Join(" | ", errors)}");
                    }
                    if (silent.Elapsed > Silence)
                        throw new TimeoutException($"the child said nothing for {Silence.TotalSeconds} s; stderr: {string.Join(" | ", errors)}");
                }
                if (Handle(line, ref writing, ref committed, ref saveMs)) saves++;
                if (atWrite && writing > committed && saves == target - 1)
                {
                    // Somewhere inside this save: its temporary file exists, its rename has not happened yet (usually).
                    double delay = rng.NextDouble() * saveMs;
                    var wait = Stopwatch.StartNew();
                    while (wait.Elapsed.TotalMilliseconds < delay) Thread.SpinWait(100);
                    landed = $"{delay:F1} ms into the save of {writing}";
                    break;
                }
                if (!atWrite && saves == target)
                {
                    double delay = rng.NextDouble() * 2 * saveMs;
                    Thread.Sleep(TimeSpan.FromMilliseconds(delay));
                    landed = $"{delay:F1} ms after committing {committed}";
                    break;
                }
            }
        }
        finally
        {
            if (!child.HasExited) child.Kill();
            if (!child.WaitForExit(30_000)) throw new TimeoutException("the killed child did not exit in 30 s");
            child.WaitForExit(); // the rest of its output
        }
        // Lines printed before the kill took effect.
        while (lines.TryTake(out string? line)) Handle(line, ref writing, ref committed, ref saveMs);
        if (writing <= committed) writing = -1;
        return (writing, committed, landed, pid);

        bool Handle(string line, ref int writing, ref int committed, ref double saveMs)
        {
            string[] f = line.Split(' ');
            switch (f[0])
            {
                case "writing": writing = int.Parse(f[1], CultureInfo.InvariantCulture); return false;
                case "committed":
                    committed = int.Parse(f[1], CultureInfo.InvariantCulture);
                    saveMs = double.Parse(f[2], CultureInfo.InvariantCulture);
                    return true;
                default: throw new InvalidOperationException($"child: {line}; stderr: {string.Join(" | ", errors)}");
            }
        }
    }

    /// <summary>Opens the file (checksums verified) and compares every record with the generation it claims, which must
    /// be the last committed one or the one being written; returns it.</summary>
    private static int Verify(string path, int committed, int writing)
    {
        using var index = VectorIndex.Open(path, verifyChecksums: true);
        int g = SaveLoop.GenerationOf(index);
        Assert.True(g == committed || g == writing, $"the file holds generation {g}; committed {committed}, being written {writing}");
        var state = SaveLoop.State(g);
        Assert.Equal(state.Count, index.Count);
        foreach (var (key, (vector, gen)) in state)
        {
            var r = index.Get(key);
            Assert.NotNull(r);
            Assert.Equal(vector, r.Vector.ToArray());
            Assert.Equal(gen, (long)r.Fields!["g"]);
        }
        // And it searches: a stored vector finds its own record among the nearest by the rescored dot product.
        string probe = state.Keys.First(k => k[0] == 'r');
        Assert.Contains(index.Search(state[probe].Vector, 10, new SearchOptions { RescoreFactor = 10 }), h => h.Key == probe);
        return g;
    }
}
