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


void qf_layout_free(struct qf_layout *l)
{
    if (!l)
        return;
    free(l->ext);
    free(l->mem);
    free(l->tensors);
    free(l);
}

int qf_layout_add(struct qf_layout_builder *b, struct qf_extent e)
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

int qf_layout_pad(struct qf_layout_builder *b, uint64_t align)
{
    uint64_t rem = b->l->size % align;
    return rem ? qf_layout_add(b, (struct qf_extent){.kind = QF_EXT_ZERO, .len = align - rem}) : 0;
}

int qf_layout_passthrough(uint64_t size, struct qf_layout **out)
{
    struct qf_layout *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    struct qf_layout_builder b = {l, 0};
    if (qf_layout_add(&b, (struct qf_extent){.kind = QF_EXT_SRC, .len = size, .src_off = 0})) {
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
    struct qf_layout_builder b = {l, 0};
    if (qf_layout_add(&b, (struct qf_extent){.kind = QF_EXT_MEM, .len = len, .mem = l->mem})) {
        l->mem = NULL;
        qf_layout_free(l);
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

/* Every field of struct qf_extent, and whether a chunk's bytes depend on it.
 * Adding a field changes this size: decide, then update both. */
_Static_assert(sizeof(struct qf_extent) == 104, "a new qf_extent field: add it to qf_conv_chunk_id if bytes depend on it");

void qf_conv_chunk_id(const struct qf_extent *e, uint64_t c, uint64_t id[QF_CHUNK_ID_WORDS])
{
    /* off, len: where the bytes land in the file, not what they are;
     * src_off: where they come from (qf_conv_chunk_src: the caller names
     * the input by its place or its content); kind: always CONV here; mem:
     * MEM extents only */
    uint64_t v[QF_CHUNK_ID_WORDS] = {QF_CODEC_VERSION, e->src_type,   e->dst_type, e->chunk_elems,
                                     c,                e->n_elems,    e->row_len,  e->group,
                                     e->validate,      QF_CHUNK_ELEMS, e->imat_hash,
                                     e->imat_rows}; /* imat: by its hash */
    memcpy(id, v, sizeof v);
}

static uint64_t chunk_elems(const struct qf_extent *e, uint64_t c);

void qf_conv_chunk_src(const struct qf_extent *e, uint64_t c, uint64_t *off, uint64_t *len)
{
    *off = e->src_off + qf_type_bytes(e->src_type, c * e->chunk_elems);
    *len = qf_type_bytes(e->src_type, chunk_elems(e, c));
}

uint64_t qf_conv_nchunks(const struct qf_extent *e) { return (e->n_elems + e->chunk_elems - 1) / e->chunk_elems; }

/* Output bytes produced by the first n source elements of a CONV extent
 * (n a whole number of chunks, or the whole extent). */
static uint64_t out_bytes(const struct qf_extent *e, uint64_t n)
{
    const struct qf_row_kind *rk = qf_row_kind(e->dst_type);
    if (!rk)
        return qf_type_bytes(e->dst_type, n);
    return rk->bytes(e->row_len ? n / e->row_len : 0, e->row_len, e->group);
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

/* Converts chunk c's n source elements, f32 at f (scratch, or the input
 * itself for an F32 source), into dst. */
static int convert(const struct qf_extent *e, uint64_t c, uint64_t n, const float *f, void *dst, bool scalar_only)
{
    int rc = 0;
    const struct qf_row_kind *rk = qf_row_kind(e->dst_type);
    if (e->validate && !e->imat && !rk) /* one pass where a kernel checks as it converts */
        return qf_quantize_checked(e->dst_type, f, dst, (size_t)n, scalar_only);
    if (e->validate && !qf_finite(QF_F32, f, (size_t)n))
        return -EBADMSG;
    if (e->imat) { /* whole rows, each with its matrix's weights */
        uint64_t row0 = c * e->chunk_elems / e->row_len, rows = n / e->row_len;
        uint64_t row_bytes = qf_type_bytes(e->dst_type, e->row_len);
        for (uint64_t r = 0; r < rows && !rc; r++)
            rc = qf_quantize_row_imat(e->dst_type, f + r * e->row_len, (size_t)e->row_len,
                                      e->imat + (row0 + r) / e->imat_rows * e->row_len,
                                      (uint8_t *)dst + r * row_bytes, scalar_only);
        return rc;
    }
    if (rk)
        return rk->quantize(f, (size_t)(n / e->row_len), (size_t)e->row_len, e->group, dst);
    return qf_quantize_opt(e->dst_type, f, dst, (size_t)n, scalar_only);
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
    uint64_t src_at, src_len;
    qf_conv_chunk_src(e, c, &src_at, &src_len);
    /* f32 sources are read straight into the float buffer; one read of the
     * whole input (qf_conv_chunk_src promises no other) */
    void *raw = e->src_type == QF_F32 ? (void *)f : (void *)(f + n);
    int rc = rd(rdctx, e->src_type == e->dst_type ? dst : raw, (size_t)src_len, src_at);
    if (!rc && e->src_type == e->dst_type) {
        /* a tensor llama-quantize copies: only checked */
        if (e->validate && !qf_finite(e->src_type, dst, (size_t)n))
            rc = -EBADMSG;
    } else if (!rc && !(e->src_type != QF_F32 && (rc = qf_to_f32(e->src_type, raw, f, (size_t)n)))) {
        rc = convert(e, c, n, f, dst, scalar_only);
    }
    free(own);
    return rc;
}

int qf_conv_chunk_from(const struct qf_extent *e, uint64_t c, const void *in, void *dst, void *scratch,
                       bool scalar_only)
{
    if (e->kind != QF_EXT_CONV || c >= qf_conv_nchunks(e))
        return -EINVAL;
    uint64_t n = chunk_elems(e, c), src_at, src_len;
    qf_conv_chunk_src(e, c, &src_at, &src_len);
    if (e->src_type == e->dst_type) {
        if (e->validate && !qf_finite(e->src_type, in, (size_t)n))
            return -EBADMSG;
        memcpy(dst, in, (size_t)src_len);
        return 0;
    }
    if (e->src_type == QF_F32 && !((uintptr_t)in % _Alignof(float))) /* used in place: no copy */
        return convert(e, c, n, in, dst, scalar_only);
    void *own = NULL;
    if (n > QF_CHUNK_ELEMS || !scratch) {
        if (n > SIZE_MAX / 4 || !(own = malloc((size_t)n * 4)))
            return -ENOMEM;
        scratch = own;
    }
    int rc = e->src_type == QF_F32 ? (memcpy(scratch, in, (size_t)src_len), 0)
                                   : qf_to_f32(e->src_type, in, scratch, (size_t)n);
    if (!rc)
        rc = convert(e, c, n, scratch, dst, scalar_only);
    free(own);
    return rc;
}

bool qf_finite(uint32_t type, const void *data, size_t n)
{
    uint32_t acc = 0;
    if (type == QF_F32) {
        const uint8_t *p = data;
#ifdef QF_HAVE_X86
        if (qf_simd_available())
            return qf_f32_finite_avx2(p, n);
#endif
        /* all-ones exponent = NaN or Inf; branch-free so it vectorizes */
        for (size_t i = 0; i < n; i++)
            acc |= (qf_get32(p + 4 * i) & 0x7f800000u) == 0x7f800000u;
    } else if (type == QF_F16 || type == QF_BF16) {
        const uint8_t *p = data;
        uint16_t mask = type == QF_F16 ? 0x7c00 : 0x7f80;
        for (size_t i = 0; i < n; i++)
            acc |= (qf_get16(p + 2 * i) & mask) == mask;
    }
    return !acc;
}

int qf_layout_walk(const struct qf_layout *l, uint64_t off, uint64_t len, qf_piece_fn fn, void *ctx)
{
    if (off >= l->size || !len)
        return 0;
    if (len > l->size - off)
        len = l->size - off;
    for (size_t i = qf_layout_find(l, off); len && i < l->n_ext; i++) {
        const struct qf_extent *e = &l->ext[i];
        uint64_t rel = off - e->off, n = e->len - rel < len ? e->len - rel : len;
        for (uint64_t done = 0; done < n;) {
            struct qf_piece p = {.e = e, .off = off + done, .rel = rel + done, .len = n - done};
            if (e->kind == QF_EXT_CONV) {
                p.chunk = qf_conv_chunk_at(e, p.rel);
                qf_conv_chunk_range(e, p.chunk, &p.chunk_off, &p.chunk_len);
                uint64_t left = p.chunk_off + p.chunk_len - p.rel;
                if (p.len > left)
                    p.len = left;
            }
            int rc = fn(ctx, &p);
            if (rc)
                return rc;
            done += p.len;
        }
        off += n;
        len -= n;
    }
    return 0;
}

struct read_ctx {
    uint8_t *out;
    uint64_t base;
    qf_pread_fn rd;
    void *rdctx;
    uint8_t *chunk;
    void *scratch;
};

static int read_piece(void *arg, const struct qf_piece *p)
{
    struct read_ctx *r = arg;
    uint8_t *out = r->out + (p->off - r->base);
    const struct qf_extent *e = p->e;
    switch (e->kind) {
    case QF_EXT_MEM: memcpy(out, e->mem + p->rel, p->len); return 0;
    case QF_EXT_ZERO: memset(out, 0, p->len); return 0;
    case QF_EXT_SRC: return r->rd(r->rdctx, out, p->len, e->src_off + p->rel);
    default: break;
    }
    bool big = p->chunk_len > QF_CHUNK_ELEMS * 4;
    if (!big && !r->chunk) {
        r->chunk = malloc(QF_CHUNK_ELEMS * 4);
        r->scratch = malloc(QF_CONV_SCRATCH_BYTES);
        if (!r->chunk || !r->scratch)
            return -ENOMEM;
    }
    /* fp8 bands of wide rows are larger than a chunk buffer: their own */
    uint8_t *dst = big ? malloc(p->chunk_len) : r->chunk;
    if (!dst)
        return -ENOMEM;
    int rc = qf_conv_chunk(e, p->chunk, r->rd, r->rdctx, dst, big ? NULL : r->scratch, false);
    if (!rc)
        memcpy(out, dst + (p->rel - p->chunk_off), p->len);
    if (big)
        free(dst);
    return rc;
}

int qf_layout_read(const struct qf_layout *l, uint64_t off, size_t len, void *buf, qf_pread_fn rd, void *rdctx)
{
    if (off >= l->size || !len)
        return 0;
    if (len > l->size - off)
        return -EINVAL;
    struct read_ctx r = {.out = buf, .base = off, .rd = rd, .rdctx = rdctx};
    int rc = qf_layout_walk(l, off, len, read_piece, &r);
    free(r.chunk);
    free(r.scratch);
    return rc;
}
