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
#define GGML_MAX_NAME 64 /* ggml keeps names in char[64] */

enum gguf_vtype {
    GT_U8, GT_I8, GT_U16, GT_I16, GT_U32, GT_I32, GT_F32, GT_BOOL,
    GT_STRING, GT_ARRAY, GT_U64, GT_I64, GT_F64, GT_COUNT
};
static const uint8_t vtype_size[GT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

struct rdr {
    qf_pread_fn rd;
    void *ctx;
    uint64_t size, pos;
    uint64_t buf_off;
    size_t buf_len;
    char *err;
    size_t errlen;
    uint8_t buf[1 << 16];
};

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
    if (t >= GT_COUNT)
        return fail(r, -EINVAL, "key '%s': unknown value type %u", key, t);
    if (t == GT_STRING) {
        uint64_t n;
        int rc = rstrlen(r, &n, "string value");
        return rc ? rc : rskip(r, n, "string value");
    }
    if (t != GT_ARRAY)
        return rskip(r, vtype_size[t], "value");
    uint32_t at;
    uint64_t n;
    int rc = ru32(r, &at, "array type");
    if (!rc)
        rc = ru64(r, &n, "array length");
    if (rc)
        return rc;
    if (at >= GT_COUNT || at == GT_ARRAY)
        return fail(r, -EINVAL, "key '%s': unsupported array element type %u", key, at);
    if (at != GT_STRING) {
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
    }
    return 0;
}

/* Keys are compared, not kept; they are short in practice, so a key longer
 * than the buffer simply cannot be one we look for. */
#define KEY_BUF 256

void qf_gguf_free(struct qf_gguf *g)
{
    if (!g)
        return;
    free(g->tensors);
    free(g->strpool);
    free(g);
}

static int cmp_name(const void *a, const void *b)
{
    const struct qf_gguf_tensor *x = *(const struct qf_gguf_tensor *const *)a;
    const struct qf_gguf_tensor *y = *(const struct qf_gguf_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int parse_kvs(struct rdr *r, struct qf_gguf *g)
{
    int rc;
    char key[KEY_BUF];
    /* Duplicate keys are an error in ggml; we only need to police the keys
     * whose values we act on. */
    bool seen_ftype = false, seen_qver = false, seen_align = false;
    g->kv_begin = r->pos;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        uint64_t kv_start = r->pos, klen;
        if ((rc = rstrlen(r, &klen, "key")))
            return rc;
        size_t keep = klen < KEY_BUF ? (size_t)klen : 0;
        if ((rc = rget(r, key, keep, "key")) || (rc = rskip(r, klen - keep, "key")))
            return rc;
        key[keep] = 0;
        if (!keep)
            snprintf(key, sizeof key, "(key of %llu bytes)", (unsigned long long)klen);
        uint32_t t;
        if ((rc = ru32(r, &t, "value type")))
            return rc;
        if (!strcmp(key, "general.alignment")) {
            if (seen_align)
                return fail(r, -EINVAL, "duplicate key general.alignment");
            seen_align = true;
            if (t != GT_U32)
                return fail(r, -EINVAL, "general.alignment has type %u, expected uint32", t);
            uint32_t a;
            if ((rc = ru32(r, &a, "general.alignment")))
                return rc;
            if (a == 0 || (a & (a - 1)) || a > (1u << 20))
                return fail(r, -EINVAL, "general.alignment %u is not a power of two up to 1 MiB", a);
            g->alignment = a;
            continue;
        }
        if ((rc = skip_value(r, t, key)))
            return rc;
        bool is_ftype = !strcmp(key, "general.file_type"), is_qver = !strcmp(key, "general.quantization_version");
        if ((is_ftype && seen_ftype) || (is_qver && seen_qver))
            return fail(r, -EINVAL, "duplicate key %s", key);
        seen_ftype |= is_ftype;
        seen_qver |= is_qver;
        if (is_ftype || is_qver) {
            g->drop_begin[g->n_drop] = kv_start;
            g->drop_end[g->n_drop] = r->pos;
            g->n_drop++;
        }
    }
    g->kv_end = r->pos;
    return 0;
}

static int parse_tensors(struct rdr *r, struct qf_gguf *g)
{
    int rc;
    /* Smallest tensor info: 8 (name len) + 4 (n_dims) + 8 (one dim) + 4
     * (type) + 8 (offset). */
    if (g->n_tensors > left(r) / 32)
        return fail(r, -EINVAL, "tensor count %llu cannot fit in the file", (unsigned long long)g->n_tensors);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    g->strpool = malloc((size_t)(g->n_tensors ? g->n_tensors : 1) * GGML_MAX_NAME);
    if (!g->tensors || !g->strpool)
        return fail(r, -ENOMEM, "out of memory for %llu tensors", (unsigned long long)g->n_tensors);
    char *pool = g->strpool;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct qf_gguf_tensor *t = &g->tensors[i];
        uint64_t nlen;
        if ((rc = rstrlen(r, &nlen, "tensor name")))
            return rc;
        if (nlen >= GGML_MAX_NAME)
            return fail(r, -EINVAL, "tensor %llu: name of %llu bytes (ggml's limit is %d)", (unsigned long long)i,
                        (unsigned long long)nlen, GGML_MAX_NAME - 1);
        if ((rc = rget(r, pool, (size_t)nlen, "tensor name")))
            return rc;
        pool[nlen] = 0;
        if (strlen(pool) != nlen)
            return fail(r, -EINVAL, "tensor %llu: name contains a NUL byte", (unsigned long long)i);
        t->name = pool;
        t->name_len = nlen;
        pool += GGML_MAX_NAME;
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
            if (t->ne[d] && t->nelems > (uint64_t)INT64_MAX / t->ne[d])
                return fail(r, -EINVAL, "tensor '%s': element count overflows", t->name);
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
    *r = (struct rdr){.rd = rd, .ctx = rdctx, .size = file_size, .err = err, .errlen = errlen};
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
    if (g->version == 1 || g->version > 3) {
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
    if ((rc = parse_kvs(r, g)) || (rc = parse_tensors(r, g)))
        goto out;
    uint64_t a = g->alignment;
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
        t->offset += g->data_begin;
        const struct qf_type_info *ti = qf_type_get(t->type);
        if (!g->convert_err[0] && !ti->can_read && qf_gguf_tensor_type(QF_F16, t->type, t->n_dims, t->ne) != t->type)
            snprintf(g->convert_err, sizeof g->convert_err, "tensor '%s' is %s; only f32, f16 and bf16 convert",
                     t->name, ti->name);
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
    free(r);
    return rc;
}
