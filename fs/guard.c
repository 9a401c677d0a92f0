/* guard.c — the SIGBUS guard for mapped reads (guard.h). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>

#include "guard.h"

/* The guard in effect on this thread, and the disposition SIGBUS had
 * before qfs_guard_install: the one state outside struct qfs, since a
 * signal handler reaches nothing else. The second is written once, before
 * any thread starts. */
static _Thread_local sigjmp_buf *bus_jmp;
static struct sigaction bus_prev;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (bus_jmp && si->si_code > 0) /* a guarded access to a mapped page the file lost */
        siglongjmp(*bus_jmp, 1);
    /* not ours: under the previous disposition, the access faults again
     * (or a sent signal is sent again) */
    sigaction(SIGBUS, &bus_prev, NULL);
    if (si->si_code <= 0)
        raise(sig);
}

int qfs_guard_install(void)
{
    /* SA_NODEFER: left by siglongjmp, the handler leaves SIGBUS unblocked,
     * so sigsetjmp need not save the mask (a system call per guard) */
    struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER}, cur;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, NULL, &cur))
        return -errno;
    if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_sigbus)
        return 0; /* installed already: bus_prev is not this handler */
    return sigaction(SIGBUS, &sa, &bus_prev) ? -errno : 0;
}

int qfs_guard(int (*fn)(void *), void *arg)
{
    sigjmp_buf jb, *outer = bus_jmp;
    volatile int rc = -EIO; /* what a SIGBUS in fn leaves */
    if (!sigsetjmp(jb, 0)) {
        bus_jmp = &jb;
        rc = fn(arg);
    }
    bus_jmp = outer;
    return rc;
}
