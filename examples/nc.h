/*
 * nc.h — nc's whole flow as a function, so that tests/test_sweep.c sweeps
 * the program's own code (issue #8, section 5) and nc.c keeps only the
 * command line and the signals.
 */
#ifndef CTRIO_EXAMPLE_NC_H
#define CTRIO_EXAMPLE_NC_H

#include <ctrio.h>

#include <stdbool.h>
#include <stdio.h>

typedef struct nc_options {
    bool listen, udp, unix_socket;
    double wait;      /* -w, INFINITY if not given */
    const char *host; /* NULL: every local address (listen mode) */
    const char *port; /* or the path, with -U */
    int in_fd, out_fd; /* the program's stdin and stdout */
    FILE *err;         /* "listening on", errors (the program's stderr); NULL: silent */
    int bound_port;    /* set in listen mode once bound (0 with -U) */
    bool tls;          /* --tls: over TCP only (built with NC_TLS) */
    const char *cafile, *cert, *key; /* --cafile (client), --cert --key (-l) */
} nc_options;

/* Connect, or wait for one peer, then copy in_fd to the peer and the peer
 * to out_fd until both directions end. In listen mode, once listening it
 * sets o->bound_port and calls ctrio_task_started(NULL), so that a caller
 * that launched it with ctrio_start learns the port (called directly, that
 * call does nothing). Returns 0, or the error that ended it (already told
 * on o->err, except -ECANCELED). */
int nc_flow(void *options);

#endif
