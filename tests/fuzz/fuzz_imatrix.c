/* The imatrix reader (both formats) over any bytes: what it accepts can
 * be looked up by name and read whole. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tmem m = {data, size};
    struct qf_imatrix *im = NULL;
    char err[256];
    if (qf_imatrix_parse(tmem_pread, &m, size, &im, err, sizeof err))
        return 0;
    for (size_t i = 0; i < im->n; i++) /* found by name, weights readable */
        if (qf_imatrix_find(im, im->e[i].name) != &im->e[i] || (im->e[i].n && !(im->e[i].w[im->e[i].n - 1] == im->e[i].w[im->e[i].n - 1])))
            __builtin_trap();
    qf_imatrix_free(im);
    return 0;
}
