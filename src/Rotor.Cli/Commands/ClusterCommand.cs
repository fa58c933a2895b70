#if !ROTOR_AOT
// Not in the native AOT build: Orleans needs the JIT build (Rotor.Cli.csproj).
using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Rotor.Cluster;
using Rotor.Index;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Pipeline;
using Rotor.Rag.Search;

namespace Rotor.Cli.Commands;

/// <summary><c>rotor cluster silo|status|rebalance|ingest|search</c>: a sharded, replicated index on Orleans (docs/CLUSTER.md).</summary>
internal static class ClusterCommand
{
    internal static Command Create()
    {
        var cmd = new Command("cluster", "A sharded, replicated retrieval index on a cluster of silos (Microsoft Orleans, state in PostgreSQL)");
        cmd.Subcommands.Add(Silo());
        cmd.Subcommands.Add(Status());
        cmd.Subcommands.Add(Rebalance());
        var ingest = new Command("ingest", "Ingest a corpus into the cluster index: embedded on every silo, stored on every replica (resumable)");
        ingest.Subcommands.Add(Ingest("wiki", "dump", "A MediaWiki XML dump, .xml or .xml.bz2", DocumentSource.Wiki));
        ingest.Subcommands.Add(Ingest("docs", "folder", "A folder of .txt and .md files", DocumentSource.Folder));
        ingest.Subcommands.Add(Ingest("jsonl", "file", "BEIR corpus: JSON lines {\"_id\",\"title\",\"text\"}, plain or .gz", DocumentSource.Jsonl));
        cmd.Subcommands.Add(ingest);
        cmd.Subcommands.Add(Search());
        return cmd;
    }

    /// <summary>--postgres (or ROTOR_CLUSTER_POSTGRES): the Npgsql connection string of the cluster's database.</summary>
    internal static Option<string?> PostgresOption() => new("--postgres")
    {
        Description = "Npgsql connection string of the cluster's database, e.g. 'Host=db;Username=rotor;Password=...;Database=rotor' (default: ROTOR_CLUSTER_POSTGRES)",
    };

    internal static string Postgres(ParseResult r, Option<string?> o) => r.GetValue(o) is { Length: > 0 } s ? s
        : Environment.GetEnvironmentVariable("ROTOR_CLUSTER_POSTGRES") is { Length: > 0 } e ? e
        : throw new RotorException("--postgres: name the cluster's database (or set ROTOR_CLUSTER_POSTGRES)");

    private static Option<string> ClusterIdOption() => new("--cluster-id") { Description = "Cluster id (several clusters may share one database)", DefaultValueFactory = _ => ClusterNames.DefaultClusterId };

    private static Command Silo()
    {
        var name = new Option<string>("--name") { Description = "Silo name, unique in the cluster and the same across restarts (replicas are placed by name)", Required = true };
        var data = new Option<string>("--data") { Description = "Folder of this silo's shard replicas", Required = true };
        var pg = PostgresOption();
        var cid = ClusterIdOption();
        var host = new Option<string>("--host") { Description = "Address other silos and clients reach this one at", DefaultValueFactory = _ => "127.0.0.1" };
        var siloPort = new Option<int>("--silo-port") { Description = "Silo-to-silo port", DefaultValueFactory = _ => 11111 }.InRange(1, 65535);
        var gatewayPort = new Option<int>("--gateway-port") { Description = "Client gateway port", DefaultValueFactory = _ => 30000 }.InRange(1, 65535);
        var probe = new Option<double>("--probe-timeout") { Description = "Seconds a membership probe may take before it counts as missed", DefaultValueFactory = _ => 5 }.InRange(0.1, 600);
        var missed = new Option<int>("--missed-probes") { Description = "Missed probes before a silo votes another dead", DefaultValueFactory = _ => 3 }.InRange(1, 100);
        var heal = new Option<double>("--heal-seconds") { Description = "Seconds between checks for lost replicas", DefaultValueFactory = _ => 5 }.InRange(0.1, 3600);
        var sql = new Option<string?>("--sql") { Description = "Folder of Orleans' PostgreSQL scripts (default: sql/ beside rotor)" };
        var threads = Validate.Threads();
        var cmd = new Command("silo", "Run a silo: holds shard replicas in --data, embeds for ingestion, answers searches; Ctrl+C or SIGTERM stops it");
        foreach (Option o in new Option[] { name, data, pg, cid, host, siloPort, gatewayPort, probe, missed, heal, sql, threads }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            if (!IPAddress.TryParse(r.GetValue(host), out var address)) throw new RotorException($"--host '{r.GetValue(host)}' is not an IP address");
            var options = new Rotor.Cluster.SiloOptions
            {
                Name = r.GetValue(name)!, DataFolder = r.GetValue(data)!, Postgres = Postgres(r, pg), ClusterId = r.GetValue(cid)!,
                Address = address, SiloPort = r.GetValue(siloPort), GatewayPort = r.GetValue(gatewayPort),
                ProbeTimeout = TimeSpan.FromSeconds(r.GetValue(probe)), MissedProbes = r.GetValue(missed),
                HealInterval = TimeSpan.FromSeconds(r.GetValue(heal)), SqlFolder = r.GetValue(sql), EmbedThreads = r.GetValue(threads) ?? Rotor.Threading.ThreadCount.Default,
            };
            using var silo = ClusterHost.BuildSiloAsync(options).GetAwaiter().GetResult();
            silo.Start();
            Console.Error.WriteLine($"silo {options.Name} up at {address}:{options.SiloPort} (gateway {options.GatewayPort}), data in {Path.GetFullPath(options.DataFolder)}; Ctrl+C stops");
            silo.WaitForShutdown();
            return 0;
        });
        return cmd;
    }

    private static async Task<T> WithClient<T>(ParseResult r, Option<string?> pg, Option<string> cid, Func<IHost, Task<T>> work)
    {
        using var host = await ClusterHost.ConnectAsync(Postgres(r, pg), r.GetValue(cid)!).ConfigureAwait(false);
        try { return await work(host).ConfigureAwait(false); }
        finally { await host.StopAsync().ConfigureAwait(false); }
    }

    private static IClusterDirectoryGrain Directory(IHost host) => host.Services.GetRequiredService<IClusterClient>().GetGrain<IClusterDirectoryGrain>(0);

    private static Command Status()
    {
        var pg = PostgresOption(); var cid = ClusterIdOption();
        var json = new Option<bool>("--json") { Description = "Print the status as JSON" };
        var cmd = new Command("status", "Show the cluster's silos, shards and replicas");
        foreach (Option o in new Option[] { pg, cid, json }) cmd.Options.Add(o);
        cmd.SetAction(r => WithClient(r, pg, cid, async host =>
        {
            var client = host.Services.GetRequiredService<IClusterClient>();
            var status = await ClusterStatusReader.ReadAsync(client).ConfigureAwait(false);
            if (r.GetValue(json)) Console.WriteLine(ClusterStatusReader.Json(status));
            else Console.Write(ClusterStatusReader.Text(status));
            return 0;
        }).GetAwaiter().GetResult());
        return cmd;
    }

    private static Command Rebalance()
    {
        var pg = PostgresOption(); var cid = ClusterIdOption();
        var cmd = new Command("rebalance", "Restore lost replicas, then move replicas until every silo holds about as many");
        foreach (Option o in new Option[] { pg, cid }) cmd.Options.Add(o);
        cmd.SetAction(r => WithClient(r, pg, cid, async host =>
        {
            var layout = await Directory(host).Rebalance().ConfigureAwait(false);
            Console.WriteLine(ClusterNames.Describe(layout));
            foreach (var (shard, reps) in layout.Replicas.OrderBy(kv => kv.Key)) Console.WriteLine($"shard {shard}: {string.Join(", ", reps)}");
            return 0;
        }).GetAwaiter().GetResult());
        return cmd;
    }

    private static Command Ingest(string kind, string argName, string argDescription, Func<string, DocumentSource> open)
    {
        var source = new Argument<string>(argName) { Description = argDescription };
        var pg = PostgresOption(); var cid = ClusterIdOption();
        var shards = new Option<int>("--shards") { Description = "Shards of a new index", DefaultValueFactory = _ => 6 }.InRange(1, 4096);
        var replicas = new Option<int>("--replicas") { Description = "Copies of every shard, each on another silo", DefaultValueFactory = _ => 2 }.InRange(1, 16);
        var code = new Option<CodeKind>("--code") { Description = "Vector code: Float32, Int8, Ternary, Binary", DefaultValueFactory = _ => CodeKind.Ternary };
        var rescore = new Option<int>("--rescore") { Description = "Rescoring factor of searches (0: none)", DefaultValueFactory = _ => 10 }.InRange(0, 1000);
        var hnsw = new Option<bool>("--hnsw") { Description = "HNSW graphs in the shards instead of exact scans" };
        var words = new Option<int>("--target-words") { Description = "Words a passage aims for", DefaultValueFactory = _ => 100 }.InRange(1, 100_000);
        var noSplit = new Option<bool>("--no-split") { Description = "One passage a document, id = document id (BEIR corpora)" };
        var batch = new Option<int>("--batch") { Description = "Passages embedded together", DefaultValueFactory = _ => 256 }.InRange(1, 1_000_000);
        var commit = new Option<int>("--commit-seconds") { Description = "Seconds between commits of the progress", DefaultValueFactory = _ => 30 }.InRange(1, 86_400);
        var max = new Option<long>("--max-documents") { Description = "Stop after this many source documents (0: all); run again without it to go on", DefaultValueFactory = _ => 0 }.NonNegative();
        var force = new Option<bool>("--force") { Description = "Replace the cluster's index with a new one" };
        var cmd = new Command(kind, $"Ingest {argDescription.ToLowerInvariant()} into the cluster index");
        cmd.Arguments.Add(source);
        foreach (Option o in new Option[] { pg, cid, shards, replicas, code, rescore, hnsw, words, noSplit, batch, commit, max, force }) cmd.Options.Add(o);
        cmd.SetAction(r => WithClient(r, pg, cid, async host =>
        {
            var client = host.Services.GetRequiredService<IClusterClient>();
            var report = await ClusterIngest.RunAsync(client, open(r.GetValue(source)!), new ClusterIngestOptions
            {
                Shards = r.GetValue(shards), Replicas = r.GetValue(replicas), Code = r.GetValue(code), RescoreFactor = r.GetValue(rescore),
                Structure = r.GetValue(hnsw) ? IndexStructure.Hnsw : IndexStructure.Flat, TargetWords = r.GetValue(words), SplitDocuments = !r.GetValue(noSplit),
                BatchPassages = r.GetValue(batch), CommitInterval = TimeSpan.FromSeconds(r.GetValue(commit)), MaxDocuments = r.GetValue(max), Force = r.GetValue(force),
            }).ConfigureAwait(false);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{(report.Sealed ? "index sealed" : "stopped early (run again to go on)")}: {report.Passages:N0} passages from {report.Documents:N0} documents; " +
                $"this run {report.PassagesThisRun:N0} passages in {report.Seconds:F1} s ({report.PassagesPerSecond:F1} passages/s on {report.Silos} silos)"));
            return 0;
        }).GetAwaiter().GetResult());
        return cmd;
    }

    private static Command Search()
    {
        var query = new Argument<string?>("QUERY") { Description = "The question", Arity = ArgumentArity.ZeroOrOne };
        var pg = PostgresOption(); var cid = ClusterIdOption();
        var top = new Option<int>("--top") { Description = "Passages to show", DefaultValueFactory = _ => 5 }.InRange(1, 1000);
        var mode = new Option<RetrievalMode>("--mode") { Description = "Dense, Lexical or Hybrid", DefaultValueFactory = _ => RetrievalMode.Hybrid };
        var candidates = new Option<int>("--candidates") { Description = "Candidates a ranking before fusion", DefaultValueFactory = _ => 100 }.InRange(1, 100_000);
        var queries = new Option<string?>("--queries") { Description = "Measure instead: ask the questions of this file (JSON lines with \"text\", or plain lines) and print queries/s" };
        var seconds = new Option<double>("--seconds") { Description = "With --queries: keep asking for this long (0: each question once)", DefaultValueFactory = _ => 0 }.InRange(0, 86_400);
        var clients = new Option<int>("--clients") { Description = "With --queries: concurrent clients", DefaultValueFactory = _ => 1 }.InRange(1, 1024);
        var local = new Option<string?>("--local") { Description = "With --queries: search this index directory (rotor ingest) in this process instead of the cluster: the one-machine baseline of the benchmark" };
        var cmd = new Command("search", "Search the cluster index (any silo's replicas; the query is embedded here), or measure queries/s with --queries");
        cmd.Arguments.Add(query);
        foreach (Option o in new Option[] { pg, cid, top, mode, candidates, queries, seconds, clients, local }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            var options = new RetrievalOptions { Top = r.GetValue(top), Mode = r.GetValue(mode), Candidates = r.GetValue(candidates) };
            string? questionsFile = r.GetValue(queries);
            if (questionsFile is null && r.GetValue(query) is null) throw new RotorException("give a QUERY, or --queries FILE");
            if (r.GetValue(local) is { } dir)
            {
                if (questionsFile is null) throw new RotorException("--local measures: give --queries FILE too (use rotor search DIR for one question)");
                using var e = SentenceEmbedder.CreateMiniLm();
                using var index = RagIndex.Open(dir, e);
                Console.WriteLine(QueryLoad.RunAsync(index.Retriever, QueryLoad.ReadQuestions(questionsFile), options, r.GetValue(seconds), r.GetValue(clients)).GetAwaiter().GetResult());
                return 0;
            }
            return WithClient(r, pg, cid, async host =>
            {
                var client = host.Services.GetRequiredService<IClusterClient>();
                using var embedder = r.GetValue(mode) == RetrievalMode.Lexical ? null : SentenceEmbedder.CreateMiniLm();
                var retriever = new ClusterRetriever(new GrainShardRouter(client, TimeSpan.FromSeconds(2)), embedder);
                if (questionsFile is not null)
                {
                    Console.WriteLine(await QueryLoad.RunAsync(retriever, QueryLoad.ReadQuestions(questionsFile), options, r.GetValue(seconds), r.GetValue(clients)).ConfigureAwait(false));
                    return 0;
                }
                var result = await retriever.SearchAsync(r.GetValue(query)!, options).ConfigureAwait(false);
                int n = 0;
                foreach (var h in result.Hits)
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{++n}. {h.Score:F4} {h.Passage.Title}{(h.Passage.Section.Length > 0 ? " / " + h.Passage.Section : "")} [{h.Passage.Id}]\n   {Program.OneLine(h.Passage.Text)}"));
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"embed {result.EmbedMilliseconds:F1} ms, search {result.SearchMilliseconds:F1} ms"));
                return 0;
            }).GetAwaiter().GetResult();
        });
        return cmd;
    }
}
#endif
