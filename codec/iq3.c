/* iq3.c — IQ3_S and IQ3_XXS: llama-quantize's quantizers and ggml's
 * dequantizers.
 *
 * Super-blocks of 256 in blocks of 32; every group of 4 values is a point
 * of a grid of 512 (IQ3_S) or 256 (IQ3_XXS) vectors of odd values 1..15,
 * signs apart, with a 4-bit scale per block. The search (ggml's
 * quantize_row_iq3_s_impl and quantize_row_iq3_xxs_impl, llama.cpp v0.5.0
 * ggml/src/ggml-quants.c:3938-4351; summarised in
 * ../shared/docs/imatrix.md §6) tries 19 (IQ3_S) or 31 (IQ3_XXS) scales,
 * rounds each group to the lattice and, off the grid, takes the best of
 * its precomputed neighbours (iq3_tables.h, made at build time by
 * gen_iq3.c). Re-implemented keeping ggml's float order, and its quirks:
 * an all-zero IQ3_S block does not advance the qs/signs write position.
 * Weights: the imatrix's qw * sqrt(sigma2 + x^2), or x^2 without one.
 * Block layouts: codec/FORMATS.md.
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "codec.h"
#include "iq3_grids.h"
#include "iq3_tables.h"
#include "quant_impl.h"

struct grid {
    const int8_t (*pts)[4]; /* 2 * l + 1 per coordinate */
    const int32_t *map;     /* a point's index, or -(offset of its neighbour list + 1) */
    const uint16_t *neigh;  /* per list: count, then grid indices by (distance, index) */
    const int32_t *np;      /* the same lists with each neighbour's coordinates packed (vector code) */
};

static const struct grid g256 = {qf_iq3_pts256, qf_iq3_map256, qf_iq3_neigh256, qf_iq3_np256};
static const struct grid g512 = {qf_iq3_pts512, qf_iq3_map512, qf_iq3_neigh512, qf_iq3_np512};


/* Codes of group k at inverse scale id: on the grid, or its best neighbour
 * at scale (then *on = false). Returns the grid index. */
static int round_group(const struct grid *g, const float *xval, const float *waux, float id, float scale, int8_t *L,
                       bool *on)
{
    int u = 0;
    for (int i = 0; i < 4; ++i) {
        int l = qf_nearest_int(0.5f * (id * xval[i] - 1));
        L[i] = (int8_t)(l < 0 ? 0 : l > 7 ? 7 : l);
        u |= L[i] << 3 * i;
    }
    int gi = g->map[u];
    *on = gi >= 0;
    if (gi < 0)
        gi = qf_iq_best_neighbour(&g->pts[0][0], 4, g->neigh - gi - 1, xval, waux, scale, L);
    return gi;
}

static void sums(const float *w, const float *xval, const int8_t *L, float *sumqx, float *sumq2)
{
    *sumqx = *sumq2 = 0;
    for (int i = 0; i < 32; ++i) {
        float q = 2 * L[i] + 1;
        *sumqx += w[i] * xval[i] * q;
        *sumq2 += w[i] * q * q;
    }
}

/* The scale search of one block of 32 (|x| in xval): codes into L, the
 * scale returned; *zero for a block the quantizer skips. xxs: IQ3_XXS's
 * 31 trials and re-rounding of off-grid groups only, else IQ3_S's. */
static float search(const struct grid *g, bool xxs, const float *xval, const float *w, const float *waux, int8_t *L,
                    bool *zero)
{
    const int kMaxQ = 8, ntrial = xxs ? 15 : 9;
    float max = xval[0];
    for (int i = 1; i < 32; ++i)
        max = max > xval[i] ? max : xval[i];
    memset(L, 0, 32);
    *zero = xxs ? max < 1e-8f : !max;
    if (*zero)
        return 0;
    int8_t Laux[32];
    bool on[8], on_aux[8];
    float best = 0, scale = max / (2 * kMaxQ - 1);
    for (int k = 0; k < 8; ++k)
        on[k] = xxs;
    for (int is = -ntrial; is <= ntrial; ++is) {
        float id = (2 * kMaxQ - 1 + is * 0.2f) / max;
        float this_scale = 1 / id;
        for (int k = 0; k < 8; ++k)
            round_group(g, xval + 4 * k, waux + 4 * k, id, this_scale, Laux + 4 * k, &on_aux[k]);
        float sumqx, sumq2;
        sums(w, xval, Laux, &sumqx, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            memcpy(L, Laux, 32);
            memcpy(on, on_aux, sizeof on);
        }
    }
    int n_off = 0;
    for (int k = 0; k < 8; ++k)
        n_off += !on[k];
    if (n_off > 0 && scale > 0) {
        float id = 1 / scale;
        for (int k = 0; k < 8; ++k) {
            if (xxs && on[k])
                continue;
            bool unused;
            int gi = round_group(g, xval + 4 * k, waux + 4 * k, id, scale, L + 4 * k, &unused);
            for (int i = 0; i < 4; ++i)
                L[4 * k + i] = (int8_t)((g->pts[gi][i] - 1) / 2);
        }
        float sumqx, sumq2;
        sums(w, xval, L, &sumqx, &sumq2);
        if (sumq2 > 0)
            scale = sumqx / sumq2;
    }
    return scale;
}

/* weights (and their square roots) of block ib of a super-block */
static void weights(const float *xb, const float *qw, float sigma2, float *w, float *waux)
{
    for (int i = 0; i < 32; ++i)
        w[i] = qw ? qw[i] * sqrtf(sigma2 + xb[i] * xb[i]) : xb[i] * xb[i];
    for (int i = 0; i < 32; ++i)
        waux[i] = sqrtf(w[i]);
}

static int grid_index(const struct grid *g, const int8_t *L)
{
    int u = 0;
    for (int i = 0; i < 4; ++i)
        u |= L[i] << 3 * i;
    return g->map[u]; /* on the grid by construction */
}

static float sigma2_of(const float *x)
{
    float sumx2 = 0;
    for (int i = 0; i < 256; ++i)
        sumx2 += x[i] * x[i];
    return 2 * sumx2 / 256;
}

/* A super-block's 8 blocks of 32, prepared: |x| (IQ3_XXS: with the sign
 * parity fixed), weights, their roots and sign bytes; then searched, 8 at
 * once in vector lanes where the CPU has them (quant_x86.c, the same
 * results) or one by one. */
struct sb {
    float xval[8][32], w[8][32], waux[8][32], scale[8];
    int8_t L[8][32];
    bool zero[8];
    uint8_t signs[8][4];
};

static void prepare(const float *x, const float *qw, bool xxs, struct sb *b)
{
    const float sigma2 = sigma2_of(x);
    for (int ib = 0; ib < 8; ++ib) {
        const float *xb = x + 32 * ib;
        float *xval = b->xval[ib], *w = b->w[ib];
        weights(xb, qw ? qw + 32 * ib : NULL, sigma2, w, b->waux[ib]);
        for (int k = 0; k < 4; ++k) {
            int nflip = 0;
            uint8_t s = 0;
            for (int i = 0; i < 8; ++i) {
                xval[8 * k + i] = xb[8 * k + i] >= 0 ? xb[8 * k + i] : -xb[8 * k + i];
                if (!(xb[8 * k + i] >= 0)) {
                    ++nflip;
                    s |= (uint8_t)(1 << i);
                }
            }
            if (xxs && nflip % 2) { /* odd: flip the value that costs least */
                int imin = 0;
                float min = w[8 * k] * xb[8 * k] * xb[8 * k];
                for (int i = 1; i < 8; ++i) {
                    float ax = w[8 * k + i] * xb[8 * k + i] * xb[8 * k + i];
                    if (ax < min) {
                        min = ax;
                        imin = i;
                    }
                }
                xval[8 * k + imin] = -xval[8 * k + imin];
                s ^= (uint8_t)(1 << imin);
            }
            b->signs[ib][k] = xxs ? s & 127 : s;
        }
    }
}

static void search_all(const struct grid *g, bool xxs, struct sb *b, bool simd)
{
#ifdef QF_HAVE_X86
    if (simd) {
        qf_iq3_search8_avx2(g->map, g->np, xxs, b->xval, b->w, b->waux, b->L, b->scale, b->zero);
        for (int ib = 0; ib < 8; ++ib)
            if (b->zero[ib]) {
                b->scale[ib] = 0;
                memset(b->L[ib], 0, 32);
            }
        return;
    }
#endif
    (void)simd;
    for (int ib = 0; ib < 8; ++ib)
        b->scale[ib] = search(g, xxs, b->xval[ib], b->w[ib], b->waux[ib], b->L[ib], &b->zero[ib]);
}

/* IQ3_S, 110 bytes: d, qs[64] (low 8 bits of the grid indices), qh[8]
 * (their 9th bits), signs[32], scales[4] (4 bits per block) */
static void block_iq3_s(const float *x, const float *qw, uint8_t *y, bool simd)
{
    struct sb b;
    prepare(x, qw, false, &b);
    search_all(&g512, false, &b, simd);
    memset(y, 0, 110);
    uint8_t *qs = y + 2, *qh = y + 66, *signs = y + 74, *sc = y + 106;
    float max_scale = 0;
    for (int ib = 0; ib < 8; ++ib) {
        float scale = b.scale[ib];
        if (b.zero[ib]) /* ggml skips the block without advancing qs and signs */
            continue;
        if (scale < 0) { /* never, says ggml: the scale is stored unsigned */
            scale = b.scale[ib] = -scale;
            for (int k = 0; k < 4; ++k)
                b.signs[ib][k] = (uint8_t)~b.signs[ib][k];
        }
        for (int k = 0; k < 8; ++k) {
            int gi = grid_index(&g512, b.L[ib] + 4 * k);
            qs[k] = (uint8_t)(gi & 255);
            qh[(ib * 8 + k) / 8] |= (uint8_t)((gi >> 8) << ((ib * 8 + k) % 8));
        }
        qs += 8;
        memcpy(signs, b.signs[ib], 4);
        signs += 4;
        max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale)
        return;
    float d = max_scale / 31;
    qf_put16(y, qf_f32_to_f16(d * 1.033f));
    float id = 1 / d;
    for (int ib = 0; ib < 8; ib += 2) {
        int l1 = qf_nearest_int(0.5f * (id * b.scale[ib] - 1));
        int l2 = qf_nearest_int(0.5f * (id * b.scale[ib + 1] - 1));
        l1 = l1 < 0 ? 0 : l1 > 15 ? 15 : l1;
        l2 = l2 < 0 ? 0 : l2 > 15 ? 15 : l2;
        sc[ib / 2] = (uint8_t)(l1 | (l2 << 4));
    }
}

/* IQ3_XXS, 98 bytes: d, 64 bytes of grid indices, then per block a u32 of
 * four 7-bit sign groups (even parity: the 8th sign is implied) and a
 * 4-bit scale */
static void block_iq3_xxs(const float *x, const float *qw, uint8_t *y, bool simd)
{
    struct sb b;
    prepare(x, qw, true, &b);
    search_all(&g256, true, &b, simd);
    uint8_t q3[64] = {0};
    uint32_t ss[8] = {0};
    float max_scale = 0;
    for (int ib = 0; ib < 8; ++ib) {
        float scale = b.scale[ib];
        if (b.zero[ib])
            continue;
        if (scale < 0) {
            scale = b.scale[ib] = -scale;
            for (int k = 0; k < 4; ++k)
                b.signs[ib][k] = (uint8_t)(~b.signs[ib][k] & 127);
        }
        for (int k = 0; k < 8; ++k)
            q3[8 * ib + k] = (uint8_t)grid_index(&g256, b.L[ib] + 4 * k);
        const uint8_t *bs = b.signs[ib];
        ss[ib] = bs[0] | ((uint32_t)bs[1] << 7) | ((uint32_t)bs[2] << 14) | ((uint32_t)bs[3] << 21);
        max_scale = max_scale > scale ? max_scale : scale;
    }
    memset(y, 0, 98);
    if (!max_scale)
        return;
    float d = max_scale / 31;
    qf_put16(y, qf_f32_to_f16(d * 1.0125f));
    float id = 1 / d;
    for (int ib = 0; ib < 8; ++ib) {
        int l = qf_nearest_int(0.5f * (id * b.scale[ib] - 1));
        l = l < 0 ? 0 : l > 15 ? 15 : l;
        ss[ib] |= (uint32_t)l << 28;
    }
    memcpy(y + 2, q3, 64);
    for (int ib = 0; ib < 8; ++ib)
        qf_put32(y + 66 + 4 * ib, ss[ib]);
}

void qf_iq3_rows(uint32_t type, const float *x, const float *qw, uint8_t *y, size_t nb, bool simd)
{
    for (size_t i = 0; i < nb; i++) {
        const float *q = qw ? qw + 256 * i : NULL;
        if (type == QF_IQ3_S)
            block_iq3_s(x + 256 * i, q, y + 110 * i, simd);
        else
            block_iq3_xxs(x + 256 * i, q, y + 98 * i, simd);
    }
}

void qf_quantize_iq3_s_ref(const float *x, uint8_t *y, size_t nb) { qf_iq3_rows(QF_IQ3_S, x, NULL, y, nb, false); }
void qf_quantize_iq3_xxs_ref(const float *x, uint8_t *y, size_t nb) { qf_iq3_rows(QF_IQ3_XXS, x, NULL, y, nb, false); }
#ifdef QF_HAVE_X86
void qf_quantize_iq3_s_avx2(const float *x, uint8_t *y, size_t nb) { qf_iq3_rows(QF_IQ3_S, x, NULL, y, nb, true); }
void qf_quantize_iq3_xxs_avx2(const float *x, uint8_t *y, size_t nb) { qf_iq3_rows(QF_IQ3_XXS, x, NULL, y, nb, true); }
#endif

/* ------------------------------------------------------------ dequantize */

/* the values of a grid coordinate l in ggml-common.h's dequantization
 * grids (iq3xxs_grid, iq3s_grid), which are the quantizer's grids with
 * these levels */
static const uint8_t level_xxs[8] = {4, 12, 20, 28, 36, 44, 52, 62};

static void dq_group(const uint16_t *kgrid, int gi, const uint8_t *levels, float db, uint8_t signs, int first,
                     float *y)
{
    for (int j = 0; j < 4; ++j) {
        int l = (kgrid[gi] >> 3 * j) & 7;
        float v = levels ? levels[l] : (float)(2 * l + 1);
        y[j] = db * v * (signs & (1 << (first + j)) ? -1.f : 1.f);
    }
}

/* ksigns_iq2xs: 7 stored sign bits and the 8th that makes the parity even */
static uint8_t signs8(uint32_t s7) { return (uint8_t)(s7 | ((unsigned)__builtin_parity(s7) << 7)); }

void qf_dequantize_iq3_xxs(const uint8_t *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b += 98) {
        float d = qf_f16_to_f32(qf_get16(b));
        const uint8_t *qs = b + 2;
        for (int ib = 0; ib < 8; ++ib, qs += 8) {
            uint32_t aux = qf_get32(b + 66 + 4 * ib);
            float db = d * (0.5f + (aux >> 28)) * 0.5f;
            for (int l = 0; l < 4; ++l, y += 8) {
                uint8_t s = signs8((aux >> 7 * l) & 127);
                dq_group(qf_iq3_grid256, qs[2 * l], level_xxs, db, s, 0, y);
                dq_group(qf_iq3_grid256, qs[2 * l + 1], level_xxs, db, s, 4, y + 4);
            }
        }
    }
}

void qf_dequantize_iq3_s(const uint8_t *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b += 110) {
        float d = qf_f16_to_f32(qf_get16(b));
        const uint8_t *qs = b + 2, *qh = b + 66, *signs = b + 74, *sc = b + 106;
        for (int ib = 0; ib < 8; ++ib, qs += 8, signs += 4) {
            float db = d * (1 + 2 * ((sc[ib / 2] >> 4 * (ib % 2)) & 0xf));
            for (int l = 0; l < 4; ++l, y += 8) {
                int g1 = qs[2 * l] | ((qh[ib] << (8 - 2 * l)) & 256);
                int g2 = qs[2 * l + 1] | ((qh[ib] << (7 - 2 * l)) & 256);
                dq_group(qf_iq3_grid512, g1, NULL, db, signs[l], 0, y);
                dq_group(qf_iq3_grid512, g2, NULL, db, signs[l], 4, y + 4);
            }
        }
    }
}
