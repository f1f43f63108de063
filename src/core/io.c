/*
 * io.c — waiting for descriptors: the portable half of the I/O layer, over
 * the backend of io.h (trio.lowlevel.wait_readable / wait_writable /
 * notify_closing).
 *
 * A table indexed by descriptor holds, for each, the task waiting to read,
 * the task waiting to write, whether the backend already watches it and in
 * which directions (reading from the first wait, writing from the first wait
 * to write: see io.h), and the edges that arrived while nobody waited. The
 * backend reports each edge once (edge-triggered). Two kinds of wait use it:
 *  - the socket layer's (ctrio__wait_fd with exact = false) comes only after
 *    a system call said EAGAIN, so an edge is sure to follow: it costs no
 *    system call, and a remembered edge returns at once (the caller retries
 *    its call anyway);
 *  - the public ctrio_wait_readable / ctrio_wait_writable promise Trio's
 *    level-triggered meaning (readable now, or block until it is), so they
 *    re-arm the registration (EPOLL_CTL_MOD, one system call), which makes the
 *    kernel report the current state again. This also notices a number that
 *    was closed without ctrio_notify_closing and now names another file.
 *
 * One more thing saves a system call per round trip on a busy connection:
 * after a short TCP read (the receive queue was empty), the next read need
 * not try recv first, which could only say EAGAIN: any data that came since
 * brought an edge, remembered here or still in epoll (`drained`). Two things
 * end that promise: an exact wait (it takes edges for itself), and a hang-up,
 * error or urgent data (`special`: a short read then stops at the FIN, the
 * error or the urgent mark, with data still queued whose edge is gone).
 *
 * Closing a socket whose descriptor never left the library costs no system
 * call of the backend either (ctrio__fd_closing): the kernel drops a
 * registration when the last descriptor of its file is closed. A file that
 * lives on keeps its registration, and its events keep the closed number
 * (epoll(7) calls this a trap): each registration is therefore tagged with a
 * generation of its number (`gen`), bumped whenever the number is forgotten
 * or found to name another file, and events of an older generation are
 * dropped and do not count as activity. The socket layer still removes the
 * registration first (ctrio_notify_closing) when the descriptor may have
 * another copy it knows of (its number given out, a dup, an adopted
 * descriptor): such a file can live on for long, and would wake the loop at
 * each of its edges. What remains is a child between fork and exec, whose
 * copies close at the exec.
 */
#include "internal.h"

#include <fcntl.h>
#include <math.h>
#include <unistd.h>

/* The backends, best first: the default takes the first that starts. */
static const ctrio__backend *const default_order[] = {&ctrio__backend_epoll};

static const ctrio__backend *backend_named(int id)
{
    switch (id) {
    case CTRIO_BACKEND_EPOLL:
        return &ctrio__backend_epoll;
    case CTRIO_BACKEND_IO_URING:
        return &ctrio__backend_io_uring;
    default:
        return NULL;
    }
}

/* The backend asked for: cfg's, else $CTRIO_BACKEND's, else 0 (the best
 * that starts). -EINVAL for a name or number we do not know. */
static int backend_wanted(int id)
{
    if (id != CTRIO_BACKEND_DEFAULT)
        return id == CTRIO_BACKEND_EPOLL || id == CTRIO_BACKEND_IO_URING
                   ? id
                   : ctrio__misuse("ctrio_config.backend: unknown backend %d", id);
    const char *env = getenv("CTRIO_BACKEND");
    if (!env || !*env)
        return CTRIO_BACKEND_DEFAULT;
    if (strcmp(env, "epoll") == 0)
        return CTRIO_BACKEND_EPOLL;
    if (strcmp(env, "io_uring") == 0)
        return CTRIO_BACKEND_IO_URING;
    return ctrio__misuse("CTRIO_BACKEND=%s: unknown backend (epoll or io_uring)", env);
}

int ctrio__io_setup(ctrio__run *r, int backend)
{
    r->fds = NULL;
    r->nfds = 0;
    atomic_init(&r->io.wake_sent, false);
    int id = backend_wanted(backend);
    if (id < 0)
        return -EINVAL;
    if (id != CTRIO_BACKEND_DEFAULT) {
        r->io.be = backend_named(id);
        int rc = r->io.be->init(&r->io);
        if (rc < 0)
            ctrio__log(CTRIO_LOG_ERROR, "the %s backend cannot start here: %s", r->io.be->name,
                       strerror(-rc));
        return rc;
    }
    int rc = -ENOSYS;
    for (size_t i = 0; i < sizeof default_order / sizeof default_order[0]; i++) {
        r->io.be = default_order[i];
        if ((rc = r->io.be->init(&r->io)) == 0)
            break; /* else the next one, silently (issue #11) */
    }
    return rc;
}

void ctrio__io_teardown(ctrio__run *r)
{
    r->io.be->fini(&r->io);
    free(r->fds);
    r->fds = NULL;
    r->nfds = 0;
}

const char *ctrio_current_backend(void)
{
    ctrio__run *r = ctrio__tls_run;
    return r ? r->io.be->name : NULL;
}

void ctrio__io_wake(ctrio__io *io)
{
    /* one wake-up between two polls that report one: the poll clears the
     * flag before it runs what was posted (on_ready), so a post that found
     * the flag set is seen by that run of the posts */
    if (!atomic_exchange_explicit(&io->wake_sent, true, memory_order_acq_rel))
        io->be->wake(io);
}

static ctrio__fdstate *fdstate(ctrio__run *r, int fd)
{
    if ((size_t)fd >= r->nfds) {
        size_t n = r->nfds ? r->nfds : 64;
        while (n <= (size_t)fd)
            n *= 2;
        ctrio__fdstate *a = realloc(r->fds, n * sizeof *a);
        if (!a)
            return NULL;
        memset(a + r->nfds, 0, (n - r->nfds) * sizeof *a);
        r->fds = a;
        r->nfds = n;
    }
    return &r->fds[fd];
}

static void wake_dir(ctrio__run *r, ctrio__fdstate *fs, unsigned dir, int value)
{
    ctrio__task **slot = dir == CTRIO__IO_READ ? &fs->reader : &fs->writer;
    ctrio__task *t = *slot;
    if (t) {
        *slot = NULL;
        if (dir == CTRIO__IO_READ)
            r->io.waiting_read--;
        else
            r->io.waiting_write--;
        ctrio__reschedule(t, value);
    } else if (value == 0) {
        fs->ready |= (uint8_t)dir;
    }
}

static bool on_ready(void *ctx, int fd, uint32_t tag, unsigned events)
{
    ctrio__run *r = ctx;
    if (fd == CTRIO__IO_WAKE_FD) {
        atomic_store_explicit(&r->io.wake_sent, false, memory_order_seq_cst);
        ctrio__token_drain(r);
        return true;
    }
    if (fd < 0 || (size_t)fd >= r->nfds || !r->fds[fd].registered || r->fds[fd].gen != tag)
        return false; /* a descriptor forgotten since, or a file closed under that number */
    ctrio__fdstate *fs = &r->fds[fd];
    if (events & CTRIO__IO_SPECIAL) {
        fs->special = 1;
        fs->drained = 0;
    }
    if (events & CTRIO__IO_READ) {
        if (fs->reader)
            fs->drained = 0; /* a waiter takes this edge, not the next recv */
        wake_dir(r, fs, CTRIO__IO_READ, 0);
    }
    if (events & CTRIO__IO_WRITE)
        wake_dir(r, fs, CTRIO__IO_WRITE, 0);
    return true;
}

int ctrio__io_poll_and_wake(ctrio__run *r, double timeout)
{
    /* the end of a finite wait, to wait out the rest after a poll that
     * found only events it dropped, or that a signal handler cut short: the
     * caller asked to sleep until something happens or the time is up (an
     * idle wait and the mock clock's autojump count on it). A blocking poll
     * only: its clock read costs nothing beside it. */
    double end = timeout > 0 && !isinf(timeout) ? ctrio__monotonic() + timeout : 0;
    for (;;) {
        int n = r->io.be->poll(&r->io, timeout, on_ready, r);
        if (n != 0 || timeout == 0)
            return n < 0 ? 0 : n;
        if (end > 0) {
            double now = ctrio__monotonic();
            if (now >= end)
                return 0;
            timeout = end - now;
        }
    }
}

static bool io_abort(ctrio__task *t)
{
    ctrio__run *r = t->run;
    intptr_t key = (intptr_t)t->wait_ctx;
    int fd = (int)(key >> 2);
    unsigned dir = (unsigned)(key & 3);
    ctrio__fdstate *fs = &r->fds[fd];
    if (dir == CTRIO__IO_READ) {
        fs->reader = NULL;
        r->io.waiting_read--;
    } else {
        fs->writer = NULL;
        r->io.waiting_write--;
    }
    return true;
}

/* A full checkpoint that ends with `rc` unless the task is cancelled. */
static int checkpoint_then(int rc)
{
    int cp = ctrio_checkpoint();
    return cp < 0 ? cp : rc;
}

int ctrio__wait_fd(int fd, unsigned dir, bool exact)
{
    ctrio__task *t = ctrio__need_task(dir == CTRIO__IO_READ ? "ctrio_wait_readable"
                                                            : "ctrio_wait_writable");
    if (!t)
        return -EPERM;
    ctrio__run *r = t->run;
    if (fd < 0) /* fails cleanly, leaving nothing registered (Trio's wait_readable(-1) does not) */
        return checkpoint_then(-EBADF);
    if (r->io.be->wait)
        return r->io.be->wait(&r->io, fd, dir, exact);
    /* A number past the table is checked before the table grows to it: a
     * stray one (INT_MAX) would otherwise cost 24 bytes for every number
     * below it, for the rest of the run. Valid descriptors are below
     * RLIMIT_NOFILE, so the table stays that small; the check costs one
     * fcntl per growth, never on the socket layer's steady path. */
    if ((size_t)fd >= r->nfds && CTRIO__SYS(fcntl(fd, F_GETFD)) < 0)
        return checkpoint_then(-EBADF);
    ctrio__fdstate *fs = fdstate(r, fd);
    if (!fs)
        return checkpoint_then(-ENOMEM);
    ctrio__task **slot = dir == CTRIO__IO_READ ? &fs->reader : &fs->writer;
    if (*slot)
        return -EBUSY; /* Trio: BusyResourceError, raised before any checkpoint */
    if (!fs->registered) {
        /* reading is always watched; writing only once a task waits for it
         * (io.h: a UDP send would otherwise wake the poll after every
         * datagram) */
        unsigned dirs = CTRIO__IO_READ | dir;
        int rc = r->io.be->add(&r->io, fd, fs->gen, dirs);
        if (rc < 0)
            return checkpoint_then(rc);
        fs->registered = 1;
        fs->watched = (uint8_t)dirs;
        fs->ready = 0;
    } else if (exact || CTRIO__UNLIKELY(r->fault_eagain) || !(fs->watched & dir)) {
        r->fault_eagain = false; /* see fault.c */
        fs->drained = 0; /* this wait takes edges the socket layer counts on */
        /* The public waits are level-triggered, as Trio's, and must survive a
         * descriptor closed without notify_closing whose number came back.
         * Re-arm the registration (EPOLL_CTL_MOD, or ADD when the number now
         * names another file): the kernel then reports the current readiness
         * again, so data or an EOF left over from an earlier, partly consumed
         * edge still wakes this wait, and no remembered edge is needed.
         * The same re-arm starts watching a direction not watched before
         * (the first write that had to wait): its current state is reported,
         * so the edge that the EAGAIN promised is not lost. */
        fs->ready &= (uint8_t)~dir;
        int rc = r->io.be->rearm(&r->io, fd, fs->gen, fs->gen + 1, fs->watched | dir);
        if (rc < 0)
            return checkpoint_then(rc);
        if (rc == 1) /* another file: the old one, if a dup keeps it, may still report */
            fs->gen++;
        fs->watched |= (uint8_t)dir;
    }
    if (fs->ready & dir) { /* the socket layer: it retries its call anyway */
        fs->ready &= (uint8_t)~dir;
        return checkpoint_then(0);
    }
    *slot = t;
    if (dir == CTRIO__IO_READ)
        r->io.waiting_read++;
    else
        r->io.waiting_write++;
    return ctrio__wait(io_abort, (void *)(((intptr_t)fd << 2) | (intptr_t)dir));
}

/*
 * Trio's _nonblocking_helper, for every blocking call of the socket layer:
 *   1. if the task is already cancelled, return -ECANCELED without acting;
 *   2. try the system call on the non-blocking descriptor;
 *   3. if it completed (or failed for real), yield once without a cancel
 *      point (the result wins over a cancel that arrives meanwhile) and
 *      return;
 *   4. on EAGAIN, wait for readiness (a full checkpoint) and retry, with no
 *      cancel check between the wake-up and the retry, so that readiness
 *      that was delivered is never lost.
 * A call that can complete at once thus costs one system call and one
 * yield: no epoll_ctl (the descriptor is registered on its first wait and
 * stays registered), no allocation. A completion backend may take the whole
 * operation instead (io.h: op); *fdp is re-read after every wait, since a
 * close in another task sets it to -1.
 */
ssize_t ctrio__fd_io(const int *fdp, ctrio__op *op)
{
    ctrio__run *r = ctrio__tls_run;
    int fd = *fdp;
    ssize_t res;
    if (r && r->io.be->op && r->current && fd >= 0) {
        /* the backend's op is a whole checkpoint: one cancel point, one
         * schedule point, as steps 1-3 */
        res = r->io.be->op(&r->io, fd, op);
        if (res == -EAGAIN) /* it would block after all (MSG_DONTWAIT, an injected EAGAIN) */
            goto wait;
        if (res != CTRIO__OP_DECLINED)
            return res;
    }
    int rc = ctrio_checkpoint_if_cancelled();
    if (rc < 0)
        return rc;
    if ((fd = *fdp) < 0) {
        ctrio_cancel_shielded_checkpoint();
        return -EBADF;
    }
    if (op->dir == CTRIO__IO_READ && ctrio__fd_take_drained(fd)) {
        /* The last read emptied the queue and nothing took an edge since:
         * data that came meanwhile brought one (see the top), so the call
         * would only say EAGAIN: go straight to the wait. */
    } else {
        res = op->sys(fd, op);
        if (res != -EAGAIN) {
            ctrio_cancel_shielded_checkpoint();
            return res;
        }
    }
wait:
    for (;;) {
        int w = ctrio__wait_fd(fd, op->dir, false);
        if (w < 0)
            return w;
        if ((fd = *fdp) < 0)
            return -EBADF;
        res = op->sys(fd, op);
        if (res != -EAGAIN)
            return res;
    }
}

void ctrio__fd_set_drained(int fd)
{
    ctrio__run *r = ctrio__tls_run;
    if (r && fd >= 0 && (size_t)fd < r->nfds && r->fds[fd].registered && !r->fds[fd].special)
        r->fds[fd].drained = 1;
}

void ctrio__fd_clear_special(int fd)
{
    ctrio__run *r = ctrio__tls_run;
    if (r && fd >= 0 && (size_t)fd < r->nfds)
        r->fds[fd].special = 0;
}

bool ctrio__fd_take_drained(int fd)
{
    ctrio__run *r = ctrio__tls_run;
    if (!r || fd < 0 || (size_t)fd >= r->nfds || !r->fds[fd].drained)
        return false;
    r->fds[fd].drained = 0;
    return true;
}

void ctrio__fd_adopt(int fd)
{
    ctrio__run *r = ctrio__tls_run;
    if (!r || fd < 0 || (size_t)fd >= r->nfds || !r->fds[fd].registered)
        return;
    /* The number was closed without notify_closing: its registration (if
     * the file is gone) went with it, and its edges are another file's. */
    ctrio__fdstate *fs = &r->fds[fd];
    fs->ready = fs->drained = fs->special = 0;
    fs->gen++; /* the earlier file, if a dup keeps it, may still report */
    if (r->io.be->rearm(&r->io, fd, fs->gen, fs->gen, fs->watched) < 0)
        fs->registered = 0;
}

int ctrio_wait_readable(int fd)
{
    return ctrio__wait_fd(fd, CTRIO__IO_READ, true);
}

int ctrio_wait_writable(int fd)
{
    return ctrio__wait_fd(fd, CTRIO__IO_WRITE, true);
}

/* Wake the waiters on fd with -EBADF and forget it; the next registration
 * of the number gets a new generation, so events of this one are dropped. */
static void forget_fd(int fd, bool unregister)
{
    ctrio__run *r = ctrio__tls_run;
    if (!r || fd < 0)
        return;
    if (r->io.be->closing) /* its operations in flight, which the table does not know */
        r->io.be->closing(&r->io, fd);
    if ((size_t)fd >= r->nfds)
        return;
    ctrio__fdstate *fs = &r->fds[fd];
    wake_dir(r, fs, CTRIO__IO_READ, -EBADF);
    wake_dir(r, fs, CTRIO__IO_WRITE, -EBADF);
    if (fs->registered && unregister)
        r->io.be->del(&r->io, fd);
    uint32_t gen = fs->gen + 1;
    memset(fs, 0, sizeof *fs);
    fs->gen = gen;
}

void ctrio_notify_closing(int fd)
{
    forget_fd(fd, true);
}

void ctrio__fd_closing(int fd)
{
    forget_fd(fd, false); /* close() ends the registration, see the top */
}

ctrio_io_statistics ctrio_current_io_statistics(void)
{
    ctrio_io_statistics s = {0, 0};
    ctrio__run *r = ctrio__tls_run;
    if (r) {
        s.tasks_waiting_read = r->io.waiting_read;
        s.tasks_waiting_write = r->io.waiting_write;
    }
    return s;
}
