/*
 * listener.c — listeners (trio.abc.Listener): the generic layer over an
 * operations table, the listener over a listening socket
 * (trio.SocketListener), open_tcp_listeners, and Unix-domain listeners.
 *
 * The generic layer does what every listener shares, as stream.c does for
 * streams: argument and state checks, waking the tasks blocked in accept when
 * another task closes the listener (each accept runs in a cancel scope of its
 * own, which close cancels: a custom accept that waits on anything
 * cancellable is woken, whatever its close does), and keeping a closed
 * listener's memory until those tasks have let go of it.
 *
 * Two things go beyond Trio. Out of descriptors on accept, a socket listener
 * refuses the pending connection at once with libuv's spare-descriptor trick
 * (give back a descriptor kept for this, accept, close, take the spare
 * again) instead of leaving clients hanging in the backlog (Trio #73). And
 * open_tcp_listeners on port 0 gives every listener the same port (Trio #283).
 *
 * open_tcp_listeners_with adds SO_REUSEPORT, for one server spread over the
 * runs of a ctrio_run_parallel group: with port 0, the port the first run
 * bound is published in the group (parallel.c) and the others take it.
 */
#include "net.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* One accept call in progress, on its task's stack. */
typedef struct acceptor {
    ctrio__link link; /* in the listener's acceptors */
    ctrio_cancel_scope cs; /* cancelled by a close from another task */
} acceptor;

struct ctrio_listener {
    const ctrio_listener_ops *ops;
    void *impl; /* NULL once closed: ops->close released it */
    ctrio__link acceptors; /* the accept calls inside, for the close to wake */
    ctrio__users users;    /* the accept calls, and the close while ops->close
                              runs (it may yield: a wrapper closing what it
                              wraps): the acceptors it woke must not free it */
};

int ctrio_listener_new_custom(const ctrio_listener_ops *ops, void *impl, ctrio_listener **out)
{
    if (out)
        *out = NULL;
    if (!ops || !out)
        return -EINVAL;
    ctrio_listener *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->ops = ops;
    l->impl = impl;
    ctrio__list_init(&l->acceptors);
    *out = l;
    return 0;
}

const ctrio_listener_ops *ctrio_listener_get_ops(const ctrio_listener *l)
{
    return l ? l->ops : NULL;
}

void *ctrio_listener_impl(const ctrio_listener *l)
{
    return l ? l->impl : NULL;
}

int ctrio_listener_accept(ctrio_listener *l, ctrio_stream **out)
{
    if (!l || !out)
        return -EINVAL;
    *out = NULL;
    /* Before anything else: outside a task a socket's accept says -EPERM,
     * which a SocketListener would take for a failed connection's EPERM and
     * retry forever. */
    if (!ctrio__need_task("ctrio_listener_accept"))
        return -EPERM;
    if (!l->ops->accept)
        return -EOPNOTSUPP; /* a NULL entry: not supported (ctrio.h) */
    if (l->users.closed)
        return -EBADF;
    acceptor a;
    ctrio_cancel_scope_open(&a.cs);
    ctrio__list_push_back(&l->acceptors, &a.link);
    ctrio__users_hold(&l->users);
    int rc = l->ops->accept(l, out);
    ctrio__list_remove(&a.link);
    ctrio_cancel_scope_close(&a.cs, rc);
    if (rc < 0) {
        *out = NULL;
        if (l->users.closed)
            rc = -EBADF; /* Trio: ClosedResourceError, whatever woke the op */
    }
    if (ctrio__users_release(&l->users))
        free(l);
    return rc;
}

/* Cancel the accept calls of other tasks, before ops->close releases what
 * they wait on: the cancellation takes them off their wait queues now, so
 * that no queue in the released impl still links them. */
static void wake_acceptors(ctrio_listener *l)
{
    for (ctrio__link *k = l->acceptors.next; k != &l->acceptors; k = k->next)
        ctrio_cancel_scope_cancel(&ctrio__container_of(k, acceptor, link)->cs);
}

int ctrio_listener_close(ctrio_listener *l)
{
    if (!l)
        return -EINVAL;
    if (l->users.closed)
        return -EBADF;
    ctrio__users_hold(&l->users);
    (void)ctrio__users_close(&l->users); /* held: freed at the release below */
    wake_acceptors(l);
    int rc = l->ops->close ? l->ops->close(l) : 0;
    l->impl = NULL;
    if (ctrio__users_release(&l->users))
        free(l);
    /* Trio's aclose: close first, then a checkpoint (as ctrio_stream_close) */
    if (ctrio__current()) {
        int cp = ctrio_checkpoint();
        if (cp < 0)
            return cp;
    }
    return rc;
}

void ctrio_listeners_close(ctrio_listener **ls, size_t count)
{
    if (!ls)
        return;
    for (size_t i = 0; i < count; i++)
        if (ls[i])
            ctrio_listener_close(ls[i]);
    free(ls);
}

/* ---- SocketListener ------------------------------------------------------- */

typedef struct sock_listener {
    ctrio_socket *sock;
    int spare; /* a descriptor held in reserve for EMFILE, or -1 */
    /* a Unix listener's path, and the file it must still be to unlink it */
    char *path;
    dev_t dev;
    ino_t ino;
} sock_listener;

static int open_spare(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Errors of one failed connection, which accept skips (Trio's
 * _ignorable_accept_errnos). */
static bool ignorable(int e)
{
    switch (e) {
    case EPERM: case ECONNABORTED: case EPROTO: case ENETDOWN: case ENOPROTOOPT:
    case EHOSTDOWN: case ENONET: case EHOSTUNREACH: case EOPNOTSUPP: case ENETUNREACH:
    case ENOSR: case ESOCKTNOSUPPORT: case EPROTONOSUPPORT: case ETIMEDOUT: case ECONNRESET:
        return true;
    default:
        return false;
    }
}

/* Out of descriptors: refuse one pending connection now rather than let it
 * wait in the backlog for a server that cannot take it (libuv's trick). */
static void refuse_one(sock_listener *sl)
{
    int fd = sl->sock->fd;
    if (sl->spare < 0 || fd < 0)
        return;
    close(sl->spare);
    int c = CTRIO__SYS(accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (c >= 0)
        close(c);
    sl->spare = open_spare();
}

static int sock_accept(ctrio_listener *l, ctrio_stream **out)
{
    for (;;) {
        ctrio_socket *conn;
        /* the socket layer holds the socket while it waits */
        int rc = ctrio_socket_accept(((sock_listener *)ctrio_listener_impl(l))->sock, &conn,
                                     NULL, NULL);
        if (rc == 0) {
            rc = ctrio_socket_stream_new(conn, out);
            if (rc < 0)
                ctrio_socket_close(conn);
            return rc;
        }
        sock_listener *sl = ctrio_listener_impl(l);
        if (!sl)
            return rc; /* closed meanwhile: sl was released */
        if (rc == -EMFILE || rc == -ENFILE)
            refuse_one(sl);
        if (!ignorable(-rc))
            return rc;
    }
}

/* Trio #279: unlink the path only if it is still the socket we bound, not a
 * file someone put there since. */
static void unlink_if_ours(const sock_listener *sl)
{
    struct stat st;
    if (sl->path && lstat(sl->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == sl->dev &&
        st.st_ino == sl->ino)
        unlink(sl->path);
}

static int sock_close(ctrio_listener *l)
{
    sock_listener *sl = ctrio_listener_impl(l);
    int rc = ctrio_socket_close(sl->sock);
    unlink_if_ours(sl);
    free(sl->path);
    if (sl->spare >= 0)
        close(sl->spare);
    free(sl);
    return rc;
}

static const ctrio_listener_ops socket_listener_ops = {
    .accept = sock_accept,
    .close = sock_close,
};

int ctrio_socket_listener_new(ctrio_socket *sock, ctrio_listener **out)
{
    if (!sock || !out)
        return -EINVAL;
    *out = NULL;
    if (ctrio_socket_type(sock) != SOCK_STREAM)
        return -EINVAL;
    int acc = 0;
    socklen_t len = sizeof acc;
    if (ctrio_socket_getsockopt(sock, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) == 0 && !acc)
        return -EINVAL; /* Trio: SocketListener requires a listening socket */
    sock_listener *sl = calloc(1, sizeof *sl);
    if (!sl)
        return -ENOMEM;
    sl->sock = sock;
    sl->spare = open_spare();
    int rc = ctrio_listener_new_custom(&socket_listener_ops, sl, out);
    if (rc < 0) { /* the socket stays the caller's */
        if (sl->spare >= 0)
            close(sl->spare);
        free(sl);
    }
    return rc;
}

ctrio_socket *ctrio_socket_listener_socket(ctrio_listener *l)
{
    if (!l || l->ops != &socket_listener_ops || !l->impl)
        return NULL;
    return ((sock_listener *)l->impl)->sock;
}

/* ---- open_tcp_listeners -------------------------------------------------- */

/* The options that may fail: SO_REUSEPORT (which a kernel or family may
 * refuse: say so rather than listen alone on a port meant to be shared) and
 * SO_INCOMING_CPU. */
static int set_options(ctrio_socket *s, const ctrio_tcp_listen_options *o)
{
    int one = 1;
    int rc = 0;
    if (o->reuseport)
        rc = ctrio_socket_setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (rc == 0 && o->incoming_cpu) {
        int cpu = ctrio__run_cpu();
        rc = cpu < 0 ? cpu
                     : ctrio_socket_setsockopt(s, SOL_SOCKET, SO_INCOMING_CPU, &cpu, sizeof cpu);
    }
    return rc;
}

static int listen_on(const struct addrinfo *ai, int port, const ctrio_tcp_listen_options *o,
                     ctrio_socket **out)
{
    ctrio_socket *s;
    int rc = ctrio_socket_open(ai->ai_family, ai->ai_socktype, ai->ai_protocol, &s);
    if (rc < 0)
        return rc;
    int one = 1;
    /* Trio: SO_REUSEADDR on Unix (never on Windows); V6ONLY so that the
     * IPv6 listener does not also take the IPv4 port. */
    ctrio_socket_setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6)
        ctrio_socket_setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    rc = set_options(s, o);
    if (rc < 0) {
        ctrio_socket_close(s);
        return rc;
    }
    struct sockaddr_storage ss;
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    if (ai->ai_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
    else if (ai->ai_family == AF_INET6)
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
    rc = ctrio_socket_bind(s, (struct sockaddr *)&ss, ai->ai_addrlen);
    if (rc == 0)
        rc = ctrio_socket_listen(s, o->backlog);
    if (rc < 0) {
        ctrio_socket_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

static int bound_port(ctrio_socket *s)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (ctrio_socket_getsockname(s, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

static void close_listeners(ctrio_listener **ls, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        ctrio_listener_close(ls[i]);
    *n = 0;
}

/* One try at listening on every address; with port 0 the first listener
 * picks the port and the others take the same one (-EADDRINUSE: try again). */
static int listen_all(const struct addrinfo *res, int port, const ctrio_tcp_listen_options *o,
                      ctrio_listener **ls, size_t *n)
{
    int rc = 0;
    int unsupported = 0;
    *n = 0;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        ctrio_socket *s;
        rc = listen_on(ai, port, o, &s);
        if (rc == -EAFNOSUPPORT) { /* Trio: skip families the host lacks */
            unsupported++;
            rc = 0;
            continue;
        }
        if (rc < 0)
            break;
        if (port == 0) {
            int p = bound_port(s);
            if (p > 0)
                port = p; /* the others take the same one */
        }
        rc = ctrio_socket_listener_new(s, &ls[*n]);
        if (rc < 0) {
            ctrio_socket_close(s);
            break;
        }
        (*n)++;
    }
    if (rc == 0 && *n == 0)
        rc = unsupported ? -EAFNOSUPPORT : -EADDRNOTAVAIL;
    if (rc < 0)
        close_listeners(ls, n);
    return rc;
}

/* listen_all, picking the port again when port 0's choice was taken in
 * another family. */
static int listen_retry(const struct addrinfo *res, size_t naddr, int port,
                        const ctrio_tcp_listen_options *o, ctrio_listener **ls, size_t *n)
{
    int rc = 0;
    for (int attempt = 0; attempt < 20; attempt++) {
        rc = listen_all(res, port, o, ls, n);
        if (!(rc == -EADDRINUSE && port == 0 && naddr > 1))
            break; /* the shared port was taken in another family: pick again */
    }
    return rc;
}

/* Port 0 with SO_REUSEPORT in a group of runs: every run takes the port the
 * first one to bind published (parallel.c). Two runs may bind at once: the
 * one that publishes second closes its listeners and binds the winner's. */
static int listen_shared(const struct addrinfo *res, size_t naddr, const char *host,
                         const ctrio_tcp_listen_options *o, ctrio_listener **ls, size_t *n)
{
    int port = ctrio__group_port_get(host);
    int rc = listen_retry(res, naddr, port, o, ls, n);
    if (rc < 0 || port > 0)
        return rc;
    int got = bound_port(ctrio_socket_listener_socket(ls[0]));
    int stands = got > 0 ? ctrio__group_port_publish(host, got) : -EADDRNOTAVAIL;
    if (stands == got)
        return 0;
    close_listeners(ls, n);
    return stands < 0 ? stands : listen_retry(res, naddr, stands, o, ls, n);
}

int ctrio_open_tcp_listeners_with(int port, const char *host, const ctrio_tcp_listen_options *opts,
                                  ctrio_listener ***out, size_t *count)
{
    if (!out || !count || port < 0 || port > 65535)
        return -EINVAL;
    *out = NULL;
    *count = 0;
    ctrio_tcp_listen_options o = {0};
    if (opts)
        o = *opts;
    if (o.backlog <= 0 || o.backlog > 0xFFFF)
        o.backlog = 0xFFFF; /* Trio: as large as the system allows */
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo *res;
    int rc = ctrio_getaddrinfo(host, service, &hints, &res);
    if (rc < 0)
        return rc;
    size_t naddr = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        naddr++;
    ctrio_listener **ls = calloc(naddr ? naddr : 1, sizeof *ls);
    if (!ls) {
        ctrio_freeaddrinfo(res);
        return -ENOMEM;
    }
    size_t n = 0;
    if (port == 0 && o.reuseport)
        rc = listen_shared(res, naddr, host, &o, ls, &n);
    else
        rc = listen_retry(res, naddr, port, &o, ls, &n);
    ctrio_freeaddrinfo(res);
    if (rc < 0) {
        free(ls);
        return rc;
    }
    *out = ls;
    *count = n;
    return 0;
}

int ctrio_open_tcp_listeners(int port, const char *host, int backlog, ctrio_listener ***out,
                             size_t *count)
{
    ctrio_tcp_listen_options o = {0};
    o.backlog = backlog;
    return ctrio_open_tcp_listeners_with(port, host, &o, out, count);
}

/* ---- Unix-domain listeners ----------------------------------------------- */

int ctrio_open_unix_listener(const char *path, int backlog, ctrio_listener **out)
{
    if (!path || !out)
        return -EINVAL;
    *out = NULL;
    if (backlog <= 0 || backlog > 0xFFFF)
        backlog = 0xFFFF;
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = ctrio_sockaddr_parse(AF_UNIX, path, 0, &ss, &len);
    if (rc < 0)
        return rc;
    ctrio_socket *s;
    rc = ctrio_socket_open(AF_UNIX, SOCK_STREAM, 0, &s);
    if (rc < 0)
        return rc;
    ctrio_listener *l = NULL;
    bool made_file = false;
    struct stat st;
    if ((rc = ctrio_socket_bind(s, (struct sockaddr *)&ss, len)) < 0)
        goto fail;
    if (path[0] != '@') { /* not an abstract name: bind made a file */
        if (stat(path, &st) < 0) {
            rc = -errno;
            goto fail;
        }
        made_file = true;
    }
    if ((rc = ctrio_socket_listen(s, backlog)) < 0 || (rc = ctrio_socket_listener_new(s, &l)) < 0)
        goto fail;
    if (made_file) {
        sock_listener *sl = l->impl;
        sl->dev = st.st_dev;
        sl->ino = st.st_ino;
        if (!(sl->path = strdup(path))) {
            rc = -ENOMEM;
            goto fail;
        }
    }
    *out = l;
    return 0;
fail: /* one exit: close what was made, unlink the file we made */
    if (l)
        ctrio_listener_close(l); /* closes s too (no path: nothing unlinked) */
    else
        ctrio_socket_close(s);
    struct stat now;
    if (made_file && lstat(path, &now) == 0 && now.st_dev == st.st_dev && now.st_ino == st.st_ino)
        unlink(path); /* the file we made, for a listener we could not make */
    return rc;
}
