/*
 * udp_loadgen.c — load generator of the UDP echo benchmark (issue #10,
 * bench/udp_bench.sh).
 *
 * One thread, one level-triggered epoll set, non-blocking UDP sockets, each
 * connected to the server (the kernel then delivers only the server's
 * datagrams to it, and an ICMP "port unreachable" comes back as an error).
 * Every datagram carries its flow, a sequence number and a pseudo-random
 * pattern that depends on both; every reply is checked, so a server that
 * corrupts, truncates, duplicates or misroutes a datagram fails the run.
 *
 *   udp_loadgen -p PORT [-H HOST] [-d SECONDS] [-w WARMUP] [-l LABEL]
 *               [-W WINDOW] [-n COUNT [-g GOFILE]] WORKLOAD...
 *
 * Workloads (one engine: F flows, each its own socket and so its own source
 * port, each with at most W datagrams of S bytes unanswered):
 *   rr-F        request/response: F flows (default 1), S = 64, W = 1 (one
 *               outstanding request per flow); rate = replies/s, latency
 *               per request (send -> reply checked)
 *   bulk-1200[-F]  F flows (default 1) sending 1200-byte datagrams as fast
 *               as the server takes them: W (-W, default 64) unanswered per
 *               flow, sent in batches with sendmmsg as the window opens;
 *               rate = MB/s (1e6 bytes of datagram payload) arriving back
 *               at this process, dgram_rate = datagrams/s.
 *   Why bulk goes through the echo server and not to a sink: every server
 *   of the benchmark is an echo server with one command line, none can say
 *   how much it received, and a flood with no flow control measures the
 *   kernel's drops, not the server. So the bulk stream is one way from the
 *   server's point of view (it receives a stream and sends a stream, no
 *   request waits for its answer), and "at the receiver" is this process:
 *   what the server forwarded, all of it checked. W = 64 datagrams of 1200
 *   bytes (about 150 KB of kernel memory with their overhead) stays inside
 *   the default receive buffer (net.core.rmem_default, 208 KiB), so a server
 *   that keeps up loses nothing, and one that falls behind loses to its own
 *   socket's buffer, counted below. With F flows the server holds F x W:
 *   bulk-1200-4 at W = 64 overflows a default buffer (kernel drops, and each
 *   loss stalls its flow's window for LOSS_TIMEOUT), so the benchmark runs
 *   bulk-1200 with one flow.
 *
 * Losses: a datagram unanswered after LOSS_TIMEOUT (0.2 s) is counted lost
 * and its place in the window freed; a reply that comes later is counted
 * late (and no longer lost). Kernel drops are counted apart: the Udp
 * InErrors (which include RcvbufErrors) and SndbufErrors of /proc/net/snmp,
 * before and after the workload. They are for the whole machine (other
 * processes' UDP too), so they bound the drops, they do not attribute them.
 * lost > kdrops means datagrams vanished where the kernel says it dropped
 * none: the server's doing.
 *
 * Each workload warms up for WARMUP seconds (default 0.25), measures for
 * SECONDS (default 2), then stops sending and drains (at most DRAIN_LIMIT).
 * With -n COUNT it sends exactly COUNT datagrams in the measurement and
 * waits for their replies instead; with -g GOFILE as well it prints "ready"
 * after the warm-up and its drain, waits for GOFILE to exist before
 * measuring, prints the result and waits for GOFILE to be removed before
 * closing its sockets (a tracer attached to the server in between sees
 * steady state only). Every wait is bounded.
 *
 * Output, one line per workload (key=value):
 *   result server=LABEL workload=W flows=F window=W size=S rate=R unit=U
 *          dgram_rate=.. p50_us=.. p99_us=.. ops=N all_ops=M bytes=B
 *          all_bytes=AB seconds=S lost=L late=T kdrops=K sndbuf_drops=D
 *          errors=E lg_busy=.. lg_cpu_us=..
 * (ops/bytes: replies in the measured window; all_ops/all_bytes: in the
 * whole run, warm-up and drain included, to divide the server's CPU time by;
 * lg_busy: this process's CPU share while the workload ran; lg_cpu_us: its
 * CPU time over the whole workload.)
 * Exit status 0 when every workload ran with every datagram verified (losses
 * are reported, not failures), else 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

#define HDR 16            /* seq (8), flow (4), magic (4) */
#define MAGIC 0x31504455u /* "UDP1" */
#define MAX_SIZE 1472     /* one Ethernet-sized datagram at most */
#define PAT_LEN (PAT_PERIOD + MAX_SIZE)
#define RING 1024u /* per-flow slots: the window's upper bound */
#define BATCH 64   /* datagrams per sendmmsg / recvmmsg */
#define MAX_FLOWS 1024
#define LOSS_TIMEOUT 0.2
#define DRAIN_LIMIT 2.0
#define MAX_SAMPLES (16u * 1024 * 1024)
#define BULK_WINDOW 64

#include "lg_common.h"

static unsigned char pat[PAT_LEN];

/* options */
static unsigned window_opt; /* -W (0: the workload's default) */

/* The payload after the header of datagram seq of flow f. */
static const unsigned char *pat_for(uint32_t f, uint64_t seq)
{
    return pat + (seq * 7919u + f * 104729u) % PAT_PERIOD;
}

/* Udp InErrors and SndbufErrors of /proc/net/snmp (0 0 if unreadable). */
static void udp_drops(long long *in_errors, long long *sndbuf_errors)
{
    *in_errors = *sndbuf_errors = 0;
    FILE *f = fopen("/proc/net/snmp", "r");
    if (!f)
        return;
    char names[1024], values[1024];
    while (fgets(names, sizeof names, f) && fgets(values, sizeof values, f)) {
        if (strncmp(names, "Udp:", 4) != 0)
            continue;
        /* "Udp: InDatagrams NoPorts InErrors ..." then the values, in order */
        char *sn, *sv, *n = strtok_r(names, " \n", &sn), *v = strtok_r(values, " \n", &sv);
        while ((n = strtok_r(NULL, " \n", &sn)) && (v = strtok_r(NULL, " \n", &sv))) {
            if (strcmp(n, "InErrors") == 0)
                *in_errors = atoll(v);
            else if (strcmp(n, "SndbufErrors") == 0)
                *sndbuf_errors = atoll(v);
        }
        break;
    }
    fclose(f);
}

/* ---- the run ------------------------------------------------------------ */

typedef struct {
    double sent_at; /* 0: slot free */
    uint64_t seq;
    bool lost; /* given up on: a reply now is late */
    bool gone; /* lost, and no longer in the window: a reply now is late */
} slot;

typedef struct {
    int fd;
    uint32_t id;
    uint64_t next_seq; /* the next to send */
    uint64_t oldest;   /* no slot below it is in flight or lost-but-tracked */
    unsigned inflight;
    bool want_out; /* EAGAIN on send: EPOLLOUT registered */
    slot ring[RING];
} flow;

typedef struct {
    const char *name;
    int flows;
    unsigned window;
    size_t size;
    bool stream; /* bulk: rate in MB/s */
    long ops, all_ops;
    unsigned long long bytes, all_bytes;
    long lost, late, errors, sent_measured;
    double seconds;
    samples lat;
} result;

typedef struct {
    double t_meas, t_stop; /* the measured window */
    bool sending, measuring_done, warm_pause;
    double t_last; /* the last reply counted in the window (counted runs) */
} clockset;

static void fail(result *r, const char *what, int err)
{
    if (err)
        fprintf(stderr, "udp_loadgen: %s: %s: %s\n", r->name, what, strerror(err));
    else
        fprintf(stderr, "udp_loadgen: %s: %s\n", r->name, what);
    r->errors++;
}

static int open_flow(int ep, flow *fl, result *r)
{
    fl->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fl->fd < 0) {
        fail(r, "socket", errno);
        return -1;
    }
    /* this side must not be where datagrams are dropped */
    int big = 4 << 20;
    setsockopt(fl->fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(fl->fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = fl};
    if (connect(fl->fd, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        epoll_ctl(ep, EPOLL_CTL_ADD, fl->fd, &ev) < 0) {
        fail(r, "connect/epoll_ctl", errno);
        return -1;
    }
    return 0;
}

static void set_out(int ep, flow *fl, bool on)
{
    if (fl->want_out == on)
        return;
    fl->want_out = on;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = fl};
    epoll_ctl(ep, EPOLL_CTL_MOD, fl->fd, &ev);
}

static void fill(unsigned char *p, size_t size, uint32_t f, uint64_t seq)
{
    uint32_t magic = MAGIC;
    memcpy(p, &seq, 8);
    memcpy(p + 8, &f, 4);
    memcpy(p + 12, &magic, 4);
    memcpy(p + HDR, pat_for(f, seq), size - HDR);
}

/* How many more datagrams this flow may send now. */
static unsigned may_send(const flow *fl, const result *r, const clockset *k)
{
    if (!k->sending || fl->want_out)
        return 0;
    unsigned n = r->window - fl->inflight;
    /* the ring holds lost-but-tracked slots too: never wrap onto them */
    uint64_t room = RING - (fl->next_seq - fl->oldest);
    if (n > room)
        n = (unsigned)room;
    if (count > 0 && !k->warm_pause) {
        long left = count - r->sent_measured;
        if ((long)n > left)
            n = left > 0 ? (unsigned)left : 0;
    }
    return n > BATCH ? BATCH : n;
}

static int send_some(int ep, flow *fl, result *r, const clockset *k, double t)
{
    static unsigned char bufs[BATCH][MAX_SIZE];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    unsigned n = may_send(fl, r, k);
    if (n == 0)
        return 0;
    for (unsigned i = 0; i < n; i++) {
        fill(bufs[i], r->size, fl->id, fl->next_seq + i);
        iov[i] = (struct iovec){bufs[i], r->size};
        msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
    }
    int m = sendmmsg(fl->fd, msgs, n, MSG_DONTWAIT);
    if (m < 0) {
        if (errno == EAGAIN || errno == ENOBUFS || errno == EINTR) {
            set_out(ep, fl, true);
            return 0;
        }
        fail(r, "sendmmsg", errno);
        return -1;
    }
    for (int i = 0; i < m; i++) {
        slot *s = &fl->ring[fl->next_seq % RING];
        *s = (slot){.sent_at = t, .seq = fl->next_seq};
        fl->next_seq++;
        fl->inflight++;
        if (count > 0 && !k->warm_pause)
            r->sent_measured++;
    }
    if ((unsigned)m < n)
        set_out(ep, fl, true);
    return m;
}

/* Checks one reply and retires its slot: 1 counted, 0 late, -1 an error. */
static int take_reply(flow *fl, result *r, const unsigned char *p, size_t len, int mflags, double t,
                      clockset *k)
{
    uint64_t seq;
    uint32_t f, magic;
    if (len != r->size || (mflags & MSG_TRUNC)) {
        fail(r, "a reply of the wrong size", 0);
        return -1;
    }
    memcpy(&seq, p, 8);
    memcpy(&f, p + 8, 4);
    memcpy(&magic, p + 12, 4);
    if (magic != MAGIC || f != fl->id || seq >= fl->next_seq || fl->next_seq - seq > RING ||
        memcmp(p + HDR, pat_for(f, seq), len - HDR) != 0) {
        fail(r, "a corrupted or misrouted reply", 0);
        return -1;
    }
    slot *s = &fl->ring[seq % RING];
    if (s->seq == seq && s->gone) { /* later than 2 x LOSS_TIMEOUT */
        s->gone = false;
        r->lost--;
        r->late++;
        r->all_ops++;
        r->all_bytes += len;
        return 0;
    }
    if (s->seq != seq || s->sent_at == 0) {
        fail(r, "a duplicate reply", 0);
        return -1;
    }
    bool was_lost = s->lost;
    double sent = s->sent_at;
    s->sent_at = 0;
    while (fl->oldest < fl->next_seq && fl->ring[fl->oldest % RING].sent_at == 0)
        fl->oldest++;
    r->all_ops++;
    r->all_bytes += len;
    if (was_lost) {
        r->lost--;
        r->late++;
        return 0;
    }
    fl->inflight--;
    bool in_window = count > 0 ? !k->warm_pause : t >= k->t_meas && t < k->t_stop;
    if (in_window) {
        r->ops++;
        r->bytes += len;
        if (!r->stream || (r->ops & 15) == 0)
            sample_add(&r->lat, (t - sent) * 1e6);
        k->t_last = t;
    }
    return 1;
}

static int on_readable(flow *fl, result *r, double t, clockset *k)
{
    static unsigned char bufs[BATCH][MAX_SIZE + 1];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i] = (struct iovec){bufs[i], sizeof bufs[i]};
        msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
    }
    /* one call per readiness: level-triggered epoll reports the rest */
    int m = recvmmsg(fl->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
    if (m < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return 0;
        fail(r, "recvmmsg", errno); /* ECONNREFUSED: the server is gone */
        return -1;
    }
    for (int i = 0; i < m; i++)
        if (take_reply(fl, r, bufs[i], msgs[i].msg_len, msgs[i].msg_hdr.msg_flags, t, k) < 0)
            return -1;
    return 0;
}

/* Gives up on datagrams unanswered for LOSS_TIMEOUT. */
static void expire(flow *fl, result *r, double t)
{
    for (uint64_t q = fl->oldest; q < fl->next_seq; q++) {
        slot *s = &fl->ring[q % RING];
        if (s->sent_at == 0 || s->lost)
            continue;
        if (t - s->sent_at < LOSS_TIMEOUT)
            break; /* sent in order: the rest are younger */
        s->lost = true;
        fl->inflight--;
        r->lost++;
    }
    /* a lost slot stays tracked (for a late reply) until it is LOSS_TIMEOUT
     * older still, then is freed for good */
    while (fl->oldest < fl->next_seq) {
        slot *s = &fl->ring[fl->oldest % RING];
        if (s->sent_at != 0 && !(s->lost && t - s->sent_at > 2 * LOSS_TIMEOUT))
            break;
        s->gone = s->sent_at != 0;
        s->sent_at = 0;
        fl->oldest++;
    }
}

static unsigned total_inflight(const flow *fls, int n)
{
    unsigned sum = 0;
    for (int i = 0; i < n; i++)
        sum += fls[i].inflight;
    return sum;
}

static void report(result *r, double t0, double cpu0, long long kd, long long sd)
{
    double wall = now() - t0, cpu = cpu_seconds() - cpu0;
    samples_sort(&r->lat);
    double rate =
        r->seconds > 0 ? (r->stream ? (double)r->bytes / 1e6 : (double)r->ops) / r->seconds : 0;
    printf("result server=%s workload=%s flows=%d window=%u size=%zu rate=%.1f unit=%s "
           "dgram_rate=%.1f p50_us=%.1f p99_us=%.1f ops=%ld all_ops=%ld bytes=%llu all_bytes=%llu "
           "seconds=%.3f lost=%ld late=%ld kdrops=%lld sndbuf_drops=%lld errors=%ld lg_busy=%.2f "
           "lg_cpu_us=%.0f\n",
           label, r->name, r->flows, r->window, r->size, r->errors ? 0.0 : rate,
           r->stream ? "MB/s" : "rep/s", r->seconds > 0 ? (double)r->ops / r->seconds : 0,
           percentile(&r->lat, 0.50), percentile(&r->lat, 0.99), r->ops, r->all_ops, r->bytes,
           r->all_bytes, r->seconds, r->lost, r->late, kd, sd, r->errors, wall > 0 ? cpu / wall : 0,
           cpu * 1e6);
    fflush(stdout);
    free(r->lat.v);
}

/* One step of the clock; false when the run is over. */
static bool clock_tick(clockset *k, flow *fls, result *r, double t, double *t_stopped)
{
    if (count > 0 && !k->warm_pause) {
        if (k->sending && (r->sent_measured >= count || t >= k->t_stop)) {
            k->sending = false;
            *t_stopped = t;
        }
    } else if (k->sending && t >= (k->warm_pause ? k->t_meas : k->t_stop)) {
        k->sending = false;
        *t_stopped = t;
    }
    if (k->sending)
        return true;
    return total_inflight(fls, r->flows) > 0 && t - *t_stopped < DRAIN_LIMIT;
}

static void run(result *r)
{
    int n = r->flows, ep = epoll_create1(EPOLL_CLOEXEC), opened = 0;
    flow *fls = calloc((size_t)n, sizeof *fls);
    struct epoll_event evs[256];
    long long kd0, sd0, kd1, sd1;
    double t0 = now(), cpu0 = cpu_seconds(), t_stopped = 0, t_scan = 0;
    if (!fls || ep < 0) {
        fail(r, "setup", errno);
        goto out;
    }
    for (; opened < n; opened++) {
        fls[opened].id = (uint32_t)opened;
        if (open_flow(ep, &fls[opened], r) < 0) {
            close(fls[opened].fd);
            goto out;
        }
    }
    udp_drops(&kd0, &sd0);
    /* with -n, the warm-up is a phase of its own, drained before counting */
    clockset k = {.sending = true, .warm_pause = count > 0};
    double t = now();
    k.t_meas = t + warmup;
    k.t_stop = k.t_meas + duration;
    for (int phase = 0; phase < 2; phase++) {
        if (phase == 1) {
            if (!k.warm_pause)
                break;
            if (gofile) { /* warmed up and drained; measure once GOFILE exists */
                printf("ready\n");
                fflush(stdout);
                if (!wait_file(gofile, true)) {
                    fail(r, "timed out waiting for the go file", 0);
                    goto out;
                }
            }
            k.warm_pause = false;
            k.sending = true;
            k.t_meas = now();
            k.t_stop = k.t_meas + 120.0;
            k.t_last = k.t_meas;
        }
        for (;;) { /* ends by time: t_stop (or count sent), then DRAIN_LIMIT */
            t = now();
            for (int i = 0; i < n; i++)
                if (send_some(ep, &fls[i], r, &k, t) < 0)
                    goto out;
            int m = epoll_wait(ep, evs, 256, 10);
            if (m < 0 && errno != EINTR) {
                fail(r, "epoll_wait", errno);
                goto out;
            }
            t = now();
            for (int i = 0; i < m; i++) {
                flow *fl = evs[i].data.ptr;
                if ((evs[i].events & EPOLLOUT) && fl->want_out)
                    set_out(ep, fl, false);
                if ((evs[i].events & (EPOLLIN | EPOLLERR)) && on_readable(fl, r, t, &k) < 0)
                    goto out;
            }
            if (t - t_scan > 0.01) {
                for (int i = 0; i < n; i++)
                    expire(&fls[i], r, t);
                t_scan = t;
            }
            if (!clock_tick(&k, fls, r, t, &t_stopped))
                break;
        }
    }
    r->seconds = count > 0 ? k.t_last - k.t_meas : duration;
    for (int i = 0; i < n; i++) /* what is still out after the drain is lost */
        r->lost += fls[i].inflight;
out:
    udp_drops(&kd1, &sd1);
    report(r, t0, cpu0, opened ? kd1 - kd0 : 0, opened ? sd1 - sd0 : 0);
    if (gofile && count > 0 && !wait_file(gofile, false))
        fprintf(stderr, "udp_loadgen: the go file was not removed\n");
    for (int i = 0; i < opened; i++)
        close(fls[i].fd);
    if (ep >= 0)
        close(ep);
    free(fls);
}

static int usage(void)
{
    fprintf(stderr, "usage: udp_loadgen -p PORT [-H HOST] [-d SECONDS] [-w WARMUP] [-l LABEL]\n"
                    "                   [-W WINDOW] [-n COUNT [-g GOFILE]] WORKLOAD...\n"
                    "workloads: rr-F (F flows, 64 B, one outstanding each), bulk-1200[-F]\n");
    return 2;
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, LG_OPTSTRING "W:")) != -1) {
        if (lg_option(opt, optarg))
            continue;
        switch (opt) {
        case 'W':
            window_opt = (unsigned)atoi(optarg);
            break;
        default:
            return usage();
        }
    }
    if (!lg_options_ok(optind, argc) || window_opt > RING)
        return usage();
    if (!lg_addr("udp_loadgen"))
        return 2;
    pat_fill(pat, PAT_LEN);
    long errors = 0;
    for (int i = optind; i < argc; i++) {
        const char *w = argv[i];
        result r = {.name = w};
        int f;
        if ((f = parse_count(w, "rr", 1, MAX_FLOWS)) > 0) {
            r.size = 64;
            r.window = window_opt ? window_opt : 1;
        } else if ((f = parse_count(w, "bulk-1200", 1, MAX_FLOWS)) > 0) {
            r.size = 1200;
            r.window = window_opt ? window_opt : BULK_WINDOW;
            r.stream = true;
        } else {
            fprintf(stderr, "udp_loadgen: unknown workload %s\n", w);
            return usage();
        }
        r.flows = f;
        run(&r);
        errors += r.errors;
    }
    return errors ? 1 : 0;
}
