using Rotor.Lm.Tokenizers;

namespace Rotor.Lm.Gguf;

/// <summary>Writes a tokenizer into GGUF metadata under llama.cpp's keys (<c>tokenizer.ggml.*</c>,
/// <c>tokenizer.chat_template</c>), so that <see cref="TokenizerLoader.FromGguf"/> and llama.cpp read back the same
/// vocabulary: byte-level BPE (tokenizer.json) and tiktoken (Llama 3 <c>tokenizer.model</c>) as model <c>gpt2</c>
/// with merges and a <c>tokenizer.ggml.pre</c> name, SentencePiece-style vocabularies as model <c>llama</c> with
/// scores.</summary>
public static class GgufTokenizerKeys
{
    /// <summary>Adds <paramref name="tokenizer"/>'s keys to <paramref name="writer"/>. Throws
    /// <see cref="RotorException"/> when its pre-tokenizer has no llama.cpp name.</summary>
    public static void Add(GgufWriter writer, LmTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(tokenizer);
        switch (tokenizer)
        {
            case ByteLevelBpeTokenizer b:
            {
                int n = b.VocabSize;
                var tokens = new string[n];
                var types = new long[n];
                for (int i = 0; i < n; i++) { tokens[i] = b.TokenText(i); types[i] = (long)b.Kind(i); }
                var merges = b.MergesByRank().Select(m => tokens[m.Left] + " " + tokens[m.Right]).ToArray();
                AddGpt2(writer, PreName(b.Pattern, b.IgnoreMerges), tokens, types, merges);
                break;
            }
            case TiktokenLmTokenizer t:
            {
                var ranks = t.ByteLevelTokens();
                var merges = TiktokenLmTokenizer.DeriveMerges(ranks).Select(m => m.Left + " " + m.Right).ToArray();
                int n = t.VocabSize;
                var tokens = new string[n];
                var types = new long[n];
                ranks.CopyTo(tokens, 0);
                Array.Fill(types, (long)TokenKind.Normal, 0, ranks.Length);
                for (int i = ranks.Length; i < n; i++)
                {
                    // An id between special tokens that has none stays a placeholder llama.cpp and Rotor never produce.
                    string? s = t.SpecialText(i);
                    tokens[i] = s ?? $"<|unused_special_{i}|>";
                    types[i] = (long)(s is null ? TokenKind.Unused : TokenKind.Control);
                }
                // tiktoken takes a word that is itself a rank whole, which llama-bpe's ignore_merges matches.
                AddGpt2(writer, PreName(t.Pattern, ignoreMerges: true), tokens, types, merges);
                break;
            }
            case SentencePieceBpeTokenizer s:
            {
                int n = s.VocabSize;
                var tokens = new string[n];
                var scores = new double[n];
                var types = new long[n];
                for (int i = 0; i < n; i++)
                {
                    tokens[i] = s.Piece(i).Replace(' ', '\u2581');
                    scores[i] = s.Score(i);
                    types[i] = (long)s.Kind(i);
                }
                writer.AddString("tokenizer.ggml.model", "llama");
                writer.AddArray("tokenizer.ggml.tokens", tokens);
                writer.AddArray("tokenizer.ggml.scores", GgufValueType.Float32, scores);
                writer.AddArray("tokenizer.ggml.token_type", GgufValueType.Int32, types);
                writer.AddBool("tokenizer.ggml.add_space_prefix", s.AddSpacePrefix);
                if (s.UnknownId is int unk) writer.AddUInt32("tokenizer.ggml.unknown_token_id", (uint)unk);
                break;
            }
            default:
                throw new RotorException($"the tokenizer {tokenizer.GetType().Name} cannot be written into GGUF");
        }
        if (tokenizer.BosId is int bos) writer.AddUInt32("tokenizer.ggml.bos_token_id", (uint)bos);
        if (tokenizer.EosId is int eos) writer.AddUInt32("tokenizer.ggml.eos_token_id", (uint)eos);
        foreach (var (key, text) in new[] { ("tokenizer.ggml.eot_token_id", "<|eot_id|>"), ("tokenizer.ggml.eom_token_id", "<|eom_id|>") })
            if (tokenizer.SpecialTokens.TryGetValue(text, out int id) && tokenizer.IsSpecial(id)) writer.AddUInt32(key, (uint)id);
        writer.AddBool("tokenizer.ggml.add_bos_token", tokenizer.BosId is not null);
        writer.AddBool("tokenizer.ggml.add_eos_token", false);
        if (tokenizer.ChatTemplateText is { } template) writer.AddString("tokenizer.chat_template", template);
    }

    private static void AddGpt2(GgufWriter writer, string pre, string[] tokens, long[] types, string[] merges)
    {
        writer.AddString("tokenizer.ggml.model", "gpt2");
        writer.AddString("tokenizer.ggml.pre", pre);
        writer.AddArray("tokenizer.ggml.tokens", tokens);
        writer.AddArray("tokenizer.ggml.token_type", GgufValueType.Int32, types);
        writer.AddArray("tokenizer.ggml.merges", merges);
    }

    /// <summary>The <c>tokenizer.ggml.pre</c> name llama.cpp gives the pattern with this merge rule (the inverse of
    /// <see cref="PreTokenizerPatterns.ForGgufPre"/>).</summary>
    private static string PreName(string pattern, bool ignoreMerges) => (pattern, ignoreMerges) switch
    {
        (PreTokenizerPatterns.Llama3, true) => "llama-bpe",
        (PreTokenizerPatterns.Llama3, false) => "smaug-bpe",
        (PreTokenizerPatterns.Gpt2, false) => "gpt-2",
        _ => throw new RotorException($"the tokenizer's pre-tokenizer pattern {pattern} (ignore_merges {ignoreMerges}) has no llama.cpp name; GGUF can hold only the ones llama.cpp knows"),
    };
}
