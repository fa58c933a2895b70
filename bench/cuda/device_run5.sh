#!/bin/bash
# One device run of the cuda5 round (docs/BENCHMARKS-cuda.md, runs 30-): build with the ptxas report, quick self test,
# the network fused (workspace / cluster forms, each trigger point) and unfused side by side, m = 32 products, the
# full self test. Run from the repository root of a tree where .pub/rotor5 holds the published CLI and .pub/cuda5 the
# native/ and bench/ folders; results go to $OUT. FULL=0 skips the full self test.
set -o pipefail
L=$OUT/log.txt
S=.pub/cuda5; B=.pub/rotor5
{ nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv; nvcc --version | tail -2; } > $L 2>&1
nvcc -O3 -std=c++17 -shared -Xcompiler -fPIC,-fvisibility=hidden -Xptxas -v -gencode arch=compute_90a,code=sm_90a \
  -o $B/librotor_cuda.so $S/native/cuda/rotor_cuda.cu > /tmp/ptxas.txt 2>&1
rc=$?
grep -A3 "gemv_sk\|absmax_kernel\|gemv_wide" /tmp/ptxas.txt | grep "Compiling\|Used\|spill" | sed 's/_ZN[0-9A-Za-z_]*__\([a-z0-9_]*kernel\)/\1/' | cut -c1-200 > /tmp/ptxas-sk.txt
grep -i "error" /tmp/ptxas.txt | head -20 >> $L; grep -A2 "gemv_wide" /tmp/ptxas.txt | grep "Used\|spill" >> $L
[ $rc = 0 ] || { echo "library build failed"; tail -40 /tmp/ptxas.txt; cat $L; exit 1; }
echo "build ok $(date +%T)" >> $L
t0=$(date +%s); timeout 150 $B/rotor selftest --device cuda --quick > /tmp/selftest-quick.txt 2>&1
echo "selftest quick rc $? $(( $(date +%s) - t0 )) s" >> $L
tail -1 /tmp/selftest-quick.txt >> $L; grep -v "^ok" /tmp/selftest-quick.txt | head -30 >> $L
for i in 1 2 3; do
  timeout 60 $B/rotor bench-cuda --m 32 --shape 2560x2560 >> $OUT/bench-net.txt 2>&1; echo "bench net rc $?" >> $L
  ROTOR_CUDA_WIDE_EP=0 timeout 60 $B/rotor bench-cuda --m 32 --shape 2560x2560 >> $OUT/bench-net-noq.txt 2>&1; echo "bench net, WIDE_EP=0 rc $?" >> $L
done
{ echo "-- default"; grep network $OUT/bench-net.txt; echo "-- ROTOR_CUDA_WIDE_EP=0 (the previous wide GEMV: the graph of main)"; grep network $OUT/bench-net-noq.txt; } | sed 's/, [0-9.]* us with the host copies in the graph, [0-9.]* us per Forward call on the host clock//' >> $L
timeout 200 $B/rotor bench-cuda --json $OUT/r.json > $OUT/bench.txt 2>&1; echo "bench rc $?" >> $L
grep network $OUT/bench.txt >> $L
{ timeout 100 $B/rotor bench-cuda --m 32 --all-paths --no-network; echo "== ROTOR_CUDA_WIDE_EP=0"; ROTOR_CUDA_WIDE_EP=0 timeout 100 $B/rotor bench-cuda --m 32 --no-network; timeout 100 $B/rotor bench-cuda --m 64 --all-paths --no-network; } > $OUT/bench-m32-m64.txt 2>&1; echo "bench m32/m64 rc $?" >> $L
echo "benches done $(date +%T)" >> $L
if [ "${FULL:-1}" = 1 ]; then
  t0=$(date +%s); timeout ${FULL_LIMIT:-240} $B/rotor selftest --device cuda > $OUT/selftest.txt 2>&1
  echo "selftest rc $? $(( $(date +%s) - t0 )) s" >> $L
  tail -1 $OUT/selftest.txt >> $L; grep -v "^ok" $OUT/selftest.txt | head -40 >> $L
fi
cat $L
