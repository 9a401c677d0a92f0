/* The config.json and model.safetensors.index.json rewriters of every
 * safetensors view. Input: the source JSON, "\n--8<--\n", then a
 * safetensors file (the model's one shard, named model.safetensors). */
#include <stdlib.h>

#include "fuzz.h"

static bool have_model(void *arg, const char *shard)
{
    (void)arg;
    return !strcmp(shard, "model.safetensors");
}

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
    /* opened as the config and index rows open them (an index naming
     * model.safetensors or nothing), then rewritten for every view */
    struct qf_st_json cfg = {0}, idx = {0};
    bool have_cfg = !qf_st_json_open((const char *)data, jl, false, NULL, NULL, &cfg, err, sizeof err);
    bool have_idx = !qf_st_json_open((const char *)data, jl, true, have_model, NULL, &idx, err, sizeof err);
    size_t nv;
    const struct qf_view *v = qf_views(&nv);
    for (size_t i = 0; i < nv; i++) {
        if (!v[i].what || !(v[i].formats & QF_FMT_SAFETENSORS))
            continue;
        const struct qf_view *r = qf_view_resolve(&v[i], QF_FMT_SAFETENSORS);
        if (have_cfg)
            free(qf_st_config_json(&cfg, r, shards, 1, err, sizeof err));
        if (have_idx)
            free(qf_st_index_json(&idx, r, shards, names, 1, err, sizeof err));
    }
    qf_st_json_free(&cfg);
    qf_st_json_free(&idx);
    qf_st_free(st);
    return 0;
}
