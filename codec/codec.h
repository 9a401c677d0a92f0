/* codec.h — the public API of quantfs' codec module.
 *
 * codec/ is FUSE-free; its libraries are libc, libm, jansson (safetensors
 * headers, config and tokenizer JSON) and SLEEF (powf_u10, to match torch's
 * float results in llama3 rope factors): the source kinds (what a model's
 * files are and what each view shows), tensor types and their quantization
 * kernels (byte-exact with ggml's reference quantizer), the GGUF parser and
 * llama-quantize's plan, the safetensors views, the Hugging Face -> GGUF
 * conversion (llama.cpp's converter), the "layout" that describes a
 * view file as a list of extents, and the JSON documents quantfs writes
 * (reports). Every function that can fail returns 0 or -errno and, when
 * given an error buffer, writes one human-readable line into it.
 *
 * Formats are described in codec/FORMATS.md.
 */
#ifndef QUANTFS_CODEC_H
#define QUANTFS_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Bumped whenever any kernel's output bytes change: it is part of every
 * cache key so a new codec never serves blocks made by an old one. */
#define QF_CODEC_VERSION 1u

/* ----------------------------------------------------------------- limits
 *
 * Checkpoints are untrusted. Every parser refuses a file past one of these
 * bounds with a message naming it (-EINVAL, or -EFBIG for sizes), so what
 * one file can cost is bounded whatever its header claims. Real models
 * stay far below each (the largest single files have ~100k tensors, 8 MiB
 * headers, 256k-token vocabularies, rows of 73728). README "Resource limits"
 * gives the memory each bound implies; tests/test_limits.c crosses each.
 */
#define QF_MAX_TENSORS (1u << 17)         /* tensors in one GGUF or safetensors file */
#define QF_GGUF_MAX_NAME 63               /* GGUF tensor name bytes (ggml's GGML_MAX_NAME - 1) */
#define QF_GGUF_MAX_META ((uint64_t)256 << 20) /* bytes of GGUF metadata (the KV section) */
#define QF_ST_MAX_HEADER ((uint64_t)100 << 20) /* safetensors JSON header (the safetensors library's own cap) */
#define QF_ST_MAX_NAME 1024               /* safetensors tensor name bytes */
#define QF_MAX_ELEMS ((uint64_t)1 << 48)  /* elements of one tensor (every dimension product) */
#define QF_MAX_ROW (1u << 17)             /* values per row of a row-wise quantized tensor (int8/int4/fp8) */
#define QF_JSON_MAX_BYTES ((uint64_t)64 << 20)  /* config.json, index, tokenizer_config.json */
#define QF_TOKENIZER_MAX_BYTES ((uint64_t)256 << 20) /* tokenizer.json, tokenizer.model */
/* JSON documents: values (keys, scalars and containers), of which objects
 * and arrays, and nesting. jansson spends ~40 bytes per scalar and ~300 per
 * object, plus the strings: at these limits one parse peaks at ~410 MB
 * (~205 MB for a safetensors header), plus the document's string bytes
 * (measured, README "Resource limits"). */
#define QF_JSON_MAX_VALUES (1u << 22)     /* config, tokenizer files, index */
#define QF_JSON_MAX_CONTAINERS (1u << 20) /* (a 500k-merge tokenizer.json has 500k arrays) */
#define QF_ST_MAX_VALUES (16u * QF_MAX_TENSORS)    /* safetensors header: ~11 per tensor */
#define QF_ST_MAX_CONTAINERS (4u * QF_MAX_TENSORS) /* 3 per tensor */
#define QF_JSON_MAX_DEPTH 64

/* Counts the values, containers and nesting of a JSON text without
 * building it, so a document past a limit is refused before the parser
 * spends memory on it. Not a validator: malformed text within the limits
 * passes and is the parser's to refuse. 0, or -EINVAL with what (the file)
 * and the limit in err. */
int qf_json_check(const char *text, size_t len, const char *what, uint32_t max_values, uint32_t max_containers,
                  char *err, size_t errlen);

/* ------------------------------------------------------------------ types */

/* Tensor type ids, numerically identical to ggml's enum ggml_type (they are
 * written into GGUF tensor infos as is). */
enum qf_type {
    QF_F32 = 0,
    QF_F16 = 1,
    QF_Q4_0 = 2,
    QF_Q4_1 = 3,
    QF_Q5_0 = 6,
    QF_Q5_1 = 7,
    QF_Q8_0 = 8,
    QF_Q2_K = 10,
    QF_Q3_K = 11,
    QF_Q4_K = 12,
    QF_Q5_K = 13,
    QF_Q6_K = 14,
    QF_IQ3_XXS = 18,
    QF_IQ4_NL = 20,
    QF_IQ3_S = 21,
    QF_IQ2_S = 22,
    QF_IQ4_XS = 23,
    QF_BF16 = 30,
    QF_TYPE_MAX = 40 /* exclusive upper bound of ids we know about */
};

/* One row of the type-properties table (types.c): everything quantfs knows
 * about a ggml type. Kernels work on nb whole blocks. */
struct qf_type_info {
    const char *name; /* ggml's name, e.g. "q4_K" */
    uint32_t blck;    /* elements per block */
    uint32_t size;    /* bytes per block */
    /* f32 -> this type: the scalar reference (byte-exact with ggml), NULL
     * if quantfs cannot produce the type */
    void (*quantize_ref)(const float *x, uint8_t *y, size_t nb);
    /* the same bytes, faster; NULL if none; only when qf_simd_available() */
    void (*quantize_simd)(const float *x, uint8_t *y, size_t nb);
    /* this type -> f32 as ggml's dequantize_row_*, NULL if unknown */
    void (*dequantize)(const uint8_t *x, float *y, size_t nb);
    bool is_source; /* f32/f16/bf16: a tensor type quantfs converts from */
    /* quantize_simd's bytes with the finite check folded in (one pass over
     * the input, not two): true if every input was finite. NULL if none;
     * only when qf_simd_available(). */
    bool (*quantize_simd_checked)(const float *x, uint8_t *y, size_t nb);
};

/* NULL for an unknown id. Ids ggml knows but quantfs cannot produce still
 * have an entry (size known) with NULL kernels. */
const struct qf_type_info *qf_type_get(uint32_t type);

/* Bytes needed for n elements of type, or 0 if n is not a whole number of
 * blocks or the type is unknown. Never overflows: returns 0 instead. */
uint64_t qf_type_bytes(uint32_t type, uint64_t n);

/* Scalar conversions, exact IEEE round-to-nearest-even. NaN becomes a quiet
 * NaN with the sign kept (f16: 0x7e00, bf16: top bits | 0x40), as ggml does. */
uint16_t qf_f32_to_f16(float f);
float qf_f16_to_f32(uint16_t h);
uint16_t qf_f32_to_bf16(float f);
float qf_bf16_to_f32(uint16_t h);

/* Quantize n floats (n a multiple of the type's block size) into dst.
 * qf_quantize uses the fastest implementation for this CPU; qf_quantize_ref
 * is the portable scalar reference. Both produce identical bytes, equal to
 * ggml's quantize_row_<type>_ref / quantize_<type> without an importance
 * matrix. Returns 0, or -EINVAL for a type without a kernel / bad n. */
int qf_quantize(uint32_t type, const float *src, void *dst, size_t n);
int qf_quantize_ref(uint32_t type, const float *src, void *dst, size_t n);

/* Convert n elements of a source type (F32, F16, BF16) to float. Returns 0
 * or -EINVAL. */
int qf_to_f32(uint32_t type, const void *src, float *dst, size_t n);

/* Dequantize n elements (whole blocks) of any type qf_type_get knows a
 * kernel for (every type views produce, plus F32/F16/BF16) as ggml's
 * dequantize_row_* does. Returns 0 or -EINVAL. (dequant.c) */
int qf_dequantize(uint32_t type, const void *src, float *dst, size_t n);

/* Name of the SIMD implementation qf_quantize picked ("avx2+f16c" or
 * "scalar"), for logs and benchmarks. */
const char *qf_simd_name(void);

/* Force the scalar path in qf_quantize (tests and benchmarks). The setting
 * lives in the caller: pass it to qf_quantize_opt. */
int qf_quantize_opt(uint32_t type, const float *src, void *dst, size_t n, bool scalar_only);

/* qf_quantize_opt that refuses input with a NaN or Inf: -EBADMSG, dst's
 * bytes then unspecified. One pass where the type has a checked kernel
 * (f16, bf16, q8_0 on x86), a check and then the conversion elsewhere. */
int qf_quantize_checked(uint32_t type, const float *src, void *dst, size_t n, bool scalar_only);

/* What llama-quantize runs with an importance matrix (quant_w.c): ggml's
 * quantize_<type>(x, y, 1, n, qw) for one row of n values (whole blocks)
 * and its imatrix slice qw (n weights). Only for types that use one
 * (qf_type_uses_imatrix: q4_0..q5_1, q2_K..q6_K, iq4_nl, iq4_xs); -EINVAL
 * otherwise. Without an imatrix these types run qf_quantize. The SIMD
 * paths give the same bytes; scalar_only forces the reference (tests). */
bool qf_type_uses_imatrix(uint32_t type);
int qf_quantize_row_imat(uint32_t type, const float *x, size_t n, const float *qw, uint8_t *y, bool scalar_only);

/* ------------------------------------------------------------------ views */

/* QF_FMT_LORA: a Hugging Face model with PEFT adapters (adapters/NAME/): its lora view */
/* QF_FMT_IMATRIX: a model with GGUF views and an imatrix file: its -imat views */
enum qf_format { QF_FMT_GGUF = 1u << 0, QF_FMT_SAFETENSORS = 1u << 1, QF_FMT_LORA = 1u << 2, QF_FMT_IMATRIX = 1u << 3 };

/* llama.cpp's enum llama_ftype values quantfs offers (general.file_type). */
enum qf_ftype {
    QF_FT_F32 = 0, QF_FT_F16 = 1, QF_FT_Q4_0 = 2, QF_FT_Q4_1 = 3, QF_FT_Q8_0 = 7, QF_FT_Q5_0 = 8, QF_FT_Q5_1 = 9,
    QF_FT_Q2_K = 10, QF_FT_Q3_K_S = 11, QF_FT_Q3_K_M = 12, QF_FT_Q3_K_L = 13, QF_FT_Q4_K_S = 14, QF_FT_Q4_K_M = 15,
    QF_FT_Q5_K_S = 16, QF_FT_Q5_K_M = 17, QF_FT_Q6_K = 18, QF_FT_IQ3_XS = 22, QF_FT_IQ3_XXS = 23,
    QF_FT_IQ4_NL = 25, QF_FT_IQ3_S = 26, QF_FT_IQ3_M = 27, QF_FT_IQ2_M = 29, QF_FT_IQ4_XS = 30, QF_FT_BF16 = 32
};

/* A view: a directory name in the mount and what it means per format.
 * For GGUF models a view is `llama-quantize [--pure] SRC OUT <ftype>`;
 * for safetensors models the name selects a layout (safetensors.c). */
struct qf_view {
    const char *name;       /* directory name in the mount */
    unsigned formats;       /* QF_FMT_* of models whose listing shows it */
    unsigned alias_formats; /* QF_FMT_* where it only resolves on lookup */
    const char *alias_of;   /* for alias_formats: the view it equals */
    uint32_t ftype;         /* GGUF: enum qf_ftype */
    uint32_t gguf_type;     /* GGUF: the ftype's default tensor type */
    bool pure;              /* GGUF: llama-quantize --pure */
    bool imat;              /* GGUF: llama-quantize --imatrix (the model's imatrix file) */
    const char *what;       /* one line for --help and the man page */
};

/* The table of all views, in display order; *n receives its length. */
const struct qf_view *qf_views(size_t *n);
/* Index of a view by name in qf_views(), or -1. */
int qf_view_index(const char *name);
/* Whether view v exists for a model made of files of formats fmts: listed
 * (readdir shows it) or only reachable by name (an alias). */
bool qf_view_listed(const struct qf_view *v, unsigned fmts);
bool qf_view_reachable(const struct qf_view *v, unsigned fmts);
/* The view that v stands for in format fmt (one QF_FMT_*): its alias_of
 * target where v is only an alias there, else v itself. */
const struct qf_view *qf_view_resolve(const struct qf_view *v, unsigned fmt);

/* ------------------------------------------------------------------- gguf */

#define QF_GGUF_MAX_DIMS 4

/* Reads exactly len bytes at off into buf; returns 0 or -errno (-EIO for a
 * short read). The parser never reads outside [0, file_size). */
typedef int (*qf_pread_fn)(void *ctx, void *buf, size_t len, uint64_t off);

struct qf_gguf_tensor {
    const char *name;  /* NUL-terminated, points into the parsed header */
    uint64_t name_len;
    uint32_t n_dims;
    uint64_t ne[QF_GGUF_MAX_DIMS]; /* unused dims are 1 */
    uint32_t type;
    uint64_t offset;   /* absolute file offset of the data */
    uint64_t nbytes;
    uint64_t nelems;
};

/* GGUF value types (gguf.h's enum gguf_type). */
enum qf_gguf_vtype {
    QF_GT_U8, QF_GT_I8, QF_GT_U16, QF_GT_I16, QF_GT_U32, QF_GT_I32, QF_GT_F32, QF_GT_BOOL,
    QF_GT_STRING, QF_GT_ARRAY, QF_GT_U64, QF_GT_I64, QF_GT_F64
};
#define QF_GGUF_KEY_MAX 255 /* longer keys are kept by file range only */
#define QF_GGUF_SVAL 255    /* longer string values likewise */
#define QF_GGUF_MAX_KV 65536

/* One metadata pair. The bytes of the pair are [begin, end) of the file;
 * the parsed value is there for the few keys quantfs reads. */
struct qf_gguf_kv {
    const char *key;   /* "" for a key longer than QF_GGUF_KEY_MAX */
    uint32_t type;     /* enum qf_gguf_vtype */
    uint64_t begin, end;
    /* integers and bool (signed kinds sign-extended), a string's length,
     * or an integer array's first element */
    uint64_t u;
    double f;          /* F32/F64 */
    const char *sval;  /* a string of at most QF_GGUF_SVAL bytes, else NULL */
    uint32_t arr_type; /* ARRAY: element type and count */
    uint64_t arr_n;
    uint64_t key_off, sval_off; /* parser-internal */
};

struct qf_gguf {
    uint32_t version;
    uint32_t alignment;
    uint64_t file_size;
    uint64_t n_kv;
    struct qf_gguf_kv *kvs;     /* in file order */
    char *kvpool;               /* owns keys and short string values */
    uint64_t kv_begin, kv_end;  /* file range of the metadata KV pairs */
    uint64_t data_begin;        /* absolute offset of the data section */
    uint64_t n_tensors;
    struct qf_gguf_tensor *tensors; /* in file order */
    char *strpool;              /* owns the tensor names */
};

/* The pair with this key, or NULL. */
const struct qf_gguf_kv *qf_gguf_find_kv(const struct qf_gguf *g, const char *key);
/* A numeric pair's value (integers, bool, F32, F64). */
double qf_gguf_kv_number(const struct qf_gguf_kv *kv);
/* The elements of an array pair, read from the file again through rd (the
 * parser kept only their count): strings (each malloc'd, NUL-terminated,
 * in a malloc'd array) or F32 values. 0, -EINVAL if the pair is not an
 * array of that type, or -errno. */
int qf_gguf_kv_strings(const struct qf_gguf_kv *kv, qf_pread_fn rd, void *ctx, char ***out, uint64_t *n);
int qf_gguf_kv_f32s(const struct qf_gguf_kv *kv, qf_pread_fn rd, void *ctx, float **out, uint64_t *n);

/* Parse a GGUF v2/v3 little-endian header. Validates every count, length,
 * shape and offset against file_size and against overflow. */
int qf_gguf_parse(qf_pread_fn rd, void *rdctx, uint64_t file_size, struct qf_gguf **out, char *err,
                  size_t errlen);
void qf_gguf_free(struct qf_gguf *g);

/* ---------------------------------------------------------------- imatrix */

/* An importance matrix as llama-quantize --imatrix reads it (imatrix.c):
 * the GGUF file llama-imatrix writes or the legacy .dat, normalised into
 * the per-column weights the quantizers take. Immutable once parsed. */
struct qf_imatrix_entry {
    char *name;     /* the model tensor's name */
    uint64_t n;     /* values: ne0 x n_mat (a 3-D expert tensor: one slice per expert) */
    uint32_t n_mat; /* GGUF: counts (matrices); legacy: 1 */
    float *w;       /* normalised weights, all finite */
    uint64_t hash;  /* xxh3 of name and weights: the imatrix's part of chunk ids */
};
struct qf_imatrix {
    size_t n;
    struct qf_imatrix_entry *e; /* sorted by name */
    char *dataset;              /* the first dataset named, or NULL */
    int32_t chunks;             /* chunk count (quantize.imatrix.chunks_count when > 0) */
    bool legacy;
};
/* Parse an imatrix file of size bytes. Refuses (-EBADMSG, the reason in
 * err, as llama-quantize words it where it has words) what llama-quantize
 * refuses: no entries, sums without counts, non-F32 data, a GGUF without
 * the imatrix.* KVs, truncation, non-finite weights. -ENOMEM, -errno of rd. */
int qf_imatrix_parse(qf_pread_fn rd, void *ctx, uint64_t size, struct qf_imatrix **out, char *err, size_t errlen);
/* The entry for a tensor name, or NULL (also for m == NULL). */
const struct qf_imatrix_entry *qf_imatrix_find(const struct qf_imatrix *m, const char *name);
void qf_imatrix_free(struct qf_imatrix *m);
/* A model's importance matrix, for the -imat views' layouts: parsed (NULL
 * when the model has none or it was refused) and its file name, which
 * llama-quantize --imatrix was given (run from the model's directory). */
struct qf_model_imatrix {
    const struct qf_imatrix *m;
    const char *file;
};

/* ----------------------------------------------------------------- layout */

enum qf_ext_kind {
    QF_EXT_MEM,  /* bytes held in the layout (generated header pieces) */
    QF_EXT_SRC,  /* bytes copied from the source file at src_off */
    QF_EXT_ZERO, /* alignment padding */
    QF_EXT_CONV  /* a tensor converted from src_type to dst_type */
};

/* Converted extents are produced in chunks of this many elements (a multiple
 * of every block size): the unit of work, caching and read-ahead. */
#define QF_CHUNK_ELEMS (1u << 18)

struct qf_extent {
    uint64_t off, len;  /* output range */
    uint32_t kind;
    uint32_t src_type, dst_type; /* CONV: a qf_type, or a QF_ST_* kind */
    uint64_t src_off;   /* SRC, CONV */
    uint64_t n_elems;   /* CONV */
    const uint8_t *mem; /* MEM */
    /* CONV: source elements per chunk (QF_CHUNK_ELEMS for element-wise
     * types; whole rows, or 128-row bands for fp8, for the row kinds) */
    uint64_t chunk_elems;
    uint64_t row_len;   /* CONV row kinds: elements per row (in_features) */
    uint32_t group;     /* CONV int4: elements per scale group */
    /* CONV: refuse (-EBADMSG) a chunk whose source holds NaN or Inf, as
     * llama-quantize refuses such a file (GGUF views) */
    bool validate;
    /* CONV with an importance matrix: row_len weights per matrix (imat_rows
     * rows each: a 3-D expert tensor has one matrix per expert), owned by
     * the qf_imatrix the layout was built from; chunks are whole rows */
    const float *imat;
    uint64_t imat_rows;
    uint64_t imat_hash; /* qf_imatrix_entry.hash: stands for imat in chunk ids */
};

/* Row-wise conversions for safetensors views (dst_type of CONV extents).
 * Each weight produces two extents from the same source rows: the values
 * and their scales. Layouts: codec/FORMATS.md (safetensors section). */
enum qf_st_kind {
    QF_ST_I8 = 100,       /* int8 symmetric per output channel, packed 4 per int32 */
    QF_ST_I8_SCALE,       /* its scales, bf16 [out, 1] */
    QF_ST_I4,             /* int4 symmetric per group, packed 8 per int32 */
    QF_ST_I4_SCALE,       /* its scales, bf16 [out, in / group] */
    QF_ST_FP8,            /* float8 e4m3fn, scaled per 128x128 block */
    QF_ST_FP8_SCALE_INV,  /* its inverse scales, f32 [ceil(out/128), ceil(in/128)] */
    QF_ST_KIND_END
};

/* The row kinds' table (stquant.c), one row per kind, as the type table is
 * for qf_types: what the layout needs to cut and size a row-wise extent,
 * and its converter. qf_row_kind: the row of dst_type, or NULL when
 * dst_type is a tensor type (qf_type_get). */
struct qf_row_kind {
    uint32_t kind;    /* enum qf_st_kind */
    const char *name; /* "int8", "int8 scales", ... */
    /* output bytes of rows rows of row_len values (group: int4 group size) */
    uint64_t (*bytes)(uint64_t rows, uint64_t row_len, uint32_t group);
    /* rows x row_len floats to this kind's bytes; -EINVAL for a group that
     * does not divide the row. For the fp8 kinds, rows is a multiple of 128
     * except at the end of the tensor. */
    int (*quantize)(const float *x, size_t rows, size_t row_len, uint32_t group, uint8_t *out);
};
const struct qf_row_kind *qf_row_kind(uint32_t dst_type);

/* What a GGUF view does with one source tensor, and why: the answer to
 * "which type does tensor X get in view V". */
struct qf_tensor_plan {
    char name[64];
    uint32_t src_type, type; /* source and view types */
    uint32_t n_dims;         /* as written (ggml_n_dims) */
    uint64_t ne[QF_GGUF_MAX_DIMS];
    uint64_t offset, nbytes; /* data in the view file (absolute offset) */
    size_t src_index;        /* index in the source's tensor list */
    bool fallback;           /* took llama-quantize's row-length fallback */
    char why[112];           /* the rule that decided, in words */
    const struct qf_imatrix_entry *imat; /* its imatrix entry (imatrix views), or NULL */
};

/* A view file: its bytes as an ordered list of extents. For GGUF views it
 * is also llama-quantize's plan: the tensors in output order with their
 * types. Immutable once built; safe to share between threads. */
struct qf_layout {
    uint64_t size;
    size_t n_ext;
    struct qf_extent *ext;
    uint8_t *mem; /* owns MEM bytes */
    size_t mem_len;
    size_t n_tensors;                /* GGUF views; 0 otherwise */
    struct qf_tensor_plan *tensors;  /* in output order */
    unsigned n_fallback;             /* llama-quantize's "K of M tensors required fallback" */
};

/* A file whose bytes are generated text (takes ownership of text, which
 * must come from malloc). */
int qf_layout_text(char *text, size_t len, struct qf_layout **out);
/* A view file that is the source as is. */
int qf_layout_passthrough(uint64_t size, struct qf_layout **out);
/* A GGUF view (plan.c): the file `llama-quantize [--pure] [--imatrix
 * im_file] SRC OUT FTYPE` (llama.cpp v0.5.0) writes, from the parsed header
 * alone (and, for a view with v->imat, the parsed imatrix im, whose file
 * name as typed goes into quantize.imatrix.file; -ENOENT without one):
 * KVs in its order, tensors in its order with its per-tensor types, its
 * offsets and padding; data extents convert on read. Fails with -ENOTSUP
 * and the reason in err where llama-quantize refuses the input (unknown
 * architecture, missing hyper-parameters, a tensor it cannot requantize,
 * a split model, ...). v->formats must include QF_FMT_GGUF. */
int qf_layout_gguf(const struct qf_gguf *g, const struct qf_view *v, const struct qf_imatrix *im, const char *im_file,
                   struct qf_layout **out, char *err, size_t errlen);
/* The plan entry of a GGUF view's tensor by name, or NULL. */
const struct qf_tensor_plan *qf_layout_tensor(const struct qf_layout *l, const char *name);
void qf_layout_free(struct qf_layout *l);

/* Index of the extent containing output offset off (off < l->size). */
size_t qf_layout_find(const struct qf_layout *l, uint64_t off);

/* Number of chunks of a CONV extent, the output byte range of chunk c
 * relative to the extent start, and the chunk holding output byte rel
 * (every chunk but the last has the same output size). */
uint64_t qf_conv_nchunks(const struct qf_extent *e);
void qf_conv_chunk_range(const struct qf_extent *e, uint64_t c, uint64_t *off, uint64_t *len);
uint64_t qf_conv_chunk_at(const struct qf_extent *e, uint64_t rel);

/* The identity of chunk c of a CONV extent's conversion: every extent
 * field its output bytes depend on besides its input bytes (source type,
 * destination kind, chunk size and index, element count, row length,
 * group, validation, imatrix) and QF_CODEC_VERSION. Equal ids over equal
 * input bytes (qf_conv_chunk_src) mean equal output bytes: a cache key is
 * the input's identity (its place in a source version, or its content)
 * plus this. (layout.c asserts the extent's size, so a new field cannot be
 * added without being placed here or declared irrelevant.) */
#define QF_CHUNK_ID_WORDS 12
void qf_conv_chunk_id(const struct qf_extent *e, uint64_t c, uint64_t id[QF_CHUNK_ID_WORDS]);
/* The source bytes chunk c of a CONV extent is made from: [*off, *off +
 * *len) of what the layout's reader reads. qf_conv_chunk reads exactly
 * this range, in one call of rd, and nothing else. */
void qf_conv_chunk_src(const struct qf_extent *e, uint64_t c, uint64_t *off, uint64_t *len);

/* Produce chunk c of a CONV extent into dst (capacity >= its length):
 * pread the source elements, convert to f32, quantize. scratch holds
 * QF_CONV_SCRATCH_BYTES; chunks larger than QF_CHUNK_ELEMS (fp8 bands of
 * wide rows) allocate their own. Returns 0 or -errno (-EIO on a short
 * read, -EBADMSG for NaN/Inf in a validated extent). */
#define QF_CONV_SCRATCH_BYTES ((size_t)QF_CHUNK_ELEMS * 8u)
int qf_conv_chunk(const struct qf_extent *e, uint64_t c, qf_pread_fn rd, void *rdctx, void *dst,
                  void *scratch, bool scalar_only);
/* The same from chunk c's input bytes read already (the qf_conv_chunk_src
 * range, in): an F32 input is converted in place, without a copy. With
 * scratch, a chunk of at most QF_CHUNK_ELEMS is pure computation: nothing
 * allocated, no lock, no state but dst and scratch written, so a caller may
 * abandon it mid-way (fs/guard.h: its input is a mapping that lost pages). */
int qf_conv_chunk_from(const struct qf_extent *e, uint64_t c, const void *in, void *dst, void *scratch,
                       bool scalar_only);

/* The one walk over a view file's bytes. Output range [off, off + len) is
 * cut into pieces, each inside one extent and, for CONV extents, inside one
 * chunk; fn is called for each in order and a non-zero return stops the
 * walk and is returned. The daemon's read path, read-ahead and cache
 * queries and qf_layout_read are all callbacks of this walk. */
struct qf_piece {
    const struct qf_extent *e;
    uint64_t off;       /* output offset of the piece */
    uint64_t rel, len;  /* the piece is bytes [rel, rel + len) of the extent */
    uint64_t chunk;     /* CONV: the chunk, its range in the extent, and */
    uint64_t chunk_off, chunk_len; /* the piece's offset in it: rel - chunk_off */
};
typedef int (*qf_piece_fn)(void *ctx, const struct qf_piece *p);
int qf_layout_walk(const struct qf_layout *l, uint64_t off, uint64_t len, qf_piece_fn fn, void *ctx);

/* Fill buf with output bytes [off, off+len) of the layout, computing every
 * CONV chunk it touches directly (no cache). For tests and tools. */
int qf_layout_read(const struct qf_layout *l, uint64_t off, size_t len, void *buf, qf_pread_fn rd,
                   void *rdctx);

/* ------------------------------------------------------------ safetensors */

/* safetensors dtypes we know (sizes in bytes). */
enum qf_st_dtype {
    QF_STD_F64, QF_STD_F32, QF_STD_F16, QF_STD_BF16, QF_STD_I64, QF_STD_I32, QF_STD_I16, QF_STD_I8,
    QF_STD_U8, QF_STD_BOOL, QF_STD_F8_E4M3, QF_STD_F8_E5M2, QF_STD_U16, QF_STD_U32, QF_STD_U64, QF_STD_COUNT
};
const char *qf_st_dtype_name(uint32_t d);
#define QF_ST_MAX_DIMS 8

struct qf_st_tensor {
    const char *name;
    uint32_t dtype;
    uint32_t n_dims;
    uint64_t shape[QF_ST_MAX_DIMS];
    uint64_t nelems, nbytes;
    uint64_t offset; /* absolute file offset of the data */
};

struct qf_st {
    uint64_t file_size, header_len, data_begin;
    size_t n_tensors;
    struct qf_st_tensor *tensors; /* sorted by offset */
    char *strpool;
    char *metadata; /* JSON of __metadata__ (string map), or NULL */
};

/* Parse a safetensors file: u64 header length, JSON header (a real JSON
 * parser, jansson), dtypes, shapes and data_offsets validated: in bounds,
 * sizes equal to shape x dtype, no overlaps and no holes (as the
 * safetensors library requires). */
int qf_st_parse(qf_pread_fn rd, void *rdctx, uint64_t file_size, struct qf_st **out, char *err, size_t errlen);
void qf_st_free(struct qf_st *st);

/* What a safetensors view does to one tensor. */
/* Inverse of qf_st_quantize_rows for QF_ST_I8, QF_ST_I4 and QF_ST_FP8:
 * rows x n values from the packed data q and its scales (bf16 per row or
 * group, or f32 inverse scales per 128x128 block). */
int qf_st_dequantize_rows(uint32_t kind, const uint8_t *q, const uint8_t *scales, size_t rows, size_t n,
                          uint32_t group, float *out);
float qf_e4m3_to_f32(uint8_t v);

enum qf_st_action {
    QF_STA_COPY,     /* unchanged (non-float tensors, f32 view) */
    QF_STA_FLOAT,    /* converted to the view's float dtype (dst F16/BF16) */
    QF_STA_INT8,     /* weight_packed (8-bit) + weight_scale + weight_shape */
    QF_STA_INT4,     /* weight_packed + weight_scale + weight_shape, group 128 */
    QF_STA_INT4_CH,  /* same, one group per row: rows 128 does not divide */
    QF_STA_FP8,      /* weight (F8_E4M3) + weight_scale_inv */
};
enum qf_st_action qf_st_plan(const struct qf_view *v, const struct qf_st_tensor *t, uint32_t *float_dtype);
/* Whether a tensor is a Linear weight of an attention/MLP block (2-D float
 * "*.weight", not an embedding, norm, lm_head or MoE router). */
bool qf_st_is_linear_weight(const struct qf_st_tensor *t);

/* Layout of one safetensors file in a view. */
int qf_layout_safetensors(const struct qf_st *st, const struct qf_view *v, struct qf_layout **out, char *err,
                          size_t errlen);

/* config.json and model.safetensors.index.json of a view, rewritten from the
 * source text and all shards' headers (shards[i] is file names[i]). Returns
 * a malloc'd NUL-terminated string (stable bytes), or NULL with err set. */
struct qf_st_json;
char *qf_st_config_json(const struct qf_st_json *src, const struct qf_view *v, const struct qf_st *const *shards,
                        size_t n_shards, char *err, size_t errlen);
char *qf_st_index_json(const struct qf_st_json *src, const struct qf_view *v, const struct qf_st *const *shards,
                       const char *const *names, size_t n_shards, char *err, size_t errlen);

/* A safetensors model's config.json or index as its source kind opened it
 * (model.c): parsed once per version under the limits below (root: a
 * json_t, codec's), each view's rewrite a copy of it. qf_st_json_open
 * loads text (an index also checked with have, as qf_st_index_check);
 * qf_st_json_free releases root. */
struct qf_st_json {
    void *root;
};
int qf_st_json_open(const char *text, size_t len, bool index, bool (*have)(void *arg, const char *shard), void *arg,
                    struct qf_st_json *out, char *err, size_t errlen);
void qf_st_json_free(struct qf_st_json *j);

/* Checks the JSON documents of a safetensors directory, under codec's
 * limits (size <= QF_JSON_MAX_BYTES, qf_json_check, JSON_REJECT_DUPLICATES).
 * qf_st_json_object: the text is one JSON object (config.json).
 * qf_st_index_check: model.safetensors.index.json has a weight_map object
 * whose every value names a shard for which have(arg, name) is true.
 * Return 0, or -EINVAL/-E2BIG with err saying what is wrong or missing. */
int qf_st_json_object(const char *text, size_t len, const char *what, char *err, size_t errlen);
int qf_st_index_check(const char *text, size_t len, bool (*have)(void *arg, const char *shard), void *arg, char *err,
                      size_t errlen);

/* ------------------------------------------------ Hugging Face -> GGUF */

/* A Hugging Face checkpoint (one of QF_HF_ARCHS; F32/F16/BF16
 * safetensors, one file or shards) as the GGUF file llama.cpp v0.5.0's convert_hf_to_gguf.py writes
 * (hf.c). Built from config.json, the tokenizer files and the safetensors
 * headers alone; tensor data is read through qf_hf_pread. Every view of
 * such a model derives from the converter's F32 file: f32/fp16/bf16/q8_0
 * are the converter's --outtype files, every other GGUF view is
 * llama-quantize run on its F32 file. */
#define QF_HF_NOUT 4 /* converter outtypes: f32, f16, bf16, q8_0 */
#define QF_HF_ARCHS                                                                                          \
    "LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "             \
    "Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, SmolLM3ForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM, "      \
    "Gemma3ForConditionalGeneration (its text model) and Phi3ForCausalLM"
/* config.json's architectures[0] (a Hugging Face model's class) into arch
 * ("" when it names none), under codec's JSON limits. 0, or -EINVAL/-E2BIG
 * with err. */
int qf_hf_config_arch(const char *text, size_t len, char *arch, size_t archlen, char *err, size_t errlen);
/* A string member of a small JSON document (config.json's "_name_or_path",
 * adapter_config.json's "base_model_name_or_path") into out ("" when absent
 * or not a string), under codec's JSON limits. 0 or -EINVAL/-E2BIG with err. */
int qf_json_string_member(const char *text, size_t len, const char *what, const char *member, char *out,
                          size_t outlen, char *err, size_t errlen);
/* Whether config.json's architectures[0] is one qf_hf_build converts. */
bool qf_hf_arch_supported(const char *hf_arch);

struct qf_hf_input {
    const char *name; /* general.name: the model's name in the mount */
    const char *config;
    size_t config_len;
    const char *tokenizer; /* tokenizer.json, or NULL */
    size_t tokenizer_len;
    const char *tokenizer_config; /* tokenizer_config.json, or NULL */
    size_t tokenizer_config_len;
    const uint8_t *spm; /* tokenizer.model (SentencePiece protobuf), or NULL */
    size_t spm_len;
    const char *chat_template_jinja; /* chat_template.jinja, or NULL */
    const char *generation_config;   /* generation_config.json (general.sampling.*), or NULL */
    size_t generation_config_len;
    bool has_added_tokens_json;      /* refused unless vocab_kvs is given */
    /* the tokenizer.* KV pairs of a vocab-only GGUF the converter wrote
     * (raw bytes, vocab_n_kv pairs), used verbatim instead of the above */
    const uint8_t *vocab_kvs;
    size_t vocab_kvs_len;
    uint64_t vocab_n_kv;
    const struct qf_st *const *shards; /* parsed headers, in file-name order */
    size_t n_shards;
    /* a LoRA adapter merged in (PEFT's merge_and_unload of the base loaded
     * in float32): W + s (B A) for each pair, s = alpha / r (alpha / sqrt(r)
     * with use_rslora), r the pair's rank, alpha the first alpha_pattern key
     * matching the module (PEFT's get_pattern_key: "^(.*\.)?(KEY)$", POSIX
     * extended syntax; a key in Python-only syntax is refused) or
     * lora_alpha; DoRA rows scaled to their magnitude (m / ||W + s B A||);
     * every other adapter tensor named as a base tensor (modules_to_save)
     * replaces it. NULL: none. The adapter is read whole through rd. */
    const struct qf_lora_merge {
        const char *config; /* adapter_config.json */
        size_t config_len;
        const struct qf_st *weights;
        qf_pread_fn rd;
        void *ctx;
    } *lora;
};

struct qf_hf_tensor {
    char name[64]; /* GGUF name */
    uint32_t n_dims;
    uint64_t ne[QF_GGUF_MAX_DIMS];
    uint64_t nelems;
    uint32_t shard, src_type; /* source shard index and QF_F32/F16/BF16 */
    uint64_t src_off;         /* absolute offset of the data in its shard */
    uint32_t perm_heads;      /* llama q/k: rows permuted in this many heads, 0: none */
    bool norm_shift;          /* Gemma: values + 1 (rounded to fp16 for an fp16 source) */
    /* a merged LoRA pair (owned; NULL: none): row r of the source gains
     * lora_scale * B[r] . A, A [lora_r x ne0], B [rows x lora_r], F32;
     * with DoRA (lora_m: the magnitude per source row) the merged row is
     * then scaled by lora_m[r] / its L2 norm */
    float *lora_a, *lora_b, *lora_m;
    uint32_t lora_r;
    double lora_scale;
    /* modules_to_save: the adapter's tensor in place of the source's (F32,
     * in the source's element order; owned; NULL: none) */
    float *repl;
    float *gen;               /* a generated tensor's values (rope_freqs), owned; NULL: from a shard */
    /* a stack of experts (MoE): n_parts source matrices of nelems /
     * n_parts elements, expert-major; part_shard/part_off replace
     * shard/src_off (owned; NULL when not stacked) */
    uint32_t n_parts;
    uint32_t *part_shard;
    uint64_t *part_off;
    /* a merged safetensors shard's tensor that no merge touched: its
     * bytes, copied unchanged (0: written as F32) */
    uint64_t raw_len;
};

struct qf_hf {
    size_t n_tensors;
    struct qf_hf_tensor *t; /* in the converter's order */
    /* the f32 header (padded to the data section); the other outtypes'
     * headers are written by qf_layout_hf from it */
    uint8_t *hdr;
    size_t hdr_len;   /* the same for every outtype */
    size_t ftype_at;  /* header offsets: the file_type value, the tensor infos */
    size_t ti_at;
    /* per outtype: file size, per-tensor type and offset from the data section */
    uint64_t size[QF_HF_NOUT];
    uint32_t *type[QF_HF_NOUT];
    uint64_t *off[QF_HF_NOUT];
    struct qf_gguf *f32; /* hdr parsed: what llama-quantize views plan from */
    /* a merged safetensors shard (qf_hf_build_merged_st): hdr is its
     * header, hdr parsed here (f32 NULL; size[0], off[0] alone are set) */
    struct qf_st *st;
};

/* Returns 0, -ENOMEM, -EINVAL (malformed input) or -ENOTSUP (what the
 * converter refuses or quantfs does not do), with the reason in err. */
int qf_hf_build(const struct qf_hf_input *in, struct qf_hf **out, char *err, size_t errlen);
void qf_hf_free(struct qf_hf *hf);

/* A PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors) of
 * a base checkpoint, as the GGUF adapter llama.cpp v0.5.0's
 * convert_lora_to_gguf.py --base BASE --outtype f32 writes: KVs
 * general.architecture, general.type "adapter", adapter.type "lora",
 * general.name, adapter.lora.alpha; each pair as <GGUF name>.lora_a
 * [in, r] and .lora_b [r, out] in F32, in name order, lora_b's rows in
 * llama.cpp's q/k order for Llama-arch bases. Its data is read through
 * qf_hf_pread (shard 0: the adapter file); only size[0]/type[0]/off[0]
 * (the F32 file) are meaningful. Refused (-ENOTSUP, with the reason):
 * what the converter refuses (DoRA, biases, modules_to_save, a missing
 * half, no lora_alpha) and what it would convert with the wrong scale
 * (use_rslora, alpha_pattern); adapters of MoE experts. */
struct qf_lora_input {
    const char *name; /* general.name */
    const char *base_config;
    size_t base_config_len;
    const char *adapter_config;
    size_t adapter_config_len;
    const struct qf_st *weights; /* adapter_model.safetensors' parsed header */
};
int qf_hf_build_lora(const struct qf_lora_input *in, struct qf_hf **out, char *err, size_t errlen);

/* One safetensors file of a base checkpoint with a LoRA adapter merged
 * (qf_hf_input.lora's rules), as a safetensors file: the shard's tensors
 * in its order, each one the merge changes (a pair, or modules_to_save)
 * in F32 (W + s B A in float, as PEFT merges a float32-loaded base), the
 * others' bytes unchanged in their dtype, __metadata__ kept; header
 * compact JSON padded with spaces to 8 bytes. The adapter is checked
 * against every shard (a pair on no tensor refuses it, -ENOTSUP), the
 * pairs of this shard read in. Data is read through qf_hf_pread, whose
 * ctx[0] reads this shard. Returns 0, -ENOMEM, -EINVAL or -ENOTSUP with
 * the reason in err. */
struct qf_merged_st_input {
    const char *config; /* the base's config.json */
    size_t config_len;
    const struct qf_st *const *shards; /* every shard of the base, in file-name order */
    size_t n_shards, shard;            /* shards[shard] is the one built */
    const struct qf_lora_merge *lora;
};
int qf_hf_build_merged_st(const struct qf_merged_st_input *in, struct qf_hf **out, char *err, size_t errlen);

/* What a model's tokenizer.* KVs depend on besides the tokenizer files
 * (tokenizer.json, tokenizer_config.json, tokenizer.model,
 * chat_template.jinja): the architecture, vocab_size and the *_token_id
 * values of config.json, written to out as a canonical string. Two models
 * with the same string and the same tokenizer files have byte-identical
 * tokenizer KVs (fs/ reuses them: a store of fine-tunes parses one
 * tokenizer.json). Returns 0, or -EINVAL if config is not JSON. */
int qf_hf_tokenizer_sig(const char *config, size_t len, char *out, size_t n);
/* The tokenizer.* KVs of a built model, as they lie in its header (a range
 * of hf's own bytes: valid while hf lives), for qf_hf_input.vocab_kvs. */
void qf_hf_tokenizer_kvs(const struct qf_hf *hf, const uint8_t **p, size_t *len, uint64_t *n_kv);

/* HF tensor name -> the converter's GGUF name for the checkpoint class
 * hf_arch (gguf-py tensor_mapping.py maps per architecture: Gemma's
 * post_attention_layernorm is post_attention_norm, Llama's ffn_norm; NULL
 * or an unknown class: Llama's): 0 mapped into out, 1 dropped by the
 * converter (rotary inv_freq, a multimodal checkpoint's other towers,
 * Gemma 2's lm_head), -1 unknown. Experts are stacked, not mapped. */
int qf_hf_map_name(const char *hf_arch, const char *hf, char *out, size_t n);
/* Where the converter's GGUF holds checkpoint tensor hf: like
 * qf_hf_map_name, and an MoE expert's matrix as slice *expert of the
 * stacked tensor named out (else *expert = UINT32_MAX), with *shift added
 * to every value (Gemma's norms: 1, else 0). For checkers. */
int qf_hf_locate(const char *hf_arch, const char *hf, char *out, size_t n, uint32_t *expert, float *shift);

/* The rope_freqs.weight values the converter generates for a Llama/Mistral
 * config with llama3 rope scaling (head_dim / 2 floats), bit-exact with its
 * torch float32 arithmetic. Exposed for tests. */
void qf_hf_rope_llama3(double theta, long long head_dim, double factor, double low, double high, long long orig_ctx,
                       float *out);

/* Reads the converter's F32 file: ctx is a struct qf_hf_reader whose
 * ctx[i] is handed to rd for shard i. Thread-safe (no state). */
struct qf_hf_reader {
    const struct qf_hf *hf;
    qf_pread_fn rd;
    void *const *ctx;
};
int qf_hf_pread(void *ctx, void *buf, size_t len, uint64_t off);

/* Layout of view v (GGUF formats) of the model: f32/fp16/bf16/q8_0 are the
 * converter's outtypes, every other view llama-quantize's plan of hf->f32.
 * Extents' source offsets are offsets in the converter's F32 file (read
 * them with qf_hf_pread). */
int qf_layout_hf(const struct qf_hf *hf, const struct qf_view *v, const struct qf_model_imatrix *im, struct qf_layout **out,
                 char *err, size_t errlen);

/* --------------------------------------------------------------- self-test */

/* Quantizes fixed pseudo-random inputs with every kernel and compares with
 * golden hashes (codec/selftest_golden.h, written by tests/gen_golden.c) and
 * the SIMD path with the scalar one. Prints one line per type to out (may be
 * NULL). Returns 0 if all pass. */
int qf_self_test(FILE *out);
/* The inputs and hash the self-test uses, for the golden generator. */
void qf_selftest_input(float *x, size_t n, uint64_t seed);
uint64_t qf_selftest_hash(uint32_t type);

/* ---------------------------------------------------- models (model.c) */

/* A model is one directory of source files or one loose file. What each
 * file is, and what every view does with it, is decided by a table of
 * source kinds, one row per role a file can have; callers (the daemon,
 * quantfs-check --tree) never branch on a kind, they call its row:
 *   derived   made from other files of the model, not one source file
 *   claim     the file names it recognises (first row that claims wins)
 *   converts  whether view v makes new bytes of such a file (else it is
 *             passed through, as in f32)
 *   shows     whether view v holds such a file at all (NULL: always)
 *   open      parse a file of this kind under codec's limits (NULL: none);
 *             m is the model it is part of (an index names its shards)
 *   layout    the file in view v, from what open returned (or qf_hf_build)
 *   shard     a safetensors shard's header (NULL: not a shard): what a
 *             generated config.json or index describes
 *   layout_set a generated file's layout in a converting view v (config.json,
 *             index): from what open returned and the model's shards
 *   header    how many leading bytes of such a file identify its version
 *             (hashed into cache keys)
 *   close     free what open returned
 * Adding a kind of source is adding a role and its row (HACKING.md). */
enum qf_role {
    QF_ROLE_PASS,   /* passed through unchanged in every view */
    QF_ROLE_GGUF,   /* a GGUF file: converted per GGUF view */
    QF_ROLE_ST,     /* a safetensors file: converted per safetensors view */
    QF_ROLE_CONFIG, /* config.json beside safetensors: rewritten per view */
    QF_ROLE_INDEX,  /* model.safetensors.index.json: rewritten per view */
    QF_ROLE_HFGGUF, /* MODEL.gguf of a Hugging Face checkpoint (no such
                     * source file): llama.cpp's converter's output */
    QF_ROLE_LORA_IN, /* adapters/NAME/adapter_config.json or adapter_model.safetensors */
    QF_ROLE_LORA,   /* NAME.gguf in the lora view: convert_lora_to_gguf.py's
                     * output for adapters/NAME/ (no such source file) */
    QF_ROLE_MERGE_IN, /* a file of the base of a merged model BASE+ADAPTER: an input, shown nowhere */
    QF_ROLE_MERGED, /* BASE+ADAPTER.gguf: the base's converter GGUF with the adapter merged in */
    QF_ROLE_IMATRIX, /* imatrix.gguf, imatrix.dat or *.imatrix: the input of the -imat views */
    QF_ROLE_MERGED_ST, /* a shard of BASE+ADAPTER, named as the base's: that shard with the
                        * adapter merged (qf_hf_build_merged_st), converted per safetensors view */
    QF_ROLE_N
};

struct qf_dir_io;
struct qf_hf_dir;
struct qf_model_files;
struct qf_source_kind {
    const char *name;   /* "gguf", "safetensors", "hf-gguf", ... */
    const char *what;   /* one line, for --tree and the manual */
    unsigned format;    /* QF_FMT_* a model with such a file has */
    bool derived;       /* no source file of its own: made from the model's
                         * other files (its path is the model directory) */
    bool optional;      /* one that cannot be built leaves its view (others stay) */
    int (*claim)(const char *name, bool in_dir); /* a QF_ROLE_*, or -1 */
    bool (*converts)(unsigned formats, const struct qf_view *v);
    bool (*shows)(unsigned formats, const struct qf_view *v);
    int (*open)(qf_pread_fn rd, void *ctx, uint64_t size, const struct qf_model_files *m, void **out, char *err,
                size_t errlen);
    int (*layout)(const void *parsed, const struct qf_view *v, const struct qf_model_imatrix *im,
                  struct qf_layout **out, char *err, size_t errlen);
    const struct qf_st *(*shard)(const void *parsed);
    int (*layout_set)(const void *parsed, const struct qf_view *v, const struct qf_st *const *shards,
                      const char *const *names, size_t n, struct qf_layout **out, char *err, size_t errlen);
    uint64_t (*header)(const void *parsed);
    void (*close)(void *parsed);
    /* a derived row's open: the file (name) from the model directory's
     * other files, through io (qf_hf_open_dir's contract) */
    int (*open_dir)(const struct qf_dir_io *io, const struct qf_model_files *m, const char *name,
                    struct qf_hf_dir *out, char *err, size_t errlen);
};

/* The row of a role (the pass-through row for anything else). */
const struct qf_source_kind *qf_source_kind(int role);
/* Whether model m (a const struct qf_model_files *) has a safetensors
 * shard of that name (a row with a shard hook): qf_st_index_check's have. */
bool qf_model_has_shard(void *m, const char *name);

/* A model's files by name, sorted, as a scan found them; qf_model_claim
 * sets each role and the model's formats. hf_arch: config.json's
 * architectures[0] (qf_hf_config_arch; NULL or "" if none): where it is
 * one the converter handles, *extra receives the name of the file the
 * hf-gguf row adds (MODEL.gguf, malloc'd; NULL if none or the directory
 * has a file of that name). Returns 0 or -ENOMEM. */
struct qf_model_file {
    const char *name;
    int role;
};
struct qf_model_files {
    const char *name; /* the model's */
    bool dir;         /* a directory, not one loose file */
    const char *imatrix_name; /* a mount's -o imatrix=NAME: that file of the directory is its
                               * imatrix, before the default names (NULL: defaults only) */
    struct qf_model_file *f;
    size_t n;
    unsigned formats;
};
int qf_model_claim(struct qf_model_files *m, const char *hf_arch, char **extra);
/* After qf_model_claim gave a Hugging Face checkpoint its MODEL.gguf: the
 * names of the lora view's files, one per adapters/NAME/ holding both
 * adapter_config.json and adapter_model.safetensors ("NAME.gguf", a
 * malloc'd array of malloc'd strings, *n of them; the model's formats gain
 * QF_FMT_LORA when there is one). Returns 0 or -ENOMEM. */
int qf_model_adapters(struct qf_model_files *m, char ***names, size_t *n);
/* The index in m->f of the imatrix the -imat views use: the file named
 * m->imatrix_name, else imatrix.gguf, else imatrix.dat, else the first
 * *.imatrix by name; -1 if none. */
int qf_model_imatrix_file(const struct qf_model_files *m);
/* The row's converts and shows for a model of formats. */
bool qf_model_converts(unsigned formats, int role, const struct qf_view *v);
bool qf_model_shows(unsigned formats, int role, const struct qf_view *v);

/* Which views a model has and which files each holds, over what the caller
 * knows of its files (the daemon: its snapshots; --tree: plain opens):
 * opened(ctx, i): file i opened (parsed, for a row with open, or was read
 * and checked); layout_ok(ctx, i, v): its layout in v builds.
 * qf_model_view_exists: v is reachable for the model's formats (f32 always
 * is) and every file v converts opened, a GGUF-format one's layout built;
 * a refused derived GGUF leaves the views the safetensors files have.
 * *blocker (may be NULL): the file that keeps v absent, SIZE_MAX if none.
 * qf_model_file_in_view: the row shows file i in v and, for a derived
 * file, its layout builds. */
struct qf_model_probe {
    void *ctx;
    bool (*opened)(void *ctx, size_t i);
    bool (*layout_ok)(void *ctx, size_t i, const struct qf_view *v);
};
bool qf_model_view_exists(const struct qf_model_files *m, const struct qf_view *v, const struct qf_model_probe *p,
                          size_t *blocker);
bool qf_model_file_in_view(const struct qf_model_files *m, size_t i, const struct qf_view *v,
                           const struct qf_model_probe *p);

/* The hf-gguf kind's open (hfdir.c): reads a Hugging Face model
 * directory's inputs through io — config.json (required),
 * tokenizer.json, tokenizer_config.json, tokenizer.model,
 * chat_template.jinja, added_tokens.json, generation_config.json (each
 * optional, read whole,
 * bounded by QF_JSON_MAX_BYTES / QF_TOKENIZER_MAX_BYTES), the headers of
 * the files m gives role QF_ROLE_ST (in m's order, parsed under codec's
 * limits) and a "*vocab.gguf" beside them (the converter's vocab-only GGUF:
 * its tokenizer KVs are used verbatim) — and builds the converter's GGUF.
 * The daemon passes its descriptor pool, tools plain files.
 * Ownership: out->hf and out->shard_ctx (for qf_hf_reader.ctx: the reader
 * context io->open gave each parsed shard, in order) are the caller's.
 * Threads: io's callbacks run on the calling thread. Returns 0, or -errno
 * with err (-ENOTSUP: an architecture or tokenizer the converter path does
 * not handle). */
#define QF_HF_TEXTS 7
struct qf_dir_io {
    void *ctx;
    /* Opens file name of the model directory: its reader, the reader's
     * context and size; -ENOENT if there is none. */
    int (*open)(void *ctx, const char *name, qf_pread_fn *rd, void **rdctx, uint64_t *size);
    /* The file behind rdctx was read whole: it may be closed (optional). */
    void (*done)(void *ctx, void *rdctx);
    /* Around each header parse (optional): the daemon bounds how many run. */
    void (*parse_begin)(void *ctx);
    void (*parse_end)(void *ctx);
    /* A tokenizer memo (optional, both or neither), keyed by the texts read
     * (config.json, tokenizer.json, tokenizer_config.json, tokenizer.model,
     * chat_template.jinja; NULL where absent): tok_find gives the tokenizer
     * KVs built before from the same texts (malloc'd, the callee's copy),
     * tok_add offers a built model's (qf_hf_tokenizer_kvs). */
    bool (*tok_find)(void *ctx, const char *const *texts, const size_t *lens, uint8_t **kvs, size_t *len,
                     uint64_t *n_kv);
    void (*tok_add)(void *ctx, const char *const *texts, const size_t *lens, const struct qf_hf *hf);
};
struct qf_hf_dir {
    struct qf_hf *hf;
    void **shard_ctx;
    bool shard_refused;    /* a shard's header was refused (its own open says why) */
    bool tokenizer_reused; /* tok_find answered */
    bool tokenizer_parsed; /* tokenizer.json was parsed (a large JSON tree was freed) */
};
int qf_hf_open_dir(const struct qf_dir_io *io, const struct qf_model_files *m, struct qf_hf_dir *out, char *err,
                   size_t errlen);
/* The lora kind's open: config.json and adapters/ADAPTER/adapter_config.json
 * read whole, adapters/ADAPTER/adapter_model.safetensors' header parsed,
 * then qf_hf_build_lora (general.name: ADAPTER). out->shard_ctx[0] is the
 * adapter file's reader context. Same contract as qf_hf_open_dir. */
int qf_lora_open_dir(const struct qf_dir_io *io, const char *adapter, struct qf_hf_dir *out, char *err,
                     size_t errlen);
/* The merged kind's open: name "BASE+ADAPTER.gguf", m the base directory's
 * files (any roles: they are claimed again); the converter's GGUF of the
 * base with adapters/ADAPTER/ merged in (qf_hf_input.lora). */
int qf_merged_open_dir(const struct qf_dir_io *io, const struct qf_model_files *m, const char *name,
                       struct qf_hf_dir *out, char *err, size_t errlen);

/* The merged-safetensors kind's open: name a shard of the base, m the
 * merged model's files (named BASE+ADAPTER; the base's sources among
 * them, QF_ROLE_MERGED_ST naming its shards): config.json, every shard's
 * header and adapters/ADAPTER/ read, then qf_hf_build_merged_st;
 * out->shard_ctx[0] reads that shard. Same contract as qf_hf_open_dir. */
int qf_merged_st_open_dir(const struct qf_dir_io *io, const struct qf_model_files *m, const char *name,
                          struct qf_hf_dir *out, char *err, size_t errlen);

/* ------------------------------------------------------------ reports */

/* The JSON documents quantfs writes for its users (report.c): the daemon's
 * statistics (MOUNT/.quantfs/stats) and a model's check report
 * (MOUNT/MODEL/.check.json). Every JSON document quantfs reads or writes
 * goes through codec: fs/ links no JSON library.
 *
 * A qf_jdoc is an object built by dotted paths ("memory.hits" creates the
 * member object "memory"); setters never fail visibly: an allocation
 * failure makes qf_jdoc_dump return NULL. qf_jdoc_dump writes it with two
 * spaces of indent and sorted keys (stable bytes), frees d and returns a
 * malloc'd string (no trailing newline). One thread per document. */
struct qf_jdoc;
struct qf_jdoc *qf_jdoc_new(void);
void qf_jdoc_int(struct qf_jdoc *d, const char *path, long long v);
void qf_jdoc_num(struct qf_jdoc *d, const char *path, double v);
void qf_jdoc_bool(struct qf_jdoc *d, const char *path, bool v);
void qf_jdoc_str(struct qf_jdoc *d, const char *path, const char *s); /* NULL: null */
char *qf_jdoc_dump(struct qf_jdoc *d);

/* A check report assembled from quantfs-check --json lines: {model,
 * status "done" | "error", exit_status, pass, views: [each line's object],
 * failed: [views that did not pass], error?}. qf_check_report_line takes
 * one line (bounded by codec's JSON limits): 0 the view passed, 1 it
 * failed (*view, *reason: its strings, valid until the report is
 * finished; either may be NULL), -EINVAL not an object (ignored), -ENOMEM.
 * qf_check_report_finish(r, exit status of the checker or -1 if it did not
 * run, error text or NULL) returns the document (malloc'd; NULL on
 * allocation failure) and frees r. qf_check_report_status is {model,
 * status} alone ("running"). */
struct qf_check_report;
struct qf_check_report *qf_check_report_new(const char *model);
int qf_check_report_line(struct qf_check_report *r, const char *line, size_t len, const char **view,
                         const char **reason);
size_t qf_check_report_views(const struct qf_check_report *r);
char *qf_check_report_finish(struct qf_check_report *r, int exit_status, const char *error);
char *qf_check_report_status(const char *model, const char *status);
/* The report's views as a chart (qf_check_chart_svg), from the lines taken
 * so far; malloc'd, NULL on allocation failure. */
char *qf_check_report_chart(const struct qf_check_report *r, const char *model);

/* A check drawn as a chart (chart.c): one point per view at its bits per
 * weight, its mean KL divergence to f32 (log scale) above, its top-1
 * agreement below, blue if it passed, red if not, labelled with its name;
 * a view without a KL divergence (it did not load or run, or the model is
 * not a llama: SQNR only) is listed under the chart with why. A
 * self-contained SVG 1.1 document (no script, no external resource), the
 * points in the order given. Returns a malloc'd string, NULL on allocation
 * failure. Any thread. */
struct qf_chart_point {
    const char *view;
    double bpw, kl, top1;
    bool has_kl, pass;
    const char *why; /* not drawn: why (NULL: no KL divergence) */
};
char *qf_check_chart_svg(const char *model, const struct qf_chart_point *p, size_t n);

#endif
