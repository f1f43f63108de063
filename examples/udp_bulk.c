/*
 * udp_bulk.c — one-way bulk UDP, with and without segmentation offload.
 *
 *   udp_bulk recv [--gro] [-d SECONDS] PORT [HOST]
 *       bind HOST:PORT (PORT 0: pick one; the first line on stdout is
 *       "listening on ADDR"), receive until the sender's end marker, 1 s
 *       without a datagram after the first, or SECONDS (default 30) in all
 *   udp_bulk send [--gso] [-s SIZE] [-d SECONDS] HOST PORT
 *       send SIZE-byte datagrams (default 1200) for SECONDS (default 2), then
 *       the end marker (repeated: it may be lost too)
 *
 * Each side prints one line of key=value pairs: the receiver's rates are
 * "at the receiver", the goal of issue #10's bulk benchmark
 * (bench/udp_offload_bench.sh runs the pairs).
 *
 * What it shows:
 *  - UDP_SEGMENT in one call: with --gso the sender hands
 *    ctrio_socket_send_segments up to 54 datagrams of 1200 bytes at once
 *    (65,507 bytes at most a sendmsg) and the kernel cuts them; where the
 *    kernel or the device refuses, the same call falls back to one
 *    datagram a sendmsg, and the program does not change.
 *  - UDP_GRO without control-message arithmetic: with --gro one receive
 *    may return many datagrams back to back; ctrio_socket_recv_segments
 *    says their size and ctrio_segment_iter walks them. Without --gro the
 *    same loop sees one datagram per receive.
 *  - UDP has no flow control: a sender faster than its receiver loses
 *    datagrams in the receiver's socket buffer. The receiver counts what
 *    arrives and what is missing (lost), and prints beside it the kernel's
 *    count of receive-buffer drops (RcvbufErrors of /proc/net/snmp, whole
 *    machine) so that the two can be compared (the kernel counts packets:
 *    a segmented send kept whole for a --gro receiver, 54 datagrams, is one
 *    drop); every datagram that arrives is checked (sequence number and
 *    payload): bad and dup must be 0.
 *  - Structured time limits: the sender's SECONDS is a move_on_after scope
 *    around its loop; the receiver's idle limit is a watchdog task in a
 *    nursery that cancels the receive.
 *
 * A datagram: "CTUB", its kind (0 data, 1 end), a 64-bit sequence number
 * (the end marker's: how many were sent), all big-endian, then SIZE - 16
 * bytes of a pseudo-random pattern that starts at an offset given by the
 * sequence number, so that a datagram delivered in another's place shows.
 */
#include <ctrio.h>

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define HEADER 16
#define MAGIC 0x43545542u /* "CTUB" */
#define KIND_DATA 0u
#define KIND_END 1u
#define MAX_DGRAM 65507 /* the largest UDP payload over IPv4 */
#define PATTERN_OFFSETS 251
#define IDLE_LIMIT 1.0 /* s without a datagram, after the first, ends a receive */
/* 64 KiB: a coalesced receive holds up to 64 KiB (UDP_GRO) */
#define RECV_BUF 65536
/* asked for (net.core.rmem_max caps it): room for bursts of a fast sender */
#define RCVBUF_WANTED (4 << 20)

typedef struct options {
    const char *mode, *host, *port;
    bool offload; /* --gso (send) or --gro (recv) */
    size_t size;
    double seconds;
} options;

/* ---- the datagram format --------------------------------------------------- */

static void put_be(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

static uint64_t get_be(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | p[i];
    return v;
}

/* The payload pattern, xorshift from a fixed seed: both sides make the same. */
static unsigned char *make_pattern(void)
{
    unsigned char *p = malloc(MAX_DGRAM + PATTERN_OFFSETS);
    uint32_t x = 2463534242u;
    for (size_t i = 0; p && i < MAX_DGRAM + PATTERN_OFFSETS; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char)x;
    }
    return p;
}

static void write_dgram(unsigned char *d, size_t size, uint32_t kind, uint64_t seq,
                        const unsigned char *pattern)
{
    put_be(d, MAGIC, 4);
    put_be(d + 4, kind, 4);
    put_be(d + 8, seq, 8);
    memcpy(d + HEADER, pattern + seq % PATTERN_OFFSETS, size - HEADER);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* A counter of the Udp line of /proc/net/snmp (-1 if unreadable): the
 * kernel's drops, for the whole machine. */
static long long udp_counter(const char *name)
{
    FILE *f = fopen("/proc/net/snmp", "r");
    char names[512], values[512];
    long long v = -1;
    while (f && fgets(names, sizeof names, f) && fgets(values, sizeof values, f)) {
        if (strncmp(names, "Udp: ", 5) != 0)
            continue;
        char *sn, *sv, *n = strtok_r(names + 5, " \n", &sn),
                       *val = strtok_r(values + 5, " \n", &sv);
        for (; n && val; n = strtok_r(NULL, " \n", &sn), val = strtok_r(NULL, " \n", &sv))
            if (strcmp(n, name) == 0)
                v = atoll(val);
        break;
    }
    if (f)
        fclose(f);
    return v;
}

static long long counter_delta(long long before, long long after)
{
    return before < 0 || after < 0 ? -1 : after - before;
}

/* A UDP socket bound to (recv) or connected to (send) host:port. */
static int udp_socket(const char *host, const char *port, bool bind, ctrio_socket **out)
{
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = bind ? AI_PASSIVE : 0};
    struct addrinfo *ai;
    int rc = ctrio_getaddrinfo(host, port, &hints, &ai);
    if (rc < 0)
        return rc;
    rc = ctrio_socket_open(ai->ai_family, ai->ai_socktype, ai->ai_protocol, out);
    if (rc == 0) {
        rc = bind ? ctrio_socket_bind(*out, ai->ai_addr, ai->ai_addrlen)
                  : ctrio_socket_connect(*out, ai->ai_addr, ai->ai_addrlen);
        if (rc < 0)
            ctrio_socket_close(*out);
    }
    ctrio_freeaddrinfo(ai);
    return rc;
}

/* ---- the sender --------------------------------------------------------------- */

typedef struct sender {
    ctrio_socket *sock;
    const options *o;
    unsigned char *pattern, *buf;
    size_t batch; /* datagrams a call: 1, or as many as one segmented sendmsg takes */
    uint64_t seq, calls;
} sender;

/* Send until the scope's deadline: the datagrams from b->seq on. */
static int send_until_deadline(sender *b)
{
    size_t size = b->o->size;
    ssize_t rc = 0;
    while (rc >= 0) {
        for (size_t i = 0; i < b->batch; i++)
            write_dgram(b->buf + i * size, size, KIND_DATA, b->seq + i, b->pattern);
        rc = b->o->offload
                 ? ctrio_socket_send_segments(b->sock, b->buf, b->batch * size, size, 0, NULL, 0)
                 : ctrio_socket_send(b->sock, b->buf, size, 0);
        if (rc > 0) {
            b->seq += (size_t)rc / size; /* whole datagrams, even when cut short */
            b->calls++;
        }
    }
    return (int)rc;
}

/* The end marker, up to five times after 20, 40, ... 320 ms: it may be
 * dropped like any datagram while the receiver is still behind (a slow
 * receiver, valgrind's say, needs longer to drain its buffer). A receiver
 * that got it has stopped: the next send gets its ICMP "port unreachable"
 * as -ECONNREFUSED, which ends the repeats; 620 ms in all stays under the
 * receiver's idle limit. */
static void send_end(sender *b)
{
    unsigned char end[HEADER];
    write_dgram(end, HEADER, KIND_END, b->seq, b->pattern);
    double pause = 0.02;
    for (int i = 0; i < 5; i++, pause *= 2)
        if (ctrio_sleep(pause) < 0 || ctrio_socket_send(b->sock, end, sizeof end, 0) < 0)
            break;
}

static void print_send(const sender *b, double wall, double cpu, long long drops)
{
    double mb = (double)(b->seq * b->o->size) / 1e6;
    printf("send mode=%s size=%zu dgrams=%llu bytes=%llu seconds=%.3f dgram_rate=%.0f "
           "mb_rate=%.1f calls=%llu cpu_us_per_mb=%.0f kdrops=%lld\n",
           b->o->offload ? "gso" : "plain", b->o->size, (unsigned long long)b->seq,
           (unsigned long long)(b->seq * b->o->size), wall, wall > 0 ? (double)b->seq / wall : 0,
           wall > 0 ? mb / wall : 0, (unsigned long long)b->calls, mb > 0 ? cpu * 1e6 / mb : 0,
           drops);
    fflush(stdout);
}

static int run_sender(const options *o)
{
    sender b = {.o = o, .batch = 1};
    if (o->offload) /* whole datagrams, at most 64 and 65,507 bytes a sendmsg */
        b.batch = MAX_DGRAM / o->size < 64 ? MAX_DGRAM / o->size : 64;
    b.pattern = make_pattern();
    b.buf = malloc(b.batch * o->size);
    int rc = b.pattern && b.buf ? udp_socket(o->host, o->port, false, &b.sock) : -ENOMEM;
    if (rc < 0) {
        fprintf(stderr, "udp_bulk: %s port %s: %s\n", o->host, o->port, ctrio_strerror(rc));
        goto cleanup;
    }
    long long sd0 = udp_counter("SndbufErrors");
    double t0 = ctrio_current_time(), cpu0 = cpu_seconds();
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, o->seconds);
    rc = ctrio_cancel_scope_close(&cs, send_until_deadline(&b));
    double wall = ctrio_current_time() - t0, cpu = cpu_seconds() - cpu0;
    if (rc < 0)
        fprintf(stderr, "udp_bulk: send: %s\n", ctrio_strerror(rc));
    else
        send_end(&b);
    print_send(&b, wall, cpu, counter_delta(sd0, udp_counter("SndbufErrors")));
    ctrio_socket_close(b.sock);
cleanup:
    free(b.buf);
    free(b.pattern);
    return rc;
}

/* ---- the receiver ------------------------------------------------------------- */

typedef struct receiver {
    ctrio_socket *sock;
    const options *o;
    ctrio_nursery *nursery;
    unsigned char *pattern, *buf;
    uint8_t *seen;     /* a bit per sequence number */
    uint64_t seen_cap; /* sequence numbers the bitmap covers */
    size_t size;       /* of the data datagrams: the first one's */
    uint64_t dgrams, bytes, next, reordered, dup, bad, receives, sent;
    bool ended, gro;
    double t_first, t_last;
} receiver;

/* Grow the bitmap to cover seq; false past 2^30 (a bogus number: bad). */
static bool cover(receiver *r, uint64_t seq)
{
    if (seq < r->seen_cap)
        return true;
    if (seq >= (uint64_t)1 << 30)
        return false;
    uint64_t cap = r->seen_cap ? r->seen_cap : 1 << 16;
    while (cap <= seq)
        cap *= 2;
    uint8_t *p = realloc(r->seen, cap / 8);
    if (!p)
        return false;
    memset(p + r->seen_cap / 8, 0, (cap - r->seen_cap) / 8);
    r->seen = p;
    r->seen_cap = cap;
    return true;
}

static bool valid_data(receiver *r, const unsigned char *d, size_t len, uint64_t seq)
{
    if (r->size == 0)
        r->size = len; /* the first one says what they all are */
    return len == r->size &&
           memcmp(d + HEADER, r->pattern + seq % PATTERN_OFFSETS, len - HEADER) == 0 &&
           cover(r, seq);
}

/* Check and count one datagram. */
static void take_one(receiver *r, const unsigned char *d, size_t len)
{
    if (len < HEADER || get_be(d, 4) != MAGIC) {
        r->bad++;
        return;
    }
    uint64_t kind = get_be(d + 4, 4), seq = get_be(d + 8, 8);
    if (kind == KIND_END && len == HEADER) {
        r->ended = true;
        r->sent = seq;
        return;
    }
    if (kind != KIND_DATA || !valid_data(r, d, len, seq)) {
        r->bad++;
        return;
    }
    if (r->seen[seq / 8] & (1u << seq % 8)) {
        r->dup++;
        return;
    }
    r->seen[seq / 8] |= (uint8_t)(1u << seq % 8);
    if (seq < r->next)
        r->reordered++; /* a later one came first */
    else
        r->next = seq + 1;
    r->dgrams++;
    r->bytes += len;
}

/* Receive until the end marker; every datagram of every receive checked. */
static int receive_until_end(receiver *r)
{
    while (!r->ended) {
        size_t seg = 0;
        int flags = 0;
        ssize_t n =
            r->gro ? ctrio_socket_recv_segments(r->sock, r->buf, RECV_BUF, &seg, NULL, NULL, &flags)
                   : ctrio_socket_recv(r->sock, r->buf, RECV_BUF, 0);
        if (n < 0)
            return (int)n;
        uint64_t before = r->dgrams;
        ctrio_segment_iter it;
        ctrio_segment_iter_init(&it, r->buf, (size_t)n, seg);
        const void *d;
        size_t len;
        while (ctrio_segment_next(&it, &d, &len))
            take_one(r, d, len);
        r->bad += (flags & MSG_TRUNC) != 0; /* datagrams cut off: at least one */
        r->receives++;
        if (r->dgrams > before) {
            r->t_last = ctrio_current_time();
            if (before == 0)
                r->t_first = r->t_last;
        }
    }
    return 0;
}

/* The idle limit: once datagrams came, 1 s without one ends the receive
 * (the end markers were all lost, or the sender died). */
static int watchdog(void *arg)
{
    receiver *r = arg;
    for (;;) {
        int rc = ctrio_sleep(0.1);
        if (rc < 0)
            return rc;
        if (r->dgrams > 0 && ctrio_current_time() - r->t_last > IDLE_LIMIT) {
            ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(r->nursery));
            return 0;
        }
    }
}

static int receive(receiver *r)
{
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    r->nursery = &n;
    int rc = ctrio_start_soon(&n, watchdog, r);
    if (rc == 0)
        rc = receive_until_end(r);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n)); /* the watchdog */
    return ctrio_nursery_close(&n, rc);
}

static void print_recv(const receiver *r, double cpu, long long drops)
{
    double wall = r->t_last - r->t_first, mb = (double)r->bytes / 1e6;
    uint64_t expected = r->ended ? r->sent : r->next; /* without the marker: up to the last seen */
    uint64_t lost = expected > r->dgrams ? expected - r->dgrams : 0;
    printf("recv mode=%s size=%zu dgrams=%llu bytes=%llu seconds=%.3f dgram_rate=%.0f "
           "mb_rate=%.1f receives=%llu lost=%llu reordered=%llu dup=%llu bad=%llu end=%s "
           "sent=%llu cpu_us_per_mb=%.0f kdrops=%lld\n",
           r->gro ? "gro" : "plain", r->size, (unsigned long long)r->dgrams,
           (unsigned long long)r->bytes, wall, wall > 0 ? (double)r->dgrams / wall : 0,
           wall > 0 ? mb / wall : 0, (unsigned long long)r->receives, (unsigned long long)lost,
           (unsigned long long)r->reordered, (unsigned long long)r->dup, (unsigned long long)r->bad,
           r->ended ? "yes" : "no", (unsigned long long)expected, mb > 0 ? cpu * 1e6 / mb : 0,
           drops);
    fflush(stdout);
}

/* Bound, with its buffer enlarged, and GRO on if asked and offered. */
static int open_receiver(receiver *r)
{
    int rc = udp_socket(r->o->host, r->o->port, true, &r->sock);
    if (rc < 0)
        return rc;
    int want = RCVBUF_WANTED;
    ctrio_socket_setsockopt(r->sock, SOL_SOCKET, SO_RCVBUF, &want, sizeof want);
    if (r->o->offload) {
        rc = ctrio_socket_set_gro(r->sock, true);
        r->gro = rc == 0;
        if (rc < 0) /* the receive loop is the same: one datagram a receive */
            fprintf(stderr, "udp_bulk: no UDP_GRO here (%s): receiving without\n",
                    ctrio_strerror(rc));
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char addr[128];
    rc = ctrio_socket_getsockname(r->sock, (struct sockaddr *)&ss, &len);
    if (rc == 0)
        rc = ctrio_sockaddr_format((struct sockaddr *)&ss, len, addr, sizeof addr);
    if (rc < 0) {
        ctrio_socket_close(r->sock);
        return rc;
    }
    printf("listening on %s\n", addr);
    fflush(stdout);
    return 0;
}

static int run_receiver(const options *o)
{
    receiver r = {.o = o};
    r.pattern = make_pattern();
    r.buf = malloc(RECV_BUF);
    int rc = r.pattern && r.buf ? open_receiver(&r) : -ENOMEM;
    if (rc < 0) {
        fprintf(stderr, "udp_bulk: cannot listen: %s\n", ctrio_strerror(rc));
        goto cleanup;
    }
    long long rb0 = udp_counter("RcvbufErrors");
    double cpu0 = cpu_seconds();
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, o->seconds);
    rc = ctrio_cancel_scope_close(&cs, receive(&r));
    if (rc < 0)
        fprintf(stderr, "udp_bulk: receive: %s\n", ctrio_strerror(rc));
    print_recv(&r, cpu_seconds() - cpu0, counter_delta(rb0, udp_counter("RcvbufErrors")));
    if (rc == 0 && r.dgrams == 0) {
        fprintf(stderr, "udp_bulk: no datagram arrived\n");
        rc = -ENODATA;
    }
    if (rc == 0 && (r.bad || r.dup)) { /* loopback and the kernel never do this */
        fprintf(stderr, "udp_bulk: %llu bad and %llu duplicated datagrams\n",
                (unsigned long long)r.bad, (unsigned long long)r.dup);
        rc = -EPROTO;
    }
    ctrio_socket_close(r.sock);
cleanup:
    free(r.seen);
    free(r.buf);
    free(r.pattern);
    return rc;
}

/* ---- the program -------------------------------------------------------------- */

static int main_task(void *arg)
{
    options *o = arg;
    return strcmp(o->mode, "send") == 0 ? run_sender(o) : run_receiver(o);
}

/* Options before the operands; false on anything else. */
static bool parse(int argc, char **argv, options *o)
{
    bool send = strcmp(o->mode, "send") == 0;
    int i = 2;
    for (; i < argc && argv[i][0] == '-'; i++) {
        char *end = NULL;
        if (strcmp(argv[i], send ? "--gso" : "--gro") == 0)
            o->offload = true;
        else if (strcmp(argv[i], "-d") == 0 && i + 1 < argc)
            o->seconds = strtod(argv[++i], &end);
        else if (send && strcmp(argv[i], "-s") == 0 && i + 1 < argc)
            o->size = strtoul(argv[++i], &end, 10);
        else
            return false;
        if (end && (*end || end == argv[i]))
            return false;
    }
    if (!(o->seconds > 0 && o->size >= HEADER && o->size <= MAX_DGRAM))
        return false;
    if (send && argc - i == 2) {
        o->host = argv[i];
        o->port = argv[i + 1];
        return true;
    }
    if (!send && (argc - i == 1 || argc - i == 2)) {
        o->port = argv[i];
        o->host = argc - i == 2 ? argv[i + 1] : NULL;
        return true;
    }
    return false;
}

int main(int argc, char **argv)
{
    options o = {.mode = argc > 1 ? argv[1] : "", .size = 1200};
    bool send = strcmp(o.mode, "send") == 0;
    o.seconds = send ? 2 : 30;
    if (!(send || strcmp(o.mode, "recv") == 0) || !parse(argc, argv, &o)) {
        fprintf(stderr,
                "usage: %s send [--gso] [-s SIZE] [-d SECONDS] HOST PORT\n"
                "       %s recv [--gro] [-d SECONDS] PORT [HOST]\n"
                "(SIZE: %d to %d bytes, default 1200)\n",
                argv[0], argv[0], HEADER, MAX_DGRAM);
        return 2;
    }
    return ctrio_run(main_task, &o) == 0 ? 0 : 1;
}
