/*
 * dns_responder.c — a DNS-style UDP responder: A and AAAA records from a
 * small table, queries taken and answered in batches, each answer sent from
 * the address its query was sent to.
 *
 *   dns_responder [-p PORT] [--name NAME=ADDR ...] [HOST]
 *       -p PORT      the port (default 53, which needs root or
 *                    CAP_NET_BIND_SERVICE; 0 picks one)
 *       --name N=A   N answers A: an IPv4 address is an A record, an IPv6
 *                    one an AAAA record; repeat for more (same name too).
 *                    "localhost" always answers 127.0.0.1 and ::1.
 *       HOST         a numeric address to bind (default "::", dual-stack,
 *                    which takes IPv4 too; "0.0.0.0" where there is no IPv6)
 *   The first line on stdout is "listening on ADDR:PORT"; Ctrl-C/SIGTERM
 *   stop it (status 0) after a line "queries Q, answers A, dropped D".
 *   Try: dig @127.0.0.1 -p PORT +noedns localhost AAAA
 *
 * What it shows:
 *  - Batches: one ctrio_socket_recvmmsg takes every query queued (up to 32),
 *    one ctrio_socket_sendmmsg sends all their answers. The task waits for
 *    readiness (one epoll_wait) only once the queue is empty, never once per
 *    datagram: the cost that held a Trio DNS server to half the rate of
 *    blocking Python (Trio #1595).
 *  - IP_PKTINFO / IPV6_PKTINFO: a server bound to a wildcard address on a host
 *    with several addresses must answer from the one it was asked on, or the
 *    client (a connected socket, any resolver that checks where the answer
 *    came from) drops the answer: the kernel would pick the source by route.
 *    Each query's destination comes from ctrio_cmsg_get_pktinfo, and its
 *    answer carries it back with ctrio_cmsg_add_pktinfo: no CMSG arithmetic,
 *    each message of the batch with its own control storage.
 *  - Untrusted bytes: every byte read is bounds-checked first. A malformed
 *    query gets FORMERR, an opcode other than QUERY NOTIMP, a class other than
 *    IN REFUSED, an unknown name NXDOMAIN (RFC 1035 section 4.1.1); what has
 *    no header to answer with, or is itself a response, gets nothing.
 */
#include <ctrio.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* ---- the table of names ---------------------------------------------------- */

enum { NAME_MAX_WIRE = 255, TABLE_MAX = 64 };
enum { TYPE_A = 1, TYPE_AAAA = 28, TYPE_ANY = 255, CLASS_IN = 1, CLASS_ANY = 255 };

typedef struct record {
    unsigned char name[NAME_MAX_WIRE]; /* wire form (length-prefixed labels), lower case */
    size_t name_len;
    uint16_t type; /* TYPE_A or TYPE_AAAA */
    unsigned char addr[16];
} record;

typedef struct table {
    record rec[TABLE_MAX];
    int n;
} table;

static unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* "www.example.test" (a final dot allowed) to wire form, lower case (names
 * compare without regard to ASCII case, RFC 4343). -EINVAL for an empty
 * label, a label over 63 bytes or a name over 255. */
static int name_to_wire(const char *text, unsigned char *out, size_t *out_len)
{
    size_t len = 0;
    while (*text) {
        size_t label = strcspn(text, ".");
        if (label == 0 || label > 63 || len + 1 + label + 1 > NAME_MAX_WIRE)
            return -EINVAL;
        out[len++] = (unsigned char)label;
        for (size_t i = 0; i < label; i++)
            out[len++] = ascii_lower((unsigned char)text[i]);
        text += label;
        if (*text == '.')
            text++;
    }
    if (len == 0)
        return -EINVAL; /* the root has no addresses here */
    out[len++] = 0;
    *out_len = len;
    return 0;
}

/* Add NAME=ADDR (command-line form) to t. */
static int table_add(table *t, const char *spec)
{
    const char *eq = strchr(spec, '=');
    if (!eq || t->n == TABLE_MAX || (size_t)(eq - spec) >= NAME_MAX_WIRE)
        return -EINVAL;
    char name[NAME_MAX_WIRE];
    memcpy(name, spec, (size_t)(eq - spec));
    name[eq - spec] = '\0';
    record *r = &t->rec[t->n];
    if (name_to_wire(name, r->name, &r->name_len) < 0)
        return -EINVAL;
    if (inet_pton(AF_INET, eq + 1, r->addr) == 1)
        r->type = TYPE_A;
    else if (inet_pton(AF_INET6, eq + 1, r->addr) == 1)
        r->type = TYPE_AAAA;
    else
        return -EINVAL;
    t->n++;
    return 0;
}

/* Does the wire-form name q (as received) name r? */
static bool name_matches(const record *r, const unsigned char *q, size_t q_len)
{
    if (q_len != r->name_len)
        return false;
    /* length bytes are below 64, so lowering them changes nothing */
    for (size_t i = 0; i < q_len; i++)
        if (ascii_lower(q[i]) != r->name[i])
            return false;
    return true;
}

/* ---- DNS messages (RFC 1035 section 4) ---------------------------------- */

enum { HEADER = 12, UDP_MAX = 512 /* section 4.2.1, without EDNS */, TTL = 60 };
enum { NOERROR = 0, FORMERR = 1, NXDOMAIN = 3, NOTIMP = 4, REFUSED = 5, NO_ANSWER = -1 };
enum { FLAG_QR = 0x8000, FLAG_AA = 0x0400, FLAG_TC = 0x0200, FLAG_RD = 0x0100 };

typedef struct query {
    uint16_t id, flags;
    size_t end;   /* header + question: bytes copied into the answer */
    size_t qname; /* offset of the name; it ends at end - 4 */
    uint16_t qtype, qclass;
} query;

static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

/* The end of the name at m[pos..len): the offset after its root label, or 0
 * when it runs past len or 255 bytes or holds a compression pointer (which a
 * question's first name has nothing before it to point to). */
static size_t name_end(const unsigned char *m, size_t len, size_t pos)
{
    size_t start = pos;
    for (;;) {
        if (pos >= len || (m[pos] & 0xC0) != 0)
            return 0;
        size_t label = m[pos];
        pos += 1 + label;
        if (pos - start > NAME_MAX_WIRE)
            return 0;
        if (label == 0)
            return pos;
    }
}

/* Read the query m[0..len) (cut: the datagram was longer than the buffer)
 * into q: NOERROR when it is a question to look up; FORMERR or NOTIMP to be
 * answered with the header alone; NO_ANSWER when there is no header to
 * answer, or the message is a response (answering those could loop between
 * two servers). */
static int parse_query(const unsigned char *m, size_t len, bool cut, query *q)
{
    if (len < HEADER)
        return NO_ANSWER;
    q->id = get16(m);
    q->flags = get16(m + 2);
    if (q->flags & FLAG_QR)
        return NO_ANSWER;
    if (((q->flags >> 11) & 0xF) != 0) /* opcode: only QUERY */
        return NOTIMP;
    /* one question, nothing in answer or authority (a query has none), and
     * no additional records: a responder without EDNS answers an OPT record
     * with FORMERR (RFC 6891 section 7), and the requester retries without */
    if (cut || get16(m + 4) != 1 || get16(m + 6) || get16(m + 8) || get16(m + 10))
        return FORMERR;
    q->qname = HEADER;
    size_t pos = name_end(m, len, HEADER);
    if (pos == 0 || len - pos != 4) /* the type and class, then nothing */
        return FORMERR;
    q->qtype = get16(m + pos);
    q->qclass = get16(m + pos + 2);
    q->end = pos + 4;
    return NOERROR;
}

/* Append the answer records of q's name and type to out[len..UDP_MAX); sets
 * TC in out's header when one did not fit. Returns the new length. */
static size_t add_answers(const table *t, const unsigned char *m, const query *q,
                          unsigned char *out, size_t len)
{
    uint16_t count = 0;
    for (int i = 0; i < t->n; i++) {
        const record *r = &t->rec[i];
        if (!name_matches(r, m + q->qname, q->end - 4 - q->qname) ||
            (q->qtype != r->type && q->qtype != TYPE_ANY))
            continue;
        size_t rdlen = r->type == TYPE_A ? 4 : 16;
        if (len + 12 + rdlen > UDP_MAX) {
            out[2] |= FLAG_TC >> 8; /* the client may ask again over TCP */
            break;
        }
        unsigned char *rr = out + len;
        put16(rr, 0xC000 | HEADER); /* the name: a pointer to the question's */
        put16(rr + 2, r->type);
        put16(rr + 4, CLASS_IN);
        put16(rr + 6, 0);
        put16(rr + 8, TTL);
        put16(rr + 10, (uint16_t)rdlen);
        memcpy(rr + 12, r->addr, rdlen);
        len += 12 + rdlen;
        count++;
    }
    put16(out + 6, count);
    return len;
}

static bool name_known(const table *t, const unsigned char *m, const query *q)
{
    for (int i = 0; i < t->n; i++)
        if (name_matches(&t->rec[i], m + q->qname, q->end - 4 - q->qname))
            return true;
    return false;
}

/* The answer to the query m[0..len) in out (UDP_MAX bytes): its length, or 0
 * for none. */
static size_t answer(const table *t, const unsigned char *m, size_t len, bool cut,
                     unsigned char *out)
{
    query q = {0};
    int rcode = parse_query(m, len, cut, &q);
    if (rcode == NO_ANSWER)
        return 0;
    memset(out, 0, HEADER);
    put16(out, q.id);
    /* the opcode and RD echoed (RFC 1035 section 4.1.1); no recursion here */
    uint16_t flags = FLAG_QR | (q.flags & (0x7800 | FLAG_RD));
    if (rcode != NOERROR) { /* the header alone: the question may not be one */
        put16(out + 2, (uint16_t)(flags | rcode));
        return HEADER;
    }
    memcpy(out, m, q.end); /* the question as asked: some resolvers randomise
                            * its letters' case and check it comes back */
    put16(out + 4, 1);
    put16(out + 6, 0);
    if (q.qclass != CLASS_IN && q.qclass != CLASS_ANY)
        rcode = REFUSED;
    else if (q.qtype >= 251 && q.qtype <= 254) /* IXFR, AXFR, MAILB, MAILA */
        rcode = NOTIMP;
    else if (!name_known(t, m, &q))
        rcode = NXDOMAIN;
    /* authoritative for the names we hold; a known name without a record of
     * the type asked is NOERROR with no answer, not NXDOMAIN (RFC 2308) */
    if (rcode == NOERROR || rcode == NXDOMAIN)
        flags |= FLAG_AA;
    put16(out + 2, (uint16_t)(flags | rcode));
    return rcode == NOERROR ? add_answers(t, m, &q, out, q.end) : q.end;
}

/* ---- batches --------------------------------------------------------------- */

enum { BATCH = 32 };

typedef struct batch {
    struct mmsghdr in[BATCH], out[BATCH];
    struct iovec in_iov[BATCH], out_iov[BATCH];
    struct sockaddr_storage peer[BATCH];
    /* control storage of each message: where the query went, where the
     * answer comes from (IPV6_PKTINFO's 20 bytes: either family fits) */
    CTRIO_CMSG_STORAGE(in_ctl[BATCH], CTRIO_CMSG_SPACE_PKTINFO);
    CTRIO_CMSG_STORAGE(out_ctl[BATCH], CTRIO_CMSG_SPACE_PKTINFO);
    unsigned char query[BATCH][UDP_MAX], reply[BATCH][UDP_MAX];
} batch;

typedef struct counts {
    unsigned long queries, answers, dropped;
} counts;

/* Make every message ready to receive (a receive writes back msg_namelen
 * and msg_controllen). */
static void batch_rearm(batch *b)
{
    for (int i = 0; i < BATCH; i++) {
        b->in_iov[i] = (struct iovec){b->query[i], UDP_MAX};
        b->in[i].msg_hdr = (struct msghdr){.msg_name = &b->peer[i],
                                           .msg_namelen = sizeof b->peer[i],
                                           .msg_iov = &b->in_iov[i],
                                           .msg_iovlen = 1,
                                           .msg_control = &b->in_ctl[i],
                                           .msg_controllen = sizeof b->in_ctl[i]};
    }
}

/* out[k] answers in[i] with len bytes of reply[i], from the address in[i]
 * was sent to when the kernel told it (not when bound to one address). */
static void batch_prepare(batch *b, int i, int k, size_t len)
{
    b->out_iov[k] = (struct iovec){b->reply[i], len};
    struct msghdr *h = &b->out[k].msg_hdr;
    *h = (struct msghdr){.msg_name = &b->peer[i],
                         .msg_namelen = b->in[i].msg_hdr.msg_namelen,
                         .msg_iov = &b->out_iov[k],
                         .msg_iovlen = 1};
    struct sockaddr_storage dst;
    ctrio_cmsg_buf cb;
    if (ctrio_cmsg_get_pktinfo(&b->in[i].msg_hdr, &dst, NULL) == 0 &&
        ctrio_cmsg_buf_init(&cb, h, &b->out_ctl[k], sizeof b->out_ctl[k]) == 0)
        /* interface 0: the route's for IPv4, dst's scope for link-local IPv6 */
        ctrio_cmsg_add_pktinfo(&cb, (struct sockaddr *)&dst, 0);
}

/* Answer in[0..n) into out[0..): how many answers there are. */
static int batch_answer(const table *t, batch *b, int n, counts *c)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        bool cut = (b->in[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
        size_t len = answer(t, b->query[i], b->in[i].msg_len, cut, b->reply[i]);
        c->queries++;
        if (len > 0)
            batch_prepare(b, i, k++, len);
        else
            c->dropped++;
    }
    return k;
}

/* Send out[0..n), as many per sendmmsg as the kernel takes. An answer that
 * fails is skipped (say, to a peer whose ICMP error came back). Returns 0,
 * or -ECANCELED / -EBADF. */
static int batch_send(ctrio_socket *sock, batch *b, int n, counts *c)
{
    int sent = 0;
    while (sent < n) {
        int r = ctrio_socket_sendmmsg(sock, b->out + sent, (unsigned)(n - sent), 0);
        if (r == -ECANCELED || r == -EBADF)
            return r;
        if (r > 0) {
            c->answers += (unsigned)r;
            sent += r;
        } else {
            c->dropped++;
            sent++;
        }
    }
    return 0;
}

typedef struct server {
    ctrio_socket *sock;
    const table *names;
    counts counts;
} server;

/* Until cancelled: a batch in, a batch out. */
static int serve(void *arg)
{
    server *s = arg;
    batch *b = malloc(sizeof *b);
    int rc = -ENOMEM;
    if (!b)
        goto cleanup;
    for (;;) {
        batch_rearm(b);
        int n = ctrio_socket_recvmmsg(s->sock, b->in, BATCH, 0);
        rc = n > 0 ? batch_send(s->sock, b, batch_answer(s->names, b, n, &s->counts), &s->counts)
                   : n;
        if (rc == -ECANCELED || rc == -EBADF)
            break;
        /* any other error concerns one datagram: go on */
    }
cleanup:
    free(b);
    return rc;
}

/* ---- the program ----------------------------------------------------------- */

/* A UDP socket bound to host:port (host NULL: "::" dual-stack, or "0.0.0.0"
 * where the kernel has no IPv6), asking for each datagram's destination. */
static int open_bound(const char *host, int port, ctrio_socket **out)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = ctrio_sockaddr_parse(0, host ? host : "::", port, &ss, &len);
    if (rc < 0)
        return rc;
    rc = ctrio_socket_open(ss.ss_family, SOCK_DGRAM, 0, out);
    if (rc == -EAFNOSUPPORT && !host)
        return open_bound("0.0.0.0", port, out);
    if (rc < 0)
        return rc;
    int off = 0; /* IPv4 too, whatever net.ipv6.bindv6only says */
    if (ss.ss_family == AF_INET6)
        rc = ctrio_socket_setsockopt(*out, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    if (rc == 0)
        rc = ctrio_socket_bind(*out, (struct sockaddr *)&ss, len);
    if (rc == 0)
        rc = ctrio_socket_enable_cmsg(*out, CTRIO_CMSG_PKTINFO);
    if (rc < 0)
        ctrio_socket_close(*out);
    return rc;
}

static int watch_signals(void *arg)
{
    ctrio_nursery *top = arg;
    static const int signals[] = {SIGINT, SIGTERM};
    int sig = ctrio_wait_signal(signals, 2);
    if (sig > 0)
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(top));
    return sig < 0 ? sig : 0;
}

typedef struct options {
    const char *host;
    int port;
    table names;
} options;

static int main_task(void *arg)
{
    options *o = arg;
    server s = {.names = &o->names};
    int rc = open_bound(o->host, o->port, &s.sock);
    if (rc < 0) {
        fprintf(stderr, "dns_responder: cannot listen on %s port %d: %s\n",
                o->host ? o->host : "::", o->port, ctrio_strerror(rc));
        return rc;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char text[128];
    rc = ctrio_socket_getsockname(s.sock, (struct sockaddr *)&ss, &len);
    if (rc == 0 && ctrio_sockaddr_format((struct sockaddr *)&ss, len, text, sizeof text) > 0) {
        printf("listening on %s\n", text);
        fflush(stdout);
        ctrio_nursery top;
        ctrio_nursery_open(&top);
        ctrio_start_soon(&top, watch_signals, &top);
        ctrio_start_soon(&top, serve, &s);
        rc = ctrio_nursery_close(&top, 0);
        printf("queries %lu, answers %lu, dropped %lu\n", s.counts.queries, s.counts.answers,
               s.counts.dropped);
    }
    ctrio_socket_close(s.sock);
    return rc;
}

static int usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [-p PORT] [--name NAME=ADDR ...] [HOST]\n", argv0);
    return 2;
}

int main(int argc, char **argv)
{
    options o = {.port = 53};
    table_add(&o.names, "localhost=127.0.0.1");
    table_add(&o.names, "localhost=::1");
    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) {
            long p = strtol(argv[++i], &end, 10);
            if (*argv[i] == '\0' || *end != '\0' || p < 0 || p > 65535)
                return usage(argv[0]);
            o.port = (int)p;
        } else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            if (table_add(&o.names, argv[++i]) < 0) {
                fprintf(stderr, "dns_responder: '%s': not NAME=ADDR (an IPv4 or IPv6 address), "
                                "or more than %d names\n", argv[i], TABLE_MAX);
                return 2;
            }
        } else if (argv[i][0] != '-' && !o.host) {
            o.host = argv[i];
        } else {
            return usage(argv[0]);
        }
    }
    sigset_t set; /* before any thread exists: see echo_server.c */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    return ctrio_run(main_task, &o) == 0 ? 0 : 1;
}
