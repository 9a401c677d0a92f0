/* Every dequantizer (and the f16/bf16 widening) on any bytes: the first
 * byte picks the type. */
#include <stdlib.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t type = data[0] % QF_TYPE_MAX;
    const struct qf_type_info *t = qf_type_get(type);
    if (!t || !t->dequantize || size - 1 < t->size)
        return 0;
    size_t nb = (size - 1) / t->size;
    float *out = malloc(nb * t->blck * sizeof *out);
    if (out) {
        qf_dequantize(type, data + 1, out, nb * t->blck);
        free(out);
    }
    return 0;
}
