/*
 * test_xchannel.c — shared channels (ctrio_open_shared_channel): the memory
 * channel's semantics (Trio's tests/test_channel.py) with the ends in
 * different runs, each run started by this program on its own pthread, and
 * the races only threads create: a handoff from another run meeting a
 * cancellation, closes from another run, a run ending while others hold ends.
 *
 * Code running on the runs' threads must not use cmocka's assertions (they
 * longjmp to the main thread's test): it uses CHECK, which records the first
 * failing line; the main thread asserts that none failed.
 */
#include "support.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

static _Atomic int failed_line;

#define CHECK(c)                                                                                  \
    do {                                                                                          \
        if (!(c)) {                                                                               \
            int zero_ = 0;                                                                        \
            atomic_compare_exchange_strong(&failed_line, &zero_, __LINE__);                       \
            return -EIO;                                                                          \
        }                                                                                         \
    } while (0)

/* ---- runs on threads ---------------------------------------------------- */

typedef struct run_thread {
    pthread_t th;
    ctrio_fn fn;
    void *arg;
    int rc;
} run_thread;

static void *run_thread_main(void *p)
{
    run_thread *r = p;
    r->rc = ctrio_run(r->fn, r->arg);
    return NULL;
}

static void start_run(run_thread *r, ctrio_fn fn, void *arg)
{
    r->fn = fn;
    r->arg = arg;
    r->rc = -1;
    assert_int_equal(pthread_create(&r->th, NULL, run_thread_main, r), 0);
}

/* Join within 60 s (a hang fails the test instead of the whole suite's
 * timeout) and check that the run returned 0 and no CHECK failed. */
static void join_run(run_thread *r)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 60;
    assert_int_equal(pthread_timedjoin_np(r->th, NULL, &ts), 0);
    assert_int_equal(atomic_load(&failed_line), 0);
    assert_int_equal(r->rc, 0);
}

static int setup(void **state)
{
    atomic_store(&failed_line, 0);
    return fd_setup(state);
}
#define XTEST(fn) cmocka_unit_test_setup_teardown(fn, setup, fd_teardown)

/* Poll (at most 10 s) until pred(arg): from a task, sleeping 100 µs between
 * looks; from a thread with no run, with nanosleep. */
static bool wait_for(bool (*pred)(void *), void *arg)
{
    double end = real_now() + 10;
    while (!pred(arg)) {
        if (real_now() > end)
            return false;
        if (ctrio_current_token()) {
            ctrio_sleep(1e-4);
        } else {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
    }
    return true;
}

static bool recv_waiting_is_1(void *rx)
{
    return ctrio_receive_channel_statistics(rx).tasks_waiting_receive == 1;
}
static bool recv_waiting_is_2(void *rx)
{
    return ctrio_receive_channel_statistics(rx).tasks_waiting_receive == 2;
}
static bool recv_waiting_is_0(void *rx)
{
    return ctrio_receive_channel_statistics(rx).tasks_waiting_receive == 0;
}
static bool send_waiting_is_1(void *tx)
{
    return ctrio_send_channel_statistics(tx).tasks_waiting_send == 1;
}
static bool send_waiting_is_0(void *tx)
{
    return ctrio_send_channel_statistics(tx).tasks_waiting_send == 0;
}
static bool flag_set(void *p)
{
    return atomic_load((_Atomic int *)p) != 0;
}

/* ---- one run: the memory channel's semantics ------------------------------ */

/* Trio: tests/test_channel.py::test_channel, on a shared channel in one run:
 * the same results and checkpoints as a memory channel. */
static int basic_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s;
    ctrio_receive_channel *r;
    int v = 1, out = 0;
    assert_int_equal(ctrio_open_shared_channel(sizeof(int), 2, &s, &r), 0);
    ASSERT_NO_CHECKPOINTS(assert_int_equal(ctrio_channel_send_nowait(s, &v), 0));
    v = 2;
    ASSERT_CHECKPOINTS(assert_int_equal(ctrio_channel_send(s, &v), 0));
    v = 3;
    ASSERT_NO_CHECKPOINTS(assert_int_equal(ctrio_channel_send_nowait(s, &v), -EWOULDBLOCK));
    ctrio_channel_statistics st = ctrio_send_channel_statistics(s);
    assert_int_equal(st.current_buffer_used, 2);
    assert_int_equal(st.max_buffer_size, 2);
    assert_int_equal(st.open_send_channels, 1);
    assert_int_equal(st.open_receive_channels, 1);
    ASSERT_CHECKPOINTS(assert_int_equal(ctrio_channel_receive(r, &out), 1));
    assert_int_equal(out, 1);
    ASSERT_NO_CHECKPOINTS(assert_int_equal(ctrio_channel_receive_nowait(r, &out), 1));
    assert_int_equal(out, 2);
    ASSERT_NO_CHECKPOINTS(assert_int_equal(ctrio_channel_receive_nowait(r, &out), -EWOULDBLOCK));

    /* a blocked receive times out and leaves nothing queued (Trio #553) */
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 10);
    int rc = ctrio_channel_receive(r, &out);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_int_equal(ctrio_receive_channel_statistics(r).tasks_waiting_receive, 0);

    ctrio_send_channel *s2;
    assert_int_equal(ctrio_send_channel_clone(s, &s2), 0);
    assert_int_equal(ctrio_send_channel_statistics(s).open_send_channels, 2);
    v = 4;
    assert_int_equal(ctrio_channel_send_nowait(s2, &v), 0);
    assert_int_equal(ctrio_send_channel_close(s), 0);
    assert_int_equal(ctrio_send_channel_close(s2), 0);
    assert_int_equal(ctrio_channel_receive_nowait(r, &out), 1);
    assert_int_equal(out, 4);
    assert_int_equal(ctrio_channel_receive(r, &out), 0); /* EndOfChannel */
    assert_int_equal(ctrio_channel_receive_nowait(r, &out), 0);
    assert_int_equal(ctrio_receive_channel_close(r), 0);

    /* every receive end closed: the sender's BrokenResourceError */
    assert_int_equal(ctrio_open_shared_channel(sizeof(int), 0, &s, &r), 0);
    assert_int_equal(ctrio_receive_channel_close(r), 0);
    assert_int_equal(ctrio_channel_send(s, &v), -EPIPE);
    assert_int_equal(ctrio_channel_send_nowait(s, &v), -EPIPE);
    assert_int_equal(ctrio_send_channel_close(s), 0);
    return 0;
}
static void test_shared_basic(void **state)
{
    (void)state;
    assert_int_equal(run_mock(basic_body, NULL), 0);
    ctrio_send_channel *s;
    ctrio_receive_channel *r;
    assert_int_equal(ctrio_open_shared_channel(0, 1, &s, &r), -EINVAL);
    assert_int_equal(ctrio_open_shared_channel(4, 1, NULL, &r), -EINVAL);
    assert_int_equal(ctrio_open_shared_channel(SIZE_MAX / 2, 4, &s, &r), -EINVAL);
}

/* Trio: tests/test_channel.py::test_cancelled_send_does_not_deliver-like, in
 * one run: a blocked send cancelled before any receiver leaves nothing. */
static int cancelled_send_body(void *arg)
{
    (void)arg;
    ctrio_send_channel *s;
    ctrio_receive_channel *r;
    int v = 9, out;
    assert_int_equal(ctrio_open_shared_channel(sizeof(int), 0, &s, &r), 0);
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 1);
    int rc = ctrio_channel_send(s, &v);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_int_equal(ctrio_channel_receive_nowait(r, &out), -EWOULDBLOCK);
    assert_int_equal(ctrio_send_channel_statistics(s).tasks_waiting_send, 0);
    ctrio_send_channel_close(s);
    ctrio_receive_channel_close(r);
    return 0;
}
static void test_cancelled_send_does_not_deliver(void **state)
{
    (void)state;
    assert_int_equal(run_mock(cancelled_send_body, NULL), 0);
}

/* ---- two runs ------------------------------------------------------------ */

typedef struct pair_ctx {
    ctrio_send_channel *tx;
    ctrio_receive_channel *rx;
    int n;
} pair_ctx;

static int fifo_producer(void *p)
{
    pair_ctx *c = p;
    for (int i = 0; i < c->n; i++)
        CHECK(ctrio_channel_send(c->tx, &i) == 0);
    CHECK(ctrio_send_channel_close(c->tx) == 0);
    return 0;
}

static int fifo_consumer(void *p)
{
    pair_ctx *c = p;
    int v, rc, expect = 0;
    while ((rc = ctrio_channel_receive(c->rx, &v)) == 1)
        CHECK(v == expect++);
    CHECK(rc == 0 && expect == c->n); /* end of channel after the last one */
    CHECK(ctrio_receive_channel_close(c->rx) == 0);
    return 0;
}

/* One producer run, one consumer run: every element once, in order, then
 * end of channel; capacities 0 (rendezvous), 1 and 16. */
static void test_two_runs_fifo(void **state)
{
    (void)state;
    size_t caps[] = {0, 1, 16};
    for (size_t k = 0; k < 3; k++) {
        pair_ctx c = {.n = 20000};
        assert_int_equal(ctrio_open_shared_channel(sizeof(int), caps[k], &c.tx, &c.rx), 0);
        run_thread a, b;
        start_run(&a, fifo_producer, &c);
        start_run(&b, fifo_consumer, &c);
        join_run(&a);
        join_run(&b);
    }
}

/* Rendezvous across threads: with capacity 0 nothing is buffered; a receiver
 * blocked in a run is served by send_nowait from a thread with no run, and a
 * blocked sender by receive_nowait. */
static int rendezvous_run(void *p)
{
    pair_ctx *c = p;
    int v = 0;
    CHECK(ctrio_channel_receive(c->rx, &v) == 1);
    CHECK(v == 77);
    v = 78;
    CHECK(ctrio_channel_send(c->tx, &v) == 0);
    return 0;
}

static void test_rendezvous(void **state)
{
    (void)state;
    pair_ctx c = {0};
    int v = 5;
    assert_int_equal(ctrio_open_shared_channel(sizeof(int), 0, &c.tx, &c.rx), 0);
    assert_int_equal(ctrio_channel_send_nowait(c.tx, &v), -EWOULDBLOCK);
    assert_int_equal(ctrio_channel_receive_nowait(c.rx, &v), -EWOULDBLOCK);
    assert_int_equal(ctrio_send_channel_statistics(c.tx).max_buffer_size, 0);
    run_thread a;
    start_run(&a, rendezvous_run, &c);
    assert_true(wait_for(recv_waiting_is_1, c.rx));
    v = 77;
    assert_int_equal(ctrio_channel_send_nowait(c.tx, &v), 0);
    assert_true(wait_for(send_waiting_is_1, c.tx));
    assert_int_equal(ctrio_send_channel_statistics(c.tx).current_buffer_used, 0);
    assert_int_equal(ctrio_channel_receive_nowait(c.rx, &v), 1);
    assert_int_equal(v, 78);
    join_run(&a);
    assert_int_equal(ctrio_send_channel_close(c.tx), 0);
    assert_int_equal(ctrio_receive_channel_close(c.rx), 0);
}

/* ---- eight runs hammering one channel ----------------------------------- */

#define HAMMER_RUNS 8
#define HAMMER_PER_RUN 2000

typedef struct hammer_ctx {
    ctrio_send_channel *tx[HAMMER_RUNS];
    ctrio_receive_channel *rx[HAMMER_RUNS];
    _Atomic int seen[HAMMER_RUNS * HAMMER_PER_RUN];
    _Atomic int received;
    _Atomic int next_run;
} hammer_ctx;

typedef struct hammer_run {
    hammer_ctx *h;
    int i;
} hammer_run;

static int hammer_send(void *p)
{
    hammer_run *hr = p;
    for (int j = 0; j < HAMMER_PER_RUN; j++) {
        int v = hr->i * HAMMER_PER_RUN + j;
        CHECK(ctrio_channel_send(hr->h->tx[hr->i], &v) == 0);
    }
    CHECK(ctrio_send_channel_close(hr->h->tx[hr->i]) == 0);
    return 0;
}

static int hammer_receive(void *p)
{
    hammer_run *hr = p;
    int v, rc;
    while ((rc = ctrio_channel_receive(hr->h->rx[hr->i], &v)) == 1) {
        CHECK(v >= 0 && v < HAMMER_RUNS * HAMMER_PER_RUN);
        atomic_fetch_add(&hr->h->seen[v], 1);
        atomic_fetch_add(&hr->h->received, 1);
    }
    CHECK(rc == 0);
    return 0;
}

/* Each run: a sender task (its own clone, closed when done) and two
 * receiver tasks sharing the run's receive clone (closed after both end). */
static int hammer_main(void *p)
{
    hammer_ctx *h = p;
    hammer_run hr = {h, atomic_fetch_add(&h->next_run, 1)};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, hammer_send, &hr);
    ctrio_start_soon(&n, hammer_receive, &hr);
    ctrio_start_soon(&n, hammer_receive, &hr);
    CHECK(ctrio_nursery_close(&n, 0) == 0);
    CHECK(ctrio_receive_channel_close(h->rx[hr.i]) == 0);
    return 0;
}

static void test_eight_runs_hammer(void **state)
{
    (void)state;
    hammer_ctx *h = calloc(1, sizeof *h);
    assert_non_null(h);
    assert_int_equal(ctrio_open_shared_channel(sizeof(int), 3, &h->tx[0], &h->rx[0]), 0);
    for (int i = 1; i < HAMMER_RUNS; i++) {
        assert_int_equal(ctrio_send_channel_clone(h->tx[0], &h->tx[i]), 0);
        assert_int_equal(ctrio_receive_channel_clone(h->rx[0], &h->rx[i]), 0);
    }
    ctrio_channel_statistics st = ctrio_send_channel_statistics(h->tx[0]);
    assert_int_equal(st.open_send_channels, HAMMER_RUNS);
    assert_int_equal(st.open_receive_channels, HAMMER_RUNS);
    run_thread rt[HAMMER_RUNS];
    for (int i = 0; i < HAMMER_RUNS; i++)
        start_run(&rt[i], hammer_main, h);
    for (int i = 0; i < HAMMER_RUNS; i++)
        join_run(&rt[i]);
    assert_int_equal(atomic_load(&h->received), HAMMER_RUNS * HAMMER_PER_RUN);
    for (int v = 0; v < HAMMER_RUNS * HAMMER_PER_RUN; v++)
        assert_int_equal(atomic_load(&h->seen[v]), 1);
    free(h);
}

/* ---- cancellation against a handoff from another run -------------------- */

typedef struct handed_ctx {
    ctrio_send_channel *tx;
    ctrio_receive_channel *rx;
    bool sending; /* the blocked task sends (else receives) */
    ctrio_cancel_scope cs;
    int value, rc, rc_next, close_rc;
    _Atomic int go;
} handed_ctx;

static int handed_task(void *p)
{
    handed_ctx *h = p;
    ctrio_cancel_scope_open(&h->cs);
    if (h->sending) {
        h->value = 42;
        h->rc = ctrio_channel_send(h->tx, &h->value);
    } else {
        h->rc = ctrio_channel_receive(h->rx, &h->value);
    }
    h->rc_next = ctrio_checkpoint(); /* the cancellation shows here */
    h->close_rc = ctrio_cancel_scope_close(&h->cs, h->rc_next);
    return 0;
}

/* The blocked task's run: once the other run has taken its waiter (the
 * handoff is done, its wake-up posted but not yet run, since this thread
 * does not yield), cancel the task. */
static bool handed_off(void *p)
{
    handed_ctx *h = p;
    return h->sending ? send_waiting_is_0(h->tx) : recv_waiting_is_0(h->rx);
}

static int handed_waiter_run(void *p)
{
    handed_ctx *h = p;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, handed_task, h);
    CHECK(wait_for(h->sending ? send_waiting_is_1 : recv_waiting_is_1,
                   h->sending ? (void *)h->tx : (void *)h->rx));
    atomic_store(&h->go, 1);
    double end = real_now() + 10; /* spin: no checkpoint, so no post runs */
    while (!handed_off(h) && real_now() < end)
        sched_yield();
    CHECK(handed_off(h));
    ctrio_cancel_scope_cancel(&h->cs);
    CHECK(ctrio_nursery_close(&n, 0) == 0);
    return 0;
}

static int handed_other_run(void *p)
{
    handed_ctx *h = p;
    CHECK(wait_for(flag_set, &h->go));
    int v = 7;
    if (h->sending) {
        CHECK(ctrio_channel_receive_nowait(h->rx, &v) == 1);
        CHECK(v == 42);
    } else {
        CHECK(ctrio_channel_send_nowait(h->tx, &v) == 0);
    }
    return 0;
}

/* A receive (a send) blocked in one run, cancelled after another run has
 * completed the handoff: the element is neither lost nor sent twice; the
 * call returns the handoff's result and the cancellation arrives at the next
 * checkpoint (Trio's abort_fn returning Abort.FAILED, _core/_traps.py). */
static void test_cancel_after_handoff(void **state)
{
    (void)state;
    for (int sending = 0; sending < 2; sending++) {
        handed_ctx *h = calloc(1, sizeof *h);
        assert_non_null(h);
        h->sending = sending;
        assert_int_equal(ctrio_open_shared_channel(sizeof(int), 0, &h->tx, &h->rx), 0);
        run_thread a, b;
        start_run(&a, handed_waiter_run, h);
        start_run(&b, handed_other_run, h);
        join_run(&a);
        join_run(&b);
        assert_int_equal(h->rc, sending ? 0 : 1);
        assert_int_equal(h->value, sending ? 42 : 7);
        assert_int_equal(h->rc_next, -ECANCELED);
        assert_int_equal(h->close_rc, 0);
        int v;
        assert_int_equal(ctrio_channel_receive_nowait(h->rx, &v), -EWOULDBLOCK);
        ctrio_channel_statistics st = ctrio_send_channel_statistics(h->tx);
        assert_int_equal(st.tasks_waiting_send + st.tasks_waiting_receive, 0);
        ctrio_send_channel_close(h->tx);
        ctrio_receive_channel_close(h->rx);
        free(h);
    }
}

/* Random races: one run receives with timeouts of 0-30 µs, the other sends
 * 0..n-1 with timeouts too, resending a value until its send returns 0. A
 * send that returns 0 delivered exactly once, a cancelled one not at all:
 * the receiver sees 0..n-1 in order, then end of channel. */
typedef struct race_ctx {
    ctrio_send_channel *tx;
    ctrio_receive_channel *rx;
    int n;
    int late; /* receives that returned 1 although their scope was cancelled */
    int cancelled_receives, cancelled_sends;
} race_ctx;

static int race_receiver(void *p)
{
    race_ctx *c = p;
    int expect = 0, v, rc = 1;
    double end = real_now() + 20;
    for (unsigned i = 0; expect < c->n && real_now() < end; i++) {
        ctrio_cancel_scope cs;
        ctrio_move_on_after(&cs, 1e-5 * (i % 4));
        rc = ctrio_channel_receive(c->rx, &v);
        bool called = ctrio_cancel_scope_cancel_called(&cs);
        ctrio_cancel_scope_close(&cs, rc);
        if (rc == 1) {
            CHECK(v == expect++);
            c->late += called;
        } else {
            CHECK(rc == -ECANCELED);
            c->cancelled_receives++;
        }
    }
    CHECK(expect == c->n);
    CHECK(ctrio_channel_receive(c->rx, &v) == 0);
    CHECK(ctrio_receive_channel_close(c->rx) == 0);
    return 0;
}

static int race_sender(void *p)
{
    race_ctx *c = p;
    double end = real_now() + 20;
    for (unsigned k = 0, i = 0; i < (unsigned)c->n && real_now() < end; k++) {
        ctrio_cancel_scope cs;
        ctrio_move_on_after(&cs, 1e-5 * (k % 3));
        int rc = ctrio_channel_send(c->tx, &i);
        ctrio_cancel_scope_close(&cs, rc);
        if (rc == 0) {
            i++;
        } else {
            CHECK(rc == -ECANCELED);
            c->cancelled_sends++;
        }
    }
    CHECK(ctrio_send_channel_close(c->tx) == 0);
    return 0;
}

static void test_cancel_races(void **state)
{
    (void)state;
    size_t caps[] = {0, 2};
    for (size_t k = 0; k < 2; k++) {
        race_ctx c = {.n = under_valgrind() ? 300 : 3000};
        assert_int_equal(ctrio_open_shared_channel(sizeof(int), caps[k], &c.tx, &c.rx), 0);
        run_thread a, b;
        start_run(&a, race_receiver, &c);
        start_run(&b, race_sender, &c);
        join_run(&a);
        join_run(&b);
        print_message("capacity %zu: %d elements, %d receives and %d sends cancelled, %d "
                      "receives returned an element with their scope cancelled by then\n",
                      caps[k], c.n, c.cancelled_receives, c.cancelled_sends, c.late);
    }
}

/* ---- closing from the other run ----------------------------------------- */

typedef struct close_ctx {
    ctrio_send_channel *tx1, *tx2;
    ctrio_receive_channel *rx1, *rx1b, *rx2;
    int rc_clone, rc_orig, rc_send;
    _Atomic int clone_done;
} close_ctx;

static int close_recv_clone(void *p)
{
    close_ctx *c = p;
    int v;
    c->rc_clone = ctrio_channel_receive(c->rx1b, &v);
    atomic_store(&c->clone_done, 1);
    return 0;
}

static int close_recv_orig(void *p)
{
    close_ctx *c = p;
    int v;
    c->rc_orig = ctrio_channel_receive(c->rx1, &v);
    return 0;
}

static int close_send(void *p)
{
    close_ctx *c = p;
    int v = 1;
    c->rc_send = ctrio_channel_send(c->tx2, &v);
    return 0;
}

static int close_waiters_run(void *p)
{
    close_ctx *c = p;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    ctrio_start_soon(&n, close_recv_clone, c);
    ctrio_start_soon(&n, close_recv_orig, c);
    ctrio_start_soon(&n, close_send, c);
    CHECK(ctrio_nursery_close(&n, 0) == 0);
    CHECK(c->rc_clone == -EBADF);  /* its handle closed by the other run */
    CHECK(c->rc_orig == 0);        /* the last send end closed there */
    CHECK(c->rc_send == -EPIPE);   /* the last receive end closed there */
    CHECK(ctrio_receive_channel_close(c->rx1) == 0);
    CHECK(ctrio_send_channel_close(c->tx2) == 0);
    return 0;
}

static int close_closer_run(void *p)
{
    close_ctx *c = p;
    CHECK(wait_for(recv_waiting_is_2, c->rx1));
    CHECK(wait_for(send_waiting_is_1, c->tx2));
    CHECK(ctrio_receive_channel_close(c->rx1b) == 0);
    CHECK(wait_for(flag_set, &c->clone_done));
    CHECK(ctrio_receive_channel_statistics(c->rx1).tasks_waiting_receive == 1);
    CHECK(ctrio_send_channel_close(c->tx1) == 0);
    CHECK(ctrio_receive_channel_close(c->rx2) == 0);
    return 0;
}

static void test_close_from_other_run(void **state)
{
    (void)state;
    close_ctx c = {0};
    assert_int_equal(ctrio_open_shared_channel(sizeof(int), 1, &c.tx1, &c.rx1), 0);
    assert_int_equal(ctrio_receive_channel_clone(c.rx1, &c.rx1b), 0);
    assert_int_equal(ctrio_open_shared_channel(sizeof(int), 0, &c.tx2, &c.rx2), 0);
    run_thread a, b;
    start_run(&a, close_waiters_run, &c);
    start_run(&b, close_closer_run, &c);
    join_run(&a);
    join_run(&b);
}

/* ---- a run ending with waiters ------------------------------------------ */

typedef struct ending_ctx {
    ctrio_send_channel *tx, *tx2;
    ctrio_receive_channel *rx, *rx2;
    _Atomic long delivered, received;
    _Atomic int stop, pusher_done;
    int other_rc;
} ending_ctx;

/* A thread with no run: send_nowait as fast as it can until told to stop. */
static void *pusher(void *p)
{
    ending_ctx *c = p;
    long v = 0;
    double end = real_now() + 20;
    while (!atomic_load(&c->stop) && real_now() < end) {
        int rc = ctrio_channel_send_nowait(c->tx, &v);
        if (rc == 0) {
            v++;
            atomic_fetch_add(&c->delivered, 1);
        } else if (rc != -EWOULDBLOCK) {
            break;
        } else {
            sched_yield();
        }
    }
    atomic_store(&c->pusher_done, 1);
    return NULL;
}

static int ending_receiver(void *p)
{
    ending_ctx *c = p;
    long v;
    int rc;
    while ((rc = ctrio_channel_receive(c->rx, &v)) == 1)
        atomic_fetch_add(&c->received, 1);
    CHECK(rc == -ECANCELED);
    return 0;
}

static bool received_some(void *p)
{
    return atomic_load(&((ending_ctx *)p)->received) >= 2000;
}

/* Sixteen receivers blocked or running while the main task cancels them
 * all; then the run ends, its send end of the second channel closed, while
 * the other run still waits on that channel's receive end. */
static int ending_run(void *p)
{
    ending_ctx *c = p;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    for (int i = 0; i < 16; i++)
        ctrio_start_soon(&n, ending_receiver, c);
    CHECK(wait_for(received_some, c));
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    CHECK(ctrio_nursery_close(&n, 0) == 0);
    atomic_store(&c->stop, 1);
    CHECK(wait_for(flag_set, &c->pusher_done));
    long v;
    while (ctrio_channel_receive_nowait(c->rx, &v) == 1)
        atomic_fetch_add(&c->received, 1);
    CHECK(ctrio_receive_channel_statistics(c->rx).tasks_waiting_receive == 0);
    CHECK(ctrio_receive_channel_close(c->rx) == 0);
    CHECK(ctrio_send_channel_close(c->tx2) == 0);
    return 0;
}

static int ending_other_run(void *p)
{
    ending_ctx *c = p;
    long v;
    c->other_rc = ctrio_channel_receive(c->rx2, &v);
    CHECK(ctrio_receive_channel_close(c->rx2) == 0);
    return 0;
}

static void test_run_ends_with_waiters(void **state)
{
    (void)state;
    ending_ctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    assert_int_equal(ctrio_open_shared_channel(sizeof(long), 4, &c->tx, &c->rx), 0);
    assert_int_equal(ctrio_open_shared_channel(sizeof(long), 0, &c->tx2, &c->rx2), 0);
    c->other_rc = 99;
    run_thread a, b;
    pthread_t push;
    start_run(&b, ending_other_run, c);
    start_run(&a, ending_run, c);
    assert_int_equal(pthread_create(&push, NULL, pusher, c), 0);
    join_run(&a);
    join_run(&b);
    assert_int_equal(pthread_join(push, NULL), 0);
    assert_int_equal(c->other_rc, 0); /* end of channel, not a hang */
    assert_true(atomic_load(&c->received) >= 2000);
    assert_int_equal(atomic_load(&c->received), atomic_load(&c->delivered));
    assert_int_equal(ctrio_send_channel_close(c->tx), 0);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        XTEST(test_shared_basic),
        XTEST(test_cancelled_send_does_not_deliver),
        XTEST(test_two_runs_fifo),
        XTEST(test_rendezvous),
        XTEST(test_eight_runs_hammer),
        XTEST(test_cancel_after_handoff),
        XTEST(test_cancel_races),
        XTEST(test_close_from_other_run),
        XTEST(test_run_ends_with_waiters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
