using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Rotor.Lm;
using Rotor.Lm.Tokenizers;
using Rotor.Rag.Pipeline;
using Rotor.Rag.Search;

namespace Rotor.Rag.Answers;

/// <summary>Which rule decides whether to retrieve and how many passages.</summary>
public enum AdaptiveMode
{
    /// <summary>Always retrieve <see cref="RetrievalOptions.Top"/> passages.</summary>
    Off = 0,
    /// <summary>The dense scores decide (<see cref="AdaptivePolicy.Decide"/>): nothing close enough, no retrieval;
    /// else the passages near the best.</summary>
    Score = 1,
    /// <summary>The model decides first: when its closed-book confidence (<see cref="ClosedBookConfidence"/>) reaches
    /// <see cref="AdaptivePolicy.ModelConfidenceThreshold"/> nothing is retrieved; when it is unsure the score rule
    /// decides.</summary>
    Model = 2,
}

/// <summary>Options of a <see cref="GroundedAnswerer"/>.</summary>
public sealed record GroundedAnswerOptions
{
    /// <summary>The search: mode (dense, lexical, hybrid), candidates, and <see cref="RetrievalOptions.Top"/> = the most
    /// passages put in a prompt (default 5, hybrid).</summary>
    public RetrievalOptions Retrieval { get; init; } = RetrievalOptions.Default;
    /// <summary>The adaptive rule (default: <see cref="AdaptiveMode.Score"/>).</summary>
    public AdaptiveMode Adaptive { get; init; } = AdaptiveMode.Score;
    /// <summary>Thresholds of the score rule and of the model rule (<see cref="AdaptivePolicy.ModelConfidenceThreshold"/>);
    /// its <see cref="AdaptivePolicy.MaxPassages"/> is capped by <see cref="RetrievalOptions.Top"/>.</summary>
    public AdaptivePolicy Policy { get; init; } = AdaptivePolicy.Default;
    /// <summary>Closed-book answer tokens the model rule measures (K).</summary>
    public int ConfidenceTokens { get; init; } = 8;
    /// <summary>Answer tokens at most; the prompt keeps this much of the context free.</summary>
    public int MaxAnswerTokens { get; init; } = 256;
    /// <summary>Sampling of the answer (default: greedy).</summary>
    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;
    /// <summary>Context length (default: the model's, at most 4096).</summary>
    public int? ContextLength { get; init; }
    /// <summary>Chat format (default: the model's, detected from its template and vocabulary).</summary>
    public ChatFormat? Format { get; init; }
    /// <summary>Texts that end the answer.</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];
}

/// <summary>Whether passages go into the prompt, how many, and why.</summary>
/// <param name="Mode">The rule that decided.</param>
/// <param name="Retrieve">Whether passages are given to the model.</param>
/// <param name="Count">Passages chosen (before the token budget; 0 when not retrieving).</param>
/// <param name="Reason">Why, with the numbers: "retrieve 3 passages: top score 0.62 >= 0.45, gap after #3 0.11 >= 0.03".</param>
/// <param name="Confidence">The model's closed-book confidence when the model rule measured it.</param>
public sealed record RetrievalDecision(AdaptiveMode Mode, bool Retrieve, int Count, string Reason, ConfidenceMeasurement? Confidence);

/// <summary>A question made ready for generation: the retrieval decision, the passages found, the prompt and what
/// each step took. <see cref="Complete"/> turns an answer text into an <see cref="AnswerRecord"/>, so a caller that
/// decodes by other means (a batching server) still gets the citations mapped.</summary>
/// <param name="Question">The question.</param>
/// <param name="Decision">The retrieval decision.</param>
/// <param name="Retrieved">Passages the search returned, best first (empty when retrieval was skipped before searching).</param>
/// <param name="Prompt">The prompt: messages, ids, numbered sources, omitted passages.</param>
/// <param name="ConfidenceMilliseconds">Time of the confidence measurement (0 unless the model rule ran).</param>
/// <param name="RetrievalMilliseconds">Time of the search (embedding included).</param>
/// <param name="PromptMilliseconds">Time to build and count the prompt.</param>
public sealed record PreparedAnswer(string Question, RetrievalDecision Decision, IReadOnlyList<RetrievedPassage> Retrieved, GroundedPrompt Prompt,
    double ConfidenceMilliseconds, double RetrievalMilliseconds, double PromptMilliseconds)
{
    /// <summary>The record of <paramref name="answer"/> generated for this prompt.</summary>
    /// <param name="answer">The answer text.</param>
    /// <param name="generatedTokens">Tokens generated.</param>
    /// <param name="finish">Why generation ended.</param>
    /// <param name="generationMilliseconds">Time of the generation (prefill included).</param>
    public AnswerRecord Complete(string answer, int generatedTokens, FinishReason finish, double generationMilliseconds)
    {
        ArgumentNullException.ThrowIfNull(answer);
        var citations = CitationParser.Parse(answer, Prompt.Sources);
        return new AnswerRecord(this, answer, generatedTokens, finish, citations, CitationParser.Cited(citations), generationMilliseconds);
    }
}

/// <summary>Everything about one grounded answer: the prepared question (decision, passages, prompt), the answer, its
/// citations mapped to the passages, and timings. <see cref="WriteJson"/> writes it whole.</summary>
/// <param name="Prepared">The question, decision, retrieved passages and prompt.</param>
/// <param name="Answer">The answer text.</param>
/// <param name="GeneratedTokens">Tokens generated.</param>
/// <param name="Finish">Why generation ended.</param>
/// <param name="Citations">Citations in the answer, in text order, each mapped to its source (null when the number names none).</param>
/// <param name="Cited">Sources cited at least once, by number.</param>
/// <param name="GenerationMilliseconds">Time of the generation.</param>
public sealed record AnswerRecord(PreparedAnswer Prepared, string Answer, int GeneratedTokens, FinishReason Finish,
    IReadOnlyList<Citation> Citations, IReadOnlyList<AnswerSource> Cited, double GenerationMilliseconds)
{
    /// <summary>The numbered passages the prompt held.</summary>
    public IReadOnlyList<AnswerSource> Sources => Prepared.Prompt.Sources;

    /// <summary>Whether the prompt held no passage (retrieval skipped, nothing relevant, or nothing fit).</summary>
    public bool NoSourceUsed => Sources.Count == 0;

    /// <summary>Writes the record as one JSON object (snake_case keys; see docs/RAG.md).</summary>
    public void WriteJson(Utf8JsonWriter w)
    {
        ArgumentNullException.ThrowIfNull(w);
        var p = Prepared;
        var d = p.Decision;
        w.WriteStartObject();
        w.WriteString("question", p.Question);
        w.WritePropertyName("decision");
        AnswerJson.WriteDecision(w, d);
        w.WriteString("situation", p.Prompt.Situation switch { PromptSituation.Sources => "sources", PromptSituation.NothingRelevant => "nothing_relevant", _ => "not_needed" });
        w.WriteStartArray("retrieved");
        foreach (var h in p.Retrieved) AnswerJson.WriteHit(w, h);
        w.WriteEndArray();
        w.WriteStartArray("sources");
        foreach (var s in Sources) AnswerJson.WriteSource(w, s, Cited.Any(x => x.Number == s.Number));
        w.WriteEndArray();
        w.WriteStartArray("omitted_for_budget");
        foreach (var h in p.Prompt.Omitted) w.WriteStringValue(h.Passage.Id);
        w.WriteEndArray();
        w.WriteBoolean("no_source_used", NoSourceUsed);
        w.WriteNumber("prompt_tokens", p.Prompt.TokenCount);
        w.WriteNumber("context_length", p.Prompt.ContextLength);
        w.WriteNumber("answer_tokens_reserved", p.Prompt.AnswerTokens);
        w.WriteString("answer", Answer);
        w.WriteNumber("generated_tokens", GeneratedTokens);
        w.WriteString("finish", Finish.ToString().ToLowerInvariant());
        w.WriteStartArray("citations");
        foreach (var cit in Citations) AnswerJson.WriteCitation(w, cit);
        w.WriteEndArray();
        w.WriteStartObject("timings_ms");
        w.WriteNumber("confidence", p.ConfidenceMilliseconds);
        w.WriteNumber("retrieval", p.RetrievalMilliseconds);
        w.WriteNumber("prompt", p.PromptMilliseconds);
        w.WriteNumber("generation", GenerationMilliseconds);
        w.WriteNumber("total", p.ConfidenceMilliseconds + p.RetrievalMilliseconds + p.PromptMilliseconds + GenerationMilliseconds);
        w.WriteEndObject();
        w.WriteEndObject();
    }
}

/// <summary>The JSON shapes of <see cref="AnswerRecord.WriteJson"/>'s parts (snake_case keys), for callers that
/// report sources, decisions and citations in their own documents (a server's response).</summary>
public static class AnswerJson
{
    /// <summary><c>{"mode","retrieve","count","reason","confidence"?:{"mean_max_probability","mean_entropy","steps","closed_book_text"}}</c>.</summary>
    public static void WriteDecision(Utf8JsonWriter w, RetrievalDecision d)
    {
        ArgumentNullException.ThrowIfNull(w); ArgumentNullException.ThrowIfNull(d);
        w.WriteStartObject();
        w.WriteString("mode", d.Mode.ToString().ToLowerInvariant());
        w.WriteBoolean("retrieve", d.Retrieve);
        w.WriteNumber("count", d.Count);
        w.WriteString("reason", d.Reason);
        if (d.Confidence is { } c)
        {
            w.WriteStartObject("confidence");
            w.WriteNumber("mean_max_probability", c.MeanMaxProbability);
            w.WriteNumber("mean_entropy", c.MeanEntropy);
            w.WriteNumber("steps", c.Steps);
            w.WriteString("closed_book_text", c.Text);
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }

    /// <summary>A retrieval hit: <c>{"passage_id","document_id","title","section","score","dense_score"?}</c>.</summary>
    public static void WriteHit(Utf8JsonWriter w, RetrievedPassage h)
    {
        ArgumentNullException.ThrowIfNull(w); ArgumentNullException.ThrowIfNull(h);
        w.WriteStartObject();
        HitFields(w, h);
        w.WriteEndObject();
    }

    /// <summary>A prompt source: <c>{"number", the hit's fields, "text" (as given in the prompt), "truncated", "cited"}</c>.</summary>
    public static void WriteSource(Utf8JsonWriter w, AnswerSource s, bool cited)
    {
        ArgumentNullException.ThrowIfNull(w); ArgumentNullException.ThrowIfNull(s);
        w.WriteStartObject();
        w.WriteNumber("number", s.Number);
        HitFields(w, s.Hit);
        w.WriteString("text", s.PromptText);
        w.WriteBoolean("truncated", s.Truncated);
        w.WriteBoolean("cited", cited);
        w.WriteEndObject();
    }

    /// <summary>A citation: <c>{"number","at" (offset in the answer),"passage_id" (null when the number names no source)}</c>.</summary>
    public static void WriteCitation(Utf8JsonWriter w, Citation c)
    {
        ArgumentNullException.ThrowIfNull(w); ArgumentNullException.ThrowIfNull(c);
        w.WriteStartObject();
        w.WriteNumber("number", c.Number);
        w.WriteNumber("at", c.Start);
        if (c.Source is { } s) w.WriteString("passage_id", s.Hit.Passage.Id); else w.WriteNull("passage_id");
        w.WriteEndObject();
    }

    private static void HitFields(Utf8JsonWriter w, RetrievedPassage h)
    {
        w.WriteString("passage_id", h.Passage.Id);
        w.WriteString("document_id", h.Passage.DocumentId);
        w.WriteString("title", h.Passage.Title);
        w.WriteString("section", h.Passage.Section);
        w.WriteNumber("score", h.Score);
        if (h.DenseScore is float ds) w.WriteNumber("dense_score", ds);
    }
}

/// <summary>What one question asks beyond a <see cref="GroundedAnswerer"/>'s options (a server's request); each unset
/// value keeps the option.</summary>
public sealed record PrepareRequest
{
    /// <summary>Earlier messages of the conversation, kept in the prompt before the instructions and sources. The
    /// rules do not read them: the search and the closed-book probe see the question alone.</summary>
    public IReadOnlyList<PromptMessage> History { get; init; } = [];
    /// <summary>The adaptive rule (null: <see cref="GroundedAnswerOptions.Adaptive"/>).</summary>
    public AdaptiveMode? Adaptive { get; init; }
    /// <summary>Passages in the prompt at most (null: <see cref="RetrievalOptions.Top"/> of the options).</summary>
    public int? Top { get; init; }
    /// <summary>Search mode (null: the options').</summary>
    public RetrievalMode? Mode { get; init; }
    /// <summary>Positions kept free for the answer (null: <see cref="GroundedAnswerOptions.MaxAnswerTokens"/>).</summary>
    public int? AnswerTokens { get; init; }
    /// <summary>Positions of the context the prompt is built for (null: <see cref="GroundedAnswerer.ContextLength"/>).</summary>
    public int? ContextLength { get; init; }
}

/// <summary>
/// Answers questions from an index with a language model: question → retrieval decision (<see cref="AdaptiveMode"/>)
/// → passages that fit the context budget, numbered → generation → <see cref="AnswerRecord"/> with the citations mapped
/// to passages. <see cref="Generate"/> runs the model on the answerer's own session, one call at a time; so does the
/// model rule's closed-book measurement unless an <see cref="IConfidenceProbe"/> is given, and then
/// <see cref="PrepareAsync"/> never runs the model itself and may be called concurrently (a server whose batched
/// decoder is the only thread that runs the model passes a probe that queues the measurement there).
/// <code>
/// using var model = LanguageModel.Open("stories260K.bin");
/// using var embedder = SentenceEmbedder.CreateMiniLm();
/// using var index = RagIndex.Open("wiki-idx", embedder);
/// using var answerer = new GroundedAnswerer(model, index.Retriever, new GroundedAnswerOptions { Adaptive = AdaptiveMode.Model });
/// var record = answerer.Answer("Who was Aristotle's teacher?", text => Console.Write(text));
/// foreach (var s in record.Sources) Console.WriteLine($"[{s.Number}] {s.Heading} [{s.Hit.Passage.Id}]");
/// </code>
/// </summary>
public sealed class GroundedAnswerer : IDisposable
{
    private readonly LanguageModel _model;
    private readonly IPassageRetriever _retriever;
    // Any retriever: one index or a cluster's front door (only SearchAsync is used).
    private readonly GroundedPromptBuilder _builder;
    private readonly ChatFormat _format;
    private readonly IConfidenceProbe? _probe;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private InferenceSession? _session;        // made at first use, under _gate
    private ClosedBookConfidence? _confidence;  // on _session, under _gate

    /// <summary>An answerer over <paramref name="retriever"/> with <paramref name="model"/> (which must have a tokenizer).</summary>
    /// <param name="model">The model.</param>
    /// <param name="retriever">The passages' retriever.</param>
    /// <param name="options">Options (default: <see cref="GroundedAnswerOptions"/>'s).</param>
    /// <param name="probe">Measures the model rule's confidence (null: a <see cref="ClosedBookConfidence"/> of
    /// <see cref="GroundedAnswerOptions.ConfidenceTokens"/> tokens on the answerer's session). Must be safe to call
    /// concurrently.</param>
    /// <exception cref="RotorException">The model has no tokenizer, its vocabulary lacks the chat format's tokens, or
    /// an option is out of range (named).</exception>
    public GroundedAnswerer(LanguageModel model, IPassageRetriever retriever, GroundedAnswerOptions? options = null, IConfidenceProbe? probe = null)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _retriever = retriever ?? throw new ArgumentNullException(nameof(retriever));
        Options = options ?? new GroundedAnswerOptions();
        if (Options.Retrieval.Top <= 0) throw new RotorException($"top {Options.Retrieval.Top} must be positive");
        if (Options.MaxAnswerTokens <= 0) throw new RotorException($"max answer tokens {Options.MaxAnswerTokens} must be positive");
        if (Options.ConfidenceTokens <= 0) throw new RotorException($"confidence tokens {Options.ConfidenceTokens} must be positive");
        Options.Sampling.Validate("answer sampling");
        var template = ChatTemplate.For(model.RequireTokenizer(), Options.Format);
        _format = template.Format;
        _builder = new GroundedPromptBuilder(template);
        ContextLength = Options.ContextLength ?? Math.Min(model.Config.ContextLength, 4096);
        if (ContextLength <= 1) throw new RotorException($"context length {ContextLength} must be at least 2");
        _probe = probe;
    }

    /// <summary>The options.</summary>
    public GroundedAnswerOptions Options { get; }

    /// <summary>The prompt builder (the model's chat format and tokenizer).</summary>
    public GroundedPromptBuilder PromptBuilder => _builder;

    /// <summary>Positions of the context.</summary>
    public int ContextLength { get; }

    /// <summary>Decides whether to retrieve, searches, and builds the prompt.</summary>
    /// <exception cref="RotorException">The question is empty, or the question alone does not fit the context beside the answer's room.</exception>
    public PreparedAnswer Prepare(string question, CancellationToken cancellationToken = default)
        => PrepareAsync(question, null, cancellationToken).GetAwaiter().GetResult();

    /// <summary>Decides whether to retrieve, searches, and builds the prompt, with what <paramref name="request"/>
    /// changes of the options. Both rules see <paramref name="question"/> alone: the score rule searches for it, the
    /// model rule measures the closed-book answer to it; earlier turns (<see cref="PrepareRequest.History"/>) only go
    /// into the prompt.</summary>
    /// <exception cref="RotorException">The question is empty, a value of the request is out of range, or the question
    /// alone does not fit the context beside the answer's room.</exception>
    public async Task<PreparedAnswer> PrepareAsync(string question, PrepareRequest? request = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(question);
        if (string.IsNullOrWhiteSpace(question)) throw new RotorException("the question is empty");
        var r = request ?? new PrepareRequest();
        var o = Options;
        var adaptive = r.Adaptive ?? o.Adaptive;
        int top = r.Top ?? o.Retrieval.Top;
        if (top <= 0) throw new RotorException($"top {top} must be positive");
        var retrieval = o.Retrieval with { Top = top, Mode = r.Mode ?? o.Retrieval.Mode };
        int context = r.ContextLength ?? ContextLength;
        int answerTokens = Math.Min(r.AnswerTokens ?? o.MaxAnswerTokens, context - 1);
        if (answerTokens <= 0) throw new RotorException($"answer tokens {answerTokens} must be positive");
        var policy = o.Policy with { MaxPassages = Math.Min(o.Policy.MaxPassages, top) };
        var sw = Stopwatch.StartNew();
        ConfidenceMeasurement? conf = null;
        double confMs = 0;
        if (adaptive == AdaptiveMode.Model)
        {
            conf = await MeasureAsync(question, cancellationToken).ConfigureAwait(false);
            confMs = sw.Elapsed.TotalMilliseconds;
            if (conf.MeanMaxProbability >= policy.ModelConfidenceThreshold)
            {
                var skip = new RetrievalDecision(AdaptiveMode.Model, false, 0,
                    F($"no retrieval: model confident, {conf} >= {policy.ModelConfidenceThreshold:F3}"), conf);
                return Finish(question, skip, [], PromptSituation.NotNeeded, confMs, 0, context, answerTokens, r.History);
            }
        }
        sw.Restart();
        var result = await _retriever.SearchAsync(question, retrieval, cancellationToken).ConfigureAwait(false);
        RetrievalDecision decision;
        if (adaptive == AdaptiveMode.Off)
            decision = new RetrievalDecision(AdaptiveMode.Off, result.Hits.Count > 0, result.Hits.Count,
                result.Hits.Count > 0 ? F($"adaptive retrieval off: the top {result.Hits.Count} passages") : "adaptive retrieval off: the index returned nothing", null);
        else
        {
            // The score rule reads dense cosines; a lexical search has none, so a dense search supplies them.
            var scores = result.DenseScores.Count > 0 || result.Hits.Count == 0 ? result.DenseScores
                : (await _retriever.SearchAsync(question, retrieval with { Mode = RetrievalMode.Dense, Top = Math.Max(1, retrieval.Candidates) }, cancellationToken).ConfigureAwait(false)).DenseScores;
            var d = policy.Decide(scores);
            string reason = conf is null ? d.Reason : F($"model unsure, {conf} < {policy.ModelConfidenceThreshold:F3}; {d.Reason}");
            decision = new RetrievalDecision(adaptive, d.Retrieve && result.Hits.Count > 0, Math.Min(d.Count, result.Hits.Count), reason, conf);
        }
        double retrievalMs = sw.Elapsed.TotalMilliseconds;
        return Finish(question, decision, result.Hits, decision.Retrieve ? PromptSituation.Sources : PromptSituation.NothingRelevant, confMs, retrievalMs, context, answerTokens, r.History);
    }

    /// <summary>The model rule's measurement: the probe's, else the own session's (serialized with <see cref="Generate"/>).</summary>
    private async Task<ConfidenceMeasurement> MeasureAsync(string question, CancellationToken ct)
    {
        if (_probe is not null) return await _probe.MeasureAsync(question, ct).ConfigureAwait(false);
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            _confidence ??= new ClosedBookConfidence(_model, Options.ConfidenceTokens, _format, Session());
            return _confidence.Measure(question, ct);
        }
        finally { _gate.Release(); }
    }

    private InferenceSession Session() => _session ??= _model.CreateSession(ContextLength);

    private PreparedAnswer Finish(string question, RetrievalDecision decision, IReadOnlyList<RetrievedPassage> hits, PromptSituation situation, double confMs, double retrievalMs,
        int context, int answerTokens, IReadOnlyList<PromptMessage> history)
    {
        var sw = Stopwatch.StartNew();
        var offered = decision.Retrieve ? hits.Take(decision.Count).ToList() : [];
        var prompt = _builder.Build(question, offered, situation, context, answerTokens, history);
        return new PreparedAnswer(question, decision, hits, prompt, confMs, retrievalMs, sw.Elapsed.TotalMilliseconds);
    }

    /// <summary>Generates the answer to a prepared question, handing each piece of text to <paramref name="onText"/>
    /// as it is decoded.</summary>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public AnswerRecord Generate(PreparedAnswer prepared, Action<string>? onText = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prepared);
        if (prepared.Prompt.Ids is null) throw new ArgumentException("the prompt was built without the model's tokenizer", nameof(prepared));
        _gate.Wait(cancellationToken);
        try
        {
            var sw = Stopwatch.StartNew();
            var gen = new TextGenerator(Session());
            var options = new GenerationOptions { MaxTokens = prepared.Prompt.AnswerTokens, Sampling = Options.Sampling, Stop = Options.Stop };
            foreach (var t in gen.Generate(prepared.Prompt.Ids, options, cancellationToken))
                if (t.Text.Length > 0) onText?.Invoke(t.Text);
            var r = gen.LastResult!;
            return prepared.Complete(r.Text, r.Ids.Count, r.Finish, sw.Elapsed.TotalMilliseconds);
        }
        finally { _gate.Release(); }
    }

    /// <summary><see cref="Prepare"/> then <see cref="Generate"/>.</summary>
    public AnswerRecord Answer(string question, Action<string>? onText = null, CancellationToken cancellationToken = default)
        => Generate(Prepare(question, cancellationToken), onText, cancellationToken);

    private static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    /// <summary>Releases the gate (the model and the retriever belong to the caller).</summary>
    public void Dispose() => _gate.Dispose();
}
