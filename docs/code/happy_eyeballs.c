/* docs-test: run
 * happy_eyeballs.c: ctrio_open_tcp_stream connects to a name the way RFC 8305
 * says: it resolves every address, tries the first, and starts the next one
 * 0.25 s later (or at once when an attempt fails) while the first still runs;
 * the first to connect wins and the others are cancelled. Here "localhost"
 * has two addresses, ::1 and 127.0.0.1, and only 127.0.0.1 listens. */
#include <ctrio.h>
#include <netinet/in.h>
#include <stdio.h>

static int port_of(ctrio_listener *l)
{
    struct sockaddr_in sin; /* the listener is 127.0.0.1's */
    socklen_t len = sizeof sin;
    int rc = ctrio_socket_getsockname(ctrio_socket_listener_socket(l), (struct sockaddr *)&sin,
                                      &len);
    return rc < 0 ? rc : ntohs(sin.sin_port);
}

/* [connect] */
static int connect_to(const char *host, int port)
{
    ctrio_stream *stream;
    ctrio_tcp_stream_options opts = {.happy_eyeballs_delay = 0.25};
    ctrio_cancel_scope deadline;
    ctrio_fail_after(&deadline, 5.0); /* for the lookup and every attempt */
    int rc = ctrio_open_tcp_stream_with(host, port, &opts, &stream);
    rc = ctrio_cancel_scope_close(&deadline, rc);
    if (rc < 0) {
        printf("%s: %s\n", host, ctrio_strerror(rc));
        return rc;
    }
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    char text[128] = "?";
    ctrio_socket *sock = ctrio_socket_stream_socket(stream);
    if (ctrio_socket_getpeername(sock, (struct sockaddr *)&peer, &len) == 0)
        ctrio_sockaddr_format((struct sockaddr *)&peer, len, text, sizeof text);
    printf("%s: connected to %s\n", host, text);
    return ctrio_stream_close(stream);
}
/* [connect] */

static int main_task(void *arg)
{
    (void)arg;
    ctrio_listener **ls;
    size_t n;
    int rc = ctrio_open_tcp_listeners(0, "127.0.0.1", 0, &ls, &n);
    if (rc < 0)
        return rc;
    int port = port_of(ls[0]);
    rc = port < 0 ? port : connect_to("localhost", port);
    ctrio_listeners_close(ls, n);
    return rc;
}

int main(void)
{
    return ctrio_run(main_task, NULL) == 0 ? 0 : 1;
}
