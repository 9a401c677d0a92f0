/* test_cache.c — single-flight, error handling, LRU budget, prefetch. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cache.h"

struct counter {
    atomic_int fills;
    int fail_first; /* fail this many fills with -EIO */
    useconds_t delay;
};

static int fill_pattern(void *arg, uint8_t *dst, size_t len, void *scratch)
{
    struct counter *c = arg;
    assert_non_null(scratch);
    int n = atomic_fetch_add(&c->fills, 1);
    if (c->delay)
        usleep(c->delay);
    if (n < c->fail_first)
        return -EIO;
    for (size_t i = 0; i < len; i++)
        dst[i] = (uint8_t)(i * 7 + len);
    return 0;
}

static struct qc_cache *mk(size_t budget, unsigned workers)
{
    struct qc_opts o = {.mem_budget = budget, .workers = workers, .scratch_size = 64};
    struct qc_cache *c;
    assert_int_equal(qc_cache_new(&o, &c), 0);
    return c;
}

static struct qc_key key(uint64_t i) { return qc_key_make(&i, sizeof i); }

static void check_block(struct qc_block *b, size_t len)
{
    assert_int_equal(qc_block_len(b), len);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(qc_block_data(b)[i], (uint8_t)(i * 7 + len));
}

static void test_hit_miss(void **state)
{
    (void)state;
    struct qc_cache *c = mk(1 << 20, 0);
    struct counter cnt = {0};
    struct qc_block *b;
    assert_int_equal(qc_get(c, key(1), 1000, fill_pattern, &cnt, &b), 0);
    check_block(b, 1000);
    qc_release(c, b);
    assert_int_equal(qc_get(c, key(1), 1000, fill_pattern, &cnt, &b), 0);
    qc_release(c, b);
    assert_int_equal(cnt.fills, 1);
    struct qc_stats s;
    qc_stats_get(c, &s);
    assert_int_equal(s.hits, 1);
    assert_int_equal(s.misses, 1);
    /* the same key with another length is refused, never served */
    assert_int_equal(qc_get(c, key(1), 999, fill_pattern, &cnt, &b), -EINVAL);
    qc_cache_free(c);
}

struct race {
    struct qc_cache *c;
    struct counter *cnt;
    pthread_barrier_t *bar;
};

static void *racer(void *p)
{
    struct race *r = p;
    pthread_barrier_wait(r->bar);
    for (uint64_t k = 0; k < 8; k++) {
        struct qc_block *b;
        assert_int_equal(qc_get(r->c, key(k), 4096, fill_pattern, r->cnt, &b), 0);
        check_block(b, 4096);
        qc_release(r->c, b);
    }
    return NULL;
}

/* 8 threads want the same 8 blocks at once: each is filled exactly once. */
static void test_single_flight(void **state)
{
    (void)state;
    struct qc_cache *c = mk(1 << 20, 0);
    struct counter cnt = {.delay = 2000};
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 8);
    pthread_t t[8];
    struct race r = {c, &cnt, &bar};
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, racer, &r);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(cnt.fills, 8);
    struct qc_stats s;
    qc_stats_get(c, &s);
    assert_int_equal(s.misses, 8);
    assert_int_equal(s.hits + s.waits, 56);
    pthread_barrier_destroy(&bar);
    qc_cache_free(c);
}

static void test_errors_not_cached(void **state)
{
    (void)state;
    struct qc_cache *c = mk(1 << 20, 0);
    struct counter cnt = {.fail_first = 1};
    struct qc_block *b;
    assert_int_equal(qc_get(c, key(5), 100, fill_pattern, &cnt, &b), -EIO);
    assert_null(b);
    assert_int_equal(qc_get(c, key(5), 100, fill_pattern, &cnt, &b), 0);
    check_block(b, 100);
    qc_release(c, b);
    struct qc_stats s;
    qc_stats_get(c, &s);
    assert_int_equal(s.fill_errors, 1);
    assert_int_equal(s.mem_blocks, 1);
    qc_cache_free(c);
}

/* Idle blocks stay within the budget; blocks in use are never evicted. */
static void test_budget(void **state)
{
    (void)state;
    struct qc_cache *c = mk(10 * 1000, 0);
    struct counter cnt = {0};
    struct qc_block *held;
    assert_int_equal(qc_get(c, key(100), 1000, fill_pattern, &cnt, &held), 0);
    for (uint64_t k = 0; k < 50; k++) {
        struct qc_block *b;
        assert_int_equal(qc_get(c, key(k), 1000, fill_pattern, &cnt, &b), 0);
        qc_release(c, b);
    }
    struct qc_stats s;
    qc_stats_get(c, &s);
    assert_true(s.mem_bytes <= 11 * 1000);
    assert_int_equal(s.evictions, 40);
    check_block(held, 1000);
    /* most recent stay: key 49 is a hit, key 0 was evicted */
    struct qc_block *b;
    assert_int_equal(qc_get(c, key(49), 1000, fill_pattern, &cnt, &b), 0);
    qc_release(c, b);
    int before = cnt.fills;
    assert_int_equal(qc_get(c, key(0), 1000, fill_pattern, &cnt, &b), 0);
    qc_release(c, b);
    assert_int_equal(cnt.fills, before + 1);
    qc_release(c, held);
    qc_cache_free(c);
}

static atomic_int done_calls;
static void done_cb(void *arg)
{
    (void)arg;
    atomic_fetch_add(&done_calls, 1);
}

static void test_prefetch(void **state)
{
    (void)state;
    struct qc_cache *c = mk(1 << 20, 2);
    struct counter cnt = {0};
    atomic_store(&done_calls, 0);
    for (uint64_t k = 0; k < 16; k++)
        qc_prefetch(c, key(k), 512, fill_pattern, &cnt, done_cb);
    /* queued twice: dropped, but done() still runs */
    qc_prefetch(c, key(3), 512, fill_pattern, &cnt, done_cb);
    for (uint64_t k = 0; k < 16; k++) {
        struct qc_block *b;
        assert_int_equal(qc_get(c, key(k), 512, fill_pattern, &cnt, &b), 0);
        check_block(b, 512);
        qc_release(c, b);
    }
    qc_cache_free(c); /* waits for the workers */
    assert_int_equal(cnt.fills, 16);
    assert_int_equal(done_calls, 17);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_miss),   cmocka_unit_test(test_single_flight), cmocka_unit_test(test_errors_not_cached),
        cmocka_unit_test(test_budget),     cmocka_unit_test(test_prefetch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
