#!/usr/bin/env python3
"""Instructions a 256-column block in the inner loops of the ternary dot kernels of a native AOT rotor binary.

Under qemu-user an Arm kernel's speed says nothing about an Arm processor, so the NEON kernels are compared by what
the compiler emitted: this script disassembles each kernel's DotCodes from the binary (symbols from rotor.dbg, the
file scripts/publish-aot.sh keeps in artifacts/aot/obj/RID/), finds its loops (a backward branch and its target),
and counts the instructions of each loop body by kind, without those of the loops inside it (nesting 0 is the
outermost loop). Which loop runs how often a 256-column block follows from the kernel's source (src/Rotor/Kernels).

    bench/aot/kernel-instructions.py [artifacts/aot/obj/linux-arm64]

Needs objdump for the binary's architecture (binutils-aarch64-linux-gnu for arm64) and nm.
"""
import re
import subprocess
import sys
from collections import Counter

obj = sys.argv[1] if len(sys.argv) > 1 else "artifacts/aot/obj/linux-arm64"
binary, symbols = f"{obj}/rotor", f"{obj}/rotor.dbg"
arm = "aarch64" in subprocess.run(["file", "-L", binary], capture_output=True, text=True).stdout
objdump = "aarch64-linux-gnu-objdump" if arm else "objdump"

KERNELS = ["PortableKernels__DotCodes", "NeonKernels__DotCodes", "NeonDotKernels__DotCodes"] if arm else \
    ["PortableKernels__DotCodes", "Avx2Kernels__DotCodes", "Avx512Kernels__DotCodes"]

nm = subprocess.run(["nm", "-S", "--defined-only", symbols], capture_output=True, text=True, check=True).stdout
found = {}
for line in nm.splitlines():
    parts = line.split()
    if len(parts) == 4 and parts[2] in "tT":
        for k in KERNELS:
            if parts[3].endswith("Rotor_Kernels_" + k) and k not in found:
                found[k] = (int(parts[0], 16), int(parts[1], 16), parts[3])

print(f"{binary}: {'arm64' if arm else 'x64'}")
print()
print("| kernel | loop (offsets) | nesting | instructions of its own | by kind |")
print("|---|---|---:|---:|---|")
for k in KERNELS:
    if k not in found:
        print(f"| {k} | not found in {symbols} | | | |")
        continue
    start, size, name = found[k]
    dis = subprocess.run([objdump, "-d", "--no-show-raw-insn", f"--start-address={start:#x}", f"--stop-address={start + size:#x}", binary],
                         capture_output=True, text=True, check=True).stdout
    insns = []
    for line in dis.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\s+(\S+)\s*(.*)", line)
        if m:
            insns.append((int(m.group(1), 16), m.group(2), m.group(3)))
    loops = set()
    for a, op, args in insns:
        t = re.search(r"\b([0-9a-f]+) <", args)
        if (op.startswith("b") or op.startswith("j") or op in ("cbz", "cbnz", "tbz", "tbnz")) and t:
            target = int(t.group(1), 16)
            if start <= target < a:
                loops.add((target, a))
    for lo, hi in sorted(loops):
        nested = [o for o in loops if o != (lo, hi) and lo <= o[0] and o[1] <= hi]
        depth = sum(1 for o in loops if o != (lo, hi) and o[0] <= lo and hi <= o[1])
        own = [op for a, op, _ in insns if lo <= a <= hi and not any(n[0] <= a <= n[1] for n in nested)]
        kinds = Counter(op.split(".")[0] for op in own)
        desc = ", ".join(f"{n} {op}" for op, n in kinds.most_common())
        print(f"| {k.replace('__', '.')} | {lo - start:#x}-{hi - start:#x} | {depth} | {len(own)} | {desc} |")
