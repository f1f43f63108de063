/*
 * test_channel.c — memory channels (trio.open_memory_channel), ported from
 * Trio's tests/test_channel.py, plus the C-specific cases (element sizes,
 * checkpoints of send/receive, cancelled sends and receives).
 *
 * Trio's "and it's persistent" checks on a handle after its own close cannot
 * be ported: in C, closing a handle frees it. They are checked through the
 * other ends instead (EndOfChannel / -EPIPE stay).
 */
#include "support.h"

#include <ctrio_testing.h>

#include <stdlib.h>

/* ---- helpers ------------------------------------------------------------- */

typedef struct {
    ctrio_send_channel *tx;
    ctrio_receive_channel *rx;
    int value;
    int expect;
    int got_rc;
    int got_value;
    int done;
} chan_ctx;

/* Send ctx->value on ctx->tx; the result must be ctx->expect. */
static int send_expect(void *p)
{
    chan_ctx *c = p;
    c->got_rc = ctrio_channel_send(c->tx, &c->value);
    c->done = 1;
    assert_int_equal(c->got_rc, c->expect);
    return 0;
}

/* Receive one int on ctx->rx; the result must be ctx->expect. */
static int receive_expect(void *p)
{
    chan_ctx *c = p;
    c->got_value = -1;
    c->got_rc = ctrio_channel_receive(c->rx, &c->got_value);
    c->done = 1;
    assert_int_equal(c->got_rc, c->expect);
    return 0;
}

/* ---- tests --------------------------------------------------------------- */

/* Trio: tests/test_channel.py::test_channel — send/receive with a buffer of 2,
 * the nowait forms, WouldBlock, closing the send end, EndOfChannel. */
static int channel_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s;
    ctrio_receive_channel *r;
    int v, out;

    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 2, &s, &r), 0);

    v = 1;
    ASSERT_NO_CHECKPOINTS(assert_int_equal(ctrio_channel_send_nowait(s, &v), 0));
    v = 2;
    ASSERT_CHECKPOINTS(assert_int_equal(ctrio_channel_send(s, &v), 0));
    v = 3;
    ASSERT_NO_CHECKPOINTS(assert_int_equal(ctrio_channel_send_nowait(s, &v), -EWOULDBLOCK));

    out = 0;
    ASSERT_CHECKPOINTS(assert_int_equal(ctrio_channel_receive(r, &out), 1));
    assert_int_equal(out, 1);
    ASSERT_NO_CHECKPOINTS(assert_int_equal(ctrio_channel_receive_nowait(r, &out), 1));
    assert_int_equal(out, 2);
    out = 77;
    ASSERT_NO_CHECKPOINTS(assert_int_equal(ctrio_channel_receive_nowait(r, &out), -EWOULDBLOCK));
    assert_int_equal(out, 77); /* nothing written */

    v = 42; /* "last" */
    assert_int_equal(ctrio_channel_send_nowait(s, &v), 0);
    assert_int_equal(ctrio_send_channel_close(s), 0);

    assert_int_equal(ctrio_channel_receive_nowait(r, &out), 1);
    assert_int_equal(out, 42);
    /* EndOfChannel, and it stays */
    assert_int_equal(ctrio_channel_receive(r, &out), 0);
    assert_int_equal(ctrio_channel_receive(r, &out), 0);
    assert_int_equal(ctrio_channel_receive_nowait(r, &out), 0);
    assert_int_equal(ctrio_receive_channel_close(r), 0);
    return 0;
}
static void test_channel(void **state)
{
    (void)state;
    assert_int_equal(run_mock(channel_body, NULL), 0);
}

/* Trio: tests/test_channel.py::test_553 — a receive cancelled by a timeout
 * leaves the channel usable. */
static int t553_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s;
    ctrio_receive_channel *r;
    int v = 553, out = 0;
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 1, &s, &r), 0);

    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 10);
    int rc = ctrio_channel_receive(r, &out);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));
    assert_true(ctrio_current_time() == 10.0);
    assert_int_equal(ctrio_receive_channel_statistics(r).tasks_waiting_receive, 0);

    assert_int_equal(ctrio_channel_send(s, &v), 0);
    assert_int_equal(ctrio_channel_receive_nowait(r, &out), 1);
    assert_int_equal(out, 553);
    ctrio_send_channel_close(s);
    ctrio_receive_channel_close(r);
    return 0;
}
static void test_553(void **state)
{
    (void)state;
    assert_int_equal(run_mock(t553_body, NULL), 0);
}

/* Trio: tests/test_channel.py::test_channel_multiple_producers — 10 producers
 * on clones of an unbuffered channel, the original closed at once. */
typedef struct {
    ctrio_send_channel *tx;
    int i;
} producer_ctx;

static int producer(void *p)
{
    producer_ctx *c = p;
    for (int j = 3 * c->i; j < 3 * (c->i + 1); j++)
        assert_int_equal(ctrio_channel_send(c->tx, &j), 0);
    return ctrio_send_channel_close(c->tx);
}

static int int_cmp(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

static int producers_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s;
    ctrio_receive_channel *r;
    producer_ctx pc[10];
    int got[40], ngot = 0, v;
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 0, &s, &r), 0);

    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < 10; i++) {
        pc[i].i = i;
        assert_int_equal(ctrio_send_channel_clone(s, &pc[i].tx), 0);
        assert_int_equal(ctrio_start_soon(&n, producer, &pc[i]), 0);
    }
    assert_int_equal(ctrio_send_channel_statistics(s).open_send_channels, 11);
    ctrio_send_channel_close(s);
    int rc;
    while ((rc = ctrio_channel_receive(r, &v)) == 1) {
        assert_true(ngot < 40);
        got[ngot++] = v;
    }
    assert_int_equal(rc, 0); /* EndOfChannel once every clone is closed */
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);

    assert_int_equal(ngot, 30);
    qsort(got, (size_t)ngot, sizeof got[0], int_cmp);
    for (int i = 0; i < 30; i++)
        assert_int_equal(got[i], i);
    ctrio_receive_channel_close(r);
    return 0;
}
static void test_channel_multiple_producers(void **state)
{
    (void)state;
    assert_int_equal(run_mock(producers_body, NULL), 0);
}

/* Trio: tests/test_channel.py::test_channel_multiple_consumers — five
 * consumers share one receive handle; FIFO hand-off gives each a share. */
typedef struct {
    ctrio_receive_channel *rx;
    int i;
    int *received;
    int *nreceived;
    int *receivers; /* bit per consumer */
} consumer_ctx;

static int consumer(void *p)
{
    consumer_ctx *c = p;
    int v, rc;
    while ((rc = ctrio_channel_receive(c->rx, &v)) == 1) {
        *c->receivers |= 1 << c->i;
        c->received[(*c->nreceived)++] = v;
    }
    assert_int_equal(rc, 0);
    return 0;
}

static int consumers_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s;
    ctrio_receive_channel *r;
    int received[10], nreceived = 0, receivers = 0;
    consumer_ctx cc[5];
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 1, &s, &r), 0);

    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < 5; i++) {
        cc[i] = (consumer_ctx){r, i, received, &nreceived, &receivers};
        assert_int_equal(ctrio_start_soon(&n, consumer, &cc[i]), 0);
    }
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(ctrio_receive_channel_statistics(r).tasks_waiting_receive, 5);
    for (int i = 0; i < 10; i++)
        assert_int_equal(ctrio_channel_send(s, &i), 0);
    ctrio_send_channel_close(s);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);

    assert_int_equal(receivers, 0x1f);
    assert_int_equal(nreceived, 10);
    qsort(received, 10, sizeof received[0], int_cmp);
    for (int i = 0; i < 10; i++)
        assert_int_equal(received[i], i);
    ctrio_receive_channel_close(r);
    return 0;
}
static void test_channel_multiple_consumers(void **state)
{
    (void)state;
    assert_int_equal(run_mock(consumers_body, NULL), 0);
}

/* Trio: tests/test_channel.py::test_close_basics — closing the send end wakes
 * a sender blocked on it with ClosedResourceError (-EBADF) and receivers see
 * EndOfChannel; closing the receive end gives blocked and later senders
 * BrokenResourceError (-EPIPE); closing a receive handle wakes a receiver
 * blocked on it with -EBADF. */
static int close_basic_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s;
    ctrio_receive_channel *r;
    ctrio_nursery n;
    int v = 0;

    /* closing send -> the sender blocked on it gets -EBADF */
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 0, &s, &r), 0);
    chan_ctx c1 = {.tx = s, .value = 1, .expect = -EBADF};
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, send_expect, &c1);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(c1.done, 0);
    assert_int_equal(ctrio_send_channel_close(s), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(c1.done, 1);
    /* and receive gets EndOfChannel, persistently; the element never came */
    assert_int_equal(ctrio_channel_receive_nowait(r, &v), 0);
    assert_int_equal(ctrio_channel_receive(r, &v), 0);
    assert_int_equal(ctrio_channel_receive(r, &v), 0);
    ctrio_receive_channel_close(r);

    /* closing receive -> the blocked sender gets -EPIPE */
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 0, &s, &r), 0);
    chan_ctx c2 = {.tx = s, .value = 2, .expect = -EPIPE};
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, send_expect, &c2);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(c2.done, 0);
    assert_int_equal(ctrio_receive_channel_close(r), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(c2.done, 1);
    /* and it's persistent */
    assert_int_equal(ctrio_channel_send_nowait(s, &v), -EPIPE);
    assert_int_equal(ctrio_channel_send(s, &v), -EPIPE);
    ctrio_send_channel_close(s);

    /* closing receive -> the receiver blocked on it gets -EBADF */
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 0, &s, &r), 0);
    chan_ctx c3 = {.rx = r, .expect = -EBADF};
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, receive_expect, &c3);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(c3.done, 0);
    assert_int_equal(ctrio_receive_channel_close(r), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(c3.done, 1);
    assert_int_equal(c3.got_value, -1);
    /* the send side now sees a broken channel */
    assert_int_equal(ctrio_channel_send_nowait(s, &v), -EPIPE);
    ctrio_send_channel_close(s);
    return 0;
}
static void test_close_basic(void **state)
{
    (void)state;
    assert_int_equal(run_mock(close_basic_body, NULL), 0);
}

/* Trio: tests/test_channel.py::test_close_sync — close() (the synchronous
 * form) has the same effects; in C there is only the one close, which is
 * never a checkpoint and wakes the blocked tasks before it returns. */
static int close_sync_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s, *s2;
    ctrio_receive_channel *r;
    ctrio_nursery n;
    int v = 0;
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 0, &s, &r), 0);
    assert_int_equal(ctrio_send_channel_clone(s, &s2), 0);
    chan_ctx c1 = {.tx = s, .value = 1, .expect = -EBADF};
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, send_expect, &c1);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(ctrio_send_channel_statistics(s2).tasks_waiting_send, 1);
    ASSERT_NO_CHECKPOINTS(assert_int_equal(ctrio_send_channel_close(s), 0));
    /* the waiter is already off the queue */
    assert_int_equal(ctrio_send_channel_statistics(s2).tasks_waiting_send, 0);
    assert_int_equal(ctrio_send_channel_statistics(s2).open_send_channels, 1);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(c1.done, 1);
    /* s2 still open: no EndOfChannel yet */
    assert_int_equal(ctrio_channel_receive_nowait(r, &v), -EWOULDBLOCK);
    ASSERT_NO_CHECKPOINTS(assert_int_equal(ctrio_send_channel_close(s2), 0));
    assert_int_equal(ctrio_channel_receive_nowait(r, &v), 0);
    ASSERT_NO_CHECKPOINTS(assert_int_equal(ctrio_receive_channel_close(r), 0));
    return 0;
}
static void test_close_sync(void **state)
{
    (void)state;
    assert_int_equal(run_mock(close_sync_body, NULL), 0);
}

/* Trio: tests/test_channel.py::test_receive_channel_clone_and_close — the
 * channel is broken only when the last receive handle closes; closing it
 * drops what was buffered. */
static int clone_close_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s;
    ctrio_receive_channel *r, *r2, *r3;
    int v = 5;
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 10, &s, &r), 0);
    assert_int_equal(ctrio_receive_channel_clone(r, &r2), 0);
    assert_int_equal(ctrio_receive_channel_clone(r, &r3), 0);
    assert_int_equal(ctrio_send_channel_statistics(s).open_receive_channels, 3);

    assert_int_equal(ctrio_channel_send_nowait(s, &v), 0);
    assert_int_equal(ctrio_receive_channel_close(r), 0);
    assert_int_equal(ctrio_receive_channel_close(r2), 0);
    assert_int_equal(ctrio_send_channel_statistics(s).open_receive_channels, 1);
    /* can still send, r3 is still open; the buffer is kept */
    assert_int_equal(ctrio_channel_send_nowait(s, &v), 0);
    assert_int_equal(ctrio_send_channel_statistics(s).current_buffer_used, 2);

    assert_int_equal(ctrio_receive_channel_close(r3), 0);
    /* now the receiver is really closed, and the buffer dropped */
    assert_int_equal(ctrio_send_channel_statistics(s).open_receive_channels, 0);
    assert_int_equal(ctrio_send_channel_statistics(s).current_buffer_used, 0);
    assert_int_equal(ctrio_channel_send_nowait(s, &v), -EPIPE);
    assert_int_equal(ctrio_send_channel_close(s), 0);
    return 0;
}
static void test_receive_channel_clone_and_close(void **state)
{
    (void)state;
    assert_int_equal(run_mock(clone_close_body, NULL), 0);
}

/* Trio: tests/test_channel.py::test_close_multiple_send_handles — closing one
 * send handle wakes only the senders on that handle. */
static int multi_send_close_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s1, *s2;
    ctrio_receive_channel *r;
    int out = 0;
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 0, &s1, &r), 0);
    assert_int_equal(ctrio_send_channel_clone(s1, &s2), 0);
    chan_ctx nope = {.tx = s1, .value = 111, .expect = -EBADF};
    chan_ctx ok = {.tx = s2, .value = 222, .expect = 0};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, send_expect, &nope);
    ctrio_start_soon(&n, send_expect, &ok);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(ctrio_send_channel_close(s1), 0);
    assert_int_equal(ctrio_channel_receive(r, &out), 1);
    assert_int_equal(out, 222);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(nope.done + ok.done, 2);
    /* nothing of the closed handle's send is left behind */
    assert_int_equal(ctrio_channel_receive_nowait(r, &out), -EWOULDBLOCK);
    ctrio_send_channel_close(s2);
    ctrio_receive_channel_close(r);
    return 0;
}
static void test_close_multiple_send_handles(void **state)
{
    (void)state;
    assert_int_equal(run_mock(multi_send_close_body, NULL), 0);
}

/* Trio: tests/test_channel.py::test_close_multiple_receive_handles */
static int multi_recv_close_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s;
    ctrio_receive_channel *r1, *r2;
    int v = 333;
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 0, &s, &r1), 0);
    assert_int_equal(ctrio_receive_channel_clone(r1, &r2), 0);
    chan_ctx closes = {.rx = r1, .expect = -EBADF};
    chan_ctx ok = {.rx = r2, .expect = 1};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, receive_expect, &closes);
    ctrio_start_soon(&n, receive_expect, &ok);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(ctrio_receive_channel_close(r1), 0);
    assert_int_equal(ctrio_channel_send(s, &v), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(ok.got_value, 333);
    assert_int_equal(closes.got_value, -1);
    ctrio_send_channel_close(s);
    ctrio_receive_channel_close(r2);
    return 0;
}
static void test_close_multiple_receive_handles(void **state)
{
    (void)state;
    assert_int_equal(run_mock(multi_recv_close_body, NULL), 0);
}

/* Trio: tests/test_channel.py::test_inf_capacity, adapted: C has no infinite
 * capacity; a large one accepts everything without blocking and keeps the
 * order, across wrap-arounds of the ring. */
#define BIG 100000
static int big_capacity_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s;
    ctrio_receive_channel *r;
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), BIG, &s, &r), 0);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < BIG; i++)
            assert_int_equal(ctrio_channel_send_nowait(s, &i), 0);
        int v = -1;
        assert_int_equal(ctrio_channel_send_nowait(s, &v), -EWOULDBLOCK);
        assert_int_equal(ctrio_send_channel_statistics(s).current_buffer_used, BIG);
        /* take half, refill half: the ring wraps */
        for (int i = 0; i < BIG / 2; i++) {
            assert_int_equal(ctrio_channel_receive_nowait(r, &v), 1);
            assert_int_equal(v, i);
        }
        for (int i = BIG; i < BIG + BIG / 2; i++)
            assert_int_equal(ctrio_channel_send_nowait(s, &i), 0);
        for (int i = BIG / 2; i < BIG + BIG / 2; i++) {
            assert_int_equal(ctrio_channel_receive_nowait(r, &v), 1);
            assert_int_equal(v, i);
        }
        assert_int_equal(ctrio_channel_receive_nowait(r, &v), -EWOULDBLOCK);
    }
    ctrio_send_channel_close(s);
    int v;
    assert_int_equal(ctrio_channel_receive(r, &v), 0);
    ctrio_receive_channel_close(r);
    return 0;
}
static void test_large_capacity(void **state)
{
    (void)state;
    assert_int_equal(run_mock(big_capacity_body, NULL), 0);
}

/* Trio: tests/test_channel.py::test_statistics */
static int send_none(void *p)
{
    int v = 0;
    return ctrio_channel_send(p, &v);
}
static int receive_one(void *p)
{
    int v;
    int rc = ctrio_channel_receive(p, &v);
    return rc < 0 ? rc : 0;
}

static int statistics_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s, *s2;
    ctrio_receive_channel *r, *r2;
    int v = 0;
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 2, &s, &r), 0);

    ctrio_channel_statistics a = ctrio_send_channel_statistics(s);
    ctrio_channel_statistics b = ctrio_receive_channel_statistics(r);
    assert_memory_equal(&a, &b, sizeof a);
    assert_int_equal(a.current_buffer_used, 0);
    assert_int_equal(a.max_buffer_size, 2);
    assert_int_equal(a.open_send_channels, 1);
    assert_int_equal(a.open_receive_channels, 1);
    assert_int_equal(a.tasks_waiting_send, 0);
    assert_int_equal(a.tasks_waiting_receive, 0);

    assert_int_equal(ctrio_channel_send_nowait(s, &v), 0);
    assert_int_equal(ctrio_send_channel_statistics(s).current_buffer_used, 1);

    assert_int_equal(ctrio_send_channel_clone(s, &s2), 0);
    assert_int_equal(ctrio_send_channel_statistics(s).open_send_channels, 2);
    ctrio_send_channel_close(s);
    assert_int_equal(ctrio_send_channel_statistics(s2).open_send_channels, 1);

    assert_int_equal(ctrio_receive_channel_clone(r, &r2), 0);
    assert_int_equal(ctrio_send_channel_statistics(s2).open_receive_channels, 2);
    ctrio_receive_channel_close(r2);
    assert_int_equal(ctrio_send_channel_statistics(s2).open_receive_channels, 1);

    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_channel_send_nowait(s2, &v), 0); /* fill up the buffer */
    assert_int_equal(ctrio_send_channel_statistics(s2).current_buffer_used, 2);
    ctrio_start_soon(&n, send_none, s2);
    ctrio_start_soon(&n, send_none, s2);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(ctrio_send_channel_statistics(s2).tasks_waiting_send, 2);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(ctrio_send_channel_statistics(s2).tasks_waiting_send, 0);
    assert_int_equal(ctrio_send_channel_statistics(s2).current_buffer_used, 2);

    /* empty out the buffer again */
    int k = 0;
    while (ctrio_channel_receive_nowait(r, &v) == 1)
        k++;
    assert_int_equal(k, 2);

    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, receive_one, r);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(ctrio_send_channel_statistics(s2).tasks_waiting_receive, 1);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(ctrio_send_channel_statistics(s2).tasks_waiting_receive, 0);

    ctrio_send_channel_close(s2);
    ctrio_receive_channel_close(r);
    return 0;
}
static void test_statistics(void **state)
{
    (void)state;
    assert_int_equal(run_mock(statistics_body, NULL), 0);
}

/* Trio: tests/test_channel.py::test_channel_fairness — a waiting receiver owns
 * the next element sent; a waiting sender owns the next free slot. */
static int fairness_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s;
    ctrio_receive_channel *r;
    ctrio_nursery n;
    int v, out;

    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 1, &s, &r), 0);
    v = 1;
    assert_int_equal(ctrio_channel_send_nowait(s, &v), 0);
    assert_int_equal(ctrio_channel_receive_nowait(r, &out), 1);
    assert_int_equal(out, 1);
    v = 2;
    assert_int_equal(ctrio_channel_send_nowait(s, &v), 0);
    assert_int_equal(ctrio_channel_receive_nowait(r, &out), 1);
    assert_int_equal(out, 2);

    chan_ctx rc = {.rx = r, .expect = 1};
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, receive_expect, &rc);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    v = 2;
    assert_int_equal(ctrio_channel_send_nowait(s, &v), 0);
    assert_int_equal(ctrio_channel_receive_nowait(r, &out), -EWOULDBLOCK);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(rc.got_value, 2);
    ctrio_send_channel_close(s);
    ctrio_receive_channel_close(r);

    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 1, &s, &r), 0);
    v = 1;
    assert_int_equal(ctrio_channel_send_nowait(s, &v), 0);
    assert_int_equal(ctrio_channel_send_nowait(s, &v), -EWOULDBLOCK);
    chan_ctx sc = {.tx = s, .value = 2, .expect = 0};
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, send_expect, &sc);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(ctrio_channel_receive_nowait(r, &out), 1);
    assert_int_equal(out, 1);
    v = 3;
    assert_int_equal(ctrio_channel_send_nowait(s, &v), -EWOULDBLOCK);
    assert_int_equal(ctrio_channel_receive(r, &out), 1);
    assert_int_equal(out, 2);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(sc.done, 1);
    ctrio_send_channel_close(s);
    ctrio_receive_channel_close(r);
    return 0;
}
static void test_channel_fairness(void **state)
{
    (void)state;
    assert_int_equal(run_mock(fairness_body, NULL), 0);
}

/* New (not in Trio): blocked senders are served in FIFO order when slots
 * free up, and blocked receivers in FIFO order when elements arrive. */
typedef struct {
    ctrio_send_channel *tx;
    ctrio_receive_channel *rx;
    int id;
    int *order;
    int *norder;
} fifo_ctx;

static int fifo_sender(void *p)
{
    fifo_ctx *c = p;
    assert_int_equal(ctrio_channel_send(c->tx, &c->id), 0);
    return 0;
}
static int fifo_receiver(void *p)
{
    fifo_ctx *c = p;
    int v;
    assert_int_equal(ctrio_channel_receive(c->rx, &v), 1);
    c->order[(*c->norder)++] = c->id * 100 + v;
    return 0;
}

static int fifo_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s;
    ctrio_receive_channel *r;
    ctrio_nursery n;
    fifo_ctx fc[5];
    int order[5], norder = 0, v;

    /* senders: started in order 0..4, each waits in turn */
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 0, &s, &r), 0);
    ctrio_nursery_open(&n);
    for (int i = 0; i < 5; i++) {
        fc[i] = (fifo_ctx){s, r, i, order, &norder};
        ctrio_start_soon(&n, fifo_sender, &fc[i]);
        assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    }
    for (int i = 0; i < 5; i++) {
        assert_int_equal(ctrio_channel_receive(r, &v), 1);
        assert_int_equal(v, i);
    }
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);

    /* receivers: the i-th element goes to the i-th receiver */
    ctrio_nursery_open(&n);
    for (int i = 0; i < 5; i++) {
        ctrio_start_soon(&n, fifo_receiver, &fc[i]);
        assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    }
    for (int i = 0; i < 5; i++) {
        v = 10 + i;
        assert_int_equal(ctrio_channel_send_nowait(s, &v), 0);
    }
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(norder, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(order[i], i * 100 + 10 + i);
    ctrio_send_channel_close(s);
    ctrio_receive_channel_close(r);
    return 0;
}
static void test_channel_fifo_waiters(void **state)
{
    (void)state;
    assert_int_equal(run_mock(fifo_body, NULL), 0);
}

/* Trio: tests/test_channel.py::test_unbuffered — rendezvous: both sides are
 * checkpoints; nothing can be sent or received without a partner. */
static int do_send_cp(void *p)
{
    chan_ctx *c = p;
    ASSERT_CHECKPOINTS(assert_int_equal(ctrio_channel_send(c->tx, &c->value), 0));
    c->done = 1;
    return 0;
}

static int unbuffered_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s;
    ctrio_receive_channel *r;
    int v = 1, out = 0;
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 0, &s, &r), 0);
    assert_int_equal(ctrio_channel_receive_nowait(r, &out), -EWOULDBLOCK);
    assert_int_equal(ctrio_channel_send_nowait(s, &v), -EWOULDBLOCK);
    assert_int_equal(ctrio_send_channel_statistics(s).max_buffer_size, 0);

    chan_ctx c = {.tx = s, .value = 1};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, do_send_cp, &c);
    ASSERT_CHECKPOINTS(assert_int_equal(ctrio_channel_receive(r, &out), 1));
    assert_int_equal(out, 1);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(c.done, 1);
    assert_int_equal(ctrio_channel_receive_nowait(r, &out), -EWOULDBLOCK);
    ctrio_send_channel_close(s);
    ctrio_receive_channel_close(r);
    return 0;
}
static void test_unbuffered(void **state)
{
    (void)state;
    assert_int_equal(run_mock(unbuffered_body, NULL), 0);
}

/* New (not in Trio): send and receive are full checkpoints even when they
 * complete at once (one cancel point, one schedule point), and the nowait
 * forms never are. */
static int checkpoint_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s;
    ctrio_receive_channel *r;
    int v = 9, out = 0;
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 4, &s, &r), 0);
    CP_EXACT(assert_int_equal(ctrio_channel_send(s, &v), 0), 1, 1);
    CP_EXACT(assert_int_equal(ctrio_channel_receive(r, &out), 1), 1, 1);
    assert_int_equal(out, 9);
    CP_EXACT(assert_int_equal(ctrio_channel_send_nowait(s, &v), 0), 0, 0);
    CP_EXACT(assert_int_equal(ctrio_channel_receive_nowait(r, &out), 1), 0, 0);
    /* a send that fails at once (-EPIPE) is still a checkpoint */
    ctrio_send_channel *s2;
    assert_int_equal(ctrio_send_channel_clone(s, &s2), 0);
    ctrio_send_channel_close(s);
    ctrio_receive_channel_close(r);
    CP_EXACT(assert_int_equal(ctrio_channel_send(s2, &v), -EPIPE), 1, 1);
    ctrio_send_channel_close(s2);
    return 0;
}
static void test_send_receive_are_checkpoints(void **state)
{
    (void)state;
    assert_int_equal(run_mock(checkpoint_body, NULL), 0);
}

/* New (not in Trio as such): a cancelled send does not deliver its element,
 * whether it was cancelled before it started (buffer space free) or while
 * blocked; a cancelled receive takes nothing. */
static int cancelled_send_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s;
    ctrio_receive_channel *r;
    ctrio_cancel_scope cs;
    int v = 5, out = -1, rc;

    /* buffered, space free, but already cancelled */
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 2, &s, &r), 0);
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    rc = ctrio_channel_send(s, &v);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_int_equal(ctrio_send_channel_statistics(s).current_buffer_used, 0);
    assert_int_equal(ctrio_channel_receive_nowait(r, &out), -EWOULDBLOCK);

    /* a receive cancelled up front does not take a buffered element */
    assert_int_equal(ctrio_channel_send_nowait(s, &v), 0);
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    rc = ctrio_channel_receive(r, &out);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_int_equal(out, -1);
    assert_int_equal(ctrio_send_channel_statistics(s).current_buffer_used, 1);
    assert_int_equal(ctrio_channel_receive_nowait(r, &out), 1);
    assert_int_equal(out, 5);
    ctrio_send_channel_close(s);
    ctrio_receive_channel_close(r);

    /* unbuffered: a sender blocked and then cancelled by a timeout */
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 0, &s, &r), 0);
    ctrio_move_on_after(&cs, 1.0);
    rc = ctrio_channel_send(s, &v);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_current_time() == 1.0);
    assert_int_equal(ctrio_send_channel_statistics(s).tasks_waiting_send, 0);
    out = -1;
    assert_int_equal(ctrio_channel_receive_nowait(r, &out), -EWOULDBLOCK);
    assert_int_equal(out, -1);

    /* full buffer: the blocked sender's element must not slip in later */
    ctrio_send_channel_close(s);
    ctrio_receive_channel_close(r);
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 1, &s, &r), 0);
    int first = 1;
    assert_int_equal(ctrio_channel_send_nowait(s, &first), 0);
    ctrio_move_on_after(&cs, 1.0);
    rc = ctrio_channel_send(s, &v);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_int_equal(ctrio_channel_receive_nowait(r, &out), 1);
    assert_int_equal(out, 1);
    assert_int_equal(ctrio_channel_receive_nowait(r, &out), -EWOULDBLOCK);
    ctrio_send_channel_close(s);
    ctrio_receive_channel_close(r);
    return 0;
}
static void test_cancelled_send_does_not_deliver(void **state)
{
    (void)state;
    assert_int_equal(run_mock(cancelled_send_body, NULL), 0);
}

/* New (not in Trio): closing the last send handle wakes every blocked
 * receiver with end of channel (0), and buffered elements are still drained
 * first. */
static int end_of_channel_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s;
    ctrio_receive_channel *r;
    ctrio_nursery n;
    chan_ctx rc[3];
    int v;
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 3, &s, &r), 0);
    ctrio_nursery_open(&n);
    for (int i = 0; i < 3; i++) {
        rc[i] = (chan_ctx){.rx = r, .expect = 0};
        ctrio_start_soon(&n, receive_expect, &rc[i]);
    }
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(ctrio_receive_channel_statistics(r).tasks_waiting_receive, 3);
    ctrio_send_channel_close(s);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(rc[i].done, 1);
    ctrio_receive_channel_close(r);

    /* buffered elements come out before the end */
    assert_int_equal(ctrio_open_memory_channel(sizeof(int), 3, &s, &r), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ctrio_channel_send_nowait(s, &i), 0);
    ctrio_send_channel_close(s);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ctrio_channel_receive(r, &v), 1);
        assert_int_equal(v, i);
    }
    assert_int_equal(ctrio_channel_receive(r, &v), 0);
    ctrio_receive_channel_close(r);
    return 0;
}
static void test_end_of_channel_wakes_receivers(void **state)
{
    (void)state;
    assert_int_equal(run_mock(end_of_channel_body, NULL), 0);
}

/* New (not in Trio: Python objects have no size): element sizes. Size 0 and
 * NULL outputs are -EINVAL; large structs are copied whole, through the
 * buffer and through a direct hand-off. */
typedef struct {
    char bytes[200];
    uint64_t tag;
} big_elem;

static int big_sender(void *p)
{
    ctrio_send_channel *s = p;
    big_elem e;
    memset(e.bytes, 'z', sizeof e.bytes);
    e.tag = 0xfeedfacecafebeefull;
    return ctrio_channel_send(s, &e);
}

static int elem_size_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s = NULL;
    ctrio_receive_channel *r = NULL;
    assert_int_equal(ctrio_open_memory_channel(0, 1, &s, &r), -EINVAL);
    assert_int_equal(ctrio_open_memory_channel(0, 0, &s, &r), -EINVAL);
    assert_int_equal(ctrio_open_memory_channel(4, 1, NULL, &r), -EINVAL);
    assert_int_equal(ctrio_open_memory_channel(4, 1, &s, NULL), -EINVAL);
    assert_int_equal(ctrio_open_memory_channel(SIZE_MAX / 2, 4, &s, &r), -EINVAL);
    assert_null(s);
    assert_null(r);

    assert_int_equal(ctrio_open_memory_channel(sizeof(big_elem), 2, &s, &r), 0);
    big_elem in, out;
    for (int i = 0; i < 5; i++) {
        memset(in.bytes, 'a' + i, sizeof in.bytes);
        in.tag = (uint64_t)i * 0x0101010101010101ull;
        assert_int_equal(ctrio_channel_send(s, &in), 0);
        memset(&out, 0, sizeof out);
        assert_int_equal(ctrio_channel_receive(r, &out), 1);
        assert_memory_equal(&in, &out, sizeof in);
    }
    ctrio_send_channel_close(s);
    ctrio_receive_channel_close(r);

    /* direct hand-off from a blocked sender's stack */
    assert_int_equal(ctrio_open_memory_channel(sizeof(big_elem), 0, &s, &r), 0);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, big_sender, s);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    memset(&out, 0, sizeof out);
    assert_int_equal(ctrio_channel_receive_nowait(r, &out), 1);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(out.tag, 0xfeedfacecafebeefull);
    for (size_t i = 0; i < sizeof out.bytes; i++)
        assert_int_equal(out.bytes[i], 'z');
    ctrio_send_channel_close(s);
    ctrio_receive_channel_close(r);
    return 0;
}
static void test_element_sizes(void **state)
{
    (void)state;
    assert_int_equal(run_mock(elem_size_body, NULL), 0);
}

/* New: the NULL rule of ctrio.h (Conventions) for channels: the calls that
 * return int already said -EINVAL; the statistics, which dereferenced it,
 * are all zero. */
static void test_channel_null_handles(void **state)
{
    (void)state;
    ctrio_channel_statistics z = {0, 0, 0, 0, 0, 0};
    ctrio_channel_statistics s = ctrio_send_channel_statistics(NULL);
    assert_memory_equal(&s, &z, sizeof s);
    s = ctrio_receive_channel_statistics(NULL);
    assert_memory_equal(&s, &z, sizeof s);
    int x = 0;
    assert_int_equal(ctrio_channel_send_nowait(NULL, &x), -EINVAL);
    assert_int_equal(ctrio_channel_receive_nowait(NULL, &x), -EINVAL);
    assert_int_equal(ctrio_send_channel_close(NULL), -EINVAL);
    assert_int_equal(ctrio_receive_channel_close(NULL), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_channel),
        TEST(test_channel_null_handles),
        TEST(test_553),
        TEST(test_channel_multiple_producers),
        TEST(test_channel_multiple_consumers),
        TEST(test_close_basic),
        TEST(test_close_sync),
        TEST(test_receive_channel_clone_and_close),
        TEST(test_close_multiple_send_handles),
        TEST(test_close_multiple_receive_handles),
        TEST(test_large_capacity),
        TEST(test_statistics),
        TEST(test_channel_fairness),
        TEST(test_channel_fifo_waiters),
        TEST(test_unbuffered),
        TEST(test_send_receive_are_checkpoints),
        TEST(test_cancelled_send_does_not_deliver),
        TEST(test_end_of_channel_wakes_receivers),
        TEST(test_element_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
