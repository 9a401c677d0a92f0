/* warm.c — quantfs-warm: converts views of a quantfs mount into its cache
 * tiers ahead of use, with progress.
 *
 *   quantfs-warm [-j N] [-w SECONDS] [-q] [-f LIST] PATH...
 *
 * PATH is a view directory (MOUNT/MODEL/VIEW), a model directory (all its
 * views) or a file of a view. Every file is read through the mount, N
 * reads in flight (default 4), so the daemon converts it on its worker
 * threads and keeps the blocks in its tiers, exactly as a client's first
 * read would. On a terminal one progress line is redrawn (bytes done of
 * the total, rate, time left); otherwise a plain line every 10 s. Ctrl-C
 * (or SIGTERM) stops after the reads in flight: what was converted stays
 * cached. At the end each file's user.quantfs.cache must say 1.0000 (all
 * of its converted bytes in a tier): the exit status is 0 then, 1 when a
 * read failed or a file is not all cached (a cache smaller than the views:
 * each such file is named), 2 for bad usage or a path that is not a
 * quantfs view, 130 when interrupted. -w waits up to SECONDS for the mount
 * to come up (a service started with the daemon); -f reads more paths
 * from a file, one per line ('#' comments). The tool has no state
 * but its own counters; nothing here is shared with the daemon but the
 * filesystem.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (4u << 20)

struct file {
    char *path;
    uint64_t size;
};

struct warm {
    struct file *f;
    size_t n, cap;
    uint64_t total;
    /* the next chunk to read: file index and offset, under mu */
    pthread_mutex_t mu;
    size_t next_f;
    uint64_t next_off;
    atomic_uint_fast64_t done;
    atomic_int failed; /* a read failed (said by the reader) */
};

static volatile sig_atomic_t stop;

static void on_signal(int sig) { stop = sig; }

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static bool is_view_path(const char *p)
{
    char v[256];
    return getxattr(p, "user.quantfs.view", v, sizeof v) > 0;
}

/* A view directory or a file of one (they carry user.quantfs.view), or a
 * model directory (one of its entries is a view) */
static bool quantfs_path(const char *p)
{
    if (is_view_path(p))
        return true;
    DIR *d = opendir(p);
    bool found = false;
    for (struct dirent *e; d && !found && (e = readdir(d));) {
        char *c;
        if (e->d_name[0] == '.' || asprintf(&c, "%s/%s", p, e->d_name) < 0)
            continue;
        found = is_view_path(c);
        free(c);
    }
    if (d)
        closedir(d);
    return found;
}

static int add_file(struct warm *w, const char *path, uint64_t size)
{
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 64;
        struct file *nf = realloc(w->f, nc * sizeof *nf);
        if (!nf)
            return -ENOMEM;
        w->f = nf, w->cap = nc;
    }
    if (!(w->f[w->n].path = strdup(path)))
        return -ENOMEM;
    w->f[w->n++].size = size;
    w->total += size;
    return 0;
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The entries of directory path (sorted, hidden ones left out), each
 * passed to fn; 0 or -errno */
static int each_entry(const char *path, int (*fn)(struct warm *, const char *, int), struct warm *w, int depth)
{
    DIR *d = opendir(path);
    if (!d)
        return -errno;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            char **nn = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *nn);
            if (!nn) {
                rc = -ENOMEM;
                break;
            }
            names = nn;
        }
        if (!(names[n] = malloc(strlen(path) + strlen(e->d_name) + 2))) {
            rc = -ENOMEM;
            break;
        }
        sprintf(names[n++], "%s/%s", path, e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_name);
    for (size_t i = 0; i < n; i++) {
        if (!rc)
            rc = fn(w, names[i], depth);
        free(names[i]);
    }
    free(names);
    return rc;
}

/* A path named on the command line, or found under one: files are
 * collected, directories (a model's views, a view's files) descended */
static int collect(struct warm *w, const char *path, int depth)
{
    struct stat st;
    if (stat(path, &st))
        return -errno;
    if (S_ISREG(st.st_mode))
        return add_file(w, path, (uint64_t)st.st_size);
    if (!S_ISDIR(st.st_mode) || depth > 1)
        return 0;
    return each_entry(path, collect, w, depth + 1);
}

/* Reader thread: chunks in order across files until none is left or a
 * signal came */
static void *reader(void *arg)
{
    struct warm *w = arg;
    char *buf = malloc(CHUNK);
    int fd = -1;
    size_t fd_of = SIZE_MAX;
    while (buf && !stop) {
        pthread_mutex_lock(&w->mu);
        while (w->next_f < w->n && w->next_off >= w->f[w->next_f].size)
            w->next_f++, w->next_off = 0;
        size_t fi = w->next_f;
        uint64_t off = w->next_off;
        w->next_off += CHUNK;
        pthread_mutex_unlock(&w->mu);
        if (fi >= w->n)
            break;
        if (fi != fd_of) {
            if (fd >= 0)
                close(fd);
            fd_of = fi;
            if ((fd = open(w->f[fi].path, O_RDONLY)) < 0) {
                fprintf(stderr, "\nquantfs-warm: %s: %s\n", w->f[fi].path, strerror(errno));
                atomic_store(&w->failed, 1);
                continue;
            }
        }
        if (fd < 0)
            continue;
        uint64_t want = w->f[fi].size - off < CHUNK ? w->f[fi].size - off : CHUNK;
        for (uint64_t got = 0; got < want && !stop;) {
            ssize_t r = pread(fd, buf, (size_t)(want - got), (off_t)(off + got));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                fprintf(stderr, "\nquantfs-warm: %s at %llu: %s\n", w->f[fi].path, (unsigned long long)(off + got),
                        r < 0 ? strerror(errno) : "unexpected end of file");
                atomic_store(&w->failed, 1);
                break;
            }
            got += (uint64_t)r;
            atomic_fetch_add(&w->done, (uint64_t)r);
        }
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    return NULL;
}

static void human(double b, char *out, size_t n)
{
    const char *u[] = {"B", "KB", "MB", "GB", "TB"};
    int i = 0;
    while (b >= 1000 && i < 4)
        b /= 1000, i++;
    snprintf(out, n, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

static void progress(const struct warm *w, double t0, bool tty, bool last)
{
    double t = now() - t0, done = (double)atomic_load(&w->done), rate = t > 0 ? done / t : 0;
    char d[32], tot[32], r[32], eta[32] = "";
    human(done, d, sizeof d);
    human((double)w->total, tot, sizeof tot);
    human(rate, r, sizeof r);
    if (rate > 0 && !last)
        snprintf(eta, sizeof eta, ", %.0f s left", ((double)w->total - done) / rate);
    fprintf(tty ? stderr : stdout, "%s%s of %s (%.1f%%), %s/s%s%s", tty ? "\r\033[K" : "", d, tot,
            w->total ? 100.0 * done / (double)w->total : 100.0, r, eta, tty && !last ? "" : "\n");
    fflush(tty ? stderr : stdout);
}

/* The paths of a list file: one per line, blank lines and '#' comments
 * left out; appended to *paths (malloc'd strings). 0 or -errno. */
static int read_list(const char *file, char ***paths, int *n)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return -errno;
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    for (ssize_t len; (len = getline(&line, &cap, f)) >= 0;) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = 0;
        char *p = line + strspn(line, " \t");
        if (!*p || *p == '#')
            continue;
        char **np = realloc(*paths, (size_t)(*n + 1) * sizeof *np);
        if (!np || !(np[*n] = strdup(p))) {
            if (np)
                *paths = np;
            rc = -ENOMEM;
            break;
        }
        *paths = np;
        (*n)++;
    }
    free(line);
    fclose(f);
    return rc;
}

static int usage(void)
{
    fprintf(stderr, "usage: quantfs-warm [-j N] [-w SECONDS] [-q] [-f LIST] MOUNT/MODEL[/VIEW[/FILE]]...\n"
                    "  converts views of a quantfs mount into its cache tiers (quantfs-warm(1))\n");
    return 2;
}

int main(int argc, char **argv)
{
    int jobs = 4, wait_s = 0, opt, np = 0;
    bool quiet = false;
    char **paths = NULL;
    while ((opt = getopt(argc, argv, "j:w:qf:h")) != -1) {
        if (opt == 'f') {
            int e = read_list(optarg, &paths, &np);
            if (!e)
                continue;
            fprintf(stderr, "quantfs-warm: %s: %s\n", optarg, strerror(-e));
            return 2;
        }
        if (opt == 'j' && (jobs = atoi(optarg)) >= 1 && jobs <= 256)
            continue;
        if (opt == 'w' && (wait_s = atoi(optarg)) >= 0)
            continue;
        if (opt == 'q') {
            quiet = true;
            continue;
        }
        return usage();
    }
    for (int i = optind; i < argc; i++) {
        char **more = realloc(paths, (size_t)(np + 1) * sizeof *more);
        if (!more || !(more[np] = strdup(argv[i]))) {
            fprintf(stderr, "quantfs-warm: out of memory\n");
            return 2;
        }
        paths = more;
        np++;
    }
    if (!np)
        return usage();
    struct warm w = {.mu = PTHREAD_MUTEX_INITIALIZER};
    int rc = 0;
    for (int i = 0; i < np && !rc; i++) {
        for (int s = 0; !quantfs_path(paths[i]) && s < wait_s; s++) /* the mount coming up */
            sleep(1);
        if (!quantfs_path(paths[i])) {
            fprintf(stderr, "quantfs-warm: %s: not a model, view or file of a quantfs mount\n", paths[i]);
            rc = 2;
        } else if ((rc = collect(&w, paths[i], 0)) < 0) {
            fprintf(stderr, "quantfs-warm: %s: %s\n", paths[i], strerror(-rc));
            rc = 2;
        }
    }
    for (int i = 0; i < np; i++)
        free(paths[i]);
    free(paths);
    if (rc) {
        for (size_t i = 0; i < w.n; i++)
            free(w.f[i].path);
        free(w.f);
        return rc;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    const bool tty = !quiet && isatty(STDERR_FILENO);
    const double t0 = now();
    pthread_t th[256];
    int started = 0;
    for (; started < jobs; started++)
        if (pthread_create(&th[started], NULL, reader, &w))
            break;
    if (!started) {
        fprintf(stderr, "quantfs-warm: cannot start a reader thread\n");
        return 1;
    }
    /* progress until the readers are done: a line redrawn every half
     * second on a terminal, a plain one every 10 s otherwise */
    double last = t0;
    while (!stop) {
        pthread_mutex_lock(&w.mu);
        bool left = w.next_f < w.n;
        pthread_mutex_unlock(&w.mu);
        if (!left)
            break;
        usleep(100 * 1000);
        if (!quiet && now() - last >= (tty ? 0.5 : 10)) {
            progress(&w, t0, tty, false);
            last = now();
        }
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    if (!quiet)
        progress(&w, t0, tty, true);
    if (stop) {
        fprintf(stderr, "quantfs-warm: interrupted; what was converted stays in the cache\n");
        rc = 130;
    } else {
        rc = atomic_load(&w.failed) ? 1 : 0;
        size_t short_files = 0;
        for (size_t i = 0; i < w.n; i++) {
            char v[32] = "";
            ssize_t n = getxattr(w.f[i].path, "user.quantfs.cache", v, sizeof v - 1);
            if (n > 0 && strtod(v, NULL) >= 1.0)
                continue;
            short_files++;
            fprintf(stderr, "quantfs-warm: %s: %s of its converted bytes cached\n", w.f[i].path,
                    n > 0 ? v : "(unknown share)");
        }
        if (short_files) {
            fprintf(stderr, "quantfs-warm: %zu of %zu files not all cached: the cache tiers hold less than these "
                    "views (cache_size=, cache_dir_size=)\n", short_files, w.n);
            rc = 1;
        } else if (!rc && !quiet) {
            printf("warmed %zu file(s), %llu bytes, all cached\n", w.n, (unsigned long long)w.total);
        }
    }
    for (size_t i = 0; i < w.n; i++)
        free(w.f[i].path);
    free(w.f);
    return rc;
}
