using Rotor.Kernels;
namespace Rotor.Index;

/// <summary>
/// A hierarchical navigable small world graph (Malkov and Yashunin, 2016) over the slots of a <see cref="CodeStore"/>,
/// scored on the codes. Layer 0 keeps 2 M links a node, upper layers M; links are chosen by the paper's heuristic
/// (algorithm 4). Nodes are inserted in parallel with a lock a node, or one after another in slot order (threads 1):
/// then the graph is a function of the codes, their order and the settings alone (a node's level is a hash of the seed
/// and its slot), whatever the batches it was inserted in and however often the index was saved and reopened between
/// them. Deleted slots stay in the graph as waypoints and are never returned.
/// <code>
/// levels  (slots) byte              top layer of each node
/// links0  (slots, 1 + 2M) int       [count, neighbours...] on layer 0
/// upper   (slots)[(level) * (1 + M)] per-node links on layers 1..level (null for level 0)
/// </code>
/// </summary>
internal sealed unsafe class Hnsw
{
    private readonly CodeStore _store;
    private readonly Metric _metric;
    private readonly object[] _locks = Enumerable.Range(0, 4096).Select(_ => new object()).ToArray();
    private readonly object _entryLock = new();
    private readonly ThreadLocal<Scratch> _scratch;
    private readonly double _levelMult;
    private volatile bool _building;

    public Hnsw(CodeStore store, Metric metric, HnswSettings settings)
    {
        _store = store; _metric = metric; Settings = settings;
        M = settings.M; M0 = 2 * settings.M;
        _levelMult = 1.0 / Math.Log(M);
        _scratch = new ThreadLocal<Scratch>(() => new Scratch());
    }

    public HnswSettings Settings { get; }
    public int M { get; }
    public int M0 { get; }
    public int Count { get; private set; }
    public int EntryPoint { get; private set; } = -1;
    public int MaxLevel { get; private set; } = -1;
    internal byte[] Levels = new byte[16];
    internal int[] Links0 = [];
    internal int[]?[] Upper = new int[16][];

    public long Bytes => (long)Count * (1 + (1 + M0) * 4) + Upper.Take(Count).Sum(u => u is null ? 0L : u.Length * 4L + 24);

    // ---- similarity on codes (higher is closer) -------------------------------------------------------------

    private float SimNodes(int a, int b)
    {
        float raw = ScanKernels.RawOne(_store.Layout, _store.Code(a), _store.Code(b));
        float d = raw * _store.Scales[b] * _store.Scales[a];
        return _metric == Metric.L2 ? 2 * d - _store.Norms[a] - _store.Norms[b] : d;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private float SimQuery(byte* q, sbyte* planes, float qScale, float qNorm2, int b)
    {
        // planes: the int8 query, bit-transposed, for asymmetric ternary scoring (qScale is then its int8 scale).
        float raw = planes != null ? ScanKernels.TernaryAsymOne(planes, (ulong*)_store.Code(b), _store.Layout.Words)
                                   : ScanKernels.RawOne(_store.Layout, q, _store.Code(b));
        float d = raw * _store.Scales[b] * qScale;
        return _metric == Metric.L2 ? 2 * d - _store.Norms[b] - qNorm2 : d;
    }

    // ---- build ------------------------------------------------------------------------------------------------

    /// <summary>Inserts slots [first, first + count) (already in the store), on up to <paramref name="threads"/> threads
    /// (0: <see cref="Rotor.Threading.ThreadCount.Default"/>; 1: one after another, in slot order, reproducibly).</summary>
    public void Insert(int first, int count, IProgress<int>? progress = null, int threads = 0)
    {
        int total = first + count;
        if (Levels.Length < total) { Array.Resize(ref Levels, Math.Max(total, Levels.Length * 2)); Array.Resize(ref Upper, Levels.Length); }
        if (Links0.Length < (long)total * (1 + M0)) Array.Resize(ref Links0, checked(Math.Max(total, Links0.Length / (1 + M0) * 2) * (1 + M0)));
        for (int i = first; i < total; i++)
        {
            int level = Math.Min(32, (int)(-Math.Log(1 - LevelDraw(Settings.Seed, i)) * _levelMult));
            Levels[i] = (byte)level;
            Upper[i] = level > 0 ? new int[level * (1 + M)] : null;
            Links0[(long)i * (1 + M0)] = 0;
        }
        Count = total;
        _building = true;
        try
        {
            int start = first;
            if (EntryPoint < 0 && count > 0) { EntryPoint = first; MaxLevel = Levels[first]; start++; }
            int done = 0;
            if (threads == 1)
            {
                for (int i = start; i < total; i++)
                {
                    InsertOne(i);
                    if ((++done & 1023) == 0) progress?.Report(done);
                }
            }
            else
            {
                var options = Rotor.Threading.ThreadCount.Options();
                if (threads > 1) options.MaxDegreeOfParallelism = Math.Min(threads, options.MaxDegreeOfParallelism);
                Parallel.For(start, total, options, i =>
                {
                    InsertOne(i);
                    int n = Interlocked.Increment(ref done);
                    if ((n & 1023) == 0) progress?.Report(n);
                });
            }
        }
        finally { _building = false; }
    }

    /// <summary>A uniform draw in [0, 1) for the level of <paramref name="slot"/>: SplitMix64 of the seed and the slot,
    /// so that a slot's level does not depend on which slots were drawn before it (or in which process).</summary>
    internal static double LevelDraw(int seed, int slot)
    {
        ulong z = ((ulong)(uint)seed << 32 | (uint)slot) + 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (z >> 11) * (1.0 / (1UL << 53));
    }

    private void InsertOne(int q)
    {
        int level = Levels[q];
        int ep, top;
        lock (_entryLock) { ep = EntryPoint; top = MaxLevel; }
        byte* qc = _store.Code(q);
        float qs = _store.Scales[q], qn = _store.Norms[q];
        float epSim = SimQuery(qc, null, qs, qn, ep);
        for (int l = top; l > level; l--) (ep, epSim) = Greedy(qc, null, qs, qn, ep, epSim, l);
        var eps = new List<(float, int)> { (epSim, ep) };
        for (int l = Math.Min(level, top); l >= 0; l--)
        {
            var found = SearchLayer(qc, null, qs, qn, eps, Settings.EfConstruction, l, null, false);
            int max = l == 0 ? M0 : M;
            var chosen = SelectHeuristic(found, M);
            SetLinks(q, l, chosen);
            foreach (var (_, n) in chosen) AddLink(n, q, l, max);
            eps = found;
        }
        if (level > top)
            lock (_entryLock) if (level > MaxLevel) { MaxLevel = level; EntryPoint = q; }
    }

    private Span<int> LinkSpan(int node, int level)
    {
        if (level == 0) return Links0.AsSpan((int)((long)node * (1 + M0)), 1 + M0);
        return Upper[node].AsSpan((level - 1) * (1 + M), 1 + M);
    }

    private void SetLinks(int node, int level, List<(float Sim, int Node)> links)
    {
        lock (_locks[node & 4095])
        {
            var s = LinkSpan(node, level);
            s[0] = links.Count;
            for (int i = 0; i < links.Count; i++) s[1 + i] = links[i].Node;
        }
    }

    private void AddLink(int node, int add, int level, int max)
    {
        lock (_locks[node & 4095])
        {
            var s = LinkSpan(node, level);
            int n = s[0];
            for (int i = 1; i <= n; i++) if (s[i] == add) return;
            if (n < max) { s[1 + n] = add; s[0] = n + 1; return; }
            var cands = new List<(float, int)>(n + 1) { (SimNodes(node, add), add) };
            for (int i = 1; i <= n; i++) cands.Add((SimNodes(node, s[i]), s[i]));
            cands.Sort((a, b) => b.Item1.CompareTo(a.Item1));
            var keep = SelectHeuristic(cands, max);
            s[0] = keep.Count;
            for (int i = 0; i < keep.Count; i++) s[1 + i] = keep[i].Node;
        }
    }

    /// <summary>Algorithm 4 of the paper: a candidate is kept if it is closer to the base than to every kept one.
    /// <paramref name="cands"/> is sorted best first.</summary>
    private List<(float Sim, int Node)> SelectHeuristic(List<(float Sim, int Node)> cands, int m)
    {
        var kept = new List<(float Sim, int Node)>(m);
        foreach (var c in cands)
        {
            if (kept.Count >= m) break;
            bool good = true;
            foreach (var r in kept)
                if (SimNodes(c.Node, r.Node) > c.Sim) { good = false; break; }
            if (good) kept.Add(c);
        }
        return kept;
    }

    private int CopyLinks(int node, int level, Span<int> into)
    {
        if (!_building)
        {
            var s = LinkSpan(node, level);
            s.Slice(1, s[0]).CopyTo(into);
            return s[0];
        }
        lock (_locks[node & 4095])
        {
            var s = LinkSpan(node, level);
            s.Slice(1, s[0]).CopyTo(into);
            return s[0];
        }
    }

    // ---- search -----------------------------------------------------------------------------------------------

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private (int, float) Greedy(byte* q, sbyte* planes, float qs, float qn, int ep, float epSim, int level)
    {
        Span<int> buf = stackalloc int[1 + M0];
        bool changed = true;
        while (changed)
        {
            changed = false;
            int n = CopyLinks(ep, level, buf);
            for (int i = 0; i < n; i++)
            {
                float s = SimQuery(q, planes, qs, qn, buf[i]);
                if (s > epSim) { epSim = s; ep = buf[i]; changed = true; }
            }
        }
        return (ep, epSim);
    }

    /// <summary>Beam search on one layer; returns up to ef nodes best first. With <paramref name="bits"/>, a node
    /// enters the result only if its bit is set (<paramref name="bitsAllow"/>) or clear (a deleted-slot bitmap), but
    /// every node is traversed. The codes of a node's unvisited neighbours are prefetched before they are scored, and
    /// the link list of the next candidate while the current one is expanded, so that both arrive while other work is
    /// done (a quarter of the query time at 200k vectors, efSearch 64; docs/INDEX.md).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private List<(float Sim, int Node)> SearchLayer(byte* q, sbyte* planes, float qs, float qn, List<(float Sim, int Node)> eps, int ef, int level, ulong[]? bits, bool bitsAllow)
    {
        var sc = _scratch.Value!;
        sc.Begin(Count, ef);
        ref var cand = ref sc.Candidates;   // max-heap: best first
        ref var result = ref sc.Results;    // min-heap: worst first, at most ef
        foreach (var (s, n) in eps)
        {
            sc.Mark(n);
            cand.Push(s, n);
            if (Accept(n, bits, bitsAllow)) { result.Push(s, n); if (result.Count > ef) result.Pop(); }
        }
        Span<int> buf = stackalloc int[1 + M0];
        Span<int> todo = stackalloc int[1 + M0];
        int bytes = _store.Layout.Bytes;
        int stride0 = 1 + M0;
        fixed (int* links0 = Links0)
        while (cand.Count > 0)
        {
            var (cs, c) = cand.Pop();
            if (result.Count >= ef && cs < result.TopScore) break;
            // The link list of the next candidate (likely expanded next) is fetched while this one is worked on.
            if (level == 0 && cand.Count > 0) CacheHints.Prefetch(links0 + (long)cand.TopNode * stride0, stride0 * sizeof(int));
            int n = CopyLinks(c, level, buf);
            int m = 0;
            for (int i = 0; i < n; i++)
            {
                int e = buf[i];
                if (!sc.Mark(e)) continue;
                todo[m++] = e;
                // The first two cache lines of the code: all of a ternary code of up to 512 dimensions (binary: 1024).
                byte* p = _store.Code(e);
                CacheHints.Prefetch(p, bytes > 64 ? 128 : 64);
            }
            for (int i = 0; i < m; i++)
            {
                int e = todo[i];
                float s = SimQuery(q, planes, qs, qn, e);
                if (result.Count < ef || s > result.TopScore)
                {
                    cand.Push(s, e);
                    if (Accept(e, bits, bitsAllow))
                    {
                        result.Push(s, e);
                        if (result.Count > ef) result.Pop();
                    }
                }
            }
        }
        var list = new List<(float Sim, int Node)>(result.Count);
        while (result.Count > 0) list.Add(result.Pop());
        list.Reverse();
        return list;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static bool Accept(int n, ulong[]? bits, bool allow)
        => bits is null || ((bits[n >> 6] >> (n & 63) & 1) != 0) == allow;

    /// <summary>The ef best accepted nodes for a query code (or, with <paramref name="planes"/>, the int8 query of
    /// asymmetric ternary scoring, <paramref name="qs"/> being its scale), best first.</summary>
    public List<(float Sim, int Node)> Search(byte* q, sbyte* planes, float qs, float qn, int ef, ulong[]? bits, bool bitsAllow)
    {
        if (EntryPoint < 0) return [];
        int ep = EntryPoint;
        float epSim = SimQuery(q, planes, qs, qn, ep);
        for (int l = MaxLevel; l > 0; l--) (ep, epSim) = Greedy(q, planes, qs, qn, ep, epSim, l);
        return SearchLayer(q, planes, qs, qn, [(epSim, ep)], ef, 0, bits, bitsAllow);
    }

    /// <summary>Restores a saved graph.</summary>
    internal void Restore(int count, byte[] levels, int[] links0, int[]?[] upper, int entry, int maxLevel)
    {
        Count = count; Levels = levels; Links0 = links0; Upper = upper; EntryPoint = entry; MaxLevel = maxLevel;
    }

    /// <summary>Per-thread search state, reused: visit stamps and the two heaps.</summary>
    private sealed class Scratch
    {
        private int[] _stamp = [];
        private int _gen;
        public Heap Candidates = new(true);
        public Heap Results = new(false);

        public void Begin(int n, int ef)
        {
            if (_stamp.Length < n) { _stamp = new int[Math.Max(n, _stamp.Length * 2)]; _gen = 0; }
            if (++_gen == int.MaxValue) { Array.Clear(_stamp); _gen = 1; }
            Candidates.Clear(); Results.Clear();
        }

        /// <summary>Marks a node; false if it was already visited.</summary>
        public bool Mark(int n)
        {
            if (_stamp[n] == _gen) return false;
            _stamp[n] = _gen;
            return true;
        }
    }

    /// <summary>A binary heap of (score, node): max-heap (best on top) or min-heap (worst on top).</summary>
    internal struct Heap(bool max)
    {
        private float[] _s = new float[64];
        private int[] _n = new int[64];
        public int Count;

        public readonly float TopScore => _s[0];
        public readonly int TopNode => _n[0];
        public void Clear() => Count = 0;

        private readonly bool Above(float a, float b) => max ? a > b : a < b;

        public void Push(float score, int node)
        {
            if (Count == _s.Length) { Array.Resize(ref _s, Count * 2); Array.Resize(ref _n, Count * 2); }
            int i = Count++;
            while (i > 0)
            {
                int p = (i - 1) >> 1;
                if (!Above(score, _s[p])) break;
                _s[i] = _s[p]; _n[i] = _n[p]; i = p;
            }
            _s[i] = score; _n[i] = node;
        }

        public (float Score, int Node) Pop()
        {
            var top = (_s[0], _n[0]);
            int last = --Count;
            if (last > 0)
            {
                float s = _s[last]; int n = _n[last];
                int i = 0;
                while (true)
                {
                    int l = 2 * i + 1;
                    if (l >= last) break;
                    int r = l + 1, w = r < last && Above(_s[r], _s[l]) ? r : l;
                    if (!Above(_s[w], s)) break;
                    _s[i] = _s[w]; _n[i] = _n[w]; i = w;
                }
                _s[i] = s; _n[i] = n;
            }
            return top;
        }
    }
}
