/*
 * test_stream.c — streams: trio.testing's memory streams (memory_stream_pair,
 * lockstep_stream_pair), the generic stream checks (tests/stream_check.c,
 * Trio's testing/_check_streams.py) run against every
 * stream we have, and SocketStream / SocketListener, ported from Trio's
 * tests/test_highlevel_socket.py, plus what Trio leaves
 * untested (peer reset, EMFILE).
 *
 * Network: loopback and AF_UNIX socketpairs only.
 */
#include "net_support.h"
#include "stream_check.h"

#include <ctrio_testing.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static bool is_broken(ssize_t rc)
{
    return rc == -EPIPE || rc == -ECONNRESET;
}

/* ---- makers ------------------------------------------------------------- */

static int memory_maker(void *ctx, ctrio_stream **a, ctrio_stream **b)
{
    (void)ctx;
    return ctrio_memory_stream_pair(a, b);
}

static int lockstep_maker(void *ctx, ctrio_stream **a, ctrio_stream **b)
{
    (void)ctx;
    return ctrio_lockstep_stream_pair(a, b);
}

/* Two sockets into two streams; on failure everything is closed. */
static int wrap_pair(ctrio_socket *x, ctrio_socket *y, ctrio_stream **a, ctrio_stream **b)
{
    int rc = ctrio_socket_stream_new(x, a);
    if (rc < 0) {
        ctrio_socket_close(x);
        ctrio_socket_close(y);
        return rc;
    }
    rc = ctrio_socket_stream_new(y, b);
    if (rc < 0) {
        ctrio_stream_close(*a);
        ctrio_socket_close(y);
    }
    return rc;
}

/* test_SocketStream_generic's stream_maker: tsocket.socketpair() */
static int socketpair_maker(void *ctx, ctrio_stream **a, ctrio_stream **b)
{
    (void)ctx;
    ctrio_socket *s[2];
    int rc = ctrio_socketpair(AF_UNIX, SOCK_STREAM, 0, s);
    return rc < 0 ? rc : wrap_pair(s[0], s[1], a, b);
}

/* ... and its clogged_stream_maker: fill_stream both ways */
static int clog_pair(int rc, ctrio_stream *a, ctrio_stream *b)
{
    if (rc < 0)
        return rc;
    rc = stream_check_fill(a);
    if (rc == 0)
        rc = stream_check_fill(b);
    if (rc < 0) {
        stream_check_aclose_forcefully(a);
        stream_check_aclose_forcefully(b);
    }
    return rc;
}

static int socketpair_clogged(void *ctx, ctrio_stream **a, ctrio_stream **b)
{
    int rc = socketpair_maker(ctx, a, b);
    return clog_pair(rc, *a, *b);
}

static int loopback(int family, struct sockaddr_storage *ss, socklen_t *len)
{
    return ctrio_sockaddr_parse(family, family == AF_INET ? "127.0.0.1" : "::1", 0, ss, len);
}

static int set_small_buffers(ctrio_socket *s)
{
    int sz = 4096;
    int rc = ctrio_socket_setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    if (rc == 0)
        rc = ctrio_socket_setsockopt(s, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    return rc;
}

/* A listening socket on loopback port 0. */
static int listen_loopback(int family, bool small, int backlog, ctrio_socket **out)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = loopback(family, &ss, &len);
    if (rc < 0)
        return rc;
    rc = ctrio_socket_open(family, SOCK_STREAM, 0, out);
    if (rc < 0)
        return rc;
    if (small)
        rc = set_small_buffers(*out);
    if (rc == 0)
        rc = ctrio_socket_bind(*out, (struct sockaddr *)&ss, len);
    if (rc == 0)
        rc = ctrio_socket_listen(*out, backlog);
    if (rc < 0)
        ctrio_socket_close(*out);
    return rc;
}

static int connect_to(ctrio_socket *listener, bool small, ctrio_socket **out)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int rc = ctrio_socket_getsockname(listener, (struct sockaddr *)&ss, &len);
    if (rc < 0)
        return rc;
    rc = ctrio_socket_open(ss.ss_family, SOCK_STREAM, 0, out);
    if (rc < 0)
        return rc;
    if (small)
        rc = set_small_buffers(*out);
    if (rc == 0)
        rc = ctrio_socket_connect(*out, (struct sockaddr *)&ss, len);
    if (rc < 0)
        ctrio_socket_close(*out);
    return rc;
}

/* A connected TCP pair over loopback: client and accepted server socket. */
static int tcp_socket_pair(int family, bool small, ctrio_socket **client, ctrio_socket **server)
{
    ctrio_socket *l;
    int rc = listen_loopback(family, small, 1, &l);
    if (rc < 0)
        return rc;
    rc = connect_to(l, small, client);
    if (rc == 0) {
        rc = ctrio_socket_accept(l, server, NULL, NULL);
        if (rc < 0)
            ctrio_socket_close(*client);
    }
    ctrio_socket_close(l);
    return rc;
}

static int tcp_maker(void *ctx, ctrio_stream **a, ctrio_stream **b)
{
    ctrio_socket *c, *s;
    int rc = tcp_socket_pair(*(int *)ctx, false, &c, &s);
    return rc < 0 ? rc : wrap_pair(c, s, a, b);
}

/* Send what the kernel still takes on both streams until, after a pause,
 * neither takes anything: over TCP, ACKs (delayed ones too) keep freeing
 * send-buffer space for a while after fill_stream saw send_all block. */
static int settle_clogged(ctrio_stream *a, ctrio_stream *b)
{
    static const char junk[65536];
    int fds[2] = {ctrio_socket_fileno(ctrio_socket_stream_socket(a)),
                  ctrio_socket_fileno(ctrio_socket_stream_socket(b))};
    int quiet = 0;
    for (int round = 0; round < 40; round++) {
        size_t took = 0;
        for (int i = 0; i < 2; i++) {
            ssize_t n;
            while ((n = send(fds[i], junk, sizeof junk, MSG_DONTWAIT | MSG_NOSIGNAL)) > 0)
                took += (size_t)n;
            if (n < 0 && errno != EAGAIN)
                return -errno;
        }
        quiet = took ? 0 : quiet + 1;
        if (quiet == 2)
            return 0;
        int rc = ctrio_sleep(0.02);
        if (rc < 0)
            return rc;
    }
    return -ETIMEDOUT;
}

/* Small fixed buffers (no autotuning), so that a clogged connection stays
 * clogged and fills fast. */
static int tcp_clogged(void *ctx, ctrio_stream **a, ctrio_stream **b)
{
    ctrio_socket *c, *s;
    int rc = tcp_socket_pair(*(int *)ctx, true, &c, &s);
    if (rc == 0)
        rc = wrap_pair(c, s, a, b);
    if (rc == 0)
        rc = clog_pair(rc, *a, *b);
    if (rc == 0) {
        rc = settle_clogged(*a, *b);
        if (rc < 0) {
            stream_check_aclose_forcefully(*a);
            stream_check_aclose_forcefully(*b);
        }
    }
    return rc;
}

/* A stream pair in the test body: the pair, from a maker. */
typedef struct two {
    ctrio_stream *a, *b;
} two;

static void close_two(two *t)
{
    if (t->a)
        assert_int_equal(ctrio_stream_close(t->a), 0);
    if (t->b)
        assert_int_equal(ctrio_stream_close(t->b), 0);
    t->a = t->b = NULL;
}

/* ======================================================================== */
/* Memory streams                                                           */
/* ======================================================================== */
typedef struct guarded {
    ctrio_fn fn;
    void *arg;
} guarded;

static int guarded_body(void *p)
{
    guarded *g = p;
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 1e6);
    int rc = g->fn(g->arg);
    return ctrio_cancel_scope_close(&cs, rc);
}

/* run_mock, but a deadlock (every task blocked for ever) fails at once with
 * -ETIMEDOUT instead of hanging: the mock clock autojumps to the guard's
 * deadline. */
static int run_mock_guarded(ctrio_fn fn, void *arg)
{
    guarded g = {fn, arg};
    return run_mock(guarded_body, &g);
}


/* Trio: tests/test_testing.py::test_memory_stream_pair */
static int body_memory_stream_pair(void *arg)
{
    (void)arg;
    two t;
    char buf[16];
    assert_int_equal(ctrio_memory_stream_pair(&t.a, &t.b), 0);
    assert_int_equal(ctrio_stream_send_all(t.a, "123", 3), 0);
    assert_int_equal(ctrio_stream_send_all(t.b, "abc", 3), 0);
    assert_int_equal(ctrio_stream_receive_some(t.b, buf, 10), 3);
    assert_memory_equal(buf, "123", 3);
    assert_int_equal(ctrio_stream_receive_some(t.a, buf, 10), 3);
    assert_memory_equal(buf, "abc", 3);

    assert_int_equal(ctrio_stream_send_eof(t.a), 0);
    assert_int_equal(ctrio_stream_receive_some(t.b, buf, 10), 0);

    /* EOF one way only: b still sends to a */
    assert_int_equal(ctrio_stream_send_all(t.b, "back", 4), 0);
    assert_int_equal(ctrio_stream_receive_some(t.a, buf, 10), 4);
    assert_memory_equal(buf, "back", 4);
    close_two(&t);
    return 0;
}

typedef struct later_send {
    ctrio_stream *s;
    const char *data;
    double delay;
} later_send;

static int send_later(void *arg)
{
    later_send *l = arg;
    int rc = ctrio_sleep(l->delay);
    if (rc == 0)
        rc = ctrio_stream_send_all(l->s, l->data, strlen(l->data));
    return rc;
}

static int body_memory_stream_pair_blocking(void *arg)
{
    (void)arg;
    two t;
    char buf[16];
    assert_int_equal(ctrio_memory_stream_pair(&t.a, &t.b), 0);
    /* Trio: the receiver waits, "sender(): await wait_all_tasks_blocked();
     * await b.send_all(b"xyz")" — here at t = 1 on the mock clock */
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    later_send l = {t.b, "xyz", 1.0};
    assert_int_equal(ctrio_start_soon(&n, send_later, &l), 0);
    assert_int_equal(ctrio_stream_receive_some(t.a, buf, 10), 3);
    assert_memory_equal(buf, "xyz", 3);
    assert_true(ctrio_current_time() == 1.0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    close_two(&t);
    return 0;
}

static void test_memory_stream_pair(void **state)
{
    (void)state;
    assert_int_equal(run_mock_guarded(body_memory_stream_pair, NULL), 0);
    assert_int_equal(run_mock_guarded(body_memory_stream_pair_blocking, NULL), 0);
}

typedef struct recv_call {
    ctrio_stream *s;
    size_t max;
    ssize_t rc;
    char got[16];
} recv_call;

static int recv_task(void *arg)
{
    recv_call *c = arg;
    c->rc = ctrio_stream_receive_some(c->s, c->got, c->max);
    return c->rc < 0 ? (int)c->rc : 0;
}

/* Trio: tests/test_testing.py::test__UnboundeByteQueue and
 * ::test_MemoryReceiveStream (partial reads, checkpoints with data there,
 * two receivers -> BusyResourceError, EOF repeated) */
static int body_memory_stream_receive_some(void *arg)
{
    (void)arg;
    two t;
    char buf[16];
    ssize_t n;
    assert_int_equal(ctrio_memory_stream_pair(&t.a, &t.b), 0);
    assert_int_equal(ctrio_stream_send_all(t.a, "123", 3), 0);
    assert_int_equal(ctrio_stream_send_all(t.a, "456", 3), 0);
    ASSERT_CHECKPOINTS(n = ctrio_stream_receive_some(t.b, buf, 1));
    assert_int_equal(n, 1);
    assert_int_equal(buf[0], '1');
    ASSERT_CHECKPOINTS(n = ctrio_stream_receive_some(t.b, buf, 10));
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "23456", 5);

    /* two receivers at once */
    ctrio_nursery nur;
    recv_call r1 = {t.b, 10, 0, {0}}, r2 = {t.b, 10, 0, {0}};
    ctrio_nursery_open(&nur);
    assert_int_equal(ctrio_start_soon(&nur, recv_task, &r1), 0);
    assert_int_equal(ctrio_start_soon(&nur, recv_task, &r2), 0);
    assert_int_equal(ctrio_nursery_close(&nur, 0), -EBUSY);
    assert_int_equal(r1.rc, -ECANCELED);
    assert_int_equal(r2.rc, -EBUSY);

    /* the stream still works: the cancelled receive took nothing */
    assert_int_equal(ctrio_stream_send_all(t.a, "def", 3), 0);
    assert_int_equal(ctrio_stream_send_eof(t.a), 0);
    assert_int_equal(ctrio_stream_send_eof(t.a), 0); /* put_eof twice */
    ASSERT_CHECKPOINTS(n = ctrio_stream_receive_some(t.b, buf, 10));
    assert_int_equal(n, 3);
    assert_memory_equal(buf, "def", 3);
    for (int i = 0; i < 3; i++) {
        ASSERT_CHECKPOINTS(n = ctrio_stream_receive_some(t.b, buf, 10));
        assert_int_equal(n, 0);
    }
    close_two(&t);
    return 0;
}

static void test_memory_stream_receive_some(void **state)
{
    (void)state;
    assert_int_equal(run_mock_guarded(body_memory_stream_receive_some, NULL), 0);
}

typedef struct closer {
    ctrio_stream *s;
    double delay;
} closer;

static int close_later(void *arg)
{
    closer *c = arg;
    int rc = ctrio_sleep(c->delay);
    int rc2 = ctrio_stream_close(c->s);
    return rc < 0 ? rc : rc2;
}

/* Trio: tests/test_testing.py::test_MemoryRecvStream_closing and
 * ::test_memory_stream_one_way_pair ("this fails if we don't pump from
 * close_hook"): what a close does to both ends. */
static int body_memory_stream_close(void *arg)
{
    (void)arg;
    two t;
    char buf[16];
    ctrio_nursery n;

    /* data sent before the close is received, then EOF; the peer's send
     * breaks and stays broken; an empty send is still fine */
    assert_int_equal(ctrio_memory_stream_pair(&t.a, &t.b), 0);
    assert_int_equal(ctrio_stream_send_all(t.a, "abc", 3), 0);
    assert_int_equal(ctrio_stream_send_all(t.b, "lost on close", 13), 0);
    assert_int_equal(ctrio_stream_close(t.a), 0);
    t.a = NULL;
    assert_int_equal(ctrio_stream_receive_some(t.b, buf, 10), 3);
    assert_memory_equal(buf, "abc", 3);
    assert_int_equal(ctrio_stream_receive_some(t.b, buf, 10), 0);
    assert_int_equal(ctrio_stream_receive_some(t.b, buf, 10), 0);
    assert_int_equal(ctrio_stream_send_all(t.b, "x", 1), -EPIPE);
    assert_int_equal(ctrio_stream_send_all(t.b, "x", 1), -EPIPE);
    assert_int_equal(ctrio_stream_send_all(t.b, NULL, 0), 0);
    assert_int_equal(ctrio_stream_wait_send_all_might_not_block(t.b), 0);
    close_two(&t);

    /* a receiver blocked on the peer is woken by the peer's close: EOF */
    assert_int_equal(ctrio_memory_stream_pair(&t.a, &t.b), 0);
    closer c = {t.a, 1.0};
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, close_later, &c), 0);
    assert_int_equal(ctrio_stream_receive_some(t.b, buf, 10), 0);
    assert_true(ctrio_current_time() == 1.0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    t.a = NULL;
    close_two(&t);

    /* a receiver blocked on its own end is woken by that end's close:
     * ClosedResourceError */
    assert_int_equal(ctrio_memory_stream_pair(&t.a, &t.b), 0);
    c = (closer){t.b, 1.0};
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, close_later, &c), 0);
    assert_int_equal(ctrio_stream_receive_some(t.b, buf, 10), -EBADF);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    t.b = NULL;
    /* and the peer's send breaks */
    assert_int_equal(ctrio_stream_send_all(t.a, "x", 1), -EPIPE);
    close_two(&t);
    return 0;
}

static void test_memory_stream_close(void **state)
{
    (void)state;
    assert_int_equal(run_mock_guarded(body_memory_stream_close, NULL), 0);
}

/* Trio: tests/test_testing.py::test_memory_stream_one_way_pair
 * (check_for_cancel: a receive blocks until cancelled, and takes nothing);
 * a send_all cancelled before it acts sends nothing. */
static int body_memory_stream_cancel(void *arg)
{
    (void)arg;
    two t;
    char buf[16];
    assert_int_equal(ctrio_memory_stream_pair(&t.a, &t.b), 0);

    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 2.0);
    ssize_t n = ctrio_stream_receive_some(t.b, buf, 10);
    assert_int_equal(n, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, (int)n), 0);
    assert_true(ctrio_current_time() == 2.0);

    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    int rc = ctrio_stream_send_all(t.a, "456", 3);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);

    assert_int_equal(ctrio_stream_send_all(t.a, "789", 3), 0);
    assert_int_equal(ctrio_stream_receive_some(t.b, buf, 10), 3);
    assert_memory_equal(buf, "789", 3);
    close_two(&t);
    return 0;
}

static void test_memory_stream_cancel(void **state)
{
    (void)state;
    assert_int_equal(run_mock_guarded(body_memory_stream_cancel, NULL), 0);
}

/* Trio: testing/_check_streams.py::check_half_closeable_stream, the
 * send_eof part, on memory streams; StapledStream.send_eof. */
static int body_memory_stream_send_eof(void *arg)
{
    (void)arg;
    two t;
    char buf[16];
    int rc;
    ssize_t n;
    assert_int_equal(ctrio_memory_stream_pair(&t.a, &t.b), 0);
    assert_int_equal(ctrio_stream_send_all(t.a, "x", 1), 0);
    ASSERT_CHECKPOINTS(rc = ctrio_stream_send_eof(t.a));
    assert_int_equal(rc, 0);
    ASSERT_CHECKPOINTS(rc = ctrio_stream_send_eof(t.a));
    assert_int_equal(rc, 0);
    assert_int_equal(ctrio_stream_send_all(t.a, "y", 1), -EBADF);
    assert_int_equal(ctrio_stream_send_all(t.a, NULL, 0), -EBADF);
    assert_int_equal(ctrio_stream_wait_send_all_might_not_block(t.a), -EBADF);
    assert_int_equal(ctrio_stream_receive_some(t.b, buf, 10), 1);
    ASSERT_CHECKPOINTS(n = ctrio_stream_receive_some(t.b, buf, 10));
    assert_int_equal(n, 0);
    /* the other way still works */
    ASSERT_CHECKPOINTS(rc = ctrio_stream_send_all(t.b, "back", 4));
    assert_int_equal(rc, 0);
    ASSERT_CHECKPOINTS(rc = ctrio_stream_send_all(t.b, NULL, 0));
    assert_int_equal(rc, 0);
    ASSERT_CHECKPOINTS(rc = ctrio_stream_wait_send_all_might_not_block(t.b));
    assert_int_equal(rc, 0);
    assert_int_equal(ctrio_stream_receive_some(t.a, buf, 10), 4);
    assert_memory_equal(buf, "back", 4);
    close_two(&t);
    return 0;
}

static void test_memory_stream_send_eof(void **state)
{
    (void)state;
    assert_int_equal(run_mock_guarded(body_memory_stream_send_eof, NULL), 0);
}

/* New (not in Trio): the constructors check their arguments, work outside
 * a run, and a pair made and closed outside a run leaks nothing (ASan). */
static void test_memory_stream_pair_outside_run(void **state)
{
    (void)state;
    ctrio_stream *a = (ctrio_stream *)1, *b = (ctrio_stream *)1;
    assert_int_equal(ctrio_memory_stream_pair(NULL, &b), -EINVAL);
    assert_int_equal(ctrio_lockstep_stream_pair(&a, NULL), -EINVAL);
    assert_int_equal(ctrio_memory_stream_pair(&a, &b), 0);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_null(ctrio_socket_stream_socket(a));
    assert_int_equal(ctrio_stream_close(a), 0);
    assert_int_equal(ctrio_stream_close(b), 0);
    assert_int_equal(ctrio_lockstep_stream_pair(&a, &b), 0);
    assert_int_equal(ctrio_stream_close(b), 0);
    assert_int_equal(ctrio_stream_close(a), 0);
}

static int body_memory_generic(void *arg)
{
    (void)arg;
    return check_half_closeable_stream(memory_maker, NULL, NULL);
}

/* Trio: tests/test_testing.py::test_memory_streams_with_generic_tests
 * (check_half_closeable_stream, no clogged maker: the buffers are unbounded) */
static void test_memory_streams_with_generic_tests(void **state)
{
    (void)state;
    assert_int_equal(run_mock_guarded(body_memory_generic, NULL), 0);
}

static int body_lockstep_generic(void *arg)
{
    (void)arg;
    return check_half_closeable_stream(lockstep_maker, lockstep_maker, NULL);
}

/* Trio: tests/test_testing.py::test_lockstep_streams_with_generic_tests
 * (Trio runs check_two_way_stream; ours are half-closeable, so the superset
 * check_half_closeable_stream; a lockstep pair is its own clogged pair) */
static void test_lockstep_streams_with_generic_tests(void **state)
{
    (void)state;
    assert_int_equal(run_mock_guarded(body_lockstep_generic, NULL), 0);
}

typedef struct slow_reader {
    ctrio_stream *s;
    char got[16];
    size_t n;
    double times[8];
} slow_reader;

static int read_two_per_second(void *arg)
{
    slow_reader *r = arg;
    while (r->n < 5) {
        int rc = ctrio_sleep(1.0);
        if (rc < 0)
            return rc;
        ssize_t k = ctrio_stream_receive_some(r->s, r->got + r->n, 2);
        if (k <= 0)
            return k < 0 ? (int)k : -EIO;
        r->n += (size_t)k;
    }
    return 0;
}

/* Trio: testing/_memory_streams.py::lockstep_stream_one_way_pair ("Each
 * call to send_all will block until all the given data has been returned by
 * a call to receive_some"); new as a test. */
static int body_lockstep_send_all_waits(void *arg)
{
    (void)arg;
    two t;
    assert_int_equal(ctrio_lockstep_stream_pair(&t.a, &t.b), 0);
    ctrio_nursery n;
    slow_reader r = {.s = t.b};
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, read_two_per_second, &r), 0);
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_stream_send_all(t.a, "hello", 5));
    assert_int_equal(rc, 0);
    /* 2 + 2 + 1 bytes at t = 1, 2, 3: send_all returns with the last */
    assert_true(ctrio_current_time() == 3.0);
    assert_int_equal(r.n, 5);
    assert_memory_equal(r.got, "hello", 5);
    /* an empty send_all has nothing to wait for */
    double t0 = ctrio_current_time();
    ASSERT_CHECKPOINTS(rc = ctrio_stream_send_all(t.a, NULL, 0));
    assert_int_equal(rc, 0);
    assert_true(ctrio_current_time() == t0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    close_two(&t);
    return 0;
}

static void test_lockstep_send_all_waits_for_receiver(void **state)
{
    (void)state;
    assert_int_equal(run_mock_guarded(body_lockstep_send_all_waits, NULL), 0);
}

typedef struct recv_later {
    ctrio_stream *s;
    double delay;
    ssize_t rc;
    char got[8];
} recv_later;

static int receive_later(void *arg)
{
    recv_later *r = arg;
    int rc = ctrio_sleep(r->delay);
    if (rc < 0)
        return rc;
    r->rc = ctrio_stream_receive_some(r->s, r->got, sizeof r->got);
    return r->rc < 0 ? (int)r->rc : 0;
}

/* Trio: testing/_memory_streams.py::_LockstepByteQueue
 * (wait_send_all_might_not_block waits for a receiver); new as a test. */
static int body_lockstep_wait_send(void *arg)
{
    (void)arg;
    two t;
    assert_int_equal(ctrio_lockstep_stream_pair(&t.a, &t.b), 0);
    ctrio_nursery n;
    recv_later r = {.s = t.b, .delay = 2.0};
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, receive_later, &r), 0);
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_stream_wait_send_all_might_not_block(t.a));
    assert_int_equal(rc, 0);
    assert_true(ctrio_current_time() == 2.0);
    /* the receiver is waiting now: send_all completes at once */
    assert_int_equal(ctrio_stream_send_all(t.a, "go", 2), 0);
    assert_true(ctrio_current_time() == 2.0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(r.rc, 2);
    assert_memory_equal(r.got, "go", 2);
    close_two(&t);
    return 0;
}

static void test_lockstep_wait_send_all_might_not_block(void **state)
{
    (void)state;
    assert_int_equal(run_mock_guarded(body_lockstep_wait_send, NULL), 0);
}

typedef struct partial_then_close {
    ctrio_stream *s;
    char got;
} partial_then_close;

static int take_one_then_close(void *arg)
{
    partial_then_close *p = arg;
    int rc = ctrio_sleep(1.0);
    if (rc < 0)
        return rc;
    ssize_t k = ctrio_stream_receive_some(p->s, &p->got, 1);
    if (k != 1)
        return k < 0 ? (int)k : -EIO;
    rc = ctrio_sleep(1.0);
    int rc2 = ctrio_stream_close(p->s);
    return rc < 0 ? rc : rc2;
}

/* Trio: testing/_memory_streams.py::_LockstepByteQueue.send_all ("if
 * self._data and self._receiver_closed: raise BrokenResourceError"); new as
 * a test: the peer takes part of the data and closes. */
static int body_lockstep_peer_close(void *arg)
{
    (void)arg;
    two t;
    assert_int_equal(ctrio_lockstep_stream_pair(&t.a, &t.b), 0);
    ctrio_nursery n;
    partial_then_close p = {.s = t.b};
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, take_one_then_close, &p), 0);
    assert_int_equal(ctrio_stream_send_all(t.a, "abc", 3), -EPIPE);
    assert_true(ctrio_current_time() == 2.0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    t.b = NULL;
    assert_int_equal(p.got, 'a');
    /* stays broken; the receive side sees the end */
    assert_int_equal(ctrio_stream_send_all(t.a, "d", 1), -EPIPE);
    char c;
    assert_int_equal(ctrio_stream_receive_some(t.a, &c, 1), 0);
    close_two(&t);
    return 0;
}

static void test_lockstep_peer_close_breaks_send(void **state)
{
    (void)state;
    assert_int_equal(run_mock_guarded(body_lockstep_peer_close, NULL), 0);
}

typedef struct inj {
    two *t;
    char got[8];
    size_t n;
    bool eof;
} inj;

static int inj_sender(void *arg)
{
    inj *c = arg;
    int rc = ctrio_stream_send_all(c->t->a, "hello", 5);
    if (rc == 0)
        rc = ctrio_stream_send_eof(c->t->a);
    return rc;
}

static int inj_receiver(void *arg)
{
    inj *c = arg;
    for (int i = 0; i < 16; i++) {
        ssize_t k = ctrio_stream_receive_some(c->t->b, c->got + c->n, 2);
        if (k < 0)
            return (int)k;
        if (k == 0) {
            c->eof = true;
            return 0;
        }
        c->n += (size_t)k;
    }
    return -EIO;
}

static int body_cancel_injection(void *arg)
{
    stream_pair_maker mk = *(stream_pair_maker *)arg;
    bool finished = false;
    for (uint64_t at = 1; at < 500 && !finished; at++) {
        two t;
        assert_int_equal(mk(NULL, &t.a, &t.b), 0);
        inj c = {.t = &t};
        ctrio_cancel_scope cs;
        ctrio_cancel_scope_open(&cs);
        ctrio_testing_cancel_at_checkpoint(&cs, at);
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        int rc = ctrio_start_soon(&n, inj_sender, &c);
        if (rc == 0)
            rc = ctrio_start_soon(&n, inj_receiver, &c);
        rc = ctrio_nursery_close(&n, rc);
        rc = ctrio_cancel_scope_close(&cs, rc);
        bool fired = ctrio_testing_cancel_fired();
        ctrio_testing_cancel_at_checkpoint(&cs, 0);
        /* cancelled anywhere: everything unwinds into the scope */
        assert_int_equal(rc, 0);
        assert_true(c.n <= 5);
        assert_memory_equal(c.got, "hello", c.n);
        if (!fired) {
            assert_int_equal(c.n, 5);
            assert_true(c.eof);
            assert_true(at > 5); /* the sweep did cancel at several points */
            finished = true;
        }
        close_two(&t);
    }
    assert_true(finished);
    return 0;
}

/* New (not in Trio): cancel-injection sweep (ctrio_testing_cancel_at_checkpoint)
 * over a send/receive/send_eof exchange on memory and lockstep pairs: a
 * cancellation at any cancel point unwinds cleanly, never delivers bytes out
 * of order, and leaks nothing (ASan). */
static void test_memory_streams_cancel_anywhere(void **state)
{
    (void)state;
    stream_pair_maker mk = memory_maker;
    assert_int_equal(run_mock_guarded(body_cancel_injection, &mk), 0);
    mk = lockstep_maker;
    assert_int_equal(run_mock_guarded(body_cancel_injection, &mk), 0);
}

static ssize_t nop_receive(ctrio_stream *s, void *buf, size_t max)
{
    (void)s, (void)buf, (void)max;
    return ctrio_checkpoint();
}

static int nop_send_all(ctrio_stream *s, const void *buf, size_t len)
{
    (void)s, (void)buf, (void)len;
    return ctrio_checkpoint();
}

static int nop_wait(ctrio_stream *s)
{
    (void)s;
    return ctrio_checkpoint();
}

static int nop_close(ctrio_stream *s)
{
    int *closed = ctrio_stream_impl(s);
    (*closed)++;
    return 0;
}

/* A custom stream without send_eof (a plain trio.abc.Stream). */
static const ctrio_stream_ops nop_ops = {
    .receive_some = nop_receive,
    .send_all = nop_send_all,
    .wait_send_all_might_not_block = nop_wait,
    .close = nop_close,
};

static int body_custom_stream(void *arg)
{
    (void)arg;
    int closed = 0;
    ctrio_stream *s = (ctrio_stream *)1;
    assert_int_equal(ctrio_stream_new_custom(NULL, &closed, &s), -EINVAL);
    assert_int_equal(ctrio_stream_new_custom(&nop_ops, &closed, NULL), -EINVAL);
    assert_int_equal(ctrio_stream_new_custom(&nop_ops, &closed, &s), 0);
    assert_ptr_equal(ctrio_stream_impl(s), &closed);
    assert_null(ctrio_socket_stream_socket(s));
    assert_int_equal(ctrio_stream_send_eof(s), -EOPNOTSUPP);
    assert_int_equal(ctrio_stream_send_all(s, "x", 1), 0);
    char c;
    assert_int_equal(ctrio_stream_receive_some(s, &c, 1), 0);
    assert_int_equal(ctrio_stream_wait_send_all_might_not_block(s), 0);
    assert_int_equal(closed, 0);
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_stream_close(s));
    assert_int_equal(rc, 0);
    assert_int_equal(closed, 1);
    return 0;
}

/* New: the generic layer under every stream (ctrio_stream_new_custom):
 * argument checks, a stream without send_eof (trio.abc.Stream, not
 * HalfCloseableStream) refuses it, close calls the close op once and is a
 * checkpoint (as check_one_way_stream's aclose). */
static void test_custom_stream_generic_layer(void **state)
{
    (void)state;
    assert_int_equal(run_mock_guarded(body_custom_stream, NULL), 0);
}

/* New: the NULL rule of ctrio.h (Conventions) for stream operations: a NULL
 * entry is "not supported" (-EOPNOTSUPP), never called (send_all through
 * NULL crashed); a NULL close has nothing to release. */
static int body_empty_stream_ops(void *arg)
{
    (void)arg;
    static const ctrio_stream_ops empty = {0};
    ctrio_stream *s;
    assert_int_equal(ctrio_stream_new_custom(&empty, NULL, &s), 0);
    char c = 'x';
    assert_int_equal(ctrio_stream_receive_some(s, &c, 1), -EOPNOTSUPP);
    assert_int_equal(ctrio_stream_send_all(s, &c, 1), -EOPNOTSUPP);
    assert_int_equal(ctrio_stream_send_eof(s), -EOPNOTSUPP);
    assert_int_equal(ctrio_stream_wait_send_all_might_not_block(s), -EOPNOTSUPP);
    assert_int_equal(ctrio_stream_close(s), 0);
    return 0;
}

static void test_custom_stream_null_ops(void **state)
{
    (void)state;
    assert_int_equal(run_mock_guarded(body_empty_stream_ops, NULL), 0);
}

/* A custom stream that counts the calls reaching its ops; its receive_some
 * and wait_send_all_might_not_block block until cancelled (its close does not
 * wake them), so a task blocked in one keeps a closed handle alive. */
typedef struct held_impl {
    int receive, send_all, send_eof, wait, close;
} held_impl;

static ssize_t held_receive(ctrio_stream *s, void *buf, size_t max)
{
    (void)buf, (void)max;
    ((held_impl *)ctrio_stream_impl(s))->receive++;
    return ctrio_sleep_forever();
}

static int held_send_all(ctrio_stream *s, const void *buf, size_t len)
{
    (void)buf, (void)len;
    ((held_impl *)ctrio_stream_impl(s))->send_all++;
    return ctrio_checkpoint();
}

static int held_send_eof(ctrio_stream *s)
{
    ((held_impl *)ctrio_stream_impl(s))->send_eof++;
    return ctrio_checkpoint();
}

static int held_wait(ctrio_stream *s)
{
    ((held_impl *)ctrio_stream_impl(s))->wait++;
    return ctrio_sleep_forever();
}

static int held_close(ctrio_stream *s)
{
    ((held_impl *)ctrio_stream_impl(s))->close++;
    return 0;
}

static const ctrio_stream_ops held_ops = {
    .receive_some = held_receive,
    .send_all = held_send_all,
    .send_eof = held_send_eof,
    .wait_send_all_might_not_block = held_wait,
    .close = held_close,
};

typedef struct holder {
    ctrio_stream *s;
    bool send_side; /* wait_send_all_might_not_block, else receive_some */
    ssize_t rc;
} holder;

static int holder_task(void *arg)
{
    holder *h = arg;
    char c;
    h->rc = h->send_side ? ctrio_stream_wait_send_all_might_not_block(h->s)
                         : ctrio_stream_receive_some(h->s, &c, 1);
    return 0;
}

static int body_calls_after_own_close(void *arg)
{
    (void)arg;
    for (int round = 0; round < 2; round++) {
        held_impl impl = {0};
        ctrio_stream *s;
        assert_int_equal(ctrio_stream_new_custom(&held_ops, &impl, &s), 0);
        /* round 0: the holder receives, the send side is free; round 1:
         * the holder is on the send side, receive_some is free (so no call
         * below meets the holder's conflict detector) */
        holder h = {s, round == 1, 1};
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        assert_int_equal(ctrio_start_soon(&n, holder_task, &h), 0);
        assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
        assert_int_equal(ctrio_stream_close(s), 0);
        assert_int_equal(impl.close, 1);
        assert_int_equal(h.rc, 1); /* still inside: the handle is not freed */

        if (round == 0) {
            assert_int_equal(ctrio_stream_send_all(s, "x", 1), -EBADF);
            assert_int_equal(ctrio_stream_send_all(s, NULL, 0), -EBADF); /* empty too */
            assert_int_equal(ctrio_stream_send_eof(s), -EBADF);
            assert_int_equal(ctrio_stream_wait_send_all_might_not_block(s), -EBADF);
        } else {
            char buf[4];
            assert_int_equal(ctrio_stream_receive_some(s, buf, sizeof buf), -EBADF);
        }
        /* none of them reached the ops that the close released */
        assert_int_equal(impl.send_all, 0);
        assert_int_equal(impl.send_eof, 0);
        assert_int_equal(impl.receive, round == 0);
        assert_int_equal(impl.wait, round == 1);
        assert_int_equal(impl.close, 1);

        /* the holder lets go; the handle is freed then (ASan) */
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
        assert_int_equal(ctrio_nursery_close(&n, 0), 0);
        assert_int_equal(h.rc, -ECANCELED);
    }
    return 0;
}

/* Trio: check_one_way_stream ("now trying to send raises
 * ClosedResourceError", "even if it's an empty send", "ditto for
 * wait_send_all_might_not_block", "r closed -> ClosedResourceError on the
 * receive side"), send_eof probed in Trio (untested there): after a stream's
 * own close, send_all (with data or empty), send_eof,
 * wait_send_all_might_not_block and receive_some return -EBADF, in the
 * generic layer under every stream. ctrio_stream_close frees the handle, so
 * in C such calls are only possible while another task is still inside the
 * stream and keeps it alive; the tasks a close wakes are check_one_way_stream's
 * (test_SocketStream_close_wakes_blocked). */
static void test_stream_calls_after_own_close(void **state)
{
    (void)state;
    assert_int_equal(run_mock_guarded(body_calls_after_own_close, NULL), 0);
}

/* ======================================================================== */
/* SocketStream                                                             */
/* ======================================================================== */

static int getsockopt_int(ctrio_socket *s, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    int rc = ctrio_socket_getsockopt(s, level, name, &v, &len);
    return rc < 0 ? rc : v;
}

/* Trio: tests/test_highlevel_socket.py::test_SocketStream_basics */
static int body_SocketStream_basics(void *arg)
{
    (void)arg;
    /* DGRAM socket bad: -EINVAL, and the socket stays the caller's */
    ctrio_socket *d;
    ctrio_stream *st = (ctrio_stream *)1;
    assert_int_equal(ctrio_socket_open(AF_INET, SOCK_DGRAM, 0, &d), 0);
    assert_int_equal(ctrio_socket_stream_new(d, &st), -EINVAL);
    assert_null(st);
    assert_true(ctrio_socket_fileno(d) >= 0);
    assert_int_equal(ctrio_socket_close(d), 0);
    assert_int_equal(ctrio_socket_stream_new(NULL, &st), -EINVAL);

    /* a socketpair: s.socket is a (an AF_UNIX socket takes no TCP options,
     * and that is fine) */
    ctrio_socket *p[2];
    assert_int_equal(ctrio_socketpair(AF_UNIX, SOCK_STREAM, 0, p), 0);
    assert_int_equal(ctrio_socket_stream_new(p[0], &st), 0);
    assert_ptr_equal(ctrio_socket_stream_socket(st), p[0]);
    assert_int_equal(ctrio_stream_close(st), 0);
    assert_int_equal(ctrio_socket_close(p[1]), 0);

    /* "Use a real, connected socket to test socket options" */
    ctrio_socket *c, *s;
    assert_int_equal(tcp_socket_pair(AF_INET, false, &c, &s), 0);
    assert_int_equal(getsockopt_int(c, IPPROTO_TCP, TCP_NODELAY), 0);
    assert_int_equal(ctrio_socket_stream_new(c, &st), 0);
    ctrio_socket *under = ctrio_socket_stream_socket(st);
    assert_ptr_equal(under, c);
    /* TCP_NODELAY enabled by default, and TCP_NOTSENT_LOWAT 16 KiB */
    assert_int_equal(getsockopt_int(under, IPPROTO_TCP, TCP_NODELAY), 1);
    assert_int_equal(getsockopt_int(under, IPPROTO_TCP, TCP_NOTSENT_LOWAT), 16384);
    /* We can disable it though */
    int zero = 0;
    assert_int_equal(ctrio_socket_setsockopt(under, IPPROTO_TCP, TCP_NODELAY, &zero, sizeof zero),
                     0);
    assert_int_equal(getsockopt_int(under, IPPROTO_TCP, TCP_NODELAY), 0);
    assert_int_equal(ctrio_stream_close(st), 0);
    assert_int_equal(ctrio_socket_close(s), 0);
    return 0;
}

static void test_SocketStream_basics(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_SocketStream_basics, NULL), 0);
}

#define BIG 10000000

typedef struct big {
    two *t;
    size_t received;
} big;

static int big_sender(void *arg)
{
    big *b = arg;
    char *data = calloc(1, BIG);
    assert_non_null(data);
    int rc = ctrio_stream_send_all(b->t->a, data, BIG);
    free(data);
    return rc;
}

static int big_receiver(void *arg)
{
    big *b = arg;
    /* "Make sure the sender fills up the kernel buffers and blocks" */
    int rc = ctrio_wait_all_tasks_blocked(0);
    if (rc < 0)
        return rc;
    char *buf = malloc(BIG);
    assert_non_null(buf);
    bool zeros = true;
    for (int i = 0; i < 100000 && b->received < BIG; i++) {
        ssize_t n = ctrio_stream_receive_some(b->t->b, buf, BIG);
        if (n <= 0) {
            free(buf);
            return n < 0 ? (int)n : -EIO;
        }
        for (ssize_t k = 0; k < n; k++)
            zeros &= buf[k] == 0;
        b->received += (size_t)n;
    }
    free(buf);
    assert_true(zeros);
    return 0;
}

/* Trio: tests/test_highlevel_socket.py::test_SocketStream_send_all */
static int body_SocketStream_send_all(void *arg)
{
    (void)arg;
    two t;
    assert_int_equal(socketpair_maker(NULL, &t.a, &t.b), 0);
    big b = {&t, 0};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, big_sender, &b), 0);
    assert_int_equal(ctrio_start_soon(&n, big_receiver, &b), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    /* "We know that we received BIG bytes of NULs so far. Make sure that was
     * all the data in there." */
    assert_int_equal(b.received, BIG);
    char buf[10];
    assert_int_equal(ctrio_stream_send_all(t.a, "e", 1), 0);
    assert_int_equal(ctrio_stream_receive_some(t.b, buf, 10), 1);
    assert_int_equal(buf[0], 'e');
    assert_int_equal(ctrio_stream_send_eof(t.a), 0);
    assert_int_equal(ctrio_stream_receive_some(t.b, buf, 10), 0);
    close_two(&t);
    return 0;
}

static void test_SocketStream_send_all(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_SocketStream_send_all, NULL), 0);
}

static int body_socketpair_generic(void *arg)
{
    (void)arg;
    return check_half_closeable_stream(socketpair_maker, socketpair_clogged, NULL);
}

/* Trio: tests/test_highlevel_socket.py::test_SocketStream_generic
 * (socketpair, fill_stream for the clogged pair) */
static void test_SocketStream_generic(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_socketpair_generic, NULL), 0);
}

static int body_tcp_generic(void *arg)
{
    return check_half_closeable_stream(tcp_maker, tcp_clogged, arg);
}

/* Trio: ::test_SocketStream_generic, over TCP on 127.0.0.1 (new: Trio runs
 * it on a socketpair only) */
static void test_SocketStream_generic_tcp4(void **state)
{
    (void)state;
    int family = AF_INET;
    assert_int_equal(run_real(body_tcp_generic, &family), 0);
}

/* Trio: ::test_SocketStream_generic, over TCP on ::1 (new) */
static void test_SocketStream_generic_tcp6(void **state)
{
    (void)state;
    if (!have_ipv6_loopback())
        skip();
    int family = AF_INET6;
    assert_int_equal(run_real(body_tcp_generic, &family), 0);
}

/* Trio: ::test_socket_stream_works_when_peer_has_already_closed */
static int body_peer_already_closed(void *arg)
{
    (void)arg;
    ctrio_socket *p[2];
    assert_int_equal(ctrio_socketpair(AF_UNIX, SOCK_STREAM, 0, p), 0);
    assert_int_equal(ctrio_socket_send(p[1], "x", 1, 0), 1);
    assert_int_equal(ctrio_socket_close(p[1]), 0);
    ctrio_stream *st;
    assert_int_equal(ctrio_socket_stream_new(p[0], &st), 0);
    char c;
    assert_int_equal(ctrio_stream_receive_some(st, &c, 1), 1);
    assert_int_equal(c, 'x');
    assert_int_equal(ctrio_stream_receive_some(st, &c, 1), 0);
    assert_int_equal(ctrio_stream_receive_some(st, &c, 1), 0); /* repeatable */
    assert_int_equal(ctrio_stream_close(st), 0);
    return 0;
}

static void test_socket_stream_works_when_peer_has_already_closed(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_peer_already_closed, NULL), 0);
}

/* New (check_one_way_stream's broken stream, SPEC "no call ever raises
 * SIGPIPE"): a peer that resets the connection shows as -ECONNRESET on receive
 * and -EPIPE/-ECONNRESET on send, and SIGPIPE (left at its default, fatal
 * disposition) never fires. */
static int body_peer_reset(void *arg)
{
    (void)arg;
    char buf[16];
    ctrio_socket *c, *s;
    assert_int_equal(tcp_socket_pair(AF_INET, false, &c, &s), 0);
    ctrio_stream *st;
    assert_int_equal(ctrio_socket_stream_new(c, &st), 0);
    struct linger lg = {1, 0}; /* close sends RST */
    assert_int_equal(ctrio_socket_setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    assert_int_equal(ctrio_socket_close(s), 0);
    assert_int_equal(ctrio_stream_receive_some(st, buf, sizeof buf), -ECONNRESET);
    int rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++)
        rc = ctrio_stream_send_all(st, "data", 4);
    assert_true(is_broken(rc));
    assert_true(is_broken(ctrio_stream_send_all(st, "data", 4)));
    assert_int_equal(ctrio_stream_close(st), 0);

    /* AF_UNIX: the peer is gone: EPIPE at once */
    two t;
    assert_int_equal(socketpair_maker(NULL, &t.a, &t.b), 0);
    assert_int_equal(ctrio_stream_close(t.b), 0);
    t.b = NULL;
    assert_int_equal(ctrio_stream_send_all(t.a, "data", 4), -EPIPE);
    assert_int_equal(ctrio_stream_send_all(t.a, "data", 4), -EPIPE);
    close_two(&t);
    return 0;
}

static void test_SocketStream_peer_reset(void **state)
{
    (void)state;
    void (*old)(int) = signal(SIGPIPE, SIG_DFL);
    int rc = run_real(body_peer_reset, NULL);
    signal(SIGPIPE, old);
    assert_int_equal(rc, 0);
}

/* Trio: check_half_closeable_stream ("now sending is disallowed") and
 * _highlevel_socket.py's send_all, which raises ClosedResourceError("can't
 * send data after sending EOF") before anything else (-EBADF with no
 * checkpoint, even for empty data), and send_eof idempotent. */
static int body_send_after_eof(void *arg)
{
    (void)arg;
    two t;
    assert_int_equal(socketpair_maker(NULL, &t.a, &t.b), 0);
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_stream_send_eof(t.a));
    assert_int_equal(rc, 0);
    assert_true(ctrio_socket_did_shutdown_wr(ctrio_socket_stream_socket(t.a)));
    ASSERT_NO_CHECKPOINTS(rc = ctrio_stream_send_all(t.a, "x", 1));
    assert_int_equal(rc, -EBADF);
    ASSERT_NO_CHECKPOINTS(rc = ctrio_stream_send_all(t.a, NULL, 0));
    assert_int_equal(rc, -EBADF);
    ASSERT_CHECKPOINTS(rc = ctrio_stream_send_eof(t.a));
    assert_int_equal(rc, 0);
    /* the peer sees EOF; the other direction still works */
    char buf[8];
    assert_int_equal(ctrio_stream_receive_some(t.b, buf, sizeof buf), 0);
    assert_int_equal(ctrio_stream_send_all(t.b, "back", 4), 0);
    assert_int_equal(ctrio_stream_receive_some(t.a, buf, sizeof buf), 4);
    assert_memory_equal(buf, "back", 4);
    close_two(&t);
    return 0;
}

static void test_SocketStream_send_all_after_send_eof(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_send_after_eof, NULL), 0);
}

/* Trio: _highlevel_socket.py::SocketStream.send_eof ("checkpoint first, so
 * that a cancelled call does not shut down"), and
 * wait_send_all_might_not_block does not look at the EOF flag. */
static int body_send_eof_cancelled(void *arg)
{
    (void)arg;
    two t;
    char buf[8];
    assert_int_equal(socketpair_maker(NULL, &t.a, &t.b), 0);
    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    int rc = ctrio_stream_send_eof(t.a);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_false(ctrio_socket_did_shutdown_wr(ctrio_socket_stream_socket(t.a)));
    /* not shut down: sending still works */
    assert_int_equal(ctrio_stream_send_all(t.a, "z", 1), 0);
    assert_int_equal(ctrio_stream_receive_some(t.b, buf, sizeof buf), 1);
    assert_int_equal(buf[0], 'z');

    assert_int_equal(ctrio_stream_send_eof(t.a), 0);
    ASSERT_CHECKPOINTS(rc = ctrio_stream_wait_send_all_might_not_block(t.a));
    assert_int_equal(rc, 0);
    close_two(&t);
    return 0;
}

static void test_SocketStream_send_eof_cancelled(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_send_eof_cancelled, NULL), 0);
}

typedef struct blocked_op {
    ctrio_stream *s;
    int op; /* 0 receive_some, 1 send_all, 2 wait_send_all_might_not_block */
    ssize_t rc;
} blocked_op;

static int blocked_op_task(void *arg)
{
    blocked_op *b = arg;
    char buf[64] = {0};
    switch (b->op) {
    case 0:
        b->rc = ctrio_stream_receive_some(b->s, buf, sizeof buf);
        break;
    case 1:
        b->rc = ctrio_stream_send_all(b->s, buf, sizeof buf);
        break;
    default:
        b->rc = ctrio_stream_wait_send_all_might_not_block(b->s);
        break;
    }
    return 0;
}

/* Trio: check_one_way_stream (receive_expecting_closed, close_soon):
 * a task blocked in receive_some, send_all or wait_send_all_might_not_block
 * when another task closes the stream gets -EBADF, and the stream's memory
 * is not used after it is freed (ASan). */
static int body_close_wakes_blocked(void *arg)
{
    (void)arg;
    for (int op = 0; op < 3; op++) {
        two t;
        assert_int_equal(socketpair_maker(NULL, &t.a, &t.b), 0);
        if (op > 0)
            assert_int_equal(stream_check_fill(t.a), 0);
        blocked_op b = {t.a, op, 1};
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        assert_int_equal(ctrio_start_soon(&n, blocked_op_task, &b), 0);
        assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
        assert_int_equal(b.rc, 1); /* still blocked */
        assert_int_equal(ctrio_stream_close(t.a), 0);
        t.a = NULL;
        assert_int_equal(ctrio_nursery_close(&n, 0), 0);
        assert_int_equal(b.rc, -EBADF);
        close_two(&t);
    }
    return 0;
}

static void test_SocketStream_close_wakes_blocked(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_close_wakes_blocked, NULL), 0);
}

typedef struct op_call {
    ctrio_stream *s;
    int op; /* 0 receive_some, 1 send_all "x", 2 wait_send, 3 send_eof */
    ssize_t rc;
    char got[8];
} op_call;

static int op_call_task(void *arg)
{
    op_call *c = arg;
    switch (c->op) {
    case 0:
        c->rc = ctrio_stream_receive_some(c->s, c->got, sizeof c->got);
        break;
    case 1:
        c->rc = ctrio_stream_send_all(c->s, "x", 1);
        break;
    case 2:
        c->rc = ctrio_stream_wait_send_all_might_not_block(c->s);
        break;
    default:
        c->rc = ctrio_stream_send_eof(c->s);
        break;
    }
    return 0;
}

/* Trio: check_one_way_stream (two do_receive_some -> BusyResourceError)
 * and _util.ConflictDetector on the send side: a second
 * receiver gets -EBUSY while the first waits, and the first still gets the
 * data; a second sender gets -EBUSY even while the first is not blocked but
 * only inside its call (the schedule point after a send that completed). */
static int body_concurrent_busy(void *arg)
{
    (void)arg;
    two t;
    assert_int_equal(socketpair_maker(NULL, &t.a, &t.b), 0);
    ctrio_nursery n;
    op_call r1 = {t.b, 0, 1, {0}}, r2 = {t.b, 0, 1, {0}};
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, op_call_task, &r1), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(ctrio_start_soon(&n, op_call_task, &r2), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(r2.rc, -EBUSY);
    assert_int_equal(r1.rc, 1); /* still waiting */
    assert_int_equal(ctrio_stream_send_all(t.a, "hi", 2), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(r1.rc, 2);
    assert_memory_equal(r1.got, "hi", 2);

    for (int second = 1; second <= 3; second++) {
        op_call first = {t.a, 1, 1, {0}}, other = {t.a, second, 1, {0}};
        ctrio_nursery_open(&n);
        assert_int_equal(ctrio_start_soon(&n, op_call_task, &first), 0);
        assert_int_equal(ctrio_start_soon(&n, op_call_task, &other), 0);
        assert_int_equal(ctrio_nursery_close(&n, 0), 0);
        assert_int_equal(first.rc, 0);
        assert_int_equal(other.rc, -EBUSY);
        char c;
        assert_int_equal(ctrio_stream_receive_some(t.b, &c, 1), 1);
        assert_int_equal(c, 'x');
    }
    close_two(&t);
    return 0;
}

static void test_SocketStream_concurrent_calls_busy(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_concurrent_busy, NULL), 0);
}

/* Trio: check_one_way_stream ("cancelled aclose still closes"): the
 * descriptor is gone, the close reports -ECANCELED, the peer sees EOF. */
static int body_aclose_cancelled(void *arg)
{
    (void)arg;
    two t;
    assert_int_equal(socketpair_maker(NULL, &t.a, &t.b), 0);
    int before = count_open_fds();
    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    int rc = ctrio_stream_close(t.a);
    t.a = NULL;
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_int_equal(count_open_fds(), before - 1);
    char c;
    assert_int_equal(ctrio_stream_receive_some(t.b, &c, 1), 0);
    close_two(&t);
    return 0;
}

static void test_SocketStream_aclose_cancelled_still_closes(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_aclose_cancelled, NULL), 0);
}

/* Trio: check_one_way_stream (max_bytes checks; send_empty_then_y) and
 * SocketStream.send_all's empty case: receive_some(max 0) and
 * NULL buffers are -EINVAL with nothing consumed; an empty send_all is only
 * a checkpoint and sends nothing. */
static int body_args(void *arg)
{
    (void)arg;
    two t;
    char buf[8];
    int rc;
    assert_int_equal(socketpair_maker(NULL, &t.a, &t.b), 0);
    assert_int_equal(ctrio_stream_send_all(t.a, "x", 1), 0);
    ASSERT_NO_CHECKPOINTS(rc = (int)ctrio_stream_receive_some(t.b, buf, 0));
    assert_int_equal(rc, -EINVAL);
    assert_int_equal(ctrio_stream_receive_some(t.b, NULL, 4), -EINVAL);
    assert_int_equal(ctrio_stream_send_all(t.a, NULL, 4), -EINVAL);
    ASSERT_CHECKPOINTS(rc = ctrio_stream_send_all(t.a, NULL, 0));
    assert_int_equal(rc, 0);
    assert_int_equal(ctrio_stream_send_eof(t.a), 0);
    assert_int_equal(ctrio_stream_receive_some(t.b, buf, sizeof buf), 1);
    assert_int_equal(buf[0], 'x');
    assert_int_equal(ctrio_stream_receive_some(t.b, buf, sizeof buf), 0);
    close_two(&t);
    return 0;
}

static void test_SocketStream_argument_checks(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_args, NULL), 0);
}

/* ======================================================================== */
/* SocketListener                                                           */
/* ======================================================================== */

static bool same_addr(const struct sockaddr_storage *x, socklen_t xl,
                      const struct sockaddr_storage *y, socklen_t yl)
{
    return xl == yl && memcmp(x, y, xl) == 0;
}

/* Trio: tests/test_highlevel_socket.py::test_SocketListener */
static int body_SocketListener(void *arg)
{
    (void)arg;
    ctrio_socket *ls;
    ctrio_listener *l;
    assert_int_equal(listen_loopback(AF_INET, false, 10, &ls), 0);
    assert_int_equal(ctrio_socket_listener_new(ls, &l), 0);
    assert_ptr_equal(ctrio_socket_listener_socket(l), ls);

    ctrio_socket *client;
    assert_int_equal(connect_to(ls, false, &client), 0);
    ctrio_stream *server = NULL;
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_listener_accept(l, &server));
    assert_int_equal(rc, 0);
    assert_non_null(server);
    ctrio_socket *ss = ctrio_socket_stream_socket(server);
    assert_non_null(ss);

    struct sockaddr_storage a, b;
    socklen_t al = sizeof a, bl = sizeof b;
    assert_int_equal(ctrio_socket_getsockname(ss, (struct sockaddr *)&a, &al), 0);
    assert_int_equal(ctrio_socket_getsockname(ls, (struct sockaddr *)&b, &bl), 0);
    assert_true(same_addr(&a, al, &b, bl));
    al = sizeof a, bl = sizeof b;
    assert_int_equal(ctrio_socket_getpeername(ss, (struct sockaddr *)&a, &al), 0);
    assert_int_equal(ctrio_socket_getsockname(client, (struct sockaddr *)&b, &bl), 0);
    assert_true(same_addr(&a, al, &b, bl));
    /* an accepted SocketStream is a TCP stream with Nagle off */
    assert_int_equal(getsockopt_int(ss, IPPROTO_TCP, TCP_NODELAY), 1);

    assert_int_equal(ctrio_listener_close(l), 0);
    assert_int_equal(ctrio_socket_close(client), 0);
    assert_int_equal(ctrio_stream_close(server), 0);
    return 0;
}

static void test_SocketListener(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_SocketListener, NULL), 0);
}

/* Trio: ::test_SocketListener ("Not a SOCK_STREAM", "Didn't call
 * .listen()"): -EINVAL, the socket stays the caller's. */
static int body_SocketListener_refuses(void *arg)
{
    (void)arg;
    struct sockaddr_storage ss;
    socklen_t len;
    ctrio_listener *l = (ctrio_listener *)1;
    assert_int_equal(loopback(AF_INET, &ss, &len), 0);

    ctrio_socket *d;
    assert_int_equal(ctrio_socket_open(AF_INET, SOCK_DGRAM, 0, &d), 0);
    assert_int_equal(ctrio_socket_bind(d, (struct sockaddr *)&ss, len), 0);
    assert_int_equal(ctrio_socket_listener_new(d, &l), -EINVAL);
    assert_null(l);
    assert_true(ctrio_socket_fileno(d) >= 0);
    assert_int_equal(ctrio_socket_close(d), 0);

    ctrio_socket *s;
    assert_int_equal(ctrio_socket_open(AF_INET, SOCK_STREAM, 0, &s), 0);
    assert_int_equal(ctrio_socket_bind(s, (struct sockaddr *)&ss, len), 0);
    assert_int_equal(ctrio_socket_listener_new(s, &l), -EINVAL);
    assert_true(ctrio_socket_fileno(s) >= 0);
    assert_int_equal(ctrio_socket_close(s), 0);
    assert_int_equal(ctrio_socket_listener_new(NULL, &l), -EINVAL);
    return 0;
}

static void test_SocketListener_refuses_bad_sockets(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_SocketListener_refuses, NULL), 0);
}

/* Trio: ::test_SocketListener_socket_closed_underfoot. "Close the
 * socket, not the listener": the listener owns its ctrio_socket, whose
 * close would free it, so the descriptor under it is closed instead (what
 * closing a stdlib socket under Trio's does). */
static int body_closed_underfoot(void *arg)
{
    (void)arg;
    ctrio_socket *ls;
    ctrio_listener *l;
    assert_int_equal(listen_loopback(AF_INET, false, 10, &ls), 0);
    assert_int_equal(ctrio_socket_listener_new(ls, &l), 0);
    int fd = ctrio_socket_fileno(ls);
    ctrio_notify_closing(fd);
    assert_int_equal(close(fd), 0);
    ctrio_stream *st = (ctrio_stream *)1;
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_listener_accept(l, &st));
    assert_int_equal(rc, -EBADF);
    assert_null(st);
    /* the listener's own close finds the descriptor gone */
    rc = ctrio_listener_close(l);
    assert_true(rc == 0 || rc == -EBADF);
    return 0;
}

static void test_SocketListener_socket_closed_underfoot(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_closed_underfoot, NULL), 0);
}

/* A fake socket for accept errors (Trio's FakeSocket): accept checkpoints,
 * then plays the next scripted event: an error, or 0 for a new connection. */
typedef struct fake_listen {
    const int *events;
    size_t n, next;
    ctrio_socket *made[8];
    size_t nmade, closed;
} fake_listen;

static int fake_close(ctrio_socket *s)
{
    fake_listen *f = ctrio_socket_impl(s);
    if (f)
        f->closed++;
    return 0;
}

static const ctrio_socket_ops fake_conn_ops = {.close = fake_close};

static int fake_accept(ctrio_socket *s, ctrio_socket **conn, struct sockaddr *addr,
                       socklen_t *len)
{
    (void)addr, (void)len;
    fake_listen *f = ctrio_socket_impl(s);
    int rc = ctrio_checkpoint();
    if (rc < 0)
        return rc;
    if (f->next >= f->n)
        return -EIO; /* the script ran out: a test bug */
    int ev = f->events[f->next++];
    if (ev < 0)
        return ev;
    rc = ctrio_socket_new_custom(&fake_conn_ops, NULL, AF_UNIX, SOCK_STREAM, 0, conn);
    if (rc == 0 && f->nmade < 8)
        f->made[f->nmade++] = *conn;
    return rc;
}

static const ctrio_socket_ops fake_listen_ops = {
    .accept = fake_accept,
    /* "Fool the check for SO_ACCEPTCONN in SocketListener.__init__" */
    .getsockopt = fake_getsockopt_listening,
    .close = fake_close,
};

static void expect_accept(ctrio_listener *l, fake_listen *f, int expect)
{
    ctrio_stream *st = NULL;
    int rc;
    size_t made = f->nmade;
    ASSERT_CHECKPOINTS(rc = ctrio_listener_accept(l, &st));
    assert_int_equal(rc, expect);
    if (expect == 0) {
        assert_int_equal(f->nmade, made + 1);
        assert_ptr_equal(ctrio_socket_stream_socket(st), f->made[made]);
        assert_int_equal(ctrio_stream_close(st), 0);
    } else {
        assert_null(st);
    }
}

/* Trio: ::test_SocketListener_accept_errors, with every errno of Trio's
 * _ignorable_accept_errnos and each error it raises. */
static int body_accept_errors(void *arg)
{
    (void)arg;
    static const int script[] = {
        -ECONNABORTED, -EPERM, -EPROTO, 0, -EMFILE, -EFAULT, -ENOBUFS, 0,
        /* the rest of the ignorable ones, then the rest of the raised ones */
        -ENETDOWN, -ENOPROTOOPT, -EHOSTDOWN, -ENONET, -EHOSTUNREACH, -EOPNOTSUPP,
        -ENETUNREACH, -ENOSR, -ESOCKTNOSUPPORT, -EPROTONOSUPPORT, -ETIMEDOUT, -ECONNRESET, 0,
        -ENFILE, -ENOMEM, -EINVAL, 0,
    };
    fake_listen f = {.events = script, .n = sizeof script / sizeof script[0]};
    ctrio_socket *fs;
    assert_int_equal(ctrio_socket_new_custom(&fake_listen_ops, &f, AF_UNIX, SOCK_STREAM, 0, &fs),
                     0);
    ctrio_listener *l;
    assert_int_equal(ctrio_socket_listener_new(fs, &l), 0);

    expect_accept(l, &f, 0);
    assert_int_equal(f.next, 4); /* three ignored, then the connection */
    expect_accept(l, &f, -EMFILE);
    expect_accept(l, &f, -EFAULT);
    expect_accept(l, &f, -ENOBUFS);
    expect_accept(l, &f, 0);
    expect_accept(l, &f, 0);
    assert_int_equal(f.next, 21);
    expect_accept(l, &f, -ENFILE);
    expect_accept(l, &f, -ENOMEM);
    expect_accept(l, &f, -EINVAL);
    expect_accept(l, &f, 0);
    assert_int_equal(f.next, f.n);

    assert_int_equal(f.closed, 0);
    assert_int_equal(ctrio_listener_close(l), 0);
    assert_int_equal(f.closed, 1); /* the listening socket; conns have no impl */
    return 0;
}

static void test_SocketListener_accept_errors(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_accept_errors, NULL), 0);
}

typedef struct acceptor {
    ctrio_listener *l;
    int rc;
    ctrio_stream *st;
} acceptor;

static int accept_task(void *arg)
{
    acceptor *a = arg;
    a->rc = ctrio_listener_accept(a->l, &a->st);
    return 0;
}

/* Trio: ::test_SocketListener (accept after aclose is ClosedResourceError) and
 * a probe of Trio's (untested there): closing the listener wakes a blocked
 * accept with -EBADF, and nothing is used after it is freed (ASan). */
static int body_close_wakes_accept(void *arg)
{
    (void)arg;
    ctrio_socket *ls;
    ctrio_listener *l;
    assert_int_equal(listen_loopback(AF_INET, false, 10, &ls), 0);
    assert_int_equal(ctrio_socket_listener_new(ls, &l), 0);
    acceptor a = {l, 1, (ctrio_stream *)1};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, accept_task, &a), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(a.rc, 1);
    assert_int_equal(ctrio_listener_close(l), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(a.rc, -EBADF);
    assert_null(a.st);
    return 0;
}

static void test_SocketListener_close_wakes_accept(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_close_wakes_accept, NULL), 0);
}

/* Trio: _highlevel_socket.py::SocketListener.accept is a checkpoint that a
 * cancellation interrupts (::test_SocketListener's accept, a checkpoint); new
 * as a test: a cancelled accept leaves the listener usable, and a pending
 * connection is not lost. */
static int body_accept_cancelled(void *arg)
{
    (void)arg;
    ctrio_socket *ls, *client;
    ctrio_listener *l;
    assert_int_equal(listen_loopback(AF_INET, false, 10, &ls), 0);
    assert_int_equal(ctrio_socket_listener_new(ls, &l), 0);
    ctrio_stream *st = (ctrio_stream *)1;
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 0.05);
    int rc = ctrio_listener_accept(l, &st);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));
    assert_null(st);
    /* a pending connection, and an already-cancelled accept: nothing taken */
    assert_int_equal(connect_to(ls, false, &client), 0);
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    rc = ctrio_listener_accept(l, &st);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_int_equal(ctrio_listener_accept(l, &st), 0);
    assert_non_null(st);
    assert_int_equal(ctrio_stream_close(st), 0);
    assert_int_equal(ctrio_socket_close(client), 0);
    assert_int_equal(ctrio_listener_close(l), 0);
    return 0;
}

static void test_SocketListener_accept_cancelled(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_accept_cancelled, NULL), 0);
}

/* Trio: ::test_SocketListener ("with assert_checkpoints(): await
 * listener.aclose()"): a listener's close is a checkpoint, as
 * ctrio_stream_close is, and closes even when cancelled. */
static int body_listener_close_checkpoint(void *arg)
{
    (void)arg;
    ctrio_socket *ls;
    ctrio_listener *l;
    assert_int_equal(listen_loopback(AF_INET, false, 10, &ls), 0);
    assert_int_equal(ctrio_socket_listener_new(ls, &l), 0);
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_listener_close(l));
    assert_int_equal(rc, 0);
    return 0;
}

static void test_SocketListener_close_is_checkpoint(void **state)
{
    (void)state;
    /* Found a bug (fixed): ctrio_listener_close was not a checkpoint. */
    assert_int_equal(run_real(body_listener_close_checkpoint, NULL), 0);
}

static int highest_open_fd(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int hi = -1, self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name);
        if (fd != self && fd > hi)
            hi = fd;
    }
    closedir(d);
    return hi;
}

/* New (Trio #73; listener.c's spare-descriptor trick): out of descriptors,
 * accept returns -EMFILE and the pending client is not left hanging in the
 * backlog: its connection is closed at once. The limit is lowered in
 * process and restored before any assertion can fail. */
static int body_emfile(void *arg)
{
    (void)arg;
    ctrio_socket *ls, *client;
    ctrio_listener *l;
    assert_int_equal(listen_loopback(AF_INET, false, 10, &ls), 0);
    assert_int_equal(ctrio_socket_listener_new(ls, &l), 0);
    assert_int_equal(connect_to(ls, false, &client), 0);

    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    /* valgrind keeps descriptors of its own above the limit it reports */
    if (under_valgrind()) {
        ctrio_socket_close(client);
        ctrio_listener_close(l);
        return 77;
    }
    int hi = highest_open_fd();
    assert_true(hi > 0);
    low = old;
    low.rlim_cur = (rlim_t)hi + 9;
    assert_true(low.rlim_cur <= old.rlim_cur);
    int maxfill = hi + 16;
    int *fillers = calloc((size_t)maxfill, sizeof *fillers);
    assert_non_null(fillers);
    int nfill = 0, lowered = setrlimit(RLIMIT_NOFILE, &low);
    /* fill every free number below the limit */
    while (lowered == 0 && nfill < maxfill) {
        int fd = dup(0);
        if (fd < 0)
            break;
        fillers[nfill++] = fd;
    }
    int dup_errno = errno;
    ctrio_stream *st = (ctrio_stream *)1;
    int accept_rc = lowered == 0 ? ctrio_listener_accept(l, &st) : 1;
    /* restore before anything can fail */
    for (int i = 0; i < nfill; i++)
        close(fillers[i]);
    int restored = setrlimit(RLIMIT_NOFILE, &old);
    free(fillers);

    assert_int_equal(lowered, 0);
    assert_int_equal(restored, 0);
    assert_true(nfill < maxfill);
    assert_int_equal(dup_errno, EMFILE);
    assert_int_equal(accept_rc, -EMFILE);
    assert_null(st);

    /* the client learns at once that it was refused (not hanging) */
    char c;
    ctrio_cancel_scope cs;
    ctrio_fail_after(&cs, 1.0);
    ssize_t n = ctrio_socket_recv(client, &c, 1, 0);
    assert_int_equal(ctrio_cancel_scope_close(&cs, (int)n), (int)n);
    assert_true(n == 0 || n == -ECONNRESET);
    assert_int_equal(ctrio_socket_close(client), 0);

    /* the listener works again (its spare descriptor is back) */
    assert_int_equal(connect_to(ls, false, &client), 0);
    assert_int_equal(ctrio_listener_accept(l, &st), 0);
    assert_int_equal(ctrio_stream_send_all(st, "ok", 2), 0);
    char buf[2];
    assert_int_equal(ctrio_socket_recv(client, buf, 2, 0), 2);
    assert_memory_equal(buf, "ok", 2);
    assert_int_equal(ctrio_stream_close(st), 0);
    assert_int_equal(ctrio_socket_close(client), 0);
    assert_int_equal(ctrio_listener_close(l), 0);
    return 0;
}

static void test_SocketListener_emfile_refuses_pending_client(void **state)
{
    (void)state;
    int rc = run_real(body_emfile, NULL);
    if (rc == 77) {
        print_message("valgrind's own descriptors sit above the limit: skipped\n");
        skip();
    }
    assert_int_equal(rc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_memory_stream_pair),
        TEST(test_memory_stream_receive_some),
        TEST(test_memory_stream_close),
        TEST(test_memory_stream_cancel),
        TEST(test_memory_stream_send_eof),
        TEST(test_memory_stream_pair_outside_run),
        TEST(test_memory_streams_with_generic_tests),
        TEST(test_lockstep_streams_with_generic_tests),
        TEST(test_lockstep_send_all_waits_for_receiver),
        TEST(test_lockstep_wait_send_all_might_not_block),
        TEST(test_lockstep_peer_close_breaks_send),
        TEST(test_memory_streams_cancel_anywhere),
        TEST(test_custom_stream_generic_layer),
        TEST(test_custom_stream_null_ops),
        TEST(test_stream_calls_after_own_close),
        TEST(test_SocketStream_basics),
        TEST(test_SocketStream_send_all),
        TEST(test_SocketStream_generic),
        TEST(test_SocketStream_generic_tcp4),
        TEST(test_SocketStream_generic_tcp6),
        TEST(test_socket_stream_works_when_peer_has_already_closed),
        TEST(test_SocketStream_peer_reset),
        TEST(test_SocketStream_send_all_after_send_eof),
        TEST(test_SocketStream_send_eof_cancelled),
        TEST(test_SocketStream_close_wakes_blocked),
        TEST(test_SocketStream_concurrent_calls_busy),
        TEST(test_SocketStream_aclose_cancelled_still_closes),
        TEST(test_SocketStream_argument_checks),
        TEST(test_SocketListener),
        TEST(test_SocketListener_refuses_bad_sockets),
        TEST(test_SocketListener_socket_closed_underfoot),
        TEST(test_SocketListener_accept_errors),
        TEST(test_SocketListener_close_wakes_accept),
        TEST(test_SocketListener_accept_cancelled),
        TEST(test_SocketListener_close_is_checkpoint),
        TEST(test_SocketListener_emfile_refuses_pending_client),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
