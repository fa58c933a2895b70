#!/bin/bash
# One device run of this revision's experiments (see docs/BENCHMARKS-cuda.md, "Runs"): build, probes, self test,
# m = 2048 with every kernel, cuBLAS. Run from the repository root of a tree where .pub/rotor4 holds the published
# CLI and .pub/cuda4 the native/ and bench/ folders; results go to $OUT.
set -o pipefail
L=$OUT/log.txt
{ nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv; nvcc --version | tail -2; } > $L 2>&1
S=.pub/cuda4
nvcc -O3 -std=c++17 -shared -Xcompiler -fPIC,-fvisibility=hidden -Xptxas -v -gencode arch=compute_90a,code=sm_90a \
  -o .pub/rotor4/librotor_cuda.so $S/native/cuda/rotor_cuda.cu > /tmp/ptxas.txt 2>&1
rc=$?
grep -B1 -A3 "ws_kernel\|wgmma_kernel\|gemv_kernel\|gemv8" /tmp/ptxas.txt | grep -v "^--" | grep "Compiling\|Used\|spill\|C75\|arning" | sed 's/_ZN[^ ]*\(ws_kernel\|wgmma_kernel\|gemv_kernel\)[^ ]*/&/' | cut -c1-220 >> $L
grep -i "error\|C75" /tmp/ptxas.txt | head -20 >> $L
[ $rc = 0 ] || { echo "library build failed"; tail -40 /tmp/ptxas.txt; exit 1; }
nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -o /tmp/gemv_probe $S/bench/cuda/gemv_probe.cu >> $L 2>&1 || echo "probe build failed" >> $L
[ -x /tmp/gemv_probe ] && timeout 150 /tmp/gemv_probe > $OUT/gemv_probe.txt 2>&1
echo "gemv probe rc $?" >> $L
timeout 200 .pub/rotor4/rotor selftest --device cuda > $OUT/selftest.txt 2>&1
echo "selftest rc $?" >> $L
tail -2 $OUT/selftest.txt >> $L; grep -v "^ok" $OUT/selftest.txt | head -40 >> $L
timeout 300 .pub/rotor4/rotor bench-cuda --all-paths --json $OUT/r.json > $OUT/bench.txt 2>&1
echo "bench rc $?" >> $L
{ for m in 1 8; do ROTOR_CUDA_GEMV_OLD=1 timeout 100 .pub/rotor4/rotor bench-cuda --m $m --all-paths --no-network --json /tmp/ro$m.json; done;
  echo "== m = 2048 a second time (new code)"; timeout 100 .pub/rotor4/rotor bench-cuda --m 2048 --no-network --json /tmp/r2.json; } > $OUT/bench-old-gemv-and-2048-again.txt 2>&1
echo "bench old/again rc $?" >> $L
timeout 200 python3 $S/bench/cuda/cublas_ref.py --rotor $OUT/r.json --out $OUT/c.json > $OUT/cublas.txt 2>&1
echo "cublas rc $?" >> $L
cat $L
