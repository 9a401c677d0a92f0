/* imatrix.c — importance matrices as llama-quantize v0.5.0 reads them.
 *
 * Two file formats (../shared/docs/imatrix.md §2; the reader is
 * common/imatrix-loader.cpp, the normalisation tools/quantize/quantize.cpp
 * load_imatrix):
 *   - GGUF (llama-imatrix's default): per entry N, tensors N.in_sum2 (F32,
 *     raw sums of squared activations, ne0 x n_mat) and N.counts (F32, rows
 *     seen per matrix); weights = sum / (float)lround(count), or 1 where
 *     the count is not positive. llama-quantize exits when the
 *     imatrix.datasets / chunk_count / chunk_size KVs are missing.
 *   - legacy .dat: int32 n_entries, then per entry int32 name length, the
 *     name, int32 ncall, int32 nval, nval floats; an optional trailer
 *     (int32 chunk count, int32 dataset length, the dataset). Weights =
 *     value / ncall when ncall > 0, else the value.
 * A file that does not parse as GGUF is read as legacy, as llama.cpp does.
 * Every weight must be finite (llama-quant.cpp refuses the run otherwise).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "codec.h"
#include "quant_impl.h"

#define MAX_ENTRIES (1u << 20)
#define MAX_NAME 4096

struct builder {
    struct qf_imatrix *m;
    size_t cap;
};

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct qf_imatrix_entry *)a)->name, ((const struct qf_imatrix_entry *)b)->name);
}

/* A new entry named name (len bytes, cut at a NUL as std::string(char *)
 * does); a later entry of the same name replaces it, as a std::map does. */
static struct qf_imatrix_entry *add_entry(struct builder *b, const char *name, size_t len)
{
    struct qf_imatrix *m = b->m;
    len = strnlen(name, len);
    for (size_t i = 0; i < m->n; i++) /* legacy files only: GGUF names are unique */
        if (strlen(m->e[i].name) == len && !memcmp(m->e[i].name, name, len)) {
            free(m->e[i].w);
            m->e[i].w = NULL;
            m->e[i].n = 0;
            return &m->e[i];
        }
    if (m->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        struct qf_imatrix_entry *ne = realloc(m->e, nc * sizeof *ne);
        if (!ne)
            return NULL;
        m->e = ne;
        b->cap = nc;
    }
    struct qf_imatrix_entry *e = &m->e[m->n];
    memset(e, 0, sizeof *e);
    e->name = malloc(len + 1);
    if (!e->name)
        return NULL;
    memcpy(e->name, name, len);
    e->name[len] = 0;
    m->n++;
    return e;
}

static int read_exact(qf_pread_fn rd, void *ctx, uint64_t size, uint64_t *pos, void *buf, size_t len)
{
    if (*pos > size || len > size - *pos)
        return -EBADMSG;
    int rc = rd(ctx, buf, len, *pos);
    if (!rc)
        *pos += len;
    return rc;
}

static int32_t i32_le(const uint8_t *p) { return (int32_t)qf_get32(p); }

static int load_legacy(qf_pread_fn rd, void *ctx, uint64_t size, struct builder *b, char *err, size_t errlen)
{
    struct qf_imatrix *m = b->m;
    uint64_t pos = 0;
    uint8_t w[8];
    int rc;
    if (read_exact(rd, ctx, size, &pos, w, 4) || i32_le(w) < 1)
        return qf_fail(err, errlen, -EBADMSG, "neither a GGUF imatrix nor a legacy one (no entries)");
    int32_t n_entries = i32_le(w);
    if ((uint32_t)n_entries > MAX_ENTRIES)
        return qf_fail(err, errlen, -EBADMSG, "legacy imatrix: %d entries, more than %u", n_entries, MAX_ENTRIES);
    for (int32_t i = 0; i < n_entries; i++) {
        char name[MAX_NAME];
        if ((rc = read_exact(rd, ctx, size, &pos, w, 4)))
            return qf_fail(err, errlen, rc, "legacy imatrix: entry %d: truncated", i + 1);
        int32_t len = i32_le(w);
        if (len < 0 || len >= MAX_NAME)
            return qf_fail(err, errlen, -EBADMSG, "legacy imatrix: entry %d: name length %d", i + 1, len);
        if ((rc = read_exact(rd, ctx, size, &pos, name, (size_t)len)) || (rc = read_exact(rd, ctx, size, &pos, w, 8)))
            return qf_fail(err, errlen, rc, "legacy imatrix: entry %d: truncated", i + 1);
        int32_t ncall = i32_le(w), nval = i32_le(w + 4);
        if (nval < 1)
            return qf_fail(err, errlen, -EBADMSG, "legacy imatrix: entry %d: %d values", i + 1, nval);
        if ((uint64_t)nval * 4 > size - pos)
            return qf_fail(err, errlen, -EBADMSG, "legacy imatrix: entry %d: %d values past the end of the file", i + 1,
                           nval);
        struct qf_imatrix_entry *e = add_entry(b, name, (size_t)len);
        float *v = e ? malloc((size_t)nval * sizeof *v) : NULL;
        if (!v)
            return qf_fail(err, errlen, -ENOMEM, "out of memory");
        e->w = v;
        e->n = (uint64_t)nval;
        e->n_mat = 1;
        if ((rc = read_exact(rd, ctx, size, &pos, v, (size_t)nval * 4)))
            return qf_fail(err, errlen, rc, "legacy imatrix: entry %d: truncated", i + 1);
        for (int32_t k = 0; k < nval; k++) { /* little-endian floats, then / ncall */
            uint32_t u = qf_get32((const uint8_t *)&v[k]);
            float f;
            memcpy(&f, &u, 4);
            v[k] = ncall > 0 ? f / (float)(int64_t)ncall : f;
        }
    }
    /* the optional trailer: a chunk count, then a dataset name; what a
     * short read leaves is what std::istream::read leaves */
    if (pos < size) {
        uint8_t t[4] = {0};
        size_t got = size - pos < 4 ? (size_t)(size - pos) : 4;
        if ((rc = read_exact(rd, ctx, size, &pos, t, got)))
            return qf_fail(err, errlen, rc, "legacy imatrix: reading the trailer");
        m->chunks = i32_le(t);
        if (got == 4 && size - pos >= 4) {
            if ((rc = read_exact(rd, ctx, size, &pos, t, 4)))
                return qf_fail(err, errlen, rc, "legacy imatrix: reading the trailer");
            int32_t len = i32_le(t);
            if (len > 0 && (uint64_t)len <= size - pos) {
                size_t keep = len > 4096 ? 4096 : (size_t)len; /* only 127 bytes reach the file */
                char *d = calloc(1, keep + 1);
                if (!d || (rc = read_exact(rd, ctx, size, &pos, d, keep))) {
                    free(d);
                    return qf_fail(err, errlen, d ? rc : -ENOMEM, "legacy imatrix: reading the dataset name");
                }
                m->dataset = d;
            }
        }
    }
    m->legacy = true;
    return 0;
}

static bool suffix(const char *s, size_t n, const char *suf, size_t *base)
{
    size_t k = strlen(suf);
    if (n < k || memcmp(s + n - k, suf, k))
        return false;
    *base = n - k;
    return true;
}

static int read_f32s(qf_pread_fn rd, void *ctx, const struct qf_gguf_tensor *t, float *out)
{
    int rc = rd(ctx, out, (size_t)t->nelems * 4, t->offset);
    for (uint64_t i = 0; !rc && i < t->nelems; i++) {
        uint32_t u = qf_get32((const uint8_t *)&out[i]);
        memcpy(&out[i], &u, 4);
    }
    return rc;
}

/* std::lround as glibc computes it on x86-64: out of range (and NaN) is LONG_MIN */
static long long round_count(float c)
{
    return isfinite(c) && fabsf(c) < 9.2e18f ? llroundf(c) : LLONG_MIN;
}

static int load_gguf(const struct qf_gguf *g, qf_pread_fn rd, void *ctx, struct builder *b, char *err, size_t errlen)
{
    struct qf_imatrix *m = b->m;
    if (g->n_tensors < 1)
        return qf_fail(err, errlen, -EBADMSG, "no data in the imatrix");
    const struct qf_gguf_kv *ds = qf_gguf_find_kv(g, "imatrix.datasets");
    const struct qf_gguf_kv *cc = qf_gguf_find_kv(g, "imatrix.chunk_count");
    const struct qf_gguf_kv *cs = qf_gguf_find_kv(g, "imatrix.chunk_size");
    if (!ds || !cc || !cs)
        return qf_fail(err, errlen, -EBADMSG, "missing imatrix metadata (imatrix.datasets, chunk_count, chunk_size)");
    if (cc->type != QF_GT_U32 || cs->type != QF_GT_U32) /* gguf_get_val_u32 asserts: llama-quantize aborts */
        return qf_fail(err, errlen, -EBADMSG, "imatrix.chunk_count and imatrix.chunk_size must be u32");
    m->chunks = (int32_t)(uint32_t)cc->u;
    if (ds->type == QF_GT_ARRAY && ds->arr_type == QF_GT_STRING && ds->arr_n > 0) {
        char **names = NULL;
        uint64_t n = 0;
        int rc = qf_gguf_kv_strings(ds, rd, ctx, &names, &n);
        if (rc)
            return qf_fail(err, errlen, rc, "imatrix.datasets: unreadable");
        m->dataset = n ? names[0] : NULL;
        for (uint64_t i = 1; i < n; i++)
            free(names[i]);
        free(names);
    }
    /* pair N.in_sum2 with N.counts */
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct qf_gguf_tensor *s = &g->tensors[i];
        size_t base;
        if (!s->name[0] || !suffix(s->name, (size_t)s->name_len, ".in_sum2", &base))
            continue;
        const struct qf_gguf_tensor *c = NULL;
        for (uint64_t j = 0; j < g->n_tensors && !c; j++) {
            size_t cb;
            const struct qf_gguf_tensor *t = &g->tensors[j];
            if (suffix(t->name, (size_t)t->name_len, ".counts", &cb) && cb == base && !memcmp(t->name, s->name, base))
                c = t;
        }
        if (!c)
            return qf_fail(err, errlen, -EBADMSG, "mismatched sums and counts for %.*s", (int)base, s->name);
        if (s->type != QF_F32 || c->type != QF_F32)
            return qf_fail(err, errlen, -EBADMSG, "sums and counts for %.*s must be F32", (int)base, s->name);
        if (c->nelems == 0 || c->nelems > UINT32_MAX)
            return qf_fail(err, errlen, -EBADMSG, "%.*s: %llu counts", (int)base, s->name,
                           (unsigned long long)c->nelems);
        struct qf_imatrix_entry *e = add_entry(b, s->name, base);
        float *sums = e ? calloc(s->nelems ? s->nelems : 1, sizeof *sums) : NULL;
        float *cnt = sums ? malloc(c->nelems * sizeof *cnt) : NULL;
        float *w = cnt ? calloc(s->nelems ? s->nelems : 1, sizeof *w) : NULL;
        if (!w) {
            free(sums);
            free(cnt);
            return qf_fail(err, errlen, -ENOMEM, "out of memory");
        }
        e->w = w;
        e->n = s->nelems;
        e->n_mat = (uint32_t)c->nelems;
        int rc = read_f32s(rd, ctx, s, sums);
        if (!rc)
            rc = read_f32s(rd, ctx, c, cnt);
        if (!rc) {
            uint64_t ne0 = s->nelems / c->nelems; /* a remainder stays 0, as there */
            for (uint64_t j = 0; j < c->nelems; j++) {
                float count = (float)round_count(cnt[j]);
                for (uint64_t k = 0; k < ne0; k++)
                    w[j * ne0 + k] = count > 0.0f ? sums[j * ne0 + k] / count : 1.0f;
            }
        }
        free(sums);
        free(cnt);
        if (rc)
            return qf_fail(err, errlen, rc, "%.*s: unreadable", (int)base, s->name);
    }
    /* a counts tensor without its sums */
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        size_t base;
        const struct qf_gguf_tensor *t = &g->tensors[i];
        if (!t->name[0] || !suffix(t->name, (size_t)t->name_len, ".counts", &base))
            continue;
        bool found = false;
        for (size_t k = 0; k < m->n && !found; k++)
            found = strlen(m->e[k].name) == base && !memcmp(m->e[k].name, t->name, base);
        if (!found)
            return qf_fail(err, errlen, -EBADMSG, "mismatched sums and counts for %.*s", (int)base, t->name);
    }
    return 0;
}

int qf_imatrix_parse(qf_pread_fn rd, void *ctx, uint64_t size, struct qf_imatrix **out, char *err, size_t errlen)
{
    *out = NULL;
    struct qf_imatrix *m = calloc(1, sizeof *m);
    if (!m)
        return qf_fail(err, errlen, -ENOMEM, "out of memory");
    struct builder b = {m, 0};
    struct qf_gguf *g = NULL;
    char gerr[160] = "";
    int rc;
    if (!qf_gguf_parse(rd, ctx, size, &g, gerr, sizeof gerr)) {
        rc = load_gguf(g, rd, ctx, &b, err, errlen);
        qf_gguf_free(g);
    } else {
        rc = load_legacy(rd, ctx, size, &b, err, errlen);
        if (rc && rc != -ENOMEM && gerr[0]) {
            /* "GGUF" at the start: the GGUF reason is the useful one */
            uint8_t magic[4];
            if (size >= 4 && !rd(ctx, magic, 4, 0) && !memcmp(magic, "GGUF", 4))
                qf_fail(err, errlen, rc, "not a readable GGUF imatrix: %s", gerr);
        }
    }
    if (!rc && !m->n)
        rc = qf_fail(err, errlen, -EBADMSG, "the imatrix has no entries");
    for (size_t i = 0; !rc && i < m->n; i++) {
        struct qf_imatrix_entry *e = &m->e[i];
        for (uint64_t k = 0; k < e->n; k++)
            if (!isfinite(e->w[k])) {
                rc = qf_fail(err, errlen, -EBADMSG, "imatrix contains non-finite value %f (entry %s)", e->w[k],
                             e->name);
                break;
            }
        e->hash = XXH3_64bits_withSeed(e->w, e->n * sizeof *e->w, XXH3_64bits(e->name, strlen(e->name)));
    }
    if (rc) {
        qf_imatrix_free(m);
        return rc;
    }
    qsort(m->e, m->n, sizeof *m->e, cmp_entry);
    *out = m;
    return 0;
}

const struct qf_imatrix_entry *qf_imatrix_find(const struct qf_imatrix *m, const char *name)
{
    struct qf_imatrix_entry key = {.name = (char *)name};
    return m ? bsearch(&key, m->e, m->n, sizeof *m->e, cmp_entry) : NULL;
}

void qf_imatrix_free(struct qf_imatrix *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].name);
        free(m->e[i].w);
    }
    free(m->e);
    free(m->dataset);
    free(m);
}
