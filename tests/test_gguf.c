/* test_gguf.c — the GGUF parser and rewriter on valid and hostile input.
 * Every malformed file must be rejected with a message, never crash, never
 * read out of bounds (run under ASan in CI). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec.h"
#include "testutil.h"

/* ------------------------------------------------------------ builder */

static void pad(struct buf *b, size_t a)
{
    static const uint8_t z[64];
    while (b->n % a)
        put(b, z, 1);
}

struct tspec {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
};

/* A well-formed v3 file: a few metadata KVs (string, array of strings,
 * u32 file_type, f32), then the tensors, data = f32 ramp. */
static struct buf make_gguf(const struct tspec *ts, size_t nt, bool with_ftype)
{
    struct buf b = {0};
    put(&b, "GGUF", 4);
    u32(&b, 3);
    u64(&b, nt);
    u64(&b, with_ftype ? 8 : 7);
    str(&b, "general.architecture");
    u32(&b, 8);
    str(&b, "llama");
    /* the hyper-parameters llama-quantize needs to load a llama */
    static const char *const hp[] = {"llama.context_length", "llama.embedding_length", "llama.block_count",
                                     "llama.attention.head_count"};
    static const uint32_t hv[] = {128, 64, 1, 1};
    for (int i = 0; i < 4; i++) {
        str(&b, hp[i]);
        u32(&b, 4);
        u32(&b, hv[i]);
    }
    str(&b, "tokenizer.ggml.tokens");
    u32(&b, 9);
    u32(&b, 8);
    u64(&b, 3);
    str(&b, "a");
    str(&b, "bb");
    str(&b, "");
    if (with_ftype) {
        str(&b, "general.file_type");
        u32(&b, 4);
        u32(&b, 0);
    }
    str(&b, "llama.attention.layer_norm_rms_epsilon");
    u32(&b, 6);
    float fb = 1e-5f;
    put(&b, &fb, 4);
    uint64_t off = 0;
    for (size_t i = 0; i < nt; i++) {
        str(&b, ts[i].name);
        u32(&b, ts[i].n_dims);
        uint64_t n = 1;
        for (uint32_t d = 0; d < ts[i].n_dims; d++) {
            u64(&b, ts[i].ne[d]);
            n *= ts[i].ne[d];
        }
        u32(&b, ts[i].type);
        u64(&b, off);
        off += (qf_type_bytes(ts[i].type, n) + 31) / 32 * 32;
    }
    pad(&b, 32);
    for (size_t i = 0; i < nt; i++) {
        uint64_t n = 1;
        for (uint32_t d = 0; d < ts[i].n_dims; d++)
            n *= ts[i].ne[d];
        uint64_t bytes = qf_type_bytes(ts[i].type, n);
        for (uint64_t k = 0; k < bytes / 4; k++) {
            float v = (float)((int)(k % 97) - 48) / 17.f;
            put(&b, &v, 4);
        }
        for (uint64_t k = bytes / 4 * 4; k < bytes; k++)
            put(&b, "\x11", 1);
        pad(&b, 32);
    }
    return b;
}

static const struct tspec basic[] = {
    {"token_embd.weight", 2, {64, 8, 1, 1}, QF_F32},
    {"blk.0.attn_norm.weight", 1, {64, 1, 1, 1}, QF_F32},
    {"blk.0.ffn_down.weight", 2, {40, 4, 1, 1}, QF_F32},
    {"blk.0.cube", 3, {256, 2, 2, 1}, QF_F32},
};

static int parse_buf(const struct buf *b, struct qf_gguf **g, char *err, size_t n)
{
    struct tmem m = {b->p, b->n};
    return qf_gguf_parse(tmem_pread, &m, b->n, g, err, n);
}

static void expect_reject(struct buf *b, const char *needle)
{
    struct qf_gguf *g = (void *)1;
    char err[256] = "";
    int rc = parse_buf(b, &g, err, sizeof err);
    if (rc == 0)
        fail_msg("accepted a malformed file (expected '%s')", needle);
    assert_null(g);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
}

/* Offsets inside the basic file, for targeted corruption. */
static size_t find(const struct buf *b, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= b->n; i++)
        if (!memcmp(b->p + i, s, n))
            return i;
    fail_msg("'%s' not in file", s);
    return 0;
}

/* Tensor info of tensor named s: returns offset of its n_dims field. */
static size_t tinfo(const struct buf *b, const char *s) { return find(b, s) + strlen(s); }

static void test_valid(void **state)
{
    (void)state;
    struct buf b = make_gguf(basic, 4, true);
    struct qf_gguf *g;
    char err[256];
    assert_int_equal(parse_buf(&b, &g, err, sizeof err), 0);
    assert_int_equal(g->n_tensors, 4);
    assert_int_equal(g->n_kv, 8);
    assert_int_equal(g->alignment, 32);
    const struct qf_gguf_kv *kv = qf_gguf_find_kv(g, "llama.block_count");
    assert_non_null(kv);
    assert_int_equal(kv->type, QF_GT_U32);
    assert_int_equal(kv->u, 1);
    assert_string_equal(qf_gguf_find_kv(g, "general.architecture")->sval, "llama");
    assert_int_equal(qf_gguf_find_kv(g, "tokenizer.ggml.tokens")->arr_n, 3);
    assert_null(qf_gguf_find_kv(g, "general.name"));
    assert_string_equal(g->tensors[3].name, "blk.0.cube");
    assert_int_equal(g->tensors[3].nelems, 1024);
    qf_gguf_free(g);
    free(b.p);
}

static void test_every_truncation(void **state)
{
    (void)state;
    struct buf b = make_gguf(basic, 4, true);
    for (size_t n = 0; n < b.n; n++) {
        struct buf t = {b.p, n, n};
        struct qf_gguf *g = (void *)1;
        char err[256] = "";
        int rc = parse_buf(&t, &g, err, sizeof err);
        /* the last tensor's trailing padding is not needed to parse */
        if (rc == 0) {
            assert_true(n >= g->tensors[3].offset + g->tensors[3].nbytes);
            qf_gguf_free(g);
            continue;
        }
        assert_null(g);
        assert_true(err[0]);
    }
    free(b.p);
}

static void test_header_errors(void **state)
{
    (void)state;
    struct buf b;
#define FRESH() (free(b.p), b = make_gguf(basic, 4, true))
    b = make_gguf(basic, 4, true);
    memcpy(b.p, "GGUG", 4);
    expect_reject(&b, "not a GGUF file");
    FRESH();
    b.p[4] = 1;
    expect_reject(&b, "version 1");
    FRESH();
    b.p[4] = 0; /* ggml: "bad GGUF version: 0" */
    expect_reject(&b, "version 0");
    FRESH();
    memcpy(b.p + 4, "\0\0\0\3", 4);
    expect_reject(&b, "big-endian");
    FRESH();
    memset(b.p + 8, 0xff, 8); /* tensor count */
    expect_reject(&b, "tensor count");
    FRESH();
    memset(b.p + 16, 0x7f, 8); /* kv count */
    expect_reject(&b, "metadata count");
    FRESH();
    memset(b.p + 24, 0xee, 8); /* first key length */
    expect_reject(&b, "exceeds the file");
    FRESH();
    {
        size_t at = find(&b, "tokenizer.ggml.tokens") + strlen("tokenizer.ggml.tokens") + 8;
        uint64_t big = UINT64_MAX / 4;
        memcpy(b.p + at, &big, 8); /* array length */
        expect_reject(&b, "array of");
        FRESH();
        uint32_t nested = 9;
        memcpy(b.p + at - 4, &nested, 4); /* array element type: array */
        expect_reject(&b, "unsupported array element type");
        FRESH();
        uint32_t bad = 13;
        memcpy(b.p + at - 8, &bad, 4); /* value type */
        expect_reject(&b, "unknown value type");
    }
    FRESH();
    {
        size_t at = tinfo(&b, "token_embd.weight");
        uint32_t nd = 0;
        memcpy(b.p + at, &nd, 4);
        expect_reject(&b, "dimensions");
        FRESH();
        nd = 5;
        memcpy(b.p + at, &nd, 4);
        expect_reject(&b, "dimensions");
        FRESH();
        uint64_t neg = (uint64_t)1 << 63;
        memcpy(b.p + at + 4, &neg, 8);
        expect_reject(&b, "negative");
        FRESH();
        uint64_t huge = (uint64_t)1 << 40;
        memcpy(b.p + at + 4, &huge, 8);
        memcpy(b.p + at + 12, &huge, 8);
        expect_reject(&b, "2^48");
        FRESH();
        uint32_t ty = 4; /* removed from ggml */
        memcpy(b.p + at + 20, &ty, 4);
        expect_reject(&b, "unknown type id");
        FRESH();
        uint64_t off = 8; /* not aligned */
        memcpy(b.p + at + 24, &off, 8);
        expect_reject(&b, "not aligned");
        FRESH();
        off = (uint64_t)1 << 40;
        memcpy(b.p + at + 24, &off, 8);
        expect_reject(&b, "beyond the end");
        FRESH();
        off = UINT64_MAX - 31;
        memcpy(b.p + at + 24, &off, 8);
        expect_reject(&b, "beyond the end");
        FRESH();
        off = 32; /* aligned, inside the file, but not where ggml expects the first tensor */
        memcpy(b.p + at + 24, &off, 8);
        expect_reject(&b, "expected 0");
    }
    free(b.p);
    {
        /* the second tensor over the first (overlap), then before it (out of order) */
        struct tspec two[] = {{"tensor_aaa", 1, {64, 1, 1, 1}, QF_F32}, {"tensor_bbb", 1, {64, 1, 1, 1}, QF_F32}};
        b = make_gguf(two, 2, false);
        size_t at = tinfo(&b, "tensor_bbb"); /* 1 dimension: n_dims 4, dims 8, type 4, then the offset */
        uint64_t off = 0;
        memcpy(b.p + at + 16, &off, 8);
        expect_reject(&b, "tensor 'tensor_bbb' has offset 0, expected 256");
        off = 256; /* swapped: the first tensor's data after the second's */
        memcpy(b.p + tinfo(&b, "tensor_aaa") + 16, &off, 8);
        expect_reject(&b, "tensor 'tensor_aaa' has offset 256, expected 0");
        free(b.p);
    }
    b = make_gguf(basic, 4, true);
    free(b.p);
    {
        struct tspec dup[] = {{"same", 1, {32, 1, 1, 1}, QF_F32}, {"same", 1, {32, 1, 1, 1}, QF_F32}};
        b = make_gguf(dup, 2, false);
        expect_reject(&b, "duplicate tensor name");
        free(b.p);
        struct tspec q[] = {{"q", 2, {33, 2, 1, 1}, QF_Q4_0}};
        b = make_gguf(q, 1, false);
        expect_reject(&b, "not a multiple");
        free(b.p);
        char longname[80];
        memset(longname, 'x', 70);
        longname[70] = 0;
        struct tspec ln[] = {{longname, 1, {32, 1, 1, 1}, QF_F32}};
        b = make_gguf(ln, 1, false);
        expect_reject(&b, "name of 70 bytes");
        free(b.p);
        struct tspec nul[] = {{"ab", 1, {32, 1, 1, 1}, QF_F32}};
        b = make_gguf(nul, 1, false);
        b.p[find(&b, "ab")] = 0;
        expect_reject(&b, "NUL");
        free(b.p);
    }
#undef FRESH
}

/* Appends a KV to a valid file by rebuilding: duplicate file_type and
 * a bad alignment. */
static void test_kv_rules(void **state)
{
    (void)state;
    struct buf b = {0};
    put(&b, "GGUF", 4);
    u32(&b, 3);
    u64(&b, 0);
    u64(&b, 2);
    str(&b, "general.file_type");
    u32(&b, 4);
    u32(&b, 1);
    str(&b, "general.file_type");
    u32(&b, 4);
    u32(&b, 1);
    expect_reject(&b, "duplicate key general.file_type");
    free(b.p);
    b = (struct buf){0};
    put(&b, "GGUF", 4);
    u32(&b, 3);
    u64(&b, 0);
    u64(&b, 1);
    str(&b, "general.alignment");
    u32(&b, 4);
    u32(&b, 48);
    expect_reject(&b, "power of two");
    free(b.p);
    b = (struct buf){0};
    put(&b, "GGUF", 4);
    u32(&b, 2); /* v2 is accepted */
    u64(&b, 0);
    u64(&b, 1);
    str(&b, "general.alignment");
    u32(&b, 5); /* i32: wrong type */
    u32(&b, 64);
    expect_reject(&b, "expected uint32");
    free(b.p);
}

/* Tensors of types we cannot convert: the parse succeeds (the f32 view can
 * still pass the file through) but views are refused with a reason. */
static void test_unconvertible(void **state)
{
    (void)state;
    struct tspec ts[] = {{"ok.weight", 2, {256, 2, 1, 1}, QF_F32},
                         {"ids", 1, {32, 1, 1, 1}, 26 /* i32, 1-D: kept as is */},
                         {"kept", 2, {256, 2, 1, 1}, QF_Q4_K /* not "*weight": copied */},
                         {"already.weight", 2, {256, 2, 1, 1}, QF_Q4_K}};
    struct buf b = make_gguf(ts, 3, false);
    struct qf_gguf *g;
    char err[256];
    size_t nv;
    const struct qf_view *q8 = &qf_views(&nv)[qf_view_index("q8_0")];
    struct qf_layout *l;
    assert_int_equal(parse_buf(&b, &g, err, sizeof err), 0);
    assert_int_equal(qf_layout_gguf(g, q8, NULL, NULL, &l, err, sizeof err), 0);
    assert_int_equal(qf_layout_tensor(l, "ids")->type, 26);
    assert_int_equal(qf_layout_tensor(l, "kept")->type, QF_Q4_K);
    assert_int_equal(qf_layout_tensor(l, "ok.weight")->type, QF_Q8_0);
    qf_layout_free(l);
    qf_gguf_free(g);
    free(b.p);
    b = make_gguf(ts, 4, false);
    assert_int_equal(parse_buf(&b, &g, err, sizeof err), 0);
    assert_int_equal(qf_layout_gguf(g, q8, NULL, NULL, &l, err, sizeof err), -ENOTSUP);
    assert_non_null(strstr(err, "tensor 'already.weight': requantizing from type q4_K is disabled"));
    qf_gguf_free(g);
    free(b.p);
}

/* Reads general.file_type / quantization_version from a produced header. */
static void read_kvs(const uint8_t *p, uint32_t *ftype, uint32_t *qver, int *n_ftype)
{
    uint64_t nkv;
    memcpy(&nkv, p + 16, 8);
    size_t o = 24;
    *n_ftype = 0;
    for (uint64_t i = 0; i < nkv; i++) {
        uint64_t kl;
        memcpy(&kl, p + o, 8);
        char key[128] = {0};
        memcpy(key, p + o + 8, kl < 127 ? kl : 127);
        o += 8 + kl;
        uint32_t t;
        memcpy(&t, p + o, 4);
        o += 4;
        if (t == 4) {
            uint32_t v;
            memcpy(&v, p + o, 4);
            if (!strcmp(key, "general.file_type"))
                *ftype = v, ++*n_ftype;
            if (!strcmp(key, "general.quantization_version"))
                *qver = v;
            o += 4;
        } else if (t == 8) {
            uint64_t sl;
            memcpy(&sl, p + o, 8);
            o += 8 + sl;
        } else if (t == 6) {
            o += 4;
        } else if (t == 9) {
            uint64_t n;
            memcpy(&n, p + o + 4, 8);
            o += 12;
            for (uint64_t k = 0; k < n; k++) {
                uint64_t sl;
                memcpy(&sl, p + o, 8);
                o += 8 + sl;
            }
        } else {
            fail_msg("unexpected kv type %u", t);
        }
    }
}

static void test_rewrite(void **state)
{
    (void)state;
    for (int with = 0; with < 2; with++) {
        struct buf b = make_gguf(basic, 4, with);
        struct qf_gguf *g;
        char err[256];
        assert_int_equal(parse_buf(&b, &g, err, sizeof err), 0);
        size_t nv;
        const struct qf_view *views = qf_views(&nv);
        struct tmem src = {b.p, b.n};
        for (size_t v = 1; v < nv; v++) {
            struct qf_layout *l;
            if (!qf_view_reachable(&views[v], QF_FMT_GGUF))
                continue;
            const struct qf_view *vw = qf_view_resolve(&views[v], QF_FMT_GGUF);
            assert_int_equal(qf_layout_gguf(g, vw, NULL, NULL, &l, err, sizeof err), 0);
            uint8_t *out = malloc(l->size);
            assert_int_equal(qf_layout_read(l, 0, l->size, out, tmem_pread, &src), 0);
            uint32_t ft = 999, qv = 999;
            int nft;
            read_kvs(out, &ft, &qv, &nft);
            assert_int_equal(nft, 1);
            assert_int_equal(ft, vw->ftype);
            assert_int_equal(qv, 2);
            struct tmem m = {out, l->size};
            struct qf_gguf *o;
            assert_int_equal(qf_gguf_parse(tmem_pread, &m, l->size, &o, err, sizeof err), 0);
            assert_int_equal(o->n_tensors, 4);
            /* llama-quantize's order: non-block tensors, then by layer and name */
            static const char *const order[] = {"token_embd.weight", "blk.0.attn_norm.weight", "blk.0.cube",
                                                "blk.0.ffn_down.weight"};
            for (int i = 0; i < 4; i++)
                assert_string_equal(o->tensors[i].name, order[i]);
            /* 1-D stays f32; so does a name not ending in "weight"; a
             * 40-wide row cannot take a 32-block type */
            bool flt = vw->gguf_type == QF_F16 || vw->gguf_type == QF_BF16;
            assert_int_equal(o->tensors[1].type, QF_F32);
            assert_int_equal(o->tensors[2].type, QF_F32);
            assert_int_equal(o->tensors[3].type, flt ? vw->gguf_type : QF_F16);
            assert_int_equal(qf_layout_tensor(l, "blk.0.ffn_down.weight")->fallback, !flt);
            /* every padding byte is zero and every extent is in order */
            for (size_t i = 0; i < l->n_ext; i++) {
                if (i)
                    assert_int_equal(l->ext[i].off, l->ext[i - 1].off + l->ext[i - 1].len);
                if (l->ext[i].kind == QF_EXT_ZERO)
                    for (uint64_t k = 0; k < l->ext[i].len; k++)
                        assert_int_equal(out[l->ext[i].off + k], 0);
            }
            /* reads at offsets 61 apart (a prime: they land all over the blocks) and lengths agree with the whole */
            uint8_t *part = malloc(l->size);
            for (uint64_t off = 0; off < l->size; off += 61) {
                uint64_t len = (off * 13) % 5000 + 1;
                if (len > l->size - off)
                    len = l->size - off;
                assert_int_equal(qf_layout_read(l, off, len, part, tmem_pread, &src), 0);
                assert_memory_equal(part, out + off, len);
            }
            free(part);
            qf_gguf_free(o);
            free(out);
            qf_layout_free(l);
        }
        qf_gguf_free(g);
        free(b.p);
    }
}

/* Random mutations of a valid file: parse either fails cleanly or yields a
 * file whose views can be laid out and read in full. */
static void test_mutation_fuzz(void **state)
{
    (void)state;
    struct buf b = make_gguf(basic, 4, true);
    uint64_t s = 12345;
    size_t nv;
    const struct qf_view *views = qf_views(&nv);
    for (int it = 0; it < 3000; it++) {
        uint8_t *p = malloc(b.n);
        memcpy(p, b.p, b.n);
        int flips = 1 + it % 4;
        for (int k = 0; k < flips; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(s >> 33) % 400; /* the header region */
            p[at] = (uint8_t)(s >> 16);
        }
        struct tmem m = {p, b.n};
        struct qf_gguf *g;
        char err[256];
        if (qf_gguf_parse(tmem_pread, &m, b.n, &g, err, sizeof err) == 0) {
            for (size_t v = 1; v < nv; v += 3) {
                struct qf_layout *l;
                if (qf_layout_gguf(g, &views[v], NULL, NULL, &l, err, sizeof err))
                    continue;
                if (l->size < (4u << 20)) { /* the real file is small; huge claimed sizes only cost time */
                    uint8_t *out = malloc(l->size + 1);
                    qf_layout_read(l, 0, l->size, out, tmem_pread, &m);
                    free(out);
                }
                qf_layout_free(l);
            }
            qf_gguf_free(g);
        } else {
            assert_true(err[0]);
        }
        free(p);
    }
    free(b.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),         cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_header_errors), cmocka_unit_test(test_kv_rules),
        cmocka_unit_test(test_unconvertible), cmocka_unit_test(test_rewrite),
        cmocka_unit_test(test_mutation_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
