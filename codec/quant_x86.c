/* quant_x86.c — SIMD kernels (placeholder until the AVX2 paths land). */
#include "codec.h"
#include "quant_impl.h"

bool qf_simd_available(void) { return false; }
bool qf_quantize_simd(uint32_t type, const float *src, uint8_t *dst, size_t n)
{
    (void)type, (void)src, (void)dst, (void)n;
    return false;
}
bool qf_to_f32_simd(uint32_t type, const uint8_t *src, float *dst, size_t n)
{
    (void)type, (void)src, (void)dst, (void)n;
    return false;
}
