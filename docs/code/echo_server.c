/* docs-test: echo
 * echo_server.c: the tutorial's TCP echo server. One task per connection,
 * started by ctrio_serve_tcp; each echoes what it receives until the client
 * closes its side.   echo_server [PORT]   (default 12345) */
#include <ctrio.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* [handler] */
static int echo_handler(ctrio_stream *stream, void *arg)
{
    (void)arg;
    char buf[4096];
    for (;;) {
        ssize_t n = ctrio_stream_receive_some(stream, buf, sizeof buf);
        if (n == 0) {
            printf("echo_server: connection closed\n");
            return 0;
        }
        if (n < 0) {
            /* A reset connection is this client's problem; only a
             * cancellation goes up (a failing handler would stop the whole
             * server, as in Trio). */
            printf("echo_server: crashed: %s\n", ctrio_strerror((int)n));
            return n == -ECANCELED ? (int)n : 0;
        }
        printf("echo_server: received %zd bytes\n", n);
        int rc = ctrio_stream_send_all(stream, buf, (size_t)n);
        if (rc < 0)
            return rc == -ECANCELED ? rc : 0;
    }
}
/* [handler] */

/* [main] */
static int main_task(void *arg)
{
    int port = *(int *)arg;
    /* Runs forever: accepts connections, each in a new task. */
    return ctrio_serve_tcp(echo_handler, NULL, port, NULL, 0);
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 12345;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rc = ctrio_run(main_task, &port);
    fprintf(stderr, "echo_server: %s\n", ctrio_strerror(rc));
    return 1;
}
/* [main] */
