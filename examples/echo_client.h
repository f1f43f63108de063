/*
 * echo_client.h — echo_client's flow as a function, so that
 * tests/test_sweep.c sweeps the program's own code (issue #8, section 5);
 * echo_client.c keeps the command line.
 */
#ifndef CTRIO_EXAMPLE_ECHO_CLIENT_H
#define CTRIO_EXAMPLE_ECHO_CLIENT_H

#include <ctrio.h>

#include <stdio.h>

typedef struct echo_client_options {
    const char *host;
    int port;
    int nmessages;
    char **messages;      /* none: the lines of in instead */
    FILE *in, *out, *err; /* stdin, stdout, stderr in the program; err NULL: silent */
} echo_client_options;

/* Connect (10 s at most), send each message as a line and print its echo
 * on out, send EOF and wait for the server's. Returns 0 or the error (told
 * on err). */
int echo_client_flow(void *options);

#endif
