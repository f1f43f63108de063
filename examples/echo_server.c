/*
 * echo_server.c — a TCP echo server: trio.serve_tcp with one task per
 * connection, and a clean exit on Ctrl-C or SIGTERM.
 *
 *   echo_server [--runs N [--incoming-cpu]] PORT [HOST]
 *                               PORT 0 picks a free port; HOST defaults to
 *                               every local address. --runs N: N runs on N
 *                               threads, one per CPU (0: one per CPU this
 *                               process may use), each listening on the port
 *                               with SO_REUSEPORT; the kernel spreads the
 *                               connections over them. --incoming-cpu: each
 *                               listener also gets SO_INCOMING_CPU, its run's
 *                               CPU, and the kernel (Linux 6.2 or later) gives
 *                               a connection to the run on the CPU that took
 *                               its SYN (a NIC queue's CPU; over loopback,
 *                               the client's CPU) before hashing: a client and
 *                               its server then share a CPU's caches and no
 *                               wakeup crosses CPUs (bench/runs_bench.sh),
 *                               but clients that all run on one CPU all land
 *                               on one run.
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
 *  - All cores: with --runs, ctrio_run_parallel runs main_task in every run;
 *    run 0 alone prints the "listening on" lines and watches the signals,
 *    and a signal cancels the whole group (ctrio_cancel_parallel_group).
 */
#include "echo_server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the program (the handler and the server are in echo_server_flow.c) ---- */

/* --runs was given: written before the runs start, only read by them. */
static bool running_parallel;

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
    bool grouped = running_parallel;
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
    if (grouped)
        return ctrio_cancel_parallel_group(); /* every run, this one too */
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(top));
    return 0;
}

static int main_task(void *arg)
{
    bool first = ctrio_current_run_index() == 0; /* the only run without --runs */
    if (first)
        ((echo_server_options *)arg)->started = 1;
    ctrio_nursery top;
    ctrio_nursery_open(&top);
    void *listeners;
    int rc = ctrio_start(&top, echo_server_task, arg, &listeners);
    if (rc == 0 && first) {
        print_listeners(listeners);
        rc = ctrio_start_soon(&top, watch_signals, &top);
    } else if (rc < 0) {
        fprintf(stderr, "echo_server: cannot listen: %s\n", ctrio_strerror(rc));
    }
    /* Runs until watch_signals cancels the nursery: that cancellation is the
     * nursery's own, so it returns 0. With --runs it cancels the group: each
     * run then returns -ECANCELED, which ctrio_run_parallel takes as no
     * failure (the group was cancelled). */
    return ctrio_nursery_close(&top, rc);
}

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--runs N [--incoming-cpu]] PORT [HOST]   (PORT 0: pick a "
            "free port; N 0: one run per CPU)\n",
            prog);
}

int main(int argc, char **argv)
{
    char *end;
    echo_server_options o = {0, NULL, 0, 0, 0};
    int runs = -1; /* no --runs: one plain ctrio_run */
    int a = 1;
    if (argc > 2 && strcmp(argv[1], "--runs") == 0) {
        runs = (int)strtol(argv[2], &end, 10);
        if (*end || argv[2][0] == '\0' || runs < 0 || runs > 4096) {
            usage(argv[0]);
            return 2;
        }
        a = 3;
        o.reuseport = 1;
        if (argc > 3 && strcmp(argv[3], "--incoming-cpu") == 0) {
            o.incoming_cpu = 1;
            a = 4;
        }
    }
    if (argc - a < 1 || argc - a > 2 || (o.port = (int)strtol(argv[a], &end, 10), *end) ||
        o.port < 0 || o.port > 65535) {
        usage(argv[0]);
        return 2;
    }
    if (argc - a == 2)
        o.host = argv[a + 1];
    /* Block the signals before the run starts any thread, so that every
     * thread inherits the mask and the signals wait for ctrio_wait_signal
     * instead of killing us between "listening on" and the watcher. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    running_parallel = runs >= 0;
    int rc = runs >= 0 ? ctrio_run_parallel(runs, NULL, main_task, &o) : ctrio_run(main_task, &o);
    if (rc < 0 && !o.started) /* (once started, the task said what failed) */
        fprintf(stderr, "echo_server: cannot start: %s\n", ctrio_strerror(rc));
    return rc == 0 ? 0 : 1;
}
