using System.Diagnostics;
using System.Globalization;
using Rotor.Index;
using Rotor.Rag.Corpus;
using Rotor.Rag.Pipeline;

namespace Rotor.Cluster;

/// <summary>How <see cref="ClusterIngest"/> builds the cluster index.</summary>
public sealed record ClusterIngestOptions
{
    /// <summary>Shards of a new index.</summary>
    public int Shards { get; init; } = 6;
    /// <summary>Replicas a shard.</summary>
    public int Replicas { get; init; } = 2;
    /// <summary>Code of the dense vectors.</summary>
    public CodeKind Code { get; init; } = CodeKind.Ternary;
    /// <summary>Rescoring factor (0: none).</summary>
    public int RescoreFactor { get; init; } = 10;
    /// <summary>Flat or HNSW shards.</summary>
    public IndexStructure Structure { get; init; } = IndexStructure.Flat;
    /// <summary>Words a passage aims for.</summary>
    public int TargetWords { get; init; } = 100;
    /// <summary>Split documents into passages (false: a document is one passage, id = document id).</summary>
    public bool SplitDocuments { get; init; } = true;
    /// <summary>Passages embedded together: whole documents are gathered until this many are pending, as
    /// <c>rotor ingest</c> does, so that a batch is embedded exactly as on one machine.</summary>
    public int BatchPassages { get; init; } = 256;
    /// <summary>Progress is committed (replicas flushed, directory updated) at least this often.</summary>
    public TimeSpan CommitInterval { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>Stop after this many source documents (0: all); a later run goes on.</summary>
    public long MaxDocuments { get; init; }
    /// <summary>Replace an existing index.</summary>
    public bool Force { get; init; }
    /// <summary>Progress lines.</summary>
    public TextWriter? Log { get; init; }
}

/// <summary>What an ingestion did.</summary>
/// <param name="Documents">Source documents committed in all.</param>
/// <param name="Passages">Passages in the index.</param>
/// <param name="PassagesThisRun">Passages embedded and stored in this run.</param>
/// <param name="Seconds">Wall time of this run.</param>
/// <param name="Silos">Silos that embedded.</param>
/// <param name="Sealed">True when the index was sealed (searchable); false when stopped at MaxDocuments.</param>
public sealed record ClusterIngestReport(long Documents, long Passages, long PassagesThisRun, double Seconds, int Silos, bool Sealed)
{
    /// <summary>Passages a second in this run.</summary>
    public double PassagesPerSecond => PassagesThisRun / Math.Max(Seconds, 1e-9);
}

/// <summary>
/// Distributed ingestion. This process reads the source in its fixed order and splits it into passages, numbered in
/// that order (the ordinals one index of the whole corpus gives them); batches of whole documents go round-robin to
/// the embedder of every live silo, several at once; each embedded batch, in order, is split by
/// <see cref="ShardAssignment.ShardOf"/> and appended to every replica of each shard. Every
/// <see cref="ClusterIngestOptions.CommitInterval"/> the replicas make their passages durable and then the directory
/// records the documents and passages committed (in PostgreSQL); a run that stops resumes after the last commit
/// (replicas skip passages they already hold). At the end every replica is sealed (BM25 built) and the index is
/// marked searchable.
/// </summary>
public static class ClusterIngest
{
    /// <summary>Ingests <paramref name="source"/> into the cluster reached through <paramref name="grains"/>.</summary>
    /// <exception cref="RotorException">No silo, silos with different models, an index of other settings or another
    /// source (without Force), or a replica that failed (the message says how far the ingestion got).</exception>
    public static async Task<ClusterIngestReport> RunAsync(IGrainFactory grains, DocumentSource source, ClusterIngestOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(grains);
        ArgumentNullException.ThrowIfNull(source);
        options ??= new ClusterIngestOptions();
        var log = options.Log ?? Console.Error;
        var clock = Stopwatch.StartNew();
        var directory = grains.GetGrain<IClusterDirectoryGrain>(0);
        var silos = (await directory.Silos().ConfigureAwait(false)).Where(s => s.Status == "Active").Select(s => s.Name).Distinct().ToList();
        if (silos.Count == 0) throw new RotorException("no active silo in the cluster: start some with 'rotor cluster silo'");
        var models = await Task.WhenAll(silos.Select(s => grains.GetGrain<IEmbedderGrain>(s).Model())).ConfigureAwait(false);
        if (models.Select(m => m.Sha256).Distinct().Count() > 1)
            throw new RotorException("the silos embed with different models: " + string.Join(", ", silos.Zip(models, (s, m) => $"{s} {m.Sha256[..12]}")));
        var settings = new ShardSettings(options.Shards, options.Replicas, models[0].Dimensions, models[0].Sha256, options.Code, options.RescoreFactor, options.Structure);
        settings.Validate();

        var layout = await directory.Layout().ConfigureAwait(false);
        string sourceId = $"{source.Kind}:{Path.GetFullPath(source.Path)}";
        if (layout.Settings is null || options.Force) layout = await directory.Create(settings, options.Force).ConfigureAwait(false);
        else if (layout.Settings != settings)
            throw new RotorException($"the cluster index was made with {ShardStore.Describe(layout.Settings)}; ingest with the same options, or pass --force for a new index");
        else if (layout.Ingest.Documents > 0 && layout.Ingest.Source != sourceId)
            throw new RotorException($"the cluster index holds {layout.Ingest.Documents:N0} documents of '{layout.Ingest.Source}'; pass --force for a new index of '{sourceId}'");
        long committedDocs = layout.Ingest.Documents, ordinal = layout.Ingest.Passages;
        // Not searchable (nor copyable) while the files change.
        layout = await directory.CommitIngest(sourceId, committedDocs, ordinal, sealedNow: false).ConfigureAwait(false);
        if (committedDocs > 0) log.WriteLine($"resuming after {committedDocs:N0} documents ({ordinal:N0} passages)");
        var replicas = layout.Replicas;
        IShardReplicaGrain Replica(int shard, string silo) => grains.GetGrain<IShardReplicaGrain>(ShardReplicaGrain.ReplicaKey(shard, silo));

        var splitter = new PassageSplitter(options.TargetWords);
        long docsRead = 0;
        bool stoppedEarly = false;
        // Batches of whole documents, as RagIndexBuilder gathers them.
        IEnumerable<(List<ClusterPassage> Passages, long DocsUpTo)> Batches()
        {
            var pending = new List<ClusterPassage>();
            foreach (var doc in source.ReadDocuments(options.MaxDocuments))
            {
                docsRead++;
                if (docsRead <= committedDocs) continue;
                var parts = options.SplitDocuments ? splitter.Split(doc).ToList() : Whole(doc);
                foreach (var p in parts) pending.Add(ClusterPassage.From(ordinal++, p));
                if (pending.Count >= options.BatchPassages) { yield return (pending, docsRead); pending = []; }
            }
            if (options.MaxDocuments > 0 && docsRead >= options.MaxDocuments) stoppedEarly = true;
            yield return (pending, docsRead);
        }

        int turn = 0;
        async Task<float[]> Embed(List<ClusterPassage> batch)
        {
            if (batch.Count == 0) return [];
            var texts = batch.Select(p => IndexText.Of(p.ToPassage())).ToArray();
            Exception? last = null;
            for (int attempt = 0; attempt < silos.Count + 1; attempt++)
            {
                string silo = silos[(Interlocked.Increment(ref turn) & int.MaxValue) % silos.Count];
                try { return await grains.GetGrain<IEmbedderGrain>(silo).Embed(texts).ConfigureAwait(false); }
                // A timeout means the silo is still working on it (slow, not gone): sending the batch elsewhere would only add load.
                catch (Exception e) when (e is not TimeoutException) { last = e; log.WriteLine($"embedding on silo {silo} failed ({e.Message}); trying another"); }
            }
            throw new RotorException($"no silo could embed a batch: {last?.Message}", last!);
        }

        long passagesDone = ordinal, docsDone = committedDocs, thisRun = 0;
        var lastCommit = Stopwatch.StartNew();
        var lastLog = Stopwatch.StartNew();
        async Task CommitAll(bool seal)
        {
            var all = replicas.SelectMany(kv => kv.Value.Select(s => (Shard: kv.Key, Silo: s))).ToList();
            try
            {
                await Task.WhenAll(all.Select(r => seal ? Replica(r.Shard, r.Silo).Seal() : Replica(r.Shard, r.Silo).Commit())).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                throw new RotorException($"a replica failed to {(seal ? "seal" : "commit")} ({e.Message}); {committedDocs:N0} documents are committed: run the same command again to resume", e);
            }
            await directory.CommitIngest(sourceId, docsDone, passagesDone, seal).ConfigureAwait(false);
            committedDocs = docsDone;
            lastCommit.Restart();
        }

        // Up to one batch a silo embeds at once; results are stored in batch order.
        var inFlight = new Queue<(Task<float[]> Vectors, List<ClusterPassage> Passages, long DocsUpTo)>();
        using var batches = Batches().GetEnumerator();
        bool more = true;
        while (true)
        {
            while (more && inFlight.Count < silos.Count)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (!(more = batches.MoveNext())) break;
                var (passages, upTo) = batches.Current;
                inFlight.Enqueue((Embed(passages), passages, upTo));
            }
            if (inFlight.Count == 0) break;
            var (task, batch, docsUpTo) = inFlight.Dequeue();
            var vectors = await task.ConfigureAwait(false);
            int d = settings.Dimensions;
            var byShard = new Dictionary<int, (List<ClusterPassage> P, List<float> V)>();
            for (int i = 0; i < batch.Count; i++)
            {
                int s = ShardAssignment.ShardOf(batch[i].Id, settings.Shards);
                if (!byShard.TryGetValue(s, out var acc)) byShard[s] = acc = ([], []);
                acc.P.Add(batch[i]);
                acc.V.AddRange(vectors.AsSpan(i * d, d).ToArray());
            }
            try
            {
                await Task.WhenAll(byShard.SelectMany(kv => replicas[kv.Key].Select(silo =>
                    Replica(kv.Key, silo).Append(new ShardBatch(kv.Value.P, kv.Value.V.ToArray()))))).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                throw new RotorException($"a replica failed to take a batch ({e.Message}); {committedDocs:N0} documents are committed: run the same command again to resume", e);
            }
            passagesDone += batch.Count; thisRun += batch.Count; docsDone = docsUpTo;
            if (lastCommit.Elapsed >= options.CommitInterval) await CommitAll(seal: false).ConfigureAwait(false);
            if (lastLog.Elapsed >= TimeSpan.FromSeconds(3))
            {
                lastLog.Restart();
                log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"ingesting {source.Kind}: {source.Position}, {passagesDone:N0} passages ({thisRun / clock.Elapsed.TotalSeconds:F1}/s on {silos.Count} silos), elapsed {clock.Elapsed:h\\:mm\\:ss}"));
            }
        }
        await CommitAll(seal: !stoppedEarly).ConfigureAwait(false);
        return new ClusterIngestReport(docsDone, passagesDone, thisRun, clock.Elapsed.TotalSeconds, silos.Count, !stoppedEarly);
    }

    private static List<Passage> Whole(Document doc)
    {
        string text = string.Join(" ", doc.Sections.Select(s => s.Text)).Trim();
        return text.Length == 0 ? [] : [new Passage(doc.Id, doc.Id, doc.Title, "", text)];
    }
}
