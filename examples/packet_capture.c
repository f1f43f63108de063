/*
 * packet_capture.c — a tiny tcpdump: every frame on one interface, one line
 * each.
 *
 *   packet_capture [-i IFACE] [-c COUNT] [-w SECONDS]
 *        IFACE (default lo), until COUNT frames (default 10; 0: no limit)
 *        or SECONDS have passed (default: no limit) or Ctrl-C/SIGTERM. The
 *        first line on stdout is "capturing on packet:lo:0x0003:...", then
 *        one line a frame:
 *     0x0800 IPv4 127.0.0.1:45678 > 127.0.0.1:9 udp 33
 *     0x86dd IPv6 ::1 > ::1 icmp6 104
 *     0x0806 ARP 42
 *        (ethertype, network source > destination with the port for UDP and
 *        TCP, protocol, length of the IP packet or else of the frame); the
 *        count goes to stderr at the end. Exits 0, or 2 on an error.
 *
 * An AF_PACKET socket needs CAP_NET_RAW (root): without it the socket is
 * refused with EPERM and the program says so.
 *
 * What it shows:
 *  - A SOCK_RAW AF_PACKET socket bound to an interface and ETH_P_ALL, the
 *    address written "packet:lo:0x0003" (ctrio_sockaddr_parse); recvfrom
 *    gives each frame with its sockaddr_ll (the direction in sll_pkttype).
 *  - On lo the kernel hands each frame over twice, going out and coming in:
 *    the outgoing copy is skipped, as libpcap does. An interface that is
 *    down (or goes down) is reported once as ENETDOWN; the socket stays
 *    bound and sees frames again once the interface is up.
 *  - One deadline over the whole capture (move_on_after), and a count:
 *    whichever comes first ends it.
 */
#include <ctrio.h>

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <math.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SNAP 65600 /* lo's MTU (65536) and its Ethernet header */

typedef struct options {
    const char *ifname;
    int count;
    double seconds;
} options;

static const char *proto_name(int p)
{
    return p == IPPROTO_UDP      ? "udp"
           : p == IPPROTO_TCP    ? "tcp"
           : p == IPPROTO_ICMP   ? "icmp"
           : p == IPPROTO_ICMPV6 ? "icmp6"
                                 : "proto";
}

/* "ADDR:PORT" (through ctrio_sockaddr_format) for UDP and TCP, else "ADDR". */
static void endpoint(int family, const void *ip, int proto, const unsigned char *l4, size_t l4len,
                     int which, char *out, size_t size)
{
    bool ports = (proto == IPPROTO_UDP || proto == IPPROTO_TCP) && l4len >= 4;
    uint16_t port = 0;
    if (ports)
        memcpy(&port, l4 + 2 * which, 2); /* source port first, then destination */
    struct sockaddr_storage ss = {.ss_family = (sa_family_t)family};
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        memcpy(&in->sin_addr, ip, 4);
        in->sin_port = port;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        memcpy(&in6->sin6_addr, ip, 16);
        in6->sin6_port = port;
    }
    if (ports)
        ctrio_sockaddr_format((struct sockaddr *)&ss, sizeof ss, out, size);
    else
        inet_ntop(family, ip, out, (socklen_t)size);
}

/* The network part of one frame's line: "IPv4 SRC > DST PROTO LEN". */
static void describe_ip(const unsigned char *p, size_t n, int family, char *out, size_t size)
{
    size_t hlen = family == AF_INET ? (size_t)(p[0] & 15) * 4 : 40;
    if (n < 20 || (family == AF_INET6 && n < 40) || hlen < 20 || hlen > n) {
        snprintf(out, size, "%s (truncated) %zu", family == AF_INET ? "IPv4" : "IPv6", n);
        return;
    }
    /* IPv4: protocol at 9, addresses at 12 and 16, total length at 2; IPv6:
     * next header at 6 (extension headers not followed), addresses at 8 and
     * 24, payload length at 4 */
    int proto = family == AF_INET ? p[9] : p[6];
    const unsigned char *src = p + (family == AF_INET ? 12 : 8);
    const unsigned char *dst = p + (family == AF_INET ? 16 : 24);
    unsigned len = family == AF_INET ? (unsigned)(p[2] << 8 | p[3]) : 40u + (p[4] << 8 | p[5]);
    char s[INET6_ADDRSTRLEN + 8], d[INET6_ADDRSTRLEN + 8];
    endpoint(family, src, proto, p + hlen, n - hlen, 0, s, sizeof s);
    endpoint(family, dst, proto, p + hlen, n - hlen, 1, d, sizeof d);
    snprintf(out, size, "%s %s > %s %s %u", family == AF_INET ? "IPv4" : "IPv6", s, d,
             proto_name(proto), len);
}

static void print_frame(const unsigned char *f, size_t n)
{
    char what[160];
    uint16_t type = n >= ETH_HLEN ? (uint16_t)(f[12] << 8 | f[13]) : 0;
    if (type == ETH_P_IP)
        describe_ip(f + ETH_HLEN, n - ETH_HLEN, AF_INET, what, sizeof what);
    else if (type == ETH_P_IPV6)
        describe_ip(f + ETH_HLEN, n - ETH_HLEN, AF_INET6, what, sizeof what);
    else
        snprintf(what, sizeof what, "%s %zu", type == ETH_P_ARP ? "ARP" : "frame", n);
    printf("0x%04x %s\n", type, what);
    fflush(stdout);
}

/* An AF_PACKET socket on the interface, every protocol; prints its address. */
static int open_capture(const options *o, ctrio_socket **s)
{
    char text[96];
    snprintf(text, sizeof text, "packet:%s:0x%04x", o->ifname, ETH_P_ALL);
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = ctrio_sockaddr_parse(0, text, 0, &ss, &len);
    if (rc < 0) {
        fprintf(stderr, "packet_capture: %s: %s\n", o->ifname, ctrio_strerror(rc));
        return rc;
    }
    rc = ctrio_socket_open(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL), s);
    if (rc < 0) {
        fprintf(stderr, "packet_capture: AF_PACKET socket: %s%s\n", ctrio_strerror(rc),
                rc == -EPERM ? " (it needs CAP_NET_RAW: run as root)" : "");
        return rc;
    }
    rc = ctrio_socket_bind(*s, (struct sockaddr *)&ss, len);
    len = sizeof ss;
    if (rc == 0)
        rc = ctrio_socket_getsockname(*s, (struct sockaddr *)&ss, &len);
    if (rc == 0 && (rc = ctrio_sockaddr_format((struct sockaddr *)&ss, len, text, sizeof text)) > 0)
        rc = 0;
    if (rc < 0) {
        fprintf(stderr, "packet_capture: bind to %s: %s\n", o->ifname, ctrio_strerror(rc));
        ctrio_socket_close(*s);
        return rc;
    }
    printf("capturing on %s\n", text);
    fflush(stdout);
    return 0;
}

/* Frames until the count (*seen counts them); 0 or an error. */
static int capture_frames(ctrio_socket *s, const options *o, unsigned char *buf, int *seen)
{
    while (o->count == 0 || *seen < o->count) {
        struct sockaddr_ll from;
        socklen_t flen = sizeof from;
        ssize_t n = ctrio_socket_recvfrom(s, buf, SNAP, 0, (struct sockaddr *)&from, &flen);
        if (n == -ENETDOWN) { /* reported once: frames come again once it is up */
            fprintf(stderr, "packet_capture: %s is down, waiting\n", o->ifname);
            continue;
        }
        if (n < 0)
            return (int)n;
        if (from.sll_pkttype == PACKET_OUTGOING && from.sll_hatype == ARPHRD_LOOPBACK)
            continue; /* lo delivers it once more, coming in */
        print_frame(buf, (size_t)n);
        ++*seen;
    }
    return 0;
}

static int capture(const options *o)
{
    ctrio_socket *s;
    unsigned char *buf = malloc(SNAP);
    int rc = buf ? open_capture(o, &s) : -ENOMEM;
    if (rc < 0) {
        free(buf);
        return rc;
    }
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, o->seconds); /* INFINITY: no deadline */
    int seen = 0;
    rc = ctrio_cancel_scope_close(&cs, capture_frames(s, o, buf, &seen));
    if (rc == 0) /* the count reached, or the deadline passed */
        fprintf(stderr, "packet_capture: %d frames\n", seen);
    else if (rc != -ECANCELED)
        fprintf(stderr, "packet_capture: receive: %s\n", ctrio_strerror(rc));
    ctrio_socket_close(s);
    free(buf);
    return rc;
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
        rc = capture(arg); /* -ECANCELED after a signal: the nursery's own */
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&top)); /* the watcher */
    return ctrio_nursery_close(&top, rc);
}

int main(int argc, char **argv)
{
    options o = {"lo", 10, INFINITY};
    int opt, bad = 0;
    char *end = "";
    while ((opt = getopt(argc, argv, "i:c:w:")) != -1) {
        if (opt == 'i')
            o.ifname = optarg;
        else if (opt == 'c')
            bad |= (o.count = (int)strtol(optarg, &end, 10)) < 0 || *end;
        else if (opt == 'w')
            bad |= !((o.seconds = strtod(optarg, &end)) >= 0) || *end;
        else
            bad = 1;
    }
    if (bad || optind != argc) {
        fprintf(stderr, "usage: %s [-i IFACE] [-c COUNT] [-w SECONDS]\n", argv[0]);
        return 2;
    }
    sigset_t set; /* before any thread exists: see echo_server.c */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    return ctrio_run(main_task, &o) == 0 ? 0 : 2;
}
