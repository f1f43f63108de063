/*
 * bench_socket.c — the socket layer's hot path.
 *
 *   bench_socket pingpong N     two ctrio tasks exchange 64-byte messages over
 *                               a socketpair, N round trips; then the same loop
 *                               with blocking sockets in two threads (the peer)
 *   bench_socket ctrio-only N   just the ctrio half (run under strace -c by
 *                               run.sh to count system calls per round trip)
 */
#include "peers.h"

#include <ctrio.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MSG 64
static long rounds;

static int full_recv(ctrio_socket *s, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = ctrio_socket_recv(s, buf + got, n - got, 0);
        if (r <= 0)
            return r < 0 ? (int)r : -EPIPE;
        got += (size_t)r;
    }
    return 0;
}

static int full_send(ctrio_socket *s, const char *buf, size_t n)
{
    size_t sent = 0;
    while (sent < n) {
        ssize_t r = ctrio_socket_send(s, buf + sent, n - sent, 0);
        if (r < 0)
            return (int)r;
        sent += (size_t)r;
    }
    return 0;
}

static int echoer(void *arg)
{
    ctrio_socket *s = arg;
    char buf[MSG];
    for (long i = 0; i < rounds; i++) {
        int rc = full_recv(s, buf, MSG);
        if (!rc)
            rc = full_send(s, buf, MSG);
        if (rc)
            return rc;
    }
    return 0;
}

static double ctrio_ns;
static int pinger(void *arg)
{
    (void)arg;
    ctrio_socket *p[2];
    int rc = ctrio_socketpair(AF_UNIX, SOCK_STREAM, 0, p);
    if (rc)
        return rc;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, echoer, p[1]);
    char buf[MSG], back[MSG];
    memset(buf, 'x', sizeof buf);
    double t0 = bench_now();
    for (long i = 0; i < rounds && rc == 0; i++) {
        buf[0] = (char)i;
        rc = full_send(p[0], buf, MSG);
        if (!rc)
            rc = full_recv(p[0], back, MSG);
        if (!rc && memcmp(buf, back, MSG) != 0)
            rc = -EIO; /* every echoed byte is checked */
    }
    ctrio_ns = (bench_now() - t0) * 1e9 / (double)rounds;
    rc = ctrio_nursery_close(&n, rc);
    ctrio_socket_close(p[0]);
    ctrio_socket_close(p[1]);
    return rc;
}

/* ---- the peer: blocking sockets, two threads ---- */
static int raw_full(int fd, char *buf, size_t n, bool rd)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = rd ? recv(fd, buf + done, n - done, 0)
                       : send(fd, buf + done, n - done, MSG_NOSIGNAL);
        if (r <= 0)
            return -1;
        done += (size_t)r;
    }
    return 0;
}

static void *thread_echo(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[MSG];
    for (long i = 0; i < rounds; i++)
        if (raw_full(fd, buf, MSG, true) || raw_full(fd, buf, MSG, false))
            break;
    return NULL;
}

static double threads_ns(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return -1;
    pthread_t th;
    pthread_create(&th, NULL, thread_echo, (void *)(intptr_t)sv[1]);
    char buf[MSG], back[MSG];
    memset(buf, 'x', sizeof buf);
    double t0 = bench_now();
    for (long i = 0; i < rounds; i++) {
        buf[0] = (char)i;
        if (raw_full(sv[0], buf, MSG, false) || raw_full(sv[0], back, MSG, true) ||
            memcmp(buf, back, MSG) != 0)
            break;
    }
    double ns = (bench_now() - t0) * 1e9 / (double)rounds;
    pthread_join(th, NULL);
    close(sv[0]);
    close(sv[1]);
    return ns;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "pingpong";
    rounds = argc > 2 ? atol(argv[2]) : 200000;
    int rc = ctrio_run(pinger, NULL);
    if (rc) {
        fprintf(stderr, "ping-pong failed: %s\n", ctrio_strerror(rc));
        return 1;
    }
    if (strcmp(mode, "ctrio-only") == 0) {
        printf("ctrio ping-pong: %.0f ns per round trip\n", ctrio_ns);
        return 0;
    }
    double th = threads_ns();
    printf("%-46s %10.0f ns   | %-22s %9.0f | ratio %6.2fx | %s\n",
           "socketpair ping-pong, 64 B, 2 tasks (per RTT)", ctrio_ns,
           "2 threads, blocking", th, ctrio_ns / th, "faster than threads");
    return 0;
}
