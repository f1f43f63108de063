/*
 * stream_check.c — Trio's testing/_check_streams.py in C. See stream_check.h.
 *
 * Each block below names the check of _check_streams.py it ports (Trio's
 * comments are quoted where they name one).
 */
#include "stream_check.h"

#include "support.h"

#include <ctrio_testing.h>

#include <stdlib.h>

typedef struct maker {
    stream_pair_maker fn;
    void *ctx;
    bool flip; /* check_two_way_stream's flipped_stream_maker */
} maker;

/* The (s, r) of `async with _ForceCloseBoth(await stream_maker()) as (s, r)`:
 * a NULL member was closed already. */
typedef struct spair {
    ctrio_stream *s, *r;
} spair;

static bool is_broken(ssize_t rc)
{
    /* BrokenResourceError; a TLS stream's failures are BrokenResourceError
     * in Trio too (raised from the SSLError) */
    return rc == -EPIPE || rc == -ECONNRESET || rc == CTRIO_ETLS_TRUNCATED ||
           rc == CTRIO_ETLS_PROTOCOL;
}

static void make(const maker *m, spair *p)
{
    ctrio_stream *a = NULL, *b = NULL;
    assert_int_equal(m->fn(m->ctx, &a, &b), 0);
    assert_non_null(a);
    assert_non_null(b);
    p->s = m->flip ? b : a;
    p->r = m->flip ? a : b;
}

int stream_check_aclose_forcefully(ctrio_stream *s)
{
    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    int rc = ctrio_stream_close(s);
    return ctrio_cancel_scope_close(&cs, rc);
}

/* Take the stream out of its slot first, so no other task sees it freed. */
static int force_close(ctrio_stream **sp)
{
    ctrio_stream *s = *sp;
    *sp = NULL;
    return s ? stream_check_aclose_forcefully(s) : 0;
}

/* _ForceCloseBoth.__aexit__ */
static void force_close_both(spair *p)
{
    assert_int_equal(force_close(&p->s), 0);
    assert_int_equal(force_close(&p->r), 0);
}

/* ---- the checked calls (do_send_all, do_receive_some, do_aclose) --------- */

/* assert_checkpoints() around a call that succeeded (Trio's context manager
 * does not check when the call raises). */
static void assert_checkpointed(ctrio_checkpoint_counts before)
{
    ctrio_checkpoint_counts after = ctrio_task_checkpoint_counts();
    assert_true(after.cancel_points > before.cancel_points);
    assert_true(after.schedule_points > before.schedule_points);
}

static int do_send_all(ctrio_stream *s, const void *data, size_t len)
{
    ctrio_checkpoint_counts before = ctrio_task_checkpoint_counts();
    int rc = ctrio_stream_send_all(s, data, len);
    if (rc == 0)
        assert_checkpointed(before);
    return rc;
}

static ssize_t do_receive_some(ctrio_stream *s, void *buf, size_t max)
{
    ctrio_checkpoint_counts before = ctrio_task_checkpoint_counts();
    ssize_t rc = ctrio_stream_receive_some(s, buf, max);
    if (rc >= 0)
        assert_checkpointed(before);
    return rc;
}

/* checked_receive_1(expected): expected is a byte, or -1 for b"". */
static void checked_receive_1(ctrio_stream *s, int expected)
{
    char c = 0;
    ssize_t rc = do_receive_some(s, &c, 1);
    if (expected < 0) {
        assert_int_equal(rc, 0);
    } else {
        assert_int_equal(rc, 1);
        assert_int_equal(c, expected);
    }
}

static int do_aclose(ctrio_stream **sp)
{
    ctrio_stream *s = *sp;
    *sp = NULL;
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_stream_close(s));
    return rc;
}

static int do_wait_send(ctrio_stream *s)
{
    ctrio_checkpoint_counts before = ctrio_task_checkpoint_counts();
    int rc = ctrio_stream_wait_send_all_might_not_block(s);
    if (rc == 0)
        assert_checkpointed(before);
    return rc;
}

/* ---- tasks -------------------------------------------------------------- */

enum { OP_SEND, OP_RECV, OP_WAIT_SEND, OP_EOF, OP_CLOSE, OP_FORCE_CLOSE };

/* One call in a task of its own. The task returns the call's error (so a
 * nursery sees -EBUSY, as Trio's BusyResourceError propagates) unless
 * `expect` is set: then it asserts rc == expect and returns 0. */
typedef struct call {
    int op;
    ctrio_stream *s;   /* the stream, for everything but the closes */
    ctrio_stream **sp; /* the slot, for the closes */
    const char *data;
    size_t len; /* OP_SEND: bytes; OP_RECV: max */
    bool wait_blocked; /* wait_all_tasks_blocked() first (close_soon) */
    bool has_expect;
    ssize_t expect;
    ssize_t rc;
    char got[16];
} call;

static int call_task(void *arg)
{
    call *c = arg;
    ssize_t rc = 0;
    if (c->wait_blocked) {
        rc = ctrio_wait_all_tasks_blocked(0);
        if (rc < 0)
            return (int)rc;
    }
    switch (c->op) {
    case OP_SEND:
        rc = do_send_all(c->s, c->data, c->len);
        break;
    case OP_RECV:
        rc = do_receive_some(c->s, c->got, c->len);
        break;
    case OP_WAIT_SEND:
        rc = do_wait_send(c->s);
        break;
    case OP_EOF:
        rc = ctrio_stream_send_eof(c->s);
        break;
    case OP_CLOSE:
        rc = do_aclose(c->sp);
        break;
    case OP_FORCE_CLOSE:
        rc = force_close(c->sp);
        break;
    }
    c->rc = rc;
    if (c->has_expect) {
        assert_int_equal(rc, c->expect);
        return 0;
    }
    return rc < 0 ? (int)rc : 0;
}

/* async with open_nursery(): start_soon(a); start_soon(b) */
static int run_two(call *a, call *b)
{
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    int rc = ctrio_start_soon(&n, call_task, a);
    if (rc == 0)
        rc = ctrio_start_soon(&n, call_task, b);
    return ctrio_nursery_close(&n, rc);
}

/* with _assert_raises(BusyResourceError): async with open_nursery(): a, b
 * (b started once everything is blocked if `b_late`). */
static void expect_busy(call *a, call *b, bool b_late)
{
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    int rc = ctrio_start_soon(&n, call_task, a);
    if (rc == 0 && b_late)
        rc = ctrio_wait_all_tasks_blocked(0);
    if (rc == 0)
        rc = ctrio_start_soon(&n, call_task, b);
    assert_int_equal(ctrio_nursery_close(&n, rc), -EBUSY);
    /* exactly one of them was refused; the other was cancelled by the
     * nursery (or had finished) */
    assert_true((a->rc == -EBUSY) != (b->rc == -EBUSY));
}

static const char X100[] = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                           "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

/* Send b"x" * 100 until the stream breaks (bounded). */
static void send_until_broken(ctrio_stream *s)
{
    ssize_t rc = 0;
    for (int i = 0; i < 200000 && rc == 0; i++)
        rc = do_send_all(s, X100, 100);
    assert_true(is_broken(rc));
}

typedef struct ctx1 {
    spair *p;
    ctrio_nursery *nursery;
    int record[4];
    int nrecord;
} ctx1;

static int send_empty_then_y(void *arg)
{
    ctx1 *c = arg;
    /* "Streams should tolerate sending b"" without giving it any special
     * meaning." */
    assert_int_equal(do_send_all(c->p->s, NULL, 0), 0);
    assert_int_equal(do_send_all(c->p->s, "", 0), 0);
    assert_int_equal(do_send_all(c->p->s, "y", 1), 0);
    return 0;
}

static int receive_y(void *arg)
{
    ctx1 *c = arg;
    checked_receive_1(c->p->r, 'y');
    return 0;
}

static int simple_check_wait_send_all_might_not_block(void *arg)
{
    ctx1 *c = arg;
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_stream_wait_send_all_might_not_block(c->p->s));
    assert_int_equal(rc, 0);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(c->nursery));
    return 0;
}

static int expect_broken_stream_on_send(void *arg)
{
    ctx1 *c = arg;
    send_until_broken(c->p->s);
    return 0;
}

static int send_then_close(void *arg)
{
    ctx1 *c = arg;
    assert_int_equal(do_send_all(c->p->s, "y", 1), 0);
    assert_int_equal(do_aclose(&c->p->s), 0);
    return 0;
}

static int receive_send_then_close(void *arg)
{
    ctx1 *c = arg;
    /* "We want to make sure that if the sender closes the stream before we
     * read anything, then we still get all the data. But some streams might
     * block on the do_send_all call. So we let the sender get as far as it
     * can, then we receive." */
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    checked_receive_1(c->p->r, 'y');
    checked_receive_1(c->p->r, -1);
    assert_int_equal(do_aclose(&c->p->r), 0);
    return 0;
}

enum { REC_WAITER_SLEEPING = 1, REC_RECEIVER_STARTING, REC_WAITER_WOKEUP };

static int clogged_waiter(void *arg)
{
    ctx1 *c = arg;
    c->record[c->nrecord++] = REC_WAITER_SLEEPING;
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_stream_wait_send_all_might_not_block(c->p->s));
    assert_int_equal(rc, 0);
    c->record[c->nrecord++] = REC_WAITER_WOKEUP;
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(c->nursery));
    return 0;
}

static int clogged_receiver(void *arg)
{
    ctx1 *c = arg;
    /* "give wait_send_all_might_not_block a chance to block" */
    int rc = ctrio_wait_all_tasks_blocked(0);
    if (rc < 0)
        return rc;
    c->record[c->nrecord++] = REC_RECEIVER_STARTING;
    static char buf[16834]; /* one receiver at a time */
    for (long i = 0; i < 1000000; i++) {
        ssize_t n = ctrio_stream_receive_some(c->p->r, buf, sizeof buf);
        if (n < 0)
            return (int)n; /* cancelled by the waiter */
        assert_true(n > 0);
    }
    fail_msg("the receiver was never cancelled");
    return 0;
}

static int wait_send_maybe_broken(void *arg)
{
    ctx1 *c = arg;
    int rc = do_wait_send(c->p->s); /* checkpoints asserted when it returns 0 */
    assert_true(rc == 0 || is_broken(rc));
    return 0;
}

/* ---- check_one_way_stream ---------------------------------------------- */

static void one_way(const maker *mk, const maker *clogged)
{
    spair p;
    ctx1 c = {.p = &p};
    char buf[64];

    make(mk, &p);
    {
        /* "Simple sending/receiving" */
        call snd = {.op = OP_SEND, .s = p.s, .data = "x", .len = 1};
        call rcv = {.op = OP_RECV, .s = p.r, .len = 1};
        assert_int_equal(run_two(&snd, &rcv), 0);
        assert_int_equal(rcv.rc, 1);
        assert_int_equal(rcv.got[0], 'x');
    }
    {
        /* send_empty_then_y: "Streams should tolerate sending b"" ..." */
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        assert_int_equal(ctrio_start_soon(&n, send_empty_then_y, &c), 0);
        assert_int_equal(ctrio_start_soon(&n, receive_y, &c), 0);
        assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    }
    {
        /* "Checking various argument types": "send_all accepts bytearray and
         * memoryview" has no C meaning; what C can get wrong is NULL with a
         * length. "max_bytes must be a positive integer": 0 -> -EINVAL. */
        assert_int_equal(ctrio_stream_send_all(p.s, NULL, 1), -EINVAL);
        assert_int_equal(ctrio_stream_receive_some(p.r, buf, 0), -EINVAL);
        assert_int_equal(ctrio_stream_receive_some(p.r, NULL, 1), -EINVAL);
        /* "it can also be missing or None": a large max gets what is there */
        call snd = {.op = OP_SEND, .s = p.s, .data = "1", .len = 1};
        call rcv = {.op = OP_RECV, .s = p.r, .len = sizeof rcv.got};
        assert_int_equal(run_two(&snd, &rcv), 0);
        assert_int_equal(rcv.rc, 1);
        assert_int_equal(rcv.got[0], '1');
    }
    {
        /* BusyResourceError: two concurrent do_receive_some(1) */
        call r1 = {.op = OP_RECV, .s = p.r, .len = 1};
        call r2 = {.op = OP_RECV, .s = p.r, .len = 1};
        expect_busy(&r1, &r2, false);
    }
    {
        /* "Method always has to exist, and an empty stream with a blocked
         * receive_some should *always* allow send_all." */
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        c.nursery = &n;
        call rcv = {.op = OP_RECV, .s = p.r, .len = 1};
        assert_int_equal(ctrio_start_soon(&n, simple_check_wait_send_all_might_not_block, &c),
                         0);
        assert_int_equal(ctrio_start_soon(&n, call_task, &rcv), 0);
        assert_int_equal(ctrio_nursery_close(&n, 0), 0);
        assert_int_equal(rcv.rc, -ECANCELED);
    }
    {
        /* "closing the r side leads to BrokenResourceError on the s side
         * (eventually)" */
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        call cl = {.op = OP_CLOSE, .sp = &p.r, .has_expect = true, .expect = 0};
        assert_int_equal(ctrio_start_soon(&n, expect_broken_stream_on_send, &c), 0);
        assert_int_equal(ctrio_start_soon(&n, call_task, &cl), 0);
        assert_int_equal(ctrio_nursery_close(&n, 0), 0);
        assert_null(p.r);

        /* "once detected, the stream stays broken" */
        assert_true(is_broken(do_send_all(p.s, X100, 100)));

        /* "r closed -> ClosedResourceError on the receive side" and "we can
         * close the same stream repeatedly": the handle is freed by its
         * close in C (see the blocked-receiver check below instead, and
         * test_stream_calls_after_own_close in test_stream.c). */

        /* "closing the sender side" */
        assert_int_equal(do_aclose(&p.s), 0);
        /* "now trying to send raises ClosedResourceError", "even if it's an
         * empty send", "ditto for wait_send_all_might_not_block": on a freed
         * handle in C; see the close_soon checks below, and
         * test_stream_calls_after_own_close in test_stream.c. */
    }
    force_close_both(&p);

    make(mk, &p);
    {
        /* "if send-then-graceful-close, receiver gets data then b''" */
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        assert_int_equal(ctrio_start_soon(&n, send_then_close, &c), 0);
        assert_int_equal(ctrio_start_soon(&n, receive_send_then_close, &c), 0);
        assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    }
    force_close_both(&p);

    make(mk, &p);
    {
        /* aclose_forcefully(r), then send_all raises BrokenResourceError */
        assert_int_equal(force_close(&p.r), 0);
        send_until_broken(p.s);
    }
    force_close_both(&p);

    make(mk, &p);
    {
        /* aclose_forcefully(s): "the receiver might either get
         * BrokenResourceError or a clean b""; either is OK. Not OK would be
         * if it freezes, or returns data." */
        assert_int_equal(force_close(&p.s), 0);
        ssize_t rc = do_receive_some(p.r, buf, 1);
        assert_true(rc == 0 || is_broken(rc));
    }
    force_close_both(&p);

    make(mk, &p);
    {
        /* "cancelled aclose still closes": the close reports the
         * cancellation, and the peer sees the stream gone (C cannot call
         * the freed handle to get ClosedResourceError). */
        ctrio_cancel_scope cs;
        ctrio_cancel_scope_open(&cs);
        ctrio_cancel_scope_cancel(&cs);
        ctrio_stream *r = p.r;
        p.r = NULL;
        int rc = ctrio_stream_close(r);
        assert_int_equal(rc, -ECANCELED);
        assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
        assert_true(ctrio_cancel_scope_cancelled_caught(&cs));

        ssize_t got = do_receive_some(p.s, buf, 1);
        assert_true(got == 0 || is_broken(got));

        ctrio_cancel_scope_open(&cs);
        ctrio_cancel_scope_cancel(&cs);
        ctrio_stream *s = p.s;
        p.s = NULL;
        rc = ctrio_stream_close(s);
        assert_int_equal(rc, -ECANCELED);
        assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    }
    force_close_both(&p);

    make(mk, &p);
    {
        /* "Check that we can still gracefully close a stream after an
         * operation has been cancelled." */
        ctrio_cancel_scope cs;
        ctrio_cancel_scope_open(&cs);
        ctrio_cancel_scope_cancel(&cs);
        call snd = {.op = OP_SEND, .s = p.s, .data = "x", .len = 1, .has_expect = true,
                    .expect = -ECANCELED};
        call rcv = {.op = OP_RECV, .s = p.r, .len = 1, .has_expect = true,
                    .expect = -ECANCELED};
        int rc = run_two(&snd, &rcv);
        assert_true(rc == 0 || rc == -ECANCELED);
        assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);

        call c1 = {.op = OP_CLOSE, .sp = &p.s, .has_expect = true, .expect = 0};
        call c2 = {.op = OP_CLOSE, .sp = &p.r, .has_expect = true, .expect = 0};
        assert_int_equal(run_two(&c1, &c2), 0);
    }
    force_close_both(&p);

    make(mk, &p);
    {
        /* "Check that if a task is blocked in receive_some, then closing the
         * receive stream causes it to wake up." (ClosedResourceError) */
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        call rcv = {.op = OP_RECV, .s = p.r, .len = 10, .has_expect = true,
                    .expect = -EBADF};
        assert_int_equal(ctrio_start_soon(&n, call_task, &rcv), 0);
        int rc = ctrio_wait_all_tasks_blocked(0);
        if (rc == 0)
            rc = force_close(&p.r);
        assert_int_equal(ctrio_nursery_close(&n, rc), 0);
        assert_int_equal(rcv.rc, -EBADF);
    }
    force_close_both(&p);

    /* "check wait_send_all_might_not_block, if we can" */
    if (!clogged)
        return;

    make(clogged, &p);
    {
        /* the waiter/receiver record */
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        c.nursery = &n;
        c.nrecord = 0;
        int rc = ctrio_start_soon(&n, clogged_waiter, &c);
        if (rc == 0)
            rc = ctrio_wait_all_tasks_blocked(0);
        if (rc == 0)
            rc = ctrio_start_soon(&n, clogged_receiver, &c);
        assert_int_equal(ctrio_nursery_close(&n, rc), 0);
        assert_int_equal(c.nrecord, 3);
        assert_int_equal(c.record[0], REC_WAITER_SLEEPING);
        assert_int_equal(c.record[1], REC_RECEIVER_STARTING);
        assert_int_equal(c.record[2], REC_WAITER_WOKEUP);
    }
    force_close_both(&p);

    make(clogged, &p);
    {
        /* "simultaneous wait_send_all_might_not_block fails" */
        call w1 = {.op = OP_WAIT_SEND, .s = p.s};
        call w2 = {.op = OP_WAIT_SEND, .s = p.s};
        expect_busy(&w1, &w2, false);
        /* "and simultaneous send_all and wait_send_all_might_not_block" */
        call w3 = {.op = OP_WAIT_SEND, .s = p.s};
        call s3 = {.op = OP_SEND, .s = p.s, .data = "123", .len = 3};
        expect_busy(&w3, &s3, false);
    }
    force_close_both(&p);

    make(clogged, &p);
    {
        /* "send_all and send_all blocked simultaneously should also raise" */
        call s1 = {.op = OP_SEND, .s = p.s, .data = "123", .len = 3};
        call s2 = {.op = OP_SEND, .s = p.s, .data = "123", .len = 3};
        expect_busy(&s1, &s2, false);
    }
    force_close_both(&p);

    make(clogged, &p);
    {
        /* "closing the receiver causes wait_send_all_might_not_block to
         * return, with or without an exception" */
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        call cl = {.op = OP_FORCE_CLOSE, .sp = &p.r, .wait_blocked = true, .has_expect = true,
                   .expect = 0};
        assert_int_equal(ctrio_start_soon(&n, wait_send_maybe_broken, &c), 0);
        assert_int_equal(ctrio_start_soon(&n, call_task, &cl), 0);
        assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    }
    force_close_both(&p);

    make(clogged, &p);
    {
        /* "and again with the call starting after the close" */
        assert_int_equal(force_close(&p.r), 0);
        wait_send_maybe_broken(&c);
    }
    force_close_both(&p);

    make(clogged, &p);
    {
        /* "Check that if a task is blocked in a send-side method, then
         * closing the send stream causes it to wake up." send_all: */
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        call close_soon = {.op = OP_FORCE_CLOSE, .sp = &p.s, .wait_blocked = true,
                           .has_expect = true, .expect = 0};
        assert_int_equal(ctrio_start_soon(&n, call_task, &close_soon), 0);
        int rc = ctrio_stream_send_all(p.s, "xyzzy", 5);
        assert_int_equal(rc, -EBADF);
        assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    }
    force_close_both(&p);

    make(clogged, &p);
    {
        /* ... and wait_send_all_might_not_block */
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        call close_soon = {.op = OP_FORCE_CLOSE, .sp = &p.s, .wait_blocked = true,
                           .has_expect = true, .expect = 0};
        assert_int_equal(ctrio_start_soon(&n, call_task, &close_soon), 0);
        int rc = ctrio_stream_wait_send_all_might_not_block(p.s);
        assert_int_equal(rc, -EBADF);
        assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    }
    force_close_both(&p);
}

int check_one_way_stream(stream_pair_maker make_fn, stream_pair_maker clogged_fn, void *ctx)
{
    maker m = {make_fn, ctx, false}, c = {clogged_fn, ctx, false};
    one_way(&m, clogged_fn ? &c : NULL);
    return 0;
}

/* ---- check_two_way_stream ---------------------------------------------- */

#define DUPLEX_TEST_SIZE (1u << 20)
#define CHUNK_SIZE_MAX (1u << 14)

static uint64_t rng_next(uint64_t *state) /* splitmix64 */
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static size_t rng_chunk(uint64_t *state) /* randint(1, CHUNK_SIZE_MAX) */
{
    return 1 + (size_t)(rng_next(state) % CHUNK_SIZE_MAX);
}

typedef struct duplex {
    ctrio_stream *s;
    const unsigned char *data;
    uint64_t seed;
} duplex;

static int duplex_sender(void *arg)
{
    duplex *d = arg;
    uint64_t st = d->seed;
    size_t off = 0;
    while (off < DUPLEX_TEST_SIZE) {
        size_t n = rng_chunk(&st);
        if (n > DUPLEX_TEST_SIZE - off)
            n = DUPLEX_TEST_SIZE - off;
        int rc = ctrio_stream_send_all(d->s, d->data + off, n);
        if (rc < 0)
            return rc;
        off += n;
    }
    return 0;
}

static int duplex_receiver(void *arg)
{
    duplex *d = arg;
    uint64_t st = d->seed;
    unsigned char *got = malloc(DUPLEX_TEST_SIZE);
    assert_non_null(got);
    size_t off = 0;
    while (off < DUPLEX_TEST_SIZE) {
        size_t n = rng_chunk(&st);
        if (n > DUPLEX_TEST_SIZE - off)
            n = DUPLEX_TEST_SIZE - off; /* Python reads past: nothing is there */
        ssize_t rc = ctrio_stream_receive_some(d->s, got + off, n);
        if (rc <= 0) {
            free(got);
            if (rc == 0)
                fail_msg("end of stream after %zu bytes", off);
            return (int)rc;
        }
        off += (size_t)rc;
    }
    int same = memcmp(got, d->data, DUPLEX_TEST_SIZE) == 0;
    free(got);
    assert_true(same);
    return 0;
}

static int expect_receive_some_empty(void *arg)
{
    spair *p = arg;
    char buf[10];
    ctrio_stream *s2 = p->r;
    assert_int_equal(ctrio_stream_receive_some(s2, buf, sizeof buf), 0);
    assert_int_equal(do_aclose(&p->r), 0);
    return 0;
}

int check_two_way_stream(stream_pair_maker make_fn, stream_pair_maker clogged_fn, void *ctx)
{
    maker m = {make_fn, ctx, false}, c = {clogged_fn, ctx, false};
    one_way(&m, clogged_fn ? &c : NULL);
    /* flipped_stream_maker / flipped_clogged_stream_maker */
    maker mf = {make_fn, ctx, true}, cf = {clogged_fn, ctx, true};
    one_way(&mf, clogged_fn ? &cf : NULL);

    spair p;
    make(&m, &p);
    {
        /* "Duplex can be a bit tricky, might as well check it as well" */
        unsigned char *fwd = malloc(DUPLEX_TEST_SIZE), *rev = malloc(DUPLEX_TEST_SIZE);
        assert_non_null(fwd);
        assert_non_null(rev);
        uint64_t st = 0;
        for (size_t i = 0; i < DUPLEX_TEST_SIZE; i += 8) {
            uint64_t v = rng_next(&st);
            memcpy(fwd + i, &v, 8);
        }
        for (size_t i = 0; i < DUPLEX_TEST_SIZE; i++)
            rev[i] = fwd[DUPLEX_TEST_SIZE - 1 - i];
        duplex d[4] = {
            {p.s, fwd, 0}, /* sender(s1, test_data, 0) */
            {p.r, rev, 1}, /* sender(s2, test_data[::-1], 1) */
            {p.s, rev, 2}, /* receiver(s1, test_data[::-1], 2) */
            {p.r, fwd, 3}, /* receiver(s2, test_data, 3) */
        };
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        int rc = 0;
        for (int i = 0; i < 4 && rc == 0; i++)
            rc = ctrio_start_soon(&n, i < 2 ? duplex_sender : duplex_receiver, &d[i]);
        rc = ctrio_nursery_close(&n, rc);
        free(fwd);
        free(rev);
        assert_int_equal(rc, 0);
    }
    {
        /* expect_receive_some_empty on s2 while s1.aclose() */
        ctrio_nursery n;
        ctrio_nursery_open(&n);
        call cl = {.op = OP_CLOSE, .sp = &p.s, .has_expect = true, .expect = 0};
        assert_int_equal(ctrio_start_soon(&n, expect_receive_some_empty, &p), 0);
        assert_int_equal(ctrio_start_soon(&n, call_task, &cl), 0);
        assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    }
    force_close_both(&p);
    return 0;
}

/* ---- check_half_closeable_stream --------------------------------------- */

static int send_x_then_eof(void *arg)
{
    ctrio_stream *s = arg;
    assert_int_equal(ctrio_stream_send_all(s, "x", 1), 0);
    int rc;
    ASSERT_CHECKPOINTS(rc = ctrio_stream_send_eof(s));
    assert_int_equal(rc, 0);
    return 0;
}

static int expect_x_then_eof(void *arg)
{
    ctrio_stream *r = arg;
    char buf[10];
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(ctrio_stream_receive_some(r, buf, sizeof buf), 1);
    assert_int_equal(buf[0], 'x');
    assert_int_equal(ctrio_stream_receive_some(r, buf, sizeof buf), 0);
    return 0;
}

static void x_then_eof(ctrio_stream *s, ctrio_stream *r)
{
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, send_x_then_eof, s), 0);
    assert_int_equal(ctrio_start_soon(&n, expect_x_then_eof, r), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
}

int check_half_closeable_stream(stream_pair_maker make_fn, stream_pair_maker clogged_fn,
                                void *ctx)
{
    check_two_way_stream(make_fn, clogged_fn, ctx);

    maker m = {make_fn, ctx, false}, c = {clogged_fn, ctx, false};
    spair p;
    make(&m, &p);
    {
        /* send_x_then_eof(s1) / expect_x_then_eof(s2) */
        x_then_eof(p.s, p.r);
        /* "now sending is disallowed" */
        assert_int_equal(ctrio_stream_send_all(p.s, "y", 1), -EBADF);
        /* "but we can do send_eof again" */
        int rc;
        ASSERT_CHECKPOINTS(rc = ctrio_stream_send_eof(p.s));
        assert_int_equal(rc, 0);
        /* "and we can still send stuff back the other way" */
        x_then_eof(p.r, p.s);
    }
    force_close_both(&p);

    if (!clogged_fn)
        return 0;

    make(&c, &p);
    {
        /* "send_all and send_eof simultaneously is not ok" */
        call snd = {.op = OP_SEND, .s = p.s, .data = "x", .len = 1};
        call eof = {.op = OP_EOF, .s = p.s};
        expect_busy(&snd, &eof, true);
    }
    force_close_both(&p);

    make(&c, &p);
    {
        /* "wait_send_all_might_not_block and send_eof simultaneously is not
         * ok either" */
        call w = {.op = OP_WAIT_SEND, .s = p.s};
        call eof = {.op = OP_EOF, .s = p.s};
        expect_busy(&w, &eof, true);
    }
    force_close_both(&p);
    return 0;
}

/* ---- fill_stream (tests/test_highlevel_socket.py) ------------------------ */

typedef struct fill {
    ctrio_stream *s;
    ctrio_nursery *n;
} fill;

static int fill_sender(void *arg)
{
    fill *f = arg;
    static const char chunk[10000];
    for (long i = 0; i < 100000; i++) {
        int rc = ctrio_stream_send_all(f->s, chunk, sizeof chunk);
        if (rc < 0)
            return rc;
    }
    fail_msg("fill_stream: send_all never blocked");
    return 0;
}

static int fill_waiter(void *arg)
{
    fill *f = arg;
    int rc = ctrio_wait_all_tasks_blocked(0);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(f->n));
    return rc;
}

int stream_check_fill(ctrio_stream *s)
{
    ctrio_nursery n;
    fill f = {s, &n};
    ctrio_nursery_open(&n);
    int rc = ctrio_start_soon(&n, fill_sender, &f);
    if (rc == 0)
        rc = ctrio_start_soon(&n, fill_waiter, &f);
    return ctrio_nursery_close(&n, rc);
}
