/* gguf.c — GGUF v2/v3 header parser with hard bounds.
 *
 * The header is streamed through a small buffer (pread callback), so a
 * header with a 150k-entry vocabulary costs no more memory than the tensor
 * names we keep. Every count and length is checked against the bytes left in
 * the file before it is used, and every size computation against overflow.
 * Format: codec/FORMATS.md (GGUF section).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "quant_impl.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GGUF_DEFAULT_ALIGNMENT 32

#define QF_GT_COUNT 13
static const uint8_t vtype_size[QF_GT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

struct rdr {
    qf_pread_fn rd;
    void *ctx;
    uint64_t size, pos;
    uint64_t buf_off;
    size_t buf_len;
    char *err;
    size_t errlen;
    char *pool;
    size_t pool_len, pool_cap;
    uint64_t meta_end; /* parse_kvs: where QF_GGUF_MAX_META ends */
    uint8_t buf[1 << 16];
};

/* Keys and short string values, packed; offset 0 means "none". */
static char *pool_take(struct rdr *r, size_t n, uint64_t *off)
{
    if (r->pool_len + n > r->pool_cap) {
        size_t nc = r->pool_cap ? r->pool_cap * 2 : 4096;
        while (nc < r->pool_len + n)
            nc *= 2;
        char *np = realloc(r->pool, nc);
        if (!np)
            return NULL;
        r->pool = np;
        r->pool_cap = nc;
    }
    if (!r->pool_len)
        r->pool[r->pool_len++] = 0;
    *off = r->pool_len;
    r->pool_len += n;
    return r->pool + *off;
}

static int fail(struct rdr *r, int rc, const char *fmt, ...)
{
    if (r->err && r->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, r->errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static uint64_t left(const struct rdr *r) { return r->size - r->pos; }

static int rget(struct rdr *r, void *dst, size_t n, const char *what)
{
    if (n > left(r))
        return fail(r, -EINVAL, "truncated: %s at offset %llu needs %zu bytes, file has %llu", what,
                    (unsigned long long)r->pos, n, (unsigned long long)r->size);
    uint8_t *d = dst;
    while (n) {
        if (r->pos < r->buf_off || r->pos >= r->buf_off + r->buf_len) {
            uint64_t want = left(r) < sizeof r->buf ? left(r) : sizeof r->buf;
            int rc = r->rd(r->ctx, r->buf, (size_t)want, r->pos);
            if (rc)
                return fail(r, rc, "read error at offset %llu: %s", (unsigned long long)r->pos, strerror(-rc));
            r->buf_off = r->pos;
            r->buf_len = (size_t)want;
        }
        size_t at = (size_t)(r->pos - r->buf_off), k = r->buf_len - at;
        if (k > n)
            k = n;
        memcpy(d, r->buf + at, k);
        d += k;
        n -= k;
        r->pos += k;
    }
    return 0;
}

static int rskip(struct rdr *r, uint64_t n, const char *what)
{
    if (n > left(r))
        return fail(r, -EINVAL, "truncated: %s at offset %llu needs %llu bytes, file has %llu", what,
                    (unsigned long long)r->pos, (unsigned long long)n, (unsigned long long)r->size);
    r->pos += n;
    return 0;
}

static int ru32(struct rdr *r, uint32_t *v, const char *what)
{
    uint8_t b[4];
    int rc = rget(r, b, 4, what);
    *v = qf_get32(b);
    return rc;
}

static int ru64(struct rdr *r, uint64_t *v, const char *what)
{
    uint8_t b[8];
    int rc = rget(r, b, 8, what);
    *v = qf_get64(b);
    return rc;
}

/* Reads a string length and checks the bytes exist. */
static int rstrlen(struct rdr *r, uint64_t *len, const char *what)
{
    int rc = ru64(r, len, what);
    if (rc)
        return rc;
    if (*len > left(r))
        return fail(r, -EINVAL, "%s length %llu at offset %llu exceeds the file", what, (unsigned long long)*len,
                    (unsigned long long)(r->pos - 8));
    return 0;
}

/* Skips one value of type t (arrays of scalars or strings; nested arrays are
 * rejected as ggml does). */
static int skip_value(struct rdr *r, uint32_t t, const char *key)
{
    if (t >= QF_GT_COUNT)
        return fail(r, -EINVAL, "key '%s': unknown value type %u", key, t);
    if (t == QF_GT_STRING) {
        uint64_t n;
        int rc = rstrlen(r, &n, "string value");
        return rc ? rc : rskip(r, n, "string value");
    }
    if (t != QF_GT_ARRAY)
        return rskip(r, vtype_size[t], "value");
    uint32_t at;
    uint64_t n;
    int rc = ru32(r, &at, "array type");
    if (!rc)
        rc = ru64(r, &n, "array length");
    if (rc)
        return rc;
    if (at >= QF_GT_COUNT || at == QF_GT_ARRAY)
        return fail(r, -EINVAL, "key '%s': unsupported array element type %u", key, at);
    if (at != QF_GT_STRING) {
        if (n > left(r) / vtype_size[at])
            return fail(r, -EINVAL, "key '%s': array of %llu elements exceeds the file", key, (unsigned long long)n);
        return rskip(r, n * vtype_size[at], "array");
    }
    if (n > left(r) / 8)
        return fail(r, -EINVAL, "key '%s': array of %llu strings exceeds the file", key, (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len;
        if ((rc = rstrlen(r, &len, "array string")) || (rc = rskip(r, len, "array string")))
            return rc;
        if (r->pos > r->meta_end)
            break; /* parse_kvs says why */
    }
    return 0;
}

void qf_gguf_free(struct qf_gguf *g)
{
    if (!g)
        return;
    free(g->tensors);
    free(g->strpool);
    free(g->kvs);
    free(g->kvpool);
    free(g);
}

static int cmp_name(const void *a, const void *b)
{
    const struct qf_gguf_tensor *x = *(const struct qf_gguf_tensor *const *)a;
    const struct qf_gguf_tensor *y = *(const struct qf_gguf_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* Reads the value of a scalar or string KV into kv (strings up to
 * QF_GGUF_SVAL bytes are kept; longer ones only by range), or skips an
 * array, keeping its element type, count and first integer element. */
static int read_value(struct rdr *r, struct qf_gguf_kv *kv, const char *key)
{
    int rc;
    uint8_t b[8] = {0};
    switch (kv->type) {
    case QF_GT_U8: case QF_GT_I8: case QF_GT_U16: case QF_GT_I16: case QF_GT_U32: case QF_GT_I32: case QF_GT_BOOL: case QF_GT_U64: case QF_GT_I64:
        if ((rc = rget(r, b, vtype_size[kv->type], "value")))
            return rc;
        kv->u = qf_get64(b);
        /* sign-extend the signed kinds so callers can compare as int64 */
        if (kv->type == QF_GT_I8) kv->u = (uint64_t)(int64_t)(int8_t)b[0];
        if (kv->type == QF_GT_I16) kv->u = (uint64_t)(int64_t)(int16_t)qf_get16(b);
        if (kv->type == QF_GT_I32) kv->u = (uint64_t)(int64_t)(int32_t)qf_get32(b);
        return 0;
    case QF_GT_F32: {
        if ((rc = rget(r, b, 4, "value")))
            return rc;
        float f;
        uint32_t u = qf_get32(b);
        memcpy(&f, &u, 4);
        kv->f = f;
        return 0;
    }
    case QF_GT_F64: {
        if ((rc = rget(r, b, 8, "value")))
            return rc;
        uint64_t u = qf_get64(b);
        memcpy(&kv->f, &u, 8);
        return 0;
    }
    case QF_GT_STRING: {
        uint64_t n;
        if ((rc = rstrlen(r, &n, "string value")))
            return rc;
        kv->u = n;
        if (n <= QF_GGUF_SVAL) {
            char *p = pool_take(r, (size_t)n + 1, &kv->sval_off);
            if (!p)
                return fail(r, -ENOMEM, "out of memory");
            if ((rc = rget(r, p, (size_t)n, "string value")))
                return rc;
            p[n] = 0;
            if (strlen(p) != n)
                kv->sval_off = 0;
            return 0;
        }
        return rskip(r, n, "string value");
    }
    case QF_GT_ARRAY: {
        uint64_t start = r->pos;
        if ((rc = ru32(r, &kv->arr_type, "array type")) || (rc = ru64(r, &kv->arr_n, "array length")))
            return rc;
        if (kv->arr_type < QF_GT_STRING && kv->arr_type != QF_GT_F32 && kv->arr_n) {
            if ((rc = rget(r, b, vtype_size[kv->arr_type], "array")))
                return rc;
            kv->u = qf_get64(b) & (vtype_size[kv->arr_type] == 8 ? ~0ull : (1ull << (8 * vtype_size[kv->arr_type])) - 1);
        }
        r->pos = start;
        return skip_value(r, QF_GT_ARRAY, key);
    }
    default: return fail(r, -EINVAL, "key '%s': unknown value type %u", key, kv->type);
    }
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp((*(const struct qf_gguf_kv *const *)a)->key, (*(const struct qf_gguf_kv *const *)b)->key);
}

static int parse_kvs(struct rdr *r, struct qf_gguf *g)
{
    int rc;
    g->kvs = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kvs);
    if (!g->kvs)
        return fail(r, -ENOMEM, "out of memory for %llu keys", (unsigned long long)g->n_kv);
    g->kv_begin = r->pos;
    r->meta_end = r->pos + QF_GGUF_MAX_META;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        struct qf_gguf_kv *kv = &g->kvs[i];
        uint64_t klen;
        kv->begin = r->pos;
        if ((rc = rstrlen(r, &klen, "key")))
            return rc;
        /* Keys longer than the buffer are kept by range only: none of them
         * is a key quantfs acts on. */
        size_t keep = klen <= QF_GGUF_KEY_MAX ? (size_t)klen : 0;
        char key[QF_GGUF_KEY_MAX + 32];
        if ((rc = rget(r, key, keep, "key")) || (rc = rskip(r, klen - keep, "key")))
            return rc;
        key[keep] = 0;
        if (!keep || strlen(key) != keep) {
            snprintf(key, sizeof key, "(key of %llu bytes)", (unsigned long long)klen);
        } else if (!pool_take(r, keep + 1, &kv->key_off)) {
            return fail(r, -ENOMEM, "out of memory");
        } else {
            memcpy(r->pool + kv->key_off, key, keep + 1);
        }
        if ((rc = ru32(r, &kv->type, "value type")))
            return rc;
        if ((rc = read_value(r, kv, key)))
            return rc;
        kv->end = r->pos;
        if (r->pos > r->meta_end)
            return fail(r, -EFBIG, "metadata exceeds quantfs' limit of %llu MiB",
                        (unsigned long long)(QF_GGUF_MAX_META >> 20));
        if (!kv->key_off)
            continue;
        if (!strcmp(key, "general.alignment")) {
            if (kv->type != QF_GT_U32)
                return fail(r, -EINVAL, "general.alignment has type %u, expected uint32", kv->type);
            uint64_t a = kv->u;
            if (a == 0 || (a & (a - 1)) || a > (1u << 20))
                return fail(r, -EINVAL, "general.alignment %u is not a power of two up to 1 MiB", (unsigned)a);
            g->alignment = (uint32_t)a;
        }
    }
    r->meta_end = UINT64_MAX;
    g->kv_end = r->pos;
    /* the pool no longer moves: turn offsets into pointers */
    g->kvpool = r->pool;
    r->pool = NULL;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        struct qf_gguf_kv *kv = &g->kvs[i];
        kv->key = kv->key_off ? g->kvpool + kv->key_off : "";
        kv->sval = kv->sval_off ? g->kvpool + kv->sval_off : NULL;
    }
    /* ggml refuses a file with a duplicate key; so do we (sorted: 65536
     * keys compared pairwise would take seconds) */
    const struct qf_gguf_kv **idx = malloc((g->n_kv ? g->n_kv : 1) * sizeof *idx);
    if (!idx)
        return fail(r, -ENOMEM, "out of memory");
    size_t n = 0;
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kvs[i].key_off)
            idx[n++] = &g->kvs[i];
    qsort(idx, n, sizeof *idx, cmp_key);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(idx[i - 1]->key, idx[i]->key)) {
            rc = fail(r, -EINVAL, "duplicate key %s", idx[i]->key);
            free(idx);
            return rc;
        }
    free(idx);
    return 0;
}

const struct qf_gguf_kv *qf_gguf_find_kv(const struct qf_gguf *g, const char *key)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kvs[i].key_off && !strcmp(g->kvs[i].key, key))
            return &g->kvs[i];
    return NULL;
}

static int parse_tensors(struct rdr *r, struct qf_gguf *g)
{
    int rc;
    /* Smallest tensor info: 8 (name len) + 4 (n_dims) + 8 (one dim) + 4
     * (type) + 8 (offset). */
    if (g->n_tensors > left(r) / 32)
        return fail(r, -EINVAL, "tensor count %llu cannot fit in the file", (unsigned long long)g->n_tensors);
    if (g->n_tensors > QF_MAX_TENSORS)
        return fail(r, -EINVAL, "%llu tensors exceed quantfs' limit of %u per file", (unsigned long long)g->n_tensors,
                    QF_MAX_TENSORS);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    g->strpool = malloc((size_t)(g->n_tensors ? g->n_tensors : 1) * (QF_GGUF_MAX_NAME + 1));
    if (!g->tensors || !g->strpool)
        return fail(r, -ENOMEM, "out of memory for %llu tensors", (unsigned long long)g->n_tensors);
    char *pool = g->strpool;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct qf_gguf_tensor *t = &g->tensors[i];
        uint64_t nlen;
        if ((rc = rstrlen(r, &nlen, "tensor name")))
            return rc;
        if (nlen > QF_GGUF_MAX_NAME)
            return fail(r, -EINVAL, "tensor %llu: name of %llu bytes (ggml's limit is %d)", (unsigned long long)i,
                        (unsigned long long)nlen, QF_GGUF_MAX_NAME);
        if ((rc = rget(r, pool, (size_t)nlen, "tensor name")))
            return rc;
        pool[nlen] = 0;
        if (strlen(pool) != nlen)
            return fail(r, -EINVAL, "tensor %llu: name contains a NUL byte", (unsigned long long)i);
        t->name = pool;
        t->name_len = nlen;
        pool += (QF_GGUF_MAX_NAME + 1);
        if ((rc = ru32(r, &t->n_dims, "tensor n_dims")))
            return rc;
        if (t->n_dims < 1 || t->n_dims > QF_GGUF_MAX_DIMS)
            return fail(r, -EINVAL, "tensor '%s': %u dimensions (1..%d allowed)", t->name, t->n_dims,
                        QF_GGUF_MAX_DIMS);
        t->nelems = 1;
        for (uint32_t d = 0; d < QF_GGUF_MAX_DIMS; d++) {
            t->ne[d] = 1;
            if (d >= t->n_dims)
                continue;
            if ((rc = ru64(r, &t->ne[d], "tensor dimension")))
                return rc;
            if (t->ne[d] > (uint64_t)INT64_MAX)
                return fail(r, -EINVAL, "tensor '%s': dimension %u is negative", t->name, d);
            if (t->ne[d] && t->nelems > QF_MAX_ELEMS / t->ne[d])
                return fail(r, -EINVAL, "tensor '%s': more than quantfs' limit of 2^48 elements", t->name);
            t->nelems *= t->ne[d];
        }
        uint64_t rel;
        if ((rc = ru32(r, &t->type, "tensor type")) || (rc = ru64(r, &rel, "tensor offset")))
            return rc;
        const struct qf_type_info *ti = qf_type_get(t->type);
        if (!ti)
            return fail(r, -EINVAL, "tensor '%s': unknown type id %u", t->name, t->type);
        if (t->ne[0] % ti->blck)
            return fail(r, -EINVAL, "tensor '%s': row of %llu is not a multiple of %s's block of %u", t->name,
                        (unsigned long long)t->ne[0], ti->name, ti->blck);
        t->nbytes = qf_type_bytes(t->type, t->nelems);
        if (!t->nbytes && t->nelems)
            return fail(r, -EINVAL, "tensor '%s': byte size overflows", t->name);
        t->offset = rel; /* made absolute below, once the data start is known */
    }
    return 0;
}

int qf_gguf_parse(qf_pread_fn rd, void *rdctx, uint64_t file_size, struct qf_gguf **out, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = 0;
    struct rdr *r = malloc(sizeof *r);
    struct qf_gguf *g = calloc(1, sizeof *g);
    if (!r || !g) {
        free(r);
        free(g);
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    *r = (struct rdr){.rd = rd, .ctx = rdctx, .size = file_size, .err = err, .errlen = errlen, .meta_end = UINT64_MAX};
    g->file_size = file_size;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int rc;
    uint32_t magic;
    if ((rc = ru32(r, &magic, "magic")))
        goto out;
    if (magic != GGUF_MAGIC) {
        rc = fail(r, -EINVAL, "not a GGUF file (magic %08x)", magic);
        goto out;
    }
    if ((rc = ru32(r, &g->version, "version")))
        goto out;
    if (g->version == 0 || g->version == 1 || g->version > 3) { /* ggml: "bad GGUF version: 0" */
        rc = fail(r, -EINVAL, (g->version & 0xffff) == 0 ? "GGUF version %u: big-endian files are not supported"
                                                           : "GGUF version %u is not supported (2 and 3 are)",
                  g->version);
        goto out;
    }
    if ((rc = ru64(r, &g->n_tensors, "tensor count")) || (rc = ru64(r, &g->n_kv, "metadata count")))
        goto out;
    /* Smallest KV: 8 (key len) + 4 (type) + 1 (u8 value). */
    if (g->n_kv > left(r) / 13) {
        rc = fail(r, -EINVAL, "metadata count %llu cannot fit in the file", (unsigned long long)g->n_kv);
        goto out;
    }
    /* Real models have tens of keys (a vocabulary is one array); the cap
     * bounds the memory a hostile count can make us allocate. */
    if (g->n_kv > QF_GGUF_MAX_KV) {
        rc = fail(r, -EINVAL, "metadata count %llu exceeds quantfs' limit of %u", (unsigned long long)g->n_kv,
                  QF_GGUF_MAX_KV);
        goto out;
    }
    if ((rc = parse_kvs(r, g)) || (rc = parse_tensors(r, g)))
        goto out;
    uint64_t a = g->alignment, expect = 0;
    g->data_begin = (r->pos + a - 1) / a * a;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct qf_gguf_tensor *t = &g->tensors[i];

        if (t->offset % a) {
            rc = fail(r, -EINVAL, "tensor '%s': offset %llu is not aligned to %u", t->name,
                      (unsigned long long)t->offset, g->alignment);
            goto out;
        }
        if (t->offset > file_size || g->data_begin > file_size - t->offset ||
            t->nbytes > file_size - t->offset - g->data_begin) {
            rc = fail(r, -EINVAL, "tensor '%s': data [%llu, +%llu) lies beyond the end of the file (%llu bytes)",
                      t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                      (unsigned long long)file_size);
            goto out;
        }
        /* ggml's loader takes only tensors packed in order, each at the
         * padded end of the one before (gguf.cpp: "has offset ..., expected
         * ..."): overlapping, out-of-order or gapped data is refused as it
         * refuses it */
        if (t->offset != expect) {
            rc = fail(r, -EINVAL, "tensor '%s' has offset %llu, expected %llu (tensors must follow each other in "
                      "order, as ggml's loader requires)", t->name, (unsigned long long)t->offset,
                      (unsigned long long)expect);
            goto out;
        }
        if (t->nbytes > UINT64_MAX - a - expect) {
            rc = fail(r, -EINVAL, "tensor '%s': size overflows", t->name);
            goto out;
        }
        expect += (t->nbytes + a - 1) / a * a;
        t->offset += g->data_begin;
    }
    /* Names must be unique: a loader would silently pick one. */
    if (g->n_tensors > 1) {
        const struct qf_gguf_tensor **idx = malloc(g->n_tensors * sizeof *idx);
        if (!idx) {
            rc = fail(r, -ENOMEM, "out of memory");
            goto out;
        }
        for (uint64_t i = 0; i < g->n_tensors; i++)
            idx[i] = &g->tensors[i];
        qsort(idx, g->n_tensors, sizeof *idx, cmp_name);
        for (uint64_t i = 1; i < g->n_tensors && !rc; i++)
            if (!strcmp(idx[i - 1]->name, idx[i]->name))
                rc = fail(r, -EINVAL, "duplicate tensor name '%s'", idx[i]->name);
        free(idx);
        if (rc)
            goto out;
    }
    *out = g;
    g = NULL;
out:
    qf_gguf_free(g);
    free(r->pool);
    free(r);
    return rc;
}

/* The pair's bytes again (the parser validated them): the key, its type,
 * the element type and count, then the elements. */
static int array_start(const struct qf_gguf_kv *kv, qf_pread_fn rd, void *ctx, uint32_t want, uint8_t **buf,
                       size_t *pos, size_t *len)
{
    if (kv->type != QF_GT_ARRAY || kv->arr_type != want || kv->end < kv->begin || kv->end - kv->begin > SIZE_MAX / 2)
        return -EINVAL;
    *len = (size_t)(kv->end - kv->begin);
    if (!(*buf = malloc(*len ? *len : 1)))
        return -ENOMEM;
    int rc = rd(ctx, *buf, *len, kv->begin);
    uint64_t klen = *len >= 8 ? qf_get64(*buf) : UINT64_MAX;
    if (!rc && (klen > *len - 8 || *len - 8 - klen < 16))
        rc = -EINVAL;
    if (rc) {
        free(*buf);
        return rc;
    }
    *pos = 8 + (size_t)klen + 16;
    return 0;
}

int qf_gguf_kv_strings(const struct qf_gguf_kv *kv, qf_pread_fn rd, void *ctx, char ***out, uint64_t *n)
{
    uint8_t *b;
    size_t pos, len;
    int rc = array_start(kv, rd, ctx, QF_GT_STRING, &b, &pos, &len);
    if (rc)
        return rc;
    char **v = calloc(kv->arr_n ? kv->arr_n : 1, sizeof *v);
    rc = v ? 0 : -ENOMEM;
    for (uint64_t i = 0; !rc && i < kv->arr_n; i++) {
        uint64_t sl = len - pos >= 8 ? qf_get64(b + pos) : UINT64_MAX;
        if (sl > len - pos - 8)
            rc = -EINVAL;
        else if (!(v[i] = strndup((const char *)b + pos + 8, (size_t)sl)))
            rc = -ENOMEM;
        else
            pos += 8 + (size_t)sl;
    }
    free(b);
    if (rc) {
        for (uint64_t i = 0; v && i < kv->arr_n; i++)
            free(v[i]);
        free(v);
        return rc;
    }
    *out = v, *n = kv->arr_n;
    return 0;
}

int qf_gguf_kv_f32s(const struct qf_gguf_kv *kv, qf_pread_fn rd, void *ctx, float **out, uint64_t *n)
{
    uint8_t *b;
    size_t pos, len;
    int rc = array_start(kv, rd, ctx, QF_GT_F32, &b, &pos, &len);
    if (rc)
        return rc;
    if ((len - pos) / 4 < kv->arr_n) {
        free(b);
        return -EINVAL;
    }
    float *v = malloc(kv->arr_n ? kv->arr_n * 4 : 4);
    if (v)
        memcpy(v, b + pos, (size_t)kv->arr_n * 4);
    free(b);
    if (!v)
        return -ENOMEM;
    *out = v, *n = kv->arr_n;
    return 0;
}

double qf_gguf_kv_number(const struct qf_gguf_kv *kv)
{
    switch (kv->type) {
    case QF_GT_F32:
    case QF_GT_F64: return kv->f;
    case QF_GT_I8:
    case QF_GT_I16:
    case QF_GT_I32:
    case QF_GT_I64: return (double)(int64_t)kv->u;
    default: return (double)kv->u;
    }
}
