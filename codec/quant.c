/* quant.c — scalar reference kernels, byte-exact with ggml.
 *
 * Each quantize_<type> reproduces the algorithm of ggml's quantize_row_*_ref
 * (what llama-quantize runs without an importance matrix), including the
 * order of float operations: any reordering changes rounding and therefore
 * bytes. Block layouts are in codec/FORMATS.md. Source of the algorithms:
 * ggml/src/ggml-quants.c (MIT), re-implemented here.
 *
 * These are compiled with -ffp-contract=off (see meson.build): a fused
 * multiply-add would round differently from the reference.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "codec.h"
#include "quant_impl.h"

/* ggml treats groups whose largest magnitude is below this as all-zero. */
#define GROUP_MAX_EPS 1e-15f

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* float -> int32 truncation with x86 cvttss2si semantics: NaN and values out
 * of range give INT32_MIN. A plain C cast there is undefined behaviour; the
 * reference (compiled for x86) gets INT32_MIN, so do we, everywhere. */
static inline int32_t trunc_i32(float f)
{
    if (!(f > -2147483904.f && f < 2147483648.f))
        return INT32_MIN;
    return (int32_t)f;
}

/* ------------------------------------------------------------ legacy quants */

void qf_quantize_q8_0_ref(const float *x, uint8_t *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, x += 32, y += 34) {
        /* ggml's MAX(a, b) is a > b ? a : b, not fmaxf: a NaN is taken, and
         * the next value replaces it. Kept for identical bytes on any input. */
        float amax = 0.0f;
        for (int j = 0; j < 32; j++)
            amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        qf_put16(y, qf_f32_to_f16(d));
        for (int j = 0; j < 32; j++)
            y[2 + j] = (uint8_t)(int8_t)trunc_i32(roundf(x[j] * id));
    }
}

static inline void min_max(const float *x, int n, float *mn, float *mx)
{
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo)
            lo = x[j];
        if (x[j] > hi)
            hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

void qf_quantize_q4_0_ref(const float *x, uint8_t *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, x += 32, y += 18) {
        const float d = qf_signed_absmax(x, 32) / -8;
        const float id = d ? 1.0f / d : 0.0f;
        qf_put16(y, qf_f32_to_f16(d));
        for (int j = 0; j < 16; j++) {
            uint8_t a = (uint8_t)imin(15, (int8_t)trunc_i32(x[j] * id + 8.5f));
            uint8_t b = (uint8_t)imin(15, (int8_t)trunc_i32(x[16 + j] * id + 8.5f));
            y[2 + j] = (uint8_t)(a | (b << 4));
        }
    }
}

void qf_quantize_q4_1_ref(const float *x, uint8_t *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, x += 32, y += 20) {
        float mn, mx;
        min_max(x, 32, &mn, &mx);
        const float d = (mx - mn) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        qf_put16(y, qf_f32_to_f16(d));
        qf_put16(y + 2, qf_f32_to_f16(mn));
        for (int j = 0; j < 16; j++) {
            uint8_t a = (uint8_t)imin(15, (int8_t)trunc_i32((x[j] - mn) * id + 0.5f));
            uint8_t b = (uint8_t)imin(15, (int8_t)trunc_i32((x[16 + j] - mn) * id + 0.5f));
            y[4 + j] = (uint8_t)(a | (b << 4));
        }
    }
}

void qf_quantize_q5_0_ref(const float *x, uint8_t *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, x += 32, y += 22) {
        const float d = qf_signed_absmax(x, 32) / -16;
        const float id = d ? 1.0f / d : 0.0f;
        qf_put16(y, qf_f32_to_f16(d));
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            uint8_t a = (uint8_t)imin(31, (int8_t)trunc_i32(x[j] * id + 16.5f));
            uint8_t b = (uint8_t)imin(31, (int8_t)trunc_i32(x[16 + j] * id + 16.5f));
            y[6 + j] = (uint8_t)((a & 0x0f) | ((b & 0x0f) << 4));
            qh |= (uint32_t)((a & 0x10u) >> 4) << j;
            qh |= (uint32_t)((b & 0x10u) >> 4) << (j + 16);
        }
        qf_put32(y + 2, qh);
    }
}

void qf_quantize_q5_1_ref(const float *x, uint8_t *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, x += 32, y += 24) {
        float mn, mx;
        min_max(x, 32, &mn, &mx);
        const float d = (mx - mn) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        qf_put16(y, qf_f32_to_f16(d));
        qf_put16(y + 2, qf_f32_to_f16(mn));
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            uint8_t a = (uint8_t)trunc_i32((x[j] - mn) * id + 0.5f);
            uint8_t b = (uint8_t)trunc_i32((x[16 + j] - mn) * id + 0.5f);
            y[8 + j] = (uint8_t)((a & 0x0f) | ((b & 0x0f) << 4));
            qh |= (uint32_t)((a & 0x10u) >> 4) << j;
            qh |= (uint32_t)((b & 0x10u) >> 4) << (j + 16);
        }
        qf_put32(y + 4, qh);
    }
}

/* ------------------------------------------------------- k-quant helpers */

float qf_fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_min,
                           uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad)
{
    float min = x[0], max = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0)
        min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_err = 0;
    for (int i = 0; i < n; ++i) {
        int l = imax(0, imin(nmax, qf_nearest_int(iscale * (x[i] - min))));
        L[i] = (uint8_t)l;
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_err += w[i] * diff;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = imax(0, imin(nmax, qf_nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                err += w[i] * diff;
            }
            if (err < best_err) {
                memcpy(L, Laux, (size_t)n);
                best_err = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

/* Symmetric fit to [-nmax, nmax-1] with weights x^2 and a few rounds of
 * coordinate descent (q3_K). L receives values offset by +nmax. */
static float fit_sym_descent(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = imax(-nmax, imin(nmax - 1, qf_nearest_int(iscale * x[i])));
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = imax(-nmax, imin(nmax - 1, qf_nearest_int(x[i] * sl2 / slx)));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
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
    for (int i = 0; i < n; ++i)
        L[i] = (int8_t)(L[i] + nmax);
    return sumlx / suml2;
}

float qf_fit_sym(int n, int nmax, const float *x, int8_t *L, const float *qw)
{
    const float max = qf_signed_absmax(x, n);
    if (fabsf(max) < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = imax(-nmax, imin(nmax - 1, qf_nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        float w = qw ? qw[i] : x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0)
            continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = imax(-nmax, imin(nmax - 1, qf_nearest_int(iscale * x[i])));
            float w = qw ? qw[i] : x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                int l = qf_nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* 6-bit scale/min pair j of the 12-byte q4_K/q5_K scales array. */
void qf_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

/* Pack 256 2-bit values: byte l of each 32-byte group holds values l, l+32,
 * l+64, l+96 of its 128-value half. */
void qf_pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < 256; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/* ------------------------------------------------------------------ k-quants
 * Super-blocks of 256 values. Struct layouts (bytes):
 *   q2_K  84: scales[16] qs[64] d dmin
 *   q3_K 110: hmask[32] qs[64] scales[12] d
 *   q4_K 144: d dmin scales[12] qs[128]
 *   q5_K 176: d dmin scales[12] qh[32] qs[128]
 *   q6_K 210: ql[128] qh[64] scales[16] d
 */

void qf_q2fit16_ref(const float *x, uint8_t *L, float *scales, float *mins)
{
    uint8_t Laux[16];
    float w[16];
    for (int j = 0; j < 16; ++j) {
        for (int l = 0; l < 16; ++l)
            w[l] = fabsf(x[16 * j + l]);
        scales[j] = qf_fit_scale_min(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
    }
}

void qf_quantize_q2_K_ref(const float *x, uint8_t *y, size_t nb) { qf_quantize_q2_K_with(x, y, nb, qf_q2fit16_ref); }

void qf_quantize_q2_K_with(const float *x, uint8_t *y, size_t nb, qf_q2fit_fn fit)
{
    uint8_t L[256];
    float mins[16], scales[16];
    const float q4scale = 15.f;
    for (size_t i = 0; i < nb; i++, x += 256, y += 84) {
        uint8_t *sc = y, *qs = y + 16;
        float max_scale = 0, max_min = 0;
        fit(x, L, scales, mins);
        for (int j = 0; j < 16; ++j) {
            if (scales[j] > max_scale)
                max_scale = scales[j];
            if (mins[j] > max_min)
                max_min = mins[j];
        }
        uint16_t dh = 0, dminh = 0;
        if (max_scale > 0) {
            float iscale = q4scale / max_scale;
            for (int j = 0; j < 16; ++j)
                sc[j] = (uint8_t)qf_nearest_int(iscale * scales[j]);
            dh = qf_f32_to_f16(max_scale / q4scale);
        } else {
            memset(sc, 0, 16);
        }
        if (max_min > 0) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < 16; ++j)
                sc[j] |= (uint8_t)(qf_nearest_int(iscale * mins[j]) << 4);
            dminh = qf_f32_to_f16(max_min / q4scale);
        }
        for (int j = 0; j < 16; ++j) {
            const float d = qf_f16_to_f32(dh) * (sc[j] & 0xF);
            if (!d)
                continue;
            const float dm = qf_f16_to_f32(dminh) * (sc[j] >> 4);
            for (int ii = 0; ii < 16; ++ii)
                L[16 * j + ii] = (uint8_t)imax(0, imin(3, qf_nearest_int((x[16 * j + ii] + dm) / d)));
        }
        qf_pack_2bit(L, qs);
        qf_put16(y + 80, dh);
        qf_put16(y + 82, dminh);
    }
}

void qf_q3fit16_ref(const float *x, int8_t *L, float *scales)
{
    for (int j = 0; j < 16; ++j)
        scales[j] = fit_sym_descent(16, 4, x + 16 * j, L + 16 * j);
}

void qf_q3codes_ref(const float *x, const float *d, int8_t *L)
{
    for (int j = 0; j < 16; ++j) {
        if (!d[j])
            continue;
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] = (int8_t)(imax(-4, imin(3, qf_nearest_int(x[16 * j + ii] / d[j]))) + 4);
    }
}

void qf_quantize_q3_K_ref(const float *x, uint8_t *y, size_t nb)
{
    qf_quantize_q3_K_with(x, y, nb, qf_q3fit16_ref, qf_q3codes_ref);
}

void qf_quantize_q3_K_with(const float *x, uint8_t *y, size_t nb, qf_q6fit_fn fit, qf_q3codes_fn codes)
{
    int8_t L[256];
    float scales[16];
    for (size_t i = 0; i < nb; i++, x += 256, y += 110) {
        uint8_t *hmask = y, *qs = y + 32, *sc = y + 96;
        float max_scale = 0, amax = 0;
        fit(x, L, scales);
        for (int j = 0; j < 16; ++j) {
            float s = fabsf(scales[j]);
            if (s > amax) {
                amax = s;
                max_scale = scales[j];
            }
        }
        memset(sc, 0, 12);
        uint16_t dh = 0;
        if (max_scale) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < 16; ++j) {
                int8_t l = (int8_t)qf_nearest_int(iscale * scales[j]);
                l = (int8_t)(imax(-32, imin(31, l)) + 32);
                if (j < 8)
                    sc[j] = l & 0xF;
                else
                    sc[j - 8] |= (uint8_t)((l & 0xF) << 4);
                l >>= 4;
                sc[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
            }
            dh = qf_f32_to_f16(1 / iscale);
        }
        float d[16];
        for (int j = 0; j < 16; ++j) {
            int8_t s = (int8_t)(j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4);
            s = (int8_t)((s | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
            d[j] = qf_f16_to_f32(dh) * s;
        }
        codes(x, d, L);
        qf_q3_pack(L, hmask, qs);
        qf_put16(y + 108, dh);
    }
}

void qf_q3_pack(int8_t *L, uint8_t *hmask, uint8_t *qs)
{
    /* high bit of value j goes to bit (j / 32) of hmask[j % 32] */
    memset(hmask, 0, 32);
    for (int g = 0; g < 8; ++g) { /* branch-free: L is 0..7 */
        for (int k = 0; k < 32; ++k) {
            hmask[k] |= (uint8_t)((L[32 * g + k] >> 2) << g);
            L[32 * g + k] &= 3;
        }
    }
    qf_pack_2bit((const uint8_t *)L, qs);
}

void qf_kfit8_ref(const float *x, int nmax, float rmin, int nstep, uint8_t *L, float *scales, float *mins)
{
    uint8_t Laux[32];
    float w[32];
    for (int j = 0; j < 8; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l)
            w[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = qf_fit_scale_min(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
    }
}

/* Shared by q4_K (nmax 15) and q5_K (nmax 31): 8 sub-blocks of 32 with
 * 6-bit scales and mins. Fills d, dmin, scales[12] at y and L[256]. */
static void kquant_scales_mins(const float *x, uint8_t *y, uint8_t *L, int nmax, float rmin, int nstep,
                               qf_kfit8_fn fit, qf_kcodes_fn codes)
{
    float mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    fit(x, nmax, rmin, nstep, L, scales, mins);
    for (int j = 0; j < 8; ++j) {
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    uint8_t *sc = y + 4;
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; ++j) {
        uint8_t ls = (uint8_t)qf_nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)qf_nearest_int(inv_min * mins[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            sc[j - 4] |= (uint8_t)((ls >> 4) << 6);
            sc[j - 0] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    uint16_t dh = qf_f32_to_f16(max_scale / 63.f), dminh = qf_f32_to_f16(max_min / 63.f);
    qf_put16(y, dh);
    qf_put16(y + 2, dminh);
    float d[8], dm[8];
    for (int j = 0; j < 8; ++j) {
        uint8_t s, m;
        qf_scale_min_k4(j, sc, &s, &m);
        d[j] = qf_f16_to_f32(dh) * s;
        dm[j] = qf_f16_to_f32(dminh) * m;
    }
    codes(x, d, dm, nmax, L);
}

void qf_kcodes_ref(const float *x, const float *d, const float *dm, int nmax, uint8_t *L)
{
    for (int j = 0; j < 8; ++j) {
        if (!d[j])
            continue;
        for (int ii = 0; ii < 32; ++ii)
            L[32 * j + ii] = (uint8_t)imax(0, imin(nmax, qf_nearest_int((x[32 * j + ii] + dm[j]) / d[j])));
    }
}

void qf_quantize_q4_K_with(const float *x, uint8_t *y, size_t nb, qf_kfit8_fn fit, qf_kcodes_fn codes)
{
    uint8_t L[256];
    for (size_t i = 0; i < nb; i++, x += 256, y += 144) {
        kquant_scales_mins(x, y, L, 15, -1.f, 20, fit, codes);
        uint8_t *q = y + 16;
        for (int j = 0; j < 256; j += 64, q += 32)
            for (int l = 0; l < 32; ++l)
                q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

void qf_quantize_q5_K_with(const float *x, uint8_t *y, size_t nb, qf_kfit8_fn fit, qf_kcodes_fn codes)
{
    uint8_t L[256];
    for (size_t i = 0; i < nb; i++, x += 256, y += 176) {
        kquant_scales_mins(x, y, L, 31, -0.5f, 15, fit, codes);
        uint8_t *qh = y + 16, *ql = y + 48;
        memset(qh, 0, 32);
        uint8_t m1 = 1, m2 = 2;
        for (int n = 0; n < 256; n += 64, ql += 32) {
            for (int j = 0; j < 32; ++j) { /* branch-free: L is 0..31 */
                int l1 = L[n + j], l2 = L[n + j + 32];
                qh[j] |= (uint8_t)((l1 >> 4) * m1 | (l2 >> 4) * m2);
                ql[j] = (uint8_t)((l1 & 15) | ((l2 & 15) << 4));
            }
            m1 = (uint8_t)(m1 << 2);
            m2 = (uint8_t)(m2 << 2);
        }
    }
}

void qf_q6fit16_ref(const float *x, int8_t *L, float *scales)
{
    for (int ib = 0; ib < 16; ++ib)
        scales[ib] = qf_fit_sym(16, 32, x + 16 * ib, L + 16 * ib, NULL);
}

void qf_quantize_q6_K_ref(const float *x, uint8_t *y, size_t nb) { qf_quantize_q6_K_with(x, y, nb, qf_q6fit16_ref); }

void qf_quantize_q6_K_with(const float *x, uint8_t *y, size_t nb, qf_q6fit_fn fit)
{
    int8_t L[256];
    float scales[16];
    for (size_t i = 0; i < nb; i++, x += 256, y += 210) {
        fit(x, L, scales);
        qf_q6_finish(x, L, scales, y);
    }
}

void qf_q6_finish(const float *x, int8_t *L, const float *scales, uint8_t *y)
{
    uint8_t *ql = y, *qh = y + 128;
    int8_t *sc = (int8_t *)(y + 192);
    const float max_scale = qf_signed_absmax(scales, 16);
    if (fabsf(max_scale) < GROUP_MAX_EPS) {
        memset(y, 0, 210);
        return;
    }
    float iscale = -128.f / max_scale;
    uint16_t dh = qf_f32_to_f16(1 / iscale);
    qf_put16(y + 208, dh);
    for (int ib = 0; ib < 16; ++ib)
        sc[ib] = (int8_t)imin(127, qf_nearest_int(iscale * scales[ib]));
    for (int j = 0; j < 16; ++j) {
        float d = qf_f16_to_f32(dh) * sc[j];
        if (!d)
            continue;
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] = (int8_t)(imax(-32, imin(31, qf_nearest_int(x[16 * j + ii] / d))) + 32);
    }
    for (int j = 0; j < 256; j += 128, ql += 64, qh += 32) {
        for (int l = 0; l < 32; ++l) {
            const uint8_t *u = (const uint8_t *)L + j + l;
            ql[l] = (uint8_t)((u[0] & 0xF) | ((u[64] & 0xF) << 4));
            ql[l + 32] = (uint8_t)((u[32] & 0xF) | ((u[96] & 0xF) << 4));
            qh[l] = (uint8_t)((u[0] >> 4) | ((u[32] >> 4) << 2) | ((u[64] >> 4) << 4) | ((u[96] >> 4) << 6));
        }
    }
}

/* -------------------------------------------------------------------- iq4_nl
 * The non-linear 4-bit table of IQ4_NL and IQ4_XS (their quantizers are in
 * quant_w.c: llama-quantize always runs the weighted search for them). */
const int8_t qf_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

int qf_iq4_index(float x)
{
    const int8_t *v = qf_iq4nl_values;
    if (x <= v[0])
        return 0;
    if (x >= v[15])
        return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (x < v[mid])
            hi = mid;
        else
            lo = mid;
    }
    return x - v[hi - 1] < v[hi] - x ? hi - 1 : hi;
}


/* ------------------------------------------------------- float targets */

void qf_convert_f16_ref(const float *x, uint8_t *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        qf_put16(y + 2 * i, qf_f32_to_f16(x[i]));
}

void qf_convert_bf16_ref(const float *x, uint8_t *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        qf_put16(y + 2 * i, qf_f32_to_bf16(x[i]));
}

void qf_convert_f32_ref(const float *x, uint8_t *y, size_t n) { memcpy(y, x, n * sizeof(float)); }

void qf_quantize_q4_K_ref(const float *x, uint8_t *y, size_t nb) { qf_quantize_q4_K_with(x, y, nb, qf_kfit8_ref, qf_kcodes_ref); }
void qf_quantize_q5_K_ref(const float *x, uint8_t *y, size_t nb) { qf_quantize_q5_K_with(x, y, nb, qf_kfit8_ref, qf_kcodes_ref); }
