using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Rotor.Lm;
using Rotor.Rag.Answers;
using Rotor.Rag.Demo;
using Rotor.Rag.Embeddings;
using Rotor.Rag.Pipeline;
using Rotor.Rag.Search;

namespace Rotor.Cli.Commands;

/// <summary>
/// <c>rotor ask INDEX --model MODEL "question"</c>: a grounded answer (<see cref="GroundedAnswerer"/>): the retrieval
/// decision and its reason, the answer streamed, then the numbered sources and which the answer cited; <c>--json</c>
/// writes the whole <see cref="AnswerRecord"/> instead. <c>rotor eval confidence</c> (<see cref="CreateEvalConfidence"/>)
/// prints the distribution of the model rule's confidence over a question file, for calibrating its threshold.
/// </summary>
internal static class AskCommand
{
    private static Option<string> ModelOption() => new("--model", "-m")
    {
        Description = "a GGUF file, a Hugging Face folder, a llama2.c checkpoint, or random:2b4t (random weights of BitNet b1.58 2B4T's shape; random:2b4t-4l for 4 layers)",
        Required = true,
    };
    private static Option<string?> TokenizerOption() => new("--tokenizer") { Description = "tokenizer file for a model that carries none (tok*.bin, tokenizer.json, tiktoken tokenizer.model)" };
    private static Option<int?> CtxOption() => new("--ctx") { Description = "context length in tokens (default: the model's, at most 4096)" };
    private static Option<int> ConfidenceTokensOption() => new("--confidence-tokens") { Description = "closed-book answer tokens the model rule measures", DefaultValueFactory = _ => 8 };

    internal static Command Create()
    {
        var index = new Argument<string>("INDEX") { Description = "an index directory (made by rotor ingest), or 'demo' (the bundled demo corpus)" };
        var question = new Argument<string>("QUESTION") { Description = "the question" };
        var model = ModelOption();
        var top = new Option<int>("--top") { Description = "passages in the prompt at most", DefaultValueFactory = _ => 5 };
        var mode = new Option<string>("--mode") { Description = "retrieval: dense, bm25 (lexical) or hybrid (RRF of both)", DefaultValueFactory = _ => "hybrid" };
        mode.AcceptOnlyFromAmong("dense", "bm25", "lexical", "hybrid");
        var adaptive = new Option<string>("--adaptive") { Description = "whether to retrieve and how many: score (dense scores), model (the model's closed-book confidence first, then the scores) or off (always --top)", DefaultValueFactory = _ => "score" };
        adaptive.AcceptOnlyFromAmong("score", "model", "off");
        var policy = new Option<string?>("--policy") { Description = "adaptive policy file (default: INDEX/adaptive.json if present, else built-in thresholds)" };
        var threshold = new Option<double?>("--confidence-threshold") { Description = "model rule: retrieve when the confidence is below this (default: the policy's)" };
        var confTokens = ConfidenceTokensOption();
        var json = new Option<bool>("--json") { Description = "write the whole record as JSON to stdout (question, decision, passages, prompt tokens, answer, citations, timings) instead of streaming" };
        var n = new Option<int>("--max-tokens", "-n") { Description = "answer tokens at most (kept free in the context)", DefaultValueFactory = _ => 256 };
        var temp = new Option<float>("--temperature", "--temp") { Description = "sampling temperature; 0 is greedy", DefaultValueFactory = _ => 0f };
        var seed = new Option<int?>("--seed") { Description = "seed for reproducible sampling" };
        var showPrompt = new Option<bool>("--show-prompt") { Description = "print the prompt's messages before the answer" };
        var tok = TokenizerOption(); var ctx = CtxOption();
        var cmd = new Command("ask", "Answer a question from an index with a language model: adaptive retrieval, numbered sources in the prompt, the answer streamed, the sources and citations after it");
        cmd.Arguments.Add(index); cmd.Arguments.Add(question);
        foreach (Option o in new Option[] { model, top, mode, adaptive, policy, threshold, confTokens, json, n, temp, seed, showPrompt, tok, ctx, Validate.Threads() }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            string q = r.GetValue(question)!, target = r.GetValue(index)!;
            if (string.IsNullOrWhiteSpace(q)) throw new RotorException("QUESTION is empty");
            if (r.GetValue(top) <= 0) throw new RotorException($"--top {r.GetValue(top)} must be positive");
            if (r.GetValue(n) <= 0) throw new RotorException($"--max-tokens {r.GetValue(n)} must be positive");
            if (target != "demo" && !Directory.Exists(target)) throw new RotorException($"{target}: no such index directory (make one with rotor ingest, or use 'demo')");
            var sampling = new SamplingOptions { Temperature = r.GetValue(temp), Seed = r.GetValue(seed) };
            sampling.Validate("options");
            var pol = LoadPolicy(target, r.GetValue(policy));
            if (r.GetValue(threshold) is double t)
            {
                if (!(t >= 0 && t <= 1)) throw new RotorException($"--confidence-threshold {t} must be in 0..1");
                pol = pol with { ModelConfidenceThreshold = t };
            }
            var options = new GroundedAnswerOptions
            {
                Retrieval = new RetrievalOptions { Top = r.GetValue(top), Mode = r.GetValue(mode) switch { "dense" => RetrievalMode.Dense, "hybrid" => RetrievalMode.Hybrid, _ => RetrievalMode.Lexical } },
                Adaptive = r.GetValue(adaptive) switch { "off" => AdaptiveMode.Off, "model" => AdaptiveMode.Model, _ => AdaptiveMode.Score },
                Policy = pol, ConfidenceTokens = r.GetValue(confTokens), MaxAnswerTokens = r.GetValue(n), Sampling = sampling, ContextLength = r.GetValue(ctx),
            };
            using var m = LmCommands.Open(r.GetValue(model)!, r.GetValue(tok), null, null);
            m.RequireTokenizer();
            using var embedder = SentenceEmbedder.CreateMiniLm(new SentenceEmbedderOptions { Threads = 1 });
            using var rag = target == "demo" ? null : RagIndex.Open(target, embedder);
            using var demo = rag is null ? DemoCorpus.CreateRetrieverAsync(embedder).GetAwaiter().GetResult() : null;
            using var answerer = new GroundedAnswerer(m, rag?.Retriever ?? demo!, options);
            var ct = CancelOnCtrlC();
            var prepared = answerer.Prepare(q, ct);
            bool asJson = r.GetValue(json);
            if (!asJson)
            {
                Console.WriteLine($"retrieval ({options.Adaptive.ToString().ToLowerInvariant()}): {prepared.Decision.Reason}");
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"prompt: {prepared.Prompt.TokenCount} tokens, {prepared.Prompt.Sources.Count} source{(prepared.Prompt.Sources.Count == 1 ? "" : "s")}{(prepared.Prompt.Sources.Any(x => x.Truncated) ? " (the last an excerpt)" : "")}{(prepared.Prompt.Omitted.Count > 0 ? $" ({prepared.Prompt.Omitted.Count} left out: no room in the context)" : "")}; context {prepared.Prompt.ContextLength}, {prepared.Prompt.AnswerTokens} kept for the answer"));
                if (r.GetValue(showPrompt))
                    foreach (var msg in prepared.Prompt.Messages) Console.WriteLine($"--- {msg.Role}\n{msg.Content}");
                Console.WriteLine();
            }
            var record = answerer.Generate(prepared, asJson ? null : text => { Console.Write(text); Console.Out.Flush(); }, ct);
            if (asJson)
            {
                using var stdout = Console.OpenStandardOutput();
                using (var w = new Utf8JsonWriter(stdout, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
                {
                    w.WriteStartObject();
                    w.WriteString("model", m.Source);
                    w.WriteString("index", target);
                    w.WritePropertyName("record");
                    record.WriteJson(w);
                    w.WriteEndObject();
                }
                stdout.WriteByte((byte)'\n');
                return 0;
            }
            Console.WriteLine();
            Console.WriteLine();
            PrintSources(record);
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"confidence {prepared.ConfidenceMilliseconds:F0} ms, retrieval {prepared.RetrievalMilliseconds:F0} ms, prompt {prepared.PromptMilliseconds:F0} ms, generation {record.GenerationMilliseconds:F0} ms ({record.GeneratedTokens} tokens, {record.Finish.ToString().ToLowerInvariant()})"));
            return 0;
        });
        return cmd;
    }

    /// <summary>The sources block after an answer: one line a source (number, heading, passage id, score, cited or
    /// not), then what the answer cited; "no source was used" when the prompt held none.</summary>
    internal static void PrintSources(AnswerRecord record)
    {
        if (record.NoSourceUsed)
        {
            var prompt = record.Prepared.Prompt;
            Console.WriteLine(prompt.Situation == PromptSituation.NotNeeded ? "no source was used: retrieval was not needed"
                : prompt.Omitted.Count > 0 ? $"no source was used: none of the {prompt.Omitted.Count} passages chosen fit the context ({prompt.ContextLength} tokens, {prompt.AnswerTokens} kept for the answer)"
                : "no source was used: nothing relevant was found");
        }
        else
        {
            Console.WriteLine("sources:");
            foreach (var s in record.Sources)
            {
                bool cited = record.Cited.Any(c => c.Number == s.Number);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"[{s.Number}] {s.Heading}  [{s.Hit.Passage.Id}]  score {s.Hit.Score:F4}{(s.Truncated ? "  (excerpt)" : "")}{(cited ? "  (cited)" : "")}"));
            }
            Console.WriteLine(record.Cited.Count == 0 ? "cited: none of the sources" : $"cited: {string.Join(", ", record.Cited.Select(c => $"[{c.Number}]"))}");
        }
        var invalid = record.Citations.Where(c => c.Source is null).Select(c => c.Number).Distinct().ToList();
        if (invalid.Count > 0) Console.WriteLine($"cited numbers that name no source: {string.Join(", ", invalid.Select(x => $"[{x}]"))}");
    }

    internal static AdaptivePolicy LoadPolicy(string target, string? file)
    {
        string? local = target != "demo" ? Path.Combine(target, "adaptive.json") : null;
        string? path = file ?? (local is not null && File.Exists(local) ? local : null);
        return path is null ? AdaptivePolicy.Default : AdaptivePolicy.Load(path);
    }

    /// <summary><c>rotor eval confidence --model MODEL --questions FILE</c>: the closed-book confidence of every
    /// question and its distribution, with the threshold at a percentile (the procedure behind the model rule's
    /// default, docs/RAG.md).</summary>
    internal static Command CreateEvalConfidence()
    {
        var model = ModelOption();
        var questions = new Option<string>("--questions") { Description = "questions, one a line (or JSON lines with a \"text\" field)", Required = true };
        var percentile = new Option<double>("--percentile") { Description = "the threshold printed is this percentile of the confidences (retrieval is skipped above it)", DefaultValueFactory = _ => 90 };
        var verbose = new Option<bool>("--each") { Description = "print every question's confidence, entropy and closed-book text" };
        var confTokens = ConfidenceTokensOption(); var tok = TokenizerOption();
        var cmd = new Command("confidence", "The model rule's closed-book confidence over a question file: its distribution and the threshold at a percentile, for calibrating rotor ask --adaptive model");
        foreach (Option o in new Option[] { model, questions, percentile, verbose, confTokens, tok, Validate.Threads() }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            string path = r.GetValue(questions)!;
            if (!File.Exists(path)) throw new RotorException($"--questions {path}: file not found");
            double pc = r.GetValue(percentile);
            if (!(pc >= 0 && pc <= 100)) throw new RotorException($"--percentile {pc} must be in 0..100");
            var qs = ReadQuestions(path);
            if (qs.Count == 0) throw new RotorException($"{path}: no questions");
            using var m = LmCommands.Open(r.GetValue(model)!, r.GetValue(tok), null, null);
            var measure = new ClosedBookConfidence(m, r.GetValue(confTokens));
            var conf = new List<double>(); var ent = new List<double>();
            foreach (string q in qs)
            {
                var c = measure.Measure(q);
                conf.Add(c.MeanMaxProbability); ent.Add(c.MeanEntropy);
                if (r.GetValue(verbose)) Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{c.MeanMaxProbability:F4}  {c.MeanEntropy:F3}  {q}  -> {c.Text.ReplaceLineEndings(" ")}"));
            }
            var inv = CultureInfo.InvariantCulture;
            string Row(string name, List<double> v) => string.Create(inv,
                $"{name,-28} min {Percentile(v, 0):F4}  p10 {Percentile(v, 10):F4}  p25 {Percentile(v, 25):F4}  p50 {Percentile(v, 50):F4}  p75 {Percentile(v, 75):F4}  p90 {Percentile(v, 90):F4}  max {Percentile(v, 100):F4}  mean {v.Average():F4}");
            Console.WriteLine($"{qs.Count} questions, {measure.Tokens} closed-book tokens each, {m.Source}");
            Console.WriteLine(Row("confidence (mean top prob.)", conf));
            Console.WriteLine(Row("entropy (nats)", ent));
            double thr = Percentile(conf, pc);
            Console.WriteLine(string.Create(inv, $"threshold at p{pc:0.#}: {thr:F4} (retrieval skipped for {conf.Count(x => x >= thr)} of {conf.Count} questions); use --confidence-threshold {thr:F4} or modelConfidenceThreshold in an adaptive.json"));
            return 0;
        });
        return cmd;
    }

    /// <summary>Questions of a file: JSON lines with a "text" field, or plain lines; blank lines skipped.</summary>
    private static List<string> ReadQuestions(string path)
    {
        var list = new List<string>();
        int line = 0;
        foreach (string raw in File.ReadLines(path))
        {
            line++;
            string s = raw.Trim();
            if (s.Length == 0) continue;
            if (s.StartsWith('{'))
            {
                try
                {
                    using var doc = JsonDocument.Parse(s);
                    s = doc.RootElement.TryGetProperty("text", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : throw new RotorException($"{path}:{line}: no \"text\" string field");
                }
                catch (JsonException e) { throw new RotorException($"{path}:{line}: not valid JSON: {e.Message}"); }
            }
            list.Add(s);
        }
        return list;
    }

    /// <summary>The p-th percentile (0..100) by linear interpolation between order statistics.</summary>
    internal static double Percentile(IReadOnlyList<double> values, double p)
    {
        var s = values.Order().ToArray();
        double pos = p / 100 * (s.Length - 1);
        int lo = (int)Math.Floor(pos), hi = Math.Min(lo + 1, s.Length - 1);
        return s[lo] + (s[hi] - s[lo]) * (pos - lo);
    }

    private static CancellationToken CancelOnCtrlC()
    {
        var cts = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { if (!cts.IsCancellationRequested) { e.Cancel = true; cts.Cancel(); } };
        return cts.Token;
    }
}
