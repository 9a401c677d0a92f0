/* The safetensors header (JSON) parser and every safetensors view's layout. */
#include "fuzz.h"

static int make(const void *st, const struct qf_view *v, struct qf_layout **l, char *err, size_t n)
{
    return qf_layout_safetensors(st, v, l, err, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tmem m = {data, size};
    struct qf_st *st = NULL;
    char err[256];
    if (qf_st_parse(tmem_pread, &m, size, &st, err, sizeof err))
        return 0;
    fz_each_view(QF_FMT_SAFETENSORS, make, st, tmem_pread, &m);
    qf_st_free(st);
    return 0;
}
