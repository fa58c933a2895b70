#!/usr/bin/env python3
"""A numpy twin of make_bitnet_reference.py's weight generator and independent forward (numpy only, no torch).

It runs on the development machine (`apt-get install python3-numpy`) and backs the figures in
tests/Rotor.Lm.Tests/Data/bitnet-tiny/README.md ("Limits"):

  python3 bitnet_numpy_twin.py check tests/Rotor.Lm.Tests/Data/bitnet-tiny [--preset committed]
      regenerates the tiny model's weights and compares them bit for bit with online/model.safetensors, compares its
      float32 forward with transformers' logits in online/reference.safetensors, and measures how far the logits move
      when int8 rounding decisions change (float64 forward; s_x scaled by 1 + 1e-6) and how close any rounding input
      x * s_x comes to a rounding boundary.
  python3 bitnet_numpy_twin.py search FIRST LAST [--preset robust]
      the seed search that chose the robust preset's seed (prints every seed that meets the criteria).
  python3 bitnet_numpy_twin.py preview [--preset robust]
      margins, greedy continuation and boundary distances of a preset that has not been run through transformers.

The formulas are those of the README's "What transformers computes"; the generator is the README's, bit for bit.
"""

import argparse
import json
import struct

import numpy as np

TINY = dict(hidden=256, layers=2, heads=4, kv_heads=2, ffn=512, vocab=512)
IDS = [1, 0, 511, 17, 42, 300, 255, 256, 7, 128, 399, 64, 5, 488, 33, 200, 511, 0, 77, 310, 150, 9, 450, 3]
PROMPT_LEN, NEW_TOKENS = 8, 32
EPS, THETA, NORM_AMP = 1e-5, 500000.0, 0.5
PRESETS = {  # must equal make_bitnet_reference.PRESETS
    "committed": (0x0B175EED00000001, {"embed_tokens": 0.1, "q_proj": 0.05, "k_proj": 0.05, "v_proj": 0.05,
                                       "o_proj": 0.05, "gate_proj": 0.05, "up_proj": 0.05, "down_proj": 0.05}),
    "robust": (0x0B175EED00000140, {"embed_tokens": 0.2, "q_proj": 0.3, "k_proj": 0.3, "v_proj": 0.05,
                                    "o_proj": 0.02, "gate_proj": 0.05, "up_proj": 0.05, "down_proj": 0.4}),
}


def read_safetensors(path):
    """name -> numpy array (BF16 widened to float32)."""
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        raw = b[8 + n + s:8 + n + e]
        if v["dtype"] == "BF16":
            a = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, {"F32": np.float32, "I64": np.int64, "U8": np.uint8}[v["dtype"]])
        out[k] = a.reshape(v["shape"])
    return out


def tensor_names(c):
    H, I, hd = c["hidden"], c["ffn"], c["hidden"] // c["heads"]
    r = [("model.embed_tokens.weight", (c["vocab"], H))]
    for l in range(c["layers"]):
        p = f"model.layers.{l}."
        r += [(p + "input_layernorm.weight", (H,)), (p + "self_attn.q_proj.weight", (c["heads"] * hd, H)),
              (p + "self_attn.k_proj.weight", (c["kv_heads"] * hd, H)),
              (p + "self_attn.v_proj.weight", (c["kv_heads"] * hd, H)),
              (p + "self_attn.attn_sub_norm.weight", (H,)), (p + "self_attn.o_proj.weight", (H, c["heads"] * hd)),
              (p + "post_attention_layernorm.weight", (H,)), (p + "mlp.gate_proj.weight", (I, H)),
              (p + "mlp.up_proj.weight", (I, H)), (p + "mlp.ffn_sub_norm.weight", (I,)),
              (p + "mlp.down_proj.weight", (H, I))]
    r.append(("model.norm.weight", (H,)))
    return r


def splitmix64(x):
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def to_bf16(a):
    """float32 -> nearest-even bf16, returned widened to float32."""
    b = a.astype(np.float32).view(np.uint32)
    b = (b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return b.view(np.float32)


def generate(c, seed, amp):
    W = {}
    for t, (name, shape) in enumerate(tensor_names(c)):
        i = np.arange(int(np.prod(shape)), dtype=np.uint64)
        z = splitmix64(np.uint64(seed) ^ (np.uint64(t) << np.uint64(40)) ^ i)
        u = (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53 * 2.0 - 1.0
        v = 1.0 + NORM_AMP * u if name.endswith("norm.weight") else amp[name.split(".")[-2]] * u
        W[name] = to_bf16(v.astype(np.float32)).reshape(shape)
    return W


class Forward:
    """Float32 (or float64) forward of the online form; records how close rounding inputs come to a boundary."""

    def __init__(self, c, W, dtype=np.float32, sx_factor=1.0):
        self.c, self.dtype, self.sx_factor = c, dtype, sx_factor
        self.W = {k: v.astype(dtype) for k, v in W.items()}
        self.Q = {}
        self.distance = []

    def ternary(self, name):
        if name not in self.Q:
            w = self.W[name + ".weight"].astype(np.float32)
            s = np.float32(1.0) / max(np.float32(np.abs(w).mean(dtype=np.float32)), np.float32(1e-5))
            self.Q[name] = (np.clip(np.round(w * s), -1, 1).astype(self.dtype), self.dtype(s))
        return self.Q[name]

    def lin(self, name, x):
        q, s = self.ternary(name)
        sx = self.dtype(127.0) / np.maximum(np.abs(x).max(-1, keepdims=True), self.dtype(1e-5)) * self.dtype(
            self.sx_factor)
        xs = x * sx
        self.distance.append(float((np.abs(xs - (np.floor(xs) + 0.5)) / np.maximum(np.abs(xs), 1.0)).min()))
        return ((np.clip(np.round(xs), -128, 127) @ q.T) / sx / s).astype(self.dtype)

    def norm(self, v, w):
        return (w * (v / np.sqrt((v * v).mean(-1, keepdims=True) + self.dtype(EPS)))).astype(self.dtype)

    def logits(self, ids):
        c, W, dt = self.c, self.W, self.dtype
        H, nH, nKV = c["hidden"], c["heads"], c["kv_heads"]
        hd, T = H // nH, len(ids)
        inv = (1.0 / (THETA ** (np.arange(0, hd, 2) / hd))).astype(np.float32)
        fr = np.arange(T, dtype=np.float32)[:, None] * inv[None]
        cos, sin = np.cos(np.concatenate([fr, fr], -1)).astype(dt), np.sin(np.concatenate([fr, fr], -1)).astype(dt)
        rope = lambda v: v * cos + np.concatenate([-v[..., hd // 2:], v[..., :hd // 2]], -1) * sin
        E = W["model.embed_tokens.weight"]
        x = E[ids]
        mask = np.triu(np.ones((T, T), bool), 1)
        for l in range(c["layers"]):
            p = f"model.layers.{l}."
            h = self.norm(x, W[p + "input_layernorm.weight"])
            q = rope(self.lin(p + "self_attn.q_proj", h).reshape(T, nH, hd).transpose(1, 0, 2))
            k = rope(self.lin(p + "self_attn.k_proj", h).reshape(T, nKV, hd).transpose(1, 0, 2))
            v = self.lin(p + "self_attn.v_proj", h).reshape(T, nKV, hd).transpose(1, 0, 2)
            k, v = np.repeat(k, nH // nKV, 0), np.repeat(v, nH // nKV, 0)
            a = (q @ k.transpose(0, 2, 1)) * dt(hd ** -0.5)
            a[:, mask] = -np.inf
            a = np.exp(a - a.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            o = self.norm((a @ v).transpose(1, 0, 2).reshape(T, H), W[p + "self_attn.attn_sub_norm.weight"])
            x = x + self.lin(p + "self_attn.o_proj", o)
            h = self.norm(x, W[p + "post_attention_layernorm.weight"])
            f = np.maximum(self.lin(p + "mlp.gate_proj", h), 0) ** 2 * self.lin(p + "mlp.up_proj", h)
            x = x + self.lin(p + "mlp.down_proj", self.norm(f, W[p + "mlp.ffn_sub_norm.weight"]))
        return self.norm(x, W["model.norm.weight"]) @ E.T


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def rel_margin(logits):
    o = np.sort(logits, -1)[..., ::-1]
    return float(((o[..., 0] - o[..., 1]) / np.abs(logits).max()).min())


def greedy(c, W):
    seq, margin = list(IDS[:PROMPT_LEN]), 1.0
    for _ in range(NEW_TOKENS):
        lg = Forward(c, W).logits(seq)[-1]
        margin = min(margin, rel_margin(lg))
        seq.append(int(lg.argmax()))
    return seq[PROMPT_LEN:], margin


def describe(c, W):
    f = Forward(c, W)
    l32 = f.logits(IDS)
    d_ids = min(f.distance)
    new, greedy_margin = greedy(c, W)
    g = Forward(c, W)
    g.logits(IDS[:PROMPT_LEN] + new[:-1])
    l64 = Forward(c, W, np.float64).logits(IDS)
    lpert = Forward(c, W, sx_factor=1 + 1e-6).logits(IDS)
    return {"max_abs_logit": float(np.abs(l32).max()), "rel_margin_positions": rel_margin(l32),
            "rel_margin_greedy": greedy_margin, "greedy_ids": new, "distinct_greedy": len(set(new)),
            "boundary_distance_ids": d_ids, "boundary_distance_greedy": min(g.distance),
            "f64_vs_f32": rel(l64.astype(np.float32), l32), "sx_1e-6_vs_f32": rel(lpert, l32),
            "argmax_f64_equal": bool((l64.argmax(-1) == l32.argmax(-1)).all())}, l32


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["check", "search", "preview"])
    ap.add_argument("args", nargs="*")
    ap.add_argument("--preset", choices=sorted(PRESETS))
    a = ap.parse_args()
    if a.mode == "check":
        seed, amp = PRESETS[a.preset or "committed"]
        W = generate(TINY, seed, amp)
        folder = a.args[0]
        F = read_safetensors(f"{folder}/online/model.safetensors")
        R = read_safetensors(f"{folder}/online/reference.safetensors")
        info, l32 = describe(TINY, W)
        info["generator_equals_checkpoint"] = all(np.array_equal(W[k], F[k]) for k in W) and len(W) == len(F)
        info["vs_transformers"] = rel(l32, R["logits"])
        info["greedy_equals_transformers"] = info["greedy_ids"] == R["greedy_ids"].tolist()
        for k, v in info.items():
            print(k, v)
    elif a.mode == "preview":
        seed, amp = PRESETS[a.preset or "robust"]
        for k, v in describe(TINY, generate(TINY, seed, amp))[0].items():
            print(k, v)
    else:
        _, amp = PRESETS[a.preset or "robust"]
        for s in range(int(a.args[0]), int(a.args[1])):
            seed = 0x0B175EED00000000 + s
            W = generate(TINY, seed, amp)
            f = Forward(TINY, W)
            l32 = f.logits(IDS)
            if rel_margin(l32) < 0.005 or min(f.distance) < 1e-6:
                continue
            new, gm = greedy(TINY, W)
            if gm < 0.005 or len(set(new)) < 24:
                continue
            g = Forward(TINY, W)
            g.logits(IDS[:PROMPT_LEN] + new[:-1])
            if min(g.distance) < 1e-6:
                continue
            print(hex(seed), "margins %.4f %.4f distinct %d" % (rel_margin(l32), gm, len(set(new))), flush=True)


if __name__ == "__main__":
    main()
