/* store.c — the persistent tier: one file per block, content-addressed.
 *
 * Layout (cache/FORMAT.md): DIR/qfs1/XY/<32 hex digits of the key>, where XY
 * are the key's first two hex digits, and DIR/qfs1/tmp for writes in
 * progress. A writer fills a mkstemp file in tmp/ and publishes it under
 * the entry's name with link() (an O_EXCL copy where there are no hard
 * links), never replacing a live entry: readers, other daemons and a crash
 * only ever see whole entries or none, and no other node's open entry goes
 * stale. No file locks; entries are read, never mapped. No fsync: every
 * entry carries checksums, so one torn by a power cut is a verified miss.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "store.h"

#define QS_HDR 64
#define QS_VERSION 1
static const char qs_magic[8] = {'Q', 'F', 'S', 'C', 'A', 'C', 'H', 'E'};

struct qs_store {
    char *root; /* DIR/qfs1 */
};

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

int qs_path(struct qs_store *s, struct qc_key key, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/%02x/%016llx%016llx", s->root, (unsigned)(key.hi >> 56),
                     (unsigned long long)key.hi, (unsigned long long)key.lo);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int mkdir_p(const char *path)
{
    char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    int rc = 0;
    for (char *c = p + 1;; c++) {
        if (*c == '/' || !*c) {
            char save = *c;
            *c = 0;
            if (mkdir(p, 0755) && errno != EEXIST) {
                rc = -errno;
                break;
            }
            if (!(*c = save))
                break;
        }
    }
    free(p);
    return rc;
}

int qs_open(const char *dir, struct qs_store **out)
{
    struct qs_store *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    size_t n = strlen(dir) + 16;
    char *path = malloc(n + 8);
    int rc = -ENOMEM;
    if (!path || !(s->root = malloc(n)))
        goto fail;
    snprintf(s->root, n, "%s/qfs1", dir);
    snprintf(path, n + 8, "%s/tmp", s->root);
    if ((rc = mkdir_p(path)))
        goto fail;
    for (unsigned i = 0; i < 256; i++) {
        snprintf(path, n + 8, "%s/%02x", s->root, i);
        if (mkdir(path, 0755) && errno != EEXIST) {
            rc = -errno;
            goto fail;
        }
    }
    snprintf(path, n + 8, "%s/tmp", s->root);
    if (access(path, W_OK | X_OK)) {
        rc = -errno;
        goto fail;
    }
    free(path);
    *out = s;
    return 0;
fail:
    free(path);
    qs_close(s);
    return rc;
}

int qs_open_ro(const char *dir, struct qs_store **out)
{
    struct qs_store *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    size_t n = strlen(dir) + 16;
    int rc = -ENOMEM;
    if (!(s->root = malloc(n)))
        goto fail;
    snprintf(s->root, n, "%s/qfs1", dir);
    if (access(s->root, R_OK | X_OK)) {
        rc = -errno;
        goto fail;
    }
    *out = s;
    return 0;
fail:
    qs_close(s);
    return rc;
}

int qs_check_owner(const char *dir, char *bad, size_t badlen)
{
    uid_t me = geteuid();
    for (int i = -2; i < 256; i++) {
        char p[4096];
        if (i == -2)
            snprintf(p, sizeof p, "%s/qfs1", dir);
        else if (i == -1)
            snprintf(p, sizeof p, "%s/qfs1/tmp", dir);
        else
            snprintf(p, sizeof p, "%s/qfs1/%02x", dir, (unsigned)i);
        struct stat st;
        if (lstat(p, &st)) {
            if (errno == ENOENT)
                continue; /* made later, by this user */
            snprintf(bad, badlen, "%s", p);
            return -errno;
        }
        if (!S_ISDIR(st.st_mode) || st.st_uid != me || (st.st_mode & 0022)) {
            snprintf(bad, badlen, "%s", p);
            return -EPERM;
        }
    }
    return 0;
}

void qs_close(struct qs_store *s)
{
    if (!s)
        return;
    free(s->root);
    free(s);
}

static int read_full(int fd, void *buf, size_t len, uint64_t off)
{
    while (len) {
        ssize_t r = pread(fd, buf, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -EBADMSG; /* truncated */
        buf = (uint8_t *)buf + r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static void header_encode(uint8_t h[QS_HDR], struct qc_key key, const struct qs_frame *f)
{
    memset(h, 0, QS_HDR);
    memcpy(h, qs_magic, 8);
    put32(h + 8, QS_VERSION);
    put32(h + 12, f->codec);
    put64(h + 16, key.lo);
    put64(h + 24, key.hi);
    put64(h + 32, f->plain_len);
    put64(h + 40, f->stored_len);
    put64(h + 48, f->sum);
    put64(h + 56, XXH3_64bits(h, 56));
}

int qs_load(struct qs_store *s, struct qc_key key, uint64_t plain_len, struct qs_frame *f)
{
    char path[4096];
    int rc = qs_path(s, key, path, sizeof path);
    if (rc)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM) /* O_NOATIME needs ownership */
        fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ENOENT : -errno;
    uint8_t h[QS_HDR];
    struct stat st;
    f->data = NULL;
    if (fstat(fd, &st)) {
        rc = -errno;
        goto bad;
    }
    if ((rc = read_full(fd, h, QS_HDR, 0)))
        goto bad;
    f->codec = get32(h + 12);
    f->plain_len = get64(h + 32);
    f->stored_len = get64(h + 40);
    f->sum = get64(h + 48);
    if (memcmp(h, qs_magic, 8) || get32(h + 8) != QS_VERSION || get64(h + 56) != XXH3_64bits(h, 56) ||
        get64(h + 16) != key.lo || get64(h + 24) != key.hi || f->plain_len != plain_len ||
        (f->codec != QS_RAW && f->codec != QS_ZSTD) || (f->codec == QS_RAW && f->stored_len != plain_len) ||
        f->stored_len > ((uint64_t)1 << 34) || (uint64_t)st.st_size != QS_HDR + f->stored_len) {
        rc = -EBADMSG;
        goto bad;
    }
    if (!(f->data = malloc(f->stored_len ? f->stored_len : 1))) {
        close(fd);
        return -ENOMEM; /* our problem, not the entry's */
    }
    if ((rc = read_full(fd, f->data, f->stored_len, QS_HDR)))
        goto bad;
    /* The sweep evicts by mtime; refresh it at most once a minute. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec - st.st_mtim.tv_sec > 60)
        futimens(fd, NULL);
    close(fd);
    return 0;
bad:
    free(f->data);
    f->data = NULL;
    close(fd);
    /* Only an entry that did not verify is deleted. An I/O error is the
     * read's, not the entry's: on a network filesystem another node's
     * sweep may have removed it under us (ESTALE, ENOENT), and a peer may
     * hold a good copy by now. */
    if (rc == -EBADMSG)
        unlink(path);
    return rc;
}

void qs_remove(struct qs_store *s, struct qc_key key)
{
    char path[4096];
    if (!qs_path(s, key, path, sizeof path))
        unlink(path);
}

int qs_exists(struct qs_store *s, struct qc_key key)
{
    char path[4096];
    return !qs_path(s, key, path, sizeof path) && !access(path, F_OK);
}

/* For a filesystem without hard links: copy the finished temp file to a
 * name created with O_EXCL (atomic on NFSv3+ and in SFTP's open). A reader
 * that meets the entry half-copied refuses it by its size or checksum. */
static int publish_excl(const char *tmp, const char *path)
{
    int in = open(tmp, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        int e = errno;
        close(in);
        return e == EEXIST ? 0 : -e;
    }
    int rc = 0;
    uint8_t buf[1 << 16];
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r < 0 ? -errno : 0;
            break;
        }
        for (ssize_t done = 0; done < r && !rc;) {
            ssize_t w = write(out, buf + done, (size_t)(r - done));
            if (w < 0 && errno != EINTR)
                rc = -errno;
            done += w > 0 ? w : 0;
        }
        if (rc)
            break;
    }
    close(in);
    if (close(out) && !rc)
        rc = -errno;
    if (rc)
        unlink(path);
    return rc;
}

int qs_save(struct qs_store *s, struct qc_key key, const struct qs_frame *f)
{
    char path[4096], tmp[4096];
    int rc = qs_path(s, key, path, sizeof path);
    if (rc)
        return rc;
    if (snprintf(tmp, sizeof tmp, "%s/tmp/e.XXXXXX", s->root) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    uint8_t h[QS_HDR];
    header_encode(h, key, f);
    struct iovec iov[2] = {{h, QS_HDR}, {f->data, f->stored_len}};
    uint64_t total = QS_HDR + f->stored_len, done = 0;
    while (done < total) {
        ssize_t w = pwritev(fd, iov, 2, (off_t)done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = w < 0 ? -errno : -EIO;
            break;
        }
        done += (uint64_t)w;
        for (int i = 0; i < 2 && w > 0; i++) { /* advance past what was written */
            size_t k = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;
            iov[i].iov_base = (uint8_t *)iov[i].iov_base + k;
            iov[i].iov_len -= k;
            w -= (ssize_t)k;
        }
    }
    if (!rc && fchmod(fd, 0644))
        rc = -errno;
    if (close(fd) && !rc) /* NFS reports write errors (ENOSPC, EDQUOT) at close */
        rc = -errno;
    if (rc) {
        unlink(tmp);
        return rc;
    }
    /* Published once under its final name, never renamed over: link()
     * fails with EEXIST when a writer (this daemon or another node's) got
     * there first, with the same bytes, and a live entry that other nodes
     * may be reading is never replaced (a rename over it gives their open
     * handles ESTALE on NFS). link() is atomic on local filesystems and on
     * NFS; sshfs maps it to hardlink@openssh.com. */
    if (link(tmp, path) && errno != EEXIST)
        rc = (errno == EPERM || errno == ENOSYS || errno == EOPNOTSUPP) ? publish_excl(tmp, path) : -errno;
    unlink(tmp);
    return rc;
}

struct ent {
    char name[40];
    unsigned char dir;
    uint64_t size;
    struct timespec mtime;
};

static int cmp_ent(const void *a, const void *b)
{
    const struct ent *x = a, *y = b;
    if (x->mtime.tv_sec != y->mtime.tv_sec)
        return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
    if (x->mtime.tv_nsec != y->mtime.tv_nsec)
        return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void sweep_tmp(struct qs_store *s)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tmp", s->root);
    DIR *d = opendir(path);
    if (!d)
        return;
    time_t now = time(NULL);
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat st;
        if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW))
            continue;
        if (now - st.st_mtim.tv_sec > 3600) /* a writer that crashed */
            unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

void qs_sweep(struct qs_store *s, uint64_t budget, struct qs_sweep_result *r)
{
    memset(r, 0, sizeof *r);
    sweep_tmp(s);
    struct ent *v = NULL;
    size_t n = 0, cap = 0;
    char path[4096];
    for (unsigned i = 0; i < 256; i++) {
        snprintf(path, sizeof path, "%s/%02x", s->root, i);
        DIR *d = opendir(path);
        if (!d)
            continue;
        struct dirent *de;
        while ((de = readdir(d))) {
            struct stat st;
            if (strlen(de->d_name) != 32 || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
                !S_ISREG(st.st_mode))
                continue;
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 1024;
                struct ent *nv = realloc(v, nc * sizeof *nv);
                if (!nv)
                    break;
                v = nv;
                cap = nc;
            }
            memcpy(v[n].name, de->d_name, 33);
            v[n].dir = (unsigned char)i;
            v[n].size = (uint64_t)st.st_blocks * 512 > (uint64_t)st.st_size ? (uint64_t)st.st_blocks * 512
                                                                             : (uint64_t)st.st_size;
            v[n].mtime = st.st_mtim;
            r->bytes += v[n].size;
            n++;
        }
        closedir(d);
    }
    r->entries = n;
    if (r->bytes > budget) {
        qsort(v, n, sizeof *v, cmp_ent);
        uint64_t target = budget / 10 * 9;
        for (size_t i = 0; i < n && r->bytes > target; i++) {
            snprintf(path, sizeof path, "%s/%02x/%s", s->root, v[i].dir, v[i].name);
            if (unlink(path)) {
                if (errno != ENOENT)
                    continue;
            } else { /* ENOENT: another sweeper (daemon) took it */
                r->evicted++;
                r->evicted_bytes += v[i].size;
            }
            r->bytes -= v[i].size;
            r->entries--;
        }
    }
    free(v);
}

uint64_t qs_default_budget(struct qs_store *s)
{
    uint64_t cap = (uint64_t)16 << 30;
    struct statvfs sv;
    if (!statvfs(s->root, &sv)) {
        uint64_t quarter = (uint64_t)sv.f_blocks * sv.f_frsize / 4;
        if (quarter && quarter < cap)
            cap = quarter;
    }
    return cap;
}
