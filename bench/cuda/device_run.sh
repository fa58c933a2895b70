#!/bin/bash
# One run on a GPU machine: build librotor_cuda with CMake, run the CUDA self test and `rotor bench-cuda` on it.
#   bench/cuda/device_run.sh ROTOR OUT
# ROTOR: the rotor binary, published for linux-x64 (docs/CUDA.md; the machine needs no .NET); OUT: a folder for the
# results (log.txt, build.txt, selftest.txt, bench*.txt, bench*.json). The sources are those of the checkout that holds
# this script. Optional:
#   BASE_SRC=DIR   also build DIR (another revision's native/cuda) the same way and bench it in alternation with this
#                  one (ROUNDS rounds, default 2), for before/after figures from one run on one GPU
#   CUBLAS=1       also time cuBLAS bf16 and torch._int_mm on the same shapes (bench/cuda/cublas_ref.py; PyTorch)
#   ARCH=LIST      CMAKE_CUDA_ARCHITECTURES (default: CMakeLists.txt's, sm_80 + sm_90a + compute_90 PTX)
set -u -o pipefail
ROTOR=$(realpath "$1"); OUT=$(realpath -m "$2"); mkdir -p "$OUT"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
L=$OUT/log.txt
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nvcc --version | tail -2 | head -1; date -u +%FT%TZ; } > "$L" 2>&1
arch=(); [ -n "${ARCH:-}" ] && arch=(-DCMAKE_CUDA_ARCHITECTURES="$ARCH")
build() {  # build SRC_DIR BUILD_DIR LOG
    cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release "${arch[@]}" > "$3" 2>&1 && cmake --build "$2" -j "$(nproc)" >> "$3" 2>&1
}
t0=$(date +%s)
if [ -n "${BASE_SRC:-}" ]; then build "$BASE_SRC" /tmp/rotor-cuda-base "$OUT/build-base.txt" & bp=$!; fi
build "$SRC/native/cuda" /tmp/rotor-cuda "$OUT/build.txt"; rc=$?
echo "build rc $rc, $(( $(date +%s) - t0 )) s" >> "$L"
[ $rc = 0 ] || { tail -40 "$OUT/build.txt"; cat "$L"; exit 1; }
LIB=/tmp/rotor-cuda/librotor_cuda.so

t0=$(date +%s); ROTOR_CUDA_LIB=$LIB timeout 300 "$ROTOR" selftest --device cuda > "$OUT/selftest.txt" 2>&1
echo "selftest rc $?, $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT/selftest.txt")" >> "$L"
grep -v "^ok" "$OUT/selftest.txt" | head -20 >> "$L"

bench() {  # bench LIB NAME
    local t=$(date +%s)
    ROTOR_CUDA_LIB=$1 timeout 200 "$ROTOR" bench-cuda --json "$OUT/$2.json" > "$OUT/$2.txt" 2>&1
    echo "$2 rc $?, $(( $(date +%s) - t )) s; $(grep -o 'one CUDA graph.*on device data' "$OUT/$2.txt")" >> "$L"
}
if [ -n "${BASE_SRC:-}" ]; then
    wait $bp; rc=$?; echo "base build rc $rc, $(( $(date +%s) - t0 )) s since the start" >> "$L"
    [ $rc = 0 ] || { tail -40 "$OUT/build-base.txt"; cat "$L"; exit 1; }
    for r in $(seq 1 "${ROUNDS:-2}"); do bench $LIB bench-$r; bench /tmp/rotor-cuda-base/librotor_cuda.so bench-base-$r; done
else
    bench $LIB bench
fi
if [ "${CUBLAS:-0}" = 1 ]; then
    j=$OUT/bench.json; [ -f "$j" ] || j=$OUT/bench-1.json
    timeout 200 python3 "$SRC/bench/cuda/cublas_ref.py" --rotor "$j" --out "$OUT/cublas.json" > "$OUT/cublas.txt" 2>&1
    echo "cublas rc $?" >> "$L"
fi
cat "$L"
