/* cache.c — in-memory block cache: single-flight fills, LRU, prefetch pool.
 *
 * One mutex guards the table, the LRU list, the queue and the counters; fills
 * run without it. Waiters sleep on one condition variable broadcast when any
 * fill ends: fills take milliseconds and waiters are few, so a condvar per
 * block would buy nothing.
 *
 * Block states:  QUEUED --(worker or reader claims)--> FILLING --> READY
 *                                                         \--> failed: unlinked, waiters get the error
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "cache.h"

enum state { QUEUED, FILLING, READY, FAILED };

#define QC_SPARE_MAX 64
#define QC_SPARE_BYTES ((size_t)64 << 20)

struct qc_block {
    struct qc_key key;
    size_t len;
    uint8_t *data;
    unsigned refs;
    enum state state;
    int err;
    bool in_table;
    struct qc_block *hnext;            /* hash chain */
    struct qc_block *lru_prev, *lru_next; /* idle READY blocks only */
};

struct job {
    struct qc_block *b; /* holds one reference */
    qc_fill_fn fill;
    void *arg;
    void (*done)(void *);
};

struct qc_cache {
    struct qc_opts o;
    pthread_mutex_t mu;
    pthread_cond_t filled;    /* a fill finished */
    pthread_cond_t work;      /* a job was queued, or shutdown */
    struct qc_block **table;
    size_t nbuckets;
    struct qc_block lru;      /* sentinel; lru.next = most recent */
    size_t idle_bytes;
    struct job *queue;
    unsigned qhead, qlen;
    bool stop;
    pthread_t *threads;
    unsigned nthreads;
    void **scratch_pool;      /* free scratch buffers */
    unsigned npool, pool_cap;
    /* Buffers of destroyed blocks, reused for new blocks of the same size:
     * fresh memory costs a page fault per 4 KiB, which measured as the
     * largest cost of the read path on a VM (bench/RESULTS.md). */
    struct {
        uint8_t *p;
        size_t len;
    } spare[QC_SPARE_MAX];
    unsigned nspare;
    size_t spare_bytes;
    struct qc_stats st;
};

struct qc_key qc_key_make(const void *data, size_t len)
{
    XXH128_hash_t h = XXH3_128bits(data, len);
    return (struct qc_key){h.low64, h.high64};
}

static bool key_eq(struct qc_key a, struct qc_key b) { return a.lo == b.lo && a.hi == b.hi; }
static size_t bucket(const struct qc_cache *c, struct qc_key k) { return (size_t)(k.lo % c->nbuckets); }

static struct qc_block *lookup(struct qc_cache *c, struct qc_key k)
{
    for (struct qc_block *b = c->table[bucket(c, k)]; b; b = b->hnext)
        if (key_eq(b->key, k))
            return b;
    return NULL;
}

static void unlink_table(struct qc_cache *c, struct qc_block *b)
{
    if (!b->in_table)
        return;
    struct qc_block **pp = &c->table[bucket(c, b->key)];
    while (*pp != b)
        pp = &(*pp)->hnext;
    *pp = b->hnext;
    b->in_table = false;
}

static void lru_remove(struct qc_cache *c, struct qc_block *b)
{
    if (!b->lru_next)
        return;
    b->lru_prev->lru_next = b->lru_next;
    b->lru_next->lru_prev = b->lru_prev;
    b->lru_prev = b->lru_next = NULL;
    c->idle_bytes -= b->len;
}

static void destroy(struct qc_cache *c, struct qc_block *b)
{
    c->st.mem_bytes -= b->len;
    c->st.mem_blocks--;
    if (c->nspare < QC_SPARE_MAX && c->spare_bytes + b->len <= QC_SPARE_BYTES) {
        c->spare[c->nspare].p = b->data;
        c->spare[c->nspare++].len = b->len;
        c->spare_bytes += b->len;
    } else {
        free(b->data);
    }
    free(b);
}

static uint8_t *take_buffer(struct qc_cache *c, size_t len)
{
    for (unsigned i = c->nspare; i-- > 0;) {
        if (c->spare[i].len == len) {
            uint8_t *p = c->spare[i].p;
            c->spare[i] = c->spare[--c->nspare];
            c->spare_bytes -= len;
            return p;
        }
    }
    if (c->nspare == QC_SPARE_MAX) { /* full of other sizes: make room */
        free(c->spare[0].p);
        c->spare_bytes -= c->spare[0].len;
        c->spare[0] = c->spare[--c->nspare];
    }
    return malloc(len ? len : 1);
}

static void evict(struct qc_cache *c)
{
    while (c->idle_bytes > c->o.mem_budget && c->lru.lru_prev != &c->lru) {
        struct qc_block *b = c->lru.lru_prev;
        lru_remove(c, b);
        unlink_table(c, b);
        c->st.evictions++;
        destroy(c, b);
    }
}

/* Drop a reference with the lock held. */
static void put_locked(struct qc_cache *c, struct qc_block *b)
{
    if (--b->refs)
        return;
    if (b->state == READY && b->in_table) {
        b->lru_next = c->lru.lru_next;
        b->lru_prev = &c->lru;
        c->lru.lru_next->lru_prev = b;
        c->lru.lru_next = b;
        c->idle_bytes += b->len;
        evict(c);
    } else {
        unlink_table(c, b);
        destroy(c, b);
    }
}

static struct qc_block *insert(struct qc_cache *c, struct qc_key k, size_t len, enum state s)
{
    struct qc_block *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->data = take_buffer(c, len);
    if (!b->data) {
        free(b);
        return NULL;
    }
    b->key = k;
    b->len = len;
    b->refs = 1;
    b->state = s;
    b->in_table = true;
    size_t h = bucket(c, k);
    b->hnext = c->table[h];
    c->table[h] = b;
    c->st.mem_bytes += len;
    c->st.mem_blocks++;
    return b;
}

static void *scratch_take(struct qc_cache *c)
{
    if (!c->o.scratch_size)
        return NULL;
    pthread_mutex_lock(&c->mu);
    void *s = c->npool ? c->scratch_pool[--c->npool] : NULL;
    pthread_mutex_unlock(&c->mu);
    return s ? s : malloc(c->o.scratch_size);
}

static void scratch_give(struct qc_cache *c, void *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&c->mu);
    if (c->npool < c->pool_cap) {
        c->scratch_pool[c->npool++] = s;
        s = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    free(s);
}

/* Runs a fill for a block in state FILLING that the caller references, then
 * publishes the result. Returns the fill's status. */
static int run_fill(struct qc_cache *c, struct qc_block *b, qc_fill_fn fill, void *arg, bool prefetch)
{
    void *scratch = scratch_take(c);
    int rc = (c->o.scratch_size && !scratch) ? -ENOMEM : fill(arg, b->data, b->len, scratch);
    scratch_give(c, scratch);
    pthread_mutex_lock(&c->mu);
    if (rc) {
        b->state = FAILED;
        b->err = rc;
        unlink_table(c, b);
        c->st.fill_errors++;
    } else {
        b->state = READY;
        c->st.bytes_filled += b->len;
        if (prefetch)
            c->st.prefetched++;
    }
    pthread_cond_broadcast(&c->filled);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int qc_get(struct qc_cache *c, struct qc_key key, size_t len, qc_fill_fn fill, void *arg, struct qc_block **out)
{
    *out = NULL;
    pthread_mutex_lock(&c->mu);
    struct qc_block *b = lookup(c, key);
    if (b && b->len != len) { /* same key, different size: a caller bug; never serve it */
        pthread_mutex_unlock(&c->mu);
        return -EINVAL;
    }
    if (b && b->state == READY) {
        if (b->refs++ == 0)
            lru_remove(c, b);
        c->st.hits++;
        pthread_mutex_unlock(&c->mu);
        *out = b;
        return 0;
    }
    if (b && b->state == FILLING) {
        b->refs++;
        c->st.waits++;
        while (b->state == FILLING)
            pthread_cond_wait(&c->filled, &c->mu);
        int rc = b->state == READY ? 0 : b->err;
        if (rc)
            put_locked(c, b);
        else
            *out = b;
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    if (b) { /* QUEUED: claim it instead of waiting behind the queue */
        b->refs++;
        b->state = FILLING;
    } else if (!(b = insert(c, key, len, FILLING))) {
        pthread_mutex_unlock(&c->mu);
        return -ENOMEM;
    }
    c->st.misses++;
    pthread_mutex_unlock(&c->mu);
    int rc = run_fill(c, b, fill, arg, false);
    if (rc) {
        pthread_mutex_lock(&c->mu);
        put_locked(c, b);
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    *out = b;
    return 0;
}

const uint8_t *qc_block_data(const struct qc_block *b) { return b->data; }
size_t qc_block_len(const struct qc_block *b) { return b->len; }

void qc_release(struct qc_cache *c, struct qc_block *b)
{
    pthread_mutex_lock(&c->mu);
    put_locked(c, b);
    pthread_mutex_unlock(&c->mu);
}

int qc_prefetch(struct qc_cache *c, struct qc_key key, size_t len, qc_fill_fn fill, void *arg, void (*done)(void *))
{
    pthread_mutex_lock(&c->mu);
    if (c->stop || !c->nthreads || c->qlen == c->o.queue_max || lookup(c, key)) {
        pthread_mutex_unlock(&c->mu);
        done(arg);
        return 0;
    }
    struct qc_block *b = insert(c, key, len, QUEUED);
    if (!b) {
        pthread_mutex_unlock(&c->mu);
        done(arg);
        return 0;
    }
    c->queue[(c->qhead + c->qlen++) % c->o.queue_max] = (struct job){b, fill, arg, done};
    pthread_cond_signal(&c->work);
    pthread_mutex_unlock(&c->mu);
    return 1;
}

static void *worker(void *p)
{
    struct qc_cache *c = p;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->qlen && !c->stop)
            pthread_cond_wait(&c->work, &c->mu);
        if (!c->qlen)
            break; /* stop, and the queue is drained */
        struct job j = c->queue[c->qhead];
        c->qhead = (c->qhead + 1) % c->o.queue_max;
        c->qlen--;
        bool mine = j.b->state == QUEUED && !c->stop;
        if (mine)
            j.b->state = FILLING;
        pthread_mutex_unlock(&c->mu);
        if (mine)
            run_fill(c, j.b, j.fill, j.arg, true);
        j.done(j.arg);
        pthread_mutex_lock(&c->mu);
        if (j.b->state == QUEUED) { /* dropped at shutdown: nobody else may wait on it */
            j.b->state = FAILED;
            j.b->err = -ECANCELED;
            unlink_table(c, j.b);
            pthread_cond_broadcast(&c->filled);
        }
        put_locked(c, j.b);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

int qc_cache_new(const struct qc_opts *opts, struct qc_cache **out)
{
    struct qc_cache *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->o = *opts;
    if (!c->o.queue_max)
        c->o.queue_max = 64;
    c->nbuckets = 4099;
    c->table = calloc(c->nbuckets, sizeof *c->table);
    c->queue = calloc(c->o.queue_max, sizeof *c->queue);
    c->pool_cap = c->o.workers + 8;
    c->scratch_pool = calloc(c->pool_cap, sizeof *c->scratch_pool);
    c->threads = calloc(c->o.workers ? c->o.workers : 1, sizeof *c->threads);
    c->lru.lru_next = c->lru.lru_prev = &c->lru;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->filled, NULL);
    pthread_cond_init(&c->work, NULL);
    if (!c->table || !c->queue || !c->scratch_pool || !c->threads) {
        qc_cache_free(c);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < c->o.workers; i++) {
        int rc = pthread_create(&c->threads[i], NULL, worker, c);
        if (rc) {
            qc_cache_free(c);
            return -rc;
        }
        c->nthreads++;
    }
    *out = c;
    return 0;
}

void qc_cache_free(struct qc_cache *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_broadcast(&c->work);
    pthread_mutex_unlock(&c->mu);
    for (unsigned i = 0; i < c->nthreads; i++)
        pthread_join(c->threads[i], NULL);
    if (c->table) {
        for (size_t i = 0; i < c->nbuckets; i++) {
            for (struct qc_block *b = c->table[i], *n; b; b = n) {
                n = b->hnext;
                free(b->data);
                free(b);
            }
        }
    }
    for (unsigned i = 0; i < c->npool; i++)
        free(c->scratch_pool[i]);
    for (unsigned i = 0; i < c->nspare; i++)
        free(c->spare[i].p);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->filled);
    pthread_cond_destroy(&c->work);
    free(c->scratch_pool);
    free(c->queue);
    free(c->table);
    free(c->threads);
    free(c);
}

void qc_stats_get(struct qc_cache *c, struct qc_stats *s)
{
    pthread_mutex_lock(&c->mu);
    *s = c->st;
    pthread_mutex_unlock(&c->mu);
}
