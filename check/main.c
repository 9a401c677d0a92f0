/* main.c — quantfs-check PATH...: does every view still load and run?
 *
 * PATH is a model directory in a quantfs mount (all its views are checked
 * against its f32 view), one view directory of a mount, or any GGUF /
 * safetensors model with --ref naming the FP32 original. Exit status: 0 all
 * checked views pass, 1 a view fails, 2 usage or I/O error. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "codec.h"
#include "config.h"

struct job {
    const char *view;
    char path[PATH_MAX + 300];
    struct ck_result res;
};

struct run {
    const struct ck_ref *ref;
    const struct ck_opts *o;
    struct job *jobs;
    size_t n, next, done;
    pthread_mutex_t mu;
    bool tty, quiet;
    int n_layer;
};

struct prog {
    struct run *r;
    size_t j;
};

static void show(struct run *r, const char *view, int layer)
{
    if (!r->tty || r->quiet)
        return;
    fprintf(stderr, "\r\033[K[%zu/%zu] %s: layer %d/%d", r->done, r->n, view, layer, r->n_layer);
    fflush(stderr);
}

/* On a terminal, each view's verdict as it finishes (the table follows at
 * the end): a long check says what it has found so far. */
static void finished(struct run *r, const struct ck_result *res)
{
    if (!r->tty || r->quiet)
        return;
    fprintf(stderr, "\r\033[K[%zu/%zu] %-12s %s", r->done, r->n, res->view, res->pass ? "PASS" : "FAIL");
    if (res->loads && res->llama && res->runs)
        fprintf(stderr, "  %.2f bits/w  top-1 %.3f  KL %.2e", res->bits_per_weight, res->top1, res->kl_mean);
    else if (res->loads && res->sqnr_worst[0])
        fprintf(stderr, "  %.2f bits/w  min SQNR %.1f dB", res->bits_per_weight, res->sqnr_min > 199 ? 200 : res->sqnr_min);
    if (!res->pass && res->why[0])
        fprintf(stderr, ": %s", res->why);
    fputc('\n', stderr);
    fflush(stderr);
}

static void on_layer(void *arg, int layer)
{
    struct prog *p = arg;
    pthread_mutex_lock(&p->r->mu);
    show(p->r, p->r->jobs[p->j].view, layer);
    pthread_mutex_unlock(&p->r->mu);
}

static void *worker(void *arg)
{
    struct run *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        size_t j = r->next++;
        pthread_mutex_unlock(&r->mu);
        if (j >= r->n)
            return NULL;
        struct prog p = {r, j};
        ck_check_view(r->ref, r->o, r->jobs[j].view, r->jobs[j].path, &r->jobs[j].res, on_layer, &p);
        pthread_mutex_lock(&r->mu);
        r->done++;
        finished(r, &r->jobs[j].res);
        pthread_mutex_unlock(&r->mu);
    }
}

static bool is_dir(const char *p)
{
    struct stat st;
    return !stat(p, &st) && S_ISDIR(st.st_mode);
}

static int cmp_view(const void *a, const void *b)
{
    const struct job *x = a, *y = b;
    int i = qf_view_index(x->view), k = qf_view_index(y->view);
    if (i < 0 || k < 0)
        return strcmp(x->view, y->view);
    return i - k;
}

static bool wanted(const char *views, const char *v)
{
    if (!views)
        return true;
    size_t n = strlen(v);
    for (const char *p = views; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && !strncmp(p, v, n))
            return true;
        p += l + (e ? 1 : 0);
    }
    return false;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: quantfs-check [options] PATH...\n"
               "  PATH: a model directory in a quantfs mount (checks every view against f32),\n"
               "        one view directory of a mount, or a GGUF/safetensors model (with --ref)\n"
               "  --ref=PATH            the FP32 reference for PATHs outside a mount\n"
               "  --views=V1,V2         check only these views\n"
               "  --tokens=N            evaluation length: tokens the FP32 model generates (default 64)\n"
               "  --prompt=TEXT         start of the evaluation sequence (default: BOS)\n"
               "  --sample=N            tokens of the greedy sample per view (default 24)\n"
               "  --threshold-top1=X    minimum top-1 agreement for every view\n"
               "  --threshold-kl=X      maximum mean KL divergence for every view\n"
               "  --threshold-sqnr=DB   minimum worst-tensor SQNR (non-llama models)\n"
               "  --threads=N           views checked in parallel (default: CPUs)\n"
               "  --json                one JSON object per view, one per line\n"
               "  --chart=FILE.svg      draw the views: bits per weight against KL divergence to f32 and\n"
               "                        top-1 agreement (one PATH)\n"
               "  --tree                for each source directory PATH: the models, views and files (with\n"
               "                        sizes) a mount of it would show, and why a view is absent\n"
               "  --plan=VIEW           for each GGUF source PATH: the type every tensor gets in VIEW\n"
               "                        and why (llama-quantize's rules), without converting anything\n"
               "  -q, --quiet           no progress, no table: exit status only (and --json)\n"
               "  -h, --help, -V, --version\n"
               "exit status: 0 every view passes, 1 a view fails, 2 usage or I/O error\n");
}

static int mpread(void *ctx, void *buf, size_t len, uint64_t off)
{
    int fd = *(int *)ctx;
    ssize_t n = pread(fd, buf, len, (off_t)off);
    return n == (ssize_t)len ? 0 : -EIO;
}

/* The imatrix a mount would use for the GGUF at path: imatrix.gguf, else
 * imatrix.dat, else the first *.imatrix (by name) in its directory, parsed
 * into *im with its name in name. 0 (none: *im stays NULL), or -errno with
 * the reason in err. */
static int side_imatrix(const char *path, struct qf_imatrix **im, char *name, size_t namelen, char *err,
                        size_t errlen)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    struct dirent **de;
    int n = scandir(dir, &de, NULL, alphasort), best = -1, rank = 3;
    for (int i = 0; i < n; i++) {
        const char *f = de[i]->d_name;
        size_t l = strlen(f);
        int r = !strcmp(f, "imatrix.gguf") ? 0 : !strcmp(f, "imatrix.dat") ? 1
                : l > 8 && !strcmp(f + l - 8, ".imatrix") ? 2 : 3;
        if (r < rank)
            rank = r, best = i;
    }
    int rc = 0;
    if (best >= 0) {
        char fp[PATH_MAX + 256];
        snprintf(name, namelen, "%s", de[best]->d_name);
        snprintf(fp, sizeof fp, "%s/%s", dir, name);
        struct stat st;
        int fd = open(fp, O_RDONLY | O_CLOEXEC);
        rc = fd < 0 || fstat(fd, &st) ? -errno : 0;
        if (rc)
            snprintf(err, errlen, "%.200s: %s", name, strerror(-rc));
        else
            rc = qf_imatrix_parse(mpread, &fd, (uint64_t)st.st_size, im, err, errlen); /* err says why */
        if (fd >= 0)
            close(fd);
    }
    for (int i = 0; i < n; i++)
        free(de[i]);
    if (n >= 0)
        free(de);
    return rc;
}

/* --plan: the codec's description of a GGUF view, the one the daemon
 * serves: tensors in output order, type, bytes and the rule. */
static int print_plan(const char *view, char **paths, int n, bool json)
{
    int vi = qf_view_index(view);
    size_t nv;
    if (vi < 0) {
        fprintf(stderr, "quantfs-check: unknown view '%s'\n", view);
        return 2;
    }
    const struct qf_view *v = qf_view_resolve(&qf_views(&nv)[vi], QF_FMT_GGUF);
    int status = 0;
    for (int a = 0; a < n; a++) {
        char err[512];
        struct stat st;
        struct qf_gguf *g = NULL;
        struct qf_layout *l = NULL;
        int fd = open(paths[a], O_RDONLY | O_CLOEXEC);
        int rc = fd < 0 || fstat(fd, &st) ? -errno : 0;
        if (rc)
            snprintf(err, sizeof err, "%s", strerror(-rc));
        else
            rc = qf_gguf_parse(mpread, &fd, (uint64_t)st.st_size, &g, err, sizeof err);
        struct qf_imatrix *im = NULL;
        char im_name[256] = "";
        if (!rc && v->imat)
            rc = side_imatrix(paths[a], &im, im_name, sizeof im_name, err, sizeof err);
        if (!rc)
            rc = qf_layout_gguf(g, v, im, im_name, &l, err, sizeof err);
        if (rc) {
            fprintf(stderr, "quantfs-check: %s: no %s view: %s\n", paths[a], view, err);
            status = 2;
        }
        for (size_t i = 0; l && i < l->n_tensors; i++) {
            const struct qf_tensor_plan *t = &l->tensors[i];
            const char *tn = qf_type_get(t->type)->name, *sn = qf_type_get(t->src_type)->name;
            if (json) {
                json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:b,s:s}", "file", paths[a], "tensor", t->name,
                                      "source_type", sn, "type", tn, "offset", (json_int_t)t->offset, "bytes",
                                      (json_int_t)t->nbytes, "fallback", t->fallback, "why", t->why);
                char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
                if (txt)
                    puts(txt);
                free(txt);
                json_decref(o);
            } else {
                printf("%-32s %-6s -> %-7s %12llu  %s\n", t->name, sn, tn, (unsigned long long)t->nbytes, t->why);
            }
        }
        if (l && !json)
            printf("%s: %s view: %llu bytes, %zu tensors, %u needed the row-length fallback\n", paths[a], view,
                   (unsigned long long)l->size, l->n_tensors, l->n_fallback);
        qf_layout_free(l);
        qf_gguf_free(g);
        qf_imatrix_free(im);
        if (fd >= 0)
            close(fd);
    }
    return status;
}

static json_t *result_json(const struct job *j, const char *model)
{
    const struct ck_result *r = &j->res;
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:f,s:b,s:b,s:b,s:s}", "model", model, "view", r->view, "path",
                          r->path, "bytes", (json_int_t)r->bytes, "bits_per_weight", r->bits_per_weight, "loads",
                          r->loads, "runs", r->runs, "pass", r->pass, "verdict", r->pass ? "PASS" : "FAIL");
    if (r->why[0])
        json_object_set_new(o, "reason", json_string(r->why));
    if (r->loads && r->llama && r->runs) {
        json_object_set_new(o, "positions", json_integer(r->positions));
        json_object_set_new(o, "top1", json_real(r->top1));
        json_object_set_new(o, "top1_decisive", r->top1_decisive < 0 ? json_null() : json_real(r->top1_decisive));
        json_object_set_new(o, "kl_mean", json_real(r->kl_mean));
        json_object_set_new(o, "kl_p99", json_real(r->kl_p99));
        json_object_set_new(o, "ppl", json_real(r->ppl));
        json_object_set_new(o, "ppl_fp32", json_real(r->ppl_ref));
        json_object_set_new(o, "sample", json_string(r->sample));
    }
    if (r->loads && r->sqnr_worst[0]) {
        json_object_set_new(o, "sqnr_min_db", json_real(r->sqnr_min > 199 ? 200 : r->sqnr_min));
        json_object_set_new(o, "sqnr_worst_tensor", json_string(r->sqnr_worst));
    }
    return o;
}

static void human_bytes(uint64_t b, char *buf, size_t len)
{
    const char *u[] = {"B", "K", "M", "G", "T"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4)
        v /= 1024, i++;
    snprintf(buf, len, i ? "%.1f%s" : "%.0f%s", v, u[i]);
}

static void print_table(struct job *jobs, size_t n, const struct ck_ref *ref, const char *model)
{
    printf("%s\n", model);
    bool llama = ref->m.llama;
    if (llama)
        printf("%-6s %8s %7s %5s %4s %6s %9s %9s %8s %7s  %s\n", "view", "bytes", "bits/w", "loads", "runs", "top-1",
               "KL mean", "KL p99", "ppl", "Δppl", "verdict");
    else
        printf("%-6s %8s %7s %5s %9s  %-40s %s\n", "view", "bytes", "bits/w", "loads", "min SQNR", "worst tensor",
               "verdict");
    for (size_t i = 0; i < n; i++) {
        const struct ck_result *r = &jobs[i].res;
        char b[16];
        human_bytes(r->bytes, b, sizeof b);
        if (!r->loads)
            printf("%-6s %8s %7s %5s %4s %6s %9s %9s %8s %7s  FAIL: %s\n", r->view, "-", "-", "no", "-", "-", "-", "-",
                   "-", "-", r->why);
        else if (llama)
            printf("%-6s %8s %7.2f %5s %4s %6.3f %9.2e %9.2e %8.3f %+7.3f  %s%s%s\n", r->view, b, r->bits_per_weight,
                   "yes", r->runs ? "yes" : "no", r->top1, r->kl_mean, r->kl_p99, r->ppl, r->ppl - r->ppl_ref,
                   r->pass ? "PASS" : "FAIL", r->pass ? "" : ": ", r->pass ? "" : r->why);
        else
            printf("%-6s %8s %7.2f %5s %9.1f  %-40s %s%s%s\n", r->view, b, r->bits_per_weight, "yes",
                   r->sqnr_min > 199 ? 200.0 : r->sqnr_min, r->sqnr_worst, r->pass ? "PASS" : "FAIL",
                   r->pass ? "" : ": ", r->pass ? "" : r->why);
    }
    if (llama && ref->m.vocab) {
        printf("greedy samples:\n");
        for (size_t i = 0; i < n; i++)
            if (jobs[i].res.runs)
                printf("  %-6s %s\n", jobs[i].res.view, jobs[i].res.sample);
    }
}

static int write_chart(const char *file, const char *model, const struct job *jobs, size_t n)
{
    struct qf_chart_point *p = calloc(n + 1, sizeof *p);
    for (size_t i = 0; p && i < n; i++) {
        const struct ck_result *r = &jobs[i].res;
        bool kl = r->loads && r->llama && r->runs;
        p[i] = (struct qf_chart_point){.view = r->view, .bpw = r->bits_per_weight, .kl = r->kl_mean, .top1 = r->top1,
                                       .has_kl = kl, .pass = r->pass, .why = kl || !r->why[0] ? NULL : r->why};
    }
    char *svg = p ? qf_check_chart_svg(model, p, n) : NULL;
    free(p);
    FILE *f = svg ? fopen(file, "w") : NULL;
    int rc = f ? 0 : -1;
    if (f && fputs(svg, f) < 0)
        rc = -1;
    if (f && fclose(f))
        rc = -1;
    if (rc) {
        fprintf(stderr, "quantfs-check: %s: %s\n", file, svg ? strerror(errno) : "out of memory");
        rc = -1;
    }
    free(svg);
    return rc;
}

/* Resolves one PATH into a reference and a list of (view, path) jobs. */
static int plan(const char *path, const char *ref_opt, const char *views, char *ref, size_t reflen, char *model,
                size_t mlen, struct job **jobs, size_t *n)
{
    char abs[PATH_MAX];
    if (!realpath(path, abs)) {
        fprintf(stderr, "quantfs-check: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char f32[PATH_MAX + 8], parent_f32[PATH_MAX + 8];
    snprintf(f32, sizeof f32, "%s/f32", abs);
    snprintf(parent_f32, sizeof parent_f32, "%s/../f32", abs);
    *jobs = NULL;
    *n = 0;
    if (!ref_opt && is_dir(abs) && is_dir(f32)) { /* a model directory in a mount */
        snprintf(ref, reflen, "%s", f32);
        const char *b = strrchr(abs, '/');
        snprintf(model, mlen, "%s", b ? b + 1 : abs);
        DIR *d = opendir(abs);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            char p[PATH_MAX + 300];
            snprintf(p, sizeof p, "%s/%s", abs, de->d_name);
            if (de->d_name[0] == '.' || !is_dir(p) || !wanted(views, de->d_name))
                continue;
            /* the lora view holds a model's adapters, not the model */
            size_t nv;
            int vi = qf_view_index(de->d_name);
            if (vi >= 0 && qf_views(&nv)[vi].formats == QF_FMT_LORA)
                continue;
            struct job *nj = realloc(*jobs, (*n + 1) * sizeof **jobs);
            if (!nj)
                break;
            *jobs = nj;
            memset(&nj[*n], 0, sizeof *nj);
            nj[*n].view = strdup(de->d_name);
            snprintf(nj[*n].path, sizeof nj[*n].path, "%s", p);
            (*n)++;
        }
        if (d)
            closedir(d);
        if (*n)
            qsort(*jobs, *n, sizeof **jobs, cmp_view);
        return 0;
    }
    const char *b = strrchr(abs, '/');
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return -1;
    if (!ref_opt && is_dir(abs) && is_dir(parent_f32)) { /* one view directory of a mount */
        char pr[PATH_MAX];
        if (!realpath(parent_f32, pr))
            return -1;
        snprintf(ref, reflen, "%s", pr);
        j->view = strdup(b ? b + 1 : abs);
        snprintf(model, mlen, "%.*s", (int)(b - abs), abs);
        const char *mb = strrchr(model, '/');
        if (mb)
            memmove(model, mb + 1, strlen(mb));
    } else if (ref_opt) {
        snprintf(ref, reflen, "%s", ref_opt);
        j->view = strdup(b ? b + 1 : abs);
        snprintf(model, mlen, "%s", b ? b + 1 : abs);
    } else {
        free(j);
        fprintf(stderr, "quantfs-check: %s is not in a quantfs mount (no f32 view beside it): give --ref\n", path);
        return -1;
    }
    snprintf(j->path, sizeof j->path, "%s", abs);
    *jobs = j;
    *n = 1;
    return 0;
}

int main(int argc, char **argv)
{
    enum { O_REF = 256, O_VIEWS, O_TOKENS, O_PROMPT, O_SAMPLE, O_T1, O_KL, O_SQNR, O_THREADS, O_JSON, O_DUMP, O_PLAN,
           O_TREE, O_CHART };
    static const struct option lo[] = {
        {"ref", required_argument, 0, O_REF},
        {"views", required_argument, 0, O_VIEWS},
        {"tokens", required_argument, 0, O_TOKENS},
        {"prompt", required_argument, 0, O_PROMPT},
        {"sample", required_argument, 0, O_SAMPLE},
        {"threshold-top1", required_argument, 0, O_T1},
        {"threshold-kl", required_argument, 0, O_KL},
        {"threshold-sqnr", required_argument, 0, O_SQNR},
        {"threads", required_argument, 0, O_THREADS},
        {"json", no_argument, 0, O_JSON},
        {"dump-reference", required_argument, 0, O_DUMP},
        {"plan", required_argument, 0, O_PLAN},
        {"tree", no_argument, 0, O_TREE},
        {"chart", required_argument, 0, O_CHART},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    struct ck_opts o = {.n_tokens = 64, .n_sample = 24, .top1_override = -1, .kl_override = -1, .sqnr_override = -1};
    const char *ref_opt = NULL, *views = NULL, *dump = NULL, *plan_view = NULL, *chart = NULL;
    bool json = false, quiet = false, tree = false;
    long threads = sysconf(_SC_NPROCESSORS_ONLN);
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "qhV", lo, NULL)) != -1) {
        switch (c) {
        case O_REF: ref_opt = optarg; break;
        case O_VIEWS: views = optarg; break;
        case O_TOKENS:
        case O_SAMPLE:
        case O_THREADS: {
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 100000) {
                fprintf(stderr, "quantfs-check: %s needs a positive number\n", argv[optind - 1]);
                return 2;
            }
            *(c == O_TOKENS ? &o.n_tokens : c == O_SAMPLE ? &o.n_sample : (int[]){0}) = (int)v;
            if (c == O_THREADS)
                threads = v;
            break;
        }
        case O_PROMPT: o.prompt = optarg; break;
        case O_T1:
        case O_KL:
        case O_SQNR: {
            double v = strtod(optarg, &end);
            if (*end || v < 0) {
                fprintf(stderr, "quantfs-check: %s needs a non-negative number\n", argv[optind - 1]);
                return 2;
            }
            *(c == O_T1 ? &o.top1_override : c == O_KL ? &o.kl_override : &o.sqnr_override) = v;
            break;
        }
        case O_JSON: json = true; break;
        case O_DUMP: dump = optarg; break;
        case O_PLAN: plan_view = optarg; break;
        case O_TREE: tree = true; break;
        case O_CHART: chart = optarg; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("quantfs-check %s (codec %u)\n", QUANTFS_VERSION, QF_CODEC_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    if (chart && argc - optind != 1) {
        fprintf(stderr, "quantfs-check: --chart draws one PATH's views\n");
        return 2;
    }
    if (plan_view)
        return print_plan(plan_view, argv + optind, argc - optind, json);
    if (tree) {
        int st = 0;
        for (int a = optind; a < argc && !st; a++)
            st = ck_tree(argv[a], views);
        return st;
    }
    int status = 0;
    for (int a = optind; a < argc; a++) {
        char ref[PATH_MAX + 8], model[PATH_MAX];
        struct job *jobs;
        size_t n;
        if (plan(argv[a], ref_opt, views, ref, sizeof ref, model, sizeof model, &jobs, &n))
            return 2;
        if (!n) {
            fprintf(stderr, "quantfs-check: %s: no view to check%s\n", argv[a], views ? " (--views)" : "");
            return 2;
        }
        struct ck_ref r;
        char err[512] = "";
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (ck_ref_build(ref, &o, &r, err, sizeof err)) {
            fprintf(stderr, "quantfs-check: reference %s: %s\n", ref, err[0] ? err : "cannot be loaded");
            ck_ref_free(&r);
            return 2;
        }
        if (dump && r.m.llama) { /* for tests: the reference's tokens and logits */
            FILE *f = fopen(dump, "wb");
            if (!f || fwrite(&r.n_tokens, 4, 1, f) != 1 || fwrite(&r.m.n_vocab, 4, 1, f) != 1 ||
                fwrite(r.tokens, 4, (size_t)r.n_tokens, f) != (size_t)r.n_tokens ||
                fwrite(r.logits, 4, (size_t)r.n_tokens * r.m.n_vocab, f) != (size_t)r.n_tokens * r.m.n_vocab) {
                fprintf(stderr, "quantfs-check: %s: %s\n", dump, strerror(errno));
                return 2;
            }
            fclose(f);
        }
        struct run run = {.ref = &r, .o = &o, .jobs = jobs, .n = n, .tty = isatty(2), .quiet = quiet,
                          .n_layer = r.m.n_layer};
        pthread_mutex_init(&run.mu, NULL);
        size_t nt = (size_t)threads < n ? (size_t)threads : n;
        pthread_t *th = calloc(nt, sizeof *th);
        for (size_t i = 0; i < nt; i++)
            pthread_create(&th[i], NULL, worker, &run);
        for (size_t i = 0; i < nt; i++)
            pthread_join(th[i], NULL);
        free(th);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (run.tty && !quiet)
            fprintf(stderr, "\r\033[K");
        for (size_t i = 0; i < n; i++) {
            if (!jobs[i].res.pass)
                status = 1;
            if (json) {
                json_t *j = result_json(&jobs[i], model);
                char *s = json_dumps(j, JSON_COMPACT);
                printf("%s\n", s);
                free(s);
                json_decref(j);
            }
        }
        if (chart && write_chart(chart, model, jobs, n))
            status = 2;
        if (!json && !quiet) {
            print_table(jobs, n, &r, model);
            double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
            if (r.m.llama)
                printf("%zu view(s) in %.1f s; reference %s; %d positions of its greedy continuation\n", n, secs,
                       ref, r.n_tokens - r.n_prompt);
            else
                printf("%zu view(s) in %.1f s; reference %s; not a llama model: per-tensor SQNR\n", n, secs, ref);
        }
        for (size_t i = 0; i < n; i++)
            free((char *)jobs[i].view);
        free(jobs);
        pthread_mutex_destroy(&run.mu);
        ck_ref_free(&r);
    }
    return status;
}
