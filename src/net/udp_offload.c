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
#include <limits.h>
#include <stdlib.h>
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

/* Room for the caller's own control messages in a segmented sendmsg
 * (ctrio.h: CTRIO_SEGMENTS_CONTROL_MAX), beside the UDP_SEGMENT one. */
#define CONTROL_MAX CTRIO_SEGMENTS_CONTROL_MAX
/* A chunk's iovec on the stack up to this many entries, else allocated. */
#define IOV_ON_STACK 16

typedef struct seg_send {
    const struct msghdr *msg; /* the caller's: name, iov, control */
    int flags;
    size_t seg, len;
    struct iovec *iov; /* room for msg_iovlen entries: one chunk's */
} seg_send;

/* The caller's bytes [off, off + n) as an iovec in a->iov; returns its
 * length in entries. */
static size_t chunk_iov(const seg_send *a, size_t off, size_t n)
{
    const struct iovec *in = a->msg->msg_iov;
    size_t k = 0, i = 0;
    for (; i < a->msg->msg_iovlen && off >= in[i].iov_len; i++)
        off -= in[i].iov_len;
    for (; i < a->msg->msg_iovlen && n; i++) {
        size_t take = in[i].iov_len - off;
        if (take > n)
            take = n;
        if (take) {
            a->iov[k].iov_base = (unsigned char *)in[i].iov_base + off;
            a->iov[k].iov_len = take;
            k++;
        }
        n -= take;
        off = 0;
    }
    return k;
}

/* One sendmsg of the bytes [off, off + n), with the caller's control
 * messages, cut into datagrams of a->seg by the kernel when n is larger
 * than one. */
static ssize_t send_chunk(ctrio_socket *s, const seg_send *a, size_t off, size_t n)
{
    struct msghdr m = {.msg_name = a->msg->msg_name,
                       .msg_namelen = a->msg->msg_name ? a->msg->msg_namelen : 0,
                       .msg_iov = a->iov,
                       .msg_iovlen = chunk_iov(a, off, n)};
    CTRIO_CMSG_STORAGE(st, CONTROL_MAX + CTRIO_CMSG_SPACE_SEGMENT);
    size_t own = a->msg->msg_controllen;
    if (own || n > a->seg) {
        ctrio_cmsg_buf cb;
        ctrio_cmsg_buf_init(&cb, &m, &st, sizeof st);
        if (own) {
            /* the caller's messages first, padded to where the next may
             * start with zeros (no uninitialised byte goes to the kernel) */
            memcpy(&st, a->msg->msg_control, own);
            memset((unsigned char *)&st + own, 0, CMSG_ALIGN(own) - own);
            m.msg_controllen = CMSG_ALIGN(own);
        }
        if (n > a->seg)
            (void)ctrio_cmsg_add_segment_size(&cb, a->seg); /* room kept for it */
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

static ssize_t send_all_segments(ctrio_socket *s, const seg_send *a)
{
    size_t sent = 0;
    ssize_t rc = 0;
    bool try_gso = true;
    while (sent < a->len && !s->users.closed) {
        size_t left = a->len - sent;
        size_t chunk = gso_chunk(a->seg);
        bool gso = try_gso && left > a->seg && chunk > a->seg && gso_usable(s);
        size_t n = gso ? (left < chunk ? left : chunk) : (left < a->seg ? left : a->seg);
        rc = send_chunk(s, a, sent, n);
        if (gso && rc < 0 && gso_refused(rc, s)) {
            try_gso = false; /* the same datagrams again, one each */
            continue;
        }
        if (rc < 0)
            break;
        sent += n;
    }
    if (sent < a->len && rc >= 0)
        rc = -EBADF; /* closed by another task meanwhile */
    return sent ? (ssize_t)sent : rc;
}

/* The caller's control messages may not ask for segmentation themselves. */
static bool has_segment_size(const struct msghdr *msg)
{
    struct msghdr m = *msg; /* CMSG_NXTHDR wants a mutable one */
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_SEGMENT)
            return true;
    return false;
}

ssize_t ctrio_socket_sendmsg_segments(ctrio_socket *s, const struct msghdr *msg, size_t seg_size,
                                      int flags)
{
    if (!s || !msg || (msg->msg_iovlen && !msg->msg_iov) || seg_size == 0 ||
        seg_size > CTRIO__UDP_MAX_PAYLOAD || (msg->msg_controllen && !msg->msg_control))
        return -EINVAL;
    if (msg->msg_iovlen > IOV_MAX)
        return -EMSGSIZE; /* as sendmsg */
    if (msg->msg_controllen > CONTROL_MAX)
        return -ENOBUFS;
    if (msg->msg_controllen && has_segment_size(msg))
        return -EINVAL;
    size_t len = 0;
    for (size_t i = 0; i < msg->msg_iovlen; i++) {
        if (!msg->msg_iov[i].iov_base && msg->msg_iov[i].iov_len)
            return -EINVAL;
        if (msg->msg_iov[i].iov_len > SIZE_MAX - len)
            return -EINVAL;
        len += msg->msg_iov[i].iov_len;
    }
    if (len == 0) /* one empty datagram, as sendmsg */
        return ctrio_socket_sendmsg(s, msg, flags);
    struct iovec stack_iov[IOV_ON_STACK];
    seg_send a = {.msg = msg, .flags = flags, .seg = seg_size, .len = len, .iov = stack_iov};
    if (msg->msg_iovlen > IOV_ON_STACK) {
        a.iov = malloc(msg->msg_iovlen * sizeof *a.iov);
        if (!a.iov)
            return -ENOMEM;
    }
    /* held across the sends: a close from another task while one yields
     * must not free the handle under the next */
    ctrio__socket_hold(s);
    ssize_t rc = send_all_segments(s, &a);
    ctrio__socket_unhold(s);
    if (a.iov != stack_iov)
        free(a.iov);
    return rc;
}

ssize_t ctrio_socket_send_segments(ctrio_socket *s, const void *buf, size_t len, size_t seg_size,
                                   int flags, const struct sockaddr *addr, socklen_t addrlen)
{
    if (!s || (!buf && len) || seg_size == 0 || seg_size > CTRIO__UDP_MAX_PAYLOAD)
        return -EINVAL;
    if (len == 0) /* one empty datagram, as sendto */
        return ctrio_socket_sendto(s, buf, 0, flags, addr, addrlen);
    struct iovec iov = {(void *)buf, len};
    struct msghdr m = {.msg_name = (void *)addr,
                       .msg_namelen = addr ? addrlen : 0,
                       .msg_iov = &iov,
                       .msg_iovlen = 1};
    return ctrio_socket_sendmsg_segments(s, &m, seg_size, flags);
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
