#!/bin/bash
# The split-K GEMV's phases (ROTOR_CUDA_SK_DEBUG=1: clock64 stamps of every CTA of the last launch), cuda5 round.
S=.pub/cuda5; B=.pub/rotor5
nvcc -O3 -std=c++17 -shared -Xcompiler -fPIC,-fvisibility=hidden -gencode arch=compute_90a,code=sm_90a \
  -o $B/librotor_cuda.so $S/native/cuda/rotor_cuda.cu > /tmp/ptxas.txt 2>&1 || { tail -30 /tmp/ptxas.txt; exit 1; }
timeout 100 $B/rotor selftest --device cuda --quick > $OUT/selftest-quick.txt 2>&1; echo "selftest quick rc $?"; tail -1 $OUT/selftest-quick.txt; grep -v "^ok" $OUT/selftest-quick.txt | head -20
echo "== network (the last launch: layer 4 of a fused forward pass)"
ROTOR_CUDA_SK_DEBUG=1 timeout 100 $B/rotor bench-cuda --m 32 --shape 2560x2560 2>&1 | grep -v "^2560\|^gpu\|^dev\|^n x"
echo "== network again, no stamps"
timeout 100 $B/rotor bench-cuda --m 32 --shape 2560x2560 2>&1 | grep network
echo "== 4096x4096 m = 32 gemvsplitk, chained"
ROTOR_CUDA_SK_DEBUG=1 timeout 100 $B/rotor bench-cuda --m 32 --shape 4096x4096 --all-paths --no-network 2>&1 | grep -v "^gpu\|^dev"
