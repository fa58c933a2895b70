"""Prints the kernel timeline of the network benchmark from `nsys stats -r cuda_gpu_trace -f csv` output: the last
fused replays (the end of the trace) and the last replays that ran a quantize kernel (the unfused graph)."""
import csv, sys

rows = []
with open(sys.argv[1], newline="") as f:
    r = csv.reader(f)
    head = next(r)
    si, di, ni = head.index("Start (ns)"), head.index("Duration (ns)"), head.index("Name")
    for row in r:
        rows.append((int(float(row[si])), int(float(row[di])), row[ni][:60]))
rows.sort()

def show(seg, title):
    print(f"== {title}")
    prev_end = None
    for s, d, n in seg:
        gap = "" if prev_end is None else f"{(s - prev_end) / 1000:7.2f}"
        print(f"{s / 1000:14.2f} {d / 1000:8.2f} {gap:>8}  {n}")
        prev_end = s + d

show(rows[-40:], "last 40 (fused forward replays with copies)")
q = [i for i, x in enumerate(rows) if "quantize_kernel" in x[2]]
if q:
    show(rows[max(0, q[-1] - 30):q[-1] + 10], "around the last quantize kernel (unfused replays)")
