/* stquant.c — weight quantization for safetensors views, following the
 * conventions of the loaders that read them:
 *
 *  int8 / int4 (compressed-tensors pack-quantized, symmetric): scale =
 *  amax / (range / 2)
 *  with range = qmax - qmin (255 for int8, 15 for int4, as compressed-
 *  tensors' calculate_qparams), q = clamp(round_half_even(x / scale), qmin,
 *  qmax). Scales are stored in bf16 (the dtype of the unquantized tensors);
 *  a bf16 scale that rounded below the exact one is bumped one ulp up, so
 *  |x - q * scale| <= scale / 2 holds for every finite x with the stored
 *  scale. An all-zero row or group gets compressed-tensors' minimum scale
 *  (float32 eps). NaN quantizes to 0; infinities are excluded from amax and
 *  saturate.
 *
 *  fp8 (transformers' fine-grained FP8, DeepSeek-V3 layout): per 128x128
 *  block, scale = 448 / amax (1 for an all-zero block), q = e4m3fn(clamp(x *
 *  scale, -448, 448)) rounded to nearest even, and weight_scale_inv = 1 /
 *  scale stored as f32; dequantized w = q * weight_scale_inv.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "codec.h"
#include "quant_impl.h"

static float finite_amax(const float *x, size_t n)
{
    float a = 0;
    for (size_t i = 0; i < n; i++) {
        float v = fabsf(x[i]);
        if (v > a && v != INFINITY)
            a = v;
    }
    return a;
}

/* bf16 scale >= s (s > 0, finite) */
static uint16_t bf16_scale_up(float s)
{
    uint16_t h = qf_f32_to_bf16(s);
    if (qf_bf16_to_f32(h) < s)
        h++;
    return h;
}

static float scale_for(float amax, float half_range, uint16_t *stored)
{
    float s = amax / half_range;
    if (s < FLT_EPSILON)
        s = FLT_EPSILON;
    *stored = bf16_scale_up(s);
    return qf_bf16_to_f32(*stored);
}

static inline int quant_int(float x, float s, int qmin, int qmax)
{
    if (x != x)
        return 0;
    float v = x / s;
    if (v < (float)qmin)
        v = (float)qmin;
    if (v > (float)qmax)
        v = (float)qmax;
    return (int)nearbyintf(v); /* default rounding mode: half to even */
}

/* int8, packed 4 per little-endian int32 along the row (value i of a word
 * at bits 8i, stored as q + 128): in memory simply the bytes q + 128, each
 * row padded with zero bytes to a whole word. */
static void int8_rows(const float *x, size_t rows, size_t n, uint8_t *q, uint8_t *scales)
{
    size_t stride = (n + 3) / 4 * 4;
    for (size_t r = 0; r < rows; r++, x += n) {
        uint16_t h;
        float s = scale_for(finite_amax(x, n), 127.5f, &h);
        if (q) {
            for (size_t i = 0; i < n; i++)
                q[r * stride + i] = (uint8_t)(quant_int(x[i], s, -128, 127) + 128);
            memset(q + r * stride + n, 0, stride - n);
        }
        if (scales)
            qf_put16(scales + 2 * r, h);
    }
}

/* int4, packed 8 per little-endian int32 along the row: value i of a word
 * at bits 4i, stored as q + 8 (compressed-tensors' pack_to_int32). */
static void int4_rows(const float *x, size_t rows, size_t n, size_t group, uint8_t *q, uint8_t *scales)
{
    size_t words = (n + 7) / 8, ng = n / group;
    for (size_t r = 0; r < rows; r++, x += n) {
        uint8_t *w = q ? q + r * words * 4 : NULL;
        if (w)
            memset(w, 0, words * 4);
        for (size_t g = 0; g < ng; g++) {
            uint16_t h;
            float s = scale_for(finite_amax(x + g * group, group), 7.5f, &h);
            if (scales)
                qf_put16(scales + 2 * (r * ng + g), h);
            if (!w)
                continue;
            for (size_t i = g * group; i < (g + 1) * group; i++) {
                unsigned u = (unsigned)(quant_int(x[i], s, -8, 7) + 8);
                w[4 * (i / 8) + (i % 8) / 2] |= (uint8_t)(u << (4 * (i % 2)));
            }
        }
    }
}

uint8_t qf_f32_to_e4m3(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80);
    uint32_t ax = u & 0x7fffffffu;
    if (ax > 0x7f800000u)
        return sign | 0x7f; /* NaN */
    float a;
    memcpy(&a, &ax, 4);
    if (a >= 448.0f)
        return sign | 0x7e; /* saturate (callers clamp first) */
    if (a < 0x1p-6f) /* subnormal: multiples of 2^-9; 8 * 2^-9 is the smallest normal */
        return sign | (uint8_t)nearbyintf(a * 512.0f);
    uint32_t e = (ax >> 23) - 127 + 7, m = ax & 0x7fffff;
    uint32_t h = e << 3 | m >> 20, rem = m & 0xfffff;
    if (rem > 0x80000 || (rem == 0x80000 && (h & 1)))
        h++;
    return sign | (uint8_t)h;
}

static void fp8_rows(const float *x, size_t rows, size_t n, uint8_t *q, uint8_t *sinv)
{
    size_t nb = (n + 127) / 128;
    for (size_t br = 0; br < rows; br += 128) {
        size_t rh = rows - br < 128 ? rows - br : 128;
        for (size_t bc = 0; bc < nb; bc++) {
            size_t c0 = bc * 128, cw = n - c0 < 128 ? n - c0 : 128;
            float amax = 0;
            for (size_t r = 0; r < rh; r++) {
                float a = finite_amax(x + (br + r) * n + c0, cw);
                if (a > amax)
                    amax = a;
            }
            float scale = amax > 0 ? 448.0f / amax : 1.0f;
            if (sinv) {
                float inv = 1.0f / scale;
                uint32_t b;
                memcpy(&b, &inv, 4);
                qf_put32(sinv + 4 * ((br / 128) * nb + bc), b);
            }
            if (!q)
                continue;
            for (size_t r = 0; r < rh; r++) {
                for (size_t c = c0; c < c0 + cw; c++) {
                    float v = x[(br + r) * n + c] * scale;
                    v = v < -448.0f ? -448.0f : v > 448.0f ? 448.0f : v;
                    q[(br + r) * n + c] = qf_f32_to_e4m3(v);
                }
            }
        }
    }
}

static int q_i8(const float *x, size_t rows, size_t n, uint32_t g, uint8_t *out)
{
    (void)g;
    int8_rows(x, rows, n, out, NULL);
    return 0;
}

static int q_i8_scale(const float *x, size_t rows, size_t n, uint32_t g, uint8_t *out)
{
    (void)g;
    int8_rows(x, rows, n, NULL, out);
    return 0;
}

static int q_i4(const float *x, size_t rows, size_t n, uint32_t g, uint8_t *out)
{
    if (!g || n % g)
        return -EINVAL;
    int4_rows(x, rows, n, g, out, NULL);
    return 0;
}

static int q_i4_scale(const float *x, size_t rows, size_t n, uint32_t g, uint8_t *out)
{
    if (!g || n % g)
        return -EINVAL;
    int4_rows(x, rows, n, g, NULL, out);
    return 0;
}

static int q_fp8(const float *x, size_t rows, size_t n, uint32_t g, uint8_t *out)
{
    (void)g;
    fp8_rows(x, rows, n, out, NULL);
    return 0;
}

static int q_fp8_scale(const float *x, size_t rows, size_t n, uint32_t g, uint8_t *out)
{
    (void)g;
    fp8_rows(x, rows, n, NULL, out);
    return 0;
}

/* int32 words of packed values, bf16 scales, e4m3 bytes, f32 per 128x128 */
static uint64_t b_i8(uint64_t rows, uint64_t n, uint32_t g) { return (void)g, rows * ((n + 3) / 4) * 4; }
static uint64_t b_i8_scale(uint64_t rows, uint64_t n, uint32_t g) { return (void)g, (void)n, rows * 2; }
static uint64_t b_i4(uint64_t rows, uint64_t n, uint32_t g) { return (void)g, rows * ((n + 7) / 8) * 4; }
static uint64_t b_i4_scale(uint64_t rows, uint64_t n, uint32_t g) { return g ? rows * (n / g) * 2 : 0; }
static uint64_t b_fp8(uint64_t rows, uint64_t n, uint32_t g) { return (void)g, rows * n; }
static uint64_t b_fp8_scale(uint64_t rows, uint64_t n, uint32_t g)
{
    (void)g;
    return (rows + 127) / 128 * ((n + 127) / 128) * 4;
}

static const struct qf_row_kind row_kinds[] = {
    {QF_ST_I8, "int8", b_i8, q_i8},
    {QF_ST_I8_SCALE, "int8 scales", b_i8_scale, q_i8_scale},
    {QF_ST_I4, "int4", b_i4, q_i4},
    {QF_ST_I4_SCALE, "int4 scales", b_i4_scale, q_i4_scale},
    {QF_ST_FP8, "fp8", b_fp8, q_fp8},
    {QF_ST_FP8_SCALE_INV, "fp8 inverse scales", b_fp8_scale, q_fp8_scale},
};
_Static_assert(sizeof row_kinds / sizeof *row_kinds == QF_ST_KIND_END - QF_ST_I8, "a row for every row kind");

const struct qf_row_kind *qf_row_kind(uint32_t dst_type)
{
    for (size_t i = 0; i < sizeof row_kinds / sizeof *row_kinds; i++)
        if (row_kinds[i].kind == dst_type)
            return &row_kinds[i];
    return NULL;
}

int qf_st_quantize_rows(uint32_t kind, const float *x, size_t rows, size_t n, uint32_t group, uint8_t *out)
{
    const struct qf_row_kind *k = qf_row_kind(kind);
    return k ? k->quantize(x, rows, n, group, out) : -EINVAL;
}
