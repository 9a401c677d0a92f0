/* A Hugging Face directory made GGUF: config.json, tokenizer.json,
 * tokenizer_config.json and tokenizer.model (the input's four parts, split
 * at "\n--8<--\n"), over one fixed safetensors header; then the converter's
 * F32 file read through qf_hf_pread and a mix view's layout; the config
 * part also as the scanner reads config.json and an index. */
#include <stdlib.h>

#include "fuzz.h"

static const char ST[] = "{\"model.embed_tokens.weight\":{\"dtype\":\"BF16\",\"shape\":[64,8],\"data_offsets\":[0,1024]},"
                         "\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[1024,1056]},"
                         "\"model.layers.0.self_attn.q_proj.weight\":{\"dtype\":\"F16\",\"shape\":[8,8],"
                         "\"data_offsets\":[1056,1184]}}";

static int zeros(void *ctx, void *buf, size_t len, uint64_t off)
{
    (void)ctx;
    (void)off;
    memset(buf, 0, len);
    return 0;
}

static bool any_shard(void *arg, const char *name)
{
    (void)arg;
    return name[0] != 'x';
}

static int make(const void *hf, const struct qf_view *v, struct qf_layout **l, char *err, size_t n)
{
    return qf_layout_hf(hf, v, NULL, l, err, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *part[4] = {0};
    size_t plen[4] = {0};
    char *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = 0;
    char *p = copy, *end = copy + size;
    for (int i = 0; i < 4 && p <= end; i++) {
        char *sep = memmem(p, (size_t)(end - p), "\n--8<--\n", 8);
        part[i] = p;
        plen[i] = sep ? (size_t)(sep - p) : (size_t)(end - p);
        if (!sep)
            break;
        *sep = 0;
        p = sep + 8;
    }
    /* the fixed shard: 8-byte length, JSON header, data */
    static uint8_t shard[8 + sizeof ST + 1184];
    size_t hl = sizeof ST - 1;
    for (int i = 0; i < 8; i++)
        shard[i] = (uint8_t)(hl >> (8 * i));
    memcpy(shard + 8, ST, hl);
    struct tmem sm = {shard, 8 + hl + 1184};
    struct qf_st *st = NULL;
    char err[256];
    if (!part[0] || qf_st_parse(tmem_pread, &sm, sm.size, &st, err, sizeof err)) {
        free(copy);
        return 0;
    }
    const struct qf_st *shards[1] = {st};
    struct qf_hf_input in = {.name = "fuzz", .config = part[0], .config_len = plen[0],
                             .tokenizer = part[1], .tokenizer_len = plen[1],
                             .tokenizer_config = part[2], .tokenizer_config_len = plen[2],
                             .spm = (const uint8_t *)part[3], .spm_len = plen[3],
                             .shards = shards, .n_shards = 1};
    struct qf_hf *hf = NULL;
    if (!qf_hf_build(&in, &hf, err, sizeof err)) {
        void *ctx[1] = {NULL};
        struct qf_hf_reader rd = {hf, zeros, ctx};
        fz_each_view(QF_FMT_GGUF, make, hf, qf_hf_pread, &rd);
        qf_hf_free(hf);
    }
    /* the scanner's reads of config.json and an index (the same part) */
    char arch[128];
    qf_hf_config_arch(part[0], plen[0], arch, sizeof arch, err, sizeof err);
    qf_st_index_check(part[0], plen[0], any_shard, NULL, err, sizeof err);
    qf_st_free(st);
    free(copy);
    return 0;
}
