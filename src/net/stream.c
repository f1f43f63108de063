/*
 * stream.c — streams (trio.abc.HalfCloseableStream) and the stream over a
 * socket (trio.SocketStream).
 *
 * The generic layer does what every stream shares: refusing a second
 * concurrent receiver or sender with -EBUSY (Trio's ConflictDetector), and
 * keeping a closed stream's memory until the tasks that were blocked in it
 * (and were woken with -EBADF by the close) have let go of it.
 */
#include "net.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

struct ctrio_stream {
    const ctrio_stream_ops *ops;
    void *impl;
    ctrio__users users; /* closed by ctrio_stream_close */
    bool receiving, sending, eof_sent;
};

int ctrio_stream_new_custom(const ctrio_stream_ops *ops, void *impl, ctrio_stream **out)
{
    if (!ops || !out)
        return -EINVAL;
    ctrio_stream *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->ops = ops;
    s->impl = impl;
    *out = s;
    return 0;
}

void *ctrio_stream_impl(const ctrio_stream *s)
{
    return s ? s->impl : NULL;
}

const ctrio_stream_ops *ctrio_stream_get_ops(const ctrio_stream *s)
{
    return s ? s->ops : NULL;
}

static ssize_t release(ctrio_stream *s, ssize_t rc)
{
    if (ctrio__users_release(&s->users))
        free(s);
    return rc;
}

ssize_t ctrio_stream_receive_some(ctrio_stream *s, void *buf, size_t max)
{
    if (!s || !buf || max == 0)
        return -EINVAL;
    if (!s->ops->receive_some)
        return -EOPNOTSUPP; /* a NULL entry: not supported (ctrio.h) */
    if (s->users.closed)
        return -EBADF;
    if (s->receiving)
        return -EBUSY; /* Trio: "another task is using this stream for receive" */
    s->receiving = true;
    ctrio__users_hold(&s->users);
    ssize_t rc = s->ops->receive_some(s, buf, max);
    if (!s->users.closed)
        s->receiving = false;
    return release(s, rc);
}

/* send_all, send_eof and wait_send_all_might_not_block share one detector. */
#define SEND_SIDE(s, call)                                                                        \
    do {                                                                                          \
        if (s->users.closed)                                                                      \
            return -EBADF;                                                                        \
        if (s->sending)                                                                           \
            return -EBUSY;                                                                        \
        s->sending = true;                                                                        \
        ctrio__users_hold(&s->users);                                                             \
        ssize_t rc_ = (call);                                                                     \
        if (!s->users.closed)                                                                     \
            s->sending = false;                                                                   \
        return (int)release(s, rc_);                                                              \
    } while (0)

int ctrio_stream_send_all(ctrio_stream *s, const void *buf, size_t len)
{
    if (!s || (!buf && len))
        return -EINVAL;
    if (!s->ops->send_all)
        return -EOPNOTSUPP;
    if (s->eof_sent)
        return -EBADF; /* Trio: can't send data after sending EOF, even if busy */
    SEND_SIDE(s, s->ops->send_all(s, buf, len));
}

int ctrio_stream_send_eof(ctrio_stream *s)
{
    if (!s)
        return -EINVAL;
    if (!s->ops->send_eof)
        return -EOPNOTSUPP;
    if (s->users.closed)
        return -EBADF;
    if (s->sending)
        return -EBUSY;
    s->sending = true;
    ctrio__users_hold(&s->users);
    int rc = s->ops->send_eof(s);
    if (!s->users.closed) {
        s->sending = false;
        if (rc == 0)
            s->eof_sent = true;
    }
    return (int)release(s, rc);
}

int ctrio_stream_wait_send_all_might_not_block(ctrio_stream *s)
{
    if (!s)
        return -EINVAL;
    if (!s->ops->wait_send_all_might_not_block)
        return -EOPNOTSUPP;
    SEND_SIDE(s, s->ops->wait_send_all_might_not_block(s));
}

/* serve.c: keep a handler's stream alive across the handler, which may close
 * it itself (Trio's aclose is idempotent); the server closes it only if the
 * handler did not. */
void ctrio__stream_hold(ctrio_stream *s)
{
    ctrio__users_hold(&s->users);
}

bool ctrio__stream_is_closed(const ctrio_stream *s)
{
    return s->users.closed;
}

void ctrio__stream_unhold(ctrio_stream *s)
{
    release(s, 0);
}

int ctrio_stream_close(ctrio_stream *s)
{
    if (!s)
        return -EINVAL;
    if (s->users.closed)
        return -EBADF;
    /* closed first: ops->close may block (a TLS close_notify), and a call
     * or a second close meanwhile must see a closed stream; held across it
     * so that no one frees the stream under it */
    ctrio__users_hold(&s->users);
    (void)ctrio__users_close(&s->users); /* held: freed at the release below */
    int rc = s->ops->close ? s->ops->close(s) : 0;
    release(s, 0);
    /* Trio's aclose: close first, then a checkpoint (outside a task there
     * is nothing to yield to). */
    if (ctrio__current()) {
        int cp = ctrio_checkpoint();
        if (cp < 0)
            return cp;
    }
    return rc;
}

/* ---- SocketStream ------------------------------------------------------- */

/* Trio's `socket.fileno() == -1` test for a socket closed underneath the
 * stream. Only a kernel socket can say so by its descriptor: a custom socket
 * has none (fileno -1 always) and reports -EBADF from its own operations. */
static bool sock_gone(ctrio_socket *sock)
{
    return ctrio__socket_is_real(sock) && sock->fd < 0;
}

static ssize_t sock_receive_some(ctrio_stream *st, void *buf, size_t max)
{
    return ctrio_socket_recv(st->impl, buf, max, 0);
}

static int sock_send_all_held(ctrio_socket *sock, const void *buf, size_t len);

/* The socket is held for the whole loop: each send may yield, and a close
 * from another task must not free it between two sends. */
static int sock_send_all(ctrio_stream *st, const void *buf, size_t len)
{
    ctrio_socket *sock = st->impl;
    ctrio__socket_hold(sock);
    int rc = sock_send_all_held(sock, buf, len);
    ctrio__socket_unhold(sock);
    return rc;
}

static int sock_send_all_held(ctrio_socket *sock, const void *buf, size_t len)
{
    if (ctrio_socket_did_shutdown_wr(sock))
        return -EBADF; /* Trio: can't send data after sending EOF */
    if (len == 0) {
        if (sock_gone(sock))
            return -EBADF;
        return ctrio_checkpoint();
    }
    const char *p = buf;
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = ctrio_socket_send(sock, p + sent, len - sent, 0);
        if (n < 0)
            return (int)n;
        sent += (size_t)n;
    }
    return 0;
}

static int sock_send_eof(ctrio_stream *st)
{
    ctrio_socket *sock = st->impl;
    ctrio__socket_hold(sock); /* across the checkpoint */
    int rc = ctrio_checkpoint();
    /* a second shutdown: macOS says ENOTCONN, so Trio keeps the flag */
    if (rc == 0 && !ctrio_socket_did_shutdown_wr(sock))
        rc = ctrio_socket_shutdown(sock, SHUT_WR);
    ctrio__socket_unhold(sock);
    return rc;
}

static int sock_wait_send(ctrio_stream *st)
{
    ctrio_socket *sock = st->impl;
    if (sock_gone(sock))
        return -EBADF;
    return ctrio_socket_wait_writable(sock);
}

static int sock_close(ctrio_stream *st)
{
    return ctrio_socket_close(st->impl);
}

static const ctrio_stream_ops socket_stream_ops = {
    .receive_some = sock_receive_some,
    .send_all = sock_send_all,
    .send_eof = sock_send_eof,
    .wait_send_all_might_not_block = sock_wait_send,
    .close = sock_close,
};

int ctrio_socket_stream_new(ctrio_socket *sock, ctrio_stream **out)
{
    if (!sock || !out)
        return -EINVAL;
    *out = NULL;
    if (ctrio_socket_type(sock) != SOCK_STREAM)
        return -EINVAL; /* Trio: SocketStream requires a SOCK_STREAM socket */
    int fam = ctrio_socket_family(sock);
    if (fam == AF_INET || fam == AF_INET6) {
        /* As Trio: Nagle off (trio #72); a small unsent-data watermark so
         * that wait_send_all_might_not_block means something. Errors are
         * ignored: these are optimisations. */
        int one = 1, lowat = 16384;
        ctrio_socket_setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ctrio_socket_setsockopt(sock, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
    }
    return ctrio_stream_new_custom(&socket_stream_ops, sock, out);
}

ctrio_socket *ctrio_socket_stream_socket(ctrio_stream *s)
{
    return s && s->ops == &socket_stream_ops ? s->impl : NULL;
}
