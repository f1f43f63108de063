/*
 * socket_real.c — the operations of a socket over a kernel descriptor.
 *
 * Every blocking operation goes through ctrio__fd_io (src/core/io.c), which
 * follows Trio's _nonblocking_helper on a readiness backend and lets a
 * completion backend perform the whole operation instead. connect and
 * sendfile spell out their own loops over ctrio__wait_fd.
 *
 * Every path that closes a descriptor first wakes the tasks blocked on it
 * (ctrio_notify_closing), and every retry checks that the socket is still
 * open, so a task woken by a close sees -EBADF (better than Trio #3520).
 */
#include "net.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static inline ssize_t neg_errno(ssize_t r)
{
    return r < 0 ? (errno == EWOULDBLOCK ? -EAGAIN : -errno) : r;
}

/* Every blocking call of a socket: ctrio__fd_io (src/core/io.c) checks for a
 * cancellation, tries the call, waits for readiness and tries again, or
 * hands the whole operation to a completion backend. */
static inline ssize_t do_io(ctrio_socket *s, int kind, unsigned dir,
                            ssize_t (*sys)(int fd, ctrio__op *op), ctrio__op *a)
{
    a->kind = kind;
    a->dir = dir;
    a->sys = sys;
    return ctrio__fd_io(&s->fd, a);
}

/* ---- recv / send --------------------------------------------------------- */


static ssize_t sys_recvfrom(int fd, ctrio__op *a)
{
    ssize_t r = neg_errno(CTRIO__SYS(recvfrom(fd, a->buf, a->len, a->flags, a->addr, a->addrlen)));
    /* before any yield: an edge that a parked waiter takes from now on
     * ends the promise (io.c, on_ready) */
    if (a->may_drain && r > 0 && (size_t)r < a->len)
        ctrio__fd_set_drained(fd);
    return r;
}

static ssize_t sys_sendto(int fd, ctrio__op *a)
{
    return neg_errno(
        CTRIO__SYS(sendto(fd, a->buf, a->len, a->flags | MSG_NOSIGNAL, a->to, a->tolen)));
}

static ssize_t sys_recvmsg(int fd, ctrio__op *a)
{
    ssize_t r = neg_errno(CTRIO__SYS(recvmsg(fd, a->msg, a->flags | a->extra_flags)));
    /* Linux copies MSG_CMSG_CLOEXEC back into msg_flags: hide the flag the
     * caller did not ask for (Trio: msg_flags == 0) */
    if (r >= 0 && (a->extra_flags & ~a->flags))
        a->msg->msg_flags &= ~(a->extra_flags & ~a->flags);
    return r;
}

static ssize_t sys_sendmsg(int fd, ctrio__op *a)
{
    return neg_errno(CTRIO__SYS(sendmsg(fd, a->msg, a->flags | MSG_NOSIGNAL)));
}

static ssize_t real_recvfrom(ctrio_socket *s, void *buf, size_t len, int flags,
                             struct sockaddr *addr, socklen_t *addrlen)
{
    ctrio__op a = {.buf = buf, .len = len, .flags = flags, .addr = addr, .addrlen = addrlen};
    /* A short TCP read means the receive queue was empty: tcp_recvmsg stops
     * early only then, or at a FIN, an error or an urgent mark, which io.c
     * hears of first (AF_UNIX also stops where the sender's credentials
     * change, datagram sockets and SCTP's SOCK_STREAM at every message: not
     * for them). */
    a.may_drain = flags == 0 && s->type == SOCK_STREAM && s->protocol == IPPROTO_TCP &&
                  (s->family == AF_INET || s->family == AF_INET6);
    return do_io(s, CTRIO__OP_RECV, CTRIO__IO_READ, sys_recvfrom, &a);
}

static ssize_t real_sendto(ctrio_socket *s, const void *buf, size_t len, int flags,
                           const struct sockaddr *to, socklen_t tolen)
{
    ctrio__op a = {.buf = (void *)buf, .len = len, .flags = flags, .to = to, .tolen = tolen};
    return do_io(s, CTRIO__OP_SEND, CTRIO__IO_WRITE, sys_sendto, &a);
}

static ssize_t real_recvmsg(ctrio_socket *s, struct msghdr *msg, int flags)
{
    /* Received descriptors are close-on-exec. Only AF_UNIX carries them, and
     * other families may refuse the flag: packet_recvmsg (AF_PACKET) and
     * pfkey_recvmsg fail with EINVAL on any flag they do not know. */
    ctrio__op a = {.msg = msg, .flags = flags,
                 .extra_flags = s->family == AF_UNIX ? MSG_CMSG_CLOEXEC : 0};
    return do_io(s, CTRIO__OP_RECVMSG, CTRIO__IO_READ, sys_recvmsg, &a);
}

static ssize_t real_sendmsg(ctrio_socket *s, const struct msghdr *msg, int flags)
{
    ctrio__op a = {.msg = (struct msghdr *)msg, .flags = flags};
    return do_io(s, CTRIO__OP_SENDMSG, CTRIO__IO_WRITE, sys_sendmsg, &a);
}

/* ---- recvmmsg / sendmmsg ------------------------------------------------- */

/* The kernel's UIO_MAXIOV: recvmmsg takes at most so many messages a call,
 * so a full batch of that size is not short whatever vlen said. */
#define MMSG_MAX 1024u

static ssize_t sys_recvmmsg(int fd, ctrio__op *a)
{
    ssize_t r = neg_errno(
        CTRIO__SYS(recvmmsg(fd, a->mm, a->vlen, a->flags | a->extra_flags | MSG_WAITFORONE, NULL)));
    int hidden = a->extra_flags & ~a->flags; /* as sys_recvmsg */
    for (ssize_t i = 0; hidden && i < r; i++)
        a->mm[i].msg_hdr.msg_flags &= ~hidden;
    /* before any yield, as sys_recvfrom: on a non-blocking socket,
     * do_recvmmsg stops short of vlen at EAGAIN (the queue is empty), at
     * urgent data, or at an error it keeps in sk_err for the next call (an
     * ICMP error arrives as EPOLLERR first, which ends the promise in io.c) */
    if (a->may_drain && r > 0 && (size_t)r < (a->vlen < MMSG_MAX ? a->vlen : MMSG_MAX))
        ctrio__fd_set_drained(fd);
    /* An error returned is the socket's pending one (an ICMP error: a
     * receive reports it once and clears it), or one that recvmmsg kept
     * from the last call. Either way nothing is pending any more, so the
     * EPOLLERR seen for it no longer makes a short batch doubtful; a new
     * error wakes the poll with an EPOLLERR of its own, before any short
     * batch could stop at it and be believed (a connected socket that once
     * met a closed port paid a recvmmsg per batch for good:
     * test_short_batch_after_an_error). */
    else if (a->may_drain && r < 0 && r != -EAGAIN && r != -EINTR)
        ctrio__fd_clear_special(fd);
    return r;
}

static ssize_t sys_sendmmsg(int fd, ctrio__op *a)
{
    return neg_errno(CTRIO__SYS(sendmmsg(fd, a->mm, a->vlen, a->flags | MSG_NOSIGNAL)));
}

static int real_recvmmsg(ctrio_socket *s, struct mmsghdr *msgs, unsigned int vlen, int flags)
{
    ctrio__op a = {.mm = msgs,
                 .vlen = vlen,
                 .flags = flags,
                 .extra_flags = s->family == AF_UNIX ? MSG_CMSG_CLOEXEC : 0};
    /* A short UDP batch means that the receive queue was empty (see
     * sys_recvmmsg): the next receive may wait at once, which saves a server
     * loop the recvmmsg that could only say EAGAIN (issue #10: 3 system
     * calls per reply at one flow, not 4). Only plain receives: a peek
     * leaves the queue as it was. */
    a.may_drain = (flags & ~(MSG_WAITFORONE | MSG_TRUNC)) == 0 && s->type == SOCK_DGRAM &&
                  (s->family == AF_INET || s->family == AF_INET6);
    return (int)do_io(s, CTRIO__OP_RECVMMSG, CTRIO__IO_READ, sys_recvmmsg, &a);
}

static int real_sendmmsg(ctrio_socket *s, struct mmsghdr *msgs, unsigned int vlen, int flags)
{
    ctrio__op a = {.mm = msgs, .vlen = vlen, .flags = flags};
    return (int)do_io(s, CTRIO__OP_SENDMMSG, CTRIO__IO_WRITE, sys_sendmmsg, &a);
}

/* ---- accept --------------------------------------------------------------- */

static ssize_t sys_accept(int fd, ctrio__op *a)
{
    return neg_errno(CTRIO__SYS(accept4(fd, a->addr, a->addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC)));
}

static int real_accept(ctrio_socket *s, ctrio_socket **conn, struct sockaddr *addr,
                       socklen_t *len)
{
    ctrio__op a = {.addr = addr, .addrlen = len};
    ssize_t fd = do_io(s, CTRIO__OP_ACCEPT, CTRIO__IO_READ, sys_accept, &a);
    if (fd < 0)
        return (int)fd;
    int rc = ctrio__socket_wrap_fd((int)fd, s->family, s->type, s->protocol, conn);
    if (rc < 0)
        close((int)fd);
    return rc;
}

/* ---- connect -------------------------------------------------------------- */

/* Wake the tasks blocked on s with -EBADF before its descriptor is closed;
 * the epoll registration goes with the close unless the file may live on
 * in another descriptor (see src/core/io.c). */
static void closing(ctrio_socket *s)
{
    if (s->fd_shared)
        ctrio_notify_closing(s->fd);
    else
        ctrio__fd_closing(s->fd);
}

/* Trio #247: a connect that was started cannot be taken back, so any
 * cancellation closes the socket. Unlike Trio, the close wakes other tasks
 * blocked on it. */
static int connect_cancelled(ctrio_socket *s)
{
    if (s->fd >= 0) {
        closing(s);
        close(s->fd);
        s->fd = -1;
    }
    return -ECANCELED;
}

/* connect(2), made again on EINTR (PEP 475, as Python's sock_connect).
 * After a real EINTR the kernel goes on connecting, so the second call says
 * EALREADY (still under way: the same as EINPROGRESS) or EISCONN (done). */
static int start_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    int r = CTRIO__SYS_ONCE(connect(fd, addr, len));
    while (r < 0 && errno == EINTR) {
        r = CTRIO__SYS_ONCE(connect(fd, addr, len));
        if (r < 0 && errno == EALREADY)
            errno = EINPROGRESS;
        else if (r < 0 && errno == EISCONN)
            r = 0;
    }
    return r;
}

static int real_connect(ctrio_socket *s, const struct sockaddr *addr, socklen_t len)
{
    int cp = ctrio_checkpoint_if_cancelled();
    if (cp == -ECANCELED)
        return connect_cancelled(s);
    if (cp < 0) /* -EPERM outside a task: nothing started, nothing to undo */
        return cp;
    if (s->fd < 0) {
        ctrio_cancel_shielded_checkpoint();
        return -EBADF;
    }
    /* EAGAIN (AF_UNIX: the listener's queue is full) means that nothing was
     * started, and no event will say when to try again: report it. */
    int r = start_connect(s->fd, addr, len);
    if (r == 0 || errno != EINPROGRESS) {
        int e = r == 0 ? 0 : -errno;
        ctrio_cancel_shielded_checkpoint();
        return e;
    }
    for (;;) {
        int rc = ctrio__wait_fd(s->fd, CTRIO__IO_WRITE, false);
        if (rc == -ECANCELED)
            return connect_cancelled(s);
        if (rc < 0)
            return rc;
        if (s->fd < 0)
            return -EBADF;
        int err = 0;
        socklen_t elen = sizeof err;
        if (CTRIO__SYS(getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &elen)) < 0)
            return -errno;
        if (err)
            return -err;
        /* A writability edge remembered from before the connect can wake
         * this wait while the handshake is still under way: only a
         * connected socket has a peer. */
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        if (CTRIO__SYS(getpeername(s->fd, (struct sockaddr *)&peer, &plen)) == 0)
            return 0;
        if (errno != ENOTCONN)
            return -errno;
    }
}

/* ---- bind ---------------------------------------------------------------- */

typedef struct bind_job {
    int fd;
    const struct sockaddr *addr;
    socklen_t len;
} bind_job;

static int bind_in_thread(void *p)
{
    bind_job *j = p;
    return bind(j->fd, j->addr, j->len) < 0 ? -errno : 0;
}

static int real_bind(ctrio_socket *s, const struct sockaddr *addr, socklen_t len)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)addr;
    bool fs_path = addr->sa_family == AF_UNIX && len > offsetof(struct sockaddr_un, sun_path) &&
                   un->sun_path[0] != '\0';
    if (fs_path) {
        /* The kernel walks the filesystem: a worker thread that cannot be
         * abandoned (the bind would happen anyway). */
        if (s->fd < 0) {
            int rc = ctrio_checkpoint();
            return rc < 0 ? rc : -EBADF;
        }
        /* The thread binds a duplicate: if another task closes the socket
         * meanwhile, its number may name another file by then. */
        int fd = CTRIO__SYS(fcntl(s->fd, F_DUPFD_CLOEXEC, 0));
        if (fd < 0) {
            int e = -errno;
            int rc = ctrio_checkpoint();
            return rc < 0 ? rc : e;
        }
        bind_job j = {fd, addr, len};
        int rc = ctrio_to_thread_run_sync(bind_in_thread, &j, 0);
        close(fd);
        return rc;
    }
    int rc = ctrio_checkpoint();
    if (rc < 0)
        return rc;
    if (s->fd < 0)
        return -EBADF;
    return CTRIO__SYS(bind(s->fd, addr, len)) < 0 ? -errno : 0;
}

/* ---- sendfile ------------------------------------------------------------ */

static ssize_t real_sendfile(ctrio_socket *s, int in_fd, off_t *offset, size_t count)
{
    int rc = ctrio_checkpoint_if_cancelled();
    if (rc < 0)
        return rc;
    if (s->fd < 0) {
        ctrio_cancel_shielded_checkpoint();
        return -EBADF;
    }
    if (count == 0) { /* to the end of the file */
        struct stat st;
        off_t pos = offset ? *offset : lseek(in_fd, 0, SEEK_CUR);
        if (fstat(in_fd, &st) < 0 || pos < 0) {
            int e = -errno;
            ctrio_cancel_shielded_checkpoint();
            return e;
        }
        count = st.st_size > pos ? (size_t)(st.st_size - pos) : 0;
    }
    size_t total = 0;
    bool waited = false;
    while (total < count) {
        size_t chunk = count - total;
        if (chunk > 0x7ffff000)
            chunk = 0x7ffff000;
        ssize_t n = CTRIO__SYS(sendfile(s->fd, in_fd, offset, chunk));
        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        if (n == 0)
            break; /* the file ended early */
        if (errno != EAGAIN) {
            int e = -errno;
            if (total)
                break; /* report the progress; the error comes back next time */
            if (!waited)
                ctrio_cancel_shielded_checkpoint();
            return e;
        }
        waited = true;
        rc = ctrio__wait_fd(s->fd, CTRIO__IO_WRITE, false);
        if (rc < 0)
            return rc; /* *offset (or the file position) says where to resume */
        if (s->fd < 0)
            return -EBADF;
    }
    if (!waited)
        ctrio_cancel_shielded_checkpoint();
    return (ssize_t)total;
}

/* ---- the rest ------------------------------------------------------------ */

static int real_wait_writable(ctrio_socket *s)
{
    if (s->fd < 0) {
        int rc = ctrio_checkpoint();
        return rc < 0 ? rc : -EBADF;
    }
    return ctrio_wait_writable(s->fd);
}

static bool real_is_readable(ctrio_socket *s)
{
    if (s->fd < 0)
        return false;
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    return CTRIO__SYS(poll(&p, 1, 0)) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR));
}

#define FD_OR_EBADF(s)                                                                            \
    do {                                                                                          \
        if ((s)->fd < 0)                                                                          \
            return -EBADF;                                                                        \
    } while (0)

static int real_listen(ctrio_socket *s, int backlog)
{
    FD_OR_EBADF(s);
    return CTRIO__SYS(listen(s->fd, backlog)) < 0 ? -errno : 0;
}

static int real_getpeername(ctrio_socket *s, struct sockaddr *addr, socklen_t *len)
{
    FD_OR_EBADF(s);
    return CTRIO__SYS(getpeername(s->fd, addr, len)) < 0 ? -errno : 0;
}

static int real_getsockname(ctrio_socket *s, struct sockaddr *addr, socklen_t *len)
{
    FD_OR_EBADF(s);
    return CTRIO__SYS(getsockname(s->fd, addr, len)) < 0 ? -errno : 0;
}

static int real_shutdown(ctrio_socket *s, int how)
{
    FD_OR_EBADF(s);
    return CTRIO__SYS(shutdown(s->fd, how)) < 0 ? -errno : 0;
}

static int real_setsockopt(ctrio_socket *s, int level, int name, const void *val,
                           socklen_t len)
{
    FD_OR_EBADF(s);
    return CTRIO__SYS(setsockopt(s->fd, level, name, val, len)) < 0 ? -errno : 0;
}

static int real_getsockopt(ctrio_socket *s, int level, int name, void *val, socklen_t *len)
{
    FD_OR_EBADF(s);
    return CTRIO__SYS(getsockopt(s->fd, level, name, val, len)) < 0 ? -errno : 0;
}

static int real_dup(ctrio_socket *s, ctrio_socket **out)
{
    FD_OR_EBADF(s);
    int fd = CTRIO__SYS(fcntl(s->fd, F_DUPFD_CLOEXEC, 0));
    if (fd < 0)
        return -errno;
    int rc = ctrio__socket_wrap_fd(fd, s->family, s->type, s->protocol, out);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    s->fd_shared = (*out)->fd_shared = true; /* one file, two descriptors */
    return 0;
}

static int real_close(ctrio_socket *s)
{
    if (s->fd < 0)
        return 0;
    closing(s); /* wake the tasks blocked on it: -EBADF */
    /* The descriptor is gone even on EINTR (Linux): an injected fault is
     * made after the real close, so that it cannot leak one. */
    int rc = close(s->fd);
    if (ctrio__sys_fault())
        rc = -1;
    rc = rc < 0 && errno != EINTR ? -errno : 0;
    s->fd = -1;
    return rc;
}

static const ctrio_socket_ops real_ops = {
    .connect = real_connect,
    .accept = real_accept,
    .bind = real_bind,
    .recvmsg = real_recvmsg,
    .sendmsg = real_sendmsg,
    .recvfrom = real_recvfrom,
    .sendto = real_sendto,
    .sendfile = real_sendfile,
    .wait_writable = real_wait_writable,
    .is_readable = real_is_readable,
    .listen = real_listen,
    .getpeername = real_getpeername,
    .getsockname = real_getsockname,
    .shutdown = real_shutdown,
    .setsockopt = real_setsockopt,
    .getsockopt = real_getsockopt,
    .dup = real_dup,
    .close = real_close,
    .recvmmsg = real_recvmmsg,
    .sendmmsg = real_sendmmsg,
};

int ctrio__socket_wrap_fd(int fd, int family, int type, int protocol, ctrio_socket **out)
{
    ctrio_socket *s = ctrio__socket_alloc(&real_ops, NULL, fd, family, type, protocol);
    if (!s)
        return -ENOMEM;
    ctrio__fd_adopt(fd);
    *out = s;
    return 0;
}

bool ctrio__socket_is_real(const ctrio_socket *s)
{
    return s->ops == &real_ops;
}
