/* selftest.c — `quantfs --self-test`: the kernels checked against golden
 * hashes of their output on fixed pseudo-random inputs. The hashes were
 * recorded from kernels that match ggml's reference outputs in
 * ../shared/refs byte for byte (tests/test_kernels.c checks that), so a
 * miscompiled build (say, one that contracts a*b+c into an FMA) fails here
 * before it serves a byte. SIMD and scalar paths must also agree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

/* splitmix64: a fixed, portable generator for the inputs */
static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Inputs mixing the cases that matter: gaussian-ish weights, an outlier per
 * block, exact zeros, one-sided blocks, tiny and huge magnitudes. */
void qf_selftest_input(float *x, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        uint64_t r = next(&s);
        /* sum of four uniforms: roughly normal */
        double g = 0;
        for (int k = 0; k < 4; k++)
            g += (double)((r >> (16 * k)) & 0xffff) / 65536.0;
        float v = (float)((g - 2.0) * 0.05);
        switch ((i / 256) % 8) {
        case 1: v = i % 37 == 0 ? v * 40 : v; break;          /* outliers */
        case 2: v = (i % 256) < 64 ? 0.0f : v; break;          /* zero sub-blocks */
        case 3: v = v < 0 ? -v : v; break;                     /* one-sided */
        case 4: v *= 1e-20f; break;                            /* tiny */
        case 5: v *= 1e4f; break;                              /* large */
        case 6: v = (float)((int)(v * 64)) / 8.0f; break;      /* ties on a grid */
        default: break;
        }
        x[i] = v;
    }
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static const struct {
    uint32_t type;
    uint64_t hash;
} golden[] = {
#include "selftest_golden.h"
};

#define N 8192

int qf_self_test(FILE *out)
{
    float *x = malloc(N * sizeof *x);
    uint8_t *a = malloc(N * 4), *b = malloc(N * 4);
    int bad = 0;
    if (!x || !a || !b) {
        free(x), free(a), free(b);
        return -1;
    }
    qf_selftest_input(x, N, 42);
    for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++) {
        uint32_t t = golden[i].type;
        uint64_t len = qf_type_bytes(t, N);
        qf_quantize_ref(t, x, a, N);
        qf_quantize(t, x, b, N);
        uint64_t h = fnv1a(a, len);
        bool ok = h == golden[i].hash && !memcmp(a, b, len);
        if (out)
            fprintf(out, "%-7s %s%s\n", qf_type_get(t)->name, ok ? "ok" : "FAIL",
                    h != golden[i].hash ? " (scalar output differs from golden)"
                    : memcmp(a, b, len) ? " (SIMD output differs from scalar)" : "");
        bad += !ok;
    }
    if (out)
        fprintf(out, "self-test %s (kernels: %s)\n", bad ? "FAILED" : "passed", qf_simd_name());
    free(x), free(a), free(b);
    return bad ? -1 : 0;
}

uint64_t qf_selftest_hash(uint32_t type)
{
    float *x = malloc(N * sizeof *x);
    uint8_t *a = malloc(N * 4);
    uint64_t h = 0;
    if (x && a) {
        qf_selftest_input(x, N, 42);
        qf_quantize_ref(type, x, a, N);
        h = fnv1a(a, qf_type_bytes(type, N));
    }
    free(x), free(a);
    return h;
}
