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
#include "demo.h"

#include <stdio.h>

/* ---- the program (the tour is in demo_flow.c) ------------------------------- */

int main(void)
{
    puts("ctrio: Trio's structured concurrency in C - an echo server and its clients");
    /* 100 clients at once; the server cuts off a client silent for 1 s. Not
     * shorter: the clients of scene 2 share the thread with the server and
     * with 100 name lookups, and on a loaded machine under TSan one of them
     * once waited 0.3 s between its connect and its first line. */
    demo_options o = {.clients = 100, .chatty_clients = 5, .idle_limit = 1.0, .scenes = 4,
                      .out = stdout};
    int rc = ctrio_run(demo_tour, &o);
    if (rc != 0)
        fprintf(stderr, "demo failed: %s\n", ctrio_strerror(rc));
    return rc == 0 ? 0 : 1;
}
