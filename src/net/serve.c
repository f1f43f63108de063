/*
 * serve.c — serving connections (trio.serve_listeners, serve_tcp): an
 * accept loop per listener, a task per connection, in one nursery. Only the
 * generic listener and stream calls are used, so any listener is served
 * (socket, Unix, TLS, custom), and the wait-and-retry on EMFILE, ENFILE,
 * ENOMEM, ENOBUFS holds for all of them.
 */
#include "net.h"

typedef struct serve_ctx {
    ctrio_stream_handler handler;
    void *arg;
    ctrio_nursery *conns; /* where connection tasks go */
} serve_ctx;

typedef struct conn {
    serve_ctx *ctx;
    ctrio_stream *stream;
} conn;

static int conn_task(void *p)
{
    conn *c = p;
    ctrio_stream *s = c->stream;
    ctrio__stream_hold(s); /* the handler may close it itself */
    int rc = c->ctx->handler(s, c->ctx->arg);
    free(c);
    /* Trio closes the stream forcefully when the handler is done: a close in
     * a cancelled scope, so that a slow peer cannot hold the task. */
    if (!ctrio__stream_is_closed(s)) {
        ctrio_cancel_scope cs;
        ctrio_cancel_scope_open(&cs);
        ctrio_cancel_scope_cancel(&cs);
        ctrio_cancel_scope_close(&cs, ctrio_stream_close(s));
    }
    ctrio__stream_unhold(s);
    return rc;
}

typedef struct accept_ctx {
    serve_ctx *ctx;
    ctrio_listener *l;
    double noted_at;       /* when the last accept-retry note was logged */
    unsigned long unnoted; /* retries since then, not logged */
    bool noted;
} accept_ctx;

static bool resource_error(int rc)
{
    return rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM || rc == -ENOBUFS;
}

/* Trio logs every retry; out of descriptors that is ten lines a second for
 * as long as it lasts (48 lines from one EMFILE-bound server), so at most one
 * note a second per listener, with the number of retries left out. */
static void note_retry(accept_ctx *a, int rc)
{
    double now = ctrio_current_time();
    if (a->noted && now - a->noted_at < 1.0) {
        a->unnoted++;
        return;
    }
    if (a->unnoted)
        ctrio__log(CTRIO_LOG_WARNING,
                   "accept: %s; retrying in 100 ms (%lu more retries in the last %.1f s)",
                   ctrio_strerror(rc), a->unnoted, now - a->noted_at);
    else
        ctrio__log(CTRIO_LOG_WARNING, "accept: %s; retrying in 100 ms", ctrio_strerror(rc));
    a->noted = true;
    a->noted_at = now;
    a->unnoted = 0;
}

static int accept_loop(void *p)
{
    accept_ctx *a = p;
    for (;;) {
        ctrio_stream *s;
        int rc = ctrio_listener_accept(a->l, &s);
        if (resource_error(rc)) {
            /* Trio: log it and wait 100 ms for descriptors to come back */
            note_retry(a, rc);
            rc = ctrio_sleep(0.1);
            if (rc < 0)
                return rc;
            continue;
        }
        if (rc < 0)
            return rc;
        conn *c = malloc(sizeof *c);
        if (!c) {
            ctrio_stream_close(s);
            continue;
        }
        c->ctx = a->ctx;
        c->stream = s;
        rc = ctrio_start_soon(a->ctx->conns, conn_task, c);
        if (rc < 0) {
            free(c);
            ctrio_stream_close(s);
            return rc;
        }
    }
}

/* Close the listeners and clear their entries: the array stays the caller's,
 * who may then free it with free() or ctrio_listeners_close (which skips the
 * NULL entries) without touching a freed listener. */
static void close_all(ctrio_listener **ls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ctrio_listener_close(ls[i]);
        ls[i] = NULL;
    }
}

int ctrio_serve_listeners(ctrio_stream_handler h, void *arg, ctrio_listener **ls, size_t n)
{
    if (!h || !ls || n == 0 || !ctrio__need_task("ctrio_serve_listeners"))
        return !h || !ls || n == 0 ? -EINVAL : -EPERM; /* nothing touched */
    accept_ctx *acc = calloc(n, sizeof *acc);
    if (!acc) {
        close_all(ls, n);
        return -ENOMEM;
    }
    ctrio_nursery nursery;
    serve_ctx ctx = {h, arg, &nursery};
    ctrio_listener_set set = {ls, n};
    ctrio_nursery_open(&nursery);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        acc[i].ctx = &ctx;
        acc[i].l = ls[i];
        rc = ctrio_start_soon(&nursery, accept_loop, &acc[i]);
    }
    if (rc == 0 && ctrio__task_awaits_started())
        ctrio_task_started(&set);
    if (rc == 0)
        rc = ctrio_sleep_forever(); /* the accept loops and handlers do the work */
    rc = ctrio_nursery_close(&nursery, rc);
    close_all(ls, n);
    free(acc);
    return rc;
}

int ctrio_serve_tcp(ctrio_stream_handler h, void *arg, int port, const char *host, int backlog)
{
    ctrio_tcp_listen_options o = {0};
    o.backlog = backlog;
    return ctrio_serve_tcp_with(h, arg, port, host, &o);
}

int ctrio_serve_tcp_with(ctrio_stream_handler h, void *arg, int port, const char *host,
                         const ctrio_tcp_listen_options *opts)
{
    ctrio_listener **ls;
    size_t n;
    int rc = ctrio_open_tcp_listeners_with(port, host, opts, &ls, &n);
    if (rc < 0)
        return rc;
    rc = ctrio_serve_listeners(h, arg, ls, n);
    free(ls);
    return rc;
}

int ctrio_serve_unix(ctrio_stream_handler h, void *arg, const char *path, int backlog)
{
    ctrio_listener *l;
    int rc = ctrio_open_unix_listener(path, backlog, &l);
    if (rc < 0)
        return rc;
    ctrio_listener *ls[1] = {l};
    return ctrio_serve_listeners(h, arg, ls, 1);
}
