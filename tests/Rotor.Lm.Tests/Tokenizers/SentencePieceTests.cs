using System.Text;
using Rotor.Lm.Tokenizers;

namespace Rotor.Lm.Tests.Tokenizers;

public class SentencePieceTests
{
    [Tok512Fact]
    public void Tok512IdsEqualLlama2cOnEveryTestString()
    {
        var tok = SentencePieceBpeTokenizer.LoadLlama2c(TokenizerTestData.Tok512!, expectedVocabSize: 512);
        var expected = TokenizerTestData.Ids("llama2c_tok512.json", "ids");
        var strings = TokenizerTestData.Strings;
        var bad = new List<string>();
        for (int i = 0; i < strings.Length; i++)
        {
            var ids = tok.Encode(strings[i], addBos: true);
            if (!ids.SequenceEqual(expected[i])) bad.Add(TokenizerTestData.Diff(strings[i], expected[i], ids));
        }
        Assert.True(bad.Count == 0, $"{bad.Count} of {strings.Length} differ:\n" + string.Join("\n", bad.Take(10)));
    }

    [Tok512Fact]
    public void Tok512DecodesWhatItEncodes()
    {
        var tok = SentencePieceBpeTokenizer.LoadLlama2c(TokenizerTestData.Tok512!);
        Assert.Equal(512, tok.VocabSize);
        Assert.Equal(1, tok.BosId);
        Assert.Equal(2, tok.EosId);
        Assert.Contains(2, tok.StopIds);
        foreach (var s in TokenizerTestData.Strings)
        {
            var ids = tok.Encode(s, addBos: true);
            // After BOS the dummy-prefix space is dropped, as llama2.c's decode does.
            var stream = new TokenTextStream(tok);
            stream.Prime(tok.BosId);
            var sb = new StringBuilder();
            foreach (int id in ids.Skip(1)) sb.Append(stream.Append(id));
            sb.Append(stream.Flush());
            Assert.Equal(s, sb.ToString());
            Assert.Equal(s, tok.Decode([.. ids.Skip(1)]));
        }
    }

    [Tok512Fact]
    public void Tok512MatchesLlama2csQuadraticMergeLoopOnRandomText()
    {
        var tok = SentencePieceBpeTokenizer.LoadLlama2c(TokenizerTestData.Tok512!);
        var pieces = Enumerable.Range(0, tok.VocabSize).Select(i => Encoding.UTF8.GetString(tok.TokenBytes(i, 5))).ToArray();
        var scores = ReadScores(TokenizerTestData.Tok512!);
        var rng = new Random(7);
        string alphabet = "abcdefghijklmnopqrstuvwxyz      ,.!?'\"\nABCTLS0123éü日😀";
        for (int trial = 0; trial < 300; trial++)
        {
            int n = trial < 20 ? trial : rng.Next(1, 300);
            var sb = new StringBuilder();
            for (int i = 0; i < n; i++)
            {
                char c = alphabet[rng.Next(alphabet.Length)];
                if (char.IsHighSurrogate(c)) { sb.Append("😀"); continue; }
                if (char.IsLowSurrogate(c)) continue;
                sb.Append(c);
            }
            string s = sb.ToString();
            Assert.True(NaiveLlama2cEncode(s, pieces, scores).SequenceEqual(tok.Encode(s, addBos: false)), TokenizerTestData.Diff(s, NaiveLlama2cEncode(s, pieces, scores), tok.Encode(s, addBos: false)));
        }
    }

    [Tok512Fact]
    public void EncodesLongTextInLinearishTime()
    {
        var tok = SentencePieceBpeTokenizer.LoadLlama2c(TokenizerTestData.Tok512!);
        // 400 KB without a single space: one text run, so llama2.c's merge loop would take ~10^11 steps here.
        string s = string.Concat(Enumerable.Repeat("onceuponatimetherewasalittlegirl", 12_500));
        // Speed is not asserted (tests hold no timings); a quadratic merge loop would not finish this test at all.
        var ids = tok.Encode(s, addBos: false);
        Assert.Equal(s, tok.Decode(ids));
        Assert.True(ids.Count < s.Length * 3 / 4, $"{ids.Count} ids for {s.Length} characters: the merges did not run");
    }

    /// <summary>llama2.c's encode written out plainly (O(n²) merge loop), the oracle for the priority-queue version.</summary>
    private static List<int> NaiveLlama2cEncode(string text, string[] pieces, float[] scores)
    {
        var lookup = new Dictionary<string, int>();
        for (int i = 3; i < pieces.Length; i++) lookup.TryAdd(Piece(i), i);
        var t = new List<int>();
        if (text.Length == 0) return t;
        t.Add(lookup[" "]);
        foreach (var r in text.EnumerateRunes())
        {
            if (lookup.TryGetValue(r.ToString(), out int id)) t.Add(id);
            else foreach (byte b in Encoding.UTF8.GetBytes(r.ToString())) t.Add(b + 3);
        }
        while (true)
        {
            float best = -1e10f;
            int bestId = -1, bestIdx = -1;
            for (int i = 0; i + 1 < t.Count; i++)
                if (lookup.TryGetValue(Piece(t[i]) + Piece(t[i + 1]), out int id) && scores[id] > best)
                    (best, bestId, bestIdx) = (scores[id], id, i);
            if (bestIdx < 0) break;
            t[bestIdx] = bestId;
            t.RemoveAt(bestIdx + 1);
        }
        return t;
        string Piece(int id) => id >= 3 && id < 259 ? $"<0x{id - 3:X2}>" : pieces[id];
    }

    private static float[] ReadScores(string path)
    {
        var d = File.ReadAllBytes(path);
        var s = new List<float>();
        for (int o = 4; o < d.Length;) { s.Add(BitConverter.ToSingle(d, o)); o += 8 + BitConverter.ToInt32(d, o + 4); }
        return [.. s];
    }

    [Fact]
    public void GgufLlamaVocabularyUsesSpaceMarkersScoresAndTypes()
    {
        // A tiny real-format vocabulary: <unk>, <s>, </s>, 256 byte tokens, then pieces with ▁ and scores.
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        tokens.AddRange(Enumerable.Range(0, 256).Select(b => $"<0x{b:X2}>"));
        string[] pieces = ["▁", "h", "e", "l", "o", "w", "r", "d", "he", "ll", "▁he", "llo", "▁hello", "▁w", "or", "▁wor", "ld", "▁world", "<|user|>"];
        tokens.AddRange(pieces);
        var types = tokens.Select((t, i) => i == 0 ? 2L : i < 3 ? 3L : i < 259 ? 6L : t == "<|user|>" ? 4L : 1L).ToArray();
        var scores = tokens.Select((t, i) => i < 259 ? 0.0 : -(double)(i - 259)).ToArray();
        // Longer pieces must outscore their parts for merges to reach them: score by length.
        for (int i = 259; i < tokens.Count; i++) scores[i] = tokens[i].Length;
        var md = new Dictionary<string, object>
        {
            ["tokenizer.ggml.model"] = "llama",
            ["tokenizer.ggml.tokens"] = tokens.ToArray(),
            ["tokenizer.ggml.scores"] = scores,
            ["tokenizer.ggml.token_type"] = types,
            ["tokenizer.ggml.bos_token_id"] = 1L,
            ["tokenizer.ggml.eos_token_id"] = 2L,
            ["tokenizer.ggml.unknown_token_id"] = 0L,
        };
        var tok = TokenizerLoader.FromGguf(md, "test.gguf");
        int Id(string p) => tokens.IndexOf(p);
        Assert.Equal([1, Id("▁hello"), Id("▁world")], tok.Encode("hello world"));
        // é is not in the vocabulary: its two UTF-8 bytes become byte tokens.
        Assert.Equal([Id("▁he"), 3 + 0xC3, 3 + 0xA9], tok.Encode("heé", addBos: false));
        // A user-defined token is matched whole; a dummy-prefix space starts each run after it (llama.cpp).
        Assert.Equal([Id("▁hello"), Id("<|user|>"), Id("▁world")], tok.Encode("hello<|user|>world", addBos: false));
        // <s> is a control token: text unless special tokens are parsed.
        Assert.Equal([Id("▁hello"), 1, Id("▁world")], tok.Encode("hello<s>world", addBos: false, parseSpecial: true));
        Assert.DoesNotContain(1, tok.Encode("hello<s>world", addBos: false));
        Assert.Equal("hello world", tok.Decode([.. tok.Encode("hello world").Skip(1)]));
        Assert.True(tok.IsSpecial(1));
        Assert.False(tok.IsSpecial(Id("▁hello")));
        Assert.Equal("heé", tok.Decode(tok.Encode("heé", addBos: false)));
    }

    [Fact]
    public void SentencePieceModelIdsEqualSentencePiece()
    {
        var tok = TokenizerLoader.Load(TokenizerTestData.Fixture("spm_small.model"));
        Assert.IsType<SentencePieceBpeTokenizer>(tok);
        Assert.Equal(800, tok.VocabSize);
        Assert.Equal(1, tok.BosId);
        Assert.Equal(2, tok.EosId);
        var expected = TokenizerTestData.Ids("spm_small.json", "ids");
        var strings = TokenizerTestData.Strings;
        var bad = new List<string>();
        for (int i = 0; i < strings.Length; i++)
        {
            var ids = tok.Encode(strings[i], addBos: false);
            if (!ids.SequenceEqual(expected[i])) bad.Add(TokenizerTestData.Diff(strings[i], expected[i], ids));
            Assert.Equal(strings[i], tok.Decode(ids));
        }
        Assert.True(bad.Count == 0, $"{bad.Count} of {strings.Length} differ:\n" + string.Join("\n", bad.Take(10)));
    }
}
