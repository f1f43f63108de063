/*
 * nc.c — a small netcat: copy stdin to a socket and the socket to stdout.
 *
 *   nc [-u] [-w SECS] HOST PORT          connect (TCP, or UDP with -u)
 *   nc -l [-u] [-w SECS] [HOST] PORT     wait for one peer (PORT 0: pick one)
 *   nc -U [-l] [-w SECS] PATH            the same over a Unix-domain socket
 *   nc --tls [--cafile FILE] [-w SECS] HOST PORT
 *                                        TLS: verify the peer against the
 *                                        system's CAs (and FILE's), SNI HOST
 *   nc -l --tls --cert FILE --key FILE [-w SECS] [HOST] PORT
 *                                        a TLS server (FILE: PEM chain, key)
 *
 * In listen mode, "listening on ADDRESS" goes to stderr (stdout carries the
 * data). -w gives up when connecting (or waiting for the peer) takes longer
 * than SECS, and closes the connection after SECS without traffic.
 * Ending: over TCP and Unix sockets each direction runs to its end: at the
 * end of stdin we send EOF (a half-close), and the peer's EOF ends the copy
 * to stdout; nc exits when both are done (or at once when the peer closes
 * and stdin is a terminal). UDP has no end of stream: at the end of stdin
 * we stop, or with -w wait until the peer has been quiet for SECS. A UDP
 * listener answers whoever sent the first datagram. TLS cannot half-close
 * (ctrio_stream_send_eof is -EOPNOTSUPP, as in Trio's SSLStream): at the end
 * of stdin nc keeps printing until the peer closes, as `openssl s_client
 * -quiet`; closing sends close_notify. Ctrl-C (or SIGTERM) ends it cleanly
 * at any time.
 *
 * What it shows:
 *  - Two tasks in a nursery, one per direction: the nursery ends when both
 *    are done, and cancelling it (the peer hung up on a terminal, UDP's
 *    end of stdin) stops both. Ctrl-C cancels the top nursery the same way.
 *  - -w as cancel scopes: fail_after around connecting, and an idle scope
 *    whose deadline is pushed back each time data moves.
 *  - Waiting for several listeners at once (nc -l without HOST listens on
 *    IPv4 and IPv6): the first accept wins and cancels the others, the same
 *    race as happy eyeballs.
 *  - stdin is not a socket: a pipe or terminal is waited for with
 *    ctrio_wait_readable; a regular file (which epoll cannot watch) is read
 *    in a worker thread with ctrio_to_thread_run_sync.
 */
#include <ctrio.h>
#ifdef NC_TLS /* examples/CMakeLists.txt: when libctrio_tls is built */
#include <ctrio_tls.h>
#endif

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct options {
    bool listen, udp, unix_socket;
    double wait;      /* -w, INFINITY if not given */
    const char *host; /* NULL: every local address (listen mode) */
    const char *port; /* or the path, with -U */
    bool tls;
    const char *cafile, *cert, *key; /* --cafile (client), --cert --key (-l) */
} options;

/* The connection: a stream (TCP, Unix) or a connected UDP socket. */
typedef struct conn {
    ctrio_stream *stream;
    ctrio_socket *dgram;
} conn;

/* ---- stdin and stdout ---------------------------------------------------- */

typedef struct read_args {
    void *buf;
    size_t max;
    ssize_t n;
} read_args;

static int read_in_thread(void *arg)
{
    read_args *r = arg;
    r->n = read(STDIN_FILENO, r->buf, r->max);
    return r->n < 0 ? -errno : 0;
}

static ssize_t read_stdin(void *buf, size_t max)
{
    static bool pollable = true;
    if (pollable) {
        int rc = ctrio_wait_readable(STDIN_FILENO);
        if (rc == -EPERM)
            pollable = false; /* a regular file or /dev/null */
        else if (rc < 0)
            return rc;
    }
    if (pollable) { /* readable: this read returns without blocking */
        ssize_t n = read(STDIN_FILENO, buf, max);
        return n < 0 ? -errno : n;
    }
    read_args r = {buf, max, 0};
    int rc = ctrio_to_thread_run_sync(read_in_thread, &r, 0);
    return rc < 0 ? rc : r.n;
}

static int write_stdout(const char *p, size_t n)
{
    static bool pollable = true;
    while (n > 0) {
        if (pollable) {
            int rc = ctrio_wait_writable(STDOUT_FILENO);
            if (rc == -EPERM)
                pollable = false; /* a regular file: writes do not wait */
            else if (rc < 0)
                return rc;
        }
        ssize_t w = write(STDOUT_FILENO, p, n);
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

static void print_address(ctrio_socket *sock)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char text[128];
    if (ctrio_socket_getsockname(sock, (struct sockaddr *)&ss, &len) == 0 &&
        ctrio_sockaddr_format((struct sockaddr *)&ss, len, text, sizeof text) >= 0)
        fprintf(stderr, "listening on %s\n", text);
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

static int stream_listen(const options *o, conn *c)
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
        print_address(ctrio_socket_listener_socket(ls[i]));
    rc = accept_first(ls, n, &c->stream);
    /* One peer only: stop listening (a Unix listener removes its path). */
    if (o->unix_socket)
        ctrio_listener_close(unix_listener);
    else
        ctrio_listeners_close(ls, n);
    return rc;
}

/* A UDP socket, bound (listen) or connected (client) to HOST PORT. */
static int udp_open(const options *o, conn *c)
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
static int udp_listen(const options *o, conn *c)
{
    int rc = udp_open(o, c);
    if (rc < 0)
        return rc;
    print_address(c->dgram);
    static char buf[65536];
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    ssize_t n = ctrio_socket_recvfrom(c->dgram, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
    if (n < 0)
        return (int)n;
    rc = ctrio_socket_connect(c->dgram, (struct sockaddr *)&peer, len);
    return rc < 0 ? rc : write_stdout(buf, (size_t)n);
}

static int open_connection(const options *o, conn *c)
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
static int tls_context(const options *o, ctrio_tls_context **ctx)
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
static int tls_wrap(const options *o, conn *c)
{
    ctrio_tls_context *ctx = NULL;
    ctrio_stream *s;
    int rc = tls_context(o, &ctx);
    if (rc == 0)
        rc = ctrio_tls_stream_new(c->stream, ctx, o->listen ? NULL : o->host,
                                  o->listen ? CTRIO_TLS_SERVER : 0, &s);
    ctrio_tls_context_free(ctx); /* the stream keeps its own reference */
    if (rc < 0)
        return rc; /* c->stream is still the plain one: conn_close closes it */
    c->stream = s;
    rc = ctrio_tls_stream_handshake(s);
    const char *why = ctrio_tls_stream_error(s);
    if (rc < 0 && why)
        fprintf(stderr, "nc: TLS handshake: %s\n", why);
    return rc;
}
#else
static int tls_wrap(const options *o, conn *c)
{
    (void)o, (void)c;
    fprintf(stderr, "nc: built without TLS (OpenSSL 3 not found)\n");
    return -EPROTONOSUPPORT;
}
#endif

static int connect_and_wrap(const options *o, conn *c)
{
    int rc = open_connection(o, c);
    return rc == 0 && o->tls ? tls_wrap(o, c) : rc;
}

/* ---- the conversation: one task per direction ----------------------------- */

typedef struct relay {
    conn *c;
    const options *o;
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
    while ((n = read_stdin(buf, sizeof buf)) > 0) {
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
        int rc = write_stdout(buf, (size_t)n);
        if (rc < 0)
            return rc;
    }
    /* The peer is done sending. It may still be reading (a half-close), so
     * a script's stdin is sent to the end; a person at a terminal, though,
     * wants to know that the conversation is over. */
    if (isatty(STDIN_FILENO))
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&r->nursery));
    return 0;
}

static int converse(conn *c, const options *o)
{
    relay r = {.c = c, .o = o};
    ctrio_move_on_after(&r.idle, o->wait);
    ctrio_nursery_open(&r.nursery);
    ctrio_start_soon(&r.nursery, peer_to_stdout, &r);
    ctrio_start_soon(&r.nursery, stdin_to_peer, &r);
    int rc = ctrio_nursery_close(&r.nursery, 0);
    rc = ctrio_cancel_scope_close(&r.idle, rc);
    if (ctrio_cancel_scope_cancelled_caught(&r.idle))
        fprintf(stderr, "nc: nothing for %g s, closing\n", o->wait);
    return rc;
}

/* ---- the program ---------------------------------------------------------- */

static int nc(const options *o)
{
    conn c = {NULL, NULL};
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, o->wait); /* -w: connecting, or waiting for a peer */
    int rc = ctrio_cancel_scope_close(&cs, connect_and_wrap(o, &c));
    if (rc == 0)
        rc = converse(&c, o);
    if (rc < 0 && rc != -ECANCELED)
        fprintf(stderr, "nc: %s\n", ctrio_strerror(rc));
    conn_close(&c);
    return rc;
}

static int watch_signals(void *arg)
{
    ctrio_nursery *top = arg;
    static const int signals[] = {SIGINT, SIGTERM};
    int sig = ctrio_wait_signal(signals, 2);
    if (sig > 0)
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(top));
    return sig < 0 ? sig : 0;
}

static int main_task(void *arg)
{
    ctrio_nursery top;
    ctrio_nursery_open(&top);
    ctrio_start_soon(&top, watch_signals, &top);
    int rc = nc(arg);
    /* Finished (or stopped by a signal: then rc is the nursery's own
     * cancellation, which nursery_close turns into 0). */
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&top));
    return ctrio_nursery_close(&top, rc);
}

static int usage(void)
{
    fprintf(stderr, "usage: nc [-u] [-w SECS] HOST PORT\n"
                    "       nc -l [-u] [-w SECS] [HOST] PORT\n"
                    "       nc -U [-l] [-w SECS] PATH\n"
                    "       nc --tls [--cafile FILE] [-w SECS] HOST PORT\n"
                    "       nc -l --tls --cert FILE --key FILE [-w SECS] [HOST] PORT\n");
    return 2;
}

int main(int argc, char **argv)
{
    options o = {.wait = INFINITY};
    int opt;
    char *end;
    static const struct option long_opts[] = {{"tls", no_argument, NULL, 'T'},
                                              {"cafile", required_argument, NULL, 'A'},
                                              {"cert", required_argument, NULL, 'C'},
                                              {"key", required_argument, NULL, 'K'},
                                              {NULL, 0, NULL, 0}};
    while ((opt = getopt_long(argc, argv, "luUw:", long_opts, NULL)) != -1) {
        switch (opt) {
        case 'T': o.tls = true; break;
        case 'A': o.cafile = optarg; break;
        case 'C': o.cert = optarg; break;
        case 'K': o.key = optarg; break;
        case 'l': o.listen = true; break;
        case 'u': o.udp = true; break;
        case 'U': o.unix_socket = true; break;
        case 'w':
            o.wait = strtod(optarg, &end);
            if (*end || !(o.wait > 0))
                return usage();
            break;
        default: return usage();
        }
    }
    int nargs = argc - optind;
    if (o.unix_socket && !o.udp && nargs == 1)
        o.port = argv[optind];
    else if (!o.unix_socket && nargs == 2)
        o.host = argv[optind], o.port = argv[optind + 1];
    else if (!o.unix_socket && o.listen && nargs == 1)
        o.port = argv[optind];
    else
        return usage();
    /* TLS over TCP only; a server needs its certificate, a client a name */
    if (o.tls ? o.udp || o.unix_socket || (o.listen && (!o.cert || !o.key)) ||
                    (!o.listen && (o.cert || o.key))
              : o.cafile || o.cert || o.key)
        return usage();
    sigset_t set; /* before any thread exists: see echo_server.c */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    return ctrio_run(main_task, &o) == 0 ? 0 : 1;
}
