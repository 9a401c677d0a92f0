/* forward.c — a plain f32 llama forward pass (RMSNorm, RoPE, grouped-query
 * attention, SwiGLU; tied or untied output), the SentencePiece tokenizer,
 * and the view-vs-reference metrics.
 *
 * Written for clarity over speed: matrices are f32 (dequantized at load),
 * all positions of a call go through each matrix together so the weights
 * stream once per call. The arithmetic follows llama.cpp's llama graph:
 * RMSNorm x / sqrt(mean(x^2) + eps) * w; RoPE on (2i, 2i+1) pairs for GGUF
 * (llama.cpp's "normal" mode) and on (i, i + d/2) for HF checkpoints, whose
 * q/k rows are permuted for rotate-half; softmax(q k^T / sqrt(d)) v with
 * each KV head shared by n_head / n_head_kv query heads; silu(gate) * up.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "codec.h"

const char *ck_tensor_name(const struct ck_model *m, int layer, int role, char *buf, size_t len);

struct ck_state {
    int n_ctx, kv_dim;
    float *k, *v; /* [n_layer][n_ctx][kv_dim] */
};

int ck_state_new(const struct ck_model *m, int n_ctx, struct ck_state **out)
{
    struct ck_state *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->n_ctx = n_ctx;
    s->kv_dim = m->n_head_kv * (m->n_embd / m->n_head);
    size_t n = (size_t)m->n_layer * (size_t)n_ctx * (size_t)s->kv_dim;
    s->k = calloc(n, sizeof *s->k);
    s->v = calloc(n, sizeof *s->v);
    if (!s->k || !s->v) {
        ck_state_free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

void ck_state_free(struct ck_state *s)
{
    if (!s)
        return;
    free(s->k);
    free(s->v);
    free(s);
}

static const float *W(const struct ck_model *m, int layer, int role)
{
    char name[256];
    const struct ck_tensor *t = ck_find(m, ck_tensor_name(m, layer, role, name, sizeof name));
    return t ? t->data : NULL;
}

/* y[t][o] = sum_i x[t][i] * w[o][i] for n positions. Eight partial sums
 * per dot product let the compiler vectorize without reassociating a
 * single chain (the build keeps -ffp-contract=off). */
static void matmul(float *y, const float *x, const float *w, int n, int in, int out)
{
    for (int o = 0; o < out; o++) {
        const float *wr = w + (size_t)o * in;
        for (int t = 0; t < n; t++) {
            const float *xr = x + (size_t)t * in;
            float acc[8] = {0};
            int i = 0;
            for (; i + 8 <= in; i += 8)
                for (int k = 0; k < 8; k++)
                    acc[k] += xr[i + k] * wr[i + k];
            float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
            for (; i < in; i++)
                sum += xr[i] * wr[i];
            y[(size_t)t * out + o] = sum;
        }
    }
}

static void rmsnorm(float *y, const float *x, const float *w, int d, float eps)
{
    double ss = 0;
    for (int i = 0; i < d; i++)
        ss += (double)x[i] * x[i];
    float r = 1.0f / sqrtf((float)(ss / d) + eps);
    for (int i = 0; i < d; i++)
        y[i] = x[i] * r * w[i];
}

static void rope(float *v, int n_heads, int hd, int pos, float base, bool neox)
{
    for (int h = 0; h < n_heads; h++) {
        float *x = v + h * hd;
        for (int i = 0; i < hd / 2; i++) {
            float theta = (float)pos * powf(base, -2.0f * (float)i / (float)hd);
            float c = cosf(theta), s = sinf(theta);
            int a = neox ? i : 2 * i, b = neox ? i + hd / 2 : 2 * i + 1;
            float x0 = x[a], x1 = x[b];
            x[a] = x0 * c - x1 * s;
            x[b] = x0 * s + x1 * c;
        }
    }
}

int ck_forward(const struct ck_model *m, struct ck_state *s, const int *tokens, int n, int pos0, float *logits,
               void (*progress)(void *arg, int layer), void *arg)
{
    if (!m->llama || pos0 < 0 || n <= 0 || pos0 + n > s->n_ctx)
        return -EINVAL;
    const int d = m->n_embd, hd = d / m->n_head, kvd = s->kv_dim, ff = m->n_ff, grp = m->n_head / m->n_head_kv;
    const int ctx = pos0 + n;
    size_t big = (size_t)n * (size_t)(ff > d ? ff : d);
    float *x = malloc((size_t)n * d * 4), *xn = malloc((size_t)n * d * 4), *q = malloc((size_t)n * d * 4);
    float *att = malloc((size_t)n * d * 4), *g = malloc(big * 4), *u = malloc(big * 4),
          *sc = malloc((size_t)ctx * 4);
    int rc = 0;
    if (!x || !xn || !q || !att || !g || !u || !sc) {
        rc = -ENOMEM;
        goto out;
    }
    const float *emb = W(m, 0, 0);
    for (int t = 0; t < n; t++) {
        if (tokens[t] < 0 || tokens[t] >= m->n_vocab) {
            rc = -EINVAL;
            goto out;
        }
        memcpy(x + (size_t)t * d, emb + (size_t)tokens[t] * d, (size_t)d * 4);
    }
    for (int l = 0; l < m->n_layer; l++) {
        float *kc = s->k + (size_t)l * s->n_ctx * kvd, *vc = s->v + (size_t)l * s->n_ctx * kvd;
        for (int t = 0; t < n; t++)
            rmsnorm(xn + (size_t)t * d, x + (size_t)t * d, W(m, l, 1), d, m->eps);
        matmul(q, xn, W(m, l, 2), n, d, d);
        matmul(kc + (size_t)pos0 * kvd, xn, W(m, l, 3), n, d, kvd);
        matmul(vc + (size_t)pos0 * kvd, xn, W(m, l, 4), n, d, kvd);
        for (int t = 0; t < n; t++) {
            rope(q + (size_t)t * d, m->n_head, hd, pos0 + t, m->rope_base, m->neox_rope);
            rope(kc + (size_t)(pos0 + t) * kvd, m->n_head_kv, hd, pos0 + t, m->rope_base, m->neox_rope);
        }
        const float scale = 1.0f / sqrtf((float)hd);
        for (int t = 0; t < n; t++) {
            int upto = pos0 + t + 1; /* causal */
            for (int h = 0; h < m->n_head; h++) {
                const float *qh = q + (size_t)t * d + h * hd;
                int kh = h / grp;
                float mx = -INFINITY;
                for (int j = 0; j < upto; j++) {
                    const float *kj = kc + (size_t)j * kvd + kh * hd;
                    float dot = 0;
                    for (int i = 0; i < hd; i++)
                        dot += qh[i] * kj[i];
                    sc[j] = dot * scale;
                    if (sc[j] > mx)
                        mx = sc[j];
                }
                float sum = 0;
                for (int j = 0; j < upto; j++)
                    sum += (sc[j] = expf(sc[j] - mx));
                float *o = att + (size_t)t * d + h * hd;
                memset(o, 0, (size_t)hd * 4);
                for (int j = 0; j < upto; j++) {
                    const float *vj = vc + (size_t)j * kvd + kh * hd;
                    float p = sc[j] / sum;
                    for (int i = 0; i < hd; i++)
                        o[i] += p * vj[i];
                }
            }
        }
        matmul(xn, att, W(m, l, 5), n, d, d);
        for (size_t i = 0; i < (size_t)n * d; i++)
            x[i] += xn[i];
        for (int t = 0; t < n; t++)
            rmsnorm(xn + (size_t)t * d, x + (size_t)t * d, W(m, l, 6), d, m->eps);
        matmul(g, xn, W(m, l, 7), n, d, ff);
        matmul(u, xn, W(m, l, 8), n, d, ff);
        for (size_t i = 0; i < (size_t)n * ff; i++)
            g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
        matmul(xn, g, W(m, l, 9), n, ff, d);
        for (size_t i = 0; i < (size_t)n * d; i++)
            x[i] += xn[i];
        if (progress)
            progress(arg, l + 1);
    }
    for (int t = 0; t < n; t++)
        rmsnorm(xn + (size_t)t * d, x + (size_t)t * d, W(m, 0, 10), d, m->eps);
    const float *out = W(m, 0, 11);
    matmul(logits, xn, out ? out : emb, n, d, m->n_vocab); /* no output tensor: tied to the embedding */
    for (size_t i = 0; i < (size_t)n * m->n_vocab; i++)
        if (!isfinite(logits[i])) {
            rc = -ERANGE;
            break;
        }
out:
    free(x), free(xn), free(q), free(att), free(g), free(u), free(sc);
    return rc;
}

/* ------------------------------------------------------------ tokenizer */

static int vocab_find(const struct ck_model *m, const char *s, size_t len)
{
    for (int i = 0; i < m->n_tok; i++)
        if (m->vocab[i] && strlen(m->vocab[i]) == len && !memcmp(m->vocab[i], s, len))
            return i;
    return -1;
}

int ck_tokenize(const struct ck_model *m, const char *text, int *out, int max)
{
    if (!m->vocab || !m->scores || !m->n_tok)
        return -1;
    /* SentencePiece: spaces become U+2581, and a leading one is added */
    size_t tl = strlen(text);
    char *s = malloc(3 * (tl + 1) + 1);
    if (!s)
        return -1;
    size_t n = 0;
    const char *sp = "\xe2\x96\x81";
    memcpy(s, sp, 3), n = 3;
    for (size_t i = 0; i < tl; i++) {
        if (text[i] == ' ')
            memcpy(s + n, sp, 3), n += 3;
        else
            s[n++] = text[i];
    }
    /* symbols: UTF-8 characters, merged greedily by the best score */
    size_t *st = malloc((n + 1) * sizeof *st), *ln = malloc((n + 1) * sizeof *ln);
    size_t ns = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t cl = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (i + cl > n)
            cl = n - i;
        st[ns] = i;
        ln[ns++] = cl;
        i += cl;
    }
    for (;;) {
        float best = -INFINITY;
        size_t bi = 0;
        int bid = -1;
        for (size_t i = 0; i + 1 < ns; i++) {
            int id = vocab_find(m, s + st[i], ln[i] + ln[i + 1]);
            if (id >= 0 && m->scores[id] > best) {
                best = m->scores[id];
                bi = i;
                bid = id;
            }
        }
        if (bid < 0)
            break;
        ln[bi] += ln[bi + 1];
        memmove(st + bi + 1, st + bi + 2, (ns - bi - 2) * sizeof *st);
        memmove(ln + bi + 1, ln + bi + 2, (ns - bi - 2) * sizeof *ln);
        ns--;
    }
    int k = 0;
    for (size_t i = 0; i < ns; i++) {
        int id = vocab_find(m, s + st[i], ln[i]);
        if (id >= 0) {
            if (k < max)
                out[k] = id;
            k++;
            continue;
        }
        for (size_t b = 0; b < ln[i]; b++) { /* byte fallback <0xXX> */
            char hex[8];
            snprintf(hex, sizeof hex, "<0x%02X>", (unsigned char)s[st[i] + b]);
            id = vocab_find(m, hex, 6);
            if (k < max)
                out[k] = id < 0 ? 0 : id;
            k++;
        }
    }
    free(s), free(st), free(ln);
    return k;
}

void ck_detok(const struct ck_model *m, int id, char *buf, size_t len)
{
    size_t at = strlen(buf);
    if (id < 0 || id >= m->n_tok || !m->vocab || !m->vocab[id]) {
        snprintf(buf + at, len - at, "[%d]", id);
        return;
    }
    const char *p = m->vocab[id];
    unsigned byte;
    if (strlen(p) == 6 && sscanf(p, "<0x%2X>", &byte) == 1) {
        if (at + 1 < len && byte >= 0x20 && byte != 0x7f)
            buf[at++] = (char)byte, buf[at] = 0;
        else if (at + 1 < len && byte == '\n')
            buf[at++] = ' ', buf[at] = 0;
        return;
    }
    if (id == m->bos || id == m->eos)
        return;
    for (; *p && at + 1 < len; p++) {
        if (!strncmp(p, "\xe2\x96\x81", 3)) {
            buf[at++] = ' ';
            p += 2;
        } else {
            buf[at++] = *p;
        }
    }
    buf[at] = 0;
}

/* --------------------------------------------------------------- checks */

/* Documented in quantfs-check(1): f16/bf16 must be near exact, 8-bit near
 * lossless, lower precisions progressively looser. The numbers are set for
 * the evaluation this tool runs (the FP32 model's own greedy continuation),
 * where the reference is confident, so agreement is high for good views. */
struct ck_threshold ck_threshold_for(const char *v)
{
    static const struct {
        const char *name;
        struct ck_threshold t;
    } tab[] = {
        {"f32", {0.999, 1e-6, 90}},  {"fp16", {0.98, 0.002, 40}}, {"bf16", {0.95, 0.01, 30}},
        {"q8_0", {0.95, 0.01, 30}},  {"int8", {0.95, 0.01, 30}},  {"fp8", {0.90, 0.03, 20}},
        {"q6_k", {0.90, 0.03, 25}},  {"q5_k", {0.85, 0.06, 20}},  {"q5_1", {0.85, 0.06, 20}},
        {"q5_0", {0.85, 0.06, 20}},  {"q4_k", {0.75, 0.15, 15}},  {"q4_1", {0.75, 0.15, 15}},
        {"q4_0", {0.75, 0.15, 15}},  {"int4", {0.75, 0.15, 15}},  {"iq4_nl", {0.75, 0.15, 15}}, {"iq4_xs", {0.75, 0.15, 15}},
        {"q3_k", {0.55, 0.5, 8}},    {"q2_k", {0.35, 1.5, 3}},
    };
    /* a mix or a -pure view is judged as its default type: q4_k_m,
     * q4_k_s and q4_k-pure as q4_k */
    char base[16];
    snprintf(base, sizeof base, "%.*s", (int)strcspn(v, "-"), v);
    size_t n = strlen(base);
    if (n == 6 && base[0] == 'q' && base[3] == 'k' && base[4] == '_')
        base[4] = 0;
    for (size_t i = 0; i < sizeof tab / sizeof *tab; i++)
        if (!strcmp(tab[i].name, base))
            return tab[i].t;
    return (struct ck_threshold){0.75, 0.15, 15}; /* unknown: treat as 4-bit */
}

static void softmax_log(const float *z, int n, double *lp)
{
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < n; i++)
        if (z[i] > mx)
            mx = z[i];
    for (int i = 0; i < n; i++)
        s += exp((double)z[i] - mx);
    double ls = log(s) + mx;
    for (int i = 0; i < n; i++)
        lp[i] = (double)z[i] - ls;
}

static int argmax(const float *z, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (z[i] > z[b])
            b = i;
    return b;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Greedy continuation of tokens[0..n) up to total tokens. */
static int generate(const struct ck_model *m, int *tokens, int n, int total, float *last_logits)
{
    struct ck_state *s;
    int rc = ck_state_new(m, total, &s);
    if (rc)
        return rc;
    float *lg = malloc((size_t)n * m->n_vocab * 4);
    if (!lg) {
        ck_state_free(s);
        return -ENOMEM;
    }
    rc = ck_forward(m, s, tokens, n, 0, lg, NULL, NULL);
    int next = rc ? 0 : argmax(lg + (size_t)(n - 1) * m->n_vocab, m->n_vocab);
    for (int p = n; !rc && p < total; p++) {
        tokens[p] = next;
        rc = ck_forward(m, s, tokens + p, 1, p, lg, NULL, NULL);
        next = argmax(lg, m->n_vocab);
    }
    if (last_logits && !rc)
        memcpy(last_logits, lg, (size_t)m->n_vocab * 4);
    free(lg);
    ck_state_free(s);
    return rc;
}

static int start_tokens(const struct ck_model *m, const struct ck_opts *o, int *tok, int max, char *err,
                        size_t errlen)
{
    tok[0] = m->bos >= 0 && m->bos < m->n_vocab ? m->bos : 0;
    if (!o->prompt)
        return 1;
    int n = ck_tokenize(m, o->prompt, tok + 1, max - 1);
    if (n < 0) {
        snprintf(err, errlen, "--prompt needs a SentencePiece vocabulary with scores (GGUF tokenizer.ggml.*)");
        return -1;
    }
    if (n + 1 > max) {
        snprintf(err, errlen, "--prompt is too long");
        return -1;
    }
    return n + 1;
}

int ck_ref_build(const char *path, const struct ck_opts *o, struct ck_ref *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    int rc = ck_load(path, &r->m, err, errlen);
    if (rc)
        return rc;
    if (!r->m.llama)
        return 0;
    int cap = 1024 + o->n_tokens;
    r->tokens = calloc((size_t)cap, sizeof *r->tokens);
    if (!r->tokens)
        return -ENOMEM;
    int np = start_tokens(&r->m, o, r->tokens, 1024, err, errlen);
    if (np < 0)
        return -EINVAL;
    r->n_prompt = np;
    r->n_tokens = np + o->n_tokens;
    if ((rc = generate(&r->m, r->tokens, np, r->n_tokens, NULL))) {
        snprintf(err, errlen, "the FP32 reference does not run (%s)", strerror(-rc));
        return rc;
    }
    struct ck_state *s;
    if ((rc = ck_state_new(&r->m, r->n_tokens, &s)))
        return rc;
    r->logits = malloc((size_t)r->n_tokens * r->m.n_vocab * 4);
    rc = r->logits ? ck_forward(&r->m, s, r->tokens, r->n_tokens, 0, r->logits, NULL, NULL) : -ENOMEM;
    ck_state_free(s);
    return rc;
}

void ck_ref_free(struct ck_ref *r)
{
    ck_free(&r->m);
    free(r->tokens);
    free(r->logits);
    memset(r, 0, sizeof *r);
}

/* SQNR of view tensor b against reference tensor a. perm_heads: b is a in
 * llama.cpp's adjacent-pairs q/k row order (the converter's permutation of
 * rotate-half rows, in this many heads), 0: the same row order. */
/* a against b's elements from b_off on (an expert's slice of a stacked
 * tensor), a's values + shift (Gemma's norms as the converter writes them) */
static bool compare_slice(const struct ck_tensor *a, const struct ck_tensor *b, bool slice, uint64_t b_off,
                          float shift, uint64_t perm_heads, struct ck_result *res)
{
    uint64_t na = a->rows * a->cols;
    if (!b || (slice ? b->rows * b->cols < b_off + na : b->rows * b->cols != na) ||
        (perm_heads && (b->rows != a->rows || a->rows % (2 * perm_heads)))) {
        res->loads = false;
        snprintf(res->why, sizeof res->why, "tensor %s %s", a->name, b ? "has another shape" : "is missing");
        return false;
    }
    double sig = 0, noise = 0;
    uint64_t hd = perm_heads ? a->rows / perm_heads : 0;
    for (uint64_t k = 0; k < a->rows * a->cols; k++) {
        uint64_t kb = k;
        if (perm_heads) { /* view row h*hd + 2i + t holds reference row h*hd + t*hd/2 + i */
            uint64_t r = k / a->cols, h = r / hd, w = r % hd, c = k % a->cols;
            /* so reference row h*hd + w is view row h*hd + 2*(w % (hd/2)) + w / (hd/2) */
            kb = (h * hd + 2 * (w % (hd / 2)) + w / (hd / 2)) * a->cols + c;
        }
        kb += b_off;
        if (!isfinite(a->data[k])) /* the source's own inf/NaN: nothing to compare */
            continue;
        if (!isfinite(b->data[kb])) {
            res->loads = false;
            snprintf(res->why, sizeof res->why, "tensor %s has non-finite values where FP32 is finite", a->name);
            return false;
        }
        double x = (double)a->data[k] + shift, e = (double)b->data[kb] - x;
        sig += x * x;
        noise += e * e;
    }
    double db = noise == 0 ? 200.0 : sig == 0 ? -200.0 : 10 * log10(sig / noise);
    if (db < res->sqnr_min) {
        res->sqnr_min = db;
        snprintf(res->sqnr_worst, sizeof res->sqnr_worst, "%s (%s)", b->name, b->kind);
    }
    return true;
}

static bool compare_tensor(const struct ck_tensor *a, const struct ck_tensor *b, uint64_t perm_heads,
                           struct ck_result *res)
{
    return compare_slice(a, b, false, 0, 0, perm_heads, res);
}

static void check_tensors(const struct ck_ref *ref, const struct ck_model *m, struct ck_result *res)
{
    res->sqnr_min = INFINITY;
    if (ref->m.llama && m->llama && ref->m.gguf != m->gguf) {
        /* a GGUF view of a Hugging Face checkpoint (or the reverse): the
         * same tensors by role, q/k rows in the other rope layout */
        char na[128], nb[128];
        for (int role = 0; role < 12; role++) {
            int layers = role >= 1 && role <= 9 ? ref->m.n_layer : 1;
            for (int l = 0; l < layers; l++) {
                const struct ck_tensor *a = ck_find(&ref->m, ck_tensor_name(&ref->m, l, role, na, sizeof na));
                if (!a) /* e.g. a tied output */
                    continue;
                const struct ck_tensor *b = ck_find(m, ck_tensor_name(m, l, role, nb, sizeof nb));
                uint64_t heads = role == 2 ? (uint64_t)ref->m.n_head : role == 3 ? (uint64_t)ref->m.n_head_kv : 0;
                if (ref->m.neox_rope == m->neox_rope)
                    heads = 0;
                if (!compare_tensor(a, b, heads, res))
                    return;
            }
        }
        return;
    }
    if (!ref->m.gguf && m->gguf) {
        /* a GGUF view of a Hugging Face model the forward pass does not
         * cover (Qwen, Gemma, Phi-3, MoE, head_dim != hidden/heads): tensor
         * by tensor under the converter's names, llama q/k rows in
         * llama.cpp's order, each expert against its slice of the stacked
         * tensor, Gemma's norms + 1 */
        bool permuted = !strcmp(m->arch, "llama") && ref->m.neox_rope;
        for (size_t i = 0; i < ref->m.nt; i++) {
            const struct ck_tensor *a = &ref->m.t[i];
            char gn[128];
            uint32_t expert;
            float shift;
            int mr = qf_hf_locate(ref->m.arch, a->name, gn, sizeof gn, &expert, &shift);
            if (mr == 1)
                continue;
            if (mr < 0) {
                res->loads = false;
                snprintf(res->why, sizeof res->why, "tensor %s has no GGUF name", a->name);
                return;
            }
            uint64_t heads = 0;
            if (permuted && strstr(gn, ".attn_q.weight"))
                heads = (uint64_t)ref->m.n_head;
            else if (permuted && strstr(gn, ".attn_k.weight"))
                heads = (uint64_t)ref->m.n_head_kv;
            uint64_t off = expert == UINT32_MAX ? 0 : (uint64_t)expert * a->rows * a->cols;
            if (!compare_slice(a, ck_find(m, gn), expert != UINT32_MAX, off, shift, heads, res))
                return;
        }
        return;
    }
    for (size_t i = 0; i < ref->m.nt; i++)
        if (!compare_tensor(&ref->m.t[i], ck_find(m, ref->m.t[i].name), 0, res))
            return;
}

void ck_check_view(const struct ck_ref *ref, const struct ck_opts *o, const char *view, const char *path,
                   struct ck_result *res, void (*progress)(void *arg, int layer), void *arg)
{
    memset(res, 0, sizeof *res);
    snprintf(res->view, sizeof res->view, "%s", view);
    snprintf(res->path, sizeof res->path, "%s", path);
    struct ck_model m;
    int rc = ck_load(path, &m, res->why, sizeof res->why);
    if (rc)
        return; /* loads = false, the reason in why */
    res->loads = true;
    res->bytes = m.file_bytes;
    res->bits_per_weight = m.n_weights ? 8.0 * (double)m.weight_bytes / (double)m.n_weights : 0;
    res->llama = ref->m.llama && m.llama;
    struct ck_threshold th = ck_threshold_for(view);
    if (o->top1_override >= 0)
        th.top1 = o->top1_override;
    if (o->kl_override >= 0)
        th.kl = o->kl_override;
    if (o->sqnr_override >= 0)
        th.sqnr = o->sqnr_override;
    check_tensors(ref, &m, res);
    if (!res->loads)
        goto out;
    if (!res->llama) {
        res->runs = true; /* nothing to run: every tensor dequantized to finite values */
        res->pass = res->sqnr_min >= th.sqnr;
        if (!res->pass)
            snprintf(res->why, sizeof res->why, "worst tensor SQNR %.1f dB < %.1f", res->sqnr_min, th.sqnr);
        goto out;
    }
    if (m.n_vocab != ref->m.n_vocab || m.n_embd != ref->m.n_embd || m.n_layer != ref->m.n_layer) {
        res->loads = false;
        snprintf(res->why, sizeof res->why, "hyper-parameters differ from the FP32 model");
        goto out;
    }
    const int nv = m.n_vocab, T = ref->n_tokens;
    struct ck_state *s = NULL;
    float *lg = malloc((size_t)T * nv * 4);
    double *lp = malloc((size_t)nv * sizeof *lp), *lq = malloc((size_t)nv * sizeof *lq);
    double *kls = malloc((size_t)T * sizeof *kls);
    if (!lg || !lp || !lq || !kls || ck_state_new(&m, T, &s)) {
        snprintf(res->why, sizeof res->why, "out of memory");
        goto free_run;
    }
    rc = ck_forward(&m, s, ref->tokens, T, 0, lg, progress, arg);
    if (rc) {
        snprintf(res->why, sizeof res->why, rc == -ERANGE ? "logits are not finite" : "forward pass failed");
        goto free_run;
    }
    res->runs = true;
    int agree = 0, np = 0, decisive = 0, dagree = 0;
    double nll = 0, nll_ref = 0;
    for (int p = ref->n_prompt - 1; p < T - 1; p++, np++) {
        const float *zr = ref->logits + (size_t)p * nv, *zv = lg + (size_t)p * nv;
        int same = argmax(zr, nv) == argmax(zv, nv);
        agree += same;
        softmax_log(zr, nv, lp);
        /* positions where FP32 clearly prefers its top token: top-1 is
         * only meaningful there (a near-flat distribution flips on noise) */
        double p1 = -1, p2 = -1;
        for (int i = 0; i < nv; i++) {
            double pi = exp(lp[i]);
            if (pi > p1)
                p2 = p1, p1 = pi;
            else if (pi > p2)
                p2 = pi;
        }
        if (p1 - p2 >= 0.05) {
            decisive++;
            dagree += same;
        }
        softmax_log(zv, nv, lq);
        double kl = 0;
        for (int i = 0; i < nv; i++)
            kl += exp(lp[i]) * (lp[i] - lq[i]);
        kls[np] = kl > 0 ? kl : 0;
        nll -= lq[ref->tokens[p + 1]];
        nll_ref -= lp[ref->tokens[p + 1]];
    }
    res->positions = np;
    res->top1 = np ? (double)agree / np : 1;
    double sum = 0;
    for (int i = 0; i < np; i++)
        sum += kls[i];
    res->kl_mean = np ? sum / np : 0;
    qsort(kls, (size_t)np, sizeof *kls, cmp_dbl);
    res->kl_p99 = np ? kls[(int)ceil(0.99 * np) - 1] : 0;
    res->ppl = np ? exp(nll / np) : 1;
    res->ppl_ref = np ? exp(nll_ref / np) : 1;
    /* a short greedy sample from the same start */
    int ns = ref->n_prompt + o->n_sample;
    int *st = calloc((size_t)ns, sizeof *st);
    if (st) {
        memcpy(st, ref->tokens, (size_t)ref->n_prompt * sizeof *st);
        if (!generate(&m, st, ref->n_prompt, ns, NULL))
            for (int i = 0; i < ns; i++)
                ck_detok(&m, st[i], res->sample, sizeof res->sample);
        free(st);
    }
    /* top-1 is judged on decisive positions, when there are enough */
    double t1 = decisive >= 8 ? (double)dagree / decisive : 1.0;
    res->top1_decisive = decisive >= 8 ? t1 : -1;
    res->pass = t1 >= th.top1 && res->kl_mean <= th.kl;
    if (!res->pass)
        snprintf(res->why, sizeof res->why,
                 t1 < th.top1 ? "top-1 agreement %.3f < %.3f on decisive positions" : "mean KL %.4f > %.4f",
                 t1 < th.top1 ? t1 : res->kl_mean, t1 < th.top1 ? th.top1 : th.kl);
free_run:
    ck_state_free(s);
    free(lg), free(lp), free(lq), free(kls);
out:
    ck_free(&m);
}
