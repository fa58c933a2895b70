using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Rotor.Index;
using Rotor.Rag.Corpus;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Pipeline;
using Rotor.Rag.Search;
using Xunit.Abstractions;

namespace Rotor.Cluster.Tests;

/// <summary>A fact that skips, saying why, when the cluster test cannot run here: no wiki sample, no PostgreSQL, or
/// no Orleans schema scripts beside the tests.</summary>
public sealed class ClusterFactAttribute : FactAttribute
{
    /// <summary>Sets Skip with the first missing piece.</summary>
    public ClusterFactAttribute()
    {
        if (TestPaths.WikiSample is null) Skip = $"Wikipedia dump sample not found under {TestPaths.SharedData ?? "../shared/data"}";
        else if (PostgresServer.Find() is { Bin: null } pg) Skip = pg.Why;
        else if (PostgresSchema.Missing(PostgresSchema.DefaultFolder) is { Count: > 0 } missing)
            Skip = $"Orleans' PostgreSQL scripts not in {PostgresSchema.DefaultFolder} ({string.Join(", ", missing)}): put them in src/Rotor.Cluster/sql (docs/CLUSTER.md)";
        else if (!File.Exists(Path.Combine(AppContext.BaseDirectory, "rotor.dll"))) Skip = "rotor.dll not beside the tests";
    }
}

/// <summary>
/// The cluster end to end: PostgreSQL and three silo processes (`rotor cluster silo`) on loopback, the first articles
/// of the Wikipedia sample ingested through the cluster (embedded on the silos, 4 shards x 2 replicas), every search
/// compared with the single-machine index built by `rotor ingest`'s builder from the same documents; then one silo is
/// killed (SIGKILL) during a stream of queries: no query may fail once the membership has declared it dead, every
/// answer still equals the single index's, and the lost replicas are copied to the surviving silos; a fourth silo joins and
/// `rotor cluster rebalance` moves replicas onto it. The shards are HNSW: every replica builds its own graph, and every
/// replica of a shard (built on its silo, copied, moved) must hold the same files. The shards hold fewer than the 2048
/// vectors below which <see cref="VectorIndex"/> scans exactly, so answers still equal the flat single
/// index's; graph search itself is compared with one graph in <see cref="HnswShardTests"/>.
/// </summary>
public sealed class ClusterIntegrationTests(ITestOutputHelper output) : IDisposable
{
    private const int Articles = 3, Shards = 4, Replicas = 2, Batch = 32;
    private readonly string _dir = TestPaths.TempDir();
    private readonly List<Process> _silos = [];

    public void Dispose()
    {
        foreach (var p in _silos)
        {
            try { if (!p.HasExited) { p.Kill(entireProcessTree: true); p.WaitForExit(10_000); } } catch (InvalidOperationException) { }
            p.Dispose();
        }
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    internal static readonly string[] Questions =
    [
        "Who founded anarchism as a political philosophy?", "What causes autism in children?", "How is albedo measured?",
        "What is the capital of Alabama?", "Achilles heel in Greek mythology", "Abraham Lincoln and the Civil War",
        "Aristotle's teacher Plato", "reflectivity of snow and ice", "Montgomery bus boycott", "social movement against the state",
    ];

    [ClusterFact]
    public async Task IngestSearchAndSurviveALostSilo()
    {
        var total = Stopwatch.StartNew();
        string corpus = WriteCorpus();
        using var pg = PostgresServer.Start();
        _pg = pg.ConnectionString;
        Log($"PostgreSQL on port {pg.Port} ({total.Elapsed.TotalSeconds:F1} s)");
        var names = new[] { "s1", "s2", "s3" };
        var up = names.Select((n, i) => StartSilo(n, i)).ToList();
        await Task.WhenAll(up).WaitAsync(TimeSpan.FromSeconds(120));
        Log($"3 silos up ({total.Elapsed.TotalSeconds:F1} s)");

        using var client = await ClusterHost.ConnectAsync(pg.ConnectionString, responseTimeout: TimeSpan.FromMinutes(5));
        var grains = client.Services.GetRequiredService<IClusterClient>();
        var report = await ClusterIngest.RunAsync(grains, DocumentSource.Folder(corpus), new ClusterIngestOptions
        {
            Shards = Shards, Replicas = Replicas, BatchPassages = Batch, CommitInterval = TimeSpan.FromSeconds(1), Log = new StringWriter(),
            Structure = IndexStructure.Hnsw,
        });
        Log($"cluster ingestion: {report.Passages} passages from {report.Documents} documents on {report.Silos} silos ({total.Elapsed.TotalSeconds:F1} s)");
        Assert.True(report.Sealed);

        // The single machine: rotor ingest's builder over the same documents, batches as the cluster makes them.
        using var embedder = SentenceEmbedder.CreateMiniLm();
        string single = Path.Combine(_dir, "single");
        RagIndexBuilder.Build(single, DocumentSource.Folder(corpus), embedder, new RagIndexBuildOptions { BatchPassages = Batch, CheckpointInterval = TimeSpan.FromDays(1), Log = new StringWriter() });
        using var reference = RagIndex.Open(single, embedder);
        Assert.Equal(reference.Passages.Count, (int)report.Passages);
        Log($"single index: {reference.Passages.Count} passages ({total.Elapsed.TotalSeconds:F1} s)");

        var router = new GrainShardRouter(grains, TimeSpan.FromSeconds(1), callTimeout: TimeSpan.FromSeconds(5));
        var cluster = new ClusterRetriever(router, embedder);
        var vectors = Questions.Select(q => embedder.Embed(q)).ToArray();
        var modes = new[] { RetrievalMode.Dense, RetrievalMode.Lexical, RetrievalMode.Hybrid };
        async Task<string?> Compare(int qi, RetrievalMode mode)
        {
            var options = new RetrievalOptions { Top = 5, Mode = mode };
            var want = reference.Retriever.Search(Questions[qi], vectors[qi], options);
            var got = await cluster.SearchAsync(Questions[qi], vectors[qi], options);
            return Same(want, got) ? null : $"{mode} '{Questions[qi]}': cluster [{Ids(got)}], single [{Ids(want)}]";
        }
        foreach (var mode in modes)
            for (int qi = 0; qi < Questions.Length; qi++)
                Assert.Null(await Compare(qi, mode));
        Log($"{Questions.Length * modes.Length} searches equal the single index's ({total.Elapsed.TotalSeconds:F1} s)");

        // Kill s2 while queries stream.
        var directory = grains.GetGrain<IClusterDirectoryGrain>(0);
        var failures = new ConcurrentQueue<(double At, string What)>();
        var answered = new ConcurrentQueue<double>();
        var clock = Stopwatch.StartNew();
        using var stop = new CancellationTokenSource();
        double killedAt = -1;
        var stream = Task.Run(async () =>
        {
            for (int i = 0; !stop.IsCancellationRequested; i++)
            {
                try
                {
                    string? diff = await Compare(i % Questions.Length, modes[i % modes.Length]);
                    if (diff is null) answered.Enqueue(clock.Elapsed.TotalSeconds);
                    else failures.Enqueue((clock.Elapsed.TotalSeconds, "wrong answer: " + diff));
                }
                catch (Exception e) { failures.Enqueue((clock.Elapsed.TotalSeconds, e.GetType().Name + ": " + e.Message)); }
            }
        });
        await Task.Delay(2000);
        killedAt = clock.Elapsed.TotalSeconds;
        _silos[1].Kill(entireProcessTree: true);
        double noticedAt = -1, restoredAt = -1;
        while (clock.Elapsed.TotalSeconds < killedAt + 90)
        {
            await Task.Delay(250);
            // The directory may have lived on s2: a call in flight there is answered only at the response timeout,
            // so each poll waits briefly and the next one goes to its new activation.
            try
            {
                if (noticedAt < 0 && (await directory.Silos().WaitAsync(TimeSpan.FromSeconds(3))).Any(s => s.Name == "s2" && s.Status == "Dead")) noticedAt = clock.Elapsed.TotalSeconds;
                var layout = await directory.Layout().WaitAsync(TimeSpan.FromSeconds(3));
                if (noticedAt >= 0 && layout.Replicas.Values.All(r => r.Length == Replicas && !r.Contains("s2"))) { restoredAt = clock.Elapsed.TotalSeconds; break; }
            }
            // Until the cluster notices, a poll may also be refused outright (the connection to s2 fails): poll again.
            catch (Exception e) when (e is TimeoutException or Orleans.Runtime.OrleansException) { }
        }
        await Task.Delay(2000); // queries on the healed layout
        stop.Cancel();
        await stream;
        Log($"s2 killed at {killedAt:F1} s; declared dead {noticedAt - killedAt:F1} s later; replicas restored {restoredAt - killedAt:F1} s after the kill");
        Log($"{answered.Count} queries answered during the run; {failures.Count} failed ({failures.Count(f => f.At < noticedAt)} before the death was noticed)");
        foreach (var f in failures.Take(5)) Log($"  at {f.At:F1} s: {f.What}");
        Assert.True(noticedAt > 0, "s2 was never declared dead");
        Assert.True(restoredAt > 0, "the replica count was not restored in 90 s");
        Assert.DoesNotContain(failures, f => f.At >= noticedAt);
        Assert.Contains(answered, t => t > restoredAt);

        // Nothing ingested is lost: every replica of every shard holds exactly the passages of its shard.
        var status = await ClusterStatusReader.ReadAsync(grains);
        var expected = reference.Passages.GroupBy(p => ShardAssignment.ShardOf(p.Id, Shards)).ToDictionary(g => g.Key, g => (long)g.Count());
        Assert.Equal(Shards * Replicas, status.Replicas.Count);
        foreach (var r in status.Replicas)
        {
            Assert.True(r.Sealed, $"shard {r.Shard} on {r.Silo} is not sealed");
            Assert.Equal(expected[r.Shard], r.Passages);
        }
        foreach (var mode in modes)
            for (int qi = 0; qi < Questions.Length; qi++)
                Assert.Null(await Compare(qi, mode));

        // A new silo joins; rebalance moves replicas onto it until the silos hold about as many.
        await StartSilo("s4", 3).WaitAsync(TimeSpan.FromSeconds(120));
        Log(RunRotor(pg.ConnectionString, "cluster", "rebalance"));
        var balanced = await directory.Layout();
        var load = new[] { "s1", "s3", "s4" }.ToDictionary(s => s, s => balanced.Replicas.Values.Count(r => r.Contains(s)));
        Assert.True(load.Values.Max() - load.Values.Min() <= 1, "replicas a silo after rebalance: " + string.Join(", ", load));
        Assert.All(balanced.Replicas.Values, r => Assert.Equal(Replicas, r.Distinct().Count()));
        foreach (var mode in modes)
            for (int qi = 0; qi < Questions.Length; qi++)
                Assert.Null(await Compare(qi, mode));

        // Every replica of a shard holds the same passages and graph files (BM25's Lucene segments carry random ids):
        // those built during ingestion on s1, s2 (dead, its folder left) and s3, the copies made after s2 died, the
        // replicas moved to s4.
        for (int shard = 0; shard < Shards; shard++)
        {
            var copies = new[] { "s1", "s2", "s3", "s4" }.Select(s => Path.Combine(_dir, s, $"shard-{shard:D4}", ShardStore.StateFile)).Where(File.Exists)
                .Select(f => (Folder: f, Files: string.Join(", ", System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(f))!["files"]!.AsArray()
                    .Where(x => !x!["path"]!.GetValue<string>().StartsWith("bm25/", StringComparison.Ordinal)).Select(x => $"{x!["path"]} {x["sha256"]}")))).ToList();
            Assert.True(copies.Count >= Replicas, $"shard {shard}: {copies.Count} replica folders");
            foreach (var c in copies.Skip(1)) Assert.True(c.Files == copies[0].Files, $"shard {shard}: {c.Folder} lists [{c.Files}], {copies[0].Folder} [{copies[0].Files}]");
        }

        // The command line shows the same.
        string text = RunRotor(pg.ConnectionString, "cluster", "status");
        Assert.Contains("s2               Dead", text);
        Assert.Contains("s4               Active", text);
        Log(text);
        Log($"total {total.Elapsed.TotalSeconds:F1} s");
        await client.StopAsync();
    }

    private static bool Same(RetrievalResult a, RetrievalResult b)
    {
        if (a.Hits.Count != b.Hits.Count) return false;
        for (int i = 0; i < a.Hits.Count; i++)
        {
            var (x, y) = (a.Hits[i], b.Hits[i]);
            if (x.Passage != y.Passage || x.Score != y.Score || x.DenseScore != y.DenseScore || x.DenseRank != y.DenseRank || x.LexicalRank != y.LexicalRank) return false;
        }
        return true;
    }

    private static string Ids(RetrievalResult r) => string.Join(", ", r.Hits.Select(h => string.Create(CultureInfo.InvariantCulture, $"{h.Passage.Id} {h.Score:R}")));

    private void Log(string line) => output.WriteLine(line);

    /// <summary>The sample's first articles as Markdown files (title = file name, '#' headings for sections), so that
    /// the cluster and the single index read the same documents from a source that ends there.</summary>
    private string WriteCorpus()
    {
        string dir = Path.Combine(_dir, "corpus");
        Directory.CreateDirectory(dir);
        int i = 0;
        foreach (var doc in DocumentSource.Wiki(TestPaths.WikiSample!).ReadDocuments(Articles))
        {
            var sb = new StringBuilder();
            foreach (var s in doc.Sections)
            {
                if (s.Title.Length > 0) sb.Append("# ").Append(s.Title).Append("\n\n");
                sb.Append(s.Text).Append("\n\n");
            }
            string name = new string(doc.Title.Select(c => char.IsLetterOrDigit(c) ? c : '_').ToArray());
            File.WriteAllText(Path.Combine(dir, $"{i++:D2}-{name}.md"), sb.ToString());
        }
        return dir;
    }

    private Task StartSilo(string name, int index)
    {
        var psi = Rotor(["cluster", "silo", "--name", name, "--data", Path.Combine(_dir, name), "--postgres", PgOf(),
            "--silo-port", PostgresServer.FreePort().ToString(CultureInfo.InvariantCulture), "--gateway-port", PostgresServer.FreePort().ToString(CultureInfo.InvariantCulture),
            "--probe-timeout", "1", "--missed-probes", "2", "--heal-seconds", "1"]);
        var p = Process.Start(psi)!;
        _silos.Add(p);
        var up = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var log = new StringBuilder();
        void OnLine(string? line)
        {
            if (line is null) { up.TrySetException(new InvalidOperationException($"silo {name} exited: {log}")); return; }
            lock (log) log.AppendLine(line);
            if (line.Contains($"silo {name} up at", StringComparison.Ordinal)) up.TrySetResult();
        }
        p.ErrorDataReceived += (_, e) => OnLine(e.Data);
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.AppendLine(e.Data); };
        p.BeginErrorReadLine();
        p.BeginOutputReadLine();
        return up.Task;
    }

    private string? _pg;
    private string PgOf() => _pg!;

    private static ProcessStartInfo Rotor(string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "rotor.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        return psi;
    }

    private static string RunRotor(string postgres, params string[] args)
    {
        var psi = Rotor([.. args, "--postgres", postgres]);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string text = p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(60_000), $"rotor {string.Join(' ', args)} did not finish");
        Assert.True(p.ExitCode == 0, $"rotor {string.Join(' ', args)} exited {p.ExitCode}: {err.Result}");
        return text;
    }
}
