/* The config.json and model.safetensors.index.json rewriters of every
 * safetensors view. Input: the source JSON, "\n--8<--\n", then a
 * safetensors file (the model's one shard, named model.safetensors). */
#include <stdlib.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *sep = memmem(data, size, "\n--8<--\n", 8);
    if (!sep)
        return 0;
    size_t jl = (size_t)(sep - data);
    struct tmem m = {sep + 8, size - jl - 8};
    struct qf_st *st = NULL;
    char err[256];
    if (qf_st_parse(tmem_pread, &m, m.size, &st, err, sizeof err))
        return 0;
    const struct qf_st *shards[1] = {st};
    const char *names[1] = {"model.safetensors"};
    size_t nv;
    const struct qf_view *v = qf_views(&nv);
    for (size_t i = 0; i < nv; i++) {
        if (!v[i].what || !(v[i].formats & QF_FMT_SAFETENSORS))
            continue;
        const struct qf_view *r = qf_view_resolve(&v[i], QF_FMT_SAFETENSORS);
        free(qf_st_config_json((const char *)data, jl, r, shards, 1, err, sizeof err));
        free(qf_st_index_json((const char *)data, jl, r, shards, names, 1, err, sizeof err));
    }
    qf_st_free(st);
    return 0;
}
