using System.Globalization;
using System.Text;

namespace Rotor.Lm.Tokenizers;

/// <summary>A SentencePiece-style BPE vocabulary with scores (Llama 2): llama2.c's <c>tok*.bin</c> and GGUF's
/// <c>tokenizer.ggml.model</c> = <c>llama</c>; SentencePiece BPE <c>tokenizer.model</c> files (Llama 2). Encoding
/// follows llama2.c's <c>encode</c>: a dummy-prefix space before the text (and, as llama.cpp does, after each
/// special token), one token per Unicode character (its UTF-8 bytes as <c>&lt;0xNN&gt;</c> tokens when the
/// character is not in the vocabulary), then repeatedly the adjacent pair whose concatenation is the
/// highest-scoring token is merged, leftmost on ties. Decoding drops the leading space of a token that follows BOS,
/// another control token or nothing, and turns byte tokens into their byte.</summary>
/// <remarks>Pieces are held with plain spaces: GGUF's <c>▁</c> (U+2581) is turned into a space on load, as llama2.c's
/// exporter does. Merges run over a priority queue, so n characters cost O(n log n), not llama2.c's O(n²).</remarks>
public sealed class SentencePieceBpeTokenizer : LmTokenizer
{
    private readonly string[] _pieces;              // (vocab) piece text, spaces plain
    private readonly float[] _scores;               // (vocab)
    private readonly TokenKind[] _kinds;            // (vocab)
    private readonly byte[][] _bytes;               // (vocab) what each id decodes to (leading space kept)
    private readonly Dictionary<string, int> _lookup;
    private readonly int[] _byteIds;                // (256) id of <0xNN>, or the unknown id (-1 if none)
    private readonly bool _addSpacePrefix;
    private readonly bool _prefixAfterSpecial;
    private readonly SpecialTokenMatcher _matcher;
    private readonly HashSet<int> _stop;
    private readonly int? _unkId;

    /// <summary>Builds the tokenizer from pieces (plain spaces), scores and kinds. <paramref name="addSpacePrefix"/>:
    /// put a space before the text (SentencePiece's <c>add_dummy_prefix</c>), and with
    /// <paramref name="prefixAfterSpecial"/> also before each text run that follows a special or user-defined token
    /// (llama.cpp's rule; SentencePiece itself prefixes only the start). <paramref name="source"/> names the file in
    /// error messages.</summary>
    public SentencePieceBpeTokenizer(IReadOnlyList<string> pieces, IReadOnlyList<float> scores, IReadOnlyList<TokenKind> kinds,
        int? bosId, int? eosId, int? unknownId, IEnumerable<int> stopIds, bool addSpacePrefix, string source, bool prefixAfterSpecial = true)
    {
        ArgumentNullException.ThrowIfNull(pieces);
        ArgumentNullException.ThrowIfNull(scores);
        ArgumentNullException.ThrowIfNull(kinds);
        int n = pieces.Count;
        if (scores.Count != n || kinds.Count != n)
            throw new RotorException($"{source}: {n} tokens but {scores.Count} scores and {kinds.Count} token types");
        _pieces = new string[n];
        _scores = new float[n];
        _kinds = new TokenKind[n];
        _bytes = new byte[n][];
        _lookup = new Dictionary<string, int>(n, StringComparer.Ordinal);
        _byteIds = new int[256];
        Array.Fill(_byteIds, -1);
        var added = new List<(string, int, bool)>();
        for (int id = 0; id < n; id++)
        {
            string p = pieces[id] ?? throw new RotorException($"{source}: token {id} is null");
            _pieces[id] = p;
            _scores[id] = scores[id];
            var kind = kinds[id];
            if (kind != TokenKind.Byte && ByteTokenValue(p) is int bv && n > 256 && id >= 3 && id < 3 + 256 && bv == id - 3)
                kind = TokenKind.Byte;     // llama2.c files carry no types: <0xNN> at 3 + NN is SentencePiece's byte token
            _kinds[id] = kind;
            if (kind == TokenKind.Byte)
            {
                int b = ByteTokenValue(p) ?? throw new RotorException($"{source}: byte token {id} ({p}) is not <0xNN>");
                _bytes[id] = [(byte)b];
                if (_byteIds[b] < 0) _byteIds[b] = id;
            }
            else _bytes[id] = Encoding.UTF8.GetBytes(p);
            if (kind is TokenKind.Control or TokenKind.UserDefined) added.Add((p, id, kind == TokenKind.Control));
            if (kind is not (TokenKind.Control or TokenKind.Unknown)) _lookup.TryAdd(p, id);
        }
        foreach (var id in new[] { bosId, eosId, unknownId }.Concat(stopIds.Select(s => (int?)s)))
            if (id is int v && (v < 0 || v >= n))
                throw new RotorException($"{source}: special token id {v} is outside the vocabulary of {n}");
        _unkId = unknownId;
        for (int b = 0; b < 256; b++) if (_byteIds[b] < 0 && unknownId is int u) _byteIds[b] = u;
        _addSpacePrefix = addSpacePrefix;
        _prefixAfterSpecial = prefixAfterSpecial;
        _matcher = new SpecialTokenMatcher(added);
        BosId = bosId;
        EosId = eosId;
        _stop = [.. stopIds];
        if (eosId is int e) _stop.Add(e);
        VocabSize = n;
    }

    private static int? ByteTokenValue(string p)
        => p.Length == 6 && p.StartsWith("<0x", StringComparison.Ordinal) && p[5] == '>'
           && int.TryParse(p.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int v) ? v : null;

    /// <summary>Loads a llama2.c tokenizer (<c>tok*.bin</c>): int32 max_token_length, then per token a float32
    /// score, an int32 byte length and the bytes. Ids 0, 1, 2 are <c>&lt;unk&gt;</c>, BOS and EOS, as llama2.c assumes.
    /// <paramref name="expectedVocabSize"/>, when given (the model's vocab_size), must equal the file's token count.</summary>
    public static SentencePieceBpeTokenizer LoadLlama2c(string path, int? expectedVocabSize = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        byte[] data;
        try { data = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RotorException($"{path}: cannot read the tokenizer: {e.Message}", e);
        }
        if (data.Length < 4) throw new RotorException($"{path}: {data.Length} bytes, too short for a llama2.c tokenizer");
        int maxLen = BitConverter.ToInt32(data, 0);
        if (maxLen <= 0 || maxLen > 1 << 16)
            throw new RotorException($"{path}: max_token_length {maxLen} is not plausible: not a llama2.c tokenizer");
        var pieces = new List<string>();
        var scores = new List<float>();
        var strict = new UTF8Encoding(false, true);
        for (int o = 4; o < data.Length;)
        {
            int id = pieces.Count;
            if (o + 8 > data.Length) throw new RotorException($"{path}: truncated in the header of token {id} at byte {o}");
            float score = BitConverter.ToSingle(data, o);
            int len = BitConverter.ToInt32(data, o + 4);
            o += 8;
            if (len < 0 || len > maxLen || o + len > data.Length)
                throw new RotorException($"{path}: token {id} at byte {o - 4} has length {len} (max_token_length {maxLen}, {data.Length - o} bytes left): not a llama2.c tokenizer or truncated");
            if (!float.IsFinite(score)) throw new RotorException($"{path}: token {id} has score {score}");
            string piece;
            try { piece = strict.GetString(data, o, len); }
            catch (DecoderFallbackException) { throw new RotorException($"{path}: token {id} is not valid UTF-8"); }
            pieces.Add(piece);
            scores.Add(score);
            o += len;
        }
        if (pieces.Count < 3) throw new RotorException($"{path}: {pieces.Count} tokens, fewer than <unk>, BOS and EOS");
        if (expectedVocabSize is int v && v != pieces.Count)
            throw new RotorException($"{path}: {pieces.Count} tokens, but the model's vocab_size is {v}");
        // llama2.c's exporter writes BOS and EOS as "\n<s>\n" and "\n</s>\n"; their names are <s> and </s>.
        var kinds = new TokenKind[pieces.Count];
        Array.Fill(kinds, TokenKind.Normal);
        kinds[0] = TokenKind.Unknown;
        kinds[1] = kinds[2] = TokenKind.Control;
        for (int i = 0; i < 3; i++) pieces[i] = pieces[i].Trim('\n');
        return new SentencePieceBpeTokenizer(pieces, scores, kinds, 1, 2, 0, [], addSpacePrefix: true, path);
    }

    /// <summary>Token <paramref name="id"/>'s piece (plain spaces).</summary>
    internal string Piece(int id) => _pieces[id];

    /// <summary>Token <paramref name="id"/>'s merge score.</summary>
    internal float Score(int id) => _scores[id];

    /// <summary>How token <paramref name="id"/> is used (byte tokens of llama2.c files recognized).</summary>
    internal TokenKind Kind(int id) => _kinds[id];

    /// <summary>The unknown token's id, if any.</summary>
    internal int? UnknownId => _unkId;

    /// <summary>Whether a space is put before the text (SentencePiece's dummy prefix).</summary>
    internal bool AddSpacePrefix => _addSpacePrefix;

    /// <summary>Whether the dummy prefix also goes before text that follows a special token.</summary>
    internal bool PrefixAfterSpecial => _prefixAfterSpecial;

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
    public override bool IsSpecial(int id) => (uint)id < (uint)_kinds.Length && _kinds[id] is TokenKind.Control or TokenKind.Unknown;

    /// <inheritdoc/>
    public override byte[] TokenBytes(int id, int? previousId)
    {
        if ((uint)id >= (uint)_bytes.Length)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is not in the vocabulary of {VocabSize}");
        var b = _bytes[id];
        bool atStart = previousId is not int p || ((uint)p < (uint)_kinds.Length && _kinds[p] == TokenKind.Control);
        if (atStart && _addSpacePrefix && _kinds[id] != TokenKind.Byte && b.Length > 0 && b[0] == (byte)' ') return b[1..];
        return b;
    }

    private protected override void EncodeText(ReadOnlySpan<char> text, bool atTextStart, List<int> ids)
    {
        // Symbols: one per character of " " + text (llama2.c's dummy prefix is the token " ", which merges like text).
        var sym = new List<int>(text.Length + 1);
        if (_addSpacePrefix && (atTextStart || _prefixAfterSpecial)) AddChar(" ", sym);
        Span<byte> utf8 = stackalloc byte[4];
        foreach (var rune in text.EnumerateRunes())
        {
            int len = rune.EncodeToUtf8(utf8);
            if (_lookup.TryGetValue(rune.ToString(), out int id)) sym.Add(id);
            else for (int i = 0; i < len; i++) sym.Add(_byteIds[utf8[i]] >= 0 ? _byteIds[utf8[i]]
                     : throw new RotorException($"character U+{rune.Value:X4} is not in the vocabulary, which has neither byte tokens nor an unknown token"));
        }
        Merge(sym, ids);
    }

    private void AddChar(string c, List<int> sym)
    {
        if (_lookup.TryGetValue(c, out int id)) sym.Add(id);
        else foreach (byte b in Encoding.UTF8.GetBytes(c)) if (_byteIds[b] >= 0) sym.Add(_byteIds[b]);
    }

    /// <summary>llama2.c's merge loop (best score first, leftmost on ties; only scores above -1e10 count) over a
    /// linked list and a priority queue ordered by (-score, position); a popped pair is used only if both symbols
    /// are still the ones it was made from.</summary>
    private void Merge(List<int> start, List<int> ids)
    {
        int n = start.Count;
        if (n == 0) return;
        var sym = start.ToArray();
        var next = new int[n];
        var prev = new int[n];
        for (int i = 0; i < n; i++) { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; }
        var queue = new PriorityQueue<(int Left, int LeftSym, int RightSym, int Merged), (float NegScore, int Pos)>(
            Comparer<(float NegScore, int Pos)>.Create((a, b) => a.NegScore != b.NegScore ? a.NegScore.CompareTo(b.NegScore) : a.Pos.CompareTo(b.Pos)));
        void Consider(int left)
        {
            int right = next[left];
            if (right < 0) return;
            if (_lookup.TryGetValue(_pieces[sym[left]] + _pieces[sym[right]], out int m) && _scores[m] > -1e10f)
                queue.Enqueue((left, sym[left], sym[right], m), (-_scores[m], left));
        }
        for (int i = 0; i + 1 < n; i++) Consider(i);
        while (queue.TryDequeue(out var c, out _))
        {
            int right = next[c.Left];
            if (sym[c.Left] != c.LeftSym || right < 0 || sym[right] != c.RightSym) continue;
            sym[c.Left] = c.Merged;
            sym[right] = -1;
            next[c.Left] = next[right];
            if (next[right] >= 0) prev[next[right]] = c.Left;
            if (prev[c.Left] >= 0) Consider(prev[c.Left]);
            Consider(c.Left);
        }
        for (int i = 0; i >= 0; i = next[i]) ids.Add(sym[i]);
    }
}
