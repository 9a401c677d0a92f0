/* fuzz.h — shared by the libFuzzer targets (tests/fuzz/fuzz_*.c) and the
 * plain replay driver (replay.c) that runs their corpus in every test run.
 * Each target defines LLVMFuzzerTestOneInput and must never crash, leak or
 * hang on any input. */
#ifndef QUANTFS_FUZZ_H
#define QUANTFS_FUZZ_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "codec.h"
#include "../testutil.h" /* struct tmem, tmem_pread: the input as a file */

static int fz_piece(void *ctx, const struct qf_piece *p)
{
    (void)ctx;
    (void)p;
    return 0;
}

/* Walks a layout whole, and converts its first and last bytes (a bounded
 * amount of work per input). */
static inline void fz_exercise(const struct qf_layout *l, qf_pread_fn rd, void *rdctx)
{
    static uint8_t buf[4096];
    qf_layout_walk(l, 0, UINT64_MAX, fz_piece, NULL);
    uint64_t size = l->size;
    size_t n = size < sizeof buf ? (size_t)size : sizeof buf;
    qf_layout_read(l, 0, n, buf, rd, rdctx);
    if (size > n)
        qf_layout_read(l, size - n, n, buf, rd, rdctx);
}

/* Every view of format fmt that make() builds from src, exercised. */
typedef int (*fz_layout_fn)(const void *src, const struct qf_view *v, struct qf_layout **l, char *err, size_t n);
static inline void fz_each_view(unsigned fmt, fz_layout_fn make, const void *src, qf_pread_fn rd, void *rdctx)
{
    size_t nv;
    const struct qf_view *v = qf_views(&nv);
    char err[256];
    for (size_t i = 0; i < nv; i++) {
        struct qf_layout *l = NULL;
        if (v[i].what && (v[i].formats & fmt) && !make(src, &v[i], &l, err, sizeof err)) {
            fz_exercise(l, rd, rdctx);
            qf_layout_free(l);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
