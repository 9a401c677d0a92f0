/* watch.c — noticing source changes, and sending kernel invalidations.
 *
 * View bytes are cached by the kernel (keep_cache), so a read from an open
 * file may never reach the daemon. When a source changes, the kernel must
 * drop what it holds for every view of it; then the next read comes to us
 * and fails with EIO (the open handle's snapshot is stale). Changes are seen
 * through inotify on every model directory and the source root (immediate,
 * local filesystems) and by polling the files that are open every
 * check_interval ms (network filesystems, symlink targets).
 *
 * The same thread keeps the model set current: any event in the source root
 * or a model directory, and every -o rescan seconds, runs qfs_rescan (ns.c),
 * whose added and gone models are announced to the kernel here.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "quantfs.h"

void qfs_queue_inval(struct qfs *q, fuse_ino_t ino)
{
    pthread_mutex_lock(&q->inval_mu);
    if (q->inval_n == q->inval_cap) {
        size_t nc = q->inval_cap ? q->inval_cap * 2 : 64;
        fuse_ino_t *nq = realloc(q->inval_q, nc * sizeof *nq);
        if (nq) {
            q->inval_q = nq;
            q->inval_cap = nc;
        }
    }
    if (q->inval_n < q->inval_cap)
        q->inval_q[q->inval_n++] = ino;
    pthread_mutex_unlock(&q->inval_mu);
    uint64_t one = 1;
    if (q->watch_efd >= 0 && write(q->watch_efd, &one, sizeof one) < 0) {
        /* the counter is saturated: a wake-up is pending anyway */
    }
}

static void send_invals(struct qfs *q)
{
    for (;;) {
        pthread_mutex_lock(&q->inval_mu);
        if (!q->inval_n) {
            pthread_mutex_unlock(&q->inval_mu);
            return;
        }
        fuse_ino_t ino = q->inval_q[--q->inval_n];
        pthread_mutex_unlock(&q->inval_mu);
        /* -ENOENT only means the kernel holds nothing for this inode */
        fuse_lowlevel_notify_inval_inode(q->se, ino, 0, 0);
    }
}

/* Compares the source with the snapshot in use; retires it if different. */
static void check_file(struct qfs *q, struct qfs_file *f)
{
    pthread_mutex_lock(&f->mu);
    struct qfs_snap *s = f->snap;
    if (s)
        atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&f->mu);
    if (!s)
        return;
    if (!atomic_load(&s->stale) && !qfs_snap_current(s))
        qfs_snap_retire(q, s);
    qfs_snap_put(s);
}

static void add_watch(struct qfs *q, const char *dir, long model);

static void handle_event(struct qfs *q, const struct inotify_event *ev, uint64_t *rescan_at)
{
    if (!ev->len)
        return;
    /* the model set may have changed: rescan soon (events come in bursts) */
    uint64_t at = qfs_now_ms() + 50;
    if (!*rescan_at || at < *rescan_at)
        *rescan_at = at;
    for (size_t i = 0; i < q->n_wds; i++) {
        if (q->wds[i].wd != ev->wd)
            continue;
        if (q->wds[i].model >= 0) {
            struct qfs_model *m = QFS_MODEL(q, q->wds[i].model);
            for (size_t k = 0; k < m->n_files; k++)
                if (!strcmp(m->files[k].name, ev->name) || qf_source_kind(m->files[k].kind)->derived)
                    check_file(q, &m->files[k]);
        } else if (q->wds[i].model == -1) {
            for (size_t k = 0; k < q->n_models; k++)
                if (!QFS_MODEL(q, k)->dir && !strcmp(QFS_MODEL(q, k)->files[0].name, ev->name))
                    check_file(q, &QFS_MODEL(q, k)->files[0]);
            /* a directory made in the root (mkdir, then a copy or a
             * download into it, as git clone and downloaders do): watched
             * from now on, so what arrives in it starts a rescan */
            if ((ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO)) && ev->name[0] != '.') {
                char *sub;
                if (asprintf(&sub, "%s/%s", q->source, ev->name) >= 0) {
                    add_watch(q, sub, -2); /* moves q->wds: this loop ends here */
                    free(sub);
                }
                return;
            }
        }
    }
}

uint64_t qfs_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void *watch_main(void *p)
{
    struct qfs *q = p;
    uint64_t last_poll = qfs_now_ms(), last_rescan = last_poll, rescan_at = 0;
    _Alignas(struct inotify_event) char buf[16384];
    while (!atomic_load(&q->watch_stop)) {
        struct pollfd pfd[2] = {{q->watch_efd, POLLIN, 0}, {q->watch_ifd, POLLIN, 0}};
        uint64_t t = qfs_now_ms();
        int wait = (int)q->check_ms;
        if (rescan_at)
            wait = rescan_at <= t ? 0 : (int)(rescan_at - t) < wait ? (int)(rescan_at - t) : wait;
        int n = poll(pfd, q->watch_ifd >= 0 ? 2 : 1, wait);
        if (n < 0 && errno != EINTR)
            break;
        if (pfd[0].revents & POLLIN) {
            uint64_t v;
            if (read(q->watch_efd, &v, sizeof v) < 0) {
                /* nothing to drain */
            }
        }
        if (q->watch_ifd >= 0 && (pfd[1].revents & POLLIN)) {
            ssize_t len = read(q->watch_ifd, buf, sizeof buf);
            for (char *e = buf; len > 0 && e < buf + len;) {
                const struct inotify_event *ev = (const struct inotify_event *)e;
                handle_event(q, ev, &rescan_at);
                e += sizeof *ev + ev->len;
            }
        }
        if (qfs_now_ms() - last_poll >= q->check_ms) {
            for (size_t i = 0; i < q->n_models; i++)
                for (size_t k = 0; k < QFS_MODEL(q, i)->n_files; k++)
                    if (atomic_load(&QFS_MODEL(q, i)->files[k].open_count))
                        check_file(q, &QFS_MODEL(q, i)->files[k]);
            last_poll = qfs_now_ms();
        }
        uint64_t now = qfs_now_ms();
        if ((rescan_at && now >= rescan_at) || (q->rescan_ms && now - last_rescan >= q->rescan_ms)) {
            unsigned again = qfs_rescan(q);
            rescan_at = again ? qfs_now_ms() + again : 0;
            last_rescan = now;
        }
        send_invals(q);
    }
    return NULL;
}

static void add_watch(struct qfs *q, const char *dir, long model)
{
    const uint32_t mask = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE |
                          IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF;
    int wd = inotify_add_watch(q->watch_ifd, dir, mask);
    if (wd < 0) {
        /* polling still covers open files */
        qfs_log(q, LOG_INFO, "not watching %s (%s); polling it while in use", dir, strerror(errno));
        return;
    }
    struct qfs_wd *nw = realloc(q->wds, (q->n_wds + 1) * sizeof *nw);
    if (!nw)
        return;
    q->wds = nw;
    q->wds[q->n_wds++] = (struct qfs_wd){wd, model};
}

/* A model directory, its adapters/ and each adapters/NAME/ (an adapter
 * that appears, changes or goes is a new version of the model). */
static void watch_model(struct qfs *q, const struct qfs_model *m, long i)
{
    add_watch(q, m->dir, i);
    char *ad;
    if (asprintf(&ad, "%s/adapters", m->dir) < 0)
        return;
    DIR *d = opendir(ad);
    if (d) {
        add_watch(q, ad, i);
        struct dirent *de;
        while ((de = readdir(d))) {
            char *sub;
            if (de->d_name[0] == '.' || asprintf(&sub, "%s/%s", ad, de->d_name) < 0)
                continue;
            struct stat st;
            if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode))
                add_watch(q, sub, i);
            free(sub);
        }
        closedir(d);
    }
    free(ad);
}

/* .quantfs/models/NAME:VIEW of every view: the kernel may hold them (and
 * negative lookups of a name that comes back) */
static void inval_links(struct qfs *q, const struct qfs_model *m)
{
    /* a store that changes whole (a touch, an rsync) republishes every
     * model: n_views notifications each, for nothing if no one ever
     * looked in .quantfs/models */
    if (!atomic_load(&q->router_seen))
        return;
    for (size_t v = 0; v < q->n_views; v++) {
        char nm[4200];
        int n = snprintf(nm, sizeof nm, "%s:%s", m->name, q->views[v].name);
        if (n > 0 && (size_t)n < sizeof nm)
            fuse_lowlevel_notify_inval_entry(q->se, QFS_INO_MODELS, nm, (size_t)n);
    }
}

void qfs_model_gone(struct qfs *q, size_t i)
{
    struct qfs_model *m = QFS_MODEL(q, i);
    qfs_names_remove(q, i);
    atomic_store(&m->gone, true);
    /* its snapshots (headers, layouts: the bulk of a model's memory) go
     * with it unless a file is open; the slot stays (inode numbers) */
    for (size_t k = 0; k < m->n_files; k++) {
        struct qfs_file *f = &m->files[k];
        pthread_mutex_lock(&f->mu);
        struct qfs_snap *s = atomic_load(&f->open_count) ? NULL : f->snap;
        if (s)
            f->snap = NULL;
        pthread_mutex_unlock(&f->mu);
        if (s) {
            qfs_snap_retire(q, s);
            qfs_snap_put(s);
        }
    }
    qfs_log(q, LOG_INFO, "model '%s' left the source", m->name);
    /* from the watcher thread, never inside a request: safe to notify */
    fuse_lowlevel_notify_inval_entry(q->se, QFS_INO_ROOT, m->name, strlen(m->name));
    inval_links(q, m);
}

void qfs_model_added(struct qfs *q, size_t i)
{
    struct qfs_model *m = QFS_MODEL(q, i);
    if (m->dir && q->watch_ifd >= 0)
        watch_model(q, m, (long)i);
    /* a lookup of the name before it existed may be cached as negative */
    fuse_lowlevel_notify_inval_entry(q->se, QFS_INO_ROOT, m->name, strlen(m->name));
    inval_links(q, m);
}

/* The root's directories that are no model yet (empty, being filled, or
 * incomplete at mount time): watched, so that their files arriving start a
 * rescan (-2: no model's). */
static void watch_candidates(struct qfs *q)
{
    DIR *d = opendir(q->source);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.' || qfs_find_model(q, de->d_name) >= 0)
            continue;
        char *sub;
        struct stat st;
        if (asprintf(&sub, "%s/%s", q->source, de->d_name) < 0)
            break;
        if (!stat(sub, &st) && S_ISDIR(st.st_mode))
            add_watch(q, sub, -2);
        free(sub);
    }
    if (d)
        closedir(d);
}

int qfs_watch_start(struct qfs *q)
{
    q->watch_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->watch_efd < 0)
        return -errno;
    q->watch_ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (q->watch_ifd >= 0) {
        add_watch(q, q->source, -1);
        for (size_t i = 0; i < q->n_models; i++)
            if (QFS_MODEL(q, i)->dir)
                watch_model(q, QFS_MODEL(q, i), (long)i);
        watch_candidates(q);
    }
    if (q->watch_ifd < 0 && !q->rescan_ms) {
        q->rescan_ms = 10000;
        qfs_log(q, LOG_WARNING, "inotify unavailable (%s): rescanning %s every 10 s", strerror(errno), q->source);
    }
    int rc = pthread_create(&q->watch_thread, NULL, watch_main, q);
    if (!rc)
        pthread_setname_np(q->watch_thread, "qfs-watch");
    q->watch_started = rc == 0;
    return -rc;
}

bool qfs_watch_stop(struct qfs *q)
{
    atomic_store(&q->watch_stop, true);
    if (q->watch_started) {
        uint64_t one = 1;
        if (write(q->watch_efd, &one, sizeof one) < 0) {
            /* the thread also wakes within check_ms */
        }
        /* a rescan can be blocked in a stat of a dead network source */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 5 + (q->source_timeout_s ? q->source_timeout_s : 25);
        if (pthread_timedjoin_np(q->watch_thread, NULL, &until))
            return false;
        q->watch_started = false;
    }
    if (q->watch_ifd >= 0)
        close(q->watch_ifd);
    if (q->watch_efd >= 0)
        close(q->watch_efd);
    q->watch_ifd = q->watch_efd = -1;
    free(q->wds);
    free(q->inval_q);
    q->wds = NULL;
    q->inval_q = NULL;
    return true;
}
