/*
 * echo_server.h — echo_server's handler and server task, so that
 * tests/test_sweep.c sweeps the program's own code (issue #8, section 5);
 * echo_server.c keeps the command line, the output and the signals.
 */
#ifndef CTRIO_EXAMPLE_ECHO_SERVER_H
#define CTRIO_EXAMPLE_ECHO_SERVER_H

#include <ctrio.h>

typedef struct echo_server_options {
    int port;
    const char *host; /* NULL: every local address */
    int started;      /* main_task ran: the run was set up (run 0's, with --runs) */
    int reuseport;    /* --runs: every run listens on the port (SO_REUSEPORT) */
    int incoming_cpu; /* --incoming-cpu: SO_INCOMING_CPU, the run's CPU */
} echo_server_options;

/* One connection: echo until the client closes its side. */
int echo_server_handle(ctrio_stream *s, void *arg);

/* Launch with ctrio_start: serve_tcp reports its ctrio_listener_set once
 * it is listening, then serves until cancelled. */
int echo_server_task(void *options);

#endif
