/* types.c — tensor type table, scalar float conversions, views, dispatch. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "quant_impl.h"

/* The type-properties table: block size and bytes per block of every ggml
 * type id (ggml-common.h, ggml.c type_traits; ids ggml removed have no
 * entry), and the kernels quantfs has for it. We need sizes of types we
 * cannot produce to validate a source file that contains them. */
#ifdef QF_HAVE_X86
#define SIMD(f) f
#else
#define SIMD(f) NULL
#endif
#define QUANT(t, blck, size, simd)                                                                                     \
    {#t, blck, size, qf_quantize_##t##_ref, simd, qf_dequantize_##t, false}
#define OTHER(t, blck, size) {#t, blck, size, NULL, NULL, NULL, false}
static const struct qf_type_info type_table[QF_TYPE_MAX] = {
    [QF_F32] = {"f32", 1, 4, qf_convert_f32_ref, NULL, qf_dequantize_f32, true},
    [QF_F16] = {"f16", 1, 2, qf_convert_f16_ref, SIMD(qf_convert_f16_avx2), qf_dequantize_f16, true,
                SIMD(qf_convert_f16_finite_avx2)},
    [QF_Q4_0] = QUANT(q4_0, 32, 18, SIMD(qf_quantize_q4_0_avx2)),
    [QF_Q4_1] = QUANT(q4_1, 32, 20, SIMD(qf_quantize_q4_1_avx2)),
    [QF_Q5_0] = QUANT(q5_0, 32, 22, SIMD(qf_quantize_q5_0_avx2)),
    [QF_Q5_1] = QUANT(q5_1, 32, 24, SIMD(qf_quantize_q5_1_avx2)),
    [QF_Q8_0] = {"q8_0", 32, 34, qf_quantize_q8_0_ref, SIMD(qf_quantize_q8_0_avx2), qf_dequantize_q8_0, false,
                 SIMD(qf_quantize_q8_0_finite_avx2)},
    [9] = OTHER(q8_1, 32, 36),
    [QF_Q2_K] = QUANT(q2_K, 256, 84, SIMD(qf_quantize_q2_K_avx2)),
    [QF_Q3_K] = QUANT(q3_K, 256, 110, SIMD(qf_quantize_q3_K_avx2)),
    [QF_Q4_K] = QUANT(q4_K, 256, 144, SIMD(qf_quantize_q4_K_avx2)),
    [QF_Q5_K] = QUANT(q5_K, 256, 176, SIMD(qf_quantize_q5_K_avx2)),
    [QF_Q6_K] = QUANT(q6_K, 256, 210, SIMD(qf_quantize_q6_K_avx2)),
    [15] = OTHER(q8_K, 256, 292),
    [16] = OTHER(iq2_xxs, 256, 66),
    [17] = OTHER(iq2_xs, 256, 74),
    [QF_IQ3_XXS] = {"iq3_xxs", 256, 98, qf_quantize_iq3_xxs_ref, SIMD(qf_quantize_iq3_xxs_avx2), qf_dequantize_iq3_xxs,
                    false},
    [19] = OTHER(iq1_s, 256, 50),
    [QF_IQ4_NL] = QUANT(iq4_nl, 32, 18, SIMD(qf_quantize_iq4_nl_avx2)),
    [QF_IQ3_S] = {"iq3_s", 256, 110, qf_quantize_iq3_s_ref, SIMD(qf_quantize_iq3_s_avx2), qf_dequantize_iq3_s, false},
    [QF_IQ2_S] = {"iq2_s", 256, 82, qf_quantize_iq2_s_ref, SIMD(qf_quantize_iq2_s_avx2), qf_dequantize_iq2_s, false},
    [QF_IQ4_XS] = {"iq4_xs", 256, 136, qf_quantize_iq4_xs_ref, SIMD(qf_quantize_iq4_xs_avx2), qf_dequantize_iq4_xs,
                   false},
    [24] = OTHER(i8, 1, 1),
    [25] = OTHER(i16, 1, 2),
    [26] = OTHER(i32, 1, 4),
    [27] = OTHER(i64, 1, 8),
    [28] = OTHER(f64, 1, 8),
    [29] = OTHER(iq1_m, 256, 56),
    [QF_BF16] = {"bf16", 1, 2, qf_convert_bf16_ref, SIMD(qf_convert_bf16_avx2), qf_dequantize_bf16, true,
                 SIMD(qf_convert_bf16_finite_avx2)},
    [34] = OTHER(tq1_0, 256, 54),
    [35] = OTHER(tq2_0, 256, 66),
    [39] = OTHER(mxfp4, 32, 17),
};

int qf_fail(char *err, size_t n, int rc, const char *fmt, ...)
{
    if (err && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, n, fmt, ap);
        va_end(ap);
    }
    return rc;
}

const struct qf_type_info *qf_type_get(uint32_t type)
{
    if (type >= QF_TYPE_MAX || !type_table[type].name)
        return NULL;
    return &type_table[type];
}

uint64_t qf_type_bytes(uint32_t type, uint64_t n)
{
    const struct qf_type_info *ti = qf_type_get(type);
    if (!ti || n % ti->blck)
        return 0;
    uint64_t nb = n / ti->blck;
    if (nb > UINT64_MAX / ti->size)
        return 0;
    return nb * ti->size;
}

/* ------------------------------------------------------------ conversions */

static inline uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t qf_f32_to_f16(float f)
{
    const uint32_t x = f2u(f);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u)
        return sign | 0x7e00;
    if (ax >= 0x38800000u) { /* |f| >= 2^-14: normal half, or overflow */
        if (ax >= 0x47800000u) /* >= 2^16, including inf */
            return sign | 0x7c00;
        uint32_t h = ((ax >> 23) - 112) << 10 | ((ax >> 13) & 0x3ff);
        uint32_t rem = ax & 0x1fff;
        if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
            h++; /* a carry into the exponent is exactly right, up to inf */
        return sign | (uint16_t)h;
    }
    if (ax <= 0x33000000u) /* <= 2^-25: rounds to (signed) zero */
        return sign;
    /* subnormal half: value / 2^-24 = significand >> (126 - exp) */
    const uint32_t e = ax >> 23;
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;
    uint32_t h = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1)))
        h++;
    return sign | (uint16_t)h;
}

float qf_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0x1f) /* inf, or NaN made quiet (as F16C's VCVTPH2PS does) */
        return u2f(sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0));
    if (e)
        return u2f(sign | ((e + 112) << 23) | (m << 13));
    /* zero or subnormal: m * 2^-24, exact in float */
    float v = (float)m * 0x1p-24f;
    return sign ? -v : v;
}

uint16_t qf_f32_to_bf16(float f)
{
    const uint32_t x = f2u(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40); /* quiet the NaN */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

float qf_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

int qf_to_f32(uint32_t type, const void *src, float *dst, size_t n)
{
    const struct qf_type_info *ti = qf_type_get(type);
    if (!ti || !ti->is_source)
        return -EINVAL;
#ifdef QF_HAVE_X86
    if (type == QF_F16 && qf_simd_available()) {
        qf_dequantize_f16_avx2(src, dst, n);
        return 0;
    }
    if (type == QF_BF16 && qf_simd_available()) {
        qf_dequantize_bf16_avx2(src, dst, n);
        return 0;
    }
#endif
    ti->dequantize(src, dst, n);
    return 0;
}

int qf_quantize_opt(uint32_t type, const float *src, void *dst, size_t n, bool scalar_only)
{
    const struct qf_type_info *ti = qf_type_get(type);
    if (!ti || !ti->quantize_ref || n % ti->blck)
        return -EINVAL;
    if (!scalar_only && ti->quantize_simd && qf_simd_available())
        ti->quantize_simd(src, dst, n / ti->blck);
    else
        ti->quantize_ref(src, dst, n / ti->blck);
    return 0;
}

int qf_quantize_checked(uint32_t type, const float *src, void *dst, size_t n, bool scalar_only)
{
    const struct qf_type_info *ti = qf_type_get(type);
    if (!ti || !ti->quantize_ref || n % ti->blck)
        return -EINVAL;
    if (!scalar_only && ti->quantize_simd_checked && qf_simd_available())
        return ti->quantize_simd_checked(src, dst, n / ti->blck) ? 0 : -EBADMSG;
    if (!qf_finite(QF_F32, src, n))
        return -EBADMSG;
    return qf_quantize_opt(type, src, dst, n, scalar_only);
}

int qf_quantize(uint32_t type, const float *src, void *dst, size_t n)
{
    return qf_quantize_opt(type, src, dst, n, false);
}

int qf_quantize_ref(uint32_t type, const float *src, void *dst, size_t n)
{
    return qf_quantize_opt(type, src, dst, n, true);
}

int qf_dequantize(uint32_t type, const void *src, float *dst, size_t n)
{
    const struct qf_type_info *ti = qf_type_get(type);
    if (!ti || !ti->dequantize || n % ti->blck)
        return -EINVAL;
    if (ti->is_source)
        return qf_to_f32(type, src, dst, n);
    ti->dequantize(src, dst, n / ti->blck);
    return 0;
}

const char *qf_simd_name(void) { return qf_simd_available() ? "avx2+f16c" : "scalar"; }

/* ------------------------------------------------------------------ views */

/* Display order. GGUF views are llama-quantize's type names in lower case
 * (tools/quantize/quantize.cpp's QUANT_OPTIONS); its command-line aliases
 * q3_k, q4_k, q5_k and quantfs' int8/int4 resolve by name without being
 * listed. For safetensors models int8, int4 and fp8 are real views. */
#define G QF_FMT_GGUF
#define S QF_FMT_SAFETENSORS
#define MIX(n, ft, ty, w) {n, G, 0, NULL, ft, ty, false, false, w}
#define PURE(n, ft, ty, w) {n, G, 0, NULL, ft, ty, true, false, w}
#define IMAT(n, ft, ty, w) {n, QF_FMT_IMATRIX, 0, NULL, ft, ty, false, true, w}
#define ALIAS(n, fm, of, ft, ty) {n, 0, fm, of, ft, ty, false, false, NULL}
static const struct qf_view view_table[] = {
    {"f32", G | S, 0, NULL, QF_FT_F32, QF_F32, false, false, "the source as is"},
    {"fp16", G | S, 0, NULL, QF_FT_F16, QF_F16, false, false, "every quantizable tensor in F16"},
    {"bf16", G | S, 0, NULL, QF_FT_BF16, QF_BF16, false, false, "every quantizable tensor in BF16"},
    {"int8", S, G, "q8_0", QF_FT_Q8_0, QF_Q8_0, false, false, "safetensors: compressed-tensors int8 (GGUF: q8_0)"},
    {"int4", S, G, "q4_k_m", QF_FT_Q4_K_M, QF_Q4_K, false, false, "safetensors: compressed-tensors int4 (GGUF: q4_k_m)"},
    {"fp8", S, 0, NULL, QF_FT_F32, QF_F32, false, false, "safetensors: fine-grained FP8 (e4m3, 128x128 scales)"},
    MIX("q8_0", QF_FT_Q8_0, QF_Q8_0, "Q8_0"),
    MIX("q6_k", QF_FT_Q6_K, QF_Q6_K, "Q6_K"),
    MIX("q5_k_m", QF_FT_Q5_K_M, QF_Q5_K, "Q5_K_M: Q5_K, half of attn_v and ffn_down Q6_K"),
    MIX("q5_k_s", QF_FT_Q5_K_S, QF_Q5_K, "Q5_K_S: Q5_K"),
    MIX("q5_1", QF_FT_Q5_1, QF_Q5_1, "Q5_1"),
    MIX("q5_0", QF_FT_Q5_0, QF_Q5_0, "Q5_0"),
    MIX("q4_k_m", QF_FT_Q4_K_M, QF_Q4_K, "Q4_K_M: Q4_K, half of attn_v and ffn_down Q6_K"),
    MIX("q4_k_s", QF_FT_Q4_K_S, QF_Q4_K, "Q4_K_S: Q4_K, first attn_v/ffn_down Q5_K"),
    MIX("q4_1", QF_FT_Q4_1, QF_Q4_1, "Q4_1"),
    MIX("q4_0", QF_FT_Q4_0, QF_Q4_0, "Q4_0"),
    MIX("q3_k_l", QF_FT_Q3_K_L, QF_Q3_K, "Q3_K_L: Q3_K, attn_v/attn_output/ffn_down Q5_K"),
    MIX("q3_k_m", QF_FT_Q3_K_M, QF_Q3_K, "Q3_K_M: Q3_K, attn_v/attn_output/ffn_down Q4_K-Q5_K"),
    MIX("q3_k_s", QF_FT_Q3_K_S, QF_Q3_K, "Q3_K_S: Q3_K"),
    MIX("q2_k", QF_FT_Q2_K, QF_Q2_K, "Q2_K: Q2_K, attn_v/attn_output/ffn_down Q3_K-Q4_K"),
    MIX("iq4_xs", QF_FT_IQ4_XS, QF_IQ4_XS, "IQ4_XS: 4.25 bpw non-linear, attn_v/first ffn_down Q5_K"),
    MIX("iq4_nl", QF_FT_IQ4_NL, QF_IQ4_NL, "IQ4_NL: 4.5 bpw non-linear, attn_v/first ffn_down Q5_K"),
    MIX("iq3_m", QF_FT_IQ3_M, QF_IQ3_S, "IQ3_M: IQ3_S, attn_v/attn_output/first ffn_down Q4_K"),
    MIX("iq3_s", QF_FT_IQ3_S, QF_IQ3_S, "IQ3_S: 3.44 bpw lattice, attn_v Q4_K with GQA"),
    PURE("q8_0-pure", QF_FT_Q8_0, QF_Q8_0, "llama-quantize --pure Q8_0"),
    PURE("q6_k-pure", QF_FT_Q6_K, QF_Q6_K, "llama-quantize --pure Q6_K"),
    PURE("q5_k-pure", QF_FT_Q5_K_M, QF_Q5_K, "llama-quantize --pure Q5_K"),
    PURE("q5_1-pure", QF_FT_Q5_1, QF_Q5_1, "llama-quantize --pure Q5_1"),
    PURE("q5_0-pure", QF_FT_Q5_0, QF_Q5_0, "llama-quantize --pure Q5_0"),
    PURE("q4_k-pure", QF_FT_Q4_K_M, QF_Q4_K, "llama-quantize --pure Q4_K"),
    PURE("q4_1-pure", QF_FT_Q4_1, QF_Q4_1, "llama-quantize --pure Q4_1"),
    PURE("q4_0-pure", QF_FT_Q4_0, QF_Q4_0, "llama-quantize --pure Q4_0"),
    PURE("q3_k-pure", QF_FT_Q3_K_M, QF_Q3_K, "llama-quantize --pure Q3_K"),
    PURE("q2_k-pure", QF_FT_Q2_K, QF_Q2_K, "llama-quantize --pure Q2_K"),
    IMAT("q8_0-imat", QF_FT_Q8_0, QF_Q8_0, "Q8_0 with the imatrix (same tensors; records it)"),
    IMAT("q6_k-imat", QF_FT_Q6_K, QF_Q6_K, "Q6_K weighted by the model's imatrix"),
    IMAT("q5_k_m-imat", QF_FT_Q5_K_M, QF_Q5_K, "Q5_K_M weighted by the model's imatrix"),
    IMAT("q5_k_s-imat", QF_FT_Q5_K_S, QF_Q5_K, "Q5_K_S weighted by the model's imatrix"),
    IMAT("q5_1-imat", QF_FT_Q5_1, QF_Q5_1, "Q5_1 weighted by the model's imatrix"),
    IMAT("q5_0-imat", QF_FT_Q5_0, QF_Q5_0, "Q5_0 weighted by the model's imatrix (first ffn_down Q5_1)"),
    IMAT("q4_k_m-imat", QF_FT_Q4_K_M, QF_Q4_K, "Q4_K_M weighted by the model's imatrix"),
    IMAT("q4_k_s-imat", QF_FT_Q4_K_S, QF_Q4_K, "Q4_K_S weighted by the model's imatrix"),
    IMAT("q4_1-imat", QF_FT_Q4_1, QF_Q4_1, "Q4_1 weighted by the model's imatrix"),
    IMAT("q4_0-imat", QF_FT_Q4_0, QF_Q4_0, "Q4_0 weighted by the model's imatrix (first ffn_down Q4_1)"),
    IMAT("iq4_xs-imat", QF_FT_IQ4_XS, QF_IQ4_XS, "IQ4_XS weighted by the model's imatrix"),
    IMAT("iq4_nl-imat", QF_FT_IQ4_NL, QF_IQ4_NL, "IQ4_NL weighted by the model's imatrix"),
    IMAT("iq3_m-imat", QF_FT_IQ3_M, QF_IQ3_S, "IQ3_M weighted by the model's imatrix"),
    IMAT("iq3_s-imat", QF_FT_IQ3_S, QF_IQ3_S, "IQ3_S weighted by the model's imatrix"),
    IMAT("iq3_xs-imat", QF_FT_IQ3_XS, QF_IQ3_S, "IQ3_XS: IQ3_S and IQ3_XXS (attn_q/k, middle ffn_gate/up); needs the imatrix"),
    IMAT("iq3_xxs-imat", QF_FT_IQ3_XXS, QF_IQ3_XXS, "IQ3_XXS: 3.06 bpw lattice, attn_q/k IQ2_S; needs the imatrix"),
    IMAT("iq2_m-imat", QF_FT_IQ2_M, QF_IQ2_S, "IQ2_M: 2.5 bpw IQ2_S, attn_v/attn_output/first ffn_down IQ3_S; needs the imatrix"),
    IMAT("q3_k_l-imat", QF_FT_Q3_K_L, QF_Q3_K, "Q3_K_L weighted by the model's imatrix"),
    IMAT("q3_k_m-imat", QF_FT_Q3_K_M, QF_Q3_K, "Q3_K_M weighted by the model's imatrix"),
    IMAT("q3_k_s-imat", QF_FT_Q3_K_S, QF_Q3_K, "Q3_K_S weighted by the model's imatrix"),
    IMAT("q2_k-imat", QF_FT_Q2_K, QF_Q2_K, "Q2_K weighted by the model's imatrix"),
    {"lora", QF_FMT_LORA, 0, NULL, QF_FT_F32, QF_F32, false, false,
     "GGUF adapters of adapters/NAME/ (convert_lora_to_gguf.py --outtype f32)"},
    ALIAS("f16", G | S, "fp16", QF_FT_F16, QF_F16),
    ALIAS("q3_k", G, "q3_k_m", QF_FT_Q3_K_M, QF_Q3_K),
    ALIAS("q4_k", G, "q4_k_m", QF_FT_Q4_K_M, QF_Q4_K),
    ALIAS("q5_k", G, "q5_k_m", QF_FT_Q5_K_M, QF_Q5_K),
};
#undef G
#undef S

const struct qf_view *qf_views(size_t *n)
{
    *n = sizeof view_table / sizeof view_table[0];
    return view_table;
}

int qf_view_index(const char *name)
{
    for (size_t i = 0; i < sizeof view_table / sizeof view_table[0]; i++)
        if (!strcmp(view_table[i].name, name))
            return (int)i;
    return -1;
}

bool qf_view_listed(const struct qf_view *v, unsigned fmts) { return (v->formats & fmts) != 0; }
bool qf_view_reachable(const struct qf_view *v, unsigned fmts) { return ((v->formats | v->alias_formats) & fmts) != 0; }

const struct qf_view *qf_view_resolve(const struct qf_view *v, unsigned fmt)
{
    if (v->alias_of && (v->alias_formats & fmt)) {
        int i = qf_view_index(v->alias_of);
        if (i >= 0)
            return &view_table[i];
    }
    return v;
}
