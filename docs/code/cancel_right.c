/* docs-test: run
 * cancel_right.c: cancellation done right. A worker serves a connection until
 * it is cancelled; then, in a shielded scope with a deadline of its own, it
 * says goodbye to its peer, and it returns the -ECANCELED it got so that the
 * scope that cancelled it, and only that one, turns it into 0. */
#include <ctrio.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* [goodbye] */
/* Cleanup that must talk to the network: shielded, so that the cancellation
 * that is unwinding us does not stop it at its first checkpoint, and with a
 * deadline, so that a peer that does not read cannot hold us forever. */
static void say_goodbye(ctrio_stream *stream)
{
    ctrio_cancel_scope cleanup;
    ctrio_move_on_after(&cleanup, 0.5);
    ctrio_cancel_scope_set_shield(&cleanup, true);
    int rc = ctrio_stream_send_all(stream, "bye\n", 4);
    ctrio_cancel_scope_close(&cleanup, rc);
}
/* [goodbye] */

/* [worker] */
static int worker(void *arg)
{
    ctrio_stream *stream = arg;
    char buf[512];
    for (;;) {
        ssize_t n = ctrio_stream_receive_some(stream, buf, sizeof buf);
        if (n == -ECANCELED) {
            say_goodbye(stream);
            return (int)n; /* never 0: the cancellation is not ours to end */
        }
        if (n <= 0)
            return (int)n;
        int rc = ctrio_stream_send_all(stream, buf, (size_t)n);
        if (rc < 0)
            return rc; /* -ECANCELED too: pass it up unchanged */
    }
}
/* [worker] */

static int peer(void *arg)
{
    ctrio_stream *stream = arg;
    char buf[512];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf - 1 &&
           (n = ctrio_stream_receive_some(stream, buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    printf("peer: the worker said \"%.*s\" before it left\n", (int)strcspn(buf, "\n"), buf);
    return strcmp(buf, "bye\n") == 0 ? 0 : -EPROTO;
}

static int open_pair(ctrio_stream *out[2])
{
    ctrio_socket *s[2];
    int rc = ctrio_socketpair(AF_UNIX, SOCK_STREAM, 0, s);
    if (rc < 0)
        return rc;
    if ((rc = ctrio_socket_stream_new(s[0], &out[0])) < 0) {
        ctrio_socket_close(s[0]);
        ctrio_socket_close(s[1]);
        return rc;
    }
    if ((rc = ctrio_socket_stream_new(s[1], &out[1])) < 0) {
        ctrio_stream_close(out[0]);
        ctrio_socket_close(s[1]);
    }
    return rc;
}

/* [main] */
static int main_task(void *arg)
{
    (void)arg;
    ctrio_stream *pair[2];
    int rc = open_pair(pair);
    if (rc < 0)
        return rc;
    ctrio_nursery peers;
    ctrio_nursery_open(&peers);
    rc = ctrio_start_soon(&peers, peer, pair[1]);
    if (rc == 0) {
        ctrio_cancel_scope timeout;
        ctrio_move_on_after(&timeout, 0.2);
        rc = worker(pair[0]);                          /* -ECANCELED after 0.2 s */
        rc = ctrio_cancel_scope_close(&timeout, rc);   /* ours: 0 */
        printf("worker: stopped after 0.2 s (%d)\n", rc);
    }
    ctrio_stream_close(pair[0]); /* the peer sees the end of the stream */
    rc = ctrio_nursery_close(&peers, rc);
    ctrio_stream_close(pair[1]);
    return rc;
}
/* [main] */

int main(void)
{
    return ctrio_run(main_task, NULL) == 0 ? 0 : 1;
}
