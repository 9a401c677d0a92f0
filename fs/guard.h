/* guard.h — touching mapped file pages safely.
 *
 * A file mapped with mmap(2) and then truncated loses the pages past its
 * new end: touching one raises SIGBUS, which would kill the daemon over a
 * source an admin rewrote (cp truncates in place). qfs_guard(fn, arg) runs
 * fn and returns its result, or -EIO if fn touched such a page: the
 * handler leaves fn where it faulted (siglongjmp). So fn must be pure
 * computation: no lock taken, nothing allocated, no state half-written
 * that anyone else reads (codec's conversions given a scratch buffer, and
 * hashing, are). Guards nest; each thread has its own.
 *
 * qfs_guard_install sets the handler: once, before any thread starts
 * (0 or -errno). A SIGBUS outside any guard goes to the disposition the
 * handler replaced (by default: the process dies of it, as without).
 *
 * The handler's state (the guard of each thread, the replaced disposition)
 * is the one mutable state outside struct qfs: a signal handler reaches
 * nothing else. It depends on nothing else in quantfs, so it is tested
 * alone (tests/test_guard.c). */
#ifndef QFS_GUARD_H
#define QFS_GUARD_H

int qfs_guard_install(void);
int qfs_guard(int (*fn)(void *), void *arg);

#endif
