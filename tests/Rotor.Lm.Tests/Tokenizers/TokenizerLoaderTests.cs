using System.Text;
using Rotor.Lm.Tokenizers;

namespace Rotor.Lm.Tests.Tokenizers;

public class TokenizerLoaderTests
{
    [Fact]
    public void TokenizerJsonIdsEqualHuggingFaceTokenizers()
    {
        var tok = TokenizerLoader.LoadTokenizerJson(TokenizerTestData.Fixture("bpe_small.tokenizer.json"));
        var expected = TokenizerTestData.Ids("bpe_small.json", "ids");
        var strings = TokenizerTestData.Strings;
        var bad = new List<string>();
        for (int i = 0; i < strings.Length; i++)
        {
            var ids = tok.Encode(strings[i], addBos: false, parseSpecial: true);
            if (!ids.SequenceEqual(expected[i])) bad.Add(TokenizerTestData.Diff(strings[i], expected[i], ids));
            Assert.Equal(strings[i], tok.Decode(ids));
        }
        Assert.True(bad.Count == 0, $"{bad.Count} of {strings.Length} differ:\n" + string.Join("\n", bad.Take(10)));
    }

    [Fact]
    public void FolderWithTokenizerJsonAndConfig()
    {
        string dir = TokenizerTestData.TempDir();
        try
        {
            File.Copy(TokenizerTestData.Fixture("bpe_small.tokenizer.json"), Path.Combine(dir, "tokenizer.json"));
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
                "{\"bos_token\": {\"content\": \"<|begin_of_text|>\"}, \"eos_token\": \"<|eot_id|>\", \"chat_template\": \"{{ '<|start_header_id|>' }}\"}");
            var tok = TokenizerLoader.Load(dir);
            Assert.IsType<ByteLevelBpeTokenizer>(tok);
            Assert.Equal(tok.SpecialTokens["<|begin_of_text|>"], tok.BosId);
            Assert.Equal(tok.SpecialTokens["<|eot_id|>"], tok.EosId);
            Assert.Contains(tok.SpecialTokens["<|end_of_text|>"], tok.StopIds);
            Assert.True(tok.IsSpecial(tok.SpecialTokens["<|eot_id|>"]));
            Assert.Equal(ChatFormat.Llama3, ChatTemplate.For(tok).Format);
            Assert.Equal(tok.BosId, tok.Encode("hi")[0]);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Llama2FolderFallsBackFromSentencePieceStyleJsonToTokenizerModel()
    {
        string dir = TokenizerTestData.TempDir();
        try
        {
            File.WriteAllText(Path.Combine(dir, "tokenizer.json"), "{\"model\": {\"type\": \"BPE\", \"vocab\": {}}, \"normalizer\": {\"type\": \"Sequence\"}}");
            var e = Assert.Throws<RotorException>(() => TokenizerLoader.Load(dir));
            Assert.Contains("normalizer", e.Message);
            File.Copy(TokenizerTestData.Fixture("spm_small.model"), Path.Combine(dir, "tokenizer.model"));
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), "{\"chat_template\": \"{{ '<|start_header_id|>' }}\"}");
            var tok = TokenizerLoader.Load(dir);
            Assert.IsType<SentencePieceBpeTokenizer>(tok);
            Assert.Equal("{{ '<|start_header_id|>' }}", tok.ChatTemplateText);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Tok512Fact]
    public void LoadsLlama2cTokenizerByFileAndFolder()
    {
        Assert.IsType<SentencePieceBpeTokenizer>(TokenizerLoader.Load(TokenizerTestData.Tok512!, expectedVocabSize: 512));
        string dir = TokenizerTestData.TempDir();
        try
        {
            File.Copy(TokenizerTestData.Tok512!, Path.Combine(dir, "tok512.bin"));
            Assert.Equal(512, TokenizerLoader.Load(dir).VocabSize);
            var e = Assert.Throws<RotorException>(() => TokenizerLoader.Load(Path.Combine(dir, "tok512.bin"), expectedVocabSize: 32000));
            Assert.Contains("vocab_size is 32000", e.Message);
            File.Copy(TokenizerTestData.Tok512!, Path.Combine(dir, "tok513.bin"));
            e = Assert.Throws<RotorException>(() => TokenizerLoader.Load(dir));
            Assert.Contains("several", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Llama3TokenizerFact]
    public void LoadsTiktokenModel() => Assert.IsType<TiktokenLmTokenizer>(TokenizerLoader.Load(TokenizerTestData.Llama3Model!));

    private static RotorException LoadFails(string fileName, byte[] content)
    {
        string dir = TokenizerTestData.TempDir();
        try
        {
            string path = Path.Combine(dir, fileName);
            File.WriteAllBytes(path, content);
            var e = Assert.Throws<RotorException>(() => TokenizerLoader.Load(path));
            Assert.Contains(path, e.Message);
            return e;
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void BadFilesGetOneClearLineNamingTheFile()
    {
        Assert.Contains("not found", Assert.Throws<RotorException>(() => TokenizerLoader.Load("/nonexistent/tokenizer.json")).Message);
        string empty = TokenizerTestData.TempDir();
        try { Assert.Contains("no tokenizer in the folder", Assert.Throws<RotorException>(() => TokenizerLoader.Load(empty)).Message); }
        finally { Directory.Delete(empty); }

        Assert.Contains("unknown tokenizer format", LoadFails("vocab.txt", "hello\nworld\n"u8.ToArray()).Message);
        Assert.Contains("unigram is not supported", LoadFails("tokenizer.model", [0x0A, 0x05, 0x0A, 0x01, 0x41, 0x18, 0x01]).Message);
        byte[] spm = File.ReadAllBytes(TokenizerTestData.Fixture("spm_small.model"));
        Assert.Contains("not a SentencePiece model", LoadFails("tokenizer.model", spm[..(spm.Length / 2)]).Message);
        Assert.Contains("GGUF", LoadFails("model.gguf", "GGUF\x03\0\0\0"u8.ToArray()).Message);
        Assert.Contains("line 2", LoadFails("tokenizer.model", "IQ== 0\nIg== 5\n"u8.ToArray()).Message);
        Assert.Contains("not valid JSON", LoadFails("tokenizer.json", "{\"model\": "u8.ToArray()).Message);
        Assert.Contains("model.type", LoadFails("tokenizer.json", "{\"model\": {\"type\": \"WordPiece\"}}"u8.ToArray()).Message);

        // A llama2.c tokenizer cut short inside a token, and one whose length field is garbage.
        var tok = new MemoryStream();
        var w = new BinaryWriter(tok);
        w.Write(7);
        foreach (var s in new[] { "<unk>", "\n<s>\n", "\n</s>\n", "ab" }) { w.Write(0f); w.Write(Encoding.UTF8.GetByteCount(s)); w.Write(Encoding.UTF8.GetBytes(s)); }
        byte[] good = tok.ToArray();
        Assert.Contains("truncated", LoadFails("tok4.bin", good[..^1]).Message);
        byte[] bad = (byte[])good.Clone();
        BitConverter.GetBytes(1_000_000).CopyTo(bad, 8);
        Assert.Contains("length 1000000", LoadFails("tok4.bin", bad).Message);
    }

    [Fact]
    public void BadGgufMetadataNamesTheKey()
    {
        Dictionary<string, object> Md() => new()
        {
            ["tokenizer.ggml.model"] = "gpt2",
            ["tokenizer.ggml.pre"] = "llama-bpe",
            ["tokenizer.ggml.tokens"] = Enumerable.Range(0, 256).Select(b => ByteLevelBpeTokenizer.ByteToChar[b].ToString()).Append("<|eot_id|>").ToArray(),
            ["tokenizer.ggml.token_type"] = Enumerable.Repeat(1L, 256).Append(3L).ToArray(),
            ["tokenizer.ggml.merges"] = Array.Empty<string>(),
            ["tokenizer.ggml.eos_token_id"] = 256L,
        };
        var ok = TokenizerLoader.FromGguf(Md(), "m.gguf");
        Assert.Equal([104, 105, 256], ok.Encode("hi<|eot_id|>", addBos: false, parseSpecial: true));
        Assert.Contains(256, ok.StopIds);

        void Fails(Action<Dictionary<string, object>> change, string expected)
        {
            var md = Md();
            change(md);
            var e = Assert.Throws<RotorException>(() => TokenizerLoader.FromGguf(md, "m.gguf"));
            Assert.StartsWith("m.gguf: ", e.Message);
            Assert.Contains(expected, e.Message);
        }
        Fails(md => md.Remove("tokenizer.ggml.model"), "no tokenizer in the file");
        Fails(md => md["tokenizer.ggml.model"] = "bert", "\"bert\" is not supported");
        Fails(md => md["tokenizer.ggml.pre"] = "qwen2", "tokenizer.ggml.pre \"qwen2\"");
        Fails(md => md.Remove("tokenizer.ggml.pre"), "tokenizer.ggml.pre is missing");
        Fails(md => md["tokenizer.ggml.tokens"] = 5L, "tokenizer.ggml.tokens is a Int64");
        Fails(md => md["tokenizer.ggml.token_type"] = new long[3], "3 entries for 257 tokens");
        Fails(md => md["tokenizer.ggml.eos_token_id"] = 999L, "tokenizer.ggml.eos_token_id = 999");
        Fails(md => md["tokenizer.ggml.merges"] = new[] { "x y" }, "merge 0 (x y)");
        Fails(md => md["tokenizer.ggml.merges"] = new[] { "xy" }, "tokenizer.ggml.merges[0]");
        Fails(md => md.Remove("tokenizer.ggml.merges"), "tokenizer.ggml.merges is missing");
        Fails(md => ((string[])md["tokenizer.ggml.tokens"])[65] = "\u4e00", "stands for no byte");
    }
}
