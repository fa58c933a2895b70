using System.Buffers.Binary;
using System.Globalization;
using System.Numerics.Tensors;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Rotor.Index;
using Rotor.Rag.Corpus;
using Rotor.Rag.Search;

namespace Rotor.Cluster;

/// <summary>
/// One replica of one shard on a silo's disk: Rotor's own files in a folder.
/// <code>
/// passages.jsonl   the shard's passages, Rotor.Rag PassageFile lines, in ordinal order (local ordinal = line)
/// ordinals.bin     int64 little-endian a passage: its global ordinal (position in the whole corpus)
/// vectors.rix      Rotor.Index VectorIndex, cosine, key = passage id, slots in local ordinal order
/// bm25/            Bm25Index over IndexText.Of(passage) (built when sealed)
/// shard.json       written last, atomically: settings, committed counts and lengths, sealed flag, file hashes
/// </code>
/// Appends are kept in memory until <see cref="Commit"/> makes them durable in this order: passage and ordinal logs
/// flushed to disk, vector index saved atomically, shard.json written atomically. On open the logs are cut back to the
/// committed lengths and vectors beyond the committed passages are dropped, so a replica killed mid-commit reopens at
/// its last commit. <see cref="Seal"/> builds BM25 and lists every file with its SHA-256: a sealed shard is
/// searchable and can be copied to another silo file by file.
/// Searching is thread-safe; appending, committing and sealing are not (the grain serializes them).
/// </summary>
public sealed class ShardStore : IDisposable
{
    /// <summary>The state file, written last.</summary>
    public const string StateFile = "shard.json";
    private const string PassagesFile = "passages.jsonl", OrdinalsFile = "ordinals.bin", VectorsFile = "vectors.rix", Bm25Folder = "bm25";
    private const string Format = "rotor-cluster-shard";

    private readonly List<ClusterPassage> _passages = [];
    private readonly Dictionary<string, int> _localOf = new(StringComparer.Ordinal);
    private VectorIndex _vectors;
    private Bm25Index? _bm25;
    private int _committed;
    private long _passageBytes, _ordinalBytes;
    private List<ShardFile> _files = [];

    private ShardStore(string folder, int shard, ShardSettings settings, VectorIndex vectors)
    {
        Folder = folder; Shard = shard; Settings = settings; _vectors = vectors;
    }

    /// <summary>The shard folder.</summary>
    public string Folder { get; }

    /// <summary>Shard number.</summary>
    public int Shard { get; }

    /// <summary>Settings it was made with.</summary>
    public ShardSettings Settings { get; }

    /// <summary>Passages held (committed or not).</summary>
    public int Count => _passages.Count;

    /// <summary>Passages made durable by the last <see cref="Commit"/>.</summary>
    public int Committed => _committed;

    /// <summary>Global ordinal of the last passage, or -1.</summary>
    public long LastOrdinal => _passages.Count == 0 ? -1 : _passages[^1].Ordinal;

    /// <summary>True when searchable: BM25 built and files listed.</summary>
    public bool Sealed => _bm25 is not null;

    /// <summary>The files of a sealed shard with their sizes and hashes (shard.json last).</summary>
    public IReadOnlyList<ShardFile> Files => Sealed ? _files : throw new RotorException($"{Folder}: shard {Shard} is not sealed; its files are still changing");

    /// <summary>Bytes on disk.</summary>
    public long Bytes => Directory.Exists(Folder) ? new DirectoryInfo(Folder).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length) : 0;

    /// <summary>Opens the shard in <paramref name="folder"/>, or creates an empty one there.</summary>
    /// <exception cref="RotorException">The folder holds another shard, other settings, or damaged files (named).</exception>
    public static ShardStore OpenOrCreate(string folder, int shard, ShardSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        settings.Validate();
        Directory.CreateDirectory(folder);
        string statePath = Path.Combine(folder, StateFile);
        if (!File.Exists(statePath))
        {
            foreach (var f in new[] { PassagesFile, OrdinalsFile, VectorsFile }) File.Delete(Path.Combine(folder, f));
            if (Directory.Exists(Path.Combine(folder, Bm25Folder))) Directory.Delete(Path.Combine(folder, Bm25Folder), true);
            var vectors = Reproducible(VectorIndex.Create(new VectorIndexOptions
            {
                Dimensions = settings.Dimensions, Code = settings.Code, Metric = Metric.Cosine, Structure = settings.Structure,
                KeepFullPrecision = settings.Rescores,
            }));
            var created = new ShardStore(folder, shard, settings, vectors);
            created.Commit();
            return created;
        }
        return Open(folder, shard, settings, statePath);
    }

    /// <summary>The settings a shard folder was made with, or null when it holds no shard.</summary>
    /// <exception cref="RotorException">shard.json is unreadable.</exception>
    public static ShardSettings? ReadSettings(string folder)
    {
        string statePath = Path.Combine(folder, StateFile);
        if (!File.Exists(statePath)) return null;
        try
        {
            var root = JsonNode.Parse(File.ReadAllText(statePath));
            return JsonSerializer.Deserialize(root?["settings"]?.ToJsonString() ?? "null", ClusterJson.Default.ShardSettings)
                   ?? throw new RotorException($"{statePath}: field 'settings' missing");
        }
        catch (JsonException e) { throw new RotorException($"{statePath}: invalid JSON: {e.Message}", e); }
    }

    private static ShardStore Open(string folder, int shard, ShardSettings settings, string statePath)
    {
        JsonNode root;
        try { root = JsonNode.Parse(File.ReadAllText(statePath)) ?? throw new RotorException($"{statePath}: empty"); }
        catch (JsonException e) { throw new RotorException($"{statePath}: invalid JSON: {e.Message}", e); }
        string Str(string name) => root[name]?.GetValue<string>() ?? throw new RotorException($"{statePath}: field '{name}' missing");
        long Num(string name) => root[name]?.GetValue<long>() ?? throw new RotorException($"{statePath}: field '{name}' missing");
        if (Str("format") != Format) throw new RotorException($"{statePath}: format is '{Str("format")}', expected '{Format}'");
        if (Num("shard") != shard) throw new RotorException($"{statePath}: holds shard {Num("shard")}, expected {shard}");
        var have = JsonSerializer.Deserialize(root["settings"]?.ToJsonString() ?? "null", ClusterJson.Default.ShardSettings)
                   ?? throw new RotorException($"{statePath}: field 'settings' missing");
        if (have != settings) throw new RotorException($"{statePath}: made with settings {have}, the cluster has {settings}");
        int committed = checked((int)Num("passages"));
        long passageBytes = Num("passagesBytes"), ordinalBytes = Num("ordinalsBytes");
        bool isSealed = root["sealed"]?.GetValue<bool>() ?? false;

        string passagesPath = Path.Combine(folder, PassagesFile), ordinalsPath = Path.Combine(folder, OrdinalsFile), vectorsPath = Path.Combine(folder, VectorsFile);
        CutBack(passagesPath, passageBytes);
        CutBack(ordinalsPath, ordinalBytes);
        if (ordinalBytes != committed * 8L) throw new RotorException($"{statePath}: ordinalsBytes {ordinalBytes} is not 8 x passages {committed}");
        var vectors = Reproducible(committed == 0 && !File.Exists(vectorsPath)
            ? VectorIndex.Create(new VectorIndexOptions { Dimensions = settings.Dimensions, Code = settings.Code, Metric = Metric.Cosine, Structure = settings.Structure, KeepFullPrecision = settings.Rescores })
            : VectorIndex.Open(vectorsPath, memoryMap: false));
        var store = new ShardStore(folder, shard, settings, vectors) { _passageBytes = passageBytes, _ordinalBytes = ordinalBytes };
        try
        {
            var ordinals = File.ReadAllBytes(ordinalsPath);
            int i = 0;
            foreach (var p in PassageFile.Read(passagesPath))
            {
                if (i >= committed) throw new RotorException($"{passagesPath}: more passages than the {committed} of {statePath}");
                long ord = BinaryPrimitives.ReadInt64LittleEndian(ordinals.AsSpan(i * 8));
                if (ord <= store.LastOrdinal) throw new RotorException($"{ordinalsPath}: ordinal {ord} of passage {i} does not increase");
                store._localOf[p.Id] = i;
                store._passages.Add(ClusterPassage.From(ord, p));
                i++;
            }
            if (i != committed) throw new RotorException($"{passagesPath}: {i} passages, {statePath} committed {committed}");
            // Vectors saved by a commit that did not reach shard.json belong to no committed passage: drop them.
            var extra = vectors.Query(null, int.MaxValue, includeVectors: false).Select(r => r.Key).Where(k => !store._localOf.ContainsKey(k)).ToList();
            if (extra.Count > 0) { vectors.Delete(extra); vectors.Compact(); }
            if (vectors.Count != committed) throw new RotorException($"{vectorsPath}: {vectors.Count} vectors for {committed} passages");
            store._committed = committed;
            if (isSealed)
            {
                store._files = (root["files"] as JsonArray ?? throw new RotorException($"{statePath}: a sealed shard needs 'files'"))
                    .Select(f => new ShardFile(f!["path"]!.GetValue<string>(), f["bytes"]!.GetValue<long>(), f["sha256"]!.GetValue<string>())).ToList();
                foreach (var f in store._files)
                {
                    var fi = new FileInfo(Path.Combine(folder, f.Path));
                    if (!fi.Exists || fi.Length != f.Bytes) throw new RotorException($"{fi.FullName}: {(fi.Exists ? fi.Length + " bytes" : "missing")}, {statePath} lists {f.Bytes} bytes");
                }
                store._bm25 = Bm25Index.Open(Path.Combine(folder, Bm25Folder));
                if (store._bm25.Count != committed) throw new RotorException($"{Path.Combine(folder, Bm25Folder)}: {store._bm25.Count} documents for {committed} passages");
            }
            return store;
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    // Every replica of a shard builds its own HNSW graph from the same passages in the same (ordinal) order, in batches
    // that differ with the ingestion's timing and across restarts; inserting one vector after another makes the graph,
    // and so the file and every answer, the same on every replica. A silo holds several shards, which insert in parallel.
    private static VectorIndex Reproducible(VectorIndex vectors)
    {
        vectors.GraphBuildThreads = 1;
        return vectors;
    }

    private static void CutBack(string path, long length)
    {
        if (!File.Exists(path)) { if (length == 0) return; throw new RotorException($"{path}: missing, {StateFile} committed {length} bytes"); }
        using var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        if (fs.Length < length) throw new RotorException($"{path}: {fs.Length} bytes, shorter than the {length} bytes committed");
        fs.SetLength(length);
    }

    /// <summary>Takes in passages with their vectors. Passages whose ordinal is not past <see cref="LastOrdinal"/> are
    /// already here (a batch sent again after a failure) and are skipped. Unseals the shard.</summary>
    /// <exception cref="RotorException">A passage belongs to another shard, repeats an id, or the vectors do not fit.</exception>
    public void Append(ShardBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        int d = Settings.Dimensions;
        if (batch.Vectors.Length != batch.Passages.Count * d)
            throw new RotorException($"shard {Shard}: batch of {batch.Passages.Count} passages carries {batch.Vectors.Length} floats, expected {batch.Passages.Count * d}");
        var records = new List<IndexRecord>();
        for (int i = 0; i < batch.Passages.Count; i++)
        {
            var p = batch.Passages[i];
            if (p.Ordinal <= LastOrdinal) continue;
            int s = ShardAssignment.ShardOf(p.Id, Settings.Shards);
            if (s != Shard) throw new RotorException($"passage '{p.Id}' belongs to shard {s}, not {Shard}");
            if (_localOf.ContainsKey(p.Id)) throw new RotorException($"shard {Shard}: passage id '{p.Id}' repeats");
            Unseal();
            _localOf[p.Id] = _passages.Count;
            _passages.Add(p);
            records.Add(new IndexRecord(p.Id, batch.Vectors.AsMemory(i * d, d)));
        }
        // Add, not upsert: slots then follow local ordinals, the tie-break of the scan.
        if (records.Count > 0) _vectors.Add(records);
    }

    private void Unseal()
    {
        if (_bm25 is null) return;
        _bm25.Dispose();
        _bm25 = null;
        _files = [];
    }

    /// <summary>Makes every appended passage durable (see the class summary for the order).</summary>
    public void Commit()
    {
        string passagesPath = Path.Combine(Folder, PassagesFile), ordinalsPath = Path.Combine(Folder, OrdinalsFile);
        if (_passages.Count > _committed || !File.Exists(passagesPath))
        {
            using (var log = new FileStream(passagesPath, FileMode.OpenOrCreate, FileAccess.Write))
            {
                log.SetLength(_passageBytes);
                log.Seek(0, SeekOrigin.End);
                var tail = _passages.Skip(_committed).Select(p => p.ToPassage()).ToList();
                var buffer = new MemoryStream();
                foreach (var p in tail)
                {
                    using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
                    {
                        w.WriteStartObject();
                        w.WriteString("id", p.Id); w.WriteString("doc", p.DocumentId); w.WriteString("title", p.Title);
                        w.WriteString("section", p.Section); w.WriteString("text", p.Text);
                        w.WriteEndObject();
                    }
                    buffer.WriteByte((byte)'\n');
                }
                buffer.Position = 0;
                buffer.CopyTo(log);
                log.Flush(flushToDisk: true);
                _passageBytes = log.Length;
            }
            using (var ords = new FileStream(ordinalsPath, FileMode.OpenOrCreate, FileAccess.Write))
            {
                ords.SetLength(_ordinalBytes);
                ords.Seek(0, SeekOrigin.End);
                Span<byte> b = stackalloc byte[8];
                foreach (var p in _passages.Skip(_committed)) { BinaryPrimitives.WriteInt64LittleEndian(b, p.Ordinal); ords.Write(b); }
                ords.Flush(flushToDisk: true);
                _ordinalBytes = ords.Length;
            }
        }
        _vectors.Save(Path.Combine(Folder, VectorsFile));
        _committed = _passages.Count;
        WriteState();
    }

    /// <summary>Commits, builds the BM25 index and lists the files with their hashes: the shard becomes searchable.</summary>
    public void Seal()
    {
        if (Sealed) return;
        Commit();
        var bm25 = Bm25Index.Build(Path.Combine(Folder, Bm25Folder), _passages.Select(p => IndexText.Of(p.ToPassage())));
        _files = Directory.EnumerateFiles(Folder, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(Folder, f).Replace(Path.DirectorySeparatorChar, '/'))
            .Where(f => f != StateFile && !f.EndsWith(".rotor.tmp", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .Select(f => Stamp(Folder, f)).ToList();
        _bm25 = bm25;
        WriteState();
    }

    private static ShardFile Stamp(string folder, string relative)
    {
        string full = Path.Combine(folder, relative);
        using var fs = File.OpenRead(full);
        return new ShardFile(relative, fs.Length, Convert.ToHexStringLower(SHA256.HashData(fs)));
    }

    private void WriteState()
    {
        var root = new JsonObject
        {
            ["format"] = Format, ["version"] = 1, ["shard"] = Shard,
            ["settings"] = JsonNode.Parse(JsonSerializer.Serialize(Settings, ClusterJson.Default.ShardSettings)),
            ["passages"] = _committed, ["passagesBytes"] = _passageBytes, ["ordinalsBytes"] = _ordinalBytes,
            ["sealed"] = _bm25 is not null,
        };
        if (_bm25 is not null)
            root["files"] = new JsonArray(_files.Select(f => (JsonNode)new JsonObject { ["path"] = f.Path, ["bytes"] = f.Bytes, ["sha256"] = f.Sha256 }).ToArray());
        AtomicFile.WriteAllText(Path.Combine(Folder, StateFile), root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    private Bm25Index Lexical => _bm25 ?? throw new RotorException($"shard {Shard} in {Folder} is not sealed: finish the ingestion ('rotor cluster ingest') before searching");

    /// <summary>This shard's BM25 statistics for the query terms of <paramref name="text"/>.</summary>
    public WireBm25Statistics Statistics(string text) => WireBm25Statistics.From(Lexical.Statistics(text));

    /// <summary>
    /// The shard's candidates for a query. Dense: the code's best <c>Candidates x RescoreFactor</c> (or
    /// <c>Candidates</c> without rescoring) with their code scores and, when rescoring, their cosines with the kept
    /// float32 vectors, computed as <see cref="VectorIndex"/> rescores (the query made unit length, then one dot
    /// product). Lexical: the best <c>Candidates</c> by BM25 with the collection's statistics. The front door merges
    /// these exactly as one index of the whole corpus would rank them (<see cref="ClusterRetriever"/>).
    /// </summary>
    public ShardHits Search(ShardQuery query)
    {
        ArgumentNullException.ThrowIfNull(query);
        var lexicalIndex = Lexical;
        if (query.Candidates < 1) throw new ArgumentOutOfRangeException(nameof(query), query.Candidates, "candidates must be positive");
        DenseCandidate[] dense = [];
        LexicalCandidate[] lexical = [];
        if (query.Mode != RetrievalMode.Lexical && _passages.Count > 0)
        {
            var v = query.Vector ?? throw new RotorException($"{query.Mode} search needs the query vector");
            bool rescore = Settings.Rescores;
            int want = rescore ? query.Candidates * Settings.RescoreFactor : query.Candidates;
            var hits = _vectors.Search(v, want, new SearchOptions { IncludeFields = false, IncludeVectors = rescore, EfSearch = query.EfSearch });
            float[] unit = v.ToArray();
            float n = TensorPrimitives.Norm(unit);
            if (n > 0) TensorPrimitives.Divide(unit, n, unit);
            dense = new DenseCandidate[hits.Count];
            for (int i = 0; i < hits.Count; i++)
            {
                long ord = _passages[_localOf[hits[i].Key]].Ordinal;
                float score = rescore ? TensorPrimitives.Dot(unit, hits[i].Vector) : hits[i].Score;
                dense[i] = new DenseCandidate(ord, hits[i].Score, score);
            }
        }
        if (query.Mode != RetrievalMode.Dense && _passages.Count > 0)
        {
            var global = query.Lexical ?? throw new RotorException($"{query.Mode} search needs the collection's BM25 statistics");
            var hits = lexicalIndex.Search(query.Text, query.Candidates, global.ToStatistics());
            lexical = hits.Select(h => new LexicalCandidate(_passages[h.Ordinal].Ordinal, h.Score)).ToArray();
        }
        return new ShardHits(dense, lexical);
    }

    /// <summary>The passages with these global ordinals (each must be in this shard).</summary>
    /// <exception cref="RotorException">An ordinal is not in this shard.</exception>
    public ClusterPassage[] Fetch(IReadOnlyList<long> ordinals)
    {
        ArgumentNullException.ThrowIfNull(ordinals);
        var result = new ClusterPassage[ordinals.Count];
        for (int i = 0; i < result.Length; i++)
        {
            int lo = 0, hi = _passages.Count - 1, at = -1;
            while (lo <= hi)
            {
                int mid = (lo + hi) >>> 1;
                long o = _passages[mid].Ordinal;
                if (o == ordinals[i]) { at = mid; break; }
                if (o < ordinals[i]) lo = mid + 1; else hi = mid - 1;
            }
            result[i] = at >= 0 ? _passages[at] : throw new RotorException($"shard {Shard} holds no passage with ordinal {ordinals[i]}");
        }
        return result;
    }

    /// <summary>All passages, in ordinal order (for checks and tools).</summary>
    public IReadOnlyList<ClusterPassage> Passages => _passages;

    /// <summary>Reads <paramref name="count"/> bytes of a listed file from <paramref name="offset"/> (fewer at its end).</summary>
    /// <exception cref="RotorException">The path is not one of <see cref="Files"/>.</exception>
    public byte[] ReadChunk(string path, long offset, int count)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!Files.Any(f => f.Path == path) && path != StateFile) throw new RotorException($"shard {Shard}: '{path}' is not one of its files");
        using var fs = File.OpenRead(Path.Combine(Folder, path));
        fs.Seek(offset, SeekOrigin.Begin);
        var buf = new byte[(int)Math.Clamp(fs.Length - offset, 0, count)];
        fs.ReadExactly(buf);
        return buf;
    }

    /// <summary>
    /// Makes <paramref name="folder"/> a copy of a sealed replica whose files are <paramref name="files"/> and whose state
    /// file is <paramref name="state"/>: every file is fetched with <paramref name="read"/> into a temp folder beside it,
    /// its size and SHA-256 checked, then the temp folder replaces the target and the copy is opened.
    /// </summary>
    /// <exception cref="RotorException">A fetched file differs from its listing.</exception>
    public static async Task<ShardStore> InstallCopyAsync(string folder, int shard, ShardSettings settings, IReadOnlyList<ShardFile> files, byte[] state,
        Func<string, long, int, Task<byte[]>> read, CancellationToken cancellationToken = default)
    {
        const int Chunk = 1 << 20;
        string full = Path.GetFullPath(folder).TrimEnd(Path.DirectorySeparatorChar);
        string temp = full + ".copy-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            foreach (var f in files)
            {
                if (f.Path.Contains("..", StringComparison.Ordinal) || Path.IsPathRooted(f.Path)) throw new RotorException($"shard {shard}: refusing the file path '{f.Path}'");
                string target = Path.Combine(temp, f.Path);
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                using (var fs = new FileStream(target, FileMode.Create, FileAccess.Write))
                {
                    for (long off = 0; off < f.Bytes; off += Chunk)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        var part = await read(f.Path, off, (int)Math.Min(Chunk, f.Bytes - off)).ConfigureAwait(false);
                        if (part.Length == 0) throw new RotorException($"shard {shard}: '{f.Path}' ended at {off} bytes of {f.Bytes}");
                        fs.Write(part);
                    }
                    fs.Flush(flushToDisk: true);
                }
                var got = Stamp(temp, f.Path);
                if (got.Bytes != f.Bytes || got.Sha256 != f.Sha256)
                    throw new RotorException($"shard {shard}: copy of '{f.Path}' has {got.Bytes} bytes, SHA-256 {got.Sha256}; the source lists {f.Bytes} bytes, {f.Sha256}");
            }
            AtomicFile.WriteAllBytes(Path.Combine(temp, StateFile), state);
            if (Directory.Exists(full)) Directory.Delete(full, recursive: true);
            Directory.Move(temp, full);
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
        return OpenOrCreate(full, shard, settings);
    }

    /// <summary>Closes the indexes.</summary>
    public void Dispose()
    {
        _vectors.Dispose();
        _bm25?.Dispose();
    }

    internal static string Describe(ShardSettings s) => string.Create(CultureInfo.InvariantCulture,
        $"{s.Shards} shards x {s.Replicas} replicas, {s.Code} codes of {s.Dimensions} dims, rescore {s.RescoreFactor}, {s.Structure}");
}

/// <summary>Source-generated JSON for the cluster's files.</summary>
[System.Text.Json.Serialization.JsonSerializable(typeof(ShardSettings))]
[System.Text.Json.Serialization.JsonSourceGenerationOptions(UseStringEnumConverter = true)]
internal sealed partial class ClusterJson : System.Text.Json.Serialization.JsonSerializerContext;
