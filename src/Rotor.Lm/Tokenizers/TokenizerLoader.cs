using System.Text;
using System.Text.Json;

namespace Rotor.Lm.Tokenizers;

/// <summary>Makes the right <see cref="LmTokenizer"/> for a model's files: a Hugging Face <c>tokenizer.json</c>
/// (byte-level BPE, with <c>tokenizer_config.json</c> beside it for BOS, EOS and the chat template), a
/// <c>tokenizer.model</c> (tiktoken text for Llama 3, or a SentencePiece BPE protobuf as Llama 2's), a llama2.c
/// <c>tok*.bin</c>, or GGUF metadata. Every failure is a
/// <see cref="RotorException"/> naming the file and what was wrong.</summary>
public static class TokenizerLoader
{
    /// <summary>Loads the tokenizer in <paramref name="path"/>: a folder (tokenizer.json, else tokenizer.model, else
    /// tokenizer.bin or the one tok*.bin) or a file of one of those formats. <paramref name="expectedVocabSize"/>, when
    /// given, is checked against llama2.c tokenizers (which do not store their size in a header).</summary>
    public static LmTokenizer Load(string path, int? expectedVocabSize = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path))
        {
            string json = Path.Combine(path, "tokenizer.json"), model = Path.Combine(path, "tokenizer.model");
            if (File.Exists(json))
            {
                try { return LoadFile(json, expectedVocabSize); }
                // Llama 2 folders pair a SentencePiece-style tokenizer.json (not read here) with tokenizer.model.
                catch (RotorException) when (File.Exists(model)) { return WithConfigTemplate(LoadFile(model, expectedVocabSize), path); }
            }
            foreach (var name in new[] { "tokenizer.model", "tokenizer.bin" })
                if (File.Exists(Path.Combine(path, name))) return WithConfigTemplate(LoadFile(Path.Combine(path, name), expectedVocabSize), path);
            var tok = Directory.GetFiles(path, "tok*.bin");
            if (tok.Length == 1) return LoadFile(tok[0], expectedVocabSize);
            if (tok.Length > 1)
                throw new RotorException($"{path}: several llama2.c tokenizers ({string.Join(", ", tok.Select(Path.GetFileName).Order())}); name one");
            throw new RotorException($"{path}: no tokenizer in the folder (looked for tokenizer.json, tokenizer.model, tokenizer.bin, tok*.bin)");
        }
        if (!File.Exists(path)) throw new RotorException($"{path}: tokenizer file not found");
        return LoadFile(path, expectedVocabSize);
    }

    /// <summary>Takes the chat template from the folder's tokenizer_config.json when the tokenizer has none.</summary>
    private static LmTokenizer WithConfigTemplate(LmTokenizer tokenizer, string folder)
    {
        string config = Path.Combine(folder, "tokenizer_config.json");
        if (tokenizer.ChatTemplateText is null && File.Exists(config)) tokenizer.ChatTemplateText = ReadTokenizerConfig(config).Template;
        return tokenizer;
    }

    private static LmTokenizer LoadFile(string path, int? expectedVocabSize)
    {
        string name = Path.GetFileName(path).ToLowerInvariant();
        byte[] head = new byte[64];
        int got;
        try { using var f = File.OpenRead(path); got = f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RotorException($"{path}: cannot read the tokenizer: {e.Message}", e);
        }
        var start = head.AsSpan(0, got);
        if (start.StartsWith("GGUF"u8))
            throw new RotorException($"{path}: a GGUF file: its tokenizer comes from its metadata (TokenizerLoader.FromGguf)");
        if (name.EndsWith(".json", StringComparison.Ordinal)) return LoadTokenizerJson(path);
        if (LooksLikeTiktoken(start)) return TiktokenLmTokenizer.Load(path);
        if (name.EndsWith(".model", StringComparison.Ordinal) && got > 0 && head[0] == 0x0A) return SentencePieceModelFile.Load(path);
        if (name.EndsWith(".bin", StringComparison.Ordinal)) return SentencePieceBpeTokenizer.LoadLlama2c(path, expectedVocabSize);
        throw new RotorException($"{path}: unknown tokenizer format (expected tokenizer.json, a tiktoken tokenizer.model, a llama2.c tok*.bin or a GGUF file)");
    }

    /// <summary>Whether the first line is <c>base64 rank</c>.</summary>
    private static bool LooksLikeTiktoken(ReadOnlySpan<byte> head)
    {
        int nl = head.IndexOf((byte)'\n');
        if (nl <= 0) return false;
        var line = head[..nl];
        if (line[^1] == '\r') line = line[..^1];
        int sp = line.IndexOf((byte)' ');
        if (sp <= 0 || sp == line.Length - 1) return false;
        foreach (byte b in line[..sp]) if (!(char.IsAsciiLetterOrDigit((char)b) || b is (byte)'+' or (byte)'/' or (byte)'=')) return false;
        foreach (byte b in line[(sp + 1)..]) if (!char.IsAsciiDigit((char)b)) return false;
        return true;
    }

    // ---- Hugging Face tokenizer.json --------------------------------------------------------------------------

    /// <summary>Loads a byte-level BPE <c>tokenizer.json</c> (GPT-2, Llama 3 and the like), with
    /// <c>tokenizer_config.json</c> from the same folder when present (BOS, EOS, chat template).</summary>
    public static ByteLevelBpeTokenizer LoadTokenizerJson(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { MaxDepth = 256 }); }
        catch (JsonException e) { throw new RotorException($"{path}: not valid JSON: {e.Message}", e); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RotorException($"{path}: cannot read the tokenizer: {e.Message}", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
                throw new RotorException($"{path}: no \"model\" object: not a Hugging Face tokenizer.json");
            string type = Str(model, "type") ?? "";
            if (type != "BPE") throw new RotorException($"{path}: model.type is \"{type}\"; Rotor reads BPE tokenizer.json files");
            foreach (var key in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
                if (Str(model, key) is { Length: > 0 } v) throw new RotorException($"{path}: model.{key} \"{v}\" is not supported");
            if (root.TryGetProperty("normalizer", out var norm) && norm.ValueKind != JsonValueKind.Null)
                throw new RotorException($"{path}: normalizer {Str(norm, "type")} is not supported (byte-level BPE files have none)");
            var (pattern, byteLevel) = PreTokenizer(root, path);
            if (!byteLevel && !(root.TryGetProperty("decoder", out var dec) && Str(dec, "type") == "ByteLevel"))
                throw new RotorException($"{path}: not a byte-level BPE (no ByteLevel pre-tokenizer or decoder); SentencePiece-style tokenizer.json files are not supported");

            if (!model.TryGetProperty("vocab", out var vocab) || vocab.ValueKind != JsonValueKind.Object)
                throw new RotorException($"{path}: model.vocab is missing");
            var byId = new Dictionary<int, (string Text, TokenKind Kind)>();
            foreach (var p in vocab.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id) || id < 0)
                    throw new RotorException($"{path}: model.vocab[\"{p.Name}\"] is not a token id");
                if (!byId.TryAdd(id, (p.Name, TokenKind.Normal)))
                    throw new RotorException($"{path}: token id {id} appears twice in model.vocab");
            }
            if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
                foreach (var a in added.EnumerateArray())
                {
                    if (!a.TryGetProperty("id", out var idEl) || !idEl.TryGetInt32(out int id) || id < 0 || Str(a, "content") is not string content)
                        throw new RotorException($"{path}: an entry of added_tokens lacks id or content");
                    bool special = a.TryGetProperty("special", out var sp) && sp.ValueKind == JsonValueKind.True;
                    byId[id] = (content, special ? TokenKind.Control : TokenKind.UserDefined);
                }
            int n = byId.Count == 0 ? 0 : byId.Keys.Max() + 1;
            var tokens = new string[n];
            var kinds = new TokenKind[n];
            for (int i = 0; i < n; i++)
            {
                if (!byId.TryGetValue(i, out var t)) throw new RotorException($"{path}: no token has id {i} (ids must run 0..{n - 1})");
                (tokens[i], kinds[i]) = t;
            }

            var merges = new List<(string, string)>();
            if (model.TryGetProperty("merges", out var mergesEl) && mergesEl.ValueKind == JsonValueKind.Array)
                foreach (var m in mergesEl.EnumerateArray())
                {
                    if (m.ValueKind == JsonValueKind.String)
                    {
                        var parts = m.GetString()!.Split(' ');
                        if (parts.Length != 2) throw new RotorException($"{path}: merge {merges.Count} (\"{m.GetString()}\") is not two tokens");
                        merges.Add((parts[0], parts[1]));
                    }
                    else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2 && m[0].GetString() is string l && m[1].GetString() is string r)
                        merges.Add((l, r));
                    else throw new RotorException($"{path}: merge {merges.Count} is neither \"a b\" nor [a, b]");
                }
            bool ignoreMerges = model.TryGetProperty("ignore_merges", out var im) && im.ValueKind == JsonValueKind.True;

            // BOS, EOS and the chat template live in tokenizer_config.json.
            string? bos = null, eos = null, template = null;
            string config = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, "tokenizer_config.json");
            if (File.Exists(config)) (bos, eos, template) = ReadTokenizerConfig(config);
            var index = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i < n; i++) if (kinds[i] != TokenKind.Normal) index.TryAdd(tokens[i], i);
            int? Id(string? text) => text is not null && index.TryGetValue(text, out int v) ? v : null;
            int? First(params string[] names) => names.Select(Id).FirstOrDefault(v => v is not null);
            int? bosId = bos is not null ? Id(bos) : First("<|begin_of_text|>", "<s>", "<|bos|>");
            int? eosId = eos is not null ? Id(eos) : First("<|end_of_text|>", "<|endoftext|>", "</s>", "<|eos|>");
            if (bos is not null && bosId is null) throw new RotorException($"{config}: bos_token \"{bos}\" is not an added token of {path}");
            if (eos is not null && eosId is null) throw new RotorException($"{config}: eos_token \"{eos}\" is not an added token of {path}");
            var stops = new[] { "<|end_of_text|>", "<|eot_id|>", "<|eom_id|>", "<|endoftext|>", "<|im_end|>" }.Select(Id).OfType<int>();
            return new ByteLevelBpeTokenizer(tokens, kinds, merges, pattern, ignoreMerges, bosId, eosId, stops, path)
            {
                ChatTemplateText = template,
            };
        }
    }

    /// <summary>The pre-tokenizer pattern: a Split by regex followed by ByteLevel without its own regex (Llama 3), or
    /// ByteLevel with GPT-2's regex; and whether a ByteLevel step is present.</summary>
    private static (string Pattern, bool ByteLevel) PreTokenizer(JsonElement root, string path)
    {
        if (!root.TryGetProperty("pre_tokenizer", out var pre) || pre.ValueKind == JsonValueKind.Null)
            throw new RotorException($"{path}: no pre_tokenizer; Rotor reads byte-level BPE files, which have one");
        var steps = Str(pre, "type") == "Sequence" && pre.TryGetProperty("pretokenizers", out var list)
            ? list.EnumerateArray().ToList() : [pre];
        string? pattern = null;
        bool byteLevel = false;
        foreach (var step in steps)
        {
            switch (Str(step, "type"))
            {
                case "Split":
                    if (pattern is not null || byteLevel) throw new RotorException($"{path}: pre_tokenizer: only one Split, before ByteLevel, is supported");
                    if (!step.TryGetProperty("pattern", out var pat) || Str(pat, "Regex") is not string regex)
                        throw new RotorException($"{path}: pre_tokenizer Split has no Regex pattern");
                    if (Str(step, "behavior") != "Isolated" || (step.TryGetProperty("invert", out var inv) && inv.ValueKind == JsonValueKind.True))
                        throw new RotorException($"{path}: pre_tokenizer Split behaviour {Str(step, "behavior")} is not supported (only Isolated)");
                    pattern = regex;
                    break;
                case "ByteLevel":
                    if (step.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind == JsonValueKind.True)
                        throw new RotorException($"{path}: pre_tokenizer ByteLevel add_prefix_space is not supported");
                    bool useRegex = !step.TryGetProperty("use_regex", out var ur) || ur.ValueKind != JsonValueKind.False;
                    if (useRegex)
                    {
                        if (pattern is not null) throw new RotorException($"{path}: pre_tokenizer has a Split and a ByteLevel regex; not supported");
                        pattern = PreTokenizerPatterns.Gpt2;
                    }
                    byteLevel = true;
                    break;
                default:
                    throw new RotorException($"{path}: pre_tokenizer {Str(step, "type")} is not supported (Split and ByteLevel are)");
            }
        }
        return (pattern ?? throw new RotorException($"{path}: the pre_tokenizer has no regex"), byteLevel);
    }

    private static (string? Bos, string? Eos, string? Template) ReadTokenizerConfig(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = doc.RootElement;
            static string? Token(JsonElement root, string key)
                => !root.TryGetProperty(key, out var v) ? null
                 : v.ValueKind == JsonValueKind.String ? v.GetString()
                 : v.ValueKind == JsonValueKind.Object ? Str(v, "content") : null;
            string? template = null;
            if (root.TryGetProperty("chat_template", out var ct))
                template = ct.ValueKind == JsonValueKind.String ? ct.GetString()
                    : ct.ValueKind == JsonValueKind.Array
                        ? ct.EnumerateArray().Where(e => Str(e, "name") == "default").Select(e => Str(e, "template")).FirstOrDefault()
                        : null;
            return (Token(root, "bos_token"), Token(root, "eos_token"), template);
        }
        catch (JsonException e) { throw new RotorException($"{path}: not valid JSON: {e.Message}", e); }
    }

    private static string? Str(JsonElement e, string key)
        => e.ValueKind == JsonValueKind.Object && e.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    // ---- GGUF metadata ----------------------------------------------------------------------------------------

    /// <summary>The tokenizer that GGUF metadata describes (<c>tokenizer.ggml.*</c>, <c>tokenizer.chat_template</c>):
    /// model <c>gpt2</c> (byte-level BPE, merges, pre-tokenizer by <c>tokenizer.ggml.pre</c>) or <c>llama</c>
    /// (SentencePiece-style, scores). Values have the GGUF reader's normalized types: string, bool, long, double,
    /// string[], long[], double[]. <paramref name="source"/> names the file in error messages.</summary>
    public static LmTokenizer FromGguf(IReadOnlyDictionary<string, object> metadata, string source)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        ArgumentNullException.ThrowIfNull(source);
        var md = new Gguf(metadata, source);
        string model = md.Get<string>("tokenizer.ggml.model") ?? throw new RotorException($"{source}: no tokenizer in the file (tokenizer.ggml.model is missing); name one with --tokenizer");
        var tokens = md.Get<string[]>("tokenizer.ggml.tokens") ?? throw new RotorException($"{source}: tokenizer.ggml.tokens is missing");
        var types = md.Get<long[]>("tokenizer.ggml.token_type");
        if (types is not null && types.Length != tokens.Length)
            throw new RotorException($"{source}: tokenizer.ggml.token_type has {types.Length} entries for {tokens.Length} tokens");
        var kinds = new TokenKind[tokens.Length];
        for (int i = 0; i < kinds.Length; i++)
        {
            long t = types?[i] ?? 1;
            if (t < 0 || t > 6) throw new RotorException($"{source}: tokenizer.ggml.token_type[{i}] is {t} (valid: 0-6)");
            kinds[i] = (TokenKind)t;
        }
        int? bos = md.Id("tokenizer.ggml.bos_token_id", tokens.Length);
        int? eos = md.Id("tokenizer.ggml.eos_token_id", tokens.Length);
        var stops = new[] { md.Id("tokenizer.ggml.eot_token_id", tokens.Length), md.Id("tokenizer.ggml.eom_token_id", tokens.Length) }.OfType<int>().ToList();
        for (int i = 0; i < tokens.Length; i++)
            if (kinds[i] == TokenKind.Control && tokens[i] is "<|eot_id|>" or "<|end_of_text|>" or "<|eom_id|>" or "<|endoftext|>" or "<|im_end|>")
                stops.Add(i);
        string? template = md.Get<string>("tokenizer.chat_template");
        switch (model)
        {
            case "gpt2":
            {
                string? pre = md.Get<string>("tokenizer.ggml.pre");
                var (pattern, ignoreMerges) = PreTokenizerPatterns.ForGgufPre(pre)
                    ?? throw new RotorException(pre is null
                        ? $"{source}: tokenizer.ggml.pre is missing, so the pre-tokenizer is unknown (Rotor knows llama-bpe, llama3, falcon3, smaug-bpe, dbrx, gpt-2)"
                        : $"{source}: tokenizer.ggml.pre \"{pre}\" is not a pre-tokenizer Rotor knows (llama-bpe, llama3, falcon3, smaug-bpe, dbrx, gpt-2)");
                var mergeText = md.Get<string[]>("tokenizer.ggml.merges") ?? throw new RotorException($"{source}: tokenizer.ggml.merges is missing");
                var merges = new (string, string)[mergeText.Length];
                for (int i = 0; i < merges.Length; i++)
                {
                    string m = mergeText[i];
                    int sp = m.Length > 1 ? m.IndexOf(' ', 1) : -1;
                    if (sp < 0) throw new RotorException($"{source}: tokenizer.ggml.merges[{i}] (\"{m}\") is not two tokens");
                    merges[i] = (m[..sp], m[(sp + 1)..]);
                }
                return new ByteLevelBpeTokenizer(tokens, kinds, merges, pattern, ignoreMerges, bos, eos, stops, source) { ChatTemplateText = template };
            }
            case "llama":
            {
                var scoresD = md.Get<double[]>("tokenizer.ggml.scores");
                if (scoresD is not null && scoresD.Length != tokens.Length)
                    throw new RotorException($"{source}: tokenizer.ggml.scores has {scoresD.Length} entries for {tokens.Length} tokens");
                var scores = scoresD?.Select(d => (float)d).ToArray() ?? new float[tokens.Length];
                var pieces = tokens.Select(t => t.Replace('\u2581', ' ')).ToArray();
                bool prefix = md.Get<bool?>("tokenizer.ggml.add_space_prefix") ?? true;
                int? unk = md.Id("tokenizer.ggml.unknown_token_id", tokens.Length) ?? Array.IndexOf(kinds, TokenKind.Unknown) switch { < 0 => null, var u => u };
                return new SentencePieceBpeTokenizer(pieces, scores, kinds, bos, eos, unk, stops, prefix, source) { ChatTemplateText = template };
            }
            default:
                throw new RotorException($"{source}: tokenizer.ggml.model \"{model}\" is not supported (gpt2 and llama are)");
        }
    }

    /// <summary>Typed access to GGUF metadata with errors that name the key.</summary>
    private readonly struct Gguf(IReadOnlyDictionary<string, object> md, string source)
    {
        public T? Get<T>(string key)
        {
            if (!md.TryGetValue(key, out var v)) return default;
            if (v is T t) return t;
            if (typeof(T) == typeof(bool?) && v is bool b) return (T)(object)b;
            throw new RotorException($"{source}: {key} is a {v?.GetType().Name ?? "null"}, expected {Nullable.GetUnderlyingType(typeof(T))?.Name ?? typeof(T).Name}");
        }

        public int? Id(string key, int count)
        {
            if (!md.TryGetValue(key, out var v)) return null;
            if (v is not long id) throw new RotorException($"{source}: {key} is a {v?.GetType().Name ?? "null"}, expected an integer");
            if (id == -1 || id == uint.MaxValue) return null;   // llama.cpp writes -1 for "none"
            if (id < 0 || id >= count) throw new RotorException($"{source}: {key} = {id} is outside the vocabulary of {count}");
            return (int)id;
        }
    }
}
