/* test_cache.c — the block cache: single-flight, errors, the hot tier's
 * budget, prefetch, the zstd memory tier (LRU order, checksums) and the
 * persistent tier (restarts, corrupt and truncated entries, sweep, a full
 * disk, two caches sharing a directory). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cache.h"

struct counter {
    atomic_int fills;
    int fail_first; /* fail this many fills with -EIO */
    useconds_t delay;
    int noise;      /* incompressible bytes */
};

/* Block contents depend on (len, noise) only, so any reader can check them. */
static uint8_t pattern_byte(size_t i, size_t len, int noise)
{
    if (!noise)
        return (uint8_t)(i * 7 + len);
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ len;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return (uint8_t)x;
}

static int fill_pattern(void *arg, uint8_t *dst, size_t len, void *scratch)
{
    struct counter *c = arg;
    if (!scratch)
        return -EFAULT;
    int n = atomic_fetch_add(&c->fills, 1);
    if (c->delay)
        usleep(c->delay);
    if (n < c->fail_first)
        return -EIO;
    for (size_t i = 0; i < len; i++)
        dst[i] = pattern_byte(i, len, c->noise);
    return 0;
}

static struct qc_opts opts(size_t mem, size_t hot, unsigned workers, const char *dir)
{
    return (struct qc_opts){.mem_budget = mem, .hot_budget = hot, .workers = workers, .scratch_size = 64, .dir = dir};
}

static struct qc_cache *mk_opts(struct qc_opts o)
{
    struct qc_cache *c;
    assert_int_equal(qc_cache_new(&o, &c), 0);
    return c;
}

static struct qc_cache *mk(size_t hot, unsigned workers) { return mk_opts(opts(0, hot, workers, NULL)); }

static struct qc_key key(uint64_t i) { return qc_key_make(&i, sizeof i); }

static bool block_ok(struct qc_block *b, size_t len, int noise)
{
    if (qc_block_len(b) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (qc_block_data(b)[i] != pattern_byte(i, len, noise))
            return false;
    return true;
}

static void check_block(struct qc_block *b, size_t len) { assert_true(block_ok(b, len, 0)); }

/* get + verify + release */
static void get_ok(struct qc_cache *c, uint64_t k, size_t len, struct counter *cnt)
{
    struct qc_block *b;
    assert_int_equal(qc_get(c, key(k), len, fill_pattern, cnt, &b), 0);
    assert_true(block_ok(b, len, cnt->noise));
    qc_release(c, b);
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
    assert_int_equal(s.hot_hits, 1);
    assert_int_equal(s.computed, 1);
    /* the same key with another length is refused, never served */
    assert_int_equal(qc_get(c, key(1), 999, fill_pattern, &cnt, &b), -EINVAL);
    qc_cache_free(c);
}

struct race {
    struct qc_cache *c;
    struct counter *cnt;
    pthread_barrier_t *bar;
    int nkeys, rounds;
    atomic_int *bad;
};

static void *racer(void *p)
{
    struct race *r = p;
    pthread_barrier_wait(r->bar);
    for (int round = 0; round < r->rounds; round++) {
        for (int k = 0; k < r->nkeys; k++) {
            struct qc_block *b;
            if (qc_get(r->c, key((uint64_t)k), 4096, fill_pattern, r->cnt, &b)) {
                atomic_fetch_add(r->bad, 1);
                continue;
            }
            if (!block_ok(b, 4096, r->cnt->noise))
                atomic_fetch_add(r->bad, 1);
            qc_release(r->c, b);
        }
    }
    return NULL;
}

static void run_racers(struct qc_cache *c, struct counter *cnt, int nthreads, int nkeys, int rounds)
{
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)nthreads);
    pthread_t t[64];
    atomic_int bad = 0;
    struct race r = {c, cnt, &bar, nkeys, rounds, &bad};
    for (int i = 0; i < nthreads; i++)
        pthread_create(&t[i], NULL, racer, &r);
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&bar);
    assert_int_equal(bad, 0);
}

/* 32 threads want the same 8 blocks at once: each is filled exactly once. */
static void test_single_flight(void **state)
{
    (void)state;
    struct qc_cache *c = mk(1 << 20, 0);
    struct counter cnt = {.delay = 2000};
    run_racers(c, &cnt, 32, 8, 1);
    assert_int_equal(cnt.fills, 8);
    struct qc_stats s;
    qc_stats_get(c, &s);
    assert_int_equal(s.computed, 8);
    assert_int_equal(s.hot_hits + s.waits, 31 * 8);
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
    assert_int_equal(s.hot_blocks, 1);
    qc_cache_free(c);
}

/* Idle plain blocks stay within the hot budget; blocks in use are never
 * evicted. */
static void test_hot_budget(void **state)
{
    (void)state;
    struct qc_cache *c = mk(10 * 1000, 0);
    struct counter cnt = {0};
    struct qc_block *held;
    assert_int_equal(qc_get(c, key(100), 1000, fill_pattern, &cnt, &held), 0);
    for (uint64_t k = 0; k < 50; k++)
        get_ok(c, k, 1000, &cnt);
    struct qc_stats s;
    qc_stats_get(c, &s);
    assert_true(s.hot_bytes <= 11 * 1000);
    check_block(held, 1000);
    /* most recent stay: key 49 is a hit, key 0 was evicted */
    get_ok(c, 49, 1000, &cnt);
    int before = cnt.fills;
    get_ok(c, 0, 1000, &cnt);
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
    for (uint64_t k = 0; k < 16; k++)
        get_ok(c, k, 512, &cnt);
    qc_cache_free(c); /* waits for the workers */
    assert_int_equal(cnt.fills, 16);
    assert_int_equal(done_calls, 17);
}

/* With no hot tier, a second get decodes the memory tier's frame: no fill.
 * Compressible blocks are stored as zstd, noise raw. */
static void test_memory_tier(void **state)
{
    (void)state;
    struct qc_cache *c = mk_opts(opts(1 << 20, 0, 0, NULL));
    struct counter cnt = {0}, noisy = {.noise = 1};
    get_ok(c, 1, 64 << 10, &cnt);
    get_ok(c, 1, 64 << 10, &cnt);
    assert_int_equal(cnt.fills, 1);
    struct qc_stats s;
    qc_stats_get(c, &s);
    assert_int_equal(s.mem.hits, 1);
    assert_int_equal(s.mem.bytes_out, 64 << 10);
    assert_true(s.mem.stored_in * 20 < s.mem.bytes_in); /* the pattern compresses well */
    get_ok(c, 2, 64 << 10, &noisy);
    get_ok(c, 2, 64 << 10, &noisy);
    assert_int_equal(noisy.fills, 1);
    struct qc_stats s2;
    qc_stats_get(c, &s2);
    assert_int_equal(s2.mem.stored_in - s.mem.stored_in, 64 << 10); /* raw: zstd did not pay */
    assert_int_equal(s2.mem.entries, 2);
    assert_int_equal(qc_cached(c, key(2)), 1);
    assert_int_equal(qc_cached(c, key(3)), 0);
    qc_cache_free(c);
}

/* The memory tier evicts least recently used frames first, within budget. */
static void test_memory_lru(void **state)
{
    (void)state;
    /* room for 3 raw 10000-byte frames and their bookkeeping, not 4 */
    struct qc_cache *c = mk_opts(opts(3 * 10000 + 3000, 0, 0, NULL));
    struct counter cnt = {.noise = 1};
    get_ok(c, 1, 10000, &cnt);
    get_ok(c, 2, 10000, &cnt);
    get_ok(c, 3, 10000, &cnt);
    get_ok(c, 1, 10000, &cnt); /* 1 is now the most recent */
    assert_int_equal(cnt.fills, 3);
    get_ok(c, 4, 10000, &cnt); /* evicts 2 */
    struct qc_stats s;
    qc_stats_get(c, &s);
    assert_int_equal(s.mem.evictions, 1);
    assert_true(s.mem.bytes <= 3 * 10000 + 3000);
    assert_int_equal(qc_cached(c, key(2)), 0);
    assert_int_equal(qc_cached(c, key(1)), 1);
    get_ok(c, 1, 10000, &cnt);
    get_ok(c, 3, 10000, &cnt);
    get_ok(c, 4, 10000, &cnt);
    assert_int_equal(cnt.fills, 4);
    get_ok(c, 2, 10000, &cnt);
    assert_int_equal(cnt.fills, 5);
    qc_cache_free(c);
}

/* A frame whose bytes changed in memory is a miss: recomputed, counted,
 * never served. */
static void test_memory_checksum(void **state)
{
    (void)state;
    for (int noise = 0; noise < 2; noise++) { /* a zstd frame, then a raw one */
        struct qc_cache *c = mk_opts(opts(1 << 20, 1 << 20, 0, NULL));
        struct counter cnt = {.noise = noise};
        get_ok(c, 7, 30000, &cnt);
        assert_int_equal(qc_debug_corrupt(c, key(7)), 0);
        get_ok(c, 7, 30000, &cnt); /* verified by get_ok */
        assert_int_equal(cnt.fills, 2);
        struct qc_stats s;
        qc_stats_get(c, &s);
        assert_int_equal(s.mem.checksum_failures, 1);
        assert_int_equal(qc_debug_corrupt(c, key(8)), -ENOENT);
        qc_cache_free(c);
    }
}

/* A raw frame is its block's memory (cache.c): the hot tier dropping the
 * block (hot budget 0) must leave the frame's bytes alone while regions
 * empty and are reused for the next blocks. Each block's bytes differ (by
 * length), so a frame overwritten by a later block fails its checksum.
 * Transient blocks between them reuse memory the same way. */
static void test_memory_frames_share_blocks(void **state)
{
    (void)state;
    struct qc_cache *c = mk_opts(opts(64 << 20, 0, 0, NULL));
    struct counter cnt = {.noise = 1}, tcnt = {.noise = 1};
    for (int pass = 0; pass < 2; pass++) {
        for (uint64_t k = 0; k < 60; k++) {
            get_ok(c, k, 200000 + 64 * k, &cnt);
            struct qc_block *b;
            assert_int_equal(qc_getf(c, key(1000 + k), 300000 + 64 * k, QC_TRANSIENT, fill_pattern, &tcnt, &b), 0);
            assert_true(block_ok(b, 300000 + 64 * k, 1));
            qc_release(c, b);
        }
    }
    assert_int_equal(cnt.fills, 60); /* the second pass: every block from its frame, verified */
    assert_int_equal(tcnt.fills, 120); /* transient: never stored */
    struct qc_stats s;
    qc_stats_get(c, &s);
    assert_int_equal(s.mem.checksum_failures, 0);
    assert_int_equal(s.mem.hits, 60);
    qc_cache_free(c);
}

/* The tiers' regions are mapped ahead of need, without the cache's lock
 * (arena_refill): of the regions 60 stored blocks (about four regions'
 * worth, each pinned by its raw frame) and 60 transient ones take, only the
 * first of each arena is mapped with the lock held. */
static void test_regions_mapped_ahead(void **state)
{
    (void)state;
    struct qc_cache *c = mk_opts(opts(64 << 20, 0, 0, NULL));
    struct counter cnt = {.noise = 1}, tcnt = {.noise = 1};
    for (uint64_t k = 0; k < 60; k++) {
        get_ok(c, k, 280000 + 64 * k, &cnt);
        struct qc_block *b;
        assert_int_equal(qc_getf(c, key(1000 + k), 300000, QC_TRANSIENT, fill_pattern, &tcnt, &b), 0);
        assert_true(block_ok(b, 300000, 1));
        qc_release(c, b);
    }
    struct qc_stats s;
    qc_stats_get(c, &s);
    assert_true(s.regions_mapped >= 5);
    assert_int_equal(s.regions_mapped_locked, 2);
    for (uint64_t k = 0; k < 60; k++) /* every frame intact in its region */
        get_ok(c, k, 280000 + 64 * k, &cnt);
    assert_int_equal(cnt.fills, 60);
    qc_cache_free(c);
}

static char *mkdtemp_str(void)
{
    char *d = strdup("/tmp/qfs-cache-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rm_rf(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

/* The persistent tier survives the process: a new cache on the same
 * directory serves every block without a fill. */
static void test_disk_restart(void **state)
{
    (void)state;
    char *dir = mkdtemp_str();
    struct counter cnt = {0}, noisy = {.noise = 1};
    struct qc_cache *c = mk_opts(opts(0, 0, 2, dir));
    for (uint64_t k = 0; k < 10; k++)
        get_ok(c, k, 50000 + k, k & 1 ? &noisy : &cnt);
    qc_cache_free(c); /* finishes queued stores */
    assert_int_equal(cnt.fills + noisy.fills, 10);

    c = mk_opts(opts(1 << 20, 0, 0, dir));
    for (uint64_t k = 0; k < 10; k++)
        assert_int_equal(qc_cached(c, key(k)), 1);
    for (uint64_t k = 0; k < 10; k++)
        get_ok(c, k, 50000 + k, k & 1 ? &noisy : &cnt);
    assert_int_equal(cnt.fills + noisy.fills, 10);
    struct qc_stats s;
    qc_stats_get(c, &s);
    assert_int_equal(s.disk.hits, 10);
    assert_int_equal(s.computed, 0);
    /* promoted to memory: another round touches neither disk nor fill */
    for (uint64_t k = 0; k < 10; k++)
        get_ok(c, k, 50000 + k, k & 1 ? &noisy : &cnt);
    qc_stats_get(c, &s);
    assert_int_equal(s.disk.hits, 10);
    assert_int_equal(s.mem.hits, 10);
    qc_cache_free(c);
    rm_rf(dir);
    free(dir);
}

static void entry_path(struct qc_cache *c, uint64_t k, char *buf, size_t len)
{
    assert_int_equal(qc_entry_path(c, key(k), buf, len), 0);
}

static void corrupt_file(const char *path, int how)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t byte;
    switch (how) {
    case 0: /* a payload byte */
    case 1: /* a header byte (the magic) */
    case 2: /* the stored checksum of the plain bytes */
    {
        off_t at = how == 0 ? st.st_size - 100 : how == 1 ? 0 : 48;
        assert_int_equal(pread(fd, &byte, 1, at), 1);
        byte ^= 0x01;
        assert_int_equal(pwrite(fd, &byte, 1, at), 1);
        break;
    }
    case 3: assert_int_equal(ftruncate(fd, st.st_size - 1), 0); break;  /* truncated payload */
    case 4: assert_int_equal(ftruncate(fd, 20), 0); break;              /* truncated header */
    case 5: assert_int_equal(ftruncate(fd, 0), 0); break;               /* empty */
    case 6: assert_int_equal(pwrite(fd, "x", 1, st.st_size), 1); break; /* trailing garbage */
    }
    close(fd);
}

/* Every kind of damaged entry is a verified miss: deleted, counted,
 * recomputed, stored again. */
static void test_disk_corrupt(void **state)
{
    (void)state;
    char *dir = mkdtemp_str();
    for (int how = 0; how < 7; how++) {
        for (int noise = 0; noise < 2; noise++) {
            struct counter cnt = {.noise = noise};
            struct qc_cache *c = mk_opts(opts(0, 0, 0, dir));
            uint64_t k = (uint64_t)(how * 2 + noise);
            get_ok(c, k, 40000, &cnt);
            char path[4096];
            entry_path(c, k, path, sizeof path);
            corrupt_file(path, how);
            get_ok(c, k, 40000, &cnt);
            assert_int_equal(cnt.fills, 2);
            struct qc_stats s;
            qc_stats_get(c, &s);
            assert_int_equal(s.disk.checksum_failures, 1);
            /* stored again, whole: a third cache reads it without a fill */
            qc_cache_free(c);
            c = mk_opts(opts(0, 0, 0, dir));
            get_ok(c, k, 40000, &cnt);
            assert_int_equal(cnt.fills, 2);
            qc_cache_free(c);
        }
    }
    rm_rf(dir);
    free(dir);
}

/* The sweep keeps the directory within budget by deleting the least
 * recently used entries, and removes temp files of crashed writers. */
static void test_disk_sweep(void **state)
{
    (void)state;
    char *dir = mkdtemp_str();
    struct qc_cache *c = mk_opts(opts(0, 0, 0, dir));
    struct counter cnt = {.noise = 1};
    char path[30][4096];
    for (uint64_t k = 0; k < 30; k++) {
        get_ok(c, k, 10000, &cnt);
        entry_path(c, k, path[k], sizeof path[k]);
        /* entry k was last used at t = 1e9 + k */
        struct timespec ts[2] = {{1000000000 + (time_t)k, 0}, {1000000000 + (time_t)k, 0}};
        assert_int_equal(utimensat(AT_FDCWD, path[k], ts, 0), 0);
    }
    qc_cache_free(c);
    char tmp_old[4096], tmp_new[4096];
    snprintf(tmp_old, sizeof tmp_old, "%s/qfs1/tmp/e.crashed", dir);
    snprintf(tmp_new, sizeof tmp_new, "%s/qfs1/tmp/e.writing", dir);
    fclose(fopen(tmp_old, "w"));
    fclose(fopen(tmp_new, "w"));
    struct timespec old[2] = {{1000000000, 0}, {1000000000, 0}};
    assert_int_equal(utimensat(AT_FDCWD, tmp_old, old, 0), 0);

    struct qc_opts o = opts(0, 0, 0, dir);
    o.dir_budget = 200000;
    c = mk_opts(o); /* its background sweep may run alongside ours */
    qc_sweep(c);
    struct qc_stats s;
    qc_stats_get(c, &s);
    assert_true(s.disk.evictions > 0);
    /* what is left fits, and is the most recently used */
    uint64_t bytes = 0;
    int first = -1;
    for (int k = 0; k < 30; k++) {
        struct stat st;
        if (stat(path[k], &st)) {
            assert_int_equal(first, -1); /* no hole after the first survivor */
            continue;
        }
        if (first < 0)
            first = k;
        bytes += (uint64_t)st.st_blocks * 512 > (uint64_t)st.st_size ? (uint64_t)st.st_blocks * 512
                                                                      : (uint64_t)st.st_size;
    }
    assert_true(first > 0 && first < 29);
    assert_true(bytes <= 200000);
    assert_int_equal(access(tmp_old, F_OK), -1);
    assert_int_equal(access(tmp_new, F_OK), 0);
    qc_cache_free(c);
    rm_rf(dir);
    free(dir);
}

static atomic_int log_lines;
static char last_log[512];
static void count_log(void *arg, int prio, const char *msg)
{
    (void)arg;
    (void)prio;
    atomic_fetch_add(&log_lines, 1);
    snprintf(last_log, sizeof last_log, "%s", msg);
}

/* A full disk: every block is still served right, stores stop after the
 * first ENOSPC, which is logged once. Needs root for a tiny tmpfs. */
static void test_disk_full(void **state)
{
    (void)state;
    char *dir = mkdtemp_str();
    if (mount("tmpfs", dir, "tmpfs", 0, "size=256k")) {
        rm_rf(dir);
        free(dir);
        skip();
    }
    struct qc_opts o = opts(0, 0, 0, dir);
    o.dir_budget = 1 << 30; /* bigger than the disk: ENOSPC comes first */
    o.retry_ms = 200;
    o.log = count_log;
    atomic_store(&log_lines, 0);
    struct qc_cache *c = mk_opts(o);
    struct counter cnt = {.noise = 1};
    for (uint64_t k = 0; k < 40; k++)
        get_ok(c, k, 30000, &cnt);
    struct qc_stats s;
    qc_stats_get(c, &s);
    assert_true(s.store_errors >= 1);
    assert_int_equal(s.disk_storing, 0);
    assert_true(s.disk.bytes_in < 40 * 30000);
    assert_int_equal(log_lines, 1);
    assert_non_null(strstr(last_log, "No space left"));
    /* entries stored before the disk filled are served from it */
    uint64_t stored = s.disk.bytes_in / 30000;
    qc_cache_free(c);
    c = mk_opts(o);
    int before = cnt.fills;
    for (uint64_t k = 0; k < stored; k++)
        get_ok(c, k, 30000, &cnt);
    assert_int_equal(cnt.fills, before);
    /* once there is room again, storing resumes retry_ms after a failure
     * (the disk is full again: make a failure, then room) */
    for (uint64_t k = 100; k < 104; k++)
        get_ok(c, k, 30000, &cnt);
    qc_stats_get(c, &s);
    assert_int_equal(s.disk_storing, 0);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -f %s/qfs1/[0-9a-f][0-9a-f]/*", dir);
    assert_int_equal(system(cmd), 0);
    usleep(300 * 1000);
    uint64_t in0 = s.disk.bytes_in;
    get_ok(c, 1000, 30000, &cnt);
    qc_stats_get(c, &s);
    assert_int_equal(s.disk_storing, 1);
    assert_int_equal(s.disk.bytes_in, in0 + 30000);
    qc_cache_free(c);
    c = mk_opts(o);
    before = cnt.fills;
    get_ok(c, 1000, 30000, &cnt); /* it is on disk */
    assert_int_equal(cnt.fills, before);
    qc_cache_free(c);
    assert_int_equal(umount(dir), 0);
    rm_rf(dir);
    free(dir);
}

/* Two caches (two daemons) on one directory at the same time, each with
 * threads hammering the same keys: everything served is right, and what
 * one stored the other reads. */
struct sharer {
    struct qc_cache *c;
    struct counter *cnt;
};

static void *share_worker(void *p)
{
    struct sharer *s = p;
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 4);
    pthread_t t[4];
    atomic_int bad = 0;
    struct race r = {s->c, s->cnt, &bar, 24, 3, &bad};
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, racer, &r);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&bar);
    return (void *)(intptr_t)atomic_load(&bad);
}

static void test_disk_shared(void **state)
{
    (void)state;
    char *dir = mkdtemp_str();
    struct counter ca = {.noise = 1}, cb = {.noise = 1};
    struct qc_cache *a = mk_opts(opts(1 << 16, 0, 2, dir)), *b = mk_opts(opts(1 << 16, 0, 2, dir));
    struct sharer sa = {a, &ca}, sb = {b, &cb};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, share_worker, &sa);
    pthread_create(&tb, NULL, share_worker, &sb);
    void *ra, *rb;
    pthread_join(ta, &ra);
    pthread_join(tb, &rb);
    assert_null(ra);
    assert_null(rb);
    qc_flush(a);
    qc_flush(b);
    struct qc_stats s;
    qc_stats_get(a, &s);
    assert_int_equal(s.disk.checksum_failures, 0);
    /* a third cache finds all 24 and computes nothing */
    struct qc_cache *c3 = mk_opts(opts(0, 0, 0, dir));
    struct counter cc = {.noise = 1};
    for (uint64_t k = 0; k < 24; k++)
        get_ok(c3, k, 4096, &cc);
    assert_int_equal(cc.fills, 0);
    qc_cache_free(c3);
    qc_cache_free(a);
    qc_cache_free(b);
    rm_rf(dir);
    free(dir);
}

/* An entry is published once and never replaced: a peer that converted
 * the same block at the same time and publishes second (link: EEXIST)
 * leaves the first file, same inode, so a reader's handle on it (another
 * node's, on NFS) never goes stale; an entry evicted under an open reader
 * still reads. */
struct racer {
    struct qc_cache *peer;
    struct counter cnt;
};

static int fill_racing(void *arg, uint8_t *dst, size_t len, void *scratch)
{
    struct racer *r = arg;
    struct counter pc = {0};
    get_ok(r->peer, 7, len, &pc); /* the peer computes and publishes it first */
    return fill_pattern(&r->cnt, dst, len, scratch);
}

static void test_disk_publish_once(void **state)
{
    (void)state;
    char *dir = mkdtemp_str();
    struct qc_cache *a = mk_opts(opts(0, 0, 0, dir)), *b = mk_opts(opts(0, 0, 0, dir));
    struct racer r = {a, {0}};
    struct qc_block *blk;
    assert_int_equal(qc_get(b, key(7), 4096, fill_racing, &r, &blk), 0);
    char path[4096];
    assert_int_equal(qc_entry_path(a, key(7), path, sizeof path), 0);
    struct stat st1, st2;
    assert_int_equal(stat(path, &st1), 0); /* a's entry, published during b's fill */
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    qc_release(b, blk);
    qc_flush(b);
    struct qc_stats s;
    qc_stats_get(b, &s);
    assert_int_equal(s.store_errors, 0); /* EEXIST is success */
    assert_int_equal(stat(path, &st2), 0);
    assert_int_equal(st2.st_ino, st1.st_ino); /* not replaced */
    assert_int_equal(st2.st_nlink, 1);        /* and b's temp name is gone */
    unlink(path); /* a peer's sweep evicts it: the open reader keeps its bytes */
    uint8_t hdr[8];
    assert_int_equal(pread(fd, hdr, 8, 0), 8);
    assert_memory_equal(hdr, "QFSCACHE", 8);
    close(fd);
    qc_cache_free(a);
    qc_cache_free(b);
    rm_rf(dir);
    free(dir);
}

/* A shared tier behind cache_dir: a writer fills it; a read-only reader
 * finds every block there, copies them to its own cache_dir, and writes
 * nothing to the shared tier; a read-only tier must exist. */
static void test_shared_tier(void **state)
{
    (void)state;
    char *shared = mkdtemp_str(), *la = mkdtemp_str(), *lb = mkdtemp_str();
    struct counter ca = {.noise = 1}, cb = {.noise = 1};
    struct qc_opts o = opts(0, 0, 0, la);
    o.shared_dir = shared;
    struct qc_cache *a = mk_opts(o);
    for (uint64_t k = 0; k < 8; k++)
        get_ok(a, k, 4096, &ca);
    qc_cache_free(a);
    assert_int_equal(ca.fills, 8);
    o = opts(0, 0, 0, lb);
    o.shared_dir = shared;
    o.shared_ro = 1;
    struct qc_cache *b = mk_opts(o);
    for (uint64_t k = 0; k < 8; k++)
        get_ok(b, k, 4096, &cb);
    struct qc_stats s;
    qc_stats_get(b, &s);
    assert_int_equal(cb.fills, 0);
    assert_int_equal(s.shared.hits, 8);
    assert_int_equal(s.shared.bytes_in, 0);
    assert_int_equal(s.disk.bytes_in, 8 * 4096);
    assert_int_equal(s.shared_storing, 0);
    struct counter cc = {.noise = 1};
    get_ok(b, 100, 4096, &cc); /* computed: stored locally only */
    qc_cache_free(b);
    struct qc_cache *solo = mk_opts(opts(0, 0, 0, lb)); /* the node alone has them all */
    for (uint64_t k = 0; k < 8; k++)
        get_ok(solo, k, 4096, &cb);
    assert_int_equal(cb.fills, 0);
    qc_cache_free(solo);
    struct qc_cache *chk = mk_opts(opts(0, 0, 0, shared));
    struct qc_block *blk;
    assert_int_equal(qc_get(chk, key(100), 4096, NULL, NULL, &blk), -ENOENT); /* never written there */
    qc_cache_free(chk);
    char missing[4096];
    snprintf(missing, sizeof missing, "%s/none", shared);
    o.shared_dir = missing;
    struct qc_cache *bad;
    assert_int_equal(qc_cache_new(&o, &bad), -ENOENT);
    rm_rf(shared), rm_rf(la), rm_rf(lb);
    free(shared), free(la), free(lb);
}

/* A lookup (fill NULL) never computes; qc_peek sees only ready hot
 * blocks; the streaming hasher equals qc_key_make over the whole. */
static void test_lookup_peek_hasher(void **state)
{
    (void)state;
    struct qc_cache *c = mk(1 << 20, 0);
    struct qc_block *b;
    uint8_t out[16];
    assert_int_equal(qc_get(c, key(1), 16, NULL, NULL, &b), -ENOENT);
    assert_int_equal(qc_peek(c, key(1), out, 16), -ENOENT);
    struct counter cnt = {0};
    get_ok(c, 1, 16, &cnt);
    assert_int_equal(qc_peek(c, key(1), out, 16), 0);
    assert_int_equal(out[3], pattern_byte(3, 16, 0));
    assert_int_equal(qc_peek(c, key(1), out, 8), -ENOENT); /* another length: not that block */
    assert_int_equal(qc_get(c, key(1), 16, NULL, NULL, &b), 0);
    qc_release(c, b);
    assert_int_equal(cnt.fills, 1);
    qc_cache_free(c);
    uint8_t data[1000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 13);
    struct qc_hasher *h = qc_hasher_new();
    assert_non_null(h);
    qc_hasher_update(h, data, 1);
    qc_hasher_update(h, data + 1, 600);
    qc_hasher_update(h, data + 601, 399);
    struct qc_key k1 = qc_hasher_digest(h), k2 = qc_key_make(data, sizeof data);
    assert_true(k1.lo == k2.lo && k1.hi == k2.hi);
    qc_hasher_free(h);
}

/* All tiers at once under contention, with tiny budgets so blocks move
 * between tiers all the time. */
static void test_tiers_stress(void **state)
{
    (void)state;
    char *dir = mkdtemp_str();
    struct qc_opts o = opts(5 * 4096, 3 * 4096, 2, dir);
    struct qc_cache *c = mk_opts(o);
    struct counter cnt = {0};
    run_racers(c, &cnt, 16, 40, 4);
    qc_cache_free(c);
    rm_rf(dir);
    free(dir);
}

static void test_bad_dir(void **state)
{
    (void)state;
    struct qc_opts o = opts(0, 0, 0, "/proc/version/cache");
    struct qc_cache *c;
    assert_true(qc_cache_new(&o, &c) < 0);
    assert_true(qc_dir_check("/proc/version/cache") < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_miss),       cmocka_unit_test(test_single_flight),
        cmocka_unit_test(test_errors_not_cached), cmocka_unit_test(test_hot_budget),
        cmocka_unit_test(test_prefetch),       cmocka_unit_test(test_memory_tier),
        cmocka_unit_test(test_memory_lru),     cmocka_unit_test(test_memory_checksum),
        cmocka_unit_test(test_memory_frames_share_blocks),
        cmocka_unit_test(test_regions_mapped_ahead),
        cmocka_unit_test(test_disk_restart),   cmocka_unit_test(test_disk_corrupt),
        cmocka_unit_test(test_disk_sweep),     cmocka_unit_test(test_disk_full),
        cmocka_unit_test(test_disk_shared),    cmocka_unit_test(test_tiers_stress),
        cmocka_unit_test(test_bad_dir),        cmocka_unit_test(test_disk_publish_once),
        cmocka_unit_test(test_shared_tier),    cmocka_unit_test(test_lookup_peek_hasher),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
