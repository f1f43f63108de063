/*
 * chat_server.c — a line-based chat: what one client says, every other
 * client sees, prefixed by its number.
 *
 *   chat_server PORT [HOST]     PORT 0 picks a free port
 *
 * Try it with two terminals running `nc localhost PORT`. The first line on
 * stdout is "listening on ADDRESS:PORT"; joins and leaves are logged on
 * stderr. Ctrl-C or SIGTERM stops it cleanly.
 *
 * What it shows: tasks that talk through memory channels instead of
 * sharing buffers.
 *  - Each client's handler reads lines and sends them into one inbox channel.
 *  - A fan-out task takes each message from the inbox and puts it into every
 *    other client's outgoing channel, with send_nowait: a client that does
 *    not keep up loses messages instead of stalling everyone.
 *  - Each client has a writer task that drains its outgoing channel into its
 *    connection. Closing the channel's send end tells the writer to finish.
 *  - No locks: tasks only switch at checkpoints, so the fan-out's walk over
 *    the list of clients (which has none) never sees it change under it.
 */
#include <ctrio.h>

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
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
            if (k->id != m.from && ctrio_channel_send_nowait(k->out, &m) == -EWOULDBLOCK)
                fprintf(stderr, "chat: client %d is too slow, a message was dropped\n", k->id);
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
    fprintf(stderr, "chat: client %d joined\n", me.id);
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

    fprintf(stderr, "chat: client %d left\n", me.id);
    if (rc != -ECANCELED)
        post(c, 0, "* client %d left\n", me.id);
    return rc == -ECANCELED ? rc : 0; /* a client's error is not the server's */
}

typedef struct options {
    int port;
    const char *host;
    chat *chat;
} options;

static int server(void *arg)
{
    options *o = arg;
    return ctrio_serve_tcp(handle_client, o->chat, o->port, o->host, 0);
}

static int watch_signals(void *arg)
{
    ctrio_nursery *top = arg;
    static const int signals[] = {SIGINT, SIGTERM};
    int sig = ctrio_wait_signal(signals, 2);
    if (sig < 0)
        return sig;
    fprintf(stderr, "chat: %s, shutting down\n", strsignal(sig));
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(top));
    return 0;
}

static int main_task(void *arg)
{
    options *o = arg;
    chat c = {NULL, 0, NULL, NULL};
    int rc = ctrio_open_memory_channel(sizeof(message), INBOX_SLOTS, &c.inbox, &c.inbox_rx);
    if (rc < 0)
        return rc;
    o->chat = &c;
    ctrio_nursery top;
    ctrio_nursery_open(&top);
    ctrio_start_soon(&top, fan_out, &c);
    const ctrio_listener_set *set;
    rc = ctrio_start(&top, server, o, (void **)&set);
    if (rc == 0) {
        for (size_t i = 0; i < set->count; i++) {
            struct sockaddr_storage ss;
            socklen_t len = sizeof ss;
            char text[128];
            ctrio_socket *sock = ctrio_socket_listener_socket(set->listeners[i]);
            if (ctrio_socket_getsockname(sock, (struct sockaddr *)&ss, &len) == 0 &&
                ctrio_sockaddr_format((struct sockaddr *)&ss, len, text, sizeof text) >= 0)
                printf("listening on %s\n", text);
        }
        fflush(stdout);
        ctrio_start_soon(&top, watch_signals, &top);
    } else {
        fprintf(stderr, "chat: cannot listen: %s\n", ctrio_strerror(rc));
    }
    rc = ctrio_nursery_close(&top, rc);
    ctrio_send_channel_close(c.inbox);
    ctrio_receive_channel_close(c.inbox_rx);
    return rc;
}

int main(int argc, char **argv)
{
    char *end;
    options o = {0, NULL, NULL};
    if (argc < 2 || argc > 3 || (o.port = (int)strtol(argv[1], &end, 10), *end) ||
        o.port < 0 || o.port > 65535) {
        fprintf(stderr, "usage: %s PORT [HOST]   (PORT 0: pick a free port)\n", argv[0]);
        return 2;
    }
    if (argc == 3)
        o.host = argv[2];
    sigset_t set; /* before any thread exists: see echo_server.c */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    return ctrio_run(main_task, &o) == 0 ? 0 : 1;
}
