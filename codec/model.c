/* model.c — the source kinds: what a model's files are and what each view
 * shows, one row per kind of source (codec.h "models"). The shape is
 * squashfuse's decompressor table or fuse-overlayfs's struct data_source:
 * callers never branch on a kind, they call its row. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "quant_impl.h"

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n > k && !strcmp(s + n - k, suf);
}

/* ----------------------------------------------------------------- gguf */

static int gguf_claim(const char *name, bool dir)
{
    if (dir && !strcmp(name, "imatrix.gguf"))
        return -1; /* the imatrix row's */
    return has_suffix(name, ".gguf") && !strchr(name, '/') ? QF_ROLE_GGUF : -1;
}

/* a model's own files stay out of the lora view, which holds adapters */
static bool not_lora(unsigned formats, const struct qf_view *v)
{
    (void)formats;
    return !(v->formats & QF_FMT_LORA);
}

/* f32 is the source as it is, for every kind with a source file */
static bool gguf_converts(unsigned formats, const struct qf_view *v)
{
    (void)formats;
    return qf_view_reachable(v, QF_FMT_GGUF | QF_FMT_IMATRIX) && strcmp(v->name, "f32");
}

static uint64_t gguf_header(const void *p) { return ((const struct qf_gguf *)p)->data_begin; }

static int gguf_open(qf_pread_fn rd, void *ctx, uint64_t size, const struct qf_model_files *m, void **out, char *err,
                     size_t errlen)
{
    (void)m;
    return qf_gguf_parse(rd, ctx, size, (struct qf_gguf **)out, err, errlen);
}

static int gguf_layout(const void *p, const struct qf_view *v, const struct qf_model_imatrix *im,
                       struct qf_layout **out, char *err, size_t errlen)
{
    return qf_layout_gguf(p, qf_view_resolve(v, QF_FMT_GGUF), im ? im->m : NULL, im ? im->file : NULL, out, err,
                          errlen);
}

static void gguf_close(void *p) { qf_gguf_free(p); }

/* ---------------------------------------------------------- safetensors */

static int st_claim(const char *name, bool dir)
{
    if (strchr(name, '/')) /* a sub-directory's (adapters/): not the model's weights */
        return -1;
    if (has_suffix(name, ".safetensors"))
        return QF_ROLE_ST;
    if (!dir)
        return -1;
    if (!strcmp(name, "config.json"))
        return QF_ROLE_CONFIG;
    if (has_suffix(name, ".safetensors.index.json"))
        return QF_ROLE_INDEX;
    return -1;
}

static bool st_converts(unsigned formats, const struct qf_view *v)
{
    return (formats & QF_FMT_SAFETENSORS) && qf_view_reachable(v, QF_FMT_SAFETENSORS) && strcmp(v->name, "f32");
}

static uint64_t st_header(const void *p) { return ((const struct qf_st *)p)->data_begin; }

static bool st_shows(unsigned formats, const struct qf_view *v)
{
    /* a GGUF-only view of a Hugging Face model holds its GGUF alone */
    return !(formats & QF_FMT_SAFETENSORS) || qf_view_reachable(v, QF_FMT_SAFETENSORS) || !strcmp(v->name, "f32");
}

static int st_open(qf_pread_fn rd, void *ctx, uint64_t size, const struct qf_model_files *m, void **out, char *err,
                   size_t errlen)
{
    (void)m;
    return qf_st_parse(rd, ctx, size, (struct qf_st **)out, err, errlen);
}

static int st_layout(const void *p, const struct qf_view *v, const struct qf_model_imatrix *im,
                     struct qf_layout **out, char *err, size_t errlen)
{
    (void)im;
    return qf_layout_safetensors(p, qf_view_resolve(v, QF_FMT_SAFETENSORS), out, err, errlen);
}

static void st_close(void *p) { qf_st_free(p); }

static const struct qf_st *st_shard(const void *p) { return p; }

static const struct qf_st *merged_st_shard(const void *p) { return ((const struct qf_hf *)p)->st; }

/* config.json and the index of a safetensors model: the text, bounded and
 * checked once per version; each converting view rewrites it from the
 * shards' headers. In a GGUF model they are plain files (nothing opened). */
static int json_open(qf_pread_fn rd, void *ctx, uint64_t size, const struct qf_model_files *m, bool index,
                     void **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!(m->formats & QF_FMT_SAFETENSORS))
        return 0;
    if (size > QF_JSON_MAX_BYTES)
        return qf_fail(err, errlen, -E2BIG, "%llu bytes exceeds quantfs' limit of %llu MiB for a JSON file",
                       (unsigned long long)size, (unsigned long long)(QF_JSON_MAX_BYTES >> 20));
    char *text = malloc(size + 1);
    struct qf_st_json *j = calloc(1, sizeof *j);
    int rc = text && j ? 0 : -ENOMEM;
    if (!rc && rd(ctx, text, size, 0))
        rc = qf_fail(err, errlen, -EIO, "cannot read it");
    /* an index: every shard it names is one of the model's (a merged
     * model's twins stand for its base's shards) */
    if (!rc)
        rc = qf_st_json_open(text, size, index, qf_model_has_shard, (void *)m, j, err, errlen);
    free(text); /* parsed: the tree is what the views rewrite */
    if (rc) {
        free(j);
        return rc;
    }
    *out = j;
    return 0;
}

static int config_open(qf_pread_fn rd, void *ctx, uint64_t size, const struct qf_model_files *m, void **out,
                       char *err, size_t errlen)
{
    return json_open(rd, ctx, size, m, false, out, err, errlen);
}

static int index_open(qf_pread_fn rd, void *ctx, uint64_t size, const struct qf_model_files *m, void **out,
                      char *err, size_t errlen)
{
    return json_open(rd, ctx, size, m, true, out, err, errlen);
}

static void json_close(void *p)
{
    qf_st_json_free(p);
    free(p);
}

static int text_layout(char *text, struct qf_layout **out)
{
    if (!text)
        return -EINVAL;
    int rc = qf_layout_text(text, strlen(text), out);
    if (rc)
        free(text);
    return rc;
}

static int config_layout(const void *p, const struct qf_view *v, const struct qf_st *const *shards,
                         const char *const *names, size_t n, struct qf_layout **out, char *err, size_t errlen)
{
    (void)names;
    const struct qf_st_json *j = p;
    return text_layout(qf_st_config_json(j, qf_view_resolve(v, QF_FMT_SAFETENSORS), shards, n, err, errlen), out);
}

static int index_layout(const void *p, const struct qf_view *v, const struct qf_st *const *shards,
                        const char *const *names, size_t n, struct qf_layout **out, char *err, size_t errlen)
{
    const struct qf_st_json *j = p;
    return text_layout(
        qf_st_index_json(j, qf_view_resolve(v, QF_FMT_SAFETENSORS), shards, names, n, err, errlen), out);
}

/* a merged shard: converted as a safetensors file; f32 (no conversion) is
 * the merged file itself */
static int merged_st_layout(const void *p, const struct qf_view *v, const struct qf_model_imatrix *im,
                            struct qf_layout **out, char *err, size_t errlen)
{
    const struct qf_hf *hf = p;
    if (!st_converts(QF_FMT_SAFETENSORS, v))
        return qf_layout_passthrough(hf->size[0], out);
    return st_layout(hf->st, v, im, out, err, errlen);
}

/* ------------------------------------------------- Hugging Face -> GGUF */

static bool hf_converts(unsigned formats, const struct qf_view *v)
{
    (void)formats;
    /* every GGUF view (f32 is the converter's --outtype f32), except one that is a safetensors view only
     * (int8, int4, fp8 stay safetensors) */
    return qf_view_reachable(v, QF_FMT_GGUF | QF_FMT_IMATRIX) &&
           !(qf_view_listed(v, QF_FMT_SAFETENSORS) && !qf_view_listed(v, QF_FMT_GGUF));
}

static int hf_layout(const void *p, const struct qf_view *v, const struct qf_model_imatrix *im,
                     struct qf_layout **out, char *err, size_t errlen)
{
    return qf_layout_hf(p, qf_view_resolve(v, QF_FMT_GGUF), im, out, err, errlen);
}

static void hf_close(void *p) { qf_hf_free(p); }

static int hf_open_dir(const struct qf_dir_io *io, const struct qf_model_files *m, const char *name,
                       struct qf_hf_dir *out, char *err, size_t errlen)
{
    (void)name;
    return qf_hf_open_dir(io, m, out, err, errlen);
}

/* ------------------------------------------------------- LoRA adapters */

static const char adapters_dir[] = "adapters/";

static int lora_in_claim(const char *name, bool dir)
{
    /* adapters/NAME/adapter_config.json, adapters/NAME/adapter_model.safetensors */
    if (!dir || strncmp(name, adapters_dir, sizeof adapters_dir - 1))
        return -1;
    const char *slash = strchr(name + sizeof adapters_dir - 1, '/');
    return slash && (!strcmp(slash, "/adapter_config.json") || !strcmp(slash, "/adapter_model.safetensors"))
               ? QF_ROLE_LORA_IN
               : -1;
}

static bool shown_nowhere(unsigned formats, const struct qf_view *v)
{
    (void)formats, (void)v;
    return false;
}

static bool lora_converts(unsigned formats, const struct qf_view *v)
{
    (void)formats;
    return (v->formats & QF_FMT_LORA) != 0;
}

static int lora_layout(const void *p, const struct qf_view *v, const struct qf_model_imatrix *im,
                       struct qf_layout **out, char *err, size_t errlen)
{
    (void)v, (void)im, (void)err, (void)errlen;
    return qf_layout_passthrough(((const struct qf_hf *)p)->size[0], out);
}

static int lora_open_dir(const struct qf_dir_io *io, const struct qf_model_files *m, const char *name,
                         struct qf_hf_dir *out, char *err, size_t errlen)
{
    (void)m;
    size_t n = strlen(name);
    if (n <= 5 || n > 200 || strcmp(name + n - 5, ".gguf"))
        return qf_fail(err, errlen, -EINVAL, "%s: not an adapter's file name", name);
    char adapter[256];
    memcpy(adapter, name, n - 5);
    adapter[n - 5] = 0;
    return qf_lora_open_dir(io, adapter, out, err, errlen);
}

/* ------------------------------------------------------------- imatrix */

static int imatrix_claim(const char *name, bool dir)
{
    if (!dir || strchr(name, '/'))
        return -1;
    return !strcmp(name, "imatrix.gguf") || !strcmp(name, "imatrix.dat") || has_suffix(name, ".imatrix")
               ? QF_ROLE_IMATRIX
               : -1;
}

int qf_model_imatrix_file(const struct qf_model_files *m)
{
    int best = -1, rank = 4;
    for (size_t i = 0; i < m->n; i++) { /* names are sorted: the first *.imatrix wins among those */
        if (m->f[i].role != QF_ROLE_IMATRIX)
            continue;
        const char *f = m->f[i].name;
        int r = m->imatrix_name && !strcmp(f, m->imatrix_name) ? 0
                : !strcmp(f, "imatrix.gguf")                    ? 1
                : !strcmp(f, "imatrix.dat")                     ? 2
                                                                : 3;
        if (r < rank) {
            rank = r;
            best = (int)i;
        }
    }
    return best;
}

/* ---------------------------------------------------------------- table */

static const struct qf_source_kind kinds[QF_ROLE_N] = {
    [QF_ROLE_PASS] = {.name = "pass", .what = "passed through unchanged in every view", .shows = not_lora},
    [QF_ROLE_GGUF] = {.name = "gguf",
                      .what = "a GGUF file: llama-quantize per GGUF view",
                      .format = QF_FMT_GGUF,
                      .claim = gguf_claim,
                      .converts = gguf_converts,
                      .shows = not_lora,
                      .open = gguf_open,
                      .layout = gguf_layout,
                      .header = gguf_header,
                      .close = gguf_close},
    [QF_ROLE_ST] = {.name = "safetensors",
                    .what = "a safetensors file: converted per safetensors view",
                    .format = QF_FMT_SAFETENSORS,
                    .claim = st_claim,
                    .converts = st_converts,
                    .shows = st_shows,
                    .open = st_open,
                    .layout = st_layout,
                    .shard = st_shard,
                    .header = st_header,
                    .close = st_close},
    [QF_ROLE_CONFIG] = {.name = "config",
                        .what = "config.json of safetensors: rewritten per safetensors view",
                        .converts = st_converts,
                        .shows = st_shows,
                        .open = config_open,
                        .layout_set = config_layout,
                        .close = json_close},
    [QF_ROLE_INDEX] = {.name = "index",
                       .what = "model.safetensors.index.json: rewritten per safetensors view",
                       .converts = st_converts,
                       .shows = st_shows,
                       .open = index_open,
                       .layout_set = index_layout,
                       .close = json_close},
    [QF_ROLE_HFGGUF] = {.name = "hf-gguf",
                        .what = "MODEL.gguf of a Hugging Face checkpoint: the converter's file, llama-quantize per GGUF view",
                        .format = QF_FMT_GGUF,
                        .derived = true,
                        .converts = hf_converts,
                        .shows = hf_converts,
                        .layout = hf_layout,
                        .close = hf_close,
                        .open_dir = hf_open_dir},
    [QF_ROLE_LORA_IN] = {.name = "lora-input",
                         .what = "adapters/NAME/: a PEFT LoRA adapter, the input of the lora view's NAME.gguf",
                         .claim = lora_in_claim,
                         .shows = shown_nowhere},
    [QF_ROLE_MERGE_IN] = {.name = "merge-input",
                          .what = "a file of a merged model's base: an input of BASE+ADAPTER's GGUF and merged shards",
                          .shows = shown_nowhere},
    [QF_ROLE_MERGED] = {.name = "merged",
                        .what = "BASE+ADAPTER.gguf: the base's converter GGUF with the adapter merged (PEFT's "
                                "merge_and_unload), llama-quantize per GGUF view",
                        .format = QF_FMT_GGUF,
                        .derived = true,
                        .converts = hf_converts,
                        .shows = hf_converts,
                        .layout = hf_layout,
                        .close = hf_close,
                        .open_dir = qf_merged_open_dir},
    [QF_ROLE_MERGED_ST] = {.name = "merged-safetensors",
                           .what = "a shard of BASE+ADAPTER: the base's shard with the adapter merged (PEFT's "
                                   "merge_and_unload in float32), converted per safetensors view",
                           .format = QF_FMT_SAFETENSORS,
                           .derived = true,
                           .converts = st_converts,
                           .shows = st_shows,
                           .layout = merged_st_layout,
                           .shard = merged_st_shard,
                           .close = hf_close,
                           .open_dir = qf_merged_st_open_dir},
    [QF_ROLE_LORA] = {.name = "lora",
                      .what = "NAME.gguf of adapters/NAME/: convert_lora_to_gguf.py's F32 adapter",
                      .format = QF_FMT_LORA,
                      .derived = true,
                      .optional = true,
                      .converts = lora_converts,
                      .shows = lora_converts,
                      .layout = lora_layout,
                      .close = hf_close,
                      .open_dir = lora_open_dir},
    [QF_ROLE_IMATRIX] = {.name = "imatrix",
                         .what = "an importance matrix (llama-imatrix's): llama-quantize --imatrix in the -imat views",
                         .claim = imatrix_claim,
                         .shows = shown_nowhere},
};

bool qf_model_has_shard(void *m_, const char *name)
{
    const struct qf_model_files *m = m_;
    for (size_t i = 0; i < m->n; i++)
        if (qf_source_kind(m->f[i].role)->shard && !strcmp(m->f[i].name, name))
            return true;
    return false;
}

const struct qf_source_kind *qf_source_kind(int role)
{
    return role >= 0 && role < QF_ROLE_N ? &kinds[role] : &kinds[QF_ROLE_PASS];
}

int qf_model_claim(struct qf_model_files *m, const char *hf_arch, char **extra)
{
    *extra = NULL;
    m->formats = 0;
    bool st = false, config = false;
    for (size_t i = 0; i < m->n; i++) /* safetensors first: it decides what a vocab-only GGUF is */
        st |= m->dir ? has_suffix(m->f[i].name, ".safetensors") && !strchr(m->f[i].name, '/') : false;
    for (size_t i = 0; i < m->n; i++) {
        struct qf_model_file *f = &m->f[i];
        f->role = QF_ROLE_PASS;
        for (int r = 0; r < QF_ROLE_N; r++) {
            int got = kinds[r].claim ? kinds[r].claim(f->name, m->dir) : -1;
            if (got >= 0) {
                f->role = got;
                break;
            }
        }
        /* the converter's vocab-only GGUF beside safetensors is an input of
         * the HF kind (its tokenizer), not a model */
        if (f->role == QF_ROLE_GGUF && st && has_suffix(f->name, "vocab.gguf"))
            f->role = QF_ROLE_PASS;
        /* the mount's imatrix= names another file (not in a sub-directory) */
        if (m->dir && m->imatrix_name && !strcmp(f->name, m->imatrix_name))
            f->role = QF_ROLE_IMATRIX;
        m->formats |= qf_source_kind(f->role)->format;
        config |= f->role == QF_ROLE_CONFIG;
    }
    if (qf_model_imatrix_file(m) >= 0 && (m->formats & QF_FMT_GGUF))
        m->formats |= QF_FMT_IMATRIX;
    if (!m->dir || !st || !config || !qf_hf_arch_supported(hf_arch))
        return 0;
    /* a Hugging Face checkpoint llama.cpp's converter handles: MODEL.gguf,
     * unless the directory has a file of that name */
    size_t nl = strlen(m->name);
    char *name = malloc(nl + 6);
    if (!name)
        return -ENOMEM;
    memcpy(name, m->name, nl);
    memcpy(name + nl, ".gguf", 6);
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->f[i].name, name)) {
            free(name);
            return 0;
        }
    *extra = name;
    m->formats |= QF_FMT_GGUF | (qf_model_imatrix_file(m) >= 0 ? QF_FMT_IMATRIX : 0);
    return 0;
}

int qf_model_adapters(struct qf_model_files *m, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    for (size_t i = 0; i < m->n; i++) {
        const char *f = m->f[i].name;
        if (m->f[i].role != QF_ROLE_LORA_IN || !has_suffix(f, "/adapter_model.safetensors"))
            continue;
        size_t dl = strlen(f) - strlen("adapter_model.safetensors"); /* "adapters/NAME/" */
        bool config = false;
        for (size_t j = 0; j < m->n && !config; j++)
            config = !strncmp(m->f[j].name, f, dl) && !strcmp(m->f[j].name + dl, "adapter_config.json");
        if (!config)
            continue;
        char **nn = realloc(*names, (*n + 1) * sizeof *nn);
        size_t nl = dl - (sizeof adapters_dir - 1) - 1;
        char *s = malloc(nl + 6);
        if (!nn || !s) {
            free(s);
            if (nn)
                *names = nn;
            return -ENOMEM;
        }
        *names = nn;
        memcpy(s, f + sizeof adapters_dir - 1, nl);
        memcpy(s + nl, ".gguf", 6);
        (*names)[(*n)++] = s;
    }
    if (*n)
        m->formats |= QF_FMT_LORA;
    return 0;
}

bool qf_model_converts(unsigned formats, int role, const struct qf_view *v)
{
    const struct qf_source_kind *k = qf_source_kind(role);
    return k->converts && k->converts(formats, v);
}

bool qf_model_shows(unsigned formats, int role, const struct qf_view *v)
{
    const struct qf_source_kind *k = qf_source_kind(role);
    return !k->shows || k->shows(formats, v);
}

bool qf_model_view_exists(const struct qf_model_files *m, const struct qf_view *v, const struct qf_model_probe *p,
                          size_t *blocker)
{
    if (blocker)
        *blocker = SIZE_MAX;
    if (!qf_view_reachable(v, m->formats))
        return false;
    if (!strcmp(v->name, "f32")) /* the sources as they are */
        return true;
    for (size_t i = 0; i < m->n; i++) {
        int role = m->f[i].role;
        const struct qf_source_kind *k = qf_source_kind(role);
        if (!qf_model_converts(m->formats, role, v))
            continue;
        /* llama-quantize may refuse a file for one type, a safetensors
         * view a tensor (rows too long for int8): the layout says */
        bool ok = p->opened(p->ctx, i) && (!(k->format & (QF_FMT_GGUF | QF_FMT_SAFETENSORS)) ||
                                           p->layout_ok(p->ctx, i, v));
        if (!ok && !k->optional && !(k->derived && (m->formats & QF_FMT_SAFETENSORS) && qf_view_reachable(v, QF_FMT_SAFETENSORS))) {
            if (blocker)
                *blocker = i;
            return false;
        }
    }
    return true;
}

bool qf_model_file_in_view(const struct qf_model_files *m, size_t i, const struct qf_view *v,
                           const struct qf_model_probe *p)
{
    int role = m->f[i].role;
    if (!qf_model_shows(m->formats, role, v))
        return false;
    return !qf_source_kind(role)->derived || (p->opened(p->ctx, i) && p->layout_ok(p->ctx, i, v));
}
