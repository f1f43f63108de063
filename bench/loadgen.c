/*
 * loadgen.c — load generator for the echo-server benchmark (issue #4).
 *
 * One thread, one epoll set (edge-triggered), non-blocking sockets. Every
 * echoed byte is checked against a pseudo-random pattern, so a server that
 * loses, duplicates, reorders or corrupts data fails the run.
 *
 *   loadgen -p PORT [-H HOST] [-d SECONDS] [-w WARMUP] [-l LABEL]
 *           [-W WINDOW] [-n COUNT [-g GOFILE]] [-R] WORKLOAD...
 *
 * Workloads:
 *   pingpong-C     C connections (default 1), each with one 64-byte message
 *                  outstanding: rate = round trips/s, latency per round trip
 *   stream-16k[-C] C connections (default 1) writing 16 KiB blocks, at most
 *                  WINDOW bytes (default 128 KiB) unechoed per connection:
 *                  rate = MB/s echoed (1 MB = 1e6 bytes), latency per block
 *                  (last byte written -> last byte echoed)
 *   bulk-16k[-C]   the same with at most 1 MiB unechoed per connection: with
 *                  stream-16k's 128 KiB the round trip bounds the rate and
 *                  both processes sit half idle; with 1 MiB in flight the
 *                  server's own cost per byte does (what a bulk transfer
 *                  through an echo server sees)
 *   mixed[-F-P]    F flood connections (default 4) beside P ping-pong ones
 *                  (default 4), in the one epoll loop: each flood writes 64 KiB
 *                  blocks with at most 1 MiB unechoed (as bulk-16k: the server
 *                  always has a flood to serve), each ping-pong connection is
 *                  as in pingpong-C. rate, p50 and p99 are the ping-pongs';
 *                  flood_mbs is the floods' MB/s echoed (issue #8: busy
 *                  connections must not delay everyone else). The loop serves
 *                  the ping-pongs first and reads at most 64 KiB per flood per
 *                  turn, so that the client's own floods do not delay its
 *                  ping-pongs by more than one such turn
 *   churn[-C]      C slots (default 8), each: connect, send 64 B, receive the
 *                  echo, close, again: rate = connections/s, latency per
 *                  connection (socket() -> echo verified; the 64 bytes
 *                  are checked, a surplus would go unseen here but not in
 *                  the other workloads). The client closes first, so its
 *                  side keeps TIME_WAIT; Linux reuses those ports on
 *                  loopback (net.ipv4.tcp_tw_reuse = 2, the default). With
 *                  -R it closes with a reset instead (SO_LINGER 0), for
 *                  systems where tcp_tw_reuse is 0.
 *
 * Each workload warms up for WARMUP seconds (default 0.25), then measures
 * for SECONDS (default 2), then stops sending and drains what is in flight
 * (at most 5 s). With -n COUNT (pingpong only) it measures exactly COUNT
 * round trips instead; with -g GOFILE as well it prints "ready" after the
 * warm-up and waits for GOFILE to exist before measuring, then prints the
 * result and waits for GOFILE to be removed before closing its connections
 * (so that a tracer attached to the server in between sees steady state
 * only). Every wait is bounded.
 *
 * Output, one line per workload (machine-readable, key=value):
 *   result server=LABEL workload=W conns=C rate=R unit=U p50_us=.. p99_us=..
 *          ops=N all_ops=M bytes=B seconds=S errors=0 lg_busy=..
 *          [flood_conns=F flood_mbs=.. lg_turn_p99_us=..]  (mixed only)
 * (ops: in the measured window; all_ops: in the whole run, warm-up and
 * drain included, to divide the server's CPU time by; lg_busy: this
 * process's CPU share while the workload ran; lg_turn_p99_us: the p99 of
 * its turns over the floods in the window, the most it adds to a
 * ping-pong's latency at that percentile)
 * Exit status 0 when every workload ran with every byte verified, else 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MSG 64
#define BLOCK 16384
#define FLOOD_BLOCK 65536 /* mixed: the floods' writes (at most RBUF: see pat_at) */
#define FLOOD_BUDGET RBUF /* mixed: bytes read per flood per turn of the loop */
#define RBUF 65536
#define PAT_LEN (PAT_PERIOD + RBUF)
#define DRAIN_LIMIT 5.0
#define MAX_CONNS 4096
#define MAX_SAMPLES (64u * 1024 * 1024)

#include "lg_common.h"

static unsigned char pat[PAT_LEN];
static unsigned char rbuf[RBUF];

/* options */
static size_t window = 128 * 1024; /* -W, for stream-16k */
#define BULK_WINDOW ((size_t)1 << 20)  /* for bulk-16k and mixed's floods */
static size_t block = BLOCK; /* the streams' block: FLOOD_BLOCK for mixed */
static bool rst_close; /* -R */

/* RBUF contiguous pattern bytes starting at stream offset off */
static const unsigned char *pat_at(uint64_t off)
{
    return pat + off % PAT_PERIOD;
}

/* ---- results ------------------------------------------------------------ */

typedef struct {
    const char *name;
    int conns;
    long ops;       /* completed round trips / blocks / connections in the window */
    long all_ops;   /* the same over the whole run: warm-up, window and drain */
    uint64_t bytes; /* echoed bytes received in the window */
    double seconds; /* length of the measured window */
    samples lat;    /* seconds */
    long errors;
    int flood_conns;  /* mixed: the floods beside the ping-pongs */
    double flood_mbs; /* mixed: their MB/s echoed in the window */
    double turn_p99;  /* mixed: p99 of this process's turns over the floods, s */
} result;

/* This process's CPU time and the wall clock when the current workload
 * started: the report gives the load generator's own busy share, which says
 * whether a rate measures the server or this client (a workload where it is
 * near 1.0 is bound by the load generator's CPU). */
static double busy_t0, busy_cpu0;

static void report(result *r, bool stream)
{
    double wall = now() - busy_t0;
    double lg_busy = wall > 0 ? (cpu_seconds() - busy_cpu0) / wall : 0;
    samples_sort(&r->lat);
    double rate = stream ? (double)r->bytes / 1e6 / r->seconds : (double)r->ops / r->seconds;
    const char *unit = stream ? "MB/s" : (strncmp(r->name, "churn", 5) == 0 ? "conn/s" : "rt/s");
    printf("result server=%s workload=%s conns=%d rate=%.1f unit=%s p50_us=%.1f p99_us=%.1f "
           "ops=%ld all_ops=%ld bytes=%llu seconds=%.3f errors=%ld lg_busy=%.2f",
           label, r->name, r->conns, r->errors ? 0.0 : rate, unit, percentile(&r->lat, 0.50) * 1e6,
           percentile(&r->lat, 0.99) * 1e6, r->ops, r->all_ops, (unsigned long long)r->bytes,
           r->seconds, r->errors, lg_busy);
    if (r->flood_conns > 0)
        printf(" flood_conns=%d flood_mbs=%.1f lg_turn_p99_us=%.1f", r->flood_conns,
               r->errors ? 0.0 : r->flood_mbs, r->turn_p99 * 1e6);
    printf("\n");
    fflush(stdout);
    free(r->lat.v);
}

static void fail(result *r, const char *what, int err)
{
    if (err)
        fprintf(stderr, "loadgen: %s: %s: %s\n", r->name, what, strerror(err));
    else
        fprintf(stderr, "loadgen: %s: %s\n", r->name, what);
    r->errors++;
}

/* ---- connections ------------------------------------------------------- */

static int connect_blocking(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct timeval tv = {5, 0}; /* bounds connect() */
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static int epoll_add(int ep, int fd, uint64_t data)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u64 = data};
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* A connection registered under data: its descriptor, or -1 (reported). */
static int open_conn(int ep, uint64_t data, result *r)
{
    int fd = connect_blocking();
    if (fd < 0) {
        fail(r, "connect", -fd);
        return -1;
    }
    int rc = epoll_add(ep, fd, data);
    if (rc < 0) {
        close(fd);
        fail(r, "epoll_ctl", -rc);
        return -1;
    }
    return fd;
}

/* The measuring clock shared by the workloads. */
typedef struct {
    double t_meas, t_stop; /* the measured window [t_meas, t_stop) */
    bool sending;          /* new messages / blocks / connections */
    double t_stopped;      /* when sending stopped */
    bool warm_pause;       /* -g: pause after the warm-up */
    bool counted;          /* -n: stop after count ops */
} clockset;

static void clock_begin(clockset *k)
{
    double t0 = now();
    k->t_meas = t0 + warmup;
    k->t_stop = t0 + warmup + duration;
    k->sending = true;
    k->t_stopped = 0;
    k->warm_pause = false;
    k->counted = false;
}

static bool in_window(const clockset *k, double t)
{
    return t >= k->t_meas && t < k->t_stop;
}

/* Called after each batch of events: may stop sending; returns false on a
 * drain timeout. */
static bool clock_tick(clockset *k, result *r, double t)
{
    if (k->sending && t >= (k->warm_pause ? k->t_meas : k->t_stop)) {
        k->sending = false;
        k->t_stopped = t;
    }
    if (!k->sending && t > k->t_stopped + DRAIN_LIMIT) {
        fail(r, "timed out draining the echoes in flight", 0);
        return false;
    }
    return true;
}

/* ---- pingpong ----------------------------------------------------------- */

typedef struct {
    int fd;
    uint32_t id;
    bool busy; /* a message outstanding */
    unsigned got, wpos;
    uint64_t seq;
    double t; /* when it was sent */
    unsigned char buf[MSG];
} ppconn;

static const unsigned char *pp_msg(const ppconn *c)
{
    return pat_at((uint64_t)c->id * 7919u + c->seq * 61u);
}

static int pp_write(ppconn *c)
{
    while (c->wpos < MSG) {
        ssize_t w = write(c->fd, pp_msg(c) + c->wpos, MSG - c->wpos);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -errno;
        }
        c->wpos += (unsigned)w;
    }
    return 0;
}

static int pp_send(ppconn *c, double t)
{
    c->busy = true;
    c->got = 0;
    c->wpos = 0;
    c->t = t;
    return pp_write(c);
}

/* 1: the outstanding message came back intact; 0: not yet; < 0: error */
static int pp_event(ppconn *c, uint32_t ev)
{
    if (c->busy && c->wpos < MSG && (ev & (EPOLLOUT | EPOLLERR))) {
        int rc = pp_write(c);
        if (rc < 0)
            return rc;
    }
    if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return 0;
    while (c->busy && c->got < MSG) {
        ssize_t n = read(c->fd, c->buf + c->got, MSG - c->got);
        if (n > 0) {
            c->got += (unsigned)n;
        } else if (n == 0) {
            return -EPIPE;
        } else if (errno == EAGAIN) {
            return 0;
        } else if (errno != EINTR) {
            return -errno;
        }
    }
    if (!c->busy) {
        /* nothing was sent: any data, or the end of the stream, is wrong */
        char x;
        ssize_t n = read(c->fd, &x, 1);
        if (n == 0)
            return -EPIPE;
        if (n > 0)
            return -EPROTO;
        return errno == EAGAIN ? 0 : -errno;
    }
    if (memcmp(c->buf, pp_msg(c), MSG) != 0)
        return -EILSEQ;
    c->busy = false;
    c->seq++;
    return 1;
}

/* An event on a ping-pong connection: a verified echo is counted, and the
 * next message sent while sending. 0, or -1 with the failure reported. */
static int pp_handle(ppconn *c, uint32_t ev, clockset *k, result *r, int *outstanding,
                     double *t_last)
{
    int rc = pp_event(c, ev);
    if (rc < 0) {
        fail(r,
             rc == -EILSEQ   ? "echoed bytes differ from those sent"
             : rc == -EPROTO ? "bytes echoed that were never sent"
                             : "connection",
             rc == -EILSEQ || rc == -EPROTO ? 0 : -rc);
        return -1;
    }
    if (rc == 0)
        return 0;
    (*outstanding)--;
    r->all_ops++;
    double t = now();
    if (!k->warm_pause && in_window(k, t) && (!k->counted || r->ops < count)) {
        r->ops++;
        r->bytes += MSG;
        sample_add(&r->lat, t - c->t);
        *t_last = t;
        if (k->counted && r->ops >= count && k->sending) {
            k->sending = false;
            k->t_stopped = t;
        }
    }
    if (k->sending && t < (k->warm_pause ? k->t_meas : k->t_stop)) {
        if ((rc = pp_send(c, t)) < 0) {
            fail(r, "write", -rc);
            return -1;
        }
        (*outstanding)++;
    }
    return 0;
}

static void run_pingpong(result *r)
{
    int n = r->conns;
    ppconn *cs = calloc((size_t)n, sizeof *cs);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event *evs = calloc((size_t)n, sizeof *evs);
    int opened = 0, outstanding = 0, rc;
    if (!cs || ep < 0 || !evs) {
        fail(r, "setup", errno);
        goto out;
    }
    for (; opened < n; opened++) {
        cs[opened].id = (uint32_t)opened;
        if ((cs[opened].fd = open_conn(ep, (uint64_t)opened, r)) < 0)
            goto out;
    }
    clockset k;
    clock_begin(&k);
    if (count > 0) {
        k.counted = true;
        k.t_stop = k.t_meas + 120.0; /* bound on a counted run */
        k.warm_pause = gofile != NULL;
    }
    double t = now(), t_last = k.t_meas;
    for (int i = 0; i < n; i++) {
        if ((rc = pp_send(&cs[i], t)) < 0) {
            fail(r, "write", -rc);
            goto out;
        }
        outstanding++;
    }
    for (;;) { /* ends by time: t_stop, then DRAIN_LIMIT */
        int m = epoll_wait(ep, evs, n, 50);
        if (m < 0 && errno != EINTR) {
            fail(r, "epoll_wait", errno);
            goto out;
        }
        for (int i = 0; i < m; i++)
            if (pp_handle(&cs[evs[i].data.u64], evs[i].events, &k, r, &outstanding, &t_last) < 0)
                goto out;
        t = now();
        if (!clock_tick(&k, r, t))
            goto out;
        if (!k.sending && outstanding == 0) {
            if (!k.warm_pause)
                break;
            /* -g: warmed up and idle; measure once GOFILE exists */
            printf("ready\n");
            fflush(stdout);
            if (!wait_file(gofile, true)) {
                fail(r, "timed out waiting for the go file", 0);
                goto out;
            }
            k.warm_pause = false;
            k.sending = true;
            t = now();
            k.t_meas = t_last = t;
            k.t_stop = t + 120.0;
            for (int i = 0; i < n; i++) {
                if ((rc = pp_send(&cs[i], t)) < 0) {
                    fail(r, "write", -rc);
                    goto out;
                }
                outstanding++;
            }
        }
    }
    r->seconds = k.counted ? t_last - k.t_meas : duration;
out:
    report(r, false);
    if (gofile && count > 0 && !wait_file(gofile, false))
        fprintf(stderr, "loadgen: the go file was not removed\n");
    for (int i = 0; i < opened; i++)
        close(cs[i].fd);
    if (ep >= 0)
        close(ep);
    free(cs);
    free(evs);
}

/* ---- stream ------------------------------------------------------------- */

typedef struct {
    int fd;
    uint64_t salt, sent, recvd;
    double *bt;   /* when block b was fully written: bt[b % nbt] */
    uint32_t ev;  /* mixed: events seen, not yet handled */
    bool more;    /* the read budget ran out before EAGAIN */
} stconn;
static size_t nbt;

/* Reads at most budget bytes: past it, c->more says that data may remain,
 * which an edge-triggered epoll will not report again. Echoes count in r. */
static int st_event(stconn *c, uint32_t ev, const clockset *k, result *r, size_t budget)
{
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        c->more = false;
        for (size_t got = 0;; ) {
            if (got >= budget) {
                c->more = true;
                break;
            }
            ssize_t n = read(c->fd, rbuf, budget - got < RBUF ? budget - got : RBUF);
            if (n == 0)
                return -EPIPE;
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN)
                    break;
                return -errno;
            }
            if (c->recvd + (uint64_t)n > c->sent)
                return -EPROTO;
            if (memcmp(rbuf, pat_at(c->salt + c->recvd), (size_t)n) != 0)
                return -EILSEQ;
            got += (size_t)n;
            double t = now();
            uint64_t end = c->recvd + (uint64_t)n;
            r->all_ops += (long)(end / block - c->recvd / block);
            if (in_window(k, t)) {
                r->bytes += (uint64_t)n;
                for (uint64_t b = c->recvd / block; (b + 1) * block <= end; b++) {
                    r->ops++;
                    sample_add(&r->lat, t - c->bt[b % nbt]);
                }
            }
            c->recvd = end;
        }
    }
    while (k->sending && c->sent - c->recvd < window) {
        size_t len = block - c->sent % block;
        ssize_t w = write(c->fd, pat_at(c->salt + c->sent), len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            return -errno;
        }
        c->sent += (uint64_t)w;
        if (c->sent % block == 0)
            c->bt[(c->sent / block - 1) % nbt] = now();
    }
    return 0;
}

static void st_fail(result *r, int rc)
{
    fail(r,
         rc == -EILSEQ   ? "echoed bytes differ from those sent"
         : rc == -EPROTO ? "more bytes echoed than sent"
                         : "connection",
         rc == -EILSEQ || rc == -EPROTO ? 0 : -rc);
}

static void run_stream(result *r)
{
    int n = r->conns, opened = 0, rc;
    nbt = window / block + 2;
    stconn *cs = calloc((size_t)n, sizeof *cs);
    double *bts = calloc((size_t)n * nbt, sizeof *bts);
    struct epoll_event *evs = calloc((size_t)n, sizeof *evs);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (!cs || !bts || !evs || ep < 0) {
        fail(r, "setup", errno);
        goto out;
    }
    for (; opened < n; opened++) {
        stconn *c = &cs[opened];
        c->salt = (uint64_t)opened * 7919u;
        c->bt = bts + (size_t)opened * nbt;
        if ((c->fd = open_conn(ep, (uint64_t)opened, r)) < 0)
            goto out;
    }
    clockset k;
    clock_begin(&k);
    for (int i = 0; i < n; i++) {
        if ((rc = st_event(&cs[i], 0, &k, r, SIZE_MAX)) < 0) {
            fail(r, "write", -rc);
            goto out;
        }
    }
    for (;;) { /* ends by time: t_stop, then DRAIN_LIMIT */
        int m = epoll_wait(ep, evs, n, 50);
        if (m < 0 && errno != EINTR) {
            fail(r, "epoll_wait", errno);
            goto out;
        }
        for (int i = 0; i < m; i++) {
            rc = st_event(&cs[evs[i].data.u64], evs[i].events, &k, r, SIZE_MAX);
            if (rc < 0) {
                st_fail(r, rc);
                goto out;
            }
        }
        if (!clock_tick(&k, r, now()))
            goto out;
        if (!k.sending) {
            bool idle = true;
            for (int i = 0; i < n && idle; i++)
                idle = cs[i].recvd == cs[i].sent;
            if (idle)
                break;
        }
    }
    r->seconds = duration;
out:
    report(r, true);
    for (int i = 0; i < opened; i++)
        close(cs[i].fd);
    if (ep >= 0)
        close(ep);
    free(cs);
    free(bts);
    free(evs);
}

/* ---- mixed: floods beside ping-pongs ------------------------------------ */

/* Whether every flood has its echo back, nothing left to read. */
static bool floods_idle(const stconn *fs, int nf)
{
    for (int i = 0; i < nf; i++)
        if (fs[i].recvd != fs[i].sent)
            return false;
    return true;
}

/* One turn over the floods: each handles the events it saw and, when its
 * budget ran out last turn, reads on. true: some flood has more to read. */
static bool floods_turn(stconn *fs, int nf, const clockset *k, result *fr, result *r, int *rc)
{
    bool backlog = false;
    *rc = 0;
    for (int i = 0; i < nf; i++) {
        stconn *c = &fs[i];
        uint32_t ev = c->ev | (c->more ? (uint32_t)EPOLLIN : 0);
        c->ev = 0;
        if (!ev)
            continue;
        if ((*rc = st_event(c, ev, k, fr, FLOOD_BUDGET)) < 0) {
            st_fail(r, *rc);
            return false;
        }
        backlog |= c->more;
    }
    return backlog;
}

/* The ping-pongs are data 0..np-1 in the epoll set, the floods np... Each
 * turn of the loop handles the ping-pong events first, then each flood for
 * at most FLOOD_BUDGET bytes: a ping-pong echo waits at most one turn over
 * the floods in this process, or the p99 would measure the client. */
static void run_mixed(result *r, int nf)
{
    int np = r->conns, npp = 0, nfl = 0, outstanding = 0, rc;
    result fr = {.name = r->name}; /* the floods' echoes; failures go to r */
    samples turns = {0};           /* the floods' turns in the window, s */
    nbt = window / block + 2;
    ppconn *ps = calloc((size_t)np, sizeof *ps);
    stconn *fs = calloc((size_t)nf, sizeof *fs);
    double *bts = calloc((size_t)nf * nbt, sizeof *bts);
    struct epoll_event *evs = calloc((size_t)(np + nf), sizeof *evs);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (!ps || !fs || !bts || !evs || ep < 0) {
        fail(r, "setup", errno);
        goto out;
    }
    for (; npp < np; npp++) {
        ps[npp].id = (uint32_t)npp;
        if ((ps[npp].fd = open_conn(ep, (uint64_t)npp, r)) < 0)
            goto out;
    }
    for (; nfl < nf; nfl++) {
        fs[nfl].salt = (uint64_t)nfl * 7919u;
        fs[nfl].bt = bts + (size_t)nfl * nbt;
        if ((fs[nfl].fd = open_conn(ep, (uint64_t)(np + nfl), r)) < 0)
            goto out;
    }
    clockset k;
    clock_begin(&k);
    double t = now(), t_last = k.t_meas;
    for (int i = 0; i < nf; i++) {
        if ((rc = st_event(&fs[i], 0, &k, &fr, 0)) < 0) {
            fail(r, "write", -rc);
            goto out;
        }
    }
    for (int i = 0; i < np; i++) {
        if ((rc = pp_send(&ps[i], t)) < 0) {
            fail(r, "write", -rc);
            goto out;
        }
        outstanding++;
    }
    bool backlog = false;
    for (;;) { /* ends by time: t_stop, then DRAIN_LIMIT */
        int m = epoll_wait(ep, evs, np + nf, backlog ? 0 : 50);
        if (m < 0 && errno != EINTR) {
            fail(r, "epoll_wait", errno);
            goto out;
        }
        for (int i = 0; i < m; i++) {
            uint64_t d = evs[i].data.u64;
            if (d >= (uint64_t)np)
                fs[d - (uint64_t)np].ev |= evs[i].events;
            else if (pp_handle(&ps[d], evs[i].events, &k, r, &outstanding, &t_last) < 0)
                goto out;
        }
        double t0 = now();
        backlog = floods_turn(fs, nf, &k, &fr, r, &rc);
        t = now();
        if (in_window(&k, t0))
            sample_add(&turns, t - t0);
        if (rc < 0 || !clock_tick(&k, r, t))
            goto out;
        if (!k.sending && outstanding == 0 && floods_idle(fs, nf))
            break;
    }
    r->seconds = duration;
    r->flood_mbs = (double)fr.bytes / 1e6 / duration;
    samples_sort(&turns);
    r->turn_p99 = percentile(&turns, 0.99);
out:
    r->flood_conns = nf;
    report(r, false);
    free(fr.lat.v);
    free(turns.v);
    for (int i = 0; i < npp; i++)
        close(ps[i].fd);
    for (int i = 0; i < nfl; i++)
        close(fs[i].fd);
    if (ep >= 0)
        close(ep);
    free(ps);
    free(fs);
    free(bts);
    free(evs);
}

/* ---- churn -------------------------------------------------------------- */

enum { CH_IDLE, CH_CONNECTING, CH_WAITING };
typedef struct {
    int fd, state;
    unsigned got, wpos;
    uint64_t seq;
    double t;
    unsigned char buf[MSG];
} chslot;
static uint64_t ch_next_seq;

static const unsigned char *ch_msg(const chslot *s)
{
    return pat_at(s->seq * 61u + 12345u);
}

static int ch_start(int ep, chslot *s, uint64_t idx)
{
    s->t = now();
    s->seq = ch_next_seq++;
    s->got = s->wpos = 0;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        return -errno;
    if (connect(s->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(s->fd);
        return -e;
    }
    int rc = epoll_add(ep, s->fd, idx);
    if (rc < 0) {
        close(s->fd);
        return rc;
    }
    s->state = CH_CONNECTING;
    return 0;
}

static int ch_event(chslot *s, uint32_t ev)
{
    if (s->state == CH_CONNECTING) {
        if (ev & EPOLLERR) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            return -(err ? err : ECONNREFUSED);
        }
        if (!(ev & EPOLLOUT))
            return 0;
        s->state = CH_WAITING;
    }
    while (s->wpos < MSG) {
        ssize_t w = write(s->fd, ch_msg(s) + s->wpos, MSG - s->wpos);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            return -errno;
        }
        s->wpos += (unsigned)w;
    }
    while (s->got < MSG) {
        ssize_t n = read(s->fd, s->buf + s->got, MSG - s->got);
        if (n > 0) {
            s->got += (unsigned)n;
        } else if (n == 0) {
            return -EPIPE;
        } else if (errno == EAGAIN) {
            return 0;
        } else if (errno != EINTR) {
            return -errno;
        }
    }
    if (memcmp(s->buf, ch_msg(s), MSG) != 0)
        return -EILSEQ;
    if (rst_close) {
        struct linger lg = {1, 0};
        setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(s->fd);
    s->fd = -1;
    s->state = CH_IDLE;
    return 1;
}

static void run_churn(result *r)
{
    int n = r->conns, rc, active = 0;
    chslot *ss = calloc((size_t)n, sizeof *ss);
    struct epoll_event *evs = calloc((size_t)n, sizeof *evs);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (!ss || !evs || ep < 0) {
        fail(r, "setup", errno);
        goto out;
    }
    for (int i = 0; i < n; i++)
        ss[i].fd = -1;
    clockset k;
    clock_begin(&k);
    for (int i = 0; i < n; i++) {
        if ((rc = ch_start(ep, &ss[i], (uint64_t)i)) < 0) {
            fail(r, "connect", -rc);
            goto out;
        }
        active++;
    }
    for (;;) { /* ends by time: t_stop, then DRAIN_LIMIT */
        int m = epoll_wait(ep, evs, n, 50);
        if (m < 0 && errno != EINTR) {
            fail(r, "epoll_wait", errno);
            goto out;
        }
        for (int i = 0; i < m; i++) {
            uint64_t idx = evs[i].data.u64;
            chslot *s = &ss[idx];
            rc = ch_event(s, evs[i].events);
            if (rc < 0) {
                fail(r, rc == -EILSEQ ? "echoed bytes differ from those sent" : "connection",
                     rc == -EILSEQ ? 0 : -rc);
                goto out;
            }
            if (rc == 0)
                continue;
            active--;
            r->all_ops++;
            double t = now();
            if (in_window(&k, t)) {
                r->ops++;
                r->bytes += MSG;
                sample_add(&r->lat, t - s->t);
            }
            if (k.sending && t < k.t_stop) {
                if ((rc = ch_start(ep, s, idx)) < 0) {
                    fail(r, "connect", -rc);
                    goto out;
                }
                active++;
            }
        }
        if (!clock_tick(&k, r, now()))
            goto out;
        if (!k.sending && active == 0)
            break;
    }
    r->seconds = duration;
out:
    report(r, false);
    for (int i = 0; ss && i < n; i++)
        if (ss[i].fd >= 0)
            close(ss[i].fd);
    if (ep >= 0)
        close(ep);
    free(ss);
    free(evs);
}

/* ---- main --------------------------------------------------------------- */

static int usage(void)
{
    fprintf(stderr, "usage: loadgen -p PORT [-H HOST] [-d SECONDS] [-w WARMUP] [-l LABEL]\n"
                    "               [-W WINDOW] [-n COUNT [-g GOFILE]] [-R] WORKLOAD...\n"
                    "workloads: pingpong[-C] stream-16k[-C] bulk-16k[-C] mixed[-F-P] churn[-C]\n");
    return 2;
}

/* "mixed" (4 floods, 4 ping-pongs) or "mixed-F-P": false if bad */
static bool parse_mixed(const char *w, int *nf, int *np)
{
    if (strcmp(w, "mixed") == 0) {
        *nf = *np = 4;
        return true;
    }
    if (strncmp(w, "mixed-", 6) != 0)
        return false;
    char *end;
    long f = strtol(w + 6, &end, 10);
    if (end == w + 6 || *end != '-' || f < 1)
        return false;
    const char *ps = end + 1;
    long p = strtol(ps, &end, 10);
    if (end == ps || *end || p < 1 || f + p > MAX_CONNS)
        return false;
    *nf = (int)f;
    *np = (int)p;
    return true;
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, LG_OPTSTRING "W:R")) != -1) {
        if (lg_option(opt, optarg))
            continue;
        switch (opt) {
        case 'W':
            window = (size_t)atol(optarg);
            break;
        case 'R':
            rst_close = true;
            break;
        default:
            return usage();
        }
    }
    if (!lg_options_ok(optind, argc) || window < 1)
        return usage();
    window = (window + BLOCK - 1) / BLOCK * BLOCK;
    if (!lg_addr("loadgen"))
        return 2;
    signal(SIGPIPE, SIG_IGN);
    pat_fill(pat, PAT_LEN);
    long errors = 0;
    for (int i = optind; i < argc; i++) {
        const char *w = argv[i];
        result r = {.name = w};
        int c, f;
        busy_t0 = now();
        busy_cpu0 = cpu_seconds();
        if ((c = parse_count(w, "pingpong", 1, MAX_CONNS)) > 0) {
            r.conns = c;
            run_pingpong(&r);
        } else if (count > 0) {
            fprintf(stderr, "loadgen: -n is for pingpong workloads only\n");
            return 2;
        } else if ((c = parse_count(w, "stream-16k", 1, MAX_CONNS)) > 0) {
            r.conns = c;
            run_stream(&r);
        } else if ((c = parse_count(w, "bulk-16k", 1, MAX_CONNS)) > 0) {
            r.conns = c;
            size_t stream_window = window;
            window = BULK_WINDOW;
            run_stream(&r);
            window = stream_window;
        } else if (parse_mixed(w, &f, &c)) {
            r.conns = c;
            size_t stream_window = window;
            window = BULK_WINDOW;
            block = FLOOD_BLOCK;
            run_mixed(&r, f);
            window = stream_window;
            block = BLOCK;
        } else if ((c = parse_count(w, "churn", 8, MAX_CONNS)) > 0) {
            r.conns = c;
            run_churn(&r);
        } else {
            fprintf(stderr, "loadgen: unknown workload %s\n", w);
            return usage();
        }
        errors += r.errors;
    }
    return errors ? 1 : 0;
}
