namespace Rotor.Lm.Tokenizers;

/// <summary>
/// A language model's tokenizer: text to token ids and back, with the special tokens generation needs.
/// Implementations: Llama 3 / tiktoken BPE, GPT-2 style BPE from tokenizer.json or GGUF merges, SentencePiece-style
/// vocabularies (llama2.c <c>tok*.bin</c>, GGUF <c>llama</c>, SentencePiece BPE <c>tokenizer.model</c>). <see cref="TokenizerLoader"/>
/// picks the implementation from the model's files. Implementations live in this assembly (the members they override
/// are <c>private protected</c>).
/// </summary>
public abstract class LmTokenizer
{
    /// <summary>Number of token ids, special tokens included.</summary>
    public abstract int VocabSize { get; }

    /// <summary>The beginning-of-sequence id, or null when the vocabulary has none.</summary>
    public abstract int? BosId { get; }

    /// <summary>The end-of-sequence id, or null when the vocabulary has none.</summary>
    public abstract int? EosId { get; }

    /// <summary>Ids that end a generation: end of text, end of turn (<c>&lt;|eot_id|&gt;</c>) and the like.</summary>
    public abstract IReadOnlySet<int> StopIds { get; }

    /// <summary>The text of every special (control) token and of every user-defined token, with its id: what
    /// <see cref="Encode"/> recognizes in text (control tokens only with <c>parseSpecial</c>) and chat templates
    /// look up (<c>&lt;|eot_id|&gt;</c>, <c>&lt;|start_header_id|&gt;</c>).</summary>
    public IReadOnlyDictionary<string, int> SpecialTokens => Matcher.Tokens;

    /// <summary>Matches special and user-defined token text; set by the implementation's constructor.</summary>
    private protected abstract SpecialTokenMatcher Matcher { get; }

    /// <summary>Encodes <paramref name="text"/>. <paramref name="addBos"/> puts <see cref="BosId"/> first (when the
    /// vocabulary has one); <paramref name="parseSpecial"/> turns the text of special tokens (<c>&lt;|eot_id|&gt;</c>)
    /// into their ids instead of encoding them as plain text. User-defined tokens are always recognized, as Hugging
    /// Face's tokenizers and llama.cpp do.</summary>
    public virtual IReadOnlyList<int> Encode(string text, bool addBos = true, bool parseSpecial = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 2);
        if (addBos && BosId is int bos) ids.Add(bos);
        // Text runs lie between special tokens, so each starts the text or follows a special token.
        for (int pos = 0; pos < text.Length;)
        {
            var (start, length, id) = Matcher.Next(text, pos, parseSpecial);
            if (start > pos) EncodeText(text.AsSpan(pos, start - pos), atTextStart: pos == 0, ids);
            if (length == 0) break;
            ids.Add(id);
            pos = start + length;
        }
        return ids;
    }

    /// <summary>Appends the ids of <paramref name="text"/>: a non-empty run that holds no special token and starts
    /// the text (<paramref name="atTextStart"/>) or follows a special token; SentencePiece vocabularies put their
    /// dummy-prefix space there.</summary>
    private protected abstract void EncodeText(ReadOnlySpan<char> text, bool atTextStart, List<int> ids);

    /// <summary>The bytes token <paramref name="id"/> stands for when it follows <paramref name="previousId"/> (or starts
    /// the text when null). Special tokens give their text. A token may hold part of a UTF-8 character: assemble
    /// bytes with <see cref="TokenTextStream"/>.</summary>
    public abstract byte[] TokenBytes(int id, int? previousId);

    /// <summary>The model's chat template (Jinja text from GGUF <c>tokenizer.chat_template</c> or
    /// <c>tokenizer_config.json</c>) when its files carry one; <see cref="ChatTemplate"/> recognizes its format.</summary>
    public string? ChatTemplateText { get; internal set; }

    /// <summary>Whether <paramref name="id"/> is a special (control) token.</summary>
    public abstract bool IsSpecial(int id);

    /// <summary>Decodes a whole sequence to text (invalid UTF-8 becomes U+FFFD).</summary>
    public virtual string Decode(IReadOnlyList<int> ids)
    {
        var stream = new TokenTextStream(this);
        var sb = new System.Text.StringBuilder();
        foreach (int id in ids) sb.Append(stream.Append(id));
        sb.Append(stream.Flush());
        return sb.ToString();
    }
}

/// <summary>Turns a stream of token ids into text, holding back the bytes of an incomplete UTF-8 character until the
/// token that completes it arrives.</summary>
public sealed class TokenTextStream
{
    private readonly LmTokenizer _tokenizer;
    private readonly System.Text.Decoder _decoder = new System.Text.UTF8Encoding(false, false).GetDecoder();
    private int? _previous;

    /// <summary>A stream over <paramref name="tokenizer"/>'s tokens.</summary>
    public TokenTextStream(LmTokenizer tokenizer) => _tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));

    /// <summary>Sets the token that precedes the next one (a prompt's last token), without producing text.</summary>
    public void Prime(int? previousId) => _previous = previousId;

    /// <summary>The text that token <paramref name="id"/> completes (may be empty).</summary>
    public string Append(int id)
    {
        byte[] bytes = _tokenizer.TokenBytes(id, _previous);
        _previous = id;
        var chars = new char[_decoder.GetCharCount(bytes, 0, bytes.Length, flush: false)];
        int n = _decoder.GetChars(bytes, 0, bytes.Length, chars, 0, flush: false);
        return new string(chars, 0, n);
    }

    /// <summary>Whatever is held back, with an incomplete character as U+FFFD.</summary>
    public string Flush()
    {
        var chars = new char[8];
        int n = _decoder.GetChars([], 0, 0, chars, 0, flush: true);
        return new string(chars, 0, n);
    }
}
