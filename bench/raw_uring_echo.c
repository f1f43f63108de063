/*
 * raw_uring_echo.c — the second reference echo server of the echo benchmark
 * (issue #11): the best hand-written io_uring server we know how to write
 * with liburing 2.3, so that ctrio on io_uring is measured against io_uring
 * at its best and not only against epoll.
 *
 * One thread, one ring, one io_uring_enter per loop turn (submit and wait in
 * one call). What makes it cheap:
 *  - SINGLE_ISSUER|DEFER_TASKRUN (6.1): completions are run in our own
 *    io_uring_enter, not by interrupting the thread; refused by an older
 *    kernel, the ring is set up without them (COOP_TASKRUN, then nothing);
 *  - multishot accept: one SQE for every connection;
 *  - multishot recv from a provided-buffer ring: one SQE per connection for
 *    all its data, the kernel picks a buffer per completion; a small ring
 *    (2 MiB) that stays in the cache;
 *  - the echo is sent from the very buffer the data arrived in (no copy),
 *    and the buffer goes back to the ring when the send has completed;
 *  - one send in flight per connection keeps the bytes in order; what
 *    arrives meanwhile queues and goes out in one sendmsg of up to
 *    MAX_IOV buffers; a turn's sends are submitted at its end, small ones
 *    first; MSG_WAITALL has the kernel finish a send that the
 *    socket's buffer cut short, and a short result is sent on from where it
 *    stopped anyway;
 *  - a multishot recv that ends (ENOBUFS when the ring ran dry, or a
 *    completion without IORING_CQE_F_MORE) is armed again: at once, or for
 *    ENOBUFS once a quarter of the ring has come back;
 *  - TCP_NODELAY is set on the listening socket, which accepted sockets
 *    inherit on Linux: no setsockopt per connection;
 *  - a connection is closed with an IORING_OP_CLOSE, not a close() call.
 * No SQPOLL (it burns a core on a 2-core machine) and no zero-copy send
 * (it pays only above ~10 KiB, issue #11).
 *
 *   raw_uring_echo PORT [HOST]     prints "listening on HOST:PORT", exits 0
 *                                  on SIGTERM or SIGINT, 77 at start where
 *                                  io_uring is refused (seccomp, sysctl)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define RING_ENTRIES 1024     /* SQ; the CQ is 8 times as large (multishot) */
/* The kernel takes buffers from the ring in order, so all of them are in
 * use in turn: the ring is the working set of every copy in and out. 128 x
 * 16 KiB (2 MiB, this VM's L2) cost 5-15% less CPU per byte on bulk-16k and
 * stream-16k-8 than 2048 x 16 KiB (32 MiB); 64 KiB buffers did no better.
 * Floods run the ring dry (ENOBUFS), which is the backpressure the epoll
 * server gets by not reading while a write is pending. */
#define NBUF 128              /* provided buffers (power of 2, < 65536) */
#define BUF_SIZE 16384
#define REARM_FREE (NBUF / 4) /* buffers in the ring before starved recvs are armed again */
#define BGID 0
/* Buffers per sendmsg: 4 x 16 KiB, the epoll server's 64 KiB per write. A
 * send copies in one go, delaying all else in that io_uring_enter: with 64
 * (1 MiB) mixed-4-4's ping-pongs ran at 14771 rt/s, p99 725 us, with 8 at
 * 19215 / 424, with 4 at 22395 / 492 (raw epoll 27817 / 241; 5 alternating
 * rounds); bulk-16k's CPU per block rose 6.33 -> 7.13 us (raw 6.38). */
#define MAX_IOV 4
#define NO_BUF 0xffffu

/* user_data: a conn pointer (8-aligned) or NULL, with the operation in the low bits */
enum op { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_SIGNAL, OP_IGNORE };
#define OP_MASK 7u

typedef struct conn {
    int fd;
    bool recv_armed, send_busy, closing, starved;
    uint16_t q_head, q_tail; /* queue of received buffers, linked by buf_next[] */
    uint32_t q_off;          /* bytes of the head buffer already sent */
    unsigned n_iov;          /* iovecs of the send in flight */
    struct conn *starved_next;
    struct conn *send_next;  /* in small_sends or large_sends */
    struct msghdr mh;
    struct iovec iov[MAX_IOV];
} conn;

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static unsigned char *bufs;
static unsigned br_pending;      /* buffers added, not yet published */
static unsigned bufs_out;        /* buffers the kernel handed us */
static uint16_t buf_next[NBUF];  /* queue links */
static uint32_t buf_len[NBUF];   /* bytes received into each queued buffer */
static conn *starved;            /* connections whose recv ended in ENOBUFS */
static conn *small_sends, *large_sends; /* sends to submit at the end of the turn */
static int lfd;

static uint64_t tag(conn *c, enum op op) { return (uint64_t)(uintptr_t)c | op; }

static struct io_uring_sqe *get_sqe(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) { /* SQ full: hand it to the kernel and take another */
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    return sqe; /* never NULL right after a submit */
}

static unsigned char *buf_addr(unsigned bid) { return bufs + (size_t)bid * BUF_SIZE; }

static void buf_return(unsigned bid)
{
    io_uring_buf_ring_add(br, buf_addr(bid), BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(NBUF), (int)br_pending);
    br_pending++;
    bufs_out--;
}

static void arm_accept(void)
{
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, tag(NULL, OP_ACCEPT));
}

static void arm_recv(conn *c)
{
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, tag(c, OP_RECV));
    c->recv_armed = true;
}

/* Closes and frees a connection once no operation of it is in flight. */
static void maybe_free(conn *c)
{
    if (!c->closing || c->recv_armed || c->send_busy)
        return;
    if (c->starved) { /* (not left for rearm_starved: its buffers may be what the ring lacks) */
        conn **p = &starved;
        while (*p != c)
            p = &(*p)->starved_next;
        *p = c->starved_next;
    }
    while (c->q_head != NO_BUF) {
        unsigned bid = c->q_head;
        c->q_head = buf_next[bid];
        buf_return(bid);
    }
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_close(sqe, c->fd);
    io_uring_sqe_set_data64(sqe, tag(NULL, OP_IGNORE));
    free(c);
}

static void start_close(conn *c)
{
    if (!c->closing && c->recv_armed) { /* the multishot recv holds the file open */
        struct io_uring_sqe *sqe = get_sqe();
        io_uring_prep_cancel64(sqe, tag(c, OP_RECV), 0);
        io_uring_sqe_set_data64(sqe, tag(NULL, OP_IGNORE));
    }
    c->closing = true;
    maybe_free(c);
}

/* Sends the queue from its head: one buffer with send, several with sendmsg. */
static void submit_send(conn *c)
{
    struct io_uring_sqe *sqe = get_sqe();
    unsigned bid = c->q_head;
    if (buf_next[bid] == NO_BUF) {
        io_uring_prep_send(sqe, c->fd, buf_addr(bid) + c->q_off, buf_len[bid] - c->q_off,
                           MSG_WAITALL | MSG_NOSIGNAL);
        c->n_iov = 1;
    } else {
        unsigned n = 0, off = c->q_off;
        for (; bid != NO_BUF && n < MAX_IOV; bid = buf_next[bid], n++, off = 0) {
            c->iov[n].iov_base = buf_addr(bid) + off;
            c->iov[n].iov_len = buf_len[bid] - off;
        }
        memset(&c->mh, 0, sizeof c->mh);
        c->mh.msg_iov = c->iov;
        c->mh.msg_iovlen = n;
        io_uring_prep_sendmsg(sqe, c->fd, &c->mh, MSG_WAITALL | MSG_NOSIGNAL);
        c->n_iov = n;
    }
    io_uring_sqe_set_data64(sqe, tag(c, OP_SEND));
}

/* The kernel runs the SQEs of a turn in order, each send copying all it
 * can: a ping-pong's 64 bytes queued behind four floods' sends waited for
 * megabytes of copying. So a turn's sends are submitted at its end, small
 * ones first (as the load generator serves its ping-pongs first). */
static void start_send(conn *c)
{
    unsigned bid = c->q_head;
    conn **list = buf_next[bid] == NO_BUF && buf_len[bid] - c->q_off <= 4096 ? &small_sends
                                                                             : &large_sends;
    c->send_next = *list;
    *list = c;
    c->send_busy = true;
}

static void submit_sends(void)
{
    for (conn **list = &small_sends; list; list = list == &small_sends ? &large_sends : NULL) {
        while (*list) {
            conn *c = *list;
            *list = c->send_next;
            submit_send(c);
        }
    }
}

static void on_recv(conn *c, struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        c->recv_armed = false;
    if (cqe->res > 0) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        bufs_out++;
        if (c->closing) {
            buf_return(bid);
        } else {
            buf_len[bid] = (uint32_t)cqe->res;
            buf_next[bid] = NO_BUF;
            if (c->q_head == NO_BUF)
                c->q_head = (uint16_t)bid;
            else
                buf_next[c->q_tail] = (uint16_t)bid;
            c->q_tail = (uint16_t)bid;
            if (!c->send_busy)
                start_send(c);
        }
        if (!c->recv_armed && !c->closing)
            arm_recv(c); /* ended with data: the kernel's choice (CQ overflow, say) */
    } else if (cqe->res == -ENOBUFS && !c->closing && !c->recv_armed) {
        c->starved = true; /* armed again when buffers come back */
        c->starved_next = starved;
        starved = c;
        return;
    } else if (!c->recv_armed && !c->send_busy) {
        /* end of stream, reset, or cancelled; with a send in flight, on_send
         * closes once the queue is out */
        c->closing = true;
    }
    if (c->closing)
        maybe_free(c);
}

static void on_send(conn *c, struct io_uring_cqe *cqe)
{
    c->send_busy = false;
    if (cqe->res < 0) {
        start_close(c);
        return;
    }
    size_t left = (size_t)cqe->res;
    for (unsigned i = 0; i < c->n_iov; i++) {
        unsigned bid = c->q_head;
        size_t have = buf_len[bid] - c->q_off;
        if (left < have) { /* short: send on from here */
            c->q_off += (uint32_t)left;
            break;
        }
        left -= have;
        c->q_off = 0;
        c->q_head = buf_next[bid];
        buf_return(bid);
    }
    if (c->q_head != NO_BUF && !c->closing)
        start_send(c);
    else if (c->closing || (!c->recv_armed && !c->starved))
        start_close(c); /* (the peer is done sending and has its echo) */
}

static void on_accept(struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        arm_accept();
    if (cqe->res < 0)
        return; /* EMFILE, ECONNABORTED...: the next one may do */
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(cqe->res);
        return;
    }
    c->fd = cqe->res;
    c->q_head = c->q_tail = NO_BUF;
    arm_recv(c);
}

static void rearm_starved(void)
{
    /* (re-armed at one free buffer, the first recv takes it and the others
     * fail at once with ENOBUFS again; measured, the difference is small) */
    while (starved && NBUF - bufs_out >= REARM_FREE) {
        conn *c = starved;
        starved = c->starved_next;
        c->starved = false;
        arm_recv(c); /* (a closing one has left the list) */
    }
}

/* The ring with the cheapest completion model the kernel accepts. */
static int setup_ring(void)
{
    static const unsigned flags[] = {
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        struct io_uring_params p = {.flags = flags[i] | IORING_SETUP_CQSIZE,
                                    .cq_entries = RING_ENTRIES * 8};
        rc = io_uring_queue_init_params(RING_ENTRIES, &ring, &p);
        if (rc != -EINVAL)
            break;
    }
    return rc;
}

static int setup_buffers(void)
{
    size_t ring_size = NBUF * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, ring_size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    bufs = mmap(NULL, (size_t)NBUF * BUF_SIZE, PROT_READ | PROT_WRITE,
                MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED || bufs == MAP_FAILED)
        return -ENOMEM;
    br = mem;
    io_uring_buf_ring_init(br);
    struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)mem, .ring_entries = NBUF,
                                   .bgid = BGID};
    int rc = io_uring_register_buf_ring(&ring, &reg, 0);
    if (rc < 0)
        return rc;
    bufs_out = NBUF;
    for (unsigned bid = 0; bid < NBUF; bid++)
        buf_return(bid);
    io_uring_buf_ring_advance(br, (int)br_pending);
    br_pending = 0;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: raw_uring_echo PORT [HOST]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *host = argc > 2 ? argv[2] : "127.0.0.1";
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (port < 0 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "raw_uring_echo: bad address %s:%s\n", host, argv[1]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC);

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* inherited by accept */
    if (lfd < 0 || sfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(lfd, 4096) < 0) {
        perror("raw_uring_echo");
        return 1;
    }
    int rc = setup_ring();
    if (rc == 0 && (rc = setup_buffers()) < 0)
        io_uring_queue_exit(&ring);
    if (rc < 0) { /* 77: the benchmark leaves this server out, as not built */
        fprintf(stderr, "raw_uring_echo: io_uring unavailable: %s\n", strerror(-rc));
        return 77;
    }
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    printf("listening on %s:%d\n", host, ntohs(sa.sin_port));
    fflush(stdout);

    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_poll_add(sqe, sfd, POLLIN);
    io_uring_sqe_set_data64(sqe, tag(NULL, OP_SIGNAL));
    arm_accept();

    for (;;) {
        rc = io_uring_submit_and_wait(&ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            fprintf(stderr, "raw_uring_echo: io_uring_enter: %s\n", strerror(-rc));
            return 1;
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            conn *c = (conn *)(uintptr_t)(cqe->user_data & ~(uint64_t)OP_MASK);
            switch (cqe->user_data & OP_MASK) {
            case OP_SIGNAL:
                return 0; /* SIGTERM/SIGINT: connections close with the process */
            case OP_ACCEPT: on_accept(cqe); break;
            case OP_RECV: on_recv(c, cqe); break;
            case OP_SEND: on_send(c, cqe); break;
            default: break;
            }
        }
        io_uring_cq_advance(&ring, seen);
        if (br_pending) {
            io_uring_buf_ring_advance(br, (int)br_pending);
            br_pending = 0;
        }
        rearm_starved();
        submit_sends();
    }
}
