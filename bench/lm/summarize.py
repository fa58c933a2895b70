#!/usr/bin/env python3
"""Summarizes bench/lm/compare.sh's output folder: median tokens/s per tool, test and thread count over the rounds,
and Rotor's ratios to bitnet.cpp and llama.cpp."""
import glob, json, os, re, statistics, sys

out = sys.argv[1]
rows = {}  # (tool, test, threads) -> [tokens/s]
extra = {}
for f in glob.glob(os.path.join(out, "*.json")):
    name = os.path.basename(f)
    tool = re.sub(r"-t\d+-r\d+\.json$", "", name)
    try:
        data = json.load(open(f))
    except Exception:
        continue
    for r in data:
        if "tokens_per_second" in r:   # Rotor
            key = (tool, r["test"], r["threads"])
            rows.setdefault(key, []).append(r["tokens_per_second"])
            if "share_of_bound" in r:
                extra.setdefault(key, []).append((r["share_of_bound"], r["read_gbps"], r["step_bytes"], r["resident_bytes"], r["load_seconds"], r["file_bytes"]))
        else:                          # llama-bench
            test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
            rows.setdefault((tool, test, r["n_threads"]), []).append(r["avg_ts"])
tests = sorted({(k[1], k[2]) for k in rows}, key=lambda x: (x[0][:2], x[1]))
tools = sorted({k[0] for k in rows})
heads = [h for h in ("f16", "int8", "q4") if any(t == f"rotor-{h}head" for t in tools)]
print("| test | threads | " + " | ".join(tools) + "".join(f" | Rotor ({h} head) / bitnet.cpp | Rotor ({h} head) / llama.cpp" for h in heads) + " |")
print("|---|---|" + "---|" * (len(tools) + 2 * len(heads)))
for test, threads in tests:
    med = {t: statistics.median(rows[(t, test, threads)]) for t in tools if (t, test, threads) in rows}
    def ratio(a, b):
        return f"{med[a] / med[b]:.2f}x" if a in med and b in med else "-"
    print(f"| {test} | {threads} | " + " | ".join(f"{med[t]:.2f}" if t in med else "-" for t in tools)
          + "".join(f" | {ratio(f'rotor-{h}head', 'bitnetcpp-i2_s')} | {ratio(f'rotor-{h}head', 'llamacpp-tq2_0')}" for h in heads) + " |")
print()
for key, vals in sorted(extra.items()):
    share = statistics.median(v[0] for v in vals); bw = statistics.median(v[1] for v in vals)
    print(f"{key[0]} {key[1]} t={key[2]}: {share:.0%} of the bandwidth bound ({bw:.1f} GB/s read, {vals[0][2] / 2**20:.0f} MiB a step); "
          f"resident {vals[0][3] / 2**20:.0f} MiB after load for a {vals[0][5] / 2**20:.0f} MiB file; load {statistics.median(v[4] for v in vals):.2f} s")
