/* testutil.h — helpers shared by the C unit tests (header-only). */
#ifndef QUANTFS_TESTUTIL_H
#define QUANTFS_TESTUTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"

/* ../shared (test material), from the environment meson sets. */
static inline const char *shared_dir(void)
{
    const char *s = getenv("QUANTFS_SHARED");
    return s ? s : "../shared";
}

/* Exit 77 (meson's "skipped") when ../shared is absent: a checkout
 * without the test material skips these tests instead of failing. */
static inline void require_shared(void)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/models/stories260K", shared_dir());
    struct stat st;
    if (stat(p, &st) || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "skipped: %s is absent (QUANTFS_SHARED or ../shared)\n", p);
        exit(77);
    }
}

/* A growing byte buffer, for building files (GGUF/safetensors headers) in
 * tests: aborts on out of memory. */
struct buf {
    uint8_t *p;
    size_t n, cap;
};

static inline void put(struct buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static inline void u32(struct buf *b, uint32_t v) { put(b, &v, 4); }
static inline void u64(struct buf *b, uint64_t v) { put(b, &v, 8); }
/* a GGUF string: u64 length, bytes */
static inline void str(struct buf *b, const char *s)
{
    u64(b, strlen(s));
    put(b, s, strlen(s));
}

struct tfile {
    int fd;
    uint64_t size;
    struct qf_gguf *g;
};

static inline int tfile_pread_cb(void *ctx, void *buf, size_t len, uint64_t off)
{
    const struct tfile *t = ctx;
    return pread(t->fd, buf, len, (off_t)off) == (ssize_t)len ? 0 : -EIO;
}

static inline int tfile_pread(struct tfile *t, void *buf, size_t len, uint64_t off)
{
    return tfile_pread_cb(t, buf, len, off);
}

static inline int tfile_open(struct tfile *t, const char *path)
{
    struct stat st;
    char err[256];
    t->g = NULL;
    t->fd = open(path, O_RDONLY);
    if (t->fd < 0 || fstat(t->fd, &st) < 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    t->size = (uint64_t)st.st_size;
    int rc = qf_gguf_parse(tfile_pread_cb, t, t->size, &t->g, err, sizeof err);
    if (rc)
        fprintf(stderr, "%s: %s\n", path, err);
    return rc;
}

static inline void tfile_close(struct tfile *t)
{
    qf_gguf_free(t->g);
    close(t->fd);
}

/* A file held in memory. */
struct tmem {
    const uint8_t *p;
    uint64_t size;
};

static inline int tmem_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
    const struct tmem *m = ctx;
    if (off > m->size || len > m->size - off)
        return -EIO;
    memcpy(buf, m->p + off, len);
    return 0;
}

static inline uint64_t qf_get64_test(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

#endif
