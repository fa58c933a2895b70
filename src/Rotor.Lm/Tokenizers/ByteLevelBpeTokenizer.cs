using System.Text;
using System.Text.RegularExpressions;

namespace Rotor.Lm.Tokenizers;

/// <summary>How a token of a vocabulary is used (GGUF's <c>tokenizer.ggml.token_type</c> numbering).</summary>
public enum TokenKind
{
    /// <summary>Undefined (GGUF 0); treated as normal.</summary>
    Undefined = 0,
    /// <summary>A normal token.</summary>
    Normal = 1,
    /// <summary>The unknown token.</summary>
    Unknown = 2,
    /// <summary>A control (special) token: BOS, EOS, <c>&lt;|eot_id|&gt;</c>.</summary>
    Control = 3,
    /// <summary>A user-defined token: always matched as a whole in text.</summary>
    UserDefined = 4,
    /// <summary>An unused token.</summary>
    Unused = 5,
    /// <summary>A byte token <c>&lt;0xNN&gt;</c> (SentencePiece byte fallback).</summary>
    Byte = 6,
}

/// <summary>GPT-2-style byte-level BPE: text split by a pre-tokenizer pattern, each word's UTF-8 bytes mapped to
/// the printable characters GPT-2 uses for them (space = <c>Ġ</c>), merged pair by pair, lowest merge rank first and
/// leftmost on ties (Hugging Face's BPE; with merges derived from tiktoken ranks, tiktoken's). Loaded from a Hugging
/// Face <c>tokenizer.json</c> or GGUF metadata (<c>tokenizer.ggml.model</c> = <c>gpt2</c>).</summary>
/// <remarks>Merges run over a priority queue of adjacent pairs, so a word of n bytes costs O(n log n).</remarks>
public sealed class ByteLevelBpeTokenizer : LmTokenizer
{
    private readonly byte[][] _bytes;                               // (vocab) what each id decodes to
    private readonly TokenKind[] _kinds;                            // (vocab)
    private readonly Dictionary<string, int> _vocab;                // byte-level text of each non-added token -> id
    private readonly Dictionary<long, (int Rank, int Merged)> _merges; // (left id << 32 | right id) -> rank, result
    private readonly int[] _byteIds;                                // (256) id of each single byte
    private readonly Regex _pre;
    private readonly bool _ignoreMerges;
    private readonly SpecialTokenMatcher _matcher;
    private readonly HashSet<int> _stop;
    private readonly Dictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private readonly Lock _cacheLock = new();

    /// <summary>GPT-2's map from a byte to the character that stands for it in byte-level vocabularies.</summary>
    internal static readonly char[] ByteToChar = MakeByteToChar();

    /// <summary>The inverse of <see cref="ByteToChar"/> (-1 for characters that stand for no byte).</summary>
    private static readonly short[] CharToByte = MakeCharToByte();

    private static char[] MakeByteToChar()
    {
        var map = new char[256];
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)(256 + n++);
        }
        return map;
    }

    private static short[] MakeCharToByte()
    {
        var inv = new short[512];
        Array.Fill(inv, (short)-1);
        for (int b = 0; b < 256; b++) inv[ByteToChar[b]] = (short)b;
        return inv;
    }

    /// <summary>Builds the tokenizer. <paramref name="tokens"/>: every token's text by id, byte-level form for
    /// normal tokens and plain text for added (control, user-defined) tokens; <paramref name="merges"/>: pairs
    /// of token texts, highest priority first; <paramref name="pattern"/>: the pre-tokenizer regex;
    /// <paramref name="ignoreMerges"/>: a word that is itself a token is taken whole. <paramref name="source"/>
    /// names the file in error messages.</summary>
    public ByteLevelBpeTokenizer(IReadOnlyList<string> tokens, IReadOnlyList<TokenKind> kinds, IReadOnlyList<(string Left, string Right)> merges,
        string pattern, bool ignoreMerges, int? bosId, int? eosId, IEnumerable<int> stopIds, string source)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(kinds);
        ArgumentNullException.ThrowIfNull(merges);
        ArgumentNullException.ThrowIfNull(pattern);
        if (kinds.Count != tokens.Count)
            throw new RotorException($"{source}: {kinds.Count} token types for {tokens.Count} tokens");
        int n = tokens.Count;
        _bytes = new byte[n][];
        _kinds = new TokenKind[n];
        _vocab = new Dictionary<string, int>(n, StringComparer.Ordinal);
        var added = new List<(string, int, bool)>();
        for (int id = 0; id < n; id++)
        {
            string t = tokens[id] ?? throw new RotorException($"{source}: token {id} is null");
            var kind = kinds[id];
            _kinds[id] = kind;
            if (kind is TokenKind.Control or TokenKind.UserDefined)
            {
                _bytes[id] = Encoding.UTF8.GetBytes(t);
                added.Add((t, id, kind == TokenKind.Control));
                continue;
            }
            _bytes[id] = ToBytes(t) ?? throw new RotorException(
                $"{source}: token {id} ({t}) has a character that stands for no byte: not a byte-level BPE vocabulary");
            _vocab.TryAdd(t, id);
        }
        _byteIds = new int[256];
        for (int b = 0; b < 256; b++)
            _byteIds[b] = _vocab.TryGetValue(ByteToChar[b].ToString(), out int id) ? id
                : throw new RotorException($"{source}: the vocabulary has no token for byte 0x{b:X2} ({ByteToChar[b]})");
        _merges = new Dictionary<long, (int, int)>(merges.Count);
        for (int rank = 0; rank < merges.Count; rank++)
        {
            var (l, r) = merges[rank];
            if (!_vocab.TryGetValue(l, out int li) || !_vocab.TryGetValue(r, out int ri) || !_vocab.TryGetValue(l + r, out int m))
                throw new RotorException($"{source}: merge {rank} ({l} {r}) names a token that is not in the vocabulary");
            _merges.TryAdd(((long)li << 32) | (uint)ri, (rank, m));
        }
        _pre = PreTokenizerPatterns.Compile(pattern);
        Pattern = pattern;
        _ignoreMerges = ignoreMerges;
        _matcher = new SpecialTokenMatcher(added);
        foreach (var id in new[] { bosId, eosId }.Concat(stopIds.Select(s => (int?)s)))
            if (id is int v && (v < 0 || v >= n))
                throw new RotorException($"{source}: special token id {v} is outside the vocabulary of {n}");
        BosId = bosId;
        EosId = eosId;
        _stop = [.. stopIds];
        if (eosId is int e) _stop.Add(e);
        VocabSize = n;
    }

    /// <summary>The bytes a byte-level token text stands for, or null when a character maps to no byte.</summary>
    internal static byte[]? ToBytes(string t)
    {
        var bytes = new byte[t.Length];
        for (int i = 0; i < t.Length; i++)
        {
            char c = t[i];
            if (c >= CharToByte.Length || CharToByte[c] < 0) return null;
            bytes[i] = (byte)CharToByte[c];
        }
        return bytes;
    }

    /// <summary>The pre-tokenizer regex (for writing the vocabulary back, e.g. into GGUF).</summary>
    internal string Pattern { get; }

    /// <summary>Whether a word that is itself a token is taken whole.</summary>
    internal bool IgnoreMerges => _ignoreMerges;

    /// <summary>How token <paramref name="id"/> is used.</summary>
    internal TokenKind Kind(int id) => _kinds[id];

    /// <summary>Token <paramref name="id"/>'s text as given to the constructor: byte-level characters for normal
    /// tokens, plain text for control and user-defined ones.</summary>
    internal string TokenText(int id) => _kinds[id] is TokenKind.Control or TokenKind.UserDefined
        ? Encoding.UTF8.GetString(_bytes[id])
        : new string(Array.ConvertAll(_bytes[id], b => ByteToChar[b]));

    /// <summary>The merges in use as (left id, right id), highest priority first (a pair given twice counts once, at
    /// its first rank).</summary>
    internal IEnumerable<(int Left, int Right)> MergesByRank()
        => _merges.OrderBy(kv => kv.Value.Rank).Select(kv => ((int)(kv.Key >> 32), (int)(uint)kv.Key));

    /// <inheritdoc/>
    public override int VocabSize { get; }

    /// <inheritdoc/>
    public override int? BosId { get; }

    /// <inheritdoc/>
    public override int? EosId { get; }

    /// <inheritdoc/>
    public override IReadOnlySet<int> StopIds => _stop;

    private protected override SpecialTokenMatcher Matcher => _matcher;

    /// <inheritdoc/>
    public override byte[] TokenBytes(int id, int? previousId)
    {
        if ((uint)id >= (uint)_bytes.Length)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is not in the vocabulary of {VocabSize}");
        return _bytes[id];
    }

    /// <inheritdoc/>
    public override bool IsSpecial(int id) => (uint)id < (uint)_kinds.Length && _kinds[id] == TokenKind.Control;

    private protected override void EncodeText(ReadOnlySpan<char> text, bool atTextStart, List<int> ids)
    {
        Span<byte> small = stackalloc byte[256];
        // Text the pattern does not match stays a word of its own (Hugging Face's Split, "Isolated"); the patterns
        // here match every character, so in practice every word is a match.
        int end = 0;
        foreach (var m in _pre.EnumerateMatches(text))
        {
            if (m.Index > end) Word(text[end..m.Index], ids, small);
            Word(text.Slice(m.Index, m.Length), ids, small);
            end = m.Index + m.Length;
        }
        if (end < text.Length) Word(text[end..], ids, small);
    }

    private void Word(ReadOnlySpan<char> word, List<int> ids, Span<byte> small)
    {
        {
            int len = Encoding.UTF8.GetByteCount(word);
            byte[]? rented = len > small.Length ? new byte[len] : null;
            Span<byte> bytes = rented ?? small[..len];
            Encoding.UTF8.GetBytes(word, bytes);
            EncodeWord(bytes, ids);
        }
    }

    private void EncodeWord(ReadOnlySpan<byte> bytes, List<int> ids)
    {
        if (bytes.Length == 1) { ids.Add(_byteIds[bytes[0]]); return; }
        var key = string.Create(bytes.Length, bytes.ToArray(), static (span, b) => { for (int i = 0; i < b.Length; i++) span[i] = ByteToChar[b[i]]; });
        if (_ignoreMerges && _vocab.TryGetValue(key, out int whole)) { ids.Add(whole); return; }
        if (bytes.Length <= 64)
            lock (_cacheLock)
                if (_cache.TryGetValue(key, out var hit)) { ids.AddRange(hit); return; }
        var result = Merge(bytes);
        ids.AddRange(result);
        if (bytes.Length <= 64)
            lock (_cacheLock)
            {
                if (_cache.Count >= 1 << 16) _cache.Clear();
                _cache[key] = result;
            }
    }

    /// <summary>Applies the merges to one word: symbols in a linked list, candidate pairs in a priority queue ordered
    /// by (rank, position); a popped pair is used only if both symbols are still the ones it was made from.</summary>
    private int[] Merge(ReadOnlySpan<byte> bytes)
    {
        int n = bytes.Length;
        var sym = new int[n];
        var prev = new int[n];
        var next = new int[n];
        for (int i = 0; i < n; i++) { sym[i] = _byteIds[bytes[i]]; prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; }
        var queue = new PriorityQueue<(int Left, int LeftSym, int RightSym, int Merged), (int Rank, int Pos)>();
        void Consider(int left)
        {
            int right = next[left];
            if (right < 0) return;
            if (_merges.TryGetValue(((long)sym[left] << 32) | (uint)sym[right], out var mg))
                queue.Enqueue((left, sym[left], sym[right], mg.Merged), (mg.Rank, left));
        }
        for (int i = 0; i + 1 < n; i++) Consider(i);
        while (queue.TryDequeue(out var c, out _))
        {
            int right = next[c.Left];
            if (sym[c.Left] != c.LeftSym || sym[c.Left] < 0 || right < 0 || sym[right] != c.RightSym) continue;
            sym[c.Left] = c.Merged;
            sym[right] = -1;                     // removed
            next[c.Left] = next[right];
            if (next[right] >= 0) prev[next[right]] = c.Left;
            if (prev[c.Left] >= 0) Consider(prev[c.Left]);
            Consider(c.Left);
        }
        var result = new List<int>(n);
        for (int i = 0; i >= 0; i = next[i]) result.Add(sym[i]);
        return [.. result];
    }
}
