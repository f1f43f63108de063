/*
 * test_cmsg.c — control messages without CMSG_* arithmetic, UDP segmentation
 * offload (UDP_SEGMENT) and receive coalescing (UDP_GRO): ctrio.h,
 * "Datagrams". Trio has none of these (its recvmsg/sendmsg hand the raw
 * ancillary data to the caller), so nothing here is ported: each helper is
 * checked over real loopback sockets (IPv4, IPv6, AF_UNIX).
 */
#include "net_support.h"
#include "support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define RUN_REAL(name)                                                                             \
    static void test_##name(void **state)                                                          \
    {                                                                                              \
        (void)state;                                                                               \
        assert_int_equal(run_real(name##_body, NULL), 0);                                          \
    }

static socklen_t addr_of(int family, const char *host, int port, struct sockaddr_storage *ss)
{
    socklen_t len = sizeof *ss;
    assert_int_equal(ctrio_sockaddr_parse(family, host, port, ss, &len), 0);
    return len;
}

/* A UDP socket bound to host (port 0), its address in *ss. */
static ctrio_socket *udp_at(int family, const char *host, struct sockaddr_storage *ss,
                            socklen_t *len)
{
    ctrio_socket *s;
    assert_int_equal(ctrio_socket_open(family, SOCK_DGRAM, 0, &s), 0);
    socklen_t l = addr_of(family, host, 0, ss);
    assert_int_equal(ctrio_socket_bind(s, (struct sockaddr *)ss, l), 0);
    *len = sizeof *ss;
    assert_int_equal(ctrio_socket_getsockname(s, (struct sockaddr *)ss, len), 0);
    return s;
}

static int port_of(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET ? ntohs(((const struct sockaddr_in *)ss)->sin_port)
                                    : ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

/* ---- the builder and the readers' codes --------------------------------- */

static void test_builder_enobufs(void **state)
{
    (void)state;
    struct msghdr msg = {0};
    ctrio_cmsg_buf cb;
    CTRIO_CMSG_STORAGE(st, CTRIO_CMSG_SPACE_PKTINFO + CTRIO_CMSG_SPACE_SEGMENT);
    assert_int_equal(ctrio_cmsg_buf_init(&cb, &msg, &st, sizeof st), 0);
    assert_ptr_equal(msg.msg_control, &st);
    assert_int_equal(msg.msg_controllen, 0);

    struct sockaddr_storage src;
    addr_of(AF_INET, "127.0.0.2", 0, &src);
    assert_int_equal(ctrio_cmsg_add_pktinfo(&cb, (struct sockaddr *)&src, 0), 0);
    assert_int_equal(msg.msg_controllen, CMSG_SPACE(sizeof(struct in_pktinfo)));
    assert_int_equal(ctrio_cmsg_add_segment_size(&cb, 1200), 0);
    size_t full = msg.msg_controllen;
    assert_true(full <= sizeof st);
    /* full: each add refuses and leaves the message as it was */
    assert_int_equal(ctrio_cmsg_add_segment_size(&cb, 1200), -ENOBUFS);
    int fds[1] = {0};
    assert_int_equal(ctrio_cmsg_add_fds(&cb, fds, 1), -ENOBUFS);
    assert_int_equal(ctrio_cmsg_add_pktinfo(&cb, (struct sockaddr *)&src, 0), -ENOBUFS);
    assert_int_equal(msg.msg_controllen, full);

    /* what was built reads back as the kernel would see it */
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    assert_int_equal(c->cmsg_level, IPPROTO_IP);
    assert_int_equal(c->cmsg_type, IP_PKTINFO);
    c = CMSG_NXTHDR(&msg, c);
    assert_non_null(c);
    assert_int_equal(c->cmsg_level, SOL_UDP);
    assert_int_equal(c->cmsg_type, UDP_SEGMENT);
    assert_int_equal(c->cmsg_len, CMSG_LEN(sizeof(uint16_t)));
    uint16_t seg;
    memcpy(&seg, CMSG_DATA(c), sizeof seg);
    assert_int_equal(seg, 1200);
    assert_null(CMSG_NXTHDR(&msg, c));

    /* re-init empties it; zero bytes of storage refuse every add */
    assert_int_equal(ctrio_cmsg_buf_init(&cb, &msg, &st, sizeof st), 0);
    assert_int_equal(msg.msg_controllen, 0);
    assert_int_equal(ctrio_cmsg_buf_init(&cb, &msg, &st, 0), 0);
    assert_int_equal(ctrio_cmsg_add_segment_size(&cb, 100), -ENOBUFS);
}

static void test_builder_bad_arguments(void **state)
{
    (void)state;
    struct msghdr msg = {0};
    ctrio_cmsg_buf cb;
    CTRIO_CMSG_STORAGE(st, 2 * CTRIO_CMSG_SPACE_FDS(4));
    assert_int_equal(ctrio_cmsg_buf_init(NULL, &msg, &st, sizeof st), -EINVAL);
    assert_int_equal(ctrio_cmsg_buf_init(&cb, NULL, &st, sizeof st), -EINVAL);
    assert_int_equal(ctrio_cmsg_buf_init(&cb, &msg, st.bytes + 1, sizeof st - 1), -EINVAL);
    assert_int_equal(ctrio_cmsg_buf_init(&cb, &msg, &st, sizeof st), 0);
    int fds[1] = {0};
    assert_int_equal(ctrio_cmsg_add_fds(&cb, fds, 0), -EINVAL);
    assert_int_equal(ctrio_cmsg_add_fds(&cb, NULL, 1), -EINVAL);
    assert_int_equal(ctrio_cmsg_add_fds(NULL, fds, 1), -EINVAL);
    assert_int_equal(ctrio_cmsg_add_segment_size(&cb, 0), -EINVAL);
    assert_int_equal(ctrio_cmsg_add_segment_size(&cb, 65508), -EINVAL);
    struct sockaddr_storage un = {.ss_family = AF_UNIX};
    assert_int_equal(ctrio_cmsg_add_pktinfo(&cb, (struct sockaddr *)&un, 0), -EAFNOSUPPORT);
    assert_int_equal(ctrio_cmsg_add_pktinfo(&cb, NULL, 0), -EINVAL);
    assert_int_equal(msg.msg_controllen, 0);
    assert_int_equal(ctrio_socket_enable_cmsg(NULL, CTRIO_CMSG_PKTINFO), -EINVAL);
}

/* Nothing there: -ENOENT; nothing there but the control data was cut:
 * -EMSGSIZE, never taken for an absence. */
static void test_readers_absent_or_cut(void **state)
{
    (void)state;
    struct msghdr msg = {0};
    struct sockaddr_storage ss;
    struct timespec ts;
    struct sock_extended_err ee;
    assert_int_equal(ctrio_cmsg_get_pktinfo(&msg, &ss, NULL), -ENOENT);
    assert_int_equal(ctrio_cmsg_get_timestamp(&msg, &ts), -ENOENT);
    assert_int_equal(ctrio_cmsg_get_segment_size(&msg), -ENOENT);
    assert_int_equal(ctrio_cmsg_get_error(&msg, &ee, NULL), -ENOENT);
    int fds[2];
    assert_int_equal(ctrio_cmsg_take_fds(&msg, fds, 2), 0);
    msg.msg_flags = MSG_CTRUNC;
    assert_int_equal(ctrio_cmsg_get_pktinfo(&msg, &ss, NULL), -EMSGSIZE);
    assert_int_equal(ctrio_cmsg_get_timestamp(&msg, &ts), -EMSGSIZE);
    assert_int_equal(ctrio_cmsg_get_segment_size(&msg), -EMSGSIZE);
    assert_int_equal(ctrio_cmsg_get_error(&msg, &ee, NULL), -EMSGSIZE);
    assert_int_equal(ctrio_cmsg_take_fds(&msg, fds, 2), -EMSGSIZE);
    assert_int_equal(ctrio_cmsg_get_pktinfo(NULL, &ss, NULL), -EINVAL);
    assert_int_equal(ctrio_cmsg_get_pktinfo(&msg, NULL, NULL), -EINVAL);
}

/* ---- IP_PKTINFO / IPV6_PKTINFO ------------------------------------------- */

typedef struct dgram {
    char data[64];
    ssize_t n;
    struct sockaddr_storage from;
    socklen_t fromlen;
    struct sockaddr_storage dst; /* IP_PKTINFO's */
    int ifindex;
    int pktinfo_rc;
} dgram;

/* Receive one datagram with its control messages read. */
static void recv_with_pktinfo(ctrio_socket *s, dgram *d)
{
    CTRIO_CMSG_STORAGE(st, CTRIO_CMSG_SPACE_PKTINFO + CTRIO_CMSG_SPACE_TIMESTAMP);
    struct iovec iov = {d->data, sizeof d->data};
    struct msghdr msg = {.msg_name = &d->from,
                         .msg_namelen = sizeof d->from,
                         .msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = &st,
                         .msg_controllen = sizeof st};
    d->n = ctrio_socket_recvmsg(s, &msg, 0);
    assert_true(d->n >= 0);
    d->fromlen = msg.msg_namelen;
    d->pktinfo_rc = ctrio_cmsg_get_pktinfo(&msg, &d->dst, &d->ifindex);
}

/* Answer d from the address it was sent to. */
static void reply_from_dst(ctrio_socket *s, const dgram *d, const char *text)
{
    CTRIO_CMSG_STORAGE(st, CTRIO_CMSG_SPACE_PKTINFO);
    struct iovec iov = {(void *)text, strlen(text)};
    struct msghdr msg = {
        .msg_name = (void *)&d->from, .msg_namelen = d->fromlen, .msg_iov = &iov, .msg_iovlen = 1};
    ctrio_cmsg_buf cb;
    assert_int_equal(ctrio_cmsg_buf_init(&cb, &msg, &st, sizeof st), 0);
    assert_int_equal(ctrio_cmsg_add_pktinfo(&cb, (const struct sockaddr *)&d->dst, d->ifindex), 0);
    assert_int_equal(ctrio_socket_sendmsg(s, &msg, 0), (ssize_t)strlen(text));
}

/* A server bound to 0.0.0.0 asked on 127.0.0.2 answers from 127.0.0.2 (the
 * route alone would pick 127.0.0.1, the client's address). */
static int pktinfo_v4_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 5);
    struct sockaddr_storage saddr, caddr, to, from;
    socklen_t slen, clen;
    ctrio_socket *srv = udp_at(AF_INET, "0.0.0.0", &saddr, &slen);
    ctrio_socket *cli = udp_at(AF_INET, "127.0.0.1", &caddr, &clen);
    assert_int_equal(ctrio_socket_enable_cmsg(srv, CTRIO_CMSG_PKTINFO), 0);
    socklen_t tolen = addr_of(AF_INET, "127.0.0.2", port_of(&saddr), &to);
    assert_int_equal(ctrio_socket_sendto(cli, "q", 1, 0, (struct sockaddr *)&to, tolen), 1);

    dgram d;
    recv_with_pktinfo(srv, &d);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.pktinfo_rc, 0);
    char text[64];
    assert_true(ctrio_sockaddr_format((struct sockaddr *)&d.dst, sizeof d.dst, text, sizeof text) >
                0);
    assert_string_equal(text, "127.0.0.2:0");
    assert_int_equal(d.ifindex, (int)if_nametoindex("lo"));
    reply_from_dst(srv, &d, "answer");

    char buf[16];
    socklen_t flen = sizeof from;
    assert_int_equal(
        ctrio_socket_recvfrom(cli, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen), 6);
    assert_true(ctrio_sockaddr_format((struct sockaddr *)&from, flen, text, sizeof text) > 0);
    char want[32];
    snprintf(want, sizeof want, "127.0.0.2:%d", port_of(&saddr));
    assert_string_equal(text, want);

    /* without IP_PKTINFO turned on, the reader says so */
    assert_int_equal(ctrio_socket_sendto(srv, "x", 1, 0, (struct sockaddr *)&caddr, clen), 1);
    recv_with_pktinfo(cli, &d);
    assert_int_equal(d.pktinfo_rc, -ENOENT);
    ctrio_socket_close(srv);
    ctrio_socket_close(cli);
    return ctrio_cancel_scope_close(&cs, 0);
}
RUN_REAL(pktinfo_v4)

/* IPv6 on ::1, and a dual-stack socket asked over IPv4 (an IPv4-mapped
 * destination, answered from it through IPV6_PKTINFO). */
static int pktinfo_v6_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 5);
    struct sockaddr_storage saddr, caddr, c4addr, to, from;
    socklen_t slen, clen, c4len;
    ctrio_socket *srv;
    assert_int_equal(ctrio_socket_open(AF_INET6, SOCK_DGRAM, 0, &srv), 0);
    int off = 0;
    assert_int_equal(ctrio_socket_setsockopt(srv, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off), 0);
    slen = addr_of(AF_INET6, "::", 0, &saddr);
    assert_int_equal(ctrio_socket_bind(srv, (struct sockaddr *)&saddr, slen), 0);
    slen = sizeof saddr;
    assert_int_equal(ctrio_socket_getsockname(srv, (struct sockaddr *)&saddr, &slen), 0);
    ctrio_socket *cli = udp_at(AF_INET6, "::1", &caddr, &clen);
    ctrio_socket *cli4 = udp_at(AF_INET, "127.0.0.1", &c4addr, &c4len);
    assert_int_equal(ctrio_socket_enable_cmsg(srv, CTRIO_CMSG_PKTINFO), 0);

    socklen_t tolen = addr_of(AF_INET6, "::1", port_of(&saddr), &to);
    assert_int_equal(ctrio_socket_sendto(cli, "q", 1, 0, (struct sockaddr *)&to, tolen), 1);
    dgram d;
    recv_with_pktinfo(srv, &d);
    assert_int_equal(d.pktinfo_rc, 0);
    char text[64];
    assert_true(ctrio_sockaddr_format((struct sockaddr *)&d.dst, sizeof d.dst, text, sizeof text) >
                0);
    assert_string_equal(text, "[::1]:0");
    assert_int_equal(d.ifindex, (int)if_nametoindex("lo"));
    reply_from_dst(srv, &d, "six");
    char buf[16];
    socklen_t flen = sizeof from;
    assert_int_equal(
        ctrio_socket_recvfrom(cli, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen), 3);
    assert_int_equal(port_of(&from), port_of(&saddr));

    tolen = addr_of(AF_INET, "127.0.0.3", port_of(&saddr), &to);
    assert_int_equal(ctrio_socket_sendto(cli4, "q", 1, 0, (struct sockaddr *)&to, tolen), 1);
    recv_with_pktinfo(srv, &d);
    assert_int_equal(d.pktinfo_rc, 0);
    assert_true(ctrio_sockaddr_format((struct sockaddr *)&d.dst, sizeof d.dst, text, sizeof text) >
                0);
    assert_string_equal(text, "[::ffff:127.0.0.3]:0");
    reply_from_dst(srv, &d, "four");
    flen = sizeof from;
    assert_int_equal(
        ctrio_socket_recvfrom(cli4, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen), 4);
    assert_true(ctrio_sockaddr_format((struct sockaddr *)&from, flen, text, sizeof text) > 0);
    char want[32];
    snprintf(want, sizeof want, "127.0.0.3:%d", port_of(&saddr));
    assert_string_equal(text, want);
    ctrio_socket_close(srv);
    ctrio_socket_close(cli);
    ctrio_socket_close(cli4);
    return ctrio_cancel_scope_close(&cs, 0);
}

static void test_pktinfo_v6(void **state)
{
    (void)state;
    if (!have_ipv6_loopback())
        skip();
    assert_int_equal(run_real(pktinfo_v6_body, NULL), 0);
}

/* ---- SO_TIMESTAMPNS ----------------------------------------------------------- */

static int timestamp_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 5);
    struct sockaddr_storage a, b;
    socklen_t alen, blen;
    ctrio_socket *sa = udp_at(AF_INET, "127.0.0.1", &a, &alen);
    ctrio_socket *sb = udp_at(AF_INET, "127.0.0.1", &b, &blen);
    assert_int_equal(ctrio_socket_enable_cmsg(sb, CTRIO_CMSG_TIMESTAMP | CTRIO_CMSG_PKTINFO), 0);
    struct timespec t0, t1, ts;
    clock_gettime(CLOCK_REALTIME, &t0);
    assert_int_equal(ctrio_socket_sendto(sa, "t", 1, 0, (struct sockaddr *)&b, blen), 1);
    char c;
    CTRIO_CMSG_STORAGE(st, CTRIO_CMSG_SPACE_PKTINFO + CTRIO_CMSG_SPACE_TIMESTAMP);
    struct iovec iov = {&c, 1};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &st, .msg_controllen = sizeof st};
    assert_int_equal(ctrio_socket_recvmsg(sb, &msg, 0), 1);
    clock_gettime(CLOCK_REALTIME, &t1);
    assert_int_equal(ctrio_cmsg_get_timestamp(&msg, &ts), 0);
    double t = ts.tv_sec + ts.tv_nsec * 1e-9;
    assert_true(t >= t0.tv_sec + t0.tv_nsec * 1e-9 - 0.001);
    assert_true(t <= t1.tv_sec + t1.tv_nsec * 1e-9 + 0.001);
    struct sockaddr_storage dst;
    assert_int_equal(ctrio_cmsg_get_pktinfo(&msg, &dst, NULL), 0); /* both found */

    /* room for the timestamp only (the kernel puts it first): the packet
     * information was cut, and that is what the reader says */
    assert_int_equal(ctrio_socket_sendto(sa, "t", 1, 0, (struct sockaddr *)&b, blen), 1);
    msg.msg_controllen = CTRIO_CMSG_SPACE_TIMESTAMP;
    assert_int_equal(ctrio_socket_recvmsg(sb, &msg, 0), 1);
    assert_true(msg.msg_flags & MSG_CTRUNC);
    assert_int_equal(ctrio_cmsg_get_timestamp(&msg, &ts), 0);
    assert_int_equal(ctrio_cmsg_get_pktinfo(&msg, &dst, NULL), -EMSGSIZE);
    /* no room at all */
    assert_int_equal(ctrio_socket_sendto(sa, "t", 1, 0, (struct sockaddr *)&b, blen), 1);
    msg.msg_controllen = 0;
    assert_int_equal(ctrio_socket_recvmsg(sb, &msg, 0), 1);
    assert_true(msg.msg_flags & MSG_CTRUNC);
    assert_int_equal(ctrio_cmsg_get_timestamp(&msg, &ts), -EMSGSIZE);
    ctrio_socket_close(sa);
    ctrio_socket_close(sb);
    return ctrio_cancel_scope_close(&cs, 0);
}
RUN_REAL(timestamp)

/* ---- SCM_RIGHTS ------------------------------------------------------------ */

static ssize_t send_fds(ctrio_socket *s, const int *fds, size_t n)
{
    CTRIO_CMSG_STORAGE(st, CTRIO_CMSG_SPACE_FDS(8));
    struct iovec iov = {"F", 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    ctrio_cmsg_buf cb;
    assert_int_equal(ctrio_cmsg_buf_init(&cb, &msg, &st, sizeof st), 0);
    assert_int_equal(ctrio_cmsg_add_fds(&cb, fds, n), 0);
    return ctrio_socket_sendmsg(s, &msg, 0);
}

typedef struct fd_msg {
    CTRIO_CMSG_STORAGE(st, CTRIO_CMSG_SPACE_FDS(8));
    char c;
    struct iovec iov;
    struct msghdr msg;
} fd_msg;

/* Receive one datagram with room (controllen) for the descriptors. */
static void recv_fds(ctrio_socket *s, fd_msg *m, size_t controllen)
{
    m->iov = (struct iovec){&m->c, 1};
    m->msg = (struct msghdr){
        .msg_iov = &m->iov, .msg_iovlen = 1, .msg_control = &m->st, .msg_controllen = controllen};
    assert_int_equal(ctrio_socket_recvmsg(s, &m->msg, 0), 1);
}

static int scm_rights_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 5);
    ctrio_socket *p[2];
    assert_int_equal(ctrio_socketpair(AF_UNIX, SOCK_DGRAM, 0, p), 0);
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    int three[3] = {pipefd[0], pipefd[1], pipefd[0]};
    int before = count_open_fds();

    /* three out, three in: taken, close-on-exec, the same files */
    fd_msg m;
    assert_int_equal(send_fds(p[0], three, 3), 1);
    recv_fds(p[1], &m, sizeof m.st);
    assert_int_equal(count_open_fds(), before + 3);
    int got[4];
    assert_int_equal(ctrio_cmsg_take_fds(&m.msg, got, 4), 3);
    for (int i = 0; i < 3; i++) {
        assert_true(fcntl(got[i], F_GETFD) & FD_CLOEXEC);
        assert_int_not_equal(got[i], three[i]);
    }
    assert_int_equal(write(got[1], "z", 1), 1);
    char z;
    assert_int_equal(read(pipefd[0], &z, 1), 1);
    /* taken: the message holds none of them any more */
    assert_int_equal(ctrio_cmsg_close_fds(&m.msg), 0);
    assert_int_equal(ctrio_cmsg_take_fds(&m.msg, got + 3, 1), 0);
    for (int i = 0; i < 3; i++)
        close(got[i]);
    assert_int_equal(count_open_fds(), before);

    /* more than the caller's array holds: all closed, -ENOBUFS */
    assert_int_equal(send_fds(p[0], three, 3), 1);
    recv_fds(p[1], &m, sizeof m.st);
    assert_int_equal(ctrio_cmsg_take_fds(&m.msg, got, 2), -ENOBUFS);
    assert_int_equal(count_open_fds(), before);

    /* a receiver that wants none */
    assert_int_equal(send_fds(p[0], three, 3), 1);
    recv_fds(p[1], &m, sizeof m.st);
    assert_int_equal(ctrio_cmsg_close_fds(&m.msg), 3);
    assert_int_equal(count_open_fds(), before);

    /* room for two of three: the kernel installs two and says MSG_CTRUNC;
     * both are closed and the truncation reported (qemu-user installs
     * every one and says nothing: then nothing to check) */
    assert_int_equal(send_fds(p[0], three, 3), 1);
    recv_fds(p[1], &m, CTRIO_CMSG_SPACE_FDS(1));
    if (m.msg.msg_flags & MSG_CTRUNC) {
        assert_int_equal(count_open_fds(), before + 2);
        assert_int_equal(ctrio_cmsg_take_fds(&m.msg, got, 4), -EMSGSIZE);
    } else {
        ctrio_cmsg_close_fds(&m.msg);
    }
    assert_int_equal(count_open_fds(), before);

    close(pipefd[0]);
    close(pipefd[1]);
    ctrio_socket_close(p[0]);
    ctrio_socket_close(p[1]);
    return ctrio_cancel_scope_close(&cs, 0);
}
RUN_REAL(scm_rights)

/* ---- IP_RECVERR / IPV6_RECVERR ------------------------------------------- */

static void check_recverr(int family, const char *host, uint8_t origin, uint8_t type, uint8_t code)
{
    struct sockaddr_storage a, gone;
    socklen_t alen, glen;
    ctrio_socket *s = udp_at(family, host, &a, &alen);
    ctrio_socket *g = udp_at(family, host, &gone, &glen);
    ctrio_socket_close(g); /* nobody at that port: an ICMP port unreachable */
    assert_int_equal(ctrio_socket_enable_cmsg(s, CTRIO_CMSG_RECVERR), 0);
    assert_int_equal(ctrio_socket_sendto(s, "?", 1, 0, (struct sockaddr *)&gone, glen), 1);

    char data[8];
    CTRIO_CMSG_STORAGE(st, CTRIO_CMSG_SPACE_ERROR);
    struct iovec iov = {data, sizeof data};
    struct sockaddr_storage name;
    struct msghdr msg = {.msg_name = &name,
                         .msg_namelen = sizeof name,
                         .msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = &st,
                         .msg_controllen = sizeof st};
    assert_int_equal(ctrio_socket_recvmsg(s, &msg, MSG_ERRQUEUE), 1);
    assert_true(msg.msg_flags & MSG_ERRQUEUE);
    struct sock_extended_err ee;
    struct sockaddr_storage offender;
    assert_int_equal(ctrio_cmsg_get_error(&msg, &ee, &offender), 0);
    assert_int_equal(ee.ee_errno, ECONNREFUSED);
    assert_int_equal(ee.ee_origin, origin);
    assert_int_equal(ee.ee_type, type);
    assert_int_equal(ee.ee_code, code);
    assert_int_equal(offender.ss_family, family);
    char text[64], want[64];
    assert_true(ctrio_sockaddr_format((struct sockaddr *)&offender, sizeof offender, text,
                                      sizeof text) > 0);
    snprintf(want, sizeof want, family == AF_INET ? "%s:0" : "[%s]:0", host);
    assert_string_equal(text, want);
    ctrio_socket_close(s);
}

static int recverr_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 5);
    check_recverr(AF_INET, "127.0.0.1", SO_EE_ORIGIN_ICMP, 3, 3); /* port unreachable */
    if (have_ipv6_loopback())
        check_recverr(AF_INET6, "::1", SO_EE_ORIGIN_ICMP6, 1, 4);
    return ctrio_cancel_scope_close(&cs, 0);
}
RUN_REAL(recverr)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_builder_enobufs),
        TEST(test_builder_bad_arguments),
        TEST(test_readers_absent_or_cut),
        TEST(test_pktinfo_v4),
        TEST(test_pktinfo_v6),
        TEST(test_timestamp),
        TEST(test_scm_rights),
        TEST(test_recverr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
