/* log.c — the daemon's messages: one line each, to the terminal while the
 * mount starts, then to syslog (or stderr with -f), and always into a ring
 * of the last QFS_LOG_LINES lines that MOUNT/.quantfs/log shows, so what
 * the daemon refused or hid can be read back without access to the
 * journal (a container, a plain terminal). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "quantfs.h"

static const char *level(int prio)
{
    return prio <= LOG_ERR ? "error" : prio == LOG_WARNING ? "warning" : prio == LOG_NOTICE ? "notice" : "info";
}

void qfs_log(struct qfs *q, int prio, const char *fmt, ...)
{
    /* one whole line per message (one write, so concurrent messages do
     * not interleave), control characters escaped: names in messages come
     * from source files and must not forge log lines or drive a terminal */
    char msg[1024], out[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t n = 0;
    for (const unsigned char *c = (const unsigned char *)msg; *c && n + 6 < sizeof out; c++) {
        if (*c < 0x20 || *c == 0x7f)
            n += (size_t)snprintf(out + n, sizeof out - n, "\\x%02x", *c);
        else
            out[n++] = (char)*c;
    }
    out[n] = 0;

    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char *line = NULL;
    if (asprintf(&line, "%s %s: %s\n", stamp, level(prio), out) < 0)
        line = NULL;
    pthread_mutex_lock(&q->log_mu);
    if (line) {
        free(q->log_ring[q->log_next]);
        q->log_ring[q->log_next] = line;
        q->log_next = (q->log_next + 1) % QFS_LOG_LINES;
    } else {
        q->log_dropped++;
    }
    bool terminal = q->foreground || q->log_terminal;
    pthread_mutex_unlock(&q->log_mu);

    if (!q->foreground)
        syslog(prio, "%s", out);
    if (terminal) {
        char t[4200];
        int k = snprintf(t, sizeof t, "quantfs: %s%s%s\n", prio <= LOG_WARNING ? level(prio) : "",
                         prio <= LOG_WARNING ? ": " : "", out);
        if (k > 0 && write(STDERR_FILENO, t, (size_t)k < sizeof t ? (size_t)k : sizeof t - 1) < 0) {
            /* nowhere left to say it */
        }
    }
}

void qfs_log_detached(struct qfs *q)
{
    pthread_mutex_lock(&q->log_mu);
    q->log_terminal = false;
    pthread_mutex_unlock(&q->log_mu);
}

char *qfs_log_text(struct qfs *q)
{
    pthread_mutex_lock(&q->log_mu);
    size_t len = 0;
    for (size_t i = 0; i < QFS_LOG_LINES; i++)
        if (q->log_ring[i])
            len += strlen(q->log_ring[i]);
    char *s = malloc(len + 1), *p = s;
    if (s) {
        for (size_t k = 0; k < QFS_LOG_LINES; k++) { /* oldest first */
            const char *l = q->log_ring[(q->log_next + k) % QFS_LOG_LINES];
            if (l) {
                size_t n = strlen(l);
                memcpy(p, l, n);
                p += n;
            }
        }
        *p = 0;
    }
    pthread_mutex_unlock(&q->log_mu);
    return s;
}

void qfs_log_free(struct qfs *q)
{
    for (size_t i = 0; i < QFS_LOG_LINES; i++) {
        free(q->log_ring[i]);
        q->log_ring[i] = NULL;
    }
}
