/* The safetensors header (JSON) parser and every safetensors view's layout. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_mem m = {data, size};
    struct qf_st *st = NULL;
    char err[256];
    if (qf_st_parse(fz_pread, &m, size, &st, err, sizeof err))
        return 0;
    size_t nv;
    const struct qf_view *v = qf_views(&nv);
    for (size_t i = 0; i < nv; i++) {
        struct qf_layout *l = NULL;
        if (!v[i].what || !(v[i].formats & QF_FMT_SAFETENSORS))
            continue;
        if (!qf_layout_safetensors(st, &v[i], &l, err, sizeof err)) {
            fz_exercise(l, fz_pread, &m);
            qf_layout_free(l);
        }
    }
    qf_st_free(st);
    return 0;
}
