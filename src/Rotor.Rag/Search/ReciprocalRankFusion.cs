namespace Rotor.Rag.Search;

/// <summary>
/// Reciprocal rank fusion (Cormack, Clarke and Büttcher, 2009): <c>score(d) = sum over rankings r of 1 / (k + rank_r(d))</c>,
/// ranks counted from 1, a document absent from a ranking adding nothing. Ties go to the better best rank, then the lower index.
/// </summary>
public static class ReciprocalRankFusion
{
    /// <summary>The constant k of the formula; 60 in the original paper.</summary>
    public const int DefaultK = 60;

    /// <summary>Fuses rankings (each best first) into one, best first, cut to <paramref name="limit"/>.</summary>
    public static IReadOnlyList<ScoredOrdinal> Fuse(IEnumerable<IReadOnlyList<ScoredOrdinal>> rankings, int limit, int k = DefaultK)
    {
        ArgumentNullException.ThrowIfNull(rankings);
        if (k < 0) throw new ArgumentOutOfRangeException(nameof(k), k, "k must be non-negative");
        if (limit <= 0) throw new ArgumentOutOfRangeException(nameof(limit), limit, "limit must be positive");
        var fused = new Dictionary<int, (double Score, int BestRank)>();
        foreach (var ranking in rankings)
        {
            var seen = new HashSet<int>();
            for (int r = 0; r < ranking.Count; r++)
            {
                int doc = ranking[r].Ordinal;
                if (!seen.Add(doc)) continue; // a document counts once a ranking
                fused.TryGetValue(doc, out var v);
                fused[doc] = (v.Score + 1.0 / (k + r + 1), v.BestRank == 0 ? r + 1 : Math.Min(v.BestRank, r + 1));
            }
        }
        return fused.OrderByDescending(kv => kv.Value.Score).ThenBy(kv => kv.Value.BestRank).ThenBy(kv => kv.Key)
            .Take(limit).Select(kv => new ScoredOrdinal(kv.Key, (float)kv.Value.Score)).ToList();
    }
}
