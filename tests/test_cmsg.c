/*
 * test_cmsg.c — control messages without CMSG_* arithmetic, UDP segmentation
 * offload (UDP_SEGMENT) and receive coalescing (UDP_GRO): ctrio.h,
 * "Datagrams". Trio has none of these (its recvmsg/sendmsg hand the raw
 * ancillary data to the caller), so nothing here is ported: each helper is
 * checked over real loopback sockets (IPv4, IPv6, AF_UNIX), and the offload
 * fallbacks through a custom socket that wraps a real one and refuses
 * UDP_SEGMENT as a device without checksum offload (EIO), an old kernel
 * (ENOPROTOOPT) or a send of bad sizes (EINVAL) would.
 */
#include "net_support.h"
#include "support.h"

#include <ctrio_testing.h>

#include <sys/stat.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
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
    assert_int_equal(ctrio_socket_send_segments(NULL, "x", 1, 1, 0, NULL, 0), -EINVAL);
    assert_int_equal(ctrio_socket_set_gro(NULL, true), -EINVAL);
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
    int erc = ctrio_socket_enable_cmsg(sb, CTRIO_CMSG_TIMESTAMP | CTRIO_CMSG_PKTINFO);
    if (erc == -ENOPROTOOPT) { /* qemu-user lacks SO_TIMESTAMPNS; Linux has it */
        ctrio_socket_close(sa);
        ctrio_socket_close(sb);
        return ctrio_cancel_scope_close(&cs, 0);
    }
    assert_int_equal(erc, 0);
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
        /* qemu-user installed the two it could not report (its leak, not
         * ours: nothing names them to the program): close every other
         * descriptor of these pipe ends, so the leak check below holds */
        struct stat want, st;
        assert_int_equal(fstat(pipefd[0], &want), 0);
        for (int fd = 3; fd < 1024; fd++)
            if (fd != pipefd[0] && fd != pipefd[1] && fstat(fd, &st) == 0 &&
                S_ISFIFO(st.st_mode) && st.st_ino == want.st_ino && st.st_dev == want.st_dev)
                close(fd);
    }
    assert_int_equal(count_open_fds(), before);

    close(pipefd[0]);
    close(pipefd[1]);
    ctrio_socket_close(p[0]);
    ctrio_socket_close(p[1]);
    return ctrio_cancel_scope_close(&cs, 0);
}
RUN_REAL(scm_rights)

/* recv_segments on AF_UNIX: a descriptor that came along is closed, not
 * left in the process. */
static int unix_segments_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 5);
    ctrio_socket *p[2];
    assert_int_equal(ctrio_socketpair(AF_UNIX, SOCK_DGRAM, 0, p), 0);
    int before = count_open_fds();
    int fd = 0;
    assert_int_equal(send_fds(p[0], &fd, 1), 1);
    char buf[8];
    size_t seg = 0;
    assert_int_equal(ctrio_socket_recv_segments(p[1], buf, sizeof buf, &seg, NULL, NULL, NULL), 1);
    assert_int_equal(seg, 1);
    assert_int_equal(count_open_fds(), before);
    ctrio_socket_close(p[0]);
    ctrio_socket_close(p[1]);
    return ctrio_cancel_scope_close(&cs, 0);
}
RUN_REAL(unix_segments)

/* ---- IP_RECVERR / IPV6_RECVERR ------------------------------------------- */

/* A message to read the error queue into (its fields point into itself:
 * errq_msg_reset before each receive). */
typedef struct errq_msg {
    char data[8];
    CTRIO_CMSG_STORAGE(st, CTRIO_CMSG_SPACE_ERROR);
    struct iovec iov;
    struct sockaddr_storage name;
    struct msghdr msg;
} errq_msg;

static struct msghdr *errq_msg_reset(errq_msg *m)
{
    m->iov = (struct iovec){m->data, sizeof m->data};
    m->msg = (struct msghdr){.msg_name = &m->name,
                             .msg_namelen = sizeof m->name,
                             .msg_iov = &m->iov,
                             .msg_iovlen = 1,
                             .msg_control = &m->st,
                             .msg_controllen = sizeof m->st};
    return &m->msg;
}

static void check_recverr(int family, const char *host, uint8_t origin, uint8_t type, uint8_t code)
{
    struct sockaddr_storage a, gone;
    socklen_t alen, glen;
    ctrio_socket *s = udp_at(family, host, &a, &alen);
    ctrio_socket *g = udp_at(family, host, &gone, &glen);
    ctrio_socket_close(g); /* nobody at that port: an ICMP port unreachable */
    assert_int_equal(ctrio_socket_enable_cmsg(s, CTRIO_CMSG_RECVERR), 0);
    assert_int_equal(ctrio_socket_sendto(s, "?", 1, 0, (struct sockaddr *)&gone, glen), 1);

    errq_msg m;
    struct msghdr *msg = errq_msg_reset(&m);
    assert_int_equal(ctrio_socket_recvmsg(s, msg, MSG_ERRQUEUE), 1);
    assert_true(msg->msg_flags & MSG_ERRQUEUE);
    struct sock_extended_err ee;
    struct sockaddr_storage offender;
    assert_int_equal(ctrio_cmsg_get_error(msg, &ee, &offender), 0);
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

/* A task waiting on the error queue while ordinary data sits in the receive
 * queue: the socket is readable the whole time, but not for MSG_ERRQUEUE.
 * The wait must sleep until the error comes (50 ms later here), not retry
 * recvmsg for as long as the data stays unread. */
typedef struct errq {
    ctrio_socket *s;
    struct sockaddr_storage gone;
    socklen_t glen;
} errq;

static int provoke_error_later(void *arg)
{
    errq *e = arg;
    int rc = ctrio_sleep(0.05);
    if (rc < 0)
        return rc;
    return ctrio_socket_sendto(e->s, "?", 1, 0, (struct sockaddr *)&e->gone, e->glen) == 1 ? 0
                                                                                        : -EIO;
}

static int recverr_wait_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 5);
    errq e;
    struct sockaddr_storage a, p;
    socklen_t alen, plen;
    e.s = udp_at(AF_INET, "127.0.0.1", &a, &alen);
    ctrio_socket *peer = udp_at(AF_INET, "127.0.0.1", &p, &plen);
    ctrio_socket *g = udp_at(AF_INET, "127.0.0.1", &e.gone, &e.glen);
    ctrio_socket_close(g);
    assert_int_equal(ctrio_socket_enable_cmsg(e.s, CTRIO_CMSG_RECVERR), 0);
    /* ordinary data, left unread until the end */
    assert_int_equal(ctrio_socket_sendto(peer, "data", 4, 0, (struct sockaddr *)&a, alen), 4);

    errq_msg m;
    struct msghdr *msg = errq_msg_reset(&m);
    char data[8];
    /* no error comes: the wait ends with its deadline, and cheaply */
    ctrio_cancel_scope quiet;
    ctrio_move_on_after(&quiet, 0.02);
    uint64_t before = ctrio_testing_run_syscalls();
    assert_int_equal(ctrio_socket_recvmsg(e.s, msg, MSG_ERRQUEUE), -ECANCELED);
    uint64_t calls = ctrio_testing_run_syscalls() - before;
    assert_int_equal(ctrio_cancel_scope_close(&quiet, 0), 0);
    if (calls > 20)
        fail_msg("%llu system calls while waiting 20 ms on an empty error queue",
                 (unsigned long long)calls);
    /* recv and recvmmsg alike (the ring has no recvmmsg of its own) */
    struct mmsghdr mm = {.msg_hdr = *errq_msg_reset(&m)};
    for (int i = 0; i < 2; i++) {
        ctrio_move_on_after(&quiet, 0.02);
        before = ctrio_testing_run_syscalls();
        if (i == 0)
            assert_int_equal(ctrio_socket_recv(e.s, data, sizeof data, MSG_ERRQUEUE), -ECANCELED);
        else
            assert_int_equal(ctrio_socket_recvmmsg(e.s, &mm, 1, MSG_ERRQUEUE), -ECANCELED);
        calls = ctrio_testing_run_syscalls() - before;
        assert_int_equal(ctrio_cancel_scope_close(&quiet, 0), 0);
        if (calls > 20)
            fail_msg("%s: %llu system calls while waiting 20 ms on an empty error queue",
                     i ? "recvmmsg" : "recv", (unsigned long long)calls);
    }

    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, provoke_error_later, &e), 0);
    msg = errq_msg_reset(&m);
    before = ctrio_testing_run_syscalls();
    assert_int_equal(ctrio_socket_recvmsg(e.s, msg, MSG_ERRQUEUE), 1);
    calls = ctrio_testing_run_syscalls() - before;
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    struct sock_extended_err ee;
    assert_int_equal(ctrio_cmsg_get_error(msg, &ee, NULL), 0);
    assert_int_equal(ee.ee_errno, ECONNREFUSED);
    /* the waiting task and the sender together: a handful of recvmsg,
     * polls and one sendto, not one recvmsg per turn for 50 ms */
    if (calls > 20)
        fail_msg("%llu system calls while waiting 50 ms on the error queue",
                 (unsigned long long)calls);
    /* the ordinary datagram is still there, whole */
    assert_int_equal(ctrio_socket_recv(e.s, data, sizeof data, 0), 4);
    assert_memory_equal(data, "data", 4);
    ctrio_socket_close(peer);
    ctrio_socket_close(e.s);
    return ctrio_cancel_scope_close(&cs, 0);
}
RUN_REAL(recverr_wait)

/* ---- UDP_SEGMENT: segmented sends and their fallbacks ------------------------- */

/* A custom socket over a real UDP socket that counts the sends and can
 * refuse UDP_SEGMENT as the kernel or a device would. */
enum refuse { PASS, REFUSE_EIO, REFUSE_EINVAL, OLD_KERNEL };
typedef struct wrap {
    ctrio_socket *inner;
    enum refuse mode;
    int probes, gso_sends, plain_sends, refusals;
} wrap;

static bool has_segment_cmsg(const struct msghdr *msg)
{
    if (!msg->msg_control)
        return false;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR((struct msghdr *)msg, c))
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_SEGMENT)
            return true;
    return false;
}

static ssize_t wrap_sendmsg(ctrio_socket *s, const struct msghdr *msg, int flags)
{
    wrap *w = ctrio_socket_impl(s);
    if (has_segment_cmsg(msg)) {
        if (w->mode == REFUSE_EIO || w->mode == REFUSE_EINVAL) {
            w->refusals++;
            int rc = ctrio_checkpoint(); /* a real refusal is a checkpoint too */
            return rc < 0 ? rc : w->mode == REFUSE_EIO ? -EIO : -EINVAL;
        }
        w->gso_sends++;
    } else {
        w->plain_sends++;
    }
    return ctrio_socket_sendmsg(w->inner, msg, flags);
}

static int wrap_getsockopt(ctrio_socket *s, int level, int name, void *val, socklen_t *len)
{
    wrap *w = ctrio_socket_impl(s);
    if (level == SOL_UDP && name == UDP_SEGMENT) {
        w->probes++;
        if (w->mode == OLD_KERNEL)
            return -ENOPROTOOPT;
    }
    return ctrio_socket_getsockopt(w->inner, level, name, val, len);
}

static int wrap_close(ctrio_socket *s)
{
    wrap *w = ctrio_socket_impl(s);
    return ctrio_socket_close(w->inner);
}

static const ctrio_socket_ops wrap_ops = {
    .sendmsg = wrap_sendmsg,
    .getsockopt = wrap_getsockopt,
    .close = wrap_close,
};

static ctrio_socket *wrapped(wrap *w, enum refuse mode)
{
    struct sockaddr_storage a;
    socklen_t alen;
    *w = (wrap){.inner = udp_at(AF_INET, "127.0.0.1", &a, &alen), .mode = mode};
    ctrio_socket *s;
    assert_int_equal(ctrio_socket_new_custom(&wrap_ops, w, AF_INET, SOCK_DGRAM, IPPROTO_UDP, &s),
                     0);
    return s;
}

/* Datagram i of a pattern: seg bytes (the last len % seg), each byte i + k. */
static void pattern(unsigned char *buf, size_t len, size_t seg)
{
    for (size_t k = 0; k < len; k++)
        buf[k] = (unsigned char)(k / seg * 7 + k % seg);
}

/* Receive the datagrams of pattern(len, seg) one receive each (GRO off),
 * checking each; fails on a loss, a duplicate or a reordering. */
static void expect_datagrams(ctrio_socket *r, size_t len, size_t seg)
{
    static unsigned char want[300000], got[65536];
    pattern(want, len, seg);
    for (size_t off = 0; off < len; off += seg) {
        size_t n = len - off < seg ? len - off : seg;
        size_t sz = 0;
        int fl = 0;
        ssize_t k = ctrio_socket_recv_segments(r, got, sizeof got, &sz, NULL, NULL, &fl);
        assert_int_equal(k, (ssize_t)n);
        assert_int_equal(sz, n);
        assert_int_equal(fl & MSG_TRUNC, 0);
        assert_memory_equal(got, want + off, n);
    }
    assert_false(ctrio_socket_is_readable(r)); /* and nothing more */
}

typedef struct seg_case {
    enum refuse mode;
    size_t len, seg;
    int calls;
    wrap w;
} seg_case;

static int send_segments_body(void *arg)
{
    seg_case *c = arg;
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 10);
    struct sockaddr_storage raddr;
    socklen_t rlen;
    ctrio_socket *r = udp_at(AF_INET, "127.0.0.1", &raddr, &rlen);
    int big = 4 << 20;
    ctrio_socket_setsockopt(r, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    ctrio_socket_setsockopt(r, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    ctrio_socket *s = wrapped(&c->w, c->mode);
    static unsigned char buf[300000];
    pattern(buf, c->len, c->seg);
    for (int i = 0; i < c->calls; i++) {
        ssize_t n =
            ctrio_socket_send_segments(s, buf, c->len, c->seg, 0, (struct sockaddr *)&raddr, rlen);
        assert_int_equal(n, (ssize_t)c->len);
        expect_datagrams(r, c->len, c->seg);
    }
    ctrio_socket_close(s);
    ctrio_socket_close(r);
    return ctrio_cancel_scope_close(&cs, 0);
}

static void run_seg_case(seg_case *c)
{
    assert_int_equal(run_real(send_segments_body, c), 0);
    assert_int_equal(c->w.probes, 1); /* probed once per socket, then kept */
}

/* On lo the kernel segments: one sendmsg for 11 datagrams (the last
 * shorter); 200 of 1,200 bytes go 54 to a sendmsg (65,507 bytes at most). */
static void test_gso_loopback(void **state)
{
    (void)state;
    seg_case c = {.mode = PASS, .len = 10500, .seg = 1000, .calls = 2};
    run_seg_case(&c);
    assert_int_equal(c.w.gso_sends, 2);
    assert_int_equal(c.w.plain_sends, 0);
    seg_case big = {.mode = PASS, .len = 200 * 1200, .seg = 1200, .calls = 1};
    run_seg_case(&big);
    assert_int_equal(big.w.gso_sends, 4);
    assert_int_equal(big.w.plain_sends, 0);
    /* 64 segments at most in one send */
    seg_case small = {.mode = PASS, .len = 130 * 100, .seg = 100, .calls = 1};
    run_seg_case(&small);
    assert_int_equal(small.w.gso_sends, 3);
}

/* A device without checksum offload: EIO, nothing sent. The datagrams go
 * one sendmsg each, every one exactly once, and the socket stops trying. */
static void test_gso_fallback_eio(void **state)
{
    (void)state;
    seg_case c = {.mode = REFUSE_EIO, .len = 10500, .seg = 1000, .calls = 3};
    run_seg_case(&c);
    assert_int_equal(c.w.refusals, 1);
    assert_int_equal(c.w.gso_sends, 0);
    assert_int_equal(c.w.plain_sends, 3 * 11);
}

/* ctrio_socket_sendmsg_segments: the caller's own control message
 * (IP_PKTINFO: answer from 127.0.0.3) rides on every datagram, whether the
 * kernel segments (one sendmsg) or the socket falls back (one each); the
 * datagrams are cut across the iovec's entries wherever they fall (an
 * empty entry, 40 entries, more than the call keeps on its stack). */
typedef struct msg_seg_case {
    enum refuse mode;
    wrap w;
} msg_seg_case;

static void expect_from(ctrio_socket *r, const unsigned char *want, size_t len, size_t seg,
                        const char *from)
{
    static unsigned char got[65536];
    for (size_t off = 0; off < len; off += seg) {
        size_t n = len - off < seg ? len - off : seg;
        struct sockaddr_storage src;
        socklen_t slen = sizeof src;
        assert_int_equal(
            ctrio_socket_recvfrom(r, got, sizeof got, 0, (struct sockaddr *)&src, &slen),
            (ssize_t)n);
        assert_memory_equal(got, want + off, n);
        char text[64];
        assert_true(ctrio_sockaddr_format((struct sockaddr *)&src, slen, text, sizeof text) > 0);
        assert_non_null(strstr(text, from));
    }
    assert_false(ctrio_socket_is_readable(r));
}

static int sendmsg_segments_body(void *arg)
{
    msg_seg_case *c = arg;
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 10);
    struct sockaddr_storage raddr, any, from;
    socklen_t rlen, alen;
    ctrio_socket *r = udp_at(AF_INET, "127.0.0.1", &raddr, &rlen);
    c->w = (wrap){.inner = udp_at(AF_INET, "0.0.0.0", &any, &alen), .mode = c->mode};
    ctrio_socket *s;
    assert_int_equal(
        ctrio_socket_new_custom(&wrap_ops, &c->w, AF_INET, SOCK_DGRAM, IPPROTO_UDP, &s), 0);
    addr_of(AF_INET, "127.0.0.3", 0, &from);

    static unsigned char buf[3001];
    pattern(buf, sizeof buf, 1200);
    struct iovec iov[4] = {
        {buf, 1000}, {buf + 1000, 0}, {buf + 1000, 1500}, {buf + 2500, 501}};
    CTRIO_CMSG_STORAGE(st, CTRIO_CMSG_SPACE_PKTINFO);
    struct msghdr msg = {.msg_name = &raddr, .msg_namelen = rlen, .msg_iov = iov, .msg_iovlen = 4};
    ctrio_cmsg_buf cb;
    assert_int_equal(ctrio_cmsg_buf_init(&cb, &msg, &st, sizeof st), 0);
    assert_int_equal(ctrio_cmsg_add_pktinfo(&cb, (struct sockaddr *)&from, 0), 0);
    size_t controllen = msg.msg_controllen;
    assert_int_equal(ctrio_socket_sendmsg_segments(s, &msg, 1200, 0), 3001);
    assert_int_equal(msg.msg_controllen, controllen); /* the caller's msghdr as it was */
    assert_int_equal(msg.msg_iovlen, 4);
    assert_ptr_equal(iov[2].iov_base, buf + 1000);
    expect_from(r, buf, 3001, 1200, "127.0.0.3:");

    /* 40 entries of 75 bytes, 3 datagrams of 1,000 */
    struct iovec many[40];
    for (int i = 0; i < 40; i++)
        many[i] = (struct iovec){buf + 75 * i, 75};
    msg.msg_iov = many;
    msg.msg_iovlen = 40;
    assert_int_equal(ctrio_socket_sendmsg_segments(s, &msg, 1000, 0), 3000);
    expect_from(r, buf, 3000, 1000, "127.0.0.3:");

    /* bad input, each refused before anything is sent */
    assert_int_equal(ctrio_socket_sendmsg_segments(s, NULL, 1000, 0), -EINVAL);
    assert_int_equal(ctrio_socket_sendmsg_segments(s, &msg, 0, 0), -EINVAL);
    assert_int_equal(ctrio_socket_sendmsg_segments(s, &msg, 65508, 0), -EINVAL);
    struct msghdr bad = msg;
    bad.msg_iovlen = IOV_MAX + 1;
    assert_int_equal(ctrio_socket_sendmsg_segments(s, &bad, 1000, 0), -EMSGSIZE);
    bad = msg;
    bad.msg_controllen = CTRIO_SEGMENTS_CONTROL_MAX + 8;
    assert_int_equal(ctrio_socket_sendmsg_segments(s, &bad, 1000, 0), -ENOBUFS);
    struct iovec hole = {NULL, 10};
    bad = msg;
    bad.msg_iov = &hole;
    bad.msg_iovlen = 1;
    assert_int_equal(ctrio_socket_sendmsg_segments(s, &bad, 1000, 0), -EINVAL);
    CTRIO_CMSG_STORAGE(st2, CTRIO_CMSG_SPACE_SEGMENT);
    bad = msg;
    assert_int_equal(ctrio_cmsg_buf_init(&cb, &bad, &st2, sizeof st2), 0);
    assert_int_equal(ctrio_cmsg_add_segment_size(&cb, 500), 0);
    assert_int_equal(ctrio_socket_sendmsg_segments(s, &bad, 1000, 0), -EINVAL);
    assert_false(ctrio_socket_is_readable(r));

    ctrio_socket_close(s);
    ctrio_socket_close(r);
    return ctrio_cancel_scope_close(&cs, 0);
}

static void test_gso_sendmsg_pktinfo(void **state)
{
    (void)state;
    msg_seg_case c = {.mode = PASS};
    assert_int_equal(run_real(sendmsg_segments_body, &c), 0);
    assert_int_equal(c.w.gso_sends, 2);
    assert_int_equal(c.w.plain_sends, 0);
    msg_seg_case eio = {.mode = REFUSE_EIO};
    assert_int_equal(run_real(sendmsg_segments_body, &eio), 0);
    assert_int_equal(eio.w.refusals, 1);
    assert_int_equal(eio.w.gso_sends, 0);
    assert_int_equal(eio.w.plain_sends, 6); /* 3 + 3 datagrams, pktinfo on each */
}

/* EINVAL concerns one send's sizes: that send falls back, the next tries
 * again. */
static void test_gso_fallback_einval(void **state)
{
    (void)state;
    seg_case c = {.mode = REFUSE_EINVAL, .len = 10500, .seg = 1000, .calls = 2};
    run_seg_case(&c);
    assert_int_equal(c.w.refusals, 2);
    assert_int_equal(c.w.plain_sends, 2 * 11);
}

/* A kernel without UDP_SEGMENT (before 4.18) would ignore the message and
 * send one big datagram: the probe keeps it from ever being sent. */
static void test_gso_old_kernel(void **state)
{
    (void)state;
    seg_case c = {.mode = OLD_KERNEL, .len = 10500, .seg = 1000, .calls = 2};
    run_seg_case(&c);
    assert_int_equal(c.w.gso_sends + c.w.refusals, 0);
    assert_int_equal(c.w.plain_sends, 2 * 11);
}

/* A cancellation at every cancel point of a segmented send, with and
 * without the fallback: the datagrams that went are reported (whole ones,
 * in order, each once), the rest never sent; a cancellation before any
 * went is -ECANCELED with nothing sent. */
static int gso_cancelled_body(void *arg)
{
    (void)arg;
    struct sockaddr_storage raddr;
    socklen_t rlen;
    ctrio_socket *r = udp_at(AF_INET, "127.0.0.1", &raddr, &rlen);
    static unsigned char buf[10500];
    pattern(buf, sizeof buf, 1000);
    for (int mode = PASS; mode <= REFUSE_EIO; mode++) {
        wrap w;
        ctrio_socket *s = wrapped(&w, (enum refuse)mode);
        int partial = 0;
        for (uint64_t at = 1; at < 100; at++) {
            ctrio_cancel_scope cs;
            ctrio_cancel_scope_open(&cs);
            ctrio_testing_cancel_at_checkpoint(&cs, at);
            ssize_t n = ctrio_socket_send_segments(s, buf, sizeof buf, 1000, 0,
                                                   (struct sockaddr *)&raddr, rlen);
            bool fired = ctrio_testing_cancel_fired();
            ctrio_testing_cancel_at_checkpoint(NULL, 0);
            ctrio_cancel_scope_close(&cs, 0);
            if (n == -ECANCELED) {
                assert_false(ctrio_socket_is_readable(r));
                continue;
            }
            assert_true(n > 0);
            partial += n < (ssize_t)sizeof buf;
            expect_datagrams(r, (size_t)n, 1000);
            if (!fired)
                break;
        }
        if (mode == REFUSE_EIO)
            assert_true(partial > 0); /* some stopped between datagrams */
        ctrio_socket_close(s);
    }
    ctrio_socket_close(r);
    return 0;
}
RUN_REAL(gso_cancelled)

/* ---- UDP_GRO: coalesced receives ------------------------------------------- */

static int gro_body(void *arg)
{
    bool on = *(bool *)arg;
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 5);
    struct sockaddr_storage raddr, saddr;
    socklen_t rlen, slen;
    ctrio_socket *r = udp_at(AF_INET, "127.0.0.1", &raddr, &rlen);
    ctrio_socket *s = udp_at(AF_INET, "127.0.0.1", &saddr, &slen);
    if (on)
        assert_int_equal(ctrio_socket_set_gro(r, true), 0);
    static unsigned char buf[10500], got[65536];
    pattern(buf, sizeof buf, 1000);
    assert_int_equal(
        ctrio_socket_send_segments(s, buf, sizeof buf, 1000, 0, (struct sockaddr *)&raddr, rlen),
        (ssize_t)sizeof buf);
    if (!on) { /* off by default: one datagram per receive */
        expect_datagrams(r, sizeof buf, 1000);
    } else { /* one receive, eleven datagrams, split back */
        size_t seg = 0;
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        int fl = -1;
        ssize_t n = ctrio_socket_recv_segments(r, got, sizeof got, &seg, (struct sockaddr *)&from,
                                               &flen, &fl);
        assert_int_equal(n, (ssize_t)sizeof buf);
        assert_int_equal(seg, 1000);
        assert_int_equal(fl, 0);
        assert_int_equal(flen, slen);
        assert_memory_equal(&from, &saddr, slen);
        ctrio_segment_iter it;
        ctrio_segment_iter_init(&it, got, (size_t)n, seg);
        const void *d;
        size_t dlen, off = 0;
        int count = 0;
        while (ctrio_segment_next(&it, &d, &dlen) && count < 100) {
            assert_int_equal(dlen, off + 1000 <= sizeof buf ? 1000 : sizeof buf - off);
            assert_memory_equal(d, buf + off, dlen);
            off += dlen;
            count++;
        }
        assert_int_equal(count, 11);
        /* a buffer too small for the batch: MSG_TRUNC, reported */
        assert_int_equal(ctrio_socket_send_segments(s, buf, sizeof buf, 1000, 0,
                                                    (struct sockaddr *)&raddr, rlen),
                         (ssize_t)sizeof buf);
        n = ctrio_socket_recv_segments(r, got, 5500, &seg, NULL, NULL, &fl);
        assert_int_equal(n, 5500);
        assert_int_equal(seg, 1000);
        assert_true(fl & MSG_TRUNC);
    }
    ctrio_socket_close(s);
    ctrio_socket_close(r);
    return ctrio_cancel_scope_close(&cs, 0);
}

static void test_gro_loopback(void **state)
{
    (void)state;
    bool on = true;
    assert_int_equal(run_real(gro_body, &on), 0);
}

static void test_gro_off_by_default(void **state)
{
    (void)state;
    bool on = false;
    assert_int_equal(run_real(gro_body, &on), 0);
}

/* The same over IPv6: segmented on ::1, coalesced at a GRO receiver, and
 * the segment size read with the msghdr reader as a batch entry would. */
static int gso_gro_v6_body(void *arg)
{
    (void)arg;
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 5);
    struct sockaddr_storage raddr, saddr;
    socklen_t rlen, slen;
    ctrio_socket *r = udp_at(AF_INET6, "::1", &raddr, &rlen);
    ctrio_socket *s = udp_at(AF_INET6, "::1", &saddr, &slen);
    assert_int_equal(ctrio_socket_set_gro(r, true), 0);
    static unsigned char buf[3 * 1280 + 1], got[65536];
    pattern(buf, sizeof buf, 1280);
    assert_int_equal(
        ctrio_socket_send_segments(s, buf, sizeof buf, 1280, 0, (struct sockaddr *)&raddr, rlen),
        (ssize_t)sizeof buf);
    CTRIO_CMSG_STORAGE(st, CTRIO_CMSG_SPACE_SEGMENT);
    struct iovec iov = {got, sizeof got};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &st, .msg_controllen = sizeof st};
    assert_int_equal(ctrio_socket_recvmsg(r, &msg, 0), (ssize_t)sizeof buf);
    assert_int_equal(ctrio_cmsg_get_segment_size(&msg), 1280);
    assert_memory_equal(got, buf, sizeof buf);
    /* one datagram is not coalesced: no segment size */
    assert_int_equal(ctrio_socket_sendto(s, "one", 3, 0, (struct sockaddr *)&raddr, rlen), 3);
    msg.msg_controllen = sizeof st;
    assert_int_equal(ctrio_socket_recvmsg(r, &msg, 0), 3);
    assert_int_equal(ctrio_cmsg_get_segment_size(&msg), -ENOENT);
    ctrio_socket_close(s);
    ctrio_socket_close(r);
    return ctrio_cancel_scope_close(&cs, 0);
}

static void test_gso_gro_v6(void **state)
{
    (void)state;
    if (!have_ipv6_loopback())
        skip();
    assert_int_equal(run_real(gso_gro_v6_body, NULL), 0);
}

static void test_segment_iter(void **state)
{
    (void)state;
    char buf[2500] = {0};
    ctrio_segment_iter it;
    const void *d;
    size_t n;
    ctrio_segment_iter_init(&it, buf, 2500, 1000);
    size_t want[] = {1000, 1000, 500};
    for (int i = 0; i < 3; i++) {
        assert_true(ctrio_segment_next(&it, &d, &n));
        assert_ptr_equal(d, buf + 1000 * i);
        assert_int_equal(n, want[i]);
    }
    assert_false(ctrio_segment_next(&it, &d, &n));
    ctrio_segment_iter_init(&it, buf, 2500, 0); /* no segment size: one */
    assert_true(ctrio_segment_next(&it, &d, &n));
    assert_int_equal(n, 2500);
    assert_false(ctrio_segment_next(&it, &d, &n));
    ctrio_segment_iter_init(&it, buf, 0, 1000); /* an empty datagram is one */
    assert_true(ctrio_segment_next(&it, &d, &n));
    assert_int_equal(n, 0);
    assert_false(ctrio_segment_next(&it, &d, &n));
    assert_false(ctrio_segment_next(NULL, &d, &n));
}

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
        TEST(test_unix_segments),
        TEST(test_recverr),
        TEST(test_recverr_wait),
        TEST(test_gso_loopback),
        TEST(test_gso_fallback_eio),
        TEST(test_gso_sendmsg_pktinfo),
        TEST(test_gso_fallback_einval),
        TEST(test_gso_old_kernel),
        TEST(test_gso_cancelled),
        TEST(test_gro_loopback),
        TEST(test_gro_off_by_default),
        TEST(test_gso_gro_v6),
        TEST(test_segment_iter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
