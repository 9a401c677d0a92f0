/* test_limits.c — every resource limit of codec.h ("limits") crossed: a
 * file at the limit is accepted, one past it is refused with a message
 * naming the limit, before the memory it would cost is spent. Big files are
 * virtual: a buffer holds the header and every byte past it reads as zero. */
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

struct vfile {
    const uint8_t *p;
    size_t n; /* bytes held; the rest of the file reads as zeros */
};

static int vread(void *ctx, void *buf, size_t len, uint64_t off)
{
    const struct vfile *v = ctx;
    size_t have = off < v->n ? v->n - (size_t)off : 0;
    if (have > len)
        have = len;
    if (have)
        memcpy(buf, v->p + off, have);
    memset((uint8_t *)buf + have, 0, len - have);
    return 0;
}


/* A GGUF v3 header: n_kv string keys (no value bytes beyond the header
 * unless big_len), then n_t tensors of one f32 each named by name_len. */
static struct buf gguf(uint64_t n_t, uint64_t n_kv, uint64_t big_len, size_t name_len)
{
    struct buf b = {0};
    u32(&b, 0x46554747);
    u32(&b, 3);
    u64(&b, n_t);
    u64(&b, n_kv + (big_len ? 1 : 0));
    char k[64];
    for (uint64_t i = 0; i < n_kv; i++) {
        snprintf(k, sizeof k, "k.%llu", (unsigned long long)i);
        str(&b, k);
        u32(&b, 4); /* QF_GT_U32 */
        u32(&b, 7);
    }
    if (big_len) { /* one string value of big_len bytes, past the buffer */
        str(&b, "big");
        u32(&b, 8);
        u64(&b, big_len);
    }
    char *name = malloc(name_len + 32);
    for (uint64_t i = 0; i < n_t; i++) {
        snprintf(name, name_len + 32, "%0*llu", (int)name_len, (unsigned long long)i);
        str(&b, name);
        u32(&b, 1);
        u64(&b, 1);
        u32(&b, QF_F32);
        u64(&b, i * 32);
    }
    free(name);
    return b;
}

static int parse_gguf(struct buf *b, uint64_t file_size, char *err)
{
    struct vfile v = {b->p, b->n};
    struct qf_gguf *g = NULL;
    int rc = qf_gguf_parse(vread, &v, file_size, &g, err, 256);
    qf_gguf_free(g);
    return rc;
}

static void expect_msg(int rc, const char *err, const char *needle)
{
    if (rc == 0)
        fail_msg("accepted (expected an error naming '%s')", needle);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not name '%s'", err, needle);
}

static void test_gguf_tensor_count(void **state)
{
    (void)state;
    char err[256] = "";
    for (int over = 0; over < 2; over++) {
        struct buf b = gguf(QF_MAX_TENSORS + over, 0, 0, 8);
        uint64_t size = b.n + 32 + (uint64_t)(QF_MAX_TENSORS + over) * 32;
        int rc = parse_gguf(&b, size, err);
        if (over)
            expect_msg(rc, err, "limit of 131072");
        else if (rc)
            fail_msg("%u tensors refused: %s", QF_MAX_TENSORS, err);
        free(b.p);
    }
}

static void test_gguf_name_length(void **state)
{
    (void)state;
    char err[256] = "";
    struct buf b = gguf(1, 0, 0, QF_GGUF_MAX_NAME);
    assert_int_equal(parse_gguf(&b, b.n + 64, err), 0);
    free(b.p);
    b = gguf(1, 0, 0, QF_GGUF_MAX_NAME + 1);
    expect_msg(parse_gguf(&b, b.n + 64, err), err, "limit is 63");
    free(b.p);
}

static void test_gguf_metadata_bytes(void **state)
{
    (void)state;
    char err[256] = "";
    /* a string value: the KV section ends 23 bytes past its bytes */
    uint64_t at = QF_GGUF_MAX_META - 24 - 64;
    struct buf b = gguf(0, 0, at, 0);
    assert_int_equal(parse_gguf(&b, b.n + at + 64, err), 0);
    free(b.p);
    b = gguf(0, 0, QF_GGUF_MAX_META, 0);
    int rc = parse_gguf(&b, b.n + QF_GGUF_MAX_META + 64, err);
    expect_msg(rc, err, "limit of 256 MiB");
    assert_int_equal(rc, -EFBIG);
    free(b.p);
}

static void test_gguf_many_keys_and_duplicates(void **state)
{
    (void)state;
    char err[256] = "";
    struct buf b = gguf(0, QF_GGUF_MAX_KV, 0, 0);
    assert_int_equal(parse_gguf(&b, b.n, err), 0); /* sorted: fast */
    /* the last key made equal to the first */
    memcpy(b.p + b.n - 4 - 4 - 7, "k.0\0\0\0\0", 7);
    free(b.p);
    b = gguf(0, 3, 0, 0);
    /* "k.2" -> "k.0" */
    uint8_t *p = memmem(b.p, b.n, "k.2", 3);
    p[2] = '0';
    expect_msg(parse_gguf(&b, b.n, err), err, "duplicate key k.0");
    free(b.p);
    b = gguf(0, QF_GGUF_MAX_KV + 1, 0, 0);
    expect_msg(parse_gguf(&b, b.n, err), err, "limit of 65536");
    free(b.p);
}

static void test_gguf_element_count(void **state)
{
    (void)state;
    struct buf b = {0};
    u32(&b, 0x46554747);
    u32(&b, 3);
    u64(&b, 1);
    u64(&b, 0);
    str(&b, "t");
    u32(&b, 3);
    u64(&b, 1u << 24);
    u64(&b, 1u << 24);
    u64(&b, 2); /* 2^49 elements */
    u32(&b, QF_F32);
    u64(&b, 0);
    char err[256] = "";
    expect_msg(parse_gguf(&b, b.n + 64, err), err, "limit of 2^48 elements");
    /* 2^48 exactly is within the limit: refused only as not in the file */
    memcpy(b.p + b.n - 4 - 8 - 8, "\1\0\0\0\0\0\0\0", 8);
    expect_msg(parse_gguf(&b, b.n + 64, err), err, "beyond the end of the file");
    free(b.p);
}

/* A safetensors header of n one-byte U8 tensors with names of name_len. */
static struct buf st_file(size_t n, size_t name_len, const char *extra)
{
    struct buf j = {0};
    put(&j, "{", 1);
    char *e = malloc(name_len + 128);
    for (size_t i = 0; i < n; i++) {
        int k = snprintf(e, name_len + 128, "%s\"%0*zu\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%zu,%zu]}",
                         i ? "," : "", (int)name_len, i, i, i + 1);
        put(&j, e, (size_t)k);
    }
    free(e);
    if (extra)
        put(&j, extra, strlen(extra));
    put(&j, "}", 1);
    struct buf b = {0};
    u64(&b, j.n);
    put(&b, j.p, j.n);
    for (size_t i = 0; i < n; i++)
        put(&b, "\x5a", 1);
    free(j.p);
    return b;
}

static int parse_st(struct buf *b, uint64_t size, char *err, struct qf_st **out)
{
    struct vfile v = {b->p, b->n};
    struct qf_st *st = NULL;
    int rc = qf_st_parse(vread, &v, size, &st, err, 256);
    if (out)
        *out = st;
    else
        qf_st_free(st);
    return rc;
}

static void test_st_tensor_count(void **state)
{
    (void)state;
    char err[256] = "";
    struct buf b = st_file(QF_MAX_TENSORS, 6, NULL);
    if (parse_st(&b, b.n, err, NULL))
        fail_msg("%u tensors refused: %s", QF_MAX_TENSORS, err);
    free(b.p);
    b = st_file(QF_MAX_TENSORS + 1, 6, NULL);
    expect_msg(parse_st(&b, b.n, err, NULL), err, "limit of 131072");
    free(b.p);
}

static void test_st_header_size(void **state)
{
    (void)state;
    char err[256] = "";
    struct buf b = {0};
    u64(&b, QF_ST_MAX_HEADER + 1);
    int rc = parse_st(&b, QF_ST_MAX_HEADER + 1024, err, NULL);
    expect_msg(rc, err, "limit of 100 MiB");
    assert_int_equal(rc, -EFBIG);
    free(b.p);
}

static void test_st_values_and_depth(void **state)
{
    (void)state;
    char err[256] = "";
    /* a shape of millions of dimensions, refused before jansson builds it */
    size_t n = QF_ST_MAX_VALUES;
    char *extra = malloc(n * 2 + 64);
    char *p = extra + sprintf(extra, ",\"x\":{\"dtype\":\"U8\",\"shape\":[1");
    for (size_t i = 1; i < n; i++)
        p += sprintf(p, ",1");
    sprintf(p, "],\"data_offsets\":[1,2]}");
    struct buf b = st_file(1, 2, extra);
    expect_msg(parse_st(&b, b.n, err, NULL), err, "JSON values");
    free(b.p);
    free(extra);
    char deep[256] = ",\"__metadata__\":";
    for (int i = 0; i < QF_JSON_MAX_DEPTH; i++)
        strcat(deep, "[");
    b = st_file(1, 2, deep);
    expect_msg(parse_st(&b, b.n, err, NULL), err, "nested deeper");
    free(b.p);
}

static bool have_none(void *arg, const char *shard)
{
    (void)arg, (void)shard;
    return false;
}

static bool have_all(void *arg, const char *shard)
{
    (void)arg, (void)shard;
    return true;
}

static void test_json_check_counts(void **state)
{
    (void)state;
    char err[256];
    /* strings with quotes, colons, commas and brackets count once */
    const char *t = "{\"a\\\"b,:[{\": [1, \"x,y\", true, null, {\"k\": -2.5e3}], \"c\": {}}";
    /* values: the root, a-key, array, 1, "x,y", true, null, object, k-key,
     * -2.5e3, c-key, {} = 12, of which 4 containers */
    assert_int_equal(qf_json_check(t, strlen(t), "t", 12, 4, err, sizeof err), 0);
    expect_msg(qf_json_check(t, strlen(t), "t", 11, 4, err, sizeof err), err, "limit of 11 JSON values");
    expect_msg(qf_json_check(t, strlen(t), "t", 12, 3, err, sizeof err), err, "limit of 3 JSON objects");
    char deep[QF_JSON_MAX_DEPTH * 2 + 2];
    memset(deep, '[', QF_JSON_MAX_DEPTH);
    memset(deep + QF_JSON_MAX_DEPTH, ']', QF_JSON_MAX_DEPTH);
    assert_int_equal(qf_json_check(deep, QF_JSON_MAX_DEPTH * 2, "d", 1000, 1000, err, sizeof err), 0);
    deep[QF_JSON_MAX_DEPTH] = '[';
    expect_msg(qf_json_check(deep, QF_JSON_MAX_DEPTH * 2, "d", 1000, 1000, err, sizeof err), err, "nested deeper");
}

/* The scanner's config.json and index go through the same bounds: the
 * issue's 62 MB config.json of 31 M values is refused by its value count
 * before jansson builds anything (it took the daemon to 2.18 GB). */
static void test_scanner_json(void **state)
{
    (void)state;
    char err[256], arch[64];
    const char *ok = "{\"architectures\": [\"Qwen3ForCausalLM\"], \"hidden_size\": 8}";
    assert_int_equal(qf_hf_config_arch(ok, strlen(ok), arch, sizeof arch, err, sizeof err), 0);
    assert_string_equal(arch, "Qwen3ForCausalLM");
    assert_int_equal(qf_hf_config_arch("{}", 2, arch, sizeof arch, err, sizeof err), 0);
    assert_string_equal(arch, "");
    expect_msg(qf_hf_config_arch("[1]", 3, arch, sizeof arch, err, sizeof err), err, "not a JSON object");
    size_t n = QF_JSON_MAX_VALUES + 1, len = 16 + 2 * n;
    char *big = malloc(len);
    assert_non_null(big);
    size_t k = (size_t)sprintf(big, "{\"pad\": [");
    for (size_t i = 0; i < n; i++)
        big[k++] = '0', big[k++] = ',';
    big[k - 1] = ']';
    big[k++] = '}';
    expect_msg(qf_hf_config_arch(big, k, arch, sizeof arch, err, sizeof err), err, "JSON values");
    free(big);
    expect_msg(qf_hf_config_arch("{}", QF_JSON_MAX_BYTES + 1, arch, sizeof arch, err, sizeof err), err, "limit");
    const char *idx = "{\"weight_map\": {\"a.weight\": \"x.safetensors\"}}";
    expect_msg(qf_st_index_check(idx, strlen(idx), have_none, NULL, err, sizeof err), err, "'x.safetensors', which is missing");
    assert_int_equal(qf_st_index_check(idx, strlen(idx), have_all, NULL, err, sizeof err), 0);
    expect_msg(qf_st_index_check("{}", 2, have_all, NULL, err, sizeof err), err, "no weight_map");
}

static const struct qf_view *view(const char *name)
{
    size_t n;
    const struct qf_view *v = qf_views(&n);
    int i = qf_view_index(name);
    assert_true(i >= 0 && (size_t)i < n);
    return &v[i];
}

/* A Linear weight [2, cols] of BF16 in a file of its own. */
static struct buf st_linear(const char *name, uint64_t cols)
{
    char j[2048];
    int k = snprintf(j, sizeof j, "{\"%s\":{\"dtype\":\"BF16\",\"shape\":[2,%llu],\"data_offsets\":[0,%llu]}}", name,
                     (unsigned long long)cols, (unsigned long long)(4 * cols));
    struct buf b = {0};
    u64(&b, (uint64_t)k);
    put(&b, j, (size_t)k);
    return b;
}

static void test_row_width(void **state)
{
    (void)state;
    char err[256] = "";
    const char *views[] = {"int8", "int4", "fp8"};
    for (int over = 0; over < 2; over++) {
        uint64_t cols = QF_MAX_ROW + (uint64_t)over * 128;
        struct buf b = st_linear("model.layers.0.mlp.down_proj.weight", cols);
        struct qf_st *st = NULL;
        assert_int_equal(parse_st(&b, b.n + 4 * cols, err, &st), 0);
        for (int i = 0; i < 3; i++) {
            struct qf_layout *l = NULL;
            int rc = qf_layout_safetensors(st, view(views[i]), &l, err, sizeof err);
            if (over)
                expect_msg(rc, err, "limit of 131072");
            else if (rc)
                fail_msg("%s refused rows of %u: %s", views[i], QF_MAX_ROW, err);
            qf_layout_free(l);
        }
        /* float views have no row buffer: never refused for width */
        struct qf_layout *l = NULL;
        assert_int_equal(qf_layout_safetensors(st, view("fp16"), &l, err, sizeof err), 0);
        qf_layout_free(l);
        qf_st_free(st);
        free(b.p);
    }
}

/* A name of QF_ST_MAX_NAME bytes keeps every byte in a quantized view's
 * header (it used to be cut at 511), one byte more is refused. */
static void test_st_name_length(void **state)
{
    (void)state;
    char err[256] = "";
    char name[QF_ST_MAX_NAME + 2];
    size_t stem = QF_ST_MAX_NAME - strlen(".weight");
    memset(name, 'a', stem);
    strcpy(name + stem, ".weight");
    struct buf b = st_linear(name, 256);
    struct qf_st *st = NULL;
    assert_int_equal(parse_st(&b, b.n + 4 * 256, err, &st), 0);
    struct qf_layout *l = NULL;
    assert_int_equal(qf_layout_safetensors(st, view("int8"), &l, err, sizeof err), 0);
    uint8_t *hdr = malloc(l->size);
    struct vfile v = {b.p, b.n};
    assert_int_equal(qf_layout_read(l, 0, (size_t)l->size, hdr, vread, &v), 0);
    char want[QF_ST_MAX_NAME + 32];
    snprintf(want, sizeof want, "\"%.*sweight_scale\"", (int)(stem + 1), name);
    assert_non_null(memmem(hdr, l->size, want, strlen(want)));
    free(hdr);
    qf_layout_free(l);
    qf_st_free(st);
    free(b.p);
    memset(name, 'a', stem + 1);
    strcpy(name + stem + 1, ".weight");
    b = st_linear(name, 256);
    expect_msg(parse_st(&b, b.n + 4 * 256, err, NULL), err, "limit of 1024");
    free(b.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_tensor_count),   cmocka_unit_test(test_gguf_name_length),
        cmocka_unit_test(test_gguf_metadata_bytes), cmocka_unit_test(test_gguf_many_keys_and_duplicates),
        cmocka_unit_test(test_gguf_element_count),  cmocka_unit_test(test_st_tensor_count),
        cmocka_unit_test(test_st_header_size),      cmocka_unit_test(test_st_values_and_depth),
        cmocka_unit_test(test_json_check_counts),   cmocka_unit_test(test_row_width),
        cmocka_unit_test(test_st_name_length),      cmocka_unit_test(test_scanner_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
