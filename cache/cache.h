/* cache.h — the public API of quantfs' block cache.
 *
 * Blocks are the unit of computed output (one chunk of a converted tensor).
 * The cache maps a 128-bit key to a block's bytes and guarantees that a block
 * is computed once however many threads want it at the same time
 * (single-flight): the first caller fills it, the others wait for it. Blocks
 * in use are reference-counted and never evicted; idle blocks live in an LRU
 * list within a memory budget. A worker pool fills blocks ahead of readers
 * (qc_prefetch).
 *
 * cache/ uses pthreads and xxHash; it never includes FUSE and knows nothing
 * about tensors: a block is produced by a caller-supplied fill function.
 * Functions return 0 or -errno.
 */
#ifndef QUANTFS_CACHE_H
#define QUANTFS_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct qc_key {
    uint64_t lo, hi;
};

/* xxh3-128 of an arbitrary key description (callers hash a packed struct of
 * source fingerprint, codec version, types, offsets and chunk index). */
struct qc_key qc_key_make(const void *data, size_t len);

struct qc_opts {
    size_t mem_budget;   /* bytes of idle blocks kept in memory */
    unsigned workers;    /* prefetch threads (0: no prefetching) */
    size_t scratch_size; /* bytes of scratch memory handed to each fill */
    unsigned queue_max;  /* pending prefetch jobs (0: 64) */
};

struct qc_cache;
struct qc_block;

/* Computes a block: writes exactly len bytes to dst. scratch is
 * opts.scratch_size bytes, private to this call. Returns 0 or -errno. */
typedef int (*qc_fill_fn)(void *arg, uint8_t *dst, size_t len, void *scratch);

int qc_cache_new(const struct qc_opts *opts, struct qc_cache **out);
/* Waits for running prefetches, frees everything. No block may be held. */
void qc_cache_free(struct qc_cache *c);

/* Returns the block for key, computing it with fill(arg, ...) if nobody has
 * it. On success *out holds a reference: read qc_block_data() then call
 * qc_release(). A failed fill is not cached: every waiter gets its error
 * and the next qc_get tries again. */
int qc_get(struct qc_cache *c, struct qc_key key, size_t len, qc_fill_fn fill, void *arg, struct qc_block **out);
const uint8_t *qc_block_data(const struct qc_block *b);
size_t qc_block_len(const struct qc_block *b);
void qc_release(struct qc_cache *c, struct qc_block *b);

/* Fill key in the background unless it is cached, being filled or queued.
 * The cache owns arg from here on and calls done(arg) exactly once, after
 * the fill or when the job is dropped (already present, queue full,
 * shutdown). A reader that needs a block still queued fills it itself
 * rather than waiting for the queue. Returns 1 if queued, 0 if not. */
int qc_prefetch(struct qc_cache *c, struct qc_key key, size_t len, qc_fill_fn fill, void *arg,
                void (*done)(void *arg));

struct qc_stats {
    uint64_t hits;        /* qc_get found the block ready */
    uint64_t waits;       /* qc_get waited for another thread's fill */
    uint64_t misses;      /* qc_get filled the block itself */
    uint64_t prefetched;  /* blocks filled by workers */
    uint64_t fill_errors;
    uint64_t bytes_filled;
    uint64_t evictions;
    uint64_t mem_bytes;   /* bytes of all blocks held now */
    uint64_t mem_blocks;
};
void qc_stats_get(struct qc_cache *c, struct qc_stats *s);

#endif
