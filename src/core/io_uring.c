/*
 * io_uring.c — the completion backend of io.h (issue #11).
 *
 * Where the epoll backend tells the portable layer when a descriptor is
 * ready, this one performs the socket operations themselves: a receive,
 * send, sendmsg, recvmsg or accept becomes a submission queue entry, and the
 * task blocks until its completion arrives. The entries that the tasks of a
 * batch queue are submitted together, with the wait, in one io_uring_enter
 * per scheduler turn (poll). Waits for readiness that remain (connect,
 * sendfile, ctrio_wait_readable on a descriptor the user owns, recvmmsg)
 * are single-shot polls, which report the descriptor's state when they are
 * armed: the level-triggered meaning that Trio's wait_readable promises.
 * Nothing stays registered between two waits, so a descriptor closed behind
 * our back is never kept open by a poll (a request holds a reference to its
 * file until it completes).
 *
 * Trio's semantics, and how they hold here:
 *  - A request points into the blocked task's memory (its buffer, its
 *    msghdr, the request itself on its stack), so a task never resumes
 *    before its request's completion: a cancellation asks the kernel to
 *    cancel (IORING_OP_ASYNC_CANCEL) and keeps waiting (the abort function
 *    returns false, Trio's Abort.FAILED), as Trio's Windows backend does
 *    with CancelIoEx.
 *  - The completion decides: -ECANCELED if the cancel won; otherwise the
 *    operation's own result, so a receive whose data came first returns it
 *    (no byte lost) and a send says how much went, and the cancellation
 *    stays pending for the next checkpoint.
 *  - One task at a time per direction and descriptor (-EBUSY otherwise,
 *    before any checkpoint), as the epoll backend's waits.
 *  - closing(fd) cancels the descriptor's requests and makes them end with
 *    -EBADF; it submits at once, so that the file is not kept open by them
 *    once the caller has closed its descriptor.
 *  - A request that completes with -EAGAIN (a flag such as MSG_DONTWAIT, or
 *    a socket the kernel would not arm) goes to the readiness path: wait,
 *    then try the call, as on epoll.
 * Wake-ups from other threads come through an eventfd under a multishot
 * poll; poll() reads it and reports CTRIO__IO_WAKE_FD.
 *
 * The ring is made with IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN when the
 * kernel allows (completion work then runs only inside our own
 * io_uring_enter, never as an interrupt of the run's thread), through the
 * raw system calls (uring.c), so that libctrio needs no liburing and starts
 * on epoll where io_uring is refused.
 */
#include "internal.h"
#include "uring.h"

#include <linux/io_uring.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

/* One operation or poll in flight: on the blocked task's stack. */
typedef struct ur_req {
    ctrio__task *task;
    int fd;
    unsigned dir;     /* the slot it holds */
    bool poll;        /* a readiness poll, not an operation */
    bool cancelling;  /* an ASYNC_CANCEL was queued for it */
    bool closed;      /* closing(fd): it ends with -EBADF */
    ctrio__op *op;
    struct msghdr mh; /* recvfrom / sendto with an address */
    struct iovec iov;
} ur_req;

typedef struct ur_slot {
    ur_req *reader, *writer;
} ur_slot;

typedef struct ur_state {
    ctrio__uring ring;
    int wakefd;
    bool wake_armed; /* the multishot poll on wakefd is in place */
    ur_slot *slots;  /* by descriptor */
    size_t nslots;
    unsigned queued; /* entries queued since the last submission */
} ur_state;

/* user_data of entries whose completions carry nothing for us */
#define UR_IGNORE 0ull
#define UR_WAKE 1ull

static inline ur_state *st(ctrio__io *io)
{
    return io->state;
}

/* A zeroed entry; when the queue is full, what is queued is submitted first. */
static struct io_uring_sqe *get_sqe(ur_state *s)
{
    struct io_uring_sqe *sqe = ctrio__uring_sqe(&s->ring);
    if (!sqe) {
        (void)ctrio__uring_submit(&s->ring);
        sqe = ctrio__uring_sqe(&s->ring);
    }
    if (sqe)
        s->queued++;
    return sqe;
}

static int arm_wake(ur_state *s)
{
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe)
        return -EBUSY;
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = s->wakefd;
    sqe->poll32_events = POLLIN;
    sqe->len = IORING_POLL_ADD_MULTI;
    sqe->user_data = UR_WAKE;
    s->wake_armed = true;
    return 0;
}

static const uint8_t needed_ops[] = {
    IORING_OP_RECV,   IORING_OP_SEND,     IORING_OP_RECVMSG,      IORING_OP_SENDMSG,
    IORING_OP_ACCEPT, IORING_OP_POLL_ADD, IORING_OP_ASYNC_CANCEL,
};

static int ur_init(ctrio__io *io)
{
    ur_state *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    int rc = ctrio__uring_init(&s->ring, 1024, 0);
    if (rc < 0)
        goto fail_free;
    for (size_t i = 0; i < sizeof needed_ops; i++) {
        if (!ctrio__uring_has_op(&s->ring, needed_ops[i])) {
            rc = -ENOSYS; /* a kernel older than 5.19 */
            goto fail_ring;
        }
    }
    s->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->wakefd < 0) {
        rc = -errno;
        goto fail_ring;
    }
    if ((rc = arm_wake(s)) < 0)
        goto fail_wake;
    io->state = s;
    return 0;
fail_wake:
    close(s->wakefd);
fail_ring:
    ctrio__uring_fini(&s->ring);
fail_free:
    free(s);
    return rc;
}

static void ur_fini(ctrio__io *io)
{
    ur_state *s = st(io);
    /* every task has ended, so no request of ours is in flight but the
     * wake poll, which holds no memory of ours */
    ctrio__uring_fini(&s->ring);
    close(s->wakefd);
    free(s->slots);
    free(s);
    io->state = NULL;
}

static ur_slot *slot_for(ur_state *s, int fd)
{
    if ((size_t)fd >= s->nslots) {
        size_t n = s->nslots ? s->nslots : 64;
        while (n <= (size_t)fd)
            n *= 2;
        ur_slot *a = realloc(s->slots, n * sizeof *a);
        if (!a)
            return NULL;
        memset(a + s->nslots, 0, (n - s->nslots) * sizeof *a);
        s->slots = a;
        s->nslots = n;
    }
    return &s->slots[fd];
}

static inline ur_req **slot_dir(ur_slot *sl, unsigned dir)
{
    return dir == CTRIO__IO_READ ? &sl->reader : &sl->writer;
}

static void queue_cancel(ur_state *s, ur_req *q)
{
    if (q->cancelling)
        return;
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe)
        return; /* the queue cannot even be flushed: the completion still comes */
    q->cancelling = true;
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->fd = -1;
    sqe->addr = (uint64_t)(uintptr_t)q;
    sqe->user_data = UR_IGNORE;
}

/* Trio's Abort.FAILED: ask the kernel to cancel, and keep waiting for the
 * completion, which says whether the cancel won. */
static bool ur_abort(ctrio__task *t)
{
    ur_req *q = t->wait_ctx;
    queue_cancel(st(&t->run->io), q);
    return false;
}

/* Block the current task on q, whose entry is queued. */
static int wait_req(ctrio__io *io, ur_req *q, ur_slot *sl)
{
    *slot_dir(sl, q->dir) = q;
    if (q->dir == CTRIO__IO_READ)
        io->waiting_read++;
    else
        io->waiting_write++;
    return ctrio__wait(ur_abort, q);
}

/* The completion of q: free its slot and wake its task. */
static void complete(ctrio__io *io, ur_req *q, int res)
{
    ur_state *s = st(io);
    if (q->closed) {
        res = -EBADF; /* closing() took it off the books already */
    } else {
        *slot_dir(&s->slots[q->fd], q->dir) = NULL;
        if (q->dir == CTRIO__IO_READ)
            io->waiting_read--;
        else
            io->waiting_write--;
        /* a poll consumes nothing, so a cancellation wins over readiness:
         * a wait in a cancelled scope fails even on a ready descriptor */
        if (q->poll)
            res = q->cancelling ? -ECANCELED : res >= 0 ? 0 : res;
        /* An operation that lost the race to its cancellation keeps what
         * it moved (bytes received or sent, an accepted descriptor); one
         * that moved nothing (an error, an end of file, which the next
         * receive sees again) reports the cancellation, as on epoll, where
         * the wait ends before the call is made. */
        else if (q->cancelling && (res < 0 || (res == 0 && q->op->kind != CTRIO__OP_ACCEPT)))
            res = -ECANCELED;
    }
    ctrio__reschedule(q->task, res);
}

/* ---- operations ------------------------------------------------------- */

/* Memcheck cannot see what the kernel writes through the ring. */
static void mark_received(ctrio__op *op, ur_req *q, int res)
{
    if (res < 0)
        return;
    switch (op->kind) {
    case CTRIO__OP_RECV:
        ctrio__uring_mark_defined(op->buf, (size_t)res);
        if (op->addr) {
            ctrio__uring_mark_defined(&q->mh, sizeof q->mh);
            ctrio__uring_mark_defined(op->addr, q->mh.msg_namelen);
        }
        break;
    case CTRIO__OP_RECVMSG: {
        struct msghdr *m = op->msg;
        ctrio__uring_mark_defined(m, sizeof *m);
        size_t left = (size_t)res;
        for (size_t i = 0; i < m->msg_iovlen && left; i++) {
            size_t n = m->msg_iov[i].iov_len < left ? m->msg_iov[i].iov_len : left;
            ctrio__uring_mark_defined(m->msg_iov[i].iov_base, n);
            left -= n;
        }
        if (m->msg_name)
            ctrio__uring_mark_defined(m->msg_name, m->msg_namelen);
        if (m->msg_control)
            ctrio__uring_mark_defined(m->msg_control, m->msg_controllen);
        break;
    }
    case CTRIO__OP_ACCEPT:
        if (op->addrlen) {
            ctrio__uring_mark_defined(op->addrlen, sizeof *op->addrlen);
            ctrio__uring_mark_defined(op->addr, *op->addrlen);
        }
        break;
    default:
        break;
    }
}

/* Fill sqe for op on fd; false if the ring cannot take this operation as
 * the caller asked it (the readiness path then does it). */
static bool prep(struct io_uring_sqe *sqe, int fd, ctrio__op *op, ur_req *q)
{
    sqe->fd = fd;
    switch (op->kind) {
    case CTRIO__OP_RECV:
        if (op->addr) { /* the sender's address: only recvmsg gives it */
            q->iov = (struct iovec){op->buf, op->len};
            q->mh = (struct msghdr){.msg_name = op->addr,
                                    .msg_namelen = op->addrlen ? *op->addrlen : 0,
                                    .msg_iov = &q->iov,
                                    .msg_iovlen = 1};
            sqe->opcode = IORING_OP_RECVMSG;
            sqe->addr = (uint64_t)(uintptr_t)&q->mh;
            sqe->len = 1;
        } else {
            sqe->opcode = IORING_OP_RECV;
            sqe->addr = (uint64_t)(uintptr_t)op->buf;
            sqe->len = (uint32_t)(op->len > UINT32_MAX ? UINT32_MAX : op->len);
        }
        sqe->msg_flags = (uint32_t)op->flags;
        return true;
    case CTRIO__OP_SEND:
        if (op->to) {
            q->iov = (struct iovec){(void *)op->buf, op->len};
            q->mh = (struct msghdr){.msg_name = (void *)op->to,
                                    .msg_namelen = op->tolen,
                                    .msg_iov = &q->iov,
                                    .msg_iovlen = 1};
            sqe->opcode = IORING_OP_SENDMSG;
            sqe->addr = (uint64_t)(uintptr_t)&q->mh;
            sqe->len = 1;
        } else {
            sqe->opcode = IORING_OP_SEND;
            sqe->addr = (uint64_t)(uintptr_t)op->buf;
            sqe->len = (uint32_t)(op->len > UINT32_MAX ? UINT32_MAX : op->len);
        }
        sqe->msg_flags = (uint32_t)(op->flags | MSG_NOSIGNAL);
        return true;
    case CTRIO__OP_RECVMSG:
        sqe->opcode = IORING_OP_RECVMSG;
        sqe->addr = (uint64_t)(uintptr_t)op->msg;
        sqe->len = 1;
        sqe->msg_flags = (uint32_t)(op->flags | op->extra_flags);
        return true;
    case CTRIO__OP_SENDMSG:
        sqe->opcode = IORING_OP_SENDMSG;
        sqe->addr = (uint64_t)(uintptr_t)op->msg;
        sqe->len = 1;
        sqe->msg_flags = (uint32_t)(op->flags | MSG_NOSIGNAL);
        return true;
    case CTRIO__OP_ACCEPT:
        sqe->opcode = IORING_OP_ACCEPT;
        sqe->addr = (uint64_t)(uintptr_t)op->addr;
        sqe->addr2 = (uint64_t)(uintptr_t)op->addrlen;
        sqe->accept_flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
        return true;
    default:
        return false; /* recvmmsg, sendmmsg: no such operation in the ring */
    }
}

/* Block the task until fd reports one of events (POLLERR and POLLHUP are
 * reported whatever is asked), through the ring's one-shot poll; the wait
 * is the checkpoint. When the ring is full: a checkpoint, then -EAGAIN. */
static int poll_wait(ctrio__io *io, int fd, unsigned dir, uint32_t events, ur_slot *sl)
{
    ur_req q = {.task = ctrio__tls_run->current, .fd = fd, .dir = dir, .poll = true};
    struct io_uring_sqe *sqe = get_sqe(st(io));
    if (!sqe) {
        int rc = ctrio_checkpoint();
        return rc < 0 ? rc : -EAGAIN;
    }
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = fd;
    sqe->poll32_events = events;
    sqe->user_data = (uint64_t)(uintptr_t)&q;
    return wait_req(io, &q, sl);
}

/* A read of the error queue (recv, recvmsg or recvmmsg with MSG_ERRQUEUE)
 * waits for an error, not for data. The ring's own recvmsg does not: with
 * ordinary data queued and the error queue empty it completes at once with
 * -EAGAIN (seen here on Linux 6.18), and the readiness path's POLLIN wait
 * is then met at once, every time: the task spun for as long as the data
 * stayed unread (test_cmsg.c, test_recverr_wait: about 90,000 system calls
 * in 50 ms). So try the call, and wait with a poll that asks for no event:
 * POLLERR (and POLLHUP) are reported whatever is asked, as epoll's edge for
 * an error wakes its reader. Checkpoints as ctrio__fd_io's: a call that
 * does not wait is a schedule point, a wait is the checkpoint. */
static ssize_t errqueue_recv(ctrio__io *io, int fd, ctrio__op *op, ur_slot *sl)
{
    for (bool waited = false;; waited = true) {
        ssize_t res = op->sys(fd, op);
        if (res != -EAGAIN) {
            if (!waited)
                ctrio_cancel_shielded_checkpoint();
            return res;
        }
        int w = poll_wait(io, fd, CTRIO__IO_READ, 0, sl);
        if (w < 0 && w != -EAGAIN) /* -EAGAIN: the ring was full; try again */
            return w;
    }
}

static ssize_t ur_op(ctrio__io *io, int fd, ctrio__op *op)
{
    ur_state *s = st(io);
    ctrio__run *r = ctrio__tls_run;
    bool errqueue = op->dir == CTRIO__IO_READ && (op->flags & MSG_ERRQUEUE);
    if (op->kind == CTRIO__OP_OTHER || (op->kind == CTRIO__OP_RECVMMSG && !errqueue) ||
        op->kind == CTRIO__OP_SENDMMSG || CTRIO__UNLIKELY(r->fault_eagain))
        return CTRIO__OP_DECLINED;
    ur_slot *sl = slot_for(s, fd);
    if (!sl)
        return CTRIO__OP_DECLINED;
    /* As the readiness path: a cancel point first (a call cancelled before
     * it starts does nothing), then the busy check, before any schedule
     * point (Trio: BusyResourceError). The wait below is a second cancel
     * point, where a cancellation races the operation in the kernel. */
    int rc = ctrio_checkpoint_if_cancelled();
    if (rc < 0)
        return rc;
    if (*slot_dir(sl, op->dir)) {
        /* Another task's operation is in flight in this direction. On
         * epoll a second reader fails only if it would have to wait (Trio's
         * BusyResourceError comes from wait_readable): try the call as it
         * would, and fail only if it says EAGAIN. The other operation is
         * submitted first if it is still queued: a second send must not
         * overtake the first one's bytes. */
        (void)ctrio__uring_submit(&s->ring);
        ssize_t res = op->sys(fd, op);
        if (res == -EAGAIN)
            return -EBUSY;
        ctrio_cancel_shielded_checkpoint();
        return res;
    }
    if (errqueue)
        return errqueue_recv(io, fd, op, sl);
    /* the system-call fault switch sees each operation as the call it
     * replaces (fault.c), so the fault sweeps cover this backend too */
    int e = 0;
    while (CTRIO__UNLIKELY(ctrio__sys_fault()) && !e)
        if (errno != EINTR) /* made again, as CTRIO__SYS does */
            e = -errno;
    if (CTRIO__UNLIKELY(e)) {
        if (e == -EAGAIN)
            return e; /* on to the readiness path, as a real EAGAIN */
        ctrio_cancel_shielded_checkpoint();
        return e;
    }
    ur_req q = {.task = r->current, .fd = fd, .dir = op->dir, .op = op};
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe)
        return CTRIO__OP_DECLINED;
    if (!prep(sqe, fd, op, &q)) {
        sqe->opcode = IORING_OP_NOP; /* queued already: make it harmless */
        sqe->user_data = UR_IGNORE;
        return CTRIO__OP_DECLINED;
    }
    sqe->user_data = (uint64_t)(uintptr_t)&q;
    int res = wait_req(io, &q, sl);
    mark_received(op, &q, res);
    if (op->kind == CTRIO__OP_RECV && op->addr && op->addrlen && res >= 0)
        *op->addrlen = q.mh.msg_namelen;
    if (op->kind == CTRIO__OP_RECVMSG && res >= 0 && (op->extra_flags & ~op->flags))
        op->msg->msg_flags &= ~(op->extra_flags & ~op->flags); /* as sys_recvmsg */
    return res;
}

/* ---- readiness waits --------------------------------------------------- */

static int ur_wait(ctrio__io *io, int fd, unsigned dir, bool exact)
{
    ur_state *s = st(io);
    if (exact) {
        /* A descriptor the user gives may be anything. epoll refuses files
         * that cannot be polled (EPERM: regular files, directories, block
         * devices), which a poll would report ready at once; the behaviour
         * is the same on every backend (issue #11), and a number that names
         * no file fails before the table grows to it (test_io.c,
         * test_wait_big_invalid_fd). */
        struct stat sb;
        int e = 0;
        if (CTRIO__SYS(fstat(fd, &sb)) < 0)
            e = -errno;
        else if (S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode) || S_ISBLK(sb.st_mode))
            e = -EPERM;
        if (e) {
            int rc = ctrio_checkpoint();
            return rc < 0 ? rc : e;
        }
    }
    ur_slot *sl = slot_for(s, fd);
    if (!sl) {
        int rc = ctrio_checkpoint();
        return rc < 0 ? rc : -ENOMEM;
    }
    if (*slot_dir(sl, dir))
        return -EBUSY;
    ctrio__tls_run->fault_eagain = false; /* see fault.c: a poll reports the state anew anyway */
    return poll_wait(io, fd, dir, dir == CTRIO__IO_READ ? POLLIN | POLLRDHUP | POLLPRI : POLLOUT,
                     sl);
}

static void ur_closing(ctrio__io *io, int fd)
{
    ur_state *s = st(io);
    if ((size_t)fd >= s->nslots)
        return;
    ur_slot *sl = &s->slots[fd];
    bool any = false;
    for (int i = 0; i < 2; i++) {
        ur_req *q = i ? sl->writer : sl->reader;
        if (!q)
            continue;
        /* off the books at once, as the epoll backend's waiters (Trio's
         * test_interrupted_by_close): the task itself wakes with -EBADF when
         * the kernel gives the request back */
        q->closed = true;
        *slot_dir(sl, q->dir) = NULL;
        if (q->dir == CTRIO__IO_READ)
            io->waiting_read--;
        else
            io->waiting_write--;
        queue_cancel(s, q);
        any = true;
    }
    /* Submit now, and run the completions' task work (DEFER_TASKRUN), so
     * that the requests drop their references to the file before the
     * caller closes the descriptor: a peer sees the close at once. */
    if (any && ctrio__uring_enter(&s->ring, 0, 0) == 0)
        s->queued = 0;
}

/* ---- poll -------------------------------------------------------------- */

static int ur_poll(ctrio__io *io, double timeout, ctrio__io_ready_fn fn, void *ctx)
{
    ur_state *s = st(io);
    if (!s->wake_armed)
        (void)arm_wake(s);
    int rc = ctrio__uring_enter(&s->ring, timeout == 0 ? 0 : 1, timeout);
    if (rc < 0)
        return rc;
    s->queued = 0;
    int taken = 0;
    for (;;) {
        struct io_uring_cqe *cqes[64];
        unsigned n = ctrio__uring_peek(&s->ring, cqes, 64);
        if (n == 0)
            break;
        for (unsigned i = 0; i < n; i++) {
            uint64_t ud = cqes[i]->user_data;
            int res = cqes[i]->res;
            uint32_t flags = cqes[i]->flags;
            if (ud == UR_IGNORE)
                continue;
            if (ud == UR_WAKE) {
                if (!(flags & IORING_CQE_F_MORE))
                    s->wake_armed = false; /* re-armed at the next poll */
                uint64_t v;
                ssize_t rr = CTRIO__SYS(read(s->wakefd, &v, sizeof v));
                (void)rr; /* EAGAIN: consumed already */
                taken += fn(ctx, CTRIO__IO_WAKE_FD, 0, CTRIO__IO_READ);
                continue;
            }
            complete(io, (ur_req *)(uintptr_t)ud, res);
            taken++;
        }
        ctrio__uring_advance(&s->ring, n);
    }
    return taken;
}

static void ur_wake(ctrio__io *io)
{
    uint64_t one = 1;
    ssize_t r = CTRIO__SYS(write(st(io)->wakefd, &one, sizeof one));
    (void)r; /* EAGAIN: the counter is full, the loop wakes anyway */
}

const ctrio__backend ctrio__backend_io_uring = {
    .name = "io_uring",
    .init = ur_init,
    .fini = ur_fini,
    .poll = ur_poll,
    .wake = ur_wake,
    .op = ur_op,
    .wait = ur_wait,
    .closing = ur_closing,
};
