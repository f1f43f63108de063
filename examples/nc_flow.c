/*
 * nc_flow.c — nc's flow (see nc.c for what the program does and shows):
 * set up the connection, then one task per direction. Its stdin, stdout and
 * stderr are parameters (nc.h), so that tests/test_sweep.c runs this very
 * code over pipes and files.
 */
#include "nc.h"

#ifdef NC_TLS /* examples/CMakeLists.txt: when libctrio_tls is built */
#include <ctrio_tls.h>
#endif

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The connection: a stream (TCP, Unix) or a connected UDP socket, and the
 * two ends it is copied from and to. */
typedef struct conn {
    ctrio_stream *stream;
    ctrio_socket *dgram;
    int in_fd, out_fd;
    bool in_file, out_file; /* regular files (or /dev/null): epoll cannot watch them */
} conn;

/* ---- stdin and stdout ---------------------------------------------------- */

typedef struct read_args {
    int fd;
    void *buf;
    size_t max;
    ssize_t n;
} read_args;

static int read_in_thread(void *arg)
{
    read_args *r = arg;
    r->n = read(r->fd, r->buf, r->max);
    return r->n < 0 ? -errno : 0;
}

static ssize_t read_stdin(conn *c, void *buf, size_t max)
{
    if (!c->in_file) {
        int rc = ctrio_wait_readable(c->in_fd);
        if (rc == -EPERM)
            c->in_file = true; /* a regular file or /dev/null */
        else if (rc < 0)
            return rc;
    }
    if (!c->in_file) { /* readable: this read returns without blocking */
        ssize_t n = read(c->in_fd, buf, max);
        return n < 0 ? -errno : n;
    }
    read_args r = {c->in_fd, buf, max, 0};
    int rc = ctrio_to_thread_run_sync(read_in_thread, &r, 0);
    return rc < 0 ? rc : r.n;
}

static int write_stdout(conn *c, const char *p, size_t n)
{
    while (n > 0) {
        if (!c->out_file) {
            int rc = ctrio_wait_writable(c->out_fd);
            if (rc == -EPERM)
                c->out_file = true; /* a regular file: writes do not wait */
            else if (rc < 0)
                return rc;
        }
        ssize_t w = write(c->out_fd, p, n);
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ---- the connection ------------------------------------------------------ */

static ssize_t conn_recv(conn *c, void *buf, size_t max)
{
    if (c->stream)
        return ctrio_stream_receive_some(c->stream, buf, max);
    return ctrio_socket_recv(c->dgram, buf, max, 0);
}

static int conn_send(conn *c, const void *buf, size_t len)
{
    if (c->stream)
        return ctrio_stream_send_all(c->stream, buf, len);
    ssize_t n = ctrio_socket_send(c->dgram, buf, len, 0); /* one datagram */
    return n < 0 ? (int)n : 0;
}

static void conn_close(conn *c)
{
    if (c->stream)
        ctrio_stream_close(c->stream);
    if (c->dgram)
        ctrio_socket_close(c->dgram);
}

/* Says where we listen, and keeps the port for ctrio_task_started. */
static void print_address(nc_options *o, ctrio_socket *sock)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char text[128];
    if (ctrio_socket_getsockname(sock, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
        o->bound_port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                      : ((struct sockaddr_in6 *)&ss)->sin6_port);
    if (o->err && ctrio_sockaddr_format((struct sockaddr *)&ss, len, text, sizeof text) >= 0)
        fprintf(o->err, "listening on %s\n", text);
}

/* ---- setting up: connect, or listen for one peer -------------------------- */

typedef struct race {
    ctrio_nursery nursery;
    ctrio_stream *winner;
} race;

typedef struct acceptor {
    race *race;
    ctrio_listener *listener;
} acceptor;

static int accept_one(void *arg)
{
    acceptor *a = arg;
    ctrio_stream *s;
    int rc = ctrio_listener_accept(a->listener, &s);
    if (rc < 0)
        return rc;
    if (a->race->winner) { /* two at once: keep the first */
        ctrio_stream_close(s);
        return 0;
    }
    a->race->winner = s;
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&a->race->nursery));
    return 0;
}

/* Accept on every listener at once; the first connection wins. */
static int accept_first(ctrio_listener **ls, size_t n, ctrio_stream **out)
{
    race r = {.winner = NULL};
    acceptor *as = calloc(n, sizeof *as);
    if (!as)
        return -ENOMEM;
    ctrio_nursery_open(&r.nursery);
    for (size_t i = 0; i < n; i++) {
        as[i] = (acceptor){&r, ls[i]};
        ctrio_start_soon(&r.nursery, accept_one, &as[i]);
    }
    int rc = ctrio_nursery_close(&r.nursery, 0);
    free(as);
    if (rc < 0 && r.winner)
        ctrio_stream_close(r.winner);
    else
        *out = r.winner;
    return rc;
}

static int stream_listen(nc_options *o, conn *c)
{
    ctrio_listener **ls = NULL, *unix_listener;
    size_t n = 1;
    int rc;
    if (o->unix_socket) {
        rc = ctrio_open_unix_listener(o->port, 1, &unix_listener);
        ls = &unix_listener;
    } else {
        rc = ctrio_open_tcp_listeners(atoi(o->port), o->host, 1, &ls, &n);
    }
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++)
        print_address(o, ctrio_socket_listener_socket(ls[i]));
    ctrio_task_started(NULL);
    rc = accept_first(ls, n, &c->stream);
    /* One peer only: stop listening (a Unix listener removes its path). */
    if (o->unix_socket)
        ctrio_listener_close(unix_listener);
    else
        ctrio_listeners_close(ls, n);
    return rc;
}

/* A UDP socket, bound (listen) or connected (client) to HOST PORT. */
static int udp_open(const nc_options *o, conn *c)
{
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = o->listen ? AI_PASSIVE : 0};
    struct addrinfo *ai;
    int rc = ctrio_getaddrinfo(o->host, o->port, &hints, &ai);
    if (rc < 0)
        return rc;
    rc = ctrio_socket_open(ai->ai_family, ai->ai_socktype, ai->ai_protocol, &c->dgram);
    if (rc == 0 && o->listen)
        rc = ctrio_socket_bind(c->dgram, ai->ai_addr, ai->ai_addrlen);
    else if (rc == 0)
        rc = ctrio_socket_connect(c->dgram, ai->ai_addr, ai->ai_addrlen);
    ctrio_freeaddrinfo(ai);
    return rc;
}

/* UDP "listen": wait for a first datagram, then talk to its sender only. */
static int udp_listen(nc_options *o, conn *c)
{
    int rc = udp_open(o, c);
    if (rc < 0)
        return rc;
    print_address(o, c->dgram);
    ctrio_task_started(NULL);
    char *buf = malloc(65536);
    if (!buf)
        return -ENOMEM;
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    ssize_t n = ctrio_socket_recvfrom(c->dgram, buf, 65536, 0, (struct sockaddr *)&peer, &len);
    rc = n < 0 ? (int)n : ctrio_socket_connect(c->dgram, (struct sockaddr *)&peer, len);
    if (rc == 0)
        rc = write_stdout(c, buf, (size_t)n);
    free(buf);
    return rc;
}

static int open_connection(nc_options *o, conn *c)
{
    if (o->udp)
        return o->listen ? udp_listen(o, c) : udp_open(o, c);
    if (o->listen)
        return stream_listen(o, c);
    if (o->unix_socket)
        return ctrio_open_unix_socket(o->port, &c->stream);
    return ctrio_open_tcp_stream(o->host, atoi(o->port), &c->stream);
}

#ifdef NC_TLS
static int tls_context(const nc_options *o, ctrio_tls_context **ctx)
{
    if (o->listen)
        return ctrio_tls_server_context(o->cert, o->key, ctx);
    int rc = ctrio_tls_client_context(ctx);
    if (rc == 0 && o->cafile)
        rc = ctrio_tls_context_load_ca(*ctx, o->cafile);
    return rc;
}

/* --tls: wrap the connected (or accepted) stream, and shake hands now, so
 * that a bad certificate fails here, with OpenSSL's reason. */
static int tls_wrap(const nc_options *o, ctrio_tls_context *ctx, conn *c)
{
    ctrio_stream *s;
    int rc = ctrio_tls_stream_new(c->stream, ctx, o->listen ? NULL : o->host,
                                  o->listen ? CTRIO_TLS_SERVER : 0, &s);
    if (rc < 0)
        return rc; /* c->stream is still the plain one: conn_close closes it */
    c->stream = s;
    rc = ctrio_tls_stream_handshake(s);
    const char *why = ctrio_tls_stream_error(s);
    if (rc < 0 && why && o->err)
        fprintf(o->err, "nc: TLS handshake: %s\n", why);
    return rc;
}
#else
typedef struct ctrio_tls_context ctrio_tls_context;

static int tls_context(const nc_options *o, ctrio_tls_context **ctx)
{
    *ctx = NULL;
    if (o->err)
        fprintf(o->err, "nc: built without TLS (OpenSSL 3 not found)\n");
    return -EPROTONOSUPPORT;
}

static int tls_wrap(const nc_options *o, ctrio_tls_context *ctx, conn *c)
{
    (void)o, (void)ctx, (void)c;
    return -EPROTONOSUPPORT;
}

static void ctrio_tls_context_free(ctrio_tls_context *ctx)
{
    (void)ctx;
}
#endif

static int connect_and_wrap(nc_options *o, ctrio_tls_context *ctx, conn *c)
{
    int rc = open_connection(o, c);
    return rc == 0 && o->tls ? tls_wrap(o, ctx, c) : rc;
}

/* ---- the conversation: one task per direction ----------------------------- */

typedef struct relay {
    conn *c;
    const nc_options *o;
    ctrio_nursery nursery;
    ctrio_cancel_scope idle; /* -w: its deadline moves on whenever data moves */
} relay;

static void active(relay *r)
{
    if (isfinite(r->o->wait))
        ctrio_cancel_scope_set_deadline(&r->idle, ctrio_current_time() + r->o->wait);
}

static int stdin_to_peer(void *arg)
{
    relay *r = arg;
    char buf[16384];
    ssize_t n;
    while ((n = read_stdin(r->c, buf, sizeof buf)) > 0) {
        active(r);
        int rc = conn_send(r->c, buf, (size_t)n);
        if (rc < 0)
            return rc;
    }
    if (n < 0)
        return (int)n;
    /* End of stdin: half-close a stream, and keep printing what the peer
     * sends until it closes. UDP cannot say EOF: stop now, or let -w end it
     * once the replies stop coming. */
    if (r->c->stream) {
        int rc = ctrio_stream_send_eof(r->c->stream);
        return rc == -EOPNOTSUPP ? 0 : rc; /* TLS: wait for the peer's close */
    }
    if (!isfinite(r->o->wait))
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&r->nursery));
    return 0;
}

static int peer_to_stdout(void *arg)
{
    relay *r = arg;
    char buf[65536];
    for (;;) {
        ssize_t n = conn_recv(r->c, buf, sizeof buf);
        if (n < 0)
            return (int)n;
        if (n == 0 && r->c->stream)
            break; /* the peer closed its side (for UDP: an empty datagram) */
        active(r);
        int rc = write_stdout(r->c, buf, (size_t)n);
        if (rc < 0)
            return rc;
    }
    /* The peer is done sending. It may still be reading (a half-close), so
     * a script's stdin is sent to the end; a person at a terminal, though,
     * wants to know that the conversation is over. */
    if (isatty(r->c->in_fd))
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&r->nursery));
    return 0;
}

static int converse(conn *c, const nc_options *o)
{
    relay r = {.c = c, .o = o};
    ctrio_move_on_after(&r.idle, o->wait);
    ctrio_nursery_open(&r.nursery);
    ctrio_start_soon(&r.nursery, peer_to_stdout, &r);
    ctrio_start_soon(&r.nursery, stdin_to_peer, &r);
    int rc = ctrio_nursery_close(&r.nursery, 0);
    rc = ctrio_cancel_scope_close(&r.idle, rc);
    if (ctrio_cancel_scope_cancelled_caught(&r.idle) && o->err)
        fprintf(o->err, "nc: nothing for %g s, closing\n", o->wait);
    return rc;
}

int nc_flow(void *options)
{
    nc_options *o = options;
    conn c = {.in_fd = o->in_fd, .out_fd = o->out_fd};
    /* --tls: the context first, outside -w's scope: loading the system's
     * CAs is not connecting (and takes seconds under valgrind) */
    ctrio_tls_context *ctx = NULL;
    int rc = o->tls ? tls_context(o, &ctx) : 0;
    if (rc < 0) {
        ctrio_tls_context_free(ctx);
        if (o->err && rc != -EPROTONOSUPPORT)
            fprintf(o->err, "nc: TLS: %s\n", ctrio_strerror(rc));
        return rc;
    }
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, o->wait); /* -w: connecting, or waiting for a peer */
    rc = ctrio_cancel_scope_close(&cs, connect_and_wrap(o, ctx, &c));
    ctrio_tls_context_free(ctx); /* the stream keeps its own reference */
    if (rc == 0)
        rc = converse(&c, o);
    if (rc < 0 && rc != -ECANCELED && o->err)
        fprintf(o->err, "nc: %s\n", ctrio_strerror(rc));
    conn_close(&c);
    return rc;
}
