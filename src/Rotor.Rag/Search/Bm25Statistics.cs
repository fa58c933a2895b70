namespace Rotor.Rag.Search;

/// <summary>
/// The collection and term statistics that BM25 reads (Lucene's <c>CollectionStatistics</c> and <c>TermStatistics</c>
/// of the text field) for the terms of one query. Statistics of the parts of a collection add up to the statistics of
/// the whole (no deletions), so a collection split over several <see cref="Bm25Index"/>es scores exactly as one index
/// when each part searches with the sum (<see cref="Bm25Index.Search(string, int, Bm25Statistics?)"/>).
/// </summary>
/// <param name="MaxDocuments">Documents in the index (Lucene's maxDoc).</param>
/// <param name="DocumentCount">Documents with at least one term in the field.</param>
/// <param name="SumTotalTermFrequency">Tokens in the field over all documents (gives the average length).</param>
/// <param name="SumDocumentFrequency">Sum over terms of their document frequencies.</param>
/// <param name="Terms">Analyzed query term to (documents holding it, its occurrences).</param>
public sealed record Bm25Statistics(long MaxDocuments, long DocumentCount, long SumTotalTermFrequency, long SumDocumentFrequency,
    IReadOnlyDictionary<string, (long DocFreq, long TotalTermFreq)> Terms)
{
    /// <summary>The statistics of the union of the parts: every count added, term by term.</summary>
    /// <exception cref="ArgumentException">No parts, or the parts were asked about different query terms.</exception>
    public static Bm25Statistics Sum(IReadOnlyList<Bm25Statistics> parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Count == 0) throw new ArgumentException("no statistics to add", nameof(parts));
        long maxDoc = 0, docCount = 0, sumTtf = 0, sumDf = 0;
        var terms = new Dictionary<string, (long, long)>(StringComparer.Ordinal);
        foreach (var p in parts)
        {
            if (p.Terms.Count != parts[0].Terms.Count || p.Terms.Keys.Any(t => !parts[0].Terms.ContainsKey(t)))
                throw new ArgumentException("the parts' statistics are for different query terms", nameof(parts));
            maxDoc += p.MaxDocuments;
            // Lucene reports -1 for a statistic a codec does not keep; a sum with an unknown part is unknown.
            docCount = docCount < 0 || p.DocumentCount < 0 ? -1 : docCount + p.DocumentCount;
            sumTtf = sumTtf < 0 || p.SumTotalTermFrequency < 0 ? -1 : sumTtf + p.SumTotalTermFrequency;
            sumDf = sumDf < 0 || p.SumDocumentFrequency < 0 ? -1 : sumDf + p.SumDocumentFrequency;
            foreach (var (t, s) in p.Terms)
            {
                terms.TryGetValue(t, out var acc);
                terms[t] = (acc.Item1 + s.DocFreq, acc.Item2 < 0 || s.TotalTermFreq < 0 ? -1 : acc.Item2 + s.TotalTermFreq);
            }
        }
        return new Bm25Statistics(maxDoc, docCount, sumTtf, sumDf, terms);
    }
}
