/*
 * echo_server.c — a TCP echo server: trio.serve_tcp with one task per
 * connection, and a clean exit on Ctrl-C or SIGTERM.
 *
 *   echo_server PORT [HOST]     PORT 0 picks a free port; HOST defaults to
 *                               every local address
 *
 * The first line on stdout is "listening on ADDRESS:PORT" (one line per
 * listening socket), so that a script can start the server on port 0 and
 * read the port it got.
 *
 * What it shows:
 *  - ctrio_serve_tcp runs a handler per connection; the handler is plain
 *    blocking-style code (receive, send, repeat) and the stream is closed
 *    for it when it returns.
 *  - ctrio_start launches the server and waits until it is listening, which
 *    is how we learn the port before anyone connects.
 *  - Signals are just another thing to wait for: a task waits for SIGINT or
 *    SIGTERM and cancels the top nursery, and everything unwinds (handlers,
 *    accept loops, listeners) before main returns 0.
 */
#include "echo_server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the program (the handler and the server are in echo_server_flow.c) ---- */

static void print_listeners(const ctrio_listener_set *set)
{
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
}

/* Wait for Ctrl-C or SIGTERM, then cancel everything in the nursery. */
static int watch_signals(void *arg)
{
    ctrio_nursery *top = arg;
    static const int signals[] = {SIGINT, SIGTERM};
    int sig = ctrio_wait_signal(signals, 2);
    if (sig < 0) {
        /* e.g. no descriptor left for it (ulimit -n): the server would run
         * with no way to stop it cleanly, so stop it now, saying why */
        if (sig != -ECANCELED)
            fprintf(stderr, "echo_server: cannot watch for SIGINT and SIGTERM: %s\n",
                    ctrio_strerror(sig));
        return sig;
    }
    fprintf(stderr, "echo_server: %s, shutting down\n", strsignal(sig));
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(top));
    return 0;
}

static int main_task(void *arg)
{
    ((echo_server_options *)arg)->started = 1;
    ctrio_nursery top;
    ctrio_nursery_open(&top);
    void *listeners;
    int rc = ctrio_start(&top, echo_server_task, arg, &listeners);
    if (rc == 0) {
        print_listeners(listeners);
        rc = ctrio_start_soon(&top, watch_signals, &top);
    } else {
        fprintf(stderr, "echo_server: cannot listen: %s\n", ctrio_strerror(rc));
    }
    /* Runs until watch_signals cancels the nursery: that cancellation is the
     * nursery's own, so it returns 0. */
    return ctrio_nursery_close(&top, rc);
}

int main(int argc, char **argv)
{
    char *end;
    echo_server_options o = {0, NULL, 0};
    if (argc < 2 || argc > 3 || (o.port = (int)strtol(argv[1], &end, 10), *end) ||
        o.port < 0 || o.port > 65535) {
        fprintf(stderr, "usage: %s PORT [HOST]   (PORT 0: pick a free port)\n", argv[0]);
        return 2;
    }
    if (argc == 3)
        o.host = argv[2];
    /* Block the signals before the run starts any thread, so that every
     * thread inherits the mask and the signals wait for ctrio_wait_signal
     * instead of killing us between "listening on" and the watcher. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    int rc = ctrio_run(main_task, &o);
    if (rc < 0 && !o.started) /* (once started, the task said what failed) */
        fprintf(stderr, "echo_server: cannot start: %s\n", ctrio_strerror(rc));
    return rc == 0 ? 0 : 1;
}
