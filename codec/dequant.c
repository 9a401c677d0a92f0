/* dequant.c — quantized blocks back to float, for quantfs-check and tests.
 *
 * One function per ggml type, following the block layouts of ggml's
 * ggml-common.h and the reconstruction formulas of ggml-quants.c
 * (dequantize_row_*): w = d * q (+ m) per block or sub-block. Written from
 * the format description; the encoders in quant.c are the same layouts.
 * Also the safetensors row formats of stquant.c (int8/int4 pack-quantized,
 * fp8 e4m3 with block scales).
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "codec.h"
#include "quant_impl.h"

#define QK_K 256

static float h2f(const uint8_t *p) { return qf_f16_to_f32(qf_get16(p)); }

static void dq_q8_0(const uint8_t *b, float *y)
{
    float d = h2f(b);
    for (int j = 0; j < 32; j++)
        y[j] = d * (float)(int8_t)b[2 + j];
}

static void dq_q4_0(const uint8_t *b, float *y)
{
    float d = h2f(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((qs[j] & 0xF) - 8);
        y[j + 16] = d * (float)((qs[j] >> 4) - 8);
    }
}

static void dq_q4_1(const uint8_t *b, float *y)
{
    float d = h2f(b), m = h2f(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(qs[j] & 0xF) + m;
        y[j + 16] = d * (float)(qs[j] >> 4) + m;
    }
}

static void dq_q5(const uint8_t *b, float *y, bool with_min)
{
    float d = h2f(b), m = with_min ? h2f(b + 2) : 0;
    const uint8_t *p = b + (with_min ? 4 : 2);
    uint32_t qh = qf_get32(p);
    const uint8_t *qs = p + 4;
    for (int j = 0; j < 16; j++) {
        int x0 = (qs[j] & 0xF) | (int)(((qh >> j) << 4) & 0x10);
        int x1 = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
        if (with_min) {
            y[j] = d * (float)x0 + m;
            y[j + 16] = d * (float)x1 + m;
        } else {
            y[j] = d * (float)(x0 - 16);
            y[j + 16] = d * (float)(x1 - 16);
        }
    }
}

static void dq_q2_K(const uint8_t *b, float *y)
{
    const uint8_t *sc = b, *q = b + 16;
    float d = h2f(b + 80), dmin = h2f(b + 82);
    int is = 0;
    for (int n = 0; n < QK_K; n += 128, q += 32) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; half++) {
                uint8_t s = sc[is++];
                float dl = d * (float)(s & 0xF), ml = dmin * (float)(s >> 4);
                for (int l = 0; l < 16; l++)
                    *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
            }
        }
    }
}

static void dq_q3_K(const uint8_t *b, float *y)
{
    const uint8_t *hm = b, *q = b + 32, *s12 = b + 96;
    float d_all = h2f(b + 108);
    /* 16 6-bit scales: low 4 bits in bytes 0..7, high 2 bits in 8..11 */
    int8_t scales[16];
    for (int i = 0; i < 16; i++) {
        int lo = i < 8 ? s12[i] & 0xF : s12[i - 8] >> 4;
        int hi = (s12[8 + i % 4] >> (2 * (i / 4))) & 3;
        scales[i] = (int8_t)((lo | hi << 4) - 32);
    }
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < QK_K; n += 128, q += 32) {
        for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
            for (int half = 0; half < 2; half++) {
                float dl = d_all * (float)scales[is++];
                for (int l = 16 * half; l < 16 * half + 16; l++)
                    *y++ = dl * (float)(((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
            }
        }
    }
}

/* 6-bit scale and min j of a q4_K/q5_K super-block (12 packed bytes). */
static void scale_min_k4(int j, const uint8_t *q, int *sc, int *mn)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void dq_q45_K(const uint8_t *b, float *y, bool five)
{
    float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t *s12 = b + 4, *qh = b + 16, *ql = five ? b + 48 : b + 16;
    int is = 0;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < QK_K; j += 64, ql += 32, is += 2, u1 <<= 2, u2 <<= 2) {
        int sc, mn;
        scale_min_k4(is, s12, &sc, &mn);
        float d1 = d * (float)sc, m1 = dmin * (float)mn;
        scale_min_k4(is + 1, s12, &sc, &mn);
        float d2 = d * (float)sc, m2 = dmin * (float)mn;
        for (int l = 0; l < 32; l++)
            *y++ = d1 * (float)((ql[l] & 0xF) + (five && (qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++)
            *y++ = d2 * (float)((ql[l] >> 4) + (five && (qh[l] & u2) ? 16 : 0)) - m2;
    }
}

static void dq_q6_K(const uint8_t *b, float *y)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = h2f(b + 208);
    for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xF) | ((qh[l] >> 0 & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2 & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
    }
}

static void dq_iq4_nl(const uint8_t *b, float *y)
{
    static const int8_t kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    float d = h2f(b);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)kv[b[2 + j] & 0xF];
        y[j + 16] = d * (float)kv[b[2 + j] >> 4];
    }
}

/* IQ4_XS: 8 sub-blocks of 32 with 6-bit scales (4 low bits in scales_l,
 * 2 high in scales_h), biased by 32 */
static void dq_iq4_xs(const uint8_t *b, float *y)
{
    float d = h2f(b);
    uint16_t scales_h = qf_get16(b + 2);
    const uint8_t *scales_l = b + 4, *qs = b + 8;
    for (int ib = 0; ib < 8; ib++, y += 32, qs += 16) {
        int ls = ((scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((scales_h >> 2 * ib) & 3) << 4);
        float dl = d * (float)(ls - 32);
        for (int j = 0; j < 16; j++) {
            y[j] = dl * (float)qf_iq4nl_values[qs[j] & 0xF];
            y[j + 16] = dl * (float)qf_iq4nl_values[qs[j] >> 4];
        }
    }
}

/* Per-type entry points of the type table: nb whole blocks. */
#define DQ_ROWS(name, call, blck, size)                                                                              \
    void qf_dequantize_##name(const uint8_t *b, float *y, size_t nb)                                                \
    {                                                                                                                \
        for (size_t i = 0; i < nb; i++, b += (size), y += (blck))                                                    \
            call;                                                                                                    \
    }
DQ_ROWS(q8_0, dq_q8_0(b, y), 32, 34)
DQ_ROWS(q4_0, dq_q4_0(b, y), 32, 18)
DQ_ROWS(q4_1, dq_q4_1(b, y), 32, 20)
DQ_ROWS(q5_0, dq_q5(b, y, false), 32, 22)
DQ_ROWS(q5_1, dq_q5(b, y, true), 32, 24)
DQ_ROWS(q2_K, dq_q2_K(b, y), 256, 84)
DQ_ROWS(q3_K, dq_q3_K(b, y), 256, 110)
DQ_ROWS(q4_K, dq_q45_K(b, y, false), 256, 144)
DQ_ROWS(q5_K, dq_q45_K(b, y, true), 256, 176)
DQ_ROWS(q6_K, dq_q6_K(b, y), 256, 210)
DQ_ROWS(iq4_nl, dq_iq4_nl(b, y), 32, 18)
DQ_ROWS(iq4_xs, dq_iq4_xs(b, y), 256, 136)

void qf_dequantize_f32(const uint8_t *b, float *y, size_t n) { memcpy(y, b, n * 4); }
void qf_dequantize_f16(const uint8_t *b, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = qf_f16_to_f32(qf_get16(b + 2 * i));
}
void qf_dequantize_bf16(const uint8_t *b, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = qf_bf16_to_f32(qf_get16(b + 2 * i));
}

float qf_e4m3_to_f32(uint8_t v)
{
    int s = v >> 7, e = (v >> 3) & 0xF, m = v & 7;
    float r;
    if (e == 0xF && m == 7)
        r = NAN;
    else if (e == 0)
        r = ldexpf((float)m, -9);
    else
        r = ldexpf((float)(8 + m), e - 10);
    return s ? -r : r;
}

int qf_st_dequantize_rows(uint32_t kind, const uint8_t *q, const uint8_t *scales, size_t rows, size_t n,
                          uint32_t group, float *out)
{
    switch (kind) {
    case QF_ST_I8: {
        size_t stride = (n + 3) / 4 * 4;
        for (size_t r = 0; r < rows; r++) {
            float s = qf_bf16_to_f32(qf_get16(scales + 2 * r));
            for (size_t i = 0; i < n; i++)
                out[r * n + i] = (float)((int)q[r * stride + i] - 128) * s;
        }
        return 0;
    }
    case QF_ST_I4: {
        if (!group || n % group)
            return -EINVAL;
        size_t words = (n + 7) / 8, ng = n / group;
        for (size_t r = 0; r < rows; r++) {
            const uint8_t *w = q + r * words * 4;
            for (size_t i = 0; i < n; i++) {
                float s = qf_bf16_to_f32(qf_get16(scales + 2 * (r * ng + i / group)));
                int u = (w[4 * (i / 8) + (i % 8) / 2] >> (4 * (i % 2))) & 0xF;
                out[r * n + i] = (float)(u - 8) * s;
            }
        }
        return 0;
    }
    case QF_ST_FP8: {
        size_t nb = (n + 127) / 128;
        for (size_t r = 0; r < rows; r++) {
            for (size_t i = 0; i < n; i++) {
                uint32_t bits = qf_get32(scales + 4 * ((r / 128) * nb + i / 128));
                float sinv;
                memcpy(&sinv, &bits, 4);
                out[r * n + i] = qf_e4m3_to_f32(q[r * n + i]) * sinv;
            }
        }
        return 0;
    }
    default: return -EINVAL;
    }
}
