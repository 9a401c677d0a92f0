/* quant_impl.h — codec-internal helpers shared by the kernel files. Not API. */
#ifndef QUANTFS_QUANT_IMPL_H
#define QUANTFS_QUANT_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

extern const int8_t qf_iq4nl_values[16];

/* The sub-block search of q4_K/q5_K: for the 8 sub-blocks of 32 values of
 * one super-block, ggml's weighted (scale, min) fit (make_qkx2_quants with
 * weights av_x + |x|). Fills L[256], scales[8] and mins[8] (as -min). The
 * reference is scalar; quant_x86.c runs the 8 sub-blocks in the 8 lanes of
 * a vector, each lane doing exactly the scalar operations. */
typedef void (*qf_kfit8_fn)(const float *x, int nmax, float rmin, int nstep, uint8_t *L, float *scales, float *mins);
void qf_kfit8_ref(const float *x, int nmax, float rmin, int nstep, uint8_t *L, float *scales, float *mins);
void qf_quantize_q4_K_with(const float *x, uint8_t *y, size_t nb, qf_kfit8_fn fit);
void qf_quantize_q5_K_with(const float *x, uint8_t *y, size_t nb, qf_kfit8_fn fit);

/* stquant.c: rows x row_len floats to a QF_ST_* kind's bytes (group: int4
 * group size). For the fp8 kinds, rows is a multiple of 128 except at the
 * end of the tensor. Returns 0 or -EINVAL. */
int qf_st_quantize_rows(uint32_t kind, const float *x, size_t rows, size_t row_len, uint32_t group, uint8_t *out);
uint8_t qf_f32_to_e4m3(float f);

/* SIMD kernels (quant_x86.c). Each returns false if it does not handle the
 * type, so the caller falls back to the scalar reference. */
bool qf_simd_available(void);
bool qf_quantize_simd(uint32_t type, const float *src, uint8_t *dst, size_t n);
bool qf_to_f32_simd(uint32_t type, const uint8_t *src, float *dst, size_t n);

#endif
