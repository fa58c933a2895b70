using System.Globalization;

namespace Rotor.Lm.Tokenizers;

/// <summary>The chat formats Rotor renders (no Jinja engine: a model's <c>chat_template</c> is recognized by its
/// markers and rendered by code).</summary>
public enum ChatFormat
{
    /// <summary>No chat format: BOS, then the messages' contents joined by newlines (llama2.c models).</summary>
    Plain,
    /// <summary>BitNet b1.58 2B4T: <c>&lt;|begin_of_text|&gt;System: ...&lt;|eot_id|&gt;User: ...&lt;|eot_id|&gt;Assistant: </c>
    /// (the role capitalized, ": ", the content trimmed, <c>&lt;|eot_id|&gt;</c>).</summary>
    BitNet,
    /// <summary>Llama 3: <c>&lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;\n\n</c>content<c>&lt;|eot_id|&gt;</c>.</summary>
    Llama3,
}

/// <summary>Renders a conversation to token ids in a model's chat format. Special tokens go in as ids and message
/// text is encoded with special-token parsing off, so text that looks like <c>&lt;|eot_id|&gt;</c> in a message stays
/// text. The ids equal those of the rendered template string tokenized with special tokens parsed (Hugging Face's
/// <c>apply_chat_template</c>, llama.cpp), because special tokens split the text there too.</summary>
public sealed class ChatTemplate
{
    private readonly LmTokenizer _tokenizer;

    private ChatTemplate(LmTokenizer tokenizer, ChatFormat format)
    {
        _tokenizer = tokenizer;
        Format = format;
    }

    /// <summary>The format this template renders.</summary>
    public ChatFormat Format { get; }

    /// <summary>The template for <paramref name="tokenizer"/>: <paramref name="format"/> when given, else the format
    /// recognized in <paramref name="templateText"/> or the tokenizer's <see cref="LmTokenizer.ChatTemplateText"/>
    /// (see <see cref="Detect"/>). Throws <see cref="RotorException"/> when the format needs special tokens the
    /// vocabulary lacks.</summary>
    public static ChatTemplate For(LmTokenizer tokenizer, ChatFormat? format = null, string? templateText = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        var f = format ?? Detect(templateText ?? tokenizer.ChatTemplateText, tokenizer);
        string[] needs = f switch
        {
            ChatFormat.BitNet => ["<|eot_id|>"],
            ChatFormat.Llama3 => ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
            _ => [],
        };
        foreach (var n in needs)
            if (!tokenizer.SpecialTokens.ContainsKey(n))
                throw new RotorException($"chat format {f} needs the special token {n}, which the vocabulary lacks");
        return new ChatTemplate(tokenizer, f);
    }

    /// <summary>The format of a Jinja chat template, by its markers: <c>&lt;|start_header_id|&gt;</c> means Llama 3;
    /// <c>&lt;|eot_id|&gt;</c> with <c>Assistant: </c> or a capitalized role means BitNet. Without a template, a
    /// vocabulary with <c>&lt;|eot_id|&gt;</c> gets BitNet (the 2B4T GGUF and tokenizer files carry its vocabulary) and
    /// any other gets <see cref="ChatFormat.Plain"/>; so does a template with none of the markers.</summary>
    public static ChatFormat Detect(string? templateText, LmTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (string.IsNullOrWhiteSpace(templateText))
            return tokenizer.SpecialTokens.ContainsKey("<|eot_id|>") ? ChatFormat.BitNet : ChatFormat.Plain;
        if (templateText.Contains("<|start_header_id|>", StringComparison.Ordinal)) return ChatFormat.Llama3;
        if (templateText.Contains("<|eot_id|>", StringComparison.Ordinal)
            && (templateText.Contains("Assistant: ", StringComparison.Ordinal) || templateText.Contains("capitalize", StringComparison.Ordinal)))
            return ChatFormat.BitNet;
        return ChatFormat.Plain;
    }

    /// <summary>Token ids of <paramref name="messages"/> (role: system, user, assistant or any other name), BOS first
    /// when the vocabulary has one; with <paramref name="addGenerationPrompt"/> the assistant's header follows, so
    /// that the model writes the answer.</summary>
    public IReadOnlyList<int> Render(IEnumerable<(string Role, string Content)> messages, bool addGenerationPrompt = true)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var ids = new List<int>();
        if (_tokenizer.BosId is int bos) ids.Add(bos);
        void Text(string s) { if (s.Length > 0) ids.AddRange(_tokenizer.Encode(s, addBos: false, parseSpecial: false)); }
        int Special(string s) => _tokenizer.SpecialTokens[s];
        switch (Format)
        {
            case ChatFormat.BitNet:
                foreach (var (role, content) in messages)
                {
                    Text(Capitalize(role) + ": " + content.Trim());
                    ids.Add(Special("<|eot_id|>"));
                }
                if (addGenerationPrompt) Text("Assistant: ");
                break;
            case ChatFormat.Llama3:
                void Header(string role)
                {
                    ids.Add(Special("<|start_header_id|>"));
                    Text(role);
                    ids.Add(Special("<|end_header_id|>"));
                }
                foreach (var (role, content) in messages)
                {
                    Header(role);
                    Text("\n\n" + content.Trim());
                    ids.Add(Special("<|eot_id|>"));
                }
                if (addGenerationPrompt)
                {
                    Header("assistant");
                    Text("\n\n");
                }
                break;
            default:
                Text(string.Join("\n", messages.Select(m => m.Content)));
                break;
        }
        return ids;
    }

    /// <summary>Jinja's <c>capitalize</c>: the first character upper case, the rest lower case.</summary>
    private static string Capitalize(string s)
        => s.Length == 0 ? s : char.ToUpper(s[0], CultureInfo.InvariantCulture) + s[1..].ToLower(CultureInfo.InvariantCulture);
}
