/* The GGUF parser, llama-quantize's planner and every GGUF view's layout,
 * over any bytes. */
#include "fuzz.h"

static int make(const void *g, const struct qf_view *v, struct qf_layout **l, char *err, size_t n)
{
    return qf_layout_gguf(g, v, NULL, NULL, l, err, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tmem m = {data, size};
    struct qf_gguf *g = NULL;
    char err[256];
    if (qf_gguf_parse(tmem_pread, &m, size, &g, err, sizeof err))
        return 0;
    fz_each_view(QF_FMT_GGUF, make, g, tmem_pread, &m);
    qf_gguf_free(g);
    return 0;
}
