using System.Text;
using Microsoft.ML.Tokenizers;

namespace Rotor.Lm.Tokenizers;

/// <summary>A tiktoken BPE vocabulary (Llama 3, BitNet b1.58 2B4T) run by Microsoft.ML.Tokenizers'
/// <see cref="TiktokenTokenizer"/>: a <c>tokenizer.model</c> of lines <c>base64(token bytes) rank</c>, the special
/// tokens numbered after the ranks, and the Llama 3 pre-tokenizer pattern.</summary>
public sealed class TiktokenLmTokenizer : LmTokenizer
{
    /// <summary>Llama 3's number of special tokens, numbered from the vocabulary's size.</summary>
    public const int Llama3SpecialCount = 256;

    private readonly TiktokenTokenizer _tokenizer;
    private readonly byte[][] _tokens;        // (ranks) the bytes of each mergeable token, by id
    private readonly string?[] _special;      // (special count) text of special id ranks + i
    private readonly SpecialTokenMatcher _matcher;
    private readonly HashSet<int> _stop;

    private TiktokenLmTokenizer(TiktokenTokenizer tokenizer, byte[][] tokens, IReadOnlyDictionary<string, int> specials, string pattern)
    {
        _tokenizer = tokenizer;
        Pattern = pattern;
        _tokens = tokens;
        int top = specials.Count == 0 ? tokens.Length : Math.Max(tokens.Length, specials.Values.Max() + 1);
        _special = new string?[top - tokens.Length];
        foreach (var (text, id) in specials) _special[id - tokens.Length] = text;
        _matcher = new SpecialTokenMatcher(specials.Select(kv => (kv.Key, kv.Value, true)));
        BosId = Find(specials, "<|begin_of_text|>");
        EosId = Find(specials, "<|end_of_text|>");
        _stop = [.. new[] { EosId, Find(specials, "<|eot_id|>"), Find(specials, "<|eom_id|>") }.OfType<int>()];
        VocabSize = top;
    }

    private static int? Find(IReadOnlyDictionary<string, int> specials, string text) => specials.TryGetValue(text, out int id) ? id : null;

    /// <summary>Llama 3's special tokens for a vocabulary of <paramref name="rankCount"/> ranks: <c>&lt;|begin_of_text|&gt;</c>
    /// = rankCount, <c>&lt;|end_of_text|&gt;</c>, reserved 0-3, <c>&lt;|start_header_id|&gt;</c>,
    /// <c>&lt;|end_header_id|&gt;</c>, reserved 4, <c>&lt;|eot_id|&gt;</c> = rankCount + 9, then reserved 5-250.</summary>
    public static IReadOnlyDictionary<string, int> Llama3SpecialTokens(int rankCount)
    {
        string[] first =
        [
            "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
            "<|reserved_special_token_2|>", "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|reserved_special_token_4|>", "<|eot_id|>",
        ];
        var names = first.Concat(Enumerable.Range(5, Llama3SpecialCount - 5 - 5).Select(i => $"<|reserved_special_token_{i}|>"));
        return names.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => rankCount + p.i, StringComparer.Ordinal);
    }

    /// <summary>Loads a tiktoken <c>tokenizer.model</c>. <paramref name="specialTokens"/> defaults to Llama 3's (see
    /// <see cref="Llama3SpecialTokens"/>), <paramref name="pattern"/> to <see cref="PreTokenizerPatterns.Llama3"/>.
    /// Throws <see cref="RotorException"/> naming the file and line when it is not a tiktoken vocabulary.</summary>
    public static TiktokenLmTokenizer Load(string path, IReadOnlyDictionary<string, int>? specialTokens = null, string? pattern = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        byte[] data;
        try { data = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RotorException($"{path}: cannot read the tokenizer: {e.Message}", e);
        }
        var tokens = ParseRanks(data, path);
        specialTokens ??= Llama3SpecialTokens(tokens.Length);
        foreach (var (text, id) in specialTokens)
            if (id < tokens.Length)
                throw new RotorException($"{path}: special token {text} has id {id}, inside the {tokens.Length} ranks");
        pattern ??= PreTokenizerPatterns.Llama3;
        TiktokenTokenizer tokenizer;
        try
        {
            var pre = new RegexPreTokenizer(PreTokenizerPatterns.Compile(pattern), null);
            using var stream = new MemoryStream(data, writable: false);
            tokenizer = TiktokenTokenizer.Create(stream, pre, normalizer: null, specialTokens: null);
        }
        catch (Exception e) when (e is not RotorException)
        {
            throw new RotorException($"{path}: not a tiktoken vocabulary: {e.Message}", e);
        }
        return new TiktokenLmTokenizer(tokenizer, tokens, specialTokens, pattern);
    }

    /// <summary>Parses <c>base64 rank</c> lines; ranks must be 0..n-1 in order, as in every tiktoken file.</summary>
    internal static byte[][] ParseRanks(byte[] data, string path)
    {
        var tokens = new List<byte[]>(data.Length / 16);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        int line = 0;
        foreach (var raw in Encoding.ASCII.GetString(data).Split('\n'))
        {
            line++;
            var text = raw.TrimEnd('\r');
            if (text.Length == 0) continue;
            int space = text.IndexOf(' ');
            if (space <= 0 || !int.TryParse(text.AsSpan(space + 1), System.Globalization.NumberStyles.None,
                    System.Globalization.CultureInfo.InvariantCulture, out int rank))
                throw new RotorException($"{path}: line {line} is not \"base64 rank\" (not a tiktoken vocabulary)");
            if (rank != tokens.Count)
                throw new RotorException($"{path}: line {line} has rank {rank}, expected {tokens.Count} (ranks must run 0, 1, 2, ...)");
            byte[] bytes;
            try { bytes = Convert.FromBase64String(text[..space]); }
            catch (FormatException) { throw new RotorException($"{path}: line {line}: the token is not valid base64"); }
            if (bytes.Length == 0 || !seen.Add(text[..space]))
                throw new RotorException($"{path}: line {line}: token {(bytes.Length == 0 ? "is empty" : "appears twice")}");
            tokens.Add(bytes);
        }
        if (tokens.Count < 256) throw new RotorException($"{path}: {tokens.Count} ranks, fewer than the 256 single bytes");
        return [.. tokens];
    }

    /// <summary>The pre-tokenizer regex.</summary>
    internal string Pattern { get; }

    /// <summary>The text of special token <paramref name="id"/> (at or above <see cref="RankCount"/>), or null for an
    /// id no special token has.</summary>
    internal string? SpecialText(int id) => _special[id - _tokens.Length];

    /// <summary>The byte-level text (GPT-2's byte-to-character map) of every mergeable token, by rank.</summary>
    internal string[] ByteLevelTokens()
        => Array.ConvertAll(_tokens, b => new string(Array.ConvertAll(b, x => ByteLevelBpeTokenizer.ByteToChar[x])));

    /// <summary>BPE merges equivalent to tiktoken's ranks, as Hugging Face's converter derives them: for every token,
    /// each split into two tokens that both exist is a merge at the token's rank; ties are ordered by the left, then
    /// the right part's rank. <paramref name="tokens"/>: byte-level token text by rank.</summary>
    internal static (string Left, string Right)[] DeriveMerges(IReadOnlyList<string> tokens)
    {
        var rank = new Dictionary<string, int>(tokens.Count, StringComparer.Ordinal);
        for (int i = 0; i < tokens.Count; i++) rank[tokens[i]] = i;
        var merges = new List<(int Rank, int L, int R, string Left, string Right)>();
        for (int r = 0; r < tokens.Count; r++)
        {
            string t = tokens[r];
            for (int k = 1; k < t.Length; k++)
                if (rank.TryGetValue(t[..k], out int l) && rank.TryGetValue(t[k..], out int rr))
                    merges.Add((r, l, rr, t[..k], t[k..]));
        }
        return [.. merges.OrderBy(m => m.Rank).ThenBy(m => m.L).ThenBy(m => m.R).Select(m => (m.Left, m.Right))];
    }

    /// <summary>The number of mergeable (non-special) tokens.</summary>
    public int RankCount => _tokens.Length;

    /// <inheritdoc/>
    public override int VocabSize { get; }

    /// <inheritdoc/>
    public override int? BosId { get; }

    /// <inheritdoc/>
    public override int? EosId { get; }

    /// <inheritdoc/>
    public override IReadOnlySet<int> StopIds => _stop;

    private protected override SpecialTokenMatcher Matcher => _matcher;

    private protected override void EncodeText(ReadOnlySpan<char> text, bool atTextStart, List<int> ids)
        => ids.AddRange(_tokenizer.EncodeToIds(text, considerPreTokenization: true, considerNormalization: false));

    /// <inheritdoc/>
    public override byte[] TokenBytes(int id, int? previousId)
    {
        if (id >= 0 && id < _tokens.Length) return _tokens[id];
        if (id >= _tokens.Length && id < VocabSize && _special[id - _tokens.Length] is string s) return Encoding.UTF8.GetBytes(s);
        throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is not in the vocabulary of {VocabSize}");
    }

    /// <inheritdoc/>
    public override bool IsSpecial(int id) => id >= _tokens.Length && id < VocabSize;
}
