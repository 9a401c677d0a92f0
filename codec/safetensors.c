/* safetensors.c — parse safetensors headers, plan and lay out views, rewrite
 * config.json and model.safetensors.index.json. JSON goes through jansson
 * (the one library codec/ uses: the format is JSON).
 *
 * Format (huggingface/safetensors README): u64 little-endian N, N bytes of
 * JSON { "__metadata__": {str: str}, NAME: {"dtype", "shape", "data_offsets":
 * [begin, end]} ... }, then the data; offsets are relative to the data start
 * and must cover it exactly. Conventions of the quantized views: FORMATS.md.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "quant_impl.h"


static const struct {
    const char *name;
    uint32_t size;
    uint32_t qf; /* qf_type for float dtypes we read, else UINT32_MAX */
} dtypes[QF_STD_COUNT] = {
    [QF_STD_F64] = {"F64", 8, UINT32_MAX},     [QF_STD_F32] = {"F32", 4, QF_F32},
    [QF_STD_F16] = {"F16", 2, QF_F16},         [QF_STD_BF16] = {"BF16", 2, QF_BF16},
    [QF_STD_I64] = {"I64", 8, UINT32_MAX},     [QF_STD_I32] = {"I32", 4, UINT32_MAX},
    [QF_STD_I16] = {"I16", 2, UINT32_MAX},     [QF_STD_I8] = {"I8", 1, UINT32_MAX},
    [QF_STD_U8] = {"U8", 1, UINT32_MAX},       [QF_STD_BOOL] = {"BOOL", 1, UINT32_MAX},
    [QF_STD_F8_E4M3] = {"F8_E4M3", 1, UINT32_MAX}, [QF_STD_F8_E5M2] = {"F8_E5M2", 1, UINT32_MAX},
    [QF_STD_U16] = {"U16", 2, UINT32_MAX},     [QF_STD_U32] = {"U32", 4, UINT32_MAX},
    [QF_STD_U64] = {"U64", 8, UINT32_MAX},
};

const char *qf_st_dtype_name(uint32_t d) { return d < QF_STD_COUNT ? dtypes[d].name : "?"; }

void qf_st_free(struct qf_st *st)
{
    if (!st)
        return;
    free(st->tensors);
    free(st->strpool);
    free(st->metadata);
    free(st);
}

static int cmp_offset(const void *a, const void *b)
{
    const struct qf_st_tensor *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset ? 1 : (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

static int parse_tensor(const char *name, json_t *v, uint64_t data_len, struct qf_st_tensor *t, char *err, size_t n)
{
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!json_is_object(v) || !json_is_string(dt) || !json_is_array(shape) || !json_is_array(offs) ||
        json_array_size(offs) != 2)
        return qf_fail(err, n, -EINVAL, "tensor '%s': needs dtype, shape and data_offsets [begin, end]", name);
    t->dtype = QF_STD_COUNT;
    for (uint32_t d = 0; d < QF_STD_COUNT; d++)
        if (!strcmp(json_string_value(dt), dtypes[d].name))
            t->dtype = d;
    if (t->dtype == QF_STD_COUNT)
        return qf_fail(err, n, -EINVAL, "tensor '%s': unknown dtype '%s'", name, json_string_value(dt));
    if (json_array_size(shape) > QF_ST_MAX_DIMS)
        return qf_fail(err, n, -EINVAL, "tensor '%s': %zu dimensions", name, json_array_size(shape));
    t->n_dims = (uint32_t)json_array_size(shape);
    t->nelems = 1;
    for (uint32_t i = 0; i < t->n_dims; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return qf_fail(err, n, -EINVAL, "tensor '%s': shape must be non-negative integers", name);
        t->shape[i] = (uint64_t)json_integer_value(d);
        if (t->shape[i] && t->nelems > QF_MAX_ELEMS / t->shape[i])
            return qf_fail(err, n, -EINVAL, "tensor '%s': more than quantfs' limit of 2^48 elements", name);
        t->nelems *= t->shape[i];
    }
    t->nbytes = t->nelems * dtypes[t->dtype].size;
    json_t *b = json_array_get(offs, 0), *e = json_array_get(offs, 1);
    if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
        json_integer_value(e) < json_integer_value(b))
        return qf_fail(err, n, -EINVAL, "tensor '%s': bad data_offsets", name);
    uint64_t begin = (uint64_t)json_integer_value(b), end = (uint64_t)json_integer_value(e);
    if (end > data_len)
        return qf_fail(err, n, -EINVAL, "tensor '%s': data_offsets [%llu, %llu] out of range (data is %llu bytes)", name,
                    (unsigned long long)begin, (unsigned long long)end, (unsigned long long)data_len);
    if (end - begin != t->nbytes)
        return qf_fail(err, n, -EINVAL, "tensor '%s': %llu bytes for shape x %s = %llu", name,
                    (unsigned long long)(end - begin), dtypes[t->dtype].name, (unsigned long long)t->nbytes);
    t->offset = begin;
    return 0;
}

int qf_st_parse(qf_pread_fn rd, void *rdctx, uint64_t file_size, struct qf_st **out, char *err, size_t errlen)
{
    *out = NULL;
    uint8_t lenb[8];
    if (file_size < 8)
        return qf_fail(err, errlen, -EINVAL, "truncated: %llu bytes, no header length", (unsigned long long)file_size);
    int rc = rd(rdctx, lenb, 8, 0);
    if (rc)
        return qf_fail(err, errlen, rc, "read error: %s", strerror(-rc));
    uint64_t hlen = qf_get64(lenb);
    if (hlen > file_size - 8)
        return qf_fail(err, errlen, -EINVAL, "header length %llu exceeds the file (%llu bytes)", (unsigned long long)hlen,
                    (unsigned long long)file_size);
    if (hlen > QF_ST_MAX_HEADER)
        return qf_fail(err, errlen, -EFBIG, "header of %llu bytes exceeds the limit of %llu MiB",
                       (unsigned long long)hlen, (unsigned long long)(QF_ST_MAX_HEADER >> 20));
    char *text = malloc(hlen + 1);
    struct qf_st *st = calloc(1, sizeof *st);
    json_t *root = NULL;
    if (!text || !st) {
        rc = qf_fail(err, errlen, -ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = rd(rdctx, text, hlen, 8))) {
        rc = qf_fail(err, errlen, rc, "read error: %s", strerror(-rc));
        goto out;
    }
    text[hlen] = 0;
    if ((rc = qf_json_check(text, hlen, "header", QF_ST_MAX_VALUES, QF_ST_MAX_CONTAINERS, err, errlen)))
        goto out;
    json_error_t je;
    root = json_loadb(text, hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        rc = qf_fail(err, errlen, -EINVAL, "header is not valid JSON: %s (at byte %d)", je.text, je.position);
        goto out;
    }
    if (!json_is_object(root)) {
        rc = qf_fail(err, errlen, -EINVAL, "header is not a JSON object");
        goto out;
    }
    st->file_size = file_size;
    st->header_len = hlen;
    st->data_begin = 8 + hlen;
    uint64_t data_len = file_size - st->data_begin;
    size_t n = json_object_size(root), pool = 0;
    const char *key;
    json_t *v;
    size_t nt = n - (json_object_get(root, "__metadata__") != NULL);
    if (nt > QF_MAX_TENSORS) {
        rc = qf_fail(err, errlen, -EINVAL, "%zu tensors exceed quantfs' limit of %u per file", nt, QF_MAX_TENSORS);
        goto out;
    }
    json_object_foreach(root, key, v)
    {
        if (strlen(key) > QF_ST_MAX_NAME) {
            rc = qf_fail(err, errlen, -EINVAL, "a tensor name of %zu bytes exceeds quantfs' limit of %u",
                         strlen(key), QF_ST_MAX_NAME);
            goto out;
        }
        pool += strlen(key) + 1;
    }
    st->tensors = calloc(n ? n : 1, sizeof *st->tensors);
    st->strpool = malloc(pool ? pool : 1);
    if (!st->tensors || !st->strpool) {
        rc = qf_fail(err, errlen, -ENOMEM, "out of memory");
        goto out;
    }
    char *p = st->strpool;
    json_object_foreach(root, key, v)
    {
        if (!strcmp(key, "__metadata__")) {
            const char *mk;
            json_t *mv;
            if (!json_is_object(v)) {
                rc = qf_fail(err, errlen, -EINVAL, "__metadata__ is not an object");
                goto out;
            }
            json_object_foreach(v, mk, mv) if (!json_is_string(mv))
            {
                rc = qf_fail(err, errlen, -EINVAL, "__metadata__ value of '%s' is not a string", mk);
                goto out;
            }
            st->metadata = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
            continue;
        }
        struct qf_st_tensor *t = &st->tensors[st->n_tensors];
        if ((rc = parse_tensor(key, v, data_len, t, err, errlen)))
            goto out;
        strcpy(p, key);
        t->name = p;
        p += strlen(key) + 1;
        st->n_tensors++;
    }
    qsort(st->tensors, st->n_tensors, sizeof *st->tensors, cmp_offset);
    uint64_t at = 0;
    for (size_t i = 0; i < st->n_tensors; i++) {
        struct qf_st_tensor *t = &st->tensors[i];
        if (t->offset < at) {
            rc = qf_fail(err, errlen, -EINVAL, "tensor '%s' overlaps '%s'", t->name, st->tensors[i - 1].name);
            goto out;
        }
        if (t->offset > at) {
            rc = qf_fail(err, errlen, -EINVAL, "hole in the data before tensor '%s' (bytes %llu..%llu)", t->name,
                      (unsigned long long)at, (unsigned long long)t->offset);
            goto out;
        }
        at = t->offset + t->nbytes;
        t->offset += st->data_begin;
    }
    if (at != data_len) {
        rc = qf_fail(err, errlen, -EINVAL, "data is %llu bytes, tensors cover %llu", (unsigned long long)data_len,
                  (unsigned long long)at);
        goto out;
    }
    *out = st;
    st = NULL;
out:
    json_decref(root);
    free(text);
    qf_st_free(st);
    return rc;
}

/* ----------------------------------------------------------------- plan */

static bool contains(const char *s, const char *w) { return strstr(s, w) != NULL; }

static bool ends(const char *s, size_t n, const char *suf)
{
    size_t k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

bool qf_st_is_linear_weight(const struct qf_st_tensor *t)
{
    size_t n = strlen(t->name);
    /* MoE routers stay in float: transformers 5 holds them as plain
     * parameters (its FP8 and compressed-tensors loaders only replace
     * Linear modules: a quantized router is an unexpected key), vLLM builds
     * them without a quant config */
    bool router = ends(t->name, n, ".mlp.gate.weight") || ends(t->name, n, ".block_sparse_moe.gate.weight") ||
                  ends(t->name, n, ".shared_expert_gate.weight");
    return t->n_dims == 2 && dtypes[t->dtype].qf != UINT32_MAX && ends(t->name, n, ".weight") && !router &&
           t->shape[0] && t->shape[1] && !contains(t->name, "embed") && !contains(t->name, "norm") &&
           !contains(t->name, "lm_head") && !contains(t->name, ".wte.") && !contains(t->name, ".wpe.");
}

enum qf_st_action qf_st_plan(const struct qf_view *v, const struct qf_st_tensor *t, uint32_t *float_dtype)
{
    uint32_t src = dtypes[t->dtype].qf;
    bool quant = !strcmp(v->name, "int8") || !strcmp(v->name, "int4") || !strcmp(v->name, "fp8");
    *float_dtype = QF_BF16;
    if (!strcmp(v->name, "fp16"))
        *float_dtype = QF_F16;
    if (src == UINT32_MAX || (v->gguf_type == QF_F32 && !quant))
        return QF_STA_COPY;
    if (quant && qf_st_is_linear_weight(t)) {
        if (!strcmp(v->name, "int8"))
            return QF_STA_INT8;
        if (!strcmp(v->name, "fp8"))
            return QF_STA_FP8;
        return t->shape[1] % 128 ? QF_STA_INT4_CH : QF_STA_INT4;
    }
    return src == *float_dtype ? QF_STA_COPY : QF_STA_FLOAT;
}

/* --------------------------------------------------------------- layout */

struct out_tensor {
    /* name: stem_len bytes of the source name, then suffix (out_name) */
    const char *stem;
    size_t stem_len;
    const char *suffix;
    const char *dtype;
    uint32_t n_dims;
    uint64_t shape[QF_ST_MAX_DIMS];
    struct qf_extent ext; /* data: SRC, CONV or MEM (weight_shape) */
    uint8_t inline_bytes[16];
};

#define OUT_NAME_MAX (QF_ST_MAX_NAME + 32) /* a source name + the longest suffix */
static const char *out_name(const struct out_tensor *o, char buf[OUT_NAME_MAX])
{
    snprintf(buf, OUT_NAME_MAX, "%.*s%s", (int)o->stem_len, o->stem, o->suffix);
    return buf;
}

/* One converted output tensor: name stem + suffix, computed from conv. */
static void out_conv(struct out_tensor *o, const char *suffix, const char *dtype, const struct qf_extent *conv,
                     uint32_t kind, uint64_t len)
{
    o->suffix = suffix;
    o->dtype = dtype;
    o->ext = *conv;
    o->ext.dst_type = kind;
    o->ext.len = len;
}

/* Output tensors of one source tensor in a view (1 to 3). */
static size_t expand(const struct qf_view *v, const struct qf_st_tensor *t, struct out_tensor *o)
{
    uint32_t fd;
    enum qf_st_action a = qf_st_plan(v, t, &fd);
    uint32_t src = dtypes[t->dtype].qf;
    uint64_t rows = t->n_dims == 2 ? t->shape[0] : 0, cols = t->n_dims == 2 ? t->shape[1] : 0;
    uint64_t stem = strlen(t->name) - (a >= QF_STA_INT8 ? strlen("weight") : 0);
    memset(o, 0, 3 * sizeof *o);
    for (int i = 0; i < 3; i++) {
        o[i].stem = t->name;
        o[i].stem_len = stem;
        o[i].suffix = "";
        o[i].n_dims = t->n_dims;
        memcpy(o[i].shape, t->shape, sizeof t->shape);
    }
    struct qf_extent conv = {.kind = QF_EXT_CONV, .src_type = src, .src_off = t->offset, .n_elems = t->nelems,
                             .row_len = cols};
    uint64_t chunk_rows = cols ? (QF_CHUNK_ELEMS / cols ? QF_CHUNK_ELEMS / cols : 1) : 0;
    switch (a) {
    case QF_STA_COPY:
        o[0].dtype = dtypes[t->dtype].name;
        o[0].ext = (struct qf_extent){.kind = QF_EXT_SRC, .len = t->nbytes, .src_off = t->offset};
        return 1;
    case QF_STA_FLOAT:
        o[0].dtype = fd == QF_F16 ? "F16" : "BF16";
        o[0].ext = conv;
        o[0].ext.dst_type = fd;
        o[0].ext.row_len = 0;
        o[0].ext.chunk_elems = QF_CHUNK_ELEMS;
        o[0].ext.len = t->nelems * 2;
        return 1;
    case QF_STA_INT8:
    case QF_STA_INT4:
    case QF_STA_INT4_CH: {
        bool i8 = a == QF_STA_INT8;
        uint32_t group = a == QF_STA_INT4 ? 128 : (uint32_t)cols, per_word = i8 ? 4 : 8;
        conv.chunk_elems = chunk_rows * cols;
        conv.group = group;
        o[0].shape[1] = (cols + per_word - 1) / per_word;
        out_conv(&o[0], "weight_packed", "I32", &conv, i8 ? QF_ST_I8 : QF_ST_I4, rows * o[0].shape[1] * 4);
        o[1].shape[1] = cols / group;
        out_conv(&o[1], "weight_scale", "BF16", &conv, i8 ? QF_ST_I8_SCALE : QF_ST_I4_SCALE, rows * o[1].shape[1] * 2);
        o[2].suffix = "weight_shape";
        o[2].dtype = "I64";
        o[2].n_dims = 1;
        o[2].shape[0] = 2;
        qf_put64(o[2].inline_bytes, rows);
        qf_put64(o[2].inline_bytes + 8, cols);
        o[2].ext = (struct qf_extent){.kind = QF_EXT_MEM, .len = 16};
        return 3;
    }
    case QF_STA_FP8:
        conv.chunk_elems = (chunk_rows + 127) / 128 * 128 * cols;
        out_conv(&o[0], "weight", "F8_E4M3", &conv, QF_ST_FP8, rows * cols);
        o[1].shape[0] = (rows + 127) / 128;
        o[1].shape[1] = (cols + 127) / 128;
        out_conv(&o[1], "weight_scale_inv", "F32", &conv, QF_ST_FP8_SCALE_INV, o[1].shape[0] * o[1].shape[1] * 4);
        return 2;
    }
    return 0;
}

/* The rewritten __metadata__: the source's, with "format": "pt", which
 * transformers requires to load the file as PyTorch weights (a source's
 * "tf" or "flax" would send it down another loader; the tensors quantfs
 * writes are PyTorch's). */
static json_t *out_metadata(const struct qf_st *st)
{
    json_t *m = st->metadata ? json_loads(st->metadata, 0, NULL) : NULL;
    if (!m)
        m = json_object();
    json_object_set_new(m, "format", json_string("pt"));
    return m;
}

/* A row-wise quantized tensor is converted whole rows (fp8: 128-row bands)
 * at a time; QF_MAX_ROW bounds that buffer. */
static int check_rows(const struct qf_st *st, const struct qf_view *v, char *err, size_t errlen)
{
    for (size_t i = 0; i < st->n_tensors; i++) {
        uint32_t fd;
        const struct qf_st_tensor *t = &st->tensors[i];
        if (qf_st_plan(v, t, &fd) >= QF_STA_INT8 && t->shape[1] > QF_MAX_ROW)
            return qf_fail(err, errlen, -EINVAL, "tensor '%s': rows of %llu values exceed quantfs' limit of %u for %s",
                           t->name, (unsigned long long)t->shape[1], QF_MAX_ROW, v->name);
    }
    return 0;
}

int qf_layout_safetensors(const struct qf_st *st, const struct qf_view *v, struct qf_layout **out, char *err,
                          size_t errlen)
{
    *out = NULL;
    int rc0 = check_rows(st, v, err, errlen);
    if (rc0)
        return rc0;
    struct out_tensor *ot = malloc((st->n_tensors * 3 + 1) * sizeof *ot);
    struct qf_layout *l = calloc(1, sizeof *l);
    json_t *hdr = json_object();
    char *text = NULL;
    int rc = -ENOMEM;
    if (!ot || !l || !hdr)
        goto out;
    size_t n = 0;
    for (size_t i = 0; i < st->n_tensors; i++)
        n += expand(v, &st->tensors[i], ot + n);
    json_object_set_new(hdr, "__metadata__", out_metadata(st));
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *shape = json_array();
        for (uint32_t d = 0; d < ot[i].n_dims; d++)
            json_array_append_new(shape, json_integer((json_int_t)ot[i].shape[d]));
        char nm[OUT_NAME_MAX];
        json_object_set_new(hdr, out_name(&ot[i], nm),
                            json_pack("{s:s,s:o,s:[I,I]}", "dtype", ot[i].dtype, "shape", shape, "data_offsets",
                                      (json_int_t)at, (json_int_t)(at + ot[i].ext.len)));
        at += ot[i].ext.len;
    }
    text = json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text)
        goto out;
    /* header padded with spaces to a multiple of 8, as the library writes */
    size_t tl = strlen(text), hl = (tl + 7) / 8 * 8, inl = 0;
    for (size_t i = 0; i < n; i++)
        inl += ot[i].ext.kind == QF_EXT_MEM ? 16 : 0;
    l->mem = malloc(8 + hl + inl);
    l->ext = malloc((n + 1) * sizeof *l->ext);
    if (!l->mem || !l->ext)
        goto out;
    qf_put64(l->mem, hl);
    memcpy(l->mem + 8, text, tl);
    memset(l->mem + 8 + tl, ' ', hl - tl);
    l->mem_len = 8 + hl + inl;
    l->ext[l->n_ext++] = (struct qf_extent){.kind = QF_EXT_MEM, .off = 0, .len = 8 + hl, .mem = l->mem};
    l->size = 8 + hl;
    uint8_t *inl_at = l->mem + 8 + hl;
    for (size_t i = 0; i < n; i++) {
        struct qf_extent e = ot[i].ext;
        if (e.kind == QF_EXT_MEM) {
            memcpy(inl_at, ot[i].inline_bytes, 16);
            e.mem = inl_at;
            inl_at += 16;
        }
        if (!e.len)
            continue;
        e.off = l->size;
        l->ext[l->n_ext++] = e;
        l->size += e.len;
    }
    *out = l;
    l = NULL;
    rc = 0;
out:
    if (rc)
        qf_fail(err, errlen, rc, "out of memory");
    free(text);
    json_decref(hdr);
    free(ot);
    qf_layout_free(l);
    return rc;
}

/* ------------------------------------------------------------ JSON files */

static char *dump(json_t *j, char *err, size_t errlen)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    if (!s) {
        qf_fail(err, errlen, -ENOMEM, "out of memory");
        return NULL;
    }
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return NULL;
    }
    t[n] = '\n';
    t[n + 1] = 0;
    return t;
}

static json_t *weights_args(int bits, const char *strategy, int group)
{
    return json_pack("{s:i,s:s,s:b,s:s,s:o,s:b,s:n,s:s,s:{},s:n}", "num_bits", bits, "type", "int", "symmetric", 1,
                     "strategy", strategy, "group_size", group ? json_integer(group) : json_null(), "dynamic", 0,
                     "actorder", "observer", "minmax", "observer_kwargs", "block_structure");
}

char *qf_st_config_json(const struct qf_st_json *src, const struct qf_view *v, const struct qf_st *const *shards,
                        size_t n_shards, char *err, size_t errlen)
{
    json_t *c = json_deep_copy(src->root); /* parsed once, at open: this view's copy */
    if (!c) {
        qf_fail(err, errlen, -ENOMEM, "out of memory");
        return NULL;
    }
    bool i8 = !strcmp(v->name, "int8"), i4 = !strcmp(v->name, "int4"), f8 = !strcmp(v->name, "fp8");
    const char *dt = !strcmp(v->name, "fp16") ? "float16" : !strcmp(v->name, "f32") ? "float32" : "bfloat16";
    json_object_set_new(c, "torch_dtype", json_string(dt));
    json_object_del(c, "quantization_config");
    if (!(i8 || i4 || f8))
        return dump(c, err, errlen);
    if (f8) {
        json_object_set_new(c, "quantization_config",
                            json_pack("{s:s,s:s,s:[i,i],s:[s]}", "quant_method", "fp8", "activation_scheme", "dynamic",
                                      "weight_block_size", 128, 128, "modules_to_not_convert", "lm_head"));
        return dump(c, err, errlen);
    }
    /* compressed-tensors: explicit module names per group */
    json_t *grp = json_array(), *ch = json_array();
    for (size_t s = 0; s < n_shards; s++) {
        for (size_t i = 0; i < shards[s]->n_tensors; i++) {
            const struct qf_st_tensor *t = &shards[s]->tensors[i];
            uint32_t fd;
            enum qf_st_action a = qf_st_plan(v, t, &fd);
            if (a < QF_STA_INT8)
                continue;
            json_t *name = json_stringn(t->name, strlen(t->name) - strlen(".weight"));
            json_array_append_new(a == QF_STA_INT4 ? grp : ch, name);
        }
    }
    /* pack-quantized for int8 too: vLLM serves weight-only int schemes only
     * in that format (int-quantized is its W8A8 path) */
    const char *format = "pack-quantized";
    json_t *groups = json_object();
    if (json_array_size(grp))
        json_object_set_new(groups, "group_0",
                            json_pack("{s:o,s:o,s:n,s:n,s:s}", "targets", json_incref(grp), "weights",
                                      weights_args(4, "group", 128), "input_activations", "output_activations",
                                      "format", format));
    if (json_array_size(ch))
        json_object_set_new(groups, json_array_size(grp) ? "group_1" : "group_0",
                            json_pack("{s:o,s:o,s:n,s:n,s:s}", "targets", json_incref(ch), "weights",
                                      weights_args(i8 ? 8 : 4, "channel", 0), "input_activations",
                                      "output_activations", "format", format));
    json_decref(grp);
    json_decref(ch);
    json_object_set_new(c, "quantization_config",
                        json_pack("{s:s,s:s,s:s,s:o,s:[s],s:n,s:{},s:n}", "quant_method", "compressed-tensors",
                                  "format", format, "quantization_status", "compressed", "config_groups", groups,
                                  "ignore", "lm_head", "kv_cache_scheme", "sparsity_config",
                                  "global_compression_ratio"));
    return dump(c, err, errlen);
}

char *qf_st_index_json(const struct qf_st_json *src, const struct qf_view *v, const struct qf_st *const *shards,
                       const char *const *names, size_t n_shards, char *err, size_t errlen)
{
    for (size_t i = 0; i < n_shards; i++)
        if (check_rows(shards[i], v, err, errlen))
            return NULL;
    json_t *c = json_deep_copy(src->root);
    if (!c) {
        qf_fail(err, errlen, -ENOMEM, "out of memory");
        return NULL;
    }
    json_t *meta = json_object_get(c, "metadata");
    if (!json_is_object(meta)) {
        meta = json_object();
        json_object_set_new(c, "metadata", meta);
    }
    json_t *map = json_object();
    uint64_t total = 0;
    struct out_tensor ot[3];
    for (size_t s = 0; s < n_shards; s++) {
        for (size_t i = 0; i < shards[s]->n_tensors; i++) {
            size_t k = expand(v, &shards[s]->tensors[i], ot);
            for (size_t j = 0; j < k; j++) {
                char nm[OUT_NAME_MAX];
                json_object_set_new(map, out_name(&ot[j], nm), json_string(names[s]));
                total += ot[j].ext.len;
            }
        }
    }
    json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
    json_object_set_new(c, "weight_map", map);
    return dump(c, err, errlen);
}

/* The scanner's view of a directory's JSON: bounded like every parse. */
static json_t *load_object(const char *text, size_t len, const char *what, char *err, size_t errlen)
{
    if (len > QF_JSON_MAX_BYTES) {
        qf_fail(err, errlen, -E2BIG, "%s: %zu bytes exceeds quantfs' limit of %llu MiB for a JSON file", what, len,
                (unsigned long long)(QF_JSON_MAX_BYTES >> 20));
        return NULL;
    }
    if (qf_json_check(text, len, what, QF_JSON_MAX_VALUES, QF_JSON_MAX_CONTAINERS, err, errlen))
        return NULL;
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(j)) {
        qf_fail(err, errlen, -EINVAL, "%s: not a JSON object (%s)", what, j ? "wrong type" : je.text);
        json_decref(j);
        return NULL;
    }
    return j;
}

int qf_st_json_object(const char *text, size_t len, const char *what, char *err, size_t errlen)
{
    json_t *j = load_object(text, len, what, err, errlen);
    json_decref(j);
    return j ? 0 : -EINVAL;
}

static int index_check(json_t *j, bool (*have)(void *arg, const char *shard), void *arg, char *err, size_t errlen)
{
    json_t *map = json_object_get(j, "weight_map"), *v;
    const char *k;
    int rc = json_is_object(map) ? 0 : qf_fail(err, errlen, -EINVAL, "no weight_map object");
    json_object_foreach(map, k, v)
    {
        if (!json_is_string(v) || !have(arg, json_string_value(v))) {
            rc = qf_fail(err, errlen, -EINVAL, "tensor '%s' is in shard '%s', which is missing", k,
                         json_is_string(v) ? json_string_value(v) : "(not a name)");
            break;
        }
    }
    return rc;
}

int qf_st_index_check(const char *text, size_t len, bool (*have)(void *arg, const char *shard), void *arg, char *err,
                      size_t errlen)
{
    json_t *j = load_object(text, len, "model.safetensors.index.json", err, errlen);
    if (!j)
        return -EINVAL;
    int rc = index_check(j, have, arg, err, errlen);
    json_decref(j);
    return rc;
}

int qf_st_json_open(const char *text, size_t len, bool index, bool (*have)(void *arg, const char *shard), void *arg,
                    struct qf_st_json *out, char *err, size_t errlen)
{
    out->root = NULL;
    json_t *j = load_object(text, len, index ? "model.safetensors.index.json" : "config.json", err, errlen);
    if (!j)
        return -EINVAL;
    int rc = index ? index_check(j, have, arg, err, errlen) : 0;
    if (rc)
        json_decref(j);
    else
        out->root = j;
    return rc;
}

void qf_st_json_free(struct qf_st_json *j)
{
    if (j)
        json_decref(j->root);
}
