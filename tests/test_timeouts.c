/*
 * test_timeouts.c — sleeping and the timeout scopes (Trio's
 * tests/test_timeouts.py) and the mock clock (Trio's
 * _core/tests/test_mock_clock.py).
 *
 * Trio's timeout tests sleep 1 s of real time; here each real-clock test
 * sleeps TARGET = 0.05 s, and the same behaviour is checked again on the mock
 * clock with exact times.
 */
#include "support.h"

#include <ctrio_testing.h>

#include <time.h>

#define TARGET 0.05

/* ---- helpers ------------------------------------------------------------ */

/* real_now, run_autojump, capture_start / capture_end (what the library
 * prints on stderr: its misuse messages) and the record of events are in
 * support.c. */

/* Check that the body took about `expected` seconds of real time (as Trio's
 * check_takes_about, with a larger margin for slow sanitizer builds, and a
 * larger one still under valgrind, whose one-thread-at-a-time scheduling on
 * a loaded machine once woke a sleep more than 0.25 s late). */
static void check_takes_about(double start, double expected)
{
    double dur = real_now() - start;
    assert_true(dur >= expected * (1 - 1e-8));
    assert_true(dur < expected + (under_valgrind() ? 2.0 : 0.25));
}

/* ---- sleep --------------------------------------------------------------- */

/* Trio: tests/test_timeouts.py::test_sleep (the real-time part). */
static int body_sleep_real(void *arg)
{
    (void)arg;
    double start = real_now();
    assert_int_equal(ctrio_sleep_until(ctrio_current_time() + TARGET), 0);
    check_takes_about(start, TARGET);

    start = real_now();
    assert_int_equal(ctrio_sleep(TARGET), 0);
    check_takes_about(start, TARGET);
    return 0;
}

static void test_sleep_real(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_sleep_real, NULL), 0);
}

/* Trio: tests/test_timeouts.py::test_sleep, on the mock clock: sleeps end at
 * exactly their deadline. */
static int body_sleep_mock(void *arg)
{
    (void)arg;
    assert_true(ctrio_current_time() == 0.0);
    assert_int_equal(ctrio_sleep_until(ctrio_current_time() + 1), 0);
    assert_true(ctrio_current_time() == 1.0);
    assert_int_equal(ctrio_sleep(2.5), 0);
    assert_true(ctrio_current_time() == 3.5);
    assert_int_equal(ctrio_sleep_until(10), 0);
    assert_true(ctrio_current_time() == 10.0);
    return 0;
}

static void test_sleep_mock(void **state)
{
    (void)state;
    assert_int_equal(run_mock(body_sleep_mock, NULL), 0);
}

/* Trio: tests/test_timeouts.py::test_sleep (`sleep(-1)` raises ValueError):
 * here -EINVAL, and no checkpoint. NaN too (new). */
static int body_sleep_negative(void *arg)
{
    (void)arg;
    int rc = 0;
    CP_EXACT(rc = ctrio_sleep(-1), 0, 0);
    assert_int_equal(rc, -EINVAL);
    CP_EXACT(rc = ctrio_sleep(-1e-9), 0, 0);
    assert_int_equal(rc, -EINVAL);
    CP_EXACT(rc = ctrio_sleep(NAN), 0, 0);
    assert_int_equal(rc, -EINVAL);
    CP_EXACT(rc = ctrio_sleep_until(NAN), 0, 0);
    assert_int_equal(rc, -EINVAL);
    assert_true(ctrio_current_time() == 0.0);
    return 0;
}

static void test_sleep_negative_einval(void **state)
{
    (void)state;
    assert_int_equal(run_mock(body_sleep_negative, NULL), 0);
}

/* Trio: tests/test_timeouts.py::test_sleep (`with assert_checkpoints(): await
 * sleep(0)`, then `move_on_at(current_time())` makes sleep(0) raise
 * Cancelled). Also checks that sleep(0) really lets another task run. */
static int ran_flag;

static int set_flag(void *arg)
{
    (void)arg;
    ran_flag = 1;
    return 0;
}

static int body_sleep_zero(void *arg)
{
    (void)arg;
    int rc = -1;
    ASSERT_CHECKPOINTS(rc = ctrio_sleep(0));
    assert_int_equal(rc, 0);

    ran_flag = 0;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, set_flag, NULL), 0);
    assert_int_equal(ran_flag, 0);
    assert_int_equal(ctrio_sleep(0), 0); /* a schedule point: the child runs */
    assert_int_equal(ran_flag, 1);
    assert_int_equal(ctrio_nursery_close(&n, 0), 0);

    /* the trivial move_on_at */
    ctrio_cancel_scope cs;
    ctrio_move_on_at(&cs, ctrio_current_time());
    rc = ctrio_sleep(0);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));
    return 0;
}

static void test_sleep_zero_is_checkpoint(void **state)
{
    (void)state;
    assert_int_equal(run_mock(body_sleep_zero, NULL), 0);
}

/* Trio: tests/test_timeouts.py::test_sleep's sleep_until a past time still
 * checkpoints (and so sees a cancel). Not a separate Trio test (Trio's
 * sleep_until always awaits sleep_forever in a scope). */
static int body_sleep_until_past(void *arg)
{
    (void)arg;
    assert_int_equal(ctrio_sleep(5), 0);
    int rc = -1;
    ASSERT_CHECKPOINTS(rc = ctrio_sleep_until(1));
    assert_int_equal(rc, 0);
    assert_true(ctrio_current_time() == 5.0);

    ctrio_cancel_scope cs;
    ctrio_cancel_scope_open(&cs);
    ctrio_cancel_scope_cancel(&cs);
    ASSERT_CHECKPOINTS(rc = ctrio_sleep_until(1));
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    return 0;
}

static void test_sleep_until_past_checkpoints(void **state)
{
    (void)state;
    assert_int_equal(run_mock(body_sleep_until_past, NULL), 0);
}

/* New (not in Trio's test_timeouts.py): sleep_forever ends only by a cancel,
 * here a deadline at t=3. */
static int body_sleep_forever(void *arg)
{
    (void)arg;
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 3);
    int rc = ctrio_sleep_forever();
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));
    assert_true(ctrio_current_time() == 3.0);
    return 0;
}

static void test_sleep_forever_cancelled_by_deadline(void **state)
{
    (void)state;
    assert_int_equal(run_mock(body_sleep_forever, NULL), 0);
}

/* ---- move_on_after / fail_* ---------------------------------------------- */

/* Trio: tests/test_timeouts.py::test_move_on_after (sleep_3, real time). */
static int body_move_on_after_real(void *arg)
{
    (void)arg;
    double start = real_now();
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, TARGET);
    int rc = ctrio_sleep(100);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    check_takes_about(start, TARGET);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));
    return 0;
}

static void test_move_on_after_real(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_move_on_after_real, NULL), 0);
}

/* Trio: tests/test_timeouts.py::test_move_on_after (sleep_3), mock clock:
 * the scope ends the sleep at exactly t=1. */
static int body_move_on_after_mock(void *arg)
{
    (void)arg;
    ctrio_cancel_scope cs;
    ctrio_move_on_after(&cs, 1);
    assert_true(ctrio_cancel_scope_deadline(&cs) == 1.0);
    int rc = ctrio_sleep(100);
    assert_int_equal(rc, -ECANCELED);
    assert_true(ctrio_cancel_scope_cancel_called(&cs));
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));
    assert_true(ctrio_current_time() == 1.0);

    /* a scope whose deadline is not reached catches nothing */
    ctrio_move_on_after(&cs, 10);
    assert_int_equal(ctrio_sleep(2), 0);
    assert_int_equal(ctrio_cancel_scope_close(&cs, 0), 0);
    assert_false(ctrio_cancel_scope_cancelled_caught(&cs));
    assert_false(ctrio_cancel_scope_cancel_called(&cs));
    assert_true(ctrio_current_time() == 3.0);
    return 0;
}

static void test_move_on_after_mock(void **state)
{
    (void)state;
    assert_int_equal(run_mock(body_move_on_after_mock, NULL), 0);
}

/* Trio: tests/test_timeouts.py::test_move_on_after and ::test_fail
 * (`move_on_after(-1)` / `fail_after(-1)` raise ValueError). ctrio documents
 * instead: a negative value counts as 0 and a message is printed. So the
 * scope is cancelled at once. */
static char neg_msg1[512], neg_msg2[512];

static int body_move_on_after_negative(void *arg)
{
    (void)arg;
    assert_int_equal(ctrio_sleep(2), 0);
    capture c;
    ctrio_cancel_scope cs;

    capture_start(&c);
    ctrio_move_on_after(&cs, -1);
    capture_end(&c, neg_msg1, sizeof neg_msg1);
    assert_true(ctrio_cancel_scope_deadline(&cs) == 2.0);
    int rc = ctrio_sleep(0);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));

    capture_start(&c);
    ctrio_fail_after(&cs, -1);
    capture_end(&c, neg_msg2, sizeof neg_msg2);
    assert_true(ctrio_cancel_scope_deadline(&cs) == 2.0);
    rc = ctrio_sleep(0);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(ctrio_cancel_scope_close(&cs, rc), -ETIMEDOUT);
    assert_true(ctrio_current_time() == 2.0);
    return 0;
}

static void test_move_on_after_negative(void **state)
{
    (void)state;
    neg_msg1[0] = neg_msg2[0] = '\0';
    assert_int_equal(run_mock(body_move_on_after_negative, NULL), 0);
    assert_non_null(strstr(neg_msg1, "ctrio_move_on_after"));
    assert_non_null(strstr(neg_msg1, "negative"));
    assert_non_null(strstr(neg_msg2, "ctrio_fail_after"));
}

/* Trio: tests/test_timeouts.py::test_fail (real time: sleep_4 and sleep_5
 * raise TooSlowError after about TARGET). */
static int body_fail_real(void *arg)
{
    (void)arg;
    ctrio_cancel_scope cs;
    double start = real_now();
    ctrio_fail_at(&cs, ctrio_current_time() + TARGET);
    int rc = ctrio_cancel_scope_close(&cs, ctrio_sleep(100));
    assert_int_equal(rc, -ETIMEDOUT);
    check_takes_about(start, TARGET);

    start = real_now();
    ctrio_fail_after(&cs, TARGET);
    rc = ctrio_cancel_scope_close(&cs, ctrio_sleep(100));
    assert_int_equal(rc, -ETIMEDOUT);
    check_takes_about(start, TARGET);
    return 0;
}

static void test_fail_real(void **state)
{
    (void)state;
    assert_int_equal(run_real(body_fail_real, NULL), 0);
}

/* Trio: tests/test_timeouts.py::test_fail, mock clock with exact times:
 * fail_at/fail_after -> -ETIMEDOUT when their deadline cuts the body short,
 * and nothing when the body finishes in time (mock clock:
 * fail_after(1) around sleep(100) -> E_TOOSLOW at t=1). */
static int body_fail_mock(void *arg)
{
    (void)arg;
    ctrio_cancel_scope cs;
    ctrio_fail_at(&cs, ctrio_current_time() + 1);
    int rc = ctrio_cancel_scope_close(&cs, ctrio_sleep(100));
    assert_int_equal(rc, -ETIMEDOUT);
    assert_true(ctrio_cancel_scope_cancelled_caught(&cs));
    assert_true(ctrio_current_time() == 1.0);

    ctrio_fail_at(&cs, ctrio_current_time() + 100);
    assert_int_equal(ctrio_cancel_scope_close(&cs, ctrio_sleep(0)), 0);
    assert_false(ctrio_cancel_scope_cancelled_caught(&cs));

    ctrio_fail_after(&cs, 1);
    rc = ctrio_cancel_scope_close(&cs, ctrio_sleep(100));
    assert_int_equal(rc, -ETIMEDOUT);
    assert_true(ctrio_current_time() == 2.0);

    ctrio_fail_after(&cs, 100);
    assert_int_equal(ctrio_cancel_scope_close(&cs, ctrio_sleep(0)), 0);
    assert_true(ctrio_current_time() == 2.0);
    return 0;
}

static void test_fail_mock(void **state)
{
    (void)state;
    assert_int_equal(run_mock(body_fail_mock, NULL), 0);
}

/* Trio: tests/test_timeouts.py::test_fail: fail_* give TooSlowError only if
 * their own scope caught the cancellation. New (Trio's fail_at checks
 * scope.cancelled_caught): an outer scope's cancel passes through a fail
 * scope unchanged; a deadline that passed while the body ran no checkpoint
 * changes nothing; another error of the body is returned unchanged. */
static int body_fail_own_scope(void *arg)
{
    (void)arg;
    ctrio_cancel_scope outer, inner;
    ctrio_move_on_after(&outer, 1);
    ctrio_fail_after(&inner, 10);
    int rc = ctrio_sleep(100);
    assert_int_equal(rc, -ECANCELED);
    rc = ctrio_cancel_scope_close(&inner, rc);
    assert_int_equal(rc, -ECANCELED); /* not -ETIMEDOUT: the outer scope's */
    assert_false(ctrio_cancel_scope_cancelled_caught(&inner));
    assert_int_equal(ctrio_cancel_scope_close(&outer, rc), 0);
    assert_true(ctrio_cancel_scope_cancelled_caught(&outer));
    assert_true(ctrio_current_time() == 1.0);

    /* the deadline passes, but the body reaches no checkpoint after it */
    ctrio_fail_after(&inner, 1);
    ctrio_mock_clock_jump(5);
    assert_int_equal(ctrio_cancel_scope_close(&inner, 0), 0);
    assert_false(ctrio_cancel_scope_cancelled_caught(&inner));
    assert_true(ctrio_current_time() == 6.0);

    /* a body failing for another reason */
    ctrio_fail_after(&inner, 1);
    assert_int_equal(ctrio_cancel_scope_close(&inner, -EIO), -EIO);
    return 0;
}

static void test_fail_only_if_own_scope_caught(void **state)
{
    (void)state;
    assert_int_equal(run_mock(body_fail_own_scope, NULL), 0);
}

/* ---- the mock clock ----------------------------------------------------- */

/* Trio: _core/tests/test_mock_clock.py::test_mock_clock (rate 0, jump,
 * negative jump). Trio raises ValueError for jump(-1); ctrio documents that
 * the jump is ignored and a message printed. Autojump off (< 0). */
static char jump_msg[512];

static int body_mock_clock_jump(void *arg)
{
    (void)arg;
    assert_true(ctrio_current_time() == 0.0);
    /* rate 0: neither real time nor scheduling moves the clock */
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ctrio_checkpoint(), 0);
    assert_true(ctrio_current_time() == 0.0);

    ctrio_mock_clock_jump(1.2);
    assert_true(ctrio_current_time() == 1.2);
    capture c;
    capture_start(&c);
    ctrio_mock_clock_jump(-1);
    capture_end(&c, jump_msg, sizeof jump_msg);
    assert_true(ctrio_current_time() == 1.2);
    ctrio_mock_clock_jump(0.8);
    assert_true(ctrio_current_time() == 2.0);
    ctrio_mock_clock_jump(0);
    assert_true(ctrio_current_time() == 2.0);
    return 0;
}

static void test_mock_clock_jump(void **state)
{
    (void)state;
    jump_msg[0] = '\0';
    assert_int_equal(run_autojump(-1, body_mock_clock_jump, NULL), 0);
    assert_non_null(strstr(jump_msg, "negative"));
}

/* New: ctrio_mock_clock_jump on a real clock does nothing (and says so). */
static char real_jump_msg[512];

static int body_jump_real_clock(void *arg)
{
    (void)arg;
    double t0 = ctrio_current_time();
    capture c;
    capture_start(&c);
    ctrio_mock_clock_jump(1000);
    capture_end(&c, real_jump_msg, sizeof real_jump_msg);
    assert_true(ctrio_current_time() - t0 < 1);
    return 0;
}

static void test_mock_clock_jump_on_real_clock(void **state)
{
    (void)state;
    real_jump_msg[0] = '\0';
    assert_int_equal(run_real(body_jump_real_clock, NULL), 0);
    assert_non_null(strstr(real_jump_msg, "mock clock"));
}

/* Trio: _core/tests/test_mock_clock.py::test_mock_clock_autojump (threshold
 * 0): sleeps of 0, 10, ..., 90 virtual seconds end at exactly their deadline
 * in well under 1 s of real time; and sleep(100000) finishes. */
static int body_autojump_0(void *arg)
{
    (void)arg;
    double real_start = real_now();
    double virtual_start = ctrio_current_time();
    for (int i = 0; i < 10; i++) {
        assert_int_equal(ctrio_sleep(10.0 * i), 0);
        assert_true(virtual_start + 10.0 * i == ctrio_current_time());
        virtual_start = ctrio_current_time();
    }
    assert_true(ctrio_current_time() == 450.0);
    assert_int_equal(ctrio_sleep(100000), 0);
    assert_true(ctrio_current_time() == 100450.0);
    assert_true(real_now() - real_start < 1.0);
    return 0;
}

static void test_mock_clock_autojump_0(void **state)
{
    (void)state;
    assert_int_equal(run_autojump(0, body_autojump_0, NULL), 0);
}

/* Trio: _core/tests/test_mock_clock.py::test_mock_clock_autojump (threshold
 * 0.02 part), ::test_mock_clock_autojump_interference and
 * ::test_mock_clock_autojump_preset: with a positive threshold,
 * wait_all_tasks_blocked with a smaller or equal cushion wakes without
 * jumping the clock; a sleep is then jumped over once everything has been
 * idle for the threshold (real time >= threshold, < 1 s). */
static int body_autojump_threshold(void *arg)
{
    (void)arg;
    double t = ctrio_current_time();
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_true(ctrio_current_time() == t);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0.01), 0);
    assert_true(ctrio_current_time() == t);
    assert_int_equal(ctrio_wait_all_tasks_blocked(0.015), 0);
    assert_true(ctrio_current_time() == t);

    double real_start = real_now();
    assert_int_equal(ctrio_sleep(10000), 0);
    double real_dur = real_now() - real_start;
    assert_true(ctrio_current_time() == t + 10000);
    assert_true(real_dur >= 0.015); /* waited ~threshold (0.02) before jumping */
    assert_true(real_dur < 1.0);
    return 0;
}

static void test_mock_clock_autojump_threshold(void **state)
{
    (void)state;
    assert_int_equal(run_autojump(0.02, body_autojump_threshold, NULL), 0);
}

/* Autojump never (threshold < 0): the clock moves only by a manual jump,
 * here made by another task. Adapted from Trio's mock_clock fixture (whose
 * default threshold is inf) and _core/tests/test_mock_clock.py::test_mock_clock
 * (jump). */
static double jumper_saw_time = -1;

static int jumper(void *arg)
{
    (void)arg;
    /* everything has been blocked 20 ms of real time: no autojump happened */
    assert_int_equal(ctrio_wait_all_tasks_blocked(0.02), 0);
    jumper_saw_time = ctrio_current_time();
    record("jump");
    ctrio_mock_clock_jump(5);
    return 0;
}

static int body_autojump_never(void *arg)
{
    (void)arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, jumper, NULL), 0);
    int rc = ctrio_sleep(5);
    assert_int_equal(rc, 0);
    record("slept");
    assert_true(ctrio_current_time() == 5.0);
    return ctrio_nursery_close(&n, rc);
}

static void test_mock_clock_autojump_never_manual_jump(void **state)
{
    (void)state;
    nrec = 0;
    jumper_saw_time = -1;
    assert_int_equal(run_autojump(-1, body_autojump_never, NULL), 0);
    assert_true(jumper_saw_time == 0.0);
    static const char *const expected[] = {"jump", "slept"};
    check_record(expected, 2);
}

/* Trio: _core/tests/test_mock_clock.py::
 * test_mock_clock_autojump_0_and_wait_all_tasks_blocked_0: with autojump 0,
 * wait_all_tasks_blocked() still wakes before the clock jumps. */
static int aj_sleeper(void *arg)
{
    (void)arg;
    assert_int_equal(ctrio_sleep(100), 0);
    record("yawn");
    return 0;
}

static int aj_waiter0(void *arg)
{
    (void)arg;
    assert_int_equal(ctrio_wait_all_tasks_blocked(0), 0);
    assert_true(ctrio_current_time() == 0.0);
    record("waiter woke");
    assert_int_equal(ctrio_sleep(1000), 0);
    record("waiter done");
    return 0;
}

static int body_autojump_0_wait0(void *arg)
{
    (void)arg;
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, aj_sleeper, NULL), 0);
    assert_int_equal(ctrio_start_soon(&n, aj_waiter0, NULL), 0);
    int rc = ctrio_nursery_close(&n, 0);
    assert_true(ctrio_current_time() == 1000.0);
    return rc;
}

static void test_mock_clock_autojump_0_and_wait_all_tasks_blocked_0(void **state)
{
    (void)state;
    nrec = 0;
    assert_int_equal(run_autojump(0, body_autojump_0_wait0, NULL), 0);
    static const char *const expected[] = {"waiter woke", "yawn", "waiter done"};
    check_record(expected, 3);
}

/* Trio: _core/tests/test_mock_clock.py::
 * test_mock_clock_autojump_0_and_wait_all_tasks_blocked_nonzero (cushion
 * 0.05 s instead of 1 s): the waiter, even with a cushion, wakes before the
 * autojump (wait_all_tasks_blocked takes priority over autojump, as in
 * test_mock_clock.py::test_mock_clock_autojump_interference). */
static int aj_waiter_cushion(void *arg)
{
    (void)arg;
    assert_int_equal(ctrio_wait_all_tasks_blocked(0.05), 0);
    assert_true(ctrio_current_time() == 0.0);
    record("waiter done");
    return 0;
}

static int body_autojump_0_wait_nonzero(void *arg)
{
    (void)arg;
    /* a guard: if the autojump were taken instead of waking the waiter, the
     * waiter would be left alone with no deadline and wait forever; this
     * deadline makes that a failure instead of a hang */
    ctrio_cancel_scope guard;
    ctrio_move_on_after(&guard, 1000);
    ctrio_nursery n;
    ctrio_nursery_open(&n);
    assert_int_equal(ctrio_start_soon(&n, aj_sleeper, NULL), 0);
    assert_int_equal(ctrio_start_soon(&n, aj_waiter_cushion, NULL), 0);
    int rc = ctrio_nursery_close(&n, 0);
    rc = ctrio_cancel_scope_close(&guard, rc);
    assert_false(ctrio_cancel_scope_cancelled_caught(&guard));
    assert_true(ctrio_current_time() == 100.0);
    return rc;
}

static void test_mock_clock_autojump_0_and_wait_all_tasks_blocked_nonzero(void **state)
{
    (void)state;
    nrec = 0;
    assert_int_equal(run_autojump(0, body_autojump_0_wait_nonzero, NULL), 0);
    static const char *const expected[] = {"waiter done", "yawn"};
    check_record(expected, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_sleep_real),
        TEST(test_sleep_mock),
        TEST(test_sleep_negative_einval),
        TEST(test_sleep_zero_is_checkpoint),
        TEST(test_sleep_until_past_checkpoints),
        TEST(test_sleep_forever_cancelled_by_deadline),
        TEST(test_move_on_after_real),
        TEST(test_move_on_after_mock),
        TEST(test_move_on_after_negative),
        TEST(test_fail_real),
        TEST(test_fail_mock),
        TEST(test_fail_only_if_own_scope_caught),
        TEST(test_mock_clock_jump),
        TEST(test_mock_clock_jump_on_real_clock),
        TEST(test_mock_clock_autojump_0),
        TEST(test_mock_clock_autojump_threshold),
        TEST(test_mock_clock_autojump_never_manual_jump),
        TEST(test_mock_clock_autojump_0_and_wait_all_tasks_blocked_0),
        TEST(test_mock_clock_autojump_0_and_wait_all_tasks_blocked_nonzero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
