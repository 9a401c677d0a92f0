/* The cache's persistent-tier entry decoder (store.c qs_load, cache.c's
 * frame decode) through the public qc_get: the input is written as the
 * entry file of a fresh key and read back. Oracle: what qc_get returns is
 * either the fill function's bytes (the entry was refused) or bytes whose
 * xxh3 is the sum the entry claims (it verified); anything else means an
 * unverified byte was served.
 *
 * The first input byte picks a mode: odd values patch the header's key and
 * header checksum to the expected ones, so mutations reach the length,
 * codec and zstd payload checks behind them. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <xxhash.h>

#include "fuzz.h"
#include "cache.h"

#define HDR 64

static int fill(void *arg, uint8_t *dst, size_t len, void *scratch)
{
    (void)arg;
    (void)scratch;
    for (size_t i = 0; i < len; i++)
        dst[i] = (uint8_t)(i * 7 + 3);
    return 0;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void wr64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* one cache directory per process, removed at exit */
static char dir[64];
static struct qc_cache *c;

static int rm1(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static void cleanup(void)
{
    qc_cache_free(c);
    nftw(dir, rm1, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint64_t serial;
    if (!c) {
        snprintf(dir, sizeof dir, "/tmp/qfs-fuzz-entry-%ld", (long)getpid());
        struct qc_opts o = {.dir = dir, .scratch_size = 64, .sweep_ms = 3600000};
        if (qc_cache_new(&o, &c))
            abort();
        atexit(cleanup);
    }
    if (size < 1)
        return 0;
    bool patch = data[0] & 1;
    data++, size--;
    uint8_t *e = malloc(size ? size : 1);
    if (!e)
        return 0;
    memcpy(e, data, size);
    uint64_t id = ++serial;
    struct qc_key key = qc_key_make(&id, sizeof id);
    uint64_t plain = 4096;
    if (size >= HDR) {
        plain = rd64(e + 32) % (1u << 20); /* the length the caller expects */
        if (patch) {
            wr64(e + 16, key.lo);
            wr64(e + 24, key.hi);
            wr64(e + 32, plain);
            wr64(e + 56, XXH3_64bits(e, 56));
        }
    }
    char path[4096];
    if (qc_entry_path(c, key, path, sizeof path))
        abort();
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(e, 1, size, f) != size || fclose(f))
        abort();
    struct qc_block *b = NULL;
    if (qc_get(c, key, plain, fill, NULL, &b) == 0) {
        const uint8_t *d = qc_block_data(b);
        bool filled = true;
        for (size_t i = 0; i < plain && filled; i++)
            filled = d[i] == (uint8_t)(i * 7 + 3);
        if (!filled && (size < HDR || XXH3_64bits(d, plain) != rd64(e + 48)))
            abort(); /* served bytes that did not verify */
        qc_release(c, b);
    }
    free(e);
    unlink(path); /* the entry is the input's: leave nothing behind */
    return 0;
}
