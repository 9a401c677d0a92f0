/* store.h — cache/'s private interface to the persistent tier (store.c).
 * Entry format: cache/FORMAT.md. Not part of the public API (cache.h). */
#ifndef QUANTFS_CACHE_STORE_H
#define QUANTFS_CACHE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"

enum { QS_RAW = 0, QS_ZSTD = 1 };

/* A frame: the stored form of one block. */
struct qs_frame {
    uint32_t codec;     /* QS_RAW or QS_ZSTD */
    uint64_t plain_len; /* bytes of the block */
    uint64_t stored_len;
    uint64_t sum;       /* xxh3-64 of the plain bytes */
    uint8_t *data;      /* stored_len bytes (malloc) */
};

struct qs_store;

/* Creates dir (and its fan-out and tmp directories) if needed and checks
 * that it can be written. */
int qs_open(const char *dir, struct qs_store **out);
/* Opens an existing store to read only (a shared tier other daemons
 * write): -ENOENT until a writer has created its layout. */
int qs_open_ro(const char *dir, struct qs_store **out);
void qs_close(struct qs_store *s);
/* Whether every directory of dir's layout (qfs1, its tmp and its 256
 * fan-out directories) is a real directory of the calling user that no
 * group or other user may write: whoever can write one can plant entries
 * (checksummed, not authenticated) that a later mount serves. 0, or
 * -EPERM with the first offending path in bad. */
int qs_check_owner(const char *dir, char *bad, size_t badlen);

/* Reads key's entry (read(2), never mmap: a peer deleting it must not
 * SIGBUS us). 0: *f filled (caller frees f->data); -ENOENT: no entry;
 * -EBADMSG: the entry did not verify (bad magic, header checksum, key,
 * length, or file size) and was deleted; other -errno: unreadable now (an
 * I/O error, ESTALE after a peer's eviction), left alone. Payload checksums
 * are the caller's (it decodes). A hit refreshes the entry's mtime, the
 * sweep's LRU clock. No file locks anywhere: they silently succeed for
 * everyone on some network filesystems. */
int qs_load(struct qs_store *s, struct qc_key key, uint64_t plain_len, struct qs_frame *f);
/* Writes key's entry: a temp file, published under the entry's name by
 * link() (EEXIST: a peer published the same bytes first: success), or by
 * an O_EXCL copy where the filesystem has no hard links. A live entry is
 * never replaced. -ENOSPC/-EDQUOT on a full disk; nothing partial is
 * visible under the entry's name (but in the O_EXCL fallback, where a
 * reader refuses it by its size). */
int qs_save(struct qs_store *s, struct qc_key key, const struct qs_frame *f);
/* Deletes key's entry (after its payload failed to verify). */
void qs_remove(struct qs_store *s, struct qc_key key);
int qs_exists(struct qs_store *s, struct qc_key key);
int qs_path(struct qs_store *s, struct qc_key key, char *buf, size_t len);

/* Counts entries; deletes the least recently used beyond budget (down to
 * 90% of it) and temp files older than an hour. */
struct qs_sweep_result {
    uint64_t bytes, entries, evicted, evicted_bytes;
};
void qs_sweep(struct qs_store *s, uint64_t budget, struct qs_sweep_result *r);
/* 1/4 of the filesystem holding the store, at most 16 GiB. */
uint64_t qs_default_budget(struct qs_store *s);

#endif
