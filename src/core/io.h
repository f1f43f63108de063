/*
 * io.h — the seam between the portable I/O layer (io.c, which owns the
 * policy) and a backend (io_epoll.c, io_uring.c, which own the kernel's
 * interface). A backend is one file that fills in a ctrio__backend; the run
 * picks one at start (issue #11: ctrio_config.backend, $CTRIO_BACKEND).
 *
 * The contract, one line per call (as Go's netpoll.go writes its own):
 *   init(io)            open the backend's state into io->state; -errno if it cannot run here
 *   fini(io)            close it; nothing is registered or in flight any more
 *   add(io, fd, tag, d) watch fd, edge-triggered, for the directions d (READ always among them)
 *   rearm(io, fd, tag, new_tag, d)
 *                       watch d again and report fd's current readiness in d anew; if fd now
 *                       names a file the backend never saw, add it with new_tag and return 1
 *   del(io, fd)         stop watching fd (it may be closed already: no error)
 *   poll(io, t, fn, c)  wait once, up to t seconds (< 0 forever, 0 just look), and call fn for
 *                       each event; consume the backend's own wake-up and report it as fd
 *                       CTRIO__IO_WAKE_FD; return how many events fn took, or -errno
 *   wake(io)            make a concurrent or the next poll return; any thread; called only by
 *                       ctrio__io_wake, at most once between two polls that report a wake
 *   wait(io, fd, dir, exact)
 *                       optional, instead of add/rearm/del and the table of io.c: block the
 *                       task until fd is ready in dir now or later (level-triggered), a
 *                       checkpoint; -EBUSY if another task waits so, -EBADF if closed meanwhile;
 *                       exact: a public wait on a descriptor the user gave, which may be anything
 *   op(io, fd, op)      optional (completion backends): perform the whole operation `op` on
 *                       fd, blocking the task (a checkpoint) until it is done or cancelled;
 *                       return its result, or CTRIO__OP_DECLINED to take the readiness path
 *   closing(io, fd)     optional: fd is about to be closed; end the operations in flight on
 *                       it (their tasks see -EBADF) before the caller closes it
 *
 * What the portable layer keeps for itself, once for every backend: the
 * table of waiters per descriptor, the edges remembered while nobody
 * waited, the tags that tell a closed file's late events, what counts as
 * activity, re-waiting after a poll that found only stale events (and after
 * EINTR), when to poll while tasks run (sched.c), and the sequence "check
 * cancel, try the call, wait for readiness, try again" of every socket call
 * (ctrio__fd_io).
 *
 * The readiness contract, modelled on Go's netpoller: a descriptor is
 * registered once and stays registered until del or until its file is
 * closed, so a wait costs no system call of the backend. Unlike Go, the
 * registration watches only the directions that a task has waited for
 * (reading, and writing once a write had to wait): a UDP socket reports a
 * writability edge after every datagram sent, and a loop that watched it
 * woke once per reply for nothing (issue #10).
 */
#ifndef CTRIO_IO_H
#define CTRIO_IO_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define CTRIO__IO_READ 1u
#define CTRIO__IO_WRITE 2u
/* Reported with READ for a hang-up, an error or urgent data: after one of
 * these, a short read no longer proves the receive queue empty. */
#define CTRIO__IO_SPECIAL 4u
/* The fd that poll reports its own wake-up under. */
#define CTRIO__IO_WAKE_FD (-1)

/* op's answer when the backend leaves an operation to the readiness path. */
#define CTRIO__OP_DECLINED ((ssize_t)INT32_MIN)

/* The kinds of operation that ctrio__fd_io performs: a completion backend
 * may take each as a whole. */
enum {
    CTRIO__OP_RECV = 1, /* recvfrom(buf, len, flags, addr, addrlen) */
    CTRIO__OP_SEND,     /* sendto(buf, len, flags, to, tolen) */
    CTRIO__OP_RECVMSG,  /* recvmsg(msg, flags | extra_flags) */
    CTRIO__OP_SENDMSG,  /* sendmsg(msg, flags) */
    CTRIO__OP_ACCEPT,   /* accept4(addr, addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC) */
    CTRIO__OP_RECVMMSG, /* recvmmsg(mm, vlen, flags | extra_flags | MSG_WAITFORONE) */
    CTRIO__OP_SENDMMSG, /* sendmmsg(mm, vlen, flags) */
    CTRIO__OP_OTHER     /* only `sys` knows what it does */
};

typedef struct ctrio__op ctrio__op;
struct ctrio__op {
    int kind;     /* CTRIO__OP_* */
    unsigned dir; /* CTRIO__IO_READ or WRITE: what the readiness path waits for */
    /* The non-blocking call, for the readiness path: the result or -errno
     * (-EAGAIN: wait and try again). */
    ssize_t (*sys)(int fd, ctrio__op *op);
    void *buf;
    size_t len;
    int flags;
    int extra_flags; /* recvmsg: added by the library, hidden from msg_flags */
    struct sockaddr *addr;
    socklen_t *addrlen;
    const struct sockaddr *to;
    socklen_t tolen;
    struct msghdr *msg;
    struct mmsghdr *mm;
    unsigned vlen;
    bool may_drain; /* a short read proves the receive queue empty (io.c) */
};

typedef struct ctrio__io ctrio__io;

/* The callback for each ready descriptor: events is READ|WRITE (errors and
 * hang-ups report both, with SPECIAL), tag the one given when fd was added or
 * re-armed. Returns false for an event it drops (a stale tag): those do not
 * count as activity. */
typedef bool (*ctrio__io_ready_fn)(void *ctx, int fd, uint32_t tag, unsigned events);

typedef struct ctrio__backend {
    const char *name; /* "epoll", "io_uring": ctrio_current_backend() */
    int (*init)(ctrio__io *io);
    void (*fini)(ctrio__io *io);
    int (*add)(ctrio__io *io, int fd, uint32_t tag, unsigned dirs);
    int (*rearm)(ctrio__io *io, int fd, uint32_t tag, uint32_t new_tag, unsigned dirs);
    void (*del)(ctrio__io *io, int fd);
    int (*poll)(ctrio__io *io, double timeout, ctrio__io_ready_fn fn, void *ctx);
    void (*wake)(ctrio__io *io);
    int (*wait)(ctrio__io *io, int fd, unsigned dir, bool exact);
    ssize_t (*op)(ctrio__io *io, int fd, ctrio__op *op);
    void (*closing)(ctrio__io *io, int fd);
} ctrio__backend;

struct ctrio__io {
    const ctrio__backend *be;
    void *state; /* the backend's own */
    /* A wake-up is on its way and not yet reported by a poll: further
     * wakers need not send one (Go's netpollWakeSig). */
    atomic_bool wake_sent;
    /* Tasks blocked on a descriptor, reading and writing: the table's
     * waiters and a completion backend's operations in flight
     * (ctrio_current_io_statistics; sched.c polls while tasks run only if
     * a poll can wake someone). */
    size_t waiting_read, waiting_write;
};

extern const ctrio__backend ctrio__backend_epoll;
extern const ctrio__backend ctrio__backend_io_uring;

/* Make a concurrent or the next poll return: any thread. */
void ctrio__io_wake(ctrio__io *io);

#endif
