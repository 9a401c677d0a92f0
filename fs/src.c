/* src.c — source descriptors: every byte quantfs reads from the source
 * store goes through here (quantfs.h "sources").
 *
 * Descriptors are a bounded pool (-o max_fds): a source version keeps its
 * identity (struct stat) and a descriptor that the least recently used
 * eviction may close; the next read reopens the path and serves only if it
 * is still the same file (device, inode, size, mtime, ctime), else -EIO. A
 * store of thousands of files never runs the daemon out of descriptors.
 *
 * On network and FUSE filesystems (the model's f_type, ns.c) every system
 * call on a source runs on a call thread (a pool that grows whenever a
 * call finds no thread idle), waited for at most
 * -o source_timeout seconds: a stalled NFS server or a stopped FUSE daemon
 * makes that model's requests fail with EIO instead of taking the daemon's
 * threads with them. The blocked call cannot be cancelled (FUSE and hard
 * NFS waits are only killable), so its thread stays until the call returns;
 * meanwhile the model fails fast (m->stuck). Such calls read into their own
 * buffers and descriptors (a dup), never into memory the caller may free
 * once it gave up. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "quantfs.h"

/* ------------------------------------------------------- timed calls */

enum { IO_OPEN, IO_STAT, IO_PREAD };

struct iojob {
    struct iojob *next; /* q's queue */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;       /* the waiter and the thread */
    bool done, abandoned;
    bool probe;     /* qfs_src_dir_stat's: refreshes m->dir_st; m->probing until freed */
    bool let_go;    /* abandoned at a short wait: the model is not stuck */
    int op;
    struct qfs *q;
    struct qfs_model *m;
    char *path;     /* OPEN, STAT */
    int fd;         /* OPEN: the result; PREAD: a dup the thread closes */
    struct stat st;
    uint8_t *buf;   /* PREAD */
    size_t len;
    uint64_t off;
    int rc;
};

static void job_put(struct iojob *j)
{
    pthread_mutex_lock(&j->mu);
    bool last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last)
        return;
    if (j->probe) /* ran, or never could (the model stuck, no thread): the next may go */
        atomic_store(&j->m->probing, false);
    if (j->fd >= 0)
        close(j->fd); /* OPEN: for a waiter that gave up; PREAD: the dup */
    free(j->path);
    free(j->buf);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

static int pread_full(int fd, uint8_t *p, size_t len, uint64_t off)
{
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

static void run_op(struct iojob *j)
{
    switch (j->op) {
    case IO_OPEN:
        j->fd = qfs_open_source(j->q, j->path, &j->st);
        j->rc = j->fd < 0 ? j->fd : 0;
        break;
    case IO_STAT: j->rc = stat(j->path, &j->st) ? -errno : 0; break;
    case IO_PREAD: j->rc = pread_full(j->fd, j->buf, j->len, j->off); break;
    }
}

static void job_run(struct iojob *j)
{
    run_op(j);
    if (j->probe && !j->rc) {
        pthread_mutex_lock(&j->m->dir_mu);
        j->m->dir_st = j->st;
        pthread_mutex_unlock(&j->m->dir_mu);
    }
    pthread_mutex_lock(&j->mu);
    j->done = true;
    bool late = j->abandoned && !j->let_go;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (late) {
        struct qfs *q = j->q;
        if (atomic_fetch_sub(&j->m->stuck, 1) == 1)
            qfs_log(q, LOG_NOTICE, "model '%s': its source answers again", j->m->name);
        atomic_fetch_sub(&q->io_stuck, 1);
    }
    job_put(j);
}

/* The call threads: started when a job finds none idle (so a job never
 * waits behind a call that may be blocked), ended after 10 s idle (two
 * stay). */
static void *io_worker(void *arg)
{
    struct qfs *q = arg;
    pthread_mutex_lock(&q->io_mu);
    for (;;) {
        while (!q->io_head && !q->io_stopping) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 10;
            q->io_idle++;
            int e = pthread_cond_timedwait(&q->io_cv, &q->io_mu, &until);
            q->io_idle--;
            if (e == ETIMEDOUT && !q->io_head && q->io_threads > 2)
                goto out;
        }
        struct iojob *j = q->io_head;
        if (!j)
            break; /* stopping */
        q->io_head = j->next;
        q->io_queued--;
        pthread_mutex_unlock(&q->io_mu);
        job_run(j);
        pthread_mutex_lock(&q->io_mu);
    }
out:
    q->io_threads--;
    pthread_cond_broadcast(&q->io_done_cv);
    pthread_mutex_unlock(&q->io_mu);
    return NULL;
}

static int io_submit(struct qfs *q, struct iojob *j)
{
    pthread_mutex_lock(&q->io_mu);
    if (q->io_stopping) {
        pthread_mutex_unlock(&q->io_mu);
        return ESHUTDOWN;
    }
    j->next = NULL;
    struct iojob **tail = &q->io_head;
    while (*tail)
        tail = &(*tail)->next;
    *tail = j;
    int e = 0;
    if (++q->io_queued > q->io_idle) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&a, 256 << 10);
        e = pthread_create(&t, &a, io_worker, q);
        pthread_attr_destroy(&a);
        if (!e) {
            pthread_setname_np(t, "qfs-io");
            q->io_threads++;
        }
        else if (q->io_threads) /* a running one will get to it */
            e = 0;
        else { /* nobody to run it */
            q->io_head = NULL;
            q->io_queued--;
        }
    }
    pthread_cond_signal(&q->io_cv);
    pthread_mutex_unlock(&q->io_mu);
    return e;
}

void qfs_io_stop(struct qfs *q)
{
    pthread_mutex_lock(&q->io_mu);
    q->io_stopping = true;
    pthread_cond_broadcast(&q->io_cv);
    while (q->io_threads)
        pthread_cond_wait(&q->io_done_cv, &q->io_mu);
    pthread_mutex_unlock(&q->io_mu);
}

/* Runs j on a call thread and waits up to source_timeout. If the
 * call returned: j, still the caller's (job_put it), its result in *rc.
 * Else NULL, *rc = -ETIMEDOUT (or the thread could not start), and j
 * belongs to the thread. */
static struct iojob *timed_ms(struct iojob *j, int *rc, unsigned wait_ms);

static struct iojob *timed(struct iojob *j, int *rc) { return timed_ms(j, rc, 0); }

/* wait_ms 0: source_timeout, then the model is stuck; else at most that
 * long, and the call is let go without judging the model. */
static struct iojob *timed_ms(struct iojob *j, int *rc, unsigned wait_ms)
{
    struct qfs *q = j->q;
    struct qfs_model *m = j->m;
    *rc = -ETIMEDOUT;
    if (atomic_load(&m->stuck)) {
        job_put(j); /* a call is still blocked there: fail fast */
        return NULL;
    }
    j->refs = 2;
    int e = io_submit(q, j);
    if (e) {
        j->refs = 1;
        job_put(j);
        *rc = -e;
        return NULL;
    }
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    if (wait_ms && wait_ms < q->source_timeout_s * 1000u) {
        until.tv_nsec += (long)(wait_ms % 1000) * 1000000;
        until.tv_sec += wait_ms / 1000 + until.tv_nsec / 1000000000;
        until.tv_nsec %= 1000000000;
    } else {
        until.tv_sec += q->source_timeout_s;
        wait_ms = 0;
    }
    pthread_mutex_lock(&j->mu);
    while (!j->done && e != ETIMEDOUT)
        e = pthread_cond_timedwait(&j->cv, &j->mu, &until);
    if (j->done) {
        pthread_mutex_unlock(&j->mu);
        *rc = j->rc;
        return j;
    }
    j->abandoned = true;
    if (wait_ms) { /* slow, maybe stalled: the call goes on alone */
        j->let_go = true;
        pthread_mutex_unlock(&j->mu);
        job_put(j);
        return NULL;
    }
    atomic_fetch_add(&q->io_stuck, 1);
    if (atomic_fetch_add(&m->stuck, 1) == 0)
        qfs_log(q, LOG_WARNING, "model '%s': its source did not answer in %u s; its reads fail (EIO) until it does",
                m->name, q->source_timeout_s);
    atomic_fetch_add(&q->io_timeouts, 1);
    pthread_mutex_unlock(&j->mu);
    job_put(j);
    return NULL;
}

static bool is_timed(const struct qfs *q, const struct qfs_model *m)
{
    return m && m->remote && q->source_timeout_s;
}

static struct iojob *job_new(struct qfs *q, struct qfs_model *m, int op)
{
    struct iojob *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->q = q, j->m = m, j->op = op, j->fd = -1, j->refs = 1;
    pthread_mutex_init(&j->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    return j;
}

/* A call on path, timed: the returned job (the caller job_puts it) or
 * NULL with *rc. */
static struct iojob *path_job(struct qfs *q, struct qfs_model *m, int op, const char *path, int *rc)
{
    struct iojob *j = job_new(q, m, op);
    *rc = -ENOMEM;
    if (j && !(j->path = strdup(path))) {
        job_put(j);
        return NULL;
    }
    return j ? timed(j, rc) : NULL;
}

static int src_openat(struct qfs *q, struct qfs_model *m, const char *path, struct stat *st)
{
    if (!is_timed(q, m))
        return qfs_open_source(q, path, st);
    int rc;
    struct iojob *j = path_job(q, m, IO_OPEN, path, &rc);
    if (!j)
        return rc;
    int fd = j->fd;
    *st = j->st;
    j->fd = -1;
    job_put(j);
    return rc ? rc : fd;
}

int qfs_src_dir_stat(struct qfs *q, struct qfs_model *m, struct stat *st)
{
    pthread_mutex_lock(&m->dir_mu);
    bool known = m->dir_known;
    pthread_mutex_unlock(&m->dir_mu);
    if (!is_timed(q, m) || !known)
        return qfs_src_stat(q, m, m->dir, st);
    if (atomic_exchange(&m->probing, true))
        return -EAGAIN; /* one is under way: its answer, or the last, will do */
    struct iojob *j = job_new(q, m, IO_STAT);
    if (!j || !(j->path = strdup(m->dir))) {
        if (j)
            job_put(j);
        atomic_store(&m->probing, false);
        return -EAGAIN;
    }
    j->probe = true; /* from here m->probing is cleared when the job is freed */
    int rc;
    if (!(j = timed_ms(j, &rc, QFS_ATTR_WAIT_MS)))
        return rc == -ETIMEDOUT ? -EAGAIN : rc;
    *st = j->st;
    job_put(j);
    return rc;
}

int qfs_src_stat(struct qfs *q, struct qfs_model *m, const char *path, struct stat *st)
{
    if (!is_timed(q, m))
        return stat(path, st) ? -errno : 0;
    int rc;
    struct iojob *j = path_job(q, m, IO_STAT, path, &rc);
    if (j) {
        *st = j->st;
        job_put(j);
    }
    return rc;
}

/* ------------------------------------------------------- the pool */

static void lru_unlink(struct qfs *q, struct qfs_src *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        q->fd_head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        q->fd_tail = s->prev;
    s->prev = s->next = NULL;
}

static void lru_push(struct qfs *q, struct qfs_src *s) /* most recent first */
{
    s->prev = NULL;
    s->next = q->fd_head;
    if (q->fd_head)
        q->fd_head->prev = s;
    else
        q->fd_tail = s;
    q->fd_head = s;
}

/* Closes least recently used idle descriptors beyond max_fds (under
 * fd_mu). Descriptors with reads in flight are skipped: the bound can be
 * passed by at most the reads in flight. */
static void evict(struct qfs *q)
{
    for (struct qfs_src *s = q->fd_tail, *p; s && q->n_fds > q->max_fds; s = p) {
        p = s->prev;
        if (s->users)
            continue;
        lru_unlink(q, s);
        close(s->fd);
        s->fd = -1;
        q->n_fds--;
        q->fd_evictions++;
    }
}

static void adopt(struct qfs *q, struct qfs_src *s, int fd)
{
    s->fd = fd;
    q->n_fds++;
    lru_push(q, s);
    evict(q);
}

int qfs_src_open(struct qfs *q, struct qfs_model *m, struct qfs_src *s, const char *path)
{
    memset(s, 0, sizeof *s);
    s->q = q, s->m = m, s->fd = -1;
    if (!(s->path = strdup(path)))
        return -ENOMEM;
    int fd = src_openat(q, m, path, &s->st);
    if (fd < 0) {
        free(s->path);
        memset(s, 0, sizeof *s);
        s->fd = -1;
        return fd;
    }
    pthread_mutex_lock(&q->fd_mu);
    adopt(q, s, fd);
    pthread_mutex_unlock(&q->fd_mu);
    return 0;
}

void qfs_src_idle(struct qfs_src *s)
{
    struct qfs *q = s->q;
    if (!q)
        return;
    pthread_mutex_lock(&q->fd_mu);
    if (s->fd >= 0 && !s->users) {
        lru_unlink(q, s);
        close(s->fd);
        s->fd = -1;
        q->n_fds--;
    }
    pthread_mutex_unlock(&q->fd_mu);
}

void qfs_src_close(struct qfs_src *s)
{
    if (!s->q)
        return;
    qfs_src_idle(s);
    free(s->path);
    memset(s, 0, sizeof *s);
    s->fd = -1;
}

/* The descriptor of s with a use counted (reopened if evicted and still
 * the same file), or -errno. */
static int src_take(struct qfs_src *s)
{
    struct qfs *q = s->q;
    pthread_mutex_lock(&q->fd_mu);
    if (s->fd < 0) {
        pthread_mutex_unlock(&q->fd_mu);
        struct stat st;
        int fd = src_openat(q, s->m, s->path, &st);
        if (fd < 0)
            return -EIO; /* gone: the version this snapshot is of cannot be read */
        if (!qfs_same_file(&st, &s->st)) {
            close(fd);
            return -EIO; /* replaced: never another version's bytes */
        }
        pthread_mutex_lock(&q->fd_mu);
        q->fd_reopens++;
        if (s->fd >= 0)
            close(fd); /* another reader reopened it first */
        else
            adopt(q, s, fd);
    } else {
        lru_unlink(q, s);
        lru_push(q, s);
    }
    s->users++;
    int fd = s->fd;
    pthread_mutex_unlock(&q->fd_mu);
    return fd;
}

static void src_give(struct qfs_src *s)
{
    pthread_mutex_lock(&s->q->fd_mu);
    s->users--;
    evict(s->q);
    pthread_mutex_unlock(&s->q->fd_mu);
}

int qfs_src_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
    struct qfs_src *s = ctx;
    int fd = src_take(s);
    if (fd < 0)
        return fd;
    int rc;
    if (!is_timed(s->q, s->m)) {
        rc = pread_full(fd, buf, len, off);
    } else {
        struct iojob *j = job_new(s->q, s->m, IO_PREAD);
        rc = -ENOMEM;
        if (j && (j->buf = malloc(len ? len : 1)) && (j->fd = dup(fd)) >= 0) {
            j->len = len, j->off = off;
            if ((j = timed(j, &rc))) {
                if (!rc)
                    memcpy(buf, j->buf, len);
                job_put(j);
            }
        } else if (j) {
            job_put(j);
        }
    }
    src_give(s);
    return rc == -ETIMEDOUT ? -EIO : rc;
}

int qfs_src_take_local(struct qfs_src *s)
{
    if (is_timed(s->q, s->m))
        return -EAGAIN; /* a network source: reads are timed, never spliced */
    return src_take(s);
}

void qfs_src_give(struct qfs_src *s) { src_give(s); }

bool qfs_src_current(const struct qfs_src *s)
{
    struct stat st;
    if (!s->path)
        return false;
    int rc = qfs_src_stat(s->q, s->m, s->path, &st);
    /* no answer in time says nothing about the version: its reads fail
     * on their own while the source is stuck */
    return rc == -ETIMEDOUT || (!rc && qfs_same_file(&st, &s->st));
}

/* ------------------------------------------------------ mapped reads */

int qfs_src_map(struct qfs_src *s, uint64_t off, size_t len, struct qfs_map *m)
{
    if (!s->q || !s->q->map_reads || is_timed(s->q, s->m) || !len)
        return -EAGAIN;
    if (off > (uint64_t)s->st.st_size || len > (uint64_t)s->st.st_size - off)
        return -EIO;
    int fd = src_take(s); /* the version's descriptor, reopened by identity if evicted */
    if (fd < 0)
        return fd;
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), at = off & ~(page - 1);
    size_t span = (size_t)(off + len - at);
    void *base = mmap(NULL, span, PROT_READ, MAP_SHARED, fd, (off_t)at);
    src_give(s); /* the mapping holds the file */
    if (base == MAP_FAILED)
        return -EAGAIN; /* a filesystem that does not map: read it */
    /* one call maps the range (not a fault per 16 pages). EFAULT: the
     * file no longer reaches that far (shrunk since its identity was
     * taken) or a page could not be read; ENOMEM: read it instead; else
     * (EINVAL: a kernel before 5.14) the accesses fault it in, guarded. */
    if (madvise(base, span, MADV_POPULATE_READ) && (errno == EFAULT || errno == EHWPOISON || errno == ENOMEM)) {
        int e = errno;
        munmap(base, span);
        return e == ENOMEM ? -EAGAIN : -EIO;
    }
    *m = (struct qfs_map){(const uint8_t *)base + (off - at), base, span};
    atomic_fetch_add(&s->q->bytes_mapped, len);
    return 0;
}

void qfs_src_unmap(struct qfs_map *m)
{
    if (m->base)
        munmap(m->base, m->span);
    *m = (struct qfs_map){NULL, NULL, 0};
}
