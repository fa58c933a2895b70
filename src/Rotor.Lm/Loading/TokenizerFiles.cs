using Rotor.Lm.Tokenizers;

namespace Rotor.Lm.Loading;

/// <summary>Finds and loads the tokenizer of a model from files.</summary>
internal static class TokenizerFiles
{
    /// <summary>The tokenizer in <paramref name="path"/>, or null when no path is given.</summary>
    public static LmTokenizer? FromPath(string? path) => path is null ? null : throw new RotorException($"{path}: tokenizer files are not read yet");

    /// <summary>The tokenizer files of a Hugging Face folder, or null when it has none.</summary>
    public static LmTokenizer? FromFolder(string folder) => null;

    /// <summary>The tokenizer in a GGUF file's metadata, or null when it has none.</summary>
    public static LmTokenizer? FromGguf(Gguf.GgufFile f) => null;

    /// <summary>llama2.c's convention: <c>tokenizer.bin</c> or <c>tok{vocab}.bin</c> beside the checkpoint.</summary>
    public static LmTokenizer? BesideLlama2c(string checkpoint, int vocab) => null;
}
