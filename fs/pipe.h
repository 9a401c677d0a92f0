/* pipe.h — a read reply staged in a pipe before it is sent.
 *
 * A reply that carries a local source's bytes unchanged is spliced from the
 * source's page cache (no copy through the daemon). Handing libfuse the
 * source descriptor itself would let it read the source as it sends: a
 * source cut short in between would make libfuse 3.14 send a short reply
 * (it takes the splice's early end for the file's; the reader sees EOF
 * mid-file, the kernel shrinks the file). So the reply is staged first: the
 * source's pieces spliced and the memory pieces written, in order, into a
 * pipe of the session thread's own, each length checked; the caller checks
 * the source's version once it is staged, then sends the pipe (libfuse
 * moves its buffers into its own pipe and on to /dev/fuse). The pipe holds
 * the source's pages, not a copy: a write to them before the kernel copies
 * them into the request still shows (and a page cut away reads as zeros),
 * which only a check after the send can find.
 *
 * Ownership and threads: struct qfs_pipes (in the daemon's context) owns a
 * key; each thread that stages a reply gets a pipe of its own on first use,
 * closed when the thread exits or at qfs_pipes_fini. A qfs_pipe is used
 * only by the thread that got it.
 *
 * Room: a pipe holds a page per buffer; it is sized to QFS_PIPE_BYTES, or
 * to fs.pipe-max-size where that is less (unprivileged: 1 MiB). A reply
 * that does not fit gets -EAGAIN and is sent by copying instead.
 *
 * Errors (negative errno): -EIO the source ended before the range did;
 * -EAGAIN no room; other -errno from splice(2) or write(2) (-EINVAL: the
 * source's filesystem cannot splice). After any error what is staged is
 * unusable: qfs_pipe_reset. qfs_pipe_get gives NULL where no pipe can be
 * made (-EMFILE, -ENOMEM: the caller copies). Nothing here logs. */
#ifndef QFS_PIPE_H
#define QFS_PIPE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QFS_PIPE_BYTES (2u << 20)

struct qfs_pipes {
    pthread_key_t key;
    bool ok;
};

struct qfs_pipe {
    int fd[2];   /* read end, write end (both non-blocking) */
    size_t size; /* bytes it can hold, in whole pages */
    size_t used; /* staged and not yet sent */
};

int qfs_pipes_init(struct qfs_pipes *ps); /* 0 or -errno */
void qfs_pipes_fini(struct qfs_pipes *ps); /* the calling thread's pipe, and the key */

/* Whether bytes in at most pieces pieces (of memory or of a file, at any
 * offsets) surely fit in p: a page per pipe buffer, so the bytes' pages
 * and two more per piece (its partial first and last pages). */
bool qfs_pipe_fits(const struct qfs_pipe *p, size_t bytes, size_t pieces);
/* This thread's pipe, empty; NULL when none can be made. */
struct qfs_pipe *qfs_pipe_get(struct qfs_pipes *ps);
/* Stage len bytes of fd at off, or of memory. */
int qfs_pipe_splice(struct qfs_pipe *p, int fd, uint64_t off, size_t len);
int qfs_pipe_write(struct qfs_pipe *p, const void *buf, size_t len);
/* After a send: true if everything staged left the pipe. */
bool qfs_pipe_drained(struct qfs_pipe *p);
/* Drop what is staged (the pipe is replaced by a fresh one at next use). */
void qfs_pipe_reset(struct qfs_pipes *ps, struct qfs_pipe *p);

#endif
