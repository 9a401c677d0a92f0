/* The GGUF parser, llama-quantize's planner and every GGUF view's layout,
 * over any bytes. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_mem m = {data, size};
    struct qf_gguf *g = NULL;
    char err[256];
    if (qf_gguf_parse(fz_pread, &m, size, &g, err, sizeof err))
        return 0;
    size_t nv;
    const struct qf_view *v = qf_views(&nv);
    for (size_t i = 0; i < nv; i++) {
        struct qf_layout *l = NULL;
        if (!v[i].what || !(v[i].formats & QF_FMT_GGUF))
            continue;
        if (!qf_layout_gguf(g, &v[i], &l, err, sizeof err)) {
            fz_exercise(l, fz_pread, &m);
            qf_layout_free(l);
        }
    }
    qf_gguf_free(g);
    return 0;
}
