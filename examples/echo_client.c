/*
 * echo_client.c — a TCP echo client: connect, send lines, print the echoes.
 *
 *   echo_client HOST PORT [MESSAGE...]
 *
 * Each MESSAGE is sent as one line and its echo printed; with no MESSAGE,
 * the lines of stdin are sent instead. Then the client sends EOF and waits
 * for the server to close its side.
 *
 * What it shows:
 *  - ctrio_open_tcp_stream resolves a name ("localhost") and connects with
 *    happy eyeballs (RFC 8305); a fail_after scope puts a deadline on it.
 *  - A stream is read with receive_some, which returns whatever has arrived:
 *    a message can come back in pieces, so we read until we have all of it.
 *  - Blocking library calls (fgets on stdin) run in a worker thread with
 *    ctrio_to_thread_run_sync, so they never stall the run.
 *  - Half-close: send_eof tells the server we are done; receive_some then
 *    returns 0 once the server has closed its side too.
 */
#include "echo_client.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- the program (the flow is in echo_client_flow.c) ------------------------ */

int main(int argc, char **argv)
{
    char *end;
    if (argc < 3) {
        fprintf(stderr, "usage: %s HOST PORT [MESSAGE...]\n", argv[0]);
        return 2;
    }
    echo_client_options o = {argv[1], (int)strtol(argv[2], &end, 10), argc - 3, argv + 3,
                             stdin, stdout, stderr};
    if (*end || o.port <= 0 || o.port > 65535) {
        fprintf(stderr, "echo_client: bad port '%s'\n", argv[2]);
        return 2;
    }
    return ctrio_run(echo_client_flow, &o) == 0 ? 0 : 1;
}
