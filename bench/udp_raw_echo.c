/*
 * udp_raw_echo.c — the reference UDP echo server of the UDP benchmark
 * (issue #10, bench/udp_bench.sh): one thread, level-triggered epoll, one
 * non-blocking socket, no allocation on the data path.
 *
 *   udp_raw_echo PORT [HOST]     prints "listening on HOST:PORT", exits 0
 *   udp_plain_echo PORT [HOST]   on SIGTERM or SIGINT
 *
 * udp_raw_echo (batched, the reference): on each readiness one recvmmsg of
 * up to BATCH datagrams, then one sendmmsg of their echoes: per datagram at
 * one flow, epoll_wait + recvmmsg + sendmmsg (3 system calls); under load,
 * one of each per batch.
 * udp_plain_echo (this file built with UDP_PLAIN): recvfrom until EAGAIN (at
 * most BATCH per readiness, then epoll_wait again so that the signal is
 * seen), a sendto per datagram: at one flow epoll_wait + 2 recvfrom + sendto
 * (4), what a straightforward non-blocking server does.
 * A short sendmmsg (or EAGAIN) keeps the rest, waits for EPOLLOUT and reads
 * nothing meanwhile: no echo is dropped by the server itself.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define DGRAM 65536

#ifdef UDP_PLAIN
#define NAME "udp_plain_echo"
#else
#define NAME "udp_raw_echo"
#endif

static unsigned char bufs[BATCH][DGRAM];
static struct sockaddr_storage peers[BATCH];
static struct iovec iov[BATCH];
static struct mmsghdr msgs[BATCH];
static int signal_tag, sock_tag; /* their addresses tag the epoll data */

#ifndef UDP_PLAIN
static void set_events(int ep, int fd, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = &sock_tag};
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

static int pend_off, pend_n; /* echoes msgs[pend_off..pend_n) not yet sent */

/* Sends what is pending; 0 when all is out, -1 when the socket is full. */
static int flush(int ep, int fd)
{
    while (pend_off < pend_n) {
        int m = sendmmsg(fd, msgs + pend_off, (unsigned)(pend_n - pend_off), 0);
        if (m < 0) {
            if (errno == EAGAIN || errno == ENOBUFS) {
                set_events(ep, fd, EPOLLOUT);
                return -1;
            }
            if (errno != EINTR)
                pend_off++; /* an error for that one datagram (ICMP, say): skip it */
            continue;
        }
        pend_off += m;
    }
    return 0;
}

static void on_event(int ep, int fd, uint32_t events)
{
    if (pend_off < pend_n) {
        if (flush(ep, fd) == 0)
            set_events(ep, fd, EPOLLIN);
        return;
    }
    (void)events;
    for (int i = 0; i < BATCH; i++) {
        msgs[i].msg_hdr.msg_namelen = sizeof peers[i];
        msgs[i].msg_hdr.msg_flags = 0;
    }
    int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0)
        return; /* EAGAIN, or an error queued by an ICMP message: go on */
    for (int i = 0; i < n; i++)
        iov[i].iov_len = msgs[i].msg_len;
    pend_off = 0;
    pend_n = n;
    flush(ep, fd);
    for (int i = 0; i < n; i++)
        iov[i].iov_len = DGRAM;
}
#else
static void on_event(int ep, int fd, uint32_t events)
{
    (void)ep;
    (void)events;
    for (int i = 0; i < BATCH; i++) {
        socklen_t len = sizeof peers[0];
        ssize_t n = recvfrom(fd, bufs[0], DGRAM, MSG_DONTWAIT, (struct sockaddr *)&peers[0], &len);
        if (n < 0) {
            if (errno == EAGAIN)
                return;
            continue; /* an ICMP error for an earlier echo: go on */
        }
        /* a blocking wait on a full socket: rare on loopback, and no echo lost */
        while (sendto(fd, bufs[0], (size_t)n, 0, (struct sockaddr *)&peers[0], len) < 0 &&
               (errno == EAGAIN || errno == ENOBUFS || errno == EINTR)) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            poll(&p, 1, 100);
        }
    }
}
#endif

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: " NAME " PORT [HOST]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *host = argc > 2 ? argv[2] : "127.0.0.1";
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (port < 0 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, NAME ": bad address %s:%s\n", host, argv[1]);
        return 2;
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || sfd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror(NAME);
        return 1;
    }
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    printf("listening on %s:%d\n", host, ntohs(sa.sin_port));
    fflush(stdout);
    for (int i = 0; i < BATCH; i++) {
        iov[i] = (struct iovec){bufs[i], DGRAM};
        msgs[i].msg_hdr =
            (struct msghdr){.msg_name = &peers[i], .msg_iov = &iov[i], .msg_iovlen = 1};
    }

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &sock_tag};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    ev.data.ptr = &signal_tag;
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
    struct epoll_event evs[2];
    for (;;) {
        int n = epoll_wait(ep, evs, 2, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &signal_tag)
                return 0;
            on_event(ep, fd, evs[i].events);
        }
    }
}
