/*
 * listener.c — TLS listeners and servers (trio.SSLListener,
 * trio.serve_ssl_over_tcp): a listener that wraps every stream another
 * listener accepts in a server TLS stream. The handshake is not done here
 * but at the stream's first use, in the handler's task, so that a client
 * that stalls or fails its handshake holds up no one else.
 */
#include "tls.h"

typedef struct tls_listener {
    ctrio_listener *transport;
    ctrio_tls_context *ctx;
    int flags;
} tls_listener;

static int tl_accept(ctrio_listener *l, ctrio_stream **out)
{
    tls_listener *tl = ctrio_listener_impl(l);
    /* our own references: a close from another task may release tl while
     * this accept waits (ctrio.h, ctrio_listener_ops) */
    ctrio_tls_context *ctx = tl->ctx;
    int flags = tl->flags;
    ctrio__tls_context_ref(ctx);
    ctrio_stream *s;
    int rc = ctrio_listener_accept(tl->transport, &s);
    if (rc == 0) {
        rc = ctrio_tls_stream_new(s, ctx, NULL, flags | CTRIO_TLS_SERVER, out);
        if (rc < 0)
            ctrio_stream_close(s);
    }
    ctrio_tls_context_free(ctx);
    return rc;
}

static int tl_close(ctrio_listener *l)
{
    tls_listener *tl = ctrio_listener_impl(l);
    int rc = ctrio_listener_close(tl->transport);
    ctrio_tls_context_free(tl->ctx);
    free(tl);
    return rc;
}

static const ctrio_listener_ops tls_listener_ops = {
    .accept = tl_accept,
    .close = tl_close,
};

int ctrio_tls_listener_new(ctrio_listener *transport, ctrio_tls_context *ctx, int flags,
                           ctrio_listener **out)
{
    if (out)
        *out = NULL;
    if (!transport || !ctx || !out || (flags & ~(CTRIO_TLS_SERVER | CTRIO_TLS_HTTPS_COMPATIBLE)))
        return -EINVAL;
    tls_listener *tl = calloc(1, sizeof *tl);
    if (!tl)
        return -ENOMEM;
    int rc = ctrio_listener_new_custom(&tls_listener_ops, tl, out);
    if (rc < 0) {
        free(tl);
        return rc;
    }
    tl->transport = transport;
    tl->ctx = ctx;
    tl->flags = flags & CTRIO_TLS_HTTPS_COMPATIBLE;
    ctrio__tls_context_ref(ctx);
    return 0;
}

ctrio_listener *ctrio_tls_listener_transport(ctrio_listener *l)
{
    if (ctrio_listener_get_ops(l) != &tls_listener_ops)
        return NULL;
    tls_listener *tl = ctrio_listener_impl(l);
    return tl ? tl->transport : NULL;
}

int ctrio_serve_tls_over_tcp(ctrio_stream_handler h, void *arg, int port, const char *host,
                             ctrio_tls_context *ctx, int flags, int backlog)
{
    if (!h || !ctx || (flags & ~(CTRIO_TLS_SERVER | CTRIO_TLS_HTTPS_COMPATIBLE)))
        return -EINVAL;
    ctrio_listener **ls;
    size_t n;
    int rc = ctrio_open_tcp_listeners(port, host, backlog, &ls, &n);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        ctrio_listener *tl;
        rc = ctrio_tls_listener_new(ls[i], ctx, flags, &tl);
        if (rc == 0)
            ls[i] = tl; /* owns the TCP listener from now on */
    }
    if (rc == 0)
        rc = ctrio_serve_listeners(h, arg, ls, n);
    ctrio_listeners_close(ls, n); /* after serving, every entry is NULL */
    return rc;
}
