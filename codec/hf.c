/* hf.c — a Hugging Face checkpoint as the GGUF file llama.cpp's converter
 * writes (convert_hf_to_gguf.py of llama.cpp v0.5.0): names, Q/K row
 * permutation, hyper-parameters (with the transformers defaults the
 * converter's AutoConfig lets in), tokenizer KVs from tokenizer.model,
 * tokenizer.json and tokenizer_config.json, tensor order, types and
 * offsets, one row per converter class (archs[]); a PEFT LoRA adapter as
 * convert_lora_to_gguf.py's file (qf_hf_build_lora), or merged into the
 * checkpoint (qf_hf_input.lora; one shard of the merged checkpoint as a
 * safetensors file: qf_hf_build_merged_st). Sources: ../shared/docs/hf-to-gguf.md,
 * architectures.md and lora.md, which cite the converter's files
 * (conversion/, convert_lora_to_gguf.py, gguf-py/gguf/vocab.py,
 * gguf_writer.py). */
#include <ctype.h>
#include <math.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <regex.h>
#include <sleef.h>

#include "codec.h"
#include "quant_impl.h"

#define ALIGN 32u /* GGUF_DEFAULT_ALIGNMENT */

/* ------------------------------------------------------- GGUF bytes */

static const uint32_t ftypes[QF_HF_NOUT] = {QF_FT_F32, QF_FT_F16, QF_FT_BF16, QF_FT_Q8_0};

struct buf {
    uint8_t *p;
    size_t len, cap;
    bool oom;
    uint64_t n_kv;
};

static void put(struct buf *b, const void *src, size_t n)
{
    if (b->oom || !n) /* an empty string may have no bytes at all (src NULL) */
        return;
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->len + n)
            nc *= 2;
        uint8_t *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}
static void put_u32(struct buf *b, uint32_t v)
{
    uint8_t t[4];
    qf_put32(t, v);
    put(b, t, 4);
}
static void put_u64(struct buf *b, uint64_t v)
{
    uint8_t t[8];
    qf_put64(t, v);
    put(b, t, 8);
}
static void put_str(struct buf *b, const char *s, size_t n)
{
    put_u64(b, n);
    put(b, s, n);
}
static void key(struct buf *b, const char *k, uint32_t type)
{
    put_str(b, k, strlen(k));
    put_u32(b, type);
    b->n_kv++;
}
static void kv_u32(struct buf *b, const char *k, uint32_t v)
{
    key(b, k, QF_GT_U32);
    put_u32(b, v);
}
static void kv_f32(struct buf *b, const char *k, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    key(b, k, QF_GT_F32);
    put_u32(b, u);
}
static void kv_bool(struct buf *b, const char *k, bool v)
{
    uint8_t c = v;
    key(b, k, QF_GT_BOOL);
    put(b, &c, 1);
}
/* general.file_type = 0 for now; returns where in b its value lies (the
 * outtype's value is written there per file) */
static size_t kv_file_type(struct buf *b)
{
    size_t at = b->len + 8 + strlen("general.file_type") + 4;
    kv_u32(b, "general.file_type", 0);
    return at;
}

static void kv_str(struct buf *b, const char *k, const char *v)
{
    key(b, k, QF_GT_STRING);
    put_str(b, v, strlen(v));
}

static void kv_i32(struct buf *b, const char *k, int32_t v)
{
    key(b, k, QF_GT_I32);
    put_u32(b, (uint32_t)v);
}

/* ------------------------------------------------------- JSON helpers */

/* tokenizer_config.json has integers past 2^63 (model_max_length 1e30):
 * flags JSON_DECODE_INT_AS_REAL there, where no integer is read */
static json_t *load(const char *text, size_t len, const char *what, size_t flags, char *err, size_t n)
{
    if (qf_json_check(text, len, what, QF_JSON_MAX_VALUES, QF_JSON_MAX_CONTAINERS, err, n))
        return NULL;
    json_error_t je;
    json_t *j = json_loadb(text, len, flags, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        qf_fail(err, n, -EINVAL, "%s: not a JSON object (%s, line %d)", what, je.text, je.line);
        return NULL;
    }
    return j;
}

static bool jint(json_t *o, const char *k, long long *v)
{
    json_t *x = json_object_get(o, k);
    if (!json_is_integer(x))
        return false;
    *v = json_integer_value(x);
    return true;
}

static bool jnum(json_t *o, const char *k, double *v)
{
    json_t *x = json_object_get(o, k);
    if (!json_is_number(x))
        return false;
    *v = json_number_value(x);
    return true;
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

/* ------------------------------------------------------- architectures */

enum rope_kind { ROPE_NONE, ROPE_LINEAR, ROPE_YARN, ROPE_LLAMA3 };
struct rope {
    enum rope_kind kind;
    double factor, low, high, yarn[4]; /* yarn: ext, attn, beta_fast, beta_slow */
    bool has[4];
    long long orig_ctx;
};

/* Llama-3 rope factors, conversion/llama.py generate_extra_tensors, with
 * torch's float32 operations: Python scalars are rounded to float32, x / t
 * for a scalar x is reciprocal(t) * x (Tensor.__rtruediv__), and torch's
 * pow is SLEEF's powf_u10, which is 1-ulp and differs from libm's powf
 * (tests/refs/hf/rope_grid.json, made by torch, holds such cases). */
void qf_hf_rope_llama3(double theta, long long hd, double factor, double low, double high, long long orig_ctx,
                       float *out)
{
    const float two_pi = (float)(2 * 3.14159265358979323846), orig = (float)orig_ctx;
    const float lo_wl = (float)((double)orig_ctx / low), hi_wl = (float)((double)orig_ctx / high);
    for (long long i = 0; i < hd / 2; i++) {
        float freq = 1.0f / Sleef_powf_u10((float)theta, (float)(2 * i) / (float)hd);
        float wl = (1.0f / freq) * two_pi;
        if (wl < hi_wl) {
            out[i] = 1.0f;
        } else if (wl > lo_wl) {
            out[i] = (float)factor;
        } else {
            float sm = ((1.0f / wl) * orig - (float)low) / (float)(high - low);
            out[i] = 1.0f / ((1.0f - sm) / (float)factor + sm);
        }
    }
}
/* Phi-3's long-context rope (conversion/phi.py generate_extra_tensors):
 * with a non-empty long_factor, the {arch}.rope.scaling.attn_factor KV
 * (computed in double, rounded once) and the long and short factors
 * (n_rot / 2 floats each, JSON -> double -> float) into out[0], out[1]
 * (malloc'd). Refuses what the converter raises on. */
static int phi3_rope_factors(json_t *rp, long long ctx, long long orig, long long n_rot, struct buf *b,
                             const char *an, float *out[2], char *err, size_t errlen)
{
    json_t *f[2] = {json_object_get(rp, "long_factor"), json_object_get(rp, "short_factor")};
    if (!json_array_size(f[0]))
        return 0;
    const char *rt = json_string_value(json_object_get(rp, "rope_type"));
    if (!rt)
        rt = json_string_value(json_object_get(rp, "type"));
    if (!rt || !*rt)
        return qf_fail(err, errlen, -ENOTSUP, "config.json: long_factor without a rope type (the converter's KeyError)");
    double scale = (double)ctx / (double)orig, af = 1.0;
    if (!strcasecmp(rt, "su") || !strcasecmp(rt, "longrope")) {
        if (scale > 1.0)
            af = sqrt(1 + log(scale) / log((double)orig));
    } else if (!strcasecmp(rt, "yarn")) {
        if (scale > 1.0)
            af = 0.1 * log(scale) + 1.0;
    } else {
        return qf_fail(err, errlen, -ENOTSUP, "config.json: rope type '%s' with long_factor (the converter's NotImplementedError)", rt);
    }
    char k[96];
    snprintf(k, sizeof k, "%s.rope.scaling.attn_factor", an);
    kv_f32(b, k, (float)af);
    if (!json_is_array(f[1]) || json_array_size(f[0]) != json_array_size(f[1]) || n_rot % 2 ||
        (long long)json_array_size(f[0]) != n_rot / 2)
        return qf_fail(err, errlen, -ENOTSUP, "config.json: rope long and short factors must be %lld values each", n_rot / 2);
    for (int i = 0; i < 2; i++) {
        size_t n = json_array_size(f[i]);
        if (!(out[i] = malloc(n * sizeof *out[i])))
            return -ENOMEM;
        for (size_t j = 0; j < n; j++) {
            json_t *x = json_array_get(f[i], j);
            if (!json_is_number(x))
                return qf_fail(err, errlen, -ENOTSUP, "config.json: a rope factor is not a number");
            out[i][j] = (float)json_number_value(x);
        }
    }
    return 0;
}

/* One row per converter class (convert_hf_to_gguf.py registers one class
 * per architecture: conversion/llama.py, qwen.py): everything that makes
 * its GGUF differ from the others'. Adding an architecture is adding a row
 * (and, where it needs one, a new field here) with its reference files
 * (HACKING.md). The tensor names all rows share: qf_hf_map_name. */
/* The hyper-parameter KVs of a row: TextModel.set_gguf_parameters (T of
 * ../shared/docs/architectures.md), or a class's own list */
enum hf_kvs { KVS_TEXT, KVS_GEMMA2, KVS_PHI3 };
/* Its set_vocab: LlamaModel's (SentencePiece, LlamaHfVocab or BPE, with
 * add_space_prefix from tokenizer_config), the base BPE one (Qwen), Gemma's
 * (SentencePiece, then add_space_prefix false; Gemma 2 has no BPE path),
 * Phi3MiniModel's own SentencePiece routine */
enum hf_vocab { VOCAB_LLAMA, VOCAB_BPE, VOCAB_GEMMA, VOCAB_GEMMA_SPM_ONLY, VOCAB_PHI3, VOCAB_GPT2 };

struct hf_arch {
    const char *hf;        /* config.json architectures[0] */
    const char *gguf;      /* general.architecture, the KV prefix */
    /* transformers' config defaults (the converter reads config.json
     * through AutoConfig, which fills them in) */
    double eps, theta;
    long long ctx;         /* max_position_embeddings */
    long long head_dim;    /* head_dim when config.json has none; 0: hidden_size / heads */
    long long kv_heads;    /* num_key_value_heads; 0: num_attention_heads */
    long long vocab;       /* vocab_size */
    bool head_kvs_always;  /* attention.key/value_length even without head_dim in config.json
                            * (transformers fills it in for this class) */
    bool permute_qk;       /* LlamaModel.permute: q/k rows reordered per head (head_dim even) */
    bool rope_llama3;      /* rope_type llama3 becomes a generated rope_freqs tensor */
    bool vocab_size_kvs;   /* writes ARCH.vocab_size and ARCH.rope.dimension_count */
    enum hf_vocab vocab_kind;
    enum hf_kvs kvs;
    /* MoE experts stacked into 3-D tensors: source names
     * model.layers.L.<experts>E.<part>.weight, stacked per layer once all
     * 3 x n_expert have arrived, in parts order, as ffn_<gguf>_exps */
    const char *experts;
    const char *parts[3], *parts_gguf[3];
    bool moe_ff_kvs;       /* Qwen2MoeModel: expert_(shared_)feed_forward_length after file_type */
    /* Gemma: every tensor whose name ends in norm.weight gets + 1 (in the
     * source dtype for fp16: conversion/gemma.py modify_tensors) */
    bool norm_shift;
    bool drop_lm_head;     /* Gemma2Model.filter_tensors */
    /* Gemma3Model.set_gguf_parameters: its re-written keys (defaults
     * above), then final_logit_softcapping and sliding_window appended */
    bool gemma3_kvs;
    bool rope_swa;         /* rope.freq_base_swa: the config's sliding_attention rope_theta */
    double theta_swa;      /* its transformers default (rope_local_base_freq) */
    const char *const (*names)[2]; /* per-architecture block names, before the shared table:
                                    * tensor_mapping.py maps by the arch's own tensor list */
};

static const char *const gemma_names[][2] = {{"post_attention_layernorm", "post_attention_norm"},
                                             {"pre_feedforward_layernorm", "ffn_norm"},
                                             {"post_feedforward_layernorm", "post_ffw_norm"},
                                             {NULL, NULL}};
/* Qwen2-MoE's shared expert and its gate */
static const char *const qwen2moe_names[][2] = {{"mlp.shared_expert.gate_proj", "ffn_gate_shexp"},
                                                {"mlp.shared_expert.up_proj", "ffn_up_shexp"},
                                                {"mlp.shared_expert.down_proj", "ffn_down_shexp"},
                                                {"mlp.shared_expert_gate", "ffn_gate_inp_shexp"},
                                                {NULL, NULL}};
/* Phi-3's fused projections stay fused (rows q, k, v; gate, up) */
static const char *const phi3_names[][2] = {{"self_attn.qkv_proj", "attn_qkv"},
                                            {"mlp.gate_up_proj", "ffn_up"},
                                            {NULL, NULL}};

static const struct hf_arch archs[] = {
    {.hf = "LlamaForCausalLM", .gguf = "llama", .eps = 1e-6, .theta = 10000.0, .ctx = 2048, .vocab = 32000,
     .head_kvs_always = true, .permute_qk = true, .rope_llama3 = true, .vocab_size_kvs = true},
    {.hf = "MistralForCausalLM", .gguf = "llama", .eps = 1e-6, .theta = 10000.0, .ctx = 4096 * 32, .vocab = 32000,
     .head_kvs_always = true, .permute_qk = true, .rope_llama3 = true, .vocab_size_kvs = true},
    {.hf = "Qwen2ForCausalLM", .gguf = "qwen2", .eps = 1e-6, .theta = 10000.0, .ctx = 32768, .vocab = 151936,
     .vocab_kind = VOCAB_BPE},
    {.hf = "Qwen3ForCausalLM", .gguf = "qwen3", .eps = 1e-6, .theta = 10000.0, .ctx = 32768, .head_dim = 128,
     .vocab = 151936, .head_kvs_always = true, .vocab_kind = VOCAB_BPE},
    /* LlamaModel with block_sparse_moe (conversion/llama.py:266-294) */
    {.hf = "MixtralForCausalLM", .gguf = "llama", .eps = 1e-5, .theta = 1e6, .ctx = 4096 * 32, .vocab = 32000,
     .head_kvs_always = false, .permute_qk = true, .rope_llama3 = true, .vocab_size_kvs = true,
     .experts = "block_sparse_moe.experts.", .parts = {"w1", "w2", "w3"}, .parts_gguf = {"gate", "down", "up"}},
    /* Qwen3MoeModel(Qwen2MoeModel), conversion/qwen.py:76-156, 258-274 */
    /* (transformers 5.17's Qwen3MoeConfig has no head_dim default, unlike Qwen3Config) */
    {.hf = "Qwen3MoeForCausalLM", .gguf = "qwen3moe", .eps = 1e-6, .theta = 10000.0, .ctx = 32768, .vocab = 151936,
     .vocab_kind = VOCAB_GPT2, .experts = "mlp.experts.", .parts = {"down_proj", "gate_proj", "up_proj"},
     .parts_gguf = {"down", "gate", "up"}, .moe_ff_kvs = true},
    /* Qwen2MoeModel, conversion/qwen.py:78-156: experts as Qwen3-MoE's, a
     * shared expert with its own gate, TextModel's BPE vocabulary only */
    {.hf = "Qwen2MoeForCausalLM", .gguf = "qwen2moe", .eps = 1e-6, .theta = 10000.0, .ctx = 32768, .vocab = 151936,
     .vocab_kind = VOCAB_GPT2, .experts = "mlp.experts.", .parts = {"down_proj", "gate_proj", "up_proj"},
     .parts_gguf = {"down", "gate", "up"}, .moe_ff_kvs = true, .names = qwen2moe_names},
    /* SmolLM3Model(LlamaModel), conversion/llama.py: Llama's file under
     * another name (no_rope_layers are not written: llama.cpp's smollm3
     * graph skips rope every 4th layer by itself) */
    {.hf = "SmolLM3ForCausalLM", .gguf = "smollm3", .eps = 1e-6, .theta = 2000000.0, .ctx = 32768, .vocab = 128256,
     .head_kvs_always = false, .permute_qk = true, .rope_llama3 = true, .vocab_size_kvs = true},
    /* Gemma2Model, conversion/gemma.py:73-122 (Gemma2Config's defaults) */
    {.hf = "Gemma2ForCausalLM", .gguf = "gemma2", .eps = 1e-6, .theta = 10000.0, .ctx = 8192, .head_dim = 256,
     .kv_heads = 4, .vocab = 256000, .vocab_kind = VOCAB_GEMMA_SPM_ONLY, .kvs = KVS_GEMMA2, .norm_shift = true,
     .drop_lm_head = true, .names = gemma_names},
    /* Gemma3Model, conversion/gemma.py:125-180, for the text model alone
     * and for the text part of the multimodal checkpoint (Gemma3TextConfig's
     * defaults: rope_parameters full_attention / sliding_attention) */
    {.hf = "Gemma3ForCausalLM", .gguf = "gemma3", .eps = 1e-6, .theta = 1e6, .ctx = 131072, .head_dim = 256,
     .kv_heads = 4, .vocab = 262208, .head_kvs_always = true, .vocab_kind = VOCAB_GEMMA, .norm_shift = true,
     .gemma3_kvs = true, .rope_swa = true, .theta_swa = 10000.0, .names = gemma_names},
    {.hf = "Gemma3ForConditionalGeneration", .gguf = "gemma3", .eps = 1e-6, .theta = 1e6, .ctx = 131072,
     .head_dim = 256, .kv_heads = 4, .vocab = 262208, .head_kvs_always = true, .vocab_kind = VOCAB_GEMMA,
     .norm_shift = true, .gemma3_kvs = true, .rope_swa = true, .theta_swa = 10000.0, .names = gemma_names},
    /* Phi3MiniModel, conversion/phi.py:39-211 (Phi3Config's defaults) */
    {.hf = "Phi3ForCausalLM", .gguf = "phi3", .eps = 1e-5, .theta = 10000.0, .ctx = 4096, .vocab = 32064,
     .vocab_kind = VOCAB_PHI3, .kvs = KVS_PHI3, .names = phi3_names},
};

static const struct hf_arch *arch_row(const char *hf_arch)
{
    for (size_t i = 0; hf_arch && i < sizeof archs / sizeof *archs; i++)
        if (!strcmp(archs[i].hf, hf_arch))
            return &archs[i];
    return NULL;
}

/* TextModel's hparams: text_config's keys over the root's (a multimodal
 * checkpoint's language model); a new reference, NULL on ENOMEM */
static json_t *hparams(json_t *cfg)
{
    json_t *tcfg = json_object_get(cfg, "text_config"), *hp;
    if (!json_is_object(tcfg))
        return json_incref(cfg);
    if ((hp = json_copy(cfg)) && json_object_update(hp, tcfg)) {
        json_decref(hp);
        hp = NULL;
    }
    return hp;
}

int qf_hf_config_arch(const char *text, size_t len, char *arch, size_t archlen, char *err, size_t errlen)
{
    if (len > QF_JSON_MAX_BYTES)
        return qf_fail(err, errlen, -E2BIG, "config.json: %zu bytes exceeds quantfs' limit of %llu MiB", len,
                       (unsigned long long)(QF_JSON_MAX_BYTES >> 20));
    json_t *j = load(text, len, "config.json", JSON_DECODE_INT_AS_REAL, err, errlen);
    if (!j)
        return -EINVAL;
    const char *a = json_string_value(json_array_get(json_object_get(j, "architectures"), 0));
    snprintf(arch, archlen, "%s", a ? a : "");
    json_decref(j);
    return 0;
}

int qf_json_string_member(const char *text, size_t len, const char *what, const char *member, char *out,
                          size_t outlen, char *err, size_t errlen)
{
    if (len > QF_JSON_MAX_BYTES)
        return qf_fail(err, errlen, -E2BIG, "%s: %zu bytes exceeds quantfs' limit of %llu MiB", what, len,
                       (unsigned long long)(QF_JSON_MAX_BYTES >> 20));
    json_t *j = load(text, len, what, 0, err, errlen);
    if (!j)
        return -EINVAL;
    const char *s = json_string_value(json_object_get(j, member));
    snprintf(out, outlen, "%s", s ? s : "");
    json_decref(j);
    return 0;
}

/* general.sampling.* from generation_config.json, as gguf-py writes them
 * (metadata.py:77-89 reads, :609-634 writes): this fixed order, each only
 * when present and not null, before general.name. A file that is not JSON
 * is ignored (Metadata.load_generation_config returns {}), a falsy value is
 * too (`if gen_config:`); where the converter's struct.pack or .get would
 * raise (a float for an integer key, a string for a number, an array
 * instead of an object) quantfs refuses rather than write something. */
static int write_sampling(struct buf *b, const char *text, size_t len, char *err, size_t errlen)
{
    static const struct {
        const char *kv, *json;
        char t; /* 's' string, 'i' int32, 'f' float32 */
    } keys[] = {{"sequence", "sequence", 's'},
                {"top_k", "top_k", 'i'},
                {"top_p", "top_p", 'f'},
                {"min_p", "min_p", 'f'},
                {"xtc_probability", "xtc_probability", 'f'},
                {"xtc_threshold", "xtc_threshold", 'f'},
                {"temp", "temperature", 'f'},
                {"penalty_last_n", "penalty_last_n", 'i'},
                {"penalty_repeat", "penalty_repeat", 'f'},
                {"mirostat", "mirostat", 'i'},
                {"mirostat_tau", "mirostat_tau", 'f'},
                {"mirostat_eta", "mirostat_eta", 'f'}};
    if (!text)
        return 0;
    if (qf_json_check(text, len, "generation_config.json", QF_JSON_MAX_VALUES, QF_JSON_MAX_CONTAINERS, err, errlen))
        return -EINVAL;
    json_error_t je;
    json_t *g = json_loadb(text, len, JSON_DECODE_ANY, &je);
    if (!g)
        return 0; /* not JSON: the converter ignores the file */
    int rc = 0;
    if (!json_is_object(g)) {
        bool truthy = (json_is_array(g) && json_array_size(g)) || json_is_true(g) ||
                      (json_is_string(g) && json_string_length(g)) || (json_is_number(g) && json_number_value(g) != 0);
        if (truthy)
            rc = qf_fail(err, errlen, -ENOTSUP, "generation_config.json is not a JSON object (the converter fails)");
        json_decref(g);
        return rc;
    }
    for (size_t i = 0; !rc && i < sizeof keys / sizeof *keys; i++) {
        json_t *v = json_object_get(g, keys[i].json);
        if (!strcmp(keys[i].json, "penalty_repeat") && !v) /* .get("penalty_repeat", .get("repetition_penalty")) */
            v = json_object_get(g, "repetition_penalty");
        if (!v || json_is_null(v))
            continue;
        char k[64];
        snprintf(k, sizeof k, "general.sampling.%s", keys[i].kv);
        if (keys[i].t == 's') {
            if (json_is_string(v) && json_string_length(v))
                kv_str(b, k, json_string_value(v));
            else if (!json_is_string(v) && !json_is_false(v) && !(json_is_number(v) && json_number_value(v) == 0) &&
                     !(json_is_array(v) && !json_array_size(v)) && !(json_is_object(v) && !json_object_size(v)))
                rc = qf_fail(err, errlen, -ENOTSUP, "generation_config.json: %s is not a string", keys[i].json);
        } else if (keys[i].t == 'i') {
            long long x = json_is_boolean(v) ? json_is_true(v) : json_integer_value(v);
            if ((!json_is_integer(v) && !json_is_boolean(v)) || x < INT32_MIN || x > INT32_MAX)
                rc = qf_fail(err, errlen, -ENOTSUP, "generation_config.json: %s is not a 32-bit integer", keys[i].json);
            else
                kv_i32(b, k, (int32_t)x);
        } else {
            /* Python float (a double) to float32, as struct.pack('f') */
            double x = json_is_boolean(v) ? (double)json_is_true(v)
                       : json_is_integer(v) ? (double)json_integer_value(v)
                                            : json_real_value(v);
            if (!json_is_number(v) && !json_is_boolean(v))
                rc = qf_fail(err, errlen, -ENOTSUP, "generation_config.json: %s is not a number", keys[i].json);
            else
                kv_f32(b, k, (float)x);
        }
    }
    json_decref(g);
    return rc;
}

bool qf_hf_arch_supported(const char *hf_arch) { return arch_row(hf_arch) != NULL; }

/* TextModel.filter_tensors (conversion/base.py): a multimodal checkpoint's
 * other towers are skipped; ModelBase's: "language_model." is deleted */
static bool multimodal_name(const char *n)
{
    static const char *const pre[] = {"mlp", "vit.", "vpm.", "siglip2.", "conformer.", "merger.", "resampler.",
                                      "sound_encoder.", "sound_projection.", "speech_embeddings."};
    static const char *const has[] = {"visual.", "vision.", "audio.", "talker.", "vision_", "audio_", "token2wav.",
                                      "code2wav.", "projector.", "pre_mm_projector_norm", "image_newline",
                                      "view_seperator", "patch_embed", "patch_embedding", "patch_merger.",
                                      "patch_merge_mlp.", "model.connector."};
    for (size_t i = 0; i < sizeof pre / sizeof *pre; i++)
        if (!strncmp(n, pre[i], strlen(pre[i])))
            return true;
    for (size_t i = 0; i < sizeof has / sizeof *has; i++)
        if (strstr(n, has[i]))
            return true;
    return false;
}

/* name without every "language_model." into out; false if it does not fit */
static bool strip_lm(const char *name, char *out, size_t n)
{
    static const char lm[] = "language_model.";
    size_t o = 0;
    for (const char *p = name; *p;) {
        if (!strncmp(p, lm, sizeof lm - 1)) {
            p += sizeof lm - 1;
            continue;
        }
        if (o + 1 >= n)
            return false;
        out[o++] = *p++;
    }
    out[o] = 0;
    return true;
}

int qf_hf_map_name(const char *hf_arch, const char *hf_name, char *out, size_t n)
{
    const struct hf_arch *a = arch_row(hf_arch);
    char hf[256];
    if (multimodal_name(hf_name))
        return 1;
    if (!strip_lm(hf_name, hf, sizeof hf))
        return -1;
    if (a && a->drop_lm_head && !strcmp(hf, "lm_head.weight"))
        return 1;
    static const char *const top[][2] = {{"model.embed_tokens.weight", "token_embd.weight"},
                                         {"model.norm.weight", "output_norm.weight"},
                                         {"lm_head.weight", "output.weight"}};
    for (size_t i = 0; i < sizeof top / sizeof *top; i++)
        if (!strcmp(hf, top[i][0]))
            return snprintf(out, n, "%s", top[i][1]) < (int)n ? 0 : -1;
    static const char *const blk[][2] = {
        {"input_layernorm", "attn_norm"},     {"post_attention_layernorm", "ffn_norm"},
        {"self_attn.q_proj", "attn_q"},       {"self_attn.k_proj", "attn_k"},
        {"self_attn.v_proj", "attn_v"},       {"self_attn.o_proj", "attn_output"},
        {"self_attn.q_norm", "attn_q_norm"},  {"self_attn.k_norm", "attn_k_norm"},
        {"mlp.gate_proj", "ffn_gate"},        {"mlp.up_proj", "ffn_up"},
        {"mlp.down_proj", "ffn_down"},        {"block_sparse_moe.gate", "ffn_gate_inp"},
        {"mlp.gate", "ffn_gate_inp"},         {NULL, NULL},
    };
    unsigned layer;
    int used = 0;
    if (sscanf(hf, "model.layers.%u.%n", &layer, &used) != 1 || !used)
        return -1;
    const char *rest = hf + used;
    if (!strcmp(rest, "self_attn.rotary_emb.inv_freq"))
        return 1;
    const char *dot = strrchr(rest, '.');
    if (!dot || (strcmp(dot, ".weight") && strcmp(dot, ".bias")))
        return -1;
    const char *const (*tables[2])[2] = {a ? a->names : NULL, blk};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; tables[k] && tables[k][i][0]; i++)
            if (strlen(tables[k][i][0]) == (size_t)(dot - rest) &&
                !strncmp(rest, tables[k][i][0], (size_t)(dot - rest)))
                return snprintf(out, n, "blk.%u.%s%s", layer, tables[k][i][1], dot) < (int)n ? 0 : -1;
    return -1;
}

static bool expert_name(const struct hf_arch *a, const char *name, unsigned *layer, unsigned *expert, int *part);

int qf_hf_locate(const char *hf_arch, const char *hf_name, char *out, size_t n, uint32_t *expert, float *shift)
{
    const struct hf_arch *a = arch_row(hf_arch);
    char nm[256];
    unsigned layer, e;
    int part;
    *expert = UINT32_MAX;
    *shift = 0;
    if (a && !multimodal_name(hf_name) && strip_lm(hf_name, nm, sizeof nm) && expert_name(a, nm, &layer, &e, &part)) {
        snprintf(out, n, "blk.%u.ffn_%s_exps.weight", layer, a->parts_gguf[part]);
        *expert = e;
        return 0;
    }
    int rc = qf_hf_map_name(hf_arch, hf_name, out, n);
    if (!rc && a && a->norm_shift && strip_lm(hf_name, nm, sizeof nm) && has_suffix(nm, "norm.weight"))
        *shift = 1.0f;
    return rc;
}

/* ------------------------------------------------------- tokenizer */

enum { TT_NORMAL = 1, TT_UNKNOWN, TT_CONTROL, TT_USER, TT_UNUSED, TT_BYTE };

struct vocab {
    size_t n;
    char **tok;     /* owned strings */
    size_t *len;
    float *score;   /* NULL: no scores KV */
    int32_t *type;
};

static void vocab_free(struct vocab *v)
{
    for (size_t i = 0; v->tok && i < v->n; i++)
        free(v->tok[i]);
    free(v->tok);
    free(v->len);
    free(v->score);
    free(v->type);
    memset(v, 0, sizeof *v);
}

static int vocab_alloc(struct vocab *v, size_t n, bool scores)
{
    v->n = n;
    v->tok = calloc(n ? n : 1, sizeof *v->tok);
    v->len = calloc(n ? n : 1, sizeof *v->len);
    v->type = calloc(n ? n : 1, sizeof *v->type);
    v->score = scores ? calloc(n ? n : 1, sizeof *v->score) : NULL;
    return v->tok && v->len && v->type && (!scores || v->score) ? 0 : -ENOMEM;
}

static int vocab_set(struct vocab *v, size_t i, const char *s, size_t n)
{
    char *c = malloc(n + 1);
    if (!c)
        return -ENOMEM;
    memcpy(c, s, n);
    c[n] = 0;
    free(v->tok[i]);
    v->tok[i] = c;
    v->len[i] = n;
    return 0;
}

static int vocab_pad(struct vocab *v, size_t i)
{
    char t[32];
    int k = snprintf(t, sizeof t, "[PAD%zu]", i);
    return vocab_set(v, i, t, (size_t)k);
}

/* conversion/base.py does_token_look_special */
static bool looks_special(const char *t)
{
    size_t n = strlen(t);
    if (!strcmp(t, "<pad>") || !strcmp(t, "<mask>") || !strcmp(t, "<2mass>") || !strcmp(t, "[@BOS@]"))
        return true;
    if (n >= 4 && !strncmp(t, "<|", 2) && !strcmp(t + n - 2, "|>"))
        return true;
    if (n >= 8 && !strncmp(t, "<\xef\xbd\x9c", 4) && !strcmp(t + n - 4, "\xef\xbd\x9c>"))
        return true;
    return n >= 8 && !strncmp(t, "<unused", 7) && t[n - 1] == '>';
}

/* "▁" -> " " (user-defined tokens are pre-normalized by the converter) */
static char *unspace(const char *t)
{
    size_t n = strlen(t);
    char *o = malloc(n + 1), *p = o;
    if (!o)
        return NULL;
    for (size_t i = 0; i < n;) {
        if (!strncmp(t + i, "\xe2\x96\x81", 3)) {
            *p++ = ' ';
            i += 3;
        } else {
            *p++ = t[i++];
        }
    }
    *p = 0;
    return o;
}

/* SentencePiece ModelProto (sentencepiece_model.proto): field 1 repeated
 * SentencePiece { 1: piece, 2: score (float), 3: type (enum) }. Only the
 * wire types needed to skip other fields are accepted. */
static int pb_varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v)
{
    *v = 0;
    for (int s = 0; s < 64; s += 7) {
        if (*i >= n)
            return -1;
        uint8_t c = p[(*i)++];
        *v |= (uint64_t)(c & 0x7f) << s;
        if (!(c & 0x80))
            return 0;
    }
    return -1;
}

static int pb_skip(const uint8_t *p, size_t n, size_t *i, unsigned wt)
{
    uint64_t v;
    switch (wt) {
    case 0:
        return pb_varint(p, n, i, &v);
    case 1:
        if (n - *i < 8)
            return -1;
        *i += 8;
        return 0;
    case 2:
        if (pb_varint(p, n, i, &v) || v > n - *i)
            return -1;
        *i += (size_t)v;
        return 0;
    case 5:
        if (n - *i < 4)
            return -1;
        *i += 4;
        return 0;
    default:
        return -1;
    }
}

struct piece {
    const uint8_t *s;
    size_t len;
    float score;
    uint32_t type;
};

static int spm_parse(const uint8_t *p, size_t n, struct piece **out, size_t *count, char *err, size_t errlen)
{
    size_t i = 0, cap = 0, k = 0;
    struct piece *ps = NULL;
    while (i < n) {
        uint64_t tag;
        if (pb_varint(p, n, &i, &tag))
            goto bad;
        if (tag == ((1u << 3) | 2)) {
            uint64_t len;
            if (pb_varint(p, n, &i, &len) || len > n - i)
                goto bad;
            size_t end = i + (size_t)len;
            struct piece pc = {.type = TT_NORMAL};
            while (i < end) {
                uint64_t t2, v;
                if (pb_varint(p, end, &i, &t2))
                    goto bad;
                if (t2 == ((1u << 3) | 2)) {
                    if (pb_varint(p, end, &i, &v) || v > end - i)
                        goto bad;
                    pc.s = p + i;
                    pc.len = (size_t)v;
                    i += (size_t)v;
                } else if (t2 == ((2u << 3) | 5)) {
                    if (end - i < 4)
                        goto bad;
                    uint32_t u = qf_get32(p + i);
                    memcpy(&pc.score, &u, 4);
                    i += 4;
                } else if (t2 == ((3u << 3) | 0)) {
                    if (pb_varint(p, end, &i, &v))
                        goto bad;
                    pc.type = (uint32_t)v;
                } else if (pb_skip(p, end, &i, (unsigned)(t2 & 7))) {
                    goto bad;
                }
            }
            if (!pc.len) { /* sentencepiece's own loader: "piece must not be empty." */
                free(ps);
                return qf_fail(err, errlen, -EINVAL, "tokenizer.model: piece %zu is empty (sentencepiece refuses it)",
                               k);
            }
            if (k == cap) {
                cap = cap ? cap * 2 : 1024;
                struct piece *np = realloc(ps, cap * sizeof *np);
                if (!np) {
                    free(ps);
                    return -ENOMEM;
                }
                ps = np;
            }
            if (k >= (1u << 24))
                goto bad;
            ps[k++] = pc;
        } else if (pb_skip(p, n, &i, (unsigned)(tag & 7))) {
            goto bad;
        }
    }
    *out = ps;
    *count = k;
    return 0;
bad:
    free(ps);
    return qf_fail(err, errlen, -EINVAL, "tokenizer.model: malformed SentencePiece model at byte %zu", i);
}

/* what SpecialVocab (gguf-py/gguf/vocab.py) gathers */
#define N_SPECIAL 9
static const char *const special_types[N_SPECIAL] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask", "eot", "eom"};
struct special {
    int n_types; /* special_types[0..n_types) are looked at (eot/eom are added on demand) */
    long long id[N_SPECIAL];
    int id_order[N_SPECIAL], n_ids;
    int add[N_SPECIAL]; /* -1 unset, 0, 1 */
    int add_order[N_SPECIAL], n_add;
    const char *chat_template;
    int lowercase, strip_accents; /* -1 unset */
};

static void set_add(struct special *sp, int t, bool v)
{
    if (sp->add[t] < 0)
        sp->add_order[sp->n_add++] = t;
    sp->add[t] = v;
}

static void set_id(struct special *sp, int t, json_t *id, long long n_vocab)
{
    if (!json_is_integer(id) || json_integer_value(id) < 0)
        return;
    long long v = json_integer_value(id);
    if (n_vocab >= 0 && v >= n_vocab)
        return;
    if (sp->id[t] >= 0)
        return;
    sp->id[t] = v;
    sp->id_order[sp->n_ids++] = t;
}

static void parse_normalizer(struct special *sp, json_t *n)
{
    const char *t = json_string_value(json_object_get(n, "type"));
    if (!t)
        return;
    if (!strcmp(t, "Lowercase"))
        sp->lowercase = 1;
    else if (!strcmp(t, "StripAccents"))
        sp->strip_accents = 1;
    else if (!strcmp(t, "BertNormalizer")) {
        json_t *l = json_object_get(n, "lowercase"), *s = json_object_get(n, "strip_accents");
        if (json_is_boolean(l))
            sp->lowercase = json_is_true(l);
        if (json_is_boolean(s))
            sp->strip_accents = json_is_true(s);
    } else if (!strcmp(t, "Sequence")) {
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(n, "normalizers"), i, x) parse_normalizer(sp, x);
    }
}

static const char *tok_text(json_t *e)
{
    if (json_is_string(e))
        return json_string_value(e);
    if (json_is_object(e))
        return json_string_value(json_object_get(e, "content"));
    return NULL;
}

static bool str_eq(const char *a, const char *b) { return a && b && !strcmp(a, b); }

/* SpecialVocab._try_load_from_tokenizer_json + _try_load_from_config_json.
 * tc is modified as the converter modifies its copy. */
static void special_load(struct special *sp, json_t *tj, json_t *tc, json_t *cfg, long long n_vocab,
                         const char *jinja)
{
    memset(sp, 0, sizeof *sp);
    sp->n_types = 7;
    for (int i = 0; i < N_SPECIAL; i++) {
        sp->id[i] = -1;
        sp->add[i] = -1;
    }
    sp->lowercase = sp->strip_accents = -1;
    json_t *added = tj ? json_object_get(tj, "added_tokens") : NULL;
    if (tj) {
        json_t *norm = json_object_get(tj, "normalizer");
        if (json_is_object(norm))
            parse_normalizer(sp, norm);
        const char *bos = tc ? tok_text(json_object_get(tc, "bos_token")) : NULL;
        const char *cls = tc ? tok_text(json_object_get(tc, "cls_token")) : NULL;
        const char *eos = tc ? tok_text(json_object_get(tc, "eos_token")) : NULL;
        const char *sep = tc ? tok_text(json_object_get(tc, "sep_token")) : NULL;
        if (!(bos && *bos) && cls && *cls && tc) {
            json_object_set_new(tc, "bos_token", json_string(cls));
            bos = cls;
        }
        if (!(eos && *eos) && sep && *sep && tc) {
            json_object_set_new(tc, "eos_token", json_string(sep));
            eos = sep;
        }
        json_t *pp = json_object_get(tj, "post_processor");
        json_t *procs = json_object_get(pp, "processors");
        size_t np = json_is_array(procs) ? json_array_size(procs) : (json_is_object(pp) ? 1 : 0);
        for (size_t k = 0; k < np; k++) {
            json_t *pr = json_is_array(procs) ? json_array_get(procs, k) : pp;
            const char *ty = json_string_value(json_object_get(pr, "type"));
            if (str_eq(ty, "RobertaProcessing")) {
                set_add(sp, 0, true);
                set_add(sp, 1, true);
                set_add(sp, 3, true);
                continue; /* cls/sep names only matter for models quantfs does not convert */
            }
            if (!str_eq(ty, "TemplateProcessing"))
                continue;
            json_t *single = json_object_get(pr, "single"), *pair = json_object_get(pr, "pair");
            const char *first = NULL, *last = NULL;
            if (json_array_size(single) > 1) {
                first = json_string_value(json_object_get(json_object_get(json_array_get(single, 0), "SpecialToken"), "id"));
                if (first && *first) {
                    if (!tc)
                        bos = first;
                    else if (!str_eq(first, bos) && !str_eq(first, cls)) {
                        if (!(bos && *bos)) {
                            json_object_set_new(tc, "bos_token", json_string(first));
                            bos = json_string_value(json_object_get(tc, "bos_token"));
                        }
                        if (!(cls && *cls)) {
                            json_object_set_new(tc, "cls_token", json_string(first));
                            cls = json_string_value(json_object_get(tc, "cls_token"));
                        }
                    }
                    set_add(sp, 0, str_eq(first, bos) || str_eq(first, cls));
                } else {
                    first = NULL;
                }
                last = json_string_value(json_object_get(
                    json_object_get(json_array_get(single, json_array_size(single) - 1), "SpecialToken"), "id"));
                if (last && *last) {
                    if (!tc)
                        eos = last;
                    else if (!str_eq(last, eos)) {
                        const char *slot = sp->n_types == 7 ? "eot_token" : sp->n_types == 8 ? "eom_token" : NULL;
                        if (slot) {
                            sp->n_types++;
                            json_object_set_new(tc, slot, json_string(eos ? eos : ""));
                        }
                        json_object_set_new(tc, "eos_token", json_string(last));
                        eos = json_string_value(json_object_get(tc, "eos_token"));
                    }
                    set_add(sp, 1, str_eq(last, eos));
                } else {
                    last = NULL;
                }
            }
            size_t pn = json_array_size(pair);
            if (pn) {
                const char *p0 = json_string_value(json_object_get(json_object_get(json_array_get(pair, 0), "SpecialToken"), "id"));
                const char *pl = json_string_value(json_object_get(json_object_get(json_array_get(pair, pn - 1), "SpecialToken"), "id"));
                size_t start = first && str_eq(p0, first) ? 1 : 0;
                size_t stop = last && str_eq(pl, last) ? pn - 1 : pn;
                if (stop > start) {
                    const char *a = json_string_value(json_object_get(json_object_get(json_array_get(pair, start), "Sequence"), "id"));
                    const char *b = json_string_value(json_object_get(json_object_get(json_array_get(pair, stop - 1), "Sequence"), "id"));
                    if (str_eq(a, "A") && str_eq(b, "B") && stop - start > 2) {
                        bool add_sep = false;
                        const char *e0 = json_string_value(
                            json_object_get(json_object_get(json_array_get(pair, start + 1), "SpecialToken"), "id"));
                        if (e0 && *e0 && (str_eq(e0, sep) || str_eq(e0, eos)) && !last)
                            add_sep = true;
                        if (stop - start - 2 == 2) {
                            const char *e1 = json_string_value(
                                json_object_get(json_object_get(json_array_get(pair, start + 2), "SpecialToken"), "id"));
                            if (e1 && *e1 && (str_eq(e1, sep) || str_eq(e1, eos)))
                                add_sep = true;
                        }
                        set_add(sp, 3, add_sep);
                        if (add_sep && !(sep && *sep) && tc)
                            json_object_set_new(tc, "sep_token", json_string(eos ? eos : ""));
                    }
                }
            }
        }
    }
    if (tc) {
        json_t *ct = json_object_get(tc, "chat_template");
        if (json_is_string(ct))
            sp->chat_template = json_string_value(ct);
        else if (!ct)
            sp->chat_template = jinja; /* chat_template.jinja beside it */
        for (int t = 0; t < sp->n_types; t++) {
            char k[32];
            snprintf(k, sizeof k, "add_%s_token", special_types[t]);
            json_t *a = json_object_get(tc, k);
            if (json_is_boolean(a))
                set_add(sp, t, json_is_true(a));
            snprintf(k, sizeof k, "%s_token", special_types[t]);
            const char *content = tok_text(json_object_get(tc, k));
            if (!content)
                continue;
            size_t i;
            json_t *at;
            json_array_foreach(added, i, at)
            {
                if (str_eq(json_string_value(json_object_get(at, "content")), content)) {
                    set_id(sp, t, json_object_get(at, "id"), n_vocab);
                    break;
                }
            }
        }
    }
    for (int t = 0; cfg && t < sp->n_types; t++) {
        char k[32];
        snprintf(k, sizeof k, "%s_token_id", special_types[t]);
        set_id(sp, t, json_object_get(cfg, k), n_vocab);
    }
}

static const char *const id_keys[N_SPECIAL] = {
    "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.cls_token_id",
    "tokenizer.ggml.mask_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"};

static void special_write(struct buf *b, const struct special *sp)
{
    for (int i = 0; i < sp->n_ids; i++) /* gguf_writer has no add_cls_token_id: skipped */
        if (sp->id_order[i] != 5)
            kv_u32(b, id_keys[sp->id_order[i]], (uint32_t)sp->id[sp->id_order[i]]);
    for (int i = 0; i < sp->n_add; i++) {
        int t = sp->add_order[i];
        if (t == 0 || t == 1 || t == 3) { /* gguf_writer has add_add_{bos,eos,sep}_token only */
            char k[48];
            snprintf(k, sizeof k, "tokenizer.ggml.add_%s_token", special_types[t]);
            kv_bool(b, k, sp->add[t]);
        }
    }
    if (sp->chat_template)
        kv_str(b, "tokenizer.chat_template", sp->chat_template);
    if (sp->lowercase >= 0)
        kv_bool(b, "tokenizer.ggml.normalizer_lowercase", sp->lowercase);
    if (sp->strip_accents >= 0)
        kv_bool(b, "tokenizer.ggml.normalizer_strip_accents", sp->strip_accents);
}

static void write_tokens(struct buf *b, const struct vocab *v)
{
    key(b, "tokenizer.ggml.tokens", QF_GT_ARRAY);
    put_u32(b, QF_GT_STRING);
    put_u64(b, v->n);
    for (size_t i = 0; i < v->n; i++)
        put_str(b, v->tok[i], v->len[i]);
    if (v->score) {
        key(b, "tokenizer.ggml.scores", QF_GT_ARRAY);
        put_u32(b, QF_GT_F32);
        put_u64(b, v->n);
        for (size_t i = 0; i < v->n; i++) {
            uint32_t u;
            memcpy(&u, &v->score[i], 4);
            put_u32(b, u);
        }
    }
    key(b, "tokenizer.ggml.token_type", QF_GT_ARRAY);
    put_u32(b, QF_GT_I32);
    put_u64(b, v->n);
    for (size_t i = 0; i < v->n; i++)
        put_u32(b, (uint32_t)v->type[i]);
}

/* The added tokens of tokenizer.json with ids below n, sorted by id; of
 * two with one id the later wins (as a dict built from the list would).
 * O(added tokens), whatever the ids: a table indexed by id would cost
 * O(largest id) for every stat of the view. */
struct added {
    size_t id, seq;
    json_t *tok;
};

static int cmp_added(const void *a, const void *b)
{
    const struct added *x = a, *y = b;
    return x->id != y->id ? (x->id < y->id ? -1 : 1) : (x->seq < y->seq ? -1 : x->seq > y->seq);
}

static struct added *added_sorted(json_t *tj, size_t n, size_t *count)
{
    json_t *arr = json_object_get(tj, "added_tokens");
    size_t cap = json_array_size(arr), k = 0, i;
    struct added *a = malloc((cap ? cap : 1) * sizeof *a);
    json_t *at;
    if (!a)
        return NULL;
    json_array_foreach(arr, i, at)
    {
        json_t *id = json_object_get(at, "id");
        if (json_is_integer(id) && json_integer_value(id) >= 0 && (uint64_t)json_integer_value(id) < n)
            a[k] = (struct added){(size_t)json_integer_value(id), i, at}, k++;
    }
    qsort(a, k, sizeof *a, cmp_added);
    size_t o = 0;
    for (size_t r = 0; r < k; r++) { /* keep the last of each id */
        if (o && a[o - 1].id == a[r].id)
            o--;
        a[o++] = a[r];
    }
    *count = o;
    return a;
}

/* Path 1: tokenizer.model (conversion/base.py _create_vocab_sentencepiece) */
/* added tokens as Phi3MiniModel.set_vocab applies them: USER_DEFINED (or
 * CONTROL when special), score -1000, the text as it is; an id past the
 * table is the converter's IndexError */
static int phi3_added(struct vocab *v, json_t *arr_or_obj, bool obj, char *err, size_t errlen)
{
    const char *k;
    json_t *e;
    size_t i;
    int rc = 0;
    if (obj) {
        json_object_foreach(arr_or_obj, k, e)
        {
            char *endp;
            long id = strtol(k, &endp, 10);
            const char *content = json_string_value(json_object_get(e, "content"));
            if (*endp || id < 0 || (size_t)id >= v->n || !content)
                return qf_fail(err, errlen, -ENOTSUP, "added token %s is outside the %zu-token vocabulary", k, v->n);
            v->type[id] = json_is_true(json_object_get(e, "special")) ? TT_CONTROL : TT_USER;
            v->score[id] = -1000.0f;
            if ((rc = vocab_set(v, (size_t)id, content, strlen(content))))
                return rc;
        }
        return 0;
    }
    json_array_foreach(arr_or_obj, i, e)
    {
        json_t *idj = json_object_get(e, "id");
        const char *content = json_string_value(json_object_get(e, "content"));
        if (!json_is_integer(idj) || json_integer_value(idj) < 0 || (size_t)json_integer_value(idj) >= v->n || !content)
            return qf_fail(err, errlen, -ENOTSUP, "tokenizer.json: added token %zu is outside the %zu-token vocabulary",
                           i, v->n);
        size_t id = (size_t)json_integer_value(idj);
        v->type[id] = json_is_true(json_object_get(e, "special")) ? TT_CONTROL : TT_USER;
        v->score[id] = -1000.0f;
        if ((rc = vocab_set(v, id, content, strlen(content))))
            return rc;
    }
    return 0;
}

/* _create_vocab_sentencepiece (conversion/base.py), or with phi3 the
 * routine of Phi3MiniModel.set_vocab (conversion/phi.py:44-146): a table
 * of vocab_size entries, pieces in it, then the added tokens */
static int vocab_spm(const uint8_t *spm, size_t spm_len, json_t *tc, json_t *tj, long long vocab_size, bool phi3,
                     struct vocab *v, char *err, size_t errlen)
{
    struct piece *ps = NULL;
    size_t np = 0;
    int rc = spm_parse(spm, spm_len, &ps, &np, err, errlen);
    if (rc)
        return rc;
    size_t n = vocab_size > 0 ? (size_t)vocab_size : np;
    if (phi3 && np > n) {
        rc = qf_fail(err, errlen, -ENOTSUP, "tokenizer.model has %zu pieces, more than vocab_size %zu (the converter's "
                     "IndexError)", np, n);
        goto out;
    }
    if ((rc = vocab_alloc(v, n, true)))
        goto out;
    for (size_t i = 0; i < n && !rc; i++) {
        rc = vocab_pad(v, i);
        v->score[i] = -10000.0f;
        v->type[i] = TT_UNUSED;
    }
    for (size_t i = 0; i < np && i < n && !rc; i++) {
        rc = vocab_set(v, i, (const char *)ps[i].s, ps[i].len);
        v->score[i] = ps[i].score;
        /* IsUnknown / IsControl / IsUnused / IsByte, else NORMAL */
        v->type[i] = ps[i].type >= 2 && ps[i].type <= 6 && ps[i].type != 4 ? (int32_t)ps[i].type : TT_NORMAL;
    }
    if (rc)
        goto out;
    /* added_tokens.json is not read: quantfs refuses models that have one
     * (qf_hf_build), tokenizer_config's added_tokens_decoder is */
    if (phi3) {
        if (!(rc = phi3_added(v, json_object_get(tc, "added_tokens_decoder"), true, err, errlen)))
            rc = phi3_added(v, json_object_get(tj, "added_tokens"), false, err, errlen);
        goto out;
    }
    const char *k;
    json_t *e;
    json_object_foreach(json_object_get(tc, "added_tokens_decoder"), k, e)
    {
        char *endp;
        long id = strtol(k, &endp, 10);
        const char *content = json_string_value(json_object_get(e, "content"));
        if (*endp || id < 0 || (size_t)id >= n || !content || rc)
            continue;
        if (json_is_true(json_object_get(e, "special")) || looks_special(content)) {
            v->type[id] = TT_CONTROL;
            rc = vocab_set(v, (size_t)id, content, strlen(content));
        } else {
            char *u = unspace(content);
            v->type[id] = TT_USER;
            rc = u ? vocab_set(v, (size_t)id, u, strlen(u)) : -ENOMEM;
            free(u);
        }
        v->score[id] = -1000.0f;
    }
out:
    free(ps);
    return rc;
}

/* vocab of tokenizer.json's model, by id; *base_n receives its size */
static json_t *model_vocab(json_t *tj, size_t *base_n)
{
    json_t *vj = json_object_get(json_object_get(tj, "model"), "vocab");
    *base_n = json_is_object(vj) ? json_object_size(vj) : 0;
    return vj;
}

/* The special tokens transformers lists in all_special_ids: the named
 * special tokens of tokenizer_config.json and its additional ones. */
static bool is_named_special(json_t *tc, const char *t)
{
    static const char *const names[] = {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                                        "cls_token", "mask_token"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (str_eq(tok_text(json_object_get(tc, names[i])), t))
            return true;
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(tc, "additional_special_tokens"), i, x) if (str_eq(tok_text(x), t)) return true;
    return false;
}

static bool is_byte_token(const char *t)
{
    return strlen(t) == 6 && !strncmp(t, "<0x", 3) && t[5] == '>' && strchr("0123456789abcdefABCDEF", t[3]) &&
           strchr("0123456789abcdefABCDEF", t[4]) && t[3] && t[4];
}

/* Path 2: LlamaHfVocab (gguf-py/gguf/vocab.py): the base vocabulary in id
 * order, then added tokens past it; every score -1000. */
static int vocab_llama_hf(json_t *tj, json_t *tc, struct vocab *v, char *err, size_t errlen)
{
    size_t nb;
    json_t *vj = model_vocab(tj, &nb);
    size_t n_sorted = 0;
    struct added *added = added_sorted(tj, 1u << 24, &n_sorted);
    const char **byid = calloc(nb ? nb : 1, sizeof *byid);
    int rc = added && byid ? 0 : -ENOMEM;
    const char *k;
    json_t *x;
    json_object_foreach(vj, k, x)
    {
        long long id = json_integer_value(x);
        if (!json_is_integer(x) || id < 0 || (size_t)id >= nb) {
            rc = qf_fail(err, errlen, -EINVAL, "tokenizer.json: vocabulary ids are not 0..%zu", nb - 1);
            break;
        }
        byid[id] = k;
    }
    size_t first = 0; /* the added tokens past the base vocabulary, in id order */
    while (added && first < n_sorted && added[first].id < nb)
        first++;
    size_t n_added = added ? n_sorted - first : 0;
    if (!rc)
        rc = vocab_alloc(v, nb + n_added, true);
    for (size_t i = 0; !rc && i < nb; i++) {
        if (!byid[i]) {
            rc = qf_fail(err, errlen, -EINVAL, "tokenizer.json: no token has id %zu", i);
            break;
        }
        rc = vocab_set(v, i, byid[i], strlen(byid[i]));
        v->score[i] = -1000.0f;
        v->type[i] = is_byte_token(byid[i]) ? TT_BYTE : is_named_special(tc, byid[i]) ? TT_CONTROL : TT_NORMAL;
    }
    size_t o = nb;
    for (size_t a = first; !rc && a < n_sorted && o < v->n; a++) {
        const char *c = json_string_value(json_object_get(added[a].tok, "content"));
        rc = c ? vocab_set(v, o, c, strlen(c)) : qf_fail(err, errlen, -EINVAL, "tokenizer.json: added token without content");
        v->score[o] = -1000.0f;
        v->type[o] = is_named_special(tc, c) ? TT_CONTROL : TT_USER;
        o++;
    }
    free(added);
    free(byid);
    return rc;
}

/* Path 3: byte-level BPE (conversion/base.py get_vocab_base) */
static int vocab_gpt2(json_t *tj, long long vocab_size, struct vocab *v, char *err, size_t errlen)
{
    size_t nb;
    json_t *vj = model_vocab(tj, &nb);
    size_t n = vocab_size > 0 ? (size_t)vocab_size : nb;
    if (n > (1u << 24))
        return qf_fail(err, errlen, -EINVAL, "vocab_size %zu is too large", n);
    size_t n_sorted = 0;
    struct added *added = added_sorted(tj, n, &n_sorted);
    int rc = added ? vocab_alloc(v, n, false) : -ENOMEM;
    for (size_t i = 0; !rc && i < n; i++) {
        rc = vocab_pad(v, i);
        v->type[i] = TT_UNUSED;
    }
    const char *k;
    json_t *x;
    json_object_foreach(vj, k, x)
    {
        long long id = json_integer_value(x);
        if (rc)
            break;
        if (!json_is_integer(x) || id < 0 || (size_t)id >= n) {
            rc = qf_fail(err, errlen, -EINVAL, "tokenizer.json: token id %lld is not below vocab_size %zu", id, n);
            break;
        }
        rc = vocab_set(v, (size_t)id, k, strlen(k));
        v->type[id] = TT_NORMAL;
    }
    for (size_t a = 0; !rc && a < n_sorted; a++) {
        size_t id = added[a].id;
        const char *c = json_string_value(json_object_get(added[a].tok, "content"));
        if (!c) {
            rc = qf_fail(err, errlen, -EINVAL, "tokenizer.json: added token %zu without content", id);
            break;
        }
        if (json_is_true(json_object_get(added[a].tok, "special")) || looks_special(c)) {
            v->type[id] = TT_CONTROL;
            rc = vocab_set(v, id, c, strlen(c));
        } else {
            char *u = unspace(c);
            v->type[id] = TT_USER;
            rc = u ? vocab_set(v, id, u, strlen(u)) : -ENOMEM;
            free(u);
        }
    }
    free(added);
    return rc;
}

/* tokenizer.ggml.merges from model.merges, either "a b" strings or [a, b]
 * pairs (spaces inside parts become U+0120, as vocab.py does) */
static int write_merges(struct buf *b, json_t *tj, char *err, size_t errlen)
{
    json_t *m = json_object_get(json_object_get(tj, "model"), "merges");
    size_t n = json_array_size(m), i;
    json_t *e;
    if (!n)
        return 0;
    key(b, "tokenizer.ggml.merges", QF_GT_ARRAY);
    put_u32(b, QF_GT_STRING);
    put_u64(b, n);
    char *tmp = NULL;
    size_t tcap = 0;
    json_array_foreach(m, i, e)
    {
        if (json_is_string(e)) {
            put_str(b, json_string_value(e), json_string_length(e));
            continue;
        }
        if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_string(json_array_get(e, 0)) ||
            !json_is_string(json_array_get(e, 1))) {
            free(tmp);
            return qf_fail(err, errlen, -EINVAL, "tokenizer.json: unknown merges format at entry %zu", i);
        }
        size_t need = 2 * (json_string_length(json_array_get(e, 0)) + json_string_length(json_array_get(e, 1))) + 2;
        if (need > tcap) {
            char *nt = realloc(tmp, need);
            if (!nt) {
                free(tmp);
                return -ENOMEM;
            }
            tmp = nt;
            tcap = need;
        }
        size_t o = 0;
        for (int part = 0; part < 2; part++) {
            const char *s = json_string_value(json_array_get(e, (size_t)part));
            size_t sl = json_string_length(json_array_get(e, (size_t)part));
            if (part)
                tmp[o++] = ' ';
            for (size_t c = 0; c < sl; c++) {
                if (s[c] == ' ') { /* U+0120 */
                    tmp[o++] = (char)0xc4;
                    tmp[o++] = (char)0xa0;
                } else {
                    tmp[o++] = s[c];
                }
            }
        }
        put_str(b, tmp, o);
    }
    free(tmp);
    return 0;
}

/* tokenizer.ggml.pre for a byte-level BPE tokenizer. The converter hashes
 * the ids its tokenizer gives for a fixed text (get_vocab_base_pre); quantfs
 * recognises the pre-tokenizers behind the hashes it supports instead: the
 * Split regex, the normalizer and whether a BOS is added (llama-bpe's hash
 * includes the BOS id, smaug-bpe's is the same tokenizer without it). */
static const char LLAMA3_RE[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_RE[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                               "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const char *bpe_pre(json_t *tj, const struct special *sp)
{
    json_t *pt = json_object_get(tj, "pre_tokenizer");
    json_t *seq = json_object_get(pt, "pretokenizers");
    if (json_array_size(seq) != 2)
        return NULL;
    json_t *split = json_array_get(seq, 0), *bl = json_array_get(seq, 1);
    const char *re = json_string_value(json_object_get(json_object_get(split, "pattern"), "Regex"));
    if (!str_eq(json_string_value(json_object_get(split, "type")), "Split") ||
        !str_eq(json_string_value(json_object_get(split, "behavior")), "Isolated") ||
        json_is_true(json_object_get(split, "invert")) ||
        !str_eq(json_string_value(json_object_get(bl, "type")), "ByteLevel") ||
        json_is_true(json_object_get(bl, "add_prefix_space")) || json_is_true(json_object_get(bl, "use_regex")))
        return NULL;
    json_t *norm = json_object_get(tj, "normalizer");
    const char *nt = json_string_value(json_object_get(norm, "type"));
    bool adds_bos = sp->add[0] == 1;
    if (str_eq(re, LLAMA3_RE) && json_is_null(norm))
        return adds_bos ? "llama-bpe" : "smaug-bpe";
    if (str_eq(re, QWEN2_RE) && str_eq(nt, "NFC") && !adds_bos)
        return "qwen2";
    return NULL;
}

/* ------------------------------------------------------- tensors */


/* ------------------------------------------------------- the model */

static int mem_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
    /* the parser reads ahead in blocks: past the header it never looks at
     * the bytes, so data reads as zeros here */
    const struct qf_hf *hf = ctx;
    if (off > hf->size[0] || len > hf->size[0] - off)
        return -EIO;
    size_t n = off < hf->hdr_len ? (size_t)(hf->hdr_len - off) : 0;
    if (n > len)
        n = len;
    memcpy(buf, hf->hdr + off, n);
    memset((uint8_t *)buf + n, 0, len - n);
    return 0;
}

/* ---------------------------------------------------- MoE experts */

/* One expert matrix held back until its layer is complete. */
struct expert_src {
    bool have;
    uint32_t shard, dtype;
    uint64_t off, rows, cols;
};

/* model.layers.L.<experts>E.<part>.weight: layer, expert and part index. */
static bool expert_name(const struct hf_arch *a, const char *name, unsigned *layer, unsigned *expert, int *part)
{
    int used = 0;
    if (!a->experts || sscanf(name, "model.layers.%u.%n", layer, &used) != 1 || !used)
        return false;
    const char *p = name + used;
    size_t el = strlen(a->experts);
    if (strncmp(p, a->experts, el))
        return false;
    p += el;
    if (!isdigit((unsigned char)*p))
        return false;
    char *end;
    unsigned long e = strtoul(p, &end, 10);
    if (*end != '.' || e > UINT32_MAX)
        return false;
    p = end + 1;
    for (int k = 0; k < 3; k++) {
        size_t pl = strlen(a->parts[k]);
        if (!strncmp(p, a->parts[k], pl) && !strcmp(p + pl, ".weight")) {
            *expert = (unsigned)e, *part = k;
            return true;
        }
    }
    return false;
}

/* Appends the layer's three stacked tensors (experts 0..n-1 along a new
 * outer dimension, in parts order), as the converter's torch.stack does. */
static int stack_experts(const struct hf_arch *a, struct qf_hf *hf, unsigned layer, struct expert_src *ex,
                         unsigned n_expert, char *err, size_t errlen)
{
    for (int k = 0; k < 3; k++) {
        const struct expert_src *e0 = &ex[(size_t)k * n_expert];
        struct qf_hf_tensor *o = &hf->t[hf->n_tensors];
        *o = (struct qf_hf_tensor){.n_dims = 3, .src_type = e0->dtype, .n_parts = n_expert};
        snprintf(o->name, sizeof o->name, "blk.%u.ffn_%s_exps.weight", layer, a->parts_gguf[k]);
        o->ne[0] = e0->cols, o->ne[1] = e0->rows, o->ne[2] = n_expert, o->ne[3] = 1;
        o->nelems = e0->rows * e0->cols * n_expert;
        o->part_shard = malloc(n_expert * sizeof *o->part_shard);
        o->part_off = malloc(n_expert * sizeof *o->part_off);
        if (!o->part_shard || !o->part_off) {
            free(o->part_shard);
            free(o->part_off);
            return -ENOMEM;
        }
        hf->n_tensors++; /* owns the arrays from here */
        for (unsigned x = 0; x < n_expert; x++) {
            const struct expert_src *e = &e0[x];
            if (e->rows != e0->rows || e->cols != e0->cols || e->dtype != e0->dtype)
                return qf_fail(err, errlen, -ENOTSUP, "layer %u: experts of %s differ in shape or dtype (torch.stack fails)",
                               layer, a->parts[k]);
            o->part_shard[x] = e->shard, o->part_off[x] = e->off;
        }
    }
    return 0;
}

/* The file's header after its KVs (kv; the general.file_type value at
 * ftype_at in kv, 0: none): tensor infos, types and offsets for every
 * converter outtype, the f32 header bytes, and that header parsed. */
static int finish_header(struct qf_hf *hf, const struct buf *kv, size_t ftype_at, char *err, size_t errlen)
{
    int rc = 0;
    static const uint32_t outs[QF_HF_NOUT] = {QF_F32, QF_F16, QF_BF16, QF_Q8_0};
    /* Types and offsets for every outtype; header bytes for f32 only: the
     * others differ from it in the file_type value and the tensor types
     * and offsets (same lengths), and are written by qf_layout_hf when a
     * view needs them (a 150k-token header is ~5 MB). */
    for (int ot = 0; ot < QF_HF_NOUT && !rc; ot++) {
        hf->type[ot] = calloc(hf->n_tensors ? hf->n_tensors : 1, sizeof *hf->type[ot]);
        hf->off[ot] = calloc(hf->n_tensors ? hf->n_tensors : 1, sizeof *hf->off[ot]);
        if (!hf->type[ot] || !hf->off[ot]) {
            rc = -ENOMEM;
            break;
        }
        uint64_t off = 0;
        for (size_t i = 0; i < hf->n_tensors; i++) {
            const struct qf_hf_tensor *t = &hf->t[i];
            /* conversion/base.py: vectors, norms and non-weights stay F32;
             * Q8_0 of a row 32 does not divide falls back to F16 */
            uint32_t ty = outs[ot];
            if (t->n_dims <= 1 || has_suffix(t->name, "_norm.weight") || !has_suffix(t->name, ".weight") ||
                strstr(t->name, ".ffn_gate_inp.") || strstr(t->name, ".ffn_gate_inp_shexp.")) /* base.py's always-F32 list (routers) */
                ty = QF_F32;
            if (ty == QF_Q8_0 && t->ne[0] % 32)
                ty = QF_F16;
            hf->type[ot][i] = ty;
            hf->off[ot][i] = off;
            off += (qf_type_bytes(ty, t->nelems) + ALIGN - 1) / ALIGN * ALIGN;
        }
        hf->size[ot] = off; /* the header length is added below */
    }
    if (!rc) {
        size_t ti = 0;
        for (size_t i = 0; i < hf->n_tensors; i++)
            ti += 8 + strlen(hf->t[i].name) + 4 + 8 * hf->t[i].n_dims + 4 + 8;
        struct buf h = {0};
        if (!(h.p = malloc(h.cap = 24 + kv->len + ti + ALIGN)))
            rc = -ENOMEM;
        uint8_t magic[4] = {'G', 'G', 'U', 'F'};
        put(&h, magic, 4);
        put_u32(&h, 3);
        put_u64(&h, hf->n_tensors);
        put_u64(&h, kv->n_kv);
        put(&h, kv->p, kv->len);
        hf->ftype_at = ftype_at ? 24 + ftype_at : 0;
        hf->ti_at = h.len;
        for (size_t i = 0; i < hf->n_tensors; i++) {
            const struct qf_hf_tensor *t = &hf->t[i];
            put_str(&h, t->name, strlen(t->name));
            put_u32(&h, t->n_dims);
            for (uint32_t d = 0; d < t->n_dims; d++)
                put_u64(&h, t->ne[d]);
            put_u32(&h, hf->type[0][i]);
            put_u64(&h, hf->off[0][i]);
        }
        static const uint8_t zeros[ALIGN];
        put(&h, zeros, (ALIGN - h.len % ALIGN) % ALIGN);
        if (rc || h.oom) {
            free(h.p);
            rc = -ENOMEM;
        } else {
            if (hf->ftype_at)
                qf_put32(h.p + hf->ftype_at, ftypes[0]);
            hf->hdr = h.p;
            hf->hdr_len = h.len;
            for (int ot = 0; ot < QF_HF_NOUT; ot++)
                hf->size[ot] += h.len;
        }
    }
    /* the F32 file parsed once: the source every llama-quantize view plans
     * from (the parser reads the header only; data offsets are checked
     * against the virtual file's size) */
    if (!rc)
        rc = qf_gguf_parse(mem_pread, hf, hf->size[0], &hf->f32, err, errlen);
    return rc;
}

static uint32_t st_float(uint32_t dtype)
{
    return dtype == QF_STD_F32 ? QF_F32 : dtype == QF_STD_F16 ? QF_F16 : dtype == QF_STD_BF16 ? QF_BF16 : UINT32_MAX;
}

/* A float tensor of the adapter file, whole, as F32 (malloc'd) */
static float *read_f32(const struct qf_lora_merge *lm, const struct qf_st_tensor *t)
{
    uint32_t ty = st_float(t->dtype);
    size_t es = ty == QF_F32 ? 4 : 2;
    void *raw = malloc(t->nelems * es + 1);
    float *f = malloc(t->nelems * sizeof *f + 1);
    if (!raw || !f || lm->rd(lm->ctx, raw, t->nelems * es, t->offset)) {
        free(raw);
        free(f);
        return NULL;
    }
    qf_to_f32(ty, raw, f, t->nelems);
    free(raw);
    return f;
}

/* The alpha of module key (an HF weight's name without ".weight"): the
 * first alpha_pattern key, in the file's order, that PEFT's
 * get_pattern_key matches (re.match of "(.*\.)?(KEY)$"), else lora_alpha.
 * Keys were checked by lora_check. */
static double lora_alpha_of(json_t *ac, const char *key)
{
    double alpha = 8;
    jnum(ac, "lora_alpha", &alpha);
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(ac, "alpha_pattern"), k, v) {
        char *re = NULL;
        regex_t rx;
        bool hit = false;
        if (asprintf(&re, "^(.*\\.)?(%s)$", k) >= 0 && !regcomp(&rx, re, REG_EXTENDED | REG_NOSUB)) {
            hit = !regexec(&rx, key, 0, NULL, 0);
            regfree(&rx);
        }
        free(re);
        if (hit)
            return json_number_value(v);
    }
    return alpha;
}

/* An adapter tensor, whole, widened to F32, that must have shape [d0, d1]
 * (d1 0: a vector of d0) */
static int adapter_f32(const struct qf_lora_merge *lm, const struct qf_st_tensor *t, uint64_t d0, uint64_t d1,
                       float **out, const char *what, char *err, size_t errlen)
{
    if (st_float(t->dtype) == UINT32_MAX || t->n_dims != (d1 ? 2u : 1u) || t->shape[0] != d0 || (d1 && t->shape[1] != d1))
        return qf_fail(err, errlen, -ENOTSUP, "adapter tensor %.200s (%s of %llu x %llu): not a float tensor of "
                       "that shape", t->name, what, (unsigned long long)d0, (unsigned long long)(d1 ? d1 : 1));
    if (!out) /* checked only */
        return 0;
    return (*out = read_f32(lm, t)) ? 0 : -ENOMEM;
}

/* Merging adapter lm into the checkpoint's tensor named hf_name (o): the
 * pair whose base name it is (and its DoRA magnitude), read in, with
 * PEFT's scale, or the tensor that replaces it (modules_to_save). Pairs
 * and replacements are counted in *used. With load false, checked and
 * counted, nothing read. */
static int lora_attach(const struct qf_lora_merge *lm, json_t *ac, const char *hf_name, struct qf_hf_tensor *o,
                       bool load, size_t *used, char *err, size_t errlen)
{
    static const char pfx[] = "base_model.model.";
    size_t hl = strlen(hf_name);
    const struct qf_st_tensor *ab[3] = {NULL, NULL, NULL}, *repl = NULL;
    bool weight = hl > 7 && !strcmp(hf_name + hl - 7, ".weight");
    for (size_t i = 0; i < lm->weights->n_tensors; i++) {
        const char *n = lm->weights->tensors[i].name;
        if (!strncmp(n, pfx, sizeof pfx - 1))
            n += sizeof pfx - 1;
        if (!strcmp(n, hf_name)) {
            repl = &lm->weights->tensors[i];
            continue;
        }
        if (!weight || strncmp(n, hf_name, hl - 7) || n[hl - 7] != '.')
            continue;
        const char *rest = n + hl - 6;
        if (!strcmp(rest, "lora_A.weight"))
            ab[0] = &lm->weights->tensors[i];
        else if (!strcmp(rest, "lora_B.weight"))
            ab[1] = &lm->weights->tensors[i];
        else if (!strcmp(rest, "lora_magnitude_vector"))
            ab[2] = &lm->weights->tensors[i];
    }
    uint64_t rows = o->n_dims == 2 ? o->ne[1] : o->ne[0], cols = o->n_dims == 2 ? o->ne[0] : 1;
    if (repl) {
        if (ab[0] || ab[1] || o->n_parts)
            return qf_fail(err, errlen, -ENOTSUP, "%s: both replaced (modules_to_save) and adapted", hf_name);
        (*used)++;
        return adapter_f32(lm, repl, o->n_dims == 2 ? rows : o->ne[0], o->n_dims == 2 ? cols : 0,
                           load ? &o->repl : NULL, "replacing the base's", err, errlen);
    }
    if (!ab[0] && !ab[1] && !ab[2])
        return 0;
    if (!ab[0] || !ab[1] || ab[0]->n_dims != 2 || o->n_parts || o->n_dims != 2)
        return qf_fail(err, errlen, -ENOTSUP, "adapter pair of %s: not two float matrices on a weight matrix", hf_name);
    bool dora = json_is_true(json_object_get(ac, "use_dora"));
    if (dora != (ab[2] != NULL))
        return qf_fail(err, errlen, -ENOTSUP, "adapter pair of %s: %s", hf_name,
                       dora ? "use_dora without its lora_magnitude_vector" : "a lora_magnitude_vector without use_dora");
    uint64_t r = ab[0]->shape[0];
    if (!r || r > 65536)
        return qf_fail(err, errlen, -ENOTSUP, "adapter pair of %s: rank %llu", hf_name, (unsigned long long)r);
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)(hl - 7), hf_name);
    double alpha = lora_alpha_of(ac, key);
    o->lora_r = (uint32_t)r;
    o->lora_scale = json_is_true(json_object_get(ac, "use_rslora")) ? alpha / sqrt((double)r) : alpha / (double)r;
    int rc = adapter_f32(lm, ab[0], r, cols, load ? &o->lora_a : NULL, "lora_A", err, errlen);
    if (!rc)
        rc = adapter_f32(lm, ab[1], rows, r, load ? &o->lora_b : NULL, "lora_B", err, errlen);
    if (!rc && ab[2])
        rc = adapter_f32(lm, ab[2], rows, 0, load ? &o->lora_m : NULL, "DoRA magnitude", err, errlen);
    if (!rc)
        (*used)++;
    return rc;
}

/* What merging an adapter needs that quantfs does not do: refused before
 * anything is built. *pairs: its lora_A/lora_B pairs and replacing
 * tensors (each must find its base tensor). */
static int lora_check(const struct qf_lora_merge *lm, json_t *ac, const json_t *cfg, size_t *pairs, char *err,
                      size_t errlen)
{
    const char *pt = json_string_value(json_object_get(ac, "peft_type"));
    if (pt && strcmp(pt, "LORA"))
        return qf_fail(err, errlen, -ENOTSUP, "adapter_config.json: peft_type %s is not LORA", pt);
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(ac, "alpha_pattern"), k, v) {
        /* Python's re and POSIX ERE agree on plain names, dots, classes and
         * alternation; escapes like \d and (?...) groups they do not */
        bool py = !json_is_number(v) || strstr(k, "(?") || strstr(k, "*?") || strstr(k, "+?") || strstr(k, "??");
        for (const char *c = k; *c && !py; c++)
            py = c[0] == '\\' && isalnum((unsigned char)c[1]);
        char *re = NULL;
        regex_t rx;
        int bad = py || asprintf(&re, "^(.*\\.)?(%s)$", k) < 0 || regcomp(&rx, re, REG_EXTENDED | REG_NOSUB);
        if (re && !bad)
            regfree(&rx);
        free(re);
        if (bad)
            return qf_fail(err, errlen, -ENOTSUP, "alpha_pattern key '%.100s': not a number, or a regex quantfs does "
                           "not read as PEFT does (Python-only syntax)", k);
    }
    /* fan_in_fan_out is not looked at: it transposes Conv1D (GPT-2) deltas,
     * and PEFT sets it back to false for nn.Linear targets, which every
     * weight of the architectures here is (tuners/lora/model.py
     * dispatch_default: "Setting fan_in_fan_out to False") */
    if (json_is_true(json_object_get(ac, "lora_bias")) || json_array_size(json_object_get(ac, "target_parameters")))
        return qf_fail(err, errlen, -ENOTSUP, "lora_bias and target_parameters are not merged");
    const char *init = json_string_value(json_object_get(ac, "init_lora_weights"));
    if (init && (!strncmp(init, "pissa", 5) || !strcmp(init, "olora") || !strcmp(init, "corda") ||
                 !strcmp(init, "lora_ga") || !strcmp(init, "loftq")))
        return qf_fail(err, errlen, -ENOTSUP, "init_lora_weights %s changed the base: not a plain merge", init);
    /* a replaced embedding or lm_head would untie a tied model (PEFT then
     * saves both; the converter's output gains output.weight) */
    json_t *tie = json_object_get(cfg, "tie_word_embeddings");
    bool untied = tie && json_is_false(tie);
    *pairs = 0;
    for (size_t i = 0; i < lm->weights->n_tensors; i++) {
        const char *n = lm->weights->tensors[i].name;
        size_t l = strlen(n);
        if (l > 14 && !strcmp(n + l - 14, ".lora_A.weight"))
            (*pairs)++;
        else if ((l > 14 && !strcmp(n + l - 14, ".lora_B.weight")) ||
                 (l > 22 && !strcmp(n + l - 22, ".lora_magnitude_vector")))
            continue;
        else if (strstr(n, "lora_embedding_") || strstr(n, "trainable_tokens") || strstr(n, ".lora_"))
            return qf_fail(err, errlen, -ENOTSUP, "adapter tensor '%.200s': LoRA on embeddings, trainable tokens and "
                           "LoRA biases are not merged", n);
        else if (!untied && (strstr(n, "embed_tokens") || strstr(n, "lm_head")))
            return qf_fail(err, errlen, -ENOTSUP, "adapter tensor '%.200s' replaces an embedding of a model with "
                           "tied (or possibly tied) embeddings: untying is not merged", n);
        else
            (*pairs)++; /* modules_to_save: replaces the base tensor of its name */
    }
    return 0;
}

int qf_hf_build(const struct qf_hf_input *in, struct qf_hf **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc = 0;
    json_t *cfg = load(in->config, in->config_len, "config.json", 0, err, errlen), *tj = NULL, *tc = NULL, *hp = NULL;
    json_t *ac = NULL; /* a merged adapter's adapter_config.json */
    size_t lora_pairs = 0, lora_used = 0;
    float *phi_factors[2] = {NULL, NULL}; /* Phi-3's rope factors, until their tensors own them */
    if (!cfg)
        return -EINVAL;
    struct qf_hf *hf = calloc(1, sizeof *hf);
    struct vocab voc = {0};
    struct buf kv = {0};
    struct expert_src **experts = NULL; /* per layer, while held back */
    unsigned *expert_seen = NULL;
    long long L = 0;
    if (!hf) {
        rc = -ENOMEM;
        goto out;
    }
    json_t *archs_j = json_object_get(cfg, "architectures");
    const char *hfarch = json_string_value(json_array_get(archs_j, 0));
    const struct hf_arch *a = arch_row(hfarch);
    if (!a) {
        rc = qf_fail(err, errlen, -ENOTSUP, "architecture %s: quantfs builds GGUF views of %s only",
                     hfarch ? hfarch : "(none in config.json)", QF_HF_ARCHS);
        goto out;
    }
    /* SpecialVocab still reads the root */
    if (!(hp = hparams(cfg))) {
        rc = -ENOMEM;
        goto out;
    }
    if (in->lora && (!(ac = load(in->lora->config, in->lora->config_len, "adapter_config.json", 0, err, errlen)) ||
                     (rc = lora_check(in->lora, ac, hp, &lora_pairs, err, errlen)))) {
        rc = rc ? rc : -EINVAL;
        goto out;
    }
    const char *an = a->gguf;
    long long ctx = a->ctx, H, F, nh, nkv, V = a->vocab, hd;
    double theta = a->theta, eps = a->eps, theta_swa = a->theta_swa;
    if (!jint(hp, "num_hidden_layers", &L) || !jint(hp, "hidden_size", &H) ||
        !jint(hp, "intermediate_size", &F) || !jint(hp, "num_attention_heads", &nh) || L <= 0 || H <= 0 ||
        F <= 0 || nh <= 0 || L > 4096) {
        rc = qf_fail(err, errlen, -ENOTSUP, "config.json: needs num_hidden_layers, hidden_size, intermediate_size, "
                                         "num_attention_heads");
        goto out;
    }
    if (!jint(hp, "num_key_value_heads", &nkv) || nkv <= 0)
        nkv = a->kv_heads ? a->kv_heads : nh;
    jint(hp, "max_position_embeddings", &ctx);
    jint(hp, "vocab_size", &V);
    jnum(hp, "rms_norm_eps", &eps);
    jnum(hp, "rope_theta", &theta);
    jnum(hp, "rope_local_base_freq", &theta_swa);
    json_t *rp = json_object_get(hp, "rope_parameters");
    if (!json_is_object(rp))
        rp = json_object_get(hp, "rope_scaling");
    /* transformers 5 configs of models with sliding layers: one set of
     * parameters per layer kind; T reads full_attention's */
    json_t *rp_swa = json_object_get(rp, "sliding_attention");
    if (json_is_object(json_object_get(rp, "full_attention")))
        rp = json_object_get(rp, "full_attention");
    jnum(rp_swa, "rope_theta", &theta_swa);
    /* RoPE scaling as conversion/base.py set_gguf_parameters maps it: linear
     * and yarn become KVs, llama3 a generated rope_freqs tensor (Llama and
     * Mistral only), dynamic and unknown types nothing at all; Phi-3 reads
     * longrope itself */
    struct rope rope = {.orig_ctx = -1};
    if (json_is_object(rp) && a->kvs == KVS_TEXT) {
        jnum(rp, "rope_theta", &theta);
        const char *rt = json_string_value(json_object_get(rp, "rope_type"));
        if (!rt)
            rt = json_string_value(json_object_get(rp, "type"));
        bool has_factor = jnum(rp, "factor", &rope.factor);
        if (!jint(rp, "original_max_position_embeddings", &rope.orig_ctx))
            jint(hp, "original_max_position_embeddings", &rope.orig_ctx);
        if (!rt) {
        } else if (!strcmp(rt, "linear") && has_factor) {
            rope.kind = ROPE_LINEAR;
        } else if (!strcmp(rt, "yarn") && has_factor) {
            rope.kind = ROPE_YARN;
            if (rope.orig_ctx < 0) { /* the converter's KeyError */
                rc = qf_fail(err, errlen, -ENOTSUP, "config.json: yarn rope scaling without original_max_position_embeddings");
                goto out;
            }
            rope.has[0] = jnum(rp, "extrapolation_factor", &rope.yarn[0]);
            rope.has[1] = jnum(rp, "attention_factor", &rope.yarn[1]) || jnum(rp, "attn_factor", &rope.yarn[1]);
            rope.has[2] = jnum(rp, "beta_fast", &rope.yarn[2]);
            rope.has[3] = jnum(rp, "beta_slow", &rope.yarn[3]);
        } else if (!strcmp(rt, "su") || !strcmp(rt, "longrope")) {
            rc = qf_fail(err, errlen, -ENOTSUP, "config.json: rope scaling '%s' needs factor tensors quantfs does not make", rt);
            goto out;
        } else if (!strcasecmp(rt, "llama3") && a->rope_llama3) {
            rope.kind = ROPE_LLAMA3;
            if (!has_factor)
                rope.factor = 8.0;
            if (!jnum(rp, "low_freq_factor", &rope.low))
                rope.low = 1.0;
            if (!jnum(rp, "high_freq_factor", &rope.high))
                rope.high = 4.0;
            if (rope.orig_ctx < 0)
                rope.orig_ctx = 8192;
        }
    }
    jnum(rp, "rope_theta", &theta); /* (Phi-3, Gemma 2: rope_parameters as transformers 5 writes them) */
    bool head_dim_given = jint(hp, "head_dim", &hd);
    if (!head_dim_given)
        hd = a->head_dim ? a->head_dim : H / nh; /* (Qwen3Config's default is 128) */
    if (hd <= 0 || nh % nkv || (a->permute_qk && (hd % 2)) || hd > 65536) {
        rc = qf_fail(err, errlen, -ENOTSUP, "config.json: head_dim %lld with %lld/%lld heads", hd, nh, nkv);
        goto out;
    }

    /* tokenizer inputs */
    if (in->tokenizer && !(tj = load(in->tokenizer, in->tokenizer_len, "tokenizer.json", 0, err, errlen))) {
        rc = -EINVAL;
        goto out;
    }
    if (in->tokenizer_config &&
        !(tc = load(in->tokenizer_config, in->tokenizer_config_len, "tokenizer_config.json", JSON_DECODE_INT_AS_REAL, err, errlen))) {
        rc = -EINVAL;
        goto out;
    }
    if (in->has_added_tokens_json && !in->vocab_kvs) {
        rc = qf_fail(err, errlen, -ENOTSUP, "added_tokens.json is not supported; place the converter's vocab-only "
                                         "GGUF beside the model");
        goto out;
    }

    /* ---- KVs, in the converter's order ---- */
    struct buf *b = &kv;
    char k[96];
#define AK(s) (snprintf(k, sizeof k, "%s." s, an), k)
    kv_str(b, "general.architecture", an);
    long long n_rot = hd;
    if (a->kvs == KVS_PHI3) {
        /* generate_extra_tensors runs before the metadata: attn_factor is
         * the file's second key (conversion/phi.py:175-211) */
        double prf = 1.0;
        if (!jnum(rp, "partial_rotary_factor", &prf))
            jnum(hp, "partial_rotary_factor", &prf);
        n_rot = (long long)(prf * (double)H) / nh;
        if (!jint(rp, "original_max_position_embeddings", &rope.orig_ctx) &&
            !jint(hp, "original_max_position_embeddings", &rope.orig_ctx))
            rope.orig_ctx = 4096; /* Phi3Config's default */
        if (!jint(hp, "n_positions", &ctx))
            jint(hp, "max_position_embeddings", &ctx);
        if ((rc = phi3_rope_factors(rp, ctx, rope.orig_ctx, n_rot, b, an, phi_factors, err, errlen)))
            goto out;
    }
    kv_str(b, "general.type", "model");
    if ((rc = write_sampling(b, in->generation_config, in->generation_config_len, err, errlen)))
        goto out;
    kv_str(b, "general.name", in->name);
    long long n_expert = 0, n_used = 0;
    size_t ftype_at;
    if (a->kvs == KVS_GEMMA2) { /* Gemma2Model.set_gguf_parameters: its own list, no T */
        double softcap[2] = {50.0, 30.0};
        long long swa = 4096;
        static const char *const sk[2] = {"attn_logit_softcapping", "final_logit_softcapping"};
        for (int i = 0; i < 2; i++)
            if (json_object_get(hp, sk[i]) && !jnum(hp, sk[i], &softcap[i])) {
                rc = qf_fail(err, errlen, -ENOTSUP, "config.json: %s is not a number (the converter fails)", sk[i]);
                goto out;
            }
        if (json_object_get(hp, "sliding_window") && !jint(hp, "sliding_window", &swa)) {
            rc = qf_fail(err, errlen, -ENOTSUP, "config.json: sliding_window is not an integer (the converter fails)");
            goto out;
        }
        kv_u32(b, AK("context_length"), (uint32_t)ctx);
        kv_u32(b, AK("embedding_length"), (uint32_t)H);
        kv_u32(b, AK("block_count"), (uint32_t)L);
        kv_u32(b, AK("feed_forward_length"), (uint32_t)F);
        kv_u32(b, AK("attention.head_count"), (uint32_t)nh);
        kv_u32(b, AK("attention.head_count_kv"), (uint32_t)nkv);
        kv_f32(b, AK("attention.layer_norm_rms_epsilon"), (float)eps);
        kv_u32(b, AK("attention.key_length"), (uint32_t)hd);
        kv_u32(b, AK("attention.value_length"), (uint32_t)hd);
        ftype_at = kv_file_type(b);
        kv_f32(b, AK("attn_logit_softcapping"), (float)softcap[0]);
        kv_f32(b, AK("final_logit_softcapping"), (float)softcap[1]);
        kv_u32(b, AK("attention.sliding_window"), (uint32_t)swa);
    } else if (a->kvs == KVS_PHI3) { /* Phi3MiniModel.set_gguf_parameters, no T */
        long long swa = 0; /* null: 0 (Phi-4) */
        json_t *sw = json_object_get(hp, "sliding_window");
        if (sw && !json_is_null(sw) && !jint(hp, "sliding_window", &swa)) {
            rc = qf_fail(err, errlen, -ENOTSUP, "config.json: sliding_window is not an integer (the converter fails)");
            goto out;
        }
        kv_u32(b, AK("context_length"), (uint32_t)ctx);
        kv_u32(b, AK("rope.scaling.original_context_length"), (uint32_t)rope.orig_ctx);
        kv_u32(b, AK("embedding_length"), (uint32_t)H);
        kv_u32(b, AK("feed_forward_length"), (uint32_t)F);
        kv_u32(b, AK("block_count"), (uint32_t)L);
        kv_u32(b, AK("attention.head_count"), (uint32_t)nh);
        kv_u32(b, AK("attention.head_count_kv"), (uint32_t)nkv);
        kv_f32(b, AK("attention.layer_norm_rms_epsilon"), (float)eps);
        kv_u32(b, AK("rope.dimension_count"), (uint32_t)n_rot);
        kv_f32(b, AK("rope.freq_base"), (float)theta);
        ftype_at = kv_file_type(b);
        kv_u32(b, AK("attention.sliding_window"), (uint32_t)swa);
    } else { /* T: TextModel.set_gguf_parameters (conversion/base.py:1392-1504) */
        kv_u32(b, AK("block_count"), (uint32_t)L);
        kv_u32(b, AK("context_length"), (uint32_t)ctx);
        kv_u32(b, AK("embedding_length"), (uint32_t)H);
        kv_u32(b, AK("feed_forward_length"), (uint32_t)F);
        kv_u32(b, AK("attention.head_count"), (uint32_t)nh);
        kv_u32(b, AK("attention.head_count_kv"), (uint32_t)nkv);
        if (rope.kind == ROPE_LINEAR || rope.kind == ROPE_YARN) {
            kv_str(b, AK("rope.scaling.type"), rope.kind == ROPE_LINEAR ? "linear" : "yarn");
            kv_f32(b, AK("rope.scaling.factor"), (float)rope.factor);
        }
        if (rope.kind == ROPE_YARN) {
            static const char *const yk[4] = {"yarn_ext_factor", "yarn_attn_factor", "yarn_beta_fast", "yarn_beta_slow"};
            kv_u32(b, AK("rope.scaling.original_context_length"), (uint32_t)rope.orig_ctx);
            for (int i = 0; i < 4; i++) {
                char yn[64];
                snprintf(yn, sizeof yn, "rope.scaling.%s", yk[i]);
                if (rope.has[i])
                    kv_f32(b, (snprintf(k, sizeof k, "%s.%s", an, yn), k), (float)rope.yarn[i]);
            }
        }
        kv_f32(b, AK("rope.freq_base"), (float)theta);
        if (a->rope_swa)
            kv_f32(b, AK("rope.freq_base_swa"), (float)theta_swa);
        kv_f32(b, AK("attention.layer_norm_rms_epsilon"), (float)eps);
        /* T14, T15: the first key present */
        if (jint(hp, "num_local_experts", &n_expert) || jint(hp, "num_experts", &n_expert) ||
            jint(hp, "n_routed_experts", &n_expert))
            kv_u32(b, AK("expert_count"), (uint32_t)n_expert);
        if (jint(hp, "num_experts_per_tok", &n_used) || jint(hp, "num_experts_per_token", &n_used) ||
            jint(hp, "top_k_experts", &n_used))
            kv_u32(b, AK("expert_used_count"), (uint32_t)n_used);
        if (a->experts && (n_expert <= 0 || n_expert > 1024)) {
            rc = qf_fail(err, errlen, -ENOTSUP, "config.json: num_local_experts %lld is not in 1..1024", n_expert);
            goto out;
        }
        /* transformers fills head_dim for Llama, Mistral and Qwen3 configs, not
         * for Qwen2's: the converter writes key/value_length when it is there */
        if (a->head_kvs_always || head_dim_given) {
            kv_u32(b, AK("attention.key_length"), (uint32_t)hd);
            kv_u32(b, AK("attention.value_length"), (uint32_t)hd);
        }
        ftype_at = kv_file_type(b);
        if (a->vocab_size_kvs) {
            kv_u32(b, AK("vocab_size"), (uint32_t)V);
            kv_u32(b, AK("rope.dimension_count"), (uint32_t)hd);
        }
        long long moe_ff;
        if (a->moe_ff_kvs && jint(hp, "moe_intermediate_size", &moe_ff))
            kv_u32(b, AK("expert_feed_forward_length"), (uint32_t)moe_ff);
        if (a->moe_ff_kvs && jint(hp, "shared_expert_intermediate_size", &moe_ff))
            kv_u32(b, AK("expert_shared_feed_forward_length"), (uint32_t)moe_ff);
        if (a->gemma3_kvs) { /* Gemma3Model's additions; its re-writes keep T's places */
            double fsc = 0;
            long long pat = 0, swa = 4096;
            json_t *asc = json_object_get(hp, "attn_logit_softcapping");
            if (asc && !json_is_null(asc)) { /* its assert */
                rc = qf_fail(err, errlen, -ENOTSUP, "config.json: Gemma 3 has no attn_logit_softcapping (the converter's assertion)");
                goto out;
            }
            if (jnum(hp, "final_logit_softcapping", &fsc) && fsc != 0)
                kv_f32(b, AK("final_logit_softcapping"), (float)fsc);
            if (!jint(hp, "sliding_window_pattern", &pat) || pat != 1) {
                json_t *sw = json_object_get(hp, "sliding_window");
                if (sw && !jint(hp, "sliding_window", &swa)) {
                    rc = qf_fail(err, errlen, -ENOTSUP, "config.json: sliding_window is not an integer (the converter fails)");
                    goto out;
                }
                kv_u32(b, AK("attention.sliding_window"), (uint32_t)swa);
            }
        }
    }
#undef AK
    kv_u32(b, "general.quantization_version", 2);

    if (in->vocab_kvs) { /* the converter's own tokenizer KVs, verbatim */
        put(b, in->vocab_kvs, in->vocab_kvs_len);
        b->n_kv += in->vocab_n_kv;
    } else {
        const char *tm = tj ? json_string_value(json_object_get(json_object_get(tj, "model"), "type")) : NULL;
        json_t *model = tj ? json_object_get(tj, "model") : NULL;
        json_t *bf = json_object_get(model, "byte_fallback");
        bool byte_fallback = json_is_true(bf);
        /* vocab.py: model.get('ignore_merges', False) and not model.get('byte_fallback', True) */
        bool is_llama3 = str_eq(tm, "BPE") && json_is_true(json_object_get(model, "ignore_merges")) && bf &&
                         !byte_fallback;
        const char *dec = tj ? json_string_value(json_object_get(json_object_get(tj, "decoder"), "type")) : NULL;
        struct special sp;
        enum { P_NONE, P_SPM, P_LLAMA_HF, P_PHI3, P_BPE } path = P_NONE;
        const char *why = "no tokenizer quantfs can convert (tokenizer.model, or a BPE tokenizer.json); place the "
                          "converter's vocab-only GGUF beside the model";
        bool bpe = tj && str_eq(tm, "BPE") && !byte_fallback;
        switch (a->vocab_kind) {
        case VOCAB_LLAMA: /* LlamaModel.set_vocab: SentencePiece, LlamaHfVocab, BPE */
            if (tc) {
                json_t *aps = json_object_get(tc, "add_prefix_space");
                if (json_is_boolean(aps))
                    kv_bool(b, "tokenizer.ggml.add_space_prefix", json_is_true(aps));
            }
            path = in->spm ? P_SPM
                 : tj && str_eq(tm, "BPE") && byte_fallback && str_eq(dec, "Sequence") && !is_llama3 ? P_LLAMA_HF
                 : bpe ? P_BPE : P_NONE;
            break;
        case VOCAB_BPE: /* Qwen2Model: SentencePiece if there is one, else BPE */
            path = in->spm ? P_SPM : bpe ? P_BPE : P_NONE;
            break;
        case VOCAB_GPT2: /* TextModel.set_vocab: BPE alone */
            path = bpe ? P_BPE : P_NONE;
            break;
        case VOCAB_GEMMA:
            path = in->spm ? P_SPM : bpe ? P_BPE : P_NONE;
            break;
        case VOCAB_GEMMA_SPM_ONLY:
            path = in->spm ? P_SPM : P_NONE;
            why = "Gemma 2 needs tokenizer.model (the converter's FileNotFoundError)";
            break;
        case VOCAB_PHI3: { /* Phi3MiniModel.set_vocab */
            json_t *cls = tc ? json_object_get(tc, "tokenizer_class") : NULL;
            if (tc && !cls)
                why = "tokenizer_config.json has no tokenizer_class (the converter's KeyError)";
            else if (str_eq(json_string_value(cls), "GPT2Tokenizer"))
                path = bpe ? P_BPE : P_NONE;
            else if (in->spm)
                path = P_PHI3;
            else
                why = "Phi-3 needs tokenizer.model unless its tokenizer_class is GPT2Tokenizer (the converter's ValueError)";
            break;
        }
        }
        if (path == P_SPM || path == P_LLAMA_HF || path == P_PHI3) {
            rc = path == P_LLAMA_HF ? vocab_llama_hf(tj, tc, &voc, err, errlen)
                                    : vocab_spm(in->spm, in->spm_len, tc, path == P_PHI3 ? tj : NULL, V,
                                                path == P_PHI3, &voc, err, errlen);
            if (rc)
                goto out;
            kv_str(b, "tokenizer.ggml.model", "llama");
            kv_str(b, "tokenizer.ggml.pre", "default");
            write_tokens(b, &voc);
            special_load(&sp, tj, tc, cfg, (long long)voc.n, in->chat_template_jinja);
            special_write(b, &sp);
            if (a->vocab_kind == VOCAB_GEMMA || a->vocab_kind == VOCAB_GEMMA_SPM_ONLY)
                kv_bool(b, "tokenizer.ggml.add_space_prefix", false);
        } else if (path == P_BPE) {
            special_load(&sp, tj, tc, cfg, -1, in->chat_template_jinja);
            const char *pre = bpe_pre(tj, &sp);
            if (!pre) {
                rc = qf_fail(err, errlen, -ENOTSUP,
                          "BPE pre-tokenizer was not recognized (quantfs knows llama-bpe, smaug-bpe and qwen2, as the "
                          "converter would name them); place the converter's vocab-only GGUF beside the model");
                goto out;
            }
            if ((rc = vocab_gpt2(tj, V, &voc, err, errlen)))
                goto out;
            kv_str(b, "tokenizer.ggml.model", "gpt2");
            kv_str(b, "tokenizer.ggml.pre", pre);
            write_tokens(b, &voc);
            if ((rc = write_merges(b, tj, err, errlen)))
                goto out;
            special_write(b, &sp);
        } else {
            rc = qf_fail(err, errlen, -ENOTSUP, "%s", why);
            goto out;
        }
    }
    if (kv.oom) {
        rc = -ENOMEM;
        goto out;
    }

    /* ---- tensors: shards in name order, names sorted in each ---- */
    size_t cap = 3;
    for (size_t s = 0; s < in->n_shards; s++)
        cap += in->shards[s]->n_tensors;
    hf->t = calloc(cap, sizeof *hf->t);
    if (!hf->t) {
        rc = -ENOMEM;
        goto out;
    }
    if (rope.kind == ROPE_LLAMA3) { /* generated first, as the converter does */
        struct qf_hf_tensor *o = &hf->t[hf->n_tensors++];
        snprintf(o->name, sizeof o->name, "rope_freqs.weight");
        o->n_dims = 1;
        for (int d = 0; d < QF_GGUF_MAX_DIMS; d++)
            o->ne[d] = 1;
        o->ne[0] = o->nelems = (uint64_t)hd / 2;
        o->src_type = QF_F32;
        if (!(o->gen = malloc((size_t)o->nelems * sizeof *o->gen))) {
            rc = -ENOMEM;
            goto out;
        }
        qf_hf_rope_llama3(theta, hd, rope.factor, rope.low, rope.high, rope.orig_ctx, o->gen);
    }
    for (int i = 0; i < 2 && phi_factors[i]; i++) { /* generated first, long then short */
        struct qf_hf_tensor *o = &hf->t[hf->n_tensors++];
        snprintf(o->name, sizeof o->name, i ? "rope_factors_short.weight" : "rope_factors_long.weight");
        o->n_dims = 1;
        for (int d = 0; d < QF_GGUF_MAX_DIMS; d++)
            o->ne[d] = 1;
        o->ne[0] = o->nelems = (uint64_t)n_rot / 2;
        o->src_type = QF_F32;
        o->gen = phi_factors[i];
        phi_factors[i] = NULL;
    }
    if (a->experts && (!(experts = calloc((size_t)L, sizeof *experts)) ||
                       !(expert_seen = calloc((size_t)L, sizeof *expert_seen)))) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t s = 0; s < in->n_shards && !rc; s++) {
        const struct qf_st *st = in->shards[s];
        const struct qf_st_tensor **srt = malloc((st->n_tensors ? st->n_tensors : 1) * sizeof *srt);
        if (!srt) {
            rc = -ENOMEM;
            break;
        }
        for (size_t i = 0; i < st->n_tensors; i++)
            srt[i] = &st->tensors[i];
        for (size_t i = 1; i < st->n_tensors; i++) /* insertion sort by name: headers are small */
            for (size_t j = i; j > 0 && strcmp(srt[j - 1]->name, srt[j]->name) > 0; j--) {
                const struct qf_st_tensor *x = srt[j];
                srt[j] = srt[j - 1];
                srt[j - 1] = x;
            }
        for (size_t i = 0; i < st->n_tensors && !rc; i++) {
            const struct qf_st_tensor *t = srt[i];
            struct qf_hf_tensor *o = &hf->t[hf->n_tensors];
            unsigned el, ee;
            int ep;
            char nm[256]; /* without "language_model." (ModelBase.filter_tensors) */
            if (!strip_lm(t->name, nm, sizeof nm)) {
                rc = qf_fail(err, errlen, -ENOTSUP, "tensor name '%.64s...' is too long", t->name);
                break;
            }
            if (expert_name(a, nm, &el, &ee, &ep)) { /* held back until its layer is complete */
                uint32_t dt = t->dtype == QF_STD_F32 ? QF_F32 : t->dtype == QF_STD_F16 ? QF_F16
                                                              : t->dtype == QF_STD_BF16 ? QF_BF16 : UINT32_MAX;
                if (el >= (unsigned)L || ee >= (unsigned)n_expert || t->n_dims != 2 || dt == UINT32_MAX) {
                    rc = qf_fail(err, errlen, -ENOTSUP, "tensor '%s': not an F32/F16/BF16 matrix of a layer and expert "
                                 "the config has", t->name);
                    break;
                }
                if (!experts[el] && !(experts[el] = calloc(3 * (size_t)n_expert, sizeof **experts))) {
                    rc = -ENOMEM;
                    break;
                }
                struct expert_src *x = &experts[el][(size_t)ep * (size_t)n_expert + ee];
                *x = (struct expert_src){true, (uint32_t)s, dt, t->offset, t->shape[0], t->shape[1]};
                if (++expert_seen[el] == 3 * (unsigned)n_expert) {
                    rc = stack_experts(a, hf, el, experts[el], (unsigned)n_expert, err, errlen);
                    expert_seen[el] = 0;
                    free(experts[el]);
                    experts[el] = NULL;
                }
                continue;
            }
            int m = qf_hf_map_name(a->hf, nm, o->name, sizeof o->name);
            if (m == 1)
                continue;
            if (m < 0) {
                rc = qf_fail(err, errlen, -ENOTSUP, "cannot map tensor '%s' (as the converter)", t->name);
                break;
            }
            uint32_t qt = t->dtype == QF_STD_F32 ? QF_F32 : t->dtype == QF_STD_F16 ? QF_F16
                                                            : t->dtype == QF_STD_BF16 ? QF_BF16 : UINT32_MAX;
            if (qt == UINT32_MAX || t->n_dims < 1 || t->n_dims > 2) {
                rc = qf_fail(err, errlen, -ENOTSUP, "tensor '%s': %s with %u dims is not an F32/F16/BF16 matrix or vector",
                          t->name, qf_st_dtype_name(t->dtype), t->n_dims);
                break;
            }
            o->n_dims = t->n_dims;
            for (int d = 0; d < QF_GGUF_MAX_DIMS; d++)
                o->ne[d] = 1;
            for (uint32_t d = 0; d < t->n_dims; d++)
                o->ne[d] = t->shape[t->n_dims - 1 - d];
            o->nelems = t->nelems;
            o->shard = (uint32_t)s;
            o->src_type = qt;
            o->src_off = t->offset;
            o->norm_shift = a->norm_shift && has_suffix(nm, "norm.weight");
            if (in->lora && (rc = lora_attach(in->lora, ac, t->name, o, true, &lora_used, err, errlen))) {
                hf->n_tensors++; /* owns what was read */
                break;
            }
            /* Gemma3Model: token_embd cut to the vocabulary's length */
            if (a->gemma3_kvs && in->spm && !strcmp(o->name, "token_embd.weight") && o->n_dims == 2 &&
                o->ne[1] > (uint64_t)V) {
                o->ne[1] = (uint64_t)V;
                o->nelems = o->ne[0] * o->ne[1];
            }
            if (a->permute_qk) {
                bool q = strstr(t->name, "q_proj.") != NULL, kk = strstr(t->name, "k_proj.") != NULL;
                if (q || kk) {
                    uint64_t heads = (uint64_t)(q ? nh : nkv), rows = o->n_dims == 2 ? o->ne[1] : o->ne[0];
                    if (rows % (2 * heads)) {
                        rc = qf_fail(err, errlen, -ENOTSUP, "tensor '%s': %llu rows do not split into %llu heads",
                                  t->name, (unsigned long long)rows, (unsigned long long)heads);
                        break;
                    }
                    o->perm_heads = (uint32_t)heads;
                }
            }
            hf->n_tensors++;
        }
        free(srt);
    }
    if (!rc && lora_used != lora_pairs)
        rc = qf_fail(err, errlen, -ENOTSUP, "%zu of the adapter's %zu pairs and replacing tensors are on no tensor "
                     "of the model (experts, or modules it does not have)", lora_pairs - lora_used, lora_pairs);
    for (long long l = 0; !rc && experts && l < L; l++)
        if (expert_seen[l]) /* the converter's ValueError("Unprocessed experts") */
            rc = qf_fail(err, errlen, -ENOTSUP, "layer %lld has %u of its %u expert matrices", l, expert_seen[l],
                         3 * (unsigned)n_expert);
    if (rc)
        goto out;

    rc = finish_header(hf, &kv, ftype_at, err, errlen);
out:
    for (long long l = 0; experts && l < L; l++)
        free(experts[l]);
    free(experts);
    free(expert_seen);
    vocab_free(&voc);
    free(kv.p);
    json_decref(cfg);
    json_decref(hp);
    json_decref(tj);
    json_decref(tc);
    json_decref(ac);
    free(phi_factors[0]);
    free(phi_factors[1]);
    if (rc) {
        qf_hf_free(hf);
        return rc;
    }
    *out = hf;
    return 0;
}

/* ------------------------------------------------------- adapters */

/* One adapter tensor of a LoRA pair, by base name */
struct lora_pair {
    char base[256];
    const struct qf_st_tensor *ab[2];
};

int qf_hf_build_lora(const struct qf_lora_input *in, struct qf_hf **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc = 0;
    json_t *cfg = load(in->base_config, in->base_config_len, "config.json", 0, err, errlen), *ac = NULL, *hp = NULL;
    struct qf_hf *hf = NULL;
    struct lora_pair *pairs = NULL;
    const struct qf_st_tensor **srt = NULL;
    struct buf kv = {0};
    size_t np = 0;
    if (!cfg)
        return -EINVAL;
    if (!(ac = load(in->adapter_config, in->adapter_config_len, "adapter_config.json", 0, err, errlen))) {
        rc = -EINVAL;
        goto out;
    }
    const char *hfarch = json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0));
    const struct hf_arch *a = arch_row(hfarch);
    if (!a) {
        rc = qf_fail(err, errlen, -ENOTSUP, "base architecture %s has no GGUF adapters (quantfs converts %s)",
                     hfarch ? hfarch : "(none)", QF_HF_ARCHS);
        goto out;
    }
    const char *pt = json_string_value(json_object_get(ac, "peft_type"));
    if (pt && strcmp(pt, "LORA")) {
        rc = qf_fail(err, errlen, -ENOTSUP, "adapter_config.json: peft_type %s is not LORA", pt);
        goto out;
    }
    double alpha;
    if (!jnum(ac, "lora_alpha", &alpha)) { /* the converter's KeyError */
        rc = qf_fail(err, errlen, -ENOTSUP, "adapter_config.json has no lora_alpha");
        goto out;
    }
    /* the converter reads lora_alpha alone: these would be mis-scaled in
     * its file (llama.cpp scales every pair by alpha / rank), refused
     * rather than served wrong */
    if (json_is_true(json_object_get(ac, "use_rslora"))) {
        rc = qf_fail(err, errlen, -ENOTSUP, "rsLoRA (use_rslora): convert_lora_to_gguf.py would scale it by alpha/r "
                     "instead of alpha/sqrt(r)");
        goto out;
    }
    if (json_object_size(json_object_get(ac, "alpha_pattern"))) {
        rc = qf_fail(err, errlen, -ENOTSUP, "alpha_pattern: convert_lora_to_gguf.py would apply one lora_alpha to "
                     "every module");
        goto out;
    }
    if (!(hp = hparams(cfg))) {
        rc = -ENOMEM;
        goto out;
    }
    long long nh = 0, nkv = 0;
    jint(hp, "num_attention_heads", &nh);
    if (!jint(hp, "num_key_value_heads", &nkv) || nkv <= 0)
        nkv = a->kv_heads ? a->kv_heads : nh;

    /* pairs in the order of their names (safetensors' load_file order),
     * each lora_A before lora_B */
    const struct qf_st *st = in->weights;
    if (!(srt = malloc((st->n_tensors ? st->n_tensors : 1) * sizeof *srt)) ||
        !(pairs = calloc(st->n_tensors ? st->n_tensors : 1, sizeof *pairs))) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < st->n_tensors; i++)
        srt[i] = &st->tensors[i];
    for (size_t i = 1; i < st->n_tensors; i++)
        for (size_t j = i; j > 0 && strcmp(srt[j - 1]->name, srt[j]->name) > 0; j--) {
            const struct qf_st_tensor *x = srt[j];
            srt[j] = srt[j - 1];
            srt[j - 1] = x;
        }
    static const char pfx[] = "base_model.model.";
    for (size_t i = 0; i < st->n_tensors; i++) {
        const char *n = srt[i]->name;
        if (!strncmp(n, pfx, sizeof pfx - 1))
            n += sizeof pfx - 1;
        size_t l = strlen(n);
        int half = l > 14 && !strcmp(n + l - 14, ".lora_A.weight") ? 0 : l > 14 && !strcmp(n + l - 14, ".lora_B.weight") ? 1 : -1;
        if (half < 0) { /* DoRA magnitudes, biases, saved modules: the converter's sys.exit */
            rc = qf_fail(err, errlen, -ENOTSUP, "adapter tensor '%.200s' is not a lora_A or lora_B weight (DoRA, "
                         "biases and modules_to_save are not converted)", srt[i]->name);
            goto out;
        }
        char base[256];
        if (l - 14 + 8 > sizeof base) {
            rc = qf_fail(err, errlen, -ENOTSUP, "adapter tensor name too long");
            goto out;
        }
        memcpy(base, n, l - 14);
        memcpy(base + l - 14, ".weight", 8);
        size_t k = 0;
        while (k < np && strcmp(pairs[k].base, base))
            k++;
        if (k == np)
            memcpy(pairs[np++].base, base, sizeof base);
        if (pairs[k].ab[half] || st_float(srt[i]->dtype) == UINT32_MAX || srt[i]->n_dims != 2) {
            rc = qf_fail(err, errlen, -ENOTSUP, "adapter tensor '%.200s': a repeated, non-float or non-matrix half",
                         srt[i]->name);
            goto out;
        }
        pairs[k].ab[half] = srt[i];
    }
    if (!(hf = calloc(1, sizeof *hf)) || !(hf->t = calloc(2 * np + 1, sizeof *hf->t))) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t k = 0; k < np; k++) {
        const struct lora_pair *pr = &pairs[k];
        char gname[48]; /* + ".lora_a" fits qf_hf_tensor.name */
        unsigned lay, e;
        int part;
        if (!pr->ab[0] || !pr->ab[1]) {
            rc = qf_fail(err, errlen, -ENOTSUP, "%s: lora_A without lora_B or the reverse", pr->base);
            goto out;
        }
        char nm[256];
        if (strip_lm(pr->base, nm, sizeof nm) && expert_name(a, nm, &lay, &e, &part)) {
            rc = qf_fail(err, errlen, -ENOTSUP, "%s: adapters of MoE experts are not converted yet", pr->base);
            goto out;
        }
        int m = qf_hf_map_name(a->hf, pr->base, gname, sizeof gname);
        if (m == 1) /* a tensor the base class drops (Gemma 2's lm_head) */
            continue;
        if (m < 0 || strlen(gname) + 8 > sizeof hf->t[0].name) {
            rc = qf_fail(err, errlen, -ENOTSUP, "cannot map adapter module '%s' (as the converter)", pr->base);
            goto out;
        }
        uint64_t r = pr->ab[0]->shape[0];
        if (pr->ab[1]->shape[1] != r || !r) {
            rc = qf_fail(err, errlen, -ENOTSUP, "%s: lora_A [%llu, ...] and lora_B [..., %llu] disagree on the rank",
                         pr->base, (unsigned long long)r, (unsigned long long)pr->ab[1]->shape[1]);
            goto out;
        }
        for (int h = 0; h < 2; h++) {
            const struct qf_st_tensor *t = pr->ab[h];
            struct qf_hf_tensor *o = &hf->t[hf->n_tensors++];
            snprintf(o->name, sizeof o->name, "%s.lora_%c", gname, h ? 'b' : 'a');
            o->n_dims = 2;
            for (int d = 0; d < QF_GGUF_MAX_DIMS; d++)
                o->ne[d] = 1;
            o->ne[0] = t->shape[1], o->ne[1] = t->shape[0];
            o->nelems = t->nelems;
            o->src_type = st_float(t->dtype);
            o->src_off = t->offset;
            /* LlamaModel.permute reorders B's rows (P(BA) = (PB)A) */
            bool q = strstr(pr->base, "q_proj.") != NULL, kk = strstr(pr->base, "k_proj.") != NULL;
            if (h == 1 && a->permute_qk && (q || kk)) {
                uint64_t heads = (uint64_t)(q ? nh : nkv);
                if (!heads || o->ne[1] % (2 * heads)) {
                    rc = qf_fail(err, errlen, -ENOTSUP, "%s: %llu rows do not split into %llu heads", pr->base,
                                 (unsigned long long)o->ne[1], (unsigned long long)heads);
                    goto out;
                }
                o->perm_heads = (uint32_t)heads;
            }
        }
    }
    /* KVs: convert_lora_to_gguf.py's LoraModel (no file_type, no tokenizer) */
    kv_str(&kv, "general.architecture", a->gguf);
    kv_str(&kv, "general.type", "adapter");
    kv_str(&kv, "adapter.type", "lora");
    kv_str(&kv, "general.name", in->name);
    kv_f32(&kv, "adapter.lora.alpha", (float)alpha);
    kv_u32(&kv, "general.quantization_version", 2);
    if (kv.oom) {
        rc = -ENOMEM;
        goto out;
    }
    rc = finish_header(hf, &kv, 0, err, errlen);
out:
    free(kv.p);
    free(srt);
    free(pairs);
    json_decref(cfg);
    json_decref(ac);
    json_decref(hp);
    if (rc) {
        qf_hf_free(hf);
        return rc;
    }
    *out = hf;
    return 0;
}

int qf_hf_tokenizer_sig(const char *config, size_t len, char *out, size_t n)
{
    json_t *cfg = load(config, len, "config.json", 0, NULL, 0);
    if (!cfg)
        return -EINVAL;
    json_t *sig = json_object();
    json_object_set(sig, "architectures", json_array_get(json_object_get(cfg, "architectures"), 0));
    json_object_set(sig, "vocab_size", json_object_get(cfg, "vocab_size"));
    for (int t = 0; t < N_SPECIAL; t++) { /* special_load's config ids */
        char k[32];
        snprintf(k, sizeof k, "%s_token_id", special_types[t]);
        json_object_set(sig, k, json_object_get(cfg, k));
    }
    char *d = json_dumps(sig, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY);
    int rc = d ? 0 : -ENOMEM;
    if (d)
        snprintf(out, n, "%s", d);
    free(d);
    json_decref(sig);
    json_decref(cfg);
    return rc;
}

void qf_hf_tokenizer_kvs(const struct qf_hf *hf, const uint8_t **p, size_t *len, uint64_t *n_kv)
{
    uint64_t b = 0, e = 0, n = 0;
    for (uint64_t k = 0; k < hf->f32->n_kv; k++) {
        if (strncmp(hf->f32->kvs[k].key, "tokenizer.", 10))
            continue;
        if (!n)
            b = hf->f32->kvs[k].begin;
        e = hf->f32->kvs[k].end;
        n++;
    }
    *p = hf->hdr + b;
    *len = (size_t)(e - b);
    *n_kv = n;
}

/* ------------------------------------------- merged safetensors */

int qf_hf_build_merged_st(const struct qf_merged_st_input *in, struct qf_hf **out, char *err, size_t errlen)
{
    *out = NULL;
    json_t *cfg = load(in->config, in->config_len, "config.json", 0, err, errlen), *hp = NULL, *ac = NULL;
    json_t *hj = json_object();
    struct qf_hf *hf = calloc(1, sizeof *hf);
    const struct qf_st *me = in->shard < in->n_shards ? in->shards[in->shard] : NULL;
    size_t pairs = 0, used = 0;
    int rc = !cfg ? -EINVAL : !hj || !hf ? -ENOMEM : me ? 0 : -EINVAL;
    if (!rc && !(hp = hparams(cfg)))
        rc = -ENOMEM;
    if (!rc && !(ac = load(in->lora->config, in->lora->config_len, "adapter_config.json", 0, err, errlen)))
        rc = -EINVAL;
    if (!rc)
        rc = lora_check(in->lora, ac, hp, &pairs, err, errlen);
    /* the whole adapter against every shard (a pair on no tensor refuses
     * it, as for the GGUF); only this shard's tensors are read in */
    if (!rc && !(hf->t = calloc(me->n_tensors + 1, sizeof *hf->t)))
        rc = -ENOMEM;
    for (size_t s = 0; !rc && s < in->n_shards; s++) {
        const struct qf_st *st = in->shards[s];
        for (size_t i = 0; !rc && i < st->n_tensors; i++) {
            const struct qf_st_tensor *t = &st->tensors[i];
            struct qf_hf_tensor tmp = {0}, *o = s == in->shard ? &hf->t[hf->n_tensors] : &tmp;
            o->n_dims = t->n_dims;
            for (int d = 0; d < QF_GGUF_MAX_DIMS; d++)
                o->ne[d] = 1;
            for (uint32_t d = 0; d < t->n_dims && d < QF_GGUF_MAX_DIMS; d++)
                o->ne[d] = t->shape[t->n_dims - 1 - d];
            o->nelems = t->nelems;
            o->src_type = st_float(t->dtype);
            o->src_off = t->offset;
            if (o->src_type != UINT32_MAX && t->n_dims >= 1 && t->n_dims <= 2)
                rc = lora_attach(in->lora, ac, t->name, o, s == in->shard, &used, err, errlen);
            if (o == &tmp)
                continue;
            hf->n_tensors++; /* owns what was read */
            bool merged = o->lora_a || o->repl;
            o->raw_len = merged ? 0 : t->nbytes;
            uint64_t at = hf->size[0], n = merged ? t->nelems * 4 : t->nbytes;
            json_t *e = json_object(), *shape = json_array();
            for (uint32_t d = 0; e && shape && d < t->n_dims; d++)
                json_array_append_new(shape, json_integer((json_int_t)t->shape[d]));
            if (!e || !shape || json_object_set_new(e, "dtype", json_string(merged ? "F32" : qf_st_dtype_name(t->dtype))) ||
                json_object_set_new(e, "shape", shape) ||
                json_object_set_new(e, "data_offsets", json_pack("[II]", (json_int_t)at, (json_int_t)(at + n))) ||
                json_object_set_new(hj, t->name, e))
                rc = -ENOMEM;
            hf->size[0] += n;
        }
    }
    if (!rc && used != pairs)
        rc = qf_fail(err, errlen, -ENOTSUP, "%zu of the adapter's %zu pairs and replacing tensors are on no tensor "
                     "of the model (modules it does not have)", pairs - used, pairs);
    /* the offsets recorded so far are data-relative: the header goes first */
    if (!rc && !(hf->off[0] = malloc((hf->n_tensors + 1) * sizeof *hf->off[0])))
        rc = -ENOMEM;
    for (size_t i = 0, at = 0; !rc && i < hf->n_tensors; i++) {
        hf->off[0][i] = at;
        at += hf->t[i].raw_len ? hf->t[i].raw_len : hf->t[i].nelems * 4;
    }
    char *text = NULL;
    if (!rc && me->metadata) {
        json_t *md = json_loads(me->metadata, 0, NULL);
        json_t *all = json_object();
        /* __metadata__ first, as the file had it */
        if (!md || !all || json_object_set_new(all, "__metadata__", md) || json_object_update(all, hj))
            rc = -ENOMEM;
        json_decref(hj);
        hj = all;
    }
    if (!rc && !(text = json_dumps(hj, JSON_COMPACT | JSON_PRESERVE_ORDER)))
        rc = -ENOMEM;
    if (!rc) {
        size_t tl = strlen(text), hl = (tl + 7) / 8 * 8; /* padded with spaces, as safetensors pads */
        if (!(hf->hdr = malloc(8 + hl))) {
            rc = -ENOMEM;
        } else {
            qf_put64(hf->hdr, hl);
            memcpy(hf->hdr + 8, text, tl);
            memset(hf->hdr + 8 + tl, ' ', hl - tl);
            hf->hdr_len = 8 + hl;
            hf->size[0] += hf->hdr_len;
            rc = qf_st_parse(mem_pread, hf, hf->size[0], &hf->st, err, errlen);
        }
    }
    free(text);
    json_decref(hj);
    json_decref(ac);
    json_decref(hp);
    json_decref(cfg);
    if (rc)
        qf_hf_free(hf);
    else
        *out = hf;
    return rc;
}

void qf_hf_free(struct qf_hf *hf)
{
    if (!hf)
        return;
    free(hf->hdr);
    for (int i = 0; i < QF_HF_NOUT; i++) {
        free(hf->type[i]);
        free(hf->off[i]);
    }
    for (size_t i = 0; hf->t && i < hf->n_tensors; i++) {
        free(hf->t[i].gen);
        free(hf->t[i].lora_a);
        free(hf->t[i].lora_b);
        free(hf->t[i].lora_m);
        free(hf->t[i].repl);
        free(hf->t[i].part_shard);
        free(hf->t[i].part_off);
    }
    free(hf->t);
    qf_gguf_free(hf->f32);
    qf_st_free(hf->st);
    free(hf);
}

/* ------------------------------------------------------- reading */

/* Source row of output row r of a tensor permuted in groups of heads
 * (conversion/llama.py permute): output h*hd + 2i + t = input
 * h*hd + t*hd/2 + i. */
static uint64_t src_row(const struct qf_hf_tensor *t, uint64_t r)
{
    if (!t->perm_heads)
        return r;
    uint64_t rows = t->n_dims == 2 ? t->ne[1] : t->ne[0], hd = rows / t->perm_heads;
    uint64_t h = r / hd, w = r % hd;
    return h * hd + (w % 2) * (hd / 2) + w / 2;
}

/* n values of t from source element first on (the source's row-major
 * order), as F32: the adapter's replacement, else the shard's bytes
 * through raw (n * 4 bytes) */
static int src_values(const struct qf_hf_reader *rd, const struct qf_hf_tensor *t, uint64_t first, uint64_t n,
                      float *f, uint8_t *raw)
{
    if (t->repl) {
        memcpy(f, t->repl + first, (size_t)n * sizeof *f);
        return 0;
    }
    size_t es = t->src_type == QF_F32 ? 4 : 2;
    int rc = rd->rd(rd->ctx[t->shard], raw, (size_t)(n * es), t->src_off + first * es);
    if (!rc)
        qf_to_f32(t->src_type, raw, f, (size_t)n);
    return rc;
}

/* f[x] += s B[row] . A[:, col + x] for x < run, d scratch of run floats:
 * each sum in rank order (j), so the bytes do not depend on how reads are
 * cut; in float, as PEFT's own float32 matmul (the loop over columns
 * vectorizes) */
static void lora_add(const struct qf_hf_tensor *t, uint64_t row, uint64_t col, uint64_t run, float *f, float *d)
{
    const uint64_t row_len = t->ne[0];
    const float scale = (float)t->lora_scale;
    const float *b = t->lora_b + row * t->lora_r;
#ifdef QF_HAVE_X86
    const bool simd = qf_simd_available();
#endif
    for (uint64_t x = 0; x < run; x++)
        d[x] = 0;
    for (uint64_t j = 0; j < t->lora_r; j++) {
        const float *a = t->lora_a + j * row_len + col;
        float bj = b[j] * scale;
#ifdef QF_HAVE_X86
        if (simd) {
            qf_axpy_avx2(d, a, bj, (size_t)run);
            continue;
        }
#endif
        for (uint64_t x = 0; x < run; x++)
            d[x] += bj * a[x];
    }
    for (uint64_t x = 0; x < run; x++)
        f[x] += d[x];
}

/* DoRA's factor for source row `row`: m[row] / ||W[row] + s (B A)[row]||,
 * the norm over the whole merged row (PEFT's get_weight_norm, then
 * magnitude / norm in float32), its squares summed in double */
static int dora_factor(const struct qf_hf_reader *rd, const struct qf_hf_tensor *t, uint64_t row, float *g)
{
    const uint64_t n = t->ne[0];
    float *f = malloc((size_t)n * sizeof *f), *d = malloc((size_t)n * sizeof *d);
    uint8_t *raw = malloc((size_t)n * 4);
    int rc = f && d && raw ? src_values(rd, t, row * n, n, f, raw) : -ENOMEM;
    if (!rc) {
        lora_add(t, row, 0, n, f, d);
        double ss = 0;
        for (uint64_t x = 0; x < n; x++)
            ss += (double)f[x] * f[x];
        *g = t->lora_m[row] / (float)sqrt(ss);
    }
    free(f);
    free(d);
    free(raw);
    return rc;
}

int qf_hf_pread(void *vctx, void *buf, size_t len, uint64_t off)
{
    const struct qf_hf_reader *rd = vctx;
    const struct qf_hf *hf = rd->hf;
    uint8_t *out = buf;
    if (off > hf->size[0] || len > hf->size[0] - off)
        return -EIO;
    while (len) {
        if (off < hf->hdr_len) {
            size_t n = (size_t)(hf->hdr_len - off) < len ? (size_t)(hf->hdr_len - off) : len;
            memcpy(out, hf->hdr + off, n);
            out += n, off += n, len -= n;
            continue;
        }
        uint64_t rel = off - hf->hdr_len;
        /* the tensor whose padded range holds rel (offsets ascend) */
        size_t lo = 0, hi = hf->n_tensors;
        while (hi - lo > 1) {
            size_t mid = (lo + hi) / 2;
            if (hf->off[0][mid] <= rel)
                lo = mid;
            else
                hi = mid;
        }
        const struct qf_hf_tensor *t = &hf->t[lo];
        uint64_t tb = hf->off[0][lo], tn = t->raw_len ? t->raw_len : t->nelems * 4;
        uint64_t in = rel - tb;
        if (t->raw_len && in < tn) { /* a merged shard's untouched tensor */
            size_t n = (size_t)(tn - in) < len ? (size_t)(tn - in) : len;
            int rc = rd->rd(rd->ctx[t->shard], out, n, t->src_off + in);
            if (rc)
                return rc;
            out += n, off += n, len -= n;
            continue;
        }
        if (in >= tn) { /* padding */
            uint64_t end = (tn + ALIGN - 1) / ALIGN * ALIGN;
            size_t n = (size_t)(end - in) < len ? (size_t)(end - in) : len;
            memset(out, 0, n);
            out += n, off += n, len -= n;
            continue;
        }
        if (t->gen) { /* generated (rope_freqs) */
            size_t n = (size_t)(tn - in) < len ? (size_t)(tn - in) : len;
            memcpy(out, (const uint8_t *)t->gen + in, n);
            out += n, off += n, len -= n;
            continue;
        }
        /* f32 elements of the tensor from e on: a row at a time where rows
         * are permuted, else as many as the buffer holds (one pread of
         * 4 KiB per row measured as 1.2x the time of an F32 source) */
        uint64_t row_len = t->ne[0], e = in / 4;
        bool rows = t->n_dims == 2 && t->perm_heads;
        uint64_t r = rows ? e / row_len : 0, c = rows ? e % row_len : e;
        uint64_t seg = rows ? row_len - c : t->nelems - c;
        uint64_t want = (in % 4 + len + 3) / 4;
        if (seg > want)
            seg = want;
        if (seg > 16384)
            seg = 16384;
        uint64_t sr = rows ? src_row(t, r) : 0, sc = rows ? c : t->n_dims == 1 ? src_row(t, c) : c;
        size_t es = t->src_type == QF_F32 ? 4 : 2;
        uint8_t raw[16384 * 4];
        float f[16384];
        if (t->n_parts) { /* stacked experts: expert-major, each its own source matrix */
            uint64_t per = t->nelems / t->n_parts, x = e / per, within = e % per;
            if (seg > per - within)
                seg = per - within;
            int rc = rd->rd(rd->ctx[t->part_shard[x]], raw, (size_t)(seg * es), t->part_off[x] + within * es);
            if (rc)
                return rc;
            qf_to_f32(t->src_type, raw, f, (size_t)seg);
        } else if (t->n_dims == 1 && t->perm_heads) { /* permuted vector: element by element */
            for (uint64_t k = 0; k < seg; k++) {
                int rc = src_values(rd, t, src_row(t, c + k), 1, f + k, raw);
                if (rc)
                    return rc;
            }
        } else {
            int rc = src_values(rd, t, sr * row_len + sc, seg, f, raw);
            if (rc)
                return rc;
        }
        if (t->lora_a) { /* merged: + s B[row] . A[:, col], row and column in the source's order */
            float *d = malloc((size_t)seg * sizeof *d);
            if (!d)
                return -ENOMEM;
            for (uint64_t k = 0; k < seg;) {
                uint64_t row = rows ? sr : (c + k) / row_len, col = rows ? c + k : (c + k) % row_len;
                uint64_t run = row_len - col < seg - k ? row_len - col : seg - k;
                lora_add(t, row, col, run, f + k, d);
                if (t->lora_m) { /* DoRA: the whole row's norm */
                    float g;
                    int rc = dora_factor(rd, t, row, &g);
                    if (rc) {
                        free(d);
                        return rc;
                    }
                    for (uint64_t x = 0; x < run; x++)
                        f[k + x] *= g;
                }
                k += run;
            }
            free(d);
        }
        if (t->norm_shift) /* Gemma's + 1, in the source dtype: an fp16 sum is rounded to fp16 */
            for (uint64_t k = 0; k < seg; k++)
                f[k] = t->src_type == QF_F16 ? qf_f16_to_f32(qf_f32_to_f16(f[k] + 1.0f)) : f[k] + 1.0f;
        size_t skip = (size_t)(in % 4), n = (size_t)(seg * 4) - skip;
        if (n > len)
            n = len;
        memcpy(out, (uint8_t *)f + skip, n);
        out += n, off += n, len -= n;
    }
    return 0;
}

/* ------------------------------------------------------- layouts */

/* 0..3 for a view that is a converter outtype (f32, fp16, bf16, q8_0), -1
 * for views made by llama-quantize. */
static int hf_outtype(const struct qf_view *v)
{
    if (v->pure || v->imat) /* llama-quantize's, not the converter's */
        return -1;
    switch (v->ftype) {
    case QF_FT_F32: return 0;
    case QF_FT_F16: return 1;
    case QF_FT_BF16: return 2;
    case QF_FT_Q8_0: return 3;
    default: return -1;
    }
}


int qf_layout_hf(const struct qf_hf *hf, const struct qf_view *v, const struct qf_model_imatrix *im, struct qf_layout **out,
                 char *err, size_t errlen)
{
    int ot = hf_outtype(v);
    if (ot < 0) /* llama-quantize of the converter's F32 file */
        return qf_layout_gguf(hf->f32, v, im ? im->m : NULL, im ? im->file : NULL, out, err, errlen);
    if (ot == 0)
        return qf_layout_passthrough(hf->size[0], out);
    struct qf_layout *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    /* the f32 header with this outtype's file_type, tensor types and offsets */
    if (!(l->mem = malloc(hf->hdr_len))) {
        free(l);
        return -ENOMEM;
    }
    memcpy(l->mem, hf->hdr, hf->hdr_len);
    l->mem_len = hf->hdr_len;
    qf_put32(l->mem + hf->ftype_at, ftypes[ot]);
    uint8_t *p = l->mem + hf->ti_at;
    for (size_t i = 0; i < hf->n_tensors; i++) {
        p += 8 + qf_get64(p); /* name */
        uint32_t nd = qf_get32(p);
        p += 4 + 8 * (size_t)nd;
        qf_put32(p, hf->type[ot][i]);
        qf_put64(p + 4, hf->off[ot][i]);
        p += 12;
    }
    struct qf_layout_builder b = {.l = l};
    int rc = qf_layout_add(&b, (struct qf_extent){.kind = QF_EXT_MEM, .len = hf->hdr_len, .mem = l->mem});
    for (size_t i = 0; i < hf->n_tensors && !rc; i++) {
        const struct qf_hf_tensor *t = &hf->t[i];
        uint32_t ty = hf->type[ot][i];
        uint64_t src = hf->hdr_len + hf->off[0][i];
        if (ty == QF_F32)
            rc = qf_layout_add(&b, (struct qf_extent){.kind = QF_EXT_SRC, .len = t->nelems * 4, .src_off = src});
        else
            rc = qf_layout_add(&b, (struct qf_extent){.kind = QF_EXT_CONV, .len = qf_type_bytes(ty, t->nelems),
                                                      .src_type = QF_F32, .dst_type = ty, .src_off = src,
                                                      .n_elems = t->nelems, .chunk_elems = QF_CHUNK_ELEMS});
        if (!rc)
            rc = qf_layout_pad(&b, ALIGN);
    }
    if (!rc && l->size != hf->size[ot])
        rc = qf_fail(err, errlen, -EINVAL, "internal: layout size %llu != %llu", (unsigned long long)l->size,
                  (unsigned long long)hf->size[ot]);
    if (rc) {
        qf_layout_free(l);
        return rc;
    }
    *out = l;
    return 0;
}
