/*
 * socket.c — the public socket calls (trio.socket's functions and SocketType
 * methods): argument checks, the handle's lifetime, and dispatch through the
 * operations table to the real implementation (socket_real.c) or a custom
 * one. Also the constructors that wrap kernel descriptors, and the socket
 * factory hook.
 */
#include "net.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/uio.h>
#include <unistd.h>

ctrio_socket *ctrio__socket_alloc(const ctrio_socket_ops *ops, void *impl, int fd, int family,
                                  int type, int protocol)
{
    ctrio_socket *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->ops = ops;
    s->impl = impl;
    s->fd = fd;
    s->family = family;
    s->type = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    s->protocol = protocol;
    return s;
}

int ctrio_socket_new_custom(const ctrio_socket_ops *ops, void *impl, int family, int type,
                            int protocol, ctrio_socket **out)
{
    if (!ops || !out)
        return -EINVAL;
    ctrio_socket *s = ctrio__socket_alloc(ops, impl, -1, family, type, protocol);
    if (!s)
        return -ENOMEM;
    *out = s;
    return 0;
}

void *ctrio_socket_impl(const ctrio_socket *s)
{
    return s ? s->impl : NULL;
}

/* ---- lifetime of a handle across blocking calls ------------------------- */

#define hold ctrio__socket_hold

static inline ssize_t release(ctrio_socket *s, ssize_t rc)
{
    ctrio__socket_unhold(s);
    return rc;
}

int ctrio_socket_close(ctrio_socket *s)
{
    if (!s)
        return -EINVAL;
    if (s->users.closed)
        return -EBADF;
    int rc = s->ops->close ? s->ops->close(s) : 0;
    s->fd = -1;
    if (ctrio__users_close(&s->users))
        free(s);
    return rc;
}

/* ---- constructors -------------------------------------------------------- */

/* The kernel's protocol (SO_PROTOCOL: IPPROTO_TCP for a TCP socket opened
 * with 0), or the one given when the kernel says 0: an AF_PACKET socket's
 * SO_PROTOCOL is 0 whatever it was opened with, and Trio (Python's
 * socket.proto) reports the protocol given. */
static int sniffed_protocol(int fd, int given)
{
    int proto = 0;
    socklen_t len = sizeof proto;
    if (CTRIO__SYS(getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len)) < 0 || proto == 0)
        return given;
    return proto;
}

int ctrio_socket_open(int family, int type, int protocol, ctrio_socket **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    const ctrio__net_run *net = ctrio__net_run_find(ctrio__tls_run);
    const ctrio_socket_factory *sf = net ? net->socket_factory : NULL;
    /* A hook's NULL entry means the default, as the resolver's do (ctrio.h) */
    if (sf && sf->socket)
        return sf->socket(sf->ctx, family, type, protocol, out);
    int fd = CTRIO__SYS(socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol));
    if (fd < 0)
        return -errno;
    int rc = ctrio__socket_wrap_fd(fd, family, type, sniffed_protocol(fd, protocol), out);
    if (rc < 0)
        close(fd);
    return rc;
}

int ctrio_socketpair(int family, int type, int protocol, ctrio_socket *out[2])
{
    if (!out)
        return -EINVAL;
    out[0] = out[1] = NULL;
    if (family == 0)
        family = AF_UNIX;
    if (type == 0)
        type = SOCK_STREAM;
    int fds[2];
    if (CTRIO__SYS(socketpair(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol, fds)) < 0)
        return -errno;
    int proto = sniffed_protocol(fds[0], protocol);
    int rc = ctrio__socket_wrap_fd(fds[0], family, type, proto, &out[0]);
    if (rc == 0) {
        rc = ctrio__socket_wrap_fd(fds[1], family, type, proto, &out[1]);
        if (rc < 0) {
            free(out[0]);
            out[0] = NULL;
        }
    }
    if (rc < 0) {
        close(fds[0]);
        close(fds[1]);
    }
    return rc;
}

/* Trio's from_stdlib_socket: read what the descriptor is from the kernel,
 * make it non-blocking and close-on-exec, wrap it. */
int ctrio_socket_from_fd(int fd, ctrio_socket **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (fd < 0)
        return -EBADF;
    int family, type, proto;
    socklen_t len = sizeof family;
    if (CTRIO__SYS(getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &len)) < 0)
        return -errno; /* EBADF, or ENOTSOCK for a pipe or a file */
    len = sizeof type;
    if (CTRIO__SYS(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len)) < 0)
        return -errno;
    len = sizeof proto;
    if (CTRIO__SYS(getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len)) < 0)
        return -errno;
    int fl = CTRIO__SYS(fcntl(fd, F_GETFL));
    if (fl < 0 || CTRIO__SYS(fcntl(fd, F_SETFL, fl | O_NONBLOCK)) < 0)
        return -errno;
    int fdfl = CTRIO__SYS(fcntl(fd, F_GETFD));
    if (fdfl < 0 || CTRIO__SYS(fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC)) < 0)
        return -errno;
    int rc = ctrio__socket_wrap_fd(fd, family, type, proto, out);
    if (rc == 0)
        (*out)->fd_shared = true; /* the caller's descriptor: it may have copies */
    return rc;
}

int ctrio_socket_fromfd(int fd, int family, int type, int protocol, ctrio_socket **out)
{
    (void)family, (void)type, (void)protocol; /* sniffed from the kernel, as Trio */
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (fd < 0)
        return -EBADF;
    int copy = CTRIO__SYS(fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (copy < 0)
        return -errno;
    int rc = ctrio_socket_from_fd(copy, out);
    if (rc < 0)
        close(copy);
    return rc;
}

/* ---- hooks ---------------------------------------------------------------- */

static const ctrio__layer_key net_key = {sizeof(ctrio__net_run)};

const ctrio__net_run *ctrio__net_run_find(ctrio__run *r)
{
    return r ? ctrio__layer_find(r, &net_key) : NULL;
}

/* The net state of the run on this thread, made on first use; NULL after a
 * message naming `fn` (no run, or out of memory). */
static ctrio__net_run *net_run_get(const char *fn)
{
    ctrio__run *r = ctrio__tls_run;
    if (!r) {
        ctrio__misuse("%s called outside a run", fn);
        return NULL;
    }
    ctrio__net_run *net = ctrio__layer_get(r, &net_key);
    if (!net)
        ctrio__log(CTRIO_LOG_ERROR, "%s: out of memory", fn);
    return net;
}

const ctrio_socket_factory *ctrio_set_custom_socket_factory(const ctrio_socket_factory *f)
{
    ctrio__net_run *net = net_run_get("ctrio_set_custom_socket_factory");
    if (!net)
        return NULL;
    const ctrio_socket_factory *old = net->socket_factory;
    net->socket_factory = f;
    return old;
}

const ctrio_hostname_resolver *ctrio_set_custom_hostname_resolver(const ctrio_hostname_resolver *h)
{
    ctrio__net_run *net = net_run_get("ctrio_set_custom_hostname_resolver");
    if (!net)
        return NULL;
    const ctrio_hostname_resolver *old = net->hostname_resolver;
    net->hostname_resolver = h;
    return old;
}

/* ---- blocking methods: hold the handle, dispatch -------------------------- */

#define CHECK_SOCKET(s)                                                                           \
    do {                                                                                          \
        if (!(s))                                                                                 \
            return -EINVAL;                                                                       \
    } while (0)

int ctrio_socket_connect(ctrio_socket *s, const struct sockaddr *addr, socklen_t len)
{
    CHECK_SOCKET(s);
    if (!addr)
        return -EINVAL;
    if (!s->ops->connect)
        return -EOPNOTSUPP;
    hold(s);
    return (int)release(s, s->ops->connect(s, addr, len));
}

int ctrio_socket_accept(ctrio_socket *s, ctrio_socket **conn, struct sockaddr *addr,
                        socklen_t *len)
{
    CHECK_SOCKET(s);
    if (!conn || (addr && !len))
        return -EINVAL;
    *conn = NULL;
    if (!s->ops->accept)
        return -EOPNOTSUPP;
    hold(s);
    return (int)release(s, s->ops->accept(s, conn, addr, len));
}

int ctrio_socket_bind(ctrio_socket *s, const struct sockaddr *addr, socklen_t len)
{
    CHECK_SOCKET(s);
    if (!addr || len < (socklen_t)sizeof(sa_family_t))
        return -EINVAL; /* bind looks at the family: never read past len */
    if (!s->ops->bind)
        return -EOPNOTSUPP;
    hold(s);
    return (int)release(s, s->ops->bind(s, addr, len));
}

ssize_t ctrio_socket_recvmsg(ctrio_socket *s, struct msghdr *msg, int flags)
{
    CHECK_SOCKET(s);
    if (!msg)
        return -EINVAL;
    if (!s->ops->recvmsg)
        return -EOPNOTSUPP;
    hold(s);
    return release(s, s->ops->recvmsg(s, msg, flags));
}

ssize_t ctrio_socket_sendmsg(ctrio_socket *s, const struct msghdr *msg, int flags)
{
    CHECK_SOCKET(s);
    if (!msg)
        return -EINVAL;
    if (!s->ops->sendmsg)
        return -EOPNOTSUPP;
    hold(s);
    return release(s, s->ops->sendmsg(s, msg, flags));
}

/* ---- batches: recvmmsg / sendmmsg ------------------------------------------ */

/* What a batch call needs of the socket: its own entry, or the single
 * message entry that the generic loop calls (ctrio.h). */
static int batch_check(ctrio_socket *s, struct mmsghdr *msgs, unsigned vlen, bool has_batch,
                       bool has_single)
{
    if (!s || !msgs || vlen == 0)
        return -EINVAL;
    return has_batch || has_single ? 0 : -EOPNOTSUPP;
}

/* A custom socket without a recvmmsg entry: the first recvmsg may wait; the
 * next ones are made only while is_readable says a datagram is there (and
 * with MSG_DONTWAIT), so the batch never waits to fill up. Each recvmsg is
 * a checkpoint that returns -ECANCELED without acting, and any error after
 * the first datagram ends the batch with what was received: a datagram
 * received is always returned, never dropped for a cancel or a failure. */
static int generic_recvmmsg(ctrio_socket *s, struct mmsghdr *msgs, unsigned vlen, int flags)
{
    flags &= ~MSG_WAITFORONE;
    unsigned n = 0;
    while (n < vlen) {
        if (n > 0 && !(s->ops->is_readable && s->ops->is_readable(s)))
            break;
        ssize_t r = s->ops->recvmsg(s, &msgs[n].msg_hdr, n ? flags | MSG_DONTWAIT : flags);
        if (r < 0) {
            if (n == 0)
                return (int)r;
            break; /* the error comes back at the next call if it lasts */
        }
        msgs[n++].msg_len = (unsigned)r;
    }
    return (int)n;
}

/* The same for sending: the first sendmsg may wait, the next ones go with
 * MSG_DONTWAIT, and the first failure after a datagram went ends the batch
 * with the count sent. */
static int generic_sendmmsg(ctrio_socket *s, struct mmsghdr *msgs, unsigned vlen, int flags)
{
    unsigned n = 0;
    while (n < vlen) {
        ssize_t r = s->ops->sendmsg(s, &msgs[n].msg_hdr, n ? flags | MSG_DONTWAIT : flags);
        if (r < 0) {
            if (n == 0)
                return (int)r;
            break;
        }
        msgs[n++].msg_len = (unsigned)r;
    }
    return (int)n;
}

int ctrio_socket_recvmmsg(ctrio_socket *s, struct mmsghdr *msgs, unsigned int vlen, int flags)
{
    int rc = batch_check(s, msgs, vlen, s && s->ops->recvmmsg, s && s->ops->recvmsg);
    if (rc < 0)
        return rc;
    hold(s);
    rc = s->ops->recvmmsg ? s->ops->recvmmsg(s, msgs, vlen, flags)
                          : generic_recvmmsg(s, msgs, vlen, flags);
    return (int)release(s, rc);
}

int ctrio_socket_sendmmsg(ctrio_socket *s, struct mmsghdr *msgs, unsigned int vlen, int flags)
{
    int rc = batch_check(s, msgs, vlen, s && s->ops->sendmmsg, s && s->ops->sendmsg);
    if (rc < 0)
        return rc;
    hold(s);
    rc = s->ops->sendmmsg ? s->ops->sendmmsg(s, msgs, vlen, flags)
                          : generic_sendmmsg(s, msgs, vlen, flags);
    return (int)release(s, rc);
}

ssize_t ctrio_socket_recvfrom(ctrio_socket *s, void *buf, size_t len, int flags,
                              struct sockaddr *addr, socklen_t *addrlen)
{
    CHECK_SOCKET(s);
    if ((!buf && len) || (addr && !addrlen))
        return -EINVAL;
    if (s->ops->recvfrom) {
        hold(s);
        return release(s, s->ops->recvfrom(s, buf, len, flags, addr, addrlen));
    }
    struct iovec iov = {buf, len};
    struct msghdr m = {.msg_name = addr, .msg_namelen = addr ? *addrlen : 0,
                       .msg_iov = &iov, .msg_iovlen = 1};
    ssize_t rc = ctrio_socket_recvmsg(s, &m, flags);
    if (rc >= 0 && addr)
        *addrlen = m.msg_namelen;
    return rc;
}

ssize_t ctrio_socket_recv(ctrio_socket *s, void *buf, size_t len, int flags)
{
    if (s && len == 0 && ctrio__socket_is_real(s)) {
        /* recv(2) of 0 bytes on an empty non-blocking socket is EAGAIN on
         * Linux, and waiting would block until data came. Answer as CPython's
         * recv(0), which Trio calls: 0, without a system call (sock_recv in
         * CPython's Modules/socketmodule.c). Still a checkpoint. */
        int rc = ctrio_checkpoint_if_cancelled();
        if (rc < 0)
            return rc;
        hold(s); /* across the yield */
        ctrio_cancel_shielded_checkpoint();
        return release(s, s->fd < 0 ? -EBADF : 0);
    }
    return ctrio_socket_recvfrom(s, buf, len, flags, NULL, NULL);
}

ssize_t ctrio_socket_sendto(ctrio_socket *s, const void *buf, size_t len, int flags,
                            const struct sockaddr *addr, socklen_t addrlen)
{
    CHECK_SOCKET(s);
    if (!buf && len)
        return -EINVAL;
    if (s->ops->sendto) {
        hold(s);
        return release(s, s->ops->sendto(s, buf, len, flags, addr, addrlen));
    }
    struct iovec iov = {(void *)buf, len};
    struct msghdr m = {.msg_name = (void *)addr, .msg_namelen = addr ? addrlen : 0,
                       .msg_iov = &iov, .msg_iovlen = 1};
    return ctrio_socket_sendmsg(s, &m, flags);
}

ssize_t ctrio_socket_send(ctrio_socket *s, const void *buf, size_t len, int flags)
{
    return ctrio_socket_sendto(s, buf, len, flags, NULL, 0);
}

ssize_t ctrio_socket_sendfile(ctrio_socket *s, int in_fd, off_t *offset, size_t count)
{
    CHECK_SOCKET(s);
    if (offset && *offset < 0)
        return -EINVAL;
    if (!s->ops->sendfile)
        return -EOPNOTSUPP;
    hold(s);
    return release(s, s->ops->sendfile(s, in_fd, offset, count));
}

int ctrio_socket_wait_writable(ctrio_socket *s)
{
    CHECK_SOCKET(s);
    if (!s->ops->wait_writable)
        return -EOPNOTSUPP;
    hold(s);
    return (int)release(s, s->ops->wait_writable(s));
}

/* ---- non-blocking methods -------------------------------------------------- */

bool ctrio_socket_is_readable(ctrio_socket *s)
{
    return s && s->ops->is_readable ? s->ops->is_readable(s) : false;
}

bool ctrio_socket_did_shutdown_wr(const ctrio_socket *s)
{
    return s && s->did_shutdown_wr;
}

int ctrio_socket_family(const ctrio_socket *s)
{
    return s ? s->family : -EINVAL;
}

int ctrio_socket_type(const ctrio_socket *s)
{
    return s ? s->type : -EINVAL;
}

int ctrio_socket_protocol(const ctrio_socket *s)
{
    return s ? s->protocol : -EINVAL;
}

int ctrio_socket_fileno(const ctrio_socket *s)
{
    if (!s)
        return -1;
    /* The caller may dup it or send it away: from now on, closing removes
     * the epoll registration first. (s is never a const object: every
     * handle is allocated by ctrio__socket_alloc.) */
    if (s->fd >= 0)
        ((ctrio_socket *)s)->fd_shared = true;
    return s->fd;
}

int ctrio_socket_listen(ctrio_socket *s, int backlog)
{
    CHECK_SOCKET(s);
    return s->ops->listen ? s->ops->listen(s, backlog) : -EOPNOTSUPP;
}

int ctrio_socket_getpeername(ctrio_socket *s, struct sockaddr *addr, socklen_t *len)
{
    CHECK_SOCKET(s);
    if (!addr || !len)
        return -EINVAL;
    return s->ops->getpeername ? s->ops->getpeername(s, addr, len) : -EOPNOTSUPP;
}

int ctrio_socket_getsockname(ctrio_socket *s, struct sockaddr *addr, socklen_t *len)
{
    CHECK_SOCKET(s);
    if (!addr || !len)
        return -EINVAL;
    return s->ops->getsockname ? s->ops->getsockname(s, addr, len) : -EOPNOTSUPP;
}

int ctrio_socket_shutdown(ctrio_socket *s, int how)
{
    CHECK_SOCKET(s);
    if (!s->ops->shutdown)
        return -EOPNOTSUPP;
    int rc = s->ops->shutdown(s, how);
    /* Trio: did_shutdown_SHUT_WR only after a successful SHUT_WR/SHUT_RDWR */
    if (rc == 0 && (how == SHUT_WR || how == SHUT_RDWR))
        s->did_shutdown_wr = true;
    return rc;
}

int ctrio_socket_setsockopt(ctrio_socket *s, int level, int name, const void *val,
                            socklen_t len)
{
    CHECK_SOCKET(s);
    if (!val && len)
        return -EINVAL;
    return s->ops->setsockopt ? s->ops->setsockopt(s, level, name, val, len) : -EOPNOTSUPP;
}

int ctrio_socket_getsockopt(ctrio_socket *s, int level, int name, void *val, socklen_t *len)
{
    CHECK_SOCKET(s);
    if (!val || !len)
        return -EINVAL;
    return s->ops->getsockopt ? s->ops->getsockopt(s, level, name, val, len) : -EOPNOTSUPP;
}

int ctrio_socket_dup(ctrio_socket *s, ctrio_socket **out)
{
    CHECK_SOCKET(s);
    if (!out)
        return -EINVAL;
    *out = NULL;
    return s->ops->dup ? s->ops->dup(s, out) : -EOPNOTSUPP;
}

/* Better than Trio, whose detach is the stdlib socket's (trio/_socket.py
 * forwards it) and wakes nobody: detach wakes the tasks blocked on the
 * socket before giving the descriptor away. */
int ctrio_socket_detach(ctrio_socket *s)
{
    CHECK_SOCKET(s);
    if (s->fd < 0)
        return -EBADF;
    if (!ctrio__socket_is_real(s)) /* a custom socket owns more than a descriptor */
        return -EOPNOTSUPP;
    int fd = s->fd;
    ctrio_notify_closing(fd);
    s->fd = -1;
    if (ctrio__users_close(&s->users))
        free(s);
    return fd;
}

int ctrio_socket_set_inheritable(ctrio_socket *s, bool inheritable)
{
    CHECK_SOCKET(s);
    if (s->fd < 0)
        return -EBADF;
    int fl = CTRIO__SYS(fcntl(s->fd, F_GETFD));
    if (fl < 0)
        return -errno;
    fl = inheritable ? (fl & ~FD_CLOEXEC) : (fl | FD_CLOEXEC);
    return CTRIO__SYS(fcntl(s->fd, F_SETFD, fl)) < 0 ? -errno : 0;
}

int ctrio_socket_get_inheritable(ctrio_socket *s)
{
    CHECK_SOCKET(s);
    if (s->fd < 0)
        return -EBADF;
    int fl = CTRIO__SYS(fcntl(s->fd, F_GETFD));
    if (fl < 0)
        return -errno;
    return (fl & FD_CLOEXEC) ? 0 : 1;
}
