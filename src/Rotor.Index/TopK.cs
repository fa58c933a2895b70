namespace Rotor.Index;

/// <summary>
/// The k best (score, slot) pairs seen so far, as a binary min-heap of size k whose root is the worst kept pair.
/// Order: higher score first, then lower slot, so that results are deterministic whatever the scan order or threads.
/// </summary>
internal sealed class TopK
{
    private readonly float[] _scores;
    private readonly int[] _slots;

    public TopK(int k)
    {
        K = k;
        _scores = new float[Math.Max(k, 1)];
        _slots = new int[Math.Max(k, 1)];
    }

    public int K { get; }
    public int Count { get; private set; }

    /// <summary>The score a new pair must beat once full (-inf before).</summary>
    public float Threshold => Count < K ? float.NegativeInfinity : _scores[0];

    /// <summary>Whether (a, sa) ranks before (b, sb).</summary>
    public static bool Better(float a, int sa, float b, int sb) => a > b || (a == b && sa < sb);

    /// <summary>Offers a pair; kept if it ranks among the k best.</summary>
    public void Push(float score, int slot)
    {
        if (K == 0) return;
        if (Count < K)
        {
            int i = Count++;
            while (i > 0)
            {
                int p = (i - 1) >> 1;
                if (!Better(_scores[p], _slots[p], score, slot)) break;
                _scores[i] = _scores[p]; _slots[i] = _slots[p]; i = p;
            }
            _scores[i] = score; _slots[i] = slot;
            return;
        }
        if (!Better(score, slot, _scores[0], _slots[0])) return;
        int j = 0;
        while (true)
        {
            int l = 2 * j + 1;
            if (l >= Count) break;
            int r = l + 1, w = l;
            if (r < Count && Better(_scores[l], _slots[l], _scores[r], _slots[r])) w = r;
            if (!Better(score, slot, _scores[w], _slots[w])) break;
            _scores[j] = _scores[w]; _slots[j] = _slots[w]; j = w;
        }
        _scores[j] = score; _slots[j] = slot;
    }

    /// <summary>Adds every pair of <paramref name="other"/>.</summary>
    public void Merge(TopK other)
    {
        for (int i = 0; i < other.Count; i++) Push(other._scores[i], other._slots[i]);
    }

    /// <summary>The kept pairs, best first.</summary>
    public (float Score, int Slot)[] ToSortedArray()
    {
        var a = new (float Score, int Slot)[Count];
        for (int i = 0; i < Count; i++) a[i] = (_scores[i], _slots[i]);
        Array.Sort(a, (x, y) => Better(x.Score, x.Slot, y.Score, y.Slot) ? -1 : Better(y.Score, y.Slot, x.Score, x.Slot) ? 1 : 0);
        return a;
    }
}
