/*
 * demo_flow.c — the demo's tour (see demo.c for the scenes and what they
 * show), with its sizes and its output as parameters (demo.h), so that
 * tests/test_sweep.c sweeps this very code.
 */
#include "demo.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* What the server saw. */
typedef struct stats {
    int connections, open, cut_off;
    long long bytes;
} stats;

typedef struct demo {
    const demo_options *o;
    double t0;
    stats server;
    int port;
    ctrio_nursery server_nursery;
    ctrio_event server_done;
    int server_rc;
    double cancelled_at, server_stopped_at;
    int chatty_heard;             /* scene 4: clients echoed once, or gone */
    ctrio_event chatty_all_heard; /* set when that is all of them */
} demo;

/* Print one line of narration, with the time since the start. */
static void say(demo *d, const char *fmt, ...)
{
    FILE *out = d->o->out;
    fprintf(out, "  [%6.3f s] ", ctrio_current_time() - d->t0);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fputc('\n', out);
    fflush(out);
}

/* ---- the server ------------------------------------------------------------ */

/* One connection: echo each read back; hang up on a client that stays
 * silent for idle_limit seconds. */
static int echo(ctrio_stream *s, void *arg)
{
    demo *d = arg;
    stats *st = &d->server;
    st->connections++;
    st->open++;
    char buf[4096];
    ssize_t n;
    for (;;) {
        ctrio_cancel_scope idle;
        ctrio_move_on_after(&idle, d->o->idle_limit);
        n = ctrio_stream_receive_some(s, buf, sizeof buf);
        n = ctrio_cancel_scope_close(&idle, (int)n);
        if (ctrio_cancel_scope_cancelled_caught(&idle)) {
            st->cut_off++;
            say(d, "server: a client said nothing for %.1f s: hanging up on it", d->o->idle_limit);
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
    return ctrio_serve_tcp(echo, d, 0, "localhost", 0);
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
            if (ctrio_socket_getsockname(sock, (struct sockaddr *)&ss, &len) < 0 ||
                ctrio_sockaddr_format((struct sockaddr *)&ss, len, text, sizeof text) < 0)
                continue;
            say(d, "server: listening on %s", text);
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
    if (ctrio_socket_getpeername(ctrio_socket_stream_socket(s), (struct sockaddr *)&peer, &len) == 0)
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
    fprintf(d->o->out, "\n2. %d clients connect to \"localhost\" at once. Each looks the name up (in a\n"
           "   worker thread), then tries its addresses with happy eyeballs (RFC 8305: a\n"
           "   new attempt every 250 ms or as soon as one fails; the first to connect\n"
           "   wins), sends a line and checks the echo.\n", d->o->clients);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (ctrio_getaddrinfo("localhost", NULL, &hints, &res) == 0) {
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            char text[64];
            char *colon;
            if (ctrio_sockaddr_format(ai->ai_addr, ai->ai_addrlen, text, sizeof text) < 0 ||
                !(colon = strrchr(text, ':')))
                continue;
            *colon = '\0'; /* the address without the port */
            say(d, "localhost is %s", text);
        }
        ctrio_freeaddrinfo(res);
    }
    int count = d->o->clients;
    client *clients = calloc((size_t)count, sizeof *clients);
    if (!clients)
        return -ENOMEM;
    double start = ctrio_current_time();
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    int rc = 0;
    for (int i = 0; i < count && rc == 0; i++) {
        clients[i] = (client){d, i + 1, false, false};
        rc = ctrio_start_soon(&n, one_client, &clients[i]);
    }
    rc = ctrio_nursery_close(&n, rc);
    int ok = 0, v6 = 0;
    for (int i = 0; i < count; i++) {
        ok += clients[i].ok;
        v6 += clients[i].ipv6;
    }
    free(clients);
    say(d, "%d of %d clients got their own line back, in %.0f ms (%d over IPv4, %d over IPv6)",
        ok, count, (ctrio_current_time() - start) * 1e3, ok - v6, v6);
    if (rc < 0)
        say(d, "a client failed: %s", ctrio_strerror(rc));
    return rc < 0 ? rc : ok == count ? 0 : -EIO;
}

/* ---- scene 3: a slow client cut off by a deadline ------------------------- */

static int scene_slow_client(demo *d)
{
    fprintf(d->o->out, "\n3. A slow client connects and says nothing. The server reads under\n"
           "   move_on_after(%.1f): when the deadline passes, the read is cancelled and\n"
           "   the handler hangs up. The client just sees the connection end.\n",
           d->o->idle_limit);
    ctrio_stream *s;
    int rc = ctrio_open_tcp_stream("localhost", d->port, &s);
    if (rc < 0)
        return rc;
    double start = ctrio_current_time();
    say(d, "slow client: connected, now waiting without a word");
    char buf[16];
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 5.0); /* in case the server never hangs up */
    ssize_t n = ctrio_stream_receive_some(s, buf, sizeof buf);
    rc = ctrio_cancel_scope_close(&cs, (int)n);
    ctrio_stream_close(s);
    if (rc == 0)
        say(d, "slow client: the server hung up on me after %.2f s",
            ctrio_current_time() - start);
    if (rc < 0) /* cancelled, or a clear error: said as it is, not as -EIO */
        return rc;
    return rc == 0 && d->server.cut_off == 1 ? 0 : -EIO;
}

/* ---- scene 4: cancel the whole server -------------------------------------- */

typedef struct chatty {
    demo *d;
    int lines;
    bool saw_close, heard;
} chatty;

/* Scene 4's pauses: the demo's own when left at 0; tests/test_sweep.c
 * shortens them, since every run of its sweep waits on them. */
static double settle(const demo *d)
{
    return d->o->settle > 0 ? d->o->settle : 0.2;
}

static double line_pause(const demo *d)
{
    return d->o->line_pause > 0 ? d->o->line_pause : 0.05;
}

/* Count the client once, after its first echo or when it ends early, so
 * that the scene cancels the server mid-conversation however long the
 * connects took (a settle of a few ms, in the sweep, is shorter than a name
 * lookup under valgrind). */
static void chatty_heard(chatty *c)
{
    if (c->heard)
        return;
    c->heard = true;
    if (++c->d->chatty_heard == c->d->o->chatty_clients)
        ctrio_event_set(&c->d->chatty_all_heard);
}

/* A client that keeps talking until the server goes away. */
static int chatty_client(void *arg)
{
    chatty *c = arg;
    ctrio_stream *s;
    int rc = ctrio_open_tcp_stream("localhost", c->d->port, &s);
    if (rc < 0) {
        chatty_heard(c);
        return rc;
    }
    char buf[64];
    for (;;) {
        int len = snprintf(buf, sizeof buf, "line %d\n", c->lines + 1);
        if ((rc = ctrio_stream_send_all(s, buf, (size_t)len)) < 0)
            break;
        ssize_t n = ctrio_stream_receive_some(s, buf, sizeof buf);
        if (n <= 0) { /* 0: the server closed; < 0: it reset the connection */
            rc = (int)n;
            break;
        }
        c->lines++;
        chatty_heard(c);
        if ((rc = ctrio_sleep(line_pause(c->d))) < 0)
            break;
    }
    /* The server going away shows as an EOF, a reset, or a broken pipe on
     * the next send; any other error (a cancellation, ENOMEM) is not that. */
    c->saw_close = rc == 0 || rc == -ECONNRESET || rc == -EPIPE;
    if (c->saw_close)
        rc = 0;
    chatty_heard(c);
    ctrio_stream_close(s);
    return rc;
}

static int scene_cancel_server(demo *d)
{
    fprintf(d->o->out, "\n4. %d clients keep talking to the server. We cancel the server's nursery:\n"
           "   its accept loop and every handler get -ECANCELED at their next\n"
           "   checkpoint, unwind, and their connections and listeners are closed.\n",
           d->o->chatty_clients);
    int count = d->o->chatty_clients;
    chatty *cs = calloc((size_t)count, sizeof *cs);
    if (!cs)
        return -ENOMEM;
    ctrio_event_init(&d->chatty_all_heard);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    int rc = 0;
    for (int i = 0; i < count && rc == 0; i++) {
        cs[i] = (chatty){d, 0, false, false};
        rc = ctrio_start_soon(&n, chatty_client, &cs[i]);
    }
    if (rc == 0 && count > 0)
        rc = ctrio_event_wait(&d->chatty_all_heard);
    if (rc == 0)
        rc = ctrio_sleep(settle(d));
    say(d, "server: %d connections open, clients mid-conversation; cancelling the server",
        d->server.open);
    d->cancelled_at = ctrio_current_time();
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&d->server_nursery));
    if (rc == 0)
        rc = ctrio_event_wait(&d->server_done);
    say(d, "server: its nursery returned \"%s\" after %.1f ms; %d connections left open",
        ctrio_strerror(d->server_rc), (d->server_stopped_at - d->cancelled_at) * 1e3,
        d->server.open);
    rc = ctrio_nursery_close(&n, rc);
    int closed = 0, lines = 0;
    for (int i = 0; i < count; i++) {
        closed += cs[i].saw_close;
        lines += cs[i].lines;
    }
    free(cs);
    say(d, "clients: %d of %d saw the server close their connection (after %d lines in all)",
        closed, count, lines);
    if (rc < 0)
        return rc;
    ctrio_stream *s;
    int refused = ctrio_open_tcp_stream("localhost", d->port, &s);
    if (refused == 0)
        ctrio_stream_close(s);
    say(d, "a new client now gets: %s", ctrio_strerror(refused));
    if (refused < 0 && refused != -ECONNREFUSED) /* cancelled or failed: not refused */
        return refused;
    return d->server_rc == 0 && d->server.open == 0 && closed == count && refused < 0
               ? 0
               : -EIO;
}

/* ---- the tour --------------------------------------------------------------- */

int demo_tour(void *arg)
{
    demo d;
    memset(&d, 0, sizeof d);
    d.o = arg;
    d.t0 = ctrio_current_time();
    ctrio_event_init(&d.server_done);
    FILE *out = d.o->out;

    fputs("\n1. An echo server on a free port: serve_tcp(port 0) runs one task per\n"
          "   connection; ctrio_start returns once it listens.\n", out);
    ctrio_nursery top;
    ctrio_nursery_open(&top);
    int rc = ctrio_start(&top, server_side, &d, NULL);
    if (rc == 0)
        rc = scene_many_clients(&d);
    if (rc == 0 && d.o->scenes >= 3)
        rc = scene_slow_client(&d);
    if (rc == 0 && d.o->scenes >= 4)
        rc = scene_cancel_server(&d);
    /* something went wrong, or scene 4 was left out: stop the server too */
    if (rc < 0 || d.o->scenes < 4)
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&top));
    rc = ctrio_nursery_close(&top, rc);

    fprintf(out, "\n5. Summary: %d connections served, %lld bytes echoed, %d client cut off "
                 "by a deadline,\n   server cancelled cleanly.\n",
            d.server.connections, d.server.bytes, d.server.cut_off);
    if (rc == 0)
        fprintf(out, "\nDone in %.2f s.\n", ctrio_current_time() - d.t0);
    return rc;
}
