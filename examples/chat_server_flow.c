/*
 * chat_server_flow.c — chat_server's server (see chat_server.c for what the
 * program does and shows): the inbox, the fan-out task, serve_tcp and a
 * handler per client, with the log stream as a parameter (chat_server.h).
 */
#include "chat_server.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum { LINE_MAX_LEN = 500, OUTGOING_SLOTS = 64, INBOX_SLOTS = 256 };

typedef struct message {
    int from; /* client number; 0: the server */
    size_t len;
    char text[LINE_MAX_LEN + 32];
} message;

typedef struct client {
    struct client *next;
    int id;
    ctrio_stream *stream;
    ctrio_send_channel *out; /* what this client should be sent */
    ctrio_receive_channel *out_rx;
    ctrio_nursery nursery; /* its writer task */
} client;

typedef struct chat {
    client *clients;
    int last_id;
    ctrio_send_channel *inbox;
    ctrio_receive_channel *inbox_rx;
    const chat_server_options *o;
} chat;

/* Put a message in the inbox (waits if the inbox is full). */
static int post(chat *c, int from, const char *fmt, ...)
{
    message m = {.from = from};
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(m.text, sizeof m.text, fmt, ap);
    va_end(ap);
    m.len = n < (int)sizeof m.text ? (size_t)n : sizeof m.text - 1;
    return ctrio_channel_send(c->inbox, &m);
}

/* The fan-out task: each message of the inbox goes to every other client. */
static int fan_out(void *arg)
{
    chat *c = arg;
    message m;
    int rc;
    while ((rc = ctrio_channel_receive(c->inbox_rx, &m)) == 1)
        for (client *k = c->clients; k; k = k->next)
            if (k->id != m.from && ctrio_channel_send_nowait(k->out, &m) == -EWOULDBLOCK &&
                c->o->log)
                fprintf(c->o->log, "chat: client %d is too slow, a message was dropped\n", k->id);
    return rc;
}

/* A client's writer: its outgoing channel into its connection. */
static int writer(void *arg)
{
    client *k = arg;
    message m;
    while (ctrio_channel_receive(k->out_rx, &m) == 1)
        if (ctrio_stream_send_all(k->stream, m.text, m.len) < 0)
            break; /* gone: the reader will see it too */
    /* Done or broken: either way stop reading from this client. */
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&k->nursery));
    return 0;
}

/* Read the client's lines and post them; returns at EOF. */
static int read_lines(chat *c, client *me)
{
    char line[LINE_MAX_LEN];
    size_t used = 0;
    char buf[4096];
    for (;;) {
        ssize_t n = ctrio_stream_receive_some(me->stream, buf, sizeof buf);
        if (n <= 0)
            return (int)n;
        for (ssize_t i = 0; i < n; i++) {
            line[used++] = buf[i];
            if (buf[i] == '\n' || used == sizeof line - 1) {
                int rc = post(c, me->id, "[%d] %.*s%s", me->id, (int)used, line,
                              buf[i] == '\n' ? "" : "\n");
                if (rc < 0)
                    return rc;
                used = 0;
            }
        }
    }
}

static void forget(chat *c, client *me)
{
    for (client **p = &c->clients; *p; p = &(*p)->next)
        if (*p == me) {
            *p = me->next;
            return;
        }
}

/* One connection (run by serve_tcp). */
static int handle_client(ctrio_stream *s, void *arg)
{
    chat *c = arg;
    client me = {.id = ++c->last_id, .stream = s};
    int rc = ctrio_open_memory_channel(sizeof(message), OUTGOING_SLOTS, &me.out, &me.out_rx);
    if (rc < 0)
        return 0;
    me.next = c->clients;
    c->clients = &me;
    if (c->o->log)
        fprintf(c->o->log, "chat: client %d joined\n", me.id);
    post(c, 0, "* client %d joined\n", me.id);

    ctrio_nursery_open(&me.nursery);
    ctrio_start_soon(&me.nursery, writer, &me);
    rc = read_lines(c, &me);
    /* Leaving: no new messages for us; the writer sends what is queued,
     * then sees the end of the channel and returns. (If the writer cancelled
     * us, the nursery absorbs that cancellation: rc becomes 0.) */
    forget(c, &me);
    ctrio_send_channel_close(me.out);
    rc = ctrio_nursery_close(&me.nursery, rc);
    ctrio_receive_channel_close(me.out_rx);

    if (c->o->log)
        fprintf(c->o->log, "chat: client %d left\n", me.id);
    if (rc != -ECANCELED)
        post(c, 0, "* client %d left\n", me.id);
    return rc == -ECANCELED ? rc : 0; /* a client's error is not the server's */
}

static int server(void *arg)
{
    chat *c = arg;
    return ctrio_serve_tcp(handle_client, c, c->o->port, c->o->host, 0);
}

int chat_server_flow(void *arg)
{
    chat c = {NULL, 0, NULL, NULL, arg};
    int rc = ctrio_open_memory_channel(sizeof(message), INBOX_SLOTS, &c.inbox, &c.inbox_rx);
    if (rc < 0)
        return rc;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    rc = ctrio_start_soon(&n, fan_out, &c);
    void *set;
    if (rc == 0)
        rc = ctrio_start(&n, server, &c, &set);
    if (rc == 0)
        ctrio_task_started(set); /* serve_tcp's listeners, for the caller */
    rc = ctrio_nursery_close(&n, rc);
    ctrio_send_channel_close(c.inbox);
    ctrio_receive_channel_close(c.inbox_rx);
    return rc;
}
