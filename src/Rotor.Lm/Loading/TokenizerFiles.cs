using Rotor.Lm.Tokenizers;

namespace Rotor.Lm.Loading;

/// <summary>Finds and loads the tokenizer of a model from its files (see <see cref="TokenizerLoader"/>).</summary>
internal static class TokenizerFiles
{
    /// <summary>The tokenizer in <paramref name="path"/> (a file or folder), or null when no path is given.</summary>
    public static LmTokenizer? FromPath(string? path, int? vocab = null) => path is null ? null : TokenizerLoader.Load(path, vocab);

    /// <summary>The tokenizer files of a Hugging Face folder, or null when it has none.</summary>
    public static LmTokenizer? FromFolder(string folder)
    {
        foreach (string name in new[] { "tokenizer.json", "tokenizer.model" })
            if (File.Exists(Path.Combine(folder, name))) return TokenizerLoader.Load(folder);
        return null;
    }

    /// <summary>The tokenizer in a GGUF file's metadata, or null when it has none.</summary>
    public static LmTokenizer? FromGguf(Gguf.GgufFile f)
    {
        if (!f.TryGetString("tokenizer.ggml.model", out string model) || model is "none" or "no_vocab") return null;
        return TokenizerLoader.FromGguf(f.Metadata, f.Path);
    }

    /// <summary>llama2.c's convention: <c>tokenizer.bin</c> or <c>tok{vocab}.bin</c> beside the checkpoint, or null.</summary>
    public static LmTokenizer? BesideLlama2c(string checkpoint, int vocab)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(checkpoint)) ?? ".";
        foreach (string name in new[] { $"tok{vocab}.bin", "tokenizer.bin" })
        {
            string p = Path.Combine(dir, name);
            if (File.Exists(p)) return TokenizerLoader.Load(p, vocab);
        }
        return null;
    }
}
