/*
 * ping.c — ICMP echo without privileges: the kernel's "ping sockets".
 *
 *   ping [-c COUNT] [-i INTERVAL] [-W DEADLINE] [-4|-6] HOST
 *        COUNT probes (default 4; 0: until Ctrl-C), one every INTERVAL
 *        seconds (default 1), each waiting DEADLINE seconds (default 1) for
 *        its reply. Exits 0 if any reply came, 1 if none, 2 on an error.
 *
 * A socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP) (IPPROTO_ICMPV6 for IPv6)
 * sends echo requests without CAP_NET_RAW: the kernel fills in the
 * identifier and the checksum and hands back only the replies to this
 * socket. It is allowed to the groups in the sysctl
 * net.ipv4.ping_group_range (both families; "1 0", the kernel's default,
 * allows no one, root included), e.g.
 *     sysctl -w net.ipv4.ping_group_range="0 2147483647"
 * ping says so when the socket is refused.
 *
 * What it shows:
 *  - A datagram socket of an unusual protocol works like any other.
 *  - A deadline per probe: move_on_after around the wait for one reply. When
 *    it passes, the probe counts as lost and the program goes on; the scope
 *    turns its own cancellation into "nothing came".
 *  - Ctrl-C/SIGTERM cancel the probing; the statistics are still printed
 *    and the exit is clean, as ping(8) does.
 */
#include <ctrio.h>

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAYLOAD 56 /* ping(8)'s default: 64 bytes with the ICMP header */

/* The ICMP and ICMPv6 echo messages share this layout (RFC 792, RFC 4443). */
typedef struct echo_msg {
    uint8_t type, code;
    uint16_t checksum, id, seq; /* the kernel sets checksum and id */
    unsigned char data[PAYLOAD];
} echo_msg;

typedef struct options {
    const char *host;
    int family, count;
    double interval, deadline;
} options;

typedef struct stats {
    int sent, received;
    double min, max, sum; /* round trips, ms */
} stats;

/* Why the socket was refused, in terms a user can act on. */
static void explain_refusal(int rc)
{
    char range[64] = "?";
    FILE *f = fopen("/proc/sys/net/ipv4/ping_group_range", "r");
    if (f) {
        if (fgets(range, sizeof range, f))
            range[strcspn(range, "\n")] = '\0';
        for (char *t = strchr(range, '\t'); t; t = strchr(t, '\t'))
            *t = ' '; /* the file has "1\t0" */
        fclose(f);
    }
    fprintf(stderr,
            "ping: ICMP socket refused (%s): group %u is outside net.ipv4.ping_group_range "
            "(%s); allow it with: sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"\n",
            ctrio_strerror(rc), (unsigned)getegid(), range);
}

/* Wait for the reply to probe seq, at most o->deadline seconds: its round
 * trip in ms, or -1 when none came in time; < -1 (an error code) otherwise. */
static double wait_reply(ctrio_socket *s, const options *o, uint16_t seq, double sent_at)
{
    uint8_t want = o->family == AF_INET6 ? 129 : 0; /* ICMP6_ECHO_REPLY, ICMP_ECHOREPLY */
    echo_msg reply;
    ssize_t n;
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, o->deadline);
    do /* a late reply to an earlier probe is not this one's */
        n = ctrio_socket_recv(s, &reply, sizeof reply, 0);
    while (n >= 0 && (n < 8 || reply.type != want || ntohs(reply.seq) != seq));
    double rtt = (ctrio_current_time() - sent_at) * 1000;
    int rc = ctrio_cancel_scope_close(&cs, n < 0 ? (int)n : 0);
    if (rc < 0)
        return rc; /* -ECANCELED from a signal, or the socket's error */
    return ctrio_cancel_scope_cancelled_caught(&cs) ? -1 : rtt;
}

/* One probe: send, wait, print. Returns 0 or an error. */
static int probe(ctrio_socket *s, const options *o, const char *addr, uint16_t seq, stats *st)
{
    echo_msg req = {.type = o->family == AF_INET6 ? 128 : 8, .seq = htons(seq)};
    for (size_t i = 0; i < PAYLOAD; i++)
        req.data[i] = (unsigned char)i;
    double sent_at = ctrio_current_time();
    ssize_t n = ctrio_socket_send(s, &req, sizeof req, 0);
    if (n < 0)
        return (int)n;
    st->sent++;
    double rtt = wait_reply(s, o, seq, sent_at);
    if (rtt < -1)
        return (int)rtt;
    if (rtt < 0) {
        printf("no reply from %s for icmp_seq=%u within %g s\n", addr, seq, o->deadline);
    } else {
        printf("%zu bytes from %s: icmp_seq=%u time=%.3f ms\n", sizeof req, addr, seq, rtt);
        st->min = st->received == 0 || rtt < st->min ? rtt : st->min;
        st->max = rtt > st->max ? rtt : st->max;
        st->sum += rtt;
        st->received++;
    }
    fflush(stdout);
    return 0;
}

static void print_stats(const options *o, const stats *st)
{
    printf("--- %s ping statistics ---\n", o->host);
    printf("%d packets transmitted, %d received, %d%% packet loss\n", st->sent, st->received,
           st->sent ? (st->sent - st->received) * 100 / st->sent : 0);
    if (st->received)
        printf("rtt min/avg/max = %.3f/%.3f/%.3f ms\n", st->min, st->sum / st->received, st->max);
    fflush(stdout);
}

/* An ICMP socket connected to the host's first address (text in addr). */
static int open_ping_socket(options *o, ctrio_socket **s, char *addr, size_t size)
{
    struct addrinfo hints = {.ai_family = o->family, .ai_socktype = SOCK_DGRAM};
    struct addrinfo *ai;
    int rc = ctrio_getaddrinfo(o->host, NULL, &hints, &ai);
    if (rc < 0) {
        fprintf(stderr, "ping: %s: %s\n", o->host, ctrio_strerror(rc));
        return rc;
    }
    o->family = ai->ai_family;
    /* the address alone, without the ":0" of the port */
    if (getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, (socklen_t)size, NULL, 0, NI_NUMERICHOST))
        snprintf(addr, size, "%s", o->host);
    rc = ctrio_socket_open(o->family, SOCK_DGRAM,
                           o->family == AF_INET6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP, s);
    if (rc == -EACCES || rc == -EPERM)
        explain_refusal(rc);
    else if (rc < 0)
        fprintf(stderr, "ping: socket: %s\n", ctrio_strerror(rc));
    if (rc == 0 && (rc = ctrio_socket_connect(*s, ai->ai_addr, ai->ai_addrlen)) < 0) {
        fprintf(stderr, "ping: connect %s: %s\n", addr, ctrio_strerror(rc));
        ctrio_socket_close(*s);
    }
    ctrio_freeaddrinfo(ai);
    return rc;
}

static int ping_all(options *o)
{
    ctrio_socket *s;
    char addr[NI_MAXHOST];
    int rc = open_ping_socket(o, &s, addr, sizeof addr);
    if (rc < 0)
        return rc;
    printf("PING %s (%s): %d data bytes\n", o->host, addr, PAYLOAD);
    stats st = {0};
    for (int seq = 1; rc == 0 && (o->count == 0 || seq <= o->count); seq++) {
        double next = ctrio_current_time() + o->interval;
        rc = probe(s, o, addr, (uint16_t)seq, &st);
        if (rc == 0 && (o->count == 0 || seq < o->count))
            rc = ctrio_sleep_until(next);
    }
    if (rc < 0 && rc != -ECANCELED)
        fprintf(stderr, "ping: %s: %s\n", addr, ctrio_strerror(rc));
    print_stats(o, &st); /* also after Ctrl-C */
    ctrio_socket_close(s);
    if (rc < 0 && rc != -ECANCELED)
        return rc;
    return st.received > 0 ? 0 : -ETIMEDOUT;
}

/* Wait for Ctrl-C or SIGTERM, then cancel everything in the nursery. */
static int watch_signals(void *arg)
{
    static const int signals[] = {SIGINT, SIGTERM};
    int sig = ctrio_wait_signal(signals, 2);
    if (sig > 0)
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(arg));
    return sig < 0 ? sig : 0;
}

static int main_task(void *arg)
{
    ctrio_nursery top;
    ctrio_nursery_open(&top);
    int rc = ctrio_start_soon(&top, watch_signals, &top);
    if (rc == 0)
        rc = ping_all(arg); /* -ECANCELED after a signal: the nursery's own */
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&top)); /* the watcher */
    return ctrio_nursery_close(&top, rc);
}

int main(int argc, char **argv)
{
    options o = {NULL, AF_UNSPEC, 4, 1.0, 1.0};
    int opt, bad = 0;
    char *end = "";
    while ((opt = getopt(argc, argv, "c:i:W:46")) != -1) {
        if (opt == 'c')
            bad |= (o.count = (int)strtol(optarg, &end, 10)) < 0 || *end;
        else if (opt == 'i')
            bad |= (o.interval = strtod(optarg, &end)) < 0 || *end;
        else if (opt == 'W')
            bad |= (o.deadline = strtod(optarg, &end)) < 0 || *end;
        else if (opt == '4' || opt == '6')
            o.family = opt == '4' ? AF_INET : AF_INET6;
        else
            bad = 1;
    }
    if (bad || optind != argc - 1) {
        fprintf(stderr, "usage: %s [-c COUNT] [-i INTERVAL] [-W DEADLINE] [-4|-6] HOST\n", argv[0]);
        return 2;
    }
    o.host = argv[optind];
    sigset_t set; /* before any thread exists: see echo_server.c */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    int rc = ctrio_run(main_task, &o);
    return rc == 0 ? 0 : rc == -ETIMEDOUT ? 1 : 2;
}
