/*
 * net.h — what the files of src/net share: the layout of a socket handle.
 *
 * A ctrio_socket is a small header (the operations table, the descriptor,
 * family/type/protocol, the did_shutdown_wr flag) in front of whatever the
 * implementation needs. The public calls in socket.c check their arguments
 * and dispatch through the table; socket_real.c is the implementation over a
 * kernel socket; custom sockets (tests, fake networks) bring their own.
 *
 * Lifetime: a blocking call holds the handle (ctrio__users) for as long as it
 * runs, so that a close from another task, which wakes it with -EBADF, does
 * not free the handle under it: the last user frees a closed handle.
 */
#ifndef CTRIO_NET_H
#define CTRIO_NET_H

#include "internal.h"

#include <sys/socket.h>

struct ctrio_socket {
    const ctrio_socket_ops *ops;
    void *impl;
    int fd; /* -1 once closed or detached (or for a custom socket without one) */
    int family, type, protocol;
    ctrio__users users; /* blocking calls in progress; closed by
                           ctrio_socket_close or detach (internal.h) */
    bool did_shutdown_wr;
    bool fd_shared;    /* the file may have another descriptor: its number was
                          given out (fileno), dup, or adopted (from_fd); see
                          src/core/io.c for what closing does with this */
    signed char gso;   /* UDP_SEGMENT: 0 not probed yet, 1 usable, -1 not
                          (udp_offload.c) */
};

/* The most a UDP datagram carries over IPv4 (65,535 - 20 - 8); IPv6 allows
 * 20 bytes more, one figure keeps a segmented send valid for both. */
#define CTRIO__UDP_MAX_PAYLOAD 65507

/* Make a handle around a kernel socket descriptor (socket_real.c). */
CTRIO__HIDDEN int ctrio__socket_wrap_fd(int fd, int family, int type, int protocol,
                                        ctrio_socket **out);
CTRIO__HIDDEN bool ctrio__socket_is_real(const ctrio_socket *s);
/* Keep a socket alive across several calls that may yield (a close from
 * another task then frees it at the unhold). */
static inline void ctrio__socket_hold(ctrio_socket *s)
{
    ctrio__users_hold(&s->users);
}
static inline void ctrio__socket_unhold(ctrio_socket *s)
{
    if (ctrio__users_release(&s->users))
        free(s);
}
CTRIO__HIDDEN ctrio_socket *ctrio__socket_alloc(const ctrio_socket_ops *ops, void *impl, int fd,
                                                int family, int type, int protocol);

/* The net layer's state in a run (socket.c): the two hooks of trio.socket,
 * kept with ctrio__layer_get so that the core does not know them. NULL
 * (no run, or no hook ever set in it) means neither hook is set. */
typedef struct ctrio__net_run {
    const ctrio_socket_factory *socket_factory;
    const ctrio_hostname_resolver *hostname_resolver;
} ctrio__net_run;
CTRIO__HIDDEN const ctrio__net_run *ctrio__net_run_find(ctrio__run *r);

/* stream.c: hold a stream across a call that may close it (serve.c). */
CTRIO__HIDDEN void ctrio__stream_hold(ctrio_stream *s);
CTRIO__HIDDEN bool ctrio__stream_is_closed(const ctrio_stream *s);
CTRIO__HIDDEN void ctrio__stream_unhold(ctrio_stream *s);

#endif
