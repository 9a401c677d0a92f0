/* layout.c — a view file as a sorted list of extents.
 *
 * The layout is computed from the source header alone, so a file's exact
 * size is known before any tensor byte is read. A rewritten GGUF header is
 * mostly the source's own metadata bytes: they are referenced (SRC extents),
 * not copied, so a 10 MB vocabulary costs nothing per view.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "quant_impl.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "quantfs reads F32 tensors in place and needs a little-endian host"
#endif

#define QNT_VERSION 2 /* ggml's GGML_QNT_VERSION, written to general.quantization_version */

void qf_layout_free(struct qf_layout *l)
{
    if (!l)
        return;
    free(l->ext);
    free(l->mem);
    free(l);
}

struct builder {
    struct qf_layout *l;
    size_t cap;
};

static int add(struct builder *b, struct qf_extent e)
{
    if (!e.len)
        return 0;
    if (b->l->n_ext == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 16;
        struct qf_extent *ne = realloc(b->l->ext, nc * sizeof *ne);
        if (!ne)
            return -ENOMEM;
        b->l->ext = ne;
        b->cap = nc;
    }
    e.off = b->l->size;
    b->l->ext[b->l->n_ext++] = e;
    b->l->size += e.len;
    return 0;
}

static int pad_to(struct builder *b, uint64_t align)
{
    uint64_t rem = b->l->size % align;
    return rem ? add(b, (struct qf_extent){.kind = QF_EXT_ZERO, .len = align - rem}) : 0;
}

int qf_layout_passthrough(uint64_t size, struct qf_layout **out)
{
    struct qf_layout *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    struct builder b = {l, 0};
    if (add(&b, (struct qf_extent){.kind = QF_EXT_SRC, .len = size, .src_off = 0})) {
        qf_layout_free(l);
        return -ENOMEM;
    }
    *out = l;
    return 0;
}

int qf_layout_text(char *text, size_t len, struct qf_layout **out)
{
    struct qf_layout *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->mem = (uint8_t *)text;
    l->mem_len = len;
    struct builder b = {l, 0};
    if (add(&b, (struct qf_extent){.kind = QF_EXT_MEM, .len = len, .mem = l->mem})) {
        l->mem = NULL;
        qf_layout_free(l);
        return -ENOMEM;
    }
    *out = l;
    return 0;
}

static uint8_t *put_str(uint8_t *p, const char *s, size_t n)
{
    qf_put64(p, n);
    memcpy(p + 8, s, n);
    return p + 8 + n;
}

static uint8_t *put_kv_u32(uint8_t *p, const char *key, uint32_t v)
{
    p = put_str(p, key, strlen(key));
    qf_put32(p, 4 /* GGUF uint32 */);
    qf_put32(p + 4, v);
    return p + 8;
}

int qf_layout_gguf(const struct qf_gguf *g, const struct qf_view *v, struct qf_layout **out, char *err, size_t errlen)
{
    *out = NULL;
    if (g->convert_err[0]) {
        snprintf(err, errlen, "%s", g->convert_err);
        return -ENOTSUP;
    }
    static const char k_ftype[] = "general.file_type", k_qver[] = "general.quantization_version";
    /* tail = two appended KVs + all tensor infos; each info is at most
     * 8 + 63 + 4 + 4*8 + 4 + 8 bytes. */
    size_t tail = (8 + sizeof k_ftype + 8) + (8 + sizeof k_qver + 8) + (size_t)g->n_tensors * (8 + 64 + 4 + 32 + 12);
    struct qf_layout *l = calloc(1, sizeof *l);
    uint8_t *mem = l ? malloc(24 + tail) : NULL;
    if (!mem) {
        free(l);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    l->mem = mem;
    struct builder b = {l, 0};
    int rc = 0;

    memcpy(mem, "GGUF", 4);
    qf_put32(mem + 4, 3);
    qf_put64(mem + 8, g->n_tensors);
    qf_put64(mem + 16, g->n_kv - g->n_drop + 2);
    rc |= add(&b, (struct qf_extent){.kind = QF_EXT_MEM, .len = 24, .mem = mem});

    /* source metadata, minus the KVs we re-emit */
    uint64_t at = g->kv_begin;
    for (unsigned i = 0; i < g->n_drop; i++) {
        rc |= add(&b, (struct qf_extent){.kind = QF_EXT_SRC, .len = g->drop_begin[i] - at, .src_off = at});
        at = g->drop_end[i];
    }
    rc |= add(&b, (struct qf_extent){.kind = QF_EXT_SRC, .len = g->kv_end - at, .src_off = at});

    uint8_t *p = mem + 24, *tail_start = p;
    p = put_kv_u32(p, k_ftype, v->gguf_ftype);
    p = put_kv_u32(p, k_qver, QNT_VERSION);
    uint64_t data_off = 0, a = g->alignment;
    uint32_t *types = malloc((g->n_tensors ? g->n_tensors : 1) * sizeof *types);
    if (!types) {
        qf_layout_free(l);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct qf_gguf_tensor *t = &g->tensors[i];
        types[i] = qf_gguf_tensor_type(v->gguf_type, t->type, t->n_dims, t->ne);
        p = put_str(p, t->name, t->name_len);
        qf_put32(p, t->n_dims);
        p += 4;
        for (uint32_t d = 0; d < t->n_dims; d++, p += 8)
            qf_put64(p, t->ne[d]);
        qf_put32(p, types[i]);
        qf_put64(p + 4, data_off);
        p += 12;
        /* qf_type_bytes cannot fail: the row length fits the chosen type and
         * the size is at most the f32 size, which the parser bounded. */
        data_off += (qf_type_bytes(types[i], t->nelems) + a - 1) / a * a;
    }
    rc |= add(&b, (struct qf_extent){.kind = QF_EXT_MEM, .len = (uint64_t)(p - tail_start), .mem = tail_start});
    rc |= pad_to(&b, a);
    for (uint64_t i = 0; i < g->n_tensors && !rc; i++) {
        const struct qf_gguf_tensor *t = &g->tensors[i];
        uint64_t n = qf_type_bytes(types[i], t->nelems);
        if (types[i] == t->type)
            rc |= add(&b, (struct qf_extent){.kind = QF_EXT_SRC, .len = n, .src_off = t->offset});
        else
            rc |= add(&b, (struct qf_extent){.kind = QF_EXT_CONV,
                                             .len = n,
                                             .src_off = t->offset,
                                             .src_type = t->type,
                                             .dst_type = types[i],
                                             .n_elems = t->nelems,
                                             .chunk_elems = QF_CHUNK_ELEMS});
        rc |= pad_to(&b, a);
    }
    free(types);
    l->mem_len = 24 + tail;
    if (rc) {
        qf_layout_free(l);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    *out = l;
    return 0;
}

size_t qf_layout_find(const struct qf_layout *l, uint64_t off)
{
    size_t lo = 0, hi = l->n_ext;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->ext[mid].off <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

uint64_t qf_conv_nchunks(const struct qf_extent *e) { return (e->n_elems + e->chunk_elems - 1) / e->chunk_elems; }

/* Output bytes produced by the first n source elements of a CONV extent
 * (n a whole number of chunks, or the whole extent). */
static uint64_t out_bytes(const struct qf_extent *e, uint64_t n)
{
    uint64_t rows = e->row_len ? n / e->row_len : 0;
    switch (e->dst_type) {
    case QF_ST_I8: return rows * ((e->row_len + 3) / 4) * 4;
    case QF_ST_FP8: return n;
    case QF_ST_I8_SCALE: return rows * 2;
    case QF_ST_I4: return rows * ((e->row_len + 7) / 8) * 4;
    case QF_ST_I4_SCALE: return rows * (e->row_len / e->group) * 2;
    case QF_ST_FP8_SCALE_INV: return (rows + 127) / 128 * ((e->row_len + 127) / 128) * 4;
    default: return qf_type_bytes(e->dst_type, n);
    }
}

static uint64_t chunk_elems(const struct qf_extent *e, uint64_t c)
{
    uint64_t first = c * e->chunk_elems, n = e->n_elems - first;
    return n < e->chunk_elems ? n : e->chunk_elems;
}

void qf_conv_chunk_range(const struct qf_extent *e, uint64_t c, uint64_t *off, uint64_t *len)
{
    /* chunk starts are block (or 128-row band) boundaries, so the bytes
     * before chunk c are those of c whole chunks */
    *off = out_bytes(e, c * e->chunk_elems);
    *len = out_bytes(e, c * e->chunk_elems + chunk_elems(e, c)) - *off;
}

uint64_t qf_conv_chunk_at(const struct qf_extent *e, uint64_t rel)
{
    uint64_t full = out_bytes(e, e->chunk_elems);
    uint64_t c = full ? rel / full : 0, last = qf_conv_nchunks(e) - 1;
    return c < last ? c : last;
}

int qf_conv_chunk(const struct qf_extent *e, uint64_t c, qf_pread_fn rd, void *rdctx, void *dst, void *scratch,
                  bool scalar_only)
{
    if (e->kind != QF_EXT_CONV || c >= qf_conv_nchunks(e))
        return -EINVAL;
    uint64_t n = chunk_elems(e, c);
    void *own = NULL;
    if (n > QF_CHUNK_ELEMS || !scratch) {
        if (n > SIZE_MAX / 8 || !(own = malloc((size_t)n * 8)))
            return -ENOMEM;
        scratch = own;
    }
    float *f = scratch;
    uint64_t src_first = qf_type_bytes(e->src_type, c * e->chunk_elems), src_len = qf_type_bytes(e->src_type, n);
    /* f32 sources are read straight into the float buffer. */
    void *raw = e->src_type == QF_F32 ? (void *)f : (void *)(f + n);
    int rc = rd(rdctx, raw, (size_t)src_len, e->src_off + src_first);
    if (!rc && e->src_type != QF_F32)
        rc = qf_to_f32(e->src_type, raw, f, (size_t)n);
    if (!rc) {
        if (e->dst_type >= QF_ST_I8)
            rc = qf_st_quantize_rows(e->dst_type, f, (size_t)(n / e->row_len), (size_t)e->row_len, e->group, dst);
        else
            rc = qf_quantize_opt(e->dst_type, f, dst, (size_t)n, scalar_only);
    }
    free(own);
    return rc;
}

int qf_layout_read(const struct qf_layout *l, uint64_t off, size_t len, void *buf, qf_pread_fn rd, void *rdctx)
{
    if (off >= l->size || !len)
        return 0;
    if (len > l->size - off)
        return -EINVAL;
    uint8_t *out = buf, *chunk = NULL;
    void *scratch = NULL;
    int rc = 0;
    for (size_t i = qf_layout_find(l, off); len && i < l->n_ext; i++) {
        const struct qf_extent *e = &l->ext[i];
        uint64_t rel = off - e->off, n = e->len - rel < len ? e->len - rel : len;
        switch (e->kind) {
        case QF_EXT_MEM: memcpy(out, e->mem + rel, n); break;
        case QF_EXT_ZERO: memset(out, 0, n); break;
        case QF_EXT_SRC: rc = rd(rdctx, out, n, e->src_off + rel); break;
        case QF_EXT_CONV:
            if (!chunk) {
                chunk = malloc(QF_CHUNK_ELEMS * 4);
                /* NULL scratch: qf_conv_chunk allocates per chunk */
                scratch = malloc(QF_CONV_SCRATCH_BYTES);
                if (!chunk || !scratch) {
                    rc = -ENOMEM;
                    break;
                }
            }
            for (uint64_t done = 0; done < n && !rc;) {
                uint64_t c = qf_conv_chunk_at(e, rel + done), coff, clen;
                qf_conv_chunk_range(e, c, &coff, &clen);
                uint8_t *dst = chunk;
                if (clen > QF_CHUNK_ELEMS * 4 && !(dst = malloc(clen))) {
                    rc = -ENOMEM;
                    break;
                }
                rc = qf_conv_chunk(e, c, rd, rdctx, dst, clen > QF_CHUNK_ELEMS * 4 ? NULL : scratch, false);
                uint64_t from = rel + done - coff, k = clen - from < n - done ? clen - from : n - done;
                if (!rc)
                    memcpy(out + done, dst + from, k);
                if (dst != chunk)
                    free(dst);
                done += k;
            }
            break;
        }
        if (rc)
            break;
        out += n;
        off += n;
        len -= n;
    }
    free(chunk);
    free(scratch);
    return rc;
}
