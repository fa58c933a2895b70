namespace Rotor.Rag.Evaluation;

/// <summary>
/// Standard IR metrics of one ranked list against graded judgements (as pytrec_eval computes them for BEIR). A judged
/// document is relevant when its grade is above 0.
/// </summary>
public static class RetrievalMetrics
{
    /// <summary>nDCG@k with linear gain: <c>DCG = sum_{i=1..k} grade(d_i) / log2(i + 1)</c>, divided by the DCG of the
    /// judged documents in grade order; 0 when nothing is relevant.</summary>
    public static double Ndcg(IReadOnlyList<string> ranked, IReadOnlyDictionary<string, int> grades, int k)
    {
        Validate(ranked, grades, k);
        double dcg = 0;
        for (int i = 0; i < Math.Min(k, ranked.Count); i++)
            if (grades.TryGetValue(ranked[i], out int g) && g > 0) dcg += g / Math.Log2(i + 2);
        var ideal = grades.Values.Where(g => g > 0).OrderDescending().Take(k).ToList();
        double idcg = 0;
        for (int i = 0; i < ideal.Count; i++) idcg += ideal[i] / Math.Log2(i + 2);
        return idcg == 0 ? 0 : dcg / idcg;
    }

    /// <summary>Recall@k: relevant documents in the top k over all relevant documents; 0 when nothing is relevant.</summary>
    public static double Recall(IReadOnlyList<string> ranked, IReadOnlyDictionary<string, int> grades, int k)
    {
        Validate(ranked, grades, k);
        int relevant = grades.Values.Count(g => g > 0);
        if (relevant == 0) return 0;
        int found = ranked.Take(k).Distinct().Count(d => grades.TryGetValue(d, out int g) && g > 0);
        return (double)found / relevant;
    }

    /// <summary>MRR@k: 1 / rank of the first relevant document in the top k, 0 if none.</summary>
    public static double ReciprocalRank(IReadOnlyList<string> ranked, IReadOnlyDictionary<string, int> grades, int k)
    {
        Validate(ranked, grades, k);
        for (int i = 0; i < Math.Min(k, ranked.Count); i++)
            if (grades.TryGetValue(ranked[i], out int g) && g > 0) return 1.0 / (i + 1);
        return 0;
    }

    private static void Validate(IReadOnlyList<string> ranked, IReadOnlyDictionary<string, int> grades, int k)
    {
        ArgumentNullException.ThrowIfNull(ranked);
        ArgumentNullException.ThrowIfNull(grades);
        if (k <= 0) throw new ArgumentOutOfRangeException(nameof(k), k, "k must be positive");
    }
}

/// <summary>Mean metrics of one retrieval method over a query set.</summary>
/// <param name="Method">Method name, the prefix of its JSON keys (dense-float, bm25, hybrid).</param>
/// <param name="Queries">Queries averaged over.</param>
/// <param name="Ndcg10">Mean nDCG@10.</param>
/// <param name="Recall10">Mean Recall@10.</param>
/// <param name="Recall100">Mean Recall@100.</param>
/// <param name="Mrr10">Mean MRR@10.</param>
/// <param name="QueriesPerSecond">Queries searched a second (query embedding included for dense and hybrid).</param>
public sealed record MethodScores(string Method, int Queries, double Ndcg10, double Recall10, double Recall100, double Mrr10, double QueriesPerSecond)
{
    /// <summary>Averages per-query rankings against the judgements; only queries with judgements count.</summary>
    public static MethodScores Compute(string method, IReadOnlyDictionary<string, IReadOnlyList<string>> rankings,
        IReadOnlyDictionary<string, Dictionary<string, int>> qrels, double queriesPerSecond)
    {
        double ndcg = 0, r10 = 0, r100 = 0, mrr = 0;
        int n = 0;
        foreach (var (query, ranked) in rankings)
        {
            if (!qrels.TryGetValue(query, out var grades)) continue;
            ndcg += RetrievalMetrics.Ndcg(ranked, grades, 10);
            r10 += RetrievalMetrics.Recall(ranked, grades, 10);
            r100 += RetrievalMetrics.Recall(ranked, grades, 100);
            mrr += RetrievalMetrics.ReciprocalRank(ranked, grades, 10);
            n++;
        }
        if (n == 0) return new MethodScores(method, 0, 0, 0, 0, 0, queriesPerSecond);
        return new MethodScores(method, n, ndcg / n, r10 / n, r100 / n, mrr / n, queriesPerSecond);
    }
}
