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

    private static void AssertSame(LmTokenizer expected, LmTokenizer actual)
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
            foreach (bool special in new[] { true, false })
            {
                var ids = expected.Encode(s, addBos: true, parseSpecial: special);
                var got = actual.Encode(s, addBos: true, parseSpecial: special);
                Assert.True(ids.SequenceEqual(got), TokenizerTestData.Diff(s, ids, got));
                Assert.Equal(expected.Decode(ids), actual.Decode(got));
            }
    }
}
