/* docs-test: echo
 * echo_client.c: the tutorial's TCP echo client. A sender task and a
 * receiver task share one stream, in one nursery.
 *   echo_client [PORT [COUNT]]   (defaults 12345, 3) */
#include <ctrio.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct client {
    int port, count;
    ctrio_stream *stream;
} client;

/* [sender] */
static int sender(void *arg)
{
    client *c = arg;
    for (int i = 0; i < c->count; i++) {
        const char *data = "async can sometimes be confusing, but I believe in you!";
        printf("sender: sending %s\n", data);
        int rc = ctrio_stream_send_all(c->stream, data, strlen(data));
        if (rc == 0)
            rc = ctrio_sleep(0.1);
        if (rc < 0)
            return rc;
    }
    return ctrio_stream_send_eof(c->stream); /* we are done: half-close */
}
/* [sender] */

/* [receiver] */
static int receiver(void *arg)
{
    client *c = arg;
    char buf[4096];
    for (;;) {
        ssize_t n = ctrio_stream_receive_some(c->stream, buf, sizeof buf);
        if (n <= 0) {
            printf("receiver: connection closed\n");
            return (int)n; /* 0 at the end, or the error */
        }
        printf("receiver: got data %.*s\n", (int)n, buf);
    }
}
/* [receiver] */

/* [parent] */
static int parent(void *arg)
{
    client *c = arg;
    printf("parent: connecting to 127.0.0.1:%d\n", c->port);
    int rc = ctrio_open_tcp_stream("127.0.0.1", c->port, &c->stream);
    if (rc < 0)
        return rc;
    ctrio_nursery nursery;
    ctrio_nursery_open(&nursery);
    printf("parent: spawning sender...\n");
    rc = ctrio_start_soon(&nursery, sender, c);
    if (rc == 0) {
        printf("parent: spawning receiver...\n");
        rc = ctrio_start_soon(&nursery, receiver, c);
    }
    rc = ctrio_nursery_close(&nursery, rc);
    int closed = ctrio_stream_close(c->stream);
    return rc < 0 ? rc : closed;
}
/* [parent] */

int main(int argc, char **argv)
{
    client c = {argc > 1 ? atoi(argv[1]) : 12345, argc > 2 ? atoi(argv[2]) : 3, NULL};
    int rc = ctrio_run(parent, &c);
    if (rc < 0)
        fprintf(stderr, "echo_client: %s\n", ctrio_strerror(rc));
    return rc == 0 ? 0 : 1;
}
