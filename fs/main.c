/* main.c — quantfs SOURCE MOUNTPOINT [options]: option parsing, mounting,
 * daemonizing, teardown. Follows sshfs conventions so mount.fuse3 and fstab
 * lines work. */
#include <errno.h>
#include <signal.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "guard.h"
#include "quantfs.h"

struct cli {
    char *source;
    char *source_opt; /* -o source= (a config file's way to name it) */
    int n_args;       /* SOURCE and MOUNTPOINT arguments seen */
    char *cache_size;
    char *cache_dir_size;
    char *shared_cache_size;
    char *hot_size;
    char *num[12];    /* the numeric options as given: num_opts[] checks them */
    int show_help, show_version, self_test;
};

/* Numeric options: whole numbers in a range (a value out of range, signed,
 * or with anything after the digits is refused: fuse_opt's %u would take
 * "-1" as 4294967295 and "1e9" as 1). timeout is a decimal. */
static const struct num_opt {
    const char *name;
    size_t off; /* in struct qfs: an unsigned, or the double timeout */
    double lo, hi;
    const char *unit;
} num_opts[] = {
    {"threads", offsetof(struct qfs, workers), 1, 1024, ""},
    {"workers", offsetof(struct qfs, workers), 1, 1024, ""},
    {"check_jobs", offsetof(struct qfs, check_jobs), 1, 64, ""},
    {"max_fds", offsetof(struct qfs, max_fds), 4, 1048576, ""},
    {"source_timeout", offsetof(struct qfs, source_timeout_s), 0, 86400, " seconds"},
    {"readahead", offsetof(struct qfs, readahead_mb), 0, 4096, " MB"},
    {"check_interval", offsetof(struct qfs, check_ms), 10, 3600000, " ms"},
    {"rescan", offsetof(struct qfs, rescan_ms), 0, 86400, " seconds"},
    {"settle", offsetof(struct qfs, settle_ms), 0, 3600000, " ms"},
    {"read_ahead_kb", offsetof(struct qfs, read_ahead_kb), 0, 1048576, " KiB"},
    {"timeout", offsetof(struct qfs, timeout), 0, 86400, " seconds"},
    {"max_background", offsetof(struct qfs, max_background), 1, 65535, ""},
};
_Static_assert(sizeof num_opts / sizeof *num_opts <= sizeof ((struct cli *)0)->num / sizeof(char *), "cli.num");

static int parse_num_opts(const struct cli *c, struct qfs *q)
{
    for (size_t i = 0; i < sizeof num_opts / sizeof *num_opts; i++) {
        const struct num_opt *o = &num_opts[i];
        const char *v = c->num[i];
        if (!v)
            continue;
        bool dbl = o->off == offsetof(struct qfs, timeout);
        char *end = NULL;
        errno = 0;
        double d = v[0] >= '0' && v[0] <= '9' ? (dbl ? strtod(v, &end) : (double)strtoull(v, &end, 10)) : -1;
        if (!end || *end || errno || !isfinite(d) || d < o->lo || d > o->hi) {
            fprintf(stderr, "quantfs: %s=%s: a %s from %.0f to %.0f%s\n", o->name, v, dbl ? "number" : "whole number",
                    o->lo, o->hi, o->unit);
            return -1;
        }
        if (dbl)
            *(double *)((char *)q + o->off) = d;
        else
            *(unsigned *)((char *)q + o->off) = (unsigned)d;
    }
    return 0;
}

#define OPT(t, p, v) {t, offsetof(struct cli, p), v}
static const struct fuse_opt cli_opts[] = {
    OPT("source=%s", source_opt, 0),
    OPT("cache_size=%s", cache_size, 0),
    OPT("cache_dir_size=%s", cache_dir_size, 0),
    OPT("shared_cache_size=%s", shared_cache_size, 0),
    OPT("hot_size=%s", hot_size, 0),
    OPT("threads=%s", num[0], 0),
    OPT("workers=%s", num[1], 0), /* the 0.1 name of threads= */
    OPT("check_jobs=%s", num[2], 0),
    OPT("max_fds=%s", num[3], 0),
    OPT("source_timeout=%s", num[4], 0),
    OPT("readahead=%s", num[5], 0),
    OPT("check_interval=%s", num[6], 0),
    OPT("rescan=%s", num[7], 0), /* seconds here; ms after parsing */
    OPT("settle=%s", num[8], 0),
    OPT("read_ahead_kb=%s", num[9], 0),
    OPT("timeout=%s", num[10], 0),
    OPT("max_background=%s", num[11], 0),
    OPT("--self-test", self_test, 1),
    FUSE_OPT_KEY("-h", 'h'),
    FUSE_OPT_KEY("--help", 'h'),
    FUSE_OPT_KEY("-V", 'V'),
    FUSE_OPT_KEY("--version", 'V'),
    FUSE_OPT_END,
};

/* Options owned by the daemon context (sshfs style: each option lives with
 * its user). */
#define QOPT(t, p, v) {t, offsetof(struct qfs, p), v}
static const struct fuse_opt qfs_opts[] = {
    QOPT("views=%s", views_opt, 0),
    QOPT("imatrix=%s", imatrix_opt, 0),
    QOPT("adapters=%s", adapters_opt, 0),
    QOPT("cache_dir=%s", cache_dir, 0),
    QOPT("shared_cache=%s", shared_cache, 0),
    QOPT("shared_cache_ro", shared_cache_ro, 1),
    QOPT("check", check, 1),
    QOPT("splice", splice, 1),
    QOPT("no_splice", splice, 0),
    QOPT("map_reads", map_reads, 1),
    QOPT("no_map_reads", map_reads, 0),
    QOPT("follow_symlinks", follow_symlinks, 1),
    QOPT("config=%s", config_path, 0), /* read before parsing: load_config */
    FUSE_OPT_END,
};

static int cli_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    struct cli *c = data;
    (void)outargs;
    switch (key) {
    case FUSE_OPT_KEY_NONOPT:
        c->n_args++;
        if (!c->source) {
            c->source = strdup(arg);
            return 0;
        }
        return 1; /* the mount point: fuse_parse_cmdline takes it */
    case 'h': c->show_help = 1; return 0;
    case 'V': c->show_version = 1; return 0;
    default: return 1;
    }
}

static void cache_log(void *arg, int prio, const char *msg) { qfs_log(arg, prio, "%s", msg); }

static void usage(const char *prog)
{
    size_t n;
    const struct qf_view *v = qf_views(&n);
    printf("usage: %s SOURCE MOUNTPOINT [options]\n"
           "       %s MOUNTPOINT -o source=SOURCE[,options]\n\n"
           "Mounts a directory of FP32 model checkpoints and shows every model at\n"
           "other precisions, converted on read.\n\n"
           "quantfs options:\n"
           "    -o source=DIR          the source root, instead of the SOURCE argument (for config files)\n"
           "    -o views=V1,V2,...     views to offer (default: all)\n"
           "    -o imatrix=NAME        each model directory's imatrix file (default: imatrix.gguf,\n"
           "                           imatrix.dat, *.imatrix)\n"
           "    -o adapters=A=M:...    adapter directory A at the source root belongs to model M\n"
           "                           (default: the model its base_model_name_or_path names)\n"
           "    -o cache_size=SIZE     memory tier of zstd-compressed blocks, e.g. 512M, 2G\n"
           "                           (default: 1/16 of RAM)\n"
           "    -o cache_dir=DIR       persistent tier: keep blocks across mounts, shareable (default: none)\n"
           "    -o cache_dir_size=SIZE its budget on disk (default: 1/4 of its filesystem, max 16G)\n"
           "    -o shared_cache=DIR    a second persistent tier that a fleet shares (network filesystem)\n"
           "    -o shared_cache_size=SIZE  its budget (default: as cache_dir's)\n"
           "    -o shared_cache_ro     read the shared tier, never write it (one writer, many readers)\n"
           "    -o hot_size=SIZE       idle uncompressed blocks kept (default 64M)\n"
           "    -o check               run quantfs-check on each model on first access (default: off);\n"
           "                           results in MOUNT/MODEL/.check.json\n"
           "    -o check_jobs=N        checks running at a time (default 1)\n"
           "    -o follow_symlinks     serve symlinks that resolve outside the source root (default: off)\n"
           "    -o max_fds=N           source descriptors kept open, least recently used closed first\n"
           "                           (default 1024, at most half the open-file limit)\n"
           "    -o source_timeout=SECONDS  a network or FUSE source that does not answer this long fails\n"
           "                           its model's reads with EIO (default 30; 0: wait forever)\n"
           "    -o threads=N           conversion and read-ahead threads (default: CPUs)\n"
           "    -o readahead=MB        convert this far ahead of sequential readers (default 16)\n"
           "    -o max_background=N    FUSE requests the kernel keeps in flight reading ahead\n"
           "                           (default: the kernel's, 12)\n"
           "    -o read_ahead_kb=KB    the kernel's readahead for the mount, set by root only\n"
           "                           (default 7936; 0: the kernel's 128)\n"
           "    -o splice, -o no_splice  splice a local source's unchanged bytes into replies, or copy\n"
           "                           them and check the source after (default: splice)\n"
           "    -o map_reads, -o no_map_reads  conversions read a local source's bytes mapped\n"
           "                           from its page cache, or copy them out first (default: copy)\n"
           "    -o timeout=SECONDS     kernel attribute cache timeout (default 1)\n"
           "    -o check_interval=MS   how often open sources are checked for changes (default 1000)\n"
           "    -o rescan=SECONDS      also rescan the source root this often, for sources inotify\n"
           "                           does not see change (NFS, other FUSE); default 0: inotify only\n"
           "    -o settle=MS           a new or changed model is shown once its files held still\n"
           "                           this long (default 1000)\n"
           "    -o config=FILE         options from FILE (quantfs.conf(5)); the command line's win\n"
           "    --self-test            check the kernels against built-in vectors and exit\n"
           "    -V, --version          print versions and exit\n\n"
           "views:",
           prog, prog);
    printf("\n");
    for (size_t i = 0; i < n; i++) {
        if (v[i].what)
            printf("    %-12s %s\n", v[i].name, v[i].what);
        else
            printf("    %-12s = %s\n", v[i].name, v[i].alias_of);
    }
    printf("\nFUSE options:\n");
    fuse_cmdline_help();
    fuse_lowlevel_help();
}

/* "512M", "2G", "1048576" -> bytes; 0 on error. */
static size_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9') /* strtoull would take "-1" as 2^64-1 */
        return 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return 0;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    }
    if (*end && strcmp(end, "B") && strcmp(end, "iB"))
        return 0;
    if (v > (SIZE_MAX >> shift))
        return 0;
    return (size_t)(v << shift);
}

static int parse_views(struct qfs *q)
{
    if (!q->views_opt) {
        q->view_mask = q->n_views >= 64 ? ~0ull : (1ull << q->n_views) - 1;
        return 0;
    }
    char *list = strdup(q->views_opt), *save = NULL;
    if (!list)
        return -ENOMEM;
    int rc = 0;
    for (char *t = strtok_r(list, ",:", &save); t; t = strtok_r(NULL, ",:", &save)) {
        int v = qf_view_index(t);
        if (v < 0) {
            fprintf(stderr, "quantfs: unknown view '%s'; known views:", t);
            for (size_t i = 0; i < q->n_views; i++)
                fprintf(stderr, " %s", q->views[i].name);
            fputc('\n', stderr);
            rc = -EINVAL;
            break;
        }
        q->view_mask |= 1ull << v;
        /* naming an alias offers its view, under its own name too */
        int of = q->views[v].alias_of ? qf_view_index(q->views[v].alias_of) : -1;
        if (of >= 0)
            q->view_mask |= 1ull << of;
    }
    /* aliases that are only aliases follow their view */
    for (size_t i = 0; i < q->n_views; i++) {
        int of = q->views[i].alias_of ? qf_view_index(q->views[i].alias_of) : -1;
        if (of >= 0 && !q->views[i].formats && (q->view_mask >> of & 1))
            q->view_mask |= 1ull << i;
    }
    free(list);
    if (!rc && !q->view_mask) {
        fprintf(stderr, "quantfs: -o views= names no view\n");
        rc = -EINVAL;
    }
    return rc;
}

/* fsname= takes a comma-separated option list: escape ',' and '\'. */
static char *fsname_opt(const char *src)
{
    size_t n = strlen(src);
    char *o = malloc(2 * n + 32), *p = o;
    if (!o)
        return NULL;
    p += sprintf(p, "-ofsname=");
    for (const char *s = src; *s; s++) {
        if (*s == ',' || *s == '\\')
            *p++ = '\\';
        *p++ = *s;
    }
    *p = 0;
    return o;
}

/* A precision name, known or not (so a typo gets "unknown view", not
 * "unknown option"): a known view, or q/iq/int/fp/bf/f/mx then a digit.
 * No FUSE or mount option has that shape. */
static bool looks_like_view(const char *t)
{
    static const char *pre[] = {"iq", "int", "fp", "bf", "mx", "q", "f"};
    if (qf_view_index(t) >= 0)
        return true;
    for (size_t i = 0; i < sizeof pre / sizeof *pre; i++)
        if (!strncmp(t, pre[i], strlen(pre[i])) && t[strlen(pre[i])] >= '0' && t[strlen(pre[i])] <= '9')
            return true;
    return false;
}

/* In "-o views=fp16,int8,allow_other" the commas split the option list, so
 * bare view names following a views= item are joined back into it
 * ("views=fp16:int8,allow_other"). View names are never FUSE options, so
 * this is unambiguous; it works for fstab lines too. Rewrites in place (the
 * string only gets shorter or stays the same length). */
static void join_view_lists(char *opts)
{
    char *out = opts, *save = NULL;
    bool in_views = false, first = true;
    char *copy = strdup(opts);
    if (!copy)
        return;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        bool bare_view = in_views && !strchr(t, '=') && looks_like_view(t);
        if (!first)
            *out++ = bare_view ? ':' : ',';
        first = false;
        out = stpcpy(out, t);
        if (!bare_view)
            in_views = !strncmp(t, "views=", 6);
    }
    *out = 0;
    free(copy);
}

/* -o config=FILE (quantfs.conf(5)): "key = value" or "key" per line, '#'
 * comments; becomes one -o list placed before the command line's options,
 * so that those win. Returns the list (malloc'd) or NULL with a message. */
static char *load_config(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "quantfs: config %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *out = NULL, line[4096];
    size_t len = 0, cap = 0;
    unsigned lineno = 0;
    bool ok = true;
    while (ok && fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            fprintf(stderr, "quantfs: config %s:%u: line too long\n", path, lineno);
            ok = false;
            break;
        }
        char *h = strchr(line, '#');
        if (h)
            *h = 0;
        char *k = line + strspn(line, " \t\r\n"), *e = k + strlen(k);
        while (e > k && strchr(" \t\r\n", e[-1]))
            *--e = 0;
        if (!*k)
            continue;
        char *eq = strchr(k, '='), *v = NULL;
        if (eq) {
            char *ke = eq;
            while (ke > k && strchr(" \t", ke[-1]))
                ke--;
            *ke = 0;
            v = eq + 1 + strspn(eq + 1, " \t");
        }
        if (!*k || strspn(k, "abcdefghijklmnopqrstuvwxyz_") != strlen(k) || !strcmp(k, "config")) {
            fprintf(stderr, "quantfs: config %s:%u: '%s' is not an option name\n", path, lineno, k);
            ok = false;
            break;
        }
        bool views = !strcmp(k, "views") || !strcmp(k, "adapters"); /* lists: a, b c -> a:b:c */
        size_t need = len + 2 * strlen(k) + (v ? 2 * strlen(v) : 0) + 4;
        if (need > cap) {
            char *no = realloc(out, cap = need * 2);
            if (!no) {
                ok = false;
                break;
            }
            out = no;
        }
        if (len)
            out[len++] = ',';
        len += (size_t)sprintf(out + len, "%s", k);
        if (v) {
            out[len++] = '=';
            for (const char *c = v; *c; c++) {
                if (views && (*c == ',' || *c == ' ' || *c == '\t')) { /* a list: a, b c -> a:b:c */
                    if (len && out[len - 1] != ':' && out[len - 1] != '=')
                        out[len++] = ':';
                    continue;
                }
                if (*c == ',' || *c == '\\') /* fuse_opt's escape */
                    out[len++] = '\\';
                out[len++] = *c;
            }
        }
        out[len] = 0;
    }
    if (ferror(f)) {
        fprintf(stderr, "quantfs: config %s: read error\n", path);
        ok = false;
    }
    fclose(f);
    if (!ok) {
        free(out);
        return NULL;
    }
    return out ? out : strdup("ro");
}

/* The last config= of the command line's -o lists, or NULL. */
static const char *config_arg(int argc, char **argv, char *buf, size_t n)
{
    const char *found = NULL;
    for (int i = 1; i < argc; i++) {
        const char *o = !strcmp(argv[i], "-o") && i + 1 < argc ? argv[++i] : !strncmp(argv[i], "-o", 2) ? argv[i] + 2
                                                                                                        : NULL;
        for (const char *p = o; p && (p = strstr(p, "config=")); p += 7) {
            if (p != o && p[-1] != ',')
                continue;
            size_t l = strcspn(p + 7, ",");
            snprintf(buf, n, "%.*s", (int)l, p + 7);
            found = buf;
        }
    }
    return found;
}

/* One line after the first scan: how many models the mount serves and how
 * many it hid, by reason (each was said above, and is in .quantfs/log). */
static void mount_summary(struct qfs *q, const struct qfs_tally *t, const char *mnt)
{
    char hid[512] = "";
    size_t n = 0;
    unsigned total = 0;
    const struct {
        unsigned count;
        const char *what;
    } r[] = {{t->outside, "outside the source root (symlinks)"},
             {t->unreadable, "unreadable"},
             {t->incomplete, "incomplete (shown once complete)"},
             {t->duplicate, "a second source for one name"},
             {t->over_limit, "past the model limit"}};
    for (size_t i = 0; i < sizeof r / sizeof *r; i++) {
        if (!r[i].count)
            continue;
        total += r[i].count;
        int k = snprintf(hid + n, sizeof hid - n, "%s%u %s", n ? ", " : "", r[i].count, r[i].what);
        n += k > 0 && (size_t)k < sizeof hid - n ? (size_t)k : 0;
    }
    char gg[96] = "";
    if (t->no_gguf)
        snprintf(gg, sizeof gg, " (%u without GGUF views: architecture)", t->no_gguf);
    if (!q->n_models)
        qfs_log(q, LOG_WARNING, "no models found in %s%s%s%s%s%s", q->source, total ? "; hid " : "", hid,
                total ? "; details above and in " : "", total ? (mnt ? mnt : "MOUNT") : "",
                total ? "/.quantfs/log" : "");
    else if (total)
        qfs_log(q, LOG_NOTICE, "serving %zu model(s)%s from %s; hid %u: %s; details above and in %s/.quantfs/log",
                (size_t)q->n_models, gg, q->source, total, hid, mnt ? mnt : "MOUNT");
    else
        qfs_log(q, LOG_NOTICE, "serving %zu model(s)%s from %s", (size_t)q->n_models, gg, q->source);
}

/* A persistent tier's directory, checked before mounting, with the reason.
 * Its entries are checksummed, not authenticated: whoever can write the
 * directory decides what the views serve, so a tier this daemon writes must
 * be its user's, every directory of it closed to group and others writing;
 * a shared tier read only here (its writers' user owns it) must exist and
 * be closed to group and others writing. *dir becomes absolute. */
static int check_tier(const char *opt, char **dir, bool ro)
{
    int rc = ro ? qc_dir_readable(*dir) : qc_dir_check(*dir);
    if (rc) {
        fprintf(stderr, "quantfs: %s %s: %s%s\n", opt, *dir, strerror(-rc),
                ro && rc == -ENOENT ? " (a read-only shared tier is created by a daemon that writes it)" : "");
        return -1;
    }
    char *abs = realpath(*dir, NULL);
    if (abs) {
        free(*dir);
        *dir = abs;
    }
    struct stat cst;
    if (stat(*dir, &cst) || (!ro && cst.st_uid != geteuid()) || (cst.st_mode & 0022)) {
        if (ro)
            fprintf(stderr, "quantfs: %s %s must not be writable by group or others\n", opt, *dir);
        else
            fprintf(stderr, "quantfs: %s %s must belong to the daemon's user (uid %u) and not be writable by "
                    "group or others\n", opt, *dir, (unsigned)geteuid());
        return -1;
    }
    char bad[4096] = "";
    if (!ro && (rc = qc_dir_owned(*dir, bad, sizeof bad))) { /* and so must every directory in it */
        if (rc == -EPERM)
            fprintf(stderr, "quantfs: %s %s: %s is not a directory of the daemon's user (uid %u) closed "
                    "to group and others writing: entries planted there would be served\n", opt, *dir, bad,
                    (unsigned)geteuid());
        else
            fprintf(stderr, "quantfs: %s %s: %s: %s\n", opt, *dir, bad, strerror(-rc));
        return -1;
    }
    return 0;
}

int main(int argc, char *argv[])
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc)
            join_view_lists(argv[++i]);
        else if (!strncmp(argv[i], "-o", 2))
            join_view_lists(argv[i] + 2);
    }
    char cfg_path[4096];
    char *cfg_opts = NULL, **cargv = NULL;
    if (config_arg(argc, argv, cfg_path, sizeof cfg_path)) {
        if (!(cfg_opts = load_config(cfg_path)) || !(cargv = calloc((size_t)argc + 3, sizeof *cargv))) {
            free(cfg_opts);
            return 1;
        }
        cargv[0] = argv[0];
        cargv[1] = "-o";
        cargv[2] = cfg_opts;
        for (int i = 1; i < argc; i++)
            cargv[i + 2] = argv[i];
        argc += 2;
        argv = cargv;
    }

    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct cli cli = {0};
    struct qfs q = {.splice = 1, .read_ahead_kb = 7936, .readahead_mb = 16, .timeout = 1.0, .check_ms = 1000, .settle_ms = 1000, .check_jobs = 1,
                    .max_fds = 1024, .source_timeout_s = 30};
    struct fuse_cmdline_opts co = {0};
    int ret = 1, rc;
    pthread_mutex_init(&q.inval_mu, NULL);
    pthread_mutex_init(&q.check_mu, NULL);
    pthread_cond_init(&q.check_cv, NULL);
    pthread_mutex_init(&q.handles_mu, NULL);
    pthread_mutex_init(&q.tok_mu, NULL);
    pthread_rwlock_init(&q.names_lock, NULL);
    pthread_mutex_init(&q.fd_mu, NULL);
    pthread_mutex_init(&q.io_mu, NULL);
    pthread_mutex_init(&q.log_mu, NULL);
    sem_init(&q.parse_slots, 0, QFS_PARSE_SLOTS);
    sem_init(&q.hf_slots, 0, QFS_HF_SLOTS);
    pthread_cond_init(&q.io_cv, NULL);
    pthread_cond_init(&q.io_done_cv, NULL);
    q.watch_ifd = q.watch_efd = -1;
    q.views = qf_views(&q.n_views);
    _Static_assert(QFS_MAX_VIEWS >= 64, "view_mask and the per-view arrays");
    if (q.n_views > 64) { /* view_mask is 64 bits */
        fprintf(stderr, "quantfs: %zu views: more than view_mask holds\n", q.n_views);
        return 1;
    }

    if (fuse_opt_parse(&args, &cli, cli_opts, cli_proc) || fuse_opt_parse(&args, &q, qfs_opts, NULL) ||
        parse_num_opts(&cli, &q))
        goto out;
    q.rescan_ms *= 1000;
    /* descriptors: the pool leaves half the limit to FUSE, the cache
     * directory, inotify and the checker pipes */
    struct rlimit nofile;
    if (!getrlimit(RLIMIT_NOFILE, &nofile)) {
        /* the soft limit up to the hard one (systemd: 1024 of 524288) */
        rlim_t want = nofile.rlim_max == RLIM_INFINITY || nofile.rlim_max > 65536 ? 65536 : nofile.rlim_max;
        if (nofile.rlim_cur < want) {
            nofile.rlim_cur = want;
            setrlimit(RLIMIT_NOFILE, &nofile);
            getrlimit(RLIMIT_NOFILE, &nofile);
        }
        if (nofile.rlim_cur != RLIM_INFINITY && q.max_fds > nofile.rlim_cur / 2)
            q.max_fds = (unsigned)(nofile.rlim_cur / 2);
    }
    if (q.max_fds < 4)
        q.max_fds = 4;
    if (cli.self_test) {
        ret = qf_self_test(stdout) ? 1 : 0;
        goto out;
    }
    if (cli.show_help) {
        usage(argv[0]);
        ret = 0;
        goto out;
    }
    if (cli.show_version) {
        printf("quantfs %s (codec %u, kernels: %s)\nFUSE library version %s\n", QUANTFS_VERSION, QF_CODEC_VERSION,
               qf_simd_name(), fuse_pkgversion());
        fflush(stdout); /* before fuse's own lines */
        fuse_lowlevel_version();
        ret = 0;
        goto out;
    }
    /* -o source= with one argument: that argument is the mount point (two
     * arguments, as mount.fuse3 passes them: the command line's source wins) */
    if (cli.source_opt && cli.n_args == 1) {
        if (fuse_opt_add_arg(&args, cli.source))
            goto out;
        free(cli.source);
        cli.source = strdup(cli.source_opt);
    }
    if (fuse_parse_cmdline(&args, &co) != 0)
        goto out;
    if (!cli.source || !co.mountpoint) {
        fprintf(stderr, "usage: %s SOURCE MOUNTPOINT [options]  (see --help)\n", argv[0]);
        goto out;
    }
    q.source = realpath(cli.source, NULL);
    if (!q.source) {
        fprintf(stderr, "quantfs: source %s: %s\n", cli.source, strerror(errno));
        goto out;
    }
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    q.cache_size = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz / 16 : (size_t)256 << 20;
    if (q.cache_size < ((size_t)64 << 20))
        q.cache_size = (size_t)64 << 20;
    if (cli.cache_size && !(q.cache_size = parse_size(cli.cache_size))) {
        fprintf(stderr, "quantfs: cache_size=%s is not a size (e.g. 512M, 2G)\n", cli.cache_size);
        goto out;
    }
    size_t ram = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz : SIZE_MAX;
    if (q.cache_size > ram) {
        fprintf(stderr, "quantfs: cache_size=%s is more than this machine's memory (%zu MiB)\n", cli.cache_size,
                ram >> 20);
        goto out;
    }
    if (cli.cache_dir_size && !(q.cache_dir_size = parse_size(cli.cache_dir_size))) {
        fprintf(stderr, "quantfs: cache_dir_size=%s is not a size (e.g. 10G)\n", cli.cache_dir_size);
        goto out;
    }
    q.hot_size = QFS_HOT_BYTES;
    if (cli.hot_size && !(q.hot_size = parse_size(cli.hot_size)) && strcmp(cli.hot_size, "0")) {
        fprintf(stderr, "quantfs: hot_size=%s is not a size (e.g. 64M)\n", cli.hot_size);
        goto out;
    }
    if (q.hot_size > ram) {
        fprintf(stderr, "quantfs: hot_size=%s is more than this machine's memory (%zu MiB)\n", cli.hot_size,
                ram >> 20);
        goto out;
    }
    if (cli.shared_cache_size && !(q.shared_cache_size = parse_size(cli.shared_cache_size))) {
        fprintf(stderr, "quantfs: shared_cache_size=%s is not a size (e.g. 1T)\n", cli.shared_cache_size);
        goto out;
    }
    if ((q.cache_dir && check_tier("cache_dir", &q.cache_dir, false)) ||
        (q.shared_cache && check_tier("shared_cache", &q.shared_cache, q.shared_cache_ro)))
        goto out;
    if (q.shared_cache_ro && !q.shared_cache) {
        fprintf(stderr, "quantfs: shared_cache_ro needs shared_cache=DIR\n");
        goto out;
    }
    if (!q.workers) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        q.workers = n > 0 ? (unsigned)n : 1;
    }
    /* Chunks converted ahead wait as idle hot blocks. Past half the hot
     * tier (the kernel's two readahead windows in flight too), they are
     * evicted before they are read: a stored chunk comes back from its
     * frame, a transient one is converted again (readahead=64 with the
     * default hot_size converted fp16's chunks 4.5 times: bench/RESULTS.md). */
    uint64_t kernel_ra = qfs_kernel_readahead(&q), half = q.hot_size / 2;
    unsigned fit = half > kernel_ra ? (unsigned)((half - kernel_ra) >> 20) : 0;
    q.readahead_transient_mb = q.readahead_mb < fit ? q.readahead_mb : fit;
    if (q.readahead_transient_mb < q.readahead_mb)
        fprintf(stderr, "quantfs: readahead=%u MB: chunks that are never stored (f32, fp16, bf16 views) are "
                "converted at most %u MB ahead, what half of hot_size (%zu MiB) holds beside the kernel's "
                "readahead (%u KiB, twice); raise hot_size for more\n",
                q.readahead_mb, q.readahead_transient_mb, q.hot_size >> 20, q.read_ahead_kb);
    if (parse_views(&q))
        goto out;
    if (q.imatrix_opt && (!q.imatrix_opt[0] || strchr(q.imatrix_opt, '/') || !strcmp(q.imatrix_opt, ".") ||
                          !strcmp(q.imatrix_opt, ".."))) {
        fprintf(stderr, "quantfs: imatrix=%s: a file name in each model directory, not a path\n", q.imatrix_opt);
        goto out;
    }
    if (q.adapters_opt && !qfs_adapters_opt_ok(q.adapters_opt)) {
        fprintf(stderr, "quantfs: adapters=%s: a list of ADAPTER=MODEL pairs (names at the source root) joined "
                "by ':'\n", q.adapters_opt);
        goto out;
    }
    if (!(q.mountpoint = realpath(co.mountpoint, NULL))) {
        fprintf(stderr, "quantfs: mount point %s: %s\n", co.mountpoint, strerror(errno));
        goto out;
    }
    q.foreground = co.foreground;
    q.log_terminal = true; /* until fuse_daemonize: the first scan's refusals reach the terminal */
    { /* a source at or under the mount point (or the reverse) would read itself */
        size_t ls = strlen(q.source), lm = strlen(q.mountpoint);
        if ((!strncmp(q.source, q.mountpoint, lm) && (q.source[lm] == '/' || !q.source[lm] || lm == 1)) ||
            (!strncmp(q.mountpoint, q.source, ls) && (q.mountpoint[ls] == '/' || ls == 1))) {
            fprintf(stderr, "quantfs: source %s and mount point %s overlap\n", q.source, q.mountpoint);
            goto out;
        }
    }
    if (qf_self_test(NULL)) { /* never serve what a broken kernel would write */
        fprintf(stderr, "quantfs: the kernel self-test failed (see quantfs --self-test): not mounting\n");
        goto out;
    }

    /* one fd per source file is kept open: take all the fds we may */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    struct qfs_tally tally;
    rc = qfs_scan(&q, &tally);
    if (rc) {
        fprintf(stderr, "quantfs: scanning %s: %s\n", q.source, strerror(-rc));
        goto out;
    }
    mount_summary(&q, &tally, co.mountpoint);

    char *fsn = fsname_opt(q.source);
    if (!fsn || fuse_opt_add_arg(&args, fsn) || fuse_opt_add_arg(&args, "-osubtype=quantfs,ro,default_permissions")) {
        free(fsn);
        goto out;
    }
    free(fsn);

    q.se = fuse_session_new(&args, &qfs_ops, sizeof qfs_ops, &q);
    if (!q.se)
        goto out;
    if (fuse_set_signal_handlers(q.se) != 0)
        goto out_session;
    if (fuse_session_mount(q.se, co.mountpoint) != 0)
        goto out_signals;
    if (!co.foreground)
        openlog("quantfs", LOG_PID, LOG_DAEMON);
    fuse_daemonize(co.foreground);
    qfs_log_detached(&q);
    if (q.map_reads && (rc = qfs_guard_install())) {
        qfs_log(&q, LOG_WARNING, "no SIGBUS handler (%s): sources are read, not mapped", strerror(-rc));
        q.map_reads = 0;
    }
    if (q.splice && (rc = qfs_pipes_init(&q.pipes)))
        qfs_log(&q, LOG_WARNING, "no pipes for spliced replies (%s): source bytes are copied", strerror(-rc));

    /* threads only after fuse_daemonize: fork() would not carry them over */
    struct qc_opts copts = {.mem_budget = q.cache_size,
                            .hot_budget = q.hot_size,
                            .workers = q.workers,
                            .scratch_size = QF_CONV_SCRATCH_BYTES,
                            .dir = q.cache_dir,
                            .dir_budget = q.cache_dir_size,
                            .shared_dir = q.shared_cache,
                            .shared_budget = q.shared_cache_size,
                            .shared_ro = q.shared_cache_ro,
                            .log = cache_log,
                            .log_arg = &q};
    if ((rc = qc_cache_new(&copts, &q.cache)) || (rc = qfs_watch_start(&q))) {
        qfs_log(&q, LOG_ERR, "starting worker threads: %s", strerror(-rc));
        goto out_unmount;
    }
    qfs_log(&q, LOG_INFO, "mounted %s at %s (kernels: %s)", q.source, co.mountpoint, qf_simd_name());

    if (co.singlethread) {
        ret = fuse_session_loop(q.se);
    } else {
        struct fuse_loop_config *lc = fuse_loop_cfg_create();
        fuse_loop_cfg_set_clone_fd(lc, co.clone_fd);
        if (co.max_threads != UINT_MAX) /* UINT_MAX: not given */
            fuse_loop_cfg_set_max_threads(lc, co.max_threads);
        if (co.max_idle_threads != UINT_MAX)
            fuse_loop_cfg_set_idle_threads(lc, co.max_idle_threads);
        ret = fuse_session_loop_mt(q.se, lc);
        fuse_loop_cfg_destroy(lc);
    }
    /* the loop returns the number of the signal that ended it: SIGTERM (what
     * systemd sends), SIGINT and SIGHUP are a clean stop */
    ret = ret == 0 || ret == SIGTERM || ret == SIGINT || ret == SIGHUP ? 0 : 1;

out_unmount:
    /* checkers are killed before the unmount (their mmaps would take
     * SIGBUS), joined after it and before the models they name are freed */
    qfs_check_kill(&q);
    fuse_session_unmount(q.se);
    qfs_check_stop(&q);
    /* a source call still blocked (a dead NFS server) would touch a model
     * after it is freed, and cannot be cancelled: leave without freeing */
    if (atomic_load(&q.io_stuck) || !qfs_watch_stop(&q)) {
        qfs_log(&q, LOG_WARNING, "source calls still blocked; exiting without waiting for them");
        _exit(ret);
    }
    qfs_io_stop(&q);
out_signals:
    fuse_remove_signal_handlers(q.se);
out_session:
    qfs_watch_stop(&q);
    qfs_free_handles(&q);
    qfs_pipes_fini(&q.pipes); /* the session's threads are joined */
    fuse_session_destroy(q.se);
    qc_cache_free(q.cache);
out:
    qfs_free_models(&q);
    qfs_tokmemo_free(&q);
    qfs_log_free(&q);
    free(q.source);
    free(q.mountpoint);
    free(q.views_opt);
    free(q.imatrix_opt);
    free(q.adapters_opt);
    free(q.config_path);
    free(cfg_opts);
    free(cargv);
    free(cli.source);
    free(cli.source_opt);
    free(cli.cache_size);
    free(cli.cache_dir_size);
    free(cli.shared_cache_size);
    free(cli.hot_size);
    for (size_t i = 0; i < sizeof cli.num / sizeof *cli.num; i++)
        free(cli.num[i]);
    free(q.cache_dir);
    free(q.shared_cache);
    free(co.mountpoint);
    fuse_opt_free_args(&args);
    return ret;
}
