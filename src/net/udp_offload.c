/*
 * udp_offload.c — UDP segmentation offload on send (UDP_SEGMENT) and receive
 * coalescing (UDP_GRO), with the fallbacks that make them safe to call
 * anywhere (ctrio.h, "Datagrams").
 *
 * Send: the first segmented send on a socket probes it with getsockopt
 * (UDP_SEGMENT) and keeps the answer in the handle. The probe matters: a
 * kernel before 4.18 ignores a SOL_UDP control message on send (ip_cmsg_send
 * skips other levels) and would send the whole buffer as one datagram. A
 * kernel that has it may still refuse a send: EIO where the route's device
 * cannot checksum (udp_send_skb), which stays true for the socket, so the
 * socket stops trying; EINVAL or EMSGSIZE for this send's sizes only. A
 * refused sendmsg sent nothing (UDP is all or nothing), so sending the same
 * datagrams one sendmsg each delivers every one exactly once.
 *
 * Everything goes through the public socket calls, hence the operations
 * table: a custom socket answers the probe and the sends like a real one.
 */
#include "net.h"

#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/uio.h>

/* UDP_MAX_SEGMENTS: 64 until Linux 6.9, 128 since; the lower for all */
#define GSO_MAX_SEGMENTS 64

static bool gso_usable(ctrio_socket *s)
{
    if (s->gso == 0) {
        int v = 0;
        socklen_t l = sizeof v;
        bool inet = s->family == AF_INET || s->family == AF_INET6;
        bool ok = inet && s->type == SOCK_DGRAM &&
                  ctrio_socket_getsockopt(s, SOL_UDP, UDP_SEGMENT, &v, &l) == 0;
        s->gso = ok ? 1 : -1;
    }
    return s->gso > 0;
}

/* The bytes one segmented send may carry: whole segments, at most 64 of
 * them and CTRIO__UDP_MAX_PAYLOAD in all. */
static size_t gso_chunk(size_t seg)
{
    size_t n = CTRIO__UDP_MAX_PAYLOAD / seg;
    return (n < GSO_MAX_SEGMENTS ? n : GSO_MAX_SEGMENTS) * seg;
}

typedef struct seg_send {
    const struct sockaddr *addr;
    socklen_t addrlen;
    int flags;
    size_t seg;
} seg_send;

/* One sendmsg of n bytes, cut into datagrams of a->seg by the kernel when
 * n is larger than one. */
static ssize_t send_chunk(ctrio_socket *s, const seg_send *a, const unsigned char *p, size_t n)
{
    struct iovec iov = {(void *)p, n};
    struct msghdr m = {.msg_name = (void *)a->addr,
                       .msg_namelen = a->addr ? a->addrlen : 0,
                       .msg_iov = &iov,
                       .msg_iovlen = 1};
    CTRIO_CMSG_STORAGE(st, CTRIO_CMSG_SPACE_SEGMENT);
    if (n > a->seg) {
        ctrio_cmsg_buf cb;
        ctrio_cmsg_buf_init(&cb, &m, &st, sizeof st);
        ctrio_cmsg_add_segment_size(&cb, a->seg);
    }
    return ctrio_socket_sendmsg(s, &m, a->flags);
}

/* A refusal of the segmented send itself: nothing was sent. */
static bool gso_refused(ssize_t rc, ctrio_socket *s)
{
    if (rc == -EIO || rc == -ENOPROTOOPT || rc == -EOPNOTSUPP) {
        s->gso = -1; /* the device or kernel: true of every later send */
        return true;
    }
    return rc == -EINVAL || rc == -EMSGSIZE; /* this send's sizes */
}

static ssize_t send_all_segments(ctrio_socket *s, const seg_send *a, const unsigned char *buf,
                                 size_t len)
{
    size_t sent = 0;
    ssize_t rc = 0;
    bool try_gso = true;
    while (sent < len && !s->users.closed) {
        size_t left = len - sent;
        size_t chunk = gso_chunk(a->seg);
        bool gso = try_gso && left > a->seg && chunk > a->seg && gso_usable(s);
        size_t n = gso ? (left < chunk ? left : chunk) : (left < a->seg ? left : a->seg);
        rc = send_chunk(s, a, buf + sent, n);
        if (gso && rc < 0 && gso_refused(rc, s)) {
            try_gso = false; /* the same datagrams again, one each */
            continue;
        }
        if (rc < 0)
            break;
        sent += n;
    }
    if (sent < len && rc >= 0)
        rc = -EBADF; /* closed by another task meanwhile */
    return sent ? (ssize_t)sent : rc;
}

ssize_t ctrio_socket_send_segments(ctrio_socket *s, const void *buf, size_t len, size_t seg_size,
                                   int flags, const struct sockaddr *addr, socklen_t addrlen)
{
    if (!s || (!buf && len) || seg_size == 0 || seg_size > CTRIO__UDP_MAX_PAYLOAD)
        return -EINVAL;
    if (len == 0) /* one empty datagram, as sendto */
        return ctrio_socket_sendto(s, buf, 0, flags, addr, addrlen);
    seg_send a = {.addr = addr, .addrlen = addrlen, .flags = flags, .seg = seg_size};
    /* held across the sends: a close from another task while one yields
     * must not free the handle under the next */
    ctrio__socket_hold(s);
    ssize_t rc = send_all_segments(s, &a, buf, len);
    ctrio__socket_unhold(s);
    return rc;
}

/* ---- receive coalescing -------------------------------------------------- */

int ctrio_socket_set_gro(ctrio_socket *s, bool on)
{
    if (!s)
        return -EINVAL;
    int v = on;
    return ctrio_socket_setsockopt(s, SOL_UDP, UDP_GRO, &v, sizeof v);
}

ssize_t ctrio_socket_recv_segments(ctrio_socket *s, void *buf, size_t len, size_t *seg_size,
                                   struct sockaddr *addr, socklen_t *addrlen, int *msg_flags)
{
    if (!s || (!buf && len) || !seg_size || (addr && !addrlen))
        return -EINVAL;
    struct iovec iov = {buf, len};
    CTRIO_CMSG_STORAGE(st, CTRIO_CMSG_SPACE_SEGMENT);
    struct msghdr m = {.msg_name = addr,
                       .msg_namelen = addr ? *addrlen : 0,
                       .msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = &st,
                       .msg_controllen = sizeof st};
    ssize_t n = ctrio_socket_recvmsg(s, &m, 0);
    if (n < 0)
        return n;
    /* an AF_UNIX datagram may carry a descriptor into this storage */
    ctrio_cmsg_close_fds(&m);
    int seg = ctrio_cmsg_get_segment_size(&m);
    *seg_size = seg > 0 && (size_t)seg < (size_t)n ? (size_t)seg : (size_t)n;
    if (addr)
        *addrlen = m.msg_namelen;
    if (msg_flags)
        *msg_flags = m.msg_flags;
    return n;
}

void ctrio_segment_iter_init(ctrio_segment_iter *it, const void *buf, size_t len, size_t seg_size)
{
    if (!it)
        return;
    it->next = buf;
    it->left = buf ? len : 0;
    it->seg_size = seg_size == 0 || seg_size > len ? len : seg_size;
    it->started = false;
}

bool ctrio_segment_next(ctrio_segment_iter *it, const void **dgram, size_t *len)
{
    if (!it || !dgram || !len)
        return false;
    /* a received empty datagram is one datagram of 0 bytes */
    if (it->left == 0 && (it->started || !it->next))
        return false;
    size_t n = it->left < it->seg_size ? it->left : it->seg_size;
    *dgram = it->next;
    *len = n;
    it->next += n;
    it->left -= n;
    it->started = true;
    return true;
}
