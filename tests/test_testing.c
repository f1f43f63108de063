/*
 * test_testing.c — the trio.testing facilities: wait_all_tasks_blocked, the
 * per-task checkpoint counters behind assert_checkpoints /
 * assert_no_checkpoints, and the Sequencer. Ported from Trio's
 * tests/test_testing.py.
 */
#include "support.h"

#include <ctrio_testing.h>

/* run_autojump and the record of events (record / check_record) are in
 * support.c. */

/* ---- wait_all_tasks_blocked --------------------------------------------- */

/* Trio: tests/test_testing.py::test_wait_all_tasks_blocked (first part): a
 * busy task doing 10 checkpoints; both waiters wake after it is done. */
static int busy_bee(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10; i++)
        assert_int_equal(ctrio_checkpoint(), 0);
    record("busy bee exhausted");
    return 0;
}

static int waiting_for_bee_to_leave(void *arg)
{
    (void)arg;
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    record("quiet at last!");
    return 0;
}

static int body_wait_all_tasks_blocked(void *arg)
{
    (void)arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, busy_bee, NULL), 0);
    assert_int_equal(ctrio_start_soon(&n, waiting_for_bee_to_leave, NULL), 0);
    assert_int_equal(ctrio_start_soon(&n, waiting_for_bee_to_leave, NULL), 0);
    return ctrio_nursery_close(&n, 0);
}

static void test_wait_all_tasks_blocked(void **state)
{
    (void)state;
    nrec = 0;
    assert_int_equal(run_real(body_wait_all_tasks_blocked, NULL), 0);
    static const char *const expected[] = {"busy bee exhausted", "quiet at last!",
                                           "quiet at last!"};
    check_record(expected, 3);
}

/* Trio: tests/test_testing.py::test_wait_all_tasks_blocked (cancellation
 * part): a waiter is woken by a cancel with -ECANCELED. Also (new): it is a
 * checkpoint even when nothing else runs, and a negative cushion is -EINVAL.
 */
static int cancelled_while_waiting(void *arg)
{
    (void)arg;
    int rc = ctrio_wait_all_tasks_blocked(0);
    if (rc == -ECANCELED)
        record("ok");
    return rc;
}

static int body_wait_all_tasks_blocked_cancel(void *arg)
{
    (void)arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, cancelled_while_waiting, NULL), 0);
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);

    /* the same after the waiter has blocked */
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, cancelled_while_waiting, NULL), 0);
    assert_int_equal(ctrio_checkpoint(), 0); /* the child blocks */
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);

    int rc = -1;
    ASSERT_CHECKPOINTS(rc = ctrio_wait_all_tasks_blocked(0));
    assert_int_equal(rc, 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(-1), -EINVAL);
    assert_int_equal(ctrio_wait_all_tasks_blocked(NAN), -EINVAL);
    return 0;
}

static void test_wait_all_tasks_blocked_cancel(void **state)
{
    (void)state;
    nrec = 0;
    assert_int_equal(run_real(body_wait_all_tasks_blocked_cancel, NULL), 0);
    static const char *const expected[] = {"ok", "ok"};
    check_record(expected, 2);
}

/* Trio: tests/test_testing.py::test_wait_all_tasks_blocked_with_timeouts: a
 * sleeping task counts as blocked; a manual jump of the mock clock (no
 * autojump) then wakes it. */
static int timeout_task(void *arg)
{
    (void)arg;
    record("tt start");
    assert_int_equal(ctrio_sleep(5), 0);
    record("tt finished");
    return 0;
}

static int body_wait_with_timeouts(void *arg)
{
    (void)arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, timeout_task, NULL), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    static const char *const first[] = {"tt start"};
    check_record(first, 1);
    ctrio_mock_clock_jump(10);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    static const char *const second[] = {"tt start", "tt finished"};
    check_record(second, 2);
    return ctrio_nursery_close(&n, 0);
}

static void test_wait_all_tasks_blocked_with_timeouts(void **state)
{
    (void)state;
    nrec = 0;
    assert_int_equal(run_autojump(-1, body_wait_with_timeouts, NULL), 0);
}

/* Trio: tests/test_testing.py::test_wait_all_tasks_blocked_with_cushion
 * (real clock, 10 ms sleeps): waiters wake in the order of their cushions,
 * and a cushion longer than the gaps of a blinking task waits it out. */
static int blink(void *arg)
{
    (void)arg;
    record("blink start");
    assert_int_equal(ctrio_sleep(0.01), 0);
    assert_int_equal(ctrio_sleep(0.01), 0);
    assert_int_equal(ctrio_sleep(0.01), 0);
    record("blink end");
    return 0;
}

static int wait_no_cushion(void *arg)
{
    (void)arg;
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    record("wait_no_cushion end");
    return 0;
}

static int wait_small_cushion(void *arg)
{
    (void)arg;
    assert_int_equal(ctrio_wait_all_tasks_blocked(0.02), 0);
    record("wait_small_cushion end");
    return 0;
}

static int wait_big_cushion(void *arg)
{
    (void)arg;
    assert_int_equal(ctrio_wait_all_tasks_blocked(0.03), 0);
    record("wait_big_cushion end");
    return 0;
}

static int body_wait_with_cushion(void *arg)
{
    (void)arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    /* the big one first: the order of the wake-ups must not depend on the
     * order in which the waiters arrive */
    assert_int_equal(ctrio_start_soon(&n, wait_big_cushion, NULL), 0);
    assert_int_equal(ctrio_start_soon(&n, blink, NULL), 0);
    assert_int_equal(ctrio_start_soon(&n, wait_no_cushion, NULL), 0);
    assert_int_equal(ctrio_start_soon(&n, wait_small_cushion, NULL), 0);
    assert_int_equal(ctrio_start_soon(&n, wait_small_cushion, NULL), 0);
    return ctrio_nursery_close(&n, 0);
}

static void test_wait_all_tasks_blocked_with_cushion(void **state)
{
    (void)state;
    nrec = 0;
    assert_int_equal(run_real(body_wait_with_cushion, NULL), 0);
    static const char *const expected[] = {
        "blink start",
        "wait_no_cushion end",
        "blink end",
        "wait_small_cushion end",
        "wait_small_cushion end",
        "wait_big_cushion end",
    };
    check_record(expected, 6);
}

/* ---- checkpoint accounting ----------------------------------------------- */

/* Trio: tests/test_testing.py::test_assert_checkpoints and
 * ::test_assert_no_checkpoints: a checkpoint moves both counters; a plain
 * statement neither; checkpoint_if_cancelled (not cancelled) only the cancel
 * counter and cancel_shielded_checkpoint only the schedule counter (each
 * alone is not a checkpoint); both together are. */
static int body_assert_checkpoints(void *arg)
{
    (void)arg;
    ASSERT_CHECKPOINTS(ctrio_checkpoint());
    CP_EXACT(ctrio_checkpoint(), 1, 1);
    volatile int x = 1;
    ASSERT_NO_CHECKPOINTS(x = x + 1);
    assert_int_equal(x, 2);

    uint64_t dc, ds;
    CP_DELTA_(ctrio_checkpoint_if_cancelled(), dc, ds);
    assert_true(dc > 0);
    assert_int_equal(ds, 0); /* not a checkpoint: no schedule point */
    CP_DELTA_(ctrio_cancel_shielded_checkpoint(), dc, ds);
    assert_int_equal(dc, 0); /* not a checkpoint: no cancel point */
    assert_true(ds > 0);
    ASSERT_CHECKPOINTS({
        ctrio_checkpoint_if_cancelled();
        ctrio_cancel_shielded_checkpoint();
    });

    /* checkpoint_if_cancelled when cancelled: a cancel point and a yield */
    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    int rc = 0;
    ASSERT_CHECKPOINTS(rc = ctrio_checkpoint_if_cancelled());
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    return 0;
}

static void test_assert_checkpoints(void **state)
{
    (void)state;
    assert_int_equal(run_mock(body_assert_checkpoints, NULL), 0);
}

/* New: the counters are per task (they start at 0 in a new task and another
 * task's checkpoints do not show in ours), while ctrio_testing_run_checkpoints
 * counts every task's cancel points. Outside a run the counters read 0. */
static ctrio_checkpoint_counts child_start_counts;

static int ten_checkpoints(void *arg)
{
    (void)arg;
    child_start_counts = ctrio_task_checkpoint_counts();
    for (int i = 0; i < 10; i++)
        assert_int_equal(ctrio_checkpoint(), 0);
    return 0;
}

static int body_counts_per_task(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++)
        assert_int_equal(ctrio_checkpoint(), 0);
    ctrio_checkpoint_counts mine = ctrio_task_checkpoint_counts();
    assert_true(mine.cancel_points >= 3);
    assert_true(mine.schedule_points >= 3);

    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, ten_checkpoints, NULL), 0);
    uint64_t run_before = ctrio_testing_run_checkpoints();
    /* the child's 10 checkpoints happen while we wait, but are not ours */
    CP_EXACT(assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0), 1, 1);
    uint64_t run_after = ctrio_testing_run_checkpoints();
    assert_true(run_after - run_before >= 11);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(child_start_counts.cancel_points, 0);
    assert_int_equal(child_start_counts.schedule_points, 0);
    return 0;
}

static void test_checkpoint_counts_per_task(void **state)
{
    (void)state;
    child_start_counts.cancel_points = child_start_counts.schedule_points = 99;
    assert_int_equal(run_mock(body_counts_per_task, NULL), 0);
    ctrio_checkpoint_counts outside = ctrio_task_checkpoint_counts();
    assert_int_equal(outside.cancel_points, 0);
    assert_int_equal(outside.schedule_points, 0);
}

/* ---- Sequencer ----------------------------------------------------------- */

/* Trio: tests/test_testing.py::test_Sequencer (first part): two tasks run
 * their sections in the sequencer's order. */
static int seq_section(ctrio_sequencer *seq, size_t pos, const char *what)
{
    int rc = ctrio_sequencer_enter(seq, pos);
    if (rc < 0)
        return rc;
    record(what);
    return ctrio_sequencer_leave(seq, pos);
}

static int seq_f1(void *arg)
{
    ctrio_sequencer *seq = arg;
    assert_int_equal(seq_section(seq, 1, "f1 1"), 0);
    assert_int_equal(seq_section(seq, 3, "f1 3"), 0);
    assert_int_equal(seq_section(seq, 4, "f1 4"), 0);
    return 0;
}

static int seq_f2(void *arg)
{
    ctrio_sequencer *seq = arg;
    assert_int_equal(seq_section(seq, 0, "f2 0"), 0);
    assert_int_equal(seq_section(seq, 2, "f2 2"), 0);
    return 0;
}

static int body_sequencer(void *arg)
{
    (void)arg;
    ctrio_sequencer seq;
    ctrio_sequencer_init(&seq);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    /* f1 first, so that it must wait for f2 */
    assert_int_equal(ctrio_start_soon(&n, seq_f1, &seq), 0);
    assert_int_equal(ctrio_start_soon(&n, seq_f2, &seq), 0);
    assert_int_equal(ctrio_sequencer_enter(&seq, 5), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    static const char *const expected[] = {"f2 0", "f1 1", "f2 2", "f1 3", "f1 4"};
    check_record(expected, 5);
    assert_int_equal(ctrio_sequencer_leave(&seq, 5), 0);
    return ctrio_nursery_close(&n, 0);
}

static void test_Sequencer(void **state)
{
    (void)state;
    nrec = 0;
    assert_int_equal(run_mock(body_sequencer, NULL), 0);
}

/* Trio: tests/test_testing.py::test_Sequencer (second part): re-using a
 * position is an error (RuntimeError -> -EPERM). Also (new): a position out of
 * the supported range 0..255 is -EINVAL, leaving out of turn is -EPERM, and
 * entering is a checkpoint. */
static int body_sequencer_reuse(void *arg)
{
    (void)arg;
    ctrio_sequencer seq;
    ctrio_sequencer_init(&seq);
    int rc = -1;
    ASSERT_CHECKPOINTS(rc = ctrio_sequencer_enter(&seq, 0));
    assert_int_equal(rc, 0);
    assert_int_equal(ctrio_sequencer_leave(&seq, 0), 0);
    assert_int_equal(ctrio_sequencer_enter(&seq, 0), -EPERM);
    assert_int_equal(ctrio_sequencer_enter(&seq, 256), -EINVAL);
    /* the sequencer still works after the misuse */
    assert_int_equal(ctrio_sequencer_enter(&seq, 1), 0);
    assert_int_equal(ctrio_sequencer_leave(&seq, 1), 0);
    /* leaving a position out of turn is misuse too (new) */
    assert_int_equal(ctrio_sequencer_leave(&seq, 7), -EPERM);
    return 0;
}

static void test_Sequencer_reuse_position(void **state)
{
    (void)state;
    assert_int_equal(run_mock(body_sequencer_reuse, NULL), 0);
}

/* Trio: tests/test_testing.py::test_Sequencer_cancel: cancelling a blocked
 * waiter breaks the sequencer: every waiter and every late arrival fail.
 * Trio turns the cancelled waiter's Cancelled into RuntimeError; ctrio's
 * cancelled waiter returns -ECANCELED (the C convention: unwind with it), and
 * the others -EPERM (RuntimeError). */
static int seq_rc[3];

typedef struct seq_child_arg {
    ctrio_sequencer *seq;
    size_t pos;
} seq_child_arg;

static int seq_cancel_child(void *arg)
{
    seq_child_arg *a = arg;
    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    if (a->pos == 1)
        ctrio_cancel_scope_cancel(&cs);
    int rc = ctrio_sequencer_enter(a->seq, a->pos);
    seq_rc[a->pos] = rc;
    if (rc == 0)
        rc = ctrio_sequencer_leave(a->seq, a->pos);
    record(a->pos == 1 ? "seq(1) failed" : "seq(2) failed");
    ctrio_cancel_scope_close(&cs, rc);
    return 0;
}

static int seq_plain_child(void *arg)
{
    seq_child_arg *a = arg;
    int rc = ctrio_sequencer_enter(a->seq, a->pos);
    seq_rc[a->pos] = rc;
    if (rc == 0)
        rc = ctrio_sequencer_leave(a->seq, a->pos);
    record(a->pos == 1 ? "seq(1) failed" : "seq(2) failed");
    return rc;
}

static int body_sequencer_cancel(void *arg)
{
    (void)arg;
    ctrio_sequencer seq;
    ctrio_sequencer_init(&seq);
    seq_child_arg a1 = {&seq, 1}, a2 = {&seq, 2};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, seq_cancel_child, &a1), 0);
    assert_int_equal(ctrio_start_soon(&n, seq_cancel_child, &a2), 0);
    int rc = ctrio_sequencer_enter(&seq, 0);
    if (rc == 0)
        rc = ctrio_sequencer_leave(&seq, 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    /* late arrivals also get errors */
    assert_int_equal(ctrio_sequencer_enter(&seq, 3), -EPERM);
    return 0;
}

static void test_Sequencer_cancel(void **state)
{
    (void)state;
    nrec = 0;
    seq_rc[1] = seq_rc[2] = 1;
    assert_int_equal(run_mock(body_sequencer_cancel, NULL), 0);
    static const char *const expected[] = {"seq(1) failed", "seq(2) failed"};
    check_record(expected, 2);
    assert_int_equal(seq_rc[1], -ECANCELED);
    assert_int_equal(seq_rc[2], -EPERM);
}

/* Adapted from Trio: tests/test_testing.py::test_Sequencer_cancel (new
 * scenario): both waiters are already parked when one of them is cancelled;
 * the other is woken with -EPERM. */
static int body_sequencer_cancel_parked(void *arg)
{
    (void)arg;
    ctrio_sequencer seq;
    ctrio_sequencer_init(&seq);
    seq_child_arg a2 = {&seq, 2};
    ctrio_nursery n, n1;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, seq_cancel_child, &a2), 0);
    ctrio_nursery_open(&n1);      /* position 1 in a nursery of its own: cancel it */
    seq_child_arg a1 = {&seq, 1}; /* a plain waiter, cancelled from here */
    assert_int_equal(ctrio_start_soon(&n1, seq_plain_child, &a1), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_int_equal(nrec, 0); /* both parked */
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n1));
    assert_int_equal(ctrio_nursery_close(&n1, 0), 0);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(ctrio_sequencer_enter(&seq, 0), -EPERM);
    return 0;
}

static void test_Sequencer_cancel_parked_waiter(void **state)
{
    (void)state;
    nrec = 0;
    seq_rc[1] = seq_rc[2] = 1;
    assert_int_equal(run_mock(body_sequencer_cancel_parked, NULL), 0);
    static const char *const expected[] = {"seq(1) failed", "seq(2) failed"};
    check_record(expected, 2);
    assert_int_equal(seq_rc[1], -ECANCELED);
    assert_int_equal(seq_rc[2], -EPERM);
}

/* Trio: tests/test_testing.py::test_Sequencer_cancel, the case where the
 * cancelled task's turn has already come: in Trio, waiting on the already-set
 * event is a checkpoint that raises Cancelled, which breaks the sequencer, so
 * later positions fail with RuntimeError instead of waiting forever. */
static int body_sequencer_cancel_at_turn(void *arg)
{
    (void)arg;
    ctrio_sequencer seq;
    ctrio_sequencer_init(&seq);
    assert_int_equal(ctrio_sequencer_enter(&seq, 0), 0);
    assert_int_equal(ctrio_sequencer_leave(&seq, 0), 0);
    seq_child_arg a1 = {&seq, 1}, a2 = {&seq, 2};
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, seq_cancel_child, &a2), 0);
    assert_int_equal(ctrio_start_soon(&n, seq_cancel_child, &a1), 0);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    int seen = nrec;
    /* if position 2 still waits, get it out instead of hanging */
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&n));
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);
    assert_int_equal(seen, 2);
    assert_int_equal(ctrio_sequencer_enter(&seq, 3), -EPERM);
    return 0;
}

static void test_Sequencer_cancel_at_turn(void **state)
{
    /* New (found a bug): a task cancelled when its turn has already come
     * breaks the sequencer, so later positions do not wait forever. */
    (void)state;
    nrec = 0;
    seq_rc[1] = seq_rc[2] = 1;
    assert_int_equal(run_mock(body_sequencer_cancel_at_turn, NULL), 0);
    static const char *const expected[] = {"seq(1) failed", "seq(2) failed"};
    check_record(expected, 2);
    assert_int_equal(seq_rc[1], -ECANCELED);
    assert_int_equal(seq_rc[2], -EPERM);
}

/* New: the NULL rule of ctrio.h (Conventions) for the Sequencer, which
 * used to dereference it. */
static int null_sequencer_body(void *arg)
{
    (void)arg;
    ctrio_sequencer_init(NULL);
    assert_int_equal(ctrio_sequencer_enter(NULL, 0), -EINVAL);
    assert_int_equal(ctrio_sequencer_leave(NULL, 0), -EINVAL);
    return 0;
}

static void test_Sequencer_null(void **state)
{
    (void)state;
    assert_int_equal(run_mock(null_sequencer_body, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_wait_all_tasks_blocked),
        TEST(test_wait_all_tasks_blocked_cancel),
        TEST(test_wait_all_tasks_blocked_with_timeouts),
        TEST(test_wait_all_tasks_blocked_with_cushion),
        TEST(test_assert_checkpoints),
        TEST(test_checkpoint_counts_per_task),
        TEST(test_Sequencer),
        TEST(test_Sequencer_reuse_position),
        TEST(test_Sequencer_cancel),
        TEST(test_Sequencer_cancel_parked_waiter),
        TEST(test_Sequencer_cancel_at_turn),
        TEST(test_Sequencer_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
