/* kernels.c — throughput of every kernel, scalar reference vs dispatched
 * (SIMD) path, on the self-test input mix. Prints ratios to memcpy of the
 * same input (a ceiling nothing beats) so numbers compare across machines.
 *     bench_kernels [REPS [TYPE...]]   (TYPE: only these, e.g. q4_K q6_K;
 * run N copies at once, one per core, for what N cores give a kernel) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"

static int wanted(int argc, char **argv, uint32_t type)
{
    if (argc <= 2)
        return 1;
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], qf_type_get(type)->name))
            return 1;
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    size_t n = (size_t)1 << 22; /* 16 MiB of f32 */
    int reps = argc > 1 ? atoi(argv[1]) : 3;
    float *x = malloc(n * 4);
    uint8_t *y = malloc(n * 4);
    qf_selftest_input(x, n, 1);
    double t0 = now();
    for (int r = 0; r < reps * 20; r++) {
        memcpy(y, x, n * 4);
        __asm__ volatile("" ::"r"(y) : "memory");
    }
    double mcpy = (now() - t0) / (reps * 20);
    printf("input %zu MiB f32, memcpy %.0f MB/s; kernels: %s\n", n * 4 >> 20, n * 4 / mcpy / 1e6, qf_simd_name());
    printf("%-7s %12s %12s %10s %12s\n", "type", "scalar MB/s", "simd MB/s", "simd/scal", "simd/memcpy");
    static const uint32_t types[] = {QF_F16, QF_BF16, QF_Q8_0, QF_Q4_0, QF_Q4_1, QF_Q5_0, QF_Q5_1,
                                     QF_Q2_K, QF_Q3_K, QF_Q4_K, QF_Q5_K, QF_Q6_K, QF_IQ4_NL, QF_IQ4_XS,
                                     QF_IQ3_S, QF_IQ3_XXS};
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        if (!wanted(argc, argv, types[k]))
            continue;
        double best[2] = {1e9, 1e9};
        for (int s = 0; s < 2; s++)
            for (int r = 0; r < reps; r++) {
                double t = now();
                qf_quantize_opt(types[k], x, y, n, s == 0);
                t = now() - t;
                if (t < best[s])
                    best[s] = t;
            }
        printf("%-7s %12.0f %12.0f %10.2f %12.3f\n", qf_type_get(types[k])->name, n * 4 / best[0] / 1e6,
               n * 4 / best[1] / 1e6, best[0] / best[1], mcpy / best[1]);
    }
    /* the importance-weighted kernels (llama-quantize --imatrix), rows of
     * 4096 with positive weights spanning decades */
    const size_t row = 4096;
    float *w = malloc(row * 4);
    qf_selftest_input(w, row, 7);
    for (size_t i = 0; i < row; i++)
        w[i] = w[i] < 0 ? -w[i] + 1e-3f : w[i] + 1e-3f;
    for (size_t k = 3; k < sizeof types / sizeof *types; k++) {
        if (!wanted(argc, argv, types[k]))
            continue;
        double best[2] = {1e9, 1e9};
        size_t rb = qf_type_bytes(types[k], row);
        for (int s = 0; s < 2; s++)
            for (int r = 0; r < reps; r++) {
                double t = now();
                for (size_t o = 0; o + row <= n; o += row)
                    qf_quantize_row_imat(types[k], x + o, row, w, y + o / row * rb, s == 0);
                t = now() - t;
                if (t < best[s])
                    best[s] = t;
            }
        printf("%-7s %12.0f %12.0f %10.2f %12.3f  (imatrix)\n", qf_type_get(types[k])->name, n * 4 / best[0] / 1e6,
               n * 4 / best[1] / 1e6, best[0] / best[1], mcpy / best[1]);
    }
    free(w);
    free(x);
    free(y);
    return 0;
}
