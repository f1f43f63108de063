/*
 * tls_raw_echo.c — the reference TLS echo server of the TLS benchmark
 * (issue #9, bench/tls_bench.sh): one thread, level-triggered epoll,
 * non-blocking sockets, OpenSSL 3 over socket BIOs (SSL_set_fd): what a
 * careful C programmer writes by hand.
 *
 *   tls_raw_echo PORT CERT_PEM KEY_PEM [HOST]
 *       prints "listening on HOST:PORT", exits 0 on SIGTERM or SIGINT
 *
 * TLS: OpenSSL's server defaults (TLS 1.3 preferred, its default groups and
 * ciphers, session tickets sent as usual) with TLS 1.2 as the floor. The one
 * setting beyond the defaults is read-ahead: without it OpenSSL reads each
 * record with two read() calls (the 5-byte header, then the body); with it
 * one read() fills its buffer. Read-ahead hides bytes from epoll, so a
 * connection whose turn ends before OpenSSL asked to wait goes on a ready
 * list and is served again right after the next (non-blocking) epoll_wait
 * (TLS_RAW_READ_AHEAD=0 turns read-ahead off, to measure what it is worth).
 *
 * Per connection: an SSL object in accept state (the handshake happens in
 * the first SSL_read) and one 16 KiB buffer, the largest plaintext record:
 * SSL_read fills it, SSL_write echoes it. While a write waits (WANT_WRITE)
 * the connection reads nothing more, so a client that does not read its
 * echoes is throttled instead of buffered. A turn makes at most TURN_CALLS
 * SSL_read/SSL_write calls (8 records read and echoed), so that a busy
 * connection cannot hold the others off.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define REC 16384 /* the largest TLS plaintext record */
#define MAX_EVENTS 256
#define TURN_CALLS 16
#define ACCEPTS_PER_TURN 64

typedef struct conn {
    int fd;
    SSL *ssl;
    uint32_t events;   /* registered with epoll */
    bool ready;        /* on the ready list */
    struct conn *next; /* the ready list */
    size_t off, len;   /* buf[off, len): decrypted, not yet echoed */
    unsigned char buf[REC];
} conn;

static int listen_tag, signal_tag; /* their addresses tag the epoll data */
static conn *ready_head;

static void drop(conn *c)
{
    SSL_free(c->ssl);
    close(c->fd); /* removes it from the epoll set */
    free(c);
}

/* Waits for events (EPOLLIN or EPOLLOUT): false if epoll_ctl failed. */
static bool want(int ep, conn *c, uint32_t events)
{
    if (c->events == events)
        return true;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    c->events = events;
    return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) == 0;
}

/* After SSL_read or SSL_write returned rc <= 0: the events to wait for, or 0
 * when the connection is over (closed, reset, a TLS error). */
static uint32_t retry_events(conn *c, int rc)
{
    switch (SSL_get_error(c->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return EPOLLIN;
    case SSL_ERROR_WANT_WRITE:
        return EPOLLOUT;
    case SSL_ERROR_ZERO_RETURN:
        SSL_shutdown(c->ssl); /* the peer's close_notify: answer it, best effort */
        return 0;
    default:
        ERR_clear_error(); /* the error queue is per thread: leave it empty */
        return 0;
    }
}

/* One turn of a connection: echo until OpenSSL must wait for the socket or
 * the turn's budget runs out. */
static void serve(int ep, conn *c)
{
    uint32_t events = EPOLLIN;
    for (int calls = 0; calls < TURN_CALLS; calls++) {
        int rc;
        if (c->off < c->len) {
            rc = SSL_write(c->ssl, c->buf + c->off, (int)(c->len - c->off));
            if (rc > 0) {
                c->off += (size_t)rc;
                continue;
            }
        } else {
            rc = SSL_read(c->ssl, c->buf, REC);
            if (rc > 0) {
                c->off = 0;
                c->len = (size_t)rc;
                continue;
            }
        }
        events = retry_events(c, rc);
        if (!events || !want(ep, c, events))
            goto dead;
        return;
    }
    /* Budget spent: what is left may be in buf or in OpenSSL's read-ahead,
     * where epoll cannot see it; the ready list brings the connection back
     * after the others have had their turn. */
    if (!want(ep, c, EPOLLIN))
        goto dead;
    c->ready = true;
    c->next = ready_head;
    ready_head = c;
    return;
dead:
    drop(c);
}

static void serve_ready(int ep)
{
    conn *c = ready_head;
    ready_head = NULL;
    while (c) {
        conn *next = c->next;
        c->ready = false;
        serve(ep, c);
        c = next;
    }
}

static void accept_some(int ep, int lfd, SSL_CTX *ctx)
{
    int one = 1;
    for (int i = 0; i < ACCEPTS_PER_TURN; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = malloc(sizeof *c);
        SSL *ssl = SSL_new(ctx);
        if (!c || !ssl || !SSL_set_fd(ssl, fd)) {
            SSL_free(ssl);
            free(c);
            close(fd);
            ERR_clear_error();
            continue;
        }
        SSL_set_accept_state(ssl);
        *c = (conn){.fd = fd, .ssl = ssl, .events = EPOLLIN};
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            drop(c);
    }
}

static SSL_CTX *make_ctx(const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return NULL;
    const char *ra = getenv("TLS_RAW_READ_AHEAD");
    SSL_CTX_set_read_ahead(ctx, !(ra && strcmp(ra, "0") == 0));
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* The listening socket, bound; its port in *sa. -1 on failure. */
static int listen_on(struct sockaddr_in *sa)
{
    int one = 1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        return -1;
    socklen_t sl = sizeof *sa;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)sa, sizeof *sa) < 0 || listen(lfd, 4096) < 0 ||
        getsockname(lfd, (struct sockaddr *)sa, &sl) < 0) {
        close(lfd);
        return -1;
    }
    return lfd;
}

static int loop(int ep, int lfd, SSL_CTX *ctx)
{
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, ready_head ? 0 : -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("tls_raw_echo: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &signal_tag)
                return 0; /* SIGTERM/SIGINT: connections close with the process */
            if (p == &listen_tag)
                accept_some(ep, lfd, ctx);
            else if (!((conn *)p)->ready) /* else served from the ready list below */
                serve(ep, p);
        }
        serve_ready(ep);
    }
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: tls_raw_echo PORT CERT_PEM KEY_PEM [HOST]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *host = argc > 4 ? argv[4] : "127.0.0.1";
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (port < 0 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "tls_raw_echo: bad address %s:%s\n", host, argv[1]);
        return 2;
    }
    SSL_CTX *ctx = make_ctx(argv[2], argv[3]);
    if (!ctx) {
        fprintf(stderr, "tls_raw_echo: cannot load %s / %s:\n", argv[2], argv[3]);
        ERR_print_errors_fp(stderr);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    int lfd = listen_on(&sa);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listen_tag};
    if (sfd < 0 || lfd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
        perror("tls_raw_echo");
        return 1;
    }
    ev.data.ptr = &signal_tag;
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
    printf("listening on %s:%d\n", host, ntohs(sa.sin_port));
    fflush(stdout);
    int rc = loop(ep, lfd, ctx);
    SSL_CTX_free(ctx);
    return rc;
}
