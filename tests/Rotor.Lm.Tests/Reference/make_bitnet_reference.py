#!/usr/bin/env python3
"""Reference data for Rotor's BitNet b1.58 decoder, made with Hugging Face transformers.

What it makes
-------------
``tiny`` mode: a tiny ``BitNetForCausalLM`` (hidden 256, 2 layers, 4 heads, 2 KV heads, head_dim 64, FFN 512,
vocab 512, RoPE theta 500000, tied embeddings, relu2, rms_norm_eps 1e-5) with deterministic weights (the generator
below), written as Hugging Face folders in four forms, each loaded back through ``from_pretrained``:

  online/                 bf16 master weights, quantization_config autobitlinear + online (the "-bf16" checkpoint form)
  packed/                 uint8 [out/4, in] ternary weights (four rows a byte) + F32 ``weight_scale``, linear_class
                          ``bitlinear`` (divides by weight_scale); embeddings and norms bf16
  packed-bf16/            the same with ``weight_scale`` in bf16, exactly as microsoft/bitnet-b1.58-2B-4T ships it
  autobitlinear-offline/  uint8 packed weights + F32 ``weight_scale`` = mean|W|, linear_class autobitlinear + offline
                          (multiplies by weight_scale)

Each folder gets ``config.json``, ``model.safetensors`` and ``reference.safetensors`` (input ids, logits, the
32-token greedy continuation, hidden states; see the README beside the data). ``summary-tiny.json`` records the checks:
every form against an independent float32 forward written here from the formulas in the README, against the online
form, and against the same weights with plain float ``nn.Linear`` (which must differ: proof that it quantizes).

``full`` mode: the 2B4T shape (hidden 2560, 20 heads, 5 KV heads, FFN 6912, vocab 128256) with 2 layers instead of
30, weights from the same generator, online form, 16 fixed ids; writes ``bitnet-2b4t-shape/reference.safetensors``
(top-50 logits of the last 4 positions, argmax at every position, hidden-state norms, generator probes) and the
``config.json`` the C# twin builds from. The checkpoint itself is not kept (it is 0.9 GB); C# regenerates it.

Weight generator (C# must reproduce it bit for bit)
---------------------------------------------------
Tensor number t in the order of ``tensor_names()``; element i is its row-major flat index in the Hugging Face shape
([out, in] for linears, [vocab, hidden] for the embedding). With uint64 wrap-around arithmetic:
  x = seed ^ (t << 40) ^ i
  z = x + 0x9E3779B97F4A7C15
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ^ (z >> 27)) * 0x94D049BB133111EB
  z = z ^ (z >> 31)                                   (splitmix64)
  u = (double)(z >> 11) * 2^-53 * 2.0 - 1.0           (exact, in [-1, 1))
  value = (float)(amp * u)            amp by the tensor's role (the preset's table below; committed: embed_tokens
                                      0.1, every projection 0.05)
  value = (float)(1.0 + 0.5 * u)      every *norm.weight
all in IEEE double, rounded once to float32 (round to nearest even); the checkpoint stores that float32 rounded to
bf16 (round to nearest even), and the model computes in float32 from the bf16 values.

How to run
----------
On any machine with torch 2.x, transformers 5.x, safetensors and numpy (the CPU is enough; it runs in float32):
  python3 make_bitnet_reference.py tiny --out DIR      # DIR/{online,packed,packed-bf16,autobitlinear-offline}/
  python3 make_bitnet_reference.py full --out DIR      # DIR/bitnet-2b4t-shape/ (about 8 GB of memory)
  --preset committed|robust picks the seed and amplitudes (PRESETS below; default committed).
The committed data came from DIR = tests/Rotor.Lm.Tests/Data/bitnet-tiny (tiny) and tests/Rotor.Lm.Tests/Data (full),
both with the committed preset. bitnet_numpy_twin.py beside this file is a numpy-only twin of the generator and of
the independent forward, for checks without torch.
torch.compile is disabled (TORCHDYNAMO_DISABLE=1) so transformers' BitNet layers run eagerly on the CPU.
"""

import os

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import transformers
from transformers import BitNetConfig, BitNetForCausalLM

TINY = dict(hidden=256, layers=2, heads=4, kv_heads=2, ffn=512, vocab=512, max_pos=256)
FULL = dict(hidden=2560, layers=2, heads=20, kv_heads=5, ffn=6912, vocab=128256, max_pos=4096)
FULL_SEED = 0x0B17_5EED_0000_2B4B
NORM_AMP = 0.5  # every norm weight is 1 + NORM_AMP * u
# Presets: (tiny seed, weight amplitude by role = the name's second-to-last part).
# "committed" made the data in the repository. Its greedy continuation is one token repeated, its smallest top-1 -
# top-2 margin is 5e-4 of the largest |logit|, and some int8 rounding inputs sit exactly on a rounding boundary, so a
# decoder that is a few ulps off transformers can flip an int8 value (which moves the logits by about 2e-2).
# "robust" fixes that; it was chosen with a float32 numpy twin of reference_forward as the first seed from
# 0x0B175EED00000001 whose tiny model has top-1 - top-2 margins of at least 0.5 % of the largest |logit| at all 24
# positions and all 32 greedy steps, at least 24 distinct greedy tokens, and every int8 rounding input x * s_x at least
# 1e-6 (relative) from a rounding boundary. Sharp attention (large q/k) and a strong FFN keep its greedy continuation
# from collapsing onto one token.
PRESETS = {
    "committed": (0x0B17_5EED_0000_0001, {"embed_tokens": 0.1, "q_proj": 0.05, "k_proj": 0.05, "v_proj": 0.05,
                                          "o_proj": 0.05, "gate_proj": 0.05, "up_proj": 0.05, "down_proj": 0.05}),
    "robust": (0x0B17_5EED_0000_0140, {"embed_tokens": 0.2, "q_proj": 0.3, "k_proj": 0.3, "v_proj": 0.05,
                                       "o_proj": 0.02, "gate_proj": 0.05, "up_proj": 0.05, "down_proj": 0.4}),
}
RMS_EPS, ROPE_THETA = 1e-5, 500000.0

# Fixed inputs: 24 ids for the tiny model (0 and 511 included), 16 for the full shape (0 and 128255 included).
TINY_IDS = [1, 0, 511, 17, 42, 300, 255, 256, 7, 128, 399, 64, 5, 488, 33, 200, 511, 0, 77, 310, 150, 9, 450, 3]
FULL_IDS = [128000, 0, 128255, 791, 4062, 14198, 38, 128009, 100, 65535, 65536, 12, 99999, 3, 1000, 271]
PROMPT_LEN, NEW_TOKENS = 8, 32


# ----------------------------------------------------------------------------------------------------------------
# Weight generator
# ----------------------------------------------------------------------------------------------------------------

def tensor_names(c):
    """Every stored tensor of the master checkpoint with its shape, in generator order (t = index in this list)."""
    H, I, hd = c["hidden"], c["ffn"], c["hidden"] // c["heads"]
    names = [("model.embed_tokens.weight", (c["vocab"], H))]
    for l in range(c["layers"]):
        p = f"model.layers.{l}."
        names += [
            (p + "input_layernorm.weight", (H,)),
            (p + "self_attn.q_proj.weight", (c["heads"] * hd, H)),
            (p + "self_attn.k_proj.weight", (c["kv_heads"] * hd, H)),
            (p + "self_attn.v_proj.weight", (c["kv_heads"] * hd, H)),
            (p + "self_attn.attn_sub_norm.weight", (H,)),
            (p + "self_attn.o_proj.weight", (H, c["heads"] * hd)),
            (p + "post_attention_layernorm.weight", (H,)),
            (p + "mlp.gate_proj.weight", (I, H)),
            (p + "mlp.up_proj.weight", (I, H)),
            (p + "mlp.ffn_sub_norm.weight", (I,)),
            (p + "mlp.down_proj.weight", (H, I)),
        ]
    names.append(("model.norm.weight", (H,)))
    return names


def splitmix64(x):
    """splitmix64 of a uint64 array (numpy wraps uint64 array arithmetic modulo 2^64)."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def generate_tensor(seed, t, name, shape, amp):
    """float32 values of tensor t (before the bf16 rounding of the checkpoint)."""
    n = int(np.prod(shape))
    out = np.empty(n, np.float32)
    base = np.uint64(seed) ^ (np.uint64(t) << np.uint64(40))
    chunk = 1 << 22

    def fill(start):
        i = np.arange(start, min(n, start + chunk), dtype=np.uint64)
        z = splitmix64(base ^ i)
        u = (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -53) * 2.0 - 1.0
        if name.endswith("norm.weight"):
            v = 1.0 + NORM_AMP * u
        else:
            v = amp[name.split(".")[-2]] * u
        out[start:start + len(i)] = v.astype(np.float32)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(fill, range(0, n, chunk)))
    return out.reshape(shape)


def master_weights(c, seed, amp):
    """name -> bf16 torch tensor (the checkpoint) and name -> float32 probes of the generator output."""
    weights, probes = {}, []
    for t, (name, shape) in enumerate(tensor_names(c)):
        w = generate_tensor(seed, t, name, shape, amp)
        flat = w.reshape(-1)
        probes.append(np.concatenate([flat[:4], flat[-4:]]))
        weights[name] = torch.from_numpy(w).to(torch.bfloat16)
    return weights, np.stack(probes)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint forms
# ----------------------------------------------------------------------------------------------------------------

def config_dict(c, quant, eos):
    """config.json in the style of microsoft/bitnet-b1.58-2B-4T's (top-level rope_theta, torch_dtype)."""
    d = {
        "architectures": ["BitNetForCausalLM"],
        "model_type": "bitnet",
        "hidden_size": c["hidden"],
        "intermediate_size": c["ffn"],
        "num_hidden_layers": c["layers"],
        "num_attention_heads": c["heads"],
        "num_key_value_heads": c["kv_heads"],
        "vocab_size": c["vocab"],
        "max_position_embeddings": c["max_pos"],
        "rms_norm_eps": RMS_EPS,
        "rope_theta": ROPE_THETA,
        "hidden_act": "relu2",
        "tie_word_embeddings": True,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "torch_dtype": "bfloat16",
        "use_cache": True,
    }
    if eos:
        d.update(bos_token_id=128000, eos_token_id=128001)
    else:
        # No special tokens: generation runs to max_new_tokens.
        d.update(bos_token_id=None, eos_token_id=None, pad_token_id=None)
    if quant is not None:
        d["quantization_config"] = quant
    return d


def ternary(w):
    """transformers' absmean weight quantization (WeightQuant) in float32: (ternary values, s = 1/mean|W|)."""
    w = w.float()
    s = 1.0 / w.abs().mean().clamp(min=1e-5)
    return (w * s).round().clamp(-1, 1), s


def pack_rows(q):
    """Ternary [out, in] -> uint8 [out/4, in]: row i*P + j (P = out/4) sits in byte row j at bits 2i, stored as q + 1."""
    out = q.shape[0]
    assert out % 4 == 0, out
    P = out // 4
    u = (q + 1).to(torch.uint8)
    packed = torch.zeros((P, q.shape[1]), dtype=torch.uint8)
    for i in range(4):
        packed |= u[i * P:(i + 1) * P] << (2 * i)
    return packed


def unpack_rows(packed):
    """Inverse of pack_rows, written from the layout description (not transformers' code): float32 ternary."""
    P = packed.shape[0]
    rows = [((packed >> (2 * i)) & 3).to(torch.float32) - 1 for i in range(4)]
    return torch.cat(rows, 0)


def is_linear(name):
    return name.endswith("_proj.weight")


FORMS = {
    "online": {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"},
    "packed": {"quant_method": "bitnet", "linear_class": "bitlinear", "quantization_mode": "offline"},
    "packed-bf16": {"quant_method": "bitnet", "linear_class": "bitlinear", "quantization_mode": "offline"},
    "autobitlinear-offline": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                              "quantization_mode": "offline"},
}


def form_tensors(form, master):
    """The model.safetensors contents of one form, made from the bf16 master weights."""
    if form == "online":
        return dict(master)
    out = {}
    for name, w in master.items():
        if not is_linear(name):
            out[name] = w
            continue
        q, s = ternary(w)
        out[name] = pack_rows(q)
        scale_name = name[: -len("weight")] + "weight_scale"
        if form == "packed":
            out[scale_name] = s.reshape(1).to(torch.float32)
        elif form == "packed-bf16":
            out[scale_name] = s.reshape(1).to(torch.bfloat16)
        else:
            out[scale_name] = (1.0 / s).reshape(1).to(torch.float32)
    return out


def write_folder(folder, config, tensors):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(folder, "model.safetensors"),
              metadata={"format": "pt"})


def load(folder):
    return BitNetForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()


# ----------------------------------------------------------------------------------------------------------------
# An independent float32 forward from the README's formulas (the check that the README states what transformers does)
# ----------------------------------------------------------------------------------------------------------------

QUANT_DISTANCE = []  # per act_quant call: min over elements of |x*s - nearest k + 1/2| / max(|x*s|, 1)


def act_quant(x):
    """Per-token absmax int8: s = 127 / max(max|x|, 1e-5), q = clamp(round_half_even(x * s), -128, 127)."""
    s = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    xs = x * s
    QUANT_DISTANCE.append(float(((xs - (xs.floor() + 0.5)).abs() / xs.abs().clamp(min=1.0)).min()))
    return xs.round().clamp(-128, 127), s


def make_linear(weights, form, linear_class):
    """name -> function x -> BitLinear(x), from the file's tensors; int8 x ternary sums are exact in float32 here."""
    cache = {}

    def lin(name, x):
        if name not in cache:
            w = weights[name + ".weight"]
            if w.dtype == torch.uint8:
                q = unpack_rows(w)
                scale = weights[name + ".weight_scale"].float().reshape(())
                # bitlinear: y = acc / (weight_scale * s_x); autobitlinear offline: y = acc * weight_scale / s_x
                cache[name] = (q, 1.0 / scale if linear_class == "bitlinear" else scale)
            else:
                q, s = ternary(w)
                cache[name] = (q, 1.0 / s)
        q, wmul = cache[name]
        xq, sx = act_quant(x)
        return (xq @ q.T.to(x.dtype)) / sx * wmul.to(x.dtype)

    return lin


def reference_forward(c, weights, lin, ids, dtype=torch.float32):
    """Returns logits [T, V] and a dict of intermediate values, computed in dtype (float32 as transformers does;
    float64 shows how far int8 rounding decisions alone move an equally valid implementation)."""
    H, nH, nKV = c["hidden"], c["heads"], c["kv_heads"]
    hd = H // nH
    T = len(ids)
    emb = weights["model.embed_tokens.weight"].to(dtype)
    nw = lambda n: weights[n].to(dtype)

    def norm(v, w):
        return w * (v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + RMS_EPS))

    inv = 1.0 / (ROPE_THETA ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    fr = torch.arange(T).float()[:, None] * inv[None, :]
    cos, sin = torch.cat([fr, fr], -1).cos().to(dtype), torch.cat([fr, fr], -1).sin().to(dtype)

    def rope(v):  # [heads, T, hd], rotate-half: pairs (j, j + hd/2)
        return v * cos + torch.cat([-v[..., hd // 2:], v[..., : hd // 2]], -1) * sin

    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    x = emb[torch.tensor(ids)]
    states = {"hidden_0": x}
    for l in range(c["layers"]):
        p = f"model.layers.{l}."
        h = norm(x, nw(p + "input_layernorm.weight"))
        q = rope(lin(p + "self_attn.q_proj", h).view(T, nH, hd).transpose(0, 1))
        k = rope(lin(p + "self_attn.k_proj", h).view(T, nKV, hd).transpose(0, 1))
        v = lin(p + "self_attn.v_proj", h).view(T, nKV, hd).transpose(0, 1)
        k, v = k.repeat_interleave(nH // nKV, 0), v.repeat_interleave(nH // nKV, 0)  # head j uses kv head j // (nH/nKV)
        a = ((q @ k.transpose(1, 2)) * hd ** -0.5).masked_fill(mask, float("-inf")).softmax(-1)
        o = norm((a @ v).transpose(0, 1).reshape(T, nH * hd), nw(p + "self_attn.attn_sub_norm.weight"))
        x = x + lin(p + "self_attn.o_proj", o)
        h = norm(x, nw(p + "post_attention_layernorm.weight"))
        f = torch.relu(lin(p + "mlp.gate_proj", h)) ** 2 * lin(p + "mlp.up_proj", h)
        f = norm(f, nw(p + "mlp.ffn_sub_norm.weight"))
        x = x + lin(p + "mlp.down_proj", f)
        states[f"hidden_{l + 1}"] = x
    x = norm(x, nw("model.norm.weight"))
    states["final_norm"] = x
    return x @ emb.T, states  # the LM head (tied embedding) is not quantized


# ----------------------------------------------------------------------------------------------------------------
# Running transformers
# ----------------------------------------------------------------------------------------------------------------

def capture(model, ids):
    """model(ids).logits [T, V] and the hidden states taken by forward hooks."""
    got, hooks = {}, []
    m = model.model

    def out_hook(key):
        def f(_mod, _inp, out):
            t = out[0] if isinstance(out, tuple) else out
            got[key] = t.detach().reshape(-1, t.shape[-1]).float().clone()
        return f

    def in_hook(key):
        def f(_mod, inp, _out):
            got[key] = inp[0].detach().reshape(-1, inp[0].shape[-1]).clone()
        return f

    hooks.append(m.embed_tokens.register_forward_hook(out_hook("hidden_0")))
    for l, layer in enumerate(m.layers):
        hooks.append(layer.register_forward_hook(out_hook(f"hidden_{l + 1}")))
    hooks.append(m.norm.register_forward_hook(out_hook("final_norm")))
    l0 = m.layers[0]
    hooks.append(l0.input_layernorm.register_forward_hook(out_hook("l0_input_norm")))
    hooks.append(l0.self_attn.q_proj.register_forward_hook(out_hook("l0_q_proj")))
    hooks.append(l0.self_attn.o_proj.register_forward_hook(in_hook("l0_attn_sub_norm")))
    hooks.append(l0.mlp.down_proj.register_forward_hook(in_hook("l0_ffn_sub_norm")))
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    for h in hooks:
        h.remove()
    return logits, got


def greedy(model, prompt):
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=NEW_TOKENS,
                             return_dict_in_generate=True, output_logits=True)
    new = out.sequences[0, len(prompt):]
    if len(new) != NEW_TOKENS:
        raise SystemExit(f"generate made {len(new)} tokens, not {NEW_TOKENS}")
    step_logits = torch.stack([x[0].float() for x in out.logits])
    # The same continuation without the KV cache: argmax of a full forward at every step.
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            seq.append(int(model(torch.tensor([seq]), use_cache=False).logits[0, -1].argmax()))
    return new, step_logits, torch.tensor(seq[len(prompt):])


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def margins(logits):
    top = logits.topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


def linear_classes(model):
    l0 = model.model.layers[0]
    return {n: type(getattr(mod, n.split(".")[1])).__name__
            for n, mod in [("self_attn.q_proj", l0.self_attn), ("mlp.down_proj", l0.mlp)]} | {
        "lm_head": type(model.lm_head).__name__}


def plain_float_logits(folder, ids):
    """The same master weights with plain float nn.Linear (no quantization)."""
    with open(os.path.join(folder, "config.json")) as f:
        d = json.load(f)
    d.pop("quantization_config")
    cfg = BitNetConfig.from_dict(d)
    model = BitNetForCausalLM(cfg).to(torch.float32).eval()
    sd = {k: v.float() for k, v in load_file(os.path.join(folder, "model.safetensors")).items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    model.tie_weights()
    assert not unexpected and all(k == "lm_head.weight" for k in missing), (missing, unexpected)
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def run_tiny(out_dir, preset):
    c = TINY
    seed, amp = PRESETS[preset]
    master, probes = master_weights(c, seed, amp)
    summary = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                            "numpy": np.__version__, "python": sys.version.split()[0]},
               "preset": preset, "seed": hex(seed), "forms": {}}
    # Cross-check the packer against transformers' own (run time only; nothing of theirs is stored).
    try:
        from transformers.integrations.bitnet import pack_weights
        q, _ = ternary(master["model.layers.0.self_attn.q_proj.weight"])
        summary["pack_equals_transformers"] = bool(torch.equal(pack_weights(q.clone()), pack_rows(q)))
    except Exception as e:  # noqa: BLE001 - recorded, not hidden
        summary["pack_equals_transformers"] = f"not checked: {e!r}"

    results = {}
    for form, quant in FORMS.items():
        folder = os.path.join(out_dir, form)
        write_folder(folder, config_dict(c, quant, eos=False), form_tensors(form, master))
        rec = {}
        try:
            model = load(folder)
            rec["linear_classes"] = linear_classes(model)
            rec["rope_inv_freq_ok"] = bool(torch.allclose(
                model.model.rotary_emb.inv_freq.float(),
                1.0 / (ROPE_THETA ** (torch.arange(0, 64, 2, dtype=torch.int64).float() / 64)), rtol=1e-6))
            logits, states = capture(model, TINY_IDS)
            new, step_logits, new_nocache = greedy(model, TINY_IDS[:PROMPT_LEN])
            file_tensors = load_file(os.path.join(folder, "model.safetensors"))
            QUANT_DISTANCE.clear()
            ref_logits, ref_states = reference_forward(c, file_tensors,
                                                       make_linear(file_tensors, form, quant["linear_class"]),
                                                       TINY_IDS)
            rec["min_quant_boundary_distance_ids"] = min(QUANT_DISTANCE)
            QUANT_DISTANCE.clear()
            reference_forward(c, file_tensors, make_linear(file_tensors, form, quant["linear_class"]),
                              TINY_IDS[:PROMPT_LEN] + new.tolist()[:-1])
            rec["min_quant_boundary_distance_greedy"] = min(QUANT_DISTANCE)
            rec["vs_independent_forward_rel"] = rel(logits, ref_logits)
            rec["vs_independent_hidden_1_rel"] = rel(states["hidden_1"], ref_states["hidden_1"])
            rec["argmax_equals_independent"] = bool(torch.equal(logits.argmax(-1), ref_logits.argmax(-1)))
            f64_logits, _ = reference_forward(c, file_tensors, make_linear(file_tensors, form, quant["linear_class"]),
                                              TINY_IDS, torch.float64)
            rec["independent_f64_vs_f32_rel"] = rel(f64_logits.float(), ref_logits)
            rec["greedy_cache_equals_nocache"] = bool(torch.equal(new, new_nocache))
            rec["min_margin_logits"] = float(margins(logits).min())
            rec["min_margin_greedy"] = float(margins(step_logits).min())
            rec["min_rel_margin"] = min(rec["min_margin_logits"], rec["min_margin_greedy"]) / float(logits.abs().max())
            rec["max_abs_logit"] = float(logits.abs().max())
            rec["greedy_ids"] = new.tolist()
            ref = {"input_ids": torch.tensor(TINY_IDS, dtype=torch.int64), "logits": logits,
                   "greedy_ids": new.to(torch.int64), "greedy_logits": step_logits}
            ref.update({k: v.float() for k, v in states.items()})
            save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(folder, "reference.safetensors"),
                      metadata={"format": "pt", "transformers": transformers.__version__, "torch": torch.__version__})
            results[form] = (logits, new)
            if form == "online":
                plain = plain_float_logits(folder, TINY_IDS)
                rec["plain_float_vs_quantized_rel"] = rel(plain, logits)
                rec["plain_float_argmax_agree"] = int((plain.argmax(-1) == logits.argmax(-1)).sum())
        except Exception as e:  # noqa: BLE001 - one form failing must not hide the others' results
            import traceback
            rec["error"] = traceback.format_exc()
        summary["forms"][form] = rec
        print(form, json.dumps({k: v for k, v in rec.items() if k != "greedy_ids"}), flush=True)

    if "online" in results:
        base_logits, base_new = results["online"]
        for form, (logits, new) in results.items():
            summary["forms"][form]["vs_online_rel"] = rel(logits, base_logits)
            summary["forms"][form]["greedy_equals_online"] = bool(torch.equal(new, base_new))
    summary["generator_probes_t0"] = probes[0].tolist()
    with open(os.path.join(out_dir, "summary-tiny.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))


def run_full(out_dir, work_dir, preset):
    c = FULL
    master, probes = master_weights(c, FULL_SEED, PRESETS[preset][1])
    folder = os.path.join(work_dir, "bitnet-2b4t-shape-checkpoint")
    cfg = config_dict(c, FORMS["online"], eos=True)
    write_folder(folder, cfg, master)
    model = load(folder)
    logits, states = capture(model, FULL_IDS)
    file_tensors = {k: v.float() for k, v in master.items()}
    del master
    QUANT_DISTANCE.clear()
    ref_logits, ref_states = reference_forward(c, file_tensors, make_linear(file_tensors, "online", "autobitlinear"),
                                               FULL_IDS)
    quant_distance = min(QUANT_DISTANCE)
    f64_logits, _ = reference_forward(c, file_tensors, make_linear(file_tensors, "online", "autobitlinear"),
                                      FULL_IDS, torch.float64)
    last = logits[-4:]
    top = last.topk(50, dim=-1)
    norms = torch.stack([states[k].norm(dim=-1) for k in ("hidden_0", "hidden_1", "hidden_2", "final_norm")])
    dst = os.path.join(out_dir, "bitnet-2b4t-shape")
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    ref = {"input_ids": torch.tensor(FULL_IDS, dtype=torch.int64),
           "argmax": logits.argmax(-1).to(torch.int64),
           "top50_ids": top.indices.to(torch.int64), "top50_logits": top.values.float(),
           "max_abs_logit": last.abs().amax(-1).float(),
           "hidden_norms": norms.float(),
           "generator_probes": torch.from_numpy(probes.astype(np.float32))}
    save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(dst, "reference.safetensors"),
              metadata={"format": "pt", "transformers": transformers.__version__, "torch": torch.__version__})
    summary = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__},
               "linear_classes": linear_classes(model),
               "vs_independent_forward_rel": rel(logits, ref_logits),
               "argmax_equals_independent": bool(torch.equal(logits.argmax(-1), ref_logits.argmax(-1))),
               "independent_f64_vs_f32_rel": rel(f64_logits.float(), ref_logits),
               "vs_independent_f64_rel": rel(logits, f64_logits.float()),
               "argmax_equals_independent_f64": bool(torch.equal(logits.argmax(-1), f64_logits.argmax(-1))),
               "vs_independent_hidden_1_rel": rel(states["hidden_1"], ref_states["hidden_1"]),
               "min_quant_boundary_distance_ids": quant_distance,
               "min_margin_last4": float(margins(last).min()),
               "max_abs_logit": float(logits.abs().max()),
               "argmax": logits.argmax(-1).tolist(),
               "hidden_norms": norms.tolist()}
    with open(os.path.join(dst, "summary-full.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["tiny", "full"])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--work", default="/tmp", help="scratch folder for the full-shape checkpoint (0.9 GB)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="committed", help="seed and weight amplitudes")
    a = ap.parse_args()
    if a.mode == "tiny":
        run_tiny(a.out, a.preset)
    else:
        run_full(a.out, a.work, a.preset)


if __name__ == "__main__":
    main()
