#!/bin/bash
# Run 31 of the cuda5 round: build, the m = 32 products and the network with each ROTOR_CUDA_SK_TRIGGER (the H100
# machines have Nsight Compute, not Nsight Systems).
set -o pipefail
L=$OUT/log.txt
S=.pub/cuda5; B=.pub/rotor5
nvcc -O3 -std=c++17 -shared -Xcompiler -fPIC,-fvisibility=hidden -gencode arch=compute_90a,code=sm_90a \
  -o $B/librotor_cuda.so $S/native/cuda/rotor_cuda.cu > /tmp/ptxas.txt 2>&1 || { tail -30 /tmp/ptxas.txt; exit 1; }
echo "build ok $(date +%T)" > $L
{ which nsys ncu; ls /usr/local/cuda/bin 2>/dev/null | grep -i "nsys\|ncu"; ls /opt/nvidia 2>/dev/null; } >> $L 2>&1
for t in 0 1 2; do
  ROTOR_CUDA_SK_TRIGGER=$t timeout 60 $B/rotor bench-cuda --m 32 --all-paths --shape 4096x4096 > $OUT/bench-trig$t.txt 2>&1
  echo "trigger $t rc $?" >> $L; grep -v "^gpu\|^device\|^n x k" $OUT/bench-trig$t.txt >> $L
done
cat $L
