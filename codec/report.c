/* report.c — the JSON documents quantfs writes for its users: the daemon's
 * statistics and a model's check report (codec.h "reports"). codec owns
 * every JSON document quantfs reads or writes, so the daemon needs no JSON
 * library of its own. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "codec.h"

/* --------------------------------------------------------- documents */

struct qf_jdoc {
    json_t *root;
    bool oom;
};

struct qf_jdoc *qf_jdoc_new(void)
{
    struct qf_jdoc *d = calloc(1, sizeof *d);
    if (d && !(d->root = json_object())) {
        free(d);
        d = NULL;
    }
    return d;
}

/* the object that holds path's last component (created along the way);
 * *leaf: that component */
static json_t *parent(struct qf_jdoc *d, const char *path, const char **leaf)
{
    json_t *o = d->root;
    const char *p = path, *dot;
    while ((dot = strchr(p, '.'))) {
        char k[64];
        size_t n = (size_t)(dot - p) < sizeof k - 1 ? (size_t)(dot - p) : sizeof k - 1;
        memcpy(k, p, n);
        k[n] = 0;
        json_t *c = json_object_get(o, k);
        if (!json_is_object(c)) {
            c = json_object();
            if (!c || json_object_set_new(o, k, c))
                return NULL;
        }
        o = c;
        p = dot + 1;
    }
    *leaf = p;
    return o;
}

static void set(struct qf_jdoc *d, const char *path, json_t *v)
{
    const char *leaf;
    json_t *o = d && v ? parent(d, path, &leaf) : NULL;
    if (!o || json_object_set_new(o, leaf, v)) {
        if (d)
            d->oom = true;
        if (!o)
            json_decref(v);
    }
}

void qf_jdoc_int(struct qf_jdoc *d, const char *path, long long v) { set(d, path, json_integer(v)); }
void qf_jdoc_num(struct qf_jdoc *d, const char *path, double v) { set(d, path, json_real(v)); }
void qf_jdoc_bool(struct qf_jdoc *d, const char *path, bool v) { set(d, path, json_boolean(v)); }
void qf_jdoc_str(struct qf_jdoc *d, const char *path, const char *s) { set(d, path, s ? json_string(s) : json_null()); }

char *qf_jdoc_dump(struct qf_jdoc *d)
{
    if (!d)
        return NULL;
    char *s = d->oom ? NULL : json_dumps(d->root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(d->root);
    free(d);
    return s;
}

/* ------------------------------------------------------ check report */

struct qf_check_report {
    struct qf_jdoc *doc;
    json_t *views, *failed, *last;
};

struct qf_check_report *qf_check_report_new(const char *model)
{
    struct qf_check_report *r = calloc(1, sizeof *r);
    if (!r || !(r->doc = qf_jdoc_new()) || !(r->views = json_array()) || !(r->failed = json_array())) {
        if (r) {
            qf_jdoc_dump(r->doc);
            json_decref(r->views);
            free(r);
        }
        return NULL;
    }
    qf_jdoc_str(r->doc, "model", model);
    qf_jdoc_str(r->doc, "status", "done");
    return r;
}

int qf_check_report_line(struct qf_check_report *r, const char *line, size_t len, const char **view,
                         const char **reason)
{
    *view = *reason = NULL;
    /* the checker's own output, bounded like any other document */
    if (len > QF_JSON_MAX_BYTES || qf_json_check(line, len, "check line", QF_JSON_MAX_VALUES, QF_JSON_MAX_CONTAINERS,
                                                 NULL, 0))
        return -EINVAL;
    json_t *v = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(v)) {
        json_decref(v);
        return -EINVAL;
    }
    if (json_array_append_new(r->views, v))
        return -ENOMEM;
    if (json_is_true(json_object_get(v, "pass")))
        return 0;
    json_array_append(r->failed, json_object_get(v, "view"));
    *view = json_string_value(json_object_get(v, "view"));
    *reason = json_string_value(json_object_get(v, "reason"));
    return 1;
}

size_t qf_check_report_views(const struct qf_check_report *r) { return json_array_size(r->views); }

char *qf_check_report_finish(struct qf_check_report *r, int exit_status, const char *error)
{
    if (!r)
        return NULL;
    if (exit_status >= 0) {
        qf_jdoc_int(r->doc, "exit_status", exit_status);
        qf_jdoc_bool(r->doc, "pass", exit_status == 0);
        set(r->doc, "views", r->views);
        set(r->doc, "failed", r->failed);
    } else {
        json_decref(r->views);
        json_decref(r->failed);
    }
    if (exit_status < 0 || exit_status >= 2)
        qf_jdoc_str(r->doc, "status", "error");
    if (error)
        qf_jdoc_str(r->doc, "error", error);
    char *s = qf_jdoc_dump(r->doc);
    free(r);
    return s;
}

char *qf_check_report_status(const char *model, const char *status)
{
    struct qf_jdoc *d = qf_jdoc_new();
    qf_jdoc_str(d, "model", model);
    qf_jdoc_str(d, "status", status);
    return qf_jdoc_dump(d);
}

char *qf_check_report_chart(const struct qf_check_report *r, const char *model)
{
    size_t n = json_array_size(r->views);
    struct qf_chart_point *p = calloc(n + 1, sizeof *p);
    if (!p)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(r->views, i), *kl = json_object_get(v, "kl_mean");
        const char *view = json_string_value(json_object_get(v, "view"));
        p[i] = (struct qf_chart_point){.view = view ? view : "?",
                                       .bpw = json_number_value(json_object_get(v, "bits_per_weight")),
                                       .kl = json_number_value(kl),
                                       .top1 = json_number_value(json_object_get(v, "top1")),
                                       .has_kl = json_is_number(kl),
                                       .pass = json_is_true(json_object_get(v, "pass")),
                                       .why = json_string_value(json_object_get(v, "reason"))};
        if (p[i].has_kl)
            p[i].why = NULL;
    }
    char *s = qf_check_chart_svg(model, p, n);
    free(p);
    return s;
}
