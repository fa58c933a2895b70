using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Rotor.Rag.Pipeline;

/// <summary>
/// The language model's own confidence: how sure the model is that it can answer the question without retrieved
/// passages (0..1), or null when it cannot say. <see cref="Answers.ClosedBookConfidence"/> implements it (the mean
/// probability of the first tokens of a greedy closed-book answer); <see cref="AdaptivePolicy.ModelConfidenceThreshold"/>
/// decides when retrieval is skipped.
/// </summary>
public interface IModelConfidence
{
    /// <summary>Confidence in 0..1 of answering <paramref name="question"/> without context, or null.</summary>
    double? ConfidenceWithoutContext(string question);
}

/// <summary>The decision of <see cref="AdaptivePolicy.Decide"/>.</summary>
/// <param name="Retrieve">Whether passages should be given to the model.</param>
/// <param name="Count">Passages to take (0 when not retrieving).</param>
/// <param name="Reason">Why, with the numbers, e.g. "retrieve 3 passages: top score 0.62 >= 0.45, gap after #3 0.11 >= 0.05".</param>
public sealed record AdaptiveDecision(bool Retrieve, int Count, string Reason);

/// <summary>
/// Adaptive retrieval from dense (cosine) scores, best first: no retrieval when the best score is under
/// <see cref="MinTopScore"/> (nothing in the index is close enough to help), else take passages while each is within
/// <see cref="MaxDropFromTop"/> of the best, stopping at the first gap of at least <see cref="MinGap"/> between
/// neighbours, and at <see cref="MaxPassages"/>. Thresholds are calibrated on judged queries by
/// <see cref="AdaptiveCalibration"/> (docs/PIPELINE.md).
/// </summary>
/// <param name="MinTopScore">Retrieve only when the best cosine is at least this.</param>
/// <param name="MaxDropFromTop">Take a passage only when its score is at least top - this (2: no limit, cosines differ by at most 2).</param>
/// <param name="MinGap">Stop before a passage whose score is this much below the previous one (2: never).</param>
/// <param name="MaxPassages">Most passages taken.</param>
/// <param name="ModelConfidenceThreshold">Skip retrieval when the model's confidence (see <see cref="IModelConfidence"/>) is at
/// least this. The default, 0.585, is the 90th percentile of <see cref="Answers.ClosedBookConfidence"/> (8 tokens) of
/// stories260K over the wiki sample's "What is TITLE?" questions (docs/calibration, docs/RAG.md): a model that cannot
/// be judged on answer quality, so recalibrate it for a real model with <c>rotor eval confidence</c>.</param>
public sealed record AdaptivePolicy(float MinTopScore, float MaxDropFromTop, float MinGap, int MaxPassages, double ModelConfidenceThreshold = 0.585)
{
    /// <summary>Used when no calibration file is given: the thresholds fitted on the development half of SciFact's test
    /// queries with all-MiniLM-L6-v2 (<c>rotor eval quality</c>: retrieve for 90 % of answerable dev queries;
    /// docs/BENCHMARKS-pipeline.md), MaxPassages capped at 5.</summary>
    public static AdaptivePolicy Default { get; } = new(0.454f, 0.06f, 0.03f, 5);

    /// <summary>Decides from <paramref name="scores"/> (best first) and, when given, the model's confidence.</summary>
    public AdaptiveDecision Decide(IReadOnlyList<float> scores, double? modelConfidence = null)
    {
        ArgumentNullException.ThrowIfNull(scores);
        if (modelConfidence is double c && c >= ModelConfidenceThreshold)
            return new(false, 0, F($"no retrieval: model confidence {c:F2} >= {ModelConfidenceThreshold:F2}"));
        if (scores.Count == 0) return new(false, 0, "no retrieval: no candidates");
        float top = scores[0];
        if (top < MinTopScore) return new(false, 0, F($"no retrieval: top score {top:F2} < {MinTopScore:F2}"));
        int n = 1;
        string stop = scores.Count == 1 ? "only one candidate" : "";
        for (int i = 1; i < scores.Count; i++)
        {
            if (n >= MaxPassages) { stop = F($"maximum {MaxPassages} passages"); break; }
            float gap = scores[i - 1] - scores[i];
            if (gap >= MinGap) { stop = F($"gap after #{i} {gap:F2} >= {MinGap:F2}"); break; }
            if (top - scores[i] > MaxDropFromTop) { stop = F($"#{i + 1} {scores[i]:F2} is {top - scores[i]:F2} below the top (> {MaxDropFromTop:F2})"); break; }
            n++;
            if (i == scores.Count - 1) stop = "no more candidates";
        }
        return new(true, n, F($"retrieve {n} passage{(n == 1 ? "" : "s")}: top score {top:F2} >= {MinTopScore:F2}, {stop}"));
    }

    private static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    /// <summary>The policy as JSON.</summary>
    public string ToJson() => new JsonObject
    {
        ["format"] = "rotor-adaptive-policy", ["version"] = 1,
        ["minTopScore"] = Math.Round(MinTopScore, 4), ["maxDropFromTop"] = Math.Round(MaxDropFromTop, 4),
        ["minGap"] = Math.Round(MinGap, 4), ["maxPassages"] = MaxPassages, ["modelConfidenceThreshold"] = ModelConfidenceThreshold,
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";

    /// <summary>Reads a policy written by <see cref="ToJson"/>.</summary>
    /// <exception cref="RotorException">Not such a file, or a field missing or out of range (named).</exception>
    public static AdaptivePolicy Load(string path)
    {
        if (!File.Exists(path)) throw new RotorException($"{path}: adaptive policy file not found");
        JsonObject o;
        try { o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new RotorException($"{path}: expected a JSON object"); }
        catch (JsonException e) { throw new RotorException($"{path}: not valid JSON: {e.Message}", e); }
        if ((string?)o["format"] != "rotor-adaptive-policy" || (int?)o["version"] != 1) throw new RotorException($"{path}: not a version-1 rotor-adaptive-policy file");
        double Num(string f, double min, double max)
        {
            double x = o[f] is JsonValue v && v.TryGetValue(out double d) ? d : throw new RotorException($"{path}: field '{f}' is missing or not a number");
            if (!(x >= min && x <= max)) throw new RotorException($"{path}: field '{f}' is {x}, expected {min}..{max}");
            return x;
        }
        return new((float)Num("minTopScore", -1, 1), (float)Num("maxDropFromTop", 0, 2), (float)Num("minGap", 0, 2), (int)Num("maxPassages", 1, 1000),
            Num("modelConfidenceThreshold", 0, 1));
    }
}

/// <summary>One judged query's dense ranking: scores best first and whether each hit is relevant.</summary>
/// <param name="QueryId">Query id.</param>
/// <param name="Scores">Cosine scores, best first.</param>
/// <param name="Relevant">Relevance of each hit (same length as Scores).</param>
/// <param name="RelevantTotal">Relevant documents the query has in all.</param>
public sealed record JudgedRanking(string QueryId, float[] Scores, bool[] Relevant, int RelevantTotal)
{
    /// <summary>The ranking of the same query over a corpus without its relevant documents: the "retrieval cannot help" case.</summary>
    public JudgedRanking WithoutRelevant()
    {
        var keep = Enumerable.Range(0, Scores.Length).Where(i => !Relevant[i]).ToArray();
        return new(QueryId, keep.Select(i => Scores[i]).ToArray(), new bool[keep.Length], 0);
    }
}

/// <summary>How an <see cref="AdaptivePolicy"/> does on judged rankings.</summary>
/// <param name="Queries">Queries with a relevant document (answerable).</param>
/// <param name="RetrieveRecall">Share of answerable queries where the policy retrieves.</param>
/// <param name="SkipRate">Share of unanswerable queries (relevant documents removed) where it does not retrieve.</param>
/// <param name="DecisionAccuracy">Mean of the two (balanced accuracy).</param>
/// <param name="MeanPassages">Mean passages taken when retrieving (answerable queries).</param>
/// <param name="PassageRecall">Share of relevant documents among those taken (answerable queries, mean).</param>
/// <param name="PassagePrecision">Share of taken passages that are relevant (mean over answerable queries that retrieve).</param>
/// <param name="F1">Mean F1 of the taken set against the relevant set (answerable queries; 0 when nothing is taken).</param>
public sealed record AdaptiveScores(int Queries, double RetrieveRecall, double SkipRate, double DecisionAccuracy, double MeanPassages,
    double PassageRecall, double PassagePrecision, double F1);

/// <summary>
/// Fits an <see cref="AdaptivePolicy"/> on judged queries (a development split) and scores it on others. The
/// retrieve-or-not threshold maximizes balanced accuracy between each query's real ranking (answerable) and the same
/// ranking with its relevant documents removed (unanswerable); the count parameters maximize the mean F1 of the taken
/// passages against the relevant ones. Grid search, deterministic.
/// </summary>
public static class AdaptiveCalibration
{
    /// <summary>Scores a policy on rankings.</summary>
    public static AdaptiveScores Evaluate(AdaptivePolicy policy, IReadOnlyList<JudgedRanking> rankings)
    {
        ArgumentNullException.ThrowIfNull(policy);
        var answerable = rankings.Where(r => r.RelevantTotal > 0).ToList();
        if (answerable.Count == 0) throw new ArgumentException("no ranking has a relevant document", nameof(rankings));
        int retrieved = 0, skipped = 0; double passages = 0, recall = 0, precision = 0, f1 = 0;
        foreach (var r in answerable)
        {
            var d = policy.Decide(r.Scores);
            if (!policy.Decide(r.WithoutRelevant().Scores).Retrieve) skipped++;
            if (!d.Retrieve) continue;
            retrieved++;
            passages += d.Count;
            int hits = r.Relevant.Take(d.Count).Count(x => x);
            double rec = (double)hits / r.RelevantTotal, prec = (double)hits / d.Count;
            recall += rec; precision += prec;
            f1 += hits == 0 ? 0 : 2 * rec * prec / (rec + prec);
        }
        int n = answerable.Count;
        return new AdaptiveScores(n, (double)retrieved / n, (double)skipped / n, ((double)retrieved / n + (double)skipped / n) / 2,
            retrieved == 0 ? 0 : passages / retrieved, recall / n, retrieved == 0 ? 0 : precision / retrieved, f1 / n);
    }

    /// <summary>The fixed-k baseline: always retrieve k passages.</summary>
    public static AdaptiveScores EvaluateFixed(int k, IReadOnlyList<JudgedRanking> rankings)
        => Evaluate(new AdaptivePolicy(-2f, 2f, 2f, k), rankings);

    /// <summary>Fits the policy on <paramref name="dev"/>; <paramref name="maxPassages"/> caps the count.</summary>
    /// <param name="dev">Judged rankings of the development queries.</param>
    /// <param name="maxPassages">Most passages the policy may take.</param>
    /// <param name="targetRetrieveRate">Null: the retrieve threshold maximizes balanced accuracy. A rate in (0, 1]: the
    /// highest threshold that still retrieves for at least this share of answerable dev queries (a skipped answer costs
    /// more than a few unneeded passages).</param>
    public static AdaptivePolicy Calibrate(IReadOnlyList<JudgedRanking> dev, int maxPassages = 10, double? targetRetrieveRate = null)
    {
        var answerable = dev.Where(r => r.RelevantTotal > 0 && r.Scores.Length > 0).ToList();
        if (answerable.Count == 0) throw new ArgumentException("no development ranking has a relevant document", nameof(dev));
        // 1. Retrieve or not: the top score of answerable vs unanswerable rankings; threshold at the best balanced accuracy.
        var pos = answerable.Select(r => r.Scores[0]).ToArray();
        var neg = answerable.Select(r => r.WithoutRelevant().Scores.FirstOrDefault(float.NegativeInfinity)).ToArray();
        if (targetRetrieveRate is double r && !(r > 0 && r <= 1)) throw new ArgumentOutOfRangeException(nameof(targetRetrieveRate), r, "target retrieve rate must be in (0, 1]");
        float bestT = 0; double bestAcc = -1;
        // Candidate thresholds are the observed top scores; the one chosen is moved halfway down to the next lower
        // observed score (same accuracy on dev, a margin on both sides for unseen queries).
        var cands = pos.Concat(neg).Where(float.IsFinite).Distinct().OrderBy(x => x).ToArray();
        for (int i = 0; i < cands.Length; i++)
        {
            float t = cands[i];
            double acc = (pos.Count(s => s >= t) / (double)pos.Length + neg.Count(s => s < t) / (double)neg.Length) / 2;
            if (targetRetrieveRate is double rate)
            {
                if (pos.Count(x => x >= t) >= rate * pos.Length) bestT = i > 0 ? (cands[i - 1] + t) / 2 : t;
            }
            else if (acc > bestAcc) { bestAcc = acc; bestT = i > 0 ? (cands[i - 1] + t) / 2 : t; }
        }
        // 2. How many: drop-from-top and gap thresholds at the best mean F1 (the retrieve threshold fixed).
        float[] drops = [.. Enumerable.Range(1, 20).Select(i => i * 0.01f), 0.25f, 0.3f, 2f];
        float[] gaps = [.. Enumerable.Range(1, 10).Select(i => i * 0.005f), 0.06f, 0.08f, 0.1f, 2f];
        AdaptivePolicy best = new(bestT, 2f, 2f, 1);
        double bestF1 = -1;
        foreach (float drop in drops)
            foreach (float gap in gaps)
            {
                var p = new AdaptivePolicy(bestT, drop, gap, maxPassages);
                double f1 = Evaluate(p, answerable).F1;
                if (f1 > bestF1 + 1e-12) { bestF1 = f1; best = p; }
            }
        return best;
    }
}
