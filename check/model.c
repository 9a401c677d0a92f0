/* model.c — loading a model for the check: GGUF files and safetensors
 * directories, read through mmap like a client, parsed by codec/, every
 * tensor dequantized to f32. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "codec.h"

struct mapped {
    uint8_t *p;
    uint64_t size;
};

static int fail(char *err, size_t len, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t len, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
    return rc;
}

static int map_file(const char *path, struct mapped *m)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st)) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    m->size = (uint64_t)st.st_size;
    m->p = m->size ? mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (m->size && m->p == MAP_FAILED)
        return -errno;
    return 0;
}

static void unmap(struct mapped *m)
{
    if (m->p && m->size)
        munmap(m->p, m->size);
}

/* A pread over the mapping (codec's parsers read through a callback). A
 * view that fails underneath (EIO from the mount) raises SIGBUS on a mapped
 * read; reading the header with pread-like copies keeps that to tensor data,
 * where the kernel reports it the same way it would to llama.cpp. */
static int map_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
    struct mapped *m = ctx;
    if (off > m->size || len > m->size - off)
        return -EIO;
    memcpy(buf, m->p + off, len);
    return 0;
}

static int add_tensor(struct ck_model *m, const char *name, uint64_t rows, uint64_t cols, float *data,
                      const char *kind)
{
    struct ck_tensor *nt = realloc(m->t, (m->nt + 1) * sizeof *nt);
    if (!nt)
        return -ENOMEM;
    m->t = nt;
    /* a checkpoint's tensors also answer to the converter's GGUF names, so
     * the forward pass finds every layer's roles under one naming */
    char gn[128];
    bool mapped = !m->gguf && qf_hf_map_name(m->arch, name, gn, sizeof gn) == 0;
    m->t[m->nt++] = (struct ck_tensor){strdup(name), mapped ? strdup(gn) : NULL, rows, cols, data, kind};
    return m->t[m->nt - 1].name && (!mapped || m->t[m->nt - 1].gname) ? 0 : -ENOMEM;
}

const struct ck_tensor *ck_find(const struct ck_model *m, const char *name)
{
    for (size_t i = 0; i < m->nt; i++)
        if (!strcmp(m->t[i].name, name) || (m->t[i].gname && !strcmp(m->t[i].gname, name)))
            return &m->t[i];
    return NULL;
}

/* ------------------------------------------------------------------ GGUF */

/* The metadata the forward pass needs, from codec's parse of the header
 * (numbers as parsed; token strings and scores read through codec). */
static int gguf_meta(struct ck_model *m, const struct qf_gguf *g, struct mapped *f)
{
    const struct qf_gguf_kv *a = qf_gguf_find_kv(g, "general.architecture");
    if (a && a->type == QF_GT_STRING && a->sval)
        snprintf(m->arch, sizeof m->arch, "%s", a->sval);
    static const char *const subs[] = {"embedding_length", "block_count", "attention.head_count",
                                       "attention.head_count_kv", "feed_forward_length",
                                       "attention.layer_norm_rms_epsilon", "rope.freq_base"};
    for (size_t i = 0; m->arch[0] && i < sizeof subs / sizeof *subs; i++) {
        char key[160];
        snprintf(key, sizeof key, "%s.%s", m->arch, subs[i]);
        const struct qf_gguf_kv *kv = qf_gguf_find_kv(g, key);
        if (!kv || kv->type == QF_GT_STRING || kv->type == QF_GT_ARRAY)
            continue;
        double v = qf_gguf_kv_number(kv);
        switch (i) {
        case 0: m->n_embd = (int)v; break;
        case 1: m->n_layer = (int)v; break;
        case 2: m->n_head = (int)v; break;
        case 3: m->n_head_kv = (int)v; break;
        case 4: m->n_ff = (int)v; break;
        case 5: m->eps = (float)v; break;
        default: m->rope_base = (float)v; break;
        }
    }
    for (int b = 0; b < 2; b++) {
        const struct qf_gguf_kv *kv = qf_gguf_find_kv(g, b ? "tokenizer.ggml.eos_token_id" : "tokenizer.ggml.bos_token_id");
        if (kv && kv->type != QF_GT_STRING && kv->type != QF_GT_ARRAY)
            *(b ? &m->eos : &m->bos) = (int)qf_gguf_kv_number(kv);
    }
    const struct qf_gguf_kv *tk = qf_gguf_find_kv(g, "tokenizer.ggml.tokens");
    const struct qf_gguf_kv *sc = qf_gguf_find_kv(g, "tokenizer.ggml.scores");
    uint64_t n = 0, ns = 0;
    if (tk && tk->arr_type == QF_GT_STRING) {
        if (tk->arr_n > (1u << 24) || qf_gguf_kv_strings(tk, map_pread, f, &m->vocab, &n))
            return -EINVAL;
        m->n_tok = (int)n;
    }
    if (sc && sc->arr_type == QF_GT_F32 && (sc->arr_n > (1u << 24) || qf_gguf_kv_f32s(sc, map_pread, f, &m->scores, &ns)))
        return -EINVAL;
    if (m->scores && m->vocab && (m->n_tok <= 0 || ns < (uint64_t)m->n_tok))
        return -EINVAL;
    return 0;
}

static int load_gguf(const char *path, struct ck_model *m, char *err, size_t errlen)
{
    struct mapped f = {0};
    int rc = map_file(path, &f);
    if (rc)
        return fail(err, errlen, rc, "%s: %s", path, strerror(-rc));
    struct qf_gguf *g = NULL;
    char perr[256] = "";
    if ((rc = qf_gguf_parse(map_pread, &f, f.size, &g, perr, sizeof perr))) {
        unmap(&f);
        return fail(err, errlen, rc, "%s: not a valid GGUF: %s", path, perr);
    }
    m->gguf = true;
    m->file_bytes = f.size;
    m->bos = 1;
    m->eos = 2;
    m->eps = 1e-5f;
    m->rope_base = 10000.0f;
    if ((rc = gguf_meta(m, g, &f))) {
        rc = fail(err, errlen, rc, "%s: malformed metadata", path);
        goto out;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct qf_gguf_tensor *t = &g->tensors[i];
        const struct qf_type_info *ti = qf_type_get(t->type);
        float *d = malloc(t->nelems ? t->nelems * sizeof *d : 4);
        if (!d) {
            rc = fail(err, errlen, -ENOMEM, "out of memory");
            goto out;
        }
        if (!ti || qf_dequantize(t->type, f.p + t->offset, d, t->nelems)) {
            free(d);
            rc = fail(err, errlen, -EINVAL, "tensor %s: type %s cannot be read", t->name, ti ? ti->name : "unknown");
            goto out;
        }
        uint64_t cols = t->n_dims ? t->ne[0] : 1;
        if ((rc = add_tensor(m, t->name, t->nelems / (cols ? cols : 1), cols, d, ti->name))) {
            free(d);
            goto out;
        }
        if (t->n_dims >= 2) {
            m->n_weights += t->nelems;
            m->weight_bytes += t->nbytes;
        }
    }
    m->llama = !strcmp(m->arch, "llama");
    m->neox_rope = false;
out:
    qf_gguf_free(g);
    unmap(&f);
    return rc;
}

/* ----------------------------------------------------------- safetensors */

static float *st_floats(const struct qf_st_tensor *t, const uint8_t *p)
{
    float *d = malloc(t->nelems ? t->nelems * 4 : 4);
    if (!d)
        return NULL;
    for (uint64_t i = 0; i < t->nelems; i++) {
        switch (t->dtype) {
        case QF_STD_F32: memcpy(&d[i], p + 4 * i, 4); break;
        case QF_STD_F16: d[i] = qf_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8)); break;
        case QF_STD_BF16: d[i] = qf_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8)); break;
        default: free(d); return NULL;
        }
    }
    return d;
}

static const struct qf_st_tensor *st_find(struct qf_st **sh, size_t ns, const char *name, size_t *which)
{
    for (size_t s = 0; s < ns; s++)
        for (size_t i = 0; i < sh[s]->n_tensors; i++)
            if (!strcmp(sh[s]->tensors[i].name, name)) {
                *which = s;
                return &sh[s]->tensors[i];
            }
    return NULL;
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* One tensor of a safetensors model, in whichever layout the view uses. */
static int st_tensor(struct ck_model *m, struct qf_st **sh, struct mapped *mp, size_t ns, size_t s,
                     const struct qf_st_tensor *t, char *err, size_t errlen)
{
    char base[512];
    const uint8_t *p = mp[s].p + t->offset;
    if (has_suffix(t->name, ".weight_scale") || has_suffix(t->name, ".weight_shape") ||
        has_suffix(t->name, ".weight_scale_inv"))
        return 0; /* read with their weight */
    if (has_suffix(t->name, ".weight_packed")) { /* compressed-tensors pack-quantized */
        snprintf(base, sizeof base, "%.*s", (int)(strlen(t->name) - 7), t->name); /* "X.weight" */
        char sn[600];
        snprintf(sn, sizeof sn, "%s_scale", base);
        size_t ss;
        const struct qf_st_tensor *sc = st_find(sh, ns, sn, &ss);
        if (!sc || sc->dtype != QF_STD_BF16 || t->dtype != QF_STD_I32 || t->n_dims != 2 || sc->n_dims != 2)
            return fail(err, errlen, -EINVAL, "%s: pack-quantized weight without a bf16 %s", t->name, sn);
        uint64_t rows = t->shape[0], words = t->shape[1], ng = sc->shape[1];
        snprintf(sn, sizeof sn, "%s_shape", base);
        size_t sh_s;
        const struct qf_st_tensor *shp = st_find(sh, ns, sn, &sh_s);
        uint64_t cols = 0;
        if (shp && shp->nelems == 2 && (shp->dtype == QF_STD_I64 || shp->dtype == QF_STD_I32)) {
            const uint8_t *q = mp[sh_s].p + shp->offset;
            uint64_t v[2] = {0, 0};
            for (int k = 0; k < 2; k++)
                for (int b = 0; b < (shp->dtype == QF_STD_I64 ? 8 : 4); b++)
                    v[k] |= (uint64_t)q[k * (shp->dtype == QF_STD_I64 ? 8 : 4) + b] << (8 * b);
            if (v[0] != rows)
                return fail(err, errlen, -EINVAL, "%s: weight_shape rows %llu != %llu", t->name,
                            (unsigned long long)v[0], (unsigned long long)rows);
            cols = v[1];
        } else {
            return fail(err, errlen, -EINVAL, "%s: missing %s", t->name, sn);
        }
        uint32_t kind = (cols + 3) / 4 == words ? QF_ST_I8 : (cols + 7) / 8 == words ? QF_ST_I4 : 0;
        if (!kind || sc->shape[0] != rows || !ng || cols % ng || (kind == QF_ST_I8 && ng != 1))
            return fail(err, errlen, -EINVAL, "%s: shapes do not form an int8 or int4 layout", t->name);
        float *d = malloc(rows * cols * 4 + 4);
        if (!d)
            return -ENOMEM;
        qf_st_dequantize_rows(kind, p, mp[ss].p + sc->offset, rows, cols, (uint32_t)(cols / ng), d);
        m->n_weights += rows * cols;
        m->weight_bytes += t->nbytes + sc->nbytes;
        int rc = add_tensor(m, base, rows, cols, d, kind == QF_ST_I8 ? "int8" : "int4");
        if (rc)
            free(d);
        return rc;
    }
    uint64_t rows = t->n_dims >= 2 ? t->nelems / t->shape[t->n_dims - 1] : 1;
    uint64_t cols = t->n_dims ? t->shape[t->n_dims - 1] : 1;
    float *d;
    const char *kind;
    if (t->dtype == QF_STD_F8_E4M3) { /* fine-grained FP8 */
        char sn[600];
        snprintf(sn, sizeof sn, "%s_scale_inv", t->name);
        size_t ss;
        const struct qf_st_tensor *sc = st_find(sh, ns, sn, &ss);
        if (!sc || sc->dtype != QF_STD_F32 || t->n_dims != 2 ||
            sc->nelems != ((rows + 127) / 128) * ((cols + 127) / 128))
            return fail(err, errlen, -EINVAL, "%s: F8_E4M3 weight without a matching f32 %s", t->name, sn);
        if (!(d = malloc(rows * cols * 4 + 4)))
            return -ENOMEM;
        qf_st_dequantize_rows(QF_ST_FP8, p, mp[ss].p + sc->offset, rows, cols, 0, d);
        kind = "fp8";
        m->weight_bytes += sc->nbytes;
    } else {
        if (!(d = st_floats(t, p)))
            return fail(err, errlen, -EINVAL, "%s: dtype %s cannot be read", t->name, qf_st_dtype_name(t->dtype));
        kind = qf_st_dtype_name(t->dtype);
    }
    if (t->n_dims >= 2) {
        m->n_weights += t->nelems;
        m->weight_bytes += t->nbytes;
    }
    int rc = add_tensor(m, t->name, rows, cols, d, kind);
    if (rc)
        free(d);
    return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void hf_config(struct ck_model *m, const char *dir)
{
    char path[4096 + 32];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *j = json_load_file(path, 0, NULL);
    if (!j)
        return;
    json_t *archs = json_object_get(j, "architectures");
    const char *a = json_string_value(json_array_get(archs, 0));
    snprintf(m->arch, sizeof m->arch, "%s", a ? a : "unknown");
#define GETI(k, f) m->f = (int)json_integer_value(json_object_get(j, k))
    GETI("hidden_size", n_embd);
    GETI("num_hidden_layers", n_layer);
    GETI("num_attention_heads", n_head);
    GETI("num_key_value_heads", n_head_kv);
    GETI("intermediate_size", n_ff);
#undef GETI
    if (!m->n_head_kv)
        m->n_head_kv = m->n_head;
    json_t *v = json_object_get(j, "rms_norm_eps");
    m->eps = v ? (float)json_number_value(v) : 1e-6f;
    v = json_object_get(j, "rope_theta");
    m->rope_base = v ? (float)json_number_value(v) : 10000.0f;
    v = json_object_get(j, "bos_token_id");
    m->bos = json_is_integer(v) ? (int)json_integer_value(v) : 1;
    v = json_object_get(j, "eos_token_id");
    m->eos = json_is_integer(v) ? (int)json_integer_value(v) : 2;
    m->llama = a && (!strcmp(a, "LlamaForCausalLM") || !strcmp(a, "MistralForCausalLM"));
    m->neox_rope = true;
    json_decref(j);
    /* vocabulary for decoding samples */
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    json_t *tj = json_load_file(path, 0, NULL);
    json_t *voc = json_object_get(json_object_get(tj, "model"), "vocab");
    if (json_is_object(voc)) {
        size_t n = json_object_size(voc);
        m->vocab = calloc(n, sizeof *m->vocab);
        const char *k;
        json_t *id;
        json_object_foreach(voc, k, id)
        {
            json_int_t x = json_integer_value(id);
            if (m->vocab && x >= 0 && (size_t)x < n && !m->vocab[x])
                m->vocab[x] = strdup(k);
        }
        m->n_tok = m->vocab ? (int)n : 0;
    }
    json_decref(tj);
}

static int load_st(const char *path, bool is_dir, struct ck_model *m, char *err, size_t errlen)
{
    char **names = NULL;
    size_t nn = 0;
    char dir[4096];
    int rc = 0;
    if (is_dir) {
        snprintf(dir, sizeof dir, "%s", path);
        DIR *d = opendir(path);
        if (!d)
            return fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!has_suffix(de->d_name, ".safetensors"))
                continue;
            char **nv = realloc(names, (nn + 1) * sizeof *names);
            if (!nv)
                break;
            names = nv;
            names[nn++] = strdup(de->d_name);
        }
        closedir(d);
        qsort(names, nn, sizeof *names, cmp_str);
    } else {
        const char *sl = strrchr(path, '/');
        snprintf(dir, sizeof dir, "%.*s", sl ? (int)(sl - path) : 1, sl ? path : ".");
        names = malloc(sizeof *names);
        names[nn++] = strdup(sl ? sl + 1 : path);
    }
    if (!nn) {
        free(names);
        return fail(err, errlen, -ENOENT, "%s: no .gguf or .safetensors file", path);
    }
    struct mapped *mp = calloc(nn, sizeof *mp);
    struct qf_st **sh = calloc(nn, sizeof *sh);
    for (size_t i = 0; i < nn && !rc; i++) {
        char fp[8192], perr[256] = "";
        snprintf(fp, sizeof fp, "%s/%s", dir, names[i]);
        if ((rc = map_file(fp, &mp[i])))
            rc = fail(err, errlen, rc, "%s: %s", fp, strerror(-rc));
        else if ((rc = qf_st_parse(map_pread, &mp[i], mp[i].size, &sh[i], perr, sizeof perr)))
            rc = fail(err, errlen, rc, "%s: not a valid safetensors file: %s", fp, perr);
        else
            m->file_bytes += mp[i].size;
    }
    if (!rc)
        hf_config(m, dir); /* first: the architecture names the tensors */
    for (size_t s = 0; s < nn && !rc; s++)
        for (size_t i = 0; i < sh[s]->n_tensors && !rc; i++)
            rc = st_tensor(m, sh, mp, nn, s, &sh[s]->tensors[i], err, errlen);
    for (size_t i = 0; i < nn; i++) {
        qf_st_free(sh[i]);
        unmap(&mp[i]);
        free(names[i]);
    }
    free(sh);
    free(mp);
    free(names);
    return rc;
}

static const char *tname_llama(const struct ck_model *m, int layer, int role, char *buf, size_t len);
static int llama_shape(struct ck_model *m, char *err, size_t errlen);

int ck_load(const char *path, struct ck_model *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    struct stat st;
    if (stat(path, &st))
        return fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
    int rc;
    if (S_ISDIR(st.st_mode)) {
        /* a directory: its safetensors files, else its GGUF file. A view
         * of a Hugging Face model may hold both (f32, fp16, bf16 hold the
         * converter's GGUF beside the checkpoint): the checkpoint is the
         * model, and the GGUF-only views are checked against it. */
        DIR *d = opendir(path);
        if (!d)
            return fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
        struct dirent *de;
        char gg[4096] = "";
        bool st_files = false;
        while ((de = readdir(d))) {
            if (has_suffix(de->d_name, ".gguf") && !gg[0])
                snprintf(gg, sizeof gg, "%s/%s", path, de->d_name);
            st_files |= has_suffix(de->d_name, ".safetensors");
        }
        closedir(d);
        rc = gg[0] && !st_files ? load_gguf(gg, m, err, errlen) : load_st(path, true, m, err, errlen);
    } else if (has_suffix(path, ".safetensors")) {
        rc = load_st(path, false, m, err, errlen);
    } else {
        rc = load_gguf(path, m, err, errlen);
    }
    if (rc) {
        ck_free(m);
        return rc;
    }
    /* A llama model has every tensor the forward pass needs, with the right
     * shape; one that does not is checked tensor by tensor (like other
     * architectures), and a view missing tensors fails that comparison. */
    if (m->llama && llama_shape(m, err, errlen)) {
        m->llama = false;
        err[0] = 0;
    }
    return 0;
}

static int llama_shape(struct ck_model *m, char *err, size_t errlen)
{
    {
        char name[256];
        int hd = m->n_head ? m->n_embd / m->n_head : 0;
        if (m->n_embd <= 0 || m->n_layer <= 0 || m->n_head <= 0 || m->n_head_kv <= 0 || m->n_embd % m->n_head ||
            m->n_head % m->n_head_kv || hd % 2) {
            return fail(err, errlen, -EINVAL, "bad llama hyper-parameters");
        }
        const struct ck_tensor *emb = ck_find(m, tname_llama(m, 0, 0, name, sizeof name));
        if (!emb || emb->cols != (uint64_t)m->n_embd) {
            return fail(err, errlen, -EINVAL, "missing or misshapen token embedding %s", name);
        }
        m->n_vocab = (int)emb->rows;
        for (int l = 0; l < m->n_layer; l++) {
            for (int role = 1; role <= 9; role++) {
                const struct ck_tensor *t = ck_find(m, tname_llama(m, l, role, name, sizeof name));
                uint64_t want_r[10] = {0, 1, (uint64_t)m->n_embd, (uint64_t)(m->n_head_kv * hd),
                                       (uint64_t)(m->n_head_kv * hd), (uint64_t)m->n_embd, 1,
                                       (uint64_t)m->n_ff, (uint64_t)m->n_ff, (uint64_t)m->n_embd};
                uint64_t want_c[10] = {0, (uint64_t)m->n_embd, (uint64_t)m->n_embd, (uint64_t)m->n_embd,
                                       (uint64_t)m->n_embd, (uint64_t)m->n_embd, (uint64_t)m->n_embd,
                                       (uint64_t)m->n_embd, (uint64_t)m->n_embd, (uint64_t)m->n_ff};
                if (!t || t->rows != want_r[role] || t->cols != want_c[role]) {
                    return fail(err, errlen, -EINVAL, "tensor %s %s (want %llux%llu)", name,
                                t ? "has the wrong shape" : "is missing", (unsigned long long)want_r[role],
                                (unsigned long long)want_c[role]);
                }
            }
        }
        if (!ck_find(m, tname_llama(m, 0, 10, name, sizeof name))) {
            return fail(err, errlen, -EINVAL, "missing %s", name);
        }
        const struct ck_tensor *out = ck_find(m, tname_llama(m, 0, 11, name, sizeof name));
        if (out && (out->rows != (uint64_t)m->n_vocab || out->cols != (uint64_t)m->n_embd)) {
            return fail(err, errlen, -EINVAL, "output tensor %s has the wrong shape", name);
        }
    }
    return 0;
}

/* Tensor names by role: 0 embedding, per layer 1 attn norm, 2 q, 3 k, 4 v,
 * 5 attn out, 6 ffn norm, 7 gate, 8 up, 9 down; 10 output norm, 11 output. */
static const char *tname_llama(const struct ck_model *m, int layer, int role, char *buf, size_t len)
{
    (void)m; /* a checkpoint's tensors answer to these names too (add_tensor) */
    static const char *gg[] = {"token_embd.weight", "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                               "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "output_norm.weight", "output.weight"};
    if (role == 0 || role >= 10)
        snprintf(buf, len, "%s", gg[role]);
    else
        snprintf(buf, len, "blk.%d.%s.weight", layer, gg[role]);
    return buf;
}

const char *ck_tensor_name(const struct ck_model *m, int layer, int role, char *buf, size_t len)
{
    return tname_llama(m, layer, role, buf, len);
}

void ck_free(struct ck_model *m)
{
    for (size_t i = 0; i < m->nt; i++) {
        free(m->t[i].name);
        free(m->t[i].gname);
        free(m->t[i].data);
    }
    free(m->t);
    for (int i = 0; m->vocab && i < m->n_tok; i++)
        free(m->vocab[i]);
    free(m->vocab);
    free(m->scores);
    memset(m, 0, sizeof *m);
}
