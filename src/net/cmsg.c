/*
 * cmsg.c — control messages built and read without CMSG_* arithmetic in the
 * caller (ctrio.h, "Datagrams").
 *
 * Go's x/net/ipv4 ControlMessage parses everything into one struct and
 * allocates its buffers; quinn-udp keeps an encoder over a msghdr. Here a
 * builder (ctrio_cmsg_buf) appends to the caller's storage through the very
 * msghdr it will send, so one entry of a sendmmsg batch is built the same
 * way, and each reader looks for its one message in a received msghdr.
 * Nothing allocates, nothing yields.
 *
 * Two rules the readers keep: a message cut by MSG_CTRUNC is reported as
 * such (-EMSGSIZE), never as missing; and descriptors (SCM_RIGHTS) are never
 * left open behind the caller's back — on a truncation or too small an
 * array every one that arrived is closed.
 */
#include "net.h"

#include <linux/errqueue.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdalign.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ctrio.h states these sizes without including the kernel's headers */
_Static_assert(sizeof(struct in6_pktinfo) == 20 && sizeof(struct in_pktinfo) <= 20,
               "CTRIO_CMSG_SPACE_PKTINFO");
_Static_assert(sizeof(struct timespec) == 16, "CTRIO_CMSG_SPACE_TIMESTAMP");
_Static_assert(sizeof(struct sock_extended_err) == 16 && sizeof(struct sockaddr_in6) == 28,
               "CTRIO_CMSG_SPACE_ERROR");

/* SCM_MAX_FD in the kernel: more in one message is EINVAL */
#define MAX_FDS 253

int ctrio_cmsg_buf_init(ctrio_cmsg_buf *cb, struct msghdr *msg, void *storage, size_t cap)
{
    if (!cb || !msg || (!storage && cap))
        return -EINVAL;
    /* CMSG_DATA and the kernel's put_cmsg assume cmsghdr alignment */
    if ((uintptr_t)storage % alignof(struct cmsghdr))
        return -EINVAL;
    cb->msg = msg;
    cb->cap = cap;
    msg->msg_control = storage;
    msg->msg_controllen = 0;
    return 0;
}

/* Append one message of len data bytes, zeroed (no uninitialised padding
 * goes to the kernel); NULL when it does not fit. */
static void *add(ctrio_cmsg_buf *cb, int level, int type, size_t len)
{
    struct msghdr *m = cb->msg;
    size_t used = m->msg_controllen;
    if (used > cb->cap || CMSG_SPACE(len) > cb->cap - used)
        return NULL;
    struct cmsghdr *c = (struct cmsghdr *)((unsigned char *)m->msg_control + used);
    memset(c, 0, CMSG_SPACE(len));
    c->cmsg_level = level;
    c->cmsg_type = type;
    c->cmsg_len = CMSG_LEN(len);
    m->msg_controllen = used + CMSG_SPACE(len);
    return CMSG_DATA(c);
}

#define CHECK_CB(cb)                                                                               \
    do {                                                                                           \
        if (!(cb) || !(cb)->msg)                                                                   \
            return -EINVAL;                                                                        \
    } while (0)

/* The first message of level/type with at least len data bytes. *cut is set
 * when the kernel truncated the control data (a message may be missing or
 * short because of it). */
static struct cmsghdr *find(const struct msghdr *msg, int level, int type, size_t len)
{
    if (!msg->msg_control)
        return NULL;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR((struct msghdr *)msg, c))
        if (c->cmsg_level == level && c->cmsg_type == type && c->cmsg_len >= CMSG_LEN(len))
            return c;
    return NULL;
}

static int absent(const struct msghdr *msg)
{
    return (msg->msg_flags & MSG_CTRUNC) ? -EMSGSIZE : -ENOENT;
}

/* ---- IP_PKTINFO / IPV6_PKTINFO ------------------------------------------ */

static int get_pktinfo4(const struct cmsghdr *c, struct sockaddr_storage *dst, int *ifindex)
{
    struct in_pktinfo pi;
    memcpy(&pi, CMSG_DATA(c), sizeof pi);
    struct sockaddr_in *sin = (struct sockaddr_in *)dst;
    memset(dst, 0, sizeof *dst);
    sin->sin_family = AF_INET;
    sin->sin_addr = pi.ipi_addr; /* the header's destination */
    if (ifindex)
        *ifindex = pi.ipi_ifindex;
    return 0;
}

static int get_pktinfo6(const struct cmsghdr *c, struct sockaddr_storage *dst, int *ifindex)
{
    struct in6_pktinfo pi;
    memcpy(&pi, CMSG_DATA(c), sizeof pi);
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)dst;
    memset(dst, 0, sizeof *dst);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_addr = pi.ipi6_addr;
    /* a link-local address means nothing without its interface */
    if (IN6_IS_ADDR_LINKLOCAL(&pi.ipi6_addr) || IN6_IS_ADDR_MC_LINKLOCAL(&pi.ipi6_addr))
        sin6->sin6_scope_id = pi.ipi6_ifindex;
    if (ifindex)
        *ifindex = (int)pi.ipi6_ifindex;
    return 0;
}

int ctrio_cmsg_get_pktinfo(const struct msghdr *msg, struct sockaddr_storage *dst, int *ifindex)
{
    if (!msg || !dst)
        return -EINVAL;
    const struct cmsghdr *c = find(msg, IPPROTO_IP, IP_PKTINFO, sizeof(struct in_pktinfo));
    if (c)
        return get_pktinfo4(c, dst, ifindex);
    c = find(msg, IPPROTO_IPV6, IPV6_PKTINFO, sizeof(struct in6_pktinfo));
    if (c)
        return get_pktinfo6(c, dst, ifindex);
    return absent(msg);
}

int ctrio_cmsg_add_pktinfo(ctrio_cmsg_buf *cb, const struct sockaddr *src, int ifindex)
{
    CHECK_CB(cb);
    if (!src || ifindex < 0)
        return -EINVAL;
    if (src->sa_family == AF_INET) {
        struct in_pktinfo pi = {.ipi_ifindex = ifindex};
        /* ipi_spec_dst is the source on send (ip(7)); ipi_addr is ignored */
        pi.ipi_spec_dst = ((const struct sockaddr_in *)src)->sin_addr;
        void *d = add(cb, IPPROTO_IP, IP_PKTINFO, sizeof pi);
        if (!d)
            return -ENOBUFS;
        memcpy(d, &pi, sizeof pi);
        return 0;
    }
    if (src->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)src;
        struct in6_pktinfo pi = {.ipi6_addr = s6->sin6_addr, .ipi6_ifindex = (unsigned)ifindex};
        if (ifindex == 0)
            pi.ipi6_ifindex = s6->sin6_scope_id;
        void *d = add(cb, IPPROTO_IPV6, IPV6_PKTINFO, sizeof pi);
        if (!d)
            return -ENOBUFS;
        memcpy(d, &pi, sizeof pi);
        return 0;
    }
    return -EAFNOSUPPORT;
}

/* ---- SO_TIMESTAMPNS ------------------------------------------------------ */

int ctrio_cmsg_get_timestamp(const struct msghdr *msg, struct timespec *ts)
{
    if (!msg || !ts)
        return -EINVAL;
    const struct cmsghdr *c = find(msg, SOL_SOCKET, SCM_TIMESTAMPNS, sizeof *ts);
    if (!c)
        return absent(msg);
    memcpy(ts, CMSG_DATA(c), sizeof *ts);
    return 0;
}

/* ---- SCM_RIGHTS ----------------------------------------------------------- */

int ctrio_cmsg_add_fds(ctrio_cmsg_buf *cb, const int *fds, size_t n)
{
    CHECK_CB(cb);
    if (!fds || n == 0 || n > MAX_FDS)
        return -EINVAL;
    void *d = add(cb, SOL_SOCKET, SCM_RIGHTS, n * sizeof(int));
    if (!d)
        return -ENOBUFS;
    memcpy(d, fds, n * sizeof(int));
    return 0;
}

/* Visit the descriptors still held by the SCM_RIGHTS messages of msg (a
 * taken one is -1): count them, and take each (into out, if there is room)
 * or close it. Returns how many there were. */
static size_t each_fd(struct msghdr *msg, int *out, size_t max, bool close_them)
{
    size_t n = 0;
    if (!msg->msg_control)
        return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        unsigned char *p = CMSG_DATA(c);
        for (size_t i = 0; i < k; i++, p += sizeof(int)) {
            int fd;
            memcpy(&fd, p, sizeof fd);
            if (fd < 0)
                continue;
            if (close_them)
                close(fd);
            else if (out && n < max)
                out[n] = fd;
            if (close_them || (out && n < max))
                memcpy(p, &(int){-1}, sizeof fd); /* no longer the message's */
            n++;
        }
    }
    return n;
}

int ctrio_cmsg_close_fds(struct msghdr *msg)
{
    if (!msg)
        return -EINVAL;
    return (int)each_fd(msg, NULL, 0, true);
}

int ctrio_cmsg_take_fds(struct msghdr *msg, int *fds, size_t max)
{
    if (!msg || (!fds && max))
        return -EINVAL;
    if (msg->msg_flags & MSG_CTRUNC) {
        /* some were dropped by the kernel: the set is useless, and the rest
         * must not leak */
        ctrio_cmsg_close_fds(msg);
        return -EMSGSIZE;
    }
    size_t n = each_fd(msg, NULL, 0, false);
    if (n > max) {
        ctrio_cmsg_close_fds(msg);
        return -ENOBUFS;
    }
    return (int)each_fd(msg, fds, max, false);
}

/* ---- UDP_GRO / UDP_SEGMENT ---------------------------------------------- */

int ctrio_cmsg_get_segment_size(const struct msghdr *msg)
{
    if (!msg)
        return -EINVAL;
    const struct cmsghdr *c = find(msg, SOL_UDP, UDP_GRO, sizeof(int));
    if (!c)
        return absent(msg);
    int seg;
    memcpy(&seg, CMSG_DATA(c), sizeof seg);
    return seg > 0 ? seg : -ENOENT;
}

int ctrio_cmsg_add_segment_size(ctrio_cmsg_buf *cb, size_t seg_size)
{
    CHECK_CB(cb);
    if (seg_size == 0 || seg_size > CTRIO__UDP_MAX_PAYLOAD)
        return -EINVAL;
    /* udp_cmsg_send takes exactly a __u16 */
    uint16_t v = (uint16_t)seg_size;
    void *d = add(cb, SOL_UDP, UDP_SEGMENT, sizeof v);
    if (!d)
        return -ENOBUFS;
    memcpy(d, &v, sizeof v);
    return 0;
}

/* ---- IP_RECVERR / IPV6_RECVERR ------------------------------------------ */

static void get_offender(const struct cmsghdr *c, struct sockaddr_storage *offender)
{
    memset(offender, 0, sizeof *offender);
    offender->ss_family = AF_UNSPEC;
    size_t have = c->cmsg_len - CMSG_LEN(sizeof(struct sock_extended_err));
    const unsigned char *p = CMSG_DATA(c) + sizeof(struct sock_extended_err);
    sa_family_t fam;
    if (have < sizeof fam)
        return;
    memcpy(&fam, p, sizeof fam);
    size_t need = fam == AF_INET    ? sizeof(struct sockaddr_in)
                  : fam == AF_INET6 ? sizeof(struct sockaddr_in6)
                                    : 0;
    if (need && have >= need)
        memcpy(offender, p, need);
}

int ctrio_cmsg_get_error(const struct msghdr *msg, struct sock_extended_err *err,
                         struct sockaddr_storage *offender)
{
    if (!msg || !err)
        return -EINVAL;
    size_t len = sizeof *err;
    const struct cmsghdr *c = find(msg, IPPROTO_IP, IP_RECVERR, len);
    if (!c)
        c = find(msg, IPPROTO_IPV6, IPV6_RECVERR, len);
    if (!c)
        return absent(msg);
    memcpy(err, CMSG_DATA(c), sizeof *err);
    if (offender)
        get_offender(c, offender);
    return 0;
}

/* ---- asking for them ----------------------------------------------------- */

static int enable(ctrio_socket *s, int level, int name)
{
    int on = 1;
    return ctrio_socket_setsockopt(s, level, name, &on, sizeof on);
}

static int enable_ip(ctrio_socket *s, int opt4, int opt6)
{
    if (s->family == AF_INET)
        return enable(s, IPPROTO_IP, opt4);
    if (s->family == AF_INET6)
        return enable(s, IPPROTO_IPV6, opt6);
    return -EAFNOSUPPORT;
}

int ctrio_socket_enable_cmsg(ctrio_socket *s, unsigned what)
{
    if (!s || (what & ~(CTRIO_CMSG_PKTINFO | CTRIO_CMSG_TIMESTAMP | CTRIO_CMSG_RECVERR)))
        return -EINVAL;
    int rc = 0;
    if (what & CTRIO_CMSG_PKTINFO)
        rc = enable_ip(s, IP_PKTINFO, IPV6_RECVPKTINFO);
    if (rc == 0 && (what & CTRIO_CMSG_RECVERR))
        rc = enable_ip(s, IP_RECVERR, IPV6_RECVERR);
    if (rc == 0 && (what & CTRIO_CMSG_TIMESTAMP))
        rc = enable(s, SOL_SOCKET, SO_TIMESTAMPNS);
    return rc;
}
