/* check.h — quantfs-check's engine: load a model (GGUF file or safetensors
 * directory) through plain file I/O, dequantize it to f32, run a llama
 * forward pass, compare views with an FP32 reference.
 *
 * A model is read the way a client reads it: the file is mmapped (through
 * the mount when the path is in one) and parsed with codec/'s parsers, so
 * a view that llama.cpp or transformers could not load does not load here.
 * check/ depends on codec/ only (and jansson, pthreads, libm).
 */
#ifndef QUANTFS_CHECK_H
#define QUANTFS_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ck_tensor {
    char *name;       /* GGUF name, or the safetensors base name (".weight" for quantized layouts) */
    char *gname;      /* safetensors: the converter's GGUF name (qf_hf_map_name), or NULL */
    uint64_t rows, cols; /* a matrix of rows x cols (row-major); 1-D: rows = 1 */
    float *data;      /* dequantized */
    const char *kind; /* stored type, e.g. "q4_K", "F16", "int4" */
};

struct ck_model {
    bool gguf;
    char arch[64];
    bool llama;       /* hyper-parameters below are valid */
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab;
    float eps, rope_base;
    bool neox_rope;   /* HF layout (rotate-half); GGUF llama: adjacent pairs */
    struct ck_tensor *t;
    size_t nt;
    uint64_t file_bytes, n_weights, weight_bytes; /* bits/weight = 8 * weight_bytes / n_weights */
    /* tokenizer (GGUF tokenizer.ggml.*, or HF tokenizer.json vocab) */
    char **vocab;
    float *scores;
    int n_tok, bos, eos;
};

/* Loads path (a .gguf file, a .safetensors file, or a directory holding
 * either) and dequantizes every tensor. On failure returns -errno or
 * -EINVAL with the reason in err. */
int ck_load(const char *path, struct ck_model *m, char *err, size_t errlen);
void ck_free(struct ck_model *m);
const struct ck_tensor *ck_find(const struct ck_model *m, const char *name);

/* Forward pass state: a KV cache for up to n_ctx positions. */
struct ck_state;
int ck_state_new(const struct ck_model *m, int n_ctx, struct ck_state **out);
void ck_state_free(struct ck_state *s);
/* Runs tokens[0..n) at positions pos0.. (after the cached ones), writing
 * n x n_vocab logits. progress(arg, layer) is called per layer (may be NULL). */
int ck_forward(const struct ck_model *m, struct ck_state *s, const int *tokens, int n, int pos0, float *logits,
               void (*progress)(void *arg, int layer), void *arg);

/* SentencePiece-style encoding with the model's vocabulary and scores
 * (llama.cpp's SPM algorithm: best-scoring adjacent merge first, byte
 * fallback). Returns the number of tokens, or -1. */
int ck_tokenize(const struct ck_model *m, const char *text, int *out, int max);
/* Appends the text of token id to buf (SentencePiece '▁' as space, <0xXX> as the byte). */
void ck_detok(const struct ck_model *m, int id, char *buf, size_t len);

/* PASS/FAIL thresholds of one view. */
struct ck_threshold {
    double top1;   /* minimum top-1 agreement with FP32 */
    double kl;     /* maximum mean KL divergence (nats) */
    double sqnr;   /* minimum worst-tensor SQNR (dB), other architectures */
};
/* The documented thresholds for a view name (quantfs-check(1)). */
struct ck_threshold ck_threshold_for(const char *view);

struct ck_result {
    char view[32];
    char path[4096];
    uint64_t bytes;
    double bits_per_weight;
    bool loads, runs, pass;
    char why[256];       /* first failed criterion, or load error */
    bool llama;
    int positions;
    double top1, kl_mean, kl_p99, ppl, ppl_ref;
    double top1_decisive; /* agreement where FP32's top-1 leads by >= 0.05 probability; -1: < 8 such positions */
    double sqnr_min;     /* worst tensor, dB */
    char sqnr_worst[128];
    char sample[512];    /* greedy continuation, text if a tokenizer exists */
};

/* The reference: the FP32 model's greedy continuation and its logits. */
struct ck_ref {
    struct ck_model m;
    int *tokens;
    int n_tokens, n_prompt;
    float *logits;       /* n_tokens x n_vocab */
};
struct ck_opts {
    int n_tokens;        /* evaluation length (generated tokens) */
    int n_sample;        /* tokens of the greedy sample per view */
    const char *prompt;
    double top1_override, kl_override, sqnr_override; /* < 0: documented */
};
int ck_ref_build(const char *path, const struct ck_opts *o, struct ck_ref *r, char *err, size_t errlen);
void ck_ref_free(struct ck_ref *r);
/* Checks one view against the reference; fills res (never fails: load
 * errors are a FAIL with the reason). progress(arg, layer) per layer. */
void ck_check_view(const struct ck_ref *ref, const struct ck_opts *o, const char *view, const char *path,
                   struct ck_result *res, void (*progress)(void *arg, int layer), void *arg);

/* quantfs-check --tree SRC (tree.c): prints the models, views and files
 * (with sizes) a mount of SRC would show, and why absent views are absent,
 * from codec's source kinds alone. views: -o views style list, or NULL.
 * Returns the exit status (0, or 2 when SRC cannot be read). */
int ck_tree(const char *src, const char *views);

#endif
