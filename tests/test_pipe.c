/* test_pipe.c — fs/pipe.c: a reply staged in a thread's pipe holds exactly
 * the bytes asked for, in order; a source that ends before its range is
 * -EIO (libfuse given the source itself would have sent a short reply);
 * more than the pipe holds is -EAGAIN, never a block; what qfs_pipe_fits
 * promises fits, at its worst case; what a reset drops
 * is not seen again; each thread has its own pipe, closed when it exits. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmocka.h>

#include "pipe.h"

enum { LEN = 3 * 4096 + 100 };

/* A file of len bytes (byte i = i % 251) on the build tree's filesystem. */
static int source_of(size_t len)
{
    char name[] = "pipe-XXXXXX";
    int fd = mkstemp(name);
    assert_true(fd >= 0);
    unlink(name);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i % 251);
    assert_int_equal(pwrite(fd, buf, len, 0), (ssize_t)len);
    free(buf);
    return fd;
}

static int source(void) { return source_of(LEN); }

static size_t in_pipe(struct qfs_pipe *p)
{
    int n = -1;
    assert_int_equal(ioctl(p->fd[0], FIONREAD, &n), 0);
    return (size_t)n;
}

static void staged_in_order(void **state)
{
    struct qfs_pipes *ps = *state;
    int fd = source();
    struct qfs_pipe *p = qfs_pipe_get(ps);
    assert_non_null(p);
    assert_true(p->size >= (64u << 10));
    assert_int_equal(qfs_pipe_write(p, "head", 4), 0);
    assert_int_equal(qfs_pipe_splice(p, fd, 77, 2 * 4096 + 5), 0); /* straddles pages */
    assert_int_equal(qfs_pipe_write(p, "tail", 4), 0);
    assert_int_equal(qfs_pipe_splice(p, fd, LEN - 10, 10), 0); /* to the end exactly */
    size_t want = 4 + 2 * 4096 + 5 + 4 + 10;
    assert_int_equal(p->used, want);
    assert_int_equal(in_pipe(p), want);
    assert_false(qfs_pipe_drained(p));
    uint8_t got[2 * 4096 + 23];
    size_t n = 0;
    while (n < want) {
        ssize_t k = read(p->fd[0], got + n, want - n);
        assert_true(k > 0);
        n += (size_t)k;
    }
    assert_memory_equal(got, "head", 4);
    for (size_t i = 0; i < 2 * 4096 + 5; i++)
        assert_int_equal(got[4 + i], (77 + i) % 251);
    assert_memory_equal(got + 4 + 2 * 4096 + 5, "tail", 4);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(got[want - 10 + i], (LEN - 10 + i) % 251);
    assert_true(qfs_pipe_drained(p));
    assert_int_equal(p->used, 0);
    assert_ptr_equal(qfs_pipe_get(ps), p); /* kept for the thread's next reply */
    close(fd);
}

static void a_source_cut_short_is_eio(void **state)
{
    struct qfs_pipes *ps = *state;
    int fd = source();
    struct qfs_pipe *p = qfs_pipe_get(ps);
    assert_non_null(p);
    /* the range a snapshot of LEN bytes promised, after a cut to 5000 */
    assert_int_equal(ftruncate(fd, 5000), 0);
    assert_int_equal(qfs_pipe_splice(p, fd, 4096, 4096), -EIO);
    assert_int_equal(qfs_pipe_splice(p, fd, LEN - 10, 10), -EIO); /* wholly past the end */
    qfs_pipe_reset(ps, p);
    struct qfs_pipe *q = qfs_pipe_get(ps);
    assert_non_null(q);
    assert_int_equal(q->used, 0);
    assert_int_equal(in_pipe(q), 0); /* nothing of the failed reply */
    close(fd);
}

static void no_room_is_eagain(void **state)
{
    struct qfs_pipes *ps = *state;
    struct qfs_pipe *p = qfs_pipe_get(ps);
    assert_non_null(p);
    /* a file larger than the pipe: its bytes do not fit, and nothing waits
     * for a reader that is this very thread */
    size_t big = p->size + (64u << 10);
    int fd = source_of(big);
    uint8_t *buf = calloc(1, big);
    assert_non_null(buf);
    assert_int_equal(qfs_pipe_splice(p, fd, 0, big), -EAGAIN);
    assert_true(p->used <= p->size);
    qfs_pipe_reset(ps, p);
    p = qfs_pipe_get(ps);
    assert_non_null(p);
    assert_int_equal(qfs_pipe_write(p, buf, big), -EAGAIN); /* memory too */
    free(buf);
    close(fd);
}

static void left_full_is_never_reused(void **state)
{
    struct qfs_pipes *ps = *state;
    struct qfs_pipe *p = qfs_pipe_get(ps);
    assert_non_null(p);
    assert_int_equal(qfs_pipe_write(p, "stale", 5), 0);
    /* a caller that neither sent nor reset: the next reply must not
     * carry these bytes */
    struct qfs_pipe *q = qfs_pipe_get(ps);
    assert_non_null(q);
    assert_int_equal(in_pipe(q), 0);
}

/* What qfs_pipe_fits promises fits: at its limit, pieces of 2 bytes that
 * each straddle a page boundary (two buffers apiece: the worst case), and
 * one piece across all but two pages; one more piece does not fit. */
static void what_fits_is_staged(void **state)
{
    struct qfs_pipes *ps = *state;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    struct qfs_pipe *p = qfs_pipe_get(ps);
    assert_non_null(p);
    size_t have = p->size / page, pieces = have / 2;
    int fd = source_of((have + 1) * page);
    assert_true(qfs_pipe_fits(p, 2 * pieces, pieces));
    assert_false(qfs_pipe_fits(p, 2 * (pieces + 1), pieces + 1));
    assert_false(qfs_pipe_fits(p, 0, (size_t)-1));
    for (size_t i = 0; i < pieces; i++)
        assert_int_equal(qfs_pipe_splice(p, fd, (i + 1) * page - 1, 2), 0);
    assert_int_equal(in_pipe(p), 2 * pieces);
    qfs_pipe_reset(ps, p);
    p = qfs_pipe_get(ps);
    assert_non_null(p);
    size_t big = (have - 2) * page;
    assert_true(qfs_pipe_fits(p, big, 1));
    assert_false(qfs_pipe_fits(p, big + page, 1));
    assert_int_equal(qfs_pipe_splice(p, fd, page / 2, big), 0);
    assert_int_equal(in_pipe(p), big);
    close(fd);
}

/* Each test gets the daemon's part: a key, with no pipe yet. */
static int setup(void **state)
{
    struct qfs_pipes *ps = malloc(sizeof *ps);
    if (!ps || qfs_pipes_init(ps))
        return -1;
    *state = ps;
    return 0;
}

static int teardown(void **state)
{
    qfs_pipes_fini(*state);
    free(*state);
    return 0;
}

struct thread_arg {
    struct qfs_pipes *ps;
    struct qfs_pipe *p;
    int fd[2];
};

static void *in_thread(void *v)
{
    struct thread_arg *a = v;
    a->p = qfs_pipe_get(a->ps);
    if (a->p)
        memcpy(a->fd, a->p->fd, sizeof a->fd);
    return NULL;
}

static void a_pipe_per_thread(void **state)
{
    struct qfs_pipes *ps = *state;
    struct qfs_pipe *mine = qfs_pipe_get(ps);
    assert_non_null(mine);
    struct thread_arg a = {ps, NULL, {-1, -1}};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, in_thread, &a), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_non_null(a.p);
    assert_ptr_not_equal(a.p, mine);
    assert_int_not_equal(a.fd[0], mine->fd[0]);
    /* closed at the thread's exit (nothing here opened a descriptor since) */
    assert_int_equal(fcntl(a.fd[0], F_GETFD), -1);
    assert_int_equal(fcntl(a.fd[1], F_GETFD), -1);
    assert_true(fcntl(mine->fd[0], F_GETFD) >= 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(staged_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(a_source_cut_short_is_eio, setup, teardown),
        cmocka_unit_test_setup_teardown(no_room_is_eagain, setup, teardown),
        cmocka_unit_test_setup_teardown(left_full_is_never_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(what_fits_is_staged, setup, teardown),
        cmocka_unit_test_setup_teardown(a_pipe_per_thread, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
