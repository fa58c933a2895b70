using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Rotor.IO;
using Rotor.Lm;
using Rotor.Lm.Gguf;

namespace Rotor.Cli.Commands;

/// <summary>
/// The language-model commands: <c>generate</c>, <c>chat</c>, <c>logits</c>, <c>perplexity</c> and <c>bench-lm</c>.
/// MODEL is a GGUF file, a Hugging Face folder or a llama2.c checkpoint; <c>--tokenizer FILE</c> names a tokenizer for
/// models that carry none. Registered in Program.cs through <see cref="All"/>.
/// </summary>
internal static class LmCommands
{
    public static IEnumerable<Command> All() => [CreateGenerate(), CreateChat(), CreateLogits(), CreatePerplexity(), CreateBench(), CreateConvert()];

    private static Argument<string> ModelArgument() => new("MODEL") { Description = "a GGUF file, a Hugging Face folder (config.json + safetensors), a llama2.c checkpoint, or random:2b4t (random weights of BitNet b1.58 2B4T's shape; random:2b4t-4l for its first 4 layers)" };
    private static Option<string?> TokenizerOption() => new("--tokenizer") { Description = "tokenizer file for a model that carries none (tok*.bin, tokenizer.json, tiktoken tokenizer.model)" };
    private static Option<int?> ThreadsOption() => Validate.Threads();
    private static Option<int?> CtxOption() => new Option<int?>("--ctx") { Description = "context length in tokens (default: the model's, at most 4096)" }.InRange(1, 1 << 20);
    internal static Option<string?> LmHeadOption()
    {
        var o = new Option<string?>("--lm-head") { Description = "element type of the LM head: f32, f16, int8 or q4 (4.5 bits a weight) (default: the file's)" };
        o.AcceptOnlyFromAmong("f32", "f16", "int8", "q4");
        return o;
    }

    internal static Option<string> DeviceOption()
    {
        var o = new Option<string>("--device") { Description = "cpu, or cuda: the decoder on the GPU (falls back to the CPU, saying why, where there is none)", DefaultValueFactory = _ => "cpu" };
        o.AcceptOnlyFromAmong("cpu", "cuda");
        return o;
    }

    internal static Option<string?> KvCacheOption()
    {
        var o = new Option<string?>("--kv-cache") { Description = "how the key/value cache stores keys and values: f32 or f16 (half the memory) (default: f32)" };
        o.AcceptOnlyFromAmong("f32", "f16");
        return o;
    }

    internal static LanguageModel Open(string path, string? tokenizer, int? threads, string? lmHead, string? kvCache = null, string device = "cpu")
    {
        if (threads is <= 0) throw new RotorException($"--threads {threads} must be a positive number");
        DenseType? head = lmHead switch
        {
            null => null,
            "f32" => DenseType.F32, "f16" => DenseType.F16, "int8" => DenseType.Int8, "q4" => DenseType.Q4,
            _ => throw new RotorException($"--lm-head {lmHead} is not an LM head type (f32, f16, int8, q4)"),
        };
        var kv = kvCache switch
        {
            null or "f32" => KvCacheType.F32, "f16" => KvCacheType.F16,
            _ => throw new RotorException($"--kv-cache {kvCache} is not a key/value cache type (f32, f16)"),
        };
        var options = new LanguageModelOptions { TokenizerPath = tokenizer, Threads = threads, LmHeadType = head, KvCacheType = kv, Device = device == "cuda" ? LmDevice.Cuda : LmDevice.Cpu };
        var model = LanguageModel.Open(path, options);
        string runs = model.Cuda is not null || device == "cuda" ? model.DeviceNote : model.Backend.Name;
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"loaded {path} ({model.Format}, {model.Config.Architecture}, {model.Config.Layers} layers, dim {model.Config.Dim}, vocab {model.Config.VocabSize}) in {model.LoadTime.TotalSeconds:F2} s; weights {model.Weights.Bytes / 1048576.0:F1} MiB; {runs}"));
        return model;
    }

    private static int[] ParseIds(string text, string option)
    {
        var ids = new List<int>();
        foreach (string part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!int.TryParse(part, NumberStyles.Integer, CultureInfo.InvariantCulture, out int id) || id < 0)
                throw new RotorException($"{option}: '{part}' is not a token id");
            ids.Add(id);
        }
        if (ids.Count == 0) throw new RotorException($"{option}: no token ids");
        return [.. ids];
    }

    public static Command CreateGenerate()
    {
        var model = ModelArgument();
        var prompt = new Argument<string?>("PROMPT") { Description = "the prompt text", Arity = ArgumentArity.ZeroOrOne };
        var ids = new Option<string?>("--ids") { Description = "the prompt as token ids, comma-separated (instead of PROMPT)" };
        var n = new Option<int>("--max-tokens", "-n") { Description = "tokens to generate at most", DefaultValueFactory = _ => 128 }.InRange(0, 1 << 20);
        var temp = new Option<float>("--temperature", "--temp") { Description = "sampling temperature; 0 is greedy", DefaultValueFactory = _ => 0.8f }.InRange(0f, 100f);
        var topK = new Option<int>("--top-k") { Description = "keep the k most likely tokens (0: all)", DefaultValueFactory = _ => 40 }.NonNegative();
        var topP = new Option<float>("--top-p") { Description = "nucleus sampling threshold (1: off)", DefaultValueFactory = _ => 0.95f }.InRange(1e-6f, 1f);
        var minP = new Option<float>("--min-p") { Description = "drop tokens below min-p times the best (0: off)", DefaultValueFactory = _ => 0.05f }.InRange(0f, 0.999f);
        var rep = new Option<float>("--repeat-penalty") { Description = "repetition penalty over the last 64 tokens (1: off)", DefaultValueFactory = _ => 1f }.InRange(0.01f, 100f);
        var seed = new Option<int?>("--seed") { Description = "seed for reproducible sampling" };
        var stop = new Option<string[]>("--stop") { Description = "stop when this text appears (repeatable)", AllowMultipleArgumentsPerToken = false };
        var noBos = new Option<bool>("--no-bos") { Description = "do not put the beginning-of-sequence token first" };
        var json = new Option<string?>("--json") { Description = "write the prompt and generated ids, the text and the speeds as JSON to this file (- for stdout)" };
        var logprobs = new Option<int?>("--logprobs") { Description = "the generated tokens' log-probabilities with this many likeliest alternatives (0..20): in --json, and their mean on the last line" }.InRange(0, TokenLogprobs.MaxTop);
        var tok = TokenizerOption(); var threads = ThreadsOption(); var ctx = CtxOption(); var head = LmHeadOption(); var kvc = KvCacheOption(); var device = DeviceOption();
        var cmd = new Command("generate", "Generate text from a prompt, streamed as it is decoded; prompt and generation tokens/s at the end");
        foreach (var a in new Argument[] { model, prompt }) cmd.Arguments.Add(a);
        foreach (Option o in new Option[] { ids, n, temp, topK, topP, minP, rep, seed, stop, noBos, json, logprobs, tok, threads, ctx, head, kvc, device }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            var ct = CancelOnCtrlC();
            string? text = r.GetValue(prompt), idText = r.GetValue(ids);
            if ((text is null) == (idText is null)) throw new RotorException("give the prompt as PROMPT text or as --ids, one of the two");
            if (r.GetValue(n) < 0) throw new RotorException($"--max-tokens {r.GetValue(n)} must be 0 or more");
            var sampling = new SamplingOptions
            {
                Temperature = r.GetValue(temp), TopK = r.GetValue(topK), TopP = r.GetValue(topP), MinP = r.GetValue(minP),
                RepetitionPenalty = r.GetValue(rep), Seed = r.GetValue(seed),
            };
            sampling.Validate("options");
            using var m = Open(r.GetValue(model)!, r.GetValue(tok), r.GetValue(threads), r.GetValue(head), r.GetValue(kvc), r.GetValue(device)!);
            int[] promptIds = idText is not null ? ParseIds(idText, "--ids")
                : [.. m.RequireTokenizer().Encode(text!, addBos: !r.GetValue(noBos))];
            var session = m.CreateSession(r.GetValue(ctx));
            var gen = new TextGenerator(session);
            var options = new GenerationOptions { MaxTokens = r.GetValue(n), Sampling = sampling, Stop = r.GetValue(stop) ?? [], Logprobs = r.GetValue(logprobs) };
            string? jsonPath = r.GetValue(json);
            bool streamText = jsonPath != "-";
            if (streamText && text is not null) Console.Write(text);
            var scores = new List<TokenLogprobs>();
            foreach (var t in gen.Generate(promptIds, options, ct))
            {
                if (t.Logprobs is { } lp) scores.Add(lp);
                if (streamText) { Console.Write(m.Tokenizer is null ? (t.Id >= 0 ? $"{t.Id} " : "") : t.Text); Console.Out.Flush(); }
            }
            var res = gen.LastResult!;
            if (streamText) Console.WriteLine();
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"prompt {res.PromptIds.Count} tokens in {res.PromptTime.TotalMilliseconds:F0} ms ({res.PromptTokensPerSecond:F1} tokens/s); generated {res.Ids.Count} tokens in {res.GenerationTime.TotalMilliseconds:F0} ms ({res.TokensPerSecond:F2} tokens/s) {(m.Cuda is null ? $"on {m.Backend.Threads} threads" : session.ChoosesOnDevice(sampling) ? "on the GPU, tokens chosen there" : "on the GPU, tokens chosen here")}; finish: {res.Finish.ToString().ToLowerInvariant()}{(scores.Count == 0 ? "" : $"; mean log-probability {scores.Average(x => (double)x.Chosen.Logprob):F3}")}"));
            if (jsonPath is not null) WriteJson(jsonPath, w =>
            {
                w.WriteStartObject();
                w.WriteString("model", m.Source);
                w.WriteStartArray("prompt_ids"); foreach (int i in res.PromptIds) w.WriteNumberValue(i); w.WriteEndArray();
                w.WriteStartArray("ids"); foreach (int i in res.Ids) w.WriteNumberValue(i); w.WriteEndArray();
                w.WriteString("text", res.Text);
                w.WriteString("finish", res.Finish.ToString().ToLowerInvariant());
                w.WriteNumber("prompt_tokens_per_second", res.PromptTokensPerSecond);
                w.WriteNumber("tokens_per_second", res.TokensPerSecond);
                w.WriteNumber("threads", m.Backend.Threads);
                if (options.Logprobs is not null)
                {
                    // One entry a generated id: the model's log-probability of it and of the likeliest tokens.
                    w.WriteStartArray("logprobs");
                    foreach (var lp in scores)
                    {
                        w.WriteStartObject();
                        w.WriteNumber("id", lp.Chosen.Id);
                        w.WriteNumber("logprob", lp.Chosen.Logprob);
                        w.WriteStartArray("top");
                        foreach (var t in lp.Top) { w.WriteStartObject(); w.WriteNumber("id", t.Id); w.WriteNumber("logprob", t.Logprob); w.WriteEndObject(); }
                        w.WriteEndArray();
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                }
                w.WriteEndObject();
            });
            return 0;
        });
        return cmd;
    }

    public static Command CreateChat()
    {
        var model = ModelArgument();
        var system = new Option<string?>("--system") { Description = "a system message that opens the conversation" };
        var format = new Option<string?>("--format") { Description = "chat format: bitnet, llama3 or plain (default: from the model's template and vocabulary)" };
        format.AcceptOnlyFromAmong("bitnet", "llama3", "plain");
        var n = new Option<int>("--max-tokens", "-n") { Description = "tokens a reply takes at most", DefaultValueFactory = _ => 512 }.InRange(1, 1 << 20);
        var temp = new Option<float>("--temperature", "--temp") { Description = "sampling temperature; 0 is greedy", DefaultValueFactory = _ => 0.7f }.InRange(0f, 100f);
        var seed = new Option<int?>("--seed") { Description = "seed for reproducible sampling" };
        var tok = TokenizerOption(); var threads = ThreadsOption(); var ctx = CtxOption(); var head = LmHeadOption(); var kvc = KvCacheOption(); var device = DeviceOption();
        var cmd = new Command("chat", "Talk with a model: type a message and Enter; /reset starts over, /exit (or end of input) quits");
        cmd.Arguments.Add(model);
        foreach (Option o in new Option[] { system, format, n, temp, seed, tok, threads, ctx, head, kvc, device }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            using var m = Open(r.GetValue(model)!, r.GetValue(tok), r.GetValue(threads), r.GetValue(head), r.GetValue(kvc), r.GetValue(device)!);
            var fmt = r.GetValue(format) switch { "bitnet" => Rotor.Lm.Tokenizers.ChatFormat.BitNet, "llama3" => Rotor.Lm.Tokenizers.ChatFormat.Llama3, "plain" => Rotor.Lm.Tokenizers.ChatFormat.Plain, _ => (Rotor.Lm.Tokenizers.ChatFormat?)null };
            using var client = new Rotor.Lm.Chat.RotorChatClient(m, new Rotor.Lm.Chat.RotorChatClientOptions
            {
                Format = fmt, ContextLength = r.GetValue(ctx), MaxOutputTokens = r.GetValue(n),
                Sampling = new SamplingOptions { Temperature = r.GetValue(temp), Seed = r.GetValue(seed) },
            });
            var history = new List<Microsoft.Extensions.AI.ChatMessage>();
            void Reset() { history.Clear(); if (r.GetValue(system) is { } sys) history.Add(new(Microsoft.Extensions.AI.ChatRole.System, sys)); }
            Reset();
            Console.Error.WriteLine($"chat format {client.Format.ToString().ToLowerInvariant()}; /reset starts over, /exit quits");
            while (true)
            {
                Console.Write("> ");
                string? line = Console.ReadLine();
                if (line is null || line.Trim() == "/exit") break;
                if (line.Trim() == "/reset") { Reset(); Console.Error.WriteLine("(conversation reset)"); continue; }
                if (line.Trim().Length == 0) continue;
                history.Add(new(Microsoft.Extensions.AI.ChatRole.User, line));
                var reply = new System.Text.StringBuilder();
                var sw = Stopwatch.StartNew();
                long outTokens = 0, inTokens = 0, cachedTokens = 0;
                try
                {
                    foreach (var u in client.GetStreamingResponseAsync(history).ToBlockingEnumerable())
                    {
                        Console.Write(u.Text); reply.Append(u.Text);
                        if (u.Contents.OfType<Microsoft.Extensions.AI.UsageContent>().FirstOrDefault() is { } usage)
                        {
                            outTokens = usage.Details.OutputTokenCount ?? 0;
                            inTokens = usage.Details.InputTokenCount ?? 0;
                            cachedTokens = usage.Details.CachedInputTokenCount ?? 0;
                        }
                    }
                }
                catch (RotorException e)
                {
                    // A conversation longer than the context: say so and keep the session usable.
                    Console.Error.WriteLine($"\nrotor: {e.Message}; /reset to start over");
                    history.RemoveAt(history.Count - 1);
                    continue;
                }
                Console.WriteLine();
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"({outTokens} tokens, {outTokens / sw.Elapsed.TotalSeconds:F1} tokens/s; prompt {inTokens} tokens, {cachedTokens} of them kept from the earlier turns)"));
                history.Add(new(Microsoft.Extensions.AI.ChatRole.Assistant, reply.ToString()));
            }
            return 0;
        });
        return cmd;
    }

    public static Command CreateConvert()
    {
        var model = ModelArgument();
        var output = new Option<string>("--out", "-o") { Description = "the GGUF file to write", Required = true }.OutputFile();
        var type = new Option<string>("--type") { Description = "type of the ternary projections: tq1_0, tq2_0 or i2_s (bitnet.cpp, x86 layout)", DefaultValueFactory = _ => "tq2_0" };
        type.AcceptOnlyFromAmong("tq1_0", "tq2_0", "i2_s");
        var emb = new Option<string>("--embedding-type") { Description = "type of the token embedding: f16 or f32", DefaultValueFactory = _ => "f16" };
        emb.AcceptOnlyFromAmong("f16", "f32");
        var arch = new Option<string?>("--arch") { Description = "general.architecture to write (default: bitnet-b1.58 for BitNet b1.58 2B4T-style models, bitnet for SiLU BitNet, llama for float models)" };
        var tok = TokenizerOption();
        var cmd = new Command("convert", "Write a model (Hugging Face folder, GGUF, llama2.c, random:2b4t) as a GGUF file with ternary projections in TQ1_0, TQ2_0 or I2_S");
        cmd.Arguments.Add(model);
        foreach (Option o in new Option[] { output, type, emb, arch, tok, ThreadsOption() }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            string outPath = r.GetValue(output)!;
            if (Directory.Exists(outPath)) throw new RotorException($"--out {outPath} is a folder; name the file to write");
            using var m = Open(r.GetValue(model)!, r.GetValue(tok), 1, null);
            var ternary = r.GetValue(type) switch { "tq1_0" => Rotor.Lm.Gguf.GgmlType.TQ1_0, "i2_s" => Rotor.Lm.Gguf.GgmlType.I2_S, _ => Rotor.Lm.Gguf.GgmlType.TQ2_0 };
            var sw = Stopwatch.StartNew();
            var writer = Rotor.Lm.Gguf.GgufConverter.Create(m.Config, m.Weights, new Rotor.Lm.Gguf.GgufConvertOptions
            {
                TernaryType = ternary, Architecture = r.GetValue(arch), Name = Path.GetFileNameWithoutExtension(r.GetValue(model)!.TrimEnd('/')),
                EmbeddingType = r.GetValue(emb) == "f32" ? Rotor.Lm.Gguf.GgmlType.F32 : Rotor.Lm.Gguf.GgmlType.F16,
                Progress = (done, total) =>
                {
                    if (done % 16 != 0 && done != total) return;
                    double rate = done / sw.Elapsed.TotalSeconds;
                    Console.Error.Write(string.Create(CultureInfo.InvariantCulture, $"\rwriting tensor {done}/{total}, {rate:F1} tensors/s, ETA {(total - done) / Math.Max(rate, 1e-9):F0} s   "));
                },
            });
            if (m.Tokenizer is { } t) GgufTokenizerKeys.Add(writer, t);
            else writer.AddString("tokenizer.ggml.model", "no_vocab");   // the name llama.cpp and bitnet.cpp both accept
            writer.Write(outPath);
            Console.Error.WriteLine();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {outPath}: {new FileInfo(outPath).Length / 1048576.0:F1} MiB in {sw.Elapsed.TotalSeconds:F1} s"));
            return 0;
        });
        return cmd;
    }

    public static Command CreateLogits()
    {
        var model = ModelArgument();
        var ids = new Option<string>("--ids") { Description = "token ids, comma-separated", Required = true };
        var json = new Option<string>("--json") { Description = "output file (- for stdout): ids and the logits at every position", Required = true };
        var threads = ThreadsOption(); var head = LmHeadOption(); var kvc = KvCacheOption();
        var cmd = new Command("logits", "The logits at every position of a sequence of token ids, as JSON (for checks against other implementations)");
        cmd.Arguments.Add(model);
        foreach (Option o in new Option[] { ids, json, threads, head, kvc }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            int[] seq = ParseIds(r.GetValue(ids)!, "--ids");
            using var m = Open(r.GetValue(model)!, null, r.GetValue(threads), r.GetValue(head), r.GetValue(kvc));
            var session = m.CreateSession(Math.Max(seq.Length, 1));
            var logits = new float[(long)seq.Length * m.Config.VocabSize];
            session.AppendAll(seq, logits);
            WriteJson(r.GetValue(json)!, w =>
            {
                w.WriteStartObject();
                w.WriteString("model", m.Source);
                w.WriteNumber("vocab_size", m.Config.VocabSize);
                w.WriteStartArray("ids"); foreach (int i in seq) w.WriteNumberValue(i); w.WriteEndArray();
                w.WriteStartArray("logits");
                for (int p = 0; p < seq.Length; p++)
                {
                    w.WriteStartArray();
                    for (int v = 0; v < m.Config.VocabSize; v++) w.WriteNumberValue(logits[(long)p * m.Config.VocabSize + v]);
                    w.WriteEndArray();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            });
            return 0;
        });
        return cmd;
    }

    public static Command CreatePerplexity()
    {
        var model = ModelArgument();
        var file = new Argument<string>("FILE") { Description = "a UTF-8 text file" };
        var ctx = new Option<int>("--ctx") { Description = "tokens a chunk (llama.cpp's -c)", DefaultValueFactory = _ => 512 }.InRange(8, 1 << 20);
        var chunks = new Option<int?>("--chunks") { Description = "score at most this many chunks" }.Positive();
        var tok = TokenizerOption(); var threads = ThreadsOption(); var head = LmHeadOption(); var kvc = KvCacheOption();
        var cmd = new Command("perplexity", "Perplexity over a text file as llama.cpp's perplexity tool computes it: chunks of --ctx tokens, each starting with BOS, the second half of each chunk scored");
        cmd.Arguments.Add(model); cmd.Arguments.Add(file);
        foreach (Option o in new Option[] { ctx, chunks, tok, threads, head, kvc }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            var ct = CancelOnCtrlC();
            string path = r.GetValue(file)!;
            if (!File.Exists(path)) throw new RotorException($"{path}: file not found");
            int n = r.GetValue(ctx);
            if (n < 8) throw new RotorException($"--ctx {n} is too small (at least 8)");
            using var m = Open(r.GetValue(model)!, r.GetValue(tok), r.GetValue(threads), r.GetValue(head), r.GetValue(kvc));
            var tokenizer = m.RequireTokenizer();
            IReadOnlyList<int> all = tokenizer.Encode(File.ReadAllText(path), addBos: false);
            int total = all.Count / n;
            if (r.GetValue(chunks) is { } c) { if (c <= 0) throw new RotorException($"--chunks {c} must be positive"); total = Math.Min(total, c); }
            if (total == 0) throw new RotorException($"{path}: {all.Count} tokens, fewer than one chunk of {n}");
            var session = m.CreateSession(n);
            var logits = new float[(long)n * m.Config.VocabSize];
            double nll = 0; long count = 0;
            var sw = Stopwatch.StartNew();
            for (int k = 0; k < total; k++)
            {
                ct.ThrowIfCancellationRequested();
                int[] chunk = all.Skip(k * n).Take(n).ToArray();
                if (tokenizer.BosId is { } bos) chunk[0] = bos;
                session.Reset();
                session.AppendAll(chunk, logits);
                for (int p = n / 2; p < n - 1; p++)
                {
                    ReadOnlySpan<float> row = logits.AsSpan(p * m.Config.VocabSize, m.Config.VocabSize);
                    float max = System.Numerics.Tensors.TensorPrimitives.Max(row);
                    double sum = 0;
                    foreach (float v in row) sum += Math.Exp(v - max);
                    nll += Math.Log(sum) + max - row[chunk[p + 1]];
                    count++;
                }
                double rate = (k + 1) * (double)n / sw.Elapsed.TotalSeconds;
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"[{k + 1}/{total}] perplexity {Math.Exp(nll / count):F4}  {rate:F1} tokens/s, ETA {(total - k - 1) * n / rate:F0} s"));
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"perplexity {Math.Exp(nll / count):F4} over {count} scored tokens in {total} chunks of {n}"));
            return 0;
        });
        return cmd;
    }

    public static Command CreateBench()
    {
        var model = ModelArgument();
        var pp = new Option<int>("--prompt", "-p") { Description = "prompt tokens (llama-bench's pp)", DefaultValueFactory = _ => 512 }.InRange(0, 1 << 16);
        var tg = new Option<int>("--gen", "-n") { Description = "generated tokens (llama-bench's tg)", DefaultValueFactory = _ => 128 }.InRange(0, 1 << 16);
        var reps = new Option<int>("--repetitions", "-r") { Description = "repetitions of each test (the median is reported)", DefaultValueFactory = _ => 3 }.InRange(1, 1000);
        var threadList = new Option<string?>("--threads", "-t") { Description = "thread counts to measure, comma-separated (default: 1 and ROTOR_THREADS, else every processor)" };
        var json = new Option<string?>("--json") { Description = "also write the results as JSON" };
        var head = LmHeadOption(); var kvc = KvCacheOption(); var device = DeviceOption();
        var batchList = new Option<string?>("--batch") { Description = "sequences decoded together, comma-separated: with --device cuda the generation tests (default 1,8,32,64); on the CPU a batched generation test after tg, each step one row a sequence" };
        var cmd = new Command("bench-lm", "Prompt processing and generation speed (tokens/s) like llama-bench's pp512 / tg128 at 1 and all threads, with load time, resident memory and generation against the memory-bandwidth bound; random token ids, no sampling");
        cmd.Arguments.Add(model);
        foreach (Option o in new Option[] { pp, tg, reps, threadList, json, head, kvc, device, batchList }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            int p = r.GetValue(pp), g = r.GetValue(tg), rep = r.GetValue(reps);
            if (p < 0 || g < 0 || p + g == 0) throw new RotorException("--prompt and --gen must be 0 or more, not both 0");
            if (rep <= 0) throw new RotorException($"--repetitions {rep} must be positive");
            if (r.GetValue(device) == "cuda")
            {
                int[] batches = r.GetValue(batchList) is { } bl ? ParseIds(bl, "--batch") : [1, 8, 32, 64];
                if (batches.Any(b => b <= 0 || b > 64)) throw new RotorException("--batch: batch sizes must be in 1..64");
                return BenchCuda(r.GetValue(model)!, r.GetValue(head), r.GetValue(kvc), p, g, rep, batches, r.GetValue(json));
            }
            int[] cpuBatches = r.GetValue(batchList) is { } cb ? ParseIds(cb, "--batch") : [];
            if (cpuBatches.Any(b => b <= 0 || b > 64)) throw new RotorException("--batch: batch sizes must be in 1..64");
            if (cpuBatches.Length > 0 && g == 0) throw new RotorException("--batch: the batched generation test needs --gen above 0");
            int[] threads = r.GetValue(threadList) is { } tl ? ParseIds(tl, "--threads") : Rotor.Threading.ThreadCount.Default > 1 ? [1, Rotor.Threading.ThreadCount.Default] : [1];
            if (threads.Any(t => t <= 0)) throw new RotorException("--threads: thread counts must be positive");
            var rows = new List<BenchRow>();
            var inv = CultureInfo.InvariantCulture;
            foreach (int t in threads)
            {
                using var m = Open(r.GetValue(model)!, null, t, r.GetValue(head), r.GetValue(kvc));
                long rssLoaded = ResidentBytes();
                var rnd = new Random(1);
                int[] prompt = Enumerable.Range(0, Math.Max(p, 1)).Select(_ => rnd.Next(m.Config.VocabSize)).ToArray();
                var session = m.CreateSession(Math.Min(m.Config.ContextLength, Math.Max(p, 1) + g + 1), maxBatch: Math.Clamp(p, 1, 512));
                // What one decode step reads: every projection, the LM head, the norms and one embedding row.
                long stepBytes = m.Weights.Layers.Sum(l => l.Linears.Sum(x => x.W.Bytes)) + m.Weights.LmHead.DataBytes
                    + (m.Weights.Layers.Length * 4L + 1) * m.Config.Dim * 4;
                var bandwidth = new Bench.MemoryBandwidth.Sampler(t);
                Console.WriteLine(string.Create(inv, $"model {m.Source}: load {m.LoadTime.TotalSeconds:F2} s ({LoadShares(m)}), file {m.FileBytes / 1048576.0:F0} MiB, resident {rssLoaded / 1048576.0:F0} MiB after load (weights allocated {m.Weights.AllocatedBytes / 1048576.0:F0} MiB, mapped from the file {m.Weights.MappedBytes / 1048576.0:F0} MiB); a decode step reads {stepBytes / 1048576.0:F0} MiB; KV cache {session.Cache.Type.ToString().ToLowerInvariant()}, {m.Config.KvBytesPerToken(session.Cache.Type) / 1024.0:F1} KiB a token, {session.Cache.Bytes / 1048576.0:F0} MiB"));
                if (p > 0)
                {
                    var speeds = new List<double>();
                    for (int i = 0; i <= rep; i++)
                    {
                        session.Reset();
                        var sw = Stopwatch.StartNew();
                        session.Append(prompt);
                        if (i > 0) speeds.Add(p / sw.Elapsed.TotalSeconds);   // the first run warms up
                    }
                    rows.Add(new($"pp{p}", t, Median(speeds), Spread(speeds), m.LoadTime.TotalSeconds, rssLoaded, m.FileBytes, stepBytes, 0, m.Weights.LmHead.Type, session.Cache.Type, m.Config.KvBytesPerToken(session.Cache.Type)));
                    Report(rows[^1]);
                }
                if (g > 0)
                {
                    var speeds = new List<double>();
                    for (int i = 0; i <= rep; i++)
                    {
                        session.Reset();
                        session.Append(prompt.AsSpan(0, 1));
                        var sw = Stopwatch.StartNew();
                        int next = prompt[0];
                        for (int k = 0; k < g; k++) next = Sampler.ArgMax(session.Append([next]));
                        if (i > 0) speeds.Add(g / sw.Elapsed.TotalSeconds);
                        for (int k = 0; k < 8; k++) bandwidth.Sample();
                    }
                    rows.Add(new($"tg{g}", t, Median(speeds), Spread(speeds), m.LoadTime.TotalSeconds, rssLoaded, m.FileBytes, stepBytes, bandwidth.TakeMedianGbps(), m.Weights.LmHead.Type, session.Cache.Type, m.Config.KvBytesPerToken(session.Cache.Type))
                        { ResidentAfterRun = ResidentBytes() });
                    Report(rows[^1]);
                }
                // Batched generation as a server steps it (Decoder.ForwardBatch: one row a sequence, each with its own
                // cache), from one token each; tokens/s of all sequences together.
                foreach (int b in cpuBatches)
                {
                    int vocab = m.Config.VocabSize;
                    var decoder = m.CreateDecoder(g + 2, b);
                    var caches = Enumerable.Range(0, b).Select(_ => m.CreateCache(g + 2)).ToArray();
                    var logits = new float[(long)b * vocab];
                    var next = new int[b];
                    var speeds = new List<double>();
                    for (int i = 0; i <= rep; i++)
                    {
                        for (int s = 0; s < b; s++) { caches[s].Clear(); next[s] = prompt[s % prompt.Length]; decoder.Forward([next[s]], caches[s]); }
                        var sw = Stopwatch.StartNew();
                        for (int k = 0; k < g; k++)
                        {
                            decoder.ForwardBatch(next, caches, logits);
                            for (int s = 0; s < b; s++) next[s] = Sampler.ArgMax(logits.AsSpan(s * vocab, vocab));
                        }
                        if (i > 0) speeds.Add((double)b * g / sw.Elapsed.TotalSeconds);   // the first run warms up
                    }
                    rows.Add(new($"tg{g}", t, Median(speeds), Spread(speeds), m.LoadTime.TotalSeconds, rssLoaded, m.FileBytes, stepBytes, 0, m.Weights.LmHead.Type, caches[0].Type, m.Config.KvBytesPerToken(caches[0].Type))
                        { Batch = b });
                    Report(rows[^1]);
                }
            }
            if (r.GetValue(json) is { } j) WriteJson(j, w =>
            {
                w.WriteStartArray();
                foreach (var row in rows)
                {
                    w.WriteStartObject();
                    w.WriteString("model", r.GetValue(model)); w.WriteString("test", row.Test); w.WriteNumber("threads", row.Threads);
                    if (row.Batch > 0) w.WriteNumber("batch", row.Batch);
                    w.WriteNumber("tokens_per_second", row.TokensPerSecond); w.WriteNumber("spread", row.Spread);
                    w.WriteNumber("load_seconds", row.LoadSeconds); w.WriteNumber("resident_bytes", row.Resident); w.WriteNumber("file_bytes", row.FileBytes);
                    if (row.ResidentAfterRun > 0) w.WriteNumber("resident_after_run_bytes", row.ResidentAfterRun);
                    w.WriteNumber("step_bytes", row.StepBytes);
                    w.WriteString("lm_head", row.LmHead.ToString().ToLowerInvariant());
                    w.WriteString("kv_cache", row.KvCache.ToString().ToLowerInvariant());
                    w.WriteNumber("kv_bytes_per_token", row.KvBytesPerToken);
                    if (row.BandwidthGbps > 0)
                    {
                        w.WriteNumber("read_gbps", row.BandwidthGbps);
                        w.WriteNumber("bound_tokens_per_second", row.BoundTps);
                        w.WriteNumber("share_of_bound", row.TokensPerSecond / row.BoundTps);
                    }
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            });
            return 0;
        });
        return cmd;

        static void Report(BenchRow row)
        {
            string bound = row.BandwidthGbps > 0
                ? string.Create(CultureInfo.InvariantCulture, $"  bound {row.BoundTps:F2} tokens/s at {row.BandwidthGbps:F1} GB/s read: {row.TokensPerSecond / row.BoundTps:P0}")
                : "";
            string batch = row.Batch > 0 ? string.Create(CultureInfo.InvariantCulture, $"  batch {row.Batch,3}") : "";
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{row.Test,-8} threads {row.Threads,2}{batch}  {row.TokensPerSecond,10:F2} tokens/s  ± {row.Spread:F2}{bound}"));
        }
        static double Median(List<double> v) { var s = v.Order().ToArray(); return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2; }
        static double Spread(List<double> v) => v.Count < 2 ? 0 : (v.Max() - v.Min()) / 2;
    }

    private static int BenchCuda(string path, string? head, string? kvCache, int p, int g, int reps, int[] batches, string? json)
    {
        using var m = Open(path, null, null, head, kvCache, "cuda");
        if (m.Cuda is null) throw new RotorException($"bench-lm --device cuda: {m.DeviceNote}");
        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine(string.Create(inv, $"model {m.Source} on {m.Cuda.Device.DeviceName}: weights on the device {m.Cuda.Bytes / 1048576.0:F0} MiB; a decode step reads {m.Cuda.StepWeightBytes / 1048576.0:F0} MiB of weights"));
        var (gbps, stepBytes, rows) = Rotor.Lm.Cuda.CudaLmBenchmark.Run(m.Cuda, p, g, batches, reps, Console.WriteLine);
        if (json is not null) WriteJson(json, w =>
        {
            w.WriteStartObject();
            w.WriteString("model", path); w.WriteString("device", m.Cuda.Device.DeviceName);
            w.WriteNumber("copy_gbps", gbps); w.WriteNumber("step_bytes", stepBytes);
            w.WriteStartArray("rows");
            foreach (var row in rows)
            {
                w.WriteStartObject();
                w.WriteString("test", row.Test); w.WriteNumber("batch", row.Batch);
                w.WriteNumber("tokens_per_second", row.TokensPerSecond); w.WriteNumber("ms_per_step", row.MsPerStep);
                if (row.Test.StartsWith("tg", StringComparison.Ordinal))
                    w.WriteNumber("share_of_bound", stepBytes / (gbps * 1e9) * 1000 / row.MsPerStep);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        });
        return 0;
    }

    /// <summary>Each step's share of the load ("layers 60 %, embedding 35 %, ..."), steps under 1 % left out.</summary>
    private static string LoadShares(LanguageModel m)
    {
        double total = m.LoadTime.TotalSeconds;
        if (total <= 0 || m.LoadSteps.Count == 0) return "no steps recorded";
        return string.Join(", ", m.LoadSteps.Where(s => s.Time.TotalSeconds / total >= 0.01)
            .Select(s => string.Create(CultureInfo.InvariantCulture, $"{s.Name} {100 * s.Time.TotalSeconds / total:F0} %")));
    }

    /// <summary>A row of bench-lm: <paramref name="Resident"/> is the resident memory right after the load (every row),
    /// <see cref="ResidentAfterRun"/> after a generation test (the KV cache, the decoder's buffers and the benchmark's
    /// bandwidth buffer besides).</summary>
    private sealed record BenchRow(string Test, int Threads, double TokensPerSecond, double Spread, double LoadSeconds, long Resident, long FileBytes, long StepBytes, double BandwidthGbps,
        DenseType LmHead, KvCacheType KvCache, long KvBytesPerToken)
    {
        public long ResidentAfterRun { get; init; }
        /// <summary>Sequences of the batched generation test (0: not one).</summary>
        public int Batch { get; init; }
        public double BoundTps => BandwidthGbps * 1e9 / StepBytes;
    }

    /// <summary>Resident memory of this process (VmRSS on Linux, the working set elsewhere).</summary>
    private static long ResidentBytes()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return Environment.WorkingSet;
    }

    /// <summary>The <c>--lm-head</c> option of <c>rotor info</c>.</summary>
    internal static Option<string?> InfoLmHeadOption() => LmHeadOption();

    /// <summary><c>rotor info MODEL</c>: architecture, shapes, weight types, and the memory the model will take in Rotor's
    /// layout (with <paramref name="lmHead"/>'s head), from its headers alone: no weight is read.</summary>
    internal static int Info(string path, string? tokenizer, string? lmHead)
    {
        DenseType? head = lmHead switch { "f32" => DenseType.F32, "f16" => DenseType.F16, "int8" => DenseType.Int8, "q4" => DenseType.Q4, _ => null };
        var plan = ModelMemory.Of(path, head);
        var c = plan.Config;
        var inv = CultureInfo.InvariantCulture;
        static string MiB(long b) => (b / 1048576.0).ToString("F1", CultureInfo.InvariantCulture) + " MiB";
        // The tokenizer is small and read from its own place (the GGUF metadata, the folder, beside the checkpoint).
        var tok = LanguageModel.LoadTokenizer(path, c, tokenizer);
        Console.WriteLine($"model        {plan.Source} ({plan.Format}, {MiB(plan.FileBytes)} on disk; from its headers, no weight loaded)");
        Console.WriteLine($"architecture {c.Architecture}: {c.Layers} layers, hidden {c.Dim}, {c.Heads} heads ({c.KvHeads} key/value) of {c.HeadDim}, FFN {c.FfnDim} ({c.Activation.ToString().ToLowerInvariant()}), vocabulary {c.VocabSize}");
        Console.WriteLine($"positions    context {c.ContextLength}, RoPE theta {c.RopeTheta.ToString(inv)} ({(c.Rope == RopeStyle.Half ? "rotate-half" : "adjacent pairs")}), RMSNorm eps {c.NormEps.ToString(inv)}{(c.SubNorms ? ", BitNet sub-norms" : "")}");
        Console.WriteLine($"linear       {string.Join("; ", plan.Linears.Select(l => $"{l.Kind} {l.Matrices} matrices {MiB(l.Bytes)}"))}");
        string headText = plan.LmHeadBytes == 0 ? "tied to it" : $"{plan.LmHeadType.ToString().ToLowerInvariant()}, {MiB(plan.LmHeadBytes)}";
        Console.WriteLine($"embedding    {plan.EmbeddingType.ToString().ToLowerInvariant()} {c.VocabSize}x{c.Dim}, {MiB(plan.EmbeddingBytes)}; LM head {headText}{(head is null ? "" : $" (--lm-head {lmHead})")}");
        int ctx = Math.Min(c.ContextLength, 4096);
        string upTo = plan.UncertainBytes > 0 ? $" (or up to {(plan.UncertainBytes / 1024.0).ToString("F1", inv)} KiB less: TQ1_0/TQ2_0 matrices keep one scale when their blocks agree)" : "";
        string mapped = plan.MappedBytes > 0 ? $" ({MiB(plan.AllocatedBytes)} allocated at load, {MiB(plan.MappedBytes)} read from the mapped file: resident as rows are read)" : "";
        Console.WriteLine($"memory       weights {MiB(plan.WeightBytes)}{upTo}{mapped}; KV cache {(plan.KvBytesPerToken / 1024.0).ToString("F1", inv)} KiB a token (f32; {(c.KvBytesPerToken(KvCacheType.F16) / 1024.0).ToString("F1", inv)} with --kv-cache f16), {MiB(plan.KvBytesPerToken * ctx)} at {ctx} tokens (the default --ctx){(ctx == c.ContextLength ? ", the full context" : $", {MiB(plan.KvBytesPerToken * c.ContextLength)} at the full context of {c.ContextLength}")}");
        string full = ctx == c.ContextLength ? "" : $", {MiB(plan.TotalBytes(c.ContextLength))} at {c.ContextLength}";
        Console.WriteLine($"total        {MiB(plan.TotalBytes(ctx))} at {ctx} tokens{full} (weights in Rotor's layout and the KV cache; activations and buffers besides)");
        Console.WriteLine($"tokenizer    {(tok is { } t ? $"{t.GetType().Name}, {t.VocabSize} tokens" : "none (name one with --tokenizer)")}");
        return 0;
    }

    /// <summary>A token cancelled by the first Ctrl+C (the command then ends as cancelled; a second Ctrl+C kills).</summary>
    private static CancellationToken CancelOnCtrlC()
    {
        var cts = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { if (!cts.IsCancellationRequested) { e.Cancel = true; cts.Cancel(); } };
        return cts.Token;
    }

    private static void WriteJson(string path, Action<Utf8JsonWriter> write)
    {
        var opts = new JsonWriterOptions { Indented = path != "-", Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        if (path == "-")
        {
            using var stdout = Console.OpenStandardOutput();
            using (var w = new Utf8JsonWriter(stdout, opts)) write(w);
            stdout.WriteByte((byte)'\n');
            return;
        }
        AtomicFile.Write(path, s => { using var w = new Utf8JsonWriter(s, opts); write(w); });
        Console.Error.WriteLine($"wrote {path}");
    }
}
