#!/bin/bash
# GEMV experiments of one device run (as device_run.sh: .pub/rotor4 = the CLI, .pub/cuda4 = native/ and bench/):
# the probe's variants, the self test with the L2 prefetch-size hint on, and bench-cuda m = 1 and 8 with the
# hint off, on, off, on.
set -o pipefail
L=$OUT/log.txt
{ nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv; nvcc --version | tail -2; } > $L 2>&1
S=.pub/cuda4
nvcc -O3 -std=c++17 -shared -Xcompiler -fPIC,-fvisibility=hidden -Xptxas -v -gencode arch=compute_90a,code=sm_90a \
  -o .pub/rotor4/librotor_cuda.so $S/native/cuda/rotor_cuda.cu > /tmp/ptxas.txt 2>&1 || { echo "library build failed"; tail -40 /tmp/ptxas.txt; exit 1; }
nvcc -O3 -std=c++17 -Xptxas -v -gencode arch=compute_90a,code=sm_90a -o /tmp/gemv_probe $S/bench/cuda/gemv_probe.cu > /tmp/ptxas2.txt 2>&1 || echo "probe build failed" >> $L
grep -A3 "gemv8\|gemv_kernel" /tmp/ptxas2.txt | grep "Compiling\|Used\|spill" | sed 's/.*function .\([^ ]*\).*/\1/' | cut -c 40-160 >> $L
[ -x /tmp/gemv_probe ] && timeout 150 /tmp/gemv_probe > $OUT/gemv_probe.txt 2>&1
echo "gemv probe rc $?" >> $L
ROTOR_CUDA_L2PF=1 timeout 200 .pub/rotor4/rotor selftest --device cuda > $OUT/selftest-l2pf.txt 2>&1
echo "selftest (L2PF=1) rc $?" >> $L
tail -1 $OUT/selftest-l2pf.txt >> $L; grep -v "^ok" $OUT/selftest-l2pf.txt | head -20 >> $L
for r in 1 2; do for pf in 0 1; do for m in 1 8; do
  echo "== L2PF=$pf m=$m round $r"
  ROTOR_CUDA_L2PF=$pf timeout 100 .pub/rotor4/rotor bench-cuda --m $m --all-paths --no-network --json /tmp/x.json
done; done; done > $OUT/bench-l2pf.txt 2>&1
echo "bench rc $?" >> $L
cat $L
