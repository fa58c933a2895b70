using System.CommandLine;
using System.Globalization;
using Rotor.Lm;
using Rotor.Rag.Answers;
using Rotor.Rag.Demo;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Pipeline;
using Rotor.Rag.Search;
using Rotor.Server;
using Rotor.Server.Scheduling;

namespace Rotor.Cli.Commands;

/// <summary><c>rotor serve</c>: the OpenAI-compatible HTTP server (Rotor.Server) over one model, with optional retrieval.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var model = new Argument<string>("MODEL") { Description = "a GGUF file, a Hugging Face folder, a llama2.c checkpoint, or random:2b4t" };
        var modelOpt = new Option<string?>("--model", "-m") { Description = "the model (instead of MODEL)" };
        model.Arity = ArgumentArity.ZeroOrOne;
        var index = new Option<string?>("--index") { Description = "a retrieval index directory (rotor ingest), or 'demo' for the bundled corpus: enables /v1/search and grounded chat" };
        var port = new Option<int>("--port", "-p") { Description = "port to listen on (0: a free one)", DefaultValueFactory = _ => 8080 };
        var host = new Option<string>("--host") { Description = "address to listen on", DefaultValueFactory = _ => "127.0.0.1" };
        var keys = new Option<string[]>("--api-key") { Description = "require Authorization: Bearer KEY on /v1 and /metrics (repeatable; also ROTOR_API_KEY)" };
        var maxBatch = new Option<int>("--max-batch") { Description = "sequences decoded together at most", DefaultValueFactory = _ => 16 };
        var ctx = new Option<int?>("--ctx") { Description = "context length of each sequence (default: the model's, at most 2048)" };
        var queue = new Option<int>("--queue") { Description = "requests that may wait for a slot (429 beyond)", DefaultValueFactory = _ => 64 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "tokens a reply takes when the request does not say", DefaultValueFactory = _ => 256 };
        var timeout = new Option<int>("--timeout") { Description = "seconds a request may take at most", DefaultValueFactory = _ => 600 };
        var body = new Option<int>("--max-body-kb") { Description = "largest request body in KiB (413 beyond)", DefaultValueFactory = _ => 1024 };
        var tok = new Option<string?>("--tokenizer") { Description = "tokenizer file for a model that carries none" };
        var threads = Validate.Threads();
        var noEmbed = new Option<bool>("--no-embeddings") { Description = "do not load the embedding model (no /v1/embeddings)" };
        var log = new Option<bool>("--log") { Description = "log each HTTP request" };
        var noPromptCache = new Option<bool>("--no-prompt-cache") { Description = "run every prompt whole (by default a finished sequence's slot keeps its keys and values, and a prompt that begins with the same tokens, such as a chat's earlier turns, runs only the rest)" };
        var cluster = new Option<string?>("--cluster") { Description = "search the index of a Rotor cluster instead of --index: the Npgsql connection string of its database (docs/CLUSTER.md)" };
        var clusterId = new Option<string>("--cluster-id") { Description = "the cluster's id", DefaultValueFactory = _ => DefaultClusterId };
        var head = LmCommands.LmHeadOption();
        var adaptive = new Option<string>("--adaptive", "--retrieval-rule") { Description = "grounded chat, as rotor ask: whether to retrieve and how many passages: score (dense scores), model (the model's closed-book confidence first, decoded among the requests, then the scores) or off (always the top); a request's retrieval.adaptive overrides it", DefaultValueFactory = _ => "score" };
        adaptive.AcceptOnlyFromAmong("score", "model", "off");
        var policy = new Option<string?>("--policy") { Description = "adaptive policy file (default: INDEX/adaptive.json if present, else built-in thresholds)" };
        var threshold = new Option<double?>("--confidence-threshold") { Description = "model rule: retrieve when the confidence is below this (default: the policy's)" }.InRange(0.0, 1.0);
        var confTokens = new Option<int>("--confidence-tokens") { Description = "closed-book answer tokens the model rule measures", DefaultValueFactory = _ => 8 }.InRange(1, 1024);
        var kvc = LmCommands.KvCacheOption();
        var device = LmCommands.DeviceOption();
        var cmd = new Command("serve", "Serve a model over an OpenAI-compatible HTTP API (chat, completions, embeddings, search) with continuous batching, metrics and a web page");
        cmd.Arguments.Add(model);
        foreach (Option o in new Option[] { modelOpt, index, port, host, keys, maxBatch, ctx, queue, maxTokens, timeout, body, tok, threads, noEmbed, log, noPromptCache, head, kvc, device, adaptive, policy, threshold, confTokens, cluster, clusterId }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            string path = r.GetValue(modelOpt) ?? r.GetValue(model) ?? throw new RotorException("name the model: rotor serve --model MODEL");
            if (r.GetValue(timeout) <= 0) throw new RotorException($"--timeout {r.GetValue(timeout)} must be positive");
            if (r.GetValue(body) <= 0) throw new RotorException($"--max-body-kb {r.GetValue(body)} must be positive");
            var apiKeys = (r.GetValue(keys) ?? []).ToList();
            if (Environment.GetEnvironmentVariable("ROTOR_API_KEY") is { Length: > 0 } envKey) apiKeys.Add(envKey);
            var pol = AskCommand.LoadPolicy(r.GetValue(index) ?? "demo", r.GetValue(policy));
            if (r.GetValue(threshold) is double t) pol = pol with { ModelConfidenceThreshold = t };
            var grounding = new GroundedAnswerOptions
            {
                Adaptive = r.GetValue(adaptive) switch { "off" => AdaptiveMode.Off, "model" => AdaptiveMode.Model, _ => AdaptiveMode.Score },
                Policy = pol, ConfidenceTokens = r.GetValue(confTokens),
            };
            using var m = LmCommands.Open(path, r.GetValue(tok), r.GetValue(threads), r.GetValue(head), r.GetValue(kvc), r.GetValue(device)!);
            int context = r.GetValue(ctx) ?? Math.Min(m.Config.ContextLength, 2048);
            SentenceEmbedder? embedder = null;
            Retriever? retriever = null;
            IPassageRetriever? search = null;
            RagIndex? rag = null;
            Microsoft.Extensions.Hosting.IHost? clusterClient = null;
            string? clusterDb = r.GetValue(cluster);
            try
            {
                string? indexDir = r.GetValue(index);
                if (indexDir is not null && clusterDb is not null) throw new RotorException("give --index or --cluster, not both");
                if (!r.GetValue(noEmbed) || indexDir is not null || clusterDb is not null)
                {
                    try { embedder = SentenceEmbedder.CreateMiniLm(); }
                    catch (RotorException e) when (indexDir is null) { Console.Error.WriteLine($"embeddings off: {e.Message}"); }
                }
                if (indexDir == "demo") retriever = DemoCorpus.CreateRetrieverAsync(embedder!).GetAwaiter().GetResult();
                else if (indexDir is not null) { rag = RagIndex.Open(indexDir, embedder!); retriever = rag.Retriever; }
                search = retriever;
                string served = retriever is null ? "" : $"; retrieval over {retriever.Passages.Count} passages";
                if (clusterDb is not null)
                {
#if ROTOR_AOT
                    throw new RotorException("--cluster: this native build has no cluster client (Orleans needs the JIT build: dotnet rotor.dll serve --cluster ...)");
#else
                    // The front door: a client of the cluster; every node may run one, each takes any request.
                    clusterClient = Rotor.Cluster.ClusterHost.ConnectAsync(clusterDb, r.GetValue(clusterId)!).GetAwaiter().GetResult();
                    var grains = Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions.GetRequiredService<Orleans.IClusterClient>(clusterClient.Services);
                    search = new Rotor.Cluster.ClusterRetriever(new Rotor.Cluster.GrainShardRouter(grains, TimeSpan.FromSeconds(2)), embedder);
                    served = $"; retrieval over the cluster '{r.GetValue(clusterId)}'";
#endif
                }
                var options = new RotorServerOptions
                {
                    ModelId = ModelId(path), Host = r.GetValue(host)!, Port = r.GetValue(port), ApiKeys = apiKeys,
                    MaxBodyBytes = r.GetValue(body) * 1024L, DefaultMaxTokens = r.GetValue(maxTokens), Log = r.GetValue(log), Grounding = grounding,
                    Scheduler = new SchedulerOptions
                    {
                        MaxBatch = r.GetValue(maxBatch), ContextLength = context, QueueLimit = r.GetValue(queue),
                        RequestTimeout = TimeSpan.FromSeconds(r.GetValue(timeout)), PromptCache = !r.GetValue(noPromptCache),
                    },
                };
                var server = new RotorServer(m, options, r.GetValue(noEmbed) ? null : embedder, search);
                server.StartAsync().GetAwaiter().GetResult();
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"serving {options.ModelId} at {server.Address} (batch {options.Scheduler.MaxBatch}, context {context}, queue {options.Scheduler.QueueLimit}, key/value cache {m.Config.KvBytesPerToken(m.KvCacheType) * context / 1048576.0:F1} MiB a sequence{(m.Cuda is null ? "" : ", on the GPU")}){served}{(search is null ? "" : $", rule {r.GetValue(adaptive)}")}{(apiKeys.Count > 0 ? "; API key required" : "")}; Ctrl+C stops"));
                server.RunAsync().GetAwaiter().GetResult();
                server.DisposeAsync().AsTask().GetAwaiter().GetResult();
                return 0;
            }
            finally
            {
                rag?.Dispose();
                if (rag is null) retriever?.Dispose();
                if (clusterClient is not null) { clusterClient.StopAsync().GetAwaiter().GetResult(); clusterClient.Dispose(); }
                embedder?.Dispose();
            }
        });
        return cmd;
    }

    /// <summary>The id clients name: the file or folder name without extension ("random-2b4t" for random:2b4t).</summary>
#if ROTOR_AOT
    private const string DefaultClusterId = "rotor";
#else
    private const string DefaultClusterId = Rotor.Cluster.ClusterNames.DefaultClusterId;
#endif

    private static string ModelId(string path)
    {
        if (path.StartsWith("random:", StringComparison.Ordinal)) return "random-" + path["random:".Length..];
        string name = Path.GetFileName(path.TrimEnd('/', '\\'));
        string id = Path.GetFileNameWithoutExtension(name);
        return id.Length > 0 ? id : "rotor";
    }
}
