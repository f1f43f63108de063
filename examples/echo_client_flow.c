/*
 * echo_client_flow.c — echo_client's flow (see echo_client.c for what the
 * program does and shows), with its streams as parameters (echo_client.h).
 */
#include "echo_client.h"

#include <errno.h>
#include <string.h>

/* Send one line and print its echo. */
static int echo_line(ctrio_stream *s, const char *line, size_t len, FILE *out)
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
        fwrite(buf, 1, (size_t)n, out);
        got += (size_t)n;
    }
    fflush(out);
    return 0;
}

/* fgets, run in a worker thread: it blocks. */
typedef struct line {
    FILE *in;
    char text[4096];
    bool eof;
} line;

static int read_line(void *arg)
{
    line *l = arg;
    l->eof = fgets(l->text, sizeof l->text, l->in) == NULL;
    return 0;
}

static int talk(ctrio_stream *s, echo_client_options *o)
{
    int rc = 0;
    if (o->nmessages > 0) {
        for (int i = 0; i < o->nmessages && rc == 0; i++) {
            char text[4096];
            int len = snprintf(text, sizeof text, "%s\n", o->messages[i]);
            if (len >= (int)sizeof text)
                len = (int)sizeof text - 1;
            rc = echo_line(s, text, (size_t)len, o->out);
        }
    } else {
        line l = {.in = o->in};
        while (rc == 0 && (rc = ctrio_to_thread_run_sync(read_line, &l, 0)) == 0 && !l.eof)
            rc = echo_line(s, l.text, strlen(l.text), o->out);
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

int echo_client_flow(void *arg)
{
    echo_client_options *o = arg;
    ctrio_stream *s;
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, 10.0); /* connecting takes 10 s at most */
    int rc = ctrio_open_tcp_stream(o->host, o->port, &s);
    rc = ctrio_cancel_scope_close(&deadline, rc);
    if (rc < 0) {
        if (o->err)
            fprintf(o->err, "echo_client: cannot connect to %s port %d: %s\n", o->host, o->port,
                ctrio_strerror(rc));
        return rc;
    }
    rc = talk(s, o);
    if (rc < 0 && o->err)
        fprintf(o->err, "echo_client: %s\n", ctrio_strerror(rc));
    ctrio_stream_close(s);
    return rc;
}

