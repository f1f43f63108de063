/*
 * connect.c — opening connections: trio.open_tcp_stream with happy eyeballs
 * (RFC 8305, as Trio does it), and trio.open_unix_socket.
 *
 * Happy eyeballs: resolve, put the first address of the other family second,
 * then start one attempt, and start the next one when the previous fails or
 * after the delay (250 ms by default), whichever comes first. The first
 * attempt that connects cancels the others (their sockets are closed by the
 * cancelled connect) and becomes the stream.
 */
#include "net.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/un.h>

typedef struct attempt {
    struct addrinfo *ai;
    ctrio_event failed;
    int error;
    struct race *race;
} attempt;

typedef struct race {
    ctrio_nursery nursery;
    ctrio_socket *winner;
    const ctrio_tcp_stream_options *opts;
} race;

static int attempt_connect(void *p)
{
    attempt *a = p;
    race *r = a->race;
    ctrio_socket *s;
    int rc = ctrio_socket_open(a->ai->ai_family, a->ai->ai_socktype, a->ai->ai_protocol, &s);
    if (rc == 0 && r->opts->local_address) {
        int one = 1; /* pick the local port at connect time: no port clash (Trio #275) */
        ctrio_socket_setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        rc = ctrio_socket_bind(s, r->opts->local_address, r->opts->local_address_len);
        if (rc < 0)
            ctrio_socket_close(s);
    }
    if (rc == 0) {
        rc = ctrio_socket_connect(s, a->ai->ai_addr, a->ai->ai_addrlen);
        if (rc == 0 && !r->winner) {
            r->winner = s;
            ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&r->nursery));
            return 0;
        }
        ctrio_socket_close(s); /* lost the race, failed, or was cancelled */
        if (rc == 0)
            return 0;
    }
    if (rc != -ECANCELED) {
        a->error = rc;
        ctrio_event_set(&a->failed);
        return 0; /* a failed attempt is not a failure of the race */
    }
    return rc;
}

/* RFC 6555 section 5.4: the first two attempts use different families. */
static void interleave(struct addrinfo **list)
{
    struct addrinfo *first = *list;
    if (!first || !first->ai_next)
        return;
    struct addrinfo *prev = first;
    for (struct addrinfo *a = first->ai_next; a; prev = a, a = a->ai_next) {
        if (a->ai_family != first->ai_family) {
            if (prev != first) {
                prev->ai_next = a->ai_next;
                a->ai_next = first->ai_next;
                first->ai_next = a;
            }
            return;
        }
    }
}

int ctrio_open_tcp_stream_with(const char *host, int port, const ctrio_tcp_stream_options *opts,
                               ctrio_stream **out)
{
    static const ctrio_tcp_stream_options defaults = {0};
    if (!host || !out || port < 0 || port > 65535)
        return -EINVAL;
    *out = NULL;
    if (!opts)
        opts = &defaults;
    double delay = opts->happy_eyeballs_delay > 0 ? opts->happy_eyeballs_delay : 0.250;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo *res;
    int rc = ctrio_getaddrinfo(host, service, &hints, &res);
    if (rc < 0)
        return rc;
    interleave(&res);
    size_t n = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        n++;
    attempt *as = calloc(n ? n : 1, sizeof *as); /* n = 0: a custom resolver said nothing */
    race *r = calloc(1, sizeof *r);
    if (!as || !r) {
        free(as);
        free(r);
        ctrio_freeaddrinfo(res);
        return -ENOMEM;
    }
    r->opts = opts;
    ctrio_nursery_open(&r->nursery);
    size_t i = 0;
    rc = 0;
    for (struct addrinfo *ai = res; ai && rc == 0; ai = ai->ai_next, i++) {
        as[i].ai = ai;
        as[i].race = r;
        ctrio_event_init(&as[i].failed);
        rc = ctrio_start_soon(&r->nursery, attempt_connect, &as[i]);
        if (rc < 0)
            break;
        ctrio_cancel_scope cs;
        ctrio_move_on_after(&cs, delay);
        rc = ctrio_cancel_scope_close(&cs, ctrio_event_wait(&as[i].failed));
    }
    rc = ctrio_nursery_close(&r->nursery, rc == -ECANCELED && r->winner ? 0 : rc);
    if (rc == 0 && r->winner) {
        rc = ctrio_socket_stream_new(r->winner, out);
        if (rc < 0)
            ctrio_socket_close(r->winner);
    } else if (rc == 0) {
        rc = n ? as[0].error : -EHOSTUNREACH; /* all failed: the first's error */
        for (size_t k = 0; rc == 0 && k < n; k++)
            rc = as[k].error;
        if (rc == 0)
            rc = -ECONNREFUSED;
    } else if (r->winner) {
        ctrio_socket_close(r->winner);
    }
    free(as);
    free(r);
    ctrio_freeaddrinfo(res);
    return rc;
}

int ctrio_open_tcp_stream(const char *host, int port, ctrio_stream **out)
{
    return ctrio_open_tcp_stream_with(host, port, NULL, out);
}

int ctrio_open_unix_socket(const char *path, ctrio_stream **out)
{
    if (!path || !out)
        return -EINVAL;
    *out = NULL;
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = ctrio_sockaddr_parse(AF_UNIX, path, 0, &ss, &len);
    if (rc < 0)
        return rc;
    ctrio_socket *s;
    rc = ctrio_socket_open(AF_UNIX, SOCK_STREAM, 0, &s);
    if (rc < 0)
        return rc;
    rc = ctrio_socket_connect(s, (struct sockaddr *)&ss, len);
    if (rc == 0)
        rc = ctrio_socket_stream_new(s, out);
    if (rc < 0)
        ctrio_socket_close(s);
    return rc;
}
