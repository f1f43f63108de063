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
#include "chat_server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the program (the server is in chat_server_flow.c) ---------------------- */

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
    ctrio_nursery top;
    ctrio_nursery_open(&top);
    const ctrio_listener_set *set;
    int rc = ctrio_start(&top, chat_server_flow, arg, (void **)&set);
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
    return ctrio_nursery_close(&top, rc);
}

int main(int argc, char **argv)
{
    char *end;
    chat_server_options o = {0, NULL, stderr};
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
