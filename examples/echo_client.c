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
#include <ctrio.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct options {
    const char *host;
    int port;
    int nmessages;
    char **messages;
} options;

/* Send one line and print its echo. */
static int echo_line(ctrio_stream *s, const char *line, size_t len)
{
    int rc = ctrio_stream_send_all(s, line, len);
    if (rc < 0)
        return rc;
    char buf[4096];
    for (size_t got = 0; got < len; ) {
        size_t want = len - got < sizeof buf ? len - got : sizeof buf;
        ssize_t n = ctrio_stream_receive_some(s, buf, want);
        if (n == 0)
            return -ECONNRESET; /* the server hung up before echoing it all */
        if (n < 0)
            return (int)n;
        fwrite(buf, 1, (size_t)n, stdout);
        got += (size_t)n;
    }
    fflush(stdout);
    return 0;
}

/* fgets, run in a worker thread: it blocks. */
typedef struct line {
    char text[4096];
    bool eof;
} line;

static int read_line(void *arg)
{
    line *l = arg;
    l->eof = fgets(l->text, sizeof l->text, stdin) == NULL;
    return 0;
}

static int talk(ctrio_stream *s, options *o)
{
    int rc = 0;
    if (o->nmessages > 0) {
        for (int i = 0; i < o->nmessages && rc == 0; i++) {
            char text[4096];
            int len = snprintf(text, sizeof text, "%s\n", o->messages[i]);
            if (len >= (int)sizeof text)
                len = (int)sizeof text - 1;
            rc = echo_line(s, text, (size_t)len);
        }
    } else {
        line l;
        while (rc == 0 && (rc = ctrio_to_thread_run_sync(read_line, &l, 0)) == 0 && !l.eof)
            rc = echo_line(s, l.text, strlen(l.text));
    }
    if (rc < 0)
        return rc;
    /* Done: half-close, then wait for the server to close its side. */
    rc = ctrio_stream_send_eof(s);
    char buf[256];
    ssize_t n;
    while (rc == 0 && (n = ctrio_stream_receive_some(s, buf, sizeof buf)) != 0)
        if (n < 0)
            rc = (int)n;
    return rc;
}

static int main_task(void *arg)
{
    options *o = arg;
    ctrio_stream *s;
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, 10.0); /* connecting takes 10 s at most */
    int rc = ctrio_open_tcp_stream(o->host, o->port, &s);
    rc = ctrio_cancel_scope_close(&deadline, rc);
    if (rc < 0) {
        fprintf(stderr, "echo_client: cannot connect to %s port %d: %s\n", o->host, o->port,
                ctrio_strerror(rc));
        return rc;
    }
    rc = talk(s, o);
    if (rc < 0)
        fprintf(stderr, "echo_client: %s\n", ctrio_strerror(rc));
    ctrio_stream_close(s);
    return rc;
}

int main(int argc, char **argv)
{
    char *end;
    if (argc < 3) {
        fprintf(stderr, "usage: %s HOST PORT [MESSAGE...]\n", argv[0]);
        return 2;
    }
    options o = {argv[1], (int)strtol(argv[2], &end, 10), argc - 3, argv + 3};
    if (*end || o.port <= 0 || o.port > 65535) {
        fprintf(stderr, "echo_client: bad port '%s'\n", argv[2]);
        return 2;
    }
    return ctrio_run(main_task, &o) == 0 ? 0 : 1;
}
