using System.Text.RegularExpressions;

namespace Rotor.Lm.Tokenizers;

/// <summary>The regular expressions that split text into words before byte-level BPE, by the names llama.cpp gives
/// them in GGUF's <c>tokenizer.ggml.pre</c>. .NET's <c>\s</c> (<c>[\f\n\r\t\v\x85\p{Z}]</c>) is the Unicode
/// White_Space set that tiktoken's and Hugging Face's regex engines use.</summary>
public static class PreTokenizerPatterns
{
    /// <summary>Llama 3 (tiktoken's <c>pat_str</c> in Meta's and BitNet's tokenizer.py; GGUF pre <c>llama-bpe</c>).</summary>
    public const string Llama3 =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>GPT-2 (Hugging Face's ByteLevel pre-tokenizer with <c>use_regex</c>; GGUF pre <c>gpt-2</c>).</summary>
    public const string Gpt2 = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>The pattern for a GGUF <c>tokenizer.ggml.pre</c> value, and whether whole words found in the
    /// vocabulary skip the merges (llama.cpp's <c>ignore_merges</c>, Hugging Face's <c>ignore_merges</c>), as
    /// llama.cpp maps them; null for any other name. llama.cpp's <c>default</c> (also used when the key is missing)
    /// is a chain of four expressions, not GPT-2's, and is not offered.</summary>
    public static (string Pattern, bool IgnoreMerges)? ForGgufPre(string? pre) => pre switch
    {
        "llama-bpe" or "llama3" or "llama-v3" or "falcon3" => (Llama3, true),
        "smaug-bpe" or "dbrx" => (Llama3, false),
        "gpt-2" or "gpt2" or "phi-2" or "roberta-bpe" => (Gpt2, false),
        _ => null,
    };

    /// <summary>Compiles <paramref name="pattern"/> as the pre-tokenizers use it.</summary>
    internal static Regex Compile(string pattern) => new(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
}
