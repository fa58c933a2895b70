namespace Rotor.Rag.Evaluation;

/// <summary>
/// How judgements match the queries and the corpus they score. A judged document that is not in the corpus can never be
/// retrieved and silently lowers every score; a judged query that is not in the queries file is silently dropped; both
/// mean the three files were not made together. <see cref="Warning"/> says so with counts.
/// </summary>
/// <param name="JudgedQueries">Distinct query ids with judgements.</param>
/// <param name="UnknownQueries">Judged query ids that are not in the queries file.</param>
/// <param name="RelevantPairs">(query, document) judgements with a positive grade, of the known queries.</param>
/// <param name="AbsentPairs">Of <paramref name="RelevantPairs"/>, those whose document is not in the corpus.</param>
/// <param name="AbsentDocuments">Distinct judged documents not in the corpus.</param>
/// <param name="Example">A judged document or query that was not found, for the message.</param>
public sealed record QrelsCoverage(int JudgedQueries, int UnknownQueries, int RelevantPairs, int AbsentPairs, int AbsentDocuments, string? Example)
{
    /// <summary>Compares <paramref name="qrels"/> with the query ids and document ids they score.</summary>
    public static QrelsCoverage Of(IReadOnlyDictionary<string, Dictionary<string, int>> qrels, IEnumerable<string> queryIds, IEnumerable<string> documentIds)
    {
        ArgumentNullException.ThrowIfNull(qrels);
        var queries = queryIds as IReadOnlySet<string> ?? queryIds.ToHashSet(StringComparer.Ordinal);
        var docs = documentIds as IReadOnlySet<string> ?? documentIds.ToHashSet(StringComparer.Ordinal);
        int unknown = 0, pairs = 0, absentPairs = 0;
        var absent = new HashSet<string>(StringComparer.Ordinal);
        string? example = null;
        foreach (var (q, judged) in qrels)
        {
            if (!queries.Contains(q)) { unknown++; example ??= $"query '{q}'"; continue; }
            foreach (var (d, grade) in judged)
            {
                if (grade <= 0) continue;
                pairs++;
                if (docs.Contains(d)) continue;
                absentPairs++;
                absent.Add(d);
                example ??= $"document '{d}'";
            }
        }
        return new QrelsCoverage(qrels.Count, unknown, pairs, absentPairs, absent.Count, example);
    }

    /// <summary>True when every judged query is known and every relevant document is in the corpus.</summary>
    public bool Complete => UnknownQueries == 0 && AbsentPairs == 0;

    /// <summary>One line naming what does not match, with counts (null when <see cref="Complete"/>).</summary>
    public string? Warning(string qrelsPath)
    {
        if (Complete) return null;
        var parts = new List<string>();
        if (UnknownQueries > 0) parts.Add($"{UnknownQueries:N0} of {JudgedQueries:N0} judged queries are not in the queries (ignored)");
        if (AbsentPairs > 0) parts.Add($"{AbsentPairs:N0} of {RelevantPairs:N0} relevant judgements name {AbsentDocuments:N0} documents absent from the corpus (they count as missed)");
        return $"{qrelsPath}: {string.Join("; ", parts)}; e.g. {Example}";
    }
}
