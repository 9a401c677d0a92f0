/* quant_x86.c — AVX2/F16C kernels, chosen at run time.
 *
 * Each must produce exactly the bytes of its scalar reference in quant.c /
 * types.c (tests/test_codec.c checks this on random bit patterns, NaN and
 * Inf included). Where the hardware rounds or treats NaN differently from the
 * reference, the difference is fixed up explicitly:
 *  - roundf rounds half away from zero, the SSE rounding modes do not:
 *    truncate, then add +-1 where |x - trunc(x)| >= 0.5 (exact in float);
 *  - the reference truncates int32 -> int8 (x86 cvttss2si, low byte), so
 *    bytes are the low bytes of cvttps results: masked to 8 bits before
 *    any pack, which then cannot saturate;
 *  - VCVTPS2PH keeps NaN payloads, the reference writes 0x7e00, and
 *    ggml's q8_0 max (a > b ? a : b) depends on order once a NaN is in the
 *    block: groups containing a NaN fall back to the scalar code.
 * Here: f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, the source-side
 * conversions, and the sub-block searches of q2_K, q3_K, q4_K, q5_K and
 * q6_K, run lane-parallel (one sub-block per lane, each lane the scalar
 * operations in order); likewise the weighted fits of the imatrix kernels
 * (quant_w.c) and the iq4_nl/iq4_xs scale search.
 */
#include <float.h>
#include <string.h>

#include "codec.h"
#include "quant_impl.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>

#define TARGET __attribute__((target("avx2,f16c")))

bool qf_simd_available(void)
{
    /* F16C through cpuid: clang's __builtin_cpu_supports does not know it */
    unsigned a, b, c, d;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

TARGET void qf_axpy_avx2(float *y, const float *x, float b, size_t n)
{
    __m256 vb = _mm256_set1_ps(b);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) /* no FMA: one rounding for the product, one for the sum */
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(vb, _mm256_loadu_ps(x + i))));
    for (; i < n; i++)
        y[i] += b * x[i];
}

/* The f16/bf16 conversions also say whether every input was finite (no
 * NaN, no Inf): layout.c's validation of the input folded into the one
 * pass that converts it, where a check and a conversion took two (the
 * separate check was 8.7% of an fp16 read's samples, the conversion 10%). */
TARGET static inline bool f16_body(const float *x, uint8_t *y, size_t n)
{
    /* |v| not below Inf, or unordered: NaN or Inf among these 8, which take
     * the scalar path (the reference's handling of NaN; Inf the same) */
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), inf = _mm256_set1_ps(INFINITY);
    bool finite = true;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        if (_mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(v, abs_mask), inf, _CMP_NLT_UQ))) {
            finite = false;
            for (size_t k = i; k < i + 8; k++)
                qf_put16(y + 2 * k, qf_f32_to_f16(x[k]));
            continue;
        }
        _mm_storeu_si128((__m128i *)(y + 2 * i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, 4);
        finite &= (u & 0x7f800000u) != 0x7f800000u;
        qf_put16(y + 2 * i, qf_f32_to_f16(x[i]));
    }
    return finite;
}

TARGET static inline bool bf16_body(const float *x, uint8_t *y, size_t n)
{
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff), quiet = _mm256_set1_epi32(0x40);
    __m256i bad = _mm256_setzero_si256();
    uint32_t tail = 0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i r[2];
        for (int h = 0; h < 2; h++) {
            __m256i u = _mm256_loadu_si256((const __m256i *)(x + i + 8 * h));
            bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(_mm256_and_si256(u, inf), inf));
            __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
            __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
            __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, lsb)), 16);
            __m256i quieted = _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet);
            r[h] = _mm256_blendv_epi8(rounded, quieted, nan);
        }
        /* values fit in 16 bits: packus keeps them, the permute restores order */
        __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xd8);
        _mm256_storeu_si256((__m256i *)(y + 2 * i), packed);
    }
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, 4);
        tail |= (u & 0x7f800000u) == 0x7f800000u;
        qf_put16(y + 2 * i, qf_f32_to_bf16(x[i]));
    }
    return _mm256_testz_si256(bad, bad) && !tail;
}

TARGET void qf_convert_f16_avx2(const float *x, uint8_t *y, size_t n) { (void)f16_body(x, y, n); }
TARGET void qf_convert_bf16_avx2(const float *x, uint8_t *y, size_t n) { (void)bf16_body(x, y, n); }
TARGET bool qf_convert_f16_finite_avx2(const float *x, uint8_t *y, size_t n) { return f16_body(x, y, n); }
TARGET bool qf_convert_bf16_finite_avx2(const float *x, uint8_t *y, size_t n) { return bf16_body(x, y, n); }

/* round half away from zero, as roundf */
TARGET static inline __m256 round_away(__m256 v)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    __m256 adj = _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ), _mm256_or_ps(one, _mm256_and_ps(v, sign)));
    return _mm256_add_ps(t, adj);
}

/* q8_0 too says whether every input was finite (see f16_body). */
TARGET static inline bool q8_0_body(const float *x, uint8_t *y, size_t nb)
{
    const __m256 inf = _mm256_set1_ps(INFINITY);
    bool finite = true;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i low = _mm256_set1_epi32(0xff), order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (size_t i = 0; i < nb; i++, x += 32, y += 34) {
        __m256 v[4], acc = _mm256_setzero_ps();
        int bad = 0;
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            __m256 a = _mm256_andnot_ps(sign, v[k]);
            bad |= _mm256_movemask_ps(_mm256_cmp_ps(a, inf, _CMP_NLT_UQ)); /* NaN or Inf */
            acc = _mm256_max_ps(a, acc);
        }
        if (bad) { /* the reference's max is order-dependent with NaN */
            finite = false;
            qf_quantize_ref(QF_Q8_0, x, y, 32);
            continue;
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float d = _mm_cvtss_f32(m) / 127;
        const float id = d ? 1.0f / d : 0.0f;
        /* d is not NaN here, so F16C's round-to-nearest-even is the reference's conversion */
        qf_put16(y, (uint16_t)_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++) /* low bytes, as the reference's int8 cast: masked, so the packs never saturate */
            q[k] = _mm256_and_si256(_mm256_cvttps_epi32(round_away(_mm256_mul_ps(v[k], vid))), low);
        /* per 128-bit lane the packs give dwords q0 q1 q2 q3 (lane 0: elements 0-3 of each, lane 1: 4-7) */
        __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(q[0], q[1]), _mm256_packus_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i *)(y + 2), _mm256_permutevar8x32_epi32(b, order));
    }
    return finite;
}

TARGET void qf_quantize_q8_0_avx2(const float *x, uint8_t *y, size_t nb) { (void)q8_0_body(x, y, nb); }
TARGET bool qf_quantize_q8_0_finite_avx2(const float *x, uint8_t *y, size_t nb) { return q8_0_body(x, y, nb); }

TARGET void qf_dequantize_f16_avx2(const uint8_t *s, float *y, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + 2 * i))));
    for (; i < n; i++)
        y[i] = qf_f16_to_f32(qf_get16(s + 2 * i));
}

TARGET void qf_dequantize_bf16_avx2(const uint8_t *s, float *y, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + 2 * i)));
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_slli_epi32(h, 16));
    }
    for (; i < n; i++)
        y[i] = qf_bf16_to_f32(qf_get16(s + 2 * i));
}

/* ggml's nearest_int, lane-wise: the same magic-number trick */
TARGET static inline __m256i nearest_int8(__m256 f)
{
    __m256i i = _mm256_castps_si256(_mm256_add_ps(f, _mm256_set1_ps(12582912.f)));
    return _mm256_sub_epi32(_mm256_and_si256(i, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x00400000));
}

TARGET static inline __m256 blend(__m256 a, __m256 b, __m256 mask) { return _mm256_blendv_ps(a, b, mask); }

/* ggml's make_qkx2_quants (quant.c's fit_scale_min) for 8 sub-blocks at
 * once, lane j = sub-block j: every lane executes the scalar operations in
 * the same order (comparisons become masks, branches become blends), so
 * results are bit-identical. xt/wt hold element i of each sub-block; the
 * outputs are L (masked to 0 for flat sub-blocks), scale and -min. */
TARGET static void fit_lanes(const __m256 *xt, const __m256 *wt, int n, int nmax, float rmin, float rdelta, int nstep,
                             bool mad, __m256i *Lt, __m256 *scale_out, __m256 *neg_min_out)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
    const __m256i imax = _mm256_set1_epi32(nmax);
    __m256i La[32];
    __m256 mn = xt[0], mx = xt[0], sum_w = wt[0], sum_x = _mm256_mul_ps(sum_w, xt[0]);
    for (int i = 1; i < n; i++) {
        mn = blend(mn, xt[i], _mm256_cmp_ps(xt[i], mn, _CMP_LT_OQ));
        mx = blend(mx, xt[i], _mm256_cmp_ps(xt[i], mx, _CMP_GT_OQ));
        sum_w = _mm256_add_ps(sum_w, wt[i]);
        sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(wt[i], xt[i]));
    }
    mn = blend(mn, zero, _mm256_cmp_ps(mn, zero, _CMP_GT_OQ));
    const __m256 flat = _mm256_cmp_ps(mx, mn, _CMP_EQ_OQ), mn0 = mn;
    const __m256 range = _mm256_sub_ps(mx, mn);
    __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)nmax), range);
    __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale);
    __m256 best = zero;
    for (int i = 0; i < n; i++) {
        __m256i l = nearest_int8(_mm256_mul_ps(iscale, _mm256_sub_ps(xt[i], mn)));
        Lt[i] = _mm256_max_epi32(_mm256_setzero_si256(), _mm256_min_epi32(imax, l));
        __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, _mm256_cvtepi32_ps(Lt[i])), mn), xt[i]);
        diff = mad ? _mm256_andnot_ps(sign, diff) : _mm256_mul_ps(diff, diff);
        best = _mm256_add_ps(best, _mm256_mul_ps(wt[i], diff));
    }
    for (int is = 0; is <= nstep; ++is) {
        /* min may have been replaced by an earlier candidate: (max - min) too */
        iscale = _mm256_div_ps(_mm256_set1_ps(rmin + rdelta * is + nmax), _mm256_sub_ps(mx, mn));
        __m256 sum_l = zero, sum_l2 = zero, sum_xl = zero;
        for (int i = 0; i < n; i++) {
            __m256i l = nearest_int8(_mm256_mul_ps(iscale, _mm256_sub_ps(xt[i], mn)));
            La[i] = _mm256_max_epi32(_mm256_setzero_si256(), _mm256_min_epi32(imax, l));
            __m256 lf = _mm256_cvtepi32_ps(La[i]), wl = _mm256_mul_ps(wt[i], lf);
            sum_l = _mm256_add_ps(sum_l, wl);
            sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, lf));
            sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, xt[i]));
        }
        __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
        __m256 ok = _mm256_andnot_ps(flat, _mm256_cmp_ps(D, zero, _CMP_GT_OQ));
        if (!_mm256_movemask_ps(ok))
            continue;
        __m256 this_scale =
            _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)), D);
        __m256 this_min =
            _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
        __m256 pos = _mm256_cmp_ps(this_min, zero, _CMP_GT_OQ);
        this_min = blend(this_min, zero, pos);
        this_scale = blend(this_scale, _mm256_div_ps(sum_xl, sum_l2), pos);
        __m256 err = zero;
        for (int i = 0; i < n; i++) {
            __m256 diff = _mm256_sub_ps(
                _mm256_add_ps(_mm256_mul_ps(this_scale, _mm256_cvtepi32_ps(La[i])), this_min), xt[i]);
            diff = mad ? _mm256_andnot_ps(sign, diff) : _mm256_mul_ps(diff, diff);
            err = _mm256_add_ps(err, _mm256_mul_ps(wt[i], diff));
        }
        __m256 take = _mm256_and_ps(ok, _mm256_cmp_ps(err, best, _CMP_LT_OQ));
        __m256i takei = _mm256_castps_si256(take);
        for (int i = 0; i < n; i++)
            Lt[i] = _mm256_blendv_epi8(Lt[i], La[i], takei);
        best = blend(best, err, take);
        scale = blend(scale, this_scale, take);
        mn = blend(mn, this_min, take);
    }
    /* flat sub-blocks return at once in the reference: L = 0, scale 0 */
    __m256i flati = _mm256_castps_si256(flat);
    for (int i = 0; i < n; i++)
        Lt[i] = _mm256_andnot_si256(flati, Lt[i]);
    *scale_out = blend(scale, zero, flat);
    *neg_min_out = _mm256_xor_ps(blend(mn, mn0, flat), sign);
}

/* Lane-major (element i of 8 sub-blocks) to sub-block-major bytes. */
TARGET static void store_L(const __m256i *Lt, int n, int stride, uint8_t *L)
{
    int32_t lt[8];
    for (int i = 0; i < n; i++) {
        _mm256_storeu_si256((__m256i *)lt, Lt[i]);
        for (int j = 0; j < 8; j++)
            L[stride * j + i] = (uint8_t)lt[j];
    }
}

/* qf_kfit8_ref: 8 sub-blocks of 32, weights av_x + |x| */
TARGET static void kfit8_avx2(const float *x, int nmax, float rmin, int nstep, uint8_t *L, float *scales, float *mins)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i idx = _mm256_setr_epi32(0, 32, 64, 96, 128, 160, 192, 224);
    __m256 xt[32], wt[32], scale, neg_min;
    __m256i Lt[32];
    __m256 sum_x2 = _mm256_setzero_ps();
    for (int l = 0; l < 32; l++) {
        xt[l] = _mm256_i32gather_ps(x + l, idx, 4);
        sum_x2 = _mm256_add_ps(sum_x2, _mm256_mul_ps(xt[l], xt[l]));
    }
    __m256 av_x = _mm256_sqrt_ps(_mm256_div_ps(sum_x2, _mm256_set1_ps(32)));
    for (int l = 0; l < 32; l++)
        wt[l] = _mm256_add_ps(av_x, _mm256_andnot_ps(sign, xt[l]));
    fit_lanes(xt, wt, 32, nmax, rmin, 0.1f, nstep, false, Lt, &scale, &neg_min);
    store_L(Lt, 32, 32, L);
    _mm256_storeu_ps(scales, scale);
    _mm256_storeu_ps(mins, neg_min);
}

/* q2_K's 16 sub-blocks of 16: weights |x|, absolute error, two lane groups */
TARGET static void q2fit16_avx2(const float *x, uint8_t *L, float *scales, float *mins)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i idx = _mm256_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112);
    for (int g = 0; g < 2; g++) {
        __m256 xt[16], wt[16], scale, neg_min;
        __m256i Lt[16];
        for (int l = 0; l < 16; l++) {
            xt[l] = _mm256_i32gather_ps(x + 128 * g + l, idx, 4);
            wt[l] = _mm256_andnot_ps(sign, xt[l]);
        }
        fit_lanes(xt, wt, 16, 3, -0.5f, 0.1f, 15, true, Lt, &scale, &neg_min);
        store_L(Lt, 16, 16, L + 128 * g);
        _mm256_storeu_ps(scales + 8 * g, scale);
        _mm256_storeu_ps(mins + 8 * g, neg_min);
    }
}

void qf_quantize_q2_K_avx2(const float *x, uint8_t *y, size_t nb) { qf_quantize_q2_K_with(x, y, nb, q2fit16_avx2); }

/* ggml's make_qx_quants(n, nmax, x, L, rmse_type 1, w) (quant.c's
 * qf_fit_sym) for 8 sub-blocks at once, lane-parallel as fit_lanes. Lt gets
 * the codes without the +nmax offset; *tiny_out the lanes that are all
 * (near) zero, whose L and scale the caller zeroes. */
TARGET static void sym_lanes(const __m256 *xt, const __m256 *wt, int n, int nmax, __m256i *Lt, __m256 *scale_out,
                             __m256 *tiny_out)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
    const __m256i lo = _mm256_set1_epi32(-nmax), hi = _mm256_set1_epi32(nmax - 1);
    __m256 amax = zero, mx = zero;
    for (int i = 0; i < n; i++) {
        __m256 ax = _mm256_andnot_ps(sign, xt[i]), gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
        amax = blend(amax, ax, gt);
        mx = blend(mx, xt[i], gt);
    }
    *tiny_out = _mm256_cmp_ps(amax, _mm256_set1_ps(1e-15f), _CMP_LT_OQ);
    __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)-nmax), mx);
    __m256 sumlx = zero, suml2 = zero;
    for (int i = 0; i < n; i++) {
        __m256i l = _mm256_max_epi32(lo, _mm256_min_epi32(hi, nearest_int8(_mm256_mul_ps(iscale, xt[i]))));
        Lt[i] = l;
        __m256 lf = _mm256_cvtepi32_ps(l);
        sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(wt[i], xt[i]), lf));
        suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(wt[i], lf), lf));
    }
    __m256 nz = _mm256_cmp_ps(suml2, zero, _CMP_NEQ_UQ);
    __m256 scale = _mm256_and_ps(nz, _mm256_div_ps(sumlx, suml2));
    __m256 best = _mm256_mul_ps(scale, sumlx);
    for (int is = -9; is <= 9; ++is) {
        if (is == 0)
            continue;
        iscale = _mm256_div_ps(_mm256_set1_ps(-(nmax + 0.1f * is)), mx);
        __m256i La[32];
        sumlx = suml2 = zero;
        for (int i = 0; i < n; i++) {
            __m256i l = _mm256_max_epi32(lo, _mm256_min_epi32(hi, nearest_int8(_mm256_mul_ps(iscale, xt[i]))));
            La[i] = l;
            __m256 lf = _mm256_cvtepi32_ps(l);
            sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(wt[i], xt[i]), lf));
            suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(wt[i], lf), lf));
        }
        __m256 take = _mm256_and_ps(_mm256_cmp_ps(suml2, zero, _CMP_GT_OQ),
                                    _mm256_cmp_ps(_mm256_mul_ps(sumlx, sumlx), _mm256_mul_ps(best, suml2),
                                                  _CMP_GT_OQ));
        if (!_mm256_movemask_ps(take))
            continue;
        __m256i takei = _mm256_castps_si256(take);
        for (int i = 0; i < n; i++)
            Lt[i] = _mm256_blendv_epi8(Lt[i], La[i], takei);
        __m256 sc = _mm256_div_ps(sumlx, suml2);
        scale = blend(scale, sc, take);
        best = blend(best, _mm256_mul_ps(sc, sumlx), take);
    }
    *scale_out = blend(scale, zero, *tiny_out);
}

/* Stores sym_lanes' codes +nmax at L + stride * lane (0 for tiny lanes, as
 * the reference's memset). */
TARGET static void store_sym(const __m256i *Lt, __m256 tiny, int n, int nmax, int stride, int8_t *L)
{
    __m256i tinyi = _mm256_castps_si256(tiny);
    int32_t lt[8];
    for (int i = 0; i < n; i++) {
        __m256i v = _mm256_andnot_si256(tinyi, _mm256_add_epi32(Lt[i], _mm256_set1_epi32(nmax)));
        _mm256_storeu_si256((__m256i *)lt, v);
        for (int j = 0; j < 8; j++)
            L[stride * j + i] = (int8_t)lt[j];
    }
}

/* q6_K's symmetric search (weights x^2, nmax 32) for 8 sub-blocks of 16 */
TARGET static void q6fit8_avx2(const float *x, int8_t *L, float *scales)
{
    const __m256i idx = _mm256_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112);
    __m256 xt[16], wt[16], scale, tiny;
    __m256i Lt[16];
    for (int i = 0; i < 16; i++) {
        xt[i] = _mm256_i32gather_ps(x + i, idx, 4);
        wt[i] = _mm256_mul_ps(xt[i], xt[i]);
    }
    sym_lanes(xt, wt, 16, 32, Lt, &scale, &tiny);
    store_sym(Lt, tiny, 16, 32, 16, L);
    _mm256_storeu_ps(scales, scale);
}

/* The weighted fits of the imatrix kernels (quant_w.c), 8 sub-blocks of n
 * values at x + stride * j with weights at w + stride * j: element i of
 * every sub-block into xt[i], wt[i]. */
TARGET static void gather8(const float *x, const float *w, int stride, int n, __m256 *xt, __m256 *wt)
{
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(stride));
    for (int i = 0; i < n; i++) {
        xt[i] = _mm256_i32gather_ps(x + i, idx, 4);
        wt[i] = _mm256_i32gather_ps(w + i, idx, 4);
    }
}

TARGET void qf_fit_sym8_avx2(const float *x, const float *w, int stride, int n, int nmax, int8_t *L, float *scales)
{
    __m256 xt[32] = {0}, wt[32] = {0}, scale, tiny;
    __m256i Lt[32];
    gather8(x, w, stride, n, xt, wt);
    sym_lanes(xt, wt, n, nmax, Lt, &scale, &tiny);
    store_sym(Lt, tiny, n, nmax, stride, L);
    _mm256_storeu_ps(scales, scale);
}

TARGET void qf_fit_min8_avx2(const float *x, const float *w, int stride, int n, int nmax, float rmin, float rdelta,
                             int nstep, uint8_t *L, float *scales, float *neg_mins)
{
    __m256 xt[32] = {0}, wt[32] = {0}, scale, neg_min;
    __m256i Lt[32];
    gather8(x, w, stride, n, xt, wt);
    fit_lanes(xt, wt, n, nmax, rmin, rdelta, nstep, false, Lt, &scale, &neg_min);
    store_L(Lt, n, stride, L);
    _mm256_storeu_ps(scales, scale);
    _mm256_storeu_ps(neg_mins, neg_min);
}

/* ggml's best_index_int8 over the 16 IQ4 values in 8 lanes: 0 at or below
 * the first, 15 at or above the last (and for NaN, as the binary search
 * ends there), else the nearer of the two values around x, the upper one
 * on a tie. */
TARGET static __m256i iq4_index8(__m256 x, const float *vf)
{
    __m256i mu = _mm256_setzero_si256();
    for (int k = 0; k < 15; k++) /* the first index with v > x; v[0] < x here */
        mu = _mm256_sub_epi32(mu, _mm256_castps_si256(_mm256_cmp_ps(_mm256_set1_ps(vf[k]), x, _CMP_LE_OQ)));
    mu = _mm256_max_epi32(mu, _mm256_set1_epi32(1));
    __m256 lo = _mm256_i32gather_ps(vf, _mm256_sub_epi32(mu, _mm256_set1_epi32(1)), 4);
    __m256 hi = _mm256_i32gather_ps(vf, mu, 4);
    __m256 below = _mm256_cmp_ps(_mm256_sub_ps(x, lo), _mm256_sub_ps(hi, x), _CMP_LT_OQ);
    __m256i idx = _mm256_add_epi32(mu, _mm256_castps_si256(below)); /* mu - 1 where below */
    __m256 first = _mm256_cmp_ps(x, _mm256_set1_ps(vf[0]), _CMP_LE_OQ);
    __m256 last = _mm256_cmp_ps(x, _mm256_set1_ps(vf[15]), _CMP_NLT_UQ); /* >= or NaN */
    idx = _mm256_blendv_epi8(idx, _mm256_set1_epi32(15), _mm256_castps_si256(last));
    return _mm256_andnot_si256(_mm256_castps_si256(first), idx);
}

TARGET void qf_iq4_fit8_avx2(const float *x, const float *w, float *scales)
{
    float vf[16];
    for (int k = 0; k < 16; k++)
        vf[k] = qf_iq4nl_values[k];
    const __m256 sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
    const __m256i idx = _mm256_setr_epi32(0, 32, 64, 96, 128, 160, 192, 224);
    __m256 xt[32], wt[32], amax = zero, mx = zero;
    for (int j = 0; j < 32; j++) {
        xt[j] = _mm256_i32gather_ps(x + j, idx, 4);
        wt[j] = _mm256_i32gather_ps(w + j, idx, 4);
        __m256 ax = _mm256_andnot_ps(sign, xt[j]), gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
        amax = blend(amax, ax, gt);
        mx = blend(mx, xt[j], gt);
    }
    const __m256 tiny = _mm256_cmp_ps(amax, _mm256_set1_ps(1e-15f), _CMP_LT_OQ);
    __m256 d = _mm256_div_ps(_mm256_xor_ps(mx, sign), _mm256_set1_ps(vf[0])); /* -max / v[0] */
    __m256 id = _mm256_div_ps(_mm256_set1_ps(1.0f), d);
    __m256 sumqx = zero, sumq2 = zero;
    for (int j = 0; j < 32; j++) {
        __m256 q = _mm256_i32gather_ps(vf, iq4_index8(_mm256_mul_ps(id, xt[j]), vf), 4);
        __m256 wq = _mm256_mul_ps(wt[j], q);
        sumqx = _mm256_add_ps(sumqx, _mm256_mul_ps(wq, xt[j]));
        sumq2 = _mm256_add_ps(sumq2, _mm256_mul_ps(wq, q));
    }
    __m256 pos = _mm256_cmp_ps(sumq2, zero, _CMP_GT_OQ);
    d = _mm256_and_ps(pos, _mm256_div_ps(sumqx, sumq2));
    __m256 best = _mm256_mul_ps(d, sumqx);
    for (int itry = -7; itry <= 7; ++itry) {
        id = _mm256_div_ps(_mm256_set1_ps((float)(itry + qf_iq4nl_values[0])), mx);
        sumqx = sumq2 = zero;
        for (int j = 0; j < 32; j++) {
            __m256 q = _mm256_i32gather_ps(vf, iq4_index8(_mm256_mul_ps(id, xt[j]), vf), 4);
            __m256 wq = _mm256_mul_ps(wt[j], q);
            sumqx = _mm256_add_ps(sumqx, _mm256_mul_ps(wq, xt[j]));
            sumq2 = _mm256_add_ps(sumq2, _mm256_mul_ps(wq, q));
        }
        __m256 take = _mm256_and_ps(_mm256_cmp_ps(sumq2, zero, _CMP_GT_OQ),
                                    _mm256_cmp_ps(_mm256_mul_ps(sumqx, sumqx), _mm256_mul_ps(best, sumq2),
                                                  _CMP_GT_OQ));
        __m256 nd = _mm256_div_ps(sumqx, sumq2);
        d = blend(d, nd, take);
        best = blend(best, _mm256_mul_ps(nd, sumqx), take);
    }
    _mm256_storeu_ps(scales, blend(d, zero, tiny));
}

/* ---- IQ3: iq3.c's search() for the 8 blocks of a super-block, lane b =
 * block b, every lane the scalar operations in order. */

/* coordinate i (signed byte i) of packed grid points */
/* Coordinate i of a neighbour entry of np: IQ3 packs the four values
 * 2 l + 1 as bytes; IQ2_S (lbits 2) gives the grid code, eight l of 2 bits */
TARGET static inline __m256i coord(__m256i p, int i, int lbits)
{
    if (lbits == 2)
        return _mm256_add_epi32(_mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(p, 2 * i), _mm256_set1_epi32(3)), 1),
                                _mm256_set1_epi32(1));
    return _mm256_srai_epi32(_mm256_slli_epi32(p, 24 - 8 * i), 24);
}

/* round_group for one group of dims values of every lane (codes of lbits
 * bits, at most lmax): codes into Lk[dims], *on for lanes on the grid;
 * lanes outside live are left as they are. Inlined with constant shapes
 * (IQ3: 4 values of 3 bits; IQ2_S: 8 of 2). */
TARGET static inline __attribute__((always_inline)) void round8(const int32_t *map, const int32_t *np, const __m256 *x, const __m256 *waux,
                                 __m256 id, __m256 scale, __m256 live, __m256i *Lk, __m256 *on, const int dims,
                                 const int lbits, const int lmax)
{
    const __m256i top = _mm256_set1_epi32(lmax), zi = _mm256_setzero_si256();
    __m256i l[8], u = zi;
    for (int i = 0; i < dims; i++) {
        __m256 t = _mm256_mul_ps(_mm256_set1_ps(0.5f), _mm256_sub_ps(_mm256_mul_ps(id, x[i]), _mm256_set1_ps(1.0f)));
        l[i] = _mm256_max_epi32(zi, _mm256_min_epi32(top, nearest_int8(t)));
        u = _mm256_or_si256(u, _mm256_slli_epi32(l[i], lbits * i));
    }
    __m256i gi = _mm256_i32gather_epi32(map, u, 4);
    __m256 ongrid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(gi, _mm256_set1_epi32(-1)));
    __m256 off = _mm256_andnot_ps(ongrid, live);
    if (_mm256_movemask_ps(off)) { /* best neighbour: the first of the smallest weighted distance */
        __m256i start = _mm256_sub_epi32(_mm256_sub_epi32(zi, gi), _mm256_set1_epi32(1));
        __m256i cnt = _mm256_mask_i32gather_epi32(zi, np, start, _mm256_castps_si256(off), 4);
        int32_t c[8];
        _mm256_storeu_si256((__m256i *)c, cnt);
        int most = 0;
        for (int b = 0; b < 8; b++)
            most = c[b] > most ? c[b] : most;
        __m256 best = _mm256_set1_ps(FLT_MAX);
        __m256i bestp = zi;
        for (int j = 1; j <= most; j++) {
            __m256 act = _mm256_and_ps(off, _mm256_castsi256_ps(_mm256_cmpgt_epi32(cnt, _mm256_set1_epi32(j - 1))));
            __m256i p = _mm256_mask_i32gather_epi32(zi, np, _mm256_add_epi32(start, _mm256_set1_epi32(j)),
                                                    _mm256_castps_si256(act), 4);
            __m256 d2 = _mm256_setzero_ps();
            for (int i = 0; i < dims; i++) {
                __m256 diff = _mm256_sub_ps(_mm256_mul_ps(scale, _mm256_cvtepi32_ps(coord(p, i, lbits))), x[i]);
                d2 = _mm256_add_ps(d2, _mm256_mul_ps(_mm256_mul_ps(waux[i], diff), diff));
            }
            /* the scalar loop holds the first candidate until one is nearer than FLT_MAX */
            if (j == 1)
                bestp = _mm256_blendv_epi8(bestp, p, _mm256_castps_si256(act));
            __m256 take = _mm256_and_ps(act, _mm256_cmp_ps(d2, best, _CMP_LT_OQ));
            best = blend(best, d2, take);
            bestp = _mm256_blendv_epi8(bestp, p, _mm256_castps_si256(take));
        }
        for (int i = 0; i < dims; i++) { /* (coordinate - 1) / 2 */
            __m256i lc = _mm256_srai_epi32(_mm256_sub_epi32(coord(bestp, i, lbits), _mm256_set1_epi32(1)), 1);
            l[i] = _mm256_blendv_epi8(l[i], lc, _mm256_castps_si256(off));
        }
    }
    __m256i livei = _mm256_castps_si256(live);
    for (int i = 0; i < dims; i++)
        Lk[i] = _mm256_blendv_epi8(Lk[i], l[i], livei);
    *on = blend(*on, ongrid, live);
}

TARGET static inline void sums8(const __m256 *w, const __m256 *x, const __m256i *L, __m256 *sumqx, __m256 *sumq2,
                                const int n)
{
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    for (int i = 0; i < n; i++) {
        __m256 q = _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_slli_epi32(L[i], 1), _mm256_set1_epi32(1)));
        a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_mul_ps(w[i], x[i]), q));
        b = _mm256_add_ps(b, _mm256_mul_ps(_mm256_mul_ps(w[i], q), q));
    }
    *sumqx = a, *sumq2 = b;
}

/* The IQ lattice quantizers' scale search for 8 blocks in vector lanes,
 * the same float operations as the scalar code lane by lane. A shape
 * says which: n values per block in groups of dims codes of lbits bits
 * (at most lmax) on the grid of map/np; 2 ntrial + 1 trial scales
 * (base + is step) / max, starting at max / base; blocks whose max is
 * below 1e-8 (eps) or zero skipped; groups start on the grid (on_start);
 * afterwards the off-grid groups of the best (only_off) or all of them
 * rounded again at its scale. zero[b]: skipped blocks (their L and scale
 * undefined). */
struct iq_shape {
    int n, dims, lbits, lmax, ntrial;
    float base, step;
    bool eps, on_start, only_off;
};

TARGET static inline __attribute__((always_inline)) void iq_search8(const struct iq_shape sh, const int32_t *map, const int32_t *np,
                                     const float *xval, const float *w, const float *waux, int8_t *L,
                                     float *scale_out, bool *zero_out)
{
    const int n = sh.n, ng = sh.n / sh.dims;
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(n));
    const __m256 zero = _mm256_setzero_ps(), all = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    __m256 x[32], wt[32], wa[32], mx = _mm256_setzero_ps();
    for (int i = 0; i < n; i++) {
        x[i] = _mm256_i32gather_ps(xval + i, idx, 4);
        wt[i] = _mm256_i32gather_ps(w + i, idx, 4);
        wa[i] = _mm256_i32gather_ps(waux + i, idx, 4);
        mx = i ? blend(x[i], mx, _mm256_cmp_ps(mx, x[i], _CMP_GT_OQ)) : x[0];
    }
    const __m256 skip = sh.eps ? _mm256_cmp_ps(mx, _mm256_set1_ps(1e-8f), _CMP_LT_OQ)
                               : _mm256_cmp_ps(mx, zero, _CMP_EQ_OQ);
    const __m256 live = _mm256_andnot_ps(skip, all);
    __m256i Lb[32], La[32];
    for (int i = 0; i < n; i++)
        Lb[i] = La[i] = _mm256_setzero_si256();
    __m256 on[8], on_aux[8];
    for (int k = 0; k < ng; k++)
        on[k] = on_aux[k] = sh.on_start ? all : zero;
    __m256 best = zero, scale = _mm256_div_ps(mx, _mm256_set1_ps(sh.base));
    for (int is = -sh.ntrial; is <= sh.ntrial; ++is) {
        __m256 id = _mm256_div_ps(_mm256_set1_ps(sh.base + is * sh.step), mx);
        __m256 this_scale = _mm256_div_ps(_mm256_set1_ps(1.0f), id);
        for (int k = 0; k < ng; k++)
            round8(map, np, x + sh.dims * k, wa + sh.dims * k, id, this_scale, live, La + sh.dims * k, &on_aux[k],
                   sh.dims, sh.lbits, sh.lmax);
        __m256 sqx, sq2;
        sums8(wt, x, La, &sqx, &sq2, n);
        __m256 take = _mm256_and_ps(live, _mm256_and_ps(_mm256_cmp_ps(sq2, zero, _CMP_GT_OQ),
                                                        _mm256_cmp_ps(_mm256_mul_ps(sqx, sqx),
                                                                      _mm256_mul_ps(best, sq2), _CMP_GT_OQ)));
        if (!_mm256_movemask_ps(take))
            continue;
        __m256 sc = _mm256_div_ps(sqx, sq2);
        scale = blend(scale, sc, take);
        best = blend(best, _mm256_mul_ps(sc, sqx), take);
        __m256i ti = _mm256_castps_si256(take);
        for (int i = 0; i < n; i++)
            Lb[i] = _mm256_blendv_epi8(Lb[i], La[i], ti);
        for (int k = 0; k < ng; k++)
            on[k] = blend(on[k], on_aux[k], take);
    }
    /* off-grid groups rounded again at the final scale */
    __m256 anyoff = zero;
    for (int k = 0; k < ng; k++)
        anyoff = _mm256_or_ps(anyoff, _mm256_andnot_ps(on[k], all));
    __m256 need = _mm256_and_ps(live, _mm256_and_ps(anyoff, _mm256_cmp_ps(scale, zero, _CMP_GT_OQ)));
    if (_mm256_movemask_ps(need)) {
        __m256 id = _mm256_div_ps(_mm256_set1_ps(1.0f), scale);
        for (int k = 0; k < ng; k++) {
            __m256 act = sh.only_off ? _mm256_andnot_ps(on[k], need) : need, unused = zero;
            round8(map, np, x + sh.dims * k, wa + sh.dims * k, id, scale, act, Lb + sh.dims * k, &unused, sh.dims,
                   sh.lbits, sh.lmax);
        }
        __m256 sqx, sq2;
        sums8(wt, x, Lb, &sqx, &sq2, n);
        scale = blend(scale, _mm256_div_ps(sqx, sq2), _mm256_and_ps(need, _mm256_cmp_ps(sq2, zero, _CMP_GT_OQ)));
    }
    _mm256_storeu_ps(scale_out, scale);
    int32_t t[8];
    for (int i = 0; i < n; i++) {
        _mm256_storeu_si256((__m256i *)t, Lb[i]);
        for (int b = 0; b < 8; b++)
            L[b * n + i] = (int8_t)t[b];
    }
    int m = _mm256_movemask_ps(skip);
    for (int b = 0; b < 8; b++)
        zero_out[b] = (m >> b) & 1;
}

/* IQ3_S (512-point grid, 19 trials) and IQ3_XXS (256 points, 31 trials,
 * its parity-fixed magnitudes): blocks of 32, groups of 4 codes of 3 bits */
TARGET void qf_iq3_search8_avx2(const int32_t *map, const int32_t *np, bool xxs,
                                const float xval[8][32], const float w[8][32], const float waux[8][32], int8_t L[8][32],
                                float *scale_out, bool *zero_out)
{
    const struct iq_shape sh = {32, 4, 3, 7, xxs ? 15 : 9, 15.0f, 0.2f, xxs, xxs, xxs};
    iq_search8(sh, map, np, &xval[0][0], &w[0][0], &waux[0][0], &L[0][0], scale_out, zero_out);
}

/* IQ2_S: blocks of 16, groups of 8 codes of 2 bits, 19 trials around max / 5 */
TARGET void qf_iq2_search8_avx2(const int32_t *map, const int32_t *np, const float xval[8][16],
                                const float w[8][16], const float waux[8][16], int8_t L[8][16], float *scale_out,
                                bool *zero_out)
{
    const struct iq_shape sh = {16, 8, 2, 2, 9, 5.0f, 0.1f, true, true, true};
    iq_search8(sh, map, np, &xval[0][0], &w[0][0], &waux[0][0], &L[0][0], scale_out, zero_out);
}

TARGET static void q6fit16_avx2(const float *x, int8_t *L, float *scales)
{
    q6fit8_avx2(x, L, scales);
    q6fit8_avx2(x + 128, L + 128, scales + 8);
}

void qf_quantize_q6_K_avx2(const float *x, uint8_t *y, size_t nb) { qf_quantize_q6_K_with(x, y, nb, q6fit16_avx2); }

/* q4_K/q5_K final codes: the scalar loop's add, division and rounding. */
TARGET static void kcodes_avx2(const float *x, const float *d, const float *dm, int nmax, uint8_t *L)
{
    const __m256i lo = _mm256_setzero_si256(), hi = _mm256_set1_epi32(nmax);
    for (int j = 0; j < 8; ++j) {
        if (!d[j])
            continue;
        const __m256 dv = _mm256_set1_ps(d[j]), mv = _mm256_set1_ps(dm[j]);
        __m256i q[4];
        for (int k = 0; k < 4; k++) {
            /* dm + x, not x + dm: with both NaN the sum is the first operand's
             * payload, and the scalar build adds in this order (seed 6 tests) */
            __m256 v = _mm256_div_ps(_mm256_add_ps(mv, _mm256_loadu_ps(x + 32 * j + 8 * k)), dv);
            q[k] = _mm256_max_epi32(lo, _mm256_min_epi32(hi, nearest_int8(v)));
        }
        /* 32 values in 0..31: pack to bytes, undoing the per-lane interleave */
        __m256i w = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        w = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(L + 32 * j), w);
    }
}

void qf_quantize_q4_K_avx2(const float *x, uint8_t *y, size_t nb)
{
    qf_quantize_q4_K_with(x, y, nb, kfit8_avx2, kcodes_avx2);
}
void qf_quantize_q5_K_avx2(const float *x, uint8_t *y, size_t nb)
{
    qf_quantize_q5_K_with(x, y, nb, kfit8_avx2, kcodes_avx2);
}

/* q3_K's symmetric fit with coordinate descent (quant.c's fit_sym_descent,
 * nmax 4) for 8 sub-blocks of 16 at once. The descent is sequential within
 * a sub-block but independent across them: each lane runs the scalar
 * element loop. A lane whose pass changed nothing would change nothing in
 * a further pass either (same state), so running every lane until all
 * are done gives the reference's result. */
TARGET static void q3fit8_avx2(const float *x, int8_t *L, float *scales)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
    const __m256i idx = _mm256_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112);
    const __m256i lo = _mm256_set1_epi32(-4), hi = _mm256_set1_epi32(3);
    __m256 xt[16], wt[16];
    __m256i Lt[16];
    __m256 amax = zero, mx = zero;
    for (int i = 0; i < 16; i++) {
        xt[i] = _mm256_i32gather_ps(x + i, idx, 4);
        wt[i] = _mm256_mul_ps(xt[i], xt[i]);
        __m256 ax = _mm256_andnot_ps(sign, xt[i]), gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
        amax = blend(amax, ax, gt);
        mx = blend(mx, xt[i], gt);
    }
    const __m256 tiny = _mm256_cmp_ps(amax, _mm256_set1_ps(1e-15f), _CMP_LT_OQ);
    __m256 iscale = _mm256_div_ps(_mm256_set1_ps(-4.f), mx);
    __m256 sumlx = zero, suml2 = zero;
    for (int i = 0; i < 16; i++) {
        Lt[i] = _mm256_max_epi32(lo, _mm256_min_epi32(hi, nearest_int8(_mm256_mul_ps(iscale, xt[i]))));
        __m256 lf = _mm256_cvtepi32_ps(Lt[i]);
        sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(wt[i], xt[i]), lf));
        suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(wt[i], lf), lf));
    }
    for (int itry = 0; itry < 5; ++itry) {
        __m256 changed = zero;
        for (int i = 0; i < 16; i++) {
            __m256 lf = _mm256_cvtepi32_ps(Lt[i]), wx = _mm256_mul_ps(wt[i], xt[i]);
            __m256 slx = _mm256_sub_ps(sumlx, _mm256_mul_ps(wx, lf));
            __m256 pos = _mm256_cmp_ps(slx, zero, _CMP_GT_OQ);
            if (!_mm256_movemask_ps(pos))
                continue;
            __m256 sl2 = _mm256_sub_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(wt[i], lf), lf));
            __m256i nl = _mm256_max_epi32(
                lo, _mm256_min_epi32(hi, nearest_int8(_mm256_div_ps(_mm256_mul_ps(xt[i], sl2), slx))));
            __m256 ne = _mm256_andnot_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(nl, Lt[i])), pos);
            __m256 nf = _mm256_cvtepi32_ps(nl);
            slx = _mm256_add_ps(slx, _mm256_mul_ps(wx, nf));
            sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(wt[i], nf), nf));
            __m256 better = _mm256_cmp_ps(_mm256_mul_ps(_mm256_mul_ps(slx, slx), suml2),
                                          _mm256_mul_ps(_mm256_mul_ps(sumlx, sumlx), sl2), _CMP_GT_OQ);
            __m256 take = _mm256_and_ps(_mm256_and_ps(ne, _mm256_cmp_ps(sl2, zero, _CMP_GT_OQ)), better);
            Lt[i] = _mm256_blendv_epi8(Lt[i], nl, _mm256_castps_si256(take));
            sumlx = blend(sumlx, slx, take);
            suml2 = blend(suml2, sl2, take);
            changed = _mm256_or_ps(changed, take);
        }
        if (!_mm256_movemask_ps(changed))
            break;
    }
    __m256i tinyi = _mm256_castps_si256(tiny);
    int32_t lt[8];
    for (int i = 0; i < 16; i++) {
        __m256i v = _mm256_andnot_si256(tinyi, _mm256_add_epi32(Lt[i], _mm256_set1_epi32(4)));
        _mm256_storeu_si256((__m256i *)lt, v);
        for (int j = 0; j < 8; j++)
            L[16 * j + i] = (int8_t)lt[j];
    }
    _mm256_storeu_ps(scales, blend(_mm256_div_ps(sumlx, suml2), zero, tiny));
}

TARGET static void q3fit16_avx2(const float *x, int8_t *L, float *scales)
{
    q3fit8_avx2(x, L, scales);
    q3fit8_avx2(x + 128, L + 128, scales + 8);
}

/* The final codes: the same division and rounding as the scalar loop. */
TARGET static void q3codes_avx2(const float *x, const float *d, int8_t *L)
{
    const __m256i lo = _mm256_set1_epi32(-4), hi = _mm256_set1_epi32(3), four = _mm256_set1_epi32(4);
    for (int j = 0; j < 16; ++j) {
        if (!d[j])
            continue;
        __m256 dv = _mm256_set1_ps(d[j]);
        __m256i a = nearest_int8(_mm256_div_ps(_mm256_loadu_ps(x + 16 * j), dv));
        __m256i b = nearest_int8(_mm256_div_ps(_mm256_loadu_ps(x + 16 * j + 8), dv));
        a = _mm256_add_epi32(_mm256_max_epi32(lo, _mm256_min_epi32(hi, a)), four);
        b = _mm256_add_epi32(_mm256_max_epi32(lo, _mm256_min_epi32(hi, b)), four);
        /* 16 values in 0..7: pack to bytes, undoing the per-lane interleave */
        __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);
        __m128i v = _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
        _mm_storeu_si128((__m128i *)(L + 16 * j), v);
    }
}

void qf_quantize_q3_K_avx2(const float *x, uint8_t *y, size_t nb)
{
    qf_quantize_q3_K_with(x, y, nb, q3fit16_avx2, q3codes_avx2);
}

/* ---------------------------------------------- q4_0, q4_1, q5_0, q5_1
 * One block of 32 at a time. The block statistics (the first value of
 * largest magnitude; min and max) come from vector compares; blocks where
 * the vector result could differ from the reference's sequential scan
 * fall back to it: a non-finite value (NaN never compares, inf breaks the
 * FLT_MAX start), and for min/max a result of zero (the scan keeps the
 * first of 0.0 and -0.0, vector min/max do not). */

/* 4 vectors of a block; false when one is NaN or +-inf */
TARGET static inline bool load32_finite(const float *x, __m256 v[4], __m256 a[4])
{
    const __m256 sign = _mm256_set1_ps(-0.0f), big = _mm256_set1_ps(FLT_MAX);
    int bad = 0;
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        a[k] = _mm256_andnot_ps(sign, v[k]);
        bad |= _mm256_movemask_ps(_mm256_cmp_ps(a[k], big, _CMP_NLE_UQ));
    }
    return !bad;
}

TARGET static inline float hmax8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

TARGET static inline float hmin8(__m256 v)
{
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_min_ss(m, _mm_movehdup_ps(m)));
}

/* the reference's signed_absmax on a finite block: the first x[j] whose
 * magnitude is the largest, 0.0f when all are zero */
TARGET static inline float signed_absmax32(const float *x, const __m256 a[4])
{
    const float amax = hmax8(_mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3])));
    if (amax == 0.0f)
        return 0.0f;
    const __m256 m = _mm256_set1_ps(amax);
    for (int k = 0; k < 4; k++) {
        int bits = _mm256_movemask_ps(_mm256_cmp_ps(a[k], m, _CMP_EQ_OQ));
        if (bits)
            return x[8 * k + __builtin_ctz((unsigned)bits)];
    }
    return 0.0f; /* unreachable: amax is one of the magnitudes */
}

/* q[j] = the reference's (int8_t)trunc_i32((x[j] - sub) * id + add),
 * capped at cap when cap >= 0 (imin), kept as int32 */
TARGET static inline void codes32(const __m256 v[4], float sub, float id, float add, int cap, int32_t q[32])
{
    const __m256 vs = _mm256_set1_ps(sub), vid = _mm256_set1_ps(id), va = _mm256_set1_ps(add);
    for (int k = 0; k < 4; k++) {
        __m256i i = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v[k], vs), vid), va));
        i = _mm256_srai_epi32(_mm256_slli_epi32(i, 24), 24); /* low byte, sign-extended */
        if (cap >= 0)
            i = _mm256_min_epi32(i, _mm256_set1_epi32(cap));
        _mm256_storeu_si256((__m256i *)(q + 8 * k), i);
    }
}

static inline void pack_nibbles(const int32_t q[32], uint8_t *qs)
{
    for (int j = 0; j < 16; j++)
        qs[j] = (uint8_t)((uint8_t)q[j] | ((uint8_t)q[16 + j] << 4));
}

static inline void pack_q5(const int32_t q[32], uint8_t *qh4, uint8_t *qs)
{
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        uint8_t a = (uint8_t)q[j], b = (uint8_t)q[16 + j];
        qs[j] = (uint8_t)((a & 0x0f) | ((b & 0x0f) << 4));
        qh |= (uint32_t)((a & 0x10u) >> 4) << j;
        qh |= (uint32_t)((b & 0x10u) >> 4) << (j + 16);
    }
    qf_put32(qh4, qh);
}

/* q4_0/q5_0 (symmetric: d = signed absmax / -nmax) and q4_1/q5_1 (d and
 * min from min/max); q4_* codes are capped at 15, q5_1's are not capped */
TARGET static void quantize32(const float *x, uint8_t *y, size_t nb, uint32_t type)
{
    const bool five = type == QF_Q5_0 || type == QF_Q5_1, asym = type == QF_Q4_1 || type == QF_Q5_1;
    const size_t bs = qf_type_get(type)->size, head = asym ? 4 : 2;
    __m256 v[4], a[4];
    int32_t q[32];
    for (size_t i = 0; i < nb; i++, x += 32, y += bs) {
        float mn = 0.0f, d;
        if (!load32_finite(x, v, a))
            goto scalar;
        if (asym) {
            mn = hmin8(_mm256_min_ps(_mm256_min_ps(v[0], v[1]), _mm256_min_ps(v[2], v[3])));
            const float mx = hmax8(_mm256_max_ps(_mm256_max_ps(v[0], v[1]), _mm256_max_ps(v[2], v[3])));
            if (mn == 0.0f || mx == 0.0f) /* which zero the scan kept */
                goto scalar;
            d = (mx - mn) / (five ? 31 : 15);
        } else {
            d = signed_absmax32(x, a) / (five ? -16 : -8);
        }
        const float id = d ? 1.0f / d : 0.0f;
        qf_put16(y, qf_f32_to_f16(d));
        if (asym)
            qf_put16(y + 2, qf_f32_to_f16(mn));
        codes32(v, mn, id, asym ? 0.5f : five ? 16.5f : 8.5f, type == QF_Q5_1 ? -1 : five ? 31 : 15, q);
        if (five)
            pack_q5(q, y + head, y + head + 4);
        else
            pack_nibbles(q, y + head);
        continue;
    scalar:
        qf_quantize_ref(type, x, y, 32);
    }
}

void qf_quantize_q4_0_avx2(const float *x, uint8_t *y, size_t nb) { quantize32(x, y, nb, QF_Q4_0); }
void qf_quantize_q5_0_avx2(const float *x, uint8_t *y, size_t nb) { quantize32(x, y, nb, QF_Q5_0); }
void qf_quantize_q4_1_avx2(const float *x, uint8_t *y, size_t nb) { quantize32(x, y, nb, QF_Q4_1); }
void qf_quantize_q5_1_avx2(const float *x, uint8_t *y, size_t nb) { quantize32(x, y, nb, QF_Q5_1); }

/* layout.c's validation of every converted input: 12% of a cold read in
 * scalar code (perf), one compare per 8 values here. */
TARGET bool qf_f32_finite_avx2(const uint8_t *p, size_t n)
{
    const __m256i m = _mm256_set1_epi32(0x7f800000);
    __m256i acc = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm256_or_si256(acc, _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_loadu_si256((const __m256i *)(p + 4 * i)), m), m));
    bool bad = !_mm256_testz_si256(acc, acc);
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, p + 4 * i, 4);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    return !bad;
}

#else

bool qf_simd_available(void) { return false; }

#endif
