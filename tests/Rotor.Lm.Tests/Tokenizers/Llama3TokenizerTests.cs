using System.Text;
using Rotor.Lm.Tokenizers;

namespace Rotor.Lm.Tests.Tokenizers;

/// <summary>The Llama 3 / BitNet b1.58 2B4T tokenizer against tiktoken's ids (Data/tokenizers/llama3_tiktoken.json),
/// through ML.Tokenizers' tiktoken and through Rotor's byte-level BPE on the same vocabulary given as merges (as
/// tokenizer.json and GGUF files carry it).</summary>
public class Llama3TokenizerTests
{
    private static void AssertAllEqual(Func<string, IReadOnlyList<int>> encode, int[][] expected)
    {
        var strings = TokenizerTestData.Strings;
        var bad = new List<string>();
        for (int i = 0; i < strings.Length; i++)
        {
            var ids = encode(strings[i]);
            if (!ids.SequenceEqual(expected[i])) bad.Add(TokenizerTestData.Diff(strings[i], expected[i], ids));
        }
        Assert.True(bad.Count == 0, $"{bad.Count} of {strings.Length} differ:\n" + string.Join("\n", bad.Take(10)));
    }

    [Llama3TokenizerFact]
    public void TiktokenIdsEqualTiktokensWithSpecialTokensParsed()
        => AssertAllEqual(s => TokenizerTestData.Llama3.Encode(s, addBos: false, parseSpecial: true),
            TokenizerTestData.Ids("llama3_tiktoken.json", "special"));

    [Llama3TokenizerFact]
    public void TiktokenIdsEqualTiktokensWithSpecialTokenTextAsText()
        => AssertAllEqual(s => TokenizerTestData.Llama3.Encode(s, addBos: false, parseSpecial: false),
            TokenizerTestData.Ids("llama3_tiktoken.json", "plain"));

    [Llama3TokenizerFact]
    public void TiktokenVocabularyAndRoundTrip()
    {
        var tok = TokenizerTestData.Llama3;
        Assert.Equal(128_256, tok.VocabSize);
        Assert.Equal(128_000, tok.RankCount);
        Assert.Equal(128_000, tok.BosId);
        Assert.Equal(128_001, tok.EosId);
        Assert.Equal(new HashSet<int> { 128_001, 128_009 }, tok.StopIds);
        Assert.Equal(128_009, tok.SpecialTokens["<|eot_id|>"]);
        Assert.Equal(128_006, tok.SpecialTokens["<|start_header_id|>"]);
        Assert.Equal(128_255, tok.SpecialTokens["<|reserved_special_token_250|>"]);
        Assert.Equal([128_000, 9906, 1917], tok.Encode("Hello world"));
        Assert.True(tok.IsSpecial(128_009));
        Assert.False(tok.IsSpecial(9906));
        foreach (var s in TokenizerTestData.Strings)
        {
            Assert.Equal(s, tok.Decode(tok.Encode(s, addBos: false, parseSpecial: false)));
            Assert.Equal(s, tok.Decode(tok.Encode(s, addBos: false, parseSpecial: true)));
        }
        Assert.Equal("<|begin_of_text|>Hi", tok.Decode(tok.Encode("Hi")));
    }

    [Llama3TokenizerFact]
    public void StreamHoldsBackPartialCharacters()
    {
        var tok = TokenizerTestData.Llama3;
        const string text = "A 👨‍👩‍👧‍👦 family, 日本語 and é.";
        var ids = tok.Encode(text, addBos: false);
        // Some token must end inside a character, or this test would not test the hold-back.
        Assert.Contains(ids, id => !IsCompleteUtf8(tok.TokenBytes(id, null)));
        var stream = new TokenTextStream(tok);
        var pieces = ids.Select(stream.Append).ToList();
        pieces.Add(stream.Flush());
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
        Assert.Equal(text, string.Concat(pieces));
    }

    private static bool IsCompleteUtf8(byte[] b)
    {
        try { new UTF8Encoding(false, true).GetString(b); return true; }
        catch (DecoderFallbackException) { return false; }
    }

    [Llama3TokenizerFact]
    public void EncodesAFewKilobytesQuickly()
    {
        var tok = TokenizerTestData.Llama3;
        string s = string.Concat(Enumerable.Repeat(string.Join("", TokenizerTestData.Strings), 4));
        var ids = tok.Encode(s, addBos: false);
        Assert.Equal(s, tok.Decode(ids));
        // One word of 100 KB: tiktoken's and the byte-level merge both stay far from quadratic blow-up here (speed is
        // not asserted: tests hold no timings; a quadratic merge would not finish the test).
        string word = new('a', 100_000);
        var a = tok.Encode(word, addBos: false);
        Assert.Equal(word, tok.Decode(a));
        Assert.Equal(a, Merged.Value.Encode(word, addBos: false));
    }

    // ---- the same vocabulary as byte-level BPE merges ----------------------------------------------------------

    /// <summary>Tokens (byte-level text) and merges derived from the tiktoken ranks as Hugging Face's converter
    /// (transformers' TikTokenConverter) does: for each token, every split into two tokens, ordered by the ranks of the
    /// parts; all merges ordered by the rank of the token they make.</summary>
    internal static (string[] Tokens, (string, string)[] Merges) DeriveMerges(string modelPath)
    {
        var tokens = TiktokenLmTokenizer.ParseRanks(File.ReadAllBytes(modelPath), modelPath)
            .Select(b => new string(b.Select(x => ByteLevelBpeTokenizer.ByteToChar[x]).ToArray())).ToArray();
        return (tokens, TiktokenLmTokenizer.DeriveMerges(tokens).Select(m => (m.Left, m.Right)).ToArray());
    }

    private static readonly Lazy<(string[] Tokens, (string, string)[] Merges)> Derived = new(() => DeriveMerges(TokenizerTestData.Llama3Model!));

    /// <summary>GGUF metadata of the Llama 3 vocabulary as llama.cpp's converter writes it (model gpt2, pre llama-bpe).</summary>
    internal static Dictionary<string, object> Llama3Gguf()
    {
        var (tokens, merges) = Derived.Value;
        var specials = TiktokenLmTokenizer.Llama3SpecialTokens(tokens.Length).OrderBy(kv => kv.Value).Select(kv => kv.Key);
        var all = tokens.Concat(specials).ToArray();
        return new Dictionary<string, object>
        {
            ["tokenizer.ggml.model"] = "gpt2",
            ["tokenizer.ggml.pre"] = "llama-bpe",
            ["tokenizer.ggml.tokens"] = all,
            ["tokenizer.ggml.token_type"] = all.Select((_, i) => i < tokens.Length ? 1L : 3L).ToArray(),
            ["tokenizer.ggml.merges"] = merges.Select(m => m.Item1 + " " + m.Item2).ToArray(),
            ["tokenizer.ggml.bos_token_id"] = 128_000L,
            ["tokenizer.ggml.eos_token_id"] = 128_009L,
            ["tokenizer.ggml.eot_token_id"] = 128_009L,
            ["tokenizer.chat_template"] = "{% for message in messages %}{% set content = message['role'] | capitalize + ': '+ message['content'] | trim + '<|eot_id|>' %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}",
        };
    }

    private static readonly Lazy<LmTokenizer> Merged = new(() => TokenizerLoader.FromGguf(Llama3Gguf(), "llama3.gguf"));

    [Llama3TokenizerFact]
    public void GgufMergesIdsEqualTiktokens()
        => AssertAllEqual(s => Merged.Value.Encode(s, addBos: false, parseSpecial: true),
            TokenizerTestData.Ids("llama3_tiktoken.json", "special"));

    [Llama3TokenizerFact]
    public void GgufMergesIdsEqualTiktokensWithSpecialTokenTextAsText()
        => AssertAllEqual(s => Merged.Value.Encode(s, addBos: false, parseSpecial: false),
            TokenizerTestData.Ids("llama3_tiktoken.json", "plain"));

    [Llama3TokenizerFact]
    public void GgufMergesSpecialTokensAndRoundTrip()
    {
        var tok = Merged.Value;
        Assert.Equal(128_256, tok.VocabSize);
        Assert.Equal(128_000, tok.BosId);
        Assert.Equal(128_009, tok.EosId);
        Assert.Contains(128_009, tok.StopIds);
        Assert.Contains(128_001, tok.StopIds);
        Assert.Equal(ChatFormat.BitNet, ChatTemplate.For(tok).Format);
        foreach (var s in TokenizerTestData.Strings) Assert.Equal(s, tok.Decode(tok.Encode(s, addBos: false)));
    }

    [Llama3TokenizerFact]
    public void ByteLevelMergeMatchesAPlainRankLoopOnRandomText()
    {
        // The priority-queue merge against the plain loop: repeatedly merge the adjacent pair of lowest merge rank.
        var (tokens, merges) = Derived.Value;
        var md = Llama3Gguf();
        md["tokenizer.ggml.pre"] = "gpt2";   // no ignore_merges: every word goes through the merge loop
        var tok = TokenizerLoader.FromGguf(md, "llama3.gguf");
        var id = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < tokens.Length; i++) id[tokens[i]] = i;
        var mrank = new Dictionary<(string, string), int>();
        for (int i = 0; i < merges.Length; i++) mrank.TryAdd(merges[i], i);
        var rng = new Random(11);
        string alphabet = "aaabbbcdeeffghhiiklmnnooprsstttuuwy éü日";
        var gpt2 = new System.Text.RegularExpressions.Regex(PreTokenizerPatterns.Gpt2);
        for (int trial = 0; trial < 200; trial++)
        {
            var s = new string(Enumerable.Range(0, rng.Next(1, 120)).Select(_ => alphabet[rng.Next(alphabet.Length)]).ToArray());
            var expected = new List<int>();
            foreach (System.Text.RegularExpressions.Match m in gpt2.Matches(s))
            {
                var sym = Encoding.UTF8.GetBytes(m.Value).Select(b => ByteLevelBpeTokenizer.ByteToChar[b].ToString()).ToList();
                while (true)
                {
                    int best = int.MaxValue, at = -1;
                    for (int i = 0; i + 1 < sym.Count; i++)
                        if (mrank.TryGetValue((sym[i], sym[i + 1]), out int r) && r < best) (best, at) = (r, i);
                    if (at < 0) break;
                    sym[at] += sym[at + 1];
                    sym.RemoveAt(at + 1);
                }
                expected.AddRange(sym.Select(x => id[x]));
            }
            Assert.Equal(expected, tok.Encode(s, addBos: false));
        }
    }
}
