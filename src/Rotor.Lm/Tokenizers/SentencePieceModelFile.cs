using System.Text;

namespace Rotor.Lm.Tokenizers;

/// <summary>Reads a SentencePiece <c>tokenizer.model</c> (protobuf <c>ModelProto</c>) of the kind Llama 2 ships: a
/// BPE model with byte fallback, identity normalization and no whitespace folding. Only the fields the tokenizer
/// needs are read: pieces (text, score, type), <c>trainer_spec</c> (model type, unk/bos/eos ids) and
/// <c>normalizer_spec</c> (name, add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces).</summary>
internal static class SentencePieceModelFile
{
    public static SentencePieceBpeTokenizer Load(string path)
    {
        byte[] data;
        try { data = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RotorException($"{path}: cannot read the tokenizer: {e.Message}", e);
        }
        var pieces = new List<string>();
        var scores = new List<float>();
        var kinds = new List<TokenKind>();
        long modelType = 1, unk = 0, bos = 1, eos = 2;   // protobuf defaults: UNIGRAM, 0, 1, 2
        string normalizer = "";
        bool dummyPrefix = true, foldSpaces = true, escape = true;
        try
        {
            var r = new Reader(data, 0, data.Length);
            while (r.More)
            {
                var (field, wire) = r.Tag();
                if (field == 1 && wire == 2)
                {
                    var p = r.Sub();
                    string text = "";
                    float score = 0;
                    long type = 1;
                    while (p.More)
                    {
                        var (f, w) = p.Tag();
                        if (f == 1 && w == 2) text = p.Text();
                        else if (f == 2 && w == 5) score = p.Float();
                        else if (f == 3 && w == 0) type = p.Varint();
                        else p.Skip(w);
                    }
                    if (type is < 1 or > 6) throw new RotorException($"{path}: piece {pieces.Count} has type {type} (valid: 1-6)");
                    pieces.Add(text);
                    scores.Add(score);
                    kinds.Add((TokenKind)type);
                }
                else if (field == 2 && wire == 2)
                {
                    var t = r.Sub();
                    while (t.More)
                    {
                        var (f, w) = t.Tag();
                        if (w != 0) { t.Skip(w); continue; }
                        long v = t.Varint();
                        switch (f)
                        {
                            case 3: modelType = v; break;
                            case 40: unk = (int)v; break;
                            case 41: bos = (int)v; break;
                            case 42: eos = (int)v; break;
                        }
                    }
                }
                else if (field == 3 && wire == 2)
                {
                    var n = r.Sub();
                    while (n.More)
                    {
                        var (f, w) = n.Tag();
                        if (f == 1 && w == 2) normalizer = n.Text();
                        else if (f == 3 && w == 0) dummyPrefix = n.Varint() != 0;
                        else if (f == 4 && w == 0) foldSpaces = n.Varint() != 0;
                        else if (f == 5 && w == 0) escape = n.Varint() != 0;
                        else n.Skip(w);
                    }
                }
                else r.Skip(wire);
            }
        }
        catch (FormatException e) { throw new RotorException($"{path}: not a SentencePiece model: {e.Message}"); }
        if (pieces.Count == 0) throw new RotorException($"{path}: no pieces: not a SentencePiece model");
        if (modelType != 2)
            throw new RotorException($"{path}: SentencePiece model type {(modelType == 1 ? "unigram" : modelType.ToString(System.Globalization.CultureInfo.InvariantCulture))} is not supported (BPE, as Llama 2's, is)");
        if (normalizer is not ("identity" or ""))
            throw new RotorException($"{path}: SentencePiece normalization \"{normalizer}\" is not supported (identity, as Llama 2's, is)");
        if (foldSpaces) throw new RotorException($"{path}: SentencePiece remove_extra_whitespaces is on; not supported (Llama 2's is off)");
        if (!escape) throw new RotorException($"{path}: SentencePiece escape_whitespaces is off; not supported");
        int? Id(long v) => v >= 0 && v < pieces.Count ? (int)v : null;
        return new SentencePieceBpeTokenizer(pieces.Select(p => p.Replace('\u2581', ' ')).ToList(), scores, kinds,
            Id(bos), Id(eos), Id(unk), [], dummyPrefix, path, prefixAfterSpecial: false);
    }

    /// <summary>A protobuf reader over data[pos..end); malformed input throws FormatException.</summary>
    private struct Reader(byte[] data, int pos, int end)
    {
        private int _pos = pos;

        public readonly bool More => _pos < end;

        public long Varint()
        {
            ulong v = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_pos >= end) throw new FormatException($"varint runs past the end at byte {_pos}");
                byte b = data[_pos++];
                v |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80) return (long)v;
            }
            throw new FormatException($"varint too long at byte {_pos}");
        }

        public (int Field, int Wire) Tag()
        {
            long t = Varint();
            return ((int)(t >> 3), (int)(t & 7));
        }

        private int Length()
        {
            long n = Varint();
            if (n < 0 || n > end - _pos) throw new FormatException($"a field of {n} bytes runs past the end at byte {_pos}");
            return (int)n;
        }

        public Reader Sub()
        {
            int n = Length();
            var sub = new Reader(data, _pos, _pos + n);
            _pos += n;
            return sub;
        }

        public string Text()
        {
            int n = Length();
            string s = Encoding.UTF8.GetString(data, _pos, n);
            _pos += n;
            return s;
        }

        public float Float()
        {
            if (end - _pos < 4) throw new FormatException($"a float runs past the end at byte {_pos}");
            float f = BitConverter.ToSingle(data, _pos);
            _pos += 4;
            return f;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: Varint(); break;
                case 1: if (end - _pos < 8) throw new FormatException("truncated"); _pos += 8; break;
                case 2: { int n = Length(); _pos += n; break; }   // not _pos += Length(): that reads _pos before Length moves it
                case 5: if (end - _pos < 4) throw new FormatException("truncated"); _pos += 4; break;
                default: throw new FormatException($"wire type {wire} at byte {_pos}");
            }
        }
    }
}
