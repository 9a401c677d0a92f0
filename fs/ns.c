/* ns.c — the namespace: which models and files exist, and snapshots of
 * source files (parse, change detection, layouts). */
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <syslog.h>
#include <unistd.h>

#include "quantfs.h"

/* Whether a file of this role is made from other files of its model. */
static bool derived(int role) { return qf_source_kind(role)->derived; }

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n > k && !strcmp(s + n - k, suf);
}

static int cmp_file(const void *a, const void *b)
{
    const struct qfs_file *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : x->kind - y->kind; /* a merged shard after the base's shard of its name */
}

/* Appends a file (its role decided later, by classify). */
static int add_file(struct qfs_model *m, size_t *cap, const char *name, const char *path, int role)
{
    if (m->n_files == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        struct qfs_file *nf = realloc(m->files, nc * sizeof *nf);
        if (!nf)
            return -ENOMEM;
        m->files = nf;
        *cap = nc;
    }
    struct qfs_file *f = &m->files[m->n_files];
    *f = (struct qfs_file){.name = strdup(name), .path = strdup(path), .kind = role};
    if (!f->name || !f->path) {
        free(f->name);
        free(f->path);
        return -ENOMEM;
    }
    pthread_mutex_init(&f->mu, NULL);
    atomic_init(&f->open_count, 0);
    m->n_files++;
    return 0;
}

/* A JSON file of a model directory, whole, for codec's bounded parsers:
 * opened as every source is (symlink policy, regular files only), at most
 * QF_JSON_MAX_BYTES, its identity in *st. */
static int read_json(struct qfs *q, const char *path, char **text, size_t *len, struct stat *st)
{
    *text = NULL;
    int fd = qfs_open_source(q, path, st);
    if (fd < 0)
        return fd;
    int rc = 0;
    if ((uint64_t)st->st_size > QF_JSON_MAX_BYTES)
        rc = -EFBIG;
    else if (!(*text = malloc((size_t)st->st_size + 1)))
        rc = -ENOMEM;
    size_t got = 0;
    while (!rc && got < (size_t)st->st_size) {
        ssize_t r = pread(fd, *text + got, (size_t)st->st_size - got, (off_t)got);
        rc = r < 0 ? (errno == EINTR ? 0 : -errno) : r == 0 ? -EIO : 0;
        got += r > 0 ? (size_t)r : 0;
    }
    close(fd);
    if (rc) {
        free(*text);
        *text = NULL;
        return rc;
    }
    (*text)[got] = 0;
    *len = got;
    return 0;
}

/* config.json's architectures[0] into m->hf_arch, through codec's bounded
 * parser, once per version of the file: a rescan reuses the live model's. */
static void config_arch(struct qfs *q, struct qfs_model *m, const char *path)
{
    char *cp, *text = NULL;
    if (asprintf(&cp, "%s/config.json", path) < 0)
        return;
    struct stat cst;
    size_t len = 0;
    int live = qfs_find_model(q, m->name);
    const struct qfs_model *lm = live >= 0 ? QFS_MODEL(q, live) : NULL;
    bool reused = stat(cp, &cst) == 0 && lm && lm->config_known && qfs_same_file(&cst, &lm->config_st);
    if (reused) { /* said already what it holds */
        m->config_st = lm->config_st;
        snprintf(m->hf_arch, sizeof m->hf_arch, "%s", lm->hf_arch);
        m->config_known = true;
    } else {
        char err[256] = "";
        int rc = read_json(q, cp, &text, &len, &cst);
        if (!rc)
            rc = qf_hf_config_arch(text, len, m->hf_arch, sizeof m->hf_arch, err, sizeof err);
        free(text);
        if (rc) { /* info: it may be a copy in progress; its use warns (the row's open) */
            qfs_log(q, LOG_INFO, "model '%s': config.json: %s; no GGUF views", m->name,
                    err[0] ? err : strerror(-rc));
            m->hf_arch[0] = 0;
        } else {
            m->config_st = cst;
            m->config_known = true;
        }
    }
    free(cp);
    if (m->config_known && !reused && !qf_hf_arch_supported(m->hf_arch))
        qfs_log(q, LOG_INFO, "model '%s': architecture %s has no GGUF views (quantfs converts %s)", m->name,
                m->hf_arch[0] ? m->hf_arch : "(none in config.json)", QF_HF_ARCHS);
}

/* What each file is and which formats the model has: codec's source kinds
 * decide (qf_model_claim); a Hugging Face checkpoint the converter handles
 * also gets MODEL.gguf. path: the model directory, NULL for a loose file. */
static int classify(struct qfs *q, struct qfs_model *m, size_t *cap, const char *path)
{
    struct qf_model_files d = {.name = m->name, .dir = path != NULL, .n = m->n_files, .imatrix_name = q->imatrix_opt};
    d.f = calloc(m->n_files ? m->n_files : 1, sizeof *d.f);
    if (!d.f)
        return -ENOMEM;
    for (size_t i = 0; i < m->n_files; i++)
        d.f[i].name = m->files[i].name;
    char *extra = NULL;
    int rc = qf_model_claim(&d, NULL, &extra);
    bool config = false;
    for (size_t i = 0; i < d.n; i++)
        config |= d.f[i].role == QF_ROLE_CONFIG;
    if (!rc && path && config && (d.formats & QF_FMT_SAFETENSORS)) {
        config_arch(q, m, path);
        rc = qf_model_claim(&d, m->hf_arch, &extra);
    }
    for (size_t i = 0; !rc && i < d.n; i++)
        m->files[i].kind = d.f[i].role;
    m->formats = rc ? 0 : d.formats;
    free(d.f);
    char **ads = NULL;
    size_t n_ads = 0;
    if (!rc && extra) {
        rc = add_file(m, cap, extra, path, QF_ROLE_HFGGUF);
        /* its adapters: one NAME.gguf each in the lora view */
        d.f = calloc(m->n_files, sizeof *d.f);
        d.n = m->n_files;
        for (size_t i = 0; !rc && d.f && i < m->n_files; i++)
            d.f[i] = (struct qf_model_file){m->files[i].name, m->files[i].kind};
        if (!rc && (!d.f || qf_model_adapters(&d, &ads, &n_ads)))
            rc = -ENOMEM;
        for (size_t i = 0; !rc && i < n_ads; i++)
            rc = add_file(m, cap, ads[i], path, QF_ROLE_LORA);
        if (!rc)
            m->formats = d.formats;
        free(d.f);
        if (rc)
            m->formats = 0;
    }
    for (size_t i = 0; i < n_ads; i++)
        free(ads[i]);
    free(ads);
    free(extra);
    return rc;
}

/* Symlink policy: a source file is served only if the file it resolves to
 * lies inside the source root, unless -o follow_symlinks. Checked when the
 * store is scanned (so an escaping link is not listed) and again on every
 * descriptor opened (qfs_open_source: a link swapped in after the scan
 * reaches nothing). */
static bool inside_root(const struct qfs *q, const char *resolved)
{
    size_t n = strlen(q->source);
    return n == 1 || (!strncmp(resolved, q->source, n) && (resolved[n] == '/' || !resolved[n]));
}

static bool path_allowed(struct qfs *q, const char *p)
{
    if (q->follow_symlinks)
        return true;
    char *r = realpath(p, NULL);
    bool ok = r && inside_root(q, r);
    if (r && !ok) {
        qfs_log(q, LOG_WARNING, "not serving %s: it resolves to %s, outside the source root (-o follow_symlinks serves it)", p, r);
        if (q->tally)
            q->tally->outside++;
    }
    free(r);
    return ok;
}

int qfs_open_source(struct qfs *q, const char *path, struct stat *st)
{
    /* O_NONBLOCK: a FIFO or device put in place of a source must not hang
     * the open (and with it every reader of the model); only a regular
     * file is served */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return -errno;
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return -EINVAL;
    }
    if (!q->follow_symlinks) {
        char link[64], real[PATH_MAX + 1];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, real, PATH_MAX);
        if (n <= 0 || (real[n] = 0, !inside_root(q, real))) {
            qfs_log(q, LOG_WARNING, "not serving %s: it resolves outside the source root (-o follow_symlinks)", path);
            close(fd);
            return -EACCES;
        }
    }
    return fd;
}

/* The PEFT adapters of a model: adapters/NAME/{adapter_config.json,
 * adapter_model.safetensors} become files of the model named so (codec's
 * lora kinds decide what they are). */
static int scan_adapters(struct qfs *q, struct qfs_model *m, size_t *cap, const char *path)
{
    char *ad;
    if (asprintf(&ad, "%s/adapters", path) < 0)
        return -ENOMEM;
    DIR *d = opendir(ad);
    int rc = 0;
    struct dirent *de;
    while (d && !rc && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        static const char *const names[] = {"adapter_config.json", "adapter_model.safetensors"};
        for (int k = 0; k < 2 && !rc; k++) {
            char *p, *rel;
            if (asprintf(&p, "%s/%s/%s", ad, de->d_name, names[k]) < 0) {
                rc = -ENOMEM;
                break;
            }
            struct stat st;
            if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && path_allowed(q, p) && m->n_files < QFS_MAX_FILES) {
                if (asprintf(&rel, "adapters/%s/%s", de->d_name, names[k]) < 0)
                    rc = -ENOMEM;
                else
                    rc = add_file(m, cap, rel, p, QF_ROLE_PASS);
                free(rel);
            }
            free(p);
        }
    }
    if (d)
        closedir(d);
    free(ad);
    /* adapters at the source root whose base this model is */
    for (size_t i = 0; !rc && i < q->n_root_ads; i++) {
        const struct qfs_root_adapter *ra = &q->root_ads[i];
        if (!ra->base || strcmp(ra->base, m->name))
            continue;
        static const char *const names[] = {"adapter_config.json", "adapter_model.safetensors"};
        for (int k = 0; k < 2 && !rc; k++) {
            char *p = NULL, *rel = NULL;
            bool dup = false;
            if (asprintf(&rel, "adapters/%s/%s", ra->name, names[k]) < 0 || asprintf(&p, "%s/%s", ra->path, names[k]) < 0)
                rc = -ENOMEM;
            for (size_t f = 0; !rc && f < m->n_files && !dup; f++)
                dup = !strcmp(m->files[f].name, rel);
            if (!rc && dup && k == 0)
                qfs_log(q, LOG_WARNING, "adapter '%s' at the source root: model '%s' has adapters/%s/ of its own; "
                        "that one is used", ra->name, m->name, ra->name);
            if (!rc && !dup && m->n_files < QFS_MAX_FILES)
                rc = add_file(m, cap, rel, p, QF_ROLE_PASS);
            free(p);
            free(rel);
        }
    }
    return rc;
}

/* A directory of PEFT's save_pretrained (adapter_config.json and
 * adapter_model.safetensors, no config.json): an adapter, not a model. */
static bool adapter_dir(const char *path)
{
    static const char *const need[] = {"adapter_config.json", "adapter_model.safetensors", "config.json"};
    bool has[3];
    for (int k = 0; k < 3; k++) {
        char *p;
        struct stat st;
        if (asprintf(&p, "%s/%s", path, need[k]) < 0)
            return false;
        has[k] = stat(p, &st) == 0 && S_ISREG(st.st_mode);
        free(p);
    }
    return has[0] && has[1] && !has[2];
}

/* A string member of a JSON file of the store, through codec's parser. */
static bool json_member(struct qfs *q, const char *path, const char *member, char *out, size_t n)
{
    char *text = NULL, err[256];
    size_t len = 0;
    struct stat st;
    out[0] = 0;
    bool ok = !read_json(q, path, &text, &len, &st) &&
              !qf_json_string_member(text, len, path, member, out, n, err, sizeof err);
    free(text);
    return ok;
}

static void free_root_ads(struct qfs_root_adapter *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].path);
        free(v[i].base);
    }
    free(v);
}

static bool plain_name(const char *p, size_t n)
{
    return n && !memchr(p, '/', n) && !memchr(p, '=', n) && !(n == 1 && p[0] == '.') &&
           !(n == 2 && p[0] == '.' && p[1] == '.');
}

bool qfs_adapters_opt_ok(const char *opt)
{
    for (const char *p = opt; *p;) {
        size_t n = strcspn(p, ":"), a = strcspn(p, "=");
        if (a >= n || !plain_name(p, a) || !plain_name(p + a + 1, n - a - 1))
            return false;
        p += n + (p[n] == ':');
        if (!*p && p[-1] == ':')
            return false;
    }
    return opt[0] != 0;
}

/* The model -o adapters= names for root adapter name (copied to base), or false */
static bool adapters_opt_base(const struct qfs *q, const char *name, char *base, size_t n)
{
    size_t nl = strlen(name);
    for (const char *p = q->adapters_opt; p && *p;) {
        size_t l = strcspn(p, ":"), a = strcspn(p, "=");
        if (a == nl && !strncmp(p, name, nl) && l - a - 1 < n) {
            memcpy(base, p + a + 1, l - a - 1);
            base[l - a - 1] = 0;
            return true;
        }
        p += l + (p[l] == ':');
    }
    return false;
}

/* Pairs the adapters at the source root (names: its entries, sorted) with
 * the model directory -o adapters= names, else the one their
 * base_model_name_or_path names: by directory name (its last component),
 * else by a base's config.json _name_or_path. None or several: left
 * unpaired, said once. */
static void pair_root_adapters(struct qfs *q, char **names, size_t n)
{
    struct qfs_root_adapter *v = NULL;
    size_t nv = 0;
    for (size_t i = 0; i < n; i++) {
        char *p, base[1024] = "";
        if (asprintf(&p, "%s/%s", q->source, names[i]) < 0)
            break;
        struct stat st;
        bool is = stat(p, &st) == 0 && S_ISDIR(st.st_mode) && path_allowed(q, p) && adapter_dir(p);
        char *cp = NULL;
        if (is && asprintf(&cp, "%s/adapter_config.json", p) >= 0)
            json_member(q, cp, "base_model_name_or_path", base, sizeof base);
        free(cp);
        struct qfs_root_adapter *nv2 = is ? realloc(v, (nv + 1) * sizeof *v) : NULL;
        if (!nv2) {
            free(p);
            continue;
        }
        v = nv2;
        struct qfs_root_adapter *ra = &v[nv++];
        *ra = (struct qfs_root_adapter){strdup(names[i]), p, NULL};
        size_t bl = strlen(base);
        while (bl && base[bl - 1] == '/')
            base[--bl] = 0;
        const char *last = strrchr(base, '/') ? strrchr(base, '/') + 1 : base;
        size_t found = 0, at = 0;
        char named[256];
        bool by_opt = adapters_opt_base(q, names[i], named, sizeof named);
        if (by_opt) { /* the admin's pairing: that model directory, whatever the config says */
            for (size_t k = 0; k < n && !found; k++) {
                char *c;
                if (k == i || strcmp(names[k], named) || asprintf(&c, "%s/%s/config.json", q->source, names[k]) < 0)
                    continue;
                if (access(c, F_OK) == 0)
                    found = 1, at = k;
                free(c);
            }
            snprintf(base, sizeof base, "%s", named);
        }
        for (int pass = 0; pass < 2 && !found && *base && !by_opt; pass++)
            for (size_t k = 0; k < n; k++) {
                char *c;
                if (k == i || asprintf(&c, "%s/%s/config.json", q->source, names[k]) < 0)
                    continue;
                char nop[1024];
                bool match = pass == 0 ? !strcmp(names[k], last) && access(c, F_OK) == 0
                                       : json_member(q, c, "_name_or_path", nop, sizeof nop) && !strcmp(nop, base);
                free(c);
                if (match)
                    found++, at = k;
            }
        if (found == 1)
            ra->base = strdup(names[at]);
        bool said = false; /* said before, about the same pairing */
        for (size_t o = 0; o < q->n_root_ads && !said; o++)
            said = !strcmp(q->root_ads[o].name, ra->name) &&
                   (q->root_ads[o].base ? ra->base && !strcmp(q->root_ads[o].base, ra->base) : !ra->base);
        if (said)
            continue;
        if (ra->base)
            qfs_log(q, LOG_INFO, "adapter '%s' at the source root: its base is model '%s'%s", ra->name, ra->base,
                    by_opt ? " (-o adapters=)" : "");
        else if (by_opt)
            qfs_log(q, LOG_WARNING, "adapter '%s' at the source root: -o adapters= pairs it with '%s', which is no "
                    "Hugging Face model of the store; not offered", ra->name, base);
        else
            qfs_log(q, LOG_WARNING, "adapter '%s' at the source root: base_model_name_or_path '%s' names %s model of "
                    "the store; not offered", ra->name, base, found ? "more than one" : "no");
    }
    free_root_ads(q->root_ads, q->n_root_ads);
    q->root_ads = v;
    q->n_root_ads = nv;
}

/* Fills m with the regular files of directory path (symlinks followed
 * within the source root, dot files and sub-directories skipped, but for
 * adapters/: scan_adapters). */
static int scan_model_dir(struct qfs *q, struct qfs_model *m, const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        qfs_log(q, LOG_WARNING, "skipping %s: %s", path, strerror(errno));
        if (q->tally)
            q->tally->unreadable++;
        return 0;
    }
    size_t cap = 0;
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char *p;
        if (asprintf(&p, "%s/%s", path, de->d_name) < 0) {
            rc = -ENOMEM;
            break;
        }
        struct stat st;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && path_allowed(q, p)) {
            if (m->n_files >= QFS_MAX_FILES)
                qfs_log(q, LOG_WARNING, "%s: more than %u files, ignoring %s", path, QFS_MAX_FILES, de->d_name);
            else
                rc = add_file(m, &cap, de->d_name, p, QF_ROLE_PASS);
        }
        free(p);
    }
    closedir(d);
    if (!rc)
        rc = scan_adapters(q, m, &cap, path);
    if (!rc)
        rc = classify(q, m, &cap, path);
    if (m->n_files)
        qsort(m->files, m->n_files, sizeof *m->files, cmp_file);
    return rc;
}

static void free_model(struct qfs_model *m)
{
    pthread_mutex_destroy(&m->dir_mu);
    free(m->check_json);
    free(m->check_svg);
    for (size_t i = 0; i < m->n_files; i++) {
        struct qfs_file *f = &m->files[i];
        if (f->snap)
            qfs_snap_put(f->snap);
        pthread_mutex_destroy(&f->mu);
        free(f->name);
        free(f->path);
    }
    free(m->files);
    free(m->desc.f);
    free(m->name);
    free(m->dir);
}

void qfs_free_models(struct qfs *q)
{
    for (size_t i = 0; i < q->n_models; i++) {
        free_model(QFS_MODEL(q, i));
        free(QFS_MODEL(q, i));
    }
    for (size_t b = 0; q->models && b * QFS_MODEL_BLOCK < q->models_cap; b++)
        free(q->models[b]);
    free(q->names);
    q->names = NULL;
    q->names_cap = q->names_n = 0;
    free(q->models);
    q->models = NULL;
    q->n_models = 0;
    free_root_ads(q->root_ads, q->n_root_ads);
    q->root_ads = NULL;
    q->n_root_ads = 0;
    for (size_t i = 0; i < q->n_pending; i++)
        free(q->pending[i].name);
    free(q->pending);
    q->pending = NULL;
    q->n_pending = 0;
}

/* Whether path is on a filesystem whose calls can block without end: a
 * network one (a hard NFS mount retries forever) or another FUSE daemon.
 * Their models' source calls are timed (src.c). */
static bool on_remote_fs(const char *path)
{
    struct statfs sf;
    if (statfs(path, &sf))
        return false;
    switch ((unsigned long)sf.f_type) {
    case 0x6969:     /* NFS */
    case 0x65735546: /* FUSE */
    case 0xff534d42: /* CIFS */
    case 0xfe534d42: /* SMB2 */
    case 0x517b:     /* SMB */
    case 0x01021997: /* 9P (v9fs) */
    case 0x00c36400: /* Ceph */
    case 0x5346414f: /* AFS */
    case 0x73757245: /* Coda */
    case 0x47504653: /* GPFS */
    case 0x0bd00bd0: /* Lustre */
        return true;
    default: return false;
    }
}

/* m->desc: the model as codec's view rules see it (its files in their
 * final order; names are the files'). */
static int describe(struct qfs_model *m)
{
    m->desc = (struct qf_model_files){.name = m->name, .dir = m->dir != NULL, .n = m->n_files, .formats = m->formats};
    if (!(m->desc.f = calloc(m->n_files ? m->n_files : 1, sizeof *m->desc.f)))
        return -ENOMEM;
    for (size_t i = 0; i < m->n_files; i++)
        m->desc.f[i] = (struct qf_model_file){m->files[i].name, m->files[i].kind};
    return 0;
}

/* BASE+ADAPTER (no such entry in the root): the base directory's files
 * as inputs, and the one file the merged kind derives from them; formats
 * 0 when the base has no such complete adapter or no GGUF views. */
static int merged_build(struct qfs *q, struct qfs_model *m, const char *name, const char *plus)
{
    char *base = strndup(name, (size_t)(plus - name)), *path = NULL, *want = NULL, *file = NULL;
    int rc = base && asprintf(&path, "%s/%s", q->source, base) >= 0 && asprintf(&want, "%s.gguf", plus + 1) >= 0 &&
                     asprintf(&file, "%s.gguf", name) >= 0
                 ? 0
                 : -ENOMEM;
    struct stat st;
    if (!rc && (stat(path, &st) || !S_ISDIR(st.st_mode) || !path_allowed(q, path) || adapter_dir(path)))
        goto out;
    if (!rc) {
        m->name = base; /* scanned as the base (its root adapters, its config) */
        base = NULL;
        m->dir = strdup(path);
        rc = m->dir ? scan_model_dir(q, m, path) : -ENOMEM;
    }
    bool has_adapter = false, has_gguf = false;
    for (size_t i = 0; !rc && i < m->n_files; i++) {
        has_adapter |= m->files[i].kind == QF_ROLE_LORA && !strcmp(m->files[i].name, want);
        has_gguf |= m->files[i].kind == QF_ROLE_HFGGUF;
    }
    m->formats = 0;
    if (rc || !has_adapter || !has_gguf)
        goto out;
    /* keep the sources: tokenizer files and others passed through,
     * config.json and the index rewritten per safetensors view as the
     * base's, the rest as inputs shown nowhere; each shard an input with a
     * merged twin of its name; the base's derived files go */
    size_t k = 0, cap = m->n_files, n_st = 0;
    for (size_t i = 0; i < m->n_files; i++) {
        struct qfs_file *f = &m->files[i];
        if (derived(f->kind)) {
            pthread_mutex_destroy(&f->mu);
            free(f->name);
            free(f->path);
            continue;
        }
        n_st += f->kind == QF_ROLE_ST;
        if (f->kind != QF_ROLE_CONFIG && f->kind != QF_ROLE_INDEX && f->kind != QF_ROLE_ST && f->kind != QF_ROLE_PASS)
            f->kind = QF_ROLE_MERGE_IN;
        m->files[k++] = *f;
    }
    m->n_files = k;
    free(m->name);
    if (!(m->name = strdup(name)) || (rc = add_file(m, &cap, file, path, QF_ROLE_MERGED)))
        rc = -ENOMEM;
    for (size_t i = 0, n = m->n_files; !rc && i < n; i++) {
        if (m->files[i].kind != QF_ROLE_ST)
            continue;
        m->files[i].kind = QF_ROLE_MERGE_IN;
        char *sname = strdup(m->files[i].name);
        rc = sname ? add_file(m, &cap, sname, path, QF_ROLE_MERGED_ST) : -ENOMEM;
        free(sname);
    }
    if (!rc)
        m->formats = QF_FMT_GGUF | (n_st ? QF_FMT_SAFETENSORS : 0);
    if (!rc)
        qsort(m->files, m->n_files, sizeof *m->files, cmp_file);
out:
    free(base);
    free(path);
    free(want);
    free(file);
    return rc;
}

/* What a file or directory reached through a symlink may be served as:
 * never more open than where it really lives. A class (owner, group,
 * others) keeps its read (and for a directory search) bits only if it can
 * search every directory between the source root and the real location:
 * ln -s ../private/notes.txt SRC/evil/loot must not make a 0700 private/
 * readable to everyone under allow_other. 0777 where no link leads
 * elsewhere (the served directories are then the real ones). */
static unsigned reach_mask(const struct qfs *q, const char *path)
{
    char *real = realpath(path, NULL);
    struct stat self;
    if (!real || (strcmp(real, path) && stat(real, &self))) {
        free(real);
        return 0; /* cannot tell: nobody */
    }
    if (!strcmp(real, path)) { /* no link on the way: the served directories are the real ones */
        free(real);
        return 0777;
    }
    size_t n = strlen(q->source);
    unsigned mask = 0777;
    /* walk up from the real parent to the source root (to / for a target
     * outside it, served with -o follow_symlinks) */
    size_t stop = !strncmp(real, q->source, n) && (real[n] == '/' || !real[n]) ? n : 0;
    char *slash;
    while ((slash = strrchr(real, '/')) && (size_t)(slash - real) >= stop) {
        *slash = 0;
        struct stat d;
        if (stat(real[0] ? real : "/", &d)) {
            mask = 0;
            break;
        }
        bool ox = d.st_mode & S_IXOTH;
        bool gx = ox || ((d.st_mode & S_IXGRP) && d.st_gid == self.st_gid);
        bool ux = ox || ((d.st_mode & S_IXUSR) && d.st_uid == self.st_uid) ||
                  ((d.st_mode & S_IXGRP) && d.st_gid == self.st_gid);
        mask &= (ux ? 0700u : 0u) | (gx ? 0070u : 0u) | (ox ? 0007u : 0u);
        if ((size_t)(slash - real) == stop)
            break;
    }
    free(real);
    return mask;
}

static void set_reach(const struct qfs *q, struct qfs_model *m)
{
    m->dir_reach = m->dir ? reach_mask(q, m->dir) : 0777;
    for (size_t i = 0; i < m->n_files; i++) {
        struct qfs_file *f = &m->files[i];
        f->reach = m->dir_reach & (qf_source_kind(f->kind)->derived ? 0777 : reach_mask(q, f->path));
    }
}

/* The model a source-root entry makes (*out NULL if none: not a model
 * directory or file, or hidden). */
static int model_build(struct qfs *q, const char *name, struct qfs_model **out)
{
    *out = NULL;
    if (name[0] == '.')
        return 0;
    char *p;
    if (asprintf(&p, "%s/%s", q->source, name) < 0)
        return -ENOMEM;
    struct stat st;
    struct qfs_model *m = calloc(1, sizeof *m);
    int rc = m ? 0 : -ENOMEM;
    if (m)
        pthread_mutex_init(&m->dir_mu, NULL);
    const char *plus = strrchr(name, '+');
    if (!rc && plus && stat(p, &st) && errno == ENOENT) { /* BASE+ADAPTER: merged */
        rc = merged_build(q, m, name, plus);
    } else if (!rc && stat(p, &st) == 0 && path_allowed(q, p)) {
        if (S_ISDIR(st.st_mode) && adapter_dir(p)) { /* an adapter (pair_root_adapters) */
        } else if (S_ISDIR(st.st_mode)) {
            m->name = strdup(name);
            m->dir = strdup(p);
            m->dir_st = st, m->dir_known = true; /* lookups answer from it while its source stalls */
            rc = m->name && m->dir ? scan_model_dir(q, m, p) : -ENOMEM;
        } else if (S_ISREG(st.st_mode) && (has_suffix(name, ".gguf") || has_suffix(name, ".safetensors"))) {
            size_t fcap = 0;
            m->name = strndup(name, strlen(name) - strlen(strrchr(name, '.')));
            rc = m->name ? add_file(m, &fcap, name, p, QF_ROLE_PASS) : -ENOMEM;
            if (!rc)
                rc = classify(q, m, &fcap, NULL);
        }
    }
    if (m && !rc && m->formats) {
        m->remote = on_remote_fs(p);
        set_reach(q, m);
        rc = describe(m);
    }
    free(p);
    if (m && (rc || !m->formats)) {
        free_model(m);
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

/* The model's files as they are now (names, sizes, mtimes, ctimes): a copy
 * in progress changes it; a model is published once it holds still. */
static uint64_t model_sig(const struct qfs_model *m)
{
    uint64_t h = qc_hash64(m->name, strlen(m->name));
    for (size_t i = 0; i < m->n_files; i++) {
        const struct qfs_file *f = &m->files[i];
        struct stat st;
        uint64_t k[7] = {h, qc_hash64(f->name, strlen(f->name)), 0, 0, 0, 0, 0};
        if (!derived(f->kind) && stat(f->path, &st) == 0)
            k[2] = (uint64_t)st.st_size, k[3] = (uint64_t)st.st_mtim.tv_sec, k[4] = (uint64_t)st.st_mtim.tv_nsec,
            k[5] = (uint64_t)st.st_ctim.tv_sec, k[6] = (uint64_t)st.st_ctim.tv_nsec;
        h = qc_hash64(k, sizeof k);
    }
    return h;
}

/* Whether a model has what its format needs: a safetensors directory its
 * config.json and, with an index, every shard the index names. Why not, in
 * why. (A GGUF or a shard cut short is found by its parser instead.) */
static bool model_complete(struct qfs *q, const struct qfs_model *m, char *why, size_t n)
{
    if (!m->dir || !(m->formats & QF_FMT_SAFETENSORS))
        return true;
    bool config = false, tokenizer = false;
    const struct qfs_file *index = NULL;
    for (size_t i = 0; i < m->n_files; i++) {
        config |= m->files[i].kind == QF_ROLE_CONFIG;
        tokenizer |= !strncmp(m->files[i].name, "tokenizer", 9);
        if (m->files[i].kind == QF_ROLE_INDEX)
            index = &m->files[i];
    }
    /* bare safetensors files are a model too; a Hugging Face checkpoint
     * (an index, tokenizer files) is not one without its config */
    if (!config && (index || tokenizer)) {
        snprintf(why, n, "no config.json yet");
        return false;
    }
    if (!index)
        return true;
    char *text = NULL, err[256] = "";
    size_t len = 0;
    struct stat ist;
    int rc = read_json(q, index->path, &text, &len, &ist);
    if (!rc)
        rc = qf_st_index_check(text, len, qf_model_has_shard, (void *)&m->desc, err, sizeof err);
    free(text);
    if (rc)
        snprintf(why, n, "%s: %s", index->name, err[0] ? err : strerror(-rc));
    return !rc;
}

/* Makes m visible: indices (inode numbers) are its slot, never reused. */
static int publish(struct qfs *q, struct qfs_model *m)
{
    size_t i = q->n_models;
    if (i < q->models_cap && !q->models[i / QFS_MODEL_BLOCK] &&
        !(q->models[i / QFS_MODEL_BLOCK] = calloc(QFS_MODEL_BLOCK, sizeof **q->models)))
        return -ENOMEM;
    if (i >= q->models_cap) {
        qfs_log(q, LOG_WARNING, "model '%s' not shown: %zu models were published in this mount's life (the "
                "limit; remount to start over)", m->name, i);
        if (q->tally)
            q->tally->over_limit++;
        return -ENOSPC;
    }
    for (size_t k = 0; k < m->n_files; k++) {
        m->files[k].model_idx = i;
        m->files[k].idx = k;
    }
    m->sig = model_sig(m);
    QFS_MODEL(q, i) = m;
    int rc = qfs_names_add(q, i);
    if (rc) {
        QFS_MODEL(q, i) = NULL;
        return rc;
    }
    atomic_store_explicit(&q->n_models, i + 1, memory_order_release);
    return 0;
}

static size_t name_hash(const char *s)
{
    size_t h = 1469598103934665603u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* The index position of name, or of the empty cell where it would go. */
static size_t names_find(const struct qfs *q, const char *name)
{
    size_t i = name_hash(name) & (q->names_cap - 1);
    while (q->names[i] && strcmp(QFS_MODEL(q, q->names[i] - 1)->name, name))
        i = (i + 1) & (q->names_cap - 1);
    return i;
}

int qfs_names_add(struct qfs *q, size_t slot)
{
    int rc = 0;
    pthread_rwlock_wrlock(&q->names_lock);
    if ((q->names_n + 1) * 2 > q->names_cap) { /* at most half full */
        size_t ncap = q->names_cap ? q->names_cap * 2 : 1024, *old = q->names, ocap = q->names_cap;
        size_t *nt = calloc(ncap, sizeof *nt);
        if (!nt) {
            rc = -ENOMEM;
            goto out;
        }
        q->names = nt, q->names_cap = ncap;
        for (size_t i = 0; i < ocap; i++)
            if (old[i])
                q->names[names_find(q, QFS_MODEL(q, old[i] - 1)->name)] = old[i];
        free(old);
    }
    size_t at = names_find(q, QFS_MODEL(q, slot)->name);
    q->names_n += !q->names[at];
    q->names[at] = slot + 1;
out:
    pthread_rwlock_unlock(&q->names_lock);
    return rc;
}

void qfs_names_remove(struct qfs *q, size_t slot)
{
    pthread_rwlock_wrlock(&q->names_lock);
    size_t i = q->names_cap ? names_find(q, QFS_MODEL(q, slot)->name) : 0;
    if (q->names_cap && q->names[i] == slot + 1) {
        /* backward-shift deletion: no tombstones, probes stay short */
        q->names[i] = 0;
        q->names_n--;
        for (size_t j = (i + 1) & (q->names_cap - 1); q->names[j]; j = (j + 1) & (q->names_cap - 1)) {
            size_t home = name_hash(QFS_MODEL(q, q->names[j] - 1)->name) & (q->names_cap - 1);
            /* move j's entry to the hole unless its home lies in (i, j] */
            if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
                q->names[i] = q->names[j];
                q->names[j] = 0;
                i = j;
            }
        }
    }
    pthread_rwlock_unlock(&q->names_lock);
}

int qfs_find_model(struct qfs *q, const char *name)
{
    int found = -1;
    pthread_rwlock_rdlock(&q->names_lock);
    if (q->names_cap) {
        size_t at = names_find(q, name);
        if (q->names[at] && !atomic_load(&QFS_MODEL(q, q->names[at] - 1)->gone))
            found = (int)(q->names[at] - 1);
    }
    pthread_rwlock_unlock(&q->names_lock);
    return found;
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The source root's entries, sorted. */
static int list_root(struct qfs *q, char ***out, size_t *n)
{
    DIR *d = opendir(q->source);
    if (!d)
        return -errno;
    char **v = NULL;
    size_t cap = 0;
    *n = 0;
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (*n == cap) {
            char **nv = realloc(v, (cap = cap ? cap * 2 : 64) * sizeof *v);
            if (!nv) {
                rc = -ENOMEM;
                break;
            }
            v = nv;
        }
        if (!(v[*n] = strdup(de->d_name)))
            rc = -ENOMEM;
        else
            (*n)++;
    }
    closedir(d);
    if (*n)
        qsort(v, *n, sizeof *v, name_cmp);
    *out = v;
    return rc;
}

/* BASE+ADAPTER for every adapter a model directory has (adapters/NAME/
 * with both files, or a root adapter paired with it): the merged models,
 * added to the root's sorted names as if they were entries. */
static int add_merged_names(struct qfs *q, char ***names, size_t *n)
{
    size_t n0 = *n;
    int rc = 0;
    for (size_t i = 0; i < n0 && !rc; i++) {
        char *ad;
        if ((*names)[i][0] == '.' || strchr((*names)[i], '+') || asprintf(&ad, "%s/%s/adapters", q->source, (*names)[i]) < 0)
            continue;
        DIR *d = opendir(ad);
        struct dirent *de;
        while (d && !rc && (de = readdir(d))) {
            char *p;
            if (de->d_name[0] == '.' || strchr(de->d_name, '+') || asprintf(&p, "%s/%s", ad, de->d_name) < 0)
                continue;
            bool ok = true;
            static const char *const need[] = {"adapter_config.json", "adapter_model.safetensors"};
            for (int k = 0; k < 2 && ok; k++) {
                char *f;
                struct stat st;
                if (asprintf(&f, "%s/%s", p, need[k]) < 0) {
                    ok = false;
                    break;
                }
                ok = stat(f, &st) == 0 && S_ISREG(st.st_mode);
                free(f);
            }
            free(p);
            char **nv = ok ? realloc(*names, (*n + 1) * sizeof **names) : NULL;
            if (nv) {
                *names = nv;
                if (asprintf(&nv[*n], "%s+%s", (*names)[i], de->d_name) >= 0)
                    (*n)++;
            }
        }
        if (d)
            closedir(d);
        free(ad);
    }
    for (size_t i = 0; i < q->n_root_ads; i++) {
        const struct qfs_root_adapter *ra = &q->root_ads[i];
        char **nv = ra->base && !strchr(ra->name, '+') ? realloc(*names, (*n + 1) * sizeof **names) : NULL;
        if (nv) {
            *names = nv;
            if (asprintf(&nv[*n], "%s+%s", ra->base, ra->name) >= 0)
                (*n)++;
        }
    }
    if (*n > n0)
        qsort(*names, *n, sizeof **names, name_cmp);
    return rc;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* The first of names[0, sorted) not below key (sorted: list_root's order). */
static size_t lower_bound(char **names, size_t sorted, const char *key)
{
    size_t lo = 0, hi = sorted;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(names[mid], key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Whether an entry starts with prefix (exact: is it): a binary search in
 * the sorted part, a walk of the few appended after it. */
static bool listed(char **names, size_t sorted, size_t n, const char *prefix, bool exact)
{
    size_t l = strlen(prefix), k = lower_bound(names, sorted, prefix);
    if (k < sorted && !strncmp(names[k], prefix, l) && (!exact || !names[k][l]))
        return true;
    for (k = sorted; k < n; k++)
        if (!strncmp(names[k], prefix, l) && (!exact || !names[k][l]))
            return true;
    return false;
}

static bool names_model(const char *name, const char *model, size_t l)
{
    return !strncmp(name, model, l) &&
           (!name[l] || !strcmp(name + l, ".gguf") || !strcmp(name + l, ".safetensors"));
}

/* Two entries naming one model ("x/" and "x.gguf"): the first wins.
 * names[0, sorted) is sorted, so the entries starting with model are one
 * run holding names[i]: only that run is searched (a store of 66,000
 * loose files made this quadratic); the merged names appended after it
 * are few and searched whole. */
static bool name_taken(char **names, size_t i, size_t sorted, const char *model)
{
    size_t l = strlen(model);
    if (i >= sorted) {
        for (size_t k = 0; k < i; k++)
            if (names_model(names[k], model, l))
                return true;
        return false;
    }
    for (size_t k = i; k-- > 0 && !strncmp(names[k], model, l);)
        if (names_model(names[k], model, l))
            return true;
    return false;
}

int qfs_scan(struct qfs *q, struct qfs_tally *t)
{
    q->models_cap = QFS_MODEL_SLOTS;
    if (!(q->models = calloc((q->models_cap + QFS_MODEL_BLOCK - 1) / QFS_MODEL_BLOCK, sizeof *q->models)))
        return -ENOMEM;
    struct qfs_tally none;
    q->tally = t ? t : &none;
    *q->tally = (struct qfs_tally){0};
    char **names;
    size_t n;
    int rc = list_root(q, &names, &n);
    size_t sorted = n;
    if (!rc) {
        pair_root_adapters(q, names, n);
        add_merged_names(q, &names, &n);
    }
    for (size_t i = 0; i < n && !rc; i++) {
        struct qfs_model *m;
        if ((rc = model_build(q, names[i], &m)) || !m)
            continue;
        char why[200] = "";
        if (name_taken(names, i, sorted, m->name) || qfs_find_model(q, m->name) >= 0) {
            qfs_log(q, LOG_WARNING, "two sources for model '%s' (a directory and a loose file); ignoring %s",
                    m->name, names[i]);
            q->tally->duplicate++;
        } else if (!model_complete(q, m, why, sizeof why)) {
            qfs_log(q, LOG_INFO, "model '%s' not shown yet: %s", m->name, why);
            q->tally->incomplete++;
        } else if (!publish(q, m)) {
            q->tally->no_gguf += m->config_known && !qf_hf_arch_supported(m->hf_arch);
            continue;
        }
        free_model(m);
        free(m);
    }
    free_list(names, n);
    q->tally = NULL;
    return rc;
}

/* The watcher's rescan of the source root (the only writer of the model
 * set after mount). A model that is gone or changed is hidden at once
 * (open files keep their snapshots: correct bytes or EIO); a new or
 * changed one is shown once two scans settle_ms apart saw the same files,
 * complete. Returns the ms until a rescan is needed again (0: none). */
/* The pending models by name, for one rescan: an index over q->pending
 * (positions + 1; entries settled during the rescan have name NULL). A
 * store whose every file changed at once (a touch, an rsync) puts every
 * model here: lookups must not be linear. */
struct pending_ix {
    size_t *slot, cap, used;
};

static void pending_index(struct qfs *q, struct pending_ix *x, size_t p)
{
    if (x->slot && ++x->used * 2 > x->cap) { /* more merged names than sized for */
        free(x->slot);
        x->slot = NULL;
    }
    if (!x->slot)
        return; /* no index: pending_find walks */
    size_t i = name_hash(q->pending[p].name) & (x->cap - 1);
    while (x->slot[i])
        i = (i + 1) & (x->cap - 1);
    x->slot[i] = p + 1;
}

/* name's position in q->pending, or q->n_pending */
static size_t pending_find(struct qfs *q, struct pending_ix *x, const char *name)
{
    if (!x->slot) {
        size_t p = 0;
        while (p < q->n_pending && (!q->pending[p].name || strcmp(q->pending[p].name, name)))
            p++;
        return p;
    }
    for (size_t i = name_hash(name) & (x->cap - 1); x->slot[i]; i = (i + 1) & (x->cap - 1)) {
        const char *pn = q->pending[x->slot[i] - 1].name;
        if (pn && !strcmp(pn, name))
            return x->slot[i] - 1;
    }
    return q->n_pending;
}

unsigned qfs_rescan(struct qfs *q)
{
    char **names;
    size_t n;
    if (list_root(q, &names, &n))
        return q->settle_ms;
    size_t sorted = n;
    pair_root_adapters(q, names, n);
    struct pending_ix pix = {NULL, 64, 0};
    while (pix.cap < 2 * (q->n_pending + n + 1))
        pix.cap *= 2;
    if ((pix.slot = calloc(pix.cap, sizeof *pix.slot))) /* else pending_find walks */
        for (size_t p = 0; p < q->n_pending; p++)
            pending_index(q, &pix, p);
    add_merged_names(q, &names, &n);
    unsigned again = 0;
    uint64_t now = qfs_now_ms();
    size_t nm = q->n_models;
    /* hide what left the root */
    for (size_t i = 0; i < nm; i++) {
        struct qfs_model *m = QFS_MODEL(q, i);
        if (atomic_load(&m->gone))
            continue;
        char *entry = NULL; /* its entry in the root: NAME, or NAME.EXT for a loose file */
        bool there = asprintf(&entry, "%s%s", m->name, m->dir ? "" : strrchr(m->files[0].name, '.')) < 0 ||
                     listed(names, sorted, n, entry, true);
        free(entry);
        if (!there)
            qfs_model_gone(q, i);
    }
    for (size_t i = 0; i < n; i++) {
        struct qfs_model *m;
        if (model_build(q, names[i], &m))
            continue;
        if (!m) { /* a model directory that no longer holds a model */
            int was = qfs_find_model(q, names[i]);
            if (was >= 0 && QFS_MODEL(q, was)->dir)
                qfs_model_gone(q, (size_t)was);
            continue;
        }
        int live = qfs_find_model(q, m->name);
        uint64_t sig = model_sig(m);
        char why[200] = "";
        bool same = live >= 0 && QFS_MODEL(q, live)->sig == sig;
        if (!same && !name_taken(names, i, sorted, m->name)) {
            /* pending: shown when the same files are seen settle_ms later */
            size_t p = pending_find(q, &pix, m->name);
            if (p == q->n_pending) {
                struct qfs_pending *np = realloc(q->pending, (p + 1) * sizeof *np);
                if (np && (np[p].name = strdup(m->name))) {
                    q->pending = np;
                    np[p].sig = sig ^ 1; /* a first sighting */
                    q->n_pending++;
                    pending_index(q, &pix, p);
                } else if (np) {
                    q->pending = np;
                }
            }
            if (p < q->n_pending) {
                struct qfs_pending *pe = &q->pending[p];
                bool complete = model_complete(q, m, why, sizeof why);
                if (pe->sig == sig && complete && now - pe->seen >= q->settle_ms) {
                    if (live >= 0)
                        qfs_model_gone(q, (size_t)live);
                    if (!publish(q, m)) {
                        qfs_log(q, LOG_INFO, "model '%s' %s", m->name, live >= 0 ? "changed" : "appeared");
                        qfs_model_added(q, q->n_models - 1);
                        m = NULL;
                    }
                    free(pe->name);
                    pe->name = NULL; /* settled: dropped after the loop */
                } else {
                    if (pe->sig != sig) {
                        pe->sig = sig;
                        pe->seen = now;
                    }
                    /* look again: with settle=0 too (a first sighting is
                     * never shown at once; two scans must agree) */
                    again = q->settle_ms ? q->settle_ms : 50;
                }
            }
        }
        if (m) {
            free_model(m);
            free(m);
        }
    }
    free(pix.slot);
    size_t kept = 0; /* drop the settled */
    for (size_t p = 0; p < q->n_pending; p++)
        if (q->pending[p].name)
            q->pending[kept++] = q->pending[p];
    q->n_pending = kept;
    /* forget pending names that vanished before settling */
    for (size_t p = 0; p < q->n_pending;) {
        if (listed(names, sorted, n, q->pending[p].name, false)) {
            p++;
            continue;
        }
        free(q->pending[p].name);
        q->pending[p] = q->pending[--q->n_pending];
    }
    free_list(names, n);
    return again;
}

/* ---------------------------------------------------------------- snaps */

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

void qfs_snap_put(struct qfs_snap *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t v = 0; v < QFS_MAX_VIEWS; v++) {
        if (s->layouts[v] && s->idle_layouts) /* unused now, all of them */
            atomic_fetch_sub(s->idle_layouts, s->lay_bytes[v]);
        qf_layout_free(s->layouts[v]);
    }
    const struct qf_source_kind *k = qf_source_kind(s->file->kind);
    if (s->parsed && k->close)
        k->close(s->parsed);
    qfs_src_close(&s->src);
    qf_imatrix_free(s->imat); /* after the layouts, which point into it */
    for (size_t i = 0; i < s->n_in; i++)
        qfs_src_close(&s->in[i]);
    free(s->in);
    free(s->in_ctx);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Part of every cache key of the file: with inode, size and mtime it tells
 * versions apart even where timestamps are coarse or copied (rsync -t), and
 * it is the same on every machine that sees the file, unlike st_dev, so
 * daemons sharing a cache_dir share entries. */
static uint64_t header_hash(struct qfs_snap *s)
{
    const struct qf_source_kind *k = qf_source_kind(s->file->kind);
    uint64_t n = s->parsed && k->header ? k->header(s->parsed) : 0;
    if (n > (64u << 20)) /* huge vocabularies: the first 64 MiB and the size */
        n = 64u << 20;
    uint8_t *buf = n ? malloc(n) : NULL;
    uint64_t h = (uint64_t)s->st.st_size;
    if (buf && !qfs_src_pread(&s->src, buf, n, 0))
        h ^= qc_hash64(buf, n);
    free(buf);
    return h;
}


/* Parsing a hostile header may cost up to the limits of codec.h (~300 MB
 * for a safetensors header, ~1 GB for a Hugging Face model's tokenizer
 * files): a few at a time, whatever the number of FUSE threads. */
static void slot_take(sem_t *s)
{
    while (sem_wait(s) && errno == EINTR)
        ;
}

/* ------------------------------------------------ Hugging Face -> GGUF */


/* ------------------------------------------------------ tokenizer memo */

struct qfs_tokmemo {
    struct qc_key key;
    uint8_t *kvs;
    size_t len;
    uint64_t n_kv;
    struct qfs_tokmemo *next; /* newest first */
};
#define QFS_TOKMEMO_BYTES ((size_t)256 << 20)

/* The key of the tokenizer KVs of inputs txt[0..4] (config.json and the four
 * tokenizer files, NULL where absent); false if config.json is not JSON. */
static bool tok_key(const char *const *txt, const size_t *tlen, struct qc_key *key)
{
    struct {
        uint64_t h[4], len[4];
        char sig[512];
    } k;
    memset(&k, 0, sizeof k);
    if (qf_hf_tokenizer_sig(txt[0], tlen[0], k.sig, sizeof k.sig))
        return false;
    for (int i = 0; i < 4; i++) {
        k.len[i] = txt[i + 1] ? tlen[i + 1] + 1 : 0;
        k.h[i] = txt[i + 1] ? qc_hash64(txt[i + 1], tlen[i + 1]) : 0;
    }
    *key = qc_key_make(&k, sizeof k);
    return true;
}

static bool tok_find(struct qfs *q, struct qc_key key, uint8_t **kvs, size_t *len, uint64_t *n_kv)
{
    bool found = false;
    pthread_mutex_lock(&q->tok_mu);
    for (struct qfs_tokmemo *t = q->tok; t && !found; t = t->next) {
        if (t->key.lo != key.lo || t->key.hi != key.hi)
            continue;
        if ((*kvs = malloc(t->len ? t->len : 1))) {
            memcpy(*kvs, t->kvs, t->len);
            *len = t->len, *n_kv = t->n_kv;
            found = true;
        }
        break;
    }
    pthread_mutex_unlock(&q->tok_mu);
    return found;
}

static void tok_add(struct qfs *q, struct qc_key key, const struct qf_hf *hf)
{
    const uint8_t *p;
    size_t len;
    uint64_t n;
    qf_hf_tokenizer_kvs(hf, &p, &len, &n);
    struct qfs_tokmemo *t = calloc(1, sizeof *t);
    if (!t || !n || len > QFS_TOKMEMO_BYTES / 4 || !(t->kvs = malloc(len))) {
        free(t);
        return; /* only a cache */
    }
    memcpy(t->kvs, p, len);
    t->key = key, t->len = len, t->n_kv = n;
    pthread_mutex_lock(&q->tok_mu);
    t->next = q->tok;
    q->tok = t;
    q->tok_bytes += len;
    /* over the bound: drop the oldest */
    for (struct qfs_tokmemo **pp = &q->tok; *pp;) {
        if (q->tok_bytes <= QFS_TOKMEMO_BYTES || *pp == t) {
            pp = &(*pp)->next;
            continue;
        }
        struct qfs_tokmemo *old = *pp;
        *pp = old->next;
        q->tok_bytes -= old->len;
        free(old->kvs);
        free(old);
    }
    pthread_mutex_unlock(&q->tok_mu);
}

void qfs_tokmemo_free(struct qfs *q)
{
    for (struct qfs_tokmemo *t = q->tok, *n; t; t = n) {
        n = t->next;
        free(t->kvs);
        free(t);
    }
    q->tok = NULL;
    q->tok_bytes = 0;
}

/* The hf-gguf kind reads the model's files through the descriptor pool:
 * every input is recorded in s->in (its identity: a change of any retires
 * the snapshot), files read whole are closed, shards stay for qf_hf_pread. */
struct hf_io {
    struct qfs *q;
    struct qfs_model *m;
    struct qfs_snap *s;
    size_t cap;
};

static int hf_io_open(void *ctx, const char *name, qf_pread_fn *rd, void **rdctx, uint64_t *size)
{
    struct hf_io *io = ctx;
    if (io->s->n_in == io->cap)
        return -EMFILE;
    char *p = NULL; /* a file of the model (an adapter at the root lies elsewhere), else by name */
    for (size_t i = 0; i < io->m->n_files && !p; i++)
        if (!strcmp(io->m->files[i].name, name) && !derived(io->m->files[i].kind) && !(p = strdup(io->m->files[i].path)))
            return -ENOMEM;
    if (!p && asprintf(&p, "%s/%s", io->m->dir, name) < 0)
        return -ENOMEM;
    struct qfs_src *in = &io->s->in[io->s->n_in];
    int rc = qfs_src_open(io->q, io->m, in, p);
    free(p);
    if (rc)
        return rc;
    io->s->n_in++;
    *rd = qfs_src_pread, *rdctx = in, *size = (uint64_t)in->st.st_size;
    return 0;
}

static void hf_io_done(void *ctx, void *rdctx)
{
    (void)ctx;
    qfs_src_idle(rdctx);
}

static void hf_io_parse_begin(void *ctx) { slot_take(&((struct hf_io *)ctx)->q->parse_slots); }
static void hf_io_parse_end(void *ctx) { sem_post(&((struct hf_io *)ctx)->q->parse_slots); }

static bool hf_io_tok_find(void *ctx, const char *const *txt, const size_t *tlen, uint8_t **kvs, size_t *len,
                           uint64_t *n_kv)
{
    struct qc_key key;
    if (!tok_key(txt, tlen, &key) || !tok_find(((struct hf_io *)ctx)->q, key, kvs, len, n_kv))
        return false;
    atomic_fetch_add(&((struct hf_io *)ctx)->q->tok_reused, 1);
    return true;
}

static void hf_io_tok_add(void *ctx, const char *const *txt, const size_t *tlen, const struct qf_hf *hf)
{
    struct qc_key key;
    if (tok_key(txt, tlen, &key))
        tok_add(((struct hf_io *)ctx)->q, key, hf);
}

static void hf_load(struct qfs *q, struct qfs_model *m, struct qfs_snap *s)
{
    struct hf_io io = {q, m, s, m->n_files + QF_HF_TEXTS + 2};
    struct qf_model_files d = {.name = m->name, .dir = true, .n = m->n_files, .formats = m->formats};
    s->in = calloc(io.cap, sizeof *s->in);
    d.f = calloc(m->n_files + 1, sizeof *d.f);
    if (!s->in || !d.f) {
        snprintf(s->err, sizeof s->err, "%s", strerror(ENOMEM));
        free(d.f);
        return;
    }
    for (size_t i = 0; i < m->n_files; i++)
        d.f[i] = (struct qf_model_file){m->files[i].name, m->files[i].kind};
    const struct qf_dir_io dio = {.ctx = &io,
                                  .open = hf_io_open,
                                  .done = hf_io_done,
                                  .parse_begin = hf_io_parse_begin,
                                  .parse_end = hf_io_parse_end,
                                  .tok_find = hf_io_tok_find,
                                  .tok_add = hf_io_tok_add};
    struct qf_hf_dir out;
    int rc = qf_source_kind(s->file->kind)->open_dir(&dio, &d, s->file->name, &out, s->err, sizeof s->err);
    free(d.f);
    s->quiet |= out.shard_refused; /* the shard's own snapshot logs why */
    if (out.tokenizer_parsed)
        malloc_trim(0); /* tokenizer.json's JSON tree is gone: give its pages back (~20 MB for 150k tokens) */
    /* a config.json or index that is itself refused has said why already */
    for (size_t i = 0; i < m->n_files; i++) {
        if (!qf_source_kind(m->files[i].kind)->layout_set)
            continue;
        int e2;
        struct qfs_snap *js = qfs_snap_peek(q, m, &m->files[i], &e2);
        bool refused = !js || js->err[0];
        qfs_snap_put(js);
        if (refused) {
            s->quiet = true;
            snprintf(s->err, sizeof s->err, "%s is refused", m->files[i].name);
            if (!rc) {
                qf_hf_free(out.hf);
                free(out.shard_ctx);
                rc = -EINVAL;
            }
            break;
        }
    }
    if (rc)
        return;
    s->parsed = out.hf;
    s->in_ctx = out.shard_ctx;
    s->hfr = (struct qf_hf_reader){.hf = out.hf, .rd = qfs_src_pread, .ctx = s->in_ctx};
    s->rd = qf_hf_pread;
    s->rdctx = &s->hfr;
    s->st = s->in[0].st; /* config.json: times and mode of the file */
    uint64_t h = qc_hash64(out.hf->hdr, out.hf->hdr_len);
    for (size_t i = 0; i < s->n_in; i++) {
        const struct stat *st = &s->in[i].st;
        uint64_t k[7] = {(uint64_t)st->st_ino,         (uint64_t)st->st_size,         (uint64_t)st->st_mtim.tv_sec,
                         (uint64_t)st->st_mtim.tv_nsec, (uint64_t)st->st_ctim.tv_sec, (uint64_t)st->st_ctim.tv_nsec,
                         h};
        h = qc_hash64(k, sizeof k);
    }
    s->hdr_hash = h;
}

bool qfs_snap_current(const struct qfs_snap *s)
{
    if (!derived(s->file->kind))
        return qfs_src_current(&s->src);
    /* every file read; an optional one (tokenizer.model, ...) that was
     * absent and appears later is not noticed until another input changes */
    for (size_t i = 0; i < s->n_in; i++)
        if (!qfs_src_current(&s->in[i]))
            return false;
    return true;
}

/* The model's imatrix, for this snapshot's -imat views: read whole and
 * normalised now, so the views stay one version of it; a change of the
 * file changes the model's signature, and a rescan shows new views. A
 * refusal is said once per snapshot; the -imat views are then absent. */
static void imatrix_load(struct qfs *q, struct qfs_model *m, struct qfs_snap *s)
{
    int i = (m->formats & QF_FMT_IMATRIX) ? qf_model_imatrix_file(&m->desc) : -1;
    if (i < 0)
        return;
    struct qfs_file *imf = &m->files[i];
    struct qfs_src src = {.fd = -1};
    char err[256] = "";
    int rc = qfs_src_open(q, m, &src, imf->path);
    if (!rc) {
        slot_take(&q->parse_slots);
        rc = qf_imatrix_parse(qfs_src_pread, &src, (uint64_t)src.st.st_size, &s->imat, err, sizeof err);
        sem_post(&q->parse_slots);
    }
    qfs_src_close(&src);
    if (rc)
        qfs_log(q, LOG_WARNING, "model '%s': %s: %s; no -imat views", m->name, imf->name,
                err[0] ? err : strerror(-rc));
    else
        s->mi = (struct qf_model_imatrix){s->imat, imf->name};
}

static struct qfs_snap *snap_load(struct qfs *q, struct qfs_model *m, struct qfs_file *f, int *err)
{
    struct qfs_snap *s = calloc(1, sizeof *s);
    if (!s) {
        *err = -ENOMEM;
        return NULL;
    }
    atomic_init(&s->refs, 1);
    atomic_init(&s->stale, false);
    s->file = f;
    s->idle_layouts = &q->idle_layouts;
    pthread_mutex_init(&s->mu, NULL);
    for (size_t v = 0; v < QFS_MAX_VIEWS; v++)
        s->fresh[v] = true;
    s->rd = qfs_src_pread;
    s->rdctx = &s->src;
    s->src.fd = -1;
    if (derived(f->kind)) { /* the converter's GGUF, an adapter's GGUF */
        slot_take(&q->hf_slots); /* then parse slots inside: never the other way */
        hf_load(q, m, s);
        sem_post(&q->hf_slots);
        if (s->err[0] && !s->quiet && qf_source_kind(f->kind)->optional)
            qfs_log(q, LOG_WARNING, "model '%s': %s is not offered: %s", m->name, f->name, s->err);
        else if (s->err[0] && !s->quiet)
            qfs_log(q, LOG_WARNING, "model '%s': no GGUF views: %s", m->name, s->err);
        if (!s->n_in) {
            *err = -ENOENT;
            qfs_snap_put(s);
            return NULL;
        }
        if (!s->err[0] && f->kind != QF_ROLE_LORA)
            imatrix_load(q, m, s);
        return s;
    }
    int orc = qfs_src_open(q, m, &s->src, f->path);
    if (orc) {
        if (orc == -EINVAL)
            qfs_log(q, LOG_WARNING, "model '%s': %s is not a regular file; not served", m->name, f->name);
        *err = orc == -EINVAL || orc == -EACCES || orc == -ETIMEDOUT ? -EIO : orc;
        qfs_snap_put(s);
        return NULL;
    }
    s->st = s->src.st;
    uint64_t size = (uint64_t)s->st.st_size;
    const struct qf_source_kind *k = qf_source_kind(f->kind);
    if (k->open) { /* parsed under codec's limits, a few at a time */
        slot_take(&q->parse_slots);
        k->open(qfs_src_pread, &s->src, size, &m->desc, &s->parsed, s->err, sizeof s->err);
        sem_post(&q->parse_slots);
    }
    if (s->err[0])
        qfs_log(q, LOG_WARNING, "model '%s': %s: %s; only the f32 view is offered", m->name, f->name, s->err);
    else
        s->hdr_hash = header_hash(s);
    if (!s->err[0] && f->kind == QF_ROLE_GGUF)
        imatrix_load(q, m, s);
    return s;
}

struct qfs_snap *qfs_snap_get(struct qfs *q, struct qfs_model *m, struct qfs_file *f, int *err)
{
    struct stat st;
    pthread_mutex_lock(&f->mu);
    struct qfs_snap *s = f->snap;
    int src_rc = qfs_src_stat(q, m, f->path, &st);
    if (src_rc == -ETIMEDOUT) { /* cannot tell: fail this request, keep the snapshot */
        pthread_mutex_unlock(&f->mu);
        *err = -EIO;
        return NULL;
    } else if (src_rc && s && atomic_load(&f->open_count)) {
        /* gone (or its directory made a file) while open: the handles keep
         * the version they opened, described as it was; its reads get EIO
         * (a getattr error here failed them with ENOTDIR) */
        qfs_snap_retire(q, s);
        atomic_fetch_add(&s->refs, 1);
        pthread_mutex_unlock(&f->mu);
        return s;
    } else if (src_rc) {
        *err = src_rc == -ENOTDIR ? -ENOENT : src_rc; /* a path that leads nowhere now */
        s = NULL;
    } else if (s && (atomic_load(&m->gone) || atomic_load(&f->open_count)) &&
               (atomic_load(&s->stale) ||
                (derived(f->kind) ? !qfs_snap_current(s) : !same_file(&st, &s->st)))) {
        /* Changed while open (or in a model a rescan replaced): the inode
         * keeps the old version, whose size the kernel holds handles to
         * (a new size would end their reads early, cleanly). Its reads
         * and new opens get EIO until the last handle closes or the
         * rescan shows the new version under new inode numbers. */
        qfs_snap_retire(q, s);
        atomic_fetch_add(&s->refs, 1);
        pthread_mutex_unlock(&f->mu);
        return s;
    } else if (!s && atomic_load(&m->gone)) {
        /* a model that left the source (or a rescan replaced) dropped its
         * snapshots: its path may hold another version now, never served
         * under these inode numbers */
        pthread_mutex_unlock(&f->mu);
        *err = -ESTALE;
        return NULL;
    } else if (!s || atomic_load(&s->stale) ||
               (derived(f->kind) ? !qfs_snap_current(s) : !same_file(&st, &s->st))) {
        s = snap_load(q, m, f, err);
    } else {
        atomic_fetch_add(&s->refs, 1);
        pthread_mutex_unlock(&f->mu);
        return s;
    }
    /* the source changed (or vanished): retire the old snapshot */
    struct qfs_snap *old = f->snap;
    if (old) {
        qfs_snap_retire(q, old);
        qfs_snap_put(old);
    }
    f->snap = s;
    if (s)
        atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&f->mu);
    return s;
}

/* Lookups, getattr, readdir and xattrs describe; they do not verify: the
 * snapshot a file has (one version of it, immutable) answers them without
 * a stat of any source. Changes reach them through the watcher (inotify,
 * polling, rescans: a changed model reappears under new inodes) and
 * through opens and reads, which verify their inputs (qfs_snap_get,
 * qfs_snap_verify) and retire a snapshot whose source changed. */
struct qfs_snap *qfs_snap_peek(struct qfs *q, struct qfs_model *m, struct qfs_file *f, int *err)
{
    pthread_mutex_lock(&f->mu);
    struct qfs_snap *s = f->snap;
    if (s && !atomic_load(&s->stale)) {
        atomic_fetch_add(&s->refs, 1);
        pthread_mutex_unlock(&f->mu);
        return s;
    }
    pthread_mutex_unlock(&f->mu);
    return qfs_snap_get(q, m, f, err);
}

bool qfs_same_file(const struct stat *a, const struct stat *b) { return same_file(a, b); }

void qfs_snap_retire(struct qfs *q, struct qfs_snap *s)
{
    if (atomic_exchange(&s->stale, true))
        return;
    struct qfs_file *f = s->file;
    if (atomic_load(&f->open_count))
        qfs_log(q, LOG_ERR,
                "%s (from %s) changed or vanished while in use; reads of its views fail with EIO until reopened",
                f->name, f->path);
    /* drop what the kernel cached of every view of this file */
    for (size_t v = 0; v < q->n_views; v++)
        qfs_queue_inval(q, qfs_ino_make(f->model_idx, (long)v, (long)f->idx));
}

int qfs_snap_verify(struct qfs *q, struct qfs_snap *s)
{
    /* the path still names the version read (an in-place write changes
     * its mtime or ctime, a replace its inode) */
    if (atomic_load(&s->stale))
        return -EIO;
    if (!derived(s->file->kind)) {
        struct stat st;
        int rc = qfs_src_stat(q, s->src.m, s->src.path, &st);
        if (rc == -ETIMEDOUT)
            return -EIO; /* cannot tell: this request fails, the version stands */
        if (!rc && same_file(&st, &s->st))
            return 0;
    } else if (qfs_snap_current(s)) {
        return 0;
    }
    qfs_snap_retire(q, s);
    return -EIO;
}

/* config.json / index of a safetensors view: its row's layout_set over
 * all shards' headers, in name order. */
static int generated_layout(struct qfs *q, struct qfs_snap *s, size_t v, struct qf_layout **out, char *err,
                            size_t errlen)
{
    struct qfs_model *m = QFS_MODEL(q, s->file->model_idx);
    const struct qf_st **shards = calloc(m->n_files + 1, sizeof *shards);
    const char **names = calloc(m->n_files + 1, sizeof *names);
    struct qfs_snap **held = calloc(m->n_files + 1, sizeof *held);
    size_t n = 0;
    int rc = shards && names && held ? 0 : -ENOMEM;
    for (size_t i = 0; i < m->n_files && !rc; i++) {
        const struct qf_source_kind *k = qf_source_kind(m->files[i].kind);
        if (!k->shard)
            continue;
        struct qfs_snap *sh = qfs_snap_peek(q, m, &m->files[i], &rc);
        if (!sh)
            break;
        held[n] = sh;
        if (!sh->parsed) {
            rc = -ENOENT;
            n++;
            break;
        }
        shards[n] = k->shard(sh->parsed);
        names[n++] = m->files[i].name;
    }
    if (!rc)
        rc = qf_source_kind(s->file->kind)->layout_set(s->parsed, &q->views[v], shards, names, n, out, err, errlen);
    for (size_t i = 0; i < n; i++)
        qfs_snap_put(held[i]);
    free(shards);
    free(names);
    free(held);
    return rc;
}

/* Whether file kind k is converted by view vw in model m. */
/* The converter's GGUF of a Hugging Face model is in every GGUF view but
 * the safetensors ones that are only aliases for GGUF (int8, int4). */
int qfs_snap_layout(struct qfs *q, struct qfs_snap *s, size_t v, struct qf_layout **out)
{
    int rc = 0;
    struct qfs_model *m = QFS_MODEL(q, s->file->model_idx);
    int kind = s->file->kind;
    const struct qf_view *vw = &q->views[v];
    pthread_mutex_lock(&s->mu);
    if (!s->layouts[v] && !s->layout_rc[v]) {
        char err[256] = "";
        const struct qf_source_kind *k = qf_source_kind(kind);
        if (!qf_model_shows(m->formats, kind, vw))
            rc = -ENOENT;
        else if (!qf_model_converts(m->formats, kind, vw) && !k->derived) /* a derived file has no size of its own */
            rc = qf_layout_passthrough((uint64_t)s->st.st_size, &s->layouts[v]);
        else if (s->err[0])
            rc = -ENOENT;
        else if (vw->imat && !s->mi.m) /* no imatrix, or a refused one (said at load) */
            rc = -ENOENT;
        else if (k->layout)
            rc = k->layout(s->parsed, vw, &s->mi, &s->layouts[v], err, sizeof err);
        else if (k->layout_set && s->parsed)
            rc = generated_layout(q, s, v, &s->layouts[v], err, sizeof err);
        else
            rc = -ENOENT;
        /* a refusal is a property of this version of the file: remembered,
         * and logged once per distinct reason (a refused architecture
         * refuses every view alike) */
        if (rc && rc != -ENOMEM) {
            s->layout_rc[v] = rc;
            if (err[0] && strcmp(err, s->logged)) {
                qfs_log(q, rc == -ENOTSUP ? LOG_WARNING : LOG_ERR, "model '%s': %s: no %s view: %s", m->name,
                        s->file->name, vw->name, err);
                snprintf(s->logged, sizeof s->logged, "%s", err);
            }
        }
    }
    rc = s->layouts[v] ? 0 : s->layout_rc[v] ? s->layout_rc[v] : rc;
    *out = s->layouts[v];
    if (!rc) {
        struct qf_layout *l = s->layouts[v];
        if (!s->lay_bytes[v]) { /* built now (first, or again after it was freed unused) */
            s->lay_bytes[v] = sizeof *l + l->n_ext * sizeof *l->ext + l->mem_len + l->n_tensors * sizeof *l->tensors;
            s->lay_size[v] = l->size;
            s->lay_sized[v] = true;
        } else if (!s->lay_users[v] && s->lay_bytes[v]) { /* kept unused until now */
            atomic_fetch_sub(&q->idle_layouts, s->lay_bytes[v]);
        }
        s->lay_users[v]++;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void qfs_snap_layout_hold(struct qfs_snap *s, size_t v)
{
    pthread_mutex_lock(&s->mu);
    s->lay_users[v]++;
    pthread_mutex_unlock(&s->mu);
}

void qfs_snap_layout_put(struct qfs *q, struct qfs_snap *s, size_t v)
{
    struct qf_layout *drop = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->lay_users[v] && !--s->lay_users[v] && s->layouts[v]) {
        /* unused: kept within the daemon's budget, else rebuilt when needed */
        if (atomic_load(&q->idle_layouts) + s->lay_bytes[v] > QFS_IDLE_LAYOUT_BYTES) {
            drop = s->layouts[v];
            s->layouts[v] = NULL;
            s->lay_bytes[v] = 0;
        } else {
            atomic_fetch_add(&q->idle_layouts, s->lay_bytes[v]);
        }
    }
    pthread_mutex_unlock(&s->mu);
    qf_layout_free(drop);
}

int qfs_snap_size(struct qfs *q, struct qfs_snap *s, size_t v, uint64_t *size)
{
    pthread_mutex_lock(&s->mu);
    bool known = s->lay_sized[v];
    *size = s->lay_size[v];
    pthread_mutex_unlock(&s->mu);
    if (known)
        return 0;
    struct qf_layout *l;
    int rc = qfs_snap_layout(q, s, v, &l);
    if (rc)
        return rc;
    *size = l->size;
    qfs_snap_layout_put(q, s, v);
    return 0;
}

/* What the daemon knows of a model's files, for codec's view rules: each
 * file's snapshot (unverified, as every lookup) and its layouts. */
struct probe {
    struct qfs *q;
    struct qfs_model *m;
};

static bool probe_opened(void *ctx, size_t i)
{
    struct probe *p = ctx;
    int err;
    struct qfs_snap *s = qfs_snap_peek(p->q, p->m, &p->m->files[i], &err);
    bool ok = s && !s->err[0];
    qfs_snap_put(s);
    return ok;
}

static bool probe_layout(void *ctx, size_t i, const struct qf_view *v)
{
    struct probe *p = ctx;
    int err;
    uint64_t size;
    struct qfs_snap *s = qfs_snap_peek(p->q, p->m, &p->m->files[i], &err);
    bool ok = s && !qfs_snap_size(p->q, s, (size_t)(v - p->q->views), &size);
    qfs_snap_put(s);
    return ok;
}

bool qfs_view_available(struct qfs *q, size_t mi, size_t v)
{
    struct qfs_model *m = QFS_MODEL(q, mi);
    struct probe pr = {q, m};
    const struct qf_model_probe p = {&pr, probe_opened, probe_layout};
    return (q->view_mask & (1ull << v)) && qf_model_view_exists(&m->desc, &q->views[v], &p, NULL);
}

bool qfs_file_in_view(struct qfs *q, size_t mi, size_t fi, size_t v)
{
    struct qfs_model *m = QFS_MODEL(q, mi);
    struct probe pr = {q, m};
    const struct qf_model_probe p = {&pr, probe_opened, probe_layout};
    return qf_model_file_in_view(&m->desc, fi, &q->views[v], &p);
}
