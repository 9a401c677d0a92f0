/* ops.c — FUSE low-level operations: one reply per request, read-only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <syslog.h>
#include <unistd.h>

#include "guard.h"
#include "quantfs.h"

#define INO_MODEL_SHIFT 36
#define INO_VIEW_SHIFT 28
#define INO_VIEW_MASK 0xffu
#define INO_FILE_MASK ((1u << 28) - 1)

static void set_read_ahead(struct qfs *q);

static struct qfs *ctx(fuse_req_t req)
{
    struct qfs *q = fuse_req_userdata(req);
    if (atomic_load_explicit(&q->ra_pending, memory_order_relaxed) && atomic_exchange(&q->ra_pending, false))
        set_read_ahead(q);
    return q;
}

/* ------------------------------------------------------ .quantfs/models
 * One entry per model and view a llama.cpp client can load, named
 * MODEL:VIEW, a symbolic link to ../../MODEL/VIEW: the shape of
 * llama-server's --models-dir (router mode; common/preset.cpp
 * load_from_models_dir, v0.5.0): each sub-directory is one model whose
 * first non-mmproj .gguf (or its -00001-of- shard) is loaded, named as the
 * directory. Links, not directories, so the kernel never sees two names for
 * one directory inode; the listing is the live namespace's. */

/* Whether view v of model m holds a GGUF model file (not an adapter). */
static bool router_has(struct qfs *q, size_t m, size_t v)
{
    const struct qfs_model *md = QFS_MODEL(q, m);
    if (atomic_load(&md->gone) || (q->views[v].formats & QF_FMT_LORA) ||
        !qf_view_listed(&q->views[v], md->formats) || !qfs_view_available(q, m, v))
        return false;
    for (size_t i = 0; i < md->n_files; i++)
        if (qf_source_kind(md->files[i].kind)->format == QF_FMT_GGUF && qfs_file_in_view(q, m, i, v))
            return true;
    return false;
}

/* MODEL:VIEW -> model and view (the view is after the last ':', as view
 * names have none and model names may). */
static bool router_parse(struct qfs *q, const char *name, size_t *m, size_t *v)
{
    const char *colon = strrchr(name, ':');
    if (!colon || colon == name || (size_t)(colon - name) >= 4096)
        return false;
    char model[4096];
    memcpy(model, name, (size_t)(colon - name));
    model[colon - name] = 0;
    int mi = qfs_find_model(q, model), vi = qf_view_index(colon + 1);
    if (mi < 0 || vi < 0 || (size_t)vi >= q->n_views || strcmp(q->views[vi].name, colon + 1))
        return false; /* an alias (int4) resolves, but only the listed name is an entry */
    *m = (size_t)mi;
    *v = (size_t)vi;
    return router_has(q, *m, *v);
}

static char *router_target(struct qfs *q, size_t m, size_t v)
{
    char *t = NULL;
    return asprintf(&t, "../../%s/%s", QFS_MODEL(q, m)->name, q->views[v].name) < 0 ? NULL : t;
}

int qfs_decode_ino(struct qfs *q, fuse_ino_t ino, struct qfs_ino *o)
{
    *o = (struct qfs_ino){0};
    if (ino == QFS_INO_ROOT)
        return 0;
    if (ino >= QFS_INO_META && ino <= QFS_INO_MODELS) {
        o->kind = ino == QFS_INO_META ? 1 : ino == QFS_INO_STATS ? 2 : ino == QFS_INO_LOG ? 7 : 8;
        return 0;
    }
    uint64_t m = ino >> INO_MODEL_SHIFT, v = (ino >> INO_VIEW_SHIFT) & INO_VIEW_MASK, f = ino & INO_FILE_MASK;
    if (!m || m > q->n_models)
        return -ENOENT;
    o->m = m - 1;
    if (!v) {
        if ((f == INO_FILE_MASK || f == INO_FILE_MASK - 1) && q->check) { /* MODEL/.check.json, .check.svg */
            o->kind = f == INO_FILE_MASK ? 6 : 10;
            return 0;
        }
        o->kind = f ? -1 : 3;
        return f ? -ENOENT : 0;
    }
    if (v > q->n_views || !qfs_view_available(q, o->m, v - 1))
        return -ENOENT;
    o->v = v - 1;
    if (f == INO_FILE_MASK) {
        o->kind = 9;
        return router_has(q, o->m, o->v) ? 0 : -ENOENT;
    }
    if (!f) {
        o->kind = 4;
        return 0;
    }
    if (f > QFS_MODEL(q, o->m)->n_files || !qfs_file_in_view(q, o->m, f - 1, o->v))
        return -ENOENT;
    o->kind = 5;
    o->f = f - 1;
    return 0;
}

/* --------------------------------------------------------------- stats */

static void tier(struct qf_jdoc *d, const char *n, const struct qc_tier_stats *t)
{
    char k[64];
#define T(key) (snprintf(k, sizeof k, "%s." key, n), k)
    qf_jdoc_int(d, T("hits"), (long long)t->hits);
    qf_jdoc_int(d, T("misses"), (long long)t->misses);
    qf_jdoc_int(d, T("bytes_in"), (long long)t->bytes_in);
    qf_jdoc_int(d, T("bytes_stored"), (long long)t->stored_in);
    qf_jdoc_int(d, T("bytes_out"), (long long)t->bytes_out);
    qf_jdoc_num(d, T("compression_ratio"), t->stored_in ? (double)t->bytes_in / (double)t->stored_in : 0.0);
    qf_jdoc_int(d, T("evictions"), (long long)t->evictions);
    qf_jdoc_int(d, T("checksum_failures"), (long long)t->checksum_failures);
    qf_jdoc_int(d, T("read_errors"), (long long)t->read_errors);
    qf_jdoc_int(d, T("bytes"), (long long)t->bytes);
    qf_jdoc_int(d, T("entries"), (long long)t->entries);
#undef T
}

static char *stats_json(struct qfs *q)
{
    struct qc_stats s;
    qc_stats_get(q->cache, &s);
    struct qf_jdoc *d = qf_jdoc_new();
    if (!d)
        return NULL;
    tier(d, "memory", &s.mem);
    tier(d, "disk", &s.disk);
    tier(d, "shared", &s.shared);
    qf_jdoc_bool(d, "shared.enabled", q->shared_cache != NULL);
    qf_jdoc_str(d, "shared.dir", q->shared_cache);
    qf_jdoc_bool(d, "shared.read_only", q->shared_cache_ro);
    qf_jdoc_bool(d, "shared.storing", s.shared_storing);
    qf_jdoc_int(d, "memory.budget", (long long)q->cache_size);
    qf_jdoc_bool(d, "disk.enabled", q->cache_dir != NULL);
    qf_jdoc_str(d, "disk.dir", q->cache_dir);
    qf_jdoc_bool(d, "disk.storing", s.disk_storing);
    qf_jdoc_int(d, "disk.store_errors", (long long)s.store_errors);
    qf_jdoc_int(d, "hot.hits", (long long)s.hot_hits);
    qf_jdoc_int(d, "hot.waits", (long long)s.waits);
    qf_jdoc_int(d, "hot.bytes", (long long)s.hot_bytes);
    qf_jdoc_int(d, "hot.blocks", (long long)s.hot_blocks);
    qf_jdoc_int(d, "regions.mapped", (long long)s.regions_mapped);
    qf_jdoc_int(d, "regions.mapped_locked", (long long)s.regions_mapped_locked);
    qf_jdoc_int(d, "blocks_computed", (long long)s.computed);
    qf_jdoc_int(d, "bytes_quantized", (long long)s.bytes_filled);
    qf_jdoc_num(d, "quantize_seconds", (double)s.fill_ns / 1e9);
    qf_jdoc_num(d, "compress_seconds", (double)s.compress_ns / 1e9);
    qf_jdoc_int(d, "prefetched", (long long)s.prefetched);
    qf_jdoc_int(d, "fill_errors", (long long)s.fill_errors);
    qf_jdoc_int(d, "errors", (long long)atomic_load(&q->n_errors));
    qf_jdoc_int(d, "reads", (long long)atomic_load(&q->n_reads));
    qf_jdoc_int(d, "readaheads", (long long)atomic_load(&q->n_readaheads));
    qf_jdoc_int(d, "readahead_chunks", (long long)atomic_load(&q->n_ra_chunks));
    qf_jdoc_int(d, "bytes_read", (long long)atomic_load(&q->bytes_read));
    qf_jdoc_int(d, "source_bytes_spliced", (long long)atomic_load(&q->bytes_spliced));
    qf_jdoc_int(d, "source_bytes_mapped", (long long)atomic_load(&q->bytes_mapped));
    qf_jdoc_str(d, "source", q->source);
    qf_jdoc_int(d, "models", (long long)q->n_models);
    qf_jdoc_int(d, "bytes_transient", (long long)s.bytes_transient);
    qf_jdoc_int(d, "blocks_transient", (long long)s.computed_transient);
    /* content addressing: hashes of source ranges computed, found in a tier */
    qf_jdoc_int(d, "layouts.unused_bytes", (long long)atomic_load(&q->idle_layouts)); /* kept within 64 MiB */
    qf_jdoc_int(d, "input_hashes.computed", (long long)s.meta_computed);
    qf_jdoc_int(d, "input_hashes.found", (long long)s.meta_hits);
    qf_jdoc_num(d, "input_hashes.seconds", (double)atomic_load(&q->hash_ns) / 1e9); /* xxh3 alone */
    qf_jdoc_num(d, "input_hashes.fill_seconds", (double)s.meta_ns / 1e9); /* with reads (and cold conversions) */
    qf_jdoc_int(d, "hf_tokenizers_reused", (long long)atomic_load(&q->tok_reused));
    pthread_mutex_lock(&q->fd_mu);
    qf_jdoc_int(d, "source_fds.open", (long long)q->n_fds);
    qf_jdoc_int(d, "source_fds.max", (long long)q->max_fds);
    qf_jdoc_int(d, "source_fds.reopens", (long long)q->fd_reopens);
    qf_jdoc_int(d, "source_fds.evictions", (long long)q->fd_evictions);
    pthread_mutex_unlock(&q->fd_mu);
    qf_jdoc_int(d, "source_timeouts", (long long)atomic_load(&q->io_timeouts));
    qf_jdoc_int(d, "source_calls_blocked", (long long)atomic_load(&q->io_stuck));
    char *out = qf_jdoc_dump(d);
    if (out) { /* a trailing newline, as text files have */
        size_t n = strlen(out);
        char *o2 = realloc(out, n + 2);
        if (o2) {
            o2[n] = '\n';
            o2[n + 1] = 0;
            out = o2;
        }
    }
    return out;
}

/* ---------------------------------------------------------------- attrs */

static void dir_attr(struct qfs *q, fuse_ino_t ino, const struct qfs_ino *d, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_mode = S_IFDIR | 0555;
    st->st_nlink = 2;
    /* a model's directories (its own and its views') take the mode of its
     * source directory, the root the source root's, minus the write bits:
     * a 0700 source directory stays private under allow_other */
    struct qfs_model *m = (d->kind == 3 || d->kind == 4) && QFS_MODEL(q, d->m)->dir ? QFS_MODEL(q, d->m) : NULL;
    struct stat src;
    bool known = false;
    if (!m) {
        known = stat(q->source, &src) == 0;
    } else {
        /* timed on a network source; while it does not answer (at once,
         * once it was known: qfs_src_dir_stat), the last mode seen (never
         * more open than the source was) or none */
        int rc = qfs_src_dir_stat(q, m, &src);
        pthread_mutex_lock(&m->dir_mu);
        if (!rc)
            m->dir_st = src, m->dir_known = true;
        else if ((rc == -ETIMEDOUT || rc == -EAGAIN) && m->dir_known)
            src = m->dir_st, rc = 0;
        pthread_mutex_unlock(&m->dir_mu);
        if (rc == -EAGAIN)
            rc = -ETIMEDOUT;
        known = !rc;
        if (rc == -ETIMEDOUT)
            st->st_mode = S_IFDIR | 0500;
    }
    if (known) {
        st->st_mode = S_IFDIR | (src.st_mode & 0555 & (m ? m->dir_reach : 0777));
        st->st_uid = src.st_uid;
        st->st_gid = src.st_gid;
        st->st_mtim = src.st_mtim;
        st->st_ctim = src.st_ctim;
        st->st_atim = src.st_atim;
    }
}

static void file_attr(fuse_ino_t ino, const struct stat *src, unsigned reach, uint64_t size, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_mode = S_IFREG | (src->st_mode & 0444 & reach);
    st->st_nlink = 1;
    st->st_uid = src->st_uid;
    st->st_gid = src->st_gid;
    st->st_size = (off_t)size;
    st->st_blksize = 1 << 20;
    st->st_blocks = (blkcnt_t)((size + 511) / 512);
    st->st_mtim = src->st_mtim;
    st->st_ctim = src->st_ctim;
    st->st_atim = src->st_atim;
}

/* The generated text files: stats, MODEL/.check.json, .quantfs/log,
 * MODEL/.check.svg. */
static bool is_text(const struct qfs_ino *d) { return d->kind == 2 || d->kind == 6 || d->kind == 7 || d->kind == 10; }

static char *text_of(struct qfs *q, const struct qfs_ino *d)
{
    return d->kind == 2    ? stats_json(q)
           : d->kind == 7  ? qfs_log_text(q)
           : d->kind == 10 ? qfs_check_chart(q, d->m)
                           : qfs_check_text(q, d->m);
}

/* Whether an inode of this kind belongs to a model (d->m is one). */
static bool of_model(const struct qfs_ino *d)
{
    return (d->kind >= 3 && d->kind <= 6) || d->kind == 9 || d->kind == 10;
}

/* Attributes of any inode; for files this builds the layout (header only). */
static int get_attr(struct qfs *q, fuse_ino_t ino, struct stat *st)
{
    struct qfs_ino d;
    int rc = qfs_decode_ino(q, ino, &d);
    if (rc)
        return rc;
    if (is_text(&d)) {
        dir_attr(q, ino, &d, st);
        char *js = text_of(q, &d);
        st->st_mode = S_IFREG | 0444;
        if (d.kind == 7) { /* the daemon's log names sources other users may not see: its own */
            st->st_mode = S_IFREG | 0440;
            st->st_uid = geteuid();
            st->st_gid = getegid();
        }
        st->st_nlink = 1;
        st->st_size = js ? (off_t)strlen(js) : 0;
        free(js);
        return 0;
    }
    if (d.kind == 9) { /* a link: the model directory's owner and times */
        struct qfs_ino md = {.kind = 3, .m = d.m};
        dir_attr(q, ino, &md, st);
        char *t = router_target(q, d.m, d.v);
        st->st_mode = S_IFLNK | 0777;
        st->st_nlink = 1;
        st->st_size = t ? (off_t)strlen(t) : 0;
        free(t);
        return t ? 0 : -ENOMEM;
    }
    if (d.kind != 5) {
        dir_attr(q, ino, &d, st);
        return 0;
    }
    struct qfs_model *m = QFS_MODEL(q, d.m);
    struct qfs_snap *s = qfs_snap_peek(q, m, &m->files[d.f], &rc);
    if (!s)
        return rc;
    uint64_t size;
    rc = qfs_snap_size(q, s, d.v, &size);
    if (!rc)
        file_attr(ino, &s->st, m->files[d.f].reach, size, st);
    qfs_snap_put(s);
    return rc;
}

static void reply_entry(fuse_req_t req, struct qfs *q, fuse_ino_t ino)
{
    struct fuse_entry_param e = {.ino = ino, .attr_timeout = q->timeout, .entry_timeout = q->timeout};
    int rc = get_attr(q, ino, &e.attr);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_entry(req, &e);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct qfs *q = ctx(req);
    struct qfs_ino d;
    /* a model that left the source: nothing new is found in it (open
     * files keep working through their inodes) */
    if (qfs_decode_ino(q, parent, &d) || (of_model(&d) && atomic_load(&QFS_MODEL(q, d.m)->gone))) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    switch (d.kind) {
    case 0:
        if (!strcmp(name, ".quantfs")) {
            reply_entry(req, q, QFS_INO_META);
            return;
        }
        int mi = qfs_find_model(q, name);
        if (mi >= 0) {
            qfs_check_start(q, (size_t)mi);
            reply_entry(req, q, qfs_ino_make((size_t)mi, -1, -1));
            return;
        }
        break;
    case 1:
        if (!strcmp(name, "models")) /* from now on its entries may be cached: inval_links */
            atomic_store(&q->router_seen, true);
        if (!strcmp(name, "stats") || !strcmp(name, "log") || !strcmp(name, "models")) {
            reply_entry(req, q, name[0] == 's' ? QFS_INO_STATS : name[0] == 'l' ? QFS_INO_LOG : QFS_INO_MODELS);
            return;
        }
        break;
    case 8: {
        size_t m, v;
        if (router_parse(q, name, &m, &v)) {
            reply_entry(req, q, qfs_ino_make(m, (long)v, INO_FILE_MASK - 1));
            return;
        }
        break;
    }
    case 3: {
        if (q->check && (!strcmp(name, ".check.json") || !strcmp(name, ".check.svg"))) {
            reply_entry(req, q, qfs_ino_make(d.m, -1, INO_FILE_MASK - (name[7] == 'j' ? 1 : 2)));
            return;
        }
        int v = qf_view_index(name);
        if (v >= 0 && (size_t)v < q->n_views && qfs_view_available(q, d.m, (size_t)v)) {
            reply_entry(req, q, qfs_ino_make(d.m, v, -1));
            return;
        }
        if (v >= 0 && atomic_load(&QFS_MODEL(q, d.m)->stuck)) {
            fuse_reply_err(req, EIO); /* cannot tell while its source does not answer */
            return;
        }
        break;
    }
    case 4: {
        struct qfs_model *m = QFS_MODEL(q, d.m);
        for (size_t i = 0; i < m->n_files; i++) {
            if (!strcmp(m->files[i].name, name) && qfs_file_in_view(q, d.m, i, d.v)) {
                reply_entry(req, q, qfs_ino_make(d.m, (long)d.v, (long)i));
                return;
            }
            if (!strcmp(m->files[i].name, name) && atomic_load(&m->stuck)) {
                fuse_reply_err(req, EIO); /* cannot tell while its source does not answer */
                return;
            }
        }
        break;
    }
    default: fuse_reply_err(req, ENOTDIR); return;
    }
    fuse_reply_err(req, ENOENT);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    struct qfs *q = ctx(req);
    struct qfs_ino d;
    int rc = qfs_decode_ino(q, ino, &d);
    if (!rc && d.kind != 9)
        rc = -EINVAL;
    char *t = rc ? NULL : router_target(q, d.m, d.v);
    if (t)
        fuse_reply_readlink(req, t);
    else
        fuse_reply_err(req, rc ? -rc : ENOMEM);
    free(t);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    struct qfs *q = ctx(req);
    struct stat st;
    int rc = get_attr(q, ino, &st);
    /* a known inode whose source vanished: an I/O error on that file, not
     * "no such file" (lookups of the name do say ENOENT) */
    if (rc == -ENOENT && ino > QFS_INO_MODELS)
        rc = -EIO;
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_attr(req, &st, q->timeout);
}

/* -------------------------------------------------------------- readdir */

struct dirbuf {
    char *p;
    size_t len, cap;
};

static int dirbuf_add(fuse_req_t req, struct dirbuf *b, const char *name, fuse_ino_t ino, mode_t mode)
{
    struct stat st = {.st_ino = ino, .st_mode = mode};
    size_t need = fuse_add_direntry(req, NULL, 0, name, NULL, 0);
    if (b->len + need > b->cap) {
        size_t nc = (b->len + need) * 2;
        char *np = realloc(b->p, nc);
        if (!np)
            return -ENOMEM;
        b->p = np;
        b->cap = nc;
    }
    fuse_add_direntry(req, b->p + b->len, need, name, &st, (off_t)(b->len + need));
    b->len += need;
    return 0;
}

/* Directory listings are small and rebuilt per call; offsets are byte
 * positions in the rebuilt buffer, stable as long as the listing is. */
static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)fi;
    struct qfs *q = ctx(req);
    struct qfs_ino d;
    int rc = qfs_decode_ino(q, ino, &d);
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    struct dirbuf b = {0};
    rc = dirbuf_add(req, &b, ".", ino, S_IFDIR);
    rc |= dirbuf_add(req, &b, "..", QFS_INO_ROOT, S_IFDIR);
    switch (d.kind) {
    case 0:
        rc |= dirbuf_add(req, &b, ".quantfs", QFS_INO_META, S_IFDIR);
        for (size_t i = 0, n = q->n_models; i < n && !rc; i++)
            if (!atomic_load(&QFS_MODEL(q, i)->gone))
                rc |= dirbuf_add(req, &b, QFS_MODEL(q, i)->name, qfs_ino_make(i, -1, -1), S_IFDIR);
        break;
    case 1:
        rc |= dirbuf_add(req, &b, "log", QFS_INO_LOG, S_IFREG);
        rc |= dirbuf_add(req, &b, "models", QFS_INO_MODELS, S_IFDIR);
        rc |= dirbuf_add(req, &b, "stats", QFS_INO_STATS, S_IFREG);
        break;
    case 8:
        for (size_t i = 0, n = q->n_models; i < n && !rc; i++)
            for (size_t v = 0; v < q->n_views && !rc; v++) {
                if (!router_has(q, i, v))
                    continue;
                char *nm = NULL;
                rc |= asprintf(&nm, "%s:%s", QFS_MODEL(q, i)->name, q->views[v].name) < 0
                          ? -ENOMEM
                          : dirbuf_add(req, &b, nm, qfs_ino_make(i, (long)v, INO_FILE_MASK - 1), S_IFLNK);
                free(nm);
            }
        break;
    case 3:
        qfs_check_start(q, d.m);
        if (q->check) {
            rc |= dirbuf_add(req, &b, ".check.json", qfs_ino_make(d.m, -1, INO_FILE_MASK - 1), S_IFREG);
            rc |= dirbuf_add(req, &b, ".check.svg", qfs_ino_make(d.m, -1, INO_FILE_MASK - 2), S_IFREG);
        }
        for (size_t v = 0; v < q->n_views && !rc; v++)
            if (qf_view_listed(&q->views[v], QFS_MODEL(q, d.m)->formats) && qfs_view_available(q, d.m, v))
                rc |= dirbuf_add(req, &b, q->views[v].name, qfs_ino_make(d.m, (long)v, -1), S_IFDIR);
        break;
    case 4: {
        struct qfs_model *m = QFS_MODEL(q, d.m);
        for (size_t i = 0; i < m->n_files && !rc; i++)
            if (qfs_file_in_view(q, d.m, i, d.v))
                rc |= dirbuf_add(req, &b, m->files[i].name, qfs_ino_make(d.m, (long)d.v, (long)i), S_IFREG);
        break;
    }
    default:
        free(b.p);
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    if (rc)
        fuse_reply_err(req, ENOMEM);
    else if ((size_t)off >= b.len)
        fuse_reply_buf(req, NULL, 0);
    else
        fuse_reply_buf(req, b.p + off, b.len - (size_t)off < size ? b.len - (size_t)off : size);
    free(b.p);
}

/* ----------------------------------------------------------- open/read */

struct handle {
    struct handle *prev, *next; /* qfs.handles: freed at teardown if the
                                   kernel never sent their RELEASE */
    struct qfs_snap *snap; /* NULL for the text files */
    struct qf_layout *layout;
    char *text;            /* a text file's contents at open */
    size_t text_len;
    _Atomic uint64_t far;  /* the furthest end of a read so far: sequential detection */
    _Atomic uint64_t ra_to, ra_to_transient; /* the stream's chunks are queued up to here (readahead) */
    size_t view;
};

static void handle_link(struct qfs *q, struct handle *h)
{
    pthread_mutex_lock(&q->handles_mu);
    h->next = q->handles;
    if (h->next)
        ((struct handle *)h->next)->prev = h;
    q->handles = h;
    pthread_mutex_unlock(&q->handles_mu);
}

static void handle_free(struct qfs *q, struct handle *h)
{
    pthread_mutex_lock(&q->handles_mu);
    if (h->prev)
        h->prev->next = h->next;
    else
        q->handles = h->next;
    if (h->next)
        h->next->prev = h->prev;
    pthread_mutex_unlock(&q->handles_mu);
    if (h->snap)
        atomic_fetch_sub(&h->snap->file->open_count, 1);
    if (h->layout)
        qfs_snap_layout_put(q, h->snap, h->view);
    qfs_snap_put(h->snap);
    free(h->text);
    free(h);
}

void qfs_free_handles(struct qfs *q)
{
    while (q->handles)
        handle_free(q, q->handles);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct qfs *q = ctx(req);
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    struct qfs_ino d;
    int rc = qfs_decode_ino(q, ino, &d);
    if (rc || (d.kind != 5 && !is_text(&d))) {
        fuse_reply_err(req, rc ? -rc : EISDIR);
        return;
    }
    struct handle *h = calloc(1, sizeof *h);
    if (!h) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    if (is_text(&d)) {
        h->text = text_of(q, &d);
        h->text_len = h->text ? strlen(h->text) : 0;
        fi->direct_io = 1; /* contents change between opens */
        handle_link(q, h);
        fi->fh = (uint64_t)(uintptr_t)h;
        fuse_reply_open(req, fi);
        return;
    }
    struct qfs_model *m = QFS_MODEL(q, d.m);
    h->view = d.v;
    h->snap = qfs_snap_get(q, m, &m->files[d.f], &rc);
    if (h->snap) /* a stale one: the source changed while open elsewhere */
        rc = atomic_load(&h->snap->stale) ? -EIO : qfs_snap_layout(q, h->snap, d.v, &h->layout);
    if (rc) {
        qfs_snap_put(h->snap);
        free(h);
        fuse_reply_err(req, -rc);
        return;
    }
    /* View bytes are a pure function of the source version, so the page
     * cache may keep them across opens (and mmap works). The first open of a
     * new source version drops whatever the kernel cached for the old one. */
    pthread_mutex_lock(&h->snap->mu);
    fi->keep_cache = !h->snap->fresh[d.v];
    h->snap->fresh[d.v] = false;
    pthread_mutex_unlock(&h->snap->mu);
    atomic_fetch_add(&h->snap->file->open_count, 1);
    handle_link(q, h);
    fi->fh = (uint64_t)(uintptr_t)h;
    fuse_reply_open(req, fi);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    handle_free(ctx(req), (struct handle *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

/* ------------------------------------------------- content addressing
 *
 * A stored chunk is keyed by what it is made of (cache/FORMAT.md): the
 * xxh3-128 of its input bytes (qf_conv_chunk_src) and codec's identity of
 * the conversion, so daemons, paths and models that convert the same bytes
 * the same way share its block: two mounts of one store, an rsync'd copy on
 * another node, a fine-tune that kept its base's embeddings, a merged
 * view's untouched tensors. The input's hash is itself a 16-byte QC_META
 * block keyed by the input's place in the source version (inode, size,
 * mtime, ctime, header hash, range: what keys were before): computed once
 * per version and kept in the tiers, so a restart, or a node that mounts
 * the same export (same inode and times), resolves a chunk's key without
 * reading the source. The block's fill hashes the very bytes it converts
 * and refuses them if they are not the ones the key names.
 * f16/bf16/f32 output is never stored (QC_TRANSIENT) and keeps the place
 * key: hashing would cost more than converting. */

/* Everything a fill needs; prefetch jobs own a copy (and a snapshot ref). */
struct fill_arg {
    struct qfs *q;
    struct qfs_snap *snap;
    const struct qf_extent *e;
    uint64_t chunk;
    size_t len;         /* the chunk's output bytes */
    bool verify;        /* content-keyed: the input must hash to want */
    struct qc_key want;
    const uint8_t *in;  /* the input, read already (fill_hash_convert), or NULL */
    void *in_scratch;   /* and the f32 buffer to convert it with */
    struct qc_block *got; /* fill_hash_convert: the chunk's block, referenced */
    long held_view;     /* prefetch jobs: the view whose layout (e points into it) they hold a use of, or -1 */
    bool in_mapped;     /* in is the source's mapping (qfs_src_map), not a copy */
};

enum { KEY_PLACE = 1, KEY_INPUT = 2, KEY_CONTENT = 3 }; /* key domains */

/* The source version and the input range of chunk c. */
static void place_words(const struct qfs_snap *s, const struct qf_extent *e, uint64_t c, uint64_t w[9])
{
    qf_conv_chunk_src(e, c, &w[7], &w[8]);
    w[0] = (uint64_t)s->st.st_ino, w[1] = (uint64_t)s->st.st_size;
    w[2] = (uint64_t)s->st.st_mtim.tv_sec, w[3] = (uint64_t)s->st.st_mtim.tv_nsec;
    w[4] = (uint64_t)s->st.st_ctim.tv_sec, w[5] = (uint64_t)s->st.st_ctim.tv_nsec;
    w[6] = s->hdr_hash;
}

/* A transient chunk: its place (not st_dev, which differs between machines)
 * and codec's identity of the conversion. */
static struct qc_key place_key(const struct qfs_snap *s, const struct qf_extent *e, uint64_t c)
{
    uint64_t k[10 + QF_CHUNK_ID_WORDS] = {KEY_PLACE};
    place_words(s, e, c, k + 1);
    qf_conv_chunk_id(e, c, k + 10);
    return qc_key_make(k, sizeof k);
}

/* The QC_META block holding the hash of chunk c's input. */
static struct qc_key input_key(const struct qfs_snap *s, const struct qf_extent *e, uint64_t c)
{
    uint64_t k[10] = {KEY_INPUT};
    place_words(s, e, c, k + 1);
    return qc_key_make(k, sizeof k);
}

static struct qc_key content_key(struct qc_key h, const struct qf_extent *e, uint64_t c)
{
    uint64_t k[3 + QF_CHUNK_ID_WORDS] = {KEY_CONTENT, h.lo, h.hi};
    qf_conv_chunk_id(e, c, k + 3);
    return qc_key_make(k, sizeof k);
}

/* The hash block's bytes: lo then hi, little-endian (peers may share it). */
static void hash_put(uint8_t *p, struct qc_key h)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(h.lo >> 8 * i), p[8 + i] = (uint8_t)(h.hi >> 8 * i);
}

static struct qc_key hash_get(const uint8_t *p)
{
    struct qc_key h = {0, 0};
    for (int i = 0; i < 8; i++)
        h.lo |= (uint64_t)p[i] << 8 * i, h.hi |= (uint64_t)p[8 + i] << 8 * i;
    return h;
}

/* Bytes read from a snapshot count only if it is still the source's
 * current version and was never found stale: a source rewritten in place
 * while it was read (same inode) gives a mix of versions. */
static int snap_ok(struct qfs_snap *s, int rc)
{
    return rc || (!atomic_load(&s->stale) && qfs_snap_current(s)) ? rc : -EIO;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Fill of an input's hash block: reads the range in scratch-sized pieces. */
static int fill_hash(void *arg, uint8_t *dst, size_t len, void *scratch)
{
    struct fill_arg *a = arg;
    uint64_t off, n;
    qf_conv_chunk_src(a->e, a->chunk, &off, &n);
    if (len != 16)
        return -EINVAL;
    struct qc_hasher *h = qc_hasher_new();
    if (!h)
        return -ENOMEM;
    int rc = 0;
    for (uint64_t done = 0; done < n && !rc; done += QF_CONV_SCRATCH_BYTES) {
        size_t k = (size_t)(n - done < QF_CONV_SCRATCH_BYTES ? n - done : QF_CONV_SCRATCH_BYTES);
        if (!(rc = a->snap->rd(a->snap->rdctx, scratch, k, off + done))) {
            uint64_t t0 = mono_ns();
            qc_hasher_update(h, scratch, k);
            atomic_fetch_add(&a->q->hash_ns, mono_ns() - t0);
        }
    }
    if (!rc)
        hash_put(dst, qc_hasher_digest(h));
    qc_hasher_free(h);
    return snap_ok(a->snap, rc);
}

/* A reader that hashes what it reads (qf_conv_chunk reads its input in
 * one call). */
struct hashing_rd {
    qf_pread_fn rd;
    void *ctx;
    struct qc_key got;
    unsigned calls;
};

static int hashing_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
    struct hashing_rd *h = ctx;
    int rc = h->rd(h->ctx, buf, len, off);
    if (!rc) {
        h->got = qc_key_make(buf, len);
        h->calls++;
    }
    return rc;
}

/* Pure computation on a chunk's mapped input (qfs_guard): its hash
 * before (pre), the conversion (dst, unless NULL), its hash after (post).
 * A copy is converted from the very bytes it was hashed from; a mapping
 * can change between two reads of it (a source rewritten in place), so a
 * content-keyed conversion from one counts only if the input hashes to
 * the key both before and after it. */
struct mapped_job {
    const struct qf_extent *e;
    uint64_t chunk;
    const uint8_t *in;
    size_t in_len;
    uint8_t *dst;
    void *scratch;
    bool pre, post;
    struct qc_key pre_h, post_h;
};

static int mapped_run(void *arg)
{
    struct mapped_job *j = arg;
    int rc = 0;
    if (j->pre)
        j->pre_h = qc_key_make(j->in, j->in_len);
    if (j->dst)
        rc = qf_conv_chunk_from(j->e, j->chunk, j->in, j->dst, j->scratch, false);
    if (!rc && j->post)
        j->post_h = qc_key_make(j->in, j->in_len);
    return rc;
}

/* Whether chunk c's input can be mapped rather than read: a local source
 * read as it is (not through the HF converter) and a chunk whose
 * conversion allocates nothing given scratch (codec.h, qf_conv_chunk_from),
 * as qfs_guard requires. */
static bool mappable(const struct fill_arg *a, const void *scratch)
{
    return scratch && a->q->map_reads && a->snap->rd == qfs_src_pread && a->e->chunk_elems <= QF_CHUNK_ELEMS;
}

static int changed_while_converted(struct fill_arg *a)
{
    qfs_log(a->q, LOG_WARNING, "%s: source changed while chunk %llu of a view was converted; read again",
            a->snap->file->path, (unsigned long long)a->chunk);
    return -EIO;
}

static int fill_chunk(void *arg, uint8_t *dst, size_t len, void *scratch)
{
    (void)len;
    struct fill_arg *a = arg;
    bool map = a->in ? a->in_mapped : mappable(a, scratch);
    uint64_t off = 0, n = 0; /* the input's source range, where it is mapped */
    if (map)
        qf_conv_chunk_src(a->e, a->chunk, &off, &n);
    if (a->in && map) { /* converted if the input still hashes to its key */
        struct mapped_job j = {a->e, a->chunk, a->in, (size_t)n, dst, a->in_scratch, false, true, {0, 0}, {0, 0}};
        int rc = qfs_guard(mapped_run, &j);
        if (!rc && !qc_key_eq(j.post_h, a->want))
            rc = changed_while_converted(a);
        return snap_ok(a->snap, rc);
    }
    if (a->in) /* converted from the bytes its key was hashed from */
        return snap_ok(a->snap, qf_conv_chunk_from(a->e, a->chunk, a->in, dst, a->in_scratch, false));
    if (map) {
        struct qfs_map m;
        int rc = qfs_src_map(&a->snap->src, off, (size_t)n, &m);
        if (rc != -EAGAIN) {
            if (rc)
                return snap_ok(a->snap, rc);
            struct mapped_job j = {a->e, a->chunk, m.p, (size_t)n, dst, scratch, a->verify, a->verify, {0, 0}, {0, 0}};
            rc = qfs_guard(mapped_run, &j);
            qfs_src_unmap(&m);
            if (!rc && a->verify && (!qc_key_eq(j.pre_h, a->want) || !qc_key_eq(j.post_h, a->want)))
                rc = changed_while_converted(a);
            return snap_ok(a->snap, rc);
        }
    }
    struct hashing_rd h = {a->snap->rd, a->snap->rdctx, {0, 0}, 0};
    int rc = a->verify ? qf_conv_chunk(a->e, a->chunk, hashing_pread, &h, dst, scratch, false)
                       : qf_conv_chunk(a->e, a->chunk, a->snap->rd, a->snap->rdctx, dst, scratch, false);
    /* the bytes converted are not the ones the key was made from: the
     * source changed between the two reads; never stored under that key */
    if (!rc && a->verify && (h.calls != 1 || !qc_key_eq(h.got, a->want)))
        rc = changed_while_converted(a);
    return snap_ok(a->snap, rc);
}

/* Fill of an input's hash block on a cold read: the input is read once,
 * into the upper half of scratch, hashed, and the chunk converted from
 * those very bytes (f32 in the lower half; an F32 input in place) and
 * fetched (a->got: a tier may hold it already, made by another node)
 * before the hash is published: one read of the source where hashing and
 * converting separately would take two. Larger inputs (row kinds' wide
 * chunks) are hashed in pieces and read again by the conversion. */
static int fill_hash_convert(void *arg, uint8_t *dst, size_t len, void *scratch)
{
    struct fill_arg *a = arg;
    uint64_t off, n;
    qf_conv_chunk_src(a->e, a->chunk, &off, &n);
    const size_t half = QF_CONV_SCRATCH_BYTES / 2;
    if (n > half || a->e->chunk_elems > QF_CHUNK_ELEMS || len != 16)
        return fill_hash(arg, dst, len, scratch);
    const uint8_t *in = (uint8_t *)scratch + half;
    struct qfs_map m = {NULL, NULL, 0};
    int rc = mappable(a, scratch) ? qfs_src_map(&a->snap->src, off, (size_t)n, &m) : -EAGAIN;
    if (rc == -EAGAIN)
        rc = a->snap->rd(a->snap->rdctx, (uint8_t *)scratch + half, (size_t)n, off);
    else if (!rc)
        in = m.p; /* no copy: hashed and converted where the page cache holds it */
    if ((rc = snap_ok(a->snap, rc)))
        return rc;
    uint64_t t0 = mono_ns();
    struct mapped_job j = {a->e, a->chunk, in, (size_t)n, NULL, NULL, true, false, {0, 0}, {0, 0}};
    if ((rc = m.base ? qfs_guard(mapped_run, &j) : mapped_run(&j))) {
        qfs_src_unmap(&m);
        return snap_ok(a->snap, rc);
    }
    atomic_fetch_add(&a->q->hash_ns, mono_ns() - t0);
    struct qc_key h = j.pre_h;
    hash_put(dst, h);
    struct fill_arg c = *a;
    c.in = in, c.in_scratch = scratch, c.in_mapped = m.base != NULL, c.verify = false, c.want = h;
    /* a failed conversion (NaN in a validated tensor) leaves a->got NULL:
     * the hash stands, and the reader's own get reports the error */
    if (qc_getf(a->q->cache, content_key(h, a->e, a->chunk), a->len, QC_NOSCRATCH, fill_chunk, &c, &a->got))
        a->got = NULL;
    qfs_src_unmap(&m);
    return 0;
}

static void prefetch_done(void *arg)
{
    struct fill_arg *a = arg;
    if (a->got)
        qc_release(a->q->cache, a->got);
    if (a->held_view >= 0)
        qfs_snap_layout_put(a->q, a->snap, (size_t)a->held_view);
    qfs_snap_put(a->snap);
    free(a);
}

/* After a queued input hash (found, computed or dropped): queue the chunk
 * itself if the hash is known now. Runs on a worker, or on the reader when
 * the job was dropped. */
static void hashed_done(void *arg)
{
    struct fill_arg *a = arg;
    uint8_t hb[16];
    if (a->got || qc_peek(a->q->cache, input_key(a->snap, a->e, a->chunk), hb, sizeof hb)) {
        prefetch_done(a);
        return;
    }
    a->want = hash_get(hb);
    a->verify = true;
    qc_prefetchf(a->q->cache, content_key(a->want, a->e, a->chunk), a->len, 0, fill_chunk, a, prefetch_done);
}

/* f16/bf16/f32 output is cheaper to convert again than to keep in a tier
 * (cache.h, QC_TRANSIENT; bench/RESULTS.md measures it). */
static unsigned chunk_flags(const struct qf_extent *e)
{
    const struct qf_type_info *t = qf_type_get(e->dst_type);
    return t && t->is_source ? QC_TRANSIENT : 0;
}

/* The key of chunk c's block, and for a content-keyed one the input hash
 * its fill must see (a->want). lookup: from the tiers only (-ENOENT if the
 * input was never hashed); else hashed now if need be, and then the block
 * made too (a->got, referenced, when it is: fill_hash_convert). */
static int chunk_key(struct fill_arg *a, bool lookup, struct qc_key *key)
{
    if (chunk_flags(a->e)) { /* never stored: keyed by its place */
        a->verify = false;
        *key = place_key(a->snap, a->e, a->chunk);
        return 0;
    }
    /* a hash the hot tier holds is copied out in one hold of the cache's
     * lock (a get and a release take two): one read's chunks are mostly
     * there, hashed by the workers that converted them */
    struct qc_key ik = input_key(a->snap, a->e, a->chunk);
    uint8_t hb[16];
    if (qc_peek(a->q->cache, ik, hb, sizeof hb)) {
        struct qc_block *b;
        int rc = qc_getf(a->q->cache, ik, 16, QC_META, lookup ? NULL : fill_hash_convert, a, &b);
        if (rc)
            return rc;
        memcpy(hb, qc_block_data(b), sizeof hb);
        qc_release(a->q->cache, b);
    }
    a->want = hash_get(hb);
    a->verify = true;
    *key = content_key(a->want, a->e, a->chunk);
    return 0;
}

/* A read reply under construction: an iovec pointing into the layout's
 * header bytes, a shared zero page, one buffer for bytes copied from the
 * source, and cached blocks, which stay referenced until the reply is sent
 * (no copy of converted data). */
struct reply {
    struct qfs_snap *snap; /* with a use of view's layout (its header bytes): the handle's may go first */
    size_t view;
    struct iovec *iov;
    int *fd;               /* per iov: the source descriptor its bytes are
                            * spliced from (iov_base is then the offset), or -1 */
    size_t n, cap;
    int src_fd;            /* held (qfs_src_take_local) while >= 0 */
    size_t fd_bytes;
    struct qc_block **held;
    size_t nheld, heldcap;
    uint8_t *srcbuf; /* sized for the whole request */
    size_t srcused, total;
    struct qfs_pipe *pipe; /* the whole reply, staged (stage_reply), or NULL */
};

static const uint8_t zero_page[1 << 16];

static int add_buf(struct reply *r, const void *p, size_t len, int fd)
{
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 16;
        struct iovec *ni = realloc(r->iov, nc * sizeof *ni);
        if (ni)
            r->iov = ni;
        int *nf = ni ? realloc(r->fd, nc * sizeof *nf) : NULL;
        if (!nf)
            return -ENOMEM;
        r->fd = nf;
        r->cap = nc;
    }
    r->fd[r->n] = fd;
    r->iov[r->n++] = (struct iovec){(void *)p, len};
    return 0;
}

static int add_iov(struct reply *r, const void *p, size_t len) { return add_buf(r, p, len, -1); }

static int hold(struct reply *r, struct qc_block *b)
{
    if (r->nheld == r->heldcap) {
        size_t nc = r->heldcap ? r->heldcap * 2 : 8;
        struct qc_block **nh = realloc(r->held, nc * sizeof *nh);
        if (!nh)
            return -ENOMEM;
        r->held = nh;
        r->heldcap = nc;
    }
    r->held[r->nheld++] = b;
    return 0;
}

static void reply_free(struct qfs *q, struct reply *r)
{
    qc_release_n(q->cache, r->held, r->nheld);
    if (r->src_fd >= 0)
        qfs_src_give(&r->snap->src);
    free(r->held);
    free(r->iov);
    free(r->fd);
    free(r->srcbuf);
    qfs_snap_layout_put(q, r->snap, r->view);
    qfs_snap_put(r->snap);
}

/* len bytes of the read's source at off, copied into the request's own
 * buffer (sized for the whole reply on first use), at *at: 0, -ENOMEM, or
 * the snapshot reader's -errno (-EIO where the source ends first). */
static int copy_src(struct reply *r, uint64_t off, size_t len, uint8_t **at)
{
    if (!r->srcbuf && !(r->srcbuf = malloc(r->total)))
        return -ENOMEM;
    *at = r->srcbuf + r->srcused;
    r->srcused += len;
    return r->snap->rd(r->snap->rdctx, *at, len, off);
}

struct gather_ctx {
    struct qfs *q;
    struct qfs_snap *snap;
    struct reply *r;
};

/* One piece of a read, from the one walk over the layout (codec). */
static int gather_piece(void *arg, const struct qf_piece *p)
{
    struct gather_ctx *g = arg;
    struct reply *r = g->r;
    const struct qf_extent *e = p->e;
    int rc = 0;
    switch (e->kind) {
    case QF_EXT_MEM: return add_iov(r, e->mem + p->rel, (size_t)p->len);
    case QF_EXT_ZERO:
        for (uint64_t k = 0; k < p->len && !rc; k += sizeof zero_page)
            rc = add_iov(r, zero_page, (size_t)(p->len - k < sizeof zero_page ? p->len - k : sizeof zero_page));
        return rc;
    case QF_EXT_SRC:
        /* bytes of a local source as they are: spliced from its page
         * cache into the reply (no copy through this process) */
        if (g->q->splice && g->snap->rd == qfs_src_pread && r->src_fd != -2) {
            if (r->src_fd < 0 && (r->src_fd = qfs_src_take_local(&g->snap->src)) == -EAGAIN)
                r->src_fd = -2; /* timed: read it below */
            else if (r->src_fd < 0)
                return r->src_fd = -1, -EIO;
            if (r->src_fd >= 0) {
                r->fd_bytes += (size_t)p->len;
                return add_buf(r, (void *)(uintptr_t)(e->src_off + p->rel), (size_t)p->len, r->src_fd);
            }
        }
        uint8_t *at = NULL;
        if (!(rc = copy_src(r, e->src_off + p->rel, (size_t)p->len, &at)))
            rc = add_iov(r, at, (size_t)p->len);
        return rc;
    default: break;
    }
    struct fill_arg a = {g->q, g->snap, e, p->chunk, (size_t)p->chunk_len, false, {0, 0}, NULL, NULL, NULL, -1, false};
    struct qc_block *b;
    struct qc_key key;
    if ((rc = chunk_key(&a, false, &key)))
        return rc;
    if (a.got) /* made while its input was hashed */
        b = a.got;
    else if ((rc = qc_getf(g->q->cache, key, (size_t)p->chunk_len, chunk_flags(e), fill_chunk, &a, &b)))
        return rc;
    if ((rc = hold(r, b))) {
        qc_release(g->q->cache, b);
        return rc;
    }
    return add_iov(r, qc_block_data(b) + (p->rel - p->chunk_off), (size_t)p->len);
}

struct ra_ctx {
    struct qfs *q;
    struct handle *h;
    uint64_t from, to, from_t, to_t; /* what to queue: stored chunks, transient ones */
};

/* Queue one converted chunk for the workers (each chunk is one piece or
 * the first of several: only a piece starting a chunk's range queues it). */
static int readahead_piece(void *arg, const struct qf_piece *p)
{
    struct ra_ctx *c = arg;
    if (p->e->kind != QF_EXT_CONV)
        return 0;
    /* transient chunks no further ahead than readahead_transient_mb:
     * evicted before they are read, they would be converted twice */
    bool transient = chunk_flags(p->e);
    uint64_t from = transient ? c->from_t : c->from, to = transient ? c->to_t : c->to;
    if (p->off < from || p->off >= to || (p->rel != p->chunk_off && p->off != from))
        return 0;
    atomic_fetch_add(&c->q->n_ra_chunks, 1);
    struct fill_arg *a = malloc(sizeof *a);
    if (!a)
        return -ENOMEM;
    *a = (struct fill_arg){c->q,  c->h->snap, p->e, p->chunk, (size_t)p->chunk_len, false, {0, 0}, NULL, NULL,
                           NULL, (long)c->h->view, false};
    atomic_fetch_add(&c->h->snap->refs, 1);
    qfs_snap_layout_hold(c->h->snap, c->h->view); /* a->e points into it; the handle may close first */
    if (transient) {
        struct qc_key key;
        chunk_key(a, true, &key);
        qc_prefetchf(c->q->cache, key, a->len, QC_TRANSIENT, fill_chunk, a, prefetch_done);
        return 0;
    }
    /* content-keyed: the input's hash first, unless the hot tier has it
     * (no tier lookups on the reader's thread), then the chunk */
    uint8_t hb[16];
    if (!qc_peek(c->q->cache, input_key(a->snap, a->e, a->chunk), hb, sizeof hb)) {
        a->want = hash_get(hb);
        a->verify = true;
        qc_prefetchf(c->q->cache, content_key(a->want, a->e, a->chunk), a->len, 0, fill_chunk, a, prefetch_done);
    } else {
        qc_prefetchf(c->q->cache, input_key(a->snap, a->e, a->chunk), 16, QC_META, fill_hash_convert, a,
                     hashed_done);
    }
    return 0;
}

/* Moves a stream's mark up to to: where queuing starts now (to: nothing
 * left to queue). */
static uint64_t ra_advance(_Atomic uint64_t *mark, uint64_t off, uint64_t to)
{
    uint64_t from = atomic_load(mark);
    do {
        if (from >= to)
            return to;
    } while (!atomic_compare_exchange_weak(mark, &from, to));
    return from > off ? from : off;
}

/* Queue the converted chunks in [off, off + window) for the workers that
 * no earlier read of the stream queued. Each chunk is queued once per
 * pass: queuing the whole window on every read queued each chunk 16 times
 * at the default window (128 at readahead=128), every time taking the
 * cache's lock, and a chunk that had left the hot tier came back (its
 * frame checked, and copied) only to push another one out: a q8_0 read
 * took 3.7 times the CPU at readahead=128 on 16 cores (bench/RESULTS.md). */
static void schedule_readahead(struct qfs *q, struct handle *h, uint64_t off)
{
    struct ra_ctx c = {q, h, 0, off + ((uint64_t)q->readahead_mb << 20), 0,
                       off + ((uint64_t)q->readahead_transient_mb << 20)};
    atomic_fetch_add(&q->n_readaheads, 1);
    c.from = ra_advance(&h->ra_to, off, c.to);
    c.from_t = ra_advance(&h->ra_to_transient, off, c.to_t);
    uint64_t lo = c.from < c.from_t ? c.from : c.from_t, hi = c.to > c.to_t ? c.to : c.to_t;
    if (c.from == c.to && c.from_t == c.to_t)
        return; /* queued by the stream's reads before */
    qf_layout_walk(h->layout, lo, hi - lo, readahead_piece, &c);
}

/* A reply with a local source's bytes in it, staged whole in this
 * thread's pipe (pipe.h: each length checked, so a source cut short since
 * the gather fails here rather than making libfuse send a short reply):
 * 0, or -EIO if the source ended early. Where it cannot be staged (no
 * room, no pipe, a filesystem without splice) the source's pieces are
 * copied instead, as -o no_splice reads them. */
static int stage_reply(struct qfs *q, struct reply *r)
{
    struct qfs_pipe *p = qfs_pipe_get(&q->pipes);
    /* a pipe too small (a privileged one made smaller,
     * fs.pipe-user-pages-soft reached) is kept and the reply copied, not
     * staged and thrown away */
    int rc = p && qfs_pipe_fits(p, r->total, r->n) ? 0 : -EAGAIN;
    if (rc)
        p = NULL;
    for (size_t i = 0; i < r->n && !rc; i++)
        rc = r->fd[i] >= 0 ? qfs_pipe_splice(p, r->fd[i], (uint64_t)(uintptr_t)r->iov[i].iov_base, r->iov[i].iov_len)
                           : qfs_pipe_write(p, r->iov[i].iov_base, r->iov[i].iov_len);
    if (!rc) {
        r->pipe = p;
        return 0;
    }
    if (p)
        qfs_pipe_reset(&q->pipes, p);
    if (rc == -EIO)
        return rc;
    rc = 0;
    for (size_t i = 0; i < r->n && !rc; i++) {
        uint8_t *at = NULL;
        if (r->fd[i] < 0)
            continue;
        rc = copy_src(r, (uint64_t)(uintptr_t)r->iov[i].iov_base, r->iov[i].iov_len, &at);
        r->iov[i].iov_base = at;
        r->fd[i] = -1;
    }
    r->fd_bytes = 0;
    return rc;
}

/* The reply: by writev when it is all memory, else from the pipe it was
 * staged in (libfuse moves the pipe's buffers into its own and on to
 * /dev/fuse: the source's bytes are never copied in this process). */
static void send_reply(fuse_req_t req, struct qfs *q, struct reply *r)
{
    if (!r->pipe) {
        fuse_reply_iov(req, r->iov, (int)r->n);
        return;
    }
    struct fuse_bufvec bv = FUSE_BUFVEC_INIT(r->pipe->used);
    bv.buf[0] = (struct fuse_buf){.size = r->pipe->used, .flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_RETRY, .fd = r->pipe->fd[0]};
    fuse_reply_data(req, &bv, 0);
    /* a failed send (the reader gone) can leave bytes behind */
    if (!qfs_pipe_drained(r->pipe))
        qfs_pipe_reset(&q->pipes, r->pipe);
    r->pipe = NULL;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)ino;
    struct qfs *q = ctx(req);
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    /* A reply must own every byte it points to: once it is written, the
     * reader may close the file and release() free h while the reply call
     * is still returning. */
    if (h->text) {
        size_t o = (size_t)off < h->text_len ? (size_t)off : h->text_len;
        size_t n = h->text_len - o < size ? h->text_len - o : size;
        char *copy = malloc(n ? n : 1);
        if (!copy) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
        memcpy(copy, h->text + o, n);
        fuse_reply_buf(req, copy, n);
        free(copy);
        return;
    }
    uint64_t fsize = h->layout->size;
    if (off < 0 || (uint64_t)off >= fsize) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    if (size > fsize - (uint64_t)off)
        size = (size_t)(fsize - (uint64_t)off);
    struct reply r = {.snap = h->snap, .view = h->view, .src_fd = -1, .total = size};
    /* the reply points into the layout: RELEASE of this very handle may
     * come while it is still being sent (the client has its bytes) */
    atomic_fetch_add(&h->snap->refs, 1);
    qfs_snap_layout_hold(h->snap, h->view);
    int rc = qfs_snap_verify(q, h->snap);
    if (!rc) {
        struct gather_ctx g = {q, h->snap, &r};
        rc = qf_layout_walk(h->layout, (uint64_t)off, size, gather_piece, &g);
    }
    if (!rc && r.fd_bytes)
        rc = stage_reply(q, &r);
    /* checked again after (after staging: what is in the pipe is what is
     * sent): a source rewritten mid-read must not leak out */
    if (!rc)
        rc = qfs_snap_verify(q, h->snap);
    atomic_fetch_add(&q->n_reads, 1);
    if (rc && rc != -EIO && qfs_snap_verify(q, h->snap))
        rc = -EIO; /* the source changed under the read: that is the error, not what it read */
    if (rc) {
        atomic_fetch_add(&q->n_errors, 1);
        if (rc == -EBADMSG)
            qfs_log(q, LOG_ERR, "read %s view %s at %lld: the source holds NaN or Inf, which llama-quantize refuses",
                    h->snap->file->path, q->views[h->view].name, (long long)off);
        else if (rc != -EIO)
            qfs_log(q, LOG_ERR, "read %s at %lld: %s", h->snap->file->path, (long long)off, strerror(-rc));
        fuse_reply_err(req, rc == -ENOMEM ? ENOMEM : EIO);
        if (r.pipe)
            qfs_pipe_reset(&q->pipes, r.pipe);
        reply_free(q, &r);
        return;
    }
    atomic_fetch_add(&q->bytes_read, size);
    /* Before the reply: once it is sent, release() may free h. A read that
     * starts within the read-ahead window of the furthest read so far is
     * the sequential stream: the kernel sends up to 8 of them at once and
     * they finish in any order, so "starts where the last one ended" held
     * for 22% of a cold read's requests (measured) and the workers sat idle
     * while session threads converted their requests' chunks one by one. */
    uint64_t end = (uint64_t)off + size, far = atomic_load(&h->far);
    uint64_t window = ((uint64_t)q->readahead_mb << 20) + qfs_kernel_readahead(q);
    if ((uint64_t)off + window >= far && (uint64_t)off <= far + window) {
        while (far < end && !atomic_compare_exchange_weak(&h->far, &far, end))
            ;
        if (q->readahead_mb)
            schedule_readahead(q, h, end);
    } else {
        atomic_store(&h->far, end); /* a jump (a second pass, a seek): a stream may start here */
        atomic_store(&h->ra_to, 0);
        atomic_store(&h->ra_to_transient, 0);
    }
    size_t view = h->view; /* h may be freed once the reply is sent; r holds the snapshot */
    bool spliced = r.pipe;
    if (spliced)
        atomic_fetch_add(&q->bytes_spliced, r.fd_bytes);
    send_reply(req, q, &r);
    /* the pipe holds the source's pages, not a copy of them: a source
     * rewritten in place after the check above and before libfuse's copy
     * into the request (the descriptor's size or mtime moved; not ctime,
     * which an unlink or a rename after the read moves too) is found
     * here, too late to refuse this read but said, and every later one
     * gets EIO (-o no_splice copies before it checks). A page cut away
     * in that window reads as zeros (measured, ext4 and tmpfs). */
    struct stat now;
    const struct stat *was = &r.snap->src.st;
    if (spliced &&
        (fstat(r.src_fd, &now) || now.st_size != was->st_size || now.st_mtim.tv_sec != was->st_mtim.tv_sec ||
         now.st_mtim.tv_nsec != was->st_mtim.tv_nsec) &&
        qfs_snap_verify(q, r.snap))
        qfs_log(q, LOG_ERR, "%s changed while a read of it (view %s, at %lld) was being sent: that read may hold "
                "bytes of two versions; the file now fails with EIO until reopened", r.snap->file->path,
                q->views[view].name, (long long)off);
    reply_free(q, &r);
}

/* -------------------------------------------------------------- xattrs */

/* user.quantfs.source: absolute source path; user.quantfs.view: view name. */
static int xattr_value(struct qfs *q, fuse_ino_t ino, const char *name, const char **val)
{
    struct qfs_ino d;
    int rc = qfs_decode_ino(q, ino, &d);
    if (rc)
        return rc;
    if (d.kind != 4 && d.kind != 5)
        return -ENODATA;
    if (!strcmp(name, "user.quantfs.view")) {
        *val = q->views[d.v].name;
        return 0;
    }
    if (!strcmp(name, "user.quantfs.source") && d.kind == 5) {
        *val = QFS_MODEL(q, d.m)->files[d.f].path;
        return 0;
    }
    return -ENODATA;
}

static void reply_data(fuse_req_t req, const char *data, size_t n, size_t size)
{
    if (!size)
        fuse_reply_xattr(req, n);
    else if (size < n)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, data, n);
}

/* user.quantfs.cache: the fraction of a view file's converted bytes that a
 * cache tier holds now ("1.0000" for a file with nothing to convert), of
 * the bytes a tier would hold (f32/f16/bf16 output never is: chunk_flags). */
struct frac_ctx {
    struct qfs *q;
    struct qfs_snap *s;
    uint64_t total, have;
};

static int frac_piece(void *arg, const struct qf_piece *p)
{
    struct frac_ctx *c = arg;
    if (p->e->kind == QF_EXT_CONV && !chunk_flags(p->e)) {
        c->total += p->len;
        struct fill_arg a = {c->q, c->s, p->e, p->chunk, (size_t)p->chunk_len, false, {0, 0}, NULL, NULL, NULL, -1, false};
        struct qc_key key;
        if (!chunk_key(&a, true, &key) && qc_cached(c->q->cache, key))
            c->have += p->len;
    }
    return 0;
}

static int cache_fraction(struct qfs *q, const struct qfs_ino *d, char *buf, size_t len)
{
    struct qfs_model *m = QFS_MODEL(q, d->m);
    struct qfs_file *f = &m->files[d->f];
    int rc = 0;
    struct qfs_snap *s = qfs_snap_peek(q, m, f, &rc);
    if (!s)
        return rc;
    rc = 0;
    struct qf_layout *l = NULL;
    struct frac_ctx c = {q, s, 0, 0};
    const struct qf_source_kind *k = qf_source_kind(f->kind);
    if ((k->open || k->derived) && !s->err[0] && !(rc = qfs_snap_layout(q, s, d->v, &l))) {
        qf_layout_walk(l, 0, l->size, frac_piece, &c);
        qfs_snap_layout_put(q, s, d->v);
    }
    qfs_snap_put(s);
    if (rc)
        return rc;
    snprintf(buf, len, "%.4f", c.total ? (double)c.have / (double)c.total : 1.0);
    return 0;
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    struct qfs *q = ctx(req);
    const char *v;
    char buf[32];
    struct qfs_ino d;
    int rc = qfs_decode_ino(q, ino, &d);
    if (!rc && d.kind == 5 && !strcmp(name, "user.quantfs.cache")) {
        if (!(rc = cache_fraction(q, &d, buf, sizeof buf)))
            reply_data(req, buf, strlen(buf), size);
        else
            fuse_reply_err(req, -rc);
        return;
    }
    rc = xattr_value(q, ino, name, &v);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        reply_data(req, v, strlen(v), size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    struct qfs_ino d;
    int rc = qfs_decode_ino(ctx(req), ino, &d);
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    static const char file_names[] = "user.quantfs.source\0user.quantfs.view\0user.quantfs.cache";
    static const char dir_names[] = "user.quantfs.view";
    if (d.kind == 5)
        reply_data(req, file_names, sizeof file_names, size);
    else if (d.kind == 4)
        reply_data(req, dir_names, sizeof dir_names, size);
    else
        reply_data(req, "", 0, size);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    (void)ino;
    struct statvfs sv;
    if (statvfs(ctx(req)->source, &sv) < 0)
        memset(&sv, 0, sizeof sv);
    sv.f_flag |= ST_RDONLY;
    sv.f_namemax = 255;
    fuse_reply_statfs(req, &sv);
}

/* ------------------------------------------------------------ read-only */

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi)
{
    (void)ino, (void)attr, (void)to_set, (void)fi;
    fuse_reply_err(req, EROFS);
}
static void op_mknod(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, dev_t r)
{
    (void)p, (void)n, (void)m, (void)r;
    fuse_reply_err(req, EROFS);
}
static void op_mkdir(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m)
{
    (void)p, (void)n, (void)m;
    fuse_reply_err(req, EROFS);
}
static void op_unlink(fuse_req_t req, fuse_ino_t p, const char *n)
{
    (void)p, (void)n;
    fuse_reply_err(req, EROFS);
}
static void op_symlink(fuse_req_t req, const char *l, fuse_ino_t p, const char *n)
{
    (void)l, (void)p, (void)n;
    fuse_reply_err(req, EROFS);
}
static void op_rename(fuse_req_t req, fuse_ino_t p, const char *n, fuse_ino_t np, const char *nn, unsigned int f)
{
    (void)p, (void)n, (void)np, (void)nn, (void)f;
    fuse_reply_err(req, EROFS);
}
static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t np, const char *nn)
{
    (void)ino, (void)np, (void)nn;
    fuse_reply_err(req, EROFS);
}
static void op_create(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, struct fuse_file_info *fi)
{
    (void)p, (void)n, (void)m, (void)fi;
    fuse_reply_err(req, EROFS);
}
static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *n, const char *v, size_t s, int f)
{
    (void)ino, (void)n, (void)v, (void)s, (void)f;
    fuse_reply_err(req, EROFS);
}
static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *n)
{
    (void)ino, (void)n;
    fuse_reply_err(req, EROFS);
}

/* The kernel's readahead for this mount: its backing device's
 * read_ahead_kb (128 by default, so every buffered or mmap read of a view
 * arrives as 128 KiB requests; 1 MiB requests, several in flight, read the
 * f32 view ~2x faster: bench/RESULTS.md). Only root may write it, and only
 * after INIT (whose reply would lower it again): the first request after
 * INIT does it. The device is the mount's, from /proc/self/mountinfo. */
static void set_read_ahead(struct qfs *q)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char *line = NULL, dev[32] = "";
    size_t cap = 0;
    while (f && getline(&line, &cap, f) > 0 && !dev[0]) {
        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... - FSTYPE ...; octal escapes in paths */
        char d[32], mp[4096];
        if (sscanf(line, "%*s %*s %31s %*s %4095s", d, mp) != 2 || !strstr(line, " - fuse.quantfs "))
            continue;
        char un[4096];
        size_t k = 0;
        for (const char *p = mp; *p && k < sizeof un - 1; p++) {
            if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' && p[3] <= '7') {
                un[k++] = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
                p += 3;
            } else {
                un[k++] = *p;
            }
        }
        un[k] = 0;
        if (!strcmp(un, q->mountpoint))
            snprintf(dev, sizeof dev, "%s", d);
    }
    free(line);
    if (f)
        fclose(f);
    char path[96];
    snprintf(path, sizeof path, "/sys/class/bdi/%s/read_ahead_kb", dev);
    FILE *w = dev[0] ? fopen(path, "we") : NULL;
    bool ok = w && fprintf(w, "%u\n", q->read_ahead_kb) > 0;
    if (w && fclose(w))
        ok = false;
    if (ok)
        qfs_log(q, LOG_INFO, "kernel readahead for the mount: %u KiB (%s)", q->read_ahead_kb, path);
    else
        qfs_log(q, LOG_INFO, "kernel readahead for the mount stays at the default (128 KiB: reads arrive in 128 KiB "
                "requests): %s needs root (quantfs@.service sets it; -o read_ahead_kb=0 to leave it)",
                dev[0] ? path : "/sys/class/bdi/<the mount's device>/read_ahead_kb");
}

/* Splice the source's bytes into replies where the kernel can (-o splice);
 * the mount's readahead at the first request after INIT. */
static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    struct qfs *q = userdata;
    if (q->read_ahead_kb)
        atomic_store(&q->ra_pending, true);
    if (q->max_background) {
        conn->max_background = q->max_background;
        conn->congestion_threshold = q->max_background * 3 / 4 ? q->max_background * 3 / 4 : 1;
    }
    if (q->splice && (conn->capable & FUSE_CAP_SPLICE_WRITE)) {
        conn->want |= FUSE_CAP_SPLICE_WRITE;
        /* a reply goes through one pipe: libfuse wants room for the data
         * plus a page per buffer and two more (its heuristic), within an
         * unprivileged pipe's 1 MiB (fs.pipe-max-size), else it copies the
         * reply through a fresh buffer (6x slower, measured). Requests of
         * at most 248 pages (max_pages follows max_write) leave room for
         * a few buffers. */
        if (conn->max_write > (1u << 20) - (32u << 10))
            conn->max_write = (1u << 20) - (32u << 10);
    } else
        q->splice = 0;
}

const struct fuse_lowlevel_ops qfs_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .getattr = op_getattr,
    .readlink = op_readlink,
    .readdir = op_readdir,
    .open = op_open,
    .read = op_read,
    .release = op_release,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .statfs = op_statfs,
    .setattr = op_setattr,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_unlink,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .create = op_create,
    .setxattr = op_setxattr,
    .removexattr = op_removexattr,
};
