/*
 * udp_echo.h — udp_echo's server, client and pair flows as functions, so
 * that tests/test_sweep.c sweeps the program's own code (issue #8, section
 * 5); udp_echo.c keeps the command line and the signals.
 */
#ifndef CTRIO_EXAMPLE_UDP_ECHO_H
#define CTRIO_EXAMPLE_UDP_ECHO_H

#include <ctrio.h>

#include <stdio.h>

typedef struct udp_echo_server_args {
    const char *host, *port;
    char address[128]; /* filled in once bound: "127.0.0.1:PORT" */
    int port_number;
} udp_echo_server_args;

/* The server: bind host:port, report with ctrio_task_started(args), then
 * echo every datagram to its sender until cancelled. */
int udp_echo_server(void *server_args);

typedef struct udp_echo_client_args {
    const char *host, *port;
    int count;
    char **messages;
    double retry;    /* wait this long for a reply before sending again (3 tries) */
    FILE *out, *err; /* the replies, one a line; the errors */
} udp_echo_client_args;

/* The client: each message, and its echo printed on out. */
int udp_echo_client(const udp_echo_client_args *a);

/* `udp_echo pair`: the server on a->host, port 0, with ctrio_start; the
 * client against it ("server on ADDRESS" first on a->out; a->port unused);
 * then the server cancelled. */
int udp_echo_pair(const udp_echo_client_args *a);

#endif
