/* cache.h — the public API of quantfs' block cache.
 *
 * Blocks are the unit of computed output (one chunk of a converted tensor).
 * The cache maps a 128-bit key to a block's bytes and guarantees that a block
 * is computed once however many threads want it at the same time
 * (single-flight): the first caller produces it, the others wait for it.
 *
 * Three tiers, looked up in order:
 *   hot     plain blocks: the ones replies point into (reference-counted,
 *           never evicted while held) and a few idle ones (hot_budget), so
 *           the several FUSE requests that cover one block decode it once;
 *   memory  every produced block (but QC_TRANSIENT ones) as a frame (zstd, or raw when zstd does not
 *           pay) with an xxh3-64 checksum of its plain bytes, LRU within
 *           mem_budget;
 *   disk    the same frames as files under dir (format: cache/FORMAT.md),
 *           written atomically, LRU-swept within dir_budget, safe to share
 *           between daemons and machines.
 * A frame whose checksum, length or header does not verify is a miss: it is
 * deleted, counted and the block recomputed. Nothing unverified is served.
 *
 * A worker pool fills blocks ahead of readers (qc_prefetch) and compresses
 * and stores blocks that readers computed, off the reader's path.
 *
 * Threads: every function may be called from any thread. One mutex guards
 * the tiers' tables, lists and arenas (never held over a fill, a
 * compression or a disk write; an mmap or munmap under it only for a
 * block or frame over 1 MiB, a region when no spare is ready, or one
 * freed beyond the spares); it is the cache's most contended resource on many cores, so a
 * worker keeps its scratch and zstd contexts for its life and statistics
 * ride on holds taken anyway (bench/RESULTS.md, session 17).
 *
 * Memory: hot blocks, frames and fill scratch live in 2 MiB-aligned
 * mappings that ask for transparent huge pages (a fault per 2 MiB, not per
 * 4 KiB); blocks and frames up to 1 MiB share 4 MiB regions: one arena for
 * blocks the tiers may store, one for QC_TRANSIENT and QC_META blocks, one
 * for frames that are copies (compressed, or read from a disk tier). A raw frame (quantized blocks barely compress) is
 * its block's own memory, not a copy: the memory tier costs no fresh pages
 * to fault in and zero. The budgets count bytes of blocks and frames (a
 * shared one in both); a region stays mapped while any block or frame in
 * it lives, so resident memory can exceed them by the regions that one
 * long-held block or frame pins (4 MiB each), by the blocks beside raw
 * frames whose own frames were compressed, plus up to 4 empty regions per
 * arena kept for reuse (mapped, untouched until used), and each worker's
 * scratch and zstd contexts.
 *
 * cache/ uses pthreads, zstd and xxHash; it never includes FUSE and knows
 * nothing about tensors: a block is produced by a caller-supplied fill
 * function. Functions return 0 or -errno.
 */
#ifndef QUANTFS_CACHE_H
#define QUANTFS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct qc_key {
    uint64_t lo, hi;
};

/* Keys name the same bytes (the cache's lookups; fs/ compares a chunk's
 * input hash with the key it was fetched under). */
static inline bool qc_key_eq(struct qc_key a, struct qc_key b) { return a.lo == b.lo && a.hi == b.hi; }

/* xxh3-128 of an arbitrary key description (callers hash a packed struct of
 * source fingerprint, codec version, types, offsets and chunk index). */
struct qc_key qc_key_make(const void *data, size_t len);
/* xxh3-64, for callers that fingerprint source headers. */
uint64_t qc_hash64(const void *data, size_t len);
/* Streaming xxh3-128 (what qc_key_make computes over the concatenation of
 * the updates), for content hashes of source bytes read in pieces. Not
 * thread-safe; new returns NULL when out of memory. */
struct qc_hasher;
struct qc_hasher *qc_hasher_new(void);
void qc_hasher_update(struct qc_hasher *h, const void *data, size_t len);
struct qc_key qc_hasher_digest(const struct qc_hasher *h);
void qc_hasher_free(struct qc_hasher *h);

struct qc_opts {
    size_t mem_budget;   /* bytes of frames in the memory tier (0: no memory tier) */
    size_t hot_budget;   /* bytes of idle plain blocks kept */
    unsigned workers;    /* prefetch/store threads, named "qc-worker" (0: none, all work inline) */
    size_t scratch_size; /* bytes of scratch memory handed to each fill */
    unsigned queue_max;  /* pending jobs (0: 256) */
    const char *dir;     /* persistent tier directory (created if missing), NULL: none */
    uint64_t dir_budget; /* bytes on disk (0: 16 GiB, at most 1/4 of the filesystem) */
    /* A second persistent tier that several daemons share (a network
     * filesystem): looked up after dir, its hits copied into dir; written
     * unless shared_ro, and then swept within shared_budget (0: as
     * dir_budget). shared_ro: it must exist already; never written. */
    const char *shared_dir;
    uint64_t shared_budget;
    int shared_ro;
    int level;           /* zstd level (0: 1) */
    unsigned sweep_ms;   /* persistent-tier sweep interval (0: 60 s) */
    unsigned retry_ms;   /* after a failed store (a full disk), storing resumes this much later (0: 60 s) */
    /* Messages for the operator (prio is a syslog level); NULL: silent. */
    void (*log)(void *arg, int prio, const char *msg);
    void *log_arg;
};

struct qc_cache;
struct qc_block;

/* Computes a block: writes exactly len bytes to dst. scratch is
 * opts.scratch_size bytes, private to this call. Returns 0 or -errno. */
typedef int (*qc_fill_fn)(void *arg, uint8_t *dst, size_t len, void *scratch);

/* Fails if dir cannot be created or written. */
int qc_cache_new(const struct qc_opts *opts, struct qc_cache **out);
/* Finishes queued stores, stops the workers, frees everything. No block may
 * be held. */
void qc_cache_free(struct qc_cache *c);
/* Creates dir's layout if needed and checks it can be written, without
 * starting anything (for option checking before a daemon forks). */
int qc_dir_check(const char *dir);
/* qs_check_owner (store.h): every directory of dir's layout belongs to the
 * calling user and is not writable by group or others; else -EPERM (or
 * another -errno) with the path in bad. */
int qc_dir_owned(const char *dir, char *bad, size_t badlen);
/* Whether dir holds a store this user can read (a read-only shared tier):
 * 0, or -errno (-ENOENT: no writer created it yet). */
int qc_dir_readable(const char *dir);

/* Returns the block for key: from a tier, or computed with fill(arg, ...)
 * if no tier has it (then stored in the tiers). On success *out holds a
 * reference: read qc_block_data() then call qc_release(). A failed fill is
 * not cached: every waiter gets its error and the next qc_get tries again.
 * fill NULL: a lookup, -ENOENT where no tier has the block. */
int qc_get(struct qc_cache *c, struct qc_key key, size_t len, qc_fill_fn fill, void *arg, struct qc_block **out);
/* Flags for qc_getf/qc_prefetchf. QC_TRANSIENT: the block is cheaper to
 * compute than to store (an f16/bf16 conversion runs at ~20 GB/s; a frame
 * costs a hash, a copy into fresh pages and, on a cold read, page zeroing
 * at ~1 GB/s on a VM): it is single-flight and kept in the hot tier like
 * any block, but never looked up in or stored to the memory and disk tiers.
 * qc_get is qc_getf with no flags. */
/* QC_META: a small block that names others (the content hash of a source
 * range): kept in every tier, but counted in meta_hits/meta_computed, not
 * in the tiers' hits and misses or computed. */
/* QC_NOSCRATCH (qc_getf): the fill is called with scratch NULL; it has
 * memory of its own (a fill nested in another fill, sharing its scratch). */
enum { QC_TRANSIENT = 1, QC_META = 2, QC_NOSCRATCH = 4 };
int qc_getf(struct qc_cache *c, struct qc_key key, size_t len, unsigned flags, qc_fill_fn fill, void *arg,
            struct qc_block **out);
const uint8_t *qc_block_data(const struct qc_block *b);
size_t qc_block_len(const struct qc_block *b);
void qc_release(struct qc_cache *c, struct qc_block *b);
/* qc_release of n blocks under one hold of the cache's lock (a read reply's
 * blocks: the lock is the cache's most contended resource). */
void qc_release_n(struct qc_cache *c, struct qc_block *const *b, size_t n);

/* Produce key in the background unless it is in the hot or memory tier,
 * being produced or queued. The cache owns arg from here on and calls
 * done(arg) exactly once, after the fill or when the job is dropped
 * (present, queue full, shutdown). A reader that needs a block still queued
 * produces it itself rather than waiting for the queue. Returns 1 if
 * queued, 0 if not. */
int qc_prefetch(struct qc_cache *c, struct qc_key key, size_t len, qc_fill_fn fill, void *arg,
                void (*done)(void *arg));
int qc_prefetchf(struct qc_cache *c, struct qc_key key, size_t len, unsigned flags, qc_fill_fn fill, void *arg,
                 void (*done)(void *arg));

/* Copies key's block into dst (len bytes) if the hot tier holds it ready:
 * 0, else -ENOENT. Never blocks on work or I/O (for small QC_META blocks
 * on a reader's read-ahead path). */
int qc_peek(struct qc_cache *c, struct qc_key key, void *dst, size_t len);

/* 1 if a tier holds key now (a disk entry counts if its file exists), else 0. */
int qc_cached(struct qc_cache *c, struct qc_key key);

/* Waits until every queued job (prefetches, stores) has run. */
void qc_flush(struct qc_cache *c);

/* Runs one persistent-tier sweep now (normally a background thread's job):
 * recounts the directory, deletes least recently used entries beyond the
 * budget and temp files left by crashed writers. Waits for a background
 * sweep under way, so the stats count both when it returns. */
void qc_sweep(struct qc_cache *c);

/* For tests: flips one stored byte of key's memory-tier frame and drops the
 * block from the hot tier. Returns 0, or -ENOENT if there is no frame. */
int qc_debug_corrupt(struct qc_cache *c, struct qc_key key);

/* The persistent-tier path of key's entry, for tests and tools. */
int qc_entry_path(struct qc_cache *c, struct qc_key key, char *buf, size_t len);

struct qc_tier_stats {
    uint64_t hits, misses;
    uint64_t bytes_in;   /* plain bytes stored into the tier */
    uint64_t stored_in;  /* their stored (compressed) size */
    uint64_t bytes_out;  /* plain bytes served from the tier */
    uint64_t evictions;
    uint64_t checksum_failures; /* bad checksum, header or length: deleted */
    uint64_t read_errors;       /* disk: unreadable now (I/O error, ESTALE): left */
    uint64_t bytes, entries;    /* held now (disk: as of the last sweep, plus writes since) */
};

struct qc_stats {
    struct qc_tier_stats mem, disk, shared;
    uint64_t hot_hits;    /* qc_get found the plain block ready */
    uint64_t waits;       /* qc_get waited for another thread's work */
    uint64_t computed;    /* blocks produced by fill */
    uint64_t computed_transient; /* of which QC_TRANSIENT */
    uint64_t meta_computed, meta_hits; /* QC_META blocks filled, found in a tier */
    uint64_t meta_ns;                  /* time spent filling them (not in fill_ns) */
    uint64_t prefetched;  /* blocks produced by workers (QC_META ones too) */
    uint64_t fill_errors;
    uint64_t bytes_filled;    /* plain bytes produced by fill */
    uint64_t bytes_transient; /* of which QC_TRANSIENT (never stored) */
    uint64_t fill_ns;         /* time spent in fill */
    uint64_t compress_ns;
    uint64_t store_errors;    /* persistent writes that failed */
    uint64_t hot_bytes, hot_blocks;
    /* 4 MiB regions the hot and memory tiers' memory was mapped in; of
     * them, mapped with the cache's lock held (no spare was ready: the
     * first of each kind, and bursts faster than one map) */
    uint64_t regions_mapped, regions_mapped_locked;
    int disk_storing;         /* 0 while stores are suspended (full disk) */
    int shared_storing;       /* the same for the shared tier (0: read only or none) */
};
void qc_stats_get(struct qc_cache *c, struct qc_stats *s);

#endif
