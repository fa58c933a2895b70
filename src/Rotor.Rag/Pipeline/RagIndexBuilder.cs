using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Rotor.Index;
using Rotor.Rag.Corpus;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Search;

namespace Rotor.Rag.Pipeline;

/// <summary>How <see cref="RagIndexBuilder"/> builds an index.</summary>
public sealed record RagIndexBuildOptions
{
    /// <summary>Storage code of the dense vectors (float32 vectors are kept beside int8, ternary and binary codes when rescoring).</summary>
    public CodeKind Code { get; init; } = CodeKind.Ternary;
    /// <summary>Default rescoring factor of searches, stored in the manifest (0: none; then compact codes keep no float32 copy).</summary>
    public int RescoreFactor { get; init; } = 10;
    /// <summary>Words a passage aims for (see <see cref="PassageSplitter"/>).</summary>
    public int TargetWords { get; init; } = 100;
    /// <summary>Split documents into passages; false keeps each document whole as one passage whose id is the document id (BEIR corpora).</summary>
    public bool SplitDocuments { get; init; } = true;
    /// <summary>Passages embedded together (whole documents are added until this many are pending).</summary>
    public int BatchPassages { get; init; } = 256;
    /// <summary>A checkpoint is written when this much time has passed since the last one.</summary>
    public TimeSpan CheckpointInterval { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>Also write a checkpoint every this many documents (0: by time only).</summary>
    public int CheckpointEveryDocuments { get; init; }
    /// <summary>Stop after this many source documents (0: all). A later run with a larger limit resumes.</summary>
    public long MaxDocuments { get; init; }
    /// <summary>Documents to index (null: all); the rest are counted as skipped "excluded". Must be the same when resuming.</summary>
    public Func<Document, bool>? Include { get; init; }
    /// <summary>Delete what the directory holds of an earlier index and start over.</summary>
    public bool Force { get; init; }
    /// <summary>Called after each source document is taken in (with the count read so far). For tests that interrupt a build.</summary>
    public Action<long>? AfterDocument { get; init; }
    /// <summary>Progress lines (stderr by default).</summary>
    public TextWriter? Log { get; init; }

    internal void Validate()
    {
        if (!Enum.IsDefined(Code)) throw new ArgumentOutOfRangeException(nameof(Code), Code, "unknown code kind");
        if (RescoreFactor < 0 || RescoreFactor > 1000) throw new ArgumentOutOfRangeException(nameof(RescoreFactor), RescoreFactor, "rescore factor must be in 0..1000");
        if (BatchPassages < 1) throw new ArgumentOutOfRangeException(nameof(BatchPassages), BatchPassages, "batch must be positive");
        if (CheckpointEveryDocuments < 0) throw new ArgumentOutOfRangeException(nameof(CheckpointEveryDocuments), CheckpointEveryDocuments, "must be non-negative");
        if (MaxDocuments < 0) throw new ArgumentOutOfRangeException(nameof(MaxDocuments), MaxDocuments, "must be non-negative");
    }
}

/// <summary>What a build did and where its time went.</summary>
/// <param name="DocumentsRead">Source documents read (this run and the runs it resumed).</param>
/// <param name="DocumentsIndexed">Documents that gave at least one passage.</param>
/// <param name="Passages">Passages in the index.</param>
/// <param name="ResumedFromDocuments">Documents a checkpoint had committed when this run started (0: fresh build).</param>
/// <param name="Skipped">What was skipped, by reason (redirects, other-namespaces, empty, excluded).</param>
/// <param name="Finished">False when the build stopped early (<see cref="RagIndexBuildOptions.MaxDocuments"/> or cancellation) and left a checkpoint.</param>
/// <param name="Seconds">Wall time of this run.</param>
/// <param name="PassagesThisRun">Passages embedded in this run.</param>
/// <param name="Embedding">Embedding time by stage in this run.</param>
/// <param name="ReadSeconds">Reading, cleaning and splitting the source.</param>
/// <param name="IndexSeconds">Adding vectors to the vector index (encoding codes).</param>
/// <param name="CheckpointSeconds">Writing checkpoints (passage log flush, vector index save).</param>
/// <param name="FinishSeconds">Final checks, compaction, BM25 build, manifest.</param>
public sealed record RagIndexBuildReport(long DocumentsRead, long DocumentsIndexed, int Passages, long ResumedFromDocuments,
    IReadOnlyDictionary<string, long> Skipped, bool Finished, double Seconds, int PassagesThisRun, EmbeddingTimings Embedding,
    double ReadSeconds, double IndexSeconds, double CheckpointSeconds, double FinishSeconds)
{
    /// <summary>Passages embedded and indexed a second in this run.</summary>
    public double PassagesPerSecond => PassagesThisRun / Math.Max(Seconds, 1e-9);

    /// <summary>A few lines for people.</summary>
    public string Summary()
    {
        var e = Embedding;
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"{(Finished ? "index complete" : "stopped early (checkpoint kept; run again to resume)")}: {Passages:N0} passages from {DocumentsIndexed:N0} documents ({DocumentsRead:N0} read");
        if (ResumedFromDocuments > 0) sb.Append(CultureInfo.InvariantCulture, $", resumed after {ResumedFromDocuments:N0}");
        sb.AppendLine(")");
        sb.AppendLine("skipped: " + (Skipped.Count == 0 ? "nothing" : string.Join(", ", Skipped.Select(kv => $"{kv.Key} {kv.Value:N0}"))));
        sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"this run: {PassagesThisRun:N0} passages in {Seconds:F1} s ({PassagesPerSecond:F1} passages/s); read+split {ReadSeconds:F1} s, " +
            $"tokenize {e.Tokenize.TotalSeconds:F1} s, model {e.Model.TotalSeconds:F1} s, pool {e.Pool.TotalSeconds:F2} s, index {IndexSeconds:F2} s, " +
            $"checkpoints {CheckpointSeconds:F2} s, finish (BM25, checks) {FinishSeconds:F1} s"));
        return sb.ToString();
    }
}

/// <summary>
/// Builds a <see cref="RagIndex"/> directory from a <see cref="DocumentSource"/>: documents are split into passages,
/// embedded in batches, added to a Rotor.Index vector index (key = passage id; stored fields title, section, doc) and
/// appended to passages.jsonl. Every so often a checkpoint makes the work so far durable (passage log flushed to disk,
/// vector index saved atomically, then <c>checkpoint.json</c> written atomically with the documents and bytes
/// committed). A build that is killed resumes from its last checkpoint: the passage log is cut back to the committed
/// length, committed documents are read again but not embedded, and vectors are upserted by passage id, so nothing is
/// duplicated. At the end the BM25 index is built from passages.jsonl and the manifest is written (last).
/// </summary>
public static class RagIndexBuilder
{
    private const string CheckpointFormat = "rotor-rag-checkpoint";

    /// <summary>Builds (or resumes building) the index in <paramref name="directory"/>.</summary>
    /// <exception cref="RotorException">The directory holds a finished index (without Force), files without a checkpoint,
    /// or a checkpoint made with other settings or another source (the field is named).</exception>
    /// <exception cref="OperationCanceledException">Cancelled; a checkpoint was written first.</exception>
    public static RagIndexBuildReport Build(string directory, DocumentSource source, SentenceEmbedder embedder, RagIndexBuildOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(embedder);
        options ??= new RagIndexBuildOptions();
        options.Validate();
        var log = options.Log ?? Console.Error;
        var total = Stopwatch.StartNew();
        System.IO.Directory.CreateDirectory(directory);
        string manifestPath = Path.Combine(directory, RagIndex.ManifestFile), checkpointPath = Path.Combine(directory, RagIndex.CheckpointFile);
        string passagesPath = Path.Combine(directory, RagIndex.PassagesFile), vectorsPath = Path.Combine(directory, RagIndex.VectorsFile);
        string bm25Path = Path.Combine(directory, RagIndex.Bm25Folder);
        if (options.Force)
        {
            foreach (var f in new[] { manifestPath, checkpointPath, passagesPath, vectorsPath }) File.Delete(f);
            if (System.IO.Directory.Exists(bm25Path)) System.IO.Directory.Delete(bm25Path, recursive: true);
        }
        if (File.Exists(manifestPath)) throw new RotorException($"{directory}: holds a finished index ({RagIndex.ManifestFile}); use --force to rebuild it");

        var settings = Settings(source, embedder, options);
        var state = new State();
        if (File.Exists(checkpointPath)) state = LoadCheckpoint(checkpointPath, settings);
        else if (File.Exists(passagesPath) || File.Exists(vectorsPath))
            throw new RotorException($"{directory}: holds {RagIndex.PassagesFile} or {RagIndex.VectorsFile} but no {RagIndex.CheckpointFile}; use --force to start over");
        long resumedFrom = state.Documents;
        if (resumedFrom > 0) log.WriteLine($"resuming after {state.Documents:N0} documents ({state.Passages:N0} passages) from {checkpointPath}");

        VectorIndex vectors;
        if (state.Documents > 0 || File.Exists(vectorsPath))
        {
            vectors = VectorIndex.Open(vectorsPath, memoryMap: false);
            if (vectors.Count < state.Passages) throw new RotorException($"{vectorsPath}: holds {vectors.Count} vectors, {checkpointPath} committed {state.Passages}");
            if (vectors.Options.Code != options.Code || vectors.Options.Dimensions != embedder.Dimensions)
                throw new RotorException($"{vectorsPath}: {vectors.Options.Code} of {vectors.Options.Dimensions} dims, the build asks {options.Code} of {embedder.Dimensions}");
        }
        else
            vectors = VectorIndex.Create(new VectorIndexOptions
            {
                Dimensions = embedder.Dimensions, Code = options.Code, Metric = Metric.Cosine, Structure = IndexStructure.Flat,
                KeepFullPrecision = options.Code != CodeKind.Float32 && options.RescoreFactor > 1,
            });
        using var _v = vectors;

        var before = embedder.Timings;
        double readSec = 0, indexSec = 0, checkpointSec = 0;
        int passagesThisRun = 0;
        bool finished = true;
        var splitter = new PassageSplitter(options.TargetWords);
        var pending = new List<Passage>();
        long docsRead = 0, lastCheckpointDocs = state.Documents;
        var lastCheckpoint = Stopwatch.StartNew();
        var clock = Stopwatch.StartNew();
        var progressClock = Stopwatch.StartNew();
        double startFraction = -1;

        using (var passageLog = new FileStream(passagesPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read, 1 << 16))
        {
            if (passageLog.Length < state.LogBytes)
                throw new RotorException($"{passagesPath}: {passageLog.Length} bytes, shorter than the {state.LogBytes} bytes {checkpointPath} committed");
            passageLog.SetLength(state.LogBytes);
            passageLog.Seek(0, SeekOrigin.End);

            void Flush()
            {
                if (pending.Count == 0) return;
                var texts = pending.Select(IndexText.Of).ToList();
                var buf = new float[texts.Count * embedder.Dimensions];
                embedder.Embed(texts, buf);
                var sw = Stopwatch.StartNew();
                var records = new IndexRecord[pending.Count];
                for (int i = 0; i < pending.Count; i++)
                {
                    var p = pending[i];
                    records[i] = new IndexRecord(p.Id, buf.AsMemory(i * embedder.Dimensions, embedder.Dimensions),
                        new Dictionary<string, object> { ["title"] = p.Title, ["section"] = p.Section, ["doc"] = p.DocumentId });
                }
                vectors.Upsert(records);
                indexSec += sw.Elapsed.TotalSeconds;
                using (var w = new Utf8JsonWriter(passageLog, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
                    foreach (var p in pending)
                    {
                        w.WriteStartObject();
                        w.WriteString("id", p.Id); w.WriteString("doc", p.DocumentId); w.WriteString("title", p.Title);
                        w.WriteString("section", p.Section); w.WriteString("text", p.Text);
                        w.WriteEndObject();
                        w.Flush();
                        passageLog.WriteByte((byte)'\n');
                        w.Reset();
                    }
                state.Passages += pending.Count;
                passagesThisRun += pending.Count;
                pending.Clear();
            }

            void Checkpoint()
            {
                var sw = Stopwatch.StartNew();
                passageLog.Flush(flushToDisk: true);
                vectors.Save(vectorsPath);
                state.LogBytes = passageLog.Length;
                state.Documents = docsRead;
                AtomicFile.WriteAllText(checkpointPath, CheckpointJson(settings, state));
                checkpointSec += sw.Elapsed.TotalSeconds;
                lastCheckpoint.Restart();
                lastCheckpointDocs = docsRead;
            }

            void Progress(bool force)
            {
                if (!force && progressClock.Elapsed < TimeSpan.FromSeconds(3)) return;
                progressClock.Restart();
                double secs = clock.Elapsed.TotalSeconds, frac = source.Fraction;
                if (startFraction < 0) startFraction = frac;
                double rate = passagesThisRun / Math.Max(secs, 1e-9);
                string eta = frac >= 1 ? "0:00:00"
                    : frac > startFraction ? TimeSpan.FromSeconds(secs * (1 - frac) / (frac - startFraction)).ToString(@"h\:mm\:ss", CultureInfo.InvariantCulture)
                    : "unknown (too little read yet)";
                log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"indexing {source.Kind}: {source.Position}, {state.Passages + pending.Count:N0} passages ({rate:F1}/s), elapsed {TimeSpan.FromSeconds(secs):h\\:mm\\:ss}, ETA {eta}"));
            }

            var read = Stopwatch.StartNew();
            // With MaxDocuments the source stops at it (not one past): nothing after the documents asked for is read.
            using var e = source.ReadDocuments(options.MaxDocuments).GetEnumerator();
            while (true)
            {
                read.Restart();
                bool more = e.MoveNext();
                readSec += read.Elapsed.TotalSeconds;
                if (!more)
                {
                    if (options.MaxDocuments > 0 && docsRead >= options.MaxDocuments) finished = false; // more may follow
                    break;
                }
                docsRead++;
                if (startFraction < 0 && docsRead > state.Documents) startFraction = source.Fraction;
                if (docsRead <= state.Documents) continue; // committed by an earlier run
                if (cancellationToken.IsCancellationRequested)
                {
                    docsRead--;
                    Flush();
                    Checkpoint();
                    log.WriteLine($"interrupted: {docsRead:N0} documents committed to {checkpointPath}; run the same command again to resume");
                    cancellationToken.ThrowIfCancellationRequested();
                }
                var doc = e.Current;
                read.Restart();
                if (options.Include is not null && !options.Include(doc)) state.Excluded++;
                else
                {
                    var parts = options.SplitDocuments ? splitter.Split(doc).ToList() : WholeDocument(doc);
                    if (parts.Count == 0) state.Empty++;
                    else { state.Indexed++; pending.AddRange(parts); }
                }
                readSec += read.Elapsed.TotalSeconds;
                options.AfterDocument?.Invoke(docsRead);
                if (pending.Count >= options.BatchPassages) Flush();
                bool due = (options.CheckpointEveryDocuments > 0 && docsRead - lastCheckpointDocs >= options.CheckpointEveryDocuments)
                           || lastCheckpoint.Elapsed >= options.CheckpointInterval;
                if (due) { Flush(); Checkpoint(); }
                Progress(force: false);
            }
            Flush();
            Checkpoint();
            Progress(force: true);
        }

        var after = embedder.Timings;
        var timings = new EmbeddingTimings(after.Texts - before.Texts, after.Tokens - before.Tokens, after.PaddedTokens - before.PaddedTokens,
            after.Tokenize - before.Tokenize, after.Model - before.Model, after.Pool - before.Pool);
        var skipped = new Dictionary<string, long>(source.Skipped) { ["empty"] = state.Empty };
        if (options.Include is not null) skipped["excluded"] = state.Excluded;
        double finishSec = 0;
        if (finished)
        {
            var sw = Stopwatch.StartNew();
            Finish(directory, source, embedder, options, vectors, state, skipped, docsRead);
            finishSec = sw.Elapsed.TotalSeconds;
        }
        return new RagIndexBuildReport(docsRead, state.Indexed, state.Passages, resumedFrom, skipped, finished, total.Elapsed.TotalSeconds,
            passagesThisRun, timings, readSec, indexSec, checkpointSec, finishSec);
    }

    private static List<Passage> WholeDocument(Document doc)
    {
        string text = string.Join(" ", doc.Sections.Select(s => s.Text)).Trim();
        return text.Length == 0 ? [] : [new Passage(doc.Id, doc.Id, doc.Title, "", text)];
    }

    private static void Finish(string directory, DocumentSource source, SentenceEmbedder embedder, RagIndexBuildOptions options, VectorIndex vectors,
        State state, Dictionary<string, long> skipped, long docsRead)
    {
        string passagesPath = Path.Combine(directory, RagIndex.PassagesFile), vectorsPath = Path.Combine(directory, RagIndex.VectorsFile);
        string bm25Path = Path.Combine(directory, RagIndex.Bm25Folder);
        var passages = PassageFile.Read(passagesPath).ToList(); // checks every line and that no id repeats
        if (passages.Count != state.Passages) throw new RotorException($"{passagesPath}: holds {passages.Count} passages, the build committed {state.Passages}");
        if (vectors.Count != passages.Count) throw new RotorException($"{vectorsPath}: holds {vectors.Count} vectors for {passages.Count} passages");
        foreach (var p in passages)
            if (!vectors.Contains(p.Id)) throw new RotorException($"{vectorsPath}: passage '{p.Id}' has no vector");
        if (vectors.Stats.Slots != vectors.Count) { vectors.Compact(); vectors.Save(vectorsPath); }
        Bm25Index.Build(bm25Path, passages.Select(IndexText.Of)).Dispose();
        var (bmFiles, bmBytes) = RagIndex.FolderSize(bm25Path);
        var manifest = new RagManifest
        {
            ModelName = embedder.ModelId, ModelSha256 = embedder.ModelSha256, Dimensions = embedder.Dimensions, MaxTokens = embedder.Options.MaxTokens,
            Code = options.Code, RescoreFactor = options.Code == CodeKind.Float32 ? 0 : options.RescoreFactor,
            SourceKind = source.Kind, SourcePath = source.Path, Documents = state.Indexed, Passages = passages.Count, Skipped = skipped,
            PassagesFile = FileStamp.Of(passagesPath), VectorsFile = FileStamp.Of(vectorsPath), Bm25Files = bmFiles, Bm25Bytes = bmBytes,
            CreatedUtc = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
        };
        AtomicFile.WriteAllText(Path.Combine(directory, RagIndex.ManifestFile), manifest.ToJson());
        File.Delete(Path.Combine(directory, RagIndex.CheckpointFile));
    }

    // ---- checkpoint ---------------------------------------------------------------------------------------------

    private sealed class State
    {
        public long Documents, LogBytes, Indexed, Empty, Excluded;
        public int Passages;
    }

    // What must not change between a build and its resumption.
    private static JsonObject Settings(DocumentSource source, SentenceEmbedder embedder, RagIndexBuildOptions o) => new()
    {
        ["source.kind"] = source.Kind,
        ["source.path"] = Path.GetFullPath(source.Path),
        ["source.bytes"] = source.SizeBytes,
        ["model.sha256"] = embedder.ModelSha256,
        ["model.maxTokens"] = embedder.Options.MaxTokens,
        ["code"] = o.Code.ToString(),
        ["rescoreFactor"] = o.RescoreFactor,
        ["targetWords"] = o.TargetWords,
        ["split"] = o.SplitDocuments,
        ["filtered"] = o.Include is not null,
    };

    private static string CheckpointJson(JsonObject settings, State s)
    {
        var o = new JsonObject
        {
            ["format"] = CheckpointFormat,
            ["version"] = 1,
            ["settings"] = settings.DeepClone(),
            ["documents"] = s.Documents,
            ["passages"] = s.Passages,
            ["passagesBytes"] = s.LogBytes,
            ["indexed"] = s.Indexed,
            ["empty"] = s.Empty,
            ["excluded"] = s.Excluded,
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    private static State LoadCheckpoint(string path, JsonObject settings)
    {
        JsonObject o;
        try { o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new RotorException($"{path}: expected a JSON object"); }
        catch (JsonException e) { throw new RotorException($"{path}: not valid JSON: {e.Message}", e); }
        if ((string?)o["format"] != CheckpointFormat || (int?)o["version"] != 1)
            throw new RotorException($"{path}: not a version-1 {CheckpointFormat} file");
        var saved = o["settings"] as JsonObject ?? throw new RotorException($"{path}: field 'settings' is missing");
        foreach (var (key, value) in settings)
        {
            string now = value?.ToJsonString() ?? "null", then = saved[key]?.ToJsonString() ?? "missing";
            if (now != then) throw new RotorException($"{path}: settings.{key} was {then}, this run has {now}; resume with the same source and options, or use --force to start over");
        }
        long Num(string f) => o[f] is JsonValue v && v.TryGetValue(out long x) && x >= 0 ? x : throw new RotorException($"{path}: field '{f}' is missing or not a non-negative integer");
        return new State
        {
            Documents = Num("documents"), Passages = checked((int)Num("passages")), LogBytes = Num("passagesBytes"),
            Indexed = Num("indexed"), Empty = Num("empty"), Excluded = Num("excluded"),
        };
    }
}
