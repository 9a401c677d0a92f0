/* ns.c — the namespace: which models and files exist, and snapshots of
 * source files (parse, change detection, layouts). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "quantfs.h"

void qfs_log(struct qfs *q, int prio, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (q->foreground) {
        fputs(prio <= LOG_ERR ? "quantfs: error: " : prio == LOG_WARNING ? "quantfs: warning: " : "quantfs: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
    } else {
        vsyslog(prio, fmt, ap);
    }
    va_end(ap);
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n > k && !strcmp(s + n - k, suf);
}

static int cmp_file(const void *a, const void *b)
{
    return strcmp(((const struct qfs_file *)a)->name, ((const struct qfs_file *)b)->name);
}
static int cmp_model(const void *a, const void *b)
{
    return strcmp(((const struct qfs_model *)a)->name, ((const struct qfs_model *)b)->name);
}

static int add_file(struct qfs_model *m, size_t *cap, const char *name, const char *path)
{
    if (m->n_files == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        struct qfs_file *nf = realloc(m->files, nc * sizeof *nf);
        if (!nf)
            return -ENOMEM;
        m->files = nf;
        *cap = nc;
    }
    struct qfs_file *f = &m->files[m->n_files];
    *f = (struct qfs_file){.name = strdup(name), .path = strdup(path), .is_gguf = has_suffix(name, ".gguf")};
    if (!f->name || !f->path) {
        free(f->name);
        free(f->path);
        return -ENOMEM;
    }
    pthread_mutex_init(&f->mu, NULL);
    atomic_init(&f->open_count, 0);
    m->n_files++;
    if (f->is_gguf)
        m->formats |= QF_FMT_GGUF;
    return 0;
}

/* Fills m with the regular files of directory path (symlinks followed,
 * dot files and sub-directories skipped). */
static int scan_model_dir(struct qfs *q, struct qfs_model *m, const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        qfs_log(q, LOG_WARNING, "skipping %s: %s", path, strerror(errno));
        return 0;
    }
    size_t cap = 0;
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char *p;
        if (asprintf(&p, "%s/%s", path, de->d_name) < 0) {
            rc = -ENOMEM;
            break;
        }
        struct stat st;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
            if (m->n_files >= QFS_MAX_FILES)
                qfs_log(q, LOG_WARNING, "%s: more than %u files, ignoring %s", path, QFS_MAX_FILES, de->d_name);
            else
                rc = add_file(m, &cap, de->d_name, p);
        }
        free(p);
    }
    closedir(d);
    if (m->n_files)
        qsort(m->files, m->n_files, sizeof *m->files, cmp_file);
    return rc;
}

static void free_model(struct qfs_model *m)
{
    for (size_t i = 0; i < m->n_files; i++) {
        struct qfs_file *f = &m->files[i];
        if (f->snap)
            qfs_snap_put(f->snap);
        pthread_mutex_destroy(&f->mu);
        free(f->name);
        free(f->path);
    }
    free(m->files);
    free(m->name);
    free(m->dir);
}

void qfs_free_models(struct qfs *q)
{
    for (size_t i = 0; i < q->n_models; i++)
        free_model(&q->models[i]);
    free(q->models);
    q->models = NULL;
    q->n_models = 0;
}

/* A model is a sub-directory holding at least one convertible file, or a
 * loose NAME.gguf. Everything else in the source root is ignored. */
int qfs_scan(struct qfs *q)
{
    DIR *d = opendir(q->source);
    if (!d)
        return -errno;
    size_t cap = 0;
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char *p;
        if (asprintf(&p, "%s/%s", q->source, de->d_name) < 0) {
            rc = -ENOMEM;
            break;
        }
        struct stat st;
        struct qfs_model m = {0};
        if (stat(p, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                m.name = strdup(de->d_name);
                m.dir = strdup(p);
                rc = m.name && m.dir ? scan_model_dir(q, &m, p) : -ENOMEM;
            } else if (S_ISREG(st.st_mode) && has_suffix(de->d_name, ".gguf")) {
                size_t fcap = 0;
                m.name = strndup(de->d_name, strlen(de->d_name) - strlen(".gguf"));
                rc = m.name ? add_file(&m, &fcap, de->d_name, p) : -ENOMEM;
            }
        }
        free(p);
        if (rc || !m.formats) {
            free_model(&m);
            continue;
        }
        if (q->n_models == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct qfs_model *nm = realloc(q->models, nc * sizeof *nm);
            if (!nm) {
                free_model(&m);
                rc = -ENOMEM;
                break;
            }
            q->models = nm;
            cap = nc;
        }
        if (q->n_models >= QFS_MAX_MODELS) {
            free_model(&m);
            break;
        }
        q->models[q->n_models++] = m;
    }
    closedir(d);
    if (rc)
        return rc;
    qsort(q->models, q->n_models, sizeof *q->models, cmp_model);
    /* "x/" and "x.gguf" would both be model x: keep the first, say so. */
    for (size_t i = 1; i < q->n_models; i++) {
        if (strcmp(q->models[i - 1].name, q->models[i].name))
            continue;
        qfs_log(q, LOG_WARNING, "two sources for model '%s' (a directory and a loose file); ignoring the second",
                q->models[i].name);
        free_model(&q->models[i]);
        memmove(&q->models[i], &q->models[i + 1], (q->n_models - i - 1) * sizeof *q->models);
        q->n_models--;
        i--;
    }
    for (size_t i = 0; i < q->n_models; i++) {
        for (size_t k = 0; k < q->models[i].n_files; k++) {
            q->models[i].files[k].model_idx = i;
            q->models[i].files[k].idx = k;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- snaps */

int qfs_pread_fd(void *ctx, void *buf, size_t len, uint64_t off)
{
    int fd = *(const int *)ctx;
    uint8_t *p = buf;
    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO; /* the file shrank under us */
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

void qfs_snap_put(struct qfs_snap *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t v = 0; v < QFS_MAX_VIEWS; v++)
        qf_layout_free(s->layouts[v]);
    qf_gguf_free(s->gguf);
    if (s->fd >= 0)
        close(s->fd);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static struct qfs_snap *snap_load(struct qfs *q, struct qfs_model *m, struct qfs_file *f, int *err)
{
    struct qfs_snap *s = calloc(1, sizeof *s);
    if (!s) {
        *err = -ENOMEM;
        return NULL;
    }
    atomic_init(&s->refs, 1);
    atomic_init(&s->stale, false);
    s->file = f;
    pthread_mutex_init(&s->mu, NULL);
    for (size_t v = 0; v < QFS_MAX_VIEWS; v++)
        s->fresh[v] = true;
    s->fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0 || fstat(s->fd, &s->st) < 0) {
        *err = -errno;
        qfs_snap_put(s);
        return NULL;
    }
    if (f->is_gguf) {
        int rc = qf_gguf_parse(qfs_pread_fd, &s->fd, (uint64_t)s->st.st_size, &s->gguf, s->err, sizeof s->err);
        if (!rc && s->gguf->convert_err[0])
            snprintf(s->err, sizeof s->err, "%s", s->gguf->convert_err);
        if (rc || s->err[0])
            qfs_log(q, LOG_WARNING, "model '%s': %s: %s; only the f32 view is offered", m->name, f->name, s->err);
    }
    return s;
}

struct qfs_snap *qfs_snap_get(struct qfs *q, struct qfs_model *m, struct qfs_file *f, int *err)
{
    struct stat st;
    pthread_mutex_lock(&f->mu);
    struct qfs_snap *s = f->snap;
    if (stat(f->path, &st) < 0) {
        *err = -errno;
        s = NULL;
    } else if (!s || !same_file(&st, &s->st)) {
        s = snap_load(q, m, f, err);
    } else {
        atomic_fetch_add(&s->refs, 1);
        pthread_mutex_unlock(&f->mu);
        return s;
    }
    /* the source changed (or vanished): retire the old snapshot */
    struct qfs_snap *old = f->snap;
    if (old) {
        qfs_snap_retire(q, old);
        qfs_snap_put(old);
    }
    f->snap = s;
    if (s)
        atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&f->mu);
    return s;
}

bool qfs_same_file(const struct stat *a, const struct stat *b) { return same_file(a, b); }

void qfs_snap_retire(struct qfs *q, struct qfs_snap *s)
{
    if (atomic_exchange(&s->stale, true))
        return;
    struct qfs_file *f = s->file;
    if (atomic_load(&f->open_count))
        qfs_log(q, LOG_ERR, "%s changed or vanished while in use; reads of its views fail with EIO until reopened",
                f->path);
    /* drop what the kernel cached of every view of this file */
    for (size_t v = 0; v < q->n_views; v++)
        qfs_queue_inval(q, qfs_ino_make(f->model_idx, (long)v, (long)f->idx));
}

int qfs_snap_verify(struct qfs *q, struct qfs_snap *s)
{
    struct stat a, b;
    if (!atomic_load(&s->stale) && fstat(s->fd, &a) == 0 && same_file(&a, &s->st) && stat(s->file->path, &b) == 0 &&
        same_file(&b, &s->st))
        return 0;
    qfs_snap_retire(q, s);
    return -EIO;
}

int qfs_snap_layout(struct qfs *q, struct qfs_snap *s, size_t v, struct qf_layout **out)
{
    (void)q;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    if (!s->layouts[v]) {
        if (!s->file->is_gguf || q->views[v].gguf_type == QF_F32) {
            rc = qf_layout_passthrough((uint64_t)s->st.st_size, &s->layouts[v]);
        } else if (!s->gguf || s->err[0]) {
            rc = -ENOENT;
        } else {
            char err[256];
            rc = qf_layout_gguf(s->gguf, &q->views[v], &s->layouts[v], err, sizeof err);
            if (rc)
                qfs_log(q, LOG_ERR, "%s: view %s: %s", s->file->path, q->views[v].name, err);
        }
    }
    *out = s->layouts[v];
    pthread_mutex_unlock(&s->mu);
    return rc;
}

bool qfs_view_available(struct qfs *q, size_t mi, size_t v)
{
    struct qfs_model *m = &q->models[mi];
    const struct qf_view *vw = &q->views[v];
    if (!(q->view_mask & (1u << v)) || !(vw->formats & m->formats))
        return false;
    if (vw->gguf_type == QF_F32)
        return true;
    for (size_t i = 0; i < m->n_files; i++) {
        if (!m->files[i].is_gguf)
            continue;
        int err;
        struct qfs_snap *s = qfs_snap_get(q, m, &m->files[i], &err);
        bool ok = s && s->gguf && !s->err[0];
        qfs_snap_put(s);
        if (!ok)
            return false;
    }
    return true;
}
