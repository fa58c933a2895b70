using Rotor.Lm.Gguf;
using Rotor.Lm.Tests.Tokenizers;
using Rotor.Lm.Tokenizers;

namespace Rotor.Lm.Tests.Gguf;

/// <summary><see cref="GgufTokenizerKeys"/>: each kind of tokenizer written into a GGUF file and read back with
/// <see cref="GgufFile"/> and <see cref="TokenizerLoader.FromGguf"/> gives the original's ids on the tokenizer test
/// strings (special tokens parsed and as plain text, with BOS), the same special ids and the same decoded text.</summary>
public sealed class GgufTokenizerKeysTests
{
    [SharedLmFact("tok512.bin")]
    public void Llama2cTok512RoundTrips()
    {
        var tok = SentencePieceBpeTokenizer.LoadLlama2c(TestPaths.SharedLm("tok512.bin")!);
        var (back, md) = RoundTrip(tok);
        Assert.Equal("llama", md["tokenizer.ggml.model"]);
        Assert.Equal(tok.VocabSize, ((double[])md["tokenizer.ggml.scores"]).Length);
        Assert.Equal("<s>", ((string[])md["tokenizer.ggml.tokens"])[1]);
        AssertSame(tok, back);
    }

    [SharedLmFact("llama3-tokenizer.model")]
    public void Llama3TiktokenRoundTrips()
    {
        var tok = TiktokenLmTokenizer.Load(TestPaths.SharedLm("llama3-tokenizer.model")!);
        var (back, md) = RoundTrip(tok);
        Assert.Equal("gpt2", md["tokenizer.ggml.model"]);
        Assert.Equal("llama-bpe", md["tokenizer.ggml.pre"]);
        Assert.Equal(128_000L, md["tokenizer.ggml.bos_token_id"]);
        Assert.Equal(128_001L, md["tokenizer.ggml.eos_token_id"]);
        Assert.Equal(128_009L, md["tokenizer.ggml.eot_token_id"]);
        var types = (long[])md["tokenizer.ggml.token_type"];
        Assert.Equal(256, types.Count(t => t == 3));
        Assert.All(types[128_000..], t => Assert.Equal(3L, t));
        AssertSame(tok, back);
        // The ids tiktoken itself gives (fixture made by tiktoken), not only the original Rotor tokenizer's.
        var expected = TokenizerTestData.Ids("llama3_tiktoken.json", "special");
        for (int i = 0; i < TokenizerTestData.Strings.Length; i++)
        {
            var ids = back.Encode(TokenizerTestData.Strings[i], addBos: false, parseSpecial: true);
            Assert.Equal(expected[i], ids);
            Assert.Equal(TokenizerTestData.Strings[i], back.Decode(ids));
        }
    }

    [Fact]
    public void TokenizerJsonRoundTrips()
    {
        var tok = TokenizerLoader.LoadTokenizerJson(TokenizerTestData.Fixture("bpe_small.tokenizer.json"));
        var (back, md) = RoundTrip(tok);
        Assert.Equal("gpt2", md["tokenizer.ggml.model"]);
        Assert.Equal("smaug-bpe", md["tokenizer.ggml.pre"]);   // Llama 3's regex without ignore_merges
        AssertSame(tok, back);
        // The ids Hugging Face's tokenizers gives for the fixture.
        var expected = TokenizerTestData.Ids("bpe_small.json", "ids");
        for (int i = 0; i < TokenizerTestData.Strings.Length; i++)
        {
            var ids = back.Encode(TokenizerTestData.Strings[i], addBos: false, parseSpecial: true);
            Assert.Equal(expected[i], ids);
            Assert.Equal(TokenizerTestData.Strings[i], back.Decode(ids));
        }
    }

    [Fact]
    public void SentencePieceModelRoundTripsOnPlainText()
    {
        // A SentencePiece tokenizer.model puts the dummy prefix only at the start of the text; GGUF's llama vocabulary
        // (llama.cpp's rule) also puts it after each special token, so only text without special tokens compares.
        var tok = TokenizerLoader.Load(TokenizerTestData.Fixture("spm_small.model"));
        var (back, md) = RoundTrip(tok);
        Assert.Equal("llama", md["tokenizer.ggml.model"]);
        AssertSame(tok, back, parseSpecial: [false]);
        var expected = TokenizerTestData.Ids("spm_small.json", "ids");
        for (int i = 0; i < TokenizerTestData.Strings.Length; i++)
            Assert.Equal(expected[i], back.Encode(TokenizerTestData.Strings[i], addBos: false, parseSpecial: false));
    }

    [Fact]
    public void Gpt2PatternIsWrittenAsGpt2AndAnUnknownPatternIsRefused()
    {
        var tokens = Enumerable.Range(0, 256).Select(b => ByteLevelBpeTokenizer.ByteToChar[b].ToString())
            .Concat(["\u0120t", "he", "\u0120the", "<|endoftext|>"]).ToList();
        var kinds = tokens.Select((_, i) => i == tokens.Count - 1 ? TokenKind.Control : TokenKind.Normal).ToList();
        (string, string)[] merges = [("\u0120", "t"), ("h", "e"), ("\u0120t", "he")];
        var gpt2 = new ByteLevelBpeTokenizer(tokens, kinds, merges, PreTokenizerPatterns.Gpt2, false, null, tokens.Count - 1, [], "t");
        var (back, md) = RoundTrip(gpt2);
        Assert.Equal("gpt-2", md["tokenizer.ggml.pre"]);
        Assert.Equal(new[] { "\u0120 t", "h e", "\u0120t he" }, (string[])md["tokenizer.ggml.merges"]);
        AssertSame(gpt2, back);
        Assert.Equal([258, 258], back.Encode(" the the", addBos: false));

        var other = new ByteLevelBpeTokenizer(tokens, kinds, merges, @"\w+|\W+", false, null, null, [], "t");
        var e = Assert.Throws<RotorException>(() => GgufTokenizerKeys.Add(new GgufWriter(), other));
        Assert.Contains("no llama.cpp name", e.Message);
    }

    [Fact]
    public void ChatTemplateIsWritten()
    {
        var tok = TokenizerLoader.LoadTokenizerJson(TokenizerTestData.Fixture("bpe_small.tokenizer.json"));
        tok.ChatTemplateText = "{{ messages }}";
        var (back, md) = RoundTrip(tok);
        Assert.Equal("{{ messages }}", md["tokenizer.chat_template"]);
        Assert.Equal("{{ messages }}", back.ChatTemplateText);
    }

    private static (LmTokenizer Tokenizer, IReadOnlyDictionary<string, object> Metadata) RoundTrip(LmTokenizer tok)
    {
        string dir = TestPaths.TempDir();
        try
        {
            var w = new GgufWriter();
            w.AddString("general.architecture", "llama");
            GgufTokenizerKeys.Add(w, tok);
            w.AddTensor("token_embd.weight", GgmlType.F32, [4], GgufWriter.EncodeF32([1f, 2f, 3f, 4f]));
            string path = Path.Combine(dir, "tok.gguf");
            w.Write(path);
            using var f = GgufFile.Open(path);
            var md = f.Metadata.ToDictionary(kv => kv.Key, kv => kv.Value);
            return (TokenizerLoader.FromGguf(md, path), md);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    private static void AssertSame(LmTokenizer expected, LmTokenizer actual, bool[]? parseSpecial = null)
    {
        Assert.Equal(expected.VocabSize, actual.VocabSize);
        Assert.Equal(expected.BosId, actual.BosId);
        Assert.Equal(expected.EosId, actual.EosId);
        Assert.Equal(expected.StopIds.Order(), actual.StopIds.Order());
        Assert.Equal(expected.SpecialTokens.OrderBy(kv => kv.Value), actual.SpecialTokens.OrderBy(kv => kv.Value));
        for (int id = 0; id < expected.VocabSize; id++)
        {
            Assert.Equal(expected.IsSpecial(id), actual.IsSpecial(id));
            Assert.Equal(expected.TokenBytes(id, null), actual.TokenBytes(id, null));
        }
        foreach (string s in TokenizerTestData.Strings)
            foreach (bool special in parseSpecial ?? [true, false])
            {
                var ids = expected.Encode(s, addBos: true, parseSpecial: special);
                var got = actual.Encode(s, addBos: true, parseSpecial: special);
                Assert.True(ids.SequenceEqual(got), TokenizerTestData.Diff(s, ids, got));
                Assert.Equal(expected.Decode(ids), actual.Decode(got));
            }
    }
}
