/*
 * tls_echo_server.c — echo_server.c over TLS: trio.serve_ssl_over_tcp with
 * one task per connection, and a clean exit on Ctrl-C or SIGTERM.
 *
 *   tls_echo_server PORT CERT_PEM KEY_PEM [HOST]
 *                       PORT 0 picks a free port; CERT_PEM is the chain
 *                       (leaf first), KEY_PEM its private key; HOST
 *                       defaults to every local address
 *
 * The first line on stdout is "listening on ADDRESS:PORT" (one line per
 * listening socket), as echo_server prints it. Try it with
 *   openssl s_client -connect 127.0.0.1:PORT -CAfile ca.pem -quiet
 *
 * What it shows:
 *  - ctrio_serve_tls_over_tcp: one server context (certificate and key,
 *    parsed once) shared by every connection; the TLS listener wraps each
 *    accepted TCP stream in a server TLS stream.
 *  - The handshake runs in the connection's own task, so a client that
 *    fails it (an untrusted certificate, plain text on a TLS port) or stalls
 *    in it stops no one else: it is logged with OpenSSL's reason
 *    (ctrio_tls_stream_error) and the server goes on.
 *  - A TLS stream is used like any other stream: the same echo loop as
 *    echo_server.c. The peer ends it with close_notify (receive returns 0);
 *    closing our side sends ours.
 *
 */
#include <ctrio.h>
#include <ctrio_tls.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One TLS connection: handshake, then echo until the client closes. */
static int echo(ctrio_stream *s, const char *peer)
{
    char buf[64 * 1024];
    int rc = ctrio_tls_stream_handshake(s);
    if (rc < 0) {
        /* The client's problem, not the server's (as a reset in
         * echo_server.c): one line, and serve the others. */
        if (rc != -ECANCELED) {
            const char *why = ctrio_tls_stream_error(s);
            fprintf(stderr, "tls_echo_server: handshake with %s failed: %s%s%s\n", peer,
                    ctrio_strerror(rc), why ? ": " : "", why ? why : "");
        }
        return rc == -ECANCELED ? rc : 0;
    }
    for (;;) {
        ssize_t n = ctrio_stream_receive_some(s, buf, sizeof buf);
        if (n <= 0)
            /* 0: close_notify. CTRIO_ETLS_TRUNCATED (the client closed its
             * socket without close_notify, as Python's ssl module does),
             * a reset: the client is gone, and only a cancellation goes up
             * (a handler's failure would stop the whole server). */
            return n == -ECANCELED ? (int)n : 0;
        if (ctrio_stream_send_all(s, buf, (size_t)n) < 0)
            return 0;
    }
}

/* "ADDRESS:PORT" of the peer of a TLS stream over TCP, for the log line. */
static void peer_text(ctrio_stream *s, char *text, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ctrio_socket *sock = ctrio_socket_stream_socket(ctrio_tls_stream_transport(s));
    snprintf(text, cap, "a client");
    if (sock && ctrio_socket_getpeername(sock, (struct sockaddr *)&ss, &len) == 0)
        ctrio_sockaddr_format((struct sockaddr *)&ss, len, text, cap);
}

/* The handler ctrio_serve_tls_over_tcp runs with each TLS stream (which the
 * server closes when this returns: close_notify, then the TCP stream). */
static int handler(ctrio_stream *s, void *arg)
{
    (void)arg;
    char peer[128];
    peer_text(s, peer, sizeof peer);
    return echo(s, peer);
}

typedef struct options {
    int port;
    const char *host; /* NULL: every local address */
    ctrio_tls_context *ctx;
    int started; /* main_task ran: the run was set up */
} options;

/* Launched with ctrio_start: it reports its listeners once it is
 * listening, then serves until cancelled. */
static int server(void *arg)
{
    options *o = arg;
    return ctrio_serve_tls_over_tcp(handler, NULL, o->port, o->host, o->ctx, 0, 0);
}

static void print_listeners(const ctrio_listener_set *set)
{
    for (size_t i = 0; i < set->count; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        char text[128];
        ctrio_socket *sock =
            ctrio_socket_listener_socket(ctrio_tls_listener_transport(set->listeners[i]));
        if (ctrio_socket_getsockname(sock, (struct sockaddr *)&ss, &len) == 0 &&
            ctrio_sockaddr_format((struct sockaddr *)&ss, len, text, sizeof text) >= 0)
            printf("listening on %s\n", text);
    }
    fflush(stdout);
}

/* Wait for Ctrl-C or SIGTERM, then cancel everything in the nursery. */
static int watch_signals(void *arg)
{
    ctrio_nursery *top = arg;
    static const int signals[] = {SIGINT, SIGTERM};
    int sig = ctrio_wait_signal(signals, 2);
    if (sig < 0) {
        if (sig != -ECANCELED)
            fprintf(stderr, "tls_echo_server: cannot watch for SIGINT and SIGTERM: %s\n",
                    ctrio_strerror(sig));
        return sig;
    }
    fprintf(stderr, "tls_echo_server: %s, shutting down\n", strsignal(sig));
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(top));
    return 0;
}

static int main_task(void *arg)
{
    ((options *)arg)->started = 1;
    ctrio_nursery top;
    ctrio_nursery_open(&top);
    void *listeners;
    int rc = ctrio_start(&top, server, arg, &listeners);
    if (rc == 0) {
        print_listeners(listeners);
        rc = ctrio_start_soon(&top, watch_signals, &top);
    } else {
        fprintf(stderr, "tls_echo_server: cannot listen: %s\n", ctrio_strerror(rc));
    }
    return ctrio_nursery_close(&top, rc);
}

int main(int argc, char **argv)
{
    char *end;
    options o = {0, NULL, NULL, 0};
    if (argc < 4 || argc > 5 || (o.port = (int)strtol(argv[1], &end, 10), *end) || o.port < 0 ||
        o.port > 65535) {
        fprintf(stderr, "usage: %s PORT CERT_PEM KEY_PEM [HOST]   (PORT 0: pick a free port)\n",
                argv[0]);
        return 2;
    }
    if (argc == 5)
        o.host = argv[4];
    /* Before the run: a bad file is reported before anything listens. */
    int rc = ctrio_tls_server_context(argv[2], argv[3], &o.ctx);
    if (rc < 0) {
        fprintf(stderr, "tls_echo_server: cannot use %s and %s: %s\n", argv[2], argv[3],
                ctrio_strerror(rc));
        return 1;
    }
    /* Block the signals before the run starts any thread (echo_server.c
     * says why). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    rc = ctrio_run(main_task, &o);
    if (rc < 0 && !o.started)
        fprintf(stderr, "tls_echo_server: cannot start: %s\n", ctrio_strerror(rc));
    ctrio_tls_context_free(o.ctx);
    return rc == 0 ? 0 : 1;
}
