#!/usr/bin/env python3
"""transformers BitNetForCausalLM with random weights of microsoft/bitnet-b1.58-2B-4T's shape, bf16, on the GPU: prefill
(pp) and greedy generation (tg) tokens/s, the figures `rotor bench-lm MODEL --device cuda` reports, for a side-by-side
table from one run on one card (bench/cuda/lm_device_run.sh runs both).

    python3 bench/cuda/lm_transformers.py --json out/transformers.json [--prompt 512] [--gen 128] [--batches 1,32]
        [--compile-seconds 240]

Method: the model is made from BitNetConfig on the device in bf16 (its linear layers are plain bf16 nn.Linear: no
quantization_config, so no ternary kernels); pp = one forward of `prompt` random ids without cache, median of reps;
tg = model.generate(max_new_tokens = min_new_tokens = gen, greedy) from a one-token prompt at each batch size, with the
default dynamic cache, then with cache_implementation="static"; then the static cache with the forward compiled
(torch.compile, mode reduce-overhead) if that finishes within --compile-seconds. Times are wall clock after
torch.cuda.synchronize(), one warm-up run first.
"""
import argparse, json, statistics, sys, time, signal

import torch
from transformers import BitNetConfig, BitNetForCausalLM


def config(layers):
    return BitNetConfig(vocab_size=128256, hidden_size=2560, intermediate_size=6912, num_hidden_layers=layers,
                        num_attention_heads=20, num_key_value_heads=5, hidden_act="relu2", max_position_embeddings=4096,
                        rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True, bos_token_id=128000,
                        eos_token_id=128001, pad_token_id=128001)


def timed(fn, reps):
    fn()  # warm-up
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


class Timeout(Exception):
    pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--compile-seconds", type=int, default=240)
    a = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device("cuda")
    with dev:
        model = BitNetForCausalLM(config(a.layers)).to(torch.bfloat16).eval()
    res = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "transformers": __import__("transformers").__version__, "dtype": "bfloat16", "layers": a.layers, "rows": []}

    def row(test, batch, mode, seconds, tokens):
        r = {"test": test, "batch": batch, "mode": mode, "seconds": seconds, "tokens_per_second": tokens / seconds}
        res["rows"].append(r)
        print(f"{test:8} batch {batch:3} {mode:22} {r['tokens_per_second']:10.1f} tokens/s", flush=True)

    with torch.no_grad():
        ids = torch.randint(0, 128000, (1, a.prompt), device=dev)
        row(f"pp{a.prompt}", 1, "eager", timed(lambda: model(ids, use_cache=False), a.reps), a.prompt)
        batches = [int(b) for b in a.batches.split(",")]

        def gen(batch, **kw):
            x = torch.randint(0, 128000, (batch, 1), device=dev)
            return lambda: model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=a.gen,
                                          min_new_tokens=a.gen, do_sample=False, **kw)

        for b in batches:
            try:
                row(f"tg{a.gen}", b, "dynamic cache", timed(gen(b), a.reps), a.gen * b)
                row(f"tg{a.gen}", b, "static cache", timed(gen(b, cache_implementation="static"), a.reps), a.gen * b)
            except torch.OutOfMemoryError as e:
                print(f"batch {b}: out of memory ({e})", flush=True)
                torch.cuda.empty_cache()

        # torch.compile of the forward with the static cache, bounded in time.
        def alarm(*_):
            raise Timeout()
        signal.signal(signal.SIGALRM, alarm)
        signal.alarm(a.compile_seconds)
        try:
            model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
            for b in batches[:1]:
                row(f"tg{a.gen}", b, "static cache + compile", timed(gen(b, cache_implementation="static"), a.reps), a.gen * b)
        except Timeout:
            res["compile"] = f"not finished within {a.compile_seconds} s"
            print(res["compile"], flush=True)
        except Exception as e:  # compile failures are reported, not fatal
            res["compile"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
            print(res["compile"], flush=True)
        finally:
            signal.alarm(0)
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
