/*
 * https_hello.c — the smallest HTTPS server: every GET is answered with
 * "hello from ctrio: PATH", one request per connection.
 *
 *   https_hello PORT CERT_PEM KEY_PEM [HOST]
 *                       as tls_echo_server: PORT 0 picks a free port, the
 *                       first line on stdout is "listening on ADDRESS:PORT"
 *
 * Try it with  curl --cacert ca.pem https://localhost:PORT/anything
 *
 * What it shows:
 *  - ALPN on the server side: it picks "http/1.1" when the client offers it
 *    (curl offers h2 first; a server must pick only what it speaks).
 *  - Reading a request head over a TLS stream: receive until the empty
 *    line, with a bound on its size.
 *  - An answer with Content-Length and Connection: close, then a close that
 *    sends close_notify (standards mode), which curl and browsers accept
 *    and many servers skip.
 * The server's frame (context, serve_tcp, wrapping, signals) is
 * tls_echo_server.c's; see there.
 */
#include <ctrio.h>
#include <ctrio_tls.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD_MAX 8192 /* a longer request head is refused (431) */

/* Receive until the end of the head ("\r\n\r\n"): its length, or 0 if the
 * client closed first, or a negative error. */
static ssize_t read_head(ctrio_stream *s, char *buf, size_t cap)
{
    size_t len = 0;
    while (len < cap - 1) {
        ssize_t n = ctrio_stream_receive_some(s, buf + len, cap - 1 - len);
        if (n <= 0)
            return n;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            return (ssize_t)len;
    }
    return -E2BIG;
}

static int answer(ctrio_stream *s, int status, const char *reason, const char *body)
{
    char msg[HEAD_MAX + 512];
    int n = snprintf(msg, sizeof msg,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     status, reason, strlen(body), body);
    if (n < 0 || (size_t)n >= sizeof msg)
        return -E2BIG;
    return ctrio_stream_send_all(s, msg, (size_t)n);
}

/* One connection: one request, one answer. */
static int hello(ctrio_stream *s)
{
    char head[HEAD_MAX], path[HEAD_MAX], body[HEAD_MAX + 64];
    ssize_t n = read_head(s, head, sizeof head);
    if (n == -E2BIG)
        return answer(s, 431, "Request Header Fields Too Large", "request head too long\n");
    if (n <= 0)
        return (int)n; /* gone, or a failed handshake (logged by the caller) */
    if (sscanf(head, "GET %8191s HTTP/1.", path) != 1)
        return answer(s, 405, "Method Not Allowed", "GET only\n");
    snprintf(body, sizeof body, "hello from ctrio: %s\n", path);
    return answer(s, 200, "OK", body);
}

/* The handler ctrio_serve_tcp runs: wrap the TCP stream, answer, close. */
static int wrap_and_hello(ctrio_stream *tcp, void *arg)
{
    ctrio_stream *s;
    int rc = ctrio_tls_stream_new(tcp, arg, NULL, CTRIO_TLS_SERVER, &s);
    if (rc < 0)
        return 0; /* the TCP stream is still ours: the server closes it */
    rc = hello(s);
    if (rc < 0 && rc != -ECANCELED) {
        const char *why = ctrio_tls_stream_error(s);
        fprintf(stderr, "https_hello: %s%s%s\n", ctrio_strerror(rc), why ? ": " : "",
                why ? why : "");
    }
    ctrio_stream_close(s);
    return rc == -ECANCELED ? rc : 0; /* a client's failure stops no one */
}

typedef struct options {
    int port;
    const char *host;
    ctrio_tls_context *ctx;
} options;

static int server(void *arg)
{
    options *o = arg;
    return ctrio_serve_tcp(wrap_and_hello, o->ctx, o->port, o->host, 0);
}

static int watch_signals(void *arg)
{
    static const int signals[] = {SIGINT, SIGTERM};
    int sig = ctrio_wait_signal(signals, 2);
    if (sig > 0)
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(arg));
    return sig < 0 ? sig : 0;
}

static int main_task(void *arg)
{
    ctrio_nursery top;
    ctrio_nursery_open(&top);
    void *set;
    int rc = ctrio_start(&top, server, arg, &set);
    if (rc == 0) {
        const ctrio_listener_set *ls = set;
        for (size_t i = 0; i < ls->count; i++) {
            struct sockaddr_storage ss;
            socklen_t len = sizeof ss;
            char text[128];
            ctrio_socket *sock = ctrio_socket_listener_socket(ls->listeners[i]);
            if (ctrio_socket_getsockname(sock, (struct sockaddr *)&ss, &len) == 0 &&
                ctrio_sockaddr_format((struct sockaddr *)&ss, len, text, sizeof text) >= 0)
                printf("listening on %s\n", text);
        }
        fflush(stdout);
        rc = ctrio_start_soon(&top, watch_signals, &top);
    } else {
        fprintf(stderr, "https_hello: cannot listen: %s\n", ctrio_strerror(rc));
    }
    return ctrio_nursery_close(&top, rc);
}

int main(int argc, char **argv)
{
    static const char *const protos[] = {"http/1.1"};
    char *end;
    options o = {0, NULL, NULL};
    if (argc < 4 || argc > 5 || (o.port = (int)strtol(argv[1], &end, 10), *end) || o.port < 0 ||
        o.port > 65535) {
        fprintf(stderr, "usage: %s PORT CERT_PEM KEY_PEM [HOST]\n", argv[0]);
        return 2;
    }
    if (argc == 5)
        o.host = argv[4];
    int rc = ctrio_tls_server_context(argv[2], argv[3], &o.ctx);
    if (rc == 0)
        rc = ctrio_tls_context_set_alpn(o.ctx, protos, 1);
    if (rc < 0) {
        fprintf(stderr, "https_hello: cannot use %s and %s: %s\n", argv[2], argv[3],
                ctrio_strerror(rc));
        ctrio_tls_context_free(o.ctx);
        return 1;
    }
    sigset_t set; /* before any thread exists: see echo_server.c */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    rc = ctrio_run(main_task, &o);
    ctrio_tls_context_free(o.ctx);
    return rc == 0 ? 0 : 1;
}
