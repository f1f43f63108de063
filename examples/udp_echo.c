/*
 * udp_echo.c — a UDP echo server and client, with trio.socket-style calls.
 *
 *   udp_echo server PORT [HOST]           echo datagrams until Ctrl-C/SIGTERM
 *                                         (PORT 0: pick one; the first line
 *                                         on stdout is "listening on ADDR")
 *   udp_echo client HOST PORT MESSAGE...  send each, print each reply
 *   udp_echo pair [MESSAGE...]            both, as two tasks of one program
 *
 * What it shows:
 *  - Datagram sockets in batches: one recvmmsg takes every datagram queued
 *    (each with its sender's address), one sendmmsg answers them all; the
 *    client uses plain send and recv.
 *  - UDP may lose a datagram, so the client waits for each reply under
 *    move_on_after and sends again if nothing came back (three tries).
 *  - `pair` starts the server with ctrio_start, which returns once the
 *    server's socket is bound (its address comes back through
 *    ctrio_task_started), runs the client against it, then cancels the
 *    server through its nursery.
 */
#include "udp_echo.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

/* ---- the program (the flows are in udp_echo_flow.c) ------------------------ */

static int watch_signals(void *arg)
{
    ctrio_nursery *top = arg;
    static const int signals[] = {SIGINT, SIGTERM};
    int sig = ctrio_wait_signal(signals, 2);
    if (sig > 0)
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(top));
    return sig < 0 ? sig : 0;
}

typedef struct options {
    const char *mode, *host, *port;
    int count;
    char **messages;
} options;

static int main_task(void *arg)
{
    options *o = arg;
    udp_echo_client_args ca = {o->host, o->port, o->count, o->messages, 0.5, stdout, stderr};
    if (strcmp(o->mode, "client") == 0)
        return udp_echo_client(&ca);
    if (strcmp(o->mode, "pair") == 0)
        return udp_echo_pair(&ca);

    /* server: in a nursery, with a task that stops it on a signal */
    udp_echo_server_args sa = {.host = o->host, .port = o->port};
    ctrio_nursery top;
    ctrio_nursery_open(&top);
    int rc = ctrio_start(&top, udp_echo_server, &sa, NULL);
    if (rc < 0) {
        fprintf(stderr, "udp_echo: cannot listen: %s\n", ctrio_strerror(rc));
    } else {
        printf("listening on %s\n", sa.address);
        fflush(stdout);
        ctrio_start_soon(&top, watch_signals, &top);
    }
    return ctrio_nursery_close(&top, rc);
}

int main(int argc, char **argv)
{
    static char *default_messages[] = {"ping", "hello, UDP", "bye"};
    options o = {argc > 1 ? argv[1] : "", NULL, NULL, 0, NULL};
    if (strcmp(o.mode, "server") == 0 && (argc == 3 || argc == 4)) {
        o.port = argv[2];
        o.host = argc == 4 ? argv[3] : NULL;
    } else if (strcmp(o.mode, "client") == 0 && argc >= 5) {
        o.host = argv[2];
        o.port = argv[3];
        o.count = argc - 4;
        o.messages = argv + 4;
    } else if (strcmp(o.mode, "pair") == 0) {
        o.host = "127.0.0.1";
        o.port = "0";
        o.count = argc > 2 ? argc - 2 : 3;
        o.messages = argc > 2 ? argv + 2 : default_messages;
    } else {
        fprintf(stderr, "usage: %s server PORT [HOST]\n"
                        "       %s client HOST PORT MESSAGE...\n"
                        "       %s pair [MESSAGE...]\n", argv[0], argv[0], argv[0]);
        return 2;
    }
    sigset_t set; /* before any thread exists: see echo_server.c */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    return ctrio_run(main_task, &o) == 0 ? 0 : 1;
}
