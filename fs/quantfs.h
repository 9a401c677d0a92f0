/* quantfs.h — the FUSE daemon: its context struct and the namespace API the
 * operations use. fs/ is the only module that includes fuse_lowlevel.h.
 *
 * Lifetimes: models are published at mount time and by the watcher's
 * rescans of the source root (ns.c qfs_rescan) into slots that are never
 * moved or reused; a model that leaves the source is marked gone, and it and
 * its files live until unmount (slot and file indices are part of inode
 * numbers, so open files keep working). Everything derived from a
 * source file's bytes lives in a snapshot (struct qfs_snap) tied to one
 * version of that file (its fingerprint); when the file changes a new
 * snapshot replaces it and readers still holding the old one get EIO. The
 * GGUF of a Hugging Face model (QF_ROLE_HFGGUF) is made from several files:
 * its snapshot records each one's identity (in[], struct qfs_src) and is replaced when
 * any one changes.
 *
 * What a file is and what each view does with it is codec's (its source
 * kinds, codec.h "models"): fs keeps each file's role and calls its row.
 * Lookups, getattr, readdir and xattrs answer from the snapshot a file has
 * (qfs_snap_peek: no stat of a source); opens and reads verify the inputs
 * they touch (qfs_snap_get, qfs_snap_verify), and the watcher notices the
 * rest.
 */
#ifndef QUANTFS_FS_H
#define QUANTFS_FS_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "cache.h"
#include "codec.h"
#include "pipe.h"

#define QFS_MAX_VIEWS 96
#define QFS_PARSE_SLOTS 2
/* lines MOUNT/.quantfs/log keeps */
#define QFS_LOG_LINES 500
#define QFS_HF_SLOTS 2
/* Plain blocks kept idle besides those replies hold: a reader's next FUSE
 * request usually falls in the block its last one decoded, and prefetched
 * blocks wait here for their reader (more than -o readahead's default). */
#define QFS_HOT_BYTES ((size_t)64 << 20)
/* unused view layouts kept, all snapshots together */
#define QFS_IDLE_LAYOUT_BYTES ((size_t)64 << 20)

/* A source file opened at one version (src.c): its identity and a
 * descriptor from the LRU-bounded pool, reopened on demand (and checked to
 * be the same file). Read through qfs_src_pread. */
struct qfs_src {
    struct qfs *q;
    struct qfs_model *m;   /* whose source timeouts apply */
    char *path;
    struct stat st;        /* identity: dev, ino, size, mtime, ctime */
    int fd;                /* -1 while evicted (guarded by q->fd_mu, as are below) */
    unsigned users;        /* reads in flight: not evicted */
    struct qfs_src *prev, *next; /* q's LRU list while fd >= 0 */
};

/* One version of a source file: its identity and everything parsed from it. */
struct qfs_snap {
    atomic_uint refs;
    struct qfs_file *file;
    struct stat st;        /* fingerprint: dev, ino, size, mtime, ctime (QF_ROLE_HFGGUF: config.json's) */
    uint64_t hdr_hash;     /* xxh3-64 of the header (GGUF/safetensors): part of cache keys */
    struct qfs_src src;    /* the source (not for QF_ROLE_HFGGUF) */
    void *parsed;          /* what the kind's open returned (QF_ROLE_HFGGUF: the
                            * qf_hf): its row's layout reads it, close frees it */
    char err[256];         /* why views other than f32 are not offered */
    /* how conversions read the source: qfs_src_pread on &src, or for
     * QF_ROLE_HFGGUF qf_hf_pread over the shards */
    qf_pread_fn rd;
    void *rdctx;
    /* QF_ROLE_HFGGUF: the converter's file, built from the model's inputs
     * (config, tokenizer files, shards), each pinned at the version read */
    size_t n_in;
    struct qfs_src *in;    /* every input; files read whole are closed (fd -1) */
    void **in_ctx;         /* shard i's &in[...], for the reader */
    struct qf_hf_reader hfr;
    bool quiet;            /* err is another file's refusal, logged there */
    struct qf_imatrix *imat;   /* GGUF views: the model's imatrix, read whole at load (NULL: none, refused) */
    struct qf_model_imatrix mi; /* it and its file name, for the -imat layouts */
    atomic_bool stale;     /* the source changed under this snapshot */
    pthread_mutex_t mu;    /* guards layouts[] and what follows */
    /* A view's layout (its extents, its header, llama-quantize's plan: ~600
     * bytes per tensor) is built on first use and kept while in use
     * (lay_users: open handles, a walk in progress); unused ones stay
     * while all of the daemon's unused layouts fit QFS_IDLE_LAYOUT_BYTES,
     * else they are freed and rebuilt when next needed. Sizes stay known
     * (lay_size): a stat never builds one twice. */
    struct qf_layout *layouts[QFS_MAX_VIEWS];
    unsigned lay_users[QFS_MAX_VIEWS];
    size_t lay_bytes[QFS_MAX_VIEWS];
    uint64_t lay_size[QFS_MAX_VIEWS];
    bool lay_sized[QFS_MAX_VIEWS];
    atomic_size_t *idle_layouts; /* the daemon's count of unused layouts' bytes */
    int layout_rc[QFS_MAX_VIEWS]; /* a view that cannot be built: why, once */
    char logged[256];             /* the last refusal logged for this version */
    bool fresh[QFS_MAX_VIEWS]; /* not yet opened: next open drops kernel page cache */
};


struct qfs_file {
    char *name;       /* name inside the view directory */
    char *path;       /* absolute source path (QF_ROLE_HFGGUF: the model directory) */
    int kind;         /* QFS_F_*: how views present it */
    size_t model_idx, idx; /* position in the namespace (inode numbers) */
    atomic_uint open_count; /* open handles: the watcher polls these files */
    unsigned reach;   /* the permission bits its real location grants (0777: no
                       * symlink leads elsewhere); served modes are masked by it */
    pthread_mutex_t mu;
    struct qfs_snap *snap; /* current snapshot, NULL until first use */
};

struct qfs_pending {
    char *name;
    uint64_t sig, seen;
};

struct qfs_model {
    atomic_bool gone; /* left the source root (or changed: a new slot holds it) */
    uint64_t sig;     /* its files' names, sizes and mtimes when published */
    char *name;
    char *dir;        /* source directory, NULL for a loose file */
    unsigned formats; /* QF_FMT_* of its convertible files */
    bool remote;      /* on a network or FUSE filesystem: source calls are timed (src.c) */
    struct stat dir_st;  /* dir's last stat (its mode while a stat times out), guarded by dir_mu */
    unsigned dir_reach;  /* as qfs_file.reach, for the directory (0777 for a loose file) */
    bool dir_known;
    pthread_mutex_t dir_mu;
    atomic_uint stuck; /* source calls timed out and not yet returned */
    atomic_bool probing; /* a qfs_src_dir_stat of dir is under way */
    struct qfs_file *files;
    size_t n_files;
    struct qf_model_files desc; /* names and roles, for codec's view rules */
    /* config.json's architectures[0] ("" if none or refused), read at the
     * scan through codec's bounded parser; a rescan that sees the same
     * config.json (config_st) reuses it */
    char hf_arch[128];
    struct stat config_st;
    bool config_known;
    /* -o check (checkrun.c), guarded by qfs.check_mu */
    int check_state;  /* 0 not started, 1 running, 2 done */
    char *check_json; /* the published .check.json */
    char *check_svg;  /* and its chart, .check.svg */
    pid_t check_pid;
};

struct handle;
struct iojob;

#define QFS_MAX_CHECK_JOBS 64 /* -o check_jobs' limit: checker workers */

/* What the first scan hid, and why: the mount's summary line (qfs_scan). */
struct qfs_tally {
    unsigned outside;    /* symlinks leading outside the source root */
    unsigned unreadable; /* model directories it could not list */
    unsigned incomplete; /* models still being copied (shown once complete) */
    unsigned duplicate;  /* a second source for one model name */
    unsigned over_limit; /* past the mount's model slots */
    unsigned no_gguf;    /* served, but an architecture without GGUF views */
};

struct qfs {
    /* options */
    char *source;          /* absolute source root */
    char *views_opt;
    char *imatrix_opt;     /* -o imatrix=NAME: each model directory's file of that name is its imatrix */
    char *adapters_opt;    /* -o adapters=NAME=BASE:...: root adapters paired by name, not by their config */
    char *config_path;     /* -o config=, already read into the options */
    size_t cache_size;     /* memory tier budget */
    size_t hot_size;       /* idle plain blocks */
    char *cache_dir;       /* persistent tier, NULL: none */
    uint64_t cache_dir_size;
    char *shared_cache;    /* the fleet's shared tier, NULL: none */
    uint64_t shared_cache_size;
    int shared_cache_ro;   /* read it only */
    unsigned workers;
    unsigned readahead_mb;
    unsigned readahead_transient_mb; /* for chunks never stored: what the hot tier holds (main.c) */
    bool foreground;
    int follow_symlinks;   /* -o follow_symlinks: sources may resolve outside the root */
    int check;             /* -o check: run quantfs-check per model */
    int splice;            /* -o splice: source bytes spliced into replies */
    struct qfs_pipes pipes; /* each session thread's pipe for spliced replies (pipe.h) */
    int map_reads;         /* -o map_reads: conversions read local sources mapped (qfs_src_map) */
    unsigned read_ahead_kb; /* -o read_ahead_kb: the kernel's readahead for the mount */
    unsigned max_background; /* -o max_background: the kernel's async requests in flight (0: its 12) */
    atomic_bool ra_pending; /* set it at the first request after INIT (ops.c) */
    char *mountpoint;      /* absolute */
    pthread_mutex_t check_mu;
    pthread_cond_t check_cv;   /* a check queued, or stopping */
    unsigned check_jobs;       /* -o check_jobs: checkers at a time (default 1) */
    size_t *check_queue;       /* models waiting for a checker: [qhead, qlen) */
    size_t check_qhead, check_qlen, check_qcap;
    pthread_t check_workers[QFS_MAX_CHECK_JOBS];
    unsigned check_nworkers, check_idle;
    bool check_stopping;
    double timeout;        /* attr/entry cache timeout, seconds */

    const struct qf_view *views;
    size_t n_views;
    uint64_t view_mask;    /* views enabled by -o views */

    /* Models by slot (inode numbers): appended by the watcher's rescans,
     * never moved or reused while mounted; a model that left the source is
     * marked gone (and drops its snapshots when no file is open). Slots
     * live in blocks of QFS_MODEL_BLOCK, allocated as publications reach
     * them (the directory is fixed, so readers never see it move).
     * Readers load n_models (acquire) and read slots below: QFS_MODEL. */
    struct qfs_model ***models;
    _Atomic size_t n_models;
    size_t models_cap;
    /* live models by name (open addressing, linear probing; slot + 1, 0
     * empty): lookups stay O(1) however many publications the mount saw.
     * Written by the thread that publishes and hides models, under the
     * write lock; read by any. */
    pthread_rwlock_t names_lock;
    size_t *names;
    size_t names_cap, names_n;
    struct qfs_pending *pending; /* seen, not yet settled (watcher only) */
    size_t n_pending;
    /* PEFT adapters at the source root, each with the model directory its
     * base_model_name_or_path names (NULL: none or several; said once);
     * rebuilt by every scan (the scanning thread only) */
    struct qfs_root_adapter {
        char *name, *path, *base;
    } *root_ads;
    size_t n_root_ads;
    unsigned settle_ms;          /* a new model's files must hold still this long */
    unsigned rescan_ms;          /* -o rescan: periodic rescans, 0: inotify only */

    struct qc_cache *cache;
    struct fuse_session *se;
    pthread_mutex_t handles_mu;
    struct handle *handles; /* open files (ops.c) */

    atomic_uint_fast64_t n_errors, n_reads, bytes_read;
    atomic_uint_fast64_t n_readaheads; /* reads taken for a stream: the chunks after them are queued */
    atomic_uint_fast64_t n_ra_chunks;  /* chunks those reads queued (once each per pass) */

    /* Source descriptors (src.c): at most max_fds open (plus reads in
     * flight), least recently used closed first. */
    pthread_mutex_t fd_mu;
    struct qfs_src *fd_head, *fd_tail;
    unsigned n_fds, max_fds;
    uint64_t fd_reopens, fd_evictions;
    unsigned source_timeout_s;  /* -o source_timeout: network/FUSE sources */
    atomic_uint io_stuck;       /* timed-out calls not yet returned (all models) */
    pthread_mutex_t io_mu;      /* the call threads' queue (src.c) */
    pthread_cond_t io_cv, io_done_cv;
    struct iojob *io_head;
    unsigned io_queued, io_idle, io_threads;
    bool io_stopping;
    atomic_uint_fast64_t io_timeouts;

    /* The watcher thread (watch.c) notices source changes (inotify, plus
     * polling of open files for sources inotify cannot see, e.g. NFS or
     * symlink targets) and sends inode invalidations: sending one from
     * inside a request for the same inode can deadlock the kernel. */
    unsigned check_ms;
    int watch_ifd, watch_efd;
    struct qfs_wd *wds;
    size_t n_wds;
    pthread_t watch_thread;
    bool watch_started;
    atomic_bool watch_stop;
    pthread_mutex_t inval_mu;
    fuse_ino_t *inval_q;
    size_t inval_n, inval_cap;

    /* Tokenizer KVs of HF models already built, by a hash of what they
     * depend on (ns.c): a store of fine-tunes sharing a 150k-token
     * tokenizer.json parses it once (~0.25 s each). */
    pthread_mutex_t tok_mu;
    struct qfs_tokmemo *tok;
    size_t tok_bytes;
    atomic_uint_fast64_t tok_reused; /* stats: builds that reused one */
    atomic_uint_fast64_t hash_ns;    /* stats: time hashing chunk inputs (xxh3 only) */
    atomic_uint_fast64_t bytes_spliced; /* stats: source bytes sent from a pipe (stage_reply), never copied here */
    atomic_uint_fast64_t bytes_mapped; /* stats: source bytes conversions read mapped (qfs_src_map) */
    atomic_bool router_seen;         /* the kernel looked up .quantfs/models */
    atomic_size_t idle_layouts;      /* bytes of view layouts no one uses (qfs_snap.layouts) */

    /* Header parses (GGUF, safetensors, JSON) and Hugging Face conversion
     * setups running at a time (QFS_PARSE_SLOTS, QFS_HF_SLOTS): bounds
     * the memory hostile headers can claim at once. An HF setup may take
     * parse slots, never the other way round. */
    sem_t parse_slots, hf_slots;

    /* Messages (log.c): the last QFS_LOG_LINES lines, oldest overwritten,
     * for MOUNT/.quantfs/log; log_terminal: also to stderr until the
     * daemon detaches (the first scan's refusals reach whoever mounted). */
    pthread_mutex_t log_mu;
    char *log_ring[QFS_LOG_LINES];
    size_t log_next;
    uint64_t log_dropped;
    bool log_terminal;
    struct qfs_tally *tally; /* set during qfs_scan only (the main thread, before FUSE starts) */
};

/* Bytes the kernel's readahead may have in flight for one reader: its
 * window (read_ahead_kb) and the next one it starts asynchronously. */
static inline uint64_t qfs_kernel_readahead(const struct qfs *q) { return (uint64_t)q->read_ahead_kb << 11; }

/* log.c — qfs_log: one line (control characters escaped) into the ring,
 * to syslog unless -f, to stderr with -f or before qfs_log_detached.
 * Any thread. qfs_log_text: the ring, oldest line first (malloc'd, NULL
 * on ENOMEM). qfs_log_free: at teardown, single-threaded. */
void qfs_log(struct qfs *q, int prio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void qfs_log_detached(struct qfs *q);
char *qfs_log_text(struct qfs *q);
void qfs_log_free(struct qfs *q);

/* src.c — sources. qfs_src_open: opens path (qfs_open_source) into s.
 * qfs_src_pread (a qf_pread_fn on a struct qfs_src): exactly len bytes,
 * -EIO if the file ends first, was replaced while its descriptor was
 * evicted, or (network/FUSE sources) did not answer in source_timeout.
 * qfs_src_stat: stat(2), timed likewise for m's sources (-ETIMEDOUT: no
 * answer in time; qfs_src_open too). qfs_src_current (true also when
 * the stat timed out):
 * whether the path still names s's version. Thread-safe. */
int qfs_src_open(struct qfs *q, struct qfs_model *m, struct qfs_src *s, const char *path);
int qfs_src_pread(void *ctx, void *buf, size_t len, uint64_t off);
int qfs_src_stat(struct qfs *q, struct qfs_model *m, const char *path, struct stat *st);
/* The stat of m's directory for its attributes, once one is known
 * (m->dir_st, guarded by m->dir_mu, which this refreshes): on a timed
 * source it waits at most QFS_ATTR_WAIT_MS and lets the call finish alone,
 * one at a time per model; -EAGAIN: answer from the last one now. The
 * kernel holds a directory's lock across each LOOKUP in it (libfuse 3.14
 * never asks for parallel dirops), so a lookup waiting out a stalled
 * model's source_timeout held up every lookup in the root. */
#define QFS_ATTR_WAIT_MS 200
int qfs_src_dir_stat(struct qfs *q, struct qfs_model *m, struct stat *st);
bool qfs_src_current(const struct qfs_src *s);
/* The descriptor of a local source (not a timed, network one: -EAGAIN),
 * held open (never evicted) until qfs_src_give: for splicing its bytes
 * into a reply. -EIO if it was replaced. */
int qfs_src_take_local(struct qfs_src *s);
void qfs_src_give(struct qfs_src *s);
/* Mapped reads (-o map_reads): a conversion reads its input straight from
 * a local source's page cache, without copying it out first (pread).
 * qfs_src_map maps [off, off + len) of s's version (its pages faulted in)
 * into m; -EAGAIN where it does not (no -o map_reads, a timed source, a
 * filesystem that does not map: read instead), -EIO if the file no longer
 * reaches that far. qfs_src_unmap undoes it; the mapping is the caller's,
 * on any thread. Its bytes are touched only inside qfs_guard (guard.h):
 * a file truncated while mapped loses pages. */
struct qfs_map {
    const uint8_t *p; /* the bytes at off */
    void *base;
    size_t span;
};
int qfs_src_map(struct qfs_src *s, uint64_t off, size_t len, struct qfs_map *m);
void qfs_src_unmap(struct qfs_map *m);
/* Closes the descriptor now, keeping the identity (a file read whole). */
void qfs_src_idle(struct qfs_src *s);
/* Closes and forgets s (a no-op on one whose open failed or never ran). */
void qfs_src_close(struct qfs_src *s);
/* Ends the idle call threads; only when no call is blocked (io_stuck). */
void qfs_io_stop(struct qfs *q);

/* ns.c — namespace */
/* Opens a source file for reading: a regular file (O_NONBLOCK, so a FIFO
 * swapped in hangs nothing), inside the source root unless
 * -o follow_symlinks. The descriptor, or -errno: -EINVAL not a regular
 * file, -EACCES outside the root. *st: its fstat. */
int qfs_open_source(struct qfs *q, const char *path, struct stat *st);
int qfs_scan(struct qfs *q, struct qfs_tally *t); /* t: what it hid (filled, may be NULL) */
/* -o adapters=: ADAPTER=MODEL pairs joined by ':', plain names (no '/') */
bool qfs_adapters_opt_ok(const char *opt);
unsigned qfs_rescan(struct qfs *q);
/* The live model named name, or -1. */
int qfs_find_model(struct qfs *q, const char *name);
/* The name index's upkeep: a model published, a model gone (ns.c). */
int qfs_names_add(struct qfs *q, size_t slot);
void qfs_names_remove(struct qfs *q, size_t slot);
/* watch.c: a model hidden or published by a rescan (kernel entries
 * dropped, the new one's directory watched). */
void qfs_model_gone(struct qfs *q, size_t i);
void qfs_model_added(struct qfs *q, size_t i);
uint64_t qfs_now_ms(void);
void qfs_free_models(struct qfs *q);
void qfs_tokmemo_free(struct qfs *q);
/* Current snapshot of a file (re-parsed if the source changed), with a
 * reference; NULL with errno-style *err if the source is gone. */
struct qfs_snap *qfs_snap_get(struct qfs *q, struct qfs_model *m, struct qfs_file *f, int *err);
/* The snapshot the file has, unverified (no stat of any source): what
 * lookup, getattr, readdir and xattrs describe; qfs_snap_get when it has
 * none or it is stale. Opens verify (qfs_snap_get), reads too. */
struct qfs_snap *qfs_snap_peek(struct qfs *q, struct qfs_model *m, struct qfs_file *f, int *err);
void qfs_snap_put(struct qfs_snap *s);
/* Layout of file f in view v for this snapshot (built on first use, or
 * again if it was freed unused), taken for use: every success is paired
 * with qfs_snap_layout_put once the layout is no longer read. */
int qfs_snap_layout(struct qfs *q, struct qfs_snap *s, size_t v, struct qf_layout **out);
void qfs_snap_layout_put(struct qfs *q, struct qfs_snap *s, size_t v);
/* One more use of view v's layout, by a caller that has one already (a
 * read reply, which may outlive its handle). */
void qfs_snap_layout_hold(struct qfs_snap *s, size_t v);
/* The size of file f in view v (a layout built once, if need be). */
int qfs_snap_size(struct qfs *q, struct qfs_snap *s, size_t v, uint64_t *size);
/* 0 if the source still is the file this snapshot was made from; -EIO (and
 * the snapshot marked stale, logged once) otherwise. */
int qfs_snap_verify(struct qfs *q, struct qfs_snap *s);
/* Whether view v is offered for model m right now. */
bool qfs_view_available(struct qfs *q, size_t mi, size_t v);
/* Marks a snapshot stale (once): logs if the file is open and queues
 * invalidation of every view of the file. */
void qfs_snap_retire(struct qfs *q, struct qfs_snap *s);
bool qfs_same_file(const struct stat *a, const struct stat *b);
/* Whether every source file the snapshot was made from is unchanged. */
bool qfs_snap_current(const struct qfs_snap *s);
/* Whether file fi of model mi is shown in view v. */
bool qfs_file_in_view(struct qfs *q, size_t mi, size_t fi, size_t v);

/* checkrun.c */
void qfs_check_start(struct qfs *q, size_t mi);
char *qfs_check_text(struct qfs *q, size_t mi); /* malloc'd */
char *qfs_check_chart(struct qfs *q, size_t mi); /* .check.svg, malloc'd (NULL: no memory) */
/* qfs_check_kill: no new checks, running checkers SIGKILLed (before the
 * unmount); qfs_check_stop: also joins their threads (after it). Main
 * thread, at teardown. */
void qfs_check_kill(struct qfs *q);
void qfs_check_stop(struct qfs *q);

/* watch.c */
struct qfs_wd {
    int wd;
    long model; /* -1: the source root (loose files), -2: a root directory that is no model yet */
};
void qfs_queue_inval(struct qfs *q, fuse_ino_t ino);
int qfs_watch_start(struct qfs *q);
/* Stops the watcher; false if it did not stop in time (blocked in a
 * source call), the caller must not free what it uses. Idempotent. */
bool qfs_watch_stop(struct qfs *q);

/* Inode numbers are computed, not allocated:
 *   1                                root
 *   2, 3, 4, 5                       /.quantfs, /.quantfs/stats, /.quantfs/log,
 *                                    /.quantfs/models
 *   (m+1) << 36                      model directory m
 *   (m+1) << 36 | (v+1) << 28        view v of model m
 *   ... | (f+1)                      file f of that view
 *   ... | 2^28-1                     .quantfs/models/MODEL:VIEW, the link to it
 *   (m+1) << 36 | 2^28-1, | 2^28-2   MODEL/.check.json, MODEL/.check.svg
 * so every (model, view, file) keeps its number for the life of the mount
 * and no table grows with lookups. Limits: 2^27 models, 255 views, 2^28-2
 * files per model. */
#define QFS_INO_ROOT 1
#define QFS_INO_META 2
#define QFS_INO_STATS 3
#define QFS_INO_LOG 4
#define QFS_INO_MODELS 5
/* model slots per mount lifetime (each add or change takes one): what
 * inode numbers have room for */
#define QFS_MODEL_SLOTS ((1u << 27) - 1)
#define QFS_MODEL_BLOCK 4096u
#define QFS_MODEL(q, i) ((q)->models[(size_t)(i) / QFS_MODEL_BLOCK][(size_t)(i) % QFS_MODEL_BLOCK])
#define QFS_MAX_FILES ((1u << 28) - 2)

struct qfs_ino {
    int kind; /* 0 root, 1 meta dir, 2 stats, 3 model, 4 view, 5 file,
               * 6 MODEL/.check.json, 7 .quantfs/log, 8 .quantfs/models,
               * 9 a link in it (m, v), 10 MODEL/.check.svg */
    size_t m, v, f;
};

static inline fuse_ino_t qfs_ino_make(size_t m, long v, long f)
{
    fuse_ino_t ino = (fuse_ino_t)(m + 1) << 36;
    if (v >= 0)
        ino |= (fuse_ino_t)(v + 1) << 28;
    if (f >= 0)
        ino |= (fuse_ino_t)(f + 1);
    return ino;
}

/* ops.c */
extern const struct fuse_lowlevel_ops qfs_ops;
int qfs_decode_ino(struct qfs *q, fuse_ino_t ino, struct qfs_ino *out);
/* Frees the handles of files whose RELEASE never came (the kernel drops
 * pending releases at unmount); after the session loop has ended. */
void qfs_free_handles(struct qfs *q);

#endif
