/* tree.c — quantfs-check --tree SRC: the tree a mount of SRC would show,
 * from codec's source kinds alone (no FUSE, no daemon): every model, its
 * views, each view's files with their exact sizes, and why a view is
 * absent. The daemon serves the same rows (fs/ns.c); tests compare the two. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "codec.h"

/* a file of the model directory, read with pread */
struct tfile {
    int fd;
    uint64_t size;
};

static int fd_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
    struct tfile *f = ctx;
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(f->fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -errno : -EIO;
        got += (size_t)r;
    }
    return 0;
}

struct tmodel {
    char *name, *dir; /* dir: the model directory, or the source root for a loose file */
    struct qf_model_files d;
    char **paths;          /* source path per file (NULL: derived) */
    struct tfile *files;   /* open descriptors (-1 until opened) */
    void **parsed;         /* per file: what its row's open returned */
    char **why;            /* per file: why its open failed */
    struct qf_hf_dir *builds; /* per file: a derived file's build */
    struct qf_imatrix *im;    /* the -imat views' imatrix, NULL if none or refused */
    struct qf_model_imatrix mi;
    /* for qf_dir_io: files opened by name */
    struct tfile extra[QF_HF_TEXTS + 64];
    size_t n_extra;
};

static int open_file(const char *path, struct tfile *f)
{
    f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (f->fd < 0)
        return -errno;
    if (fstat(f->fd, &st) || !S_ISREG(st.st_mode)) {
        close(f->fd);
        f->fd = -1;
        return -EINVAL;
    }
    f->size = (uint64_t)st.st_size;
    return 0;
}

static int io_open(void *ctx, const char *name, qf_pread_fn *rd, void **rdctx, uint64_t *size)
{
    struct tmodel *m = ctx;
    size_t slot = 0; /* a slot io_done freed, else a new one */
    while (slot < m->n_extra && m->extra[slot].fd >= 0)
        slot++;
    if (slot == sizeof m->extra / sizeof *m->extra)
        return -EMFILE;
    char p[8192];
    snprintf(p, sizeof p, "%s/%s", m->dir, name);
    struct tfile *f = &m->extra[slot];
    int rc = open_file(p, f);
    if (rc)
        return rc;
    if (slot == m->n_extra)
        m->n_extra++;
    *rd = fd_pread, *rdctx = f, *size = f->size;
    return 0;
}

/* a file read whole (or a shard not kept): its slot is free again */
static void io_done(void *ctx, void *rdctx)
{
    (void)ctx;
    struct tfile *f = rdctx;
    close(f->fd);
    f->fd = -1;
}

static int read_text(const char *path, char **text, size_t *len)
{
    struct tfile f = {.fd = -1}; /* open_file fills it on success */
    int rc = open_file(path, &f);
    if (rc)
        return rc;
    if (f.size > QF_JSON_MAX_BYTES)
        rc = -EFBIG;
    else if (!(*text = malloc(f.size + 1)))
        rc = -ENOMEM;
    else if (!(rc = fd_pread(&f, *text, f.size, 0)))
        (*text)[f.size] = 0, *len = f.size;
    close(f.fd);
    return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n > k && !strcmp(s + n - k, suf);
}

/* The entries of directory path not starting with '.', sorted (with
 * regular_only, only regular files, links followed). */
static int list_dir(const char *path, bool regular_only, char ***out, size_t *count)
{
    DIR *d = opendir(path);
    if (!d)
        return -errno;
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char fp[4096 + 256];
        struct stat fs;
        snprintf(fp, sizeof fp, "%s/%s", path, de->d_name);
        if (de->d_name[0] == '.' || (regular_only && (stat(fp, &fs) || !S_ISREG(fs.st_mode))))
            continue;
        char **nn = realloc(names, (n + 1) * sizeof *names);
        if (!nn || !(nn[n] = strdup(de->d_name))) {
            names = nn ? nn : names;
            break;
        }
        names = nn;
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    *out = names, *count = n;
    return 0;
}

static void model_free(struct tmodel *m)
{
    for (size_t i = 0; i < m->d.n; i++) {
        const struct qf_source_kind *k = qf_source_kind(m->d.f[i].role);
        if (m->parsed[i] && k->close && !k->derived)
            k->close(m->parsed[i]);
        if (m->files[i].fd >= 0)
            close(m->files[i].fd);
        free(m->paths[i]);
        free(m->why[i]);
        free((char *)m->d.f[i].name);
    }
    for (size_t i = 0; m->builds && i < m->d.n; i++) {
        qf_hf_free(m->builds[i].hf);
        free(m->builds[i].shard_ctx);
    }
    free(m->builds);
    qf_imatrix_free(m->im);
    for (size_t i = 0; i < m->n_extra; i++)
        if (m->extra[i].fd >= 0)
            close(m->extra[i].fd);
    free(m->d.f);
    free(m->paths);
    free(m->files);
    free(m->parsed);
    free(m->why);
    free(m->name);
    free(m->dir);
}

/* The regular files of a model (sorted), classified by codec's rows. */
static bool is_file(const char *dir, const char *name)
{
    char p[16384];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int cmp_file(const void *a, const void *b)
{
    const struct qf_model_file *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : x->role - y->role; /* a merged shard after the base's shard of its name */
}

/* merge: the model BASE+merge (entry is BASE), as the daemon makes it */
static int model_load(const char *root, const char *entry, const char *merge, struct tmodel *m)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", root, entry);
    struct stat st;
    if (stat(p, &st))
        return -errno;
    char **names = NULL;
    size_t n = 0;
    if (S_ISDIR(st.st_mode) && is_file(p, "adapter_config.json") && is_file(p, "adapter_model.safetensors") &&
        !is_file(p, "config.json")) {
        return -ENOENT; /* an adapter, not a model */
    } else if (S_ISDIR(st.st_mode)) {
        list_dir(p, true, &names, &n);
        /* adapters/NAME/{adapter_config.json,adapter_model.safetensors}, as the daemon scans them */
        char ap[4096 + 16], **ads = NULL;
        size_t na = 0;
        snprintf(ap, sizeof ap, "%s/adapters", p);
        list_dir(ap, false, &ads, &na);
        for (size_t a = 0; a < na; a++) {
            static const char *const in[] = {"adapter_config.json", "adapter_model.safetensors"};
            for (int k = 0; k < 2; k++) {
                char fp[8192 + 64];
                struct stat fs;
                snprintf(fp, sizeof fp, "%s/%s/%s", ap, ads[a], in[k]);
                char **nn = stat(fp, &fs) || !S_ISREG(fs.st_mode) ? NULL : realloc(names, (n + 1) * sizeof *names);
                if (nn && asprintf(&nn[n], "adapters/%s/%s", ads[a], in[k]) >= 0)
                    n++;
                if (nn)
                    names = nn;
            }
            free(ads[a]);
        }
        free(ads);
        if (n)
            qsort(names, n, sizeof *names, cmp_str);
        m->name = strdup(entry);
        m->dir = strdup(p);
        m->d.dir = true;
    } else if (S_ISREG(st.st_mode) && (has_suffix(entry, ".gguf") || has_suffix(entry, ".safetensors"))) {
        names = malloc(sizeof *names);
        names[n++] = strdup(entry);
        m->name = strndup(entry, strlen(entry) - strlen(strrchr(entry, '.')));
        m->dir = strdup(root);
    } else {
        return -ENOENT;
    }
    m->d.name = m->name;
    m->d.n = n;
    m->d.f = calloc(n + 1, sizeof *m->d.f);
    for (size_t i = 0; i < n; i++)
        m->d.f[i].name = names[i];
    free(names);
    char *extra = NULL, arch[128] = "";
    if (qf_model_claim(&m->d, NULL, &extra))
        return -ENOMEM;
    bool config = false;
    for (size_t i = 0; i < m->d.n; i++)
        config |= m->d.f[i].role == QF_ROLE_CONFIG;
    if (m->d.dir && config && (m->d.formats & QF_FMT_SAFETENSORS)) {
        char cp[4096 + 16], *text = NULL, err[256];
        size_t len = 0;
        snprintf(cp, sizeof cp, "%s/config.json", m->dir);
        if (!read_text(cp, &text, &len))
            qf_hf_config_arch(text, len, arch, sizeof arch, err, sizeof err);
        free(text);
        if (qf_model_claim(&m->d, arch, &extra))
            return -ENOMEM;
    }
    if (extra) { /* the derived file: sorted in among the others */
        struct qf_model_file *nf = realloc(m->d.f, (m->d.n + 1) * sizeof *nf);
        if (!nf)
            return -ENOMEM;
        m->d.f = nf;
        size_t at = 0;
        while (at < m->d.n && strcmp(m->d.f[at].name, extra) < 0)
            at++;
        memmove(&m->d.f[at + 1], &m->d.f[at], (m->d.n - at) * sizeof *nf);
        m->d.f[at] = (struct qf_model_file){extra, QF_ROLE_HFGGUF};
        m->d.n++;
        char **ads = NULL; /* its adapters' NAME.gguf, at the end (the daemon's order) */
        size_t na = 0;
        if (qf_model_adapters(&m->d, &ads, &na))
            return -ENOMEM;
        struct qf_model_file *nf2 = realloc(m->d.f, (m->d.n + na + 1) * sizeof *nf2);
        if (!nf2)
            return -ENOMEM;
        m->d.f = nf2;
        for (size_t a = 0; a < na; a++)
            m->d.f[m->d.n++] = (struct qf_model_file){ads[a], QF_ROLE_LORA};
        free(ads);
    }
    if (merge) { /* the base's sources as inputs, and the merged file */
        char *want = NULL, *file = NULL, *name = NULL;
        bool has = false;
        size_t k = 0;
        if (asprintf(&want, "%s.gguf", merge) < 0 || asprintf(&name, "%s+%s", entry, merge) < 0 ||
            asprintf(&file, "%s.gguf", name) < 0)
            return -ENOMEM;
        size_t n_st = 0;
        for (size_t i = 0; i < m->d.n; i++) {
            int role = m->d.f[i].role;
            has |= role == QF_ROLE_LORA && !strcmp(m->d.f[i].name, want);
            n_st += role == QF_ROLE_ST;
            if (qf_source_kind(role)->derived)
                free((char *)m->d.f[i].name);
            else /* passed-through files, config.json and the index keep their roles, as the daemon's */
                m->d.f[k++] = (struct qf_model_file){m->d.f[i].name,
                                                     role == QF_ROLE_CONFIG || role == QF_ROLE_INDEX ||
                                                             role == QF_ROLE_ST || role == QF_ROLE_PASS
                                                         ? role
                                                         : QF_ROLE_MERGE_IN};
        }
        free(want);
        m->d.n = k;
        struct qf_model_file *nf3 = realloc(m->d.f, (m->d.n + n_st + 2) * sizeof *nf3);
        if (!nf3)
            return -ENOMEM;
        m->d.f = nf3;
        m->d.f[m->d.n++] = (struct qf_model_file){file, QF_ROLE_MERGED};
        for (size_t i = 0; i < k; i++) /* each shard: an input, and its merged twin */
            if (m->d.f[i].role == QF_ROLE_ST) {
                m->d.f[i].role = QF_ROLE_MERGE_IN;
                if (!(m->d.f[m->d.n].name = strdup(m->d.f[i].name)))
                    return -ENOMEM;
                m->d.f[m->d.n++].role = QF_ROLE_MERGED_ST;
            }
        qsort(m->d.f, m->d.n, sizeof *m->d.f, cmp_file);
        free(m->name);
        m->name = name;
        m->d.name = name;
        m->d.formats = has ? QF_FMT_GGUF | (n_st ? QF_FMT_SAFETENSORS : 0) : 0;
        if (!has)
            return -ENOENT;
    }
    m->paths = calloc(m->d.n + 1, sizeof *m->paths);
    m->files = calloc(m->d.n + 1, sizeof *m->files);
    m->parsed = calloc(m->d.n + 1, sizeof *m->parsed);
    m->why = calloc(m->d.n + 1, sizeof *m->why);
    m->builds = calloc(m->d.n + 1, sizeof *m->builds);
    if (!m->paths || !m->files || !m->parsed || !m->why || !m->builds)
        return -ENOMEM;
    for (size_t i = 0; i < m->d.n; i++) {
        m->files[i].fd = -1;
        const struct qf_source_kind *k = qf_source_kind(m->d.f[i].role);
        if (k->derived)
            continue;
        char fp[8192];
        snprintf(fp, sizeof fp, "%s/%s", m->dir, m->d.f[i].name);
        m->paths[i] = strdup(fp);
        char err[256] = "";
        int rc = open_file(fp, &m->files[i]);
        if (!rc && k->open)
            rc = k->open(fd_pread, &m->files[i], m->files[i].size, &m->d, &m->parsed[i], err, sizeof err);
        if (!rc && m->d.f[i].role == QF_ROLE_IMATRIX && (int)i == qf_model_imatrix_file(&m->d)) {
            rc = qf_imatrix_parse(fd_pread, &m->files[i], m->files[i].size, &m->im, err, sizeof err);
            m->mi = (struct qf_model_imatrix){m->im, m->d.f[i].name};
        }
        if (rc)
            m->why[i] = strdup(err[0] ? err : strerror(-rc));
    }
    for (size_t i = 0; i < m->d.n; i++) {
        if (!qf_source_kind(m->d.f[i].role)->derived)
            continue;
        const struct qf_dir_io io = {.ctx = m, .open = io_open, .done = io_done};
        char err[256] = "";
        int rc = qf_source_kind(m->d.f[i].role)->open_dir(&io, &m->d, m->d.f[i].name, &m->builds[i], err, sizeof err);
        for (size_t k = 0; k < m->d.n && !rc; k++) /* a refused config or index refuses it too */
            if (qf_source_kind(m->d.f[k].role)->layout_set && m->why[k])
                rc = -EINVAL, snprintf(err, sizeof err, "%s is refused", m->d.f[k].name);
        if (rc)
            m->why[i] = strdup(err);
        else
            m->parsed[i] = m->builds[i].hf;
    }
    return 0;
}

/* The generated config.json / index of a safetensors view: its row's
 * layout_set over the model's shards, in name order. */
static int generated_layout(struct tmodel *m, size_t fi, const struct qf_view *v, struct qf_layout **l, char *err,
                            size_t errlen)
{
    const struct qf_st **sh = calloc(m->d.n + 1, sizeof *sh);
    const char **names = calloc(m->d.n + 1, sizeof *names);
    size_t n = 0;
    int rc = sh && names ? 0 : -ENOMEM;
    for (size_t i = 0; i < m->d.n && !rc; i++) {
        const struct qf_source_kind *k = qf_source_kind(m->d.f[i].role);
        if (!k->shard)
            continue;
        if (!m->parsed[i])
            rc = -ENOENT;
        else
            sh[n] = k->shard(m->parsed[i]), names[n++] = m->d.f[i].name;
    }
    if (!rc && !m->parsed[fi])
        rc = -ENOENT;
    if (!rc)
        rc = qf_source_kind(m->d.f[fi].role)->layout_set(m->parsed[fi], v, sh, names, n, l, err, errlen);
    free(sh);
    free(names);
    return rc;
}

/* A file's size in view v, or why it has none (-ENOENT: not in this view). */
static int file_size(struct tmodel *m, size_t i, const struct qf_view *v, uint64_t *size, char *err, size_t errlen)
{
    int role = m->d.f[i].role;
    const struct qf_source_kind *k = qf_source_kind(role);
    if (!qf_model_shows(m->d.formats, role, v))
        return -ENOENT;
    if (!qf_model_converts(m->d.formats, role, v) && !k->derived) { /* a derived file's layout says */
        *size = m->files[i].size;
        return 0;
    }
    if (m->why[i]) {
        snprintf(err, errlen, "%s: %s", m->d.f[i].name, m->why[i]);
        return -EINVAL;
    }
    struct qf_layout *l = NULL;
    char e[256] = "";
    int rc = k->layout ? k->layout(m->parsed[i], v, &m->mi, &l, e, sizeof e)
                       : k->layout_set ? generated_layout(m, i, v, &l, e, sizeof e)
                                       : -ENOENT;
    if (rc) {
        snprintf(err, errlen, "%s: %s", m->d.f[i].name, e[0] ? e : strerror(-rc));
        return rc;
    }
    *size = l->size;
    qf_layout_free(l);
    return 0;
}

static bool probe_opened(void *ctx, size_t i)
{
    struct tmodel *m = ctx;
    return !m->why[i];
}

static bool probe_layout(void *ctx, size_t i, const struct qf_view *v)
{
    uint64_t size;
    char err[400];
    return !file_size(ctx, i, v, &size, err, sizeof err);
}

/* codec's view rules over what this model's files gave (the daemon asks
 * the same rules about its snapshots) */
static void print_model(struct tmodel *m, uint64_t view_mask)
{
    size_t nv;
    const struct qf_view *views = qf_views(&nv);
    const struct qf_model_probe p = {m, probe_opened, probe_layout};
    printf("%s/\n", m->name);
    for (size_t v = 0; v < nv; v++) {
        const struct qf_view *vw = &views[v];
        if (!(view_mask & (1ull << v)) || !qf_view_listed(vw, m->d.formats))
            continue;
        size_t b;
        if (!qf_model_view_exists(&m->d, vw, &p, &b)) {
            uint64_t size;
            char err[400] = "";
            if (b < m->d.n && !file_size(m, b, vw, &size, err, sizeof err))
                snprintf(err, sizeof err, "%s", m->d.f[b].name);
            printf("  %s/  (absent: %s)\n", vw->name, err);
            continue;
        }
        printf("  %s/\n", vw->name);
        for (size_t i = 0; i < m->d.n; i++) {
            uint64_t size = 0;
            char err[400] = "";
            if (!qf_model_file_in_view(&m->d, i, vw, &p))
                continue;
            if (file_size(m, i, vw, &size, err, sizeof err))
                printf("    %-40s %12s  (%s)\n", m->d.f[i].name, "?", err);
            else
                printf("    %-40s %12llu\n", m->d.f[i].name, (unsigned long long)size);
        }
    }
}

int ck_tree(const char *src, const char *views_opt)
{
    size_t nv;
    qf_views(&nv);
    uint64_t mask = nv >= 64 ? ~0ull : (1ull << nv) - 1;
    if (views_opt) {
        mask = 0;
        char *list = strdup(views_opt), *save = NULL;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int i = qf_view_index(t);
            if (i < 0) {
                fprintf(stderr, "quantfs-check: --views: unknown view '%s'\n", t);
                free(list);
                return 2;
            }
            mask |= 1ull << i;
        }
        free(list);
    }
    char **names = NULL;
    size_t n = 0;
    int rc = list_dir(src, false, &names, &n);
    if (rc) {
        fprintf(stderr, "quantfs-check: %s: %s\n", src, strerror(-rc));
        return 2;
    }
    /* BASE+NAME for every adapters/NAME/ of a model directory (adapters at
     * the source root are not paired here) */
    for (size_t i = 0, n0 = n; i < n0; i++) {
        char ap[8192], **ads = NULL;
        size_t na = 0;
        snprintf(ap, sizeof ap, "%s/%s/adapters", src, names[i]);
        if (strchr(names[i], '+') || list_dir(ap, false, &ads, &na))
            continue;
        for (size_t a = 0; a < na; a++) {
            char ad[8192 + 256];
            snprintf(ad, sizeof ad, "%s/%s", ap, ads[a]);
            char **nn = is_file(ad, "adapter_config.json") && is_file(ad, "adapter_model.safetensors") && !strchr(ads[a], '+')
                            ? realloc(names, (n + 1) * sizeof *names)
                            : NULL;
            if (nn && asprintf(&nn[n], "%s+%s", nn[i], ads[a]) >= 0)
                n++;
            if (nn)
                names = nn;
            free(ads[a]);
        }
        free(ads);
    }
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    int status = 0;
    for (size_t i = 0; i < n; i++) {
        struct tmodel m = {0};
        char *plus = strrchr(names[i], '+'), base[4096];
        snprintf(base, sizeof base, "%.*s", plus ? (int)(plus - names[i]) : 0, names[i]);
        char full[8192];
        snprintf(full, sizeof full, "%s/%s", src, names[i]);
        rc = plus && access(full, F_OK) ? model_load(src, base, plus + 1, &m) : model_load(src, names[i], NULL, &m);
        if (!rc && m.d.formats)
            print_model(&m, mask);
        else if (rc && rc != -ENOENT)
            status = 2, fprintf(stderr, "quantfs-check: %s/%s: %s\n", src, names[i], strerror(-rc));
        model_free(&m);
        free(names[i]);
    }
    free(names);
    return status;
}
