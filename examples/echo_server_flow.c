/*
 * echo_server_flow.c — echo_server's handler and server task (see
 * echo_server.c for what the program does and shows).
 */
#include "echo_server.h"

#include <errno.h>

int echo_server_handle(ctrio_stream *s, void *arg)
{
    (void)arg;
    char buf[64 * 1024];
    for (;;) {
        ssize_t n = ctrio_stream_receive_some(s, buf, sizeof buf);
        if (n <= 0)
            /* 0: the client is done. A reset connection is the client's
             * problem, not the server's: only a cancellation goes up (a
             * handler's failure would stop the whole server, as in Trio). */
            return n == -ECANCELED ? (int)n : 0;
        if (ctrio_stream_send_all(s, buf, (size_t)n) < 0)
            return 0;
    }
}

int echo_server_task(void *arg)
{
    echo_server_options *o = arg;
    ctrio_tcp_listen_options lo = {0};
    lo.reuseport = o->reuseport;
    lo.incoming_cpu = o->incoming_cpu;
    return ctrio_serve_tcp_with(echo_server_handle, NULL, o->port, o->host, &lo);
}
