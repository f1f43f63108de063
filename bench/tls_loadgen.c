/*
 * tls_loadgen.c — load generator for the TLS echo benchmark (issue #9,
 * bench/tls_bench.sh), the TLS sibling of loadgen.c.
 *
 * One thread, one epoll set (edge-triggered), non-blocking sockets, OpenSSL
 * 3 over socket BIOs. The client verifies the server's chain against -C
 * CAFILE and its address against the certificate's IP SAN, as a user's
 * client would; it never resumes a session (no session is ever kept), so
 * every handshake is a full one. Every echoed byte is checked against a
 * pseudo-random pattern.
 *
 *   tls_loadgen -p PORT -C CAFILE [-H HOST] [-d SECONDS] [-w WARMUP]
 *               [-l LABEL] [-n COUNT [-g GOFILE]] [-R] WORKLOAD...
 *
 * Workloads:
 *   bulk-16k[-C]  C connections (default 1) each writing 16 KiB records
 *                 (one SSL_write each) with at most 256 KiB unechoed:
 *                 rate = MB/s echoed (1 MB = 1e6 bytes), latency per block
 *                 (written -> echoed back in full)
 *   hs[-C]        C slots (default 50), each: connect, full TLS handshake,
 *                 64 bytes echoed, close_notify, close; again: rate =
 *                 handshakes/s (each with its echo), latency per connection
 *                 (socket() -> close). The client closes first, so its side
 *                 keeps TIME_WAIT (Linux reuses those ports on loopback,
 *                 tcp_tw_reuse = 2); -R closes with a reset instead.
 *
 * The client offers TLS 1.3's AES-128-GCM first: servers that follow the
 * client's order (OpenSSL's default) and Go's crypto/tls (which prefers
 * AES-128-GCM on its own) then negotiate the same cipher, and the figures
 * compare servers, not ciphers. Groups: OpenSSL's default list (X25519
 * first). The negotiated version, group and cipher are printed.
 *
 * Each workload warms up for WARMUP seconds (default 0.25), measures for
 * SECONDS (default 2), then stops sending and drains (at most 5 s). With
 * -n COUNT it measures COUNT blocks or handshakes instead; with -g GOFILE as
 * well it goes idle after the warm-up, prints "ready", waits for GOFILE to
 * exist, measures, prints the result and waits for GOFILE to be removed
 * before closing (a tracer attached to the server in between sees steady
 * state only). Every wait is bounded.
 *
 * Output, one line per workload (key=value):
 *   result server=LABEL workload=W conns=C rate=R unit=MB/s|hs/s p50_us=..
 *          p99_us=.. ops=N all_ops=M bytes=B all_bytes=AB seconds=S errors=0
 *          lg_busy=.. tls=TLSv1.3 group=x25519 cipher=TLS_AES_128_GCM_SHA256
 * (all_ops, all_bytes: over the whole run, warm-up and drain included, to
 * divide the server's CPU time by; lg_busy: this process's CPU share)
 * Exit status 0 when every workload ran with every byte verified, else 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
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
#define WINDOW ((uint64_t)256 * 1024)
#define NBT (WINDOW / BLOCK + 2) /* block timestamps kept per connection */
#define RBUF 65536
#define PAT_LEN (PAT_PERIOD + RBUF)
#define DRAIN_LIMIT 5.0
#define COUNT_LIMIT 120.0 /* bound on a counted (-n) run */
#define MAX_CONNS 1024
#define MAX_SAMPLES (16u * 1024 * 1024)
#define CIPHERSUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

#include "lg_common.h"

static unsigned char pat[PAT_LEN];
static unsigned char rbuf[RBUF];

/* options */
static const char *cafile; /* -C */
static bool rst_close;     /* -R */

static SSL_CTX *ctx;

/* RBUF contiguous pattern bytes starting at stream offset off */
static const unsigned char *pat_at(uint64_t off)
{
    return pat + off % PAT_PERIOD;
}

/* ---- results ------------------------------------------------------------ */

typedef struct {
    const char *name;
    int conns;
    bool bulk;
    long ops, all_ops;         /* blocks / handshakes: in the window, in all */
    uint64_t bytes, all_bytes; /* echoed: in the window, in all */
    double seconds;            /* length of the measured window */
    samples lat;               /* seconds */
    long errors;
    char tls[96];    /* "tls=.. group=.. cipher=..", from the first handshake */
    double t0, cpu0; /* for lg_busy */
} result;

static void report(result *r)
{
    double wall = now() - r->t0;
    double busy = wall > 0 ? (cpu_seconds() - r->cpu0) / wall : 0;
    double rate = r->seconds <= 0 ? 0
                  : r->bulk       ? (double)r->bytes / 1e6 / r->seconds
                                  : (double)r->ops / r->seconds;
    samples_sort(&r->lat);
    printf(
        "result server=%s workload=%s conns=%d rate=%.1f unit=%s p50_us=%.1f p99_us=%.1f "
        "ops=%ld all_ops=%ld bytes=%llu all_bytes=%llu seconds=%.3f errors=%ld lg_busy=%.2f %s\n",
        label, r->name, r->conns, r->errors ? 0.0 : rate, r->bulk ? "MB/s" : "hs/s",
        percentile(&r->lat, 0.50) * 1e6, percentile(&r->lat, 0.99) * 1e6, r->ops, r->all_ops,
        (unsigned long long)r->bytes, (unsigned long long)r->all_bytes, r->seconds, r->errors, busy,
        r->tls[0] ? r->tls : "tls=- group=- cipher=-");
    fflush(stdout);
    free(r->lat.v);
}

/* Reports a failure: err > 0 an errno value, err == 0 the OpenSSL queue. */
static void fail(result *r, const char *what, int err)
{
    char ossl[256] = "";
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, ossl, sizeof ossl);
    ERR_clear_error();
    fprintf(stderr, "tls_loadgen: %s: %s: %s\n", r->name, what,
            err > 0   ? strerror(err)
            : ossl[0] ? ossl
                      : "unexpected data or end of stream");
    r->errors++;
}

/* ---- the measuring clock ------------------------------------------------ */

typedef struct {
    double t_meas, t_stop; /* the measured window [t_meas, t_stop) */
    bool sending;          /* new blocks / connections */
    double t_stopped;      /* when sending stopped */
    bool warm_pause;       /* -g: go idle after the warm-up */
    bool counted;          /* -n: stop after count ops */
} clockset;

static void clock_begin(clockset *k)
{
    double t0 = now();
    k->t_meas = t0 + warmup;
    k->t_stop = t0 + warmup + (count > 0 ? COUNT_LIMIT : duration);
    k->sending = true;
    k->t_stopped = 0;
    k->counted = count > 0;
    k->warm_pause = count > 0 && gofile;
}

static bool in_window(const clockset *k, double t)
{
    return !k->warm_pause && t >= k->t_meas && t < k->t_stop;
}

static void clock_stop(clockset *k, double t)
{
    if (k->sending) {
        k->sending = false;
        k->t_stopped = t;
    }
}

/* One op done at t, in the window or not: counts it, may end a counted run. */
static void count_op(clockset *k, result *r, double t, double lat, uint64_t bytes)
{
    r->all_ops++;
    r->all_bytes += bytes;
    if (!in_window(k, t) || (k->counted && r->ops >= count))
        return;
    r->ops++;
    r->bytes += bytes;
    sample_add(&r->lat, lat);
    if (k->counted && r->ops >= count) {
        r->seconds = t - k->t_meas;
        clock_stop(k, t);
    }
}

/* After each batch of events: may stop sending; false on a drain timeout. */
static bool clock_tick(clockset *k, result *r, double t)
{
    if (k->sending && t >= (k->warm_pause ? k->t_meas : k->t_stop)) {
        clock_stop(k, t);
        if (!k->warm_pause && !k->counted)
            r->seconds = duration;
    }
    if (!k->sending && t > k->t_stopped + DRAIN_LIMIT) {
        fail(r, "timed out draining what was in flight", EIO);
        return false;
    }
    return true;
}

/* ---- connections -------------------------------------------------------- */

enum { C_IDLE, C_CONNECTING, C_HANDSHAKE, C_RUN };

typedef struct {
    int fd, state;
    SSL *ssl;
    uint64_t salt, sent, recvd; /* bulk: plaintext bytes; hs: the message's */
    int wlen;                   /* an SSL_write to retry with the same arguments, or 0 */
    double t;                   /* hs: socket(); bulk: unused */
    double bt[NBT];             /* bulk: when block b was written: bt[b % NBT] */
} tconn;

/* A new connection in slot idx, connecting: 0 or -errno. */
static int conn_open(int ep, tconn *c, uint64_t idx)
{
    static uint64_t next_salt; /* each connection its own bytes: no cross-talk goes unseen */
    c->salt = next_salt++ * 7919u;
    c->t = now();
    c->sent = c->recvd = 0;
    c->wlen = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -errno;
    int one = 1, rc = 0;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u64 = idx};
    if ((connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) ||
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        rc = -errno;
        goto fail;
    }
    c->ssl = SSL_new(ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) ||
        !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host)) {
        rc = -ENOMEM;
        goto fail;
    }
    SSL_set_connect_state(c->ssl);
    c->state = C_CONNECTING;
    return 0;
fail:
    SSL_free(c->ssl);
    c->ssl = NULL;
    close(c->fd);
    c->fd = -1;
    return rc;
}

/* Sends close_notify (best effort: the connection is done) and closes. */
static void conn_close(tconn *c)
{
    if (c->fd < 0)
        return;
    if (c->state == C_RUN)
        SSL_shutdown(c->ssl);
    ERR_clear_error();
    SSL_free(c->ssl);
    c->ssl = NULL;
    if (rst_close) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(c->fd);
    c->fd = -1;
    c->state = C_IDLE;
}

/* After an SSL call returned rc <= 0: 0 to wait for the socket, else -1
 * (err set: an errno value, or 0 for a TLS error or an early end). */
static int ssl_wait(tconn *c, int rc, int *err)
{
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    *err = e == SSL_ERROR_SYSCALL && errno ? errno : 0;
    return -1;
}

/* The version, group and cipher of c's session, once per workload. */
static void note_tls(result *r, const tconn *c)
{
    if (r->tls[0])
        return;
    int nid = SSL_get_negotiated_group(c->ssl);
    const char *g = nid ? SSL_group_to_name(c->ssl, nid) : NULL;
    snprintf(r->tls, sizeof r->tls, "tls=%s group=%s cipher=%s", SSL_get_version(c->ssl),
             g ? g : "-", SSL_get_cipher_name(c->ssl));
}

/* Connecting and handshaking: 1 when the handshake is done, 0 to wait,
 * -1 on failure (reported). */
static int conn_setup(tconn *c, uint32_t ev, result *r)
{
    int err = 0;
    if (c->state == C_CONNECTING) {
        if (ev & EPOLLERR) {
            socklen_t len = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            fail(r, "connect", err ? err : ECONNREFUSED);
            return -1;
        }
        if (!(ev & EPOLLOUT))
            return 0;
        c->state = C_HANDSHAKE;
    }
    if (c->state == C_RUN)
        return 1;
    int rc = SSL_connect(c->ssl);
    if (rc == 1) {
        c->state = C_RUN;
        note_tls(r, c);
        return 1;
    }
    if (ssl_wait(c, rc, &err) == 0)
        return 0;
    fail(r, "handshake", err);
    return -1;
}

/* Reads what the socket has, checking it against what was sent: 0 or -1
 * (reported). Each completed unit (block, message) goes to done(). */
static int conn_read(tconn *c, result *r, clockset *k, uint64_t unit)
{
    int err = 0;
    for (;;) {
        int n = SSL_read(c->ssl, rbuf, RBUF);
        if (n <= 0) {
            if (ssl_wait(c, n, &err) == 0)
                return 0;
            fail(r, "read", err);
            return -1;
        }
        if (c->recvd + (uint64_t)n > c->sent) {
            fail(r, "more bytes echoed than sent", 0);
            return -1;
        }
        if (memcmp(rbuf, pat_at(c->salt + c->recvd), (size_t)n) != 0) {
            fail(r, "echoed bytes differ from those sent", 0);
            return -1;
        }
        double t = now();
        uint64_t end = c->recvd + (uint64_t)n;
        for (uint64_t b = c->recvd / unit; (b + 1) * unit <= end; b++)
            count_op(k, r, t, unit == MSG ? t - c->t : t - c->bt[b % NBT], unit);
        c->recvd = end;
    }
}

/* Writes units of len bytes while want() allows: 0 or -1 (reported). */
static int conn_write(tconn *c, result *r, int len, uint64_t limit)
{
    int err = 0;
    while (c->wlen || c->sent < limit) {
        int w = c->wlen ? c->wlen : len; /* a retry must repeat its arguments */
        int rc = SSL_write(c->ssl, pat_at(c->salt + c->sent), w);
        if (rc <= 0) {
            if (ssl_wait(c, rc, &err) < 0) {
                fail(r, "write", err);
                return -1;
            }
            c->wlen = w;
            return 0;
        }
        c->wlen = 0;
        c->sent += (uint64_t)rc;
        c->bt[(c->sent / BLOCK + NBT - 1) % NBT] = now();
    }
    return 0;
}

/* ---- the two workloads -------------------------------------------------- */

static int bulk_event(tconn *c, uint32_t ev, result *r, clockset *k)
{
    int rc = conn_setup(c, ev, r);
    if (rc <= 0)
        return rc;
    if (conn_read(c, r, k, BLOCK) < 0)
        return -1;
    return conn_write(c, r, BLOCK, k->sending ? c->recvd + WINDOW : c->sent);
}

/* A slot's turn: 1 when its connection is done (closed), 0, -1. */
static int hs_event(tconn *c, uint32_t ev, result *r, clockset *k)
{
    int rc = conn_setup(c, ev, r);
    if (rc <= 0)
        return rc;
    if (conn_write(c, r, MSG, MSG) < 0 || conn_read(c, r, k, MSG) < 0)
        return -1;
    if (c->recvd < MSG)
        return 0;
    conn_close(c);
    return 1;
}

static bool all_idle(const tconn *cs, int n, bool bulk)
{
    for (int i = 0; i < n; i++)
        if (bulk ? cs[i].recvd != cs[i].sent || cs[i].wlen : cs[i].fd >= 0)
            return false;
    return true;
}

/* (Re)starts the connections: hs opens every slot, bulk writes on each. */
static int kick(int ep, tconn *cs, int n, result *r, clockset *k)
{
    for (int i = 0; i < n; i++) {
        tconn *c = &cs[i];
        int rc = 0;
        if (c->fd < 0) {
            if ((rc = conn_open(ep, c, (uint64_t)i)) < 0) {
                fail(r, "connect", -rc);
                return -1;
            }
        } else if (r->bulk && bulk_event(c, 0, r, k) < 0) {
            return -1;
        }
    }
    return 0;
}

/* -g: idle after the warm-up; measure once GOFILE exists. */
static int go_on(int ep, tconn *cs, int n, result *r, clockset *k)
{
    printf("ready\n");
    fflush(stdout);
    if (!wait_file(gofile, true)) {
        fail(r, "timed out waiting for the go file", ETIMEDOUT);
        return -1;
    }
    double t = now();
    k->warm_pause = false;
    k->sending = true;
    k->t_meas = t;
    k->t_stop = t + COUNT_LIMIT;
    return kick(ep, cs, n, r, k);
}

static void run(result *r)
{
    int n = r->conns, ep = -1;
    tconn *cs = calloc((size_t)n, sizeof *cs);
    struct epoll_event *evs = calloc((size_t)n, sizeof *evs);
    if (!cs || !evs || (ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        fail(r, "setup", errno ? errno : ENOMEM);
        goto out;
    }
    for (int i = 0; i < n; i++)
        cs[i].fd = -1;
    clockset k;
    clock_begin(&k);
    if (kick(ep, cs, n, r, &k) < 0)
        goto out;
    for (;;) { /* ends by time: t_stop (or count), then DRAIN_LIMIT */
        int m = epoll_wait(ep, evs, n, 50);
        if (m < 0 && errno != EINTR) {
            fail(r, "epoll_wait", errno);
            goto out;
        }
        for (int i = 0; i < m; i++) {
            uint64_t idx = evs[i].data.u64;
            tconn *c = &cs[idx];
            int rc =
                r->bulk ? bulk_event(c, evs[i].events, r, &k) : hs_event(c, evs[i].events, r, &k);
            if (rc < 0)
                goto out;
            if (rc == 1 && k.sending && (rc = conn_open(ep, c, idx)) < 0) {
                fail(r, "connect", -rc);
                goto out;
            }
        }
        if (!clock_tick(&k, r, now()))
            goto out;
        if (!k.sending && all_idle(cs, n, r->bulk)) {
            if (!k.warm_pause)
                break;
            if (go_on(ep, cs, n, r, &k) < 0)
                goto out;
        }
    }
out:
    report(r);
    if (gofile && count > 0 && !wait_file(gofile, false))
        fprintf(stderr, "tls_loadgen: the go file was not removed\n");
    for (int i = 0; cs && i < n; i++)
        conn_close(&cs[i]);
    if (ep >= 0)
        close(ep);
    free(cs);
    free(evs);
}

/* ---- main --------------------------------------------------------------- */

static int usage(void)
{
    fprintf(stderr, "usage: tls_loadgen -p PORT -C CAFILE [-H HOST] [-d SECONDS] [-w WARMUP]\n"
                    "                   [-l LABEL] [-n COUNT [-g GOFILE]] [-R] WORKLOAD...\n"
                    "workloads: bulk-16k[-C] hs[-C]\n");
    return 2;
}

static SSL_CTX *make_ctx(void)
{
    SSL_CTX *x = SSL_CTX_new(TLS_client_method());
    if (!x)
        return NULL;
    /* no client-side session cache: nothing is ever resumed */
    SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_verify(x, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_read_ahead(x, 1);
    if (!SSL_CTX_set_min_proto_version(x, TLS1_2_VERSION) ||
        !SSL_CTX_set_ciphersuites(x, CIPHERSUITES) ||
        SSL_CTX_load_verify_locations(x, cafile, NULL) != 1) {
        SSL_CTX_free(x);
        return NULL;
    }
    return x;
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, LG_OPTSTRING "C:R")) != -1) {
        if (lg_option(opt, optarg))
            continue;
        switch (opt) {
        case 'C':
            cafile = optarg;
            break;
        case 'R':
            rst_close = true;
            break;
        default:
            return usage();
        }
    }
    if (!lg_options_ok(optind, argc) || !cafile || (gofile && !count))
        return usage();
    if (!lg_addr("tls_loadgen"))
        return 2;
    if (!(ctx = make_ctx())) {
        fprintf(stderr, "tls_loadgen: cannot set up TLS with CA file %s\n", cafile);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    pat_fill(pat, PAT_LEN);
    long errors = 0;
    for (int i = optind; i < argc; i++) {
        result r = {.name = argv[i], .t0 = now(), .cpu0 = cpu_seconds()};
        if ((r.conns = parse_count(argv[i], "bulk-16k", 1, MAX_CONNS)) > 0) {
            r.bulk = true;
        } else if ((r.conns = parse_count(argv[i], "hs", 50, MAX_CONNS)) <= 0) {
            fprintf(stderr, "tls_loadgen: unknown workload %s\n", argv[i]);
            return usage();
        }
        run(&r);
        errors += r.errors;
    }
    SSL_CTX_free(ctx);
    return errors ? 1 : 0;
}
