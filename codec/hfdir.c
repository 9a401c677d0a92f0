/* hfdir.c — the opens of the derived kinds: hf-gguf gathers a Hugging Face
 * model directory's inputs (config, tokenizer files, safetensors headers,
 * a vocab-only GGUF) through the caller's file access and builds the
 * converter's GGUF (qf_hf_build); lora builds an adapter's GGUF
 * (qf_hf_build_lora); merged and merged-safetensors build a base with an
 * adapter merged (qf_hf_input.lora, qf_hf_build_merged_st). codec.h
 * "qf_hf_open_dir", "qf_lora_open_dir", "qf_merged_open_dir",
 * "qf_merged_st_open_dir". */
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

/* A merged model's adapter (adapters/ADAPTER/ of the base): its config
 * read whole and its weights' header parsed; *ctx its reader (the caller
 * calls io->done once the pairs are read in). */
static int open_adapter(const struct qf_dir_io *io, const char *adapter, char **acfg, size_t *al, struct qf_st **st,
                        qf_pread_fn *rd, void **ctx, char *err, size_t errlen)
{
    char p[512];
    uint64_t size;
    snprintf(p, sizeof p, "adapters/%s/adapter_config.json", adapter);
    int rc = read_whole(io, p, QF_JSON_MAX_BYTES, acfg, al);
    if (rc)
        return qf_fail(err, errlen, rc, "%s: %s", p, strerror(-rc));
    snprintf(p, sizeof p, "adapters/%s/adapter_model.safetensors", adapter);
    if ((rc = io->open(io->ctx, p, rd, ctx, &size)))
        return qf_fail(err, errlen, rc, "%s: %s", p, strerror(-rc));
    char e[256] = "";
    parse_begin(io);
    rc = qf_st_parse(*rd, *ctx, size, st, e, sizeof e);
    parse_end(io);
    return rc ? qf_fail(err, errlen, rc, "%s: %s", p, e) : 0;
}

/* The base's own files among a merged model's (its sources: the derived
 * files, which may share their names, left out), as the base's rows
 * claim them; base->f malloc'd. */
static int base_files(const struct qf_model_files *m, struct qf_model_files *base)
{
    *base = (struct qf_model_files){.name = m->name, .dir = true};
    if (!(base->f = malloc((m->n + 1) * sizeof *base->f)))
        return -ENOMEM;
    for (size_t i = 0; i < m->n; i++)
        if (!qf_source_kind(m->f[i].role)->derived)
            base->f[base->n++] = (struct qf_model_file){m->f[i].name, QF_ROLE_PASS};
    char *extra = NULL;
    int rc = qf_model_claim(base, NULL, &extra);
    free(extra);
    return rc;
}

int qf_merged_open_dir(const struct qf_dir_io *io, const struct qf_model_files *m, const char *name,
                       struct qf_hf_dir *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *plus = strrchr(name, '+');
    size_t n = strlen(name);
    if (!plus || n < 6 || strcmp(name + n - 5, ".gguf") || (size_t)(name + n - 5 - plus - 1) > 200)
        return qf_fail(err, errlen, -EINVAL, "%s: not a merged model's file name", name);
    char adapter[256];
    memcpy(adapter, plus + 1, (size_t)(name + n - 5 - plus - 1));
    adapter[name + n - 5 - plus - 1] = 0;
    struct qf_model_files base;
    char *acfg = NULL;
    size_t al = 0;
    struct qf_st *st = NULL;
    qf_pread_fn rd;
    void *ctx = NULL;
    int rc = base_files(m, &base);
    if (!rc)
        rc = open_adapter(io, adapter, &acfg, &al, &st, &rd, &ctx, err, errlen);
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

int qf_merged_st_open_dir(const struct qf_dir_io *io, const struct qf_model_files *m, const char *name,
                          struct qf_hf_dir *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *plus = m->name ? strrchr(m->name, '+') : NULL;
    if (!plus || strlen(plus + 1) > 200)
        return qf_fail(err, errlen, -EINVAL, "%s: not a merged model", m->name ? m->name : "(unnamed)");
    struct qf_model_files base;
    char *cfg = NULL, *acfg = NULL;
    size_t cl = 0, al = 0, n_sh = 0, me = SIZE_MAX;
    struct qf_st *ast = NULL, **sh = calloc(m->n + 1, sizeof *sh);
    qf_pread_fn rd;
    void *actx = NULL;
    int rc = sh ? base_files(m, &base) : -ENOMEM;
    if (!sh)
        base.f = NULL;
    if (!rc && (rc = read_whole(io, "config.json", QF_JSON_MAX_BYTES, &cfg, &cl)))
        rc = qf_fail(err, errlen, rc, "config.json: %s", strerror(-rc));
    if (!rc && !(out->shard_ctx = calloc(1, sizeof *out->shard_ctx)))
        rc = -ENOMEM;
    /* every shard's header (the adapter is checked against them all); this one stays open */
    for (size_t i = 0; i < base.n && !rc; i++) {
        if (base.f[i].role != QF_ROLE_ST)
            continue;
        qf_pread_fn srd;
        void *ctx;
        uint64_t size;
        char e[200] = "";
        if ((rc = io->open(io->ctx, base.f[i].name, &srd, &ctx, &size))) {
            rc = qf_fail(err, errlen, rc, "%s: %s", base.f[i].name, strerror(-rc));
            break;
        }
        parse_begin(io);
        rc = qf_st_parse(srd, ctx, size, &sh[n_sh], e, sizeof e);
        parse_end(io);
        if (rc) {
            out->shard_refused = true;
            rc = qf_fail(err, errlen, rc, "%s: %s", base.f[i].name, e);
            break;
        }
        if (!strcmp(base.f[i].name, name)) {
            me = n_sh;
            out->shard_ctx[0] = ctx;
        } else if (io->done) {
            io->done(io->ctx, ctx);
        }
        n_sh++;
    }
    if (!rc && me == SIZE_MAX)
        rc = qf_fail(err, errlen, -ENOENT, "%s: not a safetensors file of the base", name);
    if (!rc)
        rc = open_adapter(io, plus + 1, &acfg, &al, &ast, &rd, &actx, err, errlen);
    if (!rc) {
        struct qf_lora_merge lm = {.config = acfg, .config_len = al, .weights = ast, .rd = rd, .ctx = actx};
        struct qf_merged_st_input in = {.config = cfg, .config_len = cl, .shards = (const struct qf_st *const *)sh,
                                        .n_shards = n_sh, .shard = me, .lora = &lm};
        rc = qf_hf_build_merged_st(&in, &out->hf, err, errlen);
    }
    if (actx && io->done) /* the adapter's tensors are in memory */
        io->done(io->ctx, actx);
    for (size_t i = 0; i < n_sh; i++)
        qf_st_free(sh[i]);
    free(sh);
    qf_st_free(ast);
    free(cfg);
    free(acfg);
    free(base.f);
    return finish(rc, out, err, errlen);
}
