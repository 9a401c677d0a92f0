/* pipe.c — see pipe.h. */
#include "pipe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void pipe_free(void *v)
{
    struct qfs_pipe *p = v;
    if (!p)
        return;
    close(p->fd[0]);
    close(p->fd[1]);
    free(p);
}

int qfs_pipes_init(struct qfs_pipes *ps)
{
    int rc = pthread_key_create(&ps->key, pipe_free);
    ps->ok = !rc;
    return -rc;
}

void qfs_pipes_fini(struct qfs_pipes *ps)
{
    if (!ps->ok)
        return;
    pipe_free(pthread_getspecific(ps->key));
    pthread_setspecific(ps->key, NULL);
    /* threads still alive keep theirs until they exit: the key's
     * destructor no longer runs then, so this runs after the session's
     * threads are joined (main.c) */
    pthread_key_delete(ps->key);
    ps->ok = false;
}

static struct qfs_pipe *pipe_new(void)
{
    struct qfs_pipe *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    if (pipe2(p->fd, O_CLOEXEC | O_NONBLOCK)) {
        free(p);
        return NULL;
    }
    /* fs.pipe-max-size bounds an unprivileged pipe (1 MiB by default):
     * halve until the kernel agrees */
    int sz = -1;
    for (unsigned want = QFS_PIPE_BYTES; sz < 0 && want >= (64u << 10); want /= 2)
        sz = fcntl(p->fd[0], F_SETPIPE_SZ, (int)want);
    if (sz < 0)
        sz = fcntl(p->fd[0], F_GETPIPE_SZ);
    p->size = sz > 0 ? (size_t)sz : 0;
    return p;
}

bool qfs_pipe_fits(const struct qfs_pipe *p, size_t bytes, size_t pieces)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t page = pg > 0 ? (size_t)pg : 4096, have = p->size / page;
    /* a piece of len bytes takes at most len / page + 2 buffers (its
     * first and last pages partial: 2 bytes across a page boundary take
     * two); in pages, so nothing overflows */
    return pieces <= have / 2 && bytes / page <= have - 2 * pieces;
}

struct qfs_pipe *qfs_pipe_get(struct qfs_pipes *ps)
{
    if (!ps->ok)
        return NULL;
    struct qfs_pipe *p = pthread_getspecific(ps->key);
    if (p && p->used) { /* left full by a caller that did not reset it */
        qfs_pipe_reset(ps, p);
        p = NULL;
    }
    if (!p && (p = pipe_new()) && pthread_setspecific(ps->key, p)) {
        pipe_free(p);
        p = NULL;
    }
    return p;
}

int qfs_pipe_splice(struct qfs_pipe *p, int fd, uint64_t off, size_t len)
{
    loff_t o = (loff_t)off;
    while (len) {
        /* never blocks: a full pipe says EAGAIN (the write end is
         * non-blocking) */
        ssize_t k = splice(fd, &o, p->fd[1], NULL, len, SPLICE_F_NONBLOCK);
        if (k > 0) {
            len -= (size_t)k;
            p->used += (size_t)k;
        } else if (k == 0) {
            return -EIO; /* the file ends first: it was cut short */
        } else if (errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

int qfs_pipe_write(struct qfs_pipe *p, const void *buf, size_t len)
{
    const char *b = buf;
    while (len) {
        ssize_t k = write(p->fd[1], b, len);
        if (k > 0) {
            b += k;
            len -= (size_t)k;
            p->used += (size_t)k;
        } else if (k == 0 || errno != EINTR) {
            return k ? -errno : -EIO;
        }
    }
    return 0;
}

bool qfs_pipe_drained(struct qfs_pipe *p)
{
    int n = -1;
    if (ioctl(p->fd[0], FIONREAD, &n) || n)
        return false;
    p->used = 0;
    return true;
}

void qfs_pipe_reset(struct qfs_pipes *ps, struct qfs_pipe *p)
{
    if (ps->ok && pthread_getspecific(ps->key) == p)
        pthread_setspecific(ps->key, NULL);
    pipe_free(p);
}
