#!/usr/bin/env python3
"""Makes the GGUF fixtures of tests/Rotor.Lm.Tests/Data/gguf (see README.md there for the whole procedure).

  PYTHONPATH=$LLAMA/gguf-py python3 make_fixtures.py f32 OUT_DIR [HF_FOLDER]
      writes bitnet-tiny-f32.gguf (and the small fallback and types files) with llama.cpp's gguf-py writer
  PYTHONPATH=$LLAMA/gguf-py python3 make_fixtures.py rename OUT_DIR ARCH FILE.gguf...
      sets general.architecture to ARCH and renames the architecture's keys (tensors copied byte for byte)
  PYTHONPATH=$LLAMA/gguf-py python3 make_fixtures.py expect OUT_DIR FILE.gguf...
      writes FILE.expected.json for each file: metadata and, per tensor, what gguf-py's own dequantize gives
      (I2_S, which gguf-py does not know, is decoded by decode_i2s below from bitnet.cpp's quantize_i2_s layout)

Only gguf-py and numpy are used. Nothing here is copied from Rotor.
"""
import hashlib, json, struct, sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, VOCAB, CTX = 256, 2, 4, 2, 512, 512, 256
HEAD_DIM = HIDDEN // HEADS
ROPE_THETA, RMS_EPS = 500000.0, 1e-5


def weight_quant(w: np.ndarray) -> np.ndarray:
    """BitNet b1.58 absmean weight quant as llama.cpp's convert_hf_to_gguf.py BitnetModel.weight_quant does it, in
    float32: scale = max(mean|w|, 1e-5), iscale = 1 / scale, round(w * iscale) clamped to [-1, 1], / iscale."""
    w = w.astype(np.float32)
    scale = np.float32(max(np.float32(np.abs(w).mean(dtype=np.float32)), np.float32(1e-5)))
    iscale = np.float32(1) / scale
    return (np.clip(np.round(w * iscale), -1, 1) / iscale).astype(np.float32)


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        a, b = info['data_offsets']
        buf = raw[8 + n + a: 8 + n + b]
        if info['dtype'] == 'F32':
            arr = np.frombuffer(buf, dtype='<f4')
        elif info['dtype'] == 'BF16':
            arr = (np.frombuffer(buf, dtype='<u2').astype(np.uint32) << 16).view(np.float32)
        elif info['dtype'] == 'F16':
            arr = np.frombuffer(buf, dtype='<f2').astype(np.float32)
        else:
            raise SystemExit(f'{path}: tensor {name}: dtype {info["dtype"]} not handled')
        out[name] = arr.reshape(info['shape']).astype(np.float32)
    return out


def random_checkpoint(hidden, layers, ffn, vocab, kv_dim, seed) -> dict[str, np.ndarray]:
    """Hugging Face BitNetForCausalLM tensor names and shapes, random values."""
    rng = np.random.default_rng(seed)
    def w(*shape): return (rng.standard_normal(shape) * 0.05).astype(np.float32)
    def norm(n): return (1 + 0.1 * rng.standard_normal(n)).astype(np.float32)
    ck = {'model.embed_tokens.weight': w(vocab, hidden), 'model.norm.weight': norm(hidden)}
    for i in range(layers):
        p = f'model.layers.{i}.'
        ck |= {p + 'input_layernorm.weight': norm(hidden), p + 'post_attention_layernorm.weight': norm(hidden),
               p + 'self_attn.q_proj.weight': w(hidden, hidden), p + 'self_attn.k_proj.weight': w(kv_dim, hidden),
               p + 'self_attn.v_proj.weight': w(kv_dim, hidden), p + 'self_attn.o_proj.weight': w(hidden, hidden),
               p + 'self_attn.attn_sub_norm.weight': norm(hidden),
               p + 'mlp.gate_proj.weight': w(ffn, hidden), p + 'mlp.up_proj.weight': w(ffn, hidden),
               p + 'mlp.down_proj.weight': w(hidden, ffn), p + 'mlp.ffn_sub_norm.weight': norm(ffn)}
    return ck


# Hugging Face name -> GGUF name, as llama.cpp's converter maps BitNet tensors (gguf-py tensor_mapping.py).
HF_TO_GGUF = {
    'model.embed_tokens.weight': 'token_embd.weight', 'model.norm.weight': 'output_norm.weight',
    'lm_head.weight': 'output.weight',
    'input_layernorm.weight': 'attn_norm.weight', 'post_attention_layernorm.weight': 'ffn_norm.weight',
    'self_attn.q_proj.weight': 'attn_q.weight', 'self_attn.k_proj.weight': 'attn_k.weight',
    'self_attn.v_proj.weight': 'attn_v.weight', 'self_attn.o_proj.weight': 'attn_output.weight',
    'self_attn.attn_sub_norm.weight': 'attn_sub_norm.weight',
    'mlp.gate_proj.weight': 'ffn_gate.weight', 'mlp.up_proj.weight': 'ffn_up.weight',
    'mlp.down_proj.weight': 'ffn_down.weight', 'mlp.ffn_sub_norm.weight': 'ffn_sub_norm.weight',
}
TERNARY = ('attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down')


def write_bitnet(path: Path, ck: dict[str, np.ndarray], hidden, layers, heads, kv_heads, ffn, vocab, name):
    w = gguf.GGUFWriter(str(path), 'bitnet')
    w.add_name(name)
    w.add_vocab_size(vocab)
    w.add_context_length(CTX)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(hidden // heads)
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for hf, arr in ck.items():
        if hf.startswith('model.layers.'):
            i, rest = hf[len('model.layers.'):].split('.', 1)
            gname = f'blk.{i}.{HF_TO_GGUF[rest]}'
        else:
            gname = HF_TO_GGUF[hf]
        if any(f'.{t}.' in gname for t in TERNARY):
            arr = weight_quant(arr)
        w.add_tensor(gname, np.ascontiguousarray(arr, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_types(path: Path):
    """Small random tensors in every float-ish type gguf-py can write (odd row counts, a 1-D vector)."""
    rng = np.random.default_rng(11)
    w = gguf.GGUFWriter(str(path), 'rotor-types')
    w.add_string('rotor.note', 'random tensors for type tests')
    w.add_array('rotor.ints', [1, -2, 3])
    w.add_array('rotor.floats', [0.5, -1.25])
    w.add_array('rotor.strings', ['a', 'béta', ''])
    w.add_bool('rotor.flag', True)
    w.add_uint64('rotor.big', 1 << 40)
    w.add_int8('rotor.i8', -7)
    w.add_float64('rotor.f64', 3.141592653589793)
    x = (rng.standard_normal((7, 96)) * 2).astype(np.float32)
    w.add_tensor('f32.weight', x)
    w.add_tensor('f16.weight', x.astype(np.float16))
    w.add_tensor('bf16.weight', gguf.quants.quantize(x, Q.BF16), raw_dtype=Q.BF16)
    w.add_tensor('q8_0.weight', gguf.quants.quantize(x, Q.Q8_0), raw_dtype=Q.Q8_0)
    w.add_tensor('q4_0.weight', gguf.quants.quantize(x, Q.Q4_0), raw_dtype=Q.Q4_0)
    y = (rng.standard_normal((3, 512))).astype(np.float32)
    w.add_tensor('tq2_0.weight', gguf.quants.quantize(y, Q.TQ2_0), raw_dtype=Q.TQ2_0)
    w.add_tensor('tq1_0.weight', gguf.quants.quantize(y, Q.TQ1_0), raw_dtype=Q.TQ1_0)
    w.add_tensor('vec.weight', rng.standard_normal(5).astype(np.float32))
    w.add_tensor('cube.weight', rng.standard_normal((2, 3, 32)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def decode_i2s(raw: np.ndarray, n: int) -> np.ndarray:
    """I2_S as bitnet.cpp's quantize_i2_s (x86 build) writes it: blocks of 128 weights in 32 bytes, byte j of a block
    holding weights j, 32 + j, 64 + j, 96 + j in bits 7-6, 5-4, 3-2, 1-0 as code t + 1; the f32 scale at byte n / 4."""
    q = raw[: n // 4].reshape(-1, 32)
    codes = np.stack([(q >> (6 - 2 * g)) & 3 for g in range(4)], axis=1).reshape(-1)  # block, group, j
    assert not (codes == 3).any()
    scale = np.frombuffer(raw[n // 4: n // 4 + 4].tobytes(), dtype='<f4')[0]
    return (codes.astype(np.float32) - 1) * scale


def rename_arch(src: Path, dst: Path, arch: str):
    """Copies a GGUF with general.architecture set to `arch` and every `OLD.` key prefix renamed `arch.`; the tensor
    infos and data are copied byte for byte (tensor offsets are relative to the data section). The header is rebuilt
    from the raw parts gguf-py's reader returns."""
    r = gguf.GGUFReader(str(src))
    old = bytes(r.fields['general.architecture'].parts[-1]).decode()
    out = bytearray(np.asarray(r.data[:4]).tobytes())                 # magic
    for f in r.fields.values():
        parts = [np.asarray(p).tobytes() for p in f.parts]
        if not f.name.startswith('GGUF.'):
            name = f.name
            if name.startswith(old + '.'):
                name = arch + name[len(old):]
            parts[0], parts[1] = struct.pack('<Q', len(name.encode())), name.encode()
            if f.name == 'general.architecture':
                parts[-2], parts[-1] = struct.pack('<Q', len(arch.encode())), arch.encode()
        out += b''.join(parts)
    for t in r.tensors:
        out += b''.join(np.asarray(p).tobytes() for p in t.field.parts)
    out += bytes(-len(out) % r.alignment)
    out += np.asarray(r.data[r.data_offset:]).tobytes()
    dst.write_bytes(bytes(out))
    print(f'{dst}: architecture {old} -> {arch}')


def plain(v):
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return v.decode('utf-8')
    if isinstance(v, np.generic):
        return v.item()
    return v


def teach_gguf_py_i2s():
    """gguf-py (llama.cpp's and bitnet.cpp's) has no I2_S type: register id 36 as 4 weights a byte so its reader maps
    the n / 4 data bytes (the 32-byte scale tail after them is read by decode_i2s)."""
    if 36 in Q._value2member_map_:
        return
    m = int.__new__(Q, 36)
    m._name_, m._value_ = 'I2_S', 36
    Q._value2member_map_[36] = m
    Q._member_map_['I2_S'] = m
    gguf.GGML_QUANT_SIZES[m] = (4, 1)


def expect(path: Path):
    teach_gguf_py_i2s()
    r = gguf.GGUFReader(str(path))
    meta = {}
    for f in r.fields.values():
        if f.name.startswith('GGUF.'):
            continue
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            et = f.types[-1]
            if et == gguf.GGUFValueType.STRING:
                v = [bytes(f.parts[i]).decode('utf-8') for i in f.data]
            else:
                v = [f.parts[i].tolist()[0] for i in f.data]
        elif t == gguf.GGUFValueType.STRING:
            v = bytes(f.parts[f.data[0]]).decode('utf-8')
        else:
            v = f.parts[f.data[0]].tolist()[0]
        meta[f.name] = {'type': t.name, 'value': v}
    tensors = []
    for t in r.tensors:  # gguf-py's dims are ggml's ne: dims[0] is the row length
        dims = [int(d) for d in t.shape]
        n = int(np.prod(dims))
        if int(t.tensor_type) == 36:   # I2_S: gguf-py reads it as unknown, decode from the raw bytes
            raw = np.asarray(r.data[t.data_offset: t.data_offset + n // 4 + 32])
            vals = decode_i2s(raw, n)
            tname = 'I2_S'
        else:
            vals = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
            tname = t.tensor_type.name
        vals = vals.astype('<f4')
        tensors.append({
            'name': t.name, 'type': tname, 'type_id': int(t.tensor_type), 'dims': dims,
            'offset': int(t.data_offset), 'bytes': int(t.n_bytes),
            'sha256': hashlib.sha256(vals.tobytes()).hexdigest(),
            'head': [float(x) for x in vals[:16]],       # the first 16 weights of row 0
            'tail': [float(x) for x in vals[-16:]],      # the last 16 weights of the last row
        })
    out = path.with_suffix('.expected.json')
    out.write_text(json.dumps({'file': path.name, 'version': 3, 'alignment': r.alignment, 'data_offset': r.data_offset,
                               'metadata': meta, 'tensors': tensors}, indent=1, ensure_ascii=False) + '\n')
    print(f'{out}: {len(tensors)} tensors')


def main():
    cmd, out = sys.argv[1], Path(sys.argv[2])
    if cmd == 'f32':
        if len(sys.argv) > 3:
            # A Hugging Face BitNetForCausalLM folder with bf16/f32 master weights (the "online" form). Its weights are
            # widened to float32 and quantized there, as transformers does with the model loaded in float32.
            folder = Path(sys.argv[3])
            cfg = json.loads((folder / 'config.json').read_text())
            assert cfg['architectures'] == ['BitNetForCausalLM'] and cfg.get('tie_word_embeddings', False), cfg
            dims = (cfg['hidden_size'], cfg['num_hidden_layers'], cfg['num_attention_heads'], cfg['num_key_value_heads'],
                    cfg['intermediate_size'], cfg['vocab_size'])
            assert dims == (HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, VOCAB), dims
            assert (cfg['rms_norm_eps'], cfg['rope_theta'], cfg['max_position_embeddings']) == (RMS_EPS, ROPE_THETA, CTX), cfg
            ck = load_safetensors(folder / 'model.safetensors')
            source = f'{folder.name} weights'
        else:
            ck = random_checkpoint(HIDDEN, LAYERS, FFN, VOCAB, KV_HEADS * HEAD_DIM, seed=1)
            source = 'random'
        write_bitnet(out / 'bitnet-tiny-f32.gguf', ck, HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, VOCAB, f'bitnet-tiny ({source})')
        # One layer with FFN 320: ffn_down rows are 320 long, not whole 256-weight blocks, so the quantizers fall back.
        fb = random_checkpoint(HIDDEN, 1, 320, 256, KV_HEADS * HEAD_DIM, seed=2)
        write_bitnet(out / 'bitnet-ffn320-f32.gguf', fb, HIDDEN, 1, HEADS, KV_HEADS, 320, 256, 'bitnet-ffn320 (random)')
        write_types(out / 'types.gguf')
    elif cmd == 'rename':
        teach_gguf_py_i2s()
        for p in sys.argv[4:]:
            tmp = Path(p).with_suffix('.tmp')
            rename_arch(Path(p), tmp, sys.argv[3])
            tmp.replace(p)
    elif cmd == 'expect':
        for p in sys.argv[3:]:
            expect(Path(p))
    else:
        raise SystemExit(__doc__)


if __name__ == '__main__':
    main()
