/* iq2.c — IQ2_S: llama-quantize's quantizer and ggml's dequantizer.
 *
 * Super-blocks of 256 in blocks of 16 (two groups of 8 each): every group
 * of 8 magnitudes is a point of a 1024-vector grid of odd values 1, 3, 5
 * (iq2_grids.h), signs stored apart, with a 4-bit scale per block. The
 * search (ggml's quantize_row_iq2_s_impl, llama.cpp v0.5.0
 * ggml/src/ggml-quants.c:5113-5280) tries 19 scales, rounds each group to
 * the lattice and, off the grid, takes the best of the points nearest to
 * it (iq2_tables.h, made at build time by gen_iq2.c); then groups left
 * off the grid are rounded again at the best scale. Re-implemented keeping
 * ggml's float order; the search runs 8 blocks at once in vector lanes
 * where the CPU has them (quant_x86.c, the same bytes). Weights: the
 * imatrix's qw * sqrt(sigma2 + x^2), or sigma2 / 4 + x^2 without one.
 * Used by the IQ3_XXS mix (attn_q, attn_k) and IQ2_M.
 * Block layout (82 bytes): d (fp16), 32 low bytes of the grid indices, 32
 * sign bytes, qh[8] (their 2 high bits), scales[8] (4 bits per block of
 * 16); codec/FORMATS.md.
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "codec.h"
#include "iq2_grids.h"
#include "iq2_tables.h"
#include "quant_impl.h"

/* The codes of a group at inverse scale id: on the grid (true), or its
 * best neighbour at scale (false) */
static bool round_group(const float *xval, const float *waux, float id, float scale, int8_t *L)
{
    int u = 0;
    for (int i = 0; i < 8; ++i) {
        int l = qf_nearest_int(0.5f * (id * xval[i] - 1));
        L[i] = (int8_t)(l < 0 ? 0 : l > 2 ? 2 : l);
        u |= L[i] << 2 * i;
    }
    int gi = qf_iq2s_map[u];
    if (gi >= 0)
        return true;
    qf_iq_best_neighbour(&qf_iq2s_pts[0][0], 8, qf_iq2s_neigh - gi - 1, xval, waux, scale, L);
    return false;
}

static void sums(const float *w, const float *xval, const int8_t *L, float *sumqx, float *sumq2)
{
    float a = 0, b = 0;
    for (int i = 0; i < 16; ++i) {
        float q = 2 * L[i] + 1;
        a += w[i] * xval[i] * q;
        b += w[i] * q * q;
    }
    *sumqx = a, *sumq2 = b;
}

/* One block's scale search: codes into L, the scale returned (0: a block
 * below ggml's epsilon, *zero set) */
static float search(const float *xval, const float *w, const float *waux, int8_t *L, bool *zero)
{
    float max = xval[0];
    for (int i = 1; i < 16; ++i)
        max = max > xval[i] ? max : xval[i];
    memset(L, 0, 16);
    if ((*zero = max < 1e-8f)) /* GROUP_MAX_EPS_IQ2_S */
        return 0;
    float best = 0, scale = max / 5;
    int8_t Laux[16];
    bool on[2] = {true, true}, on_aux[2];
    for (int is = -9; is <= 9; ++is) {
        float id = (5 + is * 0.1f) / max, this_scale = 1 / id;
        for (int k = 0; k < 2; ++k)
            on_aux[k] = round_group(xval + 8 * k, waux + 8 * k, id, this_scale, Laux + 8 * k);
        float sumqx, sumq2;
        sums(w, xval, Laux, &sumqx, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            memcpy(L, Laux, 16);
            on[0] = on_aux[0], on[1] = on_aux[1];
        }
    }
    if ((!on[0] || !on[1]) && scale > 0) { /* off the grid: again, at the scale found */
        float id = 1 / scale;
        for (int k = 0; k < 2; ++k)
            if (!on[k])
                round_group(xval + 8 * k, waux + 8 * k, id, scale, L + 8 * k);
        float sumqx, sumq2;
        sums(w, xval, L, &sumqx, &sumq2);
        if (sumq2 > 0)
            scale = sumqx / sumq2;
    }
    return scale;
}

static void block_iq2_s(const float *x, const float *qw, uint8_t *y, bool simd)
{
    memset(y, 0, 82);
    uint8_t *qs = y + 2, *signs = y + 34, *qh = y + 66, *sc = y + 74;
    float sumx2 = 0;
    for (int i = 0; i < 256; ++i)
        sumx2 += x[i] * x[i];
    const float sigma2 = 2 * sumx2 / 256;
    float xval[16][16], w[16][16], waux[16][16], scales[16], max_scale = 0;
    int8_t L[16][16];
    bool zero[16];
    uint8_t bsigns[16][2];
    for (int ib = 0; ib < 16; ++ib) {
        const float *xb = x + 16 * ib;
        for (int i = 0; i < 16; ++i)
            w[ib][i] = qw ? qw[16 * ib + i] * sqrtf(sigma2 + xb[i] * xb[i]) : 0.25f * sigma2 + xb[i] * xb[i];
        for (int i = 0; i < 16; ++i)
            waux[ib][i] = sqrtf(w[ib][i]);
        for (int k = 0; k < 2; ++k) {
            uint8_t s = 0;
            for (int i = 0; i < 8; ++i) {
                if (xb[8 * k + i] >= 0) {
                    xval[ib][8 * k + i] = xb[8 * k + i];
                } else {
                    xval[ib][8 * k + i] = -xb[8 * k + i];
                    s |= (uint8_t)(1 << i);
                }
            }
            bsigns[ib][k] = s;
        }
    }
#ifdef QF_HAVE_X86
    if (simd) {
        for (int h = 0; h < 16; h += 8)
            qf_iq2_search8_avx2(qf_iq2s_map, qf_iq2s_np, xval + h, w + h, waux + h, L + h, scales + h, zero + h);
    }
#endif
    for (int ib = 0; ib < 16; ++ib) {
        if (!simd)
            scales[ib] = search(xval[ib], w[ib], waux[ib], L[ib], &zero[ib]);
        if (zero[ib]) {
            scales[ib] = 0;
            continue;
        }
        float scale = scales[ib];
        if (scale < 0) {
            scale = -scale;
            bsigns[ib][0] = (uint8_t)~bsigns[ib][0], bsigns[ib][1] = (uint8_t)~bsigns[ib][1];
        }
        for (int k = 0; k < 2; ++k) {
            int u = 0;
            for (int i = 0; i < 8; ++i)
                u |= L[ib][8 * k + i] << 2 * i;
            int gi = qf_iq2s_map[u]; /* on the grid by construction */
            const int i8 = 2 * ib + k;
            qs[i8] = (uint8_t)(gi & 255);
            qh[i8 / 4] |= (uint8_t)((gi >> 8) << 2 * (i8 % 4));
            signs[i8] = bsigns[ib][k];
        }
        scales[ib] = scale;
        max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale)
        return;
    float d = max_scale / 31;
    qf_put16(y, qf_f32_to_f16(d * 0.9875f));
    float id = 1 / d;
    for (int ib = 0; ib < 16; ++ib) {
        int l = qf_nearest_int(0.5f * (id * scales[ib] - 1));
        l = l < 0 ? 0 : l > 15 ? 15 : l;
        sc[ib / 2] |= (uint8_t)(ib % 2 ? l << 4 : l);
    }
}

void qf_iq2_rows(const float *x, const float *qw, uint8_t *y, size_t nb, bool simd)
{
    for (size_t i = 0; i < nb; i++)
        block_iq2_s(x + 256 * i, qw ? qw + 256 * i : NULL, y + 82 * i, simd);
}

void qf_quantize_iq2_s_ref(const float *x, uint8_t *y, size_t nb) { qf_iq2_rows(x, NULL, y, nb, false); }
#ifdef QF_HAVE_X86
void qf_quantize_iq2_s_avx2(const float *x, uint8_t *y, size_t nb) { qf_iq2_rows(x, NULL, y, nb, true); }
#endif

/* ggml's dequantize_row_iq2_s */
void qf_dequantize_iq2_s(const uint8_t *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b += 82) {
        const float d = qf_f16_to_f32(qf_get16(b));
        const uint8_t *qs = b + 2, *signs = b + 34, *qh = b + 66, *sc = b + 74;
        for (int ib32 = 0; ib32 < 8; ++ib32) {
            const float db[2] = {d * (0.5f + (sc[ib32] & 0xf)) * 0.25f, d * (0.5f + (sc[ib32] >> 4)) * 0.25f};
            for (int l = 0; l < 4; ++l) {
                const int gi = qs[l] | ((qh[ib32] << (8 - 2 * l)) & 0x300);
                for (int j = 0; j < 8; ++j) {
                    float g = qf_iq2s_level[(qf_iq2s_grid1024[gi] >> 2 * j) & 3];
                    *y++ = db[l / 2] * g * (signs[l] & (1u << j) ? -1.f : 1.f);
                }
            }
            qs += 4;
            signs += 4;
        }
    }
}
