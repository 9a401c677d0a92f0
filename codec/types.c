/* types.c — tensor type table, scalar float conversions, views, dispatch. */
#include <errno.h>
#include <string.h>

#include "codec.h"
#include "quant_impl.h"

/* Block size and bytes per block of every ggml type id (ggml-common.h,
 * ggml.c type_traits); ids ggml removed have no entry. We need sizes of types
 * we cannot produce to validate a source file that contains them. */
static const struct qf_type_info type_table[QF_TYPE_MAX] = {
    [QF_F32] = {"f32", 1, 4, true, true},
    [QF_F16] = {"f16", 1, 2, true, true},
    [QF_Q4_0] = {"q4_0", 32, 18, true, false},
    [QF_Q4_1] = {"q4_1", 32, 20, true, false},
    [QF_Q5_0] = {"q5_0", 32, 22, true, false},
    [QF_Q5_1] = {"q5_1", 32, 24, true, false},
    [QF_Q8_0] = {"q8_0", 32, 34, true, false},
    [9] = {"q8_1", 32, 36, false, false},
    [QF_Q2_K] = {"q2_K", 256, 84, true, false},
    [QF_Q3_K] = {"q3_K", 256, 110, true, false},
    [QF_Q4_K] = {"q4_K", 256, 144, true, false},
    [QF_Q5_K] = {"q5_K", 256, 176, true, false},
    [QF_Q6_K] = {"q6_K", 256, 210, true, false},
    [15] = {"q8_K", 256, 292, false, false},
    [16] = {"iq2_xxs", 256, 66, false, false},
    [17] = {"iq2_xs", 256, 74, false, false},
    [18] = {"iq3_xxs", 256, 98, false, false},
    [19] = {"iq1_s", 256, 50, false, false},
    [QF_IQ4_NL] = {"iq4_nl", 32, 18, true, false},
    [21] = {"iq3_s", 256, 110, false, false},
    [22] = {"iq2_s", 256, 82, false, false},
    [23] = {"iq4_xs", 256, 136, false, false},
    [24] = {"i8", 1, 1, false, false},
    [25] = {"i16", 1, 2, false, false},
    [26] = {"i32", 1, 4, false, false},
    [27] = {"i64", 1, 8, false, false},
    [28] = {"f64", 1, 8, false, false},
    [29] = {"iq1_m", 256, 56, false, false},
    [QF_BF16] = {"bf16", 1, 2, true, true},
    [34] = {"tq1_0", 256, 54, false, false},
    [35] = {"tq2_0", 256, 66, false, false},
    [39] = {"mxfp4", 32, 17, false, false},
};

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
    const uint8_t *s = src;
    if (qf_to_f32_simd(type, s, dst, n))
        return 0;
    switch (type) {
    case QF_F32: memcpy(dst, src, n * 4); return 0;
    case QF_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = qf_f16_to_f32(qf_get16(s + 2 * i));
        return 0;
    case QF_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = qf_bf16_to_f32(qf_get16(s + 2 * i));
        return 0;
    default: return -EINVAL;
    }
}

int qf_quantize_opt(uint32_t type, const float *src, void *dst, size_t n, bool scalar_only)
{
    const struct qf_type_info *ti = qf_type_get(type);
    if (!ti || !ti->can_quantize || n % ti->blck)
        return -EINVAL;
    if (!scalar_only && qf_quantize_simd(type, src, dst, n))
        return 0;
    return qf_quantize_ref(type, src, dst, n);
}

int qf_quantize(uint32_t type, const float *src, void *dst, size_t n)
{
    return qf_quantize_opt(type, src, dst, n, false);
}

const char *qf_simd_name(void) { return qf_simd_available() ? "avx2+f16c" : "scalar"; }

/* ------------------------------------------------------------------ views */

/* general.file_type values are llama.cpp's enum llama_ftype. A uniform
 * k-quant file is labelled with the "_S" variant (the plain mix). */
static const struct qf_view view_table[] = {
    {"f32", QF_F32, 0, QF_FMT_GGUF | QF_FMT_SAFETENSORS, NULL},
    {"fp16", QF_F16, 1, QF_FMT_GGUF | QF_FMT_SAFETENSORS, NULL},
    {"bf16", QF_BF16, 32, QF_FMT_GGUF | QF_FMT_SAFETENSORS, NULL},
    {"int8", QF_Q8_0, 7, QF_FMT_GGUF | QF_FMT_SAFETENSORS, "q8_0"},
    {"int4", QF_Q4_K, 14, QF_FMT_GGUF | QF_FMT_SAFETENSORS, "q4_k"},
    {"fp8", QF_F32, 0, QF_FMT_SAFETENSORS, NULL},
    {"q8_0", QF_Q8_0, 7, QF_FMT_GGUF, NULL},
    {"q6_k", QF_Q6_K, 18, QF_FMT_GGUF, NULL},
    {"q5_k", QF_Q5_K, 16, QF_FMT_GGUF, NULL},
    {"q5_1", QF_Q5_1, 9, QF_FMT_GGUF, NULL},
    {"q5_0", QF_Q5_0, 8, QF_FMT_GGUF, NULL},
    {"q4_k", QF_Q4_K, 14, QF_FMT_GGUF, NULL},
    {"q4_1", QF_Q4_1, 3, QF_FMT_GGUF, NULL},
    {"q4_0", QF_Q4_0, 2, QF_FMT_GGUF, NULL},
    {"q3_k", QF_Q3_K, 11, QF_FMT_GGUF, NULL},
    {"q2_k", QF_Q2_K, 10, QF_FMT_GGUF, NULL},
};

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

static uint32_t ggml_n_dims(uint32_t n_dims, const uint64_t *ne)
{
    for (uint32_t i = n_dims; i-- > 1;)
        if (ne[i] > 1)
            return i + 1;
    return 1;
}

uint32_t qf_gguf_tensor_type(uint32_t target, uint32_t src_type, uint32_t n_dims, const uint64_t *ne)
{
    if (ggml_n_dims(n_dims, ne) < 2)
        return src_type;
    const struct qf_type_info *ti = qf_type_get(target);
    if (ne[0] % ti->blck == 0)
        return target;
    uint32_t fb;
    switch (target) {
    case QF_Q2_K:
    case QF_Q3_K: fb = QF_IQ4_NL; break;
    case QF_Q4_K: fb = QF_Q5_0; break;
    case QF_Q5_K: fb = QF_Q5_1; break;
    case QF_Q6_K: fb = QF_Q8_0; break;
    default: return QF_F16;
    }
    return ne[0] % qf_type_get(fb)->blck == 0 ? fb : QF_F16;
}
