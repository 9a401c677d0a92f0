/* hfdir.c — the opens of the derived kinds: hf-gguf gathers a Hugging Face
 * model directory's inputs (config, tokenizer files, safetensors headers,
 * a vocab-only GGUF) through the caller's file access and builds the
 * converter's GGUF (qf_hf_build); lora builds an adapter's GGUF
 * (qf_hf_build_lora). codec.h "qf_hf_open_dir", "qf_lora_open_dir". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "quant_impl.h"

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n > k && !strcmp(s + n - k, suf);
}

static void parse_begin(const struct qf_dir_io *io)
{
    if (io->parse_begin)
        io->parse_begin(io->ctx);
}

static void parse_end(const struct qf_dir_io *io)
{
    if (io->parse_end)
        io->parse_end(io->ctx);
}

/* An open's result: on failure a reason in err and no shard contexts */
static int finish(int rc, struct qf_hf_dir *out, char *err, size_t errlen)
{
    if (rc) {
        if (!err[0])
            snprintf(err, errlen, "%s", strerror(-rc));
        free(out->shard_ctx);
        out->shard_ctx = NULL;
    }
    return rc;
}

/* A file read whole, at most max bytes. */
static int read_whole(const struct qf_dir_io *io, const char *name, uint64_t max, char **text, size_t *len)
{
    qf_pread_fn rd;
    void *ctx;
    uint64_t size;
    int rc = io->open(io->ctx, name, &rd, &ctx, &size);
    if (rc)
        return rc;
    if (size > max) {
        rc = -EFBIG;
    } else if (!(*text = malloc((size_t)size + 1))) {
        rc = -ENOMEM;
    } else if (!(rc = rd(ctx, *text, (size_t)size, 0))) {
        (*text)[size] = 0;
        *len = (size_t)size;
    } else {
        free(*text);
        *text = NULL;
    }
    if (io->done)
        io->done(io->ctx, ctx);
    return rc;
}

/* The tokenizer.* KVs of a vocab-only GGUF (the converter's --vocab-only
 * file), which must lie together: copied out, verbatim. */
static int vocab_only(const struct qf_dir_io *io, qf_pread_fn rd, void *ctx, uint64_t size, uint8_t **kvs,
                      size_t *len, uint64_t *n_kv, char *e, size_t elen)
{
    struct qf_gguf *g = NULL;
    parse_begin(io);
    int r = qf_gguf_parse(rd, ctx, size, &g, e, elen);
    parse_end(io);
    if (!r && g->n_tensors)
        r = qf_fail(e, elen, -EINVAL, "has tensors: not a vocab-only GGUF");
    uint64_t b = 0, n = 0, end = 0;
    for (uint64_t k = 0; !r && k < g->n_kv; k++) {
        if (strncmp(g->kvs[k].key, "tokenizer.", 10))
            continue;
        if (n && g->kvs[k].begin != end) {
            r = qf_fail(e, elen, -EINVAL, "its tokenizer.* KVs are not together");
            break;
        }
        if (!n)
            b = g->kvs[k].begin;
        end = g->kvs[k].end;
        n++;
    }
    if (!r && n && end - b <= (256u << 20) && (*kvs = malloc(end - b)) && !rd(ctx, *kvs, end - b, b)) {
        *len = end - b, *n_kv = n;
    } else if (!r) {
        free(*kvs);
        *kvs = NULL;
        r = qf_fail(e, elen, -EINVAL, "no tokenizer KVs");
    }
    qf_gguf_free(g);
    return r;
}

static int open_dir(const struct qf_dir_io *io, const struct qf_model_files *m, const struct qf_lora_merge *lora,
                    struct qf_hf_dir *out, char *err, size_t errlen)
{
    static const char *const names[QF_HF_TEXTS] = {"config.json",       "tokenizer.json",
                                                   "tokenizer_config.json", "tokenizer.model",
                                                   "chat_template.jinja",   "added_tokens.json",
                                                   "generation_config.json"};
    *out = (struct qf_hf_dir){0};
    char *txt[QF_HF_TEXTS] = {0};
    size_t tlen[QF_HF_TEXTS] = {0};
    struct qf_hf_input in = {.name = m->name, .lora = lora};
    struct qf_st **sh = calloc(m->n + 1, sizeof *sh);
    out->shard_ctx = calloc(m->n + 1, sizeof *out->shard_ctx);
    uint8_t *vkv = NULL;
    size_t n_sh = 0;
    int rc = sh && out->shard_ctx ? 0 : -ENOMEM;
    for (size_t i = 0; i < QF_HF_TEXTS && !rc; i++) {
        int r = read_whole(io, names[i], i == 1 || i == 3 ? QF_TOKENIZER_MAX_BYTES : QF_JSON_MAX_BYTES, &txt[i],
                           &tlen[i]);
        if (r == -ENOENT && i > 0) /* all but config.json are optional */
            continue;
        if (r)
            rc = qf_fail(err, errlen, r, "%s: %s", names[i], strerror(-r));
    }
    in.config = txt[0], in.config_len = tlen[0];
    in.tokenizer = txt[1], in.tokenizer_len = tlen[1];
    in.tokenizer_config = txt[2], in.tokenizer_config_len = tlen[2];
    in.spm = (const uint8_t *)txt[3], in.spm_len = tlen[3];
    in.chat_template_jinja = txt[4];
    in.has_added_tokens_json = txt[5] != NULL;
    in.generation_config = txt[6], in.generation_config_len = tlen[6];
    /* shards in file-name order (m->f is sorted), and a vocab-only GGUF */
    for (size_t i = 0; i < m->n && !rc; i++) {
        const char *name = m->f[i].name;
        bool shard = m->f[i].role == QF_ROLE_ST;
        if (!shard && !(m->f[i].role == QF_ROLE_PASS && has_suffix(name, "vocab.gguf")))
            continue;
        qf_pread_fn rd;
        void *ctx;
        uint64_t size;
        char e[200] = "";
        int r = io->open(io->ctx, name, &rd, &ctx, &size);
        if (r) {
            rc = qf_fail(err, errlen, r, "%s: %s", name, strerror(-r));
            break;
        }
        if (shard) {
            parse_begin(io);
            r = qf_st_parse(rd, ctx, size, &sh[n_sh], e, sizeof e);
            parse_end(io);
            if (!r)
                out->shard_ctx[n_sh++] = ctx;
            out->shard_refused |= r != 0;
        } else {
            r = vocab_only(io, rd, ctx, size, &vkv, &in.vocab_kvs_len, &in.vocab_n_kv, e, sizeof e);
            in.vocab_kvs = vkv;
            if (io->done)
                io->done(io->ctx, ctx);
        }
        if (r)
            rc = qf_fail(err, errlen, r, "%s: %s", name, e);
    }
    if (!rc && !n_sh)
        rc = qf_fail(err, errlen, -ENOENT, "no safetensors file");
    /* the same tokenizer inputs converted before (another fine-tune of
     * one base): their KVs, without parsing tokenizer.json again */
    bool memo = !rc && !txt[5] && !in.vocab_kvs && io->tok_find && io->tok_add;
    if (memo && io->tok_find(io->ctx, (const char *const *)txt, tlen, &vkv, &in.vocab_kvs_len, &in.vocab_n_kv)) {
        in.vocab_kvs = vkv;
        in.tokenizer = NULL, in.tokenizer_config = NULL, in.spm = NULL, in.chat_template_jinja = NULL;
        out->tokenizer_reused = true;
        memo = false;
    }
    if (!rc) {
        in.shards = (const struct qf_st *const *)sh;
        in.n_shards = n_sh;
        rc = qf_hf_build(&in, &out->hf, err, errlen);
    }
    if (!rc && memo)
        io->tok_add(io->ctx, (const char *const *)txt, tlen, out->hf);
    out->tokenizer_parsed = !out->tokenizer_reused && in.tokenizer;
    for (size_t i = 0; i < n_sh; i++)
        qf_st_free(sh[i]);
    free(sh);
    free(vkv);
    for (size_t i = 0; i < QF_HF_TEXTS; i++)
        free(txt[i]);
    return finish(rc, out, err, errlen);
}

int qf_lora_open_dir(const struct qf_dir_io *io, const char *adapter, struct qf_hf_dir *out, char *err,
                     size_t errlen)
{
    memset(out, 0, sizeof *out);
    char *cfg = NULL, *acfg = NULL, name[512];
    size_t cl = 0, al = 0;
    struct qf_st *st = NULL;
    int rc = read_whole(io, "config.json", QF_JSON_MAX_BYTES, &cfg, &cl);
    if (rc) {
        rc = qf_fail(err, errlen, rc, "config.json: %s", strerror(-rc));
        goto out;
    }
    snprintf(name, sizeof name, "adapters/%s/adapter_config.json", adapter);
    if ((rc = read_whole(io, name, QF_JSON_MAX_BYTES, &acfg, &al))) {
        rc = qf_fail(err, errlen, rc, "%s: %s", name, strerror(-rc));
        goto out;
    }
    snprintf(name, sizeof name, "adapters/%s/adapter_model.safetensors", adapter);
    qf_pread_fn rd;
    void *ctx;
    uint64_t size;
    if ((rc = io->open(io->ctx, name, &rd, &ctx, &size))) {
        rc = qf_fail(err, errlen, rc, "%s: %s", name, strerror(-rc));
        goto out;
    }
    char e[256] = "";
    parse_begin(io);
    rc = qf_st_parse(rd, ctx, size, &st, e, sizeof e);
    parse_end(io);
    if (rc) {
        rc = qf_fail(err, errlen, rc, "%s: %s", name, e);
        goto out;
    }
    if (!(out->shard_ctx = malloc(sizeof *out->shard_ctx))) {
        rc = -ENOMEM;
        goto out;
    }
    out->shard_ctx[0] = ctx;
    struct qf_lora_input in = {.name = adapter, .base_config = cfg, .base_config_len = cl,
                               .adapter_config = acfg, .adapter_config_len = al, .weights = st};
    rc = qf_hf_build_lora(&in, &out->hf, err, errlen);
out:
    free(cfg);
    free(acfg);
    qf_st_free(st);
    return finish(rc, out, err, errlen);
}

int qf_hf_open_dir(const struct qf_dir_io *io, const struct qf_model_files *m, struct qf_hf_dir *out, char *err,
                   size_t errlen)
{
    return open_dir(io, m, NULL, out, err, errlen);
}

int qf_merged_open_dir(const struct qf_dir_io *io, const struct qf_model_files *m, const char *name,
                       struct qf_hf_dir *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *plus = strrchr(name, '+');
    size_t n = strlen(name);
    if (!plus || n < 6 || strcmp(name + n - 5, ".gguf") || (size_t)(name + n - 5 - plus - 1) > 200)
        return qf_fail(err, errlen, -EINVAL, "%s: not a merged model's file name", name);
    char adapter[256], p[512];
    memcpy(adapter, plus + 1, (size_t)(name + n - 5 - plus - 1));
    adapter[name + n - 5 - plus - 1] = 0;
    /* the base's files, as the base's own rows see them */
    struct qf_model_files base = {.name = m->name, .dir = true, .n = m->n};
    char *extra = NULL, *acfg = NULL;
    size_t al = 0;
    struct qf_st *st = NULL;
    int rc = (base.f = malloc((m->n + 1) * sizeof *base.f)) ? 0 : -ENOMEM;
    for (size_t i = 0; !rc && i < m->n; i++)
        base.f[i] = (struct qf_model_file){m->f[i].name, QF_ROLE_PASS};
    if (!rc)
        rc = qf_model_claim(&base, NULL, &extra);
    free(extra);
    snprintf(p, sizeof p, "adapters/%s/adapter_config.json", adapter);
    if (!rc && (rc = read_whole(io, p, QF_JSON_MAX_BYTES, &acfg, &al)))
        rc = qf_fail(err, errlen, rc, "%s: %s", p, strerror(-rc));
    snprintf(p, sizeof p, "adapters/%s/adapter_model.safetensors", adapter);
    qf_pread_fn rd;
    void *ctx = NULL;
    uint64_t size;
    if (!rc && (rc = io->open(io->ctx, p, &rd, &ctx, &size)))
        rc = qf_fail(err, errlen, rc, "%s: %s", p, strerror(-rc));
    char e[256] = "";
    if (!rc) {
        parse_begin(io);
        rc = qf_st_parse(rd, ctx, size, &st, e, sizeof e);
        parse_end(io);
        if (rc)
            rc = qf_fail(err, errlen, rc, "%s: %s", p, e);
    }
    if (!rc) {
        struct qf_lora_merge lm = {.config = acfg, .config_len = al, .weights = st, .rd = rd, .ctx = ctx};
        rc = open_dir(io, &base, &lm, out, err, errlen);
    }
    if (ctx && io->done) /* A and B are in memory */
        io->done(io->ctx, ctx);
    qf_st_free(st);
    free(acfg);
    free(base.f);
    return finish(rc, out, err, errlen);
}
