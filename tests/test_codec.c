/* test_codec.c — kernels against ggml's own output (../shared/refs), the
 * SIMD paths against the scalar reference, float conversions at their edges,
 * the GGUF parser on valid and hostile inputs, and layouts. */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "quant_impl.h"
#include "testutil.h"

static const char *ref_types[] = {"f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1",
                                  "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"};

static const struct qf_gguf_tensor *find_tensor(const struct qf_gguf *g, const char *name)
{
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name))
            return &g->tensors[i];
    return NULL;
}

/* For every tensor of src: the bytes our kernel writes (scalar and
 * dispatched) for the reference file's type equal the reference bytes.
 * Which type a tensor gets is the plan's business (test_plan_*, and the
 * mount tests against llama-quantize): these refs were made with an older
 * llama.cpp whose q2_k/q3_k fallback was IQ4_NL, which keeps that kernel
 * covered. */
static void check_against_refs(const char *src_path, const char *ref_fmt)
{
    struct tfile src;
    assert_int_equal(tfile_open(&src, src_path), 0);
    for (size_t k = 0; k < sizeof ref_types / sizeof *ref_types; k++) {
        char path[4096];
        snprintf(path, sizeof path, ref_fmt, shared_dir(), ref_types[k]);
        struct tfile ref;
        assert_int_equal(tfile_open(&ref, path), 0);
        const char *vname = !strcmp(ref_types[k], "f16") ? "fp16" : ref_types[k];
        int vi = qf_view_index(vname);
        assert_true(vi >= 0);
        size_t nv;
        const struct qf_view *v = &qf_views(&nv)[vi];
        for (uint64_t i = 0; i < src.g->n_tensors; i++) {
            const struct qf_gguf_tensor *t = &src.g->tensors[i], *r = find_tensor(ref.g, t->name);
            assert_non_null(r);
            uint32_t ty = r->type;
            (void)v;
            float *x = malloc(t->nbytes);
            uint8_t *a = malloc(r->nbytes + 1), *b = malloc(r->nbytes + 1), *want = malloc(r->nbytes + 1);
            assert_int_equal(tfile_pread(&src, x, t->nbytes, t->offset), 0);
            assert_int_equal(tfile_pread(&ref, want, r->nbytes, r->offset), 0);
            if (ty == t->type) {
                assert_memory_equal(x, want, r->nbytes);
            } else {
                assert_int_equal(qf_quantize_ref(ty, x, a, t->nelems), 0);
                assert_int_equal(qf_quantize(ty, x, b, t->nelems), 0);
                if (memcmp(a, want, r->nbytes))
                    fail_msg("%s %s (%s): scalar kernel differs from ggml", vname, t->name, qf_type_get(ty)->name);
                if (memcmp(b, want, r->nbytes))
                    fail_msg("%s %s (%s): SIMD kernel differs from ggml", vname, t->name, qf_type_get(ty)->name);
            }
            free(x), free(a), free(b), free(want);
        }
        tfile_close(&ref);
    }
    tfile_close(&src);
}

static void test_kernels_vs_ggml_edge_cases(void **state)
{
    (void)state;
    char p[4096];
    snprintf(p, sizeof p, "%s/refs/kernels.gguf", shared_dir());
    check_against_refs(p, "%s/refs/kernels.%s.gguf");
}

static void test_kernels_vs_ggml_stories260k(void **state)
{
    (void)state;
    char p[4096];
    snprintf(p, sizeof p, "%s/models/stories260K/gguf/stories260K.gguf", shared_dir());
    check_against_refs(p, "%s/refs/stories260K.%s.gguf");
}

/* Whole view files built by the plan and read through the one walk equal
 * llama-quantize's own files (../shared/refs/mixes), byte for byte, and
 * the plan answers "which type, and why". */
static void test_layout_matches_llama_quantize(void **state)
{
    (void)state;
    static const char *const types[] = {"q8_0", "q6_k", "q5_k_m", "q5_k_s", "q5_1", "q5_0", "q4_k_m", "q4_k_s",
                                        "q4_1", "q4_0", "q3_k_l", "q3_k_m", "q3_k_s", "q2_k", "f16", "bf16"};
    char p[4096];
    snprintf(p, sizeof p, "%s/models/stories260K/gguf/stories260K.gguf", shared_dir());
    struct tfile src;
    assert_int_equal(tfile_open(&src, p), 0);
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        size_t nv;
        const struct qf_view *v = &qf_views(&nv)[qf_view_index(types[k])];
        struct qf_layout *l;
        char err[256];
        assert_int_equal(qf_layout_gguf(src.g, qf_view_resolve(v, QF_FMT_GGUF), NULL, NULL, &l, err, sizeof err), 0);
        snprintf(p, sizeof p, "%s/refs/mixes/stories260K.%s.gguf", shared_dir(), types[k]);
        struct tfile ref;
        assert_int_equal(tfile_open(&ref, p), 0);
        assert_int_equal(l->size, ref.size);
        uint8_t *buf = malloc(l->size), *want = malloc(l->size);
        assert_int_equal(qf_layout_read(l, 0, l->size, buf, tfile_pread_cb, &src), 0);
        assert_int_equal(tfile_pread(&ref, want, l->size, 0), 0);
        if (memcmp(buf, want, l->size)) {
            size_t at = 0;
            while (buf[at] == want[at])
                at++;
            fail_msg("%s differs from llama-quantize's file at byte %zu", types[k], at);
        }
        free(buf), free(want);
        tfile_close(&ref);
        qf_layout_free(l);
    }
    /* q4_k_m: ffn_down (rows of 172) takes q4_K's fallback q5_0, which
     * does not fit either: f16; the output is q6_K, falling back to q8_0 */
    size_t nv;
    struct qf_layout *l;
    char err[256];
    assert_int_equal(qf_layout_gguf(src.g, &qf_views(&nv)[qf_view_index("q4_k_m")], NULL, NULL, &l, err, sizeof err), 0);
    const struct qf_tensor_plan *t = qf_layout_tensor(l, "blk.4.ffn_down.weight");
    assert_non_null(t);
    assert_int_equal(t->type, QF_F16);
    assert_true(t->fallback);
    assert_non_null(strstr(t->why, "use_more_bits"));
    t = qf_layout_tensor(l, "output.weight");
    assert_int_equal(t->type, QF_Q8_0);
    assert_int_equal(qf_layout_tensor(l, "blk.0.attn_norm.weight")->type, QF_F32);
    assert_int_equal(l->n_fallback, 36); /* llama-quantize: "36 of 48 tensor(s) required fallback" */
    assert_string_equal(l->tensors[0].name, "output.weight");
    qf_layout_free(l);
    tfile_close(&src);
}

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* f16 <-> f32 round trip is exact for every half; f32 -> f16 rounds to the
 * nearest half, ties to even (checked at midpoints of every pair of
 * neighbouring halves). */
static void test_f16_conversion(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = qf_f16_to_f32((uint16_t)h);
        if (((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff)) {
            assert_true(isnan(f));
            assert_int_equal(qf_f32_to_f16(f), (h & 0x8000) | 0x7e00);
            continue;
        }
        assert_int_equal(qf_f32_to_f16(f), h);
        uint16_t next = (uint16_t)(h + 1);
        /* neighbours must both be finite; the overflow edge is checked below */
        if ((h & 0x7fff) >= 0x7bff || (next & 0x7fff) == 0)
            continue;
        float g = qf_f16_to_f32(next);
        double mid = ((double)f + (double)g) / 2; /* exact in double */
        float fm = (float)mid;
        assert_true((double)fm == mid);
        uint16_t want = (h & 1) ? next : (uint16_t)h;
        assert_int_equal(qf_f32_to_f16(fm), want);
        assert_int_equal(qf_f32_to_f16(nextafterf(fm, g)), next);
        assert_int_equal(qf_f32_to_f16(nextafterf(fm, f)), h);
    }
    assert_int_equal(qf_f32_to_f16(65520.0f), 0x7c00); /* rounds up to inf */
    assert_int_equal(qf_f32_to_f16(65519.99f), 0x7bff);
    assert_int_equal(qf_f32_to_f16(1e30f), 0x7c00);
    assert_int_equal(qf_f32_to_f16(-INFINITY), 0xfc00);
    assert_int_equal(qf_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(qf_f32_to_f16(0x1p-25f), 0);        /* tie to even: 0 */
    assert_int_equal(qf_f32_to_f16(0x1.000002p-25f), 1); /* just above: smallest subnormal */
}

static void test_bf16_conversion(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = qf_bf16_to_f32((uint16_t)h);
        if (isnan(f))
            continue;
        assert_int_equal(qf_f32_to_bf16(f), h);
    }
    assert_int_equal(qf_f32_to_bf16(u2f(0x3f808000)), 0x3f80); /* tie, even stays */
    assert_int_equal(qf_f32_to_bf16(u2f(0x3f818000)), 0x3f82); /* tie, odd rounds up */
    assert_int_equal(qf_f32_to_bf16(u2f(0x3f808001)), 0x3f81);
    assert_int_equal(qf_f32_to_bf16(u2f(0x7f7fffff)), 0x7f80); /* FLT_MAX -> inf */
    assert_int_equal(qf_f32_to_bf16(u2f(0x7f800001)), 0x7fc0); /* signalling NaN quieted */
    assert_int_equal(qf_f32_to_bf16(u2f(0x00000001)), 0x0000); /* subnormal rounds */
    (void)f2u;
}

/* The validation every converted input goes through (SIMD body and tail):
 * one NaN or Inf anywhere is found, extreme finite values are not. */
static void test_finite_check(void **state)
{
    (void)state;
    float x[40];
    for (size_t n = 1; n <= 40; n++) {
        for (size_t i = 0; i < n; i++)
            x[i] = (i % 3 == 0) ? FLT_MAX : (i % 3 == 1) ? -1e-45f : -0.f;
        assert_true(qf_finite(QF_F32, x, n));
        for (size_t bad = 0; bad < n; bad++) {
            static const float nonfinite[] = {INFINITY, -INFINITY, NAN};
            float keep = x[bad];
            x[bad] = nonfinite[bad % 3];
            if (qf_finite(QF_F32, x, n))
                fail_msg("n %zu: %g at %zu not found", n, (double)x[bad], bad);
            x[bad] = keep;
        }
    }
}

/* f16/bf16/q8_0 kernels that check their input as they convert it (the
 * type table's quantize_simd_checked): the bytes of the reference
 * conversion, and the finite check's answer, with one NaN or Inf anywhere
 * (SIMD body and tail), extreme finite values too. */
static void test_convert_checked(void **state)
{
    (void)state;
#ifdef QF_HAVE_X86
    if (!qf_simd_available())
        skip();
    float x[40];
    uint8_t a[80], b[80];
    for (int t = 0; t < 2; t++) {
        uint32_t type = t ? QF_BF16 : QF_F16;
        bool (*fused)(const float *, uint8_t *, size_t) = qf_type_get(type)->quantize_simd_checked;
        assert_non_null(fused);
        for (size_t n = 1; n <= 40; n++) {
            for (size_t i = 0; i < n; i++)
                x[i] = (i % 4 == 0) ? FLT_MAX : (i % 4 == 1) ? -1e-45f : (i % 4 == 2) ? -0.f : 65519.f;
            assert_true(fused(x, b, n));
            assert_int_equal(qf_quantize_ref(type, x, a, n), 0);
            assert_memory_equal(a, b, 2 * n);
            for (size_t bad = 0; bad < n; bad++) {
                static const float nonfinite[] = {INFINITY, -INFINITY, NAN};
                float keep = x[bad];
                x[bad] = nonfinite[bad % 3];
                if (fused(x, b, n))
                    fail_msg("%s n %zu: %g at %zu not found", t ? "bf16" : "f16", n, (double)x[bad], bad);
                assert_int_equal(qf_quantize_ref(type, x, a, n), 0);
                assert_memory_equal(a, b, 2 * n);
                x[bad] = keep;
            }
        }
    }
    /* q8_0: blocks of 32, the one with a NaN or Inf by the reference */
    float q[96];
    uint8_t qa[102], qb[102];
    bool (*q8)(const float *, uint8_t *, size_t) = qf_type_get(QF_Q8_0)->quantize_simd_checked;
    assert_non_null(q8);
    for (size_t n = 32; n <= 96; n += 32) {
        qf_selftest_input(q, n, n);
        assert_true(q8(q, qb, n / 32));
        assert_int_equal(qf_quantize_ref(QF_Q8_0, q, qa, n), 0);
        assert_memory_equal(qa, qb, n / 32 * 34);
        for (size_t bad = 0; bad < n; bad += 7) {
            static const float nonfinite[] = {INFINITY, -INFINITY, NAN};
            float keep = q[bad];
            q[bad] = nonfinite[bad % 3];
            if (q8(q, qb, n / 32))
                fail_msg("q8_0 n %zu: %g at %zu not found", n, (double)q[bad], bad);
            assert_int_equal(qf_quantize_ref(QF_Q8_0, q, qa, n), 0);
            assert_memory_equal(qa, qb, n / 32 * 34);
            q[bad] = keep;
        }
    }
#else
    skip();
#endif
}

/* qf_quantize_checked, the layout's entry: the reference's bytes for
 * finite input and -EBADMSG for a NaN or Inf, whether a type has a checked
 * kernel (f16, q8_0) or is checked first (q4_0, q4_K), SIMD or scalar. */
static void test_quantize_checked(void **state)
{
    (void)state;
    static const uint32_t types[] = {QF_F16, QF_BF16, QF_Q8_0, QF_Q4_0, QF_Q4_K};
    float x[512];
    uint8_t a[2048], b[2048];
    for (size_t t = 0; t < sizeof types / sizeof *types; t++)
        for (int scalar = 0; scalar < 2; scalar++) {
            qf_selftest_input(x, 512, 7 + t);
            assert_int_equal(qf_quantize_checked(types[t], x, b, 512, scalar), 0);
            assert_int_equal(qf_quantize_ref(types[t], x, a, 512), 0);
            assert_memory_equal(a, b, qf_type_bytes(types[t], 512));
            for (size_t bad = 0; bad < 512; bad += 101) {
                float keep = x[bad];
                x[bad] = bad % 2 ? NAN : -INFINITY;
                if (qf_quantize_checked(types[t], x, b, 512, scalar) != -EBADMSG)
                    fail_msg("%s%s: %g at %zu passed", qf_type_get(types[t])->name, scalar ? " scalar" : "",
                             (double)x[bad], bad);
                x[bad] = keep;
            }
        }
    assert_int_equal(qf_quantize_checked(QF_Q8_0, x, b, 31, false), -EINVAL);
}

/* Blocks of n values whose inputs are all finite are equal in a and b.
 * Non-finite values never reach a GGUF kernel (the layout refuses the
 * tensor first, as llama-quantize does), and where one meets two NaN
 * operands the payload kept depends on the compiler's operand order (gcc
 * emits both orders for one C expression), so for them only "no crash"
 * is a contract. */
static bool finite_blocks_equal(uint32_t type, const float *x, const uint8_t *a, const uint8_t *b, size_t n)
{
    const struct qf_type_info *t = qf_type_get(type);
    size_t bytes = qf_type_bytes(type, t->blck);
    for (size_t i = 0; i + t->blck <= n; i += t->blck) {
        bool finite = true;
        for (size_t k = 0; k < t->blck; k++)
            finite = finite && isfinite(x[i + k]);
        if (finite && memcmp(a + i / t->blck * bytes, b + i / t->blck * bytes, bytes))
            return false;
    }
    return true;
}

/* SIMD == scalar on inputs the refs do not cover: random data of many
 * scales, lengths that are not a multiple of the SIMD width, NaN/Inf. */
static void test_simd_equals_scalar(void **state)
{
    (void)state;
    enum { N = 1 << 14 };
    float *x = malloc(N * sizeof *x);
    uint8_t *a = malloc(N * 4), *b = malloc(N * 4);
    static const uint32_t types[] = {QF_F16, QF_BF16, QF_Q8_0, QF_Q4_0, QF_Q4_1, QF_Q5_0, QF_Q5_1,
                                     QF_Q2_K, QF_Q3_K, QF_Q4_K, QF_Q5_K, QF_Q6_K, QF_IQ4_NL, QF_IQ4_XS, QF_IQ3_S, QF_IQ3_XXS,
                                     QF_IQ2_S};
    for (uint64_t seed = 1; seed <= 10; seed++) {
        qf_selftest_input(x, N, seed);
        if (seed == 10) /* ties of magnitude, +-0 as block minimum/maximum */
            for (size_t i = 0; i < N; i++) {
                static const float vals[] = {-2.f, -1.f, -0.f, 0.f, 1.f, 2.f};
                x[i] = vals[(i * 2654435761u >> 7) % 6] * ((i / 32) % 4 == 3 ? 0.f : 1.f);
            }
        if (seed == 7) /* constant and all-zero sub-blocks next to ordinary ones */
            for (size_t i = 0; i < N; i++)
                x[i] = (i / 16) % 3 == 0 ? 0.f : (i / 16) % 3 == 1 ? (float)(i / 16) * 0.01f : x[i];
        if (seed == 8) /* magnitudes around ggml's 1e-15 "all zero" threshold */
            for (size_t i = 0; i < N; i++)
                x[i] *= (i / 256) % 2 ? 1e-16f : 1e-14f;
        if (seed == 9) /* one-sided blocks */
            for (size_t i = 0; i < N; i++)
                x[i] = (i / 128) % 2 ? fabsf(x[i]) : -fabsf(x[i]);
        if (seed == 4) { /* non-finite values must not crash either path */
            x[3] = NAN;
            x[700] = INFINITY;
            x[1500] = -INFINITY;
        }
        if (seed == 5) /* half-precision subnormals and overflow */
            for (size_t i = 0; i < N; i++)
                x[i] *= (i & 1) ? 1e-5f : 2e4f;
        if (seed == 6) { /* every kind of bit pattern: NaN payloads, subnormals, inf */
            uint64_t s = 99;
            for (size_t i = 0; i < N; i++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                uint32_t u = (uint32_t)(s >> 32);
                memcpy(&x[i], &u, 4);
            }
        }
        for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
            uint32_t blck = qf_type_get(types[k])->blck;
            size_t n = N - (blck == 1 ? 5 : 0); /* odd tail for the element-wise types */
            assert_int_equal(qf_quantize_ref(types[k], x, a, n), 0);
            assert_int_equal(qf_quantize(types[k], x, b, n), 0);
            if (memcmp(a, b, qf_type_bytes(types[k], n)) && !(seed == 6 && finite_blocks_equal(types[k], x, a, b, n)))
                fail_msg("%s seed %llu: SIMD differs from scalar", qf_type_get(types[k])->name,
                         (unsigned long long)seed);
        }
        /* and the source-side conversions */
        for (uint32_t t = QF_F16; t <= QF_BF16; t += QF_BF16 - QF_F16) {
            float *y = malloc(N * sizeof *y);
            assert_int_equal(qf_quantize_ref(t, x, a, N - 3), 0);
            assert_int_equal(qf_to_f32(t, a, y, N - 3), 0);
            for (size_t i = 0; i < N - 3; i++) {
                uint16_t h = (uint16_t)(a[2 * i] | a[2 * i + 1] << 8);
                float want = t == QF_F16 ? qf_f16_to_f32(h) : qf_bf16_to_f32(h);
                assert_true(f2u(y[i]) == f2u(want) || (isnan(y[i]) && isnan(want)));
            }
            free(y);
        }
    }
    free(x), free(a), free(b);
}

static void test_self_test(void **state)
{
    (void)state;
    assert_int_equal(qf_self_test(NULL), 0);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    float x[32] = {0};
    uint8_t y[64];
    assert_int_equal(qf_quantize(QF_Q8_0, x, y, 31), -EINVAL);
    assert_int_equal(qf_quantize(9 /* q8_1 */, x, y, 32), -EINVAL);
    assert_int_equal(qf_quantize(1000, x, y, 32), -EINVAL);
    assert_null(qf_type_get(4));
    assert_int_equal(qf_type_bytes(QF_Q4_K, 255), 0);
    assert_int_equal(qf_type_bytes(QF_F32, UINT64_MAX / 2), 0);
    assert_int_equal(qf_view_index("q9_9"), -1);
    assert_true(qf_view_index("int8") >= 0);
}

/* Dequantization: quantize Gaussian-ish data, dequantize, and check the
 * error against each type's resolution; for the plain scale types also that
 * dequantized values quantize back to the same bytes (only true when the
 * layouts of both directions agree bit for bit). */
static void test_dequantize_roundtrip(void **state)
{
    (void)state;
    static const struct {
        uint32_t type;
        double max_rel_rms; /* RMS error / RMS of the data */
        bool idempotent;
    } cases[] = {
        {QF_F16, 0.001, true},   {QF_BF16, 0.005, true},  {QF_Q8_0, 0.01, true},  {QF_Q6_K, 0.03, false},
        {QF_Q5_0, 0.06, true},   {QF_Q5_1, 0.06, false},  {QF_Q5_K, 0.06, false}, {QF_Q4_0, 0.12, true},
        {QF_Q4_1, 0.12, false},  {QF_Q4_K, 0.12, false},  {QF_IQ4_NL, 0.12, false}, {QF_Q3_K, 0.25, false},
        {QF_Q2_K, 0.5, false},
    };
    const size_t n = 4096;
    float *x = malloc(n * 4), *y = malloc(n * 4), *z = malloc(n * 4);
    uint8_t *q = malloc(n * 4), *q2 = malloc(n * 4);
    uint32_t seed = 12345;
    for (size_t i = 0; i < n; i++) { /* sum of uniforms: roughly normal, some outliers */
        float a = 0;
        for (int k = 0; k < 4; k++) {
            seed = seed * 1664525u + 1013904223u;
            a += (float)(seed >> 8) / 16777216.0f - 0.5f;
        }
        x[i] = a * (i % 97 == 0 ? 4.0f : 1.0f);
    }
    double ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        uint32_t t = cases[c].type;
        assert_int_equal(qf_quantize(t, x, q, n), 0);
        assert_int_equal(qf_dequantize(t, q, y, n), 0);
        double e = 0;
        for (size_t i = 0; i < n; i++)
            e += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
        double rel = sqrt(e / ss);
        if (rel > cases[c].max_rel_rms)
            fail_msg("%s: relative RMS error %.4f > %.4f", qf_type_get(t)->name, rel, cases[c].max_rel_rms);
        if (cases[c].idempotent) {
            assert_int_equal(qf_quantize(t, y, q2, n), 0);
            assert_int_equal(qf_dequantize(t, q2, z, n), 0);
            assert_memory_equal(y, z, n * 4);
        }
    }
    assert_int_equal(qf_dequantize(QF_Q4_K, q, y, 100), -EINVAL); /* not whole blocks */
    /* e4m3: every code decodes to what the encoder maps back to it */
    for (int v = 0; v < 256; v++) {
        float f = qf_e4m3_to_f32((uint8_t)v);
        if ((v & 0x7f) == 0x7f)
            assert_true(isnan(f));
        else if (v != 0x80) /* -0 */
            assert_int_equal(qf_f32_to_e4m3(f), v);
    }
    free(x), free(y), free(z), free(q), free(q2);
}

/* The documents codec writes for fs: dotted paths nest, keys sort, a check
 * report keeps every line's object and names the failed views. */
static void test_reports(void **state)
{
    (void)state;
    struct qf_jdoc *d = qf_jdoc_new();
    qf_jdoc_int(d, "b.y", 2);
    qf_jdoc_str(d, "b.x", NULL);
    qf_jdoc_bool(d, "a", true);
    char *s = qf_jdoc_dump(d);
    assert_string_equal(s, "{\n  \"a\": true,\n  \"b\": {\n    \"x\": null,\n    \"y\": 2\n  }\n}");
    free(s);
    struct qf_check_report *r = qf_check_report_new("m\"1");
    const char *view, *reason;
    static const char ok[] = "{\"view\":\"q8_0\",\"pass\":true}\n", bad[] = "{\"view\":\"q2_k\",\"pass\":false,\"reason\":\"kl\"}";
    assert_int_equal(qf_check_report_line(r, ok, strlen(ok), &view, &reason), 0);
    assert_int_equal(qf_check_report_line(r, bad, strlen(bad), &view, &reason), 1);
    assert_string_equal(view, "q2_k");
    assert_string_equal(reason, "kl");
    assert_int_equal(qf_check_report_line(r, "progress 3/4", 12, &view, &reason), -EINVAL);
    assert_int_equal(qf_check_report_line(r, "{\"a\":1,\"a\":2}", 13, &view, &reason), -EINVAL); /* duplicate key */
    assert_int_equal(qf_check_report_views(r), 2);
    s = qf_check_report_finish(r, 1, NULL);
    assert_non_null(strstr(s, "\"model\": \"m\\\"1\""));
    assert_non_null(strstr(s, "\"failed\": [\n    \"q2_k\"\n  ]"));
    assert_non_null(strstr(s, "\"status\": \"done\""));
    assert_non_null(strstr(s, "\"pass\": false"));
    free(s);
    s = qf_check_report_finish(qf_check_report_new("m"), -1, "No such file");
    assert_non_null(strstr(s, "\"status\": \"error\""));
    assert_non_null(strstr(s, "\"error\": \"No such file\""));
    assert_null(strstr(s, "views"));
    free(s);
}

/* The LoRA merge's y += b x: AVX2 (a multiply, then an add) and scalar
 * give the same bits, including odd lengths and non-finite values. */
static void test_axpy_simd_equals_scalar(void **state)
{
    (void)state;
#ifdef QF_HAVE_X86
    if (!qf_simd_available())
        skip();
    enum { N = 1003 };
    float *x = malloc(N * sizeof *x), *y1 = malloc(N * sizeof *y1), *y2 = malloc(N * sizeof *y2);
    for (uint64_t seed = 1; seed <= 4; seed++) {
        qf_selftest_input(x, N, seed);
        qf_selftest_input(y1, N, seed + 100);
        memcpy(y2, y1, N * sizeof *y1);
        if (seed == 4)
            x[5] = NAN, x[17] = INFINITY, y1[9] = y2[9] = -INFINITY;
        float b = seed == 3 ? 1e-30f : 0.37f * (float)seed;
        for (size_t n = 0; n < N; n++)
            y1[n] += b * x[n];
        qf_axpy_avx2(y2, x, b, N);
        assert_memory_equal(y1, y2, N * sizeof *y1);
    }
    free(x), free(y1), free(y2);
#else
    skip();
#endif
}

/* The importance-weighted kernels: vector lanes give the reference's bytes
 * for every type, on rows of selftest values (spikes, tiny and zero blocks)
 * with weights spanning decades, some zero; rows of 9 blocks of 32 leave a
 * remainder the legacy types fit one by one. (The references against
 * llama-quantize --imatrix itself are the mount tests, test_imatrix.py.) */
static void test_imatrix_simd_equals_scalar(void **state)
{
    (void)state;
#ifdef QF_HAVE_X86
    if (!qf_simd_available())
        skip();
    static const uint32_t types[] = {QF_Q4_0, QF_Q4_1, QF_Q5_0, QF_Q5_1, QF_Q2_K, QF_Q3_K,
                                     QF_Q4_K, QF_Q5_K, QF_Q6_K, QF_IQ4_NL, QF_IQ4_XS, QF_IQ3_S, QF_IQ3_XXS, QF_IQ2_S};
    enum { N = 1024 };
    float *x = malloc(N * sizeof *x), *w = malloc(N * sizeof *w);
    uint8_t *a = malloc(N * 2), *b = malloc(N * 2);
    for (uint64_t seed = 1; seed <= 6; seed++) {
        qf_selftest_input(x, N, seed);
        qf_selftest_input(w, N, seed + 50);
        for (size_t i = 0; i < N; i++)
            w[i] = seed == 6 && i % 7 == 0 ? 0.f : expf(fminf(fmaxf(w[i] * 4, -20.f), 20.f));
        if (seed == 5)
            memset(x + 256, 0, 256 * sizeof *x); /* a zero super-block */
        for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
            size_t n = types[t] <= QF_Q5_1 && seed % 2 ? 288 : N; /* 9 blocks of 32 */
            size_t bytes = qf_type_bytes(types[t], n);
            memset(a, 0xAA, bytes), memset(b, 0x55, bytes);
            assert_int_equal(qf_quantize_row_imat(types[t], x, n, w, a, true), 0);
            assert_int_equal(qf_quantize_row_imat(types[t], x, n, w, b, false), 0);
            if (memcmp(a, b, bytes))
                fail_msg("%s seed %llu: vector lanes differ from the reference", qf_type_get(types[t])->name,
                         (unsigned long long)seed);
        }
    }
    assert_int_equal(qf_quantize_row_imat(QF_Q8_0, x, 32, w, a, false), -EINVAL);
    assert_int_equal(qf_quantize_row_imat(QF_Q4_K, x, 32, w, a, false), -EINVAL);
    free(x), free(w), free(a), free(b);
#else
    skip();
#endif
}

int main(void)
{
    require_shared();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_vs_ggml_edge_cases),
        cmocka_unit_test(test_dequantize_roundtrip),
        cmocka_unit_test(test_kernels_vs_ggml_stories260k),
        cmocka_unit_test(test_layout_matches_llama_quantize),
        cmocka_unit_test(test_f16_conversion),
        cmocka_unit_test(test_bf16_conversion),
        cmocka_unit_test(test_simd_equals_scalar),
        cmocka_unit_test(test_finite_check),
        cmocka_unit_test(test_convert_checked),
        cmocka_unit_test(test_quantize_checked),
        cmocka_unit_test(test_self_test),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_reports),
        cmocka_unit_test(test_axpy_simd_equals_scalar),
        cmocka_unit_test(test_imatrix_simd_equals_scalar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
