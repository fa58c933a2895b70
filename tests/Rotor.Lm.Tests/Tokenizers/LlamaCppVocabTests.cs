using System.Text;
using Rotor.Lm.Tokenizers;

namespace Rotor.Lm.Tests.Tokenizers;

/// <summary>Real GGUF vocabularies written by llama.cpp's converter (its <c>models/ggml-vocab-*.gguf</c>, with the
/// <c>.inp</c> strings and <c>.out</c> ids that Hugging Face's tokenizers gave for them), from the folder named by
/// <c>ROTOR_LLAMACPP_VOCAB</c>. They are another project's files, so they are not in this repository.</summary>
public class LlamaCppVocabTests
{
    private static string? Folder => Environment.GetEnvironmentVariable("ROTOR_LLAMACPP_VOCAB") is { Length: > 0 } d && Directory.Exists(d) ? d : null;

    [LlamaCppVocabTheory]
    [InlineData("llama-spm")]
    [InlineData("gpt-2")]
    public void IdsEqualTheReference(string name)
    {
        string gguf = Path.Combine(Folder!, $"ggml-vocab-{name}.gguf");
        var tok = TokenizerLoader.FromGguf(MinimalGguf.ReadMetadata(gguf), gguf);
        var inputs = File.ReadAllText(gguf + ".inp").Split("\n__ggml_vocab_test__\n");
        var outputs = File.ReadAllLines(gguf + ".out");
        Assert.True(outputs.Length >= 30);
        var bad = new List<string>();
        for (int i = 0; i < outputs.Length; i++)
        {
            var expected = outputs[i].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
            var ids = tok.Encode(inputs[i], addBos: false, parseSpecial: false);
            if (!ids.SequenceEqual(expected)) bad.Add(TokenizerTestData.Diff(inputs[i], expected, ids));
        }
        Assert.True(bad.Count == 0, $"{bad.Count} of {outputs.Length} differ:\n" + string.Join("\n", bad));
    }

    [LlamaCppVocabTheory(NeedsLlama3 = true)]
    [InlineData(false)]
    [InlineData(true)]
    public void Llama3IdsEqualTheReference(bool fromMerges)
    {
        // llama.cpp's Llama 3 vocabulary file is not in its repository snapshot, but its .inp and .out are; the
        // tokenizer is the tiktoken file of ../shared/data, or the same vocabulary as GGUF merges.
        string baseName = Path.Combine(Folder!, "ggml-vocab-llama-bpe.gguf");
        LmTokenizer tok = fromMerges ? TokenizerLoader.FromGguf(Llama3TokenizerTests.Llama3Gguf(), "llama3.gguf") : TokenizerTestData.Llama3;
        var inputs = File.ReadAllText(baseName + ".inp").Split("\n__ggml_vocab_test__\n");
        var outputs = File.ReadAllLines(baseName + ".out");
        Assert.True(outputs.Length >= 30);
        var bad = new List<string>();
        for (int i = 0; i < outputs.Length; i++)
        {
            var expected = outputs[i].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
            var ids = tok.Encode(inputs[i], addBos: false, parseSpecial: false);
            if (!ids.SequenceEqual(expected)) bad.Add(TokenizerTestData.Diff(inputs[i], expected, ids));
        }
        Assert.True(bad.Count == 0, $"{bad.Count} of {outputs.Length} differ:\n" + string.Join("\n", bad));
    }
}

/// <summary>A theory that skips, saying why, when ROTOR_LLAMACPP_VOCAB does not name a folder.</summary>
public sealed class LlamaCppVocabTheoryAttribute : TheoryAttribute
{
    /// <summary>Sets Skip when the folder is not given.</summary>
    public LlamaCppVocabTheoryAttribute()
    {
        if (Environment.GetEnvironmentVariable("ROTOR_LLAMACPP_VOCAB") is not { Length: > 0 } d || !Directory.Exists(d))
            Skip = "ROTOR_LLAMACPP_VOCAB does not name a folder holding llama.cpp's models/ggml-vocab-{llama-spm,gpt-2}.gguf and ggml-vocab-llama-bpe.gguf's .inp and .out";
    }

    private readonly bool _needsLlama3;

    /// <summary>Also skip when ../shared/data/lm/llama3-tokenizer.model is absent.</summary>
    public bool NeedsLlama3
    {
        get => _needsLlama3;
        init
        {
            _needsLlama3 = value;
            if (value && Skip is null && TokenizerTestData.Llama3Model is null)
                Skip = $"llama3-tokenizer.model not found under {TokenizerTestData.SharedLm ?? "../shared/data/lm"}";
        }
    }
}

/// <summary>Just enough of GGUF to read the metadata of a vocabulary-only file in a test, with the normalized value
/// types of the GGUF reader (string, bool, long, double and their arrays).</summary>
internal static class MinimalGguf
{
    public static Dictionary<string, object> ReadMetadata(string path)
    {
        using var r = new BinaryReader(File.OpenRead(path), Encoding.UTF8);
        Assert.Equal("GGUF"u8.ToArray(), r.ReadBytes(4));
        Assert.Equal(3u, r.ReadUInt32());
        r.ReadUInt64();                       // tensor count
        ulong n = r.ReadUInt64();
        var md = new Dictionary<string, object>();
        for (ulong i = 0; i < n; i++)
        {
            string key = Str(r);
            md[key] = Value(r, r.ReadUInt32());
        }
        return md;
    }

    private static string Str(BinaryReader r) => Encoding.UTF8.GetString(r.ReadBytes(checked((int)r.ReadUInt64())));

    private static object Value(BinaryReader r, uint type) => type switch
    {
        0 => (long)r.ReadByte(), 1 => (long)r.ReadSByte(), 2 => (long)r.ReadUInt16(), 3 => (long)r.ReadInt16(),
        4 => (long)r.ReadUInt32(), 5 => (long)r.ReadInt32(), 6 => (double)r.ReadSingle(), 7 => r.ReadByte() != 0,
        8 => Str(r), 10 => (long)r.ReadUInt64(), 11 => r.ReadInt64(), 12 => r.ReadDouble(),
        9 => Array(r),
        _ => throw new InvalidDataException($"GGUF value type {type}"),
    };

    private static object Array(BinaryReader r)
    {
        uint type = r.ReadUInt32();
        int n = checked((int)r.ReadUInt64());
        var items = new object[n];
        for (int i = 0; i < n; i++) items[i] = Value(r, type);
        return type switch
        {
            8 => items.Cast<string>().ToArray(),
            6 or 12 => items.Cast<double>().ToArray(),
            7 => items.Cast<bool>().ToArray(),
            _ => items.Cast<long>().ToArray(),
        };
    }
}
