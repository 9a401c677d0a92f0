/* quant_w.c — the quantizers llama-quantize runs with an importance matrix,
 * and the IQ4 ones it runs always.
 *
 * With --imatrix, ggml's quantize_<type>(src, dst, nrow, n_per_row, qw)
 * takes another algorithm than the _ref kernels of quant.c: each value gets
 * the weight qw[i] * sqrt(sigma2 + x[i]^2), and scales and mins come from
 * weighted searches (make_qx_quants, make_qkx3_quants, make_qp_quants of
 * ggml/src/ggml-quants.c, llama.cpp v0.5.0; summarised with line numbers in
 * ../shared/docs/imatrix.md §3). IQ4_NL and IQ4_XS use one algorithm with
 * or without weights (x^2 without). Re-implemented here, keeping the order
 * of every float operation: a different order rounds differently. Compiled
 * with -ffp-contract=off like quant.c.
 *
 * Q4_0..Q5_1 normalise by the mean square of the whole row, so these work
 * on rows, not blocks.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "codec.h"
#include "quant_impl.h"

#define GROUP_MAX_EPS 1e-15f

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* make_qkx3_quants with weights w, rmin -0.9, rdelta 0.05, 36 steps, squared
 * error: quant.c's make_qkx2_quants with those arguments */
static float fit_min3(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_min)
{
    uint8_t Laux[32];
    return qf_fit_scale_min(n, nmax, x, w, L, neg_min, Laux, -0.9f, 0.05f, 36, false);
}

/* The fits of cnt (<= 8) sub-blocks of n values, x + stride * j with
 * weights w + stride * j: 8 at once in vector lanes where the CPU has them
 * (quant_x86.c, the same bytes), else one by one. */
static void fit_sym_n(int cnt, bool simd, const float *x, const float *w, int stride, int n, int nmax, int8_t *L,
                      float *sc)
{
#ifdef QF_HAVE_X86
    if (simd && cnt == 8) {
        qf_fit_sym8_avx2(x, w, stride, n, nmax, L, sc);
        return;
    }
#endif
    (void)simd;
    for (int j = 0; j < cnt; j++)
        sc[j] = qf_fit_sym(n, nmax, x + stride * j, L + stride * j, w + stride * j);
}

static void fit_min_n(int cnt, bool simd, const float *x, const float *w, int stride, int n, int nmax, uint8_t *L,
                      float *sc, float *neg_min)
{
#ifdef QF_HAVE_X86
    if (simd && cnt == 8) {
        qf_fit_min8_avx2(x, w, stride, n, nmax, -0.9f, 0.05f, 36, L, sc, neg_min);
        return;
    }
#endif
    (void)simd;
    for (int j = 0; j < cnt; j++)
        sc[j] = fit_min3(n, nmax, x + stride * j, w + stride * j, L + stride * j, &neg_min[j]);
}

/* make_qp_quants: non-negative x (sub-block scales or mins) to [0, nmax]
 * with weights w, then coordinate descent. Returns the scale. */
static float fit_pos(int n, int nmax, const float *x, uint8_t *L, const float *w)
{
    float max = 0;
    for (int i = 0; i < n; ++i)
        max = max > x[i] ? max : x[i];
    if (max < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = nmax / max;
    for (int i = 0; i < n; ++i)
        L[i] = (uint8_t)qf_nearest_int(iscale * x[i]);
    float scale = 1 / iscale;
    float best_err = 0;
    for (int i = 0; i < n; ++i) {
        float diff = x[i] - scale * L[i];
        best_err += w[i] * diff * diff;
    }
    for (int is = -4; is <= 4; ++is) {
        if (is == 0)
            continue;
        float iscale_is = (0.1f * is + nmax) / max;
        float scale_is = 1 / iscale_is;
        float err = 0;
        for (int i = 0; i < n; ++i) {
            int l = imin(nmax, qf_nearest_int(iscale_is * x[i]));
            float diff = x[i] - scale_is * l;
            err += w[i] * diff * diff;
        }
        if (err < best_err) {
            best_err = err;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = imin(nmax, qf_nearest_int(iscale * x[i]));
        L[i] = (uint8_t)l;
        sumlx += w[i] * x[i] * l;
        suml2 += w[i] * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            float slx = sumlx - w[i] * x[i] * L[i];
            float sl2 = suml2 - w[i] * L[i] * L[i];
            if (slx > 0 && sl2 > 0) {
                int new_l = imin(nmax, qf_nearest_int(x[i] * sl2 / slx));
                if (new_l != L[i]) {
                    slx += w[i] * x[i] * new_l;
                    sl2 += w[i] * new_l * new_l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed)
            break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

static float sum_squares(const float *x, size_t n)
{
    float s = 0;
    for (size_t j = 0; j < n; ++j)
        s += x[j] * x[j];
    return s;
}

/* w[j] = qw[j] * sqrt(sigma2 + x[j]^2): the weight of every imatrix path;
 * returns their sum (in index order, as ggml sums them) */
static float weigh(const float *x, const float *qw, float sigma2, int n, float *w)
{
    float sum = 0;
    for (int j = 0; j < n; ++j) {
        w[j] = qw[j] * sqrtf(sigma2 + x[j] * x[j]);
        sum += w[j];
    }
    return sum;
}

/* ------------------------------------------------------------ legacy types */

/* q4_0 (nmax 8, 4 bits) and q5_0 (nmax 16, 5 bits): 32 values, fp16 d */
static void row_q_0(const float *x, size_t n, const float *qw, uint8_t *y, int nmax, bool simd)
{
    const float sigma2 = sum_squares(x, n) / n;
    const size_t bsz = nmax == 8 ? 18 : 22, nb = n / 32;
    float w[256], d[8];
    int8_t L[256];
    for (size_t ib = 0; ib < nb; ib += 8) {
        int cnt = nb - ib < 8 ? (int)(nb - ib) : 8;
        for (int k = 0; k < cnt; k++)
            weigh(x + 32 * (ib + k), qw + 32 * (ib + k), sigma2, 32, w + 32 * k);
        fit_sym_n(cnt, simd, x + 32 * ib, w, 32, 32, nmax, L, d);
        for (int k = 0; k < cnt; k++) {
            uint8_t *b = y + bsz * (ib + k), *qs = b + (nmax == 8 ? 2 : 6);
            const int8_t *Lb = L + 32 * k;
            qf_put16(b, qf_f32_to_f16(d[k]));
            uint32_t qh = 0;
            for (int j = 0; j < 16; ++j) {
                uint8_t a = (uint8_t)Lb[j], c = (uint8_t)Lb[j + 16];
                qs[j] = (uint8_t)((a & 0xF) | ((c & 0xF) << 4));
                qh |= (uint32_t)((a & 0x10u) >> 4) << j;
                qh |= (uint32_t)((c & 0x10u) >> 4) << (j + 16);
            }
            if (nmax == 16)
                qf_put32(b + 2, qh);
        }
    }
}

/* q4_1 (nmax 15) and q5_1 (nmax 31): 32 values, fp16 d and m */
static void row_q_1(const float *x, size_t n, const float *qw, uint8_t *y, int nmax, bool simd)
{
    const float sigma2 = sum_squares(x, n) / n;
    const size_t bsz = nmax == 15 ? 20 : 24, nb = n / 32;
    float w[256], d[8], neg_min[8];
    uint8_t L[256];
    for (size_t ib = 0; ib < nb; ib += 8) {
        int cnt = nb - ib < 8 ? (int)(nb - ib) : 8;
        for (int k = 0; k < cnt; k++)
            weigh(x + 32 * (ib + k), qw + 32 * (ib + k), sigma2, 32, w + 32 * k);
        fit_min_n(cnt, simd, x + 32 * ib, w, 32, 32, nmax, L, d, neg_min);
        for (int k = 0; k < cnt; k++) {
            uint8_t *b = y + bsz * (ib + k), *qs = b + (nmax == 15 ? 4 : 8);
            const uint8_t *Lb = L + 32 * k;
            qf_put16(b, qf_f32_to_f16(d[k]));
            qf_put16(b + 2, qf_f32_to_f16(-neg_min[k]));
            uint32_t qh = 0;
            for (int j = 0; j < 16; ++j) {
                qs[j] = (uint8_t)((Lb[j] & 0xF) | ((Lb[j + 16] & 0xF) << 4));
                qh |= (uint32_t)((Lb[j] & 0x10u) >> 4) << j;
                qh |= (uint32_t)((Lb[j + 16] & 0x10u) >> 4) << (j + 16);
            }
            if (nmax == 31)
                qf_put32(b + 4, qh);
        }
    }
}

/* ----------------------------------------------------------------- k-quants */

static void block_q2_K(const float *x, const float *qw, uint8_t *y, bool simd)
{
    uint8_t L[256], Ls[16], Lm[16];
    float scales[16], mins[16], sw[16], w[256];
    const float sigma2 = sum_squares(x, 256) / 256;
    for (int j = 0; j < 16; ++j)
        sw[j] = weigh(x + 16 * j, qw + 16 * j, sigma2, 16, w + 16 * j);
    for (int g = 0; g < 2; g++)
        fit_min_n(8, simd, x + 128 * g, w + 128 * g, 16, 16, 3, L + 128 * g, scales + 8 * g, mins + 8 * g);
    float dm = fit_pos(16, 15, scales, Ls, sw);
    float mm = fit_pos(16, 15, mins, Lm, sw);
    uint16_t dh = qf_f32_to_f16(dm), mh = qf_f32_to_f16(mm);
    dm = qf_f16_to_f32(dh);
    mm = qf_f16_to_f32(mh);
    uint8_t *sc = y;
    for (int j = 0; j < 16; ++j)
        sc[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
    for (int j = 0; j < 16; ++j) {
        const float d = dm * (sc[j] & 0xF);
        if (!d)
            continue;
        const float m = mm * (sc[j] >> 4);
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] = (uint8_t)imax(0, imin(3, qf_nearest_int((x[16 * j + ii] + m) / d)));
    }
    qf_pack_2bit(L, y + 16);
    qf_put16(y + 80, dh);
    qf_put16(y + 82, mh);
}

static void block_q3_K(const float *x, const float *qw, uint8_t *y, bool simd)
{
    int8_t L[256], Ls[16];
    float scales[16], sw[16], w[256];
    const float sigma2 = 2 * sum_squares(x, 256) / 256;
    for (int j = 0; j < 16; ++j)
        sw[j] = weigh(x + 16 * j, qw + 16 * j, sigma2, 16, w + 16 * j);
    for (int g = 0; g < 2; g++)
        fit_sym_n(8, simd, x + 128 * g, w + 128 * g, 16, 16, 4, L + 128 * g, scales + 8 * g);
    uint8_t *hmask = y, *qs = y + 32, *sc = y + 96;
    memset(sc, 0, 12);
    float d_block = qf_fit_sym(16, 32, scales, Ls, sw);
    for (int j = 0; j < 16; ++j) {
        int l = Ls[j];
        if (j < 8)
            sc[j] = (uint8_t)(l & 0xF);
        else
            sc[j - 8] |= (uint8_t)((l & 0xF) << 4);
        l >>= 4;
        sc[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
    }
    uint16_t dh = qf_f32_to_f16(d_block);
    for (int j = 0; j < 16; ++j) {
        int8_t s = (int8_t)(j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4);
        s = (int8_t)((s | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
        float d = qf_f16_to_f32(dh) * s;
        if (!d)
            continue;
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] = (int8_t)(imax(-4, imin(3, qf_nearest_int(x[16 * j + ii] / d))) + 4);
    }
    qf_q3_pack(L, hmask, qs);
    qf_put16(y + 108, dh);
}

/* q4_K (nmax 15) and q5_K (nmax 31): 8 sub-blocks of 32 */
static void block_q45_K(const float *x, const float *qw, uint8_t *y, int nmax, bool simd)
{
    uint8_t L[256], Ls[8], Lm[8];
    float scales[8], mins[8], sw[8], w[256];
    const float sigma2 = 2 * sum_squares(x, 256) / 256;
    for (int j = 0; j < 8; ++j)
        sw[j] = weigh(x + 32 * j, qw + 32 * j, sigma2, 32, w + 32 * j);
    fit_min_n(8, simd, x, w, 32, 32, nmax, L, scales, mins);
    float d_block = fit_pos(8, 63, scales, Ls, sw);
    float m_block = fit_pos(8, 63, mins, Lm, sw);
    uint8_t *sc = y + 4;
    for (int j = 0; j < 8; ++j) {
        uint8_t ls = Ls[j] < 63 ? Ls[j] : 63, lm = Lm[j] < 63 ? Lm[j] : 63; /* q4_K's are <= 63 already */
        if (j < 4) {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            sc[j - 4] |= (uint8_t)((ls >> 4) << 6);
            sc[j - 0] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    uint16_t dh = qf_f32_to_f16(d_block), mh = qf_f32_to_f16(m_block);
    qf_put16(y, dh);
    qf_put16(y + 2, mh);
    for (int j = 0; j < 8; ++j) {
        uint8_t s, m;
        qf_scale_min_k4(j, sc, &s, &m);
        const float d = qf_f16_to_f32(dh) * s;
        if (!d)
            continue;
        const float dm = qf_f16_to_f32(mh) * m;
        for (int ii = 0; ii < 32; ++ii)
            L[32 * j + ii] = (uint8_t)imax(0, imin(nmax, qf_nearest_int((x[32 * j + ii] + dm) / d)));
    }
    if (nmax == 15) {
        uint8_t *q = y + 16;
        for (int j = 0; j < 256; j += 64, q += 32)
            for (int l = 0; l < 32; ++l)
                q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
        return;
    }
    uint8_t *qh = y + 16, *ql = y + 48;
    memset(qh, 0, 32);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < 256; n += 64, ql += 32) {
        for (int j = 0; j < 32; ++j) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            qh[j] |= (uint8_t)((l1 >> 4) * m1 | (l2 >> 4) * m2);
            ql[j] = (uint8_t)((l1 & 15) | ((l2 & 15) << 4));
        }
        m1 = (uint8_t)(m1 << 2);
        m2 = (uint8_t)(m2 << 2);
    }
}

/* q6_K: the reference algorithm with the raw imatrix as make_qx_quants' weights */
static void block_q6_K(const float *x, const float *qw, uint8_t *y, bool simd)
{
    int8_t L[256];
    float scales[16];
    for (int g = 0; g < 2; g++)
        fit_sym_n(8, simd, x + 128 * g, qw + 128 * g, 16, 16, 32, L + 128 * g, scales + 8 * g);
    qf_q6_finish(x, L, scales, y);
}

/* --------------------------------------------------------------------- iq4 */

/* quantize_row_iq4_nl_impl's search (ntry 7) for the scale of one block of
 * 32 with weights w: 0 for an all-(near-)zero block. */
static float iq4_fit(const float *xb, const float *w)
{
    const int8_t *v = qf_iq4nl_values;
    const int ntry = 7;
    const float max = qf_signed_absmax(xb, 32);
    if (fabsf(max) < GROUP_MAX_EPS)
        return 0;
    float d = -max / v[0];
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; ++j) {
        float q = v[qf_iq4_index(id * xb[j])];
        sumqx += w[j] * q * xb[j];
        sumq2 += w[j] * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; ++itry) {
        id = (itry + v[0]) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < 32; ++j) {
            float q = v[qf_iq4_index(id * xb[j])];
            sumqx += w[j] * q * xb[j];
            sumq2 += w[j] * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

/* iq4_fit of cnt consecutive blocks of 32: 8 at once in vector lanes */
static void iq4_fits(const float *x, const float *w, int cnt, bool simd, float *scales)
{
#ifdef QF_HAVE_X86
    if (simd && cnt == 8) {
        qf_iq4_fit8_avx2(x, w, scales);
        return;
    }
#endif
    (void)simd;
    for (int k = 0; k < cnt; k++)
        scales[k] = iq4_fit(x + 32 * k, w + 32 * k);
}

/* the weights of a super-block of sbs values: the imatrix's with
 * sigma2 = 2 * mean square, or x^2 without one */
static void iq4_weights(const float *x, const float *qw, int sbs, float *w)
{
    float sigma2 = 0;
    for (int j = 0; j < sbs; ++j)
        sigma2 += x[j] * x[j];
    sigma2 *= 2.f / sbs;
    for (int ib = 0; ib < sbs / 32; ++ib) {
        if (qw)
            weigh(x + 32 * ib, qw + 32 * ib, sigma2, 32, w + 32 * ib);
        else
            for (int j = 0; j < 32; ++j)
                w[32 * ib + j] = x[32 * ib + j] * x[32 * ib + j];
    }
}

static void pack_iq4(const uint8_t *L, int n, uint8_t *q4)
{
    for (int i = 0; i < n / 32; ++i)
        for (int j = 0; j < 16; ++j)
            q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

/* IQ4_NL: nb blocks of 32 (fp16 d, 16 bytes of indices), each its own
 * super-block */
static void blocks_iq4_nl(const float *x, const float *qw, uint8_t *y, size_t nb, bool simd)
{
    float w[256], scales[8];
    uint8_t L[32];
    for (size_t ib = 0; ib < nb; ib += 8) {
        int cnt = nb - ib < 8 ? (int)(nb - ib) : 8;
        for (int k = 0; k < cnt; k++)
            iq4_weights(x + 32 * (ib + k), qw ? qw + 32 * (ib + k) : NULL, 32, w + 32 * k);
        iq4_fits(x + 32 * ib, w, cnt, simd, scales);
        for (int k = 0; k < cnt; k++) {
            const float *xb = x + 32 * (ib + k);
            uint8_t *b = y + 18 * (ib + k);
            qf_put16(b, qf_f32_to_f16(scales[k]));
            float id = scales[k] ? 1 / scales[k] : 0;
            for (int j = 0; j < 32; ++j)
                L[j] = (uint8_t)qf_iq4_index(id * xb[j]);
            pack_iq4(L, 32, b + 2);
        }
    }
}

/* IQ4_XS: one super-block of 256: fp16 d, u16 scales_h, scales_l[4],
 * qs[128]; the 8 block scales quantized to 6 bits around d = -max/32 */
static void block_iq4_xs(const float *x, const float *qw, uint8_t *y, bool simd)
{
    float w[256], scales[8];
    uint8_t L[256];
    iq4_weights(x, qw, 256, w);
    iq4_fits(x, w, 8, simd, scales);
    const float max_scale = qf_signed_absmax(scales, 8);
    uint16_t scales_h = 0;
    uint8_t *scales_l = y + 4;
    memset(scales_l, 0, 4);
    float d = -max_scale / 32;
    qf_put16(y, qf_f32_to_f16(d));
    float id = d ? 1 / d : 0.f;
    for (int ib = 0; ib < 8; ++ib) {
        int l = imax(-32, imin(31, qf_nearest_int(id * scales[ib])));
        float dl = d * l;
        float idl = dl ? 1 / dl : 0.f;
        for (int j = 0; j < 32; ++j)
            L[32 * ib + j] = (uint8_t)qf_iq4_index(idl * x[32 * ib + j]);
        l += 32;
        if (ib % 2 == 0)
            scales_l[ib / 2] = (uint8_t)(l & 0xf);
        else
            scales_l[ib / 2] |= (uint8_t)((l & 0xf) << 4);
        scales_h |= (uint16_t)((l >> 4) << 2 * (ib % 8));
    }
    qf_put16(y + 2, scales_h);
    pack_iq4(L, 256, y + 8);
}

/* both without an imatrix: llama-quantize's quantize_iq4_nl / _xs with NULL
 * weights (ntry 7, weights x^2); scalar, and lane-parallel for the table */
void qf_quantize_iq4_nl_ref(const float *x, uint8_t *y, size_t nb) { blocks_iq4_nl(x, NULL, y, nb, false); }

void qf_quantize_iq4_xs_ref(const float *x, uint8_t *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++)
        block_iq4_xs(x + 256 * i, NULL, y + 136 * i, false);
}

#ifdef QF_HAVE_X86
void qf_quantize_iq4_nl_avx2(const float *x, uint8_t *y, size_t nb) { blocks_iq4_nl(x, NULL, y, nb, true); }

void qf_quantize_iq4_xs_avx2(const float *x, uint8_t *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++)
        block_iq4_xs(x + 256 * i, NULL, y + 136 * i, true);
}
#endif

/* ---------------------------------------------------------------- dispatch */

bool qf_type_uses_imatrix(uint32_t type)
{
    switch (type) {
    case QF_Q4_0: case QF_Q4_1: case QF_Q5_0: case QF_Q5_1: case QF_Q2_K: case QF_Q3_K: case QF_Q4_K:
    case QF_Q5_K: case QF_Q6_K: case QF_IQ4_NL: case QF_IQ4_XS: case QF_IQ3_S: case QF_IQ3_XXS: case QF_IQ2_S:
        return true;
    default: return false;
    }
}

int qf_quantize_row_imat(uint32_t type, const float *x, size_t n, const float *qw, uint8_t *y, bool scalar_only)
{
    const struct qf_type_info *ti = qf_type_get(type);
    if (!ti || !qf_type_uses_imatrix(type) || !qw || n == 0 || n % ti->blck)
        return -EINVAL;
    size_t nb = n / ti->blck;
    const bool simd = !scalar_only && qf_simd_available();
    switch (type) {
    case QF_Q4_0: row_q_0(x, n, qw, y, 8, simd); break;
    case QF_Q5_0: row_q_0(x, n, qw, y, 16, simd); break;
    case QF_Q4_1: row_q_1(x, n, qw, y, 15, simd); break;
    case QF_Q5_1: row_q_1(x, n, qw, y, 31, simd); break;
    case QF_IQ4_NL: blocks_iq4_nl(x, qw, y, nb, simd); break;
    case QF_IQ3_S: case QF_IQ3_XXS: qf_iq3_rows(type, x, qw, y, nb, simd); break;
    case QF_IQ2_S: qf_iq2_rows(x, qw, y, nb, simd); break;
    default:
        for (size_t i = 0; i < nb; i++, x += ti->blck, qw += ti->blck, y += ti->size) {
            switch (type) {
            case QF_Q2_K: block_q2_K(x, qw, y, simd); break;
            case QF_Q3_K: block_q3_K(x, qw, y, simd); break;
            case QF_Q4_K: block_q45_K(x, qw, y, 15, simd); break;
            case QF_Q5_K: block_q45_K(x, qw, y, 31, simd); break;
            case QF_Q6_K: block_q6_K(x, qw, y, simd); break;
            default: block_iq4_xs(x, qw, y, simd); break;
            }
        }
    }
    return 0;
}
