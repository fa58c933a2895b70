#!/bin/bash
# The language model on a GPU machine, one run: build librotor_cuda with CMake, `rotor selftest --device cuda` (the
# language-model checks; all kernels with FULL=1), `rotor bench-lm random:2b4t --device cuda`, then transformers bf16
# on the same card (bench/cuda/lm_transformers.py), results under OUT.
#   bench/cuda/lm_device_run.sh ROTOR OUT [STORIES]
# ROTOR: the published rotor binary (no .NET needed on the machine); SRC: the native/cuda folder to build (default: the
# checkout's); STORIES: stories260K.bin for the greedy check against the CPU; ARCH: CMAKE_CUDA_ARCHITECTURES; HF=0 skips
# transformers.
set -u -o pipefail
ROTOR=$(realpath "$1"); OUT=$(realpath -m "$2"); STORIES=${3:-}; mkdir -p "$OUT"
SRC=${SRC:-$(cd "$(dirname "$0")/../.." && pwd)/native/cuda}
L=$OUT/log.txt
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nvcc --version | tail -2 | head -1; date -u +%FT%TZ; } > "$L" 2>&1
arch=(); [ -n "${ARCH:-}" ] && arch=(-DCMAKE_CUDA_ARCHITECTURES="$ARCH")
t0=$(date +%s)
cmake -S "$SRC" -B /tmp/rotor-cuda -DCMAKE_BUILD_TYPE=Release "${arch[@]}" > "$OUT/build.txt" 2>&1 && cmake --build /tmp/rotor-cuda -j "$(nproc)" >> "$OUT/build.txt" 2>&1
rc=$?; echo "build rc $rc, $(( $(date +%s) - t0 )) s" >> "$L"
[ $rc = 0 ] || { grep -E "error|Error" "$OUT/build.txt" | head -40; cat "$L"; exit 1; }
export ROTOR_CUDA_LIB=/tmp/rotor-cuda/librotor_cuda.so
sargs=(--lm-only); [ "${FULL:-0}" = 1 ] && sargs=(); [ -n "$STORIES" ] && sargs+=(--stories "$STORIES")
t0=$(date +%s); timeout 300 "$ROTOR" selftest --device cuda "${sargs[@]}" > "$OUT/selftest.txt" 2>&1
echo "selftest rc $?, $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT/selftest.txt")" >> "$L"
grep -v "^ok" "$OUT/selftest.txt" | head -30 >> "$L"
t0=$(date +%s); timeout 300 "$ROTOR" bench-lm random:2b4t --device cuda -p 512 -n 128 -r 3 ${BENCH_ARGS:-} --json "$OUT/rotor_lm.json" > "$OUT/bench_lm.txt" 2>&1
echo "bench-lm rc $?, $(( $(date +%s) - t0 )) s" >> "$L"; cat "$OUT/bench_lm.txt" >> "$L"
if [ "${HF:-1}" = 1 ]; then
    t0=$(date +%s); timeout 420 python3 "$(dirname "$0")/lm_transformers.py" --json "$OUT/transformers.json" ${HF_ARGS:-} > "$OUT/transformers.txt" 2>&1
    echo "transformers rc $?, $(( $(date +%s) - t0 )) s" >> "$L"; tail -12 "$OUT/transformers.txt" >> "$L"
fi
cat "$L"
