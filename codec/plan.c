/* plan.c — a GGUF view is the file llama-quantize writes.
 *
 * Reproduces what `llama-quantize [--pure] SRC OUT FTYPE` of llama.cpp
 * v0.5.0 (the release in npm node-llama-cpp 3.22.1; no imatrix, no
 * overrides) decides and writes, from the source header alone:
 *   - which tensors are quantized at all (tensor_allows_quantization),
 *   - each tensor's type: the mix rules of llama_tensor_get_type_impl for
 *     the K and legacy mixes, then the row-length fallback
 *     (tensor_type_fallback), both in src/llama-quant.cpp,
 *   - the tensor order (the loader's std::map sorted by layer number, then
 *     name: src/llama-model-loader.h weight_name_comparer),
 *   - the header: input KVs in input order minus split.*, then
 *     general.quantization_version and general.file_type (gguf_set_val_*
 *     removes and appends), tensor infos with ggml_n_dims dimensions, data
 *     aligned to 32 bytes (GGUF_DEFAULT_ALIGNMENT; llama-quantize never
 *     takes the input's general.alignment for its output),
 *   - its refusals: an architecture or hyper-parameters it cannot load, a
 *     quantized tensor it would have to requantize, NaN/Inf in the data
 *     (ggml_validate_row_data; found on read: the extents are validated).
 * ../shared/docs/llama-quantize.md summarises the rules with line numbers;
 * the code below follows the source, not that summary.
 *
 * Only the architectures whose hyper-parameter loading is reproduced are
 * accepted (llama — which covers Mistral and Mixtral GGUFs —, qwen2,
 * qwen3, qwen2moe, qwen3moe, smollm3, gemma2, gemma3, phi3); any other is refused with a reason, never guessed.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "quant_impl.h"

#define QNT_VERSION 2       /* GGML_QNT_VERSION */
#define OUT_ALIGN 32        /* GGUF_DEFAULT_ALIGNMENT */
#define MAX_LAYERS 512      /* LLAMA_MAX_LAYERS */
#define MAX_EXPERTS 1024    /* LLAMA_MAX_EXPERTS */

/* ------------------------------------------------------------ hparams */

enum size70b { S70_NONE, S70_80_LAYERS, S70_80_LAYERS_GQA };

static const struct arch_rule {
    const char *name;
    enum size70b s70; /* when load_arch_hparams sets LLM_TYPE_70B */
    bool n_rot_is_head_dim; /* llama_model_base::load_hparams' n_rot check */
} arch_rules[] = {
    {"llama", S70_80_LAYERS_GQA, true}, /* src/models/llama.cpp:28 */
    {"qwen2", S70_80_LAYERS, false},    /* src/models/qwen2.cpp:14 */
    {"qwen3", S70_NONE, false},
    {"smollm3", S70_NONE, false},       /* src/models/smollm3.cpp:3 (no 70B class) */
    {"qwen3moe", S70_NONE, false},      /* src/models/qwen3moe.cpp:3 */
    {"gemma2", S70_NONE, false},        /* src/models/gemma2.cpp (sizes by layer count, none 70B) */
    {"gemma3", S70_NONE, false},        /* src/models/gemma3.cpp */
    {"phi3", S70_NONE, false},          /* src/models/phi3.cpp */
    {"qwen2moe", S70_NONE, false},      /* src/models/qwen2moe.cpp */
};

struct hparams {
    const struct arch_rule *arch;
    uint32_t n_layer, n_head, n_head_kv, n_expert;
    bool is_70b;
};

struct plan_err {
    char *buf;
    size_t len;
};

static int refuse(struct plan_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(struct plan_err *e, const char *fmt, ...)
{
    if (e->buf && e->len) {
        int n = snprintf(e->buf, e->len, "llama-quantize refuses it: ");
        va_list ap;
        va_start(ap, fmt);
        if (n >= 0 && (size_t)n < e->len)
            vsnprintf(e->buf + n, e->len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -ENOTSUP;
}

static const char *vtype_name(uint32_t t)
{
    static const char *const names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                        "str", "arr", "u64", "i64", "f64"};
    return t < sizeof names / sizeof *names ? names[t] : "?";
}

/* llama_model_loader::get_key for a uint32_t: exact type, or absent. */
static int get_u32(const struct qf_gguf *g, const char *arch, const char *suffix, bool required, uint32_t *v,
                   struct plan_err *e)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const struct qf_gguf_kv *kv = qf_gguf_find_kv(g, key);
    if (!kv)
        return required ? refuse(e, "key not found in model: %s", key) : 0;
    if (kv->type != QF_GT_U32)
        return refuse(e, "key %s has wrong type %s but expected type u32", key, vtype_name(kv->type));
    *v = (uint32_t)kv->u;
    return 0;
}

/* get_key_or_arr: a u32, or an array of one value per layer (layer 0's
 * value is what the rules use). */
static int get_u32_or_arr(const struct qf_gguf *g, const char *arch, const char *suffix, uint32_t n_layer,
                          uint32_t *v, struct plan_err *e)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const struct qf_gguf_kv *kv = qf_gguf_find_kv(g, key);
    if (!kv || kv->type != QF_GT_ARRAY)
        return get_u32(g, arch, suffix, false, v, e);
    if (kv->arr_n != n_layer)
        return refuse(e, "key %s has wrong array length; expected %u, got %llu", key, n_layer,
                      (unsigned long long)kv->arr_n);
    if (kv->arr_type != QF_GT_U32 && kv->arr_type != QF_GT_I32)
        return refuse(e, "key %s: array of %s, expected integers", key, vtype_name(kv->arr_type));
    *v = (uint32_t)kv->u;
    return 0;
}

/* What llama_model_base::load_hparams and the architecture's
 * load_arch_hparams need before llama-quantize looks at a tensor. */
static int load_hparams(const struct qf_gguf *g, struct hparams *hp, struct plan_err *e)
{
    const struct qf_gguf_kv *a = qf_gguf_find_kv(g, "general.architecture");
    if (!a)
        return refuse(e, "key not found in model: general.architecture");
    if (a->type != QF_GT_STRING || !a->sval)
        return refuse(e, "general.architecture is not a short string");
    for (size_t i = 0; i < sizeof arch_rules / sizeof *arch_rules && !hp->arch; i++)
        if (!strcmp(arch_rules[i].name, a->sval))
            hp->arch = &arch_rules[i];
    if (!hp->arch) {
        snprintf(e->buf, e->len,
                 "architecture '%.64s': quantfs reproduces llama-quantize for llama, qwen2, qwen3, qwen2moe, qwen3moe, smollm3, gemma2, gemma3 and phi3 only", a->sval);
        return -ENOTSUP;
    }
    const char *an = hp->arch->name;
    uint32_t tmp = 0, n_embd = 0, used = 0;
    int rc;
    if ((rc = get_u32(g, an, "context_length", true, &tmp, e)) || (rc = get_u32(g, an, "embedding_length", true, &n_embd, e)) ||
        (rc = get_u32(g, an, "block_count", true, &hp->n_layer, e)))
        return rc;
    if (hp->n_layer == 0 || hp->n_layer > MAX_LAYERS)
        return refuse(e, "%s.block_count %u is not in 1..%d (a failed assertion, it aborts)", an, hp->n_layer,
                      MAX_LAYERS);
    if ((rc = get_u32(g, an, "expert_count", false, &hp->n_expert, e)) ||
        (rc = get_u32_or_arr(g, an, "expert_used_count", hp->n_layer, &used, e)))
        return rc;
    if (hp->n_expert > MAX_EXPERTS)
        return refuse(e, "%s.expert_count %u exceeds %d (a failed assertion, it aborts)", an, hp->n_expert,
                      MAX_EXPERTS);
    if (hp->n_expert ? used == 0 || used > hp->n_expert : used != 0)
        return refuse(e, "%s.expert_used_count %u does not fit expert_count %u (a failed assertion, it aborts)", an,
                      used, hp->n_expert);
    if ((rc = get_u32_or_arr(g, an, "attention.head_count", hp->n_layer, &hp->n_head, e)))
        return rc;
    hp->n_head_kv = hp->n_head;
    if ((rc = get_u32_or_arr(g, an, "attention.head_count_kv", hp->n_layer, &hp->n_head_kv, e)))
        return rc;
    if (hp->n_head > 0 && hp->arch->n_rot_is_head_dim) {
        uint32_t head_k = n_embd / hp->n_head, n_rot;
        if ((rc = get_u32(g, an, "attention.key_length", false, &head_k, e)))
            return rc;
        n_rot = head_k;
        if ((rc = get_u32(g, an, "rope.dimension_count", false, &n_rot, e)))
            return rc;
        if (n_rot != head_k)
            return refuse(e, "invalid n_rot: %u, expected %u", n_rot, head_k);
    }
    char key[128];
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", an);
    const struct qf_gguf_kv *eps = qf_gguf_find_kv(g, key);
    if (!eps)
        return refuse(e, "key not found in model: %s", key);
    if (eps->type != QF_GT_F32)
        return refuse(e, "key %s has wrong type %s but expected type f32", key, vtype_name(eps->type));
    hp->is_70b = hp->n_layer == 80 && (hp->arch->s70 == S70_80_LAYERS ||
                                       (hp->arch->s70 == S70_80_LAYERS_GQA && hp->n_expert != 8 &&
                                        hp->n_head != hp->n_head_kv));
    return 0;
}

/* ------------------------------------------------------------- tensors */

/* sscanf(name, "blk.%d.", &layer): whitespace, a sign and digits after
 * "blk."; the value as glibc stores it, (int) of strtol's. -1 if none. */
static bool parse_layer(const char *name, int *layer)
{
    if (strncmp(name, "blk.", 4))
        return false;
    const char *p = name + 4;
    while (isspace((unsigned char)*p))
        p++;
    const char *q = p + (*p == '+' || *p == '-');
    if (!isdigit((unsigned char)*q))
        return false;
    *layer = (int)strtol(p, NULL, 10);
    return true;
}

static int layer_of(const char *name)
{
    int l = -1;
    parse_layer(name, &l);
    return l;
}

struct sorted {
    const struct qf_gguf_tensor *t;
    size_t index;
    int layer;
};

static int cmp_sorted(const void *a, const void *b)
{
    const struct sorted *x = a, *y = b;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    return strcmp(x->t->name, y->t->name);
}

static uint32_t ggml_n_dims(const struct qf_gguf_tensor *t)
{
    for (uint32_t i = QF_GGUF_MAX_DIMS; i-- > 1;)
        if (t->ne[i] > 1)
            return i + 1;
    return 1;
}

static bool has(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

/* tensor_allows_quantization (src/llama-quant.cpp:287-366); why gets the
 * reason when it does not. */
static bool allows_quantization(const struct qf_gguf_tensor *t, const char **why)
{
    static const char *const never[] = {
        "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
        "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
        "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
        "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
        "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
        "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight",
        ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger",
        "a.rvq.codebook", "mm.a.code_embd"};
    const char *n = t->name;
    size_t len = strlen(n);
    if (ggml_n_dims(t) < 2) {
        *why = "kept: fewer than 2 dimensions";
        return false;
    }
    if (len < 6 || strcmp(n + len - 6, "weight")) {
        *why = "kept: the name does not end in 'weight'";
        return false;
    }
    if (!strcmp(n, "position_embd.weight") || !strcmp(n, "token_types.weight")) {
        *why = "kept: position or token-type embedding";
        return false;
    }
    for (size_t i = 0; i < sizeof never / sizeof *never; i++)
        if (has(n, never[i])) {
            *why = "kept: a tensor llama-quantize never quantizes";
            return false;
        }
    return true;
}

enum category { C_TOKEN_EMBD, C_ATTN_Q, C_ATTN_V, C_ATTN_K, C_ATTN_QKV, C_ATTN_KV_B, C_ATTN_OUTPUT,
                C_FFN_UP, C_FFN_GATE, C_FFN_DOWN, C_OUTPUT, C_OTHER };

/* tensor_get_category (src/llama-quant.cpp:119-154) */
static enum category category_of(const char *n)
{
    if (!strcmp(n, "output.weight"))
        return C_OUTPUT;
    if (!strcmp(n, "token_embd.weight") || !strcmp(n, "per_layer_token_embd.weight"))
        return C_TOKEN_EMBD;
    return has(n, "attn_qkv.weight")    ? C_ATTN_QKV
           : has(n, "attn_kv_b.weight") ? C_ATTN_KV_B
           : has(n, "attn_v.weight")    ? C_ATTN_V
           : has(n, "attn_k.weight")    ? C_ATTN_K
           : has(n, "attn_q.weight")    ? C_ATTN_Q
           : has(n, "attn_output.weight") ? C_ATTN_OUTPUT
           : has(n, "ffn_up")           ? C_FFN_UP
           : has(n, "ffn_gate")         ? C_FFN_GATE
           : has(n, "ffn_down")         ? C_FFN_DOWN
                                        : C_OTHER;
}

static bool is_attn_v(enum category c) { return c == C_ATTN_V || c == C_ATTN_QKV || c == C_ATTN_KV_B; }

static bool more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

struct state {
    const struct hparams *hp;
    uint32_t ftype;
    bool has_imatrix; /* qs.has_imatrix: an imatrix was given (matched or not) */
    bool tied; /* no output.weight: token_embd doubles as the output */
    int n_attention_wv, i_attention_wv, i_ffn_down, i_ffn_gate, i_ffn_up;
};

static const char *tn(uint32_t type) { return qf_type_get(type)->name; }

/* layer_info: the counter for dense models; with experts, the layer parsed
 * from the name, which must exist and be in range. */
static int layer_info(const struct state *s, int counter, const char *name, int *layer, struct plan_err *e)
{
    *layer = counter;
    if (s->hp->n_expert > 1) {
        if (!parse_layer(name, layer))
            return refuse(e, "Failed to determine layer for tensor %s", name);
        if (*layer < 0 || *layer >= (int)s->hp->n_layer)
            return refuse(e, "Bad layer %d for tensor %s. Must be in [0, %u)", *layer, name, s->hp->n_layer);
    }
    return 0;
}

#define WHY(...) snprintf(why, whylen, __VA_ARGS__)

/* llama_tensor_get_type_impl for the K, legacy and IQ4 mixes, without
 * Falcon (not an accepted architecture). */
static int mix_type(struct state *s, const struct qf_gguf_tensor *t, uint32_t *type, char *why, size_t whylen,
                    struct plan_err *e)
{
    const uint32_t ft = s->ftype, d = *type;
    const enum category c = category_of(t->name);
    const int n_gqa = s->hp->n_head_kv ? (int)(s->hp->n_head / s->hp->n_head_kv) : 0;
    const bool moe8 = s->hp->n_expert == 8;
    const bool iq4 = ft == QF_FT_IQ4_NL || ft == QF_FT_IQ4_XS;
    const bool iq3xs_s = ft == QF_FT_IQ3_XS || ft == QF_FT_IQ3_S;
    const bool iq2m = ft == QF_FT_IQ2_M, low = ft == QF_FT_IQ3_XXS || iq2m; /* the lowest-bit mixes quantfs offers */
    uint32_t nt = d;
    int layer, rc;
    WHY("the mix's default type %s", tn(d));
    if (c == C_OUTPUT || (s->tied && c == C_TOKEN_EMBD)) {
        const char *who = c == C_OUTPUT ? "output.weight" : "tied token_embd (no output.weight)";
        if (t->ne[0] % qf_type_get(d)->blck) {
            nt = QF_Q8_0;
            WHY("%s: row of %llu is not a multiple of %s's block: q8_0", who, (unsigned long long)t->ne[0], tn(d));
        } else if (low) {
            nt = QF_Q5_K;
            WHY("%s: %s mix: q5_K", who, iq2m ? "IQ2_M" : "IQ3_XXS");
        } else if (d != QF_Q8_0) {
            nt = QF_Q6_K;
            WHY("%s: q6_K in every K and legacy mix", who);
        } else {
            WHY("%s: the default type q8_0", who);
        }
    } else if (c == C_TOKEN_EMBD) {
        if (low) {
            nt = QF_IQ3_S;
            WHY("token_embd (untied): %s mix: iq3_s", iq2m ? "IQ2_M" : "IQ3_XXS");
        } else {
            WHY("token_embd (untied): the default type %s", tn(d));
        }
    } else if (iq2m) { /* the IQ1/IQ2 mixes' own rules, every other category at the default */
        WHY("IQ2_M mix: the default type %s", tn(d));
        if (is_attn_v(c)) {
            nt = n_gqa >= 4 || s->hp->n_expert >= 4 ? QF_Q4_K : QF_IQ3_S;
            WHY("attn_v: IQ2_M mix, n_gqa %d, %u experts: %s", n_gqa, s->hp->n_expert, tn(nt));
            s->i_attention_wv++;
        } else if (moe8 && c == C_ATTN_K) {
            nt = QF_Q4_K;
            WHY("attn_k: IQ2_M mix, 8 experts: q4_K");
        } else if (c == C_FFN_DOWN) {
            if (s->i_ffn_down < (int)s->hp->n_layer / 8) {
                nt = QF_IQ3_S;
                WHY("ffn_down #%d of %u: IQ2_M mix, i < n/8: iq3_s", s->i_ffn_down, s->hp->n_layer);
            }
            s->i_ffn_down++;
        } else if (c == C_ATTN_OUTPUT) {
            nt = moe8 ? QF_Q5_K : QF_IQ3_S;
            WHY("attn_output: IQ2_M mix%s: %s", moe8 ? ", 8 experts" : "", tn(nt));
        }
    } else if (is_attn_v(c)) {
        int i = s->i_attention_wv, n = s->n_attention_wv;
        if (ft == QF_FT_Q2_K) {
            nt = n_gqa >= 4 ? QF_Q4_K : QF_Q3_K;
            WHY("attn_v: q2_K mix, n_gqa %d %s 4: %s", n_gqa, n_gqa >= 4 ? ">=" : "<", tn(nt));
        } else if (ft == QF_FT_IQ3_XXS) {
            nt = n_gqa >= 4 ? QF_Q4_K : !s->has_imatrix ? QF_IQ3_S : QF_IQ3_XXS;
            WHY("attn_v: IQ3_XXS mix, n_gqa %d%s: %s", n_gqa, n_gqa >= 4 ? " >= 4" : !s->has_imatrix ? ", no imatrix" : "",
                tn(nt));
        } else if (iq3xs_s && n_gqa >= 4) {
            nt = QF_Q4_K;
            WHY("attn_v: %s mix, n_gqa %d >= 4: q4_K", ft == QF_FT_IQ3_XS ? "IQ3_XS" : "IQ3_S", n_gqa);
        } else if (ft == QF_FT_IQ3_M) {
            nt = QF_Q4_K;
            WHY("attn_v: IQ3_M mix: q4_K");
        } else if (ft == QF_FT_Q3_K_M) {
            nt = i < 2 ? QF_Q5_K : QF_Q4_K;
            WHY("attn_v #%d: q3_K_M mix, %s: %s", i, i < 2 ? "one of the first 2" : "past the first 2", tn(nt));
        } else if (ft == QF_FT_Q3_K_L) {
            nt = QF_Q5_K;
            WHY("attn_v: q3_K_L mix: q5_K");
        } else if (iq4 && n_gqa >= 4) {
            nt = QF_Q5_K;
            WHY("attn_v: %s mix, n_gqa %d >= 4: q5_K", tn(d), n_gqa);
        } else if ((ft == QF_FT_Q4_K_M || ft == QF_FT_Q5_K_M) && more_bits(i, n)) {
            nt = QF_Q6_K;
            WHY("attn_v #%d of %d: use_more_bits: q6_K", i, n);
        } else if (ft == QF_FT_Q4_K_S && i < 4) {
            nt = QF_Q5_K;
            WHY("attn_v #%d: q4_K_S mix, one of the first 4: q5_K", i);
        } else {
            WHY("attn_v #%d of %d: the default type %s", i, n, tn(d));
        }
        if (s->hp->is_70b && (nt == QF_Q3_K || nt == QF_Q4_K)) {
            nt = QF_Q5_K;
            WHY("attn_v #%d: a 70B-class model (80 layers, GQA) lifts q3_K/q4_K to q5_K", i);
        }
        if (moe8) {
            nt = QF_Q8_0;
            WHY("attn_v: an 8-expert model: q8_0");
        }
        s->i_attention_wv++;
    } else if (c == C_ATTN_K) {
        if (moe8) {
            nt = QF_Q8_0;
            WHY("attn_k: an 8-expert model: q8_0");
        } else if (ft == QF_FT_IQ3_XS) {
            nt = QF_IQ3_XXS;
            WHY("attn_k: IQ3_XS mix: iq3_xxs");
        } else if (ft == QF_FT_IQ3_XXS) {
            nt = QF_IQ2_S;
            WHY("attn_k: IQ3_XXS mix: iq2_s");
        }
    } else if (c == C_ATTN_Q) {
        if (ft == QF_FT_IQ3_XS) {
            nt = QF_IQ3_XXS;
            WHY("attn_q: IQ3_XS mix: iq3_xxs");
        } else if (ft == QF_FT_IQ3_XXS) {
            nt = QF_IQ2_S;
            WHY("attn_q: IQ3_XXS mix: iq2_s");
        }
    } else if (c == C_FFN_DOWN) {
        if ((rc = layer_info(s, s->i_ffn_down, t->name, &layer, e)))
            return rc;
        int n = (int)s->hp->n_layer;
        if (ft == QF_FT_Q2_K) {
            nt = QF_Q3_K;
            WHY("ffn_down: q2_K mix: q3_K");
        } else if (ft == QF_FT_IQ3_XXS && !s->has_imatrix) {
            nt = layer < n / 8 ? QF_Q4_K : QF_Q3_K;
            WHY("ffn_down layer %d of %d: IQ3_XXS mix without an imatrix, %s: %s", layer, n,
                layer < n / 8 ? "i < n/8" : "i >= n/8", tn(nt));
        } else if (ft == QF_FT_Q3_K_M) {
            nt = layer < n / 16 ? QF_Q5_K : QF_Q4_K;
            WHY("ffn_down layer %d of %d: q3_K_M mix, %s: %s", layer, n, layer < n / 16 ? "i < n/16" : "i >= n/16",
                tn(nt));
        } else if (ft == QF_FT_IQ3_M && (layer < n / 8 || (moe8 && more_bits(layer, n)))) {
            nt = QF_Q4_K;
            WHY("ffn_down layer %d of %d: IQ3_M mix, %s: q4_K", layer, n, layer < n / 8 ? "i < n/8" : "8 experts, use_more_bits");
        } else if (ft == QF_FT_Q3_K_L) {
            nt = QF_Q5_K;
            WHY("ffn_down: q3_K_L mix: q5_K");
        } else if ((ft == QF_FT_Q4_K_M || ft == QF_FT_Q5_K_M) && more_bits(layer, n)) {
            nt = QF_Q6_K;
            WHY("ffn_down layer %d of %d: use_more_bits: q6_K", layer, n);
        } else if (iq4 && layer < n / 8 && !s->has_imatrix) {
            nt = QF_Q5_K;
            WHY("ffn_down layer %d of %d: %s mix without an imatrix, i < n/8: q5_K", layer, n, tn(d));
        } else if (ft == QF_FT_Q4_K_S && layer < n / 8) {
            nt = QF_Q5_K;
            WHY("ffn_down layer %d of %d: q4_K_S mix, i < n/8: q5_K", layer, n);
        } else if ((ft == QF_FT_Q4_0 || ft == QF_FT_Q5_0) && s->has_imatrix && layer < n / 8) {
            nt = ft == QF_FT_Q4_0 ? QF_Q4_1 : QF_Q5_1;
            WHY("ffn_down layer %d of %d: %s mix with an imatrix, i < n/8: %s", layer, n, tn(d), tn(nt));
        } else {
            WHY("ffn_down layer %d of %d: the default type %s", layer, n, tn(d));
        }
        s->i_ffn_down++;
    } else if (c == C_ATTN_OUTPUT) {
        if (moe8) {
            if (ft == QF_FT_Q2_K || ft == QF_FT_Q3_K_S || ft == QF_FT_Q3_K_M || ft == QF_FT_Q4_K_S ||
                ft == QF_FT_Q4_K_M || iq4 || ft == QF_FT_IQ3_XS || ft == QF_FT_IQ3_XXS || ft == QF_FT_IQ3_S ||
                ft == QF_FT_IQ3_M) {
                nt = QF_Q5_K;
                WHY("attn_output: an 8-expert model: q5_K");
            }
        } else if (ft == QF_FT_IQ3_XXS) {
            nt = QF_IQ3_S;
            WHY("attn_output: IQ3_XXS mix: iq3_s");
        } else if (ft == QF_FT_Q2_K || ft == QF_FT_Q3_K_M || ft == QF_FT_Q3_K_L || ft == QF_FT_IQ3_M) {
            nt = ft == QF_FT_Q2_K ? QF_Q3_K : ft == QF_FT_Q3_K_L ? QF_Q5_K : QF_Q4_K;
            WHY("attn_output: %s mix: %s",
                ft == QF_FT_Q2_K ? "q2_K" : ft == QF_FT_Q3_K_M ? "q3_K_M" : ft == QF_FT_IQ3_M ? "IQ3_M" : "q3_K_L", tn(nt));
        }
    } else if (c == C_FFN_GATE || c == C_FFN_UP) {
        int *ctr = c == C_FFN_GATE ? &s->i_ffn_gate : &s->i_ffn_up;
        if ((rc = layer_info(s, *ctr, t->name, &layer, e)))
            return rc;
        int n = (int)s->hp->n_layer;
        if (ft == QF_FT_IQ3_XS && layer >= n / 8 && layer < 7 * n / 8) {
            nt = QF_IQ3_XXS;
            WHY("%s layer %d of %d: IQ3_XS mix, n/8 <= i < 7n/8: iq3_xxs", c == C_FFN_GATE ? "ffn_gate" : "ffn_up",
                layer, n);
        }
        (*ctr)++;
    }
    *type = nt;
    return 0;
}

/* tensor_type_fallback (src/llama-quant.cpp:372-425), for the types the
 * mixes above can produce. */
static uint32_t fallback(const struct qf_gguf_tensor *t, uint32_t type, char *why, size_t whylen)
{
    uint64_t ncols = t->ne[0];
    uint32_t blck = qf_type_get(type)->blck;
    if (ncols % blck == 0)
        return type;
    uint32_t fb;
    switch (type) {
    case QF_IQ2_S:
    case QF_IQ3_XXS:
    case QF_IQ3_S:
    case QF_IQ4_XS: fb = QF_IQ4_NL; break;
    case QF_Q2_K:
    case QF_Q3_K: fb = QF_Q4_0; break;
    case QF_Q4_K: fb = QF_Q5_0; break;
    case QF_Q5_K: fb = QF_Q5_1; break;
    case QF_Q6_K: fb = QF_Q8_0; break;
    default: fb = type; break; /* a 32-block type: F16 below */
    }
    if (ncols % qf_type_get(fb)->blck)
        fb = QF_F16;
    size_t n = strlen(why);
    snprintf(why + n, whylen - n, "; row of %llu not a multiple of %u: falls back to %s", (unsigned long long)ncols,
             blck, tn(fb));
    return fb;
}

/* --------------------------------------------------------------- header */

static uint8_t *put_str(uint8_t *p, const char *s, size_t n)
{
    qf_put64(p, n);
    memcpy(p + 8, s, n);
    return p + 8 + n;
}

static uint8_t *put_kv_u32(uint8_t *p, const char *key, uint32_t v)
{
    p = put_str(p, key, strlen(key));
    qf_put32(p, QF_GT_U32);
    qf_put32(p + 4, v);
    return p + 8;
}

static bool dropped_key(const char *k)
{
    return !strcmp(k, "general.quantization_version") || !strcmp(k, "general.file_type") || !strcmp(k, "split.no") ||
           !strcmp(k, "split.count") || !strcmp(k, "split.tensors.count");
}

static const char k_ftype[] = "general.file_type", k_qver[] = "general.quantization_version";

static uint8_t *put_kv_str(uint8_t *p, const char *key, const char *v, size_t n)
{
    p = put_str(p, key, strlen(key));
    qf_put32(p, QF_GT_STRING);
    return put_str(p + 4, v, n);
}

/* The quantize.imatrix.* KVs llama-quantize appends (tools/quantize/
 * quantize.cpp:496-545): strings cut to 127 bytes by strncpy, counts as
 * u32. dropped: which of them this run sets (and so moves to the end). */
static const char k_im_file[] = "quantize.imatrix.file", k_im_dataset[] = "quantize.imatrix.dataset",
                  k_im_entries[] = "quantize.imatrix.entries_count", k_im_chunks[] = "quantize.imatrix.chunks_count";

static bool im_sets(const struct qf_imatrix *im, const char *k)
{
    if (!im)
        return false;
    return !strcmp(k, k_im_file) || !strcmp(k, k_im_entries) || (!strcmp(k, k_im_dataset) && im->dataset) ||
           (!strcmp(k, k_im_chunks) && im->chunks > 0);
}

static uint8_t *put_imatrix_kvs(uint8_t *p, const struct qf_imatrix *im, const char *file)
{
    p = put_kv_str(p, k_im_file, file, strnlen(file, 127));
    if (im->dataset)
        p = put_kv_str(p, k_im_dataset, im->dataset, strnlen(im->dataset, 127));
    p = put_kv_u32(p, k_im_entries, (uint32_t)im->n);
    if (im->chunks > 0)
        p = put_kv_u32(p, k_im_chunks, (uint32_t)im->chunks);
    return p;
}

/* The imatrix lookup of llama_model_quantize_impl (src/llama-quant.cpp:
 * 1242-1262) for a tensor it converts: the entry of that name if its size
 * is ne0 x ne2; none without an entry; a refusal for another size, but
 * for the token embeddings, which are then quantized without. */
static int imatrix_for(const struct qf_imatrix *im, const struct qf_gguf_tensor *t,
                       const struct qf_imatrix_entry **out, struct plan_err *e)
{
    *out = NULL;
    const struct qf_imatrix_entry *ie = qf_imatrix_find(im, t->name);
    if (!ie)
        return 0;
    uint64_t want = t->ne[0] * t->ne[2];
    if (ie->n == want)
        *out = ie;
    else if (strcmp(t->name, "token_embd.weight") && strcmp(t->name, "per_layer_token_embd.weight"))
        return refuse(e, "imatrix size %d is different from tensor size %d for %s", (int)ie->n, (int)want, t->name);
    return 0;
}

int qf_layout_gguf(const struct qf_gguf *g, const struct qf_view *v, const struct qf_imatrix *im, const char *im_file,
                   struct qf_layout **out, char *err, size_t errlen)
{
    *out = NULL;
    struct plan_err e = {err, errlen};
    if (err && errlen)
        err[0] = 0;
    if (!((v->formats | v->alias_formats) & (QF_FMT_GGUF | QF_FMT_IMATRIX))) {
        snprintf(err, errlen, "view %s is not a GGUF view", v->name);
        return -EINVAL;
    }
    if (!v->imat)
        im = NULL;
    else if (!im || !im_file)
        return qf_fail(err, errlen, -ENOENT, "view %s: the model has no imatrix", v->name);
    struct hparams hp = {0};
    int rc = load_hparams(g, &hp, &e);
    if (rc)
        return rc;
    const struct qf_gguf_kv *sc = qf_gguf_find_kv(g, "split.count");
    if (sc && sc->type != QF_GT_ARRAY && sc->type != QF_GT_STRING && sc->u > 1) {
        snprintf(err, errlen, "a split model (split.count %llu): quantfs does not merge GGUF shards",
                 (unsigned long long)sc->u);
        return -ENOTSUP;
    }
    if (g->alignment != OUT_ALIGN) {
        snprintf(err, errlen,
                 "general.alignment is %u: llama-quantize would keep that key but align the data to %d bytes, "
                 "a file llama.cpp cannot load",
                 g->alignment, OUT_ALIGN);
        return -ENOTSUP;
    }

    struct qf_layout *l = calloc(1, sizeof *l);
    struct sorted *ord = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *ord);
    if (l)
        l->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *l->tensors);
    /* header we generate: prefix, two KVs, tensor infos (each at most
     * 8 + 63 + 4 + 4 * 8 + 4 + 8 bytes) */
    size_t mem_len = 24 + (8 + sizeof k_qver + 8) + (8 + sizeof k_ftype + 8) + (size_t)g->n_tensors * 119 +
                     (im ? 4 * (8 + 40 + 4 + 8 + 127) : 0);
    uint8_t *mem = l && l->tensors && ord ? malloc(mem_len) : NULL;
    if (!mem) {
        free(ord);
        qf_layout_free(l);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    l->mem = mem;
    l->mem_len = mem_len;
    l->n_tensors = g->n_tensors;

    /* order and the counters' totals */
    struct state s = {.hp = &hp, .ftype = v->ftype, .tied = true, .has_imatrix = im != NULL};
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct qf_gguf_tensor *t = &g->tensors[i];
        ord[i] = (struct sorted){t, (size_t)i, layer_of(t->name)};
        enum category c = category_of(t->name);
        s.n_attention_wv += is_attn_v(c);
        if (c == C_OUTPUT)
            s.tied = false;
    }
    qsort(ord, g->n_tensors, sizeof *ord, cmp_sorted);

    const uint32_t d = v->gguf_type;
    const bool quantized_d = qf_type_get(d)->blck > 1;
    uint64_t data_off = 0;
    for (uint64_t i = 0; i < g->n_tensors && !rc; i++) {
        const struct qf_gguf_tensor *t = ord[i].t;
        struct qf_tensor_plan *p = &l->tensors[i];
        snprintf(p->name, sizeof p->name, "%s", t->name);
        p->src_index = ord[i].index;
        p->src_type = t->type;
        p->n_dims = ggml_n_dims(t);
        memcpy(p->ne, t->ne, sizeof p->ne);
        const char *kept;
        uint32_t type = t->type;
        if (!allows_quantization(t, &kept)) {
            snprintf(p->why, sizeof p->why, "%s", kept);
        } else if (!quantized_d) {
            type = d;
            snprintf(p->why, sizeof p->why, "%s file: every quantizable tensor is %s", tn(d), tn(d));
        } else {
            type = d;
            if (v->pure)
                snprintf(p->why, sizeof p->why, "--pure: the default type %s", tn(d));
            else
                rc = mix_type(&s, t, &type, p->why, sizeof p->why, &e);
            uint32_t fb = rc ? type : fallback(t, type, p->why, sizeof p->why);
            p->fallback = fb != type;
            l->n_fallback += p->fallback;
            type = fb;
        }
        if (!rc && type != t->type && im)
            rc = imatrix_for(im, t, &p->imat, &e);
        /* tensor_requires_imatrix: the lowest-bit types need one, but for
         * the embeddings and the output */
        if (!rc && (type == QF_IQ3_XXS || type == QF_IQ2_S) && !p->imat && strcmp(t->name, "token_embd.weight") &&
            strcmp(t->name, "per_layer_token_embd.weight") && strcmp(t->name, "output.weight"))
            rc = im ? refuse(&e, "Missing importance matrix for tensor %s in a very low-bit quantization", t->name)
                    : refuse(&e, "this quantization requires an imatrix! (tensor %s, type %s)", t->name, tn(type));
        if (p->imat && qf_type_uses_imatrix(type)) {
            size_t n = strlen(p->why);
            snprintf(p->why + n, sizeof p->why - n, "; imatrix-weighted");
        }
        if (!rc && type != t->type && !qf_type_get(t->type)->is_source)
            rc = qf_type_get(t->type)->blck > 1
                     ? refuse(&e, "tensor '%s': requantizing from type %s is disabled", t->name, tn(t->type))
                     : refuse(&e, "tensor '%s': cannot dequantize/convert tensor type %s", t->name, tn(t->type));
        p->type = type;
        p->nbytes = qf_type_bytes(type, t->nelems);
        p->offset = data_off; /* relative (as the tensor info says) until the data extents are laid out */
        data_off += (p->nbytes + OUT_ALIGN - 1) / OUT_ALIGN * OUT_ALIGN;
    }
    free(ord);
    if (rc) {
        qf_layout_free(l);
        return rc;
    }

    struct qf_layout_builder b = {l, 0};
    uint64_t n_kv = 2;
    for (uint64_t i = 0; i < g->n_kv; i++)
        n_kv += !dropped_key(g->kvs[i].key) && !im_sets(im, g->kvs[i].key);
    if (im)
        n_kv += 2 + (im->dataset != NULL) + (im->chunks > 0);
    memcpy(mem, "GGUF", 4);
    qf_put32(mem + 4, 3);
    qf_put64(mem + 8, g->n_tensors);
    qf_put64(mem + 16, n_kv);
    rc |= qf_layout_add(&b, (struct qf_extent){.kind = QF_EXT_MEM, .len = 24, .mem = mem});
    /* the source's KV bytes, referenced in runs, minus the dropped keys */
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if (dropped_key(g->kvs[i].key) || im_sets(im, g->kvs[i].key))
            continue;
        uint64_t j = i;
        while (j + 1 < g->n_kv && !dropped_key(g->kvs[j + 1].key) && !im_sets(im, g->kvs[j + 1].key))
            j++;
        rc |= qf_layout_add(&b, (struct qf_extent){.kind = QF_EXT_SRC,
                                                   .len = g->kvs[j].end - g->kvs[i].begin,
                                                   .src_off = g->kvs[i].begin});
        i = j;
    }
    uint8_t *p = mem + 24, *tail = p;
    p = put_kv_u32(p, k_qver, QNT_VERSION);
    p = put_kv_u32(p, k_ftype, v->ftype);
    if (im)
        p = put_imatrix_kvs(p, im, im_file);
    for (size_t i = 0; i < l->n_tensors; i++) {
        const struct qf_tensor_plan *tp = &l->tensors[i];
        p = put_str(p, tp->name, strlen(tp->name));
        qf_put32(p, tp->n_dims);
        p += 4;
        for (uint32_t k = 0; k < tp->n_dims; k++, p += 8)
            qf_put64(p, tp->ne[k]);
        qf_put32(p, tp->type);
        qf_put64(p + 4, tp->offset);
        p += 12;
    }
    rc |= qf_layout_add(&b, (struct qf_extent){.kind = QF_EXT_MEM, .len = (uint64_t)(p - tail), .mem = tail});
    rc |= qf_layout_pad(&b, OUT_ALIGN);
    for (size_t i = 0; i < l->n_tensors && !rc; i++) {
        struct qf_tensor_plan *tp = &l->tensors[i];
        const struct qf_gguf_tensor *t = &g->tensors[tp->src_index];
        tp->offset = l->size;
        /* every tensor is converted, copies too: llama-quantize validates
         * every row it reads */
        struct qf_extent x = {.kind = QF_EXT_CONV,
                              .len = tp->nbytes,
                              .src_off = t->offset,
                              .src_type = t->type,
                              .dst_type = tp->type,
                              .n_elems = t->nelems,
                              .chunk_elems = QF_CHUNK_ELEMS,
                              .validate = true};
        if (tp->imat && qf_type_uses_imatrix(tp->type)) { /* rows with their expert's slice */
            x.imat = tp->imat->w;
            x.imat_hash = tp->imat->hash;
            x.imat_rows = t->ne[1];
            x.row_len = t->ne[0];
            x.chunk_elems = t->ne[0] <= QF_CHUNK_ELEMS ? QF_CHUNK_ELEMS / t->ne[0] * t->ne[0] : t->ne[0];
        }
        rc |= qf_layout_add(&b, x);
        rc |= qf_layout_pad(&b, OUT_ALIGN);
    }
    if (rc) {
        qf_layout_free(l);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    *out = l;
    return 0;
}

const struct qf_tensor_plan *qf_layout_tensor(const struct qf_layout *l, const char *name)
{
    for (size_t i = 0; i < l->n_tensors; i++)
        if (!strcmp(l->tensors[i].name, name))
            return &l->tensors[i];
    return NULL;
}
