/* quant_impl.h — codec-internal helpers shared by the kernel files. Not API. */
#ifndef QUANTFS_QUANT_IMPL_H
#define QUANTFS_QUANT_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "codec.h"

/* GGUF and every block layout are little-endian; these keep the kernels
 * independent of host byte order and alignment. */
static inline void qf_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void qf_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void qf_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t qf_get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t qf_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t qf_get64(const uint8_t *p) { return qf_get32(p) | ((uint64_t)qf_get32(p + 4) << 32); }

/* Round to nearest, ties to even, by adding 1.5*2^23 (ggml's nearest_int).
 * For |f| > 2^22 the result wraps exactly as ggml's does. */
static inline int qf_nearest_int(float f)
{
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* The signed value of largest magnitude, the first on a tie (ggml's
 * amax/max loops; its magnitude is theirs: a NaN is never taken). */
static inline float qf_signed_absmax(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

extern const int8_t qf_iq4nl_values[16];
/* ggml's best_index_int8 over qf_iq4nl_values: the nearest of the 16 values */
int qf_iq4_index(float x);

/* Pieces of the k-quant reference kernels (quant.c) that the importance-
 * weighted ones (quant_w.c) share:
 * qf_fit_sym: ggml's make_qx_quants(n, nmax, x, L, rmse_type 1, qw), the
 *   symmetric fit with weights qw (x^2 when NULL); L gets values + nmax.
 * qf_pack_2bit: 256 2-bit values into q2_K/q3_K's 64 bytes.
 * qf_scale_min_k4: 6-bit scale and min j of q4_K/q5_K's 12 bytes.
 * qf_q3_pack: q3_K's codes (0..7) into hmask[32] and qs[64].
 * qf_q6_finish: q6_K's block from the 16 sub-block scales and codes. */
float qf_fit_sym(int n, int nmax, const float *x, int8_t *L, const float *qw);
/* qf_fit_scale_min: ggml's make_qkx2_quants (the same as make_qkx3_quants
 * for the arguments quantfs passes): an asymmetric (scale, min) fit of n
 * values to [0, nmax] minimising the weighted error (|diff| with use_mad),
 * trying nstep+1 scales around the min/max one. Returns the scale;
 * *neg_min gets -min (>= 0). Laux: n bytes of scratch. */
float qf_fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_min, uint8_t *Laux,
                       float rmin, float rdelta, int nstep, bool use_mad);
void qf_pack_2bit(const uint8_t *L, uint8_t *qs);
void qf_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m);
void qf_q3_pack(int8_t *L, uint8_t *hmask, uint8_t *qs);
void qf_q6_finish(const float *x, int8_t *L, const float *scales, uint8_t *y);

/* Writes one formatted line into err (when given) and returns rc: the error
 * convention of every codec function (types.c). */
int qf_fail(char *err, size_t n, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* layout.c: appending extents to a layout under construction (offsets are
 * assigned in order; empty extents are dropped). Return 0 or -ENOMEM. */
struct qf_layout_builder {
    struct qf_layout *l;
    size_t cap;
};
int qf_layout_add(struct qf_layout_builder *b, struct qf_extent e);
int qf_layout_pad(struct qf_layout_builder *b, uint64_t align);
/* No NaN or Inf among n values of an f32/f16/bf16 array. */
bool qf_finite(uint32_t type, const void *data, size_t n);

/* The sub-block search of q4_K/q5_K: for the 8 sub-blocks of 32 values of
 * one super-block, ggml's weighted (scale, min) fit (make_qkx2_quants with
 * weights av_x + |x|). Fills L[256], scales[8] and mins[8] (as -min). The
 * reference is scalar; quant_x86.c runs the 8 sub-blocks in the 8 lanes of
 * a vector, each lane doing exactly the scalar operations. */
typedef void (*qf_kfit8_fn)(const float *x, int nmax, float rmin, int nstep, uint8_t *L, float *scales, float *mins);
void qf_kfit8_ref(const float *x, int nmax, float rmin, int nstep, uint8_t *L, float *scales, float *mins);
/* and their final codes: for each sub-block j with d[j] != 0, L[32j..32j+31]
 * = clamp(nearest_int((x + dm[j]) / d[j]), 0, nmax); others keep the fit's. */
typedef void (*qf_kcodes_fn)(const float *x, const float *d, const float *dm, int nmax, uint8_t *L);
void qf_kcodes_ref(const float *x, const float *d, const float *dm, int nmax, uint8_t *L);
void qf_quantize_q4_K_with(const float *x, uint8_t *y, size_t nb, qf_kfit8_fn fit, qf_kcodes_fn codes);
void qf_quantize_q5_K_with(const float *x, uint8_t *y, size_t nb, qf_kfit8_fn fit, qf_kcodes_fn codes);
/* q2_K's 16 sub-blocks of 16 (weights |x|, absolute error) and q6_K's
 * symmetric search over 16 sub-blocks of 16: the same split, reference
 * scalar, lane-parallel in quant_x86.c. */
typedef void (*qf_q2fit_fn)(const float *x, uint8_t *L, float *scales, float *mins);
void qf_q2fit16_ref(const float *x, uint8_t *L, float *scales, float *mins);
void qf_quantize_q2_K_with(const float *x, uint8_t *y, size_t nb, qf_q2fit_fn fit);
typedef void (*qf_q6fit_fn)(const float *x, int8_t *L, float *scales);
void qf_q6fit16_ref(const float *x, int8_t *L, float *scales);
void qf_quantize_q6_K_with(const float *x, uint8_t *y, size_t nb, qf_q6fit_fn fit);
/* q3_K's coordinate-descent fit over its 16 sub-blocks of 16 (same shape) */
void qf_q3fit16_ref(const float *x, int8_t *L, float *scales);
/* and its final codes: for each sub-block j with d[j] != 0, L[16j..16j+15]
 * = clamp(nearest_int(x / d[j]), -4, 3) + 4; sub-blocks with d[j] == 0
 * keep the fit's L. */
typedef void (*qf_q3codes_fn)(const float *x, const float *d, int8_t *L);
void qf_q3codes_ref(const float *x, const float *d, int8_t *L);
void qf_quantize_q3_K_with(const float *x, uint8_t *y, size_t nb, qf_q6fit_fn fit, qf_q3codes_fn codes);

/* stquant.c: rows x row_len floats to a QF_ST_* kind's bytes (group: int4
 * group size). For the fp8 kinds, rows is a multiple of 128 except at the
 * end of the tensor. Returns 0 or -EINVAL. */
int qf_st_quantize_rows(uint32_t kind, const float *x, size_t rows, size_t row_len, uint32_t group, uint8_t *out);
uint8_t qf_f32_to_e4m3(float f);

/* Kernels behind the type table (types.c). Quantizers take nb whole blocks
 * of floats; dequantizers nb whole blocks of bytes. The _ref ones are the
 * portable scalar references (quant.c, dequant.c); the _avx2 ones
 * (quant_x86.c) give identical bytes and may only be called when
 * qf_simd_available(). */
#define QF_KERNELS(X)                                                                                                  \
    X(q8_0) X(q4_0) X(q4_1) X(q5_0) X(q5_1) X(q2_K) X(q3_K) X(q4_K) X(q5_K) X(q6_K) X(iq4_nl)
#define QF_DECL_REF(t)                                                                                                 \
    void qf_quantize_##t##_ref(const float *x, uint8_t *y, size_t nb);                                              \
    void qf_dequantize_##t(const uint8_t *x, float *y, size_t nb);
QF_KERNELS(QF_DECL_REF)
/* iq3.c: IQ3_S and IQ3_XXS, without (_ref: weights x^2) and with an
 * imatrix (qf_iq3_rows: nb super-blocks with their weights qw) */
void qf_quantize_iq3_s_ref(const float *x, uint8_t *y, size_t nb);
void qf_quantize_iq3_xxs_ref(const float *x, uint8_t *y, size_t nb);
void qf_iq3_rows(uint32_t type, const float *x, const float *qw, uint8_t *y, size_t nb, bool simd);
/* the IQ3 scale search for the 8 blocks of a super-block in vector lanes
 * (map, np: iq3_tables.h); zero[b]: the blocks the reference skips (their
 * L and scale undefined) */
void qf_iq3_search8_avx2(const int32_t *map, const int32_t *np, bool xxs,
                         const float xval[8][32], const float w[8][32], const float waux[8][32], int8_t L[8][32],
                         float *scale, bool *zero);
void qf_quantize_iq3_s_avx2(const float *x, uint8_t *y, size_t nb);
void qf_quantize_iq3_xxs_avx2(const float *x, uint8_t *y, size_t nb);
void qf_dequantize_iq3_s(const uint8_t *x, float *y, size_t nb);
void qf_dequantize_iq3_xxs(const uint8_t *x, float *y, size_t nb);
/* ggml's iq2_find_best_neighbour / iq3_find_best_neighbour: of the grid
 * points listed in nb (a count, then indices into pts, dims coordinates
 * each), the one closest to xval / scale in the weighted norm (the first on
 * a tie); its codes (coordinate - 1) / 2 into L, its index returned. */
static inline int qf_iq_best_neighbour(const int8_t *pts, int dims, const uint16_t *nb, const float *xval,
                                       const float *w, float scale, int8_t *L)
{
    float best_d2 = 3.40282347e38f;
    int gi = nb[1];
    for (int j = 1; j <= nb[0]; ++j) {
        const int8_t *pg = pts + dims * nb[j];
        float d2 = 0;
        for (int i = 0; i < dims; ++i) {
            float diff = scale * pg[i] - xval[i];
            d2 += w[i] * diff * diff;
        }
        if (d2 < best_d2) {
            best_d2 = d2;
            gi = nb[j];
        }
    }
    for (int i = 0; i < dims; ++i)
        L[i] = (int8_t)((pts[dims * gi + i] - 1) / 2);
    return gi;
}
/* iq2.c: IQ2_S without (_ref: weights sigma2 / 4 + x^2) and with an
 * imatrix (qf_iq2_rows: nb super-blocks with their weights qw, or NULL) */
void qf_quantize_iq2_s_ref(const float *x, uint8_t *y, size_t nb);
void qf_iq2_rows(const float *x, const float *qw, uint8_t *y, size_t nb, bool simd);
void qf_dequantize_iq2_s(const uint8_t *x, float *y, size_t nb);
/* the IQ2_S scale search for 8 blocks of 16 in vector lanes (map, np:
 * iq2_tables.h); zero[b]: the blocks the reference skips */
void qf_iq2_search8_avx2(const int32_t *map, const int32_t *np, const float xval[8][16], const float w[8][16],
                         const float waux[8][16], int8_t L[8][16], float *scale, bool *zero);
void qf_quantize_iq2_s_avx2(const float *x, uint8_t *y, size_t nb);
/* llama-quantize's IQ4_XS without an imatrix (quant_w.c); scalar only */
void qf_quantize_iq4_xs_ref(const float *x, uint8_t *y, size_t nb);
void qf_dequantize_iq4_xs(const uint8_t *x, float *y, size_t nb);
void qf_convert_f32_ref(const float *x, uint8_t *y, size_t n);
void qf_convert_f16_ref(const float *x, uint8_t *y, size_t n);
void qf_convert_bf16_ref(const float *x, uint8_t *y, size_t n);
void qf_dequantize_f32(const uint8_t *x, float *y, size_t n);
void qf_dequantize_f16(const uint8_t *x, float *y, size_t n);
void qf_dequantize_bf16(const uint8_t *x, float *y, size_t n);

bool qf_simd_available(void);
#if defined(__x86_64__) && defined(__GNUC__)
#define QF_HAVE_X86 1
void qf_convert_f16_avx2(const float *x, uint8_t *y, size_t n);
void qf_convert_bf16_avx2(const float *x, uint8_t *y, size_t n);
/* the same bytes; true if every input was finite (qf_finite) */
bool qf_convert_f16_finite_avx2(const float *x, uint8_t *y, size_t n);
bool qf_convert_bf16_finite_avx2(const float *x, uint8_t *y, size_t n);
bool qf_quantize_q8_0_finite_avx2(const float *x, uint8_t *y, size_t nb); /* nb blocks of 32 */
void qf_dequantize_f16_avx2(const uint8_t *x, float *y, size_t n);
void qf_dequantize_bf16_avx2(const uint8_t *x, float *y, size_t n);
bool qf_f32_finite_avx2(const uint8_t *p, size_t n); /* qf_finite for QF_F32 */
/* y[i] += b * x[i] (a multiply, then an add: the scalar loop's bytes) */
void qf_axpy_avx2(float *y, const float *x, float b, size_t n);
/* the importance-weighted fits for 8 sub-blocks of n (<= 32) values at
 * x + stride * j, weights w + stride * j, lane-parallel: qf_fit_sym's and
 * qf_fit_scale_min's (use_mad false) results, bit for bit */
void qf_fit_sym8_avx2(const float *x, const float *w, int stride, int n, int nmax, int8_t *L, float *scales);
void qf_fit_min8_avx2(const float *x, const float *w, int stride, int n, int nmax, float rmin, float rdelta,
                      int nstep, uint8_t *L, float *scales, float *neg_mins);
/* quant_w.c's iq4 scale search for 8 consecutive blocks of 32 with weights
 * w (scales[k]: the block's d, 0 for an all-zero block) */
void qf_iq4_fit8_avx2(const float *x, const float *w, float *scales);
void qf_quantize_iq4_xs_avx2(const float *x, uint8_t *y, size_t nb);
#define QF_DECL_AVX2(t) void qf_quantize_##t##_avx2(const float *x, uint8_t *y, size_t nb);
QF_KERNELS(QF_DECL_AVX2)
#endif

#endif
