#!/bin/bash
# The last run of the cuda5 round: build, full self test, the m = 32 products and the network (twice, and once with
# ROTOR_CUDA_WIDE_EP=0: the wide GEMV of main), m = 64. Same layout as device_run5.sh.
set -o pipefail
L=$OUT/log.txt
S=.pub/cuda5; B=.pub/rotor5
nvcc -O3 -std=c++17 -shared -Xcompiler -fPIC,-fvisibility=hidden -Xptxas -v -gencode arch=compute_90a,code=sm_90a \
  -o $B/librotor_cuda.so $S/native/cuda/rotor_cuda.cu > /tmp/ptxas.txt 2>&1 || { tail -30 /tmp/ptxas.txt; exit 1; }
echo "build ok $(date +%T)" > $L
t0=$(date +%s); timeout 240 $B/rotor selftest --device cuda > $OUT/selftest.txt 2>&1
echo "selftest rc $? $(( $(date +%s) - t0 )) s" >> $L
tail -1 $OUT/selftest.txt >> $L; grep -v "^ok" $OUT/selftest.txt | head -40 >> $L
{ for i in 1 2; do timeout 100 $B/rotor bench-cuda --m 32; done; echo "== ROTOR_CUDA_WIDE_EP=0"; ROTOR_CUDA_WIDE_EP=0 timeout 100 $B/rotor bench-cuda --m 32;
  timeout 100 $B/rotor bench-cuda --m 64 --no-network; } > $OUT/bench-final.txt 2>&1
echo "bench rc $?" >> $L
grep network $OUT/bench-final.txt | sed 's/ us per Forward call on the host clock/ us Forward (host)/' >> $L
cat $L
