/* cache.c — the block cache: single-flight production, hot/memory/disk
 * tiers, worker pool.
 *
 * One mutex guards both tables, both LRU lists, the queue and the counters;
 * decoding, filling, compressing and file I/O run without it. Waiters sleep
 * on one of QC_STRIPES condition variables, chosen by the block's key, and a
 * block's publication wakes that one: with one for all, each of the
 * thousands of blocks a second that 16 cores publish woke every waiting
 * session thread, and each woken thread took the mutex again to find its
 * block still unmade.
 *
 * Block states:  QUEUED --(worker or reader claims)--> FILLING --> READY
 *                                                         \--> failed: unlinked, waiters get the error
 * A FILLING block is produced by one thread: memory frame, else disk entry,
 * else fill(); a block that was filled is then stored (by a worker when
 * there is one, so the reader does not pay for zstd).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <syslog.h>
#include <time.h>
#include <xxhash.h>
#if defined(__x86_64__)
/* libxxhash's run-time dispatch to its AVX2/AVX-512 code (same hashes): the
 * plain entry points are its SSE2 build, ~4.5x slower on 1 MiB (measured),
 * and every chunk's input and every frame is hashed. */
#include <xxh_x86dispatch.h>
#endif
#include <zstd.h>

#include "cache.h"
#include "store.h"

enum state { QUEUED, FILLING, READY, FAILED };
enum { JOB_FILL, JOB_STORE };

#define QC_MIN_SAVING 16     /* compress only blocks that shrink by 1/16 or more */
#define QC_SAMPLE (64u << 10) /* bytes compressed to decide */
#define QC_RETRY_SEC 60 /* a failed persistent store is retried after this */
#define QC_STRIPES 64   /* condition variables blocks are waited on with */

/* A persistent tier: a directory of entries (store.c). */
struct dtier {
    struct qs_store *store; /* NULL: none */
    const char *dir;
    const char *what;       /* its option's name, for messages */
    bool ro;                /* read only here: never written or swept */
    uint64_t budget;
    bool storing;           /* false after a failed store, until retry_at */
    uint64_t retry_at;      /* now_ns() */
    int logged_errno;       /* last store error logged (log once per kind) */
    uint64_t stored_entries; /* entries this daemon wrote, ever */
    struct qc_tier_stats *st;
    pthread_t sweeper;
    bool sweeper_started;
    struct qc_cache *c;
};

/* Memory-tier frames and hot blocks live in 4 MiB regions of transparent
 * huge pages (arenas: storable blocks and their raw frames, transient and
 * meta blocks, frames that are copies), bump-allocated and freed whole when
 * their last user goes: on a VM a first touch of a 4 KiB page costs ~8 us (500
 * MB/s; a 2 MiB page's 20 GB/s), and filling the tiers page by page
 * measured as a quarter of a cold q8_0 read's CPU time and a third of an
 * fp16 read's (bench/RESULTS.md). LRU eviction frees roughly in allocation
 * order, so regions empty out; what one long-lived user pins is the slack. */
#define QC_REGION ((size_t)4 << 20)
#define QC_THP ((size_t)2 << 20)
struct region {
    struct arena *a; /* its arena */
    uint8_t *base;
    size_t used;
    unsigned live;        /* blocks and frames in it */
    struct region *snext; /* in the spare list */
};
/* Empty regions kept for reuse. Eviction empties regions in bursts (a
 * large block evicts several frames at once), and with one spare the
 * rest went back to the kernel and came back as freshly zeroed pages:
 * 8% of a cold q3_k_s read (perf). Four spares bound the slack to 16 MB. */
#define QC_SPARE_REGIONS 4
struct arena {
    struct region *cur, *spare; /* region being filled; empty ones kept */
    _Atomic unsigned nspare;    /* changed under the lock; read without it by arena_refill */
    _Atomic bool refilling;     /* one thread maps a spare at a time */
    uint64_t mapped, mapped_locked; /* regions mapped; of them, with the lock held */
};

struct qc_block {
    struct qc_key key;
    size_t len;
    uint8_t *data;
    struct region *rg; /* of data; NULL: a mapping of its own */
    unsigned refs;
    enum state state;
    int err;
    bool in_table;
    bool transient; /* QC_TRANSIENT: never in the memory or disk tier */
    bool meta;      /* QC_META: counted apart */
    bool noscratch; /* QC_NOSCRATCH: its fill brings its own */
    struct qc_block *hnext;               /* hash chain */
    struct qc_block *lru_prev, *lru_next; /* idle READY blocks only */
};

/* A memory-tier frame. Referenced while a thread decodes it; an evicted
 * frame is freed by its last reference. A raw frame of a stored block is
 * the block's own memory (region live counts both): no copy, and no
 * fresh pages to fault in and zero. */
struct frame {
    struct qc_key key;
    struct qs_frame f;
    struct region *rg; /* of f.data; NULL: a mapping of its own (frames > QC_REGION / 4) */
    unsigned refs;
    bool in_table;
    struct frame *hnext, *prev, *next;
};

struct job {
    int kind;
    struct qc_block *b; /* holds one reference */
    qc_fill_fn fill;
    void *arg;
    void (*done)(void *);
};

struct zctx {
    ZSTD_CCtx *cc;
    ZSTD_DCtx *dc;
    uint8_t *buf;
    size_t cap;
};

struct qc_cache {
    struct qc_opts o;
    pthread_mutex_t mu;
    pthread_cond_t filled[QC_STRIPES]; /* a block of that stripe was published */
    pthread_cond_t work;   /* a job was queued, or shutdown */
    pthread_cond_t idle;   /* the queue drained and no job runs */
    /* hot tier */
    struct qc_block **table;
    size_t nbuckets;
    struct qc_block lru; /* sentinel; lru.next = most recent */
    size_t idle_bytes;
    struct arena ba; /* the memory of blocks the tiers may store (their raw frames share it) */
    struct arena ta; /* of QC_TRANSIENT and QC_META blocks: never shared, so never pinned by a frame */
    /* memory tier */
    struct frame **ftable;
    size_t nfbuckets;
    struct frame flru; /* sentinel; flru.next = most recent */
    size_t fbytes;
    struct arena fa; /* frames that are copies (compressed, promoted from disk, meta) */
    /* disk tiers: [0] cache_dir (node-local), [1] the shared tier */
    struct dtier disk[2];
    pthread_cond_t sweep_cv;
    pthread_mutex_t sweep_mu; /* one sweep at a time: qc_sweep and the sweeper's */
    /* workers */
    struct job *queue;
    unsigned qhead, qlen, running;
    bool stop;
    pthread_t *threads;
    unsigned nthreads;
    void **scratch_pool;
    unsigned npool, pool_cap;
    struct zctx **zpool;
    unsigned nz, zcap;
    struct qc_stats st;
    _Atomic uint64_t compress_ns; /* st.compress_ns, kept apart: encode counts it without the lock */
};

struct qc_key qc_key_make(const void *data, size_t len)
{
    XXH128_hash_t h = XXH3_128bits(data, len);
    return (struct qc_key){h.low64, h.high64};
}

uint64_t qc_hash64(const void *data, size_t len) { return XXH3_64bits(data, len); }

/* struct qc_hasher is XXH3_state_t (opaque without XXH_STATIC_LINKING_ONLY). */
struct qc_hasher *qc_hasher_new(void)
{
    XXH3_state_t *st = XXH3_createState();
    if (st)
        XXH3_128bits_reset(st);
    return (struct qc_hasher *)st;
}

void qc_hasher_update(struct qc_hasher *h, const void *data, size_t len)
{
    XXH3_128bits_update((XXH3_state_t *)h, data, len);
}

struct qc_key qc_hasher_digest(const struct qc_hasher *h)
{
    XXH128_hash_t d = XXH3_128bits_digest((const XXH3_state_t *)h);
    return (struct qc_key){d.low64, d.high64};
}

void qc_hasher_free(struct qc_hasher *h) { XXH3_freeState((XXH3_state_t *)h); }

static void cache_log(struct qc_cache *c, int prio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cache_log(struct qc_cache *c, int prio, const char *fmt, ...)
{
    if (!c->o.log)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->o.log(c->o.log_arg, prio, msg);
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* ------------------------------------------- huge-page regions (arenas) */

static size_t thp_round(size_t n) { return n ? (n + QC_THP - 1) & ~(QC_THP - 1) : QC_THP; }

/* n bytes (rounded up to 2 MiB) of 2 MiB-aligned anonymous memory that
 * asks for transparent huge pages (advisory: fine if THP is off). */
static uint8_t *thp_map(size_t n)
{
    n = thp_round(n);
    uint8_t *p = mmap(NULL, n + QC_THP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    size_t head = (size_t)(-(uintptr_t)p & (QC_THP - 1));
    if (head)
        munmap(p, head);
    munmap(p + head + n, QC_THP - head);
    madvise(p + head, n, MADV_HUGEPAGE);
    return p + head;
}

static void thp_unmap(uint8_t *p, size_t n)
{
    if (p)
        munmap(p, thp_round(n));
}

static void region_free(struct region *r)
{
    thp_unmap(r->base, QC_REGION);
    free(r);
}

static void region_drop(struct arena *a, struct region *r)
{
    if (a->nspare < QC_SPARE_REGIONS) {
        r->used = 0;
        r->snext = a->spare;
        a->spare = r;
        a->nspare++;
        return;
    }
    region_free(r);
}

/* Memory for a frame or a block, lock held: from a region, or above a
 * quarter region a huge-page mapping of its own (*rg NULL). */
static uint8_t *arena_alloc(struct arena *a, size_t n, struct region **rg)
{
    *rg = NULL;
    if (n > QC_REGION / 4)
        return thp_map(n);
    n = n ? (n + 63) & ~(size_t)63 : 64;
    if (!a->cur || a->cur->used + n > QC_REGION) {
        struct region *old = a->cur, *r = a->spare;
        if (r) {
            a->spare = r->snext;
            a->nspare--;
        }
        if (!r) { /* no spare: mapped under the lock (arena_refill keeps one ready) */
            if (!(r = calloc(1, sizeof *r)) || !(r->base = thp_map(QC_REGION))) {
                free(r);
                return NULL;
            }
            r->a = a;
            a->mapped++;
            a->mapped_locked++;
        }
        a->cur = r;
        if (old && !old->live)
            region_drop(a, old);
    }
    uint8_t *p = a->cur->base + a->cur->used;
    a->cur->used += n;
    a->cur->live++;
    *rg = a->cur;
    return p;
}

/* Keeps a spare region in a ready, mapped without the cache's lock (call
 * it unlocked after taking memory from a). mmap takes the process's
 * mmap_lock for writing, and a new region merges with its neighbour, whose
 * page faults in progress (each zeroing a 2 MiB page) it waits for: with
 * the map under the lock every thread that wanted the cache waited too
 * (perf sched, q8_0 on 16 cores: workers and FUSE threads asleep in
 * vm_mmap_pgoff). */
static void arena_refill(struct qc_cache *c, struct arena *a)
{
    if (atomic_load_explicit(&a->nspare, memory_order_relaxed) || atomic_exchange(&a->refilling, true))
        return;
    struct region *r = calloc(1, sizeof *r);
    if (r && !(r->base = thp_map(QC_REGION))) {
        free(r);
        r = NULL;
    }
    pthread_mutex_lock(&c->mu);
    if (r) {
        r->a = a;
        a->mapped++;
        if (a->nspare < QC_SPARE_REGIONS) {
            r->snext = a->spare;
            a->spare = r;
            a->nspare++;
            r = NULL;
        }
    }
    atomic_store(&a->refilling, false);
    pthread_mutex_unlock(&c->mu);
    if (r)
        region_free(r);
}

/* Gives back what arena_alloc(a, n, &rg) returned (or a frame's share of
 * it), lock held. */
static void arena_free(uint8_t *p, size_t n, struct region *rg)
{
    if (!rg)
        thp_unmap(p, n);
    else if (!--rg->live && rg != rg->a->cur)
        region_drop(rg->a, rg);
    else if (!rg->live)
        rg->used = 0; /* the current region emptied: filled again from its (warm) start */
}

static void arena_release(struct arena *a)
{
    if (a->cur)
        region_free(a->cur);
    for (struct region *r = a->spare, *n; r; r = n) {
        n = r->snext;
        region_free(r);
    }
    *a = (struct arena){0};
}

/* ------------------------------------------------------------ hot tier */

static size_t bucket(const struct qc_cache *c, struct qc_key k) { return (size_t)(k.lo % c->nbuckets); }

static struct qc_block *lookup(struct qc_cache *c, struct qc_key k)
{
    for (struct qc_block *b = c->table[bucket(c, k)]; b; b = b->hnext)
        if (qc_key_eq(b->key, k))
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

/* What an idle block costs the hot budget: its bytes and its bookkeeping
 * (a 16-byte QC_META block is mostly bookkeeping). */
static size_t hcost(const struct qc_block *b) { return b->len + sizeof *b + 16; }

static pthread_cond_t *filled_cv(struct qc_cache *c, const struct qc_block *b)
{
    return &c->filled[b->key.lo % QC_STRIPES];
}

static void lru_remove(struct qc_cache *c, struct qc_block *b)
{
    if (!b->lru_next)
        return;
    b->lru_prev->lru_next = b->lru_next;
    b->lru_next->lru_prev = b->lru_prev;
    b->lru_prev = b->lru_next = NULL;
    c->idle_bytes -= hcost(b);
}

static void destroy(struct qc_cache *c, struct qc_block *b)
{
    c->st.hot_bytes -= b->len;
    c->st.hot_blocks--;
    arena_free(b->data, b->len, b->rg);
    free(b);
}

static void evict_hot(struct qc_cache *c)
{
    while (c->idle_bytes > c->o.hot_budget && c->lru.lru_prev != &c->lru) {
        struct qc_block *b = c->lru.lru_prev;
        lru_remove(c, b);
        unlink_table(c, b);
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
        c->idle_bytes += hcost(b);
        evict_hot(c);
    } else {
        unlink_table(c, b);
        destroy(c, b);
    }
}

static struct qc_block *insert(struct qc_cache *c, struct qc_key k, size_t len, enum state s, unsigned flags)
{
    struct qc_block *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->data = arena_alloc(flags & (QC_TRANSIENT | QC_META) ? &c->ta : &c->ba, len, &b->rg);
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
    c->st.hot_bytes += len;
    c->st.hot_blocks++;
    return b;
}

/* --------------------------------------------------------- memory tier */

static size_t fcost(const struct frame *f) { return f->f.stored_len + sizeof *f; }

static struct frame *flookup(struct qc_cache *c, struct qc_key k)
{
    for (struct frame *f = c->ftable[k.lo % c->nfbuckets]; f; f = f->hnext)
        if (qc_key_eq(f->key, k))
            return f;
    return NULL;
}

static void flru_front(struct qc_cache *c, struct frame *f)
{
    if (f->next) {
        f->prev->next = f->next;
        f->next->prev = f->prev;
    }
    f->next = c->flru.next;
    f->prev = &c->flru;
    c->flru.next->prev = f;
    c->flru.next = f;
}

static void ffree(struct frame *f)
{
    arena_free(f->f.data, f->f.stored_len, f->rg);
    free(f);
}

/* Takes f out of the tier; its last reference frees it. */
static void funlink(struct qc_cache *c, struct frame *f)
{
    if (!f->in_table)
        return;
    struct frame **pp = &c->ftable[f->key.lo % c->nfbuckets];
    while (*pp != f)
        pp = &(*pp)->hnext;
    *pp = f->hnext;
    f->prev->next = f->next;
    f->next->prev = f->prev;
    f->in_table = false;
    c->fbytes -= fcost(f);
    c->st.mem.bytes = c->fbytes;
    c->st.mem.entries--;
}

/* Takes f out of the tier; freed now or by its last reference. */
static void fremove(struct qc_cache *c, struct frame *f)
{
    funlink(c, f);
    if (!f->refs)
        ffree(f);
}

static void fput(struct frame *f)
{
    if (!--f->refs && !f->in_table)
        ffree(f);
}

/* Adds a frame unless the key is there already: block b's memory when it
 * is b's raw frame (b is READY: its bytes never change again), else a
 * copy, made without the lock into memory the frame (pinned) owns. */
static void finsert(struct qc_cache *c, struct qc_key k, const struct qs_frame *qf, const struct qc_block *b)
{
    struct frame *f = calloc(1, sizeof *f);
    if (!f)
        return;
    f->key = k;
    f->f = *qf;
    /* meta blocks (16 bytes) are copied: their arena is never pinned by frames */
    bool share = b && b->rg && b->rg->a == &c->ba && qf->codec == QS_RAW && qf->data == b->data;
    pthread_mutex_lock(&c->mu);
    if (flookup(c, k) || fcost(f) > c->o.mem_budget ||
        !(f->f.data = share ? b->data : arena_alloc(&c->fa, qf->stored_len, &f->rg))) {
        pthread_mutex_unlock(&c->mu);
        free(f);
        return;
    }
    if (share) { /* in under this one hold of the lock */
        f->rg = b->rg;
        f->rg->live++;
    } else {
        pthread_mutex_unlock(&c->mu);
        arena_refill(c, &c->fa);
        memcpy(f->f.data, qf->data, qf->stored_len);
        pthread_mutex_lock(&c->mu);
        if (flookup(c, k)) { /* another thread stored it meanwhile */
            ffree(f);
            pthread_mutex_unlock(&c->mu);
            return;
        }
    }
    f->in_table = true;
    size_t h = k.lo % c->nfbuckets;
    f->hnext = c->ftable[h];
    c->ftable[h] = f;
    flru_front(c, f);
    c->fbytes += fcost(f);
    c->st.mem.entries++;
    c->st.mem.bytes_in += f->f.plain_len;
    c->st.mem.stored_in += f->f.stored_len;
    while (c->fbytes > c->o.mem_budget && c->flru.prev != &c->flru) {
        c->st.mem.evictions++;
        fremove(c, c->flru.prev);
    }
    c->st.mem.bytes = c->fbytes;
    pthread_mutex_unlock(&c->mu);
}

/* ------------------------------------------------- scratch and zstd pools */

static void *scratch_take(struct qc_cache *c)
{
    if (!c->o.scratch_size)
        return NULL;
    pthread_mutex_lock(&c->mu);
    void *s = c->npool ? c->scratch_pool[--c->npool] : NULL;
    pthread_mutex_unlock(&c->mu);
    return s ? s : thp_map(c->o.scratch_size); /* read into: fresh 4 KiB pages fault per page */
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
    thp_unmap(s, c->o.scratch_size);
}

static void zfree(struct zctx *z)
{
    if (!z)
        return;
    ZSTD_freeCCtx(z->cc);
    ZSTD_freeDCtx(z->dc);
    free(z->buf);
    free(z);
}

/* zstd contexts are reused: creating one per block costs more page faults
 * than the compression itself. */
static struct zctx *ztake(struct qc_cache *c)
{
    pthread_mutex_lock(&c->mu);
    struct zctx *z = c->nz ? c->zpool[--c->nz] : NULL;
    pthread_mutex_unlock(&c->mu);
    if (z)
        return z;
    if (!(z = calloc(1, sizeof *z)) || !(z->cc = ZSTD_createCCtx()) || !(z->dc = ZSTD_createDCtx())) {
        zfree(z);
        return NULL;
    }
    return z;
}

static void zgive(struct qc_cache *c, struct zctx *z)
{
    if (!z)
        return;
    pthread_mutex_lock(&c->mu);
    if (c->nz < c->zcap) {
        c->zpool[c->nz++] = z;
        z = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    zfree(z);
}

/* Plain bytes of a frame into dst (len bytes), verified. */
static int decode(struct qc_cache *c, const struct qs_frame *f, uint8_t *dst, size_t len)
{
    if (f->plain_len != len)
        return -EBADMSG;
    if (f->codec == QS_RAW) {
        if (f->stored_len != len)
            return -EBADMSG;
        memcpy(dst, f->data, len);
    } else {
        struct zctx *z = ztake(c);
        if (!z)
            return -ENOMEM;
        size_t r = ZSTD_decompressDCtx(z->dc, dst, len, f->data, f->stored_len);
        zgive(c, z);
        if (ZSTD_isError(r) || r != len)
            return -EBADMSG;
    }
    return XXH3_64bits(dst, len) == f->sum ? 0 : -EBADMSG;
}

/* The frame of a block's plain bytes: zstd, or raw when zstd saves less
 * than 1/QC_MIN_SAVING (quantized data barely compresses). f->data is
 * borrowed: z's buffer or src. */
static int encode(struct qc_cache *c, struct zctx *z, const uint8_t *src, size_t len, struct qs_frame *f)
{
    f->plain_len = len;
    f->sum = XXH3_64bits(src, len);
    size_t bound = ZSTD_compressBound(len);
    if (z->cap < bound) {
        free(z->buf);
        z->cap = 0;
        if (!(z->buf = malloc(bound)))
            return -ENOMEM;
        z->cap = bound;
    }
    uint64_t t0 = now_ns();
    /* Try a 64 KiB sample first: quantized blocks save ~0-4% and are not
     * worth the 2 ms per MiB that compressing them costs. */
    size_t r = 0;
    if (len > QC_SAMPLE * 2) {
        r = ZSTD_compressCCtx(z->cc, z->buf, z->cap, src, QC_SAMPLE, c->o.level);
        if (!ZSTD_isError(r) && r < QC_SAMPLE - QC_SAMPLE / QC_MIN_SAVING)
            r = 0;
        else
            r = len; /* not worth it: raw */
    }
    if (!r)
        r = ZSTD_compressCCtx(z->cc, z->buf, z->cap, src, len, c->o.level);
    uint64_t dt = now_ns() - t0;
    bool raw = ZSTD_isError(r) || r >= len - len / QC_MIN_SAVING;
    f->codec = raw ? QS_RAW : QS_ZSTD;
    f->stored_len = raw ? len : r;
    f->data = raw ? (uint8_t *)src : z->buf;
    atomic_fetch_add_explicit(&c->compress_ns, dt, memory_order_relaxed); /* no lock for a statistic */
    return 0;
}

/* ----------------------------------------------------------- disk tier */

static bool may_store(struct qc_cache *c, struct dtier *d)
{
    if (!d->store || d->ro)
        return false;
    pthread_mutex_lock(&c->mu);
    if (!d->storing && now_ns() >= d->retry_at)
        d->storing = true;
    bool ok = d->storing;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static void disk_save(struct qc_cache *c, struct dtier *d, struct qc_key k, const struct qs_frame *f)
{
    int rc = qs_save(d->store, k, f);
    pthread_mutex_lock(&c->mu);
    if (!rc) {
        d->st->bytes_in += f->plain_len;
        d->st->stored_in += f->stored_len;
        d->st->bytes += f->stored_len + 64;
        d->st->entries++;
        d->stored_entries++;
        d->logged_errno = 0;
        if (d->st->bytes > d->budget)
            pthread_cond_broadcast(&c->sweep_cv);
        pthread_mutex_unlock(&c->mu);
        return;
    }
    c->st.store_errors++;
    d->storing = false;
    d->retry_at = now_ns() + (uint64_t)c->o.retry_ms * 1000000u;
    bool say = d->logged_errno != rc;
    d->logged_errno = rc;
    pthread_mutex_unlock(&c->mu);
    if (say)
        cache_log(c, LOG_WARNING, "%s %s: cannot store blocks (%s); serving without storing, retrying every %d s",
                  d->what, d->dir, strerror(-rc), (c->o.retry_ms + 999) / 1000);
}

/* What a worker keeps for its life, taken at first use: its fills' scratch
 * and its zstd contexts, so that a job takes no pool (and no lock) for them. */
struct wctx {
    void *scratch;
    struct zctx *z;
};

/* Stores a filled block in the memory tier, cache_dir and the shared tier
 * (where this daemon may write it). w: the worker's own (NULL off a worker). */
static void store_block(struct qc_cache *c, const struct qc_block *b, struct wctx *w)
{
    bool disk[2] = {may_store(c, &c->disk[0]), may_store(c, &c->disk[1])};
    if (!c->o.mem_budget && !disk[0] && !disk[1])
        return;
    struct qs_frame f;
    struct zctx *z = !w ? ztake(c) : w->z ? w->z : (w->z = ztake(c));
    if (z && !encode(c, z, b->data, b->len, &f)) { /* else out of memory: just not cached */
        for (unsigned i = 0; i < 2; i++)
            if (disk[i])
                disk_save(c, &c->disk[i], b->key, &f);
        if (c->o.mem_budget)
            finsert(c, b->key, &f, b);
    }
    if (!w)
        zgive(c, z);
}

/* ----------------------------------------------------------- production */

/* Where a fill's outcome is counted: under the lock publish takes anyway
 * (the cache's one lock is its most contended resource: 16 workers and
 * the FUSE threads waited on it about 10,000 times in a cold q8_0 read on
 * 16 cores, perf). */
struct fill_outcome {
    bool counted; /* a fill ran (not a tier hit or a lookup) */
    bool worker;
    uint64_t ns;
};

static void count_fill(struct qc_cache *c, const struct qc_block *b, int rc, const struct fill_outcome *o)
{
    if (rc) {
        c->st.fill_errors++;
    } else if (b->meta) {
        c->st.meta_computed++;
        c->st.meta_ns += o->ns;
    } else {
        c->st.computed++;
        c->st.bytes_filled += b->len;
        if (b->transient) {
            c->st.bytes_transient += b->len;
            c->st.computed_transient++;
        }
        c->st.fill_ns += o->ns;
    }
    if (!rc && o->worker) /* a worker's hash job (QC_META) converts its chunk too (fs/ops.c) */
        c->st.prefetched++;
}

static void publish(struct qc_cache *c, struct qc_block *b, int rc, const struct fill_outcome *o)
{
    pthread_mutex_lock(&c->mu);
    if (o && o->counted)
        count_fill(c, b, rc, o);
    if (rc) {
        b->state = FAILED;
        b->err = rc;
        unlink_table(c, b);
    } else {
        b->state = READY;
    }
    pthread_cond_broadcast(filled_cv(c, b));
    pthread_mutex_unlock(&c->mu);
}

/* Try the memory tier for b. Returns true if b now holds verified bytes. */
static bool from_memory(struct qc_cache *c, struct qc_block *b)
{
    if (!c->o.mem_budget)
        return false;
    pthread_mutex_lock(&c->mu);
    struct frame *f = flookup(c, b->key);
    if (!f) {
        c->st.mem.misses += !b->meta;
        pthread_mutex_unlock(&c->mu);
        return false;
    }
    f->refs++;
    flru_front(c, f);
    pthread_mutex_unlock(&c->mu);
    int rc = decode(c, &f->f, b->data, b->len);
    pthread_mutex_lock(&c->mu);
    if (!rc && b->meta) {
        c->st.meta_hits++;
    } else if (!rc) {
        c->st.mem.hits++;
        c->st.mem.bytes_out += b->len;
    } else {
        c->st.mem.misses += !b->meta;
        if (rc == -EBADMSG) {
            c->st.mem.checksum_failures++;
            funlink(c, f); /* we hold a reference: fput below frees it */
        }
    }
    fput(f);
    pthread_mutex_unlock(&c->mu);
    if (rc == -EBADMSG)
        cache_log(c, LOG_WARNING, "memory cache: block %016llx%016llx failed its checksum; recomputed",
             (unsigned long long)b->key.hi, (unsigned long long)b->key.lo);
    return !rc;
}

/* A hit is promoted to memory and, if copy_to may be written, stored
 * there as it was read. */
static bool from_dtier(struct qc_cache *c, struct dtier *d, struct qc_block *b, struct dtier *copy_to)
{
    if (!d->store)
        return false;
    struct qs_frame f;
    int rc = qs_load(d->store, b->key, b->len, &f);
    if (!rc && (rc = decode(c, &f, b->data, b->len))) {
        if (rc == -EBADMSG)
            qs_remove(d->store, b->key);
        free(f.data);
    }
    pthread_mutex_lock(&c->mu);
    if (!rc && b->meta) {
        c->st.meta_hits++;
    } else if (!rc) {
        d->st->hits++;
        d->st->bytes_out += b->len;
    } else {
        d->st->misses += !b->meta;
        if (rc == -EBADMSG)
            d->st->checksum_failures++;
        else if (rc != -ENOENT && rc != -ENOMEM)
            d->st->read_errors++;
    }
    pthread_mutex_unlock(&c->mu);
    if (rc == -EBADMSG)
        cache_log(c, LOG_WARNING, "%s %s: entry %016llx%016llx is corrupt or truncated; deleted and recomputed",
                  d->what, d->dir, (unsigned long long)b->key.hi, (unsigned long long)b->key.lo);
    else if (rc && rc != -ENOENT && rc != -ENOMEM) /* a peer's eviction on a network filesystem: ESTALE */
        cache_log(c, LOG_INFO, "%s %s: entry %016llx%016llx unreadable (%s); recomputed", d->what, d->dir,
                  (unsigned long long)b->key.hi, (unsigned long long)b->key.lo, strerror(-rc));
    if (rc)
        return false;
    if (c->o.mem_budget)
        finsert(c, b->key, &f, NULL); /* promote: the next miss in memory is not a disk read */
    if (copy_to && may_store(c, copy_to))
        disk_save(c, copy_to, b->key, &f);
    free(f.data);
    return true;
}

/* cache_dir, then the shared tier; a shared hit is copied to cache_dir
 * (node-local: the next read of it does not cross the network). */
static bool from_disk(struct qc_cache *c, struct qc_block *b)
{
    return from_dtier(c, &c->disk[0], b, NULL) || from_dtier(c, &c->disk[1], b, &c->disk[0]);
}

static bool enqueue_locked(struct qc_cache *c, struct job j)
{
    if (c->stop || !c->nthreads || c->qlen == c->o.queue_max)
        return false;
    c->queue[(c->qhead + c->qlen++) % c->o.queue_max] = j;
    pthread_cond_signal(&c->work);
    return true;
}

/* Produces a block in state FILLING that the caller references and
 * publishes it. w: a worker's own scratch and zstd contexts, and the store
 * runs on this thread; NULL (a reader's thread): pooled ones, and the store
 * is queued for the workers. Returns 0 or the fill's error. */
static int produce(struct qc_cache *c, struct qc_block *b, qc_fill_fn fill, void *arg, struct wctx *w)
{
    bool worker = w != NULL;
    if (!b->transient && (from_memory(c, b) || from_disk(c, b))) {
        publish(c, b, 0, NULL);
        return 0;
    }
    if (!fill) { /* a lookup only */
        publish(c, b, -ENOENT, NULL);
        return -ENOENT;
    }
    /* a worker keeps its scratch for its life: no pool, no lock */
    void *scratch = NULL;
    if (!b->noscratch && c->o.scratch_size)
        scratch = !w ? scratch_take(c) : w->scratch ? w->scratch : (w->scratch = scratch_take(c));
    uint64_t t0 = now_ns();
    int rc = (c->o.scratch_size && !scratch && !b->noscratch) ? -ENOMEM : fill(arg, b->data, b->len, scratch);
    struct fill_outcome o = {true, worker, now_ns() - t0};
    if (!worker)
        scratch_give(c, scratch);
    publish(c, b, rc, &o);
    if (rc || b->transient || (!c->o.mem_budget && !c->disk[0].store && !c->disk[1].store))
        return rc;
    if (!worker) {
        pthread_mutex_lock(&c->mu);
        b->refs++;
        bool queued = enqueue_locked(c, (struct job){JOB_STORE, b, NULL, NULL, NULL});
        if (!queued)
            b->refs--;
        pthread_mutex_unlock(&c->mu);
        if (queued)
            return 0;
    }
    store_block(c, b, w);
    return 0;
}

int qc_get(struct qc_cache *c, struct qc_key key, size_t len, qc_fill_fn fill, void *arg, struct qc_block **out)
{
    return qc_getf(c, key, len, 0, fill, arg, out);
}

int qc_getf(struct qc_cache *c, struct qc_key key, size_t len, unsigned flags, qc_fill_fn fill, void *arg,
            struct qc_block **out)
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
        c->st.hot_hits++;
        pthread_mutex_unlock(&c->mu);
        *out = b;
        return 0;
    }
    if (b && b->state == FILLING) {
        b->refs++;
        c->st.waits++;
        while (b->state == FILLING)
            pthread_cond_wait(filled_cv(c, b), &c->mu);
        int rc = b->state == READY ? 0 : b->err;
        if (rc)
            put_locked(c, b);
        else
            *out = b;
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    if (b && !fill) { /* QUEUED, and a lookup only: the queue will produce it */
        pthread_mutex_unlock(&c->mu);
        return -ENOENT;
    }
    if (b) { /* QUEUED: claim it instead of waiting behind the queue */
        b->refs++;
        b->state = FILLING;
    } else if (!(b = insert(c, key, len, FILLING, flags))) {
        pthread_mutex_unlock(&c->mu);
        return -ENOMEM;
    }
    if (flags & QC_TRANSIENT)
        b->transient = true;
    b->meta = flags & QC_META;
    b->noscratch = flags & QC_NOSCRATCH;
    pthread_mutex_unlock(&c->mu);
    arena_refill(c, flags & (QC_TRANSIENT | QC_META) ? &c->ta : &c->ba);
    int rc = produce(c, b, fill, arg, NULL);
    if (rc) {
        qc_release(c, b);
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

void qc_release_n(struct qc_cache *c, struct qc_block *const *b, size_t n)
{
    if (!n)
        return;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < n; i++)
        put_locked(c, b[i]);
    pthread_mutex_unlock(&c->mu);
}

int qc_prefetch(struct qc_cache *c, struct qc_key key, size_t len, qc_fill_fn fill, void *arg, void (*done)(void *))
{
    return qc_prefetchf(c, key, len, 0, fill, arg, done);
}

int qc_prefetchf(struct qc_cache *c, struct qc_key key, size_t len, unsigned flags, qc_fill_fn fill, void *arg,
                 void (*done)(void *))
{
    pthread_mutex_lock(&c->mu);
    struct qc_block *b = NULL;
    if (c->stop || !c->nthreads || c->qlen == c->o.queue_max || lookup(c, key) ||
        !(b = insert(c, key, len, QUEUED, flags))) {
        pthread_mutex_unlock(&c->mu);
        done(arg);
        return 0;
    }
    b->transient = flags & QC_TRANSIENT;
    b->meta = flags & QC_META;
    enqueue_locked(c, (struct job){JOB_FILL, b, fill, arg, done});
    pthread_mutex_unlock(&c->mu);
    return 1;
}

static void *worker(void *p)
{
    struct qc_cache *c = p;
    struct wctx w = {NULL, NULL};
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->qlen && !c->stop)
            pthread_cond_wait(&c->work, &c->mu);
        if (!c->qlen)
            break; /* stop, and the queue is drained */
        struct job j = c->queue[c->qhead];
        c->qhead = (c->qhead + 1) % c->o.queue_max;
        c->qlen--;
        c->running++;
        if (j.kind == JOB_STORE) { /* run even at shutdown: the block is computed already */
            pthread_mutex_unlock(&c->mu);
            store_block(c, j.b, &w);
            pthread_mutex_lock(&c->mu);
        } else {
            bool mine = j.b->state == QUEUED && !c->stop;
            if (mine)
                j.b->state = FILLING;
            pthread_mutex_unlock(&c->mu);
            /* the blocks queued by qc_prefetchf took their memory on the
             * reader's thread: their next regions are mapped here */
            arena_refill(c, &c->ba);
            arena_refill(c, &c->ta);
            if (mine)
                produce(c, j.b, j.fill, j.arg, &w);
            j.done(j.arg);
            pthread_mutex_lock(&c->mu);
            if (j.b->state == QUEUED) { /* dropped at shutdown: nobody else may wait on it */
                j.b->state = FAILED;
                j.b->err = -ECANCELED;
                unlink_table(c, j.b);
                pthread_cond_broadcast(filled_cv(c, j.b));
            }
        }
        put_locked(c, j.b);
        if (!--c->running && !c->qlen)
            pthread_cond_broadcast(&c->idle);
    }
    pthread_mutex_unlock(&c->mu);
    scratch_give(c, w.scratch);
    zgive(c, w.z);
    return NULL;
}

void qc_flush(struct qc_cache *c)
{
    pthread_mutex_lock(&c->mu);
    while (c->qlen || c->running)
        pthread_cond_wait(&c->idle, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

/* ---------------------------------------------------------------- sweep */

static void sweep_once(struct qc_cache *c, struct dtier *d)
{
    /* Two sweeps at once would each find the other's victims gone and
     * count less than was evicted; qc_sweep's caller expects the counts
     * of every sweep that finished when it returns. */
    pthread_mutex_lock(&c->sweep_mu);
    pthread_mutex_lock(&c->mu);
    uint64_t in0 = d->st->stored_in;
    uint64_t e0 = d->stored_entries;
    pthread_mutex_unlock(&c->mu);
    struct qs_sweep_result r;
    qs_sweep(d->store, d->budget, &r);
    pthread_mutex_lock(&c->mu);
    /* what this daemon stored during the scan, which may have missed it */
    uint64_t e = d->stored_entries - e0;
    d->st->bytes = r.bytes + (d->st->stored_in - in0) + 64 * e;
    d->st->entries = r.entries + e;
    d->st->evictions += r.evicted;
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_unlock(&c->sweep_mu);
}

void qc_sweep(struct qc_cache *c)
{
    for (unsigned i = 0; i < 2; i++)
        if (c->disk[i].store && !c->disk[i].ro)
            sweep_once(c, &c->disk[i]);
}

/* Recounts a writable tier's directory at start, every sweep_ms (other
 * daemons may share it) and whenever this daemon's writes push it over
 * budget. A read-only shared tier is its writers' to sweep. */
static void *sweeper(void *p)
{
    struct dtier *d = p;
    struct qc_cache *c = d->c;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        pthread_mutex_unlock(&c->mu);
        sweep_once(c, d);
        pthread_mutex_lock(&c->mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += c->o.sweep_ms / 1000;
        until.tv_nsec += (long)(c->o.sweep_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (!c->stop && d->st->bytes <= d->budget)
            if (pthread_cond_timedwait(&c->sweep_cv, &c->mu, &until) == ETIMEDOUT)
                break;
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ------------------------------------------------------------ lifecycle */

int qc_cache_new(const struct qc_opts *opts, struct qc_cache **out)
{
    struct qc_cache *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->o = *opts;
    c->o.dir = NULL; /* set below once opened: qc_cache_free looks at it */
    if (!c->o.queue_max)
        c->o.queue_max = 256;
    if (!c->o.level)
        c->o.level = 1;
    if (!c->o.sweep_ms)
        c->o.sweep_ms = 60000;
    if (!c->o.retry_ms)
        c->o.retry_ms = QC_RETRY_SEC * 1000;
    c->nbuckets = 4099;
    c->nfbuckets = 16381;
    c->table = calloc(c->nbuckets, sizeof *c->table);
    c->ftable = calloc(c->nfbuckets, sizeof *c->ftable);
    c->queue = calloc(c->o.queue_max, sizeof *c->queue);
    c->pool_cap = 8; /* for fills on callers' threads: each worker keeps one of its own */
    c->scratch_pool = calloc(c->pool_cap, sizeof *c->scratch_pool);
    c->zcap = 8; /* as pool_cap */
    c->zpool = calloc(c->zcap, sizeof *c->zpool);
    c->threads = calloc(c->o.workers ? c->o.workers : 1, sizeof *c->threads);
    c->lru.lru_next = c->lru.lru_prev = &c->lru;
    c->flru.next = c->flru.prev = &c->flru;
    c->st.disk_storing = 1;
    pthread_mutex_init(&c->mu, NULL);
    for (unsigned i = 0; i < QC_STRIPES; i++)
        pthread_cond_init(&c->filled[i], NULL);
    pthread_cond_init(&c->work, NULL);
    pthread_cond_init(&c->idle, NULL);
    pthread_cond_init(&c->sweep_cv, NULL);
    pthread_mutex_init(&c->sweep_mu, NULL);
    if (!c->table || !c->ftable || !c->queue || !c->scratch_pool || !c->zpool || !c->threads) {
        qc_cache_free(c);
        return -ENOMEM;
    }
    int rc;
    const char *dirs[2] = {opts->dir, opts->shared_dir};
    const uint64_t budgets[2] = {opts->dir_budget, opts->shared_budget};
    for (unsigned i = 0; i < 2; i++) {
        struct dtier *d = &c->disk[i];
        *d = (struct dtier){.what = i ? "shared_cache" : "cache_dir", .ro = i && opts->shared_ro, .storing = true,
                            .st = i ? &c->st.shared : &c->st.disk, .c = c};
        if (!dirs[i])
            continue;
        /* a reader-only shared tier is not created or written here */
        if ((rc = d->ro ? qs_open_ro(dirs[i], &d->store) : qs_open(dirs[i], &d->store))) {
            qc_cache_free(c);
            return rc;
        }
        d->dir = dirs[i];
        d->budget = budgets[i] ? budgets[i] : qs_default_budget(d->store);
        if (d->ro)
            continue;
        if ((rc = pthread_create(&d->sweeper, NULL, sweeper, d))) {
            qc_cache_free(c);
            return -rc;
        }
        pthread_setname_np(d->sweeper, "qc-sweep");
        d->sweeper_started = true;
    }
    c->o.dir = opts->dir;
    for (unsigned i = 0; i < c->o.workers; i++) {
        if ((rc = pthread_create(&c->threads[i], NULL, worker, c))) {
            qc_cache_free(c);
            return -rc;
        }
        /* named for top -H and perf: the workers apart from FUSE's threads */
        pthread_setname_np(c->threads[i], "qc-worker");
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
    pthread_cond_broadcast(&c->sweep_cv);
    pthread_mutex_unlock(&c->mu);
    for (unsigned i = 0; i < c->nthreads; i++)
        pthread_join(c->threads[i], NULL);
    for (unsigned i = 0; i < 2; i++)
        if (c->disk[i].sweeper_started)
            pthread_join(c->disk[i].sweeper, NULL);
    if (c->table) {
        for (size_t i = 0; i < c->nbuckets; i++) {
            for (struct qc_block *b = c->table[i], *n; b; b = n) {
                n = b->hnext;
                destroy(c, b);
            }
        }
    }
    if (c->ftable) {
        for (size_t i = 0; i < c->nfbuckets; i++) {
            for (struct frame *f = c->ftable[i], *n; f; f = n) {
                n = f->hnext;
                ffree(f);
            }
        }
    }
    arena_release(&c->fa);
    arena_release(&c->ba);
    arena_release(&c->ta);
    for (unsigned i = 0; i < c->npool; i++)
        thp_unmap(c->scratch_pool[i], c->o.scratch_size);
    for (unsigned i = 0; i < c->nz; i++)
        zfree(c->zpool[i]);
    for (unsigned i = 0; i < 2; i++)
        qs_close(c->disk[i].store);
    pthread_mutex_destroy(&c->mu);
    for (unsigned i = 0; i < QC_STRIPES; i++)
        pthread_cond_destroy(&c->filled[i]);
    pthread_cond_destroy(&c->work);
    pthread_cond_destroy(&c->idle);
    pthread_cond_destroy(&c->sweep_cv);
    pthread_mutex_destroy(&c->sweep_mu);
    free(c->scratch_pool);
    free(c->zpool);
    free(c->queue);
    free(c->table);
    free(c->ftable);
    free(c->threads);
    free(c);
}

int qc_dir_owned(const char *dir, char *bad, size_t badlen) { return qs_check_owner(dir, bad, badlen); }

int qc_dir_readable(const char *dir)
{
    struct qs_store *s;
    int rc = qs_open_ro(dir, &s);
    if (!rc)
        qs_close(s);
    return rc;
}

int qc_dir_check(const char *dir)
{
    struct qs_store *s = NULL;
    int rc = qs_open(dir, &s);
    qs_close(s);
    return rc;
}

int qc_peek(struct qc_cache *c, struct qc_key key, void *dst, size_t len)
{
    pthread_mutex_lock(&c->mu);
    struct qc_block *b = lookup(c, key);
    int rc = b && b->state == READY && b->len == len ? 0 : -ENOENT;
    if (!rc)
        memcpy(dst, b->data, len);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int qc_cached(struct qc_cache *c, struct qc_key key)
{
    pthread_mutex_lock(&c->mu);
    struct qc_block *b = lookup(c, key);
    int in = (b && b->state == READY) || flookup(c, key);
    pthread_mutex_unlock(&c->mu);
    for (unsigned i = 0; i < 2 && !in; i++)
        in = c->disk[i].store && qs_exists(c->disk[i].store, key);
    return in;
}

int qc_debug_corrupt(struct qc_cache *c, struct qc_key key)
{
    pthread_mutex_lock(&c->mu);
    struct frame *f = flookup(c, key);
    struct qc_block *b = lookup(c, key);
    int rc = 0;
    if (!f)
        rc = -ENOENT;
    else if (b && b->refs)
        rc = -EBUSY;
    else {
        f->f.data[f->f.stored_len / 2] ^= 0x40;
        if (b) {
            lru_remove(c, b);
            unlink_table(c, b);
            destroy(c, b);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int qc_entry_path(struct qc_cache *c, struct qc_key key, char *buf, size_t len)
{
    return c->disk[0].store ? qs_path(c->disk[0].store, key, buf, len) : -ENOENT;
}

void qc_stats_get(struct qc_cache *c, struct qc_stats *s)
{
    pthread_mutex_lock(&c->mu);
    *s = c->st;
    s->disk_storing = c->disk[0].store ? c->disk[0].storing : 0;
    s->shared_storing = c->disk[1].store && !c->disk[1].ro ? c->disk[1].storing : 0;
    s->compress_ns = atomic_load_explicit(&c->compress_ns, memory_order_relaxed);
    s->regions_mapped = c->ba.mapped + c->ta.mapped + c->fa.mapped;
    s->regions_mapped_locked = c->ba.mapped_locked + c->ta.mapped_locked + c->fa.mapped_locked;
    pthread_mutex_unlock(&c->mu);
}
