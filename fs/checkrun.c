/* checkrun.c — -o check: run quantfs-check on each model in the background
 * on first access and publish the result as MOUNT/MODEL/.check.json.
 *
 * The check runs as a separate process reading the mount, exactly as any
 * client would (mmap of view files through the kernel), so it also proves
 * the FUSE path. Its JSON lines are collected into one document; failed
 * views are logged as warnings and listed under "failed". */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "quantfs.h"

extern char **environ;

/* quantfs-check beside the daemon (installed), in the build tree, or on PATH. */
static void find_checker(char *buf, size_t len)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        char *sl = strrchr(self, '/');
        if (sl) {
            *sl = 0;
            snprintf(buf, len, "%s/quantfs-check", self);
            if (!access(buf, X_OK))
                return;
            snprintf(buf, len, "%s/../check/quantfs-check", self);
            if (!access(buf, X_OK))
                return;
        }
    }
    snprintf(buf, len, "quantfs-check");
}

static void set_result(struct qfs *q, struct qfs_model *m, char *doc, char *svg)
{
    pthread_mutex_lock(&q->check_mu);
    free(m->check_json);
    free(m->check_svg);
    m->check_json = doc;
    m->check_svg = svg;
    m->check_state = 2;
    pthread_mutex_unlock(&q->check_mu);
}

static void run_check(struct qfs *q, struct qfs_model *m);

/* A checker worker: at most check_jobs of them, started as checks are
 * queued, each running one model's check at a time (its forward passes
 * take CPU and memory of their own); threads do not grow with the models
 * looked up. */
static void *worker(void *arg)
{
    struct qfs *q = arg;
    pthread_mutex_lock(&q->check_mu);
    for (;;) {
        while (q->check_qhead == q->check_qlen && !q->check_stopping) {
            q->check_idle++;
            pthread_cond_wait(&q->check_cv, &q->check_mu);
            q->check_idle--;
        }
        if (q->check_stopping)
            break;
        size_t mi = q->check_queue[q->check_qhead++];
        if (q->check_qhead == q->check_qlen)
            q->check_qhead = q->check_qlen = 0;
        pthread_mutex_unlock(&q->check_mu);
        run_check(q, QFS_MODEL(q, mi));
        pthread_mutex_lock(&q->check_mu);
    }
    pthread_mutex_unlock(&q->check_mu);
    return NULL;
}

static void run_check(struct qfs *q, struct qfs_model *m)
{
    char bin[PATH_MAX + 32], target[PATH_MAX * 2];
    find_checker(bin, sizeof bin);
    snprintf(target, sizeof target, "%s/%s", q->mountpoint, m->name);
    char *argv[] = {bin, "--json", "-q", target, NULL};
    int pfd[2];
    struct qf_check_report *r = qf_check_report_new(m->name);
    if (!r || pipe2(pfd, O_CLOEXEC)) {
        set_result(q, m, qf_check_report_finish(r, -1, NULL), NULL);
        return;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    pid_t pid;
    int rc = posix_spawnp(&pid, bin, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pfd[1]);
    if (rc) {
        close(pfd[0]);
        qfs_log(q, LOG_ERR, "check of model '%s': cannot run %s: %s", m->name, bin, strerror(rc));
        set_result(q, m, qf_check_report_finish(r, -1, strerror(rc)), NULL);
        return;
    }
    pthread_mutex_lock(&q->check_mu);
    m->check_pid = pid;
    if (q->check_stopping) /* qfs_check_stop ran while it started */
        kill(pid, SIGKILL);
    pthread_mutex_unlock(&q->check_mu);
    FILE *f = fdopen(pfd[0], "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while (f && (n = getline(&line, &cap, f)) > 0) {
        const char *view, *reason;
        if (qf_check_report_line(r, line, (size_t)n, &view, &reason) == 1)
            qfs_log(q, LOG_WARNING, "check of model '%s': view %s FAILED (%s)", m->name, view ? view : "?",
                    reason ? reason : "?");
    }
    free(line);
    if (f)
        fclose(f);
    int st = 0;
    waitpid(pid, &st, 0);
    pthread_mutex_lock(&q->check_mu);
    m->check_pid = 0;
    pthread_mutex_unlock(&q->check_mu);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (code == 0)
        qfs_log(q, LOG_INFO, "check of model '%s': all %zu view(s) pass", m->name, qf_check_report_views(r));
    else if (code >= 2)
        qfs_log(q, LOG_ERR, "check of model '%s': quantfs-check exited with %d", m->name, code);
    char *svg = qf_check_report_chart(r, m->name); /* before finish frees r */
    set_result(q, m, qf_check_report_finish(r, code, NULL), svg);
}

void qfs_check_start(struct qfs *q, size_t mi)
{
    if (!q->check)
        return;
    struct qfs_model *m = QFS_MODEL(q, mi);
    pthread_mutex_lock(&q->check_mu);
    if (m->check_state != 0 || q->check_stopping) {
        pthread_mutex_unlock(&q->check_mu);
        return;
    }
    if (q->check_qlen == q->check_qcap) {
        size_t nc = q->check_qcap ? q->check_qcap * 2 : 64;
        size_t *nq = realloc(q->check_queue, nc * sizeof *nq);
        if (!nq) {
            pthread_mutex_unlock(&q->check_mu);
            return; /* not started: the next lookup tries again */
        }
        q->check_queue = nq;
        q->check_qcap = nc;
    }
    q->check_queue[q->check_qlen++] = mi;
    m->check_state = 1;
    /* a worker more while every one is busy, up to check_jobs */
    if (!q->check_idle && q->check_nworkers < q->check_jobs && q->check_nworkers < QFS_MAX_CHECK_JOBS &&
        !pthread_create(&q->check_workers[q->check_nworkers], NULL, worker, q))
        pthread_setname_np(q->check_workers[q->check_nworkers++], "qfs-check");
    if (!q->check_nworkers) { /* no thread to run it: not started after all */
        q->check_qlen--;
        m->check_state = 0;
    }
    pthread_cond_signal(&q->check_cv);
    pthread_mutex_unlock(&q->check_mu);
}

char *qfs_check_text(struct qfs *q, size_t mi)
{
    struct qfs_model *m = QFS_MODEL(q, mi);
    pthread_mutex_lock(&q->check_mu);
    char *s = m->check_json ? strdup(m->check_json) : NULL;
    pthread_mutex_unlock(&q->check_mu);
    if (!s)
        s = qf_check_report_status(m->name, "running");
    size_t n = s ? strlen(s) : 0;
    char *o = s ? realloc(s, n + 2) : NULL;
    if (o)
        o[n] = '\n', o[n + 1] = 0;
    return o ? o : s;
}

char *qfs_check_chart(struct qfs *q, size_t mi)
{
    struct qfs_model *m = QFS_MODEL(q, mi);
    pthread_mutex_lock(&q->check_mu);
    char *s = m->check_svg ? strdup(m->check_svg) : NULL;
    pthread_mutex_unlock(&q->check_mu);
    return s ? s : qf_check_chart_svg(m->name, NULL, 0); /* running: an empty chart that says so */
}

/* Before the unmount. SIGKILL marks each checker's process group as
 * exiting the moment kill() returns, so when the unmount then aborts the
 * requests a checker still waits on (its reads through mmap, the FLUSH of
 * its close at exit), it is already dying and takes no SIGBUS (under ASan,
 * a report); unmounting first killed checkers by SIGBUS. Not waited for
 * here: a dying checker's FLUSH waits, uninterruptibly, for an answer that
 * only the unmount gives. A check only reads: nothing to clean up. */
void qfs_check_kill(struct qfs *q)
{
    pthread_mutex_lock(&q->check_mu);
    q->check_stopping = true;
    pthread_cond_broadcast(&q->check_cv);
    for (size_t i = 0; i < q->n_models; i++)
        if (QFS_MODEL(q, i)->check_pid > 0)
            kill(QFS_MODEL(q, i)->check_pid, SIGKILL);
    pthread_mutex_unlock(&q->check_mu);
}

/* After the unmount: joins the checker threads (each reaps its child). */
void qfs_check_stop(struct qfs *q)
{
    qfs_check_kill(q);
    pthread_mutex_lock(&q->check_mu);
    unsigned n = q->check_nworkers;
    q->check_nworkers = 0;
    pthread_mutex_unlock(&q->check_mu);
    for (unsigned i = 0; i < n; i++)
        pthread_join(q->check_workers[i], NULL);
    free(q->check_queue);
    q->check_queue = NULL;
    q->check_qhead = q->check_qlen = q->check_qcap = 0;
}
