/* test_guard.c — fs/guard.c: touching a mapped page that its file lost
 * (truncated after mmap) inside qfs_guard is -EIO, not a dead process;
 * outside any guard it still is. On a memfd (tmpfs) and on a file in the
 * current directory (the build tree's filesystem). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "guard.h"

enum { PAGES = 4 };

struct mapped {
    int fd;
    size_t page;
    const volatile uint8_t *p; /* PAGES pages; all but the first gone */
};

/* A file of PAGES pages (byte i = i % 251), mapped whole, then truncated
 * to its first page. */
static struct mapped map_then_truncate(bool memfd)
{
    /* cmocka sets a SIGBUS handler of its own around each test */
    assert_int_equal(qfs_guard_install(), 0);
    struct mapped m = {.page = (size_t)sysconf(_SC_PAGESIZE)};
    char name[] = "guard-XXXXXX";
    m.fd = memfd ? memfd_create("guard", 0) : mkstemp(name);
    assert_true(m.fd >= 0);
    if (!memfd)
        unlink(name);
    uint8_t *buf = malloc(PAGES * m.page);
    assert_non_null(buf);
    for (size_t i = 0; i < PAGES * m.page; i++)
        buf[i] = (uint8_t)(i % 251);
    assert_int_equal(pwrite(m.fd, buf, PAGES * m.page, 0), (ssize_t)(PAGES * m.page));
    free(buf);
    void *p = mmap(NULL, PAGES * m.page, PROT_READ, MAP_SHARED, m.fd, 0);
    assert_true(p != MAP_FAILED);
    m.p = p;
    assert_int_equal(m.p[2 * m.page], (2 * m.page) % 251); /* mapped and present */
    assert_int_equal(ftruncate(m.fd, (off_t)m.page), 0);
    return m;
}

static void unmap(struct mapped *m)
{
    munmap((void *)(uintptr_t)m->p, PAGES * m->page);
    close(m->fd);
}

struct touch {
    const volatile uint8_t *p;
    size_t n;
    unsigned sum;
};

static int touch(void *arg)
{
    struct touch *t = arg;
    unsigned s = 0;
    for (size_t i = 0; i < t->n; i++)
        s += t->p[i];
    t->sum = s;
    return 7;
}

static unsigned want_sum(size_t from, size_t n)
{
    unsigned s = 0;
    for (size_t i = from; i < from + n; i++)
        s += (unsigned)(i % 251);
    return s;
}

static void guarded_fault(bool memfd)
{
    struct mapped m = map_then_truncate(memfd);
    for (int round = 0; round < 3; round++) { /* the handler is left able to run again */
        struct touch kept = {m.p, m.page, 0};
        assert_int_equal(qfs_guard(touch, &kept), 7);
        assert_int_equal(kept.sum, want_sum(0, m.page));
        struct touch lost = {m.p + 2 * m.page, m.page, 0};
        assert_int_equal(qfs_guard(touch, &lost), -EIO);
        struct touch across = {m.p + m.page / 2, m.page, 0}; /* faults half-way */
        assert_int_equal(qfs_guard(touch, &across), -EIO);
    }
    unmap(&m);
}

static void test_memfd(void **state)
{
    (void)state;
    guarded_fault(true);
}

static void test_file(void **state)
{
    (void)state;
    guarded_fault(false);
}

/* An inner guard's fault ends the inner call only; the outer one goes on,
 * and its own fault is its own. */
struct nest {
    struct mapped *m;
    int inner;
    unsigned sum;
};

static int outer_fn(void *arg)
{
    struct nest *n = arg;
    struct touch lost = {n->m->p + 3 * n->m->page, 1, 0};
    n->inner = qfs_guard(touch, &lost);
    struct touch kept = {n->m->p, n->m->page, 0};
    touch(&kept);
    n->sum = kept.sum;
    (void)n->m->p[2 * n->m->page]; /* the outer guard's */
    return 0;
}

static void test_nested(void **state)
{
    (void)state;
    struct mapped m = map_then_truncate(true);
    struct nest n = {&m, 0, 0};
    assert_int_equal(qfs_guard(outer_fn, &n), -EIO);
    assert_int_equal(n.inner, -EIO);
    assert_int_equal(n.sum, want_sum(0, m.page));
    unmap(&m);
}

/* Each thread has its own guard: faults on one never land in another's. */
static void *thread_main(void *arg)
{
    struct mapped *m = arg;
    long bad = 0;
    for (int i = 0; i < 2000; i++) {
        struct touch t = {m->p + (i % 2 ? 2 * m->page : 0), 64, 0};
        int rc = qfs_guard(touch, &t);
        bad += i % 2 ? rc != -EIO : rc != 7 || t.sum != want_sum(0, 64);
    }
    return (void *)bad;
}

static void test_threads(void **state)
{
    (void)state;
    struct mapped m = map_then_truncate(true);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &m), 0);
    for (int i = 0; i < 4; i++) {
        void *bad;
        assert_int_equal(pthread_join(th[i], &bad), 0);
        assert_null(bad);
    }
    unmap(&m);
}

/* Outside a guard a lost page still stops the process: the fault goes to
 * the disposition the handler replaced (default: death by SIGBUS). */
static void test_unguarded_still_fatal(void **state)
{
    (void)state;
    struct mapped m = map_then_truncate(true);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (!pid) { /* the default disposition under the handler, as in the daemon */
        signal(SIGBUS, SIG_DFL);
        if (qfs_guard_install())
            _exit(0);
        (void)m.p[2 * m.page];
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS);
    unmap(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memfd),  cmocka_unit_test(test_file),
        cmocka_unit_test(test_nested), cmocka_unit_test(test_threads),
        cmocka_unit_test(test_unguarded_still_fatal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
