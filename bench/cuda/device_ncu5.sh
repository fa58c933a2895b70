#!/bin/bash
# Nsight Compute on the m = 32 kernels (cuda5 round): the split-K cluster GEMV, the wide GEMV, and the network's
# kernels (fused product, row absmax, quantize), each profiled alone (isolated durations, stall reasons).
set -o pipefail
S=.pub/cuda5; B=.pub/rotor5
nvcc -O3 -std=c++17 -shared -Xcompiler -fPIC,-fvisibility=hidden -gencode arch=compute_90a,code=sm_90a -lineinfo \
  -o $B/librotor_cuda.so $S/native/cuda/rotor_cuda.cu > /tmp/ptxas.txt 2>&1 || { tail -30 /tmp/ptxas.txt; exit 1; }
N="ncu --target-processes all --kernel-name-base mangled --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis"
timeout 120 $N --kernel-name regex:gemv_sk_kernelILi4ELi2ELb0 --launch-skip 20 --launch-count 1 $B/rotor bench-cuda --m 32 --shape 4096x4096 --no-network > $OUT/ncu-sk.txt 2>&1; echo "sk $?"
timeout 120 $N --kernel-name regex:gemv_wide --launch-skip 20 --launch-count 1 $B/rotor bench-cuda --m 32 --shape 4096x4096 --all-paths --no-network > $OUT/ncu-wide.txt 2>&1; echo "wide $?"
timeout 150 $N --kernel-name regex:"gemv_sk_kernelILi4ELi1ELb1|absmax|quantize|gemv_wide" --launch-skip 40 --launch-count 8 $B/rotor bench-cuda --m 32 --shape 2560x2560 > $OUT/ncu-net.txt 2>&1; echo "net $?"
grep -h "gemv\|absmax\|quantize\|Duration\|Elapsed Cycles\|Registers\|Achieved Occ\|Cluster\|Stall\|Warp Cycles Per Issued" $OUT/ncu-*.txt | cut -c1-160 | head -150
