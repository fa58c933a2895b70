using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Rotor.Index;

/// <summary>
/// A vector index: records (key, vector, stored fields) searched by similarity, exactly (<see cref="IndexStructure.Flat"/>)
/// or through an HNSW graph, over float32, int8, ternary or binary codes (<see cref="CodeKind"/>).
/// <para>Threading: any number of readers (<see cref="Search"/>, <see cref="Get"/>, <see cref="Count"/>, <see cref="Save"/>)
/// run concurrently; a writer (<see cref="Add"/>, <see cref="Upsert"/>, <see cref="Delete(string)"/>, <see cref="Compact"/>)
/// waits for them and excludes them, so a search sees every batch entirely or not at all.</para>
/// <para>Deleting marks a slot; <see cref="Compact"/> removes marked slots (and rebuilds the graph).</para>
/// </summary>
public sealed unsafe class VectorIndex : IDisposable
{
    private const int Chunk = 1024;
    private readonly ReaderWriterLockSlim _lock = new(LockRecursionPolicy.NoRecursion);
    private CodeStore _store;
    private Hnsw? _graph;
    private List<string> _keys = [];
    private List<IReadOnlyDictionary<string, object>?> _fields = [];
    private ulong[] _deleted = new ulong[1];
    private Dictionary<string, int> _slotOf = new(StringComparer.Ordinal);
    private bool _disposed;
    // The file this index was last loaded from or saved to, and its length and write time then: a save over it checks
    // that no other writer replaced it meanwhile (which would lose that writer's changes).
    private (string Path, long Length, DateTime Written)? _origin;

    private VectorIndex(VectorIndexOptions options)
    {
        options.Validate();
        Options = options;
        Layout = new CodeLayout(options.Code, options.Dimensions);
        _store = new CodeStore(Layout, options.KeepFullPrecision);
        if (options.Structure == IndexStructure.Hnsw) _graph = new Hnsw(_store, options.Metric, options.Hnsw);
    }

    /// <summary>Creates an empty index.</summary>
    public static VectorIndex Create(VectorIndexOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new VectorIndex(options);
    }

    /// <summary>Loads an index file written by <see cref="Save"/> (see docs/INDEX_FORMAT.md). Large sections are
    /// memory-mapped (<paramref name="memoryMap"/>: null maps files of 64 MiB and more) and then verified lazily: opening
    /// reads the header and the small sections (checked at once); the codes and full-precision vectors are checked 4 KiB
    /// at a time when a search, <see cref="Get"/>, <see cref="Save"/> or a write first reads them, so that open time and
    /// resident memory follow what the queries touch. <see cref="VerifyFile"/> checks everything at once.</summary>
    /// <param name="path">The index file.</param>
    /// <param name="memoryMap">Map the codes and vectors (true), copy them to memory (false, verified while copied), or
    /// map files of 64 MiB and more (null).</param>
    /// <param name="verifyChecksums">Check sections against their checksums (on open or on first use, as above).</param>
    /// <exception cref="RotorException">The file is missing, truncated, corrupt or of another version (the message says
    /// which). A damaged mapped chunk throws the same way from the first call that reads it.</exception>
    public static VectorIndex Open(string path, bool? memoryMap = null, bool verifyChecksums = true)
    {
        var stamp = Stamp(path);
        var index = IndexFile.Load(path, memoryMap, verifyChecksums, CreateForLoad);
        index._origin = stamp;
        return index;
    }

    internal static VectorIndex CreateForLoad(VectorIndexOptions options) => new(options);

    /// <summary>Checks a whole index file: header, every section and every 4 KiB chunk against its checksum (reading
    /// the file once, in order), then its structure (keys, fields, graph). The lazy checks of <see cref="Open"/> find
    /// damage only where a query reads; this finds it anywhere.</summary>
    /// <param name="path">The index file.</param>
    /// <param name="progress">Called with bytes checked and the total, after each block of up to 8 MiB.</param>
    /// <exception cref="RotorException">The file is damaged (the message names it and the section) or not an index.</exception>
    public static void VerifyFile(string path, Action<long, long>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        IndexFile.Verify(path, progress);
    }

    /// <summary>Bytes of the lazily verified (mapped) sections checked so far, and their total; (0, 0) when nothing is
    /// mapped or verification is off.</summary>
    internal (long Checked, long Total) MappedChecked { get { using var _ = Read(); return _store.MappedChecked; } }

    private static (string, long, DateTime)? Stamp(string path)
    {
        var f = new FileInfo(Path.GetFullPath(path));
        return f.Exists ? (f.FullName, f.Length, f.LastWriteTimeUtc) : null;
    }

    /// <summary>What the index is.</summary>
    public VectorIndexOptions Options { get; }
    internal CodeLayout Layout { get; }
    internal CodeStore Store => _store;
    internal Hnsw? Graph => _graph;
    internal IReadOnlyList<string> Keys => _keys;
    internal IReadOnlyList<IReadOnlyDictionary<string, object>?> FieldsBySlot => _fields;
    internal ulong[] DeletedBits => _deleted;

    /// <summary>Threads that insert into the HNSW graph (<see cref="Add"/>, <see cref="Upsert"/>, <see cref="Compact"/>):
    /// 0 (the default) uses <see cref="Rotor.Threading.ThreadCount.Default"/>; 1 inserts one record after another, so
    /// that the graph depends only on the vectors, their order and <see cref="HnswSettings"/>: two indexes given the
    /// same records in the same order, in any batches and across saves and reopens, hold the same graph (with float32
    /// codes, on machines whose dot products sum in the same order). Not stored in the file.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative.</exception>
    public int GraphBuildThreads
    {
        get => _graphBuildThreads;
        set { ArgumentOutOfRangeException.ThrowIfNegative(value); _graphBuildThreads = value; }
    }

    private int _graphBuildThreads;

    /// <summary>Live records.</summary>
    public int Count { get { using var _ = Read(); return _slotOf.Count; } }

    /// <summary>Sizes and counts.</summary>
    public IndexStats Stats
    {
        get
        {
            using var _ = Read();
            return new IndexStats(_slotOf.Count, _store.Count, Layout.Bytes, _store.Codes.Length, _store.Full?.Length ?? 0,
                _graph?.Bytes ?? 0, _store.Codes.IsMapped);
        }
    }

    // ---- writes -----------------------------------------------------------------------------------------------

    /// <summary>Adds records; every key must be new.</summary>
    /// <exception cref="RotorException">A key exists or repeats in the batch, a vector has the wrong length or a NaN.</exception>
    public void Add(IEnumerable<IndexRecord> records, IProgress<int>? progress = null) => Write(records, upsert: false, progress);

    /// <summary>Adds records, replacing those whose key exists.</summary>
    public void Upsert(IEnumerable<IndexRecord> records, IProgress<int>? progress = null) => Write(records, upsert: true, progress);

    private void Write(IEnumerable<IndexRecord> records, bool upsert, IProgress<int>? progress)
    {
        ArgumentNullException.ThrowIfNull(records);
        var batch = records as IReadOnlyList<IndexRecord> ?? records.ToList();
        int d = Options.Dimensions, n = batch.Count;
        if (n == 0) return;
        // Validate and prepare outside the lock: readers keep running meanwhile.
        var rows = new float[(long)n * d];
        var fields = new IReadOnlyDictionary<string, object>?[n];
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < n; i++)
        {
            var r = batch[i] ?? throw new ArgumentException($"record {i} is null", nameof(records));
            if (string.IsNullOrEmpty(r.Key)) throw new RotorException($"record {i}: the key is empty");
            if (r.Vector.Length != d) throw new RotorException($"record '{r.Key}': vector has {r.Vector.Length} dimensions, the index has {d}");
            if (!upsert && !seen.TryAdd(r.Key, i)) throw new RotorException($"record '{r.Key}' appears twice in the batch (records {seen[r.Key]} and {i})");
            seen[r.Key] = i;
            var row = rows.AsSpan(i * d, d);
            r.Vector.Span.CopyTo(row);
            Check.Finite(row, $"vector of record '{r.Key}'");
            if (Options.Metric == Metric.Cosine)
            {
                float norm = TensorPrimitives.Norm(row);
                if (norm > 0) TensorPrimitives.Divide(row, norm, row);
            }
            fields[i] = NormalizeFields(r.Fields, r.Key);
        }
        using var _ = WriteLock();
        if (!upsert)
            foreach (var r in batch)
                if (_slotOf.ContainsKey(r.Key)) throw new RotorException($"record '{r.Key}' exists: use Upsert to replace it");
        // In an upsert batch with a repeated key, the last one wins.
        var keep = new List<int>(n);
        for (int i = 0; i < n; i++) if (seen[batch[i].Key] == i) keep.Add(i);
        float[] packed = rows;
        if (keep.Count != n)
        {
            packed = new float[(long)keep.Count * d];
            for (int j = 0; j < keep.Count; j++) rows.AsSpan(keep[j] * d, d).CopyTo(packed.AsSpan(j * d, d));
        }
        foreach (int i in keep)
            if (_slotOf.TryGetValue(batch[i].Key, out int old)) MarkDeleted(old);
        int first = _store.AppendMany(packed, keep.Count);
        EnsureDeletedCapacity(_store.Count);
        for (int j = 0; j < keep.Count; j++)
        {
            var r = batch[keep[j]];
            _keys.Add(r.Key);
            _fields.Add(fields[keep[j]]);
            _slotOf[r.Key] = first + j;
        }
        _graph?.Insert(first, keep.Count, progress, GraphBuildThreads);
    }

    private static IReadOnlyDictionary<string, object>? NormalizeFields(IReadOnlyDictionary<string, object>? fields, string key)
    {
        if (fields is null || fields.Count == 0) return null;
        var d = new Dictionary<string, object>(fields.Count, StringComparer.Ordinal);
        foreach (var (name, value) in fields)
        {
            if (string.IsNullOrEmpty(name)) throw new RotorException($"record '{key}': a field name is empty");
            if (value is null) continue;
            d[name] = FieldValues.Normalize(value, $"{name}' of record '{key}");
        }
        return d;
    }

    /// <summary>Deletes a record; false if the key is absent.</summary>
    public bool Delete(string key)
    {
        using var _ = WriteLock();
        if (!_slotOf.TryGetValue(key, out int slot)) return false;
        MarkDeleted(slot);
        return true;
    }

    /// <summary>Deletes records; returns how many existed.</summary>
    public int Delete(IEnumerable<string> keys)
    {
        using var _ = WriteLock();
        int n = 0;
        foreach (string k in keys)
            if (_slotOf.TryGetValue(k, out int slot)) { MarkDeleted(slot); n++; }
        return n;
    }

    private void MarkDeleted(int slot)
    {
        _deleted[slot >> 6] |= 1UL << (slot & 63);
        _slotOf.Remove(_keys[slot]);
    }

    private void EnsureDeletedCapacity(int slots)
    {
        int words = (slots + 63) / 64;
        if (_deleted.Length < words) Array.Resize(ref _deleted, Math.Max(words, _deleted.Length * 2));
    }

    internal bool IsDeleted(int slot) => (_deleted[slot >> 6] >> (slot & 63) & 1) != 0;

    /// <summary>Removes deleted slots: live records are re-encoded into fresh storage (from their full-precision
    /// vectors when kept, else by copying codes) and the graph is rebuilt.</summary>
    public void Compact(IProgress<int>? progress = null)
    {
        using var _ = WriteLock();
        if (_slotOf.Count == _store.Count) return;
        var live = new List<int>(_slotOf.Count);
        for (int s = 0; s < _store.Count; s++) if (!IsDeleted(s)) live.Add(s);
        var store = new CodeStore(Layout, Options.KeepFullPrecision);
        store.Reserve(live.Count);
        var codes = new NativeBuffer(); codes.Reserve((long)live.Count * Layout.Bytes); codes.SetLength((long)live.Count * Layout.Bytes);
        NativeBuffer? full = null;
        if (_store.Full is not null) { full = new NativeBuffer(); full.Reserve((long)live.Count * Layout.Dimensions * 4); full.SetLength((long)live.Count * Layout.Dimensions * 4); }
        var scales = new float[Math.Max(16, live.Count)];
        var norms = new float[Math.Max(16, live.Count)];
        var keys = new List<string>(live.Count);
        var fields = new List<IReadOnlyDictionary<string, object>?>(live.Count);
        for (int j = 0; j < live.Count; j++)
        {
            int s = live[j];
            Buffer.MemoryCopy(_store.Code(s), codes.Pointer + (long)j * Layout.Bytes, Layout.Bytes, Layout.Bytes);
            if (full is not null) _store.FullVector(s).CopyTo(new Span<float>(full.Pointer + (long)j * Layout.Dimensions * 4, Layout.Dimensions));
            scales[j] = _store.Scales[s]; norms[j] = _store.Norms[s];
            keys.Add(_keys[s]); fields.Add(_fields[s]);
        }
        store.Replace(codes, full, scales, norms, live.Count);
        _store.Dispose();
        _store = store;
        _keys = keys; _fields = fields;
        _deleted = new ulong[Math.Max(1, (live.Count + 63) / 64)];
        _slotOf = new Dictionary<string, int>(live.Count, StringComparer.Ordinal);
        for (int j = 0; j < keys.Count; j++) _slotOf[keys[j]] = j;
        if (Options.Structure == IndexStructure.Hnsw)
        {
            _graph = new Hnsw(_store, Options.Metric, Options.Hnsw);
            _graph.Insert(0, live.Count, progress, GraphBuildThreads);
        }
    }

    // ---- reads ------------------------------------------------------------------------------------------------

    /// <summary>The record with this key, or null. Its vector is the stored one: at full precision if kept, else
    /// decoded from its code; for <see cref="Metric.Cosine"/> it was normalized to unit length when added.</summary>
    public IndexRecord? Get(string key)
    {
        using var _ = Read();
        if (!_slotOf.TryGetValue(key, out int slot)) return null;
        return new IndexRecord(key, _store.Vector(slot), _fields[slot]);
    }

    /// <summary>Whether a key is present.</summary>
    public bool Contains(string key) { using var _ = Read(); return _slotOf.ContainsKey(key); }

    /// <summary>Records whose fields match <paramref name="filter"/> (all when null), in insertion order.</summary>
    public List<IndexRecord> Query(Filter? filter, int top, int skip = 0, bool includeVectors = true)
    {
        using var _ = Read();
        var list = new List<IndexRecord>();
        for (int s = 0; s < _store.Count && list.Count < top; s++)
        {
            if (IsDeleted(s) || (filter is not null && !filter.Matches(_fields[s]))) continue;
            if (skip > 0) { skip--; continue; }
            list.Add(new IndexRecord(_keys[s], includeVectors ? _store.Vector(s) : ReadOnlyMemory<float>.Empty, _fields[s]));
        }
        return list;
    }

    /// <summary>The <paramref name="k"/> records closest to <paramref name="query"/>, closest first.</summary>
    /// <exception cref="RotorException">The query has the wrong length or a NaN; rescoring without kept vectors.</exception>
    public IReadOnlyList<SearchHit> Search(ReadOnlySpan<float> query, int k, SearchOptions? options = null)
    {
        options ??= SearchOptions.Default;
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        if (query.Length != Options.Dimensions) throw new RotorException($"query has {query.Length} dimensions, the index has {Options.Dimensions}");
        Check.Finite(query, "query");
        bool rescore = options.RescoreFactor > 1 && Options.Code != CodeKind.Float32;
        if (rescore && !_store.HasFull) throw new RotorException("rescoring needs the full-precision vectors: create the index with KeepFullPrecision");
        var q = new PreparedQuery(Layout, Options.Metric, query, options.Int8Query);
        using var _ = Read();
        if (k == 0 || _slotOf.Count == 0) return [];
        int want = rescore ? k * options.RescoreFactor : k;
        ulong[]? allowed = null; int allowedCount = _slotOf.Count;
        if (options.Filter is not null) (allowed, allowedCount) = FilterBits(options.Filter);
        (float Score, int Slot)[] cands;
        bool exact = _graph is null || options.Exact || allowedCount < Math.Max(2048, _store.Count / 20);
        if (exact) cands = Scan(q, want, allowed, options.Threads);
        else
        {
            int ef = Math.Max(want, options.EfSearch > 0 ? options.EfSearch : Options.Hnsw.EfSearch);
            List<(float Sim, int Node)> found;
            fixed (byte* qc = q.Code) fixed (sbyte* planes = q.Planes)
                found = _graph!.Search(qc, planes, q.Planes is null ? q.Scale : q.Int8Scale, q.Norm2, ef, allowed ?? _deleted, bitsAllow: allowed is not null);
            // Graph similarity for L2 includes -||q||^2; convert to the scan key (2 q.v - ||v||^2).
            cands = found.Take(want).Select(f => (Options.Metric == Metric.L2 ? f.Sim + q.Norm2 : f.Sim, f.Node)).ToArray();
        }
        if (rescore) cands = Rescore(q, cands, k);
        else if (cands.Length > k) cands = cands[..k];
        var hits = new SearchHit[cands.Length];
        for (int i = 0; i < cands.Length; i++)
        {
            var (score, slot) = cands[i];
            float reported = Options.Metric == Metric.L2 ? MathF.Max(0, q.Norm2 - score) : score;
            hits[i] = new SearchHit(_keys[slot], reported, options.IncludeFields ? _fields[slot] : null,
                options.IncludeVectors ? _store.Vector(slot) : null);
        }
        return hits;
    }

    private (ulong[] Bits, int Count) FilterBits(Filter filter)
    {
        var bits = new ulong[(_store.Count + 63) / 64 + 1];
        int n = 0;
        for (int s = 0; s < _store.Count; s++)
            if (!IsDeleted(s) && filter.Matches(_fields[s])) { bits[s >> 6] |= 1UL << (s & 63); n++; }
        return (bits, n);
    }

    /// <summary>Ranks candidates again by their kept float32 vectors. The vectors lie at random places of a large
    /// (often memory-mapped) array, so each costs cache and TLB misses rather than arithmetic: the loop prefetches the
    /// vector <see cref="RescoreLookahead"/> candidates ahead, so that their misses overlap the current dot product.</summary>
    private (float Score, int Slot)[] Rescore(PreparedQuery q, (float Score, int Slot)[] cands, int k)
    {
        var top = new TopK(k);
        int bytes = Layout.Dimensions * 4;
        for (int i = 0; i < Math.Min(RescoreLookahead, cands.Length); i++) PrefetchFull(cands[i].Slot, bytes);
        for (int i = 0; i < cands.Length; i++)
        {
            if (i + RescoreLookahead < cands.Length) PrefetchFull(cands[i + RescoreLookahead].Slot, bytes);
            int slot = cands[i].Slot;
            float dot = TensorPrimitives.Dot(q.Vector, _store.FullVector(slot));
            top.Push(Options.Metric == Metric.L2 ? 2 * dot - _store.Norms[slot] : dot, slot);
        }
        return top.ToSortedArray();
    }

    private const int RescoreLookahead = 4;

    private void PrefetchFull(int slot, int bytes)
    {
        if (!System.Runtime.Intrinsics.X86.Sse.IsSupported) return;
        byte* v = (byte*)_store.FullPointer(slot);
        for (int o = 0; o < bytes; o += 64) System.Runtime.Intrinsics.X86.Sse.Prefetch0(v + o);
    }

    /// <summary>For the benchmark: rescoring alone, of the given slots (no prefetch when <paramref name="prefetch"/> is false).</summary>
    internal (float Score, int Slot)[] RescoreForBenchmark(ReadOnlySpan<float> query, int[] slots, int k, bool prefetch)
    {
        var q = new PreparedQuery(Layout, Options.Metric, query);
        using var _ = Read();
        var cands = slots.Select(s => (0f, s)).ToArray();
        if (prefetch) return Rescore(q, cands, k);
        var top = new TopK(k);
        foreach (var (_, slot) in cands) top.Push(TensorPrimitives.Dot(q.Vector, _store.FullVector(slot)), slot);
        return top.ToSortedArray();
    }

    /// <summary>The threads an exact scan of this index uses with <paramref name="options"/> (<see cref="SearchOptions.Threads"/>;
    /// 0: 1 below 8 MiB of codes, else <see cref="Rotor.Threading.ThreadCount.Default"/>), at most one a chunk of 1024 slots.</summary>
    public int ExactScanThreads(SearchOptions? options = null)
    {
        using var _ = Read();
        return ScanThreads(_store.Count, Layout.Bytes, (options ?? SearchOptions.Default).Threads);
    }

    /// <summary>Threads of an exact scan over <paramref name="slots"/> codes of <paramref name="codeBytes"/> bytes:
    /// <paramref name="requested"/> when positive, else 1 below 8 MiB of codes (a thread start costs more than such a
    /// scan) and <see cref="Rotor.Threading.ThreadCount.Default"/> above; never more than there are chunks of slots.</summary>
    internal static int ScanThreads(int slots, int codeBytes, int requested)
    {
        int threads = requested > 0 ? requested : (long)slots * codeBytes >= (8L << 20) ? Rotor.Threading.ThreadCount.Default : 1;
        return Math.Max(1, Math.Min(threads, (slots + Chunk - 1) / Chunk));
    }

    /// <summary>Exact scan: the key of slot i is <c>d = raw * scale_i * scale_q</c> (cosine, dot) or
    /// <c>2 d - ||v_i||^2</c> (L2), which orders as the metric does.</summary>
    private (float Score, int Slot)[] Scan(PreparedQuery q, int k, ulong[]? allowed, int threads)
    {
        int n = _store.Count;
        threads = ScanThreads(n, Layout.Bytes, threads);
        int chunks = (n + Chunk - 1) / Chunk;
        var tops = new TopK[threads];
        if (threads == 1) tops[0] = ScanRange(q, k, allowed, 0, n);
        else
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
            {
                int c0 = (int)((long)chunks * t / threads), c1 = (int)((long)chunks * (t + 1) / threads);
                tops[t] = ScanRange(q, k, allowed, c0 * Chunk, Math.Min(n, c1 * Chunk));
            });
        for (int t = 1; t < threads; t++) tops[0].Merge(tops[t]);
        return tops[0].ToSortedArray();
    }

    /// <summary>Scans slots [start, end) a chunk at a time: the kernel writes raw scores, keys are computed with
    /// vector multiplies (<c>raw * scale_i * scale_q</c>, then <c>2 d - ||v||^2</c> for L2, the same float operations in
    /// the same order as <see cref="ExactReference"/>) in the same pass that compares them with the heap's threshold,
    /// and only 8-lane groups that can beat it are looked at.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private TopK ScanRange(PreparedQuery q, int k, ulong[]? allowed, int start, int end)
    {
        var top = new TopK(k);
        float* raw = stackalloc float[Chunk];
        float qs = q.Planes is null ? q.Scale : q.Int8Scale;
        bool l2 = Options.Metric == Metric.L2;
        float[] scales = _store.Scales, norms = _store.Norms;
        ulong[] del = _deleted;
        var qsv = Vector256.Create(qs);
        fixed (byte* qc = q.Code) fixed (sbyte* planes = q.Planes) fixed (float* sc = scales, nm = norms)
            for (int s0 = start; s0 < end; s0 += Chunk)
            {
                int m = Math.Min(Chunk, end - s0);
                byte* codes = _store.CodeRun(s0, m);
                // This chunk's scales (and norms) are read in one burst after the kernel: fetch them while it runs.
                if (Sse.IsSupported)
                    for (int o = 0; o < m; o += 16)
                    {
                        Sse.Prefetch0(sc + s0 + o);
                        if (l2) Sse.Prefetch0(nm + s0 + o);
                    }
                if (planes != null) ScanKernels.TernaryAsym(planes, (ulong*)codes, Layout.Words, m, raw);
                else ScanKernels.Raw(Layout, qc, codes, m, raw);
                // Keep the memory stream going while the keys of this chunk are made: the next chunk's first lines.
                if (Sse.IsSupported && s0 + Chunk < end)
                    for (int o = 0; o < 2048; o += 64) Sse.Prefetch0(codes + (long)m * Layout.Bytes + o);
                // One pass: key = (raw * scale_i) * scale_q (then 2 key - ||v||^2 for L2), compared with the threshold.
                float threshold = top.Threshold;
                var thr = Vector256.Create(threshold);
                int i = 0;
                for (; i + 8 <= m; i += 8)
                {
                    var key = Vector256.Load(raw + i) * Vector256.Load(sc + s0 + i) * qsv;
                    if (l2) key = key * 2f - Vector256.Load(nm + s0 + i);
                    if (!Vector256.GreaterThanOrEqualAny(key, thr)) continue;
                    key.Store(raw + i);
                    for (int j = i; j < i + 8; j++)
                        if (raw[j] >= threshold && Offer(top, raw[j], s0 + j, allowed, del)) threshold = top.Threshold;
                    thr = Vector256.Create(threshold);
                }
                for (; i < m; i++)
                {
                    float key = raw[i] * sc[s0 + i] * qs;
                    if (l2) key = key * 2f - nm[s0 + i];
                    if (key >= threshold && Offer(top, key, s0 + i, allowed, del)) threshold = top.Threshold;
                }
            }
        return top;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static bool Offer(TopK top, float key, int s, ulong[]? allowed, ulong[] del)
    {
        if (allowed is not null ? (allowed[s >> 6] >> (s & 63) & 1) == 0 : (del[s >> 6] >> (s & 63) & 1) != 0) return false;
        top.Push(key, s);
        return true;
    }

    /// <summary>The oracle of <see cref="Search"/> for tests: every live slot scored by the scalar reference
    /// (<see cref="CodeLayout.RawReference"/>) and fully sorted.</summary>
    internal (float Score, int Slot)[] ExactReference(ReadOnlySpan<float> query, int k, Filter? filter, bool int8Query = false)
    {
        var q = new PreparedQuery(Layout, Options.Metric, query, int8Query);
        var trits = new float[Layout.Dimensions];
        using var _ = Read();
        var all = new List<(float Score, int Slot)>();
        for (int s = 0; s < _store.Count; s++)
        {
            if (IsDeleted(s) || (filter is not null && !filter.Matches(_fields[s]))) continue;
            var code = new ReadOnlySpan<byte>(_store.Code(s), Layout.Bytes);
            float raw, d;
            if (q.Int8 is { } q8)
            {
                Layout.Decode(code, 1f, trits);
                int sum = 0;
                for (int j = 0; j < trits.Length; j++) sum += q8[j] * (int)trits[j];
                raw = sum;
                d = raw * _store.Scales[s] * q.Int8Scale;
            }
            else
            {
                raw = Layout.RawReference(q.Code.AsSpan(0, Layout.Bytes), code);
                d = raw * _store.Scales[s] * q.Scale;
            }
            if (Options.Metric == Metric.L2) d = 2 * d - _store.Norms[s];
            all.Add((d, s));
        }
        all.Sort((x, y) => TopK.Better(x.Score, x.Slot, y.Score, y.Slot) ? -1 : TopK.Better(y.Score, y.Slot, x.Score, x.Slot) ? 1 : 0);
        return all.Take(k).ToArray();
    }

    /// <summary>The key of a slot, for tests and tools.</summary>
    internal string KeyOf(int slot) => _keys[slot];

    // ---- persistence --------------------------------------------------------------------------------------------

    /// <summary>Writes the index to <paramref name="path"/> atomically: a temporary file beside it is written,
    /// flushed to disk and renamed over the target, so that an interrupted save leaves the old file intact.</summary>
    /// <exception cref="RotorException">The file was loaded by <see cref="Open"/> (or last saved here) and another writer
    /// has replaced it since: saving would lose that writer's changes. Open it again and apply the changes to it (the
    /// command line's writers take <see cref="FileLock"/> so that they never get here).</exception>
    public void Save(string path)
    {
        using var _ = Read();
        string full = Path.GetFullPath(path);
        if (_origin is { } o && o.Path == full && Stamp(full) is { } now && (now.Item2 != o.Length || now.Item3 != o.Written))
            throw new RotorException($"{path} was replaced by another writer since this index was loaded from it; saving would lose that writer's changes (open it again and apply yours)");
        IndexFile.Save(this, path);
        _origin = Stamp(full);
    }

    internal void RestoreFrom(CodeStore store, List<string> keys, List<IReadOnlyDictionary<string, object>?> fields, ulong[] deleted, Hnsw? graph)
    {
        _store.Dispose();
        _store = store; _keys = keys; _fields = fields; _deleted = deleted; _graph = graph;
        _slotOf = new Dictionary<string, int>(keys.Count, StringComparer.Ordinal);
        for (int s = 0; s < keys.Count; s++)
            if (!IsDeleted(s) && !_slotOf.TryAdd(keys[s], s)) throw new RotorException($"key '{keys[s]}' appears twice among live records");
    }

    // ---- locking ------------------------------------------------------------------------------------------------

    private ReadScope Read()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _lock.EnterReadLock();
        return new ReadScope(_lock, write: false);
    }

    private ReadScope WriteLock()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _lock.EnterWriteLock();
        return new ReadScope(_lock, write: true);
    }

    private readonly struct ReadScope(ReaderWriterLockSlim rw, bool write) : IDisposable
    {
        public void Dispose() { if (write) rw.ExitWriteLock(); else rw.ExitReadLock(); }
    }

    /// <summary>Frees native memory and unmaps the file.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _lock.EnterWriteLock();
        try { _disposed = true; _store.Dispose(); }
        finally { _lock.ExitWriteLock(); }
    }
}
