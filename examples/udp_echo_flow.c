/*
 * udp_echo_flow.c — udp_echo's flows (see udp_echo.c for what the program
 * does and shows), with their output streams as parameters (udp_echo.h).
 */
#include "udp_echo.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* A UDP socket bound to (listen) or connected to (client) host:port. */
static int udp_socket(const char *host, const char *port, bool listen, ctrio_socket **out)
{
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = listen ? AI_PASSIVE : 0};
    struct addrinfo *ai;
    int rc = ctrio_getaddrinfo(host, port, &hints, &ai);
    if (rc < 0)
        return rc;
    rc = ctrio_socket_open(ai->ai_family, ai->ai_socktype, ai->ai_protocol, out);
    if (rc == 0) {
        rc = listen ? ctrio_socket_bind(*out, ai->ai_addr, ai->ai_addrlen)
                    : ctrio_socket_connect(*out, ai->ai_addr, ai->ai_addrlen);
        if (rc < 0)
            ctrio_socket_close(*out);
    }
    ctrio_freeaddrinfo(ai);
    return rc;
}

/* The datagrams of one batch: each buffer holds the largest UDP payload. */
enum { ECHO_BATCH = 32, ECHO_DATAGRAM = 65536 };

typedef struct echo_batch {
    struct mmsghdr msgs[ECHO_BATCH];
    struct iovec iov[ECHO_BATCH];
    struct sockaddr_storage peers[ECHO_BATCH];
    char *bufs; /* ECHO_BATCH * ECHO_DATAGRAM bytes */
} echo_batch;

/* Make the first n messages ready to receive again: a receive sets the
 * msg_namelen of those it filled, an echo shortens their iov_len; the
 * others are as they were. (Re-arming all ECHO_BATCH of them after every
 * batch was 40 % of this server's own instructions at one flow.) */
static void batch_rearm(echo_batch *b, int n)
{
    for (int i = 0; i < n; i++) {
        b->iov[i] = (struct iovec){b->bufs + (size_t)i * ECHO_DATAGRAM, ECHO_DATAGRAM};
        b->msgs[i].msg_hdr = (struct msghdr){.msg_name = &b->peers[i],
                                             .msg_namelen = sizeof b->peers[i],
                                             .msg_iov = &b->iov[i],
                                             .msg_iovlen = 1};
    }
}

/* Echo msgs[0..n) to their senders: each message's address is its sender's
 * and its buffer holds msg_len bytes. A datagram that fails (say, an ICMP
 * "port unreachable" for an earlier reply) is skipped. Returns 0, or
 * -ECANCELED / -EBADF. */
static int batch_echo(ctrio_socket *sock, echo_batch *b, int n)
{
    for (int i = 0; i < n; i++)
        b->iov[i].iov_len = b->msgs[i].msg_len;
    int sent = 0;
    while (sent < n) {
        int r = ctrio_socket_sendmmsg(sock, b->msgs + sent, (unsigned)(n - sent), 0);
        if (r == -ECANCELED || r == -EBADF)
            return r;
        sent += r > 0 ? r : 1;
    }
    return 0;
}

/* Batched: one recvmmsg takes every datagram queued (up to ECHO_BATCH), one
 * sendmmsg answers them all. At one flow that is 3 system calls per reply
 * (recvmmsg, sendmmsg, epoll_wait), and fewer as the batches fill. */
static int echo_loop(ctrio_socket *sock)
{
    echo_batch *b = calloc(1, sizeof *b);
    int rc = -ENOMEM;
    if (!b || !(b->bufs = malloc((size_t)ECHO_BATCH * ECHO_DATAGRAM)))
        goto cleanup;
    batch_rearm(b, ECHO_BATCH);
    for (;;) {
        int n = ctrio_socket_recvmmsg(sock, b->msgs, ECHO_BATCH, 0);
        rc = n > 0 ? batch_echo(sock, b, n) : n;
        if (rc == -ECANCELED || rc == -EBADF)
            break;
        /* any other error concerns one datagram: go on */
        if (n > 0)
            batch_rearm(b, n);
    }
cleanup:
    if (b)
        free(b->bufs);
    free(b);
    return rc;
}

int udp_echo_server(void *arg)
{
    udp_echo_server_args *a = arg;
    ctrio_socket *sock;
    int rc = udp_socket(a->host, a->port, true, &sock);
    if (rc < 0)
        return rc;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    rc = ctrio_socket_getsockname(sock, (struct sockaddr *)&ss, &len);
    if (rc < 0) { /* no address to tell, and ss would be garbage */
        ctrio_socket_close(sock);
        return rc;
    }
    ctrio_sockaddr_format((struct sockaddr *)&ss, len, a->address, sizeof a->address);
    a->port_number = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                    : ((struct sockaddr_in *)&ss)->sin_port);
    ctrio_task_started(a);
    rc = echo_loop(sock);
    ctrio_socket_close(sock);
    return rc;
}

int udp_echo_client(const udp_echo_client_args *a)
{
    ctrio_socket *sock;
    int rc = udp_socket(a->host, a->port, false, &sock);
    if (rc < 0) {
        if (a->err)
            fprintf(a->err, "udp_echo: %s port %s: %s\n", a->host, a->port, ctrio_strerror(rc));
        return rc;
    }
    for (int i = 0; i < a->count && rc == 0; i++) {
        const char *msg = a->messages[i];
        char reply[65536];
        ssize_t n = -ETIMEDOUT;
        for (int attempt = 1; attempt <= 3 && n == -ETIMEDOUT; attempt++) {
            n = ctrio_socket_send(sock, msg, strlen(msg), 0);
            if (n < 0)
                break; /* that error, not a timeout (a cancellation must stay one) */
            ctrio_cancel_scope cs;
            ctrio_move_on_after(&cs, a->retry);
            /* A late echo of an earlier try (or message) may come first:
             * skip what is not this message, or it would be printed as the
             * reply to the next one. */
            do
                n = ctrio_socket_recv(sock, reply, sizeof reply, 0);
            while (n >= 0 && ((size_t)n != strlen(msg) || memcmp(reply, msg, (size_t)n) != 0));
            if (ctrio_cancel_scope_close(&cs, (int)n) == 0 && ctrio_cancel_scope_cancelled_caught(&cs))
                n = -ETIMEDOUT; /* no reply in time: send it again */
        }
        rc = n < 0 ? (int)n : 0;
        if (rc == 0)
            fprintf(a->out, "%.*s\n", (int)n, reply);
        else if (a->err)
            fprintf(a->err, "udp_echo: '%s': %s\n", msg, ctrio_strerror(rc));
    }
    fflush(a->out);
    ctrio_socket_close(sock);
    return rc;
}

int udp_echo_pair(const udp_echo_client_args *a)
{
    udp_echo_server_args sa = {.host = a->host, .port = "0"};
    ctrio_nursery top;
    ctrio_nursery_open(&top);
    int rc = ctrio_start(&top, udp_echo_server, &sa, NULL);
    if (rc < 0) {
        if (a->err)
            fprintf(a->err, "udp_echo: cannot listen: %s\n", ctrio_strerror(rc));
    } else {
        char port[8];
        snprintf(port, sizeof port, "%d", sa.port_number);
        fprintf(a->out, "server on %s\n", sa.address);
        udp_echo_client_args ca = *a;
        ca.port = port;
        rc = udp_echo_client(&ca);
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&top)); /* stop the server */
    }
    return ctrio_nursery_close(&top, rc);
}
