/*
 * demo.c — `make demo`: a narrated tour of ctrio, in a few seconds.
 *
 * An echo server and its clients, all in one program, one thread:
 *  1. the server starts on a free port (serve_tcp, port 0; ctrio_start
 *     tells us the port once it listens);
 *  2. many clients connect to "localhost" at once: a name lookup in a worker
 *     thread, then happy eyeballs over every address; each checks its echo;
 *  3. a slow client that says nothing is cut off by the server's deadline
 *     (a move_on_after scope around each read);
 *  4. with clients still talking, the whole server is cancelled through its
 *     nursery: handlers, accept loops and listeners unwind and close, and
 *     the nursery reports success;
 *  5. a summary: connections, bytes, time.
 * Each scene is ordinary-looking blocking code; the concurrency comes from
 * nurseries, and every stop from a cancel scope.
 */
#include <ctrio.h>

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { CLIENTS = 100, CHATTY_CLIENTS = 5 };
/* The server cuts off a client silent this long. Not shorter: the clients of
 * scene 2 share the thread with the server and with 100 name lookups, and on
 * a loaded machine under TSan one of them once waited 0.3 s between its
 * connect and its first line. */
static const double IDLE_LIMIT = 1.0;

static double t0;

/* Print one line of narration, with the time since the start. */
static void say(const char *fmt, ...)
{
    printf("  [%6.3f s] ", ctrio_current_time() - t0);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* What the server saw. */
typedef struct stats {
    int connections, open, cut_off;
    long long bytes;
} stats;

typedef struct demo {
    stats server;
    int port;
    ctrio_nursery server_nursery;
    ctrio_event server_done;
    int server_rc;
    double cancelled_at, server_stopped_at;
} demo;

/* ---- the server ------------------------------------------------------------ */

/* One connection: echo each read back; hang up on a client that stays
 * silent for IDLE_LIMIT seconds. */
static int echo(ctrio_stream *s, void *arg)
{
    stats *st = arg;
    st->connections++;
    st->open++;
    char buf[4096];
    ssize_t n;
    for (;;) {
        ctrio_cancel_scope idle;
        ctrio_move_on_after(&idle, IDLE_LIMIT);
        n = ctrio_stream_receive_some(s, buf, sizeof buf);
        n = ctrio_cancel_scope_close(&idle, (int)n);
        if (ctrio_cancel_scope_cancelled_caught(&idle)) {
            st->cut_off++;
            say("server: a client said nothing for %.1f s: hanging up on it", IDLE_LIMIT);
            break;
        }
        if (n <= 0 || ctrio_stream_send_all(s, buf, (size_t)n) < 0)
            break;
        st->bytes += n;
    }
    st->open--;
    /* the stream is closed for us when we return */
    return n == -ECANCELED ? (int)n : 0;
}

static int serve(void *arg)
{
    demo *d = arg;
    return ctrio_serve_tcp(echo, &d->server, 0, "localhost", 0);
}

/* The server lives in its own nursery, so that scene 4 can cancel it (and
 * only it). Launched with ctrio_start: reports when it listens. */
static int server_side(void *arg)
{
    demo *d = arg;
    ctrio_nursery_open(&d->server_nursery);
    const ctrio_listener_set *set;
    int rc = ctrio_start(&d->server_nursery, serve, d, (void **)&set);
    if (rc == 0) {
        for (size_t i = 0; i < set->count; i++) {
            struct sockaddr_storage ss;
            socklen_t len = sizeof ss;
            char text[64];
            ctrio_socket *sock = ctrio_socket_listener_socket(set->listeners[i]);
            ctrio_socket_getsockname(sock, (struct sockaddr *)&ss, &len);
            ctrio_sockaddr_format((struct sockaddr *)&ss, len, text, sizeof text);
            say("server: listening on %s", text);
            d->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                    : ((struct sockaddr_in6 *)&ss)->sin6_port);
        }
        ctrio_task_started(NULL);
    }
    rc = ctrio_nursery_close(&d->server_nursery, rc);
    d->server_rc = rc;
    d->server_stopped_at = ctrio_current_time();
    ctrio_event_set(&d->server_done);
    return rc;
}

/* ---- scene 2: many clients through happy eyeballs ------------------------- */

typedef struct client {
    demo *d;
    int id;
    bool ok, ipv6;
} client;

static int one_client(void *arg)
{
    client *c = arg;
    ctrio_stream *s;
    int rc = ctrio_open_tcp_stream("localhost", c->d->port, &s);
    if (rc < 0)
        return rc;
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    ctrio_socket_getpeername(ctrio_socket_stream_socket(s), (struct sockaddr *)&peer, &len);
    c->ipv6 = peer.ss_family == AF_INET6;

    char msg[64], echo[64];
    int msg_len = snprintf(msg, sizeof msg, "hello from client %d\n", c->id);
    rc = ctrio_stream_send_all(s, msg, (size_t)msg_len);
    int got = 0;
    while (rc == 0 && got < msg_len) {
        ssize_t n = ctrio_stream_receive_some(s, echo + got, (size_t)(msg_len - got));
        if (n <= 0)
            rc = n < 0 ? (int)n : -ECONNRESET;
        else
            got += (int)n;
    }
    c->ok = rc == 0 && memcmp(msg, echo, (size_t)msg_len) == 0;
    ctrio_stream_close(s);
    return rc;
}

static int scene_many_clients(demo *d)
{
    printf("\n2. %d clients connect to \"localhost\" at once. Each looks the name up (in a\n"
           "   worker thread), then tries its addresses with happy eyeballs (RFC 8305: a\n"
           "   new attempt every 250 ms or as soon as one fails; the first to connect\n"
           "   wins), sends a line and checks the echo.\n", CLIENTS);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (ctrio_getaddrinfo("localhost", NULL, &hints, &res) == 0) {
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            char text[64];
            ctrio_sockaddr_format(ai->ai_addr, ai->ai_addrlen, text, sizeof text);
            *strrchr(text, ':') = '\0'; /* the address without the port */
            say("localhost is %s", text);
        }
        ctrio_freeaddrinfo(res);
    }
    static client clients[CLIENTS];
    double start = ctrio_current_time();
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < CLIENTS; i++) {
        clients[i] = (client){d, i + 1, false, false};
        ctrio_start_soon(&n, one_client, &clients[i]);
    }
    int rc = ctrio_nursery_close(&n, 0);
    int ok = 0, v6 = 0;
    for (int i = 0; i < CLIENTS; i++) {
        ok += clients[i].ok;
        v6 += clients[i].ipv6;
    }
    say("%d of %d clients got their own line back, in %.0f ms (%d over IPv4, %d over IPv6)", ok,
        CLIENTS, (ctrio_current_time() - start) * 1e3, ok - v6, v6);
    if (rc < 0)
        say("a client failed: %s", ctrio_strerror(rc));
    return ok == CLIENTS ? 0 : -EIO;
}

/* ---- scene 3: a slow client cut off by a deadline ------------------------- */

static int scene_slow_client(demo *d)
{
    printf("\n3. A slow client connects and says nothing. The server reads under\n"
           "   move_on_after(%.1f): when the deadline passes, the read is cancelled and\n"
           "   the handler hangs up. The client just sees the connection end.\n",
           IDLE_LIMIT);
    ctrio_stream *s;
    int rc = ctrio_open_tcp_stream("localhost", d->port, &s);
    if (rc < 0)
        return rc;
    double start = ctrio_current_time();
    say("slow client: connected, now waiting without a word");
    char buf[16];
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 5.0); /* in case the server never hangs up */
    ssize_t n = ctrio_stream_receive_some(s, buf, sizeof buf);
    rc = ctrio_cancel_scope_close(&cs, (int)n);
    ctrio_stream_close(s);
    if (rc == 0)
        say("slow client: the server hung up on me after %.2f s",
            ctrio_current_time() - start);
    return rc == 0 && d->server.cut_off == 1 ? 0 : -EIO;
}

/* ---- scene 4: cancel the whole server -------------------------------------- */

typedef struct chatty {
    demo *d;
    int lines;
    bool saw_close;
} chatty;

/* A client that keeps talking until the server goes away. */
static int chatty_client(void *arg)
{
    chatty *c = arg;
    ctrio_stream *s;
    int rc = ctrio_open_tcp_stream("localhost", c->d->port, &s);
    if (rc < 0)
        return rc;
    char buf[64];
    for (;;) {
        int len = snprintf(buf, sizeof buf, "line %d\n", c->lines + 1);
        if (ctrio_stream_send_all(s, buf, (size_t)len) < 0)
            break;
        ssize_t n = ctrio_stream_receive_some(s, buf, sizeof buf);
        if (n <= 0) /* 0: the server closed; < 0: it reset the connection */
            break;
        c->lines++;
        if ((rc = ctrio_sleep(0.05)) < 0)
            break;
    }
    c->saw_close = rc == 0;
    ctrio_stream_close(s);
    return rc;
}

static int scene_cancel_server(demo *d)
{
    printf("\n4. %d clients keep talking to the server. We cancel the server's nursery:\n"
           "   its accept loop and every handler get -ECANCELED at their next\n"
           "   checkpoint, unwind, and their connections and listeners are closed.\n",
           CHATTY_CLIENTS);
    chatty cs[CHATTY_CLIENTS];
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < CHATTY_CLIENTS; i++) {
        cs[i] = (chatty){d, 0, false};
        ctrio_start_soon(&n, chatty_client, &cs[i]);
    }
    ctrio_sleep(0.2);
    say("server: %d connections open, clients mid-conversation; cancelling the server",
        d->server.open);
    d->cancelled_at = ctrio_current_time();
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&d->server_nursery));
    ctrio_event_wait(&d->server_done);
    say("server: its nursery returned \"%s\" after %.1f ms; %d connections left open",
        ctrio_strerror(d->server_rc), (d->server_stopped_at - d->cancelled_at) * 1e3,
        d->server.open);
    int rc = ctrio_nursery_close(&n, 0);
    int closed = 0, lines = 0;
    for (int i = 0; i < CHATTY_CLIENTS; i++) {
        closed += cs[i].saw_close;
        lines += cs[i].lines;
    }
    say("clients: %d of %d saw the server close their connection (after %d lines in all)",
        closed, CHATTY_CLIENTS, lines);
    ctrio_stream *s;
    int refused = ctrio_open_tcp_stream("localhost", d->port, &s);
    if (refused == 0)
        ctrio_stream_close(s);
    say("a new client now gets: %s", ctrio_strerror(refused));
    return rc == 0 && d->server_rc == 0 && d->server.open == 0 && closed == CHATTY_CLIENTS &&
                   refused < 0
               ? 0
               : -EIO;
}

/* ---- the tour --------------------------------------------------------------- */

static int tour(void *arg)
{
    (void)arg;
    t0 = ctrio_current_time();
    demo d;
    memset(&d, 0, sizeof d);
    ctrio_event_init(&d.server_done);

    puts("\n1. An echo server on a free port: serve_tcp(port 0) runs one task per\n"
         "   connection; ctrio_start returns once it listens.");
    ctrio_nursery top;
    ctrio_nursery_open(&top);
    int rc = ctrio_start(&top, server_side, &d, NULL);
    if (rc == 0)
        rc = scene_many_clients(&d);
    if (rc == 0)
        rc = scene_slow_client(&d);
    if (rc == 0)
        rc = scene_cancel_server(&d);
    if (rc < 0) /* something went wrong: stop the server too */
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&top));
    rc = ctrio_nursery_close(&top, rc);

    printf("\n5. Summary: %d connections served, %lld bytes echoed, %d client cut off "
           "by a deadline,\n   server cancelled cleanly.\n",
           d.server.connections, d.server.bytes, d.server.cut_off);
    if (rc == 0)
        printf("\nDone in %.2f s.\n", ctrio_current_time() - t0);
    return rc;
}

int main(void)
{
    puts("ctrio: Trio's structured concurrency in C - an echo server and its clients");
    int rc = ctrio_run(tour, NULL);
    if (rc != 0)
        fprintf(stderr, "demo failed: %s\n", ctrio_strerror(rc));
    return rc == 0 ? 0 : 1;
}
