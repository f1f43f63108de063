/*
 * raw_epoll_echo.c — the reference echo server of the echo benchmark: one
 * thread, level-triggered epoll, non-blocking sockets, no allocation on the
 * data path. Per round trip on a busy connection: epoll_wait, read, write
 * (3 system calls); epoll_ctl only when a write is short (EPOLLOUT until the
 * rest is out, and no reading meanwhile).
 *
 *   raw_epoll_echo PORT [HOST]     prints "listening on HOST:PORT", exits 0
 *                                  on SIGTERM or SIGINT
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536
#define MAX_EVENTS 256

typedef struct conn {
    int fd;
    char *pend; /* unsent rest of an echo, or NULL */
    size_t pend_off, pend_len;
} conn;

static unsigned char buf[BUF];
static int listen_tag, signal_tag; /* their addresses tag the epoll data */

static void drop(conn *c)
{
    close(c->fd); /* removes it from the epoll set */
    free(c->pend);
    free(c);
}

static void set_events(int ep, conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void on_readable(int ep, conn *c)
{
    ssize_t n = read(c->fd, buf, BUF);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        drop(c);
        return;
    }
    ssize_t w = write(c->fd, buf, (size_t)n);
    if (w == n)
        return;
    if (w < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            drop(c);
            return;
        }
        w = 0;
    }
    c->pend_len = (size_t)(n - w);
    c->pend_off = 0;
    c->pend = malloc(c->pend_len);
    if (!c->pend) {
        drop(c);
        return;
    }
    memcpy(c->pend, buf + w, c->pend_len);
    set_events(ep, c, EPOLLOUT);
}

static void on_writable(int ep, conn *c)
{
    while (c->pend_off < c->pend_len) {
        ssize_t w = write(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off);
        if (w < 0) {
            if (errno == EAGAIN)
                return;
            if (errno == EINTR)
                continue;
            drop(c);
            return;
        }
        c->pend_off += (size_t)w;
    }
    free(c->pend);
    c->pend = NULL;
    set_events(ep, c, EPOLLIN);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: raw_epoll_echo PORT [HOST]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *host = argc > 2 ? argv[2] : "127.0.0.1";
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (port < 0 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "raw_epoll_echo: bad address %s:%s\n", host, argv[1]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || sfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(lfd, 4096) < 0) {
        perror("raw_epoll_echo");
        return 1;
    }
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    printf("listening on %s:%d\n", host, ntohs(sa.sin_port));
    fflush(stdout);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listen_tag};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.ptr = &signal_tag;
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);

    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &signal_tag)
                return 0; /* SIGTERM/SIGINT: connections close with the process */
            if (p == &listen_tag) {
                /* one accept per readiness: level-triggered epoll reports the rest */
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                    continue;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                conn *c = calloc(1, sizeof *c);
                if (!c) {
                    close(fd);
                    continue;
                }
                c->fd = fd;
                struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) < 0)
                    drop(c);
                continue;
            }
            conn *c = p;
            if (c->pend)
                on_writable(ep, c);
            else
                on_readable(ep, c);
        }
    }
}
