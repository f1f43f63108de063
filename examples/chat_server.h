/*
 * chat_server.h — chat_server's whole server as one task, so that
 * tests/test_sweep.c sweeps the program's own code (issue #8, section 5);
 * chat_server.c keeps the command line, the output and the signals.
 */
#ifndef CTRIO_EXAMPLE_CHAT_SERVER_H
#define CTRIO_EXAMPLE_CHAT_SERVER_H

#include <ctrio.h>

#include <stdio.h>

typedef struct chat_server_options {
    int port;
    const char *host; /* NULL: every local address */
    FILE *log;        /* joins, leaves, dropped messages (stderr); NULL: silent */
} chat_server_options;

/* Launch with ctrio_start: opens the inbox, starts the fan-out task and
 * serve_tcp, reports serve_tcp's ctrio_listener_set once listening, then
 * serves until cancelled. */
int chat_server_flow(void *options);

#endif
