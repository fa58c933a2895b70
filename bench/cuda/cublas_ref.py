#!/usr/bin/env python3
"""cuBLAS through PyTorch on the shapes of `rotor bench-cuda`, on the same GPU, and one table next to Rotor's figures.

    rotor bench-cuda --json rotor.json
    python3 bench/cuda/cublas_ref.py --rotor rotor.json [--out cublas.json]

Measures, each as the median of 15 replays of a CUDA graph holding enough repetitions for about 2 ms:
  bf16   y = x @ W.T with x (m, k) and W (n, k) in bfloat16 (cuBLAS GEMM/GEMV)
  int8   torch._int_mm(x, W.T) with x (m, k) and W (n, k) in int8, int32 out (cuBLASLt IMMA); needs m > 16;
         timed twice (int8_us, int8_us_2: the run-to-run spread), the comparisons use the faster
  copy   device-to-device copy of 1 GiB, bandwidth counting bytes read and written
and prints, per shape and m: Rotor's time, weight GB/s and TOPS, cuBLAS's times and Rotor's speedup over each.
"""
import argparse
import json
import statistics
import sys

import torch

SHAPES = [(2560, 2560), (6912, 2560), (2560, 6912), (4096, 4096), (16384, 4096)]
MS = [1, 8, 32, 128, 512, 2048]


def time_us(fn, target_ms=2.0, reps=15):
    """Median microseconds of one call of fn, from CUDA events around graph replays."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    fn()
    e1.record()
    torch.cuda.synchronize()
    inner = int(min(max(target_ms / max(e0.elapsed_time(e1), 1e-3), 1), 500))
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(inner):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        e0.record()
        graph.replay()
        e1.record()
        torch.cuda.synchronize()
        times.append(e0.elapsed_time(e1) * 1000.0 / inner)
    return statistics.median(times)


def copy_gbps(nbytes=1 << 30, reps=20):
    a = torch.ones(nbytes, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    b.copy_(a)
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    v = []
    for _ in range(reps):
        e0.record()
        b.copy_(a)
        e1.record()
        torch.cuda.synchronize()
        v.append(2 * nbytes / (e0.elapsed_time(e1) * 1e-3) / 1e9)
    return statistics.median(v)


def measure(shapes, ms):
    out = []
    for n, k in shapes:
        g = torch.Generator(device="cuda").manual_seed(n + k)
        w16 = torch.randint(-1, 2, (n, k), device="cuda", generator=g).to(torch.bfloat16)
        w8 = w16.to(torch.int8)
        for m in ms:
            x16 = torch.randn(m, k, device="cuda", generator=g).to(torch.bfloat16)
            x8 = torch.randint(-127, 128, (m, k), device="cuda", generator=g, dtype=torch.int8)
            y16 = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
            bf16 = time_us(lambda: torch.matmul(x16, w16.t(), out=y16))
            try:
                int8_1 = time_us(lambda: torch._int_mm(x8, w8.t()))
                int8_2 = time_us(lambda: torch._int_mm(x8, w8.t()))
                int8 = min(int8_1, int8_2)
            except RuntimeError as e:  # cuBLASLt's int8 path refuses m <= 16
                int8 = int8_1 = int8_2 = None
                print(f"# _int_mm {n}x{k} m={m}: {str(e).splitlines()[0]}", file=sys.stderr)
            out.append({"n": n, "k": k, "m": m, "bf16_us": bf16, "int8_us": int8, "int8_us_1": int8_1, "int8_us_2": int8_2})
            print(f"# {n}x{k} m={m}: bf16 {bf16:.2f} us, int8 {'n/a' if int8 is None else f'{int8_1:.2f} / {int8_2:.2f} us'}", file=sys.stderr, flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rotor", help="JSON written by `rotor bench-cuda --json`")
    ap.add_argument("--out", help="write cuBLAS's figures as JSON")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("cublas_ref.py: PyTorch sees no CUDA device")

    rotor = json.load(open(args.rotor)) if args.rotor else None
    shapes, ms = SHAPES, MS
    if rotor:
        shapes = sorted({(p["n"], p["k"]) for p in rotor["products"]}, key=SHAPES.index)
        ms = sorted({p["m"] for p in rotor["products"]})
    gpu = torch.cuda.get_device_name()
    copy = copy_gbps()
    ref = measure(shapes, ms)
    if args.out:
        json.dump({"gpu": gpu, "torch": torch.__version__, "copy_gbps": copy, "products": ref}, open(args.out, "w"), indent=2)

    print(f"GPU: {gpu}; torch {torch.__version__}; device-to-device copy {copy:.0f} GB/s (read + write)")
    if rotor and rotor.get("gpu") and rotor["gpu"] != gpu:
        print(f"warning: Rotor's figures come from {rotor['gpu']}, cuBLAS's from {gpu}")
    prods = (rotor or {"products": []})["products"]
    auto = {(p["n"], p["k"], p["m"]): p for p in prods if p["path"].startswith("auto") and "nopdl" not in p["path"]}
    iso = {(p["n"], p["k"], p["m"]): p for p in prods if p["path"] == "auto-nopdl"}
    cold = {(p["n"], p["k"], p["m"]): p for p in prods if p["path"] == "cold auto"}
    cold_iso = {(p["n"], p["k"], p["m"]): p for p in prods if p["path"] == "cold auto-nopdl"}
    print("rotor us: back to back with programmatic dependent launch (as a model's layers run); isolated: each launch")
    print("waits for the previous one, as cuBLAS's are timed here; GB/s, %copy and TOPS from the first, speedups from the second")
    head = (f"{'n x k':<12} {'m':>5} | {'rotor us':>9} {'isolated':>9} {'GB/s':>6} {'%copy':>6} {'TOPS':>7} | {'bf16 us':>9} {'int8 us':>9} |"
            f" {'x bf16':>7} {'x int8':>7}")
    print(head)
    print("-" * len(head))
    for r in ref:
        key = (r["n"], r["k"], r["m"])
        p = auto.get(key)
        q = iso.get(key, p)
        i8 = "n/a" if r["int8_us"] is None else f"{r['int8_us']:9.2f}"
        if p:
            vs8 = "n/a" if r["int8_us"] is None else f"{r['int8_us'] / q['us']:6.2f}x"
            print(f"{r['n']}x{r['k']:<7} {r['m']:>5} | {p['us']:9.2f} {q['us']:9.2f} {p['gbps']:6.0f} {100 * p['gbps'] / copy:5.0f}% {p['tops']:7.1f} | "
                  f"{r['bf16_us']:9.2f} {i8:>9} | {r['bf16_us'] / q['us']:6.2f}x {vs8:>7}")
        else:
            print(f"{r['n']}x{r['k']:<7} {r['m']:>5} | {'':>9} {'':>9} {'':>6} {'':>6} {'':>7} | {r['bf16_us']:9.2f} {i8:>9} |")

    if rotor:
        print()
        key = (16384, 4096, 1)
        b = next((r for r in ref if (r["n"], r["k"], r["m"]) == key), None)
        for label, table in (("back to back (pdl)", auto), ("isolated", iso), ("cold L2, back to back (pdl)", cold),
                             ("cold L2, isolated", cold_iso)):
            g = table.get(key)
            if g and b:
                print(f"target GEMV m=1 16384x4096, {label}: {g['us']:.2f} us, {g['gbps']:.0f} GB/s = {100 * g['gbps'] / copy:.0f}% of copy "
                      f"(>= 75%), {b['bf16_us'] / g['us']:.1f}x cuBLAS bf16 (>= 5x)")
        for r in ref:
            if r["m"] == 2048 and r["int8_us"] is not None and (r["n"], r["k"], 2048) in auto:
                p = iso.get((r["n"], r["k"], 2048), auto[(r["n"], r["k"], 2048)])
                print(f"target GEMM m=2048 {r['n']}x{r['k']}: rotor {p['us']:.1f} us ({p['tops']:.0f} TOPS) vs _int_mm {r['int8_us']:.1f} us "
                      f"(the faster of {r['int8_us_1']:.1f} and {r['int8_us_2']:.1f}; {'met' if p['us'] <= r['int8_us'] else 'NOT met'})")
        net = rotor.get("network")
        if net:
            print(f"target network 4 x 2048, batch 32, one graph: {net['device_us']:.1f} us on device data "
                  f"({'met' if net['device_us'] < 30 else 'NOT met'} < 30 us; {net.get('device_no_pdl_us', float('nan')):.1f} us without pdl), "
                  f"{net['with_copies_us']:.1f} us with host copies in the graph")


if __name__ == "__main__":
    main()
