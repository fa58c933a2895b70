// Vector integer throughput of one core: 8 independent chains of one AVX2 instruction (or a pair alternating), as
// billions of instructions a second. The ternary GEMV's inner loop on AVX2 (src/Rotor/Kernels/Avx2.cs, Rows4x1)
// issues 15 vector ALU instructions for every 32 bytes of weights a row (4 vpand, 3 vpsrlw, 4 vpmaddubsw, 4 vpaddw),
// so this rate over 15, times 32 bytes, bounds the bytes of ternary rows one core can multiply a second.
//
//   gcc -O2 -mavx2 bench/probes/vector_throughput.c -o /tmp/vt && /tmp/vt
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define CHAINS(op)                                                                                                     \
    __asm__ volatile(op " %8,%0,%0\n\t" op " %8,%1,%1\n\t" op " %8,%2,%2\n\t" op " %8,%3,%3\n\t" op " %8,%4,%4\n\t" op \
                        " %8,%5,%5\n\t" op " %8,%6,%6\n\t" op " %8,%7,%7"                                              \
                     : "+x"(v0), "+x"(v1), "+x"(v2), "+x"(v3), "+x"(v4), "+x"(v5), "+x"(v6), "+x"(v7)                  \
                     : "x"(k))
#define SHIFTS                                                                                                         \
    __asm__ volatile("vpsrlw $1,%0,%0\n\tvpsrlw $1,%1,%1\n\tvpsrlw $1,%2,%2\n\tvpsrlw $1,%3,%3\n\t"                    \
                     "vpsrlw $1,%4,%4\n\tvpsrlw $1,%5,%5\n\tvpsrlw $1,%6,%6\n\tvpsrlw $1,%7,%7"                        \
                     : "+x"(v0), "+x"(v1), "+x"(v2), "+x"(v3), "+x"(v4), "+x"(v5), "+x"(v6), "+x"(v7))
#define RUN(name, body)                                                                                                \
    do {                                                                                                               \
        double t0 = now();                                                                                             \
        for (long i = 0; i < n; i++) { body; }                                                                         \
        printf("%-12s %.2f G instructions/s\n", name, 8.0 * n / (now() - t0) / 1e9);                                   \
    } while (0)

int main(void) {
    const long n = 200000000;
    __m256i v0 = _mm256_set1_epi8(1), v1 = v0, v2 = v0, v3 = v0, v4 = v0, v5 = v0, v6 = v0, v7 = v0;
    __m256i k = _mm256_set1_epi8(3);
    RUN("vpaddw", CHAINS("vpaddw"));
    RUN("vpand", CHAINS("vpand"));
    RUN("vpsrlw", SHIFTS);
    RUN("vpmaddubsw", CHAINS("vpmaddubsw"));
    RUN("vpshufb", CHAINS("vpshufb"));
    return (int)_mm256_extract_epi32(_mm256_add_epi32(v0, v7), 0) & 1;
}
